//! `devices/` and `devices/<d>/` (docs/scst-reference.md 2.5): the handler, type, the device's
//! attribute table, its persistent reservation state, and SCST's core device attributes
//! that are fixed in scst-rs (the `FIXED` table).

use std::sync::Arc;

use scst_core::DeviceEntry;

use super::{core_error, refuse_write, type_text, with_key, ScstTree};
use crate::protocol::{ErrorKind, MgmtPath, TreeError};

/// SCST core device attributes scst-rs fixes (read-only; a configuration's value is
/// compared with them): nothing blocks a device from outside (`block`: no blocks, none
/// pending), every device's blocking I/O runs on the one I/O pool every initiator
/// shares (`threads_num` is its size), and the backing file stays open whatever the
/// ALUA state (`bind_alua_state` 0).
const FIXED: &[&str] = &[
    "block",
    "threads_num",
    "threads_pool_type",
    "bind_alua_state",
];

fn fixed(tree: &ScstTree, d: &DeviceEntry, attr: &str) -> Option<String> {
    let file_based = matches!(d.dev.handler_name(), "vdisk_fileio" | "vdisk_blockio");
    Some(match attr {
        "block" => "0 0".to_string(),
        "threads_num" => tree.io_threads.0.to_string(),
        "threads_pool_type" => "shared".to_string(),
        "bind_alua_state" if file_based => "0".to_string(),
        _ => return None,
    })
}

fn device(tree: &ScstTree, path: &MgmtPath, name: &str) -> Result<Arc<DeviceEntry>, TreeError> {
    tree.scst
        .device(name)
        .map_err(|_| TreeError::not_found(path))
}

pub(super) fn read(tree: &ScstTree, path: &MgmtPath, rest: &[&str]) -> Result<String, TreeError> {
    if let [d, "statistics", name] = rest {
        let d = device(tree, path, d)?;
        return super::session::io_counter(&d.io_totals(), name)
            .filter(|_| super::session::IO_COUNTERS.contains(name))
            .map(|n| n.to_string())
            .ok_or_else(|| TreeError::not_found(path));
    }
    let [d, attr] = rest else {
        return Err(TreeError::not_found(path));
    };
    let d = device(tree, path, d)?;
    match *attr {
        "handler" => Ok(d.dev.handler_name().to_string()),
        "type" => Ok(type_text(d.dev.scsi_type())),
        "pr_state" => Ok(d.pr_state_text()),
        // A key attribute when it is not the default, so that write_config keeps the
        // APTPL file where it is.
        "pr_file_name" => {
            let file = d.pr_file();
            let default = tree.scst.state_dir().map(|s| s.join("pr").join(d.name()));
            let shown = file.as_ref().map(|f| f.display().to_string());
            Ok(with_key(shown.unwrap_or_default(), file != default))
        }
        _ if FIXED.contains(attr) => {
            fixed(tree, &d, attr).ok_or_else(|| TreeError::not_found(path))
        }
        _ => d
            .dev
            .attributes()
            .into_iter()
            .find(|(n, _, _)| n == attr)
            .map(|(_, v, key)| with_key(v, key))
            .ok_or_else(|| TreeError::not_found(path)),
    }
}

pub(super) fn list(
    tree: &ScstTree,
    path: &MgmtPath,
    rest: &[&str],
) -> Result<Vec<String>, TreeError> {
    match rest {
        [] => Ok(tree
            .scst
            .devices()
            .iter()
            .map(|d| format!("{}/", d.name()))
            .collect()),
        [d] => {
            let d = device(tree, path, d)?;
            let mut v = vec!["handler".to_string(), "type".to_string()];
            v.extend(d.dev.attributes().into_iter().map(|(n, _, _)| n));
            v.push("pr_file_name".to_string());
            v.push("pr_state".to_string());
            v.extend(
                FIXED
                    .iter()
                    .filter(|a| fixed(tree, &d, a).is_some())
                    .map(|a| a.to_string()),
            );
            v.push("statistics/".to_string());
            Ok(v)
        }
        [d, "statistics"] => {
            device(tree, path, d)?;
            Ok(super::session::IO_COUNTERS
                .iter()
                .map(|c| c.to_string())
                .collect())
        }
        _ => Err(TreeError::not_found(path)),
    }
}

pub(super) fn write(
    tree: &ScstTree,
    path: &MgmtPath,
    rest: &[&str],
    value: &str,
) -> Result<(), TreeError> {
    if let [_, "statistics", _] = rest {
        return Err(super::session::counter_is_read_only(path));
    }
    let [d, attr] = rest else {
        return refuse_write(tree, path);
    };
    let d = device(tree, path, d)?;
    match *attr {
        "pr_state" => d.import_pr_state(value).map_err(|e| core_error(path, e)),
        "handler" | "type" | "pr_file_name" => Err(no_writable(path, ErrorKind::ReadOnly)),
        _ if fixed(tree, &d, attr).is_some() => Err(no_writable(path, ErrorKind::ReadOnly)),
        _ if d.dev.attributes().iter().any(|(n, _, _)| n == attr) => tree
            .scst
            .set_device_attr(d.name(), attr, value.trim_end_matches('\n'))
            .map(|effect| log::info!("device {}: {attr} set ({effect:?})", d.name()))
            .map_err(|e| core_error(path, e)),
        _ => Err(no_writable(path, ErrorKind::NotFound)),
    }
}

fn no_writable(path: &MgmtPath, kind: ErrorKind) -> TreeError {
    TreeError::at(path, kind, "no such writable attribute")
}
