//! The registry of devices and targets: what management commands change and what
//! sessions bind to at creation. The data path never takes these locks; it works on the
//! session's own tgt_dev table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::device::{Device, DeviceEvents};
use crate::error::MgmtError;
use crate::iopool::IoPool;
use crate::reservation::Reservations;
use crate::session::{Session, SessionEvents, TgtDev, TransportId};
use crate::target::Target;

/// A registered device: the dev handler's object plus what the core keeps per device.
pub struct DeviceEntry {
    pub dev: Arc<dyn Device>,
    /// Every I_T_L nexus (tgt_dev) of this device, for unit attentions and resets that
    /// reach all initiators.
    pub(crate) tgt_devs: Mutex<Vec<Weak<TgtDev>>>,
    /// SPC-2 and persistent reservations (scst-reference 5.3), checked on every command.
    pub(crate) resv: Reservations,
    /// The device group's ALUA state for the data path (scst-reference 5.4).
    pub(crate) alua: crate::alua::DeviceAlua,
    /// The core instance, to find the target ports exporting the device (PR ALL_TG_PT,
    /// REGISTER AND MOVE).
    scst: Weak<Scst>,
    /// What the device's gone nexuses counted (stats.rs).
    pub(crate) retired: crate::stats::LunStats,
}

impl DeviceEntry {
    /// The core the device is registered with (gone at shutdown).
    pub(crate) fn scst(&self) -> Option<Arc<Scst>> {
        self.scst.upgrade()
    }

    pub fn name(&self) -> &str {
        self.dev.name()
    }

    /// Where the device's PR state is persisted (`pr_file_name`), if anywhere.
    pub fn pr_file(&self) -> Option<PathBuf> {
        self.resv.pr_file()
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
            if let Some(s) = td.session() {
                s.events().unit_attention(td.lun, sense);
            }
        }
    }
}

impl DeviceEntry {
    /// Where and what to dump for `pr_dump_dir` (scst-reference 2.4): disk devices of a handler
    /// with a dump directory write `<dir>/<unit serial number>`.
    pub(crate) fn pr_dump(&self, scst: &Scst) -> Option<(PathBuf, String)> {
        if self.dev.scsi_type() != 0 {
            return None;
        }
        let dir = scst.pr_dump_dir(self.dev.handler_name())?;
        let serial = self
            .dev
            .attributes()
            .into_iter()
            .find(|(n, _, _)| n == "usn")
            .map(|(_, v, _)| v)
            .filter(|v| !v.is_empty() && !v.contains(['/', '\0']) && v != "." && v != "..");
        let Some(serial) = serial else {
            log::error!(
                "device {}: no usable unit serial number, PR state not dumped",
                self.name()
            );
            return None;
        };
        Some((dir.join(serial), self.pr_state_text()))
    }
}

/// Reservations for a device persisted in `path`, with what the file holds.
fn load_pr_file(dev: &str, path: &Path) -> Reservations {
    use crate::pr_persist::{load_aptpl, Loaded};
    match load_aptpl(path) {
        Ok(Loaded::Absent) => {
            Reservations::with_state(Default::default(), Some(path.into()), false)
        }
        Ok(Loaded::State(st)) => {
            log::info!(
                "device {dev}: persistent reservations restored from {} ({} registrants)",
                path.display(),
                st.registrants.len()
            );
            Reservations::with_state(st, Some(path.into()), true)
        }
        Err(e) => {
            // Keep the bad file for inspection; the next APTPL change writes a new one.
            let mut aside = path.as_os_str().to_owned();
            aside.push(".corrupt");
            let moved = std::fs::rename(path, &aside).is_ok();
            log::error!(
                "device {dev}: persistent reservation state not loaded: {e}; starting \
                 without PR state{}",
                if moved {
                    format!(" (file moved to {})", Path::new(&aside).display())
                } else {
                    String::new()
                }
            );
            Reservations::with_state(Default::default(), Some(path.into()), !moved)
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
pub(crate) struct Registry {
    pub(crate) devices: BTreeMap<String, Arc<DeviceEntry>>,
    /// Keyed by (driver, target name).
    pub(crate) targets: BTreeMap<(String, String), Arc<Target>>,
}

/// The SCST core instance.
pub struct Scst {
    /// Handed to devices so they can reach the registry (`DeviceEntry::target_ports`).
    pub(crate) me: Weak<Scst>,
    /// Lock order: registry, then a target's `acl`, then its `sessions`, then a
    /// device's `tgt_devs`.
    pub(crate) registry: Mutex<Registry>,
    /// Live reconfiguration state: `async_lun_replace` and parked cleanups.
    pub(crate) reconfig: crate::reconfig::ReconfigState,
    /// Device groups and target groups (ALUA, scst-reference 2.9).
    pub(crate) alua: crate::alua::AluaGroups,
    pub io_pool: IoPool,
    next_session_id: std::sync::atomic::AtomicU64,
    /// Persistent state lives under it (`<dir>/pr/<device>` APTPL files); None: PR
    /// state is not persisted (unit tests). Set before devices are added.
    state_dir: Mutex<Option<PathBuf>>,
    /// Handler-wide `pr_dump_dir` (scst-reference 2.4), by handler name.
    pr_dump_dirs: Mutex<BTreeMap<String, PathBuf>>,
    /// The target drivers and dev handlers management reaches (driver.rs).
    pub(crate) registrations: crate::driver::Registrations,
    /// `scst_max_cmd_mem`: the budget every transport charges data buffers to.
    pub cmd_mem: crate::CmdMem,
    /// The root attribute `measure_latency` (stats.rs).
    pub(crate) measure_latency: crate::stats::LatencySwitch,
    /// The copy manager's state EXTENDED COPY reads (copy_mgr.rs).
    pub(crate) copy_mgr: crate::copy_mgr::CopyMgrState,
}

impl Scst {
    pub fn new(io_threads: usize) -> Arc<Scst> {
        Arc::new_cyclic(|me| Scst {
            me: me.clone(),
            registry: Mutex::new(Registry::default()),
            reconfig: Default::default(),
            alua: Default::default(),
            io_pool: IoPool::new(io_threads),
            next_session_id: std::sync::atomic::AtomicU64::new(1),
            state_dir: Mutex::new(None),
            pr_dump_dirs: Mutex::new(BTreeMap::new()),
            registrations: Default::default(),
            cmd_mem: crate::CmdMem::new(crate::cmd_mem::default_limit()),
            measure_latency: Default::default(),
            copy_mgr: Default::default(),
        })
    }

    /// Where persistent state lives; devices added afterwards keep their APTPL files in
    /// `<dir>/pr/<device name>` unless given a `pr_file_name`.
    pub fn set_state_dir(&self, dir: PathBuf) {
        *self.state_dir.lock() = Some(dir);
    }

    /// The handler attribute `pr_dump_dir` (scst-reference 2.4): where the handler's disk devices
    /// dump their PR state when detached. None or an empty path turns it off.
    pub fn set_pr_dump_dir(&self, handler: &str, dir: Option<PathBuf>) {
        let mut d = self.pr_dump_dirs.lock();
        match dir.filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => d.insert(handler.to_string(), p),
            None => d.remove(handler),
        };
    }

    /// The state directory (`--state-dir`), where APTPL files go by default.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir.lock().clone()
    }

    pub fn pr_dump_dir(&self, handler: &str) -> Option<PathBuf> {
        self.pr_dump_dirs.lock().get(handler).cloned()
    }

    pub fn add_device(&self, dev: Arc<dyn Device>) -> Result<Arc<DeviceEntry>, MgmtError> {
        self.add_device_with_pr_file(dev, None)
    }

    /// Register a device whose APTPL file is `pr_file` (the `pr_file_name` attribute;
    /// None: the default under the state directory) and load its persisted PR state.
    /// A file that cannot be read or parsed is logged, moved aside and ignored: the
    /// device starts with no PR state rather than not at all.
    pub fn add_device_with_pr_file(
        &self,
        dev: Arc<dyn Device>,
        pr_file: Option<PathBuf>,
    ) -> Result<Arc<DeviceEntry>, MgmtError> {
        let pr_file = pr_file.or_else(|| {
            let dir = self.state_dir.lock().clone()?;
            Some(dir.join("pr").join(dev.name()))
        });
        let resv = match &pr_file {
            Some(path) => load_pr_file(dev.name(), path),
            None => Reservations::default(),
        };
        self.insert_device(dev, resv)
    }

    fn insert_device(
        &self,
        dev: Arc<dyn Device>,
        resv: Reservations,
    ) -> Result<Arc<DeviceEntry>, MgmtError> {
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
            resv,
            alua: Default::default(),
            scst: self.me.clone(),
            retired: Default::default(),
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

    /// A target of any driver by name (ALUA target group members are named so).
    pub(crate) fn find_target_by_name(&self, name: &str) -> Option<Arc<Target>> {
        self.registry
            .lock()
            .targets
            .values()
            .find(|t| t.name == name)
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
    /// Live sessions bound to that set see it at once (see `reconfig::lun_add`).
    pub fn add_lun(
        &self,
        target: &Target,
        group: Option<&str>,
        lun: u64,
        device: &str,
        read_only: bool,
    ) -> Result<(), MgmtError> {
        self.lun_add(target, group, lun, device, read_only)
    }

    /// Bind a new session (I_T nexus): resolve its LUN set through the target's ACL
    /// and create one tgt_dev per LUN, each starting with a POWER ON/RESET unit attention.
    pub fn register_session(
        &self,
        target: &Arc<Target>,
        transport_id: TransportId,
        events: Arc<dyn SessionEvents>,
    ) -> Arc<Session> {
        let name = transport_id.name();
        self.register_session_as(target, transport_id, name, events)
    }

    /// `register_session` under an initiator name of the transport's choosing, which the
    /// ACL matches and the management tree shows: iSCSI's `per_portal_acl` registers
    /// `<iqn>#<portal>` so groups can grant LUNs per portal (scst-reference 6.4). The port
    /// identity in `transport_id` (reservations, TransportIDs) keeps the plain name.
    pub fn register_session_as(
        &self,
        target: &Arc<Target>,
        transport_id: TransportId,
        initiator_name: String,
        events: Arc<dyn SessionEvents>,
    ) -> Arc<Session> {
        let id = self
            .next_session_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The ACL lock is held until the session is listed on the target, so a LUN set
        // change either precedes the binding or sees the session (reconfig.rs).
        let acl = target.acl.lock();
        let (set, group) = acl.lookup(&initiator_name);
        let group = group.map(|g| g.name.clone());
        let session = Session::new(
            id,
            target.clone(),
            transport_id,
            initiator_name,
            events,
            set,
            group,
        );
        target.sessions.lock().push(Arc::downgrade(&session));
        drop(acl);
        session
    }

    /// Detach every device at daemon shutdown, once the transports have stopped and no
    /// command is in flight: flush it, and write the PR dumps `pr_dump_dir` asks for.
    /// The states are captured first, then written with no core lock held.
    pub fn detach_all(&self) {
        // Parked LUN-replace cleanups must not outlive the daemon (SCST's module
        // unload clears async_lun_replace as a safety net).
        self.set_async_lun_replace(false);
        self.flush_all();
        let dumps: Vec<(String, PathBuf, String)> = self
            .devices()
            .iter()
            .filter_map(|d| {
                let (path, text) = d.pr_dump(self)?;
                Some((d.name().to_string(), path, text))
            })
            .collect();
        for (name, path, text) in dumps {
            match crate::pr_persist::write_atomic(&path, text.as_bytes()) {
                Ok(()) => log::info!("device {name}: PR state dumped to {}", path.display()),
                Err(e) => log::error!("device {name}: PR state dump failed: {e}"),
            }
        }
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
