//! Semantic checks of a parsed scst.conf against what scst-rs supports ([`crate::attrs`]).

use std::collections::HashMap;

use super::ast::*;
use super::ConfError;
use crate::attrs::{self, Access, AttrInfo, Support, ValueKind};

/// First problem of [`problems`], if any.
pub fn validate(conf: &ScstConf) -> Result<(), ConfError> {
    match problems(conf).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every problem found, in file order per section, each with its own line: unknown or
/// unsupported handlers and drivers, unknown, write-only, not supported or repeated
/// attributes, malformed values, LUNs and device groups naming devices no HANDLER
/// defines, a device in two device groups, enabled targets sharing a `rel_tgt_id`, and
/// what the copy manager does not take. Read-only attributes are no problem: as SCST's
/// scstadmin does, applying the file compares them with the running values and warns
/// about a difference (see `apply::plan`).
pub fn problems(conf: &ScstConf) -> Vec<ConfError> {
    let mut out = Vec::new();
    check_attrs(&conf.attrs, attrs::root_attr, "top level", &mut out);

    // name -> line of definition; devices of unsupported handlers count as defined so that
    // one bad HANDLER does not also flag every LUN using its devices.
    let devices: HashMap<&str, usize> = conf
        .devices()
        .map(|(_, d)| (d.name.as_str(), d.line))
        .collect();

    for h in &conf.handlers {
        check_handler(h, &mut out);
    }
    // rel_tgt_id (normalised, so `1` and `0x1` clash) -> (target, line) of enabled targets.
    let mut rel_tgt_ids: HashMap<String, (&str, usize)> = HashMap::new();
    for drv in &conf.drivers {
        match attrs::driver_support(&drv.name) {
            Support::Supported => {}
            support => {
                out.push(unsupported("TARGET_DRIVER", &drv.name, drv.line, support));
                continue;
            }
        }
        let ctx = format!("TARGET_DRIVER {}", drv.name);
        check_attrs(
            &drv.attrs,
            |n| attrs::driver_attr(&drv.name, n),
            &ctx,
            &mut out,
        );
        for t in &drv.targets {
            check_target(&drv.name, t, &devices, &mut out);
            let enabled = t
                .attrs
                .iter()
                .any(|a| a.name == "enabled" && a.value == "1");
            let rel = t.attrs.iter().rev().find(|a| a.name == "rel_tgt_id");
            // 0 asks for no particular id (assigned automatically).
            let rel = rel.filter(|a| attrs::parse_int(&a.value) != Some(0));
            if let (true, Some(rel)) = (enabled, rel) {
                let id = attrs::parse_int(&rel.value).map_or(rel.value.clone(), |n| n.to_string());
                if let Some((other, line)) = rel_tgt_ids.get(&id) {
                    out.push(ConfError::new(
                        rel.line,
                        format!(
                            "TARGET {} ({}): rel_tgt_id {} is already used by TARGET {other} \
                             (line {line}); enabled targets need distinct ids",
                            t.name, drv.name, rel.value
                        ),
                    ));
                } else {
                    rel_tgt_ids.insert(id, (&t.name, t.line));
                }
            }
        }
    }

    check_attrs(&conf.alua, attrs::alua_attr, "ALUA", &mut out);
    // A device may be in at most one device group.
    let mut grouped: HashMap<&str, (&str, usize)> = HashMap::new();
    for dg in &conf.device_groups {
        let ctx = format!("DEVICE_GROUP {}", dg.name);
        check_attrs(&dg.attrs, attrs::device_group_attr, &ctx, &mut out);
        for d in &dg.devices {
            if !devices.contains_key(d.name.as_str()) {
                out.push(ConfError::new(
                    d.line,
                    format!("{ctx}: DEVICE {} is not defined in any HANDLER", d.name),
                ));
            }
            if let Some((other, line)) = grouped.get(d.name.as_str()) {
                out.push(ConfError::new(
                    d.line,
                    format!(
                        "{ctx}: DEVICE {} is already in DEVICE_GROUP {other} (line {line}); \
                         a device may be in at most one device group",
                        d.name
                    ),
                ));
            } else {
                grouped.insert(&d.name, (&dg.name, d.line));
            }
        }
        for tg in &dg.target_groups {
            let tctx = format!("TARGET_GROUP {} of {ctx}", tg.name);
            check_attrs(&tg.attrs, attrs::target_group_attr, &tctx, &mut out);
            for t in &tg.targets {
                let ttctx = format!("TARGET {} of {tctx}", t.name);
                check_attrs(&t.attrs, attrs::tg_target_attr, &ttctx, &mut out);
            }
        }
    }
    out
}

fn unsupported(kind: &str, name: &str, line: usize, support: Support) -> ConfError {
    let supported = match kind {
        "HANDLER" => attrs::SUPPORTED_HANDLERS.join(", "),
        _ => attrs::SUPPORTED_DRIVERS.join(", "),
    };
    let what = match support {
        Support::NotSupported => format!("{kind} {name} is not supported by scst-rs"),
        _ => format!("unknown {kind} '{name}'"),
    };
    ConfError::new(line, format!("{what} (supported: {supported})"))
}

fn check_handler(h: &HandlerConf, out: &mut Vec<ConfError>) {
    match attrs::handler_support(&h.name) {
        Support::Supported => {}
        support => {
            out.push(unsupported("HANDLER", &h.name, h.line, support));
            return;
        }
    }
    let ctx = format!("HANDLER {}", h.name);
    check_attrs(&h.attrs, |n| attrs::handler_attr(&h.name, n), &ctx, out);
    for d in &h.devices {
        let dctx = format!("DEVICE {} ({})", d.name, h.name);
        check_attrs(&d.attrs, |n| attrs::device_attr(&h.name, n), &dctx, out);
    }
}

fn check_target(
    driver: &str,
    t: &TargetConf,
    devices: &HashMap<&str, usize>,
    out: &mut Vec<ConfError>,
) {
    let ctx = format!("TARGET {} ({driver})", t.name);
    if driver == attrs::COPY_MANAGER {
        check_copy_manager_target(t, &ctx, out);
    }
    if t.hw_target && driver == "iscsi" {
        out.push(ConfError::new(
            t.line,
            format!("{ctx}: HW_TARGET is not valid, iscsi targets are virtual"),
        ));
    }
    check_attrs(&t.attrs, |n| attrs::target_attr(driver, n), &ctx, out);
    check_luns(&t.luns, devices, &ctx, out);
    for g in &t.groups {
        let gctx = format!("GROUP {} of {ctx}", g.name);
        check_attrs(&g.attrs, |n| attrs::group_attr(driver, n), &gctx, out);
        check_luns(&g.luns, devices, &gctx, out);
    }
}

/// SCST's copy manager has one target, never has security groups and refuses
/// read-only LUNs (scst_copy_mgr.c).
fn check_copy_manager_target(t: &TargetConf, ctx: &str, out: &mut Vec<ConfError>) {
    if t.name != attrs::COPY_MANAGER_TGT {
        out.push(ConfError::new(
            t.line,
            format!(
                "{ctx}: the copy manager has one target, {}; it cannot have others",
                attrs::COPY_MANAGER_TGT
            ),
        ));
    }
    if t.hw_target {
        out.push(ConfError::new(
            t.line,
            format!("{ctx}: HW_TARGET is not valid for the copy manager"),
        ));
    }
    for g in &t.groups {
        out.push(ConfError::new(
            g.line,
            format!(
                "{ctx}: GROUP {}: the copy manager does not support security groups",
                g.name
            ),
        ));
    }
    for l in &t.luns {
        if let Some(ro) = l
            .attrs
            .iter()
            .find(|a| a.name == "read_only" && a.value == "1")
        {
            out.push(ConfError::new(
                ro.line,
                format!(
                    "LUN {} of {ctx}: the copy manager does not support read-only LUNs",
                    l.lun
                ),
            ));
        }
    }
}

fn check_luns(
    luns: &[LunConf],
    devices: &HashMap<&str, usize>,
    ctx: &str,
    out: &mut Vec<ConfError>,
) {
    for l in luns {
        let lctx = format!("LUN {} of {ctx}", l.lun);
        if !devices.contains_key(l.device.as_str()) {
            out.push(ConfError::new(
                l.line,
                format!("{lctx}: device {} is not defined in any HANDLER", l.device),
            ));
        }
        check_attrs(&l.attrs, attrs::lun_attr, &lctx, out);
    }
}

/// Look an attribute up, also as an instance `NameN` of a multi-instance attribute `Name`
/// (the sysfs spelling, which people copy into configs).
fn resolve(name: &str, lookup: &impl Fn(&str) -> Option<AttrInfo>) -> Option<AttrInfo> {
    lookup(name).or_else(|| {
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
        if base.len() < name.len() {
            lookup(base).filter(|a| a.multi)
        } else {
            None
        }
    })
}

fn check_attrs(
    list: &[Attr],
    lookup: impl Fn(&str) -> Option<AttrInfo>,
    ctx: &str,
    out: &mut Vec<ConfError>,
) {
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    for a in list {
        let Some(info) = resolve(&a.name, &lookup) else {
            out.push(ConfError::new(
                a.line,
                format!("{ctx}: unknown attribute '{}'", a.name),
            ));
            continue;
        };
        if info.access == Access::WriteOnly {
            out.push(ConfError::new(
                a.line,
                format!("{ctx}: attribute '{}' is an action, not a setting", a.name),
            ));
            continue;
        }
        if !info.configurable() {
            // Read-only: compared with the running value when the file is applied.
            continue;
        }
        if let Err(why) = info.check_value(&a.value) {
            // A CHAP account's value holds its secret: name the user, never the secret.
            let shown = match info.kind {
                ValueKind::ChapAccount => match a.value.split_whitespace().next() {
                    Some(user) => format!("for user '{user}'"),
                    None => "(empty)".to_string(),
                },
                _ => format!("value '{}'", a.value),
            };
            out.push(ConfError::new(
                a.line,
                format!("{ctx}: attribute '{}' {shown} {why}", a.name),
            ));
        } else if let Err(why) = info.check_supported(&a.value) {
            out.push(ConfError::new(
                a.line,
                format!("{ctx}: attribute '{}' {why}", a.name),
            ));
        }
        if !info.multi {
            if let Some(first) = first_line.get(info.name) {
                out.push(ConfError::new(
                    a.line,
                    format!(
                        "{ctx}: attribute '{}' given more than once (first at line {first}); \
                         only one value is allowed",
                        a.name
                    ),
                ));
            } else {
                first_line.insert(info.name, a.line);
            }
        }
    }
}
