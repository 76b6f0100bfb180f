//! A LUN set (docs/scst-reference.md 2.6): `luns/` of a target or of an initiator group, with its
//! `mgmt` file and one directory per LUN.

use scst_core::{LunSet, Target};

use super::{core_error, ScstTree};
use crate::command::{self, parse_command, MgmtCommand, MgmtFile};
use crate::protocol::{MgmtPath, TreeError};

pub(super) fn read(path: &MgmtPath, set: &LunSet, rest: &[&str]) -> Result<String, TreeError> {
    match rest {
        ["mgmt"] => Ok(command::LUNS_HELP.to_string()),
        [n, attr] => {
            let e = n
                .parse::<u64>()
                .ok()
                .and_then(|n| set.luns.get(&n))
                .ok_or_else(|| TreeError::not_found(path))?;
            match *attr {
                "device" => Ok(e.device.name().to_string()),
                "read_only" => Ok(u8::from(e.read_only).to_string()),
                _ => Err(TreeError::not_found(path)),
            }
        }
        _ => Err(TreeError::not_found(path)),
    }
}

pub(super) fn list(path: &MgmtPath, set: &LunSet, rest: &[&str]) -> Result<Vec<String>, TreeError> {
    match rest {
        [] => Ok(std::iter::once("mgmt".to_string())
            .chain(set.luns.keys().map(|n| format!("{n}/")))
            .collect()),
        [n] if n.parse::<u64>().is_ok_and(|n| set.luns.contains_key(&n)) => {
            Ok(vec!["device".into(), "read_only".into()])
        }
        _ => Err(TreeError::not_found(path)),
    }
}

/// A command written to `luns/mgmt` of target `t` (of its initiator group `group`).
pub(super) fn write_mgmt(
    tree: &ScstTree,
    path: &MgmtPath,
    t: &Target,
    group: Option<&str>,
    value: &str,
) -> Result<(), TreeError> {
    let scst = &tree.scst;
    let cmd = parse_command(MgmtFile::Luns, value).map_err(|e| TreeError::invalid(path, e))?;
    match cmd {
        // The copy manager registers a device once: `add` puts it at that LUN.
        MgmtCommand::AddLun {
            device,
            lun,
            read_only,
        } if t.driver == scst_core::COPY_MANAGER => {
            scst.copy_manager_place(t, lun.into(), &device, read_only)
                .map_err(|e| core_error(path, e))?;
            log::info!("copy manager: LUN {lun} -> {device}");
            Ok(())
        }
        MgmtCommand::AddLun {
            device,
            lun,
            read_only,
        } => {
            scst.lun_add(t, group, lun.into(), &device, read_only)
                .map_err(|e| core_error(path, e))?;
            log::info!("target {}: LUN {lun} -> {device} added", t.name);
            Ok(())
        }
        MgmtCommand::DelLun { lun } => scst.lun_del(t, group, lun.into()),
        MgmtCommand::ReplaceLun {
            device,
            lun,
            read_only,
            unit_attention,
        } => scst.lun_replace(t, group, lun.into(), &device, read_only, unit_attention),
        MgmtCommand::ClearLuns => scst.lun_clear(t, group),
        _ => return Err(TreeError::not_supported(path)),
    }
    .map_err(|e| core_error(path, e))
}
