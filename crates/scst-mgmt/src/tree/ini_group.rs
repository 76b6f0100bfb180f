//! `ini_groups/` of a target (docs/scst-reference.md 2.6): the security groups, each with its
//! `addr_method`, LUN set and initiator patterns.

use scst_core::{IniGroup, Target};

use super::{core_error, luns, refuse_write, with_key, ScstTree};
use crate::command::{self, parse_command, MgmtCommand, MgmtFile};
use crate::protocol::{MgmtPath, TreeError};

fn group(path: &MgmtPath, t: &Target, name: &str) -> Result<IniGroup, TreeError> {
    t.acl
        .lock()
        .groups
        .iter()
        .find(|g| g.name == name)
        .cloned()
        .ok_or_else(|| TreeError::not_found(path))
}

pub(super) fn read(path: &MgmtPath, t: &Target, rest: &[&str]) -> Result<String, TreeError> {
    match rest {
        ["mgmt"] => Ok(command::INI_GROUPS_HELP.to_string()),
        [g, rest @ ..] => {
            let group = group(path, t, g)?;
            match rest {
                ["addr_method"] => Ok(match group.addr_method {
                    Some(m) => with_key(m.name().to_string(), true),
                    None => t.addr_method.lock().name().to_string(),
                }),
                ["luns", rest @ ..] => luns::read(path, &group.luns, rest),
                ["initiators", "mgmt"] => Ok(command::INITIATORS_HELP.to_string()),
                ["initiators", name] => group
                    .initiators
                    .iter()
                    .find(|i| i == name)
                    .cloned()
                    .ok_or_else(|| TreeError::not_found(path)),
                _ => Err(TreeError::not_found(path)),
            }
        }
        [] => Err(TreeError::not_found(path)),
    }
}

pub(super) fn list(path: &MgmtPath, t: &Target, rest: &[&str]) -> Result<Vec<String>, TreeError> {
    let [g, rest @ ..] = rest else {
        return Ok(std::iter::once("mgmt".to_string())
            .chain(t.acl.lock().groups.iter().map(|g| format!("{}/", g.name)))
            .collect());
    };
    let group = group(path, t, g)?;
    match rest {
        [] => Ok(vec![
            "addr_method".into(),
            "luns/".into(),
            "initiators/".into(),
        ]),
        ["luns", rest @ ..] => luns::list(path, &group.luns, rest),
        ["initiators"] => Ok(std::iter::once("mgmt".to_string())
            .chain(group.initiators.iter().cloned())
            .collect()),
        _ => Err(TreeError::not_found(path)),
    }
}

pub(super) fn write(
    tree: &ScstTree,
    path: &MgmtPath,
    t: &Target,
    rest: &[&str],
    value: &str,
) -> Result<(), TreeError> {
    let scst = &tree.scst;
    let parse = |file| parse_command(file, value).map_err(|e| TreeError::invalid(path, e));
    match rest {
        ["mgmt"] => match parse(MgmtFile::IniGroups)? {
            MgmtCommand::CreateGroup { .. } if t.driver == scst_core::COPY_MANAGER => {
                return Err(TreeError::at(
                    path,
                    crate::protocol::ErrorKind::NotSupported,
                    "the copy manager does not support security groups",
                ))
            }
            MgmtCommand::CreateGroup { name } => scst.ini_group_create(t, &name),
            MgmtCommand::DelGroup { name } => scst.ini_group_del(t, &name),
            _ => return Err(TreeError::not_supported(path)),
        },
        [g, "addr_method"] => {
            let m = scst_core::driver::parse_addr_method(value).map_err(|e| core_error(path, e))?;
            let mut acl = t.acl.lock();
            acl.group_mut(g)
                .map_err(|_| TreeError::not_found(path))?
                .addr_method = Some(m);
            Ok(())
        }
        [g, "luns", "mgmt"] => return luns::write_mgmt(tree, path, t, Some(g), value),
        [g, "initiators", "mgmt"] => match parse(MgmtFile::Initiators)? {
            MgmtCommand::AddInitiator { pattern } => scst.initiator_add(t, g, &pattern),
            MgmtCommand::DelInitiator { pattern } => scst.initiator_del(t, g, &pattern),
            MgmtCommand::MoveInitiator {
                pattern,
                group: dest,
            } => scst.initiator_move(t, g, &pattern, &dest),
            MgmtCommand::ClearInitiators => scst.initiator_clear(t, g),
            _ => return Err(TreeError::not_supported(path)),
        },
        _ => return refuse_write(tree, path),
    }
    .map_err(|e| core_error(path, e))
}
