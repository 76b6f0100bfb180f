//! `device_groups/` (docs/scst-reference.md 2.9): ALUA device groups, their devices and their
//! target groups with each group's id, preference, state and member targets.

use scst_core::{AluaState, DeviceGroupInfo};

use super::{bool01, core_error, parse_id, refuse_write, with_key, ScstTree};
use crate::command::{self, parse_command, MgmtCommand, MgmtFile};
use crate::protocol::{MgmtPath, TreeError};

fn device_group(tree: &ScstTree, path: &MgmtPath, dg: &str) -> Result<DeviceGroupInfo, TreeError> {
    tree.scst
        .device_groups()
        .into_iter()
        .find(|g| g.name == dg)
        .ok_or_else(|| TreeError::not_found(path))
}

/// Whether `target` is one of this node's targets, under any driver: only a remote
/// target's rel_tgt_id is configuration.
fn is_local(tree: &ScstTree, target: &str) -> bool {
    tree.scst
        .target_drivers()
        .iter()
        .any(|d| tree.scst.target(d.name(), target).is_some())
}

pub(super) fn read(tree: &ScstTree, path: &MgmtPath, rest: &[&str]) -> Result<String, TreeError> {
    if rest == ["mgmt"] {
        return Ok(command::DEVICE_GROUPS_HELP.to_string());
    }
    let [dg, rest @ ..] = rest else {
        return Err(TreeError::not_found(path));
    };
    let g = device_group(tree, path, dg)?;
    match rest {
        ["devices", "mgmt"] => Ok(command::DG_DEVICES_HELP.to_string()),
        ["devices", d] if g.devices.iter().any(|x| x == d) => Ok(d.to_string()),
        ["target_groups", "mgmt"] => Ok(command::TARGET_GROUPS_HELP.to_string()),
        ["target_groups", tg, rest @ ..] => {
            let tg = g
                .target_groups
                .iter()
                .find(|t| t.name == *tg)
                .ok_or_else(|| TreeError::not_found(path))?;
            match rest {
                ["mgmt"] => Ok(command::TARGET_GROUP_HELP.to_string()),
                ["group_id"] => Ok(with_key(tg.group_id.to_string(), true)),
                ["preferred"] => Ok(with_key(u8::from(tg.preferred).to_string(), tg.preferred)),
                ["state"] => Ok(with_key(tg.state.name().to_string(), true)),
                [t, "rel_tgt_id"] => {
                    let (_, id) = tg
                        .targets
                        .iter()
                        .find(|(n, _)| n == t)
                        .ok_or_else(|| TreeError::not_found(path))?;
                    // A local member reports its own live rel_tgt_id.
                    Ok(with_key(id.to_string(), !is_local(tree, t)))
                }
                _ => Err(TreeError::not_found(path)),
            }
        }
        _ => Err(TreeError::not_found(path)),
    }
}

pub(super) fn list(
    tree: &ScstTree,
    path: &MgmtPath,
    rest: &[&str],
) -> Result<Vec<String>, TreeError> {
    let [dg, rest @ ..] = rest else {
        return Ok(std::iter::once("mgmt".to_string())
            .chain(
                tree.scst
                    .device_groups()
                    .into_iter()
                    .map(|g| format!("{}/", g.name)),
            )
            .collect());
    };
    let g = device_group(tree, path, dg)?;
    match rest {
        [] => Ok(vec!["devices/".into(), "target_groups/".into()]),
        ["devices"] => Ok(std::iter::once("mgmt".to_string())
            .chain(g.devices.iter().cloned())
            .collect()),
        ["target_groups"] => Ok(std::iter::once("mgmt".to_string())
            .chain(g.target_groups.iter().map(|t| format!("{}/", t.name)))
            .collect()),
        ["target_groups", tg, rest @ ..] => {
            let tg = g
                .target_groups
                .iter()
                .find(|t| t.name == *tg)
                .ok_or_else(|| TreeError::not_found(path))?;
            match rest {
                [] => Ok(["mgmt", "group_id", "preferred", "state"]
                    .into_iter()
                    .map(String::from)
                    .chain(tg.targets.iter().map(|(n, _)| format!("{n}/")))
                    .collect()),
                [t] if tg.targets.iter().any(|(n, _)| n == t) => Ok(vec!["rel_tgt_id".into()]),
                _ => Err(TreeError::not_found(path)),
            }
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
    let parse = |file| parse_command(file, value).map_err(|e| TreeError::invalid(path, e));
    let scst = &tree.scst;
    match rest {
        ["mgmt"] => match parse(MgmtFile::DeviceGroups)? {
            MgmtCommand::CreateDeviceGroup { name } => scst.create_device_group(&name),
            MgmtCommand::DelDeviceGroup { name } => scst.delete_device_group(&name),
            _ => return Err(TreeError::not_supported(path)),
        },
        [dg, "devices", "mgmt"] => match parse(MgmtFile::DeviceGroupDevices)? {
            MgmtCommand::DeviceGroupAddDevice { device } => {
                scst.device_group_add_device(dg, &device)
            }
            MgmtCommand::DeviceGroupDelDevice { device } => {
                scst.device_group_remove_device(dg, &device)
            }
            _ => return Err(TreeError::not_supported(path)),
        },
        [dg, "target_groups", "mgmt"] => match parse(MgmtFile::TargetGroups)? {
            MgmtCommand::CreateTargetGroup { name } => scst
                .free_target_group_id(dg)
                .and_then(|id| scst.create_target_group(dg, &name, id)),
            MgmtCommand::DelTargetGroup { name } => scst.delete_target_group(dg, &name),
            _ => return Err(TreeError::not_supported(path)),
        },
        [dg, "target_groups", tg, "mgmt"] => match parse(MgmtFile::TargetGroup)? {
            MgmtCommand::TargetGroupAddTarget { target, rel_tgt_id } => {
                scst.target_group_add_target(dg, tg, &target, rel_tgt_id)
            }
            MgmtCommand::TargetGroupDelTarget { target } => {
                scst.target_group_remove_target(dg, tg, &target)
            }
            _ => return Err(TreeError::not_supported(path)),
        },
        [dg, "target_groups", tg, "group_id"] => {
            scst.set_target_group_id(dg, tg, parse_id(path, value)?)
        }
        [dg, "target_groups", tg, "preferred"] => {
            scst.set_target_group_preferred(dg, tg, bool01(path, value)?)
        }
        [dg, "target_groups", tg, "state"] => AluaState::from_name(value.trim())
            .and_then(|st| scst.set_target_group_state(dg, tg, st)),
        [dg, "target_groups", tg, t, "rel_tgt_id"] => {
            scst.set_target_group_member_rel_tgt_id(dg, tg, t, parse_id(path, value)?)
        }
        _ => return refuse_write(tree, path),
    }
    .map_err(|e| core_error(path, e))
}
