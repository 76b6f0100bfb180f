//! The registry of devices and targets: what management commands change and what
//! sessions bind to at creation. The data path never takes these locks; it works on the
//! session's own tgt_dev table.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::device::{Device, DeviceEvents};
use crate::error::MgmtError;
use crate::iopool::IoPool;
use crate::reservation::Reservations;
use crate::session::{Session, SessionEvents, TgtDev, TransportId};
use crate::target::{LunEntry, Target};

/// A registered device: the dev handler's object plus what the core keeps per device.
pub struct DeviceEntry {
    pub dev: Arc<dyn Device>,
    /// Every I_T_L nexus (tgt_dev) of this device, for unit attentions and resets that
    /// reach all initiators.
    pub(crate) tgt_devs: Mutex<Vec<Weak<TgtDev>>>,
    /// SPC-2 and persistent reservations (spec 5.3), checked on every command.
    pub(crate) resv: Reservations,
    /// The core instance, to find the target ports exporting the device (PR ALL_TG_PT,
    /// REGISTER AND MOVE).
    scst: Weak<Scst>,
}

impl DeviceEntry {
    pub fn name(&self) -> &str {
        self.dev.name()
    }

    /// Live nexuses of this device.
    pub fn tgt_devs(&self) -> Vec<Arc<TgtDev>> {
        let mut v = self.tgt_devs.lock();
        v.retain(|w| w.strong_count() > 0);
        v.iter().filter_map(Weak::upgrade).collect()
    }

    /// Relative target port ids of the targets exporting this device in any LUN set.
    pub fn target_ports(&self) -> Vec<u16> {
        let Some(scst) = self.scst.upgrade() else {
            return Vec::new();
        };
        let targets: Vec<Arc<Target>> = scst.registry.lock().targets.values().cloned().collect();
        let me = self as *const DeviceEntry;
        let mut ports: Vec<u16> = targets
            .iter()
            .filter(|t| {
                let acl = t.acl.lock();
                std::iter::once(&acl.default_luns)
                    .chain(acl.groups.iter().map(|g| &g.luns))
                    .any(|set| {
                        set.luns
                            .values()
                            .any(|e| std::ptr::eq(Arc::as_ptr(&e.device), me))
                    })
            })
            .map(|t| t.rel_tgt_id())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Queue a unit attention on every nexus of the device.
    pub fn queue_ua_all(&self, sense: scsi_wire::Sense) {
        for td in self.tgt_devs() {
            td.queue_ua(sense);
        }
    }
}

/// Device-originated unit attentions (a vcdrom medium change) reach every nexus.
impl DeviceEvents for DeviceEntry {
    fn queue_ua_all(&self, sense: scsi_wire::Sense) {
        DeviceEntry::queue_ua_all(self, sense);
    }
}

#[derive(Default)]
struct Registry {
    devices: BTreeMap<String, Arc<DeviceEntry>>,
    /// Keyed by (driver, target name).
    targets: BTreeMap<(String, String), Arc<Target>>,
}

/// The SCST core instance.
pub struct Scst {
    /// Handed to devices so they can reach the registry (`DeviceEntry::target_ports`).
    me: Weak<Scst>,
    registry: Mutex<Registry>,
    pub io_pool: IoPool,
    next_session_id: std::sync::atomic::AtomicU64,
}

impl Scst {
    pub fn new(io_threads: usize) -> Arc<Scst> {
        Arc::new_cyclic(|me| Scst {
            me: me.clone(),
            registry: Mutex::new(Registry::default()),
            io_pool: IoPool::new(io_threads),
            next_session_id: std::sync::atomic::AtomicU64::new(1),
        })
    }

    pub fn add_device(&self, dev: Arc<dyn Device>) -> Result<Arc<DeviceEntry>, MgmtError> {
        let mut r = self.registry.lock();
        let name = dev.name().to_string();
        if r.devices.contains_key(&name) {
            return Err(MgmtError::Exists {
                kind: "device",
                name,
            });
        }
        let entry = Arc::new(DeviceEntry {
            dev,
            tgt_devs: Mutex::new(Vec::new()),
            resv: Reservations::default(),
            scst: self.me.clone(),
        });
        r.devices.insert(name, entry.clone());
        let events: Weak<DeviceEntry> = Arc::downgrade(&entry);
        entry.dev.attach_events(events);
        Ok(entry)
    }

    pub fn device(&self, name: &str) -> Result<Arc<DeviceEntry>, MgmtError> {
        self.registry
            .lock()
            .devices
            .get(name)
            .cloned()
            .ok_or_else(|| MgmtError::NotFound {
                kind: "device",
                name: name.to_string(),
            })
    }

    pub fn devices(&self) -> Vec<Arc<DeviceEntry>> {
        self.registry.lock().devices.values().cloned().collect()
    }

    /// Create a target; `rel_tgt_id` None picks the lowest unused id (SCST auto-assigns).
    pub fn add_target(
        &self,
        driver: &str,
        name: &str,
        rel_tgt_id: Option<u16>,
    ) -> Result<Arc<Target>, MgmtError> {
        let mut r = self.registry.lock();
        let key = (driver.to_string(), name.to_string());
        if r.targets.contains_key(&key) {
            return Err(MgmtError::Exists {
                kind: "target",
                name: name.to_string(),
            });
        }
        let used: Vec<u16> = r.targets.values().map(|t| t.rel_tgt_id()).collect();
        let id = match rel_tgt_id {
            Some(0) => {
                return Err(MgmtError::Invalid(format!(
                    "target '{name}': rel_tgt_id must be 1..65535"
                )))
            }
            Some(id) if used.contains(&id) => {
                return Err(MgmtError::Invalid(format!(
                    "target '{name}': rel_tgt_id {id} is already used by another target"
                )))
            }
            Some(id) => id,
            None => (1..=u16::MAX).find(|i| !used.contains(i)).ok_or_else(|| {
                MgmtError::Invalid(format!("target '{name}': no free rel_tgt_id"))
            })?,
        };
        let t = Arc::new(Target::new(driver, name, id));
        r.targets.insert(key, t.clone());
        Ok(t)
    }

    pub fn set_rel_tgt_id(&self, target: &Target, id: u16) -> Result<(), MgmtError> {
        let r = self.registry.lock();
        if id == 0
            || r.targets
                .values()
                .any(|t| t.name != target.name && t.rel_tgt_id() == id)
        {
            return Err(MgmtError::Invalid(format!(
                "target '{}': rel_tgt_id {id} is invalid or already used",
                target.name
            )));
        }
        target.set_rel_tgt_id(id);
        Ok(())
    }

    pub fn target(&self, driver: &str, name: &str) -> Option<Arc<Target>> {
        self.registry
            .lock()
            .targets
            .get(&(driver.to_string(), name.to_string()))
            .cloned()
    }

    pub fn targets(&self, driver: &str) -> Vec<Arc<Target>> {
        self.registry
            .lock()
            .targets
            .values()
            .filter(|t| t.driver == driver)
            .cloned()
            .collect()
    }

    /// Add a LUN to a target's default set (`group` None) or to an initiator group.
    pub fn add_lun(
        &self,
        target: &Target,
        group: Option<&str>,
        lun: u64,
        device: &str,
        read_only: bool,
    ) -> Result<(), MgmtError> {
        let device = self.device(device)?;
        let mut acl = target.acl.lock();
        let set = match group {
            None => &mut acl.default_luns,
            Some(g) => &mut acl.group_mut(g)?.luns,
        };
        set.add(lun, LunEntry { device, read_only })
    }

    /// Bind a new session (I_T nexus): resolve its LUN set through the target's ACL
    /// and create one tgt_dev per LUN, each starting with a POWER ON/RESET unit attention.
    pub fn register_session(
        &self,
        target: &Arc<Target>,
        transport_id: TransportId,
        events: Arc<dyn SessionEvents>,
    ) -> Arc<Session> {
        let id = self
            .next_session_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = Session::new(id, target.clone(), transport_id, events);
        target.sessions.lock().push(Arc::downgrade(&session));
        session
    }

    /// Flush every device (daemon shutdown).
    pub fn flush_all(&self) {
        for d in self.devices() {
            if let Err(e) = d.dev.flush() {
                log::error!("device {}: flush failed: {e}", d.name());
            }
        }
    }
}
