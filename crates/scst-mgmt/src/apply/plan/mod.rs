//! Planning: the difference between an scst.conf and the running configuration as the
//! mgmt writes an administrator would type, in SCST's apply order (docs/scst-reference.md 3.4),
//! each with the write that undoes it; and executing them as one transaction.

use std::collections::{BTreeMap, BTreeSet};

use crate::attrs::{self, Access};
use crate::conf::{Attr, GroupConf, LunConf, ScstConf, TargetConf};
use crate::protocol::{strip_key, TreeError};

use super::live::{read_config, saved_attrs};
use super::{ApplyError, TreeAccess};

type Result<T> = std::result::Result<T, ApplyError>;

/// Stop planning: the file asks for what the running configuration cannot become.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err(ApplyError::Plan(format!($($arg)*)))
    };
}

// After the macro, which it uses.
mod alua;
mod compare;

/// One mgmt write (`path <- value`) and the write that undoes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub path: String,
    pub value: String,
    pub undo: Option<(String, String)>,
    /// The object (and scst.conf line, when the file asked for it) for error messages.
    pub what: String,
    /// For a device's creation: each creation parameter's scst.conf line, so that a
    /// failure naming one names its line. Creations are independent of each other: after
    /// one fails the others are still tried, so that one pass reports every bad device.
    pub creation: Option<Vec<(String, usize)>>,
}

impl Op {
    /// `what`, with the line of the creation parameter `error` is about when it names
    /// one (a handler reports "`<param> <value>: <reason>`" or "`<param>: <reason>`").
    fn blame(&self, error: &TreeError) -> String {
        let Some(params) = &self.creation else {
            return self.what.clone();
        };
        let named = |p: &str| {
            error.message.contains(&format!(": {p} ")) || error.message.contains(&format!(": {p}:"))
        };
        match params.iter().rev().find(|(p, _)| named(p)) {
            Some((_, line)) => {
                // `what` is "line N: DEVICE d"; the parameter's own line replaces N.
                let object = self.what.split_once(": ").map_or(&*self.what, |(_, o)| o);
                format!("{}{object}", at(*line))
            }
            None => self.what.clone(),
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <- {}", self.path, self.value)
    }
}

/// The operations, in apply order, and what the file asks for that is left alone.
#[derive(Debug, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub warnings: Vec<String>,
}

fn at(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

/// `k=v; k=v` for a mgmt command line.
fn params(attrs: &[Attr]) -> String {
    attrs
        .iter()
        .map(|a| format!("{}={}", a.name, a.value))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cmd(verb: &str, rest: &str) -> String {
    format!("{verb} {rest}").trim_end().to_string()
}

fn lun_ro(l: &LunConf) -> bool {
    l.attrs
        .iter()
        .any(|a| a.name == "read_only" && a.value == "1")
}

fn lun_add(l: &LunConf) -> String {
    let p = if lun_ro(l) { "read_only=1" } else { "" };
    cmd(&format!("add {} {}", l.device, l.lun), p)
}

/// Values per attribute name, in order (multi-instance attributes have several).
fn grouped<'a>(attrs: impl IntoIterator<Item = &'a Attr>) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in attrs {
        m.entry(a.name.clone()).or_default().push(a.value.clone());
    }
    m
}

/// Multi-value attributes changed through the driver's mgmt file (scst-reference 2.6).
const DRIVER_DYN_ATTRS: &[&str] = &["IncomingUser", "OutgoingUser"];
const TARGET_DYN_ATTRS: &[&str] = &["IncomingUser", "OutgoingUser", "allowed_portal"];

struct Planner<'c, T: TreeAccess> {
    c: &'c mut T,
    force: bool,
    plan: Plan,
    /// Devices the file gives other creation parameters: with -force they are deleted
    /// and created again (their LUNs and device-group membership with them).
    recreate: BTreeSet<String>,
}

impl<T: TreeAccess> Planner<'_, T> {
    fn op(&mut self, path: String, value: String, undo: Option<(String, String)>, what: String) {
        self.plan.ops.push(Op {
            path,
            value,
            undo,
            what,
            creation: None,
        });
    }

    /// A live attribute's value without its `[key]` marker, if the path exists.
    fn live(&mut self, path: &str) -> Option<String> {
        let v = self.c.read(path).ok()?;
        Some(crate::trace_level::saved_value(path, strip_key(&v).0).to_string())
    }

    /// Removal of a LUN that exists (undo re-adds it as it was).
    fn del_lun(&mut self, luns_mgmt: &str, l: &LunConf, what: &str) {
        self.op(
            luns_mgmt.to_string(),
            format!("del {}", l.lun),
            Some((luns_mgmt.to_string(), lun_add(l))),
            format!("{what}: LUN {}", l.lun),
        );
    }

    /// Removal of a live group: its initiators and LUNs, then the group. Lists are
    /// removed from the end so that undoing recreates them in their order.
    fn del_group(&mut self, tdir: &str, g: &GroupConf) {
        let gdir = format!("{tdir}/ini_groups/{}", g.name);
        let what = format!("{tdir}: GROUP {}", g.name);
        let imgmt = format!("{gdir}/initiators/mgmt");
        for i in g.initiators.iter().rev() {
            self.op(
                imgmt.clone(),
                format!("del {}", i.pattern),
                Some((imgmt.clone(), format!("add {}", i.pattern))),
                format!("{what}: INITIATOR {}", i.pattern),
            );
        }
        for l in g.luns.iter().rev() {
            self.del_lun(&format!("{gdir}/luns/mgmt"), l, &what);
        }
        let gm = format!("{tdir}/ini_groups/mgmt");
        self.op(
            gm.clone(),
            format!("del {}", g.name),
            Some((gm, format!("create {}", g.name))),
            what,
        );
    }

    /// With -force: remove what the live configuration has and the file lacks, and LUNs
    /// the file maps differently (re-added in the target phase).
    fn deletions(&mut self, file: &ScstConf, live: &ScstConf) -> Result<()> {
        self.device_group_deletions(file, live);
        for drv in &live.drivers {
            let fdrv = file.drivers.iter().find(|d| d.name == drv.name);
            // The copy manager is always there: a file without its block leaves it as
            // it is (SCST's own files always have one), and its target is never deleted.
            let copy_manager = drv.name == attrs::COPY_MANAGER;
            if copy_manager && fdrv.is_none() {
                continue;
            }
            // Driver attributes the file lacks (`enabled` is left as it is).
            let file_attrs = grouped(fdrv.map(|d| d.attrs.as_slice()).unwrap_or(&[]));
            let mgmt = format!("targets/{}/mgmt", drv.name);
            for (name, have) in grouped(&drv.attrs) {
                if name == "enabled" || file_attrs.contains_key(&name) {
                    continue;
                }
                let what = format!("TARGET_DRIVER {}: {name}", drv.name);
                if DRIVER_DYN_ATTRS.contains(&name.as_str()) {
                    for v in have.iter().rev() {
                        self.op(
                            mgmt.clone(),
                            format!("del_attribute {name} {v}"),
                            Some((mgmt.clone(), format!("add_attribute {name} {v}"))),
                            what.clone(),
                        );
                    }
                } else if let Some(v) = have.last() {
                    let path = format!("targets/{}/{name}", drv.name);
                    self.op(path.clone(), String::new(), Some((path, v.clone())), what);
                }
            }
            for t in drv.targets.iter().rev() {
                let tdir = format!("targets/{}/{}", drv.name, t.name);
                let ft = fdrv.and_then(|d| d.targets.iter().find(|x| x.name == t.name));
                let Some(ft) = ft else {
                    if !copy_manager {
                        self.del_target(&tdir, &drv.name, t);
                    }
                    continue;
                };
                for g in t.groups.iter().rev() {
                    let gdir = format!("{tdir}/ini_groups/{}", g.name);
                    let Some(fg) = ft.groups.iter().find(|x| x.name == g.name) else {
                        self.del_group(&tdir, g);
                        continue;
                    };
                    let what = format!("{tdir}: GROUP {}", g.name);
                    let imgmt = format!("{gdir}/initiators/mgmt");
                    for i in g.initiators.iter().rev() {
                        if !fg.initiators.iter().any(|x| x.pattern == i.pattern) {
                            self.op(
                                imgmt.clone(),
                                format!("del {}", i.pattern),
                                Some((imgmt.clone(), format!("add {}", i.pattern))),
                                format!("{what}: INITIATOR {}", i.pattern),
                            );
                        }
                    }
                    self.stale_luns(&g.luns, &fg.luns, &format!("{gdir}/luns/mgmt"), &what);
                }
                self.stale_luns(&t.luns, &ft.luns, &format!("{tdir}/luns/mgmt"), &tdir);
            }
        }
        for h in &live.handlers {
            for d in h.devices.iter().rev() {
                if file.devices().any(|(_, fd)| fd.name == d.name)
                    && !self.recreate.contains(&d.name)
                {
                    continue;
                }
                let mgmt = format!("handlers/{}/mgmt", h.name);
                self.op(
                    mgmt.clone(),
                    format!("del_device {}", d.name),
                    Some((
                        mgmt,
                        cmd(&format!("add_device {}", d.name), &params(&d.attrs)),
                    )),
                    format!("DEVICE {}", d.name),
                );
            }
        }
        Ok(())
    }

    /// Devices of both the file and the running scstd whose handler or creation-time
    /// (read-only) attributes differ: only deleting and re-creating changes those.
    fn changed_devices(&mut self, file: &ScstConf, live: &ScstConf) -> Result<()> {
        for (h, d) in file.devices() {
            let Some((lh, _)) = live.devices().find(|(_, ld)| ld.name == d.name) else {
                continue;
            };
            if lh.name != h.name {
                self.recreate.insert(d.name.clone());
                continue;
            }
            for (name, values) in grouped(&d.attrs) {
                let want = values.last().cloned().unwrap_or_default();
                // Only an attribute the device shows can be compared; one it does not
                // show is refused by the device phase as before.
                let Some(have) = self.live(&format!("devices/{}/{name}", d.name)) else {
                    continue;
                };
                if have == want {
                    continue;
                }
                let writable = attrs::device_attr(&h.name, &name)
                    .is_some_and(|i| i.access == Access::ReadWrite);
                if !writable {
                    self.recreate.insert(d.name.clone());
                }
            }
        }
        Ok(())
    }

    /// Live LUNs the file lacks or maps to another device or access.
    fn stale_luns(&mut self, live: &[LunConf], file: &[LunConf], mgmt: &str, what: &str) {
        for l in live.iter().rev() {
            let keep = !self.recreate.contains(&l.device)
                && file
                    .iter()
                    .any(|f| f.lun == l.lun && f.device == l.device && lun_ro(f) == lun_ro(l));
            if !keep {
                self.del_lun(mgmt, l, what);
            }
        }
    }

    fn del_target(&mut self, tdir: &str, driver: &str, t: &TargetConf) {
        let what = format!("TARGET {}", t.name);
        if t.attrs
            .iter()
            .any(|a| a.name == "enabled" && a.value == "1")
        {
            let p = format!("{tdir}/enabled");
            self.op(p.clone(), "0".into(), Some((p, "1".into())), what.clone());
        }
        for g in t.groups.iter().rev() {
            self.del_group(tdir, g);
        }
        for l in t.luns.iter().rev() {
            self.del_lun(&format!("{tdir}/luns/mgmt"), l, &what);
        }
        let mgmt = format!("targets/{driver}/mgmt");
        let attrs: Vec<Attr> = t
            .attrs
            .iter()
            .filter(|a| a.name != "enabled")
            .cloned()
            .collect();
        self.op(
            mgmt.clone(),
            format!("del_target {}", t.name),
            Some((
                mgmt,
                cmd(&format!("add_target {}", t.name), &params(&attrs)),
            )),
            what,
        );
    }

    /// Devices: open the new ones, set changed writable attributes of existing ones.
    fn devices(&mut self, file: &ScstConf, live: &ScstConf) -> Result<()> {
        for h in &file.handlers {
            for a in &h.attrs {
                let path = format!("handlers/{}/{}", h.name, a.name);
                let have = self.live(&path);
                if have.as_deref() == Some(a.value.as_str()) {
                    continue;
                }
                let writable = attrs::handler_attr(&h.name, &a.name)
                    .is_some_and(|i| i.access == Access::ReadWrite);
                match have {
                    Some(old) if writable => self.op(
                        path.clone(),
                        a.value.clone(),
                        Some((path, old)),
                        format!("{}HANDLER {}", at(a.line), h.name),
                    ),
                    _ => refuse!(
                        "{}HANDLER {}: attribute {} cannot be set on a running scstd",
                        at(a.line),
                        h.name,
                        a.name
                    ),
                }
            }
            for d in &h.devices {
                let what = format!("{}DEVICE {}", at(d.line), d.name);
                let existing = live
                    .devices()
                    .find(|(_, ld)| ld.name == d.name)
                    .filter(|_| !self.recreate.contains(&d.name));
                let Some((lh, _)) = existing else {
                    // Every attribute is a parameter: the dev handler's and the core's
                    // pr_file_name, which must be known before the PR state is loaded.
                    let mgmt = format!("handlers/{}/mgmt", h.name);
                    self.op(
                        mgmt.clone(),
                        cmd(&format!("add_device {}", d.name), &params(&d.attrs)),
                        Some((mgmt, format!("del_device {}", d.name))),
                        what.clone(),
                    );
                    if let Some(op) = self.plan.ops.last_mut() {
                        op.creation =
                            Some(d.attrs.iter().map(|a| (a.name.clone(), a.line)).collect());
                    }
                    continue;
                };
                if lh.name != h.name {
                    refuse!("{what}: is a {} device in the running scstd", lh.name);
                }
                for (name, values) in grouped(&d.attrs) {
                    let path = format!("devices/{}/{name}", d.name);
                    let want = values.last().cloned().unwrap_or_default();
                    let have = self.live(&path);
                    let info = attrs::device_attr(&h.name, &name);
                    // Values equal as values (`0x1` and `1`; blanks around text, which
                    // SCST pads `prod_rev_lvl` with) need no write.
                    let kind = info.map_or(attrs::ValueKind::Text, |i| i.kind);
                    if have
                        .as_deref()
                        .is_some_and(|h| attrs::same_value(kind, h, &want))
                    {
                        continue;
                    }
                    // Errors name the attribute's own line, not the DEVICE's.
                    let line = d
                        .attrs
                        .iter()
                        .rev()
                        .find(|a| a.name == name)
                        .map_or(d.line, |a| a.line);
                    let what = format!("{}DEVICE {}", at(line), d.name);
                    let writable = info.is_some_and(|i| i.access == Access::ReadWrite);
                    match have {
                        Some(old) if writable => {
                            self.op(path.clone(), want, Some((path, old)), what.clone())
                        }
                        have => refuse!(
                            "{what}: attribute {name} is '{}' in the running scstd, '{want}' in \
                             the file, and cannot be changed on an open device",
                            have.unwrap_or_default()
                        ),
                    }
                }
            }
        }
        Ok(())
    }

    fn luns(&mut self, file: &[LunConf], live: &[LunConf], mgmt: &str, what: &str) {
        for l in file {
            let lw = format!("{}{what}: LUN {}", at(l.line), l.lun);
            match live.iter().find(|x| x.lun == l.lun) {
                Some(x) if x.device == l.device && lun_ro(x) == lun_ro(l) => {}
                // With -force the deletion phase removed it.
                Some(x) if !self.force => self.plan.warnings.push(format!(
                    "{lw}: maps device {} in the running scstd; left alone (use -force)",
                    x.device
                )),
                _ => self.op(
                    mgmt.to_string(),
                    lun_add(l),
                    Some((mgmt.to_string(), format!("del {}", l.lun))),
                    lw,
                ),
            }
        }
    }

    /// Targets, their LUNs, groups and initiators; enabling comes later (returned).
    fn targets(&mut self, file: &ScstConf, live: &ScstConf) -> Result<(Vec<Op>, Vec<Op>)> {
        let mut enable_targets = Vec::new();
        let mut enable_drivers = Vec::new();
        for drv in &file.drivers {
            let dw = format!("{}TARGET_DRIVER {}", at(drv.line), drv.name);
            if !attrs::SUPPORTED_DRIVERS.contains(&drv.name.as_str()) {
                refuse!(
                    "{dw}: only the {} target drivers exist",
                    attrs::SUPPORTED_DRIVERS.join(" and ")
                );
            }
            let ldrv = live.drivers.iter().find(|d| d.name == drv.name);
            let live_drv_attrs = grouped(ldrv.map(|d| d.attrs.as_slice()).unwrap_or(&[]));
            let drv_mgmt = format!("targets/{}/mgmt", drv.name);
            for (name, want) in grouped(&drv.attrs) {
                let line = drv
                    .attrs
                    .iter()
                    .find(|a| a.name == name)
                    .map_or(0, |a| a.line);
                let aw = format!("{}TARGET_DRIVER {}: {name}", at(line), drv.name);
                let have = live_drv_attrs.get(&name).cloned().unwrap_or_default();
                if DRIVER_DYN_ATTRS.contains(&name.as_str()) {
                    self.dyn_attr_ops(&drv_mgmt, "", &name, &want, &have, &aw);
                    continue;
                }
                let path = format!("targets/{}/{name}", drv.name);
                let value = want.last().cloned().unwrap_or_default();
                let have = self.live(&path);
                // An empty value of what is not set (SCST's -nonkey `iSNSServer `) is
                // what the driver has already.
                if have.as_deref() == Some(value.as_str())
                    || (value.is_empty() && have.as_deref().is_none_or(str::is_empty))
                {
                    continue;
                }
                let op = Op {
                    path: path.clone(),
                    value,
                    undo: Some((path, have.unwrap_or_default())),
                    what: aw,
                    creation: None,
                };
                if name == "enabled" {
                    enable_drivers.push(op);
                } else {
                    self.plan.ops.push(op);
                }
            }
            for t in &drv.targets {
                // Nested objects name their own line: `tname` carries none.
                let tname = format!("TARGET {}", t.name);
                let tw = format!("{}{tname}", at(t.line));
                if t.hw_target {
                    refuse!("{tw}: HW_TARGET is not possible with the iscsi driver");
                }
                let tdir = format!("targets/{}/{}", drv.name, t.name);
                let lt = ldrv.and_then(|d| d.targets.iter().find(|x| x.name == t.name));
                let (empty_luns, empty_groups) = (Vec::new(), Vec::new());
                let (live_luns, live_groups) = match lt {
                    None => {
                        let (dynamic, attrs): (Vec<Attr>, Vec<Attr>) = t
                            .attrs
                            .iter()
                            .filter(|a| a.name != "enabled")
                            .cloned()
                            .partition(|a| TARGET_DYN_ATTRS.contains(&a.name.as_str()));
                        let mgmt = format!("targets/{}/mgmt", drv.name);
                        self.op(
                            mgmt.clone(),
                            cmd(&format!("add_target {}", t.name), &params(&attrs)),
                            Some((mgmt.clone(), format!("del_target {}", t.name))),
                            tw.clone(),
                        );
                        for (name, want) in grouped(&dynamic) {
                            let aw = format!("{tw}: {name}");
                            self.dyn_attr_ops(&mgmt, &t.name, &name, &want, &[], &aw);
                        }
                        (&empty_luns, &empty_groups)
                    }
                    Some(lt) => {
                        let live_attrs = grouped(&saved_attrs(self.c, &tdir, true, &[])?);
                        let key_attrs = grouped(&lt.attrs);
                        let mgmt = format!("targets/{}/mgmt", drv.name);
                        for (name, want) in grouped(&t.attrs) {
                            if name == "enabled" || live_attrs.get(&name) == Some(&want) {
                                continue;
                            }
                            // An empty value of an attribute the target does not have
                            // (SCST's -nonkey saves `comment` so) asks for nothing.
                            if !live_attrs.contains_key(&name) && want.iter().all(|v| v.is_empty())
                            {
                                continue;
                            }
                            let line = t
                                .attrs
                                .iter()
                                .find(|a| a.name == name)
                                .map_or(0, |a| a.line);
                            let aw = format!("{}TARGET {}", at(line), t.name);
                            if TARGET_DYN_ATTRS.contains(&name.as_str()) {
                                let have = key_attrs.get(&name).cloned().unwrap_or_default();
                                self.dyn_attr_ops(&mgmt, &t.name, &name, &want, &have, &aw);
                                continue;
                            }
                            let Some(old) = live_attrs.get(&name).and_then(|v| v.last()) else {
                                refuse!(
                                    "{aw}: attribute {name} cannot be set on an existing target"
                                );
                            };
                            // A parameter left at its default goes back to it on undo
                            // (instead of becoming a saved value).
                            let old = if key_attrs.contains_key(&name)
                                || matches!(name.as_str(), "rel_tgt_id" | "addr_method")
                            {
                                old.clone()
                            } else {
                                ":default:".to_string()
                            };
                            let path = format!("{tdir}/{name}");
                            self.op(
                                path.clone(),
                                want.last().cloned().unwrap_or_default(),
                                Some((path, old)),
                                aw,
                            );
                        }
                        (&lt.luns, &lt.groups)
                    }
                };
                self.luns(&t.luns, live_luns, &format!("{tdir}/luns/mgmt"), &tname);
                for g in &t.groups {
                    let gw = format!("{}TARGET {}: GROUP {}", at(g.line), t.name, g.name);
                    let gdir = format!("{tdir}/ini_groups/{}", g.name);
                    if let Some(a) = g.attrs.iter().find(|a| a.name != "addr_method") {
                        refuse!(
                            "{}{gw}: attribute {} cannot be set on a running scstd",
                            at(a.line),
                            a.name
                        );
                    }
                    let lg = live_groups.iter().find(|x| x.name == g.name);
                    if lg.is_none() {
                        let gm = format!("{tdir}/ini_groups/mgmt");
                        self.op(
                            gm.clone(),
                            format!("create {}", g.name),
                            Some((gm, format!("del {}", g.name))),
                            gw.clone(),
                        );
                    }
                    if let Some(a) = g.attrs.iter().rev().find(|a| a.name == "addr_method") {
                        let have = lg.and_then(|x| {
                            x.attrs
                                .iter()
                                .rev()
                                .find(|a| a.name == "addr_method")
                                .map(|a| a.value.clone())
                        });
                        if !have
                            .as_deref()
                            .is_some_and(|h| h.eq_ignore_ascii_case(&a.value))
                        {
                            let path = format!("{gdir}/addr_method");
                            let undo = have.or_else(|| lg.map(|_| "PERIPHERAL".to_string()));
                            self.op(
                                path.clone(),
                                a.value.clone(),
                                undo.map(|u| (path, u)),
                                gw.clone(),
                            );
                        }
                    }
                    let live_luns = lg.map(|x| x.luns.clone()).unwrap_or_default();
                    self.luns(&g.luns, &live_luns, &format!("{gdir}/luns/mgmt"), &gw);
                    let imgmt = format!("{gdir}/initiators/mgmt");
                    for i in &g.initiators {
                        if lg.is_some_and(|x| x.initiators.iter().any(|y| y.pattern == i.pattern)) {
                            continue;
                        }
                        self.op(
                            imgmt.clone(),
                            format!("add {}", i.pattern),
                            Some((imgmt.clone(), format!("del {}", i.pattern))),
                            format!("{}{gw}: INITIATOR {}", at(i.line), i.pattern),
                        );
                    }
                }
                if let Some(a) = t.attrs.iter().rev().find(|a| a.name == "enabled") {
                    let path = format!("{tdir}/enabled");
                    let have = if lt.is_some() {
                        self.live(&path).unwrap_or_else(|| "0".into())
                    } else {
                        "0".into()
                    };
                    if have != a.value {
                        enable_targets.push(Op {
                            path: path.clone(),
                            value: a.value.clone(),
                            undo: Some((path, have)),
                            what: format!("{}TARGET {}", at(a.line), t.name),
                            creation: None,
                        });
                    }
                }
            }
        }
        Ok((enable_targets, enable_drivers))
    }

    /// Add the values of multi-value attribute `name` the live side lacks (with -force,
    /// also delete the ones the file lacks) through the driver's mgmt file; `target`
    /// empty means the driver's own attribute. OutgoingUser has one value: adding
    /// replaces it.
    fn dyn_attr_ops(
        &mut self,
        mgmt: &str,
        target: &str,
        name: &str,
        want: &[String],
        have: &[String],
        what: &str,
    ) {
        let (add, del) = if target.is_empty() {
            ("add_attribute".to_string(), "del_attribute".to_string())
        } else {
            (
                format!("add_target_attribute {target}"),
                format!("del_target_attribute {target}"),
            )
        };
        let single = name == "OutgoingUser";
        if self.force && !single {
            for v in have.iter().rev().filter(|v| !want.contains(v)) {
                self.op(
                    mgmt.to_string(),
                    format!("{del} {name} {v}"),
                    Some((mgmt.to_string(), format!("{add} {name} {v}"))),
                    what.to_string(),
                );
            }
        }
        let want: Vec<&String> = if single {
            want.last().into_iter().collect()
        } else {
            want.iter().collect()
        };
        for v in want {
            if have.contains(v) {
                continue;
            }
            let undo = match have.last() {
                Some(old) if single => format!("{add} {name} {old}"),
                _ => format!("{del} {name} {v}"),
            };
            self.op(
                mgmt.to_string(),
                format!("{add} {name} {v}"),
                Some((mgmt.to_string(), undo)),
                what.to_string(),
            );
        }
    }

    fn root(&mut self, file: &ScstConf) -> Result<()> {
        for (name, values) in grouped(&file.attrs) {
            let want = values.last().cloned().unwrap_or_default();
            let line = file
                .attrs
                .iter()
                .rev()
                .find(|a| a.name == name)
                .map_or(0, |a| a.line);
            let have = self.live(&name);
            if have.as_deref() == Some(want.as_str()) || same_number(have.as_deref(), &want) {
                continue;
            }
            match have {
                // setup_id names the installation and threads sizes the I/O pool:
                // both are fixed while scstd runs.
                Some(old) if name != "setup_id" && name != "threads" => self.op(
                    name.clone(),
                    want,
                    Some((name, old)),
                    format!("{}{}", at(line), "root attribute"),
                ),
                _ => refuse!(
                    "{}attribute {name} cannot be changed on a running scstd",
                    at(line)
                ),
            }
        }
        Ok(())
    }
}

/// `0x1` and `1` are the same setup_id.
fn same_number(have: Option<&str>, want: &str) -> bool {
    match (have.and_then(attrs::parse_int), attrs::parse_int(want)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The operations turning the running configuration into `file`: additive, or with
/// `force` also removing what the file lacks. Only reads; errors name the file's line.
/// Attributes scst-rs lacks given at the default it behaves as anyway need no write.
pub fn plan(c: &mut impl TreeAccess, file: &ScstConf, force: bool) -> Result<Plan> {
    let (file, read_only_warnings) = compare::without_read_only(c, file);
    let file = &without_defaults_in_effect(&file);
    let live = read_config(c, false)?;
    let mut p = Planner {
        c,
        force,
        plan: Plan {
            ops: Vec::new(),
            warnings: read_only_warnings,
        },
        recreate: BTreeSet::new(),
    };
    if force {
        p.changed_devices(file, &live)?;
        p.deletions(file, &live)?;
    }
    p.devices(file, &live)?;
    // LUNs of re-created devices were removed with them: add them again.
    let mut after = live.clone();
    for t in after.drivers.iter_mut().flat_map(|d| d.targets.iter_mut()) {
        t.luns.retain(|l| !p.recreate.contains(&l.device));
        for g in &mut t.groups {
            g.luns.retain(|l| !p.recreate.contains(&l.device));
        }
    }
    let (enable_targets, enable_drivers) = p.targets(file, &after)?;
    p.device_groups(file, &after)?;
    p.plan.ops.extend(enable_targets);
    p.plan.ops.extend(enable_drivers);
    p.root(file)?;
    Ok(p.plan)
}

/// `file` without the attributes scst-rs does not implement whose value is the default
/// it behaves as ([`attrs::AttrSupport::DefaultOnly`]): they are in effect already; nor
/// a target's `rel_tgt_id 0`, which in SCST means "none chosen yet" (scst-rs assigns
/// one when the target is created and keeps it).
fn without_defaults_in_effect(file: &ScstConf) -> ScstConf {
    fn keep(list: &mut Vec<Attr>, lookup: impl Fn(&str) -> Option<attrs::AttrInfo>) {
        list.retain(|a| {
            lookup(&a.name).is_none_or(|i| i.implemented() || i.check_supported(&a.value).is_err())
        });
    }
    let mut f = file.clone();
    keep(&mut f.attrs, attrs::root_attr);
    for h in &mut f.handlers {
        keep(&mut h.attrs, |n| attrs::handler_attr(&h.name, n));
        for d in &mut h.devices {
            keep(&mut d.attrs, |n| attrs::device_attr(&h.name, n));
        }
    }
    for drv in &mut f.drivers {
        keep(&mut drv.attrs, |n| attrs::driver_attr(&drv.name, n));
        for t in &mut drv.targets {
            keep(&mut t.attrs, |n| attrs::target_attr(&drv.name, n));
            t.attrs.retain(|a| {
                !(a.name == "rel_tgt_id" && attrs::parse_int(a.value.trim()) == Some(0))
            });
            for g in &mut t.groups {
                keep(&mut g.attrs, |n| attrs::group_attr(&drv.name, n));
            }
        }
    }
    f
}

/// Apply `ops` in order; on a failure undo the applied ones in reverse order and return
/// an error naming the failing object (and every other device whose creation failed).
pub fn execute(c: &mut impl TreeAccess, ops: &[Op]) -> Result<()> {
    let mut applied: Vec<&Op> = Vec::new();
    let mut failed: Vec<(String, TreeError)> = Vec::new();
    for op in ops {
        // After a failure only the other devices' creations are tried, for their errors.
        if !failed.is_empty() && op.creation.is_none() {
            continue;
        }
        match c.write(&op.path, &op.value) {
            Ok(()) => applied.push(op),
            Err(error) => failed.push((op.blame(&error), error)),
        }
    }
    let mut failed = failed.into_iter();
    let Some((what, error)) = failed.next() else {
        return Ok(());
    };
    let mut undo_failures = Vec::new();
    for done in applied.iter().rev() {
        if let Some((p, v)) = &done.undo {
            if let Err(ue) = c.write(p, v) {
                undo_failures.push(format!("undo {p} <- {v}: {ue}"));
            }
        }
    }
    Err(ApplyError::Write {
        what,
        error,
        also: failed.map(|(what, e)| format!("{what}: {e}")).collect(),
        applied: applied.len(),
        undo_failures,
    })
}
