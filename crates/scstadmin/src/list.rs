//! The listing commands. As in SCST's scstadmin, a listing not narrowed by its options
//! lists everything: `-list_group` without `-driver`/`-target` shows every group of every
//! target, `-list_tgrp` without `-dev_group` every device group's target groups.

use anyhow::Result;
use scst_mgmt::apply::{dirs, files};
use scst_mgmt::protocol::strip_key;

use crate::args::Invocation;
use crate::session::{missing_message, Admin, Missing};

/// Run `inv` if it is a listing command; false when it is not one.
pub fn run(a: &mut Admin, inv: &Invocation) -> Result<bool> {
    let value = inv.value.as_deref();
    match inv.command.as_str() {
        "list_handler" => list_handlers(a, value)?,
        "list_device" => match value {
            Some(d) => print_attrs(a, &format!("devices/{d}"))?,
            None => list_handlers(a, None)?,
        },
        "list_driver" | "list_drivers" => {
            let drivers = owned(dirs(&a.list("targets")?));
            if let Some(d) = value.filter(|d| !drivers.iter().any(|x| x == d)) {
                return Err(Missing(missing_message(&["targets", d])).into());
            }
            say!("\tDriver");
            say!("\t{}", "-".repeat(width(&drivers, 6)));
            for d in drivers.iter().filter(|d| value.is_none_or(|v| v == *d)) {
                say!("\t{d}");
            }
        }
        "list_target" => match value {
            // A named target: its LUNs and groups, as SCST shows it.
            Some(t) => list_groups(
                a,
                inv.options.get("driver").map(String::as_str),
                Some(t),
                None,
            )?,
            None => list_targets(a, inv.options.get("driver").map(String::as_str))?,
        },
        "list_group" => list_groups(
            a,
            inv.options.get("driver").map(String::as_str),
            inv.options.get("target").map(String::as_str),
            value,
        )?,
        "list_sessions" => list_sessions(a)?,
        "list_dgrp" => {
            for dg in owned(dirs(&a.list("device_groups")?)) {
                if value.is_some_and(|v| v != dg) {
                    continue;
                }
                list_device_group(a, &dg)?;
            }
            if let Some(v) = value {
                a.list(&format!("device_groups/{v}"))?;
            }
        }
        "list_tgrp" => {
            let groups = match inv.options.get("dev_group") {
                Some(dg) => vec![dg.clone()],
                None => owned(dirs(&a.list("device_groups")?)),
            };
            for dg in groups {
                let base = format!("device_groups/{dg}/target_groups");
                for tg in owned(dirs(&a.list(&base)?)) {
                    if value.is_some_and(|v| v != tg) {
                        continue;
                    }
                    say!("Device Group: {dg}");
                    say!("Target Group: {tg}");
                    print_attrs(a, &format!("{base}/{tg}"))?;
                    say!("\tTargets");
                    for t in owned(dirs(&a.list(&format!("{base}/{tg}"))?)) {
                        say!("\t\t{t}");
                    }
                }
                if let Some(v) = value {
                    a.list(&format!("{base}/{v}"))?;
                }
            }
        }
        "list_scst_attr" => print_attrs(a, "")?,
        "list_hnd_attr" => {
            let h = inv.value()?;
            print_attrs(a, &format!("handlers/{h}"))?;
            let help = a.read(&format!("handlers/{h}/mgmt"))?;
            if let Some(p) = help
                .lines()
                .find_map(|l| l.strip_prefix("The following parameters available: "))
            {
                say!(
                    "\n\tDevice CREATE attributes available: {}",
                    p.trim_end_matches('.')
                );
            }
        }
        "list_dev_attr" => print_attrs(a, &format!("devices/{}", inv.value()?))?,
        "list_drv_attr" => print_attrs(a, &format!("targets/{}", inv.value()?))?,
        "list_tgt_attr" => print_attrs(a, &format!("targets/{}/{}", inv.driver()?, inv.value()?))?,
        "list_grp_attr" => print_attrs(
            a,
            &format!("{}/ini_groups/{}", inv.target_dir()?, inv.value()?),
        )?,
        "list_lun_attr" => print_attrs(a, &inv.lun_dir()?)?,
        "list_init_attr" => {
            // Initiator entries are names, without attributes of their own.
            let dir = format!(
                "{}/ini_groups/{}/initiators",
                inv.target_dir()?,
                inv.opt("group")?
            );
            let i = inv.value()?;
            if !a.exists(&format!("{dir}/{i}"))? {
                let path = format!("{dir}/{i}");
                let parts: Vec<&str> = path.split('/').collect();
                return Err(Missing(missing_message(&parts)).into());
            }
            print_table(Vec::new())?;
        }
        "list_dgrp_attr" => print_attrs(a, &format!("device_groups/{}", inv.value()?))?,
        "list_tgrp_attr" => print_attrs(
            a,
            &format!("{}/target_groups/{}", inv.dg_dir()?, inv.value()?),
        )?,
        "list_ttgt_attr" => print_attrs(a, &format!("{}/{}", inv.tg_dir()?, inv.value()?))?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn owned(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(str::to_string).collect()
}

/// The widest of `names`, at least `min` (SCST sizes its tables so).
fn width(names: &[String], min: usize) -> usize {
    names.iter().map(String::len).max().unwrap_or(0).max(min)
}

/// SCST's handler/device table: every handler (or `only`) with its devices, `-` for none.
fn list_handlers(a: &mut Admin, only: Option<&str>) -> Result<()> {
    let handlers = owned(dirs(&a.list("handlers")?));
    if let Some(h) = only.filter(|h| !handlers.iter().any(|x| x == h)) {
        return Err(Missing(missing_message(&["handlers", h])).into());
    }
    let mut rows = Vec::new();
    for h in handlers.iter().filter(|h| only.is_none_or(|o| o == *h)) {
        let mut devs = owned(dirs(&a.list(&format!("handlers/{h}"))?));
        if devs.is_empty() {
            devs.push("-".into());
        }
        rows.push((h.clone(), devs));
    }
    let hw = rows.iter().map(|(h, _)| h.len()).max().unwrap_or(0).max(7);
    let dw = rows
        .iter()
        .flat_map(|(_, d)| d.iter().map(String::len))
        .max()
        .unwrap_or(0)
        .max(6);
    say!("\t{:<hw$}     {:<dw$}", "Handler", "Device");
    say!("\t{}", "-".repeat(hw + dw + 5));
    for (h, devs) in rows {
        for (i, d) in devs.iter().enumerate() {
            let name = if i == 0 { h.as_str() } else { "" };
            say!("\t{name:<hw$}     {d}");
        }
    }
    Ok(())
}

/// SCST's driver/target table, of every driver or of `only`.
fn list_targets(a: &mut Admin, only: Option<&str>) -> Result<()> {
    let drivers = owned(dirs(&a.list("targets")?));
    if let Some(d) = only.filter(|d| !drivers.iter().any(|x| x == d)) {
        return Err(Missing(missing_message(&["targets", d])).into());
    }
    let mut rows = Vec::new();
    for drv in drivers.iter().filter(|d| only.is_none_or(|o| o == *d)) {
        rows.push((
            drv.clone(),
            owned(dirs(&a.list(&format!("targets/{drv}"))?)),
        ));
    }
    let dw = rows.iter().map(|(d, _)| d.len()).max().unwrap_or(0).max(6);
    let tw = rows
        .iter()
        .flat_map(|(_, t)| t.iter().map(String::len))
        .max()
        .unwrap_or(0)
        .max(6);
    say!("\t{:<dw$} {:<tw$}", "Driver", "Target");
    say!("\t{}", "-".repeat(dw + tw + 1));
    for (drv, targets) in rows {
        for (i, t) in targets.iter().enumerate() {
            let name = if i == 0 { drv.as_str() } else { "" };
            say!("\t{name:<dw$} {t}");
        }
    }
    Ok(())
}

/// SCST's `-list_group`/`-list_target t`: for every target matching `driver` and
/// `target` (all when not given), its own LUNs, then each group (or only `group`) with
/// its LUNs and initiators.
fn list_groups(
    a: &mut Admin,
    driver: Option<&str>,
    target: Option<&str>,
    group: Option<&str>,
) -> Result<()> {
    let mut found = false;
    for drv in owned(dirs(&a.list("targets")?)) {
        if driver.is_some_and(|d| d != drv) {
            continue;
        }
        for t in owned(dirs(&a.list(&format!("targets/{drv}"))?)) {
            if target.is_some_and(|x| x != t) {
                continue;
            }
            let base = format!("targets/{drv}/{t}");
            let groups = owned(dirs(&a.list(&format!("{base}/ini_groups"))?));
            if let Some(g) = group {
                if driver.is_some() && target.is_some() && !groups.iter().any(|x| x == g) {
                    let path = format!("{base}/ini_groups/{g}");
                    let parts: Vec<&str> = path.split('/').collect();
                    return Err(Missing(missing_message(&parts)).into());
                }
            }
            found = true;
            say!("Driver: {drv}");
            say!("Target: {t}\n");
            print_group(a, &base, None)?;
            say!("");
            for g in groups.iter().filter(|g| group.is_none_or(|x| x == *g)) {
                say!("Group: {g}\n");
                print_group(a, &base, Some(g))?;
                say!("\n");
            }
        }
    }
    if !found {
        let parts: Vec<&str> = match (driver, target) {
            (Some(d), Some(t)) => vec!["targets", d, t],
            (Some(d), None) => vec!["targets", d],
            (None, Some(t)) => return Err(Missing(format!("No such target '{t}' exists.")).into()),
            (None, None) => return Ok(()),
        };
        return Err(Missing(missing_message(&parts)).into());
    }
    Ok(())
}

/// The LUNs of a target (`group` None) or of one of its groups, with the group's
/// initiators, in SCST's layout.
fn print_group(a: &mut Admin, target_dir: &str, group: Option<&str>) -> Result<()> {
    let dir = match group {
        Some(g) => format!("{target_dir}/ini_groups/{g}"),
        None => target_dir.to_string(),
    };
    let mut luns = Vec::new();
    for n in owned(dirs(&a.list(&format!("{dir}/luns"))?)) {
        let dev = a.read(&format!("{dir}/luns/{n}/device"))?;
        luns.push((n, strip_key(&dev).0.to_string()));
    }
    luns.sort_by_key(|(n, _)| n.parse::<u64>().unwrap_or(u64::MAX));
    let inits = match group {
        Some(_) => owned(files(&a.list(&format!("{dir}/initiators"))?)),
        None => Vec::new(),
    };
    if luns.is_empty() && inits.is_empty() {
        match group {
            Some(g) => say!("Group '{g}' has no associated LUNs or initiators."),
            None => {
                let t = target_dir.trim_start_matches("targets/");
                say!("Driver/target '{t}' has no associated LUNs.")
            }
        }
        return Ok(());
    }
    say!("Assigned LUNs:\n");
    if luns.is_empty() {
        say!("\t(none)");
    } else {
        let dw = luns.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
        say!("\t{:<4} {:<dw$}", "LUN", "Device");
        say!("\t{}", "-".repeat(dw + 5));
        for (n, d) in &luns {
            say!("\t{n:<4} {d}");
        }
    }
    if group.is_some() {
        say!("\nAssigned Initiators:\n");
        if inits.is_empty() {
            say!("\t(none)");
        } else {
            say!("\tInitiator");
            say!("\t{}", "-".repeat(width(&inits, 9)));
            for i in &inits {
                say!("\t{i}");
            }
        }
    }
    Ok(())
}

/// Every target of every driver with its sessions, "(no sessions)" when it has none.
fn list_sessions(a: &mut Admin) -> Result<()> {
    for drv in owned(dirs(&a.list("targets")?)) {
        for t in owned(dirs(&a.list(&format!("targets/{drv}"))?)) {
            say!("Driver/Target: {drv}/{t}\n");
            let base = format!("targets/{drv}/{t}/sessions");
            let sessions = owned(dirs(&a.list(&base)?));
            for s in &sessions {
                say!("\tSession: {s}\n");
                print_session_dir(a, &format!("{base}/{s}"), "")?;
                say!("");
            }
            if sessions.is_empty() {
                say!("\t(no sessions)\n");
            }
        }
    }
    Ok(())
}

/// A session's attributes and counters, then its sub-directories (connections,
/// `lun<N>/`) the same way, as `<sub>/<attr>: <value>`.
fn print_session_dir(a: &mut Admin, dir: &str, prefix: &str) -> Result<()> {
    let entries = a.list(dir)?;
    for name in files(&entries).into_iter().filter(|n| *n != "force_close") {
        let v = a.read(&format!("{dir}/{name}"))?;
        say!("\t\t{prefix}{name}: {}", strip_key(&v).0.replace('\n', " "));
    }
    if prefix.is_empty() {
        // The latency tables are read on their own (docs/management.md), as in SCST.
        for sub in dirs(&entries).into_iter().filter(|s| *s != "latency") {
            print_session_dir(a, &format!("{dir}/{sub}"), &format!("{sub}/"))?;
        }
    }
    Ok(())
}

/// A device group: its devices and target groups with their targets.
fn list_device_group(a: &mut Admin, dg: &str) -> Result<()> {
    say!("Device Group: {dg}");
    say!("\tDevices");
    for d in owned(files(&a.list(&format!("device_groups/{dg}/devices"))?)) {
        say!("\t\t{d}");
    }
    say!("\tTarget Groups");
    let base = format!("device_groups/{dg}/target_groups");
    for tg in owned(dirs(&a.list(&base)?)) {
        say!("\t\t{tg}");
        for t in owned(dirs(&a.list(&format!("{base}/{tg}"))?)) {
            say!("\t\t\t{t}");
        }
    }
    Ok(())
}

/// Every attribute of `dir` in SCST's table: name, value (`<not set>` when empty),
/// whether it can be written, whether it is a key attribute (one `-write_config`
/// saves). SCST shows the non-key ones only with `-nonkey`; scst-rs always shows them.
pub fn print_attrs(a: &mut Admin, dir: &str) -> Result<()> {
    let entries = a.list(dir)?;
    let writable = Writable::of(a, dir)?;
    let mut rows = Vec::new();
    for name in owned(files(&entries)) {
        let raw = match a.read(&format!("{dir}/{name}")) {
            Ok(v) => v,
            Err(e) => format!("<{e}>"),
        };
        let (v, key) = strip_key(&raw);
        let v = match v.replace('\n', " ") {
            v if v.is_empty() => "<not set>".to_string(),
            v => v,
        };
        let w = if writable.check(&name) { "Yes" } else { "No" };
        rows.push((name, v, w, if key { "Yes" } else { "No" }));
    }
    print_table(rows)
}

/// SCST's attribute table of `rows` (name, value, writable, key), sorted by name.
fn print_table(mut rows: Vec<(String, String, &str, &str)>) -> Result<()> {
    rows.sort();
    let nw = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(9);
    let vw = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(5);
    say!(
        "\t{:<nw$}     {:<vw$}     {:<9}     KEY",
        "Attribute",
        "Value",
        "Writable"
    );
    say!("\t{}", "-".repeat(nw + vw + 27));
    if rows.is_empty() {
        say!("\t(none)");
    }
    for (name, v, w, key) in rows {
        say!("\t{name:<nw$}     {v:<vw$}     {w:<9}     {key}");
    }
    Ok(())
}

/// Which attributes of a directory can be written, from scst-mgmt's attribute tables.
enum Writable {
    Root,
    Handler(String),
    Device(String),
    Driver(String),
    Target(String),
    Group(String),
    Lun,
    DeviceGroup,
    TargetGroup,
    TargetGroupTarget,
    Unknown,
}

impl Writable {
    fn of(a: &mut Admin, dir: &str) -> Result<Writable> {
        let parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
        Ok(match parts.as_slice() {
            [] => Writable::Root,
            ["handlers", h] => Writable::Handler(h.to_string()),
            ["devices", d] => {
                let h = a.read(&format!("devices/{d}/handler"))?;
                Writable::Device(strip_key(&h).0.to_string())
            }
            ["targets", drv] => Writable::Driver(drv.to_string()),
            ["targets", drv, _] => Writable::Target(drv.to_string()),
            ["targets", drv, _, "ini_groups", _] => Writable::Group(drv.to_string()),
            [.., "luns", _] => Writable::Lun,
            ["device_groups", _] => Writable::DeviceGroup,
            ["device_groups", _, "target_groups", _] => Writable::TargetGroup,
            ["device_groups", _, "target_groups", _, _] => Writable::TargetGroupTarget,
            _ => Writable::Unknown,
        })
    }

    fn check(&self, name: &str) -> bool {
        use scst_mgmt::attrs::{self, Access};
        let info = match self {
            Writable::Root => attrs::root_attr(name),
            Writable::Handler(h) => attrs::handler_attr(h, name),
            Writable::Device(h) => attrs::device_attr(h, name),
            Writable::Driver(d) => attrs::driver_attr(d, name),
            Writable::Target(d) => attrs::target_attr(d, name),
            Writable::Group(d) => attrs::group_attr(d, name),
            Writable::Lun => attrs::lun_attr(name),
            Writable::DeviceGroup => attrs::device_group_attr(name),
            Writable::TargetGroup => attrs::target_group_attr(name),
            Writable::TargetGroupTarget => attrs::tg_target_attr(name),
            Writable::Unknown => None,
        };
        info.is_some_and(|i| i.access != Access::ReadOnly)
    }
}
