//! The copy manager target (docs/scst-reference.md "The copy manager target"): SCST's
//! `copy_manager` target driver with its one fixed target `copy_manager_tgt`, whose LUN
//! list names the devices EXTENDED COPY may use. A device is registered there (at the
//! lowest free LUN) when it is created and leaves it when it is deleted; management may
//! move it to another LUN or take it out. `allow_not_connected_copy` (driver attribute,
//! default 0) lets a copy use a registered device the issuing initiator has no LUN of;
//! such a device is reached through a nexus of the copy manager's own
//! (`copy_manager_sess`), as SCST does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use crate::driver::AttrFile;
use crate::target::MAX_LUN;
use crate::{MgmtError, Scst, Session, SessionEvents, Target, TargetDriver, TransportId};

/// The driver's directory under `targets/`.
pub const COPY_MANAGER: &str = "copy_manager";
/// Its one target.
pub const COPY_MANAGER_TGT: &str = "copy_manager_tgt";
/// The initiator name of the copy manager's own nexus.
const COPY_MANAGER_SESS: &str = "copy_manager_sess";
const ALLOW_NOT_CONNECTED: &str = "allow_not_connected_copy";

/// What the data path reads of the copy manager: whether it is registered (without it,
/// as in unit tests, a copy resolves through the issuing session's LUNs alone) and
/// `allow_not_connected_copy`.
#[derive(Default)]
pub(crate) struct CopyMgrState {
    registered: AtomicBool,
    allow_not_connected: AtomicBool,
    /// The copy manager is part of the core (SCST's is not a module of its own): the
    /// core keeps its driver registered for as long as it lives.
    driver: parking_lot::Mutex<Option<Arc<CopyManager>>>,
}

/// How EXTENDED COPY may reach devices, read once per command.
pub(crate) struct CopyGate {
    /// `copy_manager_tgt`: only its devices may take part.
    pub(crate) target: Arc<Target>,
    pub(crate) allow_not_connected: bool,
}

impl CopyGate {
    /// Whether `device` is in the copy manager's LUN list.
    pub(crate) fn registered(&self, device: &str) -> bool {
        self.target
            .acl
            .lock()
            .default_luns
            .luns
            .values()
            .any(|e| e.device.name() == device)
    }

    /// A nexus of the copy manager's own to every registered device, for devices the
    /// issuing session has no LUN of. Unregistered when dropped.
    pub(crate) fn session(&self, scst: &Scst) -> CopyMgrSession {
        CopyMgrSession(scst.register_session(
            &self.target,
            TransportId::iscsi(COPY_MANAGER_SESS, None),
            Arc::new(NoTransport),
        ))
    }
}

/// The copy manager's nexus for one EXTENDED COPY.
pub(crate) struct CopyMgrSession(pub(crate) Arc<Session>);

impl Drop for CopyMgrSession {
    fn drop(&mut self) {
        self.0.unregister();
    }
}

/// The copy manager's nexus has no transport: nothing to abort or close.
struct NoTransport;

impl SessionEvents for NoTransport {
    fn abort_device_tasks(&self, _device: &Arc<crate::DeviceEntry>) {}
    fn close(&self) {}
}

impl Scst {
    /// The copy manager's gate, None when no copy manager is registered.
    pub(crate) fn copy_gate(&self) -> Option<CopyGate> {
        if !self.copy_mgr.registered.load(Ordering::Acquire) {
            return None;
        }
        Some(CopyGate {
            target: self.target(COPY_MANAGER, COPY_MANAGER_TGT)?,
            allow_not_connected: self.copy_mgr.allow_not_connected.load(Ordering::Relaxed),
        })
    }

    /// Register a new device with the copy manager at its lowest free LUN (SCST's
    /// automatic assignment); nothing without a copy manager or when it is there already.
    pub fn copy_manager_add_device(&self, device: &str) -> Result<(), MgmtError> {
        let Some(gate) = self.copy_gate() else {
            return Ok(());
        };
        if gate.registered(device) {
            return Ok(());
        }
        let lun = free_lun(&gate.target, None)?;
        self.lun_add(&gate.target, None, lun, device, false)
    }

    /// Take a device out of the copy manager's LUN list (before it is deleted).
    pub fn copy_manager_remove_device(&self, device: &str) -> Result<(), MgmtError> {
        let Some(gate) = self.copy_gate() else {
            return Ok(());
        };
        for lun in luns_of(&gate.target, device) {
            self.lun_del(&gate.target, None, lun)?;
        }
        Ok(())
    }

    /// `add <dev> <lun>` on `copy_manager_tgt/luns/mgmt`: put the device at `lun`. A
    /// device is registered once, so it moves there from the LUN it had; a device that
    /// held `lun` (assigned automatically) moves to the lowest free LUN and stays
    /// registered. Read-only LUNs are refused, as in SCST.
    pub fn copy_manager_place(
        &self,
        target: &Target,
        lun: u64,
        device: &str,
        read_only: bool,
    ) -> Result<(), MgmtError> {
        if read_only {
            return Err(MgmtError::NotSupported(format!(
                "{COPY_MANAGER_TGT}: the copy manager does not support read-only LUNs"
            )));
        }
        if lun > MAX_LUN {
            return Err(MgmtError::Invalid(format!(
                "LUN {lun} is out of range 0..{MAX_LUN}"
            )));
        }
        self.device(device)?;
        let holder = target
            .acl
            .lock()
            .default_luns
            .luns
            .get(&lun)
            .map(|e| e.device.name().to_string());
        if holder.as_deref() == Some(device) {
            return Ok(());
        }
        for old in luns_of(target, device) {
            self.lun_del(target, None, old)?;
        }
        if let Some(other) = holder {
            self.lun_del(target, None, lun)?;
            let free = free_lun(target, Some(lun))?;
            self.lun_add(target, None, free, &other, false)?;
        }
        self.lun_add(target, None, lun, device, false)
    }
}

/// The LUNs of `device` in the target's default set.
fn luns_of(target: &Target, device: &str) -> Vec<u64> {
    target
        .acl
        .lock()
        .default_luns
        .luns
        .iter()
        .filter(|(_, e)| e.device.name() == device)
        .map(|(&n, _)| n)
        .collect()
}

/// The lowest LUN of the default set that is free (and not `except`).
fn free_lun(target: &Target, except: Option<u64>) -> Result<u64, MgmtError> {
    let acl = target.acl.lock();
    (0..=MAX_LUN)
        .find(|n| Some(*n) != except && !acl.default_luns.luns.contains_key(n))
        .ok_or_else(|| MgmtError::Invalid(format!("{COPY_MANAGER_TGT}: no free LUN")))
}

/// The `copy_manager` target driver: one target that cannot be added or deleted, and
/// the `allow_not_connected_copy` attribute.
pub struct CopyManager {
    scst: Weak<Scst>,
}

impl CopyManager {
    /// Create `copy_manager_tgt` (never enabled: relative target port id 0, as SCST
    /// shows it), register the driver and every device already present. The core
    /// keeps the driver.
    pub fn register(scst: &Arc<Scst>) -> Result<Arc<CopyManager>, MgmtError> {
        {
            let mut r = scst.registry.lock();
            let key = (COPY_MANAGER.to_string(), COPY_MANAGER_TGT.to_string());
            if r.targets.contains_key(&key) {
                return Err(MgmtError::Exists {
                    kind: "target",
                    name: COPY_MANAGER_TGT.to_string(),
                });
            }
            let t = Arc::new(Target::new(COPY_MANAGER, COPY_MANAGER_TGT, 0));
            r.targets.insert(key, t);
        }
        let cm = Arc::new(CopyManager {
            scst: Arc::downgrade(scst),
        });
        scst.register_target_driver(&cm)?;
        *scst.copy_mgr.driver.lock() = Some(cm.clone());
        scst.copy_mgr.registered.store(true, Ordering::Release);
        for d in scst.devices() {
            scst.copy_manager_add_device(d.name())?;
        }
        Ok(cm)
    }
}

impl TargetDriver for CopyManager {
    fn name(&self) -> &str {
        COPY_MANAGER
    }

    fn add_target_params(&self) -> &'static [&'static str] {
        &[]
    }

    fn target_params(&self) -> &'static [(&'static str, &'static str)] {
        &[("comment", "")]
    }

    fn validate_target_attr(&self, name: &str, _value: &str) -> Result<(), MgmtError> {
        match name {
            "comment" => Ok(()),
            _ => Err(MgmtError::NotSupported(format!(
                "driver {COPY_MANAGER}: target attribute {name}"
            ))),
        }
    }

    fn add_target(
        &self,
        _scst: &Scst,
        name: &str,
        _params: &[(String, String)],
    ) -> Result<Arc<Target>, MgmtError> {
        Err(MgmtError::NotSupported(format!(
            "target {name}: the copy manager has one target, {COPY_MANAGER_TGT}"
        )))
    }

    fn del_target(&self, _scst: &Scst, name: &str) -> Result<(), MgmtError> {
        Err(MgmtError::NotSupported(format!(
            "target {name}: the copy manager's target cannot be deleted"
        )))
    }

    fn driver_files(&self) -> Vec<AttrFile> {
        let on = self
            .scst
            .upgrade()
            .is_some_and(|s| s.copy_mgr.allow_not_connected.load(Ordering::Relaxed));
        vec![AttrFile {
            name: ALLOW_NOT_CONNECTED.to_string(),
            value: u8::from(on).to_string(),
            // SCST marks it key when it is not its default, 0.
            key: on,
        }]
    }

    fn write_driver_file(&self, name: &str, value: &str) -> Result<(), MgmtError> {
        if name != ALLOW_NOT_CONNECTED {
            return Err(MgmtError::NotSupported(format!(
                "driver {COPY_MANAGER}: writing {name}"
            )));
        }
        let on = match value.trim() {
            "0" => false,
            "1" => true,
            v => {
                return Err(MgmtError::Invalid(format!(
                    "driver {COPY_MANAGER}: {ALLOW_NOT_CONNECTED} '{v}' must be 0 or 1"
                )))
            }
        };
        let scst = self
            .scst
            .upgrade()
            .ok_or_else(|| MgmtError::Invalid("the core is shutting down".into()))?;
        scst.copy_mgr
            .allow_not_connected
            .store(on, Ordering::Relaxed);
        log::info!(
            "driver {COPY_MANAGER}: {ALLOW_NOT_CONNECTED}={}",
            u8::from(on)
        );
        Ok(())
    }
}
