//! `-config`, `-check_config` and `-clear_config` (spec/scst.md 3.4): the difference
//! between an scst.conf and the running configuration as a list of mgmt writes in SCST's
//! apply order, each with the write that undoes it, applied as one transaction.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use scst_mgmt::attrs::{self, Access};
use scst_mgmt::conf::{Attr, GroupConf, LunConf, ScstConf, TargetConf};
use scst_mgmt::protocol::strip_key;
use scst_mgmt::Client;

use crate::{read_config, saved_attrs};

/// One mgmt write (`path <- value`) and the write that undoes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub path: String,
    pub value: String,
    pub undo: Option<(String, String)>,
    /// The object (and scst.conf line, when the file asked for it) for error messages.
    pub what: String,
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

/// Read and check a whole scst.conf; errors name the line.
pub fn load(file: &str) -> Result<ScstConf> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("cannot read {file}: {e}"))?;
    let conf = scst_mgmt::conf::parse(&text).map_err(|e| anyhow!("{file}: {e}"))?;
    let problems = scst_mgmt::conf::problems(&conf);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("{file}: {p}")).collect();
        bail!("{}", list.join("\n"));
    }
    Ok(conf)
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

struct Planner<'c> {
    c: &'c mut Client,
    force: bool,
    plan: Plan,
}

impl Planner<'_> {
    fn op(&mut self, path: String, value: String, undo: Option<(String, String)>, what: String) {
        self.plan.ops.push(Op {
            path,
            value,
            undo,
            what,
        });
    }

    /// A live attribute's value without its `[key]` marker, if the path exists.
    fn live(&mut self, path: &str) -> Option<String> {
        self.c.read(path).ok().map(|v| strip_key(&v).0.to_string())
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
        for drv in &live.drivers {
            let fdrv = file.drivers.iter().find(|d| d.name == drv.name);
            for t in drv.targets.iter().rev() {
                let tdir = format!("targets/{}/{}", drv.name, t.name);
                let ft = fdrv.and_then(|d| d.targets.iter().find(|x| x.name == t.name));
                let Some(ft) = ft else {
                    self.del_target(&tdir, &drv.name, t);
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
                if file.devices().any(|(_, fd)| fd.name == d.name) {
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

    /// Live LUNs the file lacks or maps to another device or access.
    fn stale_luns(&mut self, live: &[LunConf], file: &[LunConf], mgmt: &str, what: &str) {
        for l in live.iter().rev() {
            let keep = file
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
                if self.live(&path).as_deref() != Some(a.value.as_str()) {
                    bail!(
                        "{}HANDLER {}: attribute {} cannot be set on a running scstd",
                        at(a.line),
                        h.name,
                        a.name
                    );
                }
            }
            for d in &h.devices {
                let what = format!("{}DEVICE {}", at(d.line), d.name);
                let Some((lh, _)) = live.devices().find(|(_, ld)| ld.name == d.name) else {
                    let (pr, create): (Vec<Attr>, Vec<Attr>) = d
                        .attrs
                        .iter()
                        .cloned()
                        .partition(|a| a.name == "pr_file_name");
                    let mgmt = format!("handlers/{}/mgmt", h.name);
                    self.op(
                        mgmt.clone(),
                        cmd(&format!("add_device {}", d.name), &params(&create)),
                        Some((mgmt, format!("del_device {}", d.name))),
                        what.clone(),
                    );
                    for a in pr {
                        self.op(
                            format!("devices/{}/{}", d.name, a.name),
                            a.value.clone(),
                            None,
                            what.clone(),
                        );
                    }
                    continue;
                };
                if lh.name != h.name {
                    bail!("{what}: is a {} device in the running scstd", lh.name);
                }
                for (name, values) in grouped(&d.attrs) {
                    let path = format!("devices/{}/{name}", d.name);
                    let want = values.last().cloned().unwrap_or_default();
                    let have = self.live(&path);
                    if have.as_deref() == Some(want.as_str()) {
                        continue;
                    }
                    let writable = attrs::device_attr(&h.name, &name)
                        .is_some_and(|i| i.access == Access::ReadWrite);
                    match have {
                        Some(old) if writable => {
                            self.op(path.clone(), want, Some((path, old)), what.clone())
                        }
                        have => bail!(
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
            if drv.name != "iscsi" {
                bail!("{dw}: only the iscsi target driver exists");
            }
            let ldrv = live.drivers.iter().find(|d| d.name == drv.name);
            for a in &drv.attrs {
                let path = format!("targets/{}/{}", drv.name, a.name);
                let have = self.live(&path);
                if have.as_deref() == Some(a.value.as_str()) {
                    continue;
                }
                if a.name != "enabled" {
                    bail!(
                        "{}TARGET_DRIVER {}: attribute {} cannot be set on a running scstd",
                        at(a.line),
                        drv.name,
                        a.name
                    );
                }
                enable_drivers.push(Op {
                    path: path.clone(),
                    value: a.value.clone(),
                    undo: have.map(|h| (path, h)),
                    what: dw.clone(),
                });
            }
            for t in &drv.targets {
                let tw = format!("{}TARGET {}", at(t.line), t.name);
                if t.hw_target {
                    bail!("{tw}: HW_TARGET is not possible with the iscsi driver");
                }
                let tdir = format!("targets/{}/{}", drv.name, t.name);
                let lt = ldrv.and_then(|d| d.targets.iter().find(|x| x.name == t.name));
                let (empty_luns, empty_groups) = (Vec::new(), Vec::new());
                let (live_luns, live_groups) = match lt {
                    None => {
                        let attrs: Vec<Attr> = t
                            .attrs
                            .iter()
                            .filter(|a| a.name != "enabled")
                            .cloned()
                            .collect();
                        let mgmt = format!("targets/{}/mgmt", drv.name);
                        self.op(
                            mgmt.clone(),
                            cmd(&format!("add_target {}", t.name), &params(&attrs)),
                            Some((mgmt, format!("del_target {}", t.name))),
                            tw.clone(),
                        );
                        (&empty_luns, &empty_groups)
                    }
                    Some(lt) => {
                        let live_attrs = grouped(&saved_attrs(self.c, &tdir, true, &[])?);
                        for (name, want) in grouped(&t.attrs) {
                            if name == "enabled" || live_attrs.get(&name) == Some(&want) {
                                continue;
                            }
                            let line = t
                                .attrs
                                .iter()
                                .find(|a| a.name == name)
                                .map_or(0, |a| a.line);
                            let old = live_attrs.get(&name).and_then(|v| v.last()).cloned();
                            match (name.as_str(), old) {
                                ("rel_tgt_id", Some(old)) => {
                                    let path = format!("{tdir}/rel_tgt_id");
                                    self.op(
                                        path.clone(),
                                        want.last().cloned().unwrap_or_default(),
                                        Some((path, old)),
                                        format!("{}TARGET {}", at(line), t.name),
                                    );
                                }
                                _ => bail!(
                                    "{}TARGET {}: attribute {name} cannot be changed on an \
                                     existing target",
                                    at(line),
                                    t.name
                                ),
                            }
                        }
                        (&lt.luns, &lt.groups)
                    }
                };
                self.luns(&t.luns, live_luns, &format!("{tdir}/luns/mgmt"), &tw);
                for g in &t.groups {
                    let gw = format!("{}TARGET {}: GROUP {}", at(g.line), t.name, g.name);
                    let gdir = format!("{tdir}/ini_groups/{}", g.name);
                    if let Some(a) = g.attrs.first() {
                        bail!(
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
                        });
                    }
                }
            }
        }
        Ok((enable_targets, enable_drivers))
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
                Some(old) if name != "setup_id" => self.op(
                    name.clone(),
                    want,
                    Some((name, old)),
                    format!("{}{}", at(line), "root attribute"),
                ),
                _ => bail!(
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
pub fn plan(c: &mut Client, file: &ScstConf, force: bool) -> Result<Plan> {
    let live = read_config(c, false)?;
    let mut p = Planner {
        c,
        force,
        plan: Plan::default(),
    };
    if force {
        p.deletions(file, &live)?;
    }
    p.devices(file, &live)?;
    let (enable_targets, enable_drivers) = p.targets(file, &live)?;
    p.plan.ops.extend(enable_targets);
    p.plan.ops.extend(enable_drivers);
    p.root(file)?;
    Ok(p.plan)
}

/// Apply `ops` in order; on a failure undo the applied ones in reverse order and return
/// an error naming the failing object.
pub fn apply(c: &mut Client, ops: &[Op]) -> Result<()> {
    for (i, op) in ops.iter().enumerate() {
        let Err(e) = c.write(&op.path, &op.value) else {
            continue;
        };
        let mut undo_failures = Vec::new();
        for done in ops[..i].iter().rev() {
            if let Some((p, v)) = &done.undo {
                if let Err(ue) = c.write(p, v) {
                    undo_failures.push(format!("  undo {p} <- {v}: {ue}"));
                }
            }
        }
        if undo_failures.is_empty() {
            bail!(
                "{}: {e}\nthe {} change(s) applied before it were undone; nothing was changed",
                op.what,
                i
            );
        }
        bail!(
            "{}: {e}\nundoing the {i} change(s) applied before it failed in part:\n{}",
            op.what,
            undo_failures.join("\n")
        );
    }
    Ok(())
}
