//! The root directory's attributes (docs/scst-reference.md 2.3).

use std::sync::atomic::Ordering;

use super::{bool01, refuse_write, with_key, ScstTree};
use crate::protocol::{ErrorKind, MgmtPath, TreeError};

pub(super) fn list() -> Vec<String> {
    [
        "version",
        "setup_id",
        "threads",
        "async_lun_replace",
        "measure_latency",
        "scst_max_cmd_mem",
        "last_sysfs_mgmt_res",
        "trace_level",
        "active_sessions",
        "active_tgt_devs",
        "handlers/",
        "devices/",
        "targets/",
        "device_groups/",
    ]
    .map(String::from)
    .to_vec()
}

pub(super) fn read(tree: &ScstTree, path: &MgmtPath, name: &str) -> Result<String, TreeError> {
    match name {
        "version" => Ok(format!("scst-rs {}", env!("CARGO_PKG_VERSION"))),
        "setup_id" => Ok(with_key(
            format!("{:#x}", tree.setup_id),
            tree.setup_id != 0,
        )),
        "threads" => Ok(with_key(tree.io_threads.0.to_string(), tree.io_threads.1)),
        "async_lun_replace" => {
            let on = tree.scst.async_lun_replace();
            Ok(with_key(u8::from(on).to_string(), on))
        }
        "measure_latency" => {
            let on = tree.scst.measure_latency();
            Ok(with_key(u8::from(on).to_string(), on))
        }
        "scst_max_cmd_mem" => {
            let mib = tree.scst.cmd_mem.limit() >> 20;
            let default = scst_core::cmd_mem::default_limit() >> 20;
            Ok(with_key(mib.to_string(), mib != default))
        }
        "last_sysfs_mgmt_res" => Ok(tree.last_result.load(Ordering::Relaxed).to_string()),
        "active_sessions" => Ok(scst_core::session::live_counts().0.to_string()),
        "active_tgt_devs" => Ok(scst_core::session::live_counts().1.to_string()),
        _ => Err(TreeError::not_found(path)),
    }
}

pub(super) fn write(
    tree: &ScstTree,
    path: &MgmtPath,
    name: &str,
    value: &str,
) -> Result<(), TreeError> {
    match name {
        "async_lun_replace" => {
            tree.scst.set_async_lun_replace(bool01(path, value)?);
            Ok(())
        }
        // 0 also clears every session's latency tables, as in SCST.
        "measure_latency" => {
            tree.scst.set_measure_latency(bool01(path, value)?);
            Ok(())
        }
        "scst_max_cmd_mem" => {
            let mib = value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|&m| m > 0)
                .ok_or_else(|| {
                    TreeError::at(
                        path,
                        ErrorKind::Invalid,
                        format!("{value:?} is not a size in MiB (1 or more)"),
                    )
                })?;
            tree.scst.cmd_mem.set_limit((mib as usize) << 20);
            Ok(())
        }
        "threads" => Err(TreeError::at(
            path,
            ErrorKind::ReadOnly,
            "the I/O thread pool is sized at start; restart scstd with --io-threads or \
             the configuration's threads attribute",
        )),
        _ => refuse_write(tree, path),
    }
}
