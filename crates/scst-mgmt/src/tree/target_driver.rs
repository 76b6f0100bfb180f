//! `targets/` and `targets/<driver>/` (docs/scst-reference.md 2.6, 6.6): one directory per
//! registered target driver, with its `mgmt` file, its own `enabled` if it has one, the
//! files the driver computes, its configured attributes and its targets.

use std::sync::Arc;

use scst_core::TargetDriver;

use super::{
    bool01, core_error, core_error_about, instance_names, is_instance_of_any, refuse_write, target,
    with_key, ScstTree,
};
use crate::command::{self, parse_command, MgmtCommand, MgmtFile};
use crate::protocol::{ErrorKind, MgmtPath, TreeError};

fn driver(tree: &ScstTree, name: &str) -> Option<Arc<dyn TargetDriver>> {
    tree.scst.target_driver(name)
}

pub(super) fn read(tree: &ScstTree, path: &MgmtPath, rest: &[&str]) -> Result<String, TreeError> {
    let [drv, rest @ ..] = rest else {
        return Err(TreeError::not_found(path));
    };
    let d = driver(tree, drv).ok_or_else(|| TreeError::not_found(path))?;
    match rest {
        ["mgmt"] => Ok(command::target_driver_help(
            d.add_target_params(),
            d.driver_dyn_attrs(),
            d.target_dyn_attrs(),
        )),
        ["enabled"] if d.enabled().is_some() => {
            let on = d.enabled() == Some(true);
            Ok(with_key(u8::from(on).to_string(), on))
        }
        [t, rest @ ..] if !rest.is_empty() => {
            let t = target::lookup(tree, path, d.name(), t)?;
            target::read(path, d.as_ref(), &t, rest)
        }
        [name] => {
            if let Some(f) = d.driver_files().into_iter().find(|f| f.name == *name) {
                return Ok(with_key(f.value, f.key));
            }
            instance_names(&d.driver_attrs())
                .into_iter()
                .find(|(n, _)| n == name)
                // Driver attributes only exist when configured: always saved.
                .map(|(_, v)| with_key(v, true))
                .ok_or_else(|| TreeError::not_found(path))
        }
        _ => Err(TreeError::not_found(path)),
    }
}

pub(super) fn list(
    tree: &ScstTree,
    path: &MgmtPath,
    rest: &[&str],
) -> Result<Vec<String>, TreeError> {
    let [drv, rest @ ..] = rest else {
        return Ok(tree
            .scst
            .target_drivers()
            .iter()
            .map(|d| format!("{}/", d.name()))
            .collect());
    };
    let d = driver(tree, drv).ok_or_else(|| TreeError::not_found(path))?;
    match rest {
        [] => {
            let mut v = vec!["mgmt".to_string()];
            if d.enabled().is_some() {
                v.push("enabled".to_string());
            }
            if crate::trace_level::Component::of_driver(d.name()).is_some() {
                v.push("trace_level".to_string());
            }
            v.extend(d.driver_files().into_iter().map(|f| f.name));
            v.extend(
                instance_names(&d.driver_attrs())
                    .into_iter()
                    .map(|(n, _)| n),
            );
            v.extend(
                tree.scst
                    .targets(d.name())
                    .iter()
                    .map(|t| format!("{}/", t.name)),
            );
            Ok(v)
        }
        [t, rest @ ..] => {
            let t = target::lookup(tree, path, d.name(), t)?;
            target::list(path, d.as_ref(), &t, rest)
        }
    }
}

pub(super) fn write(
    tree: &ScstTree,
    path: &MgmtPath,
    rest: &[&str],
    value: &str,
) -> Result<(), TreeError> {
    let [drv, rest @ ..] = rest else {
        return refuse_write(tree, path);
    };
    let Some(d) = driver(tree, drv) else {
        return refuse_write(tree, path);
    };
    let d = d.as_ref();
    match rest {
        ["mgmt"] => write_mgmt(tree, path, d, value),
        ["enabled"] if d.enabled().is_some() => d
            .set_enabled(bool01(path, value)?)
            .map_err(|e| core_error(path, e)),
        [name] if d.driver_files().iter().any(|f| f.name == *name) => {
            d.write_driver_file(name, value).map_err(|e| match e {
                // Read-only counters: the file exists, writing it is not possible.
                scst_core::MgmtError::NotSupported(_) => TreeError::not_supported(path),
                e => core_error(path, e),
            })
        }
        [attr] if tree.scst.target(d.name(), attr).is_none() => {
            write_driver_attr(tree, path, d, attr, value)
        }
        [t, rest @ ..] => {
            let t = target::lookup(tree, path, d.name(), t)?;
            target::write(tree, path, d, &t, rest, value)
        }
        [] => refuse_write(tree, path),
    }
}

fn write_mgmt(
    tree: &ScstTree,
    path: &MgmtPath,
    d: &dyn TargetDriver,
    value: &str,
) -> Result<(), TreeError> {
    let drv = d.name();
    let cmd =
        parse_command(MgmtFile::TargetDriver, value).map_err(|e| TreeError::invalid(path, e))?;
    let no_target = |target: &str| {
        TreeError::at(
            path,
            ErrorKind::NotFound,
            format!("target '{target}' does not exist"),
        )
    };
    match cmd {
        MgmtCommand::AddTarget { name, params } => {
            d.add_target(&tree.scst, &name, &params)
                .map_err(|e| core_error(path, e))?;
            log::info!("target {name} added");
            Ok(())
        }
        MgmtCommand::DelTarget { name } => d
            .del_target(&tree.scst, &name)
            .map_err(|e| core_error(path, e)),
        MgmtCommand::AddAttribute { attr, value } => {
            if !d.driver_dyn_attrs().contains(&attr.as_str()) {
                return Err(TreeError::invalid(
                    path,
                    format!(
                        "'{attr}' is not a dynamic driver attribute ({})",
                        d.driver_dyn_attrs().join(", ")
                    ),
                ));
            }
            let old = d.driver_attrs();
            if old.iter().any(|(n, v)| *n == attr && *v == value) {
                return Err(TreeError::at(
                    path,
                    ErrorKind::Exists,
                    format!("{attr} '{value}' already exists"),
                ));
            }
            let replace = d.single_instance(&attr);
            if replace {
                d.remove_driver_attr(&attr, None);
            }
            if let Err(e) = d.add_driver_attr(&attr, &value) {
                if replace {
                    restore(d, &old, &attr);
                }
                return Err(core_error(path, e));
            }
            log::info!("driver {drv}: {attr} added");
            Ok(())
        }
        MgmtCommand::DelAttribute { attr, value } => {
            if d.remove_driver_attr(&attr, Some(&value)) == 0 {
                return Err(TreeError::at(
                    path,
                    ErrorKind::NotFound,
                    format!("no {attr} '{value}' to delete"),
                ));
            }
            log::info!("driver {drv}: {attr} deleted");
            Ok(())
        }
        MgmtCommand::AddTargetAttribute {
            target,
            attr,
            value,
        } => {
            let t = tree
                .scst
                .target(drv, &target)
                .ok_or_else(|| no_target(&target))?;
            if !d.target_dyn_attrs().contains(&attr.as_str()) {
                return Err(TreeError::invalid(
                    path,
                    format!(
                        "'{attr}' is not a dynamic target attribute ({})",
                        d.target_dyn_attrs().join(", ")
                    ),
                ));
            }
            d.validate_target_attr(&attr, &value)
                .map_err(|e| core_error_about(path, format!("target {target}"), e))?;
            let mut attrs = t.attrs.lock();
            if attrs.iter().any(|(n, v)| *n == attr && *v == value) {
                return Err(TreeError::at(
                    path,
                    ErrorKind::Exists,
                    format!("target {target}: {attr} '{value}' already exists"),
                ));
            }
            if d.single_instance(&attr) {
                attrs.retain(|(n, _)| *n != attr);
            }
            attrs.push((attr.clone(), value));
            log::info!("target {target}: {attr} added");
            Ok(())
        }
        MgmtCommand::DelTargetAttribute {
            target,
            attr,
            value,
        } => {
            let t = tree
                .scst
                .target(drv, &target)
                .ok_or_else(|| no_target(&target))?;
            let mut attrs = t.attrs.lock();
            let before = attrs.len();
            attrs.retain(|(n, v)| !(*n == attr && *v == value));
            if attrs.len() == before {
                return Err(TreeError::at(
                    path,
                    ErrorKind::NotFound,
                    format!("target {target}: no {attr} '{value}' to delete"),
                ));
            }
            log::info!("target {target}: {attr} deleted");
            Ok(())
        }
        _ => Err(TreeError::not_supported(path)),
    }
}

/// Put back the instances of `attr` a failed replacement removed.
fn restore(d: &dyn TargetDriver, old: &[(String, String)], attr: &str) {
    for (n, v) in old.iter().filter(|(n, _)| n == attr) {
        let _ = d.add_driver_attr(n, v);
    }
}

/// A single-valued driver attribute, set by writing its file; empty removes it.
fn write_driver_attr(
    tree: &ScstTree,
    path: &MgmtPath,
    d: &dyn TargetDriver,
    attr: &str,
    value: &str,
) -> Result<(), TreeError> {
    if is_instance_of_any(attr, d.driver_dyn_attrs()) {
        return Err(TreeError::invalid(
            path,
            format!(
                "{attr} is changed with add_attribute/del_attribute on targets/{}/mgmt",
                d.name()
            ),
        ));
    }
    if !d.driver_params().contains(&attr) {
        return refuse_write(tree, path);
    }
    let value = value.trim();
    let old = d.driver_attrs();
    d.remove_driver_attr(attr, None);
    if value.is_empty() {
        return Ok(());
    }
    if let Err(e) = d.add_driver_attr(attr, value) {
        restore(d, &old, attr);
        return Err(core_error(path, e));
    }
    log::info!("driver {}: {attr} set", d.name());
    Ok(())
}
