//! Read-only attributes in a file (docs/scst-reference.md "Loading SCST-written
//! configurations"): SCST's `-write_config -nonkey` saves attributes scst-rs cannot set
//! (e.g. `threads_num`, a blockio device's `size`), and people copy read-only values
//! into configurations. As SCST's scstadmin does, they are never written and never
//! fatal: each is compared with the running value, and a difference (or an attribute
//! the running object does not show) is a warning naming the object and the line. An
//! object the file creates has no running value yet: its read-only attributes are
//! what it gets.

use crate::attrs::{self, Access, AttrInfo};
use crate::conf::{Attr, ScstConf};
use crate::protocol::strip_key;

use super::super::TreeAccess;
use super::at;

/// `file` without its read-only attributes, and a warning for each that differs from
/// (or is missing in) the running configuration.
pub(super) fn without_read_only(
    c: &mut impl TreeAccess,
    file: &ScstConf,
) -> (ScstConf, Vec<String>) {
    let mut f = file.clone();
    let mut warnings = Vec::new();
    let mut cmp = Compare {
        c,
        warnings: &mut warnings,
    };
    cmp.level(&mut f.attrs, attrs::root_attr, "", "top level");
    for h in &mut f.handlers {
        let hdir = format!("handlers/{}", h.name);
        cmp.level(
            &mut h.attrs,
            |n| attrs::handler_attr(&h.name, n),
            &hdir,
            &format!("handler {}", h.name),
        );
        for d in &mut h.devices {
            let ddir = format!("devices/{}", d.name);
            cmp.level(
                &mut d.attrs,
                |n| attrs::device_attr(&h.name, n),
                &ddir,
                &format!("device {}", d.name),
            );
        }
    }
    for drv in &mut f.drivers {
        let base = format!("targets/{}", drv.name);
        cmp.level(
            &mut drv.attrs,
            |n| attrs::driver_attr(&drv.name, n),
            &base,
            &format!("driver {}", drv.name),
        );
        for t in &mut drv.targets {
            let tdir = format!("{base}/{}", t.name);
            cmp.level(
                &mut t.attrs,
                |n| attrs::target_attr(&drv.name, n),
                &tdir,
                &format!("target {}", t.name),
            );
            for g in &mut t.groups {
                let gdir = format!("{tdir}/ini_groups/{}", g.name);
                let what = format!("group {} of target {}", g.name, t.name);
                cmp.level(
                    &mut g.attrs,
                    |n| attrs::group_attr(&drv.name, n),
                    &gdir,
                    &what,
                );
            }
        }
    }
    for dg in &mut f.device_groups {
        for tg in &mut dg.target_groups {
            let tgdir = format!("device_groups/{}/target_groups/{}", dg.name, tg.name);
            let what = format!("target group {} of device group {}", tg.name, dg.name);
            cmp.level(&mut tg.attrs, attrs::target_group_attr, &tgdir, &what);
            for t in &mut tg.targets {
                let what = format!("target {} of {what}", t.name);
                cmp.level(
                    &mut t.attrs,
                    attrs::tg_target_attr,
                    &format!("{tgdir}/{}", t.name),
                    &what,
                );
            }
        }
    }
    (f, warnings)
}

struct Compare<'a, C> {
    c: &'a mut C,
    warnings: &'a mut Vec<String>,
}

impl<C: TreeAccess> Compare<'_, C> {
    /// Take the read-only attributes out of `list`, comparing each with `dir/<name>`.
    fn level(
        &mut self,
        list: &mut Vec<Attr>,
        lookup: impl Fn(&str) -> Option<AttrInfo>,
        dir: &str,
        what: &str,
    ) {
        let (read_only, keep): (Vec<Attr>, Vec<Attr>) = std::mem::take(list)
            .into_iter()
            .partition(|a| lookup(&a.name).is_some_and(is_read_only));
        *list = keep;
        if read_only.is_empty() || (!dir.is_empty() && self.c.list(dir).is_err()) {
            // Nothing to compare, or the file creates the object.
            return;
        }
        for a in read_only {
            let Some(info) = lookup(&a.name) else {
                continue;
            };
            let path = if dir.is_empty() {
                a.name.clone()
            } else {
                format!("{dir}/{}", a.name)
            };
            let line = at(a.line);
            match self.c.read(&path) {
                Ok(raw) => {
                    let running = strip_key(&raw).0.trim().to_string();
                    if !attrs::same_value(info.kind, &running, &a.value) {
                        self.warnings.push(format!(
                            "{line}{what}: attribute '{}' is read-only; the file's value '{}' \
                             differs from the running '{running}' and is not applied",
                            a.name, a.value
                        ));
                    }
                }
                Err(_) => self.warnings.push(format!(
                    "{line}{what}: scst-rs has no settable attribute '{}' (it is fixed), ignoring \
                     the file's value '{}'",
                    a.name, a.value
                )),
            }
        }
    }
}

/// Neither settable nor a creation parameter: only ever compared.
fn is_read_only(info: AttrInfo) -> bool {
    info.access == Access::ReadOnly && !info.configurable()
}
