//! `targets/<driver>/<target>/` (docs/scst-reference.md 2.6, 6.2-6.6): `enabled`, `rel_tgt_id`,
//! `addr_method`, the driver's target parameters and dynamic attributes, and the
//! `luns/`, `ini_groups/` and `sessions/` directories (their own modules).

use std::sync::Arc;

use scst_core::{Target, TargetDriver};

use super::{
    bool01, core_error, core_error_about, ini_group, instance_names, is_instance_of_any, luns,
    parse_id, refuse_write, session, with_key, ScstTree,
};
use crate::protocol::{MgmtPath, TreeError};

pub(super) fn lookup(
    tree: &ScstTree,
    path: &MgmtPath,
    driver: &str,
    name: &str,
) -> Result<Arc<Target>, TreeError> {
    tree.scst
        .target(driver, name)
        .ok_or_else(|| TreeError::not_found(path))
}

fn param_default(d: &dyn TargetDriver, name: &str) -> Option<&'static str> {
    d.target_params()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

/// Multi-value and free-form attributes of a target (not its parameters), as files.
fn attr_files(d: &dyn TargetDriver, t: &Target) -> Vec<(String, String)> {
    let attrs: Vec<(String, String)> = t
        .attrs
        .lock()
        .iter()
        .filter(|(n, _)| param_default(d, n).is_none())
        .cloned()
        .collect();
    instance_names(&attrs)
}

pub(super) fn read(
    path: &MgmtPath,
    d: &dyn TargetDriver,
    t: &Target,
    rest: &[&str],
) -> Result<String, TreeError> {
    match rest {
        ["enabled"] if t.driver == scst_core::COPY_MANAGER => Err(TreeError::not_found(path)),
        ["enabled"] => Ok(with_key(u8::from(t.enabled()).to_string(), t.enabled())),
        // 0 (the copy manager's target, never enabled) is no choice worth saving.
        ["rel_tgt_id"] => Ok(with_key(t.rel_tgt_id().to_string(), t.rel_tgt_id() != 0)),
        ["addr_method"] => {
            let m = *t.addr_method.lock();
            Ok(with_key(
                m.name().to_string(),
                m != scsi_wire::lun::AddrMethod::Peripheral,
            ))
        }
        ["luns", rest @ ..] => {
            let set = t.acl.lock().default_luns.clone();
            luns::read(path, &set, rest)
        }
        ["ini_groups", rest @ ..] => ini_group::read(path, t, rest),
        ["sessions", rest @ ..] => session::read(path, t, rest),
        ["statistics", name] => session::io_counter(&t.io_totals(), name)
            .filter(|_| session::IO_COUNTERS.contains(name))
            .map(|n| n.to_string())
            .ok_or_else(|| TreeError::not_found(path)),
        [attr] => {
            if let Some(default) = param_default(d, attr) {
                return Ok(match t.attr(attr) {
                    Some(v) => with_key(v, true),
                    None => default.to_string(),
                });
            }
            attr_files(d, t)
                .into_iter()
                .find(|(n, _)| n == attr)
                // These only exist when configured: always saved.
                .map(|(_, v)| with_key(v, true))
                .ok_or_else(|| TreeError::not_found(path))
        }
        _ => Err(TreeError::not_found(path)),
    }
}

pub(super) fn list(
    path: &MgmtPath,
    d: &dyn TargetDriver,
    t: &Target,
    rest: &[&str],
) -> Result<Vec<String>, TreeError> {
    match rest {
        [] => {
            let mut v: Vec<String> = ["enabled", "rel_tgt_id", "addr_method"]
                .into_iter()
                // SCST's copy manager target is never enabled and has no such file.
                .filter(|n| !(*n == "enabled" && t.driver == scst_core::COPY_MANAGER))
                .map(String::from)
                .collect();
            v.extend(d.target_params().iter().map(|(n, _)| n.to_string()));
            v.extend(attr_files(d, t).into_iter().map(|(n, _)| n));
            v.extend(["luns/", "ini_groups/", "sessions/", "statistics/"].map(String::from));
            Ok(v)
        }
        ["statistics"] => Ok(session::IO_COUNTERS.iter().map(|c| c.to_string()).collect()),
        ["luns", rest @ ..] => {
            let set = t.acl.lock().default_luns.clone();
            luns::list(path, &set, rest)
        }
        ["ini_groups", rest @ ..] => ini_group::list(path, t, rest),
        ["sessions", rest @ ..] => session::list(path, t, rest),
        _ => Err(TreeError::not_found(path)),
    }
}

pub(super) fn write(
    tree: &ScstTree,
    path: &MgmtPath,
    d: &dyn TargetDriver,
    t: &Target,
    rest: &[&str],
    value: &str,
) -> Result<(), TreeError> {
    let v = value.trim();
    match rest {
        ["enabled"] if t.driver == scst_core::COPY_MANAGER => Err(TreeError::not_found(path)),
        ["enabled"] => {
            d.set_target_enabled(t, bool01(path, value)?)
                .map_err(|e| core_error(path, e))?;
            log::info!("target {}: enabled={}", t.name, u8::from(t.enabled()));
            Ok(())
        }
        // SCST's "none assigned yet": scst-rs assigned one at creation and keeps it.
        ["rel_tgt_id"] if v == "0" => Ok(()),
        ["rel_tgt_id"] => {
            let id = parse_id(path, value)?;
            tree.scst
                .set_rel_tgt_id(t, id)
                .map_err(|e| core_error(path, e))
        }
        ["addr_method"] => {
            *t.addr_method.lock() =
                scst_core::driver::parse_addr_method(v).map_err(|e| core_error(path, e))?;
            Ok(())
        }
        ["luns", "mgmt"] => luns::write_mgmt(tree, path, t, None, value),
        ["ini_groups", rest @ ..] => ini_group::write(tree, path, t, rest, value),
        ["sessions", rest @ ..] => session::write(tree, path, t, rest, value),
        ["statistics", _] => Err(session::counter_is_read_only(path)),
        [attr] if param_default(d, attr).is_some() => {
            if v == ":default:" {
                set_single_attr(t, attr, None);
            } else {
                d.validate_target_attr(attr, v)
                    .map_err(|e| core_error_about(path, format!("target {}", t.name), e))?;
                set_single_attr(t, attr, Some(v));
            }
            log::info!("target {}: {attr} set (new sessions)", t.name);
            Ok(())
        }
        [attr] if is_instance_of_any(attr, d.target_dyn_attrs()) => Err(TreeError::invalid(
            path,
            format!(
                "{attr} is changed with add_target_attribute/del_target_attribute on \
                 targets/{}/mgmt",
                d.name()
            ),
        )),
        // It exists: writing it just is not possible yet.
        _ => refuse_write(tree, path),
    }
}

/// Replace every value of `name` in a target's attributes with `value` (None: remove).
fn set_single_attr(t: &Target, name: &str, value: Option<&str>) {
    let mut attrs = t.attrs.lock();
    attrs.retain(|(n, _)| n != name);
    if let Some(v) = value {
        attrs.push((name.to_string(), v.to_string()));
    }
}
