//! Applying a parsed scst.conf to the core, in scstadmin's order (spec/scst.md 3.4):
//! devices, then targets with their LUNs and groups, then ALUA device groups, then
//! enabling targets and drivers.
//! Every error names the config line and the object.

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use scst_core::{AluaState, IniGroup, Scst};
use scst_mgmt::attrs;
use scst_mgmt::conf::{Attr, ScstConf};

use crate::mgmt_server::ScstTree;

/// Whether `value` is the default of an attribute scst-rs does not implement, which is
/// how it behaves anyway (validation refused any other value): nothing to apply.
fn in_effect_by_default(info: Option<attrs::AttrInfo>, value: &str) -> bool {
    info.is_some_and(|i| !i.implemented() && i.check_supported(value).is_ok())
}

/// The root `setup_id` (spec 2.3), 32 bits.
pub fn setup_id(conf: &ScstConf) -> u64 {
    conf.attrs
        .iter()
        .rev()
        .find(|a| a.name == "setup_id")
        .and_then(|a| attrs::parse_int(a.value.trim()))
        .map_or(0, |n| n as u64 & 0xffff_ffff)
}

/// The management tree over what [`apply_config`] built, with the start-up choices it
/// shows: `setup_id`, and the I/O pool's size (`io_threads`: `--io-threads`, which
/// overrides the configuration's `threads`).
pub fn management_tree(
    scst: &Arc<Scst>,
    iscsi: &Arc<scst_iscsi::IscsiDriver>,
    conf: &ScstConf,
    io_threads: Option<usize>,
) -> ScstTree {
    let chosen = io_threads.or_else(|| self::io_threads(conf));
    ScstTree::new(scst.clone(), iscsi.clone(), setup_id(conf))
        .with_io_threads(chosen.unwrap_or(DEFAULT_IO_THREADS), chosen.is_some())
}

/// SCST's fileio default thread count.
pub const DEFAULT_IO_THREADS: usize = 8;

/// The global I/O thread count the root `threads` attribute asks for, if any.
pub fn io_threads(conf: &ScstConf) -> Option<usize> {
    conf.attrs
        .iter()
        .rev()
        .find(|a| a.name == "threads")
        .and_then(|a| a.value.parse().ok())
        .filter(|n| *n > 0)
}

fn parse_num(a: &Attr, what: &str) -> Result<u64> {
    let v = a.value.trim();
    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    n.map_err(|_| anyhow!("line {}: {what}: '{}' is not a number", a.line, a.value))
}

fn parse_bool(a: &Attr, what: &str) -> Result<bool> {
    match a.value.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        v => bail!(
            "line {}: {what}: {} must be 0 or 1, not '{v}'",
            a.line,
            a.name
        ),
    }
}

/// Build devices and targets from `conf`. Returns the iSCSI target driver, configured
/// but not yet listening.
pub fn apply_config(scst: &Arc<Scst>, conf: &ScstConf) -> Result<Arc<scst_iscsi::IscsiDriver>> {
    scst_mgmt::validate(conf)?;
    let setup_id = setup_id(conf);
    for a in &conf.attrs {
        match a.name.as_str() {
            // Read by the caller: they size the I/O pool and name the installation.
            "setup_id" | "threads" => {}
            "async_lun_replace" => scst.set_async_lun_replace(parse_bool(a, "top level")?),
            name if in_effect_by_default(attrs::root_attr(name), &a.value) => {}
            // Validation refused what is not supported; anything else is a gap here.
            name => bail!("line {}: attribute {name} is not applied at start", a.line),
        }
    }

    for h in &conf.handlers {
        for a in &h.attrs {
            match a.name.as_str() {
                "pr_dump_dir" => {
                    let dir = a.value.trim();
                    if !dir.is_empty() && !dir.starts_with('/') {
                        bail!(
                            "line {}: HANDLER {}: pr_dump_dir must be an absolute path, not '{dir}'",
                            a.line,
                            h.name
                        );
                    }
                    scst.set_pr_dump_dir(&h.name, Some(dir.into()));
                }
                _ => log::debug!(
                    "handler {} attribute {} = {} accepted",
                    h.name,
                    a.name,
                    a.value
                ),
            }
        }
        for d in &h.devices {
            // pr_file_name is the core's (spec 2.5), the rest the dev handler's.
            let mut pr_file = None;
            let mut attrs: Vec<(String, String)> = Vec::new();
            for a in &d.attrs {
                match a.name.as_str() {
                    "pr_file_name" => {
                        let v = a.value.trim();
                        if !v.is_empty() && !v.starts_with('/') {
                            bail!(
                                "line {}: DEVICE {}: pr_file_name must be an absolute path, not '{v}'",
                                a.line,
                                d.name
                            );
                        }
                        // Empty means the default (spec 2.5).
                        pr_file = (!v.is_empty()).then(|| std::path::PathBuf::from(v));
                    }
                    name if in_effect_by_default(attrs::device_attr(&h.name, name), &a.value) => {}
                    _ => attrs.push((a.name.clone(), a.value.clone())),
                }
            }
            let dev = scst_vdisk::create_device(&h.name, &d.name, &attrs, setup_id)
                .map_err(|e| anyhow!("line {}: {e}", d.line))?;
            scst.add_device_with_pr_file(dev, pr_file)
                .map_err(|e| anyhow!("line {}: {e}", d.line))?;
        }
    }

    let iscsi = scst_iscsi::IscsiDriver::new(scst.clone());
    let mut enable_targets = Vec::new();
    let mut enable_driver = false;
    for drv in &conf.drivers {
        if drv.name != "iscsi" {
            bail!(
                "line {}: TARGET_DRIVER {}: only the iscsi target driver is supported",
                drv.line,
                drv.name
            );
        }
        for a in &drv.attrs {
            match a.name.as_str() {
                "enabled" => enable_driver = parse_bool(a, "TARGET_DRIVER iscsi")?,
                _ => iscsi
                    .set_driver_attr(&a.name, &a.value)
                    .map_err(|e| anyhow!("line {}: TARGET_DRIVER iscsi: {e}", a.line))?,
            }
        }
        for t in &drv.targets {
            let what = format!("TARGET {}", t.name);
            if t.hw_target {
                bail!(
                    "line {}: {what}: HW_TARGET is not possible with the iscsi driver",
                    t.line
                );
            }
            let rel = t.attrs.iter().rev().find(|a| a.name == "rel_tgt_id");
            let rel = match rel {
                Some(a) => {
                    let n = parse_num(a, &what)?;
                    Some(u16::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                        anyhow!("line {}: {what}: rel_tgt_id must be 1..65535", a.line)
                    })?)
                }
                None => None,
            };
            let target = scst
                .add_target("iscsi", &t.name, rel)
                .map_err(|e| anyhow!("line {}: {e}", t.line))?;
            for a in &t.attrs {
                match a.name.as_str() {
                    "rel_tgt_id" => {}
                    "enabled" => {
                        if parse_bool(a, &what)? {
                            enable_targets.push(target.clone());
                        }
                    }
                    "addr_method" => {
                        *target.addr_method.lock() = parse_addr_method(a, &what)?;
                    }
                    name if in_effect_by_default(attrs::target_attr("iscsi", name), &a.value) => {}
                    _ => {
                        scst_iscsi::validate_target_attr(&a.name, &a.value)
                            .map_err(|e| anyhow!("line {}: {what}: {e}", a.line))?;
                        target.attrs.lock().push((a.name.clone(), a.value.clone()));
                    }
                }
            }
            for l in &t.luns {
                let ro = lun_read_only(&l.attrs, &what)?;
                scst.add_lun(&target, None, l.lun as u64, &l.device, ro)
                    .map_err(|e| anyhow!("line {}: {what}: LUN {}: {e}", l.line, l.lun))?;
            }
            for g in &t.groups {
                let mut group = IniGroup {
                    name: g.name.clone(),
                    ..IniGroup::default()
                };
                for a in &g.attrs {
                    match a.name.as_str() {
                        "addr_method" => group.addr_method = Some(parse_addr_method(a, &what)?),
                        name if in_effect_by_default(
                            attrs::group_attr("iscsi", name),
                            &a.value,
                        ) => {}
                        name => bail!(
                            "line {}: {what}: GROUP {}: attribute {name} is not applied at start",
                            a.line,
                            g.name
                        ),
                    }
                }
                group.initiators = g.initiators.iter().map(|i| i.pattern.clone()).collect();
                target.acl.lock().groups.push(group);
                for l in &g.luns {
                    let ro = lun_read_only(&l.attrs, &what)?;
                    scst.add_lun(&target, Some(&g.name), l.lun as u64, &l.device, ro)
                        .map_err(|e| {
                            anyhow!(
                                "line {}: {what}: GROUP {}: LUN {}: {e}",
                                l.line,
                                g.name,
                                l.lun
                            )
                        })?;
                }
            }
        }
    }
    // Device groups reference devices and targets, and must be in place before
    // initiators can log in (spec 3.4).
    apply_device_groups(scst, conf)?;
    // ACLs first, then targets, then the driver (spec 2.6).
    for t in enable_targets {
        t.set_enabled(true);
    }
    iscsi.set_enabled(enable_driver);
    Ok(iscsi)
}

/// `DEVICE_GROUP` blocks (spec 3.2-3.3): devices, target groups with `group_id`,
/// `preferred` and `state`, and their local or remote `TARGET`s.
fn apply_device_groups(scst: &Scst, conf: &ScstConf) -> Result<()> {
    if let Some(a) = conf.alua.first() {
        bail!(
            "line {}: ALUA: attribute {} is not supported",
            a.line,
            a.name
        );
    }
    for dg in &conf.device_groups {
        let what = format!("DEVICE_GROUP {}", dg.name);
        if let Some(a) = dg.attrs.first() {
            bail!("line {}: {what}: unknown attribute '{}'", a.line, a.name);
        }
        scst.create_device_group(&dg.name)
            .map_err(|e| anyhow!("line {}: {e}", dg.line))?;
        for d in &dg.devices {
            scst.device_group_add_device(&dg.name, &d.name)
                .map_err(|e| anyhow!("line {}: {what}: {e}", d.line))?;
        }
        for tg in &dg.target_groups {
            let what = format!("{what}: TARGET_GROUP {}", tg.name);
            let group_id = tg
                .attrs
                .iter()
                .rev()
                .find(|a| a.name == "group_id")
                .ok_or_else(|| anyhow!("line {}: {what}: group_id is required", tg.line))?;
            let id = u16::try_from(parse_num(group_id, &what)?)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    anyhow!("line {}: {what}: group_id must be 1..65535", group_id.line)
                })?;
            scst.create_target_group(&dg.name, &tg.name, id)
                .map_err(|e| anyhow!("line {}: {e}", group_id.line))?;
            for a in &tg.attrs {
                let r = match a.name.as_str() {
                    "group_id" => Ok(()),
                    "preferred" => {
                        scst.set_target_group_preferred(&dg.name, &tg.name, parse_bool(a, &what)?)
                    }
                    "state" => AluaState::from_name(a.value.trim())
                        .and_then(|st| scst.set_target_group_state(&dg.name, &tg.name, st)),
                    other => bail!("line {}: {what}: unknown attribute '{other}'", a.line),
                };
                r.map_err(|e| anyhow!("line {}: {what}: {e}", a.line))?;
            }
            for t in &tg.targets {
                let mut rel = None;
                for a in &t.attrs {
                    match a.name.as_str() {
                        "rel_tgt_id" => {
                            rel = Some(
                                u16::try_from(parse_num(a, &what)?)
                                    .ok()
                                    .filter(|n| *n > 0)
                                    .ok_or_else(|| {
                                        anyhow!(
                                            "line {}: {what}: TARGET {}: rel_tgt_id must be \
                                             1..65535",
                                            a.line,
                                            t.name
                                        )
                                    })?,
                            )
                        }
                        other => bail!(
                            "line {}: {what}: TARGET {}: unknown attribute '{other}'",
                            a.line,
                            t.name
                        ),
                    }
                }
                scst.target_group_add_target(&dg.name, &tg.name, &t.name, rel)
                    .map_err(|e| anyhow!("line {}: {what}: {e}", t.line))?;
            }
        }
    }
    Ok(())
}

fn lun_read_only(attrs: &[Attr], what: &str) -> Result<bool> {
    let mut ro = false;
    for a in attrs {
        match a.name.as_str() {
            "read_only" => ro = parse_bool(a, what)?,
            other => bail!("line {}: {what}: unknown LUN attribute '{other}'", a.line),
        }
    }
    Ok(ro)
}

fn parse_addr_method(a: &Attr, what: &str) -> Result<scsi_wire::lun::AddrMethod> {
    scsi_wire::lun::AddrMethod::from_name(&a.value).ok_or_else(|| {
        anyhow!(
            "line {}: {what}: addr_method must be PERIPHERAL, FLAT or LUN, not '{}'",
            a.line,
            a.value
        )
    })
}
