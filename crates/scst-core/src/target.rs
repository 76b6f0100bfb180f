//! Targets, their LUN sets and security groups (docs/scst-reference.md 2.7, 2.8).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use scsi_wire::lun::AddrMethod;

use crate::error::MgmtError;
use crate::pattern;
use crate::registry::DeviceEntry;
use crate::session::Session;

/// Highest LUN number SCST accepts (14-bit flat space).
pub const MAX_LUN: u64 = 16383;

#[derive(Clone)]
pub struct LunEntry {
    pub device: Arc<DeviceEntry>,
    pub read_only: bool,
}

/// A LUN set: the target's default one or an initiator group's.
#[derive(Clone, Default)]
pub struct LunSet {
    pub luns: BTreeMap<u64, LunEntry>,
}

impl LunSet {
    pub fn add(&mut self, lun: u64, entry: LunEntry) -> Result<(), MgmtError> {
        if lun > MAX_LUN {
            return Err(MgmtError::Invalid(format!(
                "LUN {lun} is out of range 0..{MAX_LUN}"
            )));
        }
        if self.luns.contains_key(&lun) {
            return Err(MgmtError::Exists {
                kind: "LUN",
                name: lun.to_string(),
            });
        }
        self.luns.insert(lun, entry);
        Ok(())
    }
}

/// An initiator group (`ini_groups/<name>`): initiator patterns and the LUNs they see.
#[derive(Clone, Default)]
pub struct IniGroup {
    pub name: String,
    pub initiators: Vec<String>,
    pub luns: LunSet,
    pub addr_method: Option<AddrMethod>,
}

/// Access control of one target: groups in creation order, then the default LUN set.
#[derive(Clone, Default)]
pub struct Acl {
    pub default_luns: LunSet,
    pub groups: Vec<IniGroup>,
}

impl Acl {
    /// The LUN set an initiator is bound to at session creation: the first group with a
    /// matching entry wins, else the target's default set (scst-reference 2.8).
    pub fn lookup(&self, initiator: &str) -> (&LunSet, Option<&IniGroup>) {
        for g in &self.groups {
            if g.initiators.iter().any(|p| pattern::matches(p, initiator)) {
                return (&g.luns, Some(g));
            }
        }
        (&self.default_luns, None)
    }

    pub fn group_mut(&mut self, name: &str) -> Result<&mut IniGroup, MgmtError> {
        self.groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| MgmtError::NotFound {
                kind: "group",
                name: name.to_string(),
            })
    }
}

pub struct Target {
    pub driver: String,
    pub name: String,
    rel_tgt_id: AtomicU16,
    enabled: AtomicBool,
    pub addr_method: Mutex<AddrMethod>,
    pub acl: Mutex<Acl>,
    /// Driver-specific attributes (iSCSI keys, CHAP accounts...), multi-valued, in the
    /// order they were given.
    pub attrs: Mutex<Vec<(String, String)>>,
    pub(crate) sessions: Mutex<Vec<Weak<Session>>>,
    /// What the target's gone sessions counted (stats.rs).
    pub(crate) retired: crate::stats::LunStats,
}

impl Target {
    pub(crate) fn new(driver: &str, name: &str, rel_tgt_id: u16) -> Target {
        Target {
            driver: driver.to_string(),
            name: name.to_string(),
            rel_tgt_id: AtomicU16::new(rel_tgt_id),
            enabled: AtomicBool::new(false),
            addr_method: Mutex::new(AddrMethod::Peripheral),
            acl: Mutex::new(Acl::default()),
            attrs: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
            retired: Default::default(),
        }
    }

    pub fn rel_tgt_id(&self) -> u16 {
        self.rel_tgt_id.load(Ordering::Relaxed)
    }

    pub(crate) fn set_rel_tgt_id(&self, id: u16) {
        self.rel_tgt_id.store(id, Ordering::Relaxed)
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release)
    }

    /// The last value of a driver attribute.
    pub fn attr(&self, name: &str) -> Option<String> {
        self.attrs
            .lock()
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// Every value of a multi-valued driver attribute.
    pub fn attr_values(&self, name: &str) -> Vec<String> {
        self.attrs
            .lock()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether an initiator would be given any LUN (SCST hides targets, and refuses
    /// logins, for initiators whose LUN set is empty).
    pub fn initiator_has_luns(&self, initiator: &str) -> bool {
        !self.acl.lock().lookup(initiator).0.luns.is_empty()
    }

    /// Live sessions of this target.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let mut v = self.sessions.lock();
        v.retain(|w| w.strong_count() > 0);
        v.iter().filter_map(Weak::upgrade).collect()
    }
}
