//! `handlers/` and `handlers/<h>/` (docs/scst-reference.md 2.4): one directory per registered dev
//! handler, with its `mgmt` file, `pr_dump_dir` where the attribute table gives it one,
//! and links to its devices (resolved in [`super`]).

use scst_core::DevHandler;
use std::path::PathBuf;
use std::sync::Arc;

use super::{core_error, refuse_write, type_text, with_key, ScstTree};
use crate::attrs;
use crate::command::{self, parse_command, MgmtCommand, MgmtFile};
use crate::protocol::{MgmtPath, TreeError};

fn handler(tree: &ScstTree, name: &str) -> Option<Arc<dyn DevHandler>> {
    tree.scst.dev_handler(name)
}

/// Whether SCST gives handler `h` the `pr_dump_dir` attribute (scst-reference 2.4).
fn has_pr_dump_dir(h: &str) -> bool {
    attrs::handler_attr(h, "pr_dump_dir").is_some()
}

pub(super) fn read(tree: &ScstTree, path: &MgmtPath, rest: &[&str]) -> Result<String, TreeError> {
    let [h, file] = rest else {
        return Err(TreeError::not_found(path));
    };
    let h = handler(tree, h).ok_or_else(|| TreeError::not_found(path))?;
    match *file {
        "mgmt" => Ok(command::handler_help(
            h.creation_params(),
            h.optional_attrs(),
        )),
        "type" => Ok(type_text(h.scsi_type())),
        "pr_dump_dir" if has_pr_dump_dir(h.name()) => {
            let dir = tree.scst.pr_dump_dir(h.name());
            let set = dir.is_some();
            Ok(with_key(
                dir.map(|d| d.display().to_string()).unwrap_or_default(),
                set,
            ))
        }
        _ => Err(TreeError::not_found(path)),
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
            .dev_handlers()
            .iter()
            .map(|h| format!("{}/", h.name()))
            .collect()),
        [h] if handler(tree, h).is_some() => {
            let mut v = vec!["mgmt".to_string(), "type".to_string()];
            if has_pr_dump_dir(h) {
                v.push("pr_dump_dir".to_string());
            }
            if crate::trace_level::Component::of_handler(h).is_some() {
                v.push("trace_level".to_string());
            }
            v.extend(
                tree.scst
                    .devices()
                    .iter()
                    .filter(|d| d.dev.handler_name() == *h)
                    .map(|d| format!("{}/", d.name())),
            );
            Ok(v)
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
    match rest {
        [h, "mgmt"] => match handler(tree, h) {
            Some(h) => write_mgmt(tree, path, h.as_ref(), value),
            None => refuse_write(tree, path),
        },
        [h, "pr_dump_dir"] if handler(tree, h).is_some() && has_pr_dump_dir(h) => {
            let dir = value.trim();
            if !dir.is_empty() && !dir.starts_with('/') {
                return Err(TreeError::invalid(
                    path,
                    format!("'{dir}' is not an absolute path"),
                ));
            }
            tree.scst.set_pr_dump_dir(h, Some(dir.into()));
            Ok(())
        }
        _ => refuse_write(tree, path),
    }
}

fn write_mgmt(
    tree: &ScstTree,
    path: &MgmtPath,
    h: &dyn DevHandler,
    value: &str,
) -> Result<(), TreeError> {
    let handler = h.name();
    let cmd = parse_command(MgmtFile::Handler, value).map_err(|e| TreeError::invalid(path, e))?;
    match cmd {
        MgmtCommand::AddDevice { name, mut params } => {
            // pr_file_name is the core's (scst-reference 2.5), the rest the dev handler's.
            let pr_file = match params.iter().position(|(k, _)| k == "pr_file_name") {
                Some(i) => pr_file_name(path, &name, params.remove(i).1.trim())?,
                None => None,
            };
            let dev = h
                .create_device(&name, &params, tree.setup_id)
                .map_err(|e| core_error(path, e))?;
            tree.scst
                .add_device_with_pr_file(dev, pr_file)
                .map_err(|e| core_error(path, e))?;
            // As SCST, a new device is registered with the copy manager at once.
            if let Err(e) = tree.scst.copy_manager_add_device(&name) {
                log::warn!("device {name}: not registered with the copy manager: {e}");
            }
            log::info!("device {name} added ({handler})");
            Ok(())
        }
        MgmtCommand::DelDevice { name } => {
            match tree.scst.device(&name) {
                Ok(d) if d.dev.handler_name() != handler => {
                    return Err(TreeError::invalid(
                        path,
                        format!(
                            "device '{name}' belongs to handler {}",
                            d.dev.handler_name()
                        ),
                    ))
                }
                _ => {}
            }
            // The copy manager lets go of a device that goes; if it stays (a LUN
            // still exports it), so does its registration.
            tree.scst
                .copy_manager_remove_device(&name)
                .map_err(|e| core_error(path, e))?;
            tree.scst.del_device(&name).map_err(|e| {
                if let Err(again) = tree.scst.copy_manager_add_device(&name) {
                    log::warn!("device {name}: not registered with the copy manager: {again}");
                }
                core_error(path, e)
            })
        }
        // SCST offers these only for handlers that declare optional attributes (its
        // help text then lists them); a handler that declares none is told so, and
        // its help text leaves the commands out accordingly.
        MgmtCommand::AddAttribute { .. }
        | MgmtCommand::DelAttribute { .. }
        | MgmtCommand::AddDeviceAttribute { .. }
        | MgmtCommand::DelDeviceAttribute { .. }
            if h.optional_attrs().is_empty() =>
        {
            Err(TreeError::invalid(
                path,
                format!(
                    "{}: {handler} declares no optional attributes",
                    value.split_whitespace().next().unwrap_or_default()
                ),
            ))
        }
        _ => Err(TreeError::not_supported(path)),
    }
}

/// The APTPL file `add_device` was given: an absolute path, or empty for the default
/// under the state directory (scst-reference 2.5).
fn pr_file_name(path: &MgmtPath, device: &str, v: &str) -> Result<Option<PathBuf>, TreeError> {
    if !v.is_empty() && !v.starts_with('/') {
        return Err(TreeError::invalid(
            path,
            format!("device {device}: pr_file_name must be an absolute path, not '{v}'"),
        ));
    }
    Ok((!v.is_empty()).then(|| PathBuf::from(v)))
}
