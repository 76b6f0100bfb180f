//! Live reconfiguration: every command of SCST's management tree applied to a running
//! core without restarting sessions (docs/scst-reference.md 2.3-2.8, 5.1). Each operation is
//! all-or-nothing: it checks everything first and changes nothing when it fails; the
//! error names the object and the reason.
//!
//! # API summary (all on [`Scst`]; `group` None = the target's own `luns/`)
//!
//! Devices (`handlers/<h>/mgmt`, `devices/<dev>/`):
//! - `add_device(dev)` / `add_device_with_pr_file` (registry.rs);
//!   `del_device(name)`: `Busy` while any LUN exports it.
//! - `set_device_attr(dev, attr, value) -> AttrEffect`: `Device::apply_attribute`, then
//!   CAPACITY DATA HAS CHANGED (2A/09) or INQUIRY DATA HAS CHANGED (3F/03) on every
//!   nexus of the device as the device reports.
//! - `device_list()`, `device_exports(name)` (the `exported/exportN` links).
//!
//! Targets (`targets/<driver>/mgmt`, `targets/<driver>/<t>/`):
//! - `add_target(driver, name, rel_tgt_id)` (registry.rs); `del_target(driver, name)`
//!   disables it and closes its sessions through `SessionEvents::close`.
//! - `set_target_enabled(target, on)`, `set_rel_tgt_id(target, id)`.
//! - `target_list()`, `targets(driver)`, `target(driver, name)`.
//!
//! LUN sets (`luns/mgmt`, `ini_groups/<g>/luns/mgmt`):
//! - `lun_add(t, group, lun, dev, read_only)` (`Exists` if used; `add_lun` is the same),
//!   `lun_del(t, group, lun)`, `lun_replace(t, group, lun, dev, read_only, ua)` (`ua`
//!   false = `replace_no_ua`; acts as add when the LUN is unused), `lun_clear(t, group)`.
//! - Sessions bound to the set see the change at once: an added LUN is a new nexus
//!   starting with POWER ON/RESET (29/00), the set's other nexuses get REPORTED LUNS
//!   DATA HAS CHANGED (3F/0E); a replaced LUN's new nexus inherits the old one's
//!   pending UAs plus INQUIRY DATA HAS CHANGED (3F/03) unless `ua` is false.
//! - Commands in flight on a removed nexus finish normally. The removed nexus is then
//!   cleaned up off the admin path, on the I/O pool: drain, release the session's
//!   SPC-2 reservation of the device, tell the device the I_T_L nexus is gone, run the
//!   cleanup hook (`set_tgt_dev_cleanup_hook`).
//! - `lun_sets(t)` (default set, then groups in creation order), `lun_set(t, group)`.
//!
//! Initiator groups (`ini_groups/mgmt`, `ini_groups/<g>/initiators/mgmt`):
//! - `ini_group_create(t, g)` (`Exists`), `ini_group_del(t, g)` (`Busy` while sessions
//!   are bound to it).
//! - `initiator_add(t, g, pattern)`, `initiator_del`, `initiator_move(t, g, pattern,
//!   dest)`, `initiator_clear(t, g)`. Binding happens at session creation only:
//!   these never move existing sessions (scst-reference 2.8).
//! - `ini_groups(t)`.
//!
//! Root attribute `async_lun_replace` (seed 000): `async_lun_replace()`,
//! `set_async_lun_replace(on)`. While on, the cleanup of the nexuses a `replace`
//! removed is parked; turning it off releases the parked cleanups in a batch on the
//! I/O pool. `detach_all` turns it off. `parked_cleanups()` / `running_cleanups()`
//! count them.
//!
//! Sessions (`targets/<d>/<t>/sessions/`): `session_list(t)` with initiator name, port
//! name, bound group and LUNs; `Session::luns()` for the nexuses themselves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use scsi_wire::Sense;

use crate::device::AttrEffect;
use crate::error::MgmtError;
use crate::pattern;
use crate::registry::{DeviceEntry, Scst};
use crate::session::{LunTable, Session, TgtDev};
use crate::target::{Acl, IniGroup, LunEntry, LunSet, Target, MAX_LUN};

/// An extra step run on every removed nexus after it drained (a cluster's distributed
/// lock release, for instance). It may block: it runs on the I/O pool.
pub type CleanupHook = Arc<dyn Fn(&TgtDev) + Send + Sync>;

/// `async_lun_replace` and the cleanups waiting for it.
#[derive(Default)]
pub(crate) struct ReconfigState {
    /// Guarded by `parked`'s lock for writes, so a `replace` cannot park a cleanup
    /// after the gate was opened and the parked batch released.
    async_lun_replace: AtomicBool,
    parked: Mutex<Vec<Cleanup>>,
    running: Arc<AtomicUsize>,
    hook: Mutex<Option<CleanupHook>>,
}

/// The deferred part of removing nexuses from sessions (SCST's scst_free_tgt_dev).
struct Cleanup {
    tgt_devs: Vec<Arc<TgtDev>>,
    hook: Option<CleanupHook>,
    scst: Weak<Scst>,
}

impl Cleanup {
    fn run(self) {
        self.drain();
        for td in &self.tgt_devs {
            release_nexus(td);
            if let Some(hook) = &self.hook {
                hook(td);
            }
        }
    }

    /// Wait until no command holds the nexuses any more (each command holds its
    /// `Arc<TgtDev>` until it completes; this cleanup holds the only other one). Gives
    /// up when the core itself is being dropped, so shutdown never hangs on it.
    fn drain(&self) {
        let mut pause = Duration::from_millis(1);
        while self.tgt_devs.iter().any(|td| Arc::strong_count(td) > 1) {
            if self.scst.strong_count() == 0 {
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// What a removed nexus held: the session's SPC-2 reservation of the device and the
/// device's per-nexus state (PREVENT MEDIUM REMOVAL) go, unless the session still sees
/// the same device through another LUN (the I_T nexus to it then persists).
fn release_nexus(td: &TgtDev) {
    let session = td.session();
    if let Some(s) = &session {
        if s.luns()
            .entries
            .iter()
            .any(|t| Arc::ptr_eq(&t.device, &td.device))
        {
            return;
        }
    }
    td.device.resv.session_gone(td.session_id);
    if let Some(s) = session {
        td.device.dev.nexus_lost(&s.initiator_name, &s.target.name);
    }
}

/// One LUN of a set, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunInfo {
    pub lun: u64,
    pub device: String,
    pub read_only: bool,
}

/// A LUN set: the target's own (`group` None) or an initiator group's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunSetInfo {
    pub group: Option<String>,
    pub luns: Vec<LunInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniGroupInfo {
    pub name: String,
    /// Names and patterns, in the order they were added.
    pub initiators: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    pub handler: &'static str,
    pub scsi_type: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    pub driver: String,
    pub name: String,
    pub enabled: bool,
    pub rel_tgt_id: u16,
}

/// Where a device is exported (`devices/<dev>/exported/exportN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunPath {
    pub driver: String,
    pub target: String,
    pub group: Option<String>,
    pub lun: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: u64,
    pub initiator_name: String,
    /// The initiator port (`<name>,i,0x<isid>` for iSCSI).
    pub port_name: String,
    /// The initiator group the session is bound to; None: the target's own LUNs.
    pub group: Option<String>,
    pub luns: Vec<u64>,
}

/// `<target>/luns/<lun>` or `<target>/ini_groups/<g>/luns/<lun>`: how errors name a LUN
/// where the caller's path does not (range errors, exports). `Exists`/`NotFound` keep
/// the bare number, as `LunSet::add` always did: the management tree prefixes the
/// `luns/mgmt` path it wrote to.
fn lun_path(target: &Target, group: Option<&str>, lun: u64) -> String {
    lun_path_parts(&target.name, group, lun)
}

fn set_mut<'a>(
    acl: &'a mut Acl,
    target: &Target,
    group: Option<&str>,
) -> Result<&'a mut LunSet, MgmtError> {
    match group {
        None => Ok(&mut acl.default_luns),
        Some(g) => Ok(&mut group_mut(acl, target, g)?.luns),
    }
}

fn group_mut<'a>(
    acl: &'a mut Acl,
    target: &Target,
    group: &str,
) -> Result<&'a mut IniGroup, MgmtError> {
    acl.groups
        .iter_mut()
        .find(|g| g.name == group)
        .ok_or_else(|| MgmtError::NotFound {
            kind: "initiator group",
            name: format!("{}/ini_groups/{group}", target.name),
        })
}

fn check_lun(target: &Target, group: Option<&str>, lun: u64) -> Result<(), MgmtError> {
    if lun > MAX_LUN {
        return Err(MgmtError::Invalid(format!(
            "LUN {}: number out of range 0..{MAX_LUN}",
            lun_path(target, group, lun)
        )));
    }
    Ok(())
}

/// Sessions bound to a LUN set. Called with the target's ACL lock held, so the set of
/// bound sessions cannot change underneath (see `Scst::register_session`).
fn bound_sessions(target: &Target, group: Option<&str>) -> Vec<Arc<Session>> {
    target
        .sessions()
        .into_iter()
        .filter(|s| s.group.as_deref() == group)
        .collect()
}

fn lun_infos(set: &LunSet) -> Vec<LunInfo> {
    set.luns
        .iter()
        .map(|(&lun, e)| LunInfo {
            lun,
            device: e.device.name().to_string(),
            read_only: e.read_only,
        })
        .collect()
}

impl Scst {
    // ---- devices ----------------------------------------------------------------

    /// `del_device <name>`: refused while any LUN of any target exports the device.
    /// The device leaves its ALUA device group, is flushed and, if its handler has a
    /// `pr_dump_dir`, dumps its PR state.
    pub fn del_device(&self, name: &str) -> Result<(), MgmtError> {
        let entry = {
            let mut reg = self.registry.lock();
            let entry = reg
                .devices
                .get(name)
                .cloned()
                .ok_or_else(|| MgmtError::NotFound {
                    kind: "device",
                    name: name.to_string(),
                })?;
            let exports = exports_in(reg.targets.values(), &entry);
            if !exports.is_empty() {
                let list: Vec<String> = exports
                    .iter()
                    .map(|p| {
                        format!(
                            "{}/{}",
                            p.driver,
                            lun_path_parts(&p.target, p.group.as_deref(), p.lun)
                        )
                    })
                    .collect();
                return Err(MgmtError::Busy {
                    kind: "device",
                    name: name.to_string(),
                    why: format!("exported as {}", list.join(", ")),
                });
            }
            reg.devices.remove(name);
            entry
        };
        self.alua_forget_device(&entry);
        if let Err(e) = entry.dev.flush() {
            log::error!("device {name}: flush on delete failed: {e}");
        }
        if let Some((path, text)) = entry.pr_dump(self) {
            match crate::pr_persist::write_atomic(&path, text.as_bytes()) {
                Ok(()) => log::info!("device {name}: PR state dumped to {}", path.display()),
                Err(e) => log::error!("device {name}: PR state dump failed: {e}"),
            }
        }
        log::info!("device {name}: deleted");
        Ok(())
    }

    /// Write a device attribute (`devices/<dev>/<attr>`) and queue the unit attention
    /// the change calls for on every nexus of the device (scst-reference 5.1).
    pub fn set_device_attr(
        &self,
        device: &str,
        attr: &str,
        value: &str,
    ) -> Result<AttrEffect, MgmtError> {
        let entry = self.device(device)?;
        let effect = entry.dev.apply_attribute(attr, value)?;
        match effect {
            AttrEffect::Nothing => {}
            AttrEffect::CapacityChanged => entry.queue_ua_all(Sense::UA_CAPACITY_DATA_CHANGED),
            AttrEffect::InquiryDataChanged => entry.queue_ua_all(Sense::UA_INQUIRY_DATA_CHANGED),
        }
        Ok(effect)
    }

    /// Registered devices with their handlers, by name.
    pub fn device_list(&self) -> Vec<DeviceInfo> {
        self.devices()
            .iter()
            .map(|d| DeviceInfo {
                name: d.name().to_string(),
                handler: d.dev.handler_name(),
                scsi_type: d.dev.scsi_type(),
            })
            .collect()
    }

    /// Every LUN exporting a device, targets in (driver, name) order.
    pub fn device_exports(&self, device: &str) -> Result<Vec<LunPath>, MgmtError> {
        let reg = self.registry.lock();
        let entry = reg.devices.get(device).ok_or_else(|| MgmtError::NotFound {
            kind: "device",
            name: device.to_string(),
        })?;
        Ok(exports_in(reg.targets.values(), entry))
    }

    // ---- targets ----------------------------------------------------------------

    /// `del_target <name>`: the target stops accepting sessions, leaves the registry,
    /// and its sessions are closed (SCST closes them rather than refusing). The
    /// transport's `unregister` of each closed session releases what it held.
    pub fn del_target(&self, driver: &str, name: &str) -> Result<(), MgmtError> {
        let target = self
            .registry
            .lock()
            .targets
            .remove(&(driver.to_string(), name.to_string()))
            .ok_or_else(|| MgmtError::NotFound {
                kind: "target",
                name: format!("{driver}/{name}"),
            })?;
        target.set_enabled(false);
        let sessions = target.sessions();
        for s in &sessions {
            s.events().close();
        }
        log::info!(
            "target {driver}/{name}: deleted, {} session(s) closed",
            sessions.len()
        );
        Ok(())
    }

    /// `enabled` of a target: whether it accepts new sessions.
    pub fn set_target_enabled(&self, target: &Target, on: bool) {
        target.set_enabled(on);
    }

    /// Every target, in (driver, name) order.
    pub fn target_list(&self) -> Vec<TargetInfo> {
        self.registry
            .lock()
            .targets
            .values()
            .map(|t| TargetInfo {
                driver: t.driver.clone(),
                name: t.name.clone(),
                enabled: t.enabled(),
                rel_tgt_id: t.rel_tgt_id(),
            })
            .collect()
    }

    // ---- LUN sets -----------------------------------------------------------------

    /// `add <dev> <lun> [read_only=..]`. Sessions bound to the set get the LUN as a new
    /// nexus starting with POWER ON/RESET; their other LUNs get REPORTED LUNS DATA HAS
    /// CHANGED.
    pub fn lun_add(
        &self,
        target: &Target,
        group: Option<&str>,
        lun: u64,
        device: &str,
        read_only: bool,
    ) -> Result<(), MgmtError> {
        check_lun(target, group, lun)?;
        let reg = self.registry.lock();
        let device = self.lookup_device(&reg.devices, device)?;
        let mut acl = target.acl.lock();
        drop(reg);
        let set = set_mut(&mut acl, target, group)?;
        if set.luns.contains_key(&lun) {
            return Err(MgmtError::Exists {
                kind: "LUN",
                name: lun.to_string(),
            });
        }
        let entry = LunEntry { device, read_only };
        set.luns.insert(lun, entry.clone());
        add_to_sessions(target, group, lun, &entry);
        Ok(())
    }

    /// `del <lun>`. Sessions bound to the set lose the LUN and get REPORTED LUNS DATA
    /// HAS CHANGED on the others; the removed nexuses are cleaned up on the I/O pool.
    pub fn lun_del(&self, target: &Target, group: Option<&str>, lun: u64) -> Result<(), MgmtError> {
        let retired = {
            let mut acl = target.acl.lock();
            let set = set_mut(&mut acl, target, group)?;
            if set.luns.remove(&lun).is_none() {
                return Err(MgmtError::NotFound {
                    kind: "LUN",
                    name: lun.to_string(),
                });
            }
            let mut retired = Vec::new();
            for s in bound_sessions(target, group) {
                let old = s.luns();
                let (gone, kept): (Vec<_>, Vec<_>) =
                    old.entries.iter().cloned().partition(|t| t.lun == lun);
                s.store_luns(LunTable { entries: kept });
                for t in &s.luns().entries {
                    t.queue_ua(Sense::UA_REPORTED_LUNS_DATA_CHANGED);
                }
                retired.extend(gone);
            }
            retired
        };
        self.retire(retired, false);
        Ok(())
    }

    /// `replace <dev> <lun> [read_only=..]` (`ua` true) or `replace_no_ua` (`ua`
    /// false): swap the device under a LUN. Each bound session's new nexus keeps the
    /// old one's pending UAs and, with `ua`, gets INQUIRY DATA HAS CHANGED. An unused
    /// LUN is added instead. With `async_lun_replace` on, the old nexuses' cleanup is
    /// parked until it is turned off.
    pub fn lun_replace(
        &self,
        target: &Target,
        group: Option<&str>,
        lun: u64,
        device: &str,
        read_only: bool,
        ua: bool,
    ) -> Result<(), MgmtError> {
        check_lun(target, group, lun)?;
        let reg = self.registry.lock();
        let device = self.lookup_device(&reg.devices, device)?;
        let mut acl = target.acl.lock();
        drop(reg);
        let set = set_mut(&mut acl, target, group)?;
        let entry = LunEntry { device, read_only };
        if set.luns.insert(lun, entry.clone()).is_none() {
            add_to_sessions(target, group, lun, &entry);
            return Ok(());
        }
        let mut retired = Vec::new();
        for s in bound_sessions(target, group) {
            let old = s.luns();
            let mut entries = old.entries.clone();
            let me = Arc::downgrade(&s);
            match entries.iter_mut().find(|t| t.lun == lun) {
                Some(slot) => {
                    let mut uas = slot.take_all_uas();
                    if ua && !uas.contains(&Sense::UA_INQUIRY_DATA_CHANGED) {
                        uas.push_back(Sense::UA_INQUIRY_DATA_CHANGED);
                    }
                    let td = TgtDev::attach(&me, s.id, lun, &entry, uas);
                    retired.push(std::mem::replace(slot, td));
                }
                // The set had the LUN but this session's table did not (it cannot
                // happen while tables follow their set; heal it as an add).
                None => {
                    let td = TgtDev::attach(
                        &me,
                        s.id,
                        lun,
                        &entry,
                        VecDeque::from([Sense::UA_POWER_ON_RESET]),
                    );
                    let at = entries.partition_point(|t| t.lun < lun);
                    entries.insert(at, td);
                }
            }
            s.store_luns(LunTable { entries });
        }
        drop(acl);
        self.retire(retired, true);
        Ok(())
    }

    /// `clear`: remove every LUN of the set. Bound sessions are left with no LUNs.
    pub fn lun_clear(&self, target: &Target, group: Option<&str>) -> Result<(), MgmtError> {
        let retired = {
            let mut acl = target.acl.lock();
            let set = set_mut(&mut acl, target, group)?;
            set.luns.clear();
            let mut retired = Vec::new();
            for s in bound_sessions(target, group) {
                retired.extend(s.luns().entries.iter().cloned());
                s.store_luns(LunTable::default());
            }
            retired
        };
        self.retire(retired, false);
        Ok(())
    }

    /// The target's LUN sets: its own first, then its groups' in creation order.
    pub fn lun_sets(&self, target: &Target) -> Vec<LunSetInfo> {
        let acl = target.acl.lock();
        std::iter::once(LunSetInfo {
            group: None,
            luns: lun_infos(&acl.default_luns),
        })
        .chain(acl.groups.iter().map(|g| LunSetInfo {
            group: Some(g.name.clone()),
            luns: lun_infos(&g.luns),
        }))
        .collect()
    }

    /// One LUN set.
    pub fn lun_set(&self, target: &Target, group: Option<&str>) -> Result<Vec<LunInfo>, MgmtError> {
        let mut acl = target.acl.lock();
        Ok(lun_infos(set_mut(&mut acl, target, group)?))
    }

    // ---- initiator groups -----------------------------------------------------------

    /// `ini_groups/mgmt create <group>`.
    pub fn ini_group_create(&self, target: &Target, group: &str) -> Result<(), MgmtError> {
        if group.is_empty() || group.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(MgmtError::Invalid(format!(
                "initiator group name '{group}' is empty or contains whitespace or '/'"
            )));
        }
        let mut acl = target.acl.lock();
        if acl.groups.iter().any(|g| g.name == group) {
            return Err(MgmtError::Exists {
                kind: "initiator group",
                name: format!("{}/ini_groups/{group}", target.name),
            });
        }
        acl.groups.push(IniGroup {
            name: group.to_string(),
            ..Default::default()
        });
        Ok(())
    }

    /// `ini_groups/mgmt del <group>`: refused while sessions are bound to the group
    /// (SCST without `forcibly_close_sessions`).
    pub fn ini_group_del(&self, target: &Target, group: &str) -> Result<(), MgmtError> {
        let mut acl = target.acl.lock();
        let i = acl
            .groups
            .iter()
            .position(|g| g.name == group)
            .ok_or_else(|| MgmtError::NotFound {
                kind: "initiator group",
                name: format!("{}/ini_groups/{group}", target.name),
            })?;
        let bound = bound_sessions(target, Some(group));
        if !bound.is_empty() {
            let names: Vec<&str> = bound.iter().map(|s| s.initiator_name.as_str()).collect();
            return Err(MgmtError::Busy {
                kind: "initiator group",
                name: format!("{}/ini_groups/{group}", target.name),
                why: format!("sessions are bound to it ({})", names.join(", ")),
            });
        }
        acl.groups.remove(i);
        Ok(())
    }

    /// `initiators/mgmt add <name-or-pattern>`.
    pub fn initiator_add(&self, target: &Target, group: &str, name: &str) -> Result<(), MgmtError> {
        pattern::validate(name).map_err(|e| MgmtError::Invalid(e.to_string()))?;
        let mut acl = target.acl.lock();
        let g = group_mut(&mut acl, target, group)?;
        if g.initiators.iter().any(|i| i.eq_ignore_ascii_case(name)) {
            return Err(MgmtError::Exists {
                kind: "initiator",
                name: format!("{}/ini_groups/{group}/initiators/{name}", target.name),
            });
        }
        g.initiators.push(name.to_string());
        Ok(())
    }

    /// `initiators/mgmt del <name-or-pattern>`.
    pub fn initiator_del(&self, target: &Target, group: &str, name: &str) -> Result<(), MgmtError> {
        let mut acl = target.acl.lock();
        let g = group_mut(&mut acl, target, group)?;
        let i = position_of(g, name).ok_or_else(|| initiator_not_found(target, group, name))?;
        g.initiators.remove(i);
        Ok(())
    }

    /// `initiators/mgmt move <name-or-pattern> <dest-group>`: both groups are checked
    /// before either changes.
    pub fn initiator_move(
        &self,
        target: &Target,
        group: &str,
        name: &str,
        dest: &str,
    ) -> Result<(), MgmtError> {
        let mut acl = target.acl.lock();
        let from = acl
            .groups
            .iter()
            .position(|g| g.name == group)
            .ok_or_else(|| MgmtError::NotFound {
                kind: "initiator group",
                name: format!("{}/ini_groups/{group}", target.name),
            })?;
        let to = acl
            .groups
            .iter()
            .position(|g| g.name == dest)
            .ok_or_else(|| MgmtError::NotFound {
                kind: "initiator group",
                name: format!("{}/ini_groups/{dest}", target.name),
            })?;
        let i = position_of(&acl.groups[from], name)
            .ok_or_else(|| initiator_not_found(target, group, name))?;
        if from == to {
            return Ok(());
        }
        if position_of(&acl.groups[to], name).is_some() {
            return Err(MgmtError::Exists {
                kind: "initiator",
                name: format!("{}/ini_groups/{dest}/initiators/{name}", target.name),
            });
        }
        let moved = acl.groups[from].initiators.remove(i);
        acl.groups[to].initiators.push(moved);
        Ok(())
    }

    /// `initiators/mgmt clear`.
    pub fn initiator_clear(&self, target: &Target, group: &str) -> Result<(), MgmtError> {
        let mut acl = target.acl.lock();
        group_mut(&mut acl, target, group)?.initiators.clear();
        Ok(())
    }

    /// The target's initiator groups in creation order (the order sessions match them).
    pub fn ini_groups(&self, target: &Target) -> Vec<IniGroupInfo> {
        target
            .acl
            .lock()
            .groups
            .iter()
            .map(|g| IniGroupInfo {
                name: g.name.clone(),
                initiators: g.initiators.clone(),
            })
            .collect()
    }

    // ---- sessions ---------------------------------------------------------------------

    /// Live sessions of a target, oldest first.
    pub fn session_list(&self, target: &Target) -> Vec<SessionInfo> {
        target
            .sessions()
            .iter()
            .map(|s| SessionInfo {
                id: s.id,
                initiator_name: s.initiator_name.clone(),
                port_name: s.transport_id.port_name(),
                group: s.group.clone(),
                luns: s.luns().entries.iter().map(|t| t.lun).collect(),
            })
            .collect()
    }

    // ---- async_lun_replace --------------------------------------------------------------

    pub fn async_lun_replace(&self) -> bool {
        self.reconfig.async_lun_replace.load(Ordering::Acquire)
    }

    /// The root attribute `async_lun_replace`. Turning it off releases every parked
    /// cleanup in one batch onto the I/O pool; this call never waits for them.
    pub fn set_async_lun_replace(&self, on: bool) {
        let released = {
            let mut parked = self.reconfig.parked.lock();
            self.reconfig.async_lun_replace.store(on, Ordering::Release);
            if on {
                return;
            }
            std::mem::take(&mut *parked)
        };
        if !released.is_empty() {
            log::info!(
                "async_lun_replace cleared: releasing {} parked LUN cleanup(s)",
                released.len()
            );
        }
        for c in released {
            self.run_off_admin_path(c);
        }
    }

    /// Install (or remove) the extra cleanup step run on every removed nexus.
    pub fn set_tgt_dev_cleanup_hook(&self, hook: Option<CleanupHook>) {
        *self.reconfig.hook.lock() = hook;
    }

    /// Cleanups parked by `async_lun_replace`.
    pub fn parked_cleanups(&self) -> usize {
        self.reconfig.parked.lock().len()
    }

    /// Cleanups handed to the I/O pool and not finished yet.
    pub fn running_cleanups(&self) -> usize {
        self.reconfig.running.load(Ordering::Acquire)
    }

    // ---- helpers ------------------------------------------------------------------------

    fn lookup_device(
        &self,
        devices: &std::collections::BTreeMap<String, Arc<DeviceEntry>>,
        name: &str,
    ) -> Result<Arc<DeviceEntry>, MgmtError> {
        devices
            .get(name)
            .cloned()
            .ok_or_else(|| MgmtError::NotFound {
                kind: "device",
                name: name.to_string(),
            })
    }

    /// Hand removed nexuses to their cleanup: parked when they come from a `replace`
    /// while `async_lun_replace` is on, else started on the I/O pool at once.
    fn retire(&self, tgt_devs: Vec<Arc<TgtDev>>, from_replace: bool) {
        if tgt_devs.is_empty() {
            return;
        }
        // Device-wide UAs and resets stop reaching them now, not when they drain.
        for td in &tgt_devs {
            td.detach_from_device();
        }
        let cleanup = Cleanup {
            tgt_devs,
            hook: self.reconfig.hook.lock().clone(),
            scst: self.me.clone(),
        };
        if from_replace {
            let mut parked = self.reconfig.parked.lock();
            if self.reconfig.async_lun_replace.load(Ordering::Acquire) {
                parked.push(cleanup);
                return;
            }
        }
        self.run_off_admin_path(cleanup);
    }

    fn run_off_admin_path(&self, cleanup: Cleanup) {
        let running = self.reconfig.running.clone();
        running.fetch_add(1, Ordering::AcqRel);
        self.io_pool.spawn(move || {
            // Counted down even if the hook panics, so `running_cleanups` stays true.
            struct Done(Arc<AtomicUsize>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::AcqRel);
                }
            }
            let _done = Done(running);
            cleanup.run();
        });
    }
}

/// Add one LUN to every session bound to the set (ACL lock held by the caller): the
/// table is swapped first so the REPORTED LUNS DATA HAS CHANGED the other LUNs then
/// report is already true when the initiator asks.
fn add_to_sessions(target: &Target, group: Option<&str>, lun: u64, entry: &LunEntry) {
    for s in bound_sessions(target, group) {
        let old = s.luns();
        let td = TgtDev::attach(
            &Arc::downgrade(&s),
            s.id,
            lun,
            entry,
            VecDeque::from([Sense::UA_POWER_ON_RESET]),
        );
        let mut entries = old.entries.clone();
        let at = entries.partition_point(|t| t.lun < lun);
        entries.insert(at, td);
        s.store_luns(LunTable { entries });
        for t in old.entries.iter() {
            t.queue_ua(Sense::UA_REPORTED_LUNS_DATA_CHANGED);
        }
    }
}

fn lun_path_parts(target: &str, group: Option<&str>, lun: u64) -> String {
    match group {
        None => format!("{target}/luns/{lun}"),
        Some(g) => format!("{target}/ini_groups/{g}/luns/{lun}"),
    }
}

fn exports_in<'a>(
    targets: impl Iterator<Item = &'a Arc<Target>>,
    dev: &Arc<DeviceEntry>,
) -> Vec<LunPath> {
    let mut out = Vec::new();
    for t in targets {
        let acl = t.acl.lock();
        let sets = std::iter::once((None, &acl.default_luns))
            .chain(acl.groups.iter().map(|g| (Some(g.name.clone()), &g.luns)));
        for (group, set) in sets {
            for (&lun, e) in &set.luns {
                if Arc::ptr_eq(&e.device, dev) {
                    out.push(LunPath {
                        driver: t.driver.clone(),
                        target: t.name.clone(),
                        group: group.clone(),
                        lun,
                    });
                }
            }
        }
    }
    out
}

fn position_of(g: &IniGroup, name: &str) -> Option<usize> {
    g.initiators
        .iter()
        .position(|i| i.eq_ignore_ascii_case(name))
}

fn initiator_not_found(target: &Target, group: &str, name: &str) -> MgmtError {
    MgmtError::NotFound {
        kind: "initiator",
        name: format!("{}/ini_groups/{group}/initiators/{name}", target.name),
    }
}
