//! The running configuration, read through the tree the way `-write_config` saves it:
//! what the apply engine compares a file with.

use crate::attrs::{self, AttrInfo};
use crate::conf::{
    Attr, DeviceConf, DeviceGroupConf, DeviceRefConf, DriverConf, GroupConf, HandlerConf,
    InitiatorConf, LunConf, ScstConf, TargetConf, TargetGroupConf, TargetRefConf,
};
use crate::protocol::{strip_key, ErrorKind, TreeError};

use super::TreeAccess;

/// Subdirectory names (without their `/`) of a listing.
pub fn dirs(entries: &[String]) -> Vec<&str> {
    entries.iter().filter_map(|e| e.strip_suffix('/')).collect()
}

/// File names (attributes, mgmt files) of a listing.
pub fn files(entries: &[String]) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| !e.ends_with('/') && *e != "mgmt")
        .map(String::as_str)
        .collect()
}

/// The attributes of `dir` worth saving: key ones (all with `-nonkey`), minus `skip`.
pub fn saved_attrs(
    c: &mut impl TreeAccess,
    dir: &str,
    nonkey: bool,
    skip: &[&str],
) -> Result<Vec<Attr>, TreeError> {
    saved_attrs_where(c, dir, nonkey, skip, |_| true)
}

/// What `-write_config` saves of `dir`: key attributes, and with `-nonkey` the others a
/// configuration may set (`lookup` says which, from [`crate::attrs`]). As SCST's
/// scstadmin leaves out static attributes, read-only values and counters are not
/// saved, so that the file loads back as it was written.
fn config_attrs(
    c: &mut impl TreeAccess,
    dir: &str,
    nonkey: bool,
    skip: &[&str],
    lookup: impl Fn(&str) -> Option<AttrInfo>,
) -> Result<Vec<Attr>, TreeError> {
    saved_attrs_where(c, dir, nonkey, skip, |name| {
        let base = name.trim_end_matches(|ch: char| ch.is_ascii_digit());
        lookup(name)
            .or_else(|| lookup(base))
            .is_some_and(|a| a.configurable())
    })
}

fn saved_attrs_where(
    c: &mut impl TreeAccess,
    dir: &str,
    nonkey: bool,
    skip: &[&str],
    settable: impl Fn(&str) -> bool,
) -> Result<Vec<Attr>, TreeError> {
    let entries = c.list(dir)?;
    let mut out = Vec::new();
    for name in files(&entries) {
        if skip.contains(&name) {
            continue;
        }
        let raw = c.read(&format!("{dir}/{name}"))?;
        let (v, key) = strip_key(&raw);
        let v = crate::trace_level::saved_value(name, v);
        if key || (nonkey && settable(name)) {
            // Multi-instance attributes (`IncomingUser1`) are saved under their base name.
            let base = name.trim_end_matches(|ch: char| ch.is_ascii_digit());
            let base = if base.is_empty() { name } else { base };
            out.push(Attr::new(base, v));
        }
    }
    Ok(out)
}

fn read_luns(c: &mut impl TreeAccess, dir: &str) -> Result<Vec<LunConf>, TreeError> {
    let mut luns = Vec::new();
    for n in dirs(&c.list(dir)?) {
        let lun: u16 = n.parse().map_err(|_| {
            TreeError::new(
                ErrorKind::Internal,
                format!("{dir}: unexpected entry '{n}'"),
            )
        })?;
        let device = c.read(&format!("{dir}/{n}/device"))?;
        let ro = c.read(&format!("{dir}/{n}/read_only"))?;
        let mut attrs = Vec::new();
        if strip_key(&ro).0 == "1" {
            attrs.push(Attr::new("read_only", "1"));
        }
        luns.push(LunConf {
            lun,
            device: strip_key(&device).0.to_string(),
            attrs,
            line: 0,
        });
    }
    Ok(luns)
}

/// The running configuration through the read API, canonical order applied by the writer.
pub fn read_config(c: &mut impl TreeAccess, nonkey: bool) -> Result<ScstConf, TreeError> {
    let mut conf = ScstConf {
        attrs: config_attrs(c, "", nonkey, &["version"], attrs::root_attr)?,
        ..ScstConf::default()
    };
    for h in dirs(&c.list("handlers")?) {
        let hdir = format!("handlers/{h}");
        let entries = c.list(&hdir)?;
        let attrs = config_attrs(c, &hdir, nonkey, &["type"], |n| attrs::handler_attr(h, n))?;
        let mut devices = Vec::new();
        for d in dirs(&entries) {
            devices.push(DeviceConf {
                name: d.to_string(),
                attrs: config_attrs(
                    c,
                    &format!("devices/{d}"),
                    nonkey,
                    &["handler", "type"],
                    |n| attrs::device_attr(h, n),
                )?,
                line: 0,
            });
        }
        if !devices.is_empty() || !attrs.is_empty() {
            conf.handlers.push(HandlerConf {
                name: h.to_string(),
                attrs,
                devices,
                line: 0,
            });
        }
    }
    for drv in dirs(&c.list("targets")?) {
        let base = format!("targets/{drv}");
        let mut d = DriverConf {
            name: drv.to_string(),
            attrs: config_attrs(c, &base, nonkey, &[], |n| attrs::driver_attr(drv, n))?,
            targets: Vec::new(),
            line: 0,
        };
        for t in dirs(&c.list(&base)?) {
            let tdir = format!("{base}/{t}");
            let mut groups = Vec::new();
            for g in dirs(&c.list(&format!("{tdir}/ini_groups"))?) {
                let gdir = format!("{tdir}/ini_groups/{g}");
                let inits = c.list(&format!("{gdir}/initiators"))?;
                groups.push(GroupConf {
                    name: g.to_string(),
                    attrs: config_attrs(c, &gdir, nonkey, &[], |n| attrs::group_attr(drv, n))?,
                    luns: read_luns(c, &format!("{gdir}/luns"))?,
                    initiators: files(&inits)
                        .into_iter()
                        .map(|p| InitiatorConf {
                            pattern: p.to_string(),
                            line: 0,
                        })
                        .collect(),
                    line: 0,
                });
            }
            d.targets.push(TargetConf {
                name: t.to_string(),
                hw_target: false,
                attrs: config_attrs(c, &tdir, nonkey, &[], |n| attrs::target_attr(drv, n))?,
                luns: read_luns(c, &format!("{tdir}/luns"))?,
                groups,
                line: 0,
            });
        }
        conf.drivers.push(d);
    }
    for dg in dirs(&c.list("device_groups")?) {
        let dgdir = format!("device_groups/{dg}");
        let mut target_groups = Vec::new();
        for tg in dirs(&c.list(&format!("{dgdir}/target_groups"))?) {
            let tgdir = format!("{dgdir}/target_groups/{tg}");
            let mut targets = Vec::new();
            for t in dirs(&c.list(&tgdir)?) {
                targets.push(TargetRefConf {
                    name: t.to_string(),
                    attrs: config_attrs(
                        c,
                        &format!("{tgdir}/{t}"),
                        nonkey,
                        &[],
                        attrs::tg_target_attr,
                    )?,
                    line: 0,
                });
            }
            target_groups.push(TargetGroupConf {
                name: tg.to_string(),
                attrs: config_attrs(c, &tgdir, nonkey, &[], attrs::target_group_attr)?,
                targets,
                line: 0,
            });
        }
        conf.device_groups.push(DeviceGroupConf {
            name: dg.to_string(),
            attrs: Vec::new(),
            devices: files(&c.list(&format!("{dgdir}/devices"))?)
                .into_iter()
                .map(|d| DeviceRefConf {
                    name: d.to_string(),
                    line: 0,
                })
                .collect(),
            target_groups,
            line: 0,
        });
    }
    Ok(conf.canonical())
}
