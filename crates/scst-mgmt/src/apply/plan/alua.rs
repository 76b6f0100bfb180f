//! Planning `DEVICE_GROUP` blocks (ALUA, docs/scst-reference.md 2.9): device groups, their devices,
//! target groups with their attributes, and member targets.

use crate::conf::{DeviceGroupConf, ScstConf};

use super::{at, grouped, ApplyError, Planner, Result, TreeAccess};

impl<T: TreeAccess> Planner<'_, T> {
    /// With -force: device groups, their devices, target groups and members the file
    /// lacks, innermost first (undo rebuilds them outermost first).
    pub(super) fn device_group_deletions(&mut self, file: &ScstConf, live: &ScstConf) {
        for dg in live.device_groups.iter().rev() {
            let fdg = file.device_groups.iter().find(|x| x.name == dg.name);
            let dgdir = format!("device_groups/{}", dg.name);
            let what = format!("DEVICE_GROUP {}", dg.name);
            for tg in dg.target_groups.iter().rev() {
                let ftg = fdg.and_then(|f| f.target_groups.iter().find(|x| x.name == tg.name));
                let tgdir = format!("{dgdir}/target_groups/{}", tg.name);
                for t in tg.targets.iter().rev() {
                    if ftg.is_some_and(|f| f.targets.iter().any(|x| x.name == t.name)) {
                        continue;
                    }
                    let mgmt = format!("{tgdir}/mgmt");
                    let readd = match t.attrs.iter().find(|a| a.name == "rel_tgt_id") {
                        Some(a) => format!("add {} rel_tgt_id={}", t.name, a.value),
                        None => format!("add {}", t.name),
                    };
                    self.op(
                        mgmt.clone(),
                        format!("del {}", t.name),
                        Some((mgmt, readd)),
                        format!("{what}: TARGET_GROUP {}: TARGET {}", tg.name, t.name),
                    );
                }
                if ftg.is_none() {
                    let mgmt = format!("{dgdir}/target_groups/mgmt");
                    self.op(
                        mgmt.clone(),
                        format!("del {}", tg.name),
                        Some((mgmt, format!("create {}", tg.name))),
                        format!("{what}: TARGET_GROUP {}", tg.name),
                    );
                }
            }
            for d in dg.devices.iter().rev() {
                if fdg.is_some_and(|f| f.devices.iter().any(|x| x.name == d.name)) {
                    continue;
                }
                let mgmt = format!("{dgdir}/devices/mgmt");
                self.op(
                    mgmt.clone(),
                    format!("del {}", d.name),
                    Some((mgmt, format!("add {}", d.name))),
                    format!("{what}: DEVICE {}", d.name),
                );
            }
            if fdg.is_none() {
                self.op(
                    "device_groups/mgmt".into(),
                    format!("del {}", dg.name),
                    Some(("device_groups/mgmt".into(), format!("create {}", dg.name))),
                    what,
                );
            }
        }
    }

    /// DEVICE_GROUP blocks: groups, devices, target groups with their attributes, and
    /// members, each only where the running scstd differs.
    pub(super) fn device_groups(&mut self, file: &ScstConf, live: &ScstConf) -> Result<()> {
        if let Some(a) = file.alua.first() {
            refuse!("{}ALUA: attribute {} is not supported", at(a.line), a.name);
        }
        for dg in &file.device_groups {
            // Nested objects name their own line: `dgname` carries none.
            let dgname = format!("DEVICE_GROUP {}", dg.name);
            let what = format!("{}{dgname}", at(dg.line));
            if let Some(a) = dg.attrs.first() {
                refuse!("{}{dgname}: unknown attribute '{}'", at(a.line), a.name);
            }
            let ldg = live.device_groups.iter().find(|x| x.name == dg.name);
            let dgdir = format!("device_groups/{}", dg.name);
            if ldg.is_none() {
                self.op(
                    "device_groups/mgmt".into(),
                    format!("create {}", dg.name),
                    Some(("device_groups/mgmt".into(), format!("del {}", dg.name))),
                    what.clone(),
                );
            }
            for d in &dg.devices {
                // A re-created device left its group with its old self.
                let member = ldg.is_some_and(|l| l.devices.iter().any(|x| x.name == d.name))
                    && !self.recreate.contains(&d.name);
                if !member {
                    let mgmt = format!("{dgdir}/devices/mgmt");
                    self.op(
                        mgmt.clone(),
                        format!("add {}", d.name),
                        Some((mgmt, format!("del {}", d.name))),
                        format!("{}{dgname}: DEVICE {}", at(d.line), d.name),
                    );
                }
            }
            self.target_groups(dg, ldg)?;
        }
        Ok(())
    }

    pub(super) fn target_groups(
        &mut self,
        dg: &DeviceGroupConf,
        ldg: Option<&DeviceGroupConf>,
    ) -> Result<()> {
        let dgdir = format!("device_groups/{}", dg.name);
        for tg in &dg.target_groups {
            let tgname = format!("DEVICE_GROUP {}: TARGET_GROUP {}", dg.name, tg.name);
            let tw = format!("{}{tgname}", at(tg.line));
            let ltg = ldg.and_then(|l| l.target_groups.iter().find(|x| x.name == tg.name));
            let tgdir = format!("{dgdir}/target_groups/{}", tg.name);
            if ltg.is_none() {
                let mgmt = format!("{dgdir}/target_groups/mgmt");
                self.op(
                    mgmt.clone(),
                    format!("create {}", tg.name),
                    Some((mgmt, format!("del {}", tg.name))),
                    tw.clone(),
                );
            }
            for (name, values) in grouped(&tg.attrs) {
                if !matches!(name.as_str(), "group_id" | "preferred" | "state") {
                    refuse!("{tw}: unknown attribute '{name}'");
                }
                let want = values.last().cloned().unwrap_or_default();
                let path = format!("{tgdir}/{name}");
                let have = if ltg.is_some() {
                    self.live(&path)
                } else {
                    None
                };
                if have.as_deref() == Some(want.as_str()) {
                    continue;
                }
                self.op(path.clone(), want, have.map(|h| (path, h)), tw.clone());
            }
            for t in &tg.targets {
                let ttw = format!("{}{tgname}: TARGET {}", at(t.line), t.name);
                let member = ltg.is_some_and(|l| l.targets.iter().any(|x| x.name == t.name));
                let rel = t.attrs.iter().rev().find(|a| a.name == "rel_tgt_id");
                if let Some(a) = t.attrs.iter().find(|a| a.name != "rel_tgt_id") {
                    refuse!("{ttw}: unknown attribute '{}'", a.name);
                }
                if !member {
                    let mgmt = format!("{tgdir}/mgmt");
                    // A target of another node has no id of its own: it is added
                    // with the configured one.
                    let add = match rel {
                        Some(a) => format!("add {} rel_tgt_id={}", t.name, a.value),
                        None => format!("add {}", t.name),
                    };
                    self.op(
                        mgmt.clone(),
                        add,
                        Some((mgmt, format!("del {}", t.name))),
                        ttw.clone(),
                    );
                } else if let Some(a) = rel {
                    let path = format!("{tgdir}/{}/rel_tgt_id", t.name);
                    let have = if member { self.live(&path) } else { None };
                    if have.as_deref() != Some(a.value.as_str()) {
                        self.op(path.clone(), a.value.clone(), have.map(|h| (path, h)), ttw);
                    }
                }
            }
        }
        Ok(())
    }
}
