//! What target drivers and dev handlers register with the core for management: the
//! management side of SCST's target template and dev handler registration (docs/scst-reference.md
//! 4.1, 2.4, 2.6). The management tree reaches drivers and handlers only through these
//! traits, so a new transport or handler appears under `targets/` or `handlers/` by
//! registering, without the tree knowing it.
//!
//! Every optional capability has a default that refuses it as not supported (as
//! rust-vmm's backend traits do), so a driver implements only what it offers and nothing
//! is accepted and then ignored.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use scsi_wire::lun::AddrMethod;

use crate::{Device, MgmtError, Scst, Target};

/// One attribute file a driver computes itself (limits, live counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrFile {
    pub name: String,
    pub value: String,
    /// Whether it is configuration (`[key]`): saved by `-write_config`.
    pub key: bool,
}

fn unsupported(what: impl std::fmt::Display) -> MgmtError {
    MgmtError::NotSupported(format!("{what} is not supported"))
}

/// A target driver, as management sees it: the driver's directory `targets/<name>/`,
/// the targets it creates, and their attributes.
pub trait TargetDriver: Send + Sync {
    /// The directory name under `targets/` (SCST's template name, e.g. `iscsi`).
    fn name(&self) -> &str;

    /// The driver's own `enabled` attribute (iSCSI's: whether it accepts logins at
    /// all); None: the driver has none, and its directory shows no `enabled` file.
    fn enabled(&self) -> Option<bool> {
        None
    }

    fn set_enabled(&self, _on: bool) -> Result<(), MgmtError> {
        Err(unsupported(format!("driver {}: enabled", self.name())))
    }

    /// What `add_target` accepts besides the target's own attributes, for the usage text.
    fn add_target_params(&self) -> &'static [&'static str] {
        &["rel_tgt_id"]
    }

    /// Multi-value driver attributes, changed with `add_attribute`/`del_attribute`.
    fn driver_dyn_attrs(&self) -> &'static [&'static str] {
        &[]
    }

    /// Multi-value target attributes, changed with `add_target_attribute`/
    /// `del_target_attribute`.
    fn target_dyn_attrs(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether a new value of dynamic attribute `attr` replaces the old one instead of
    /// adding an instance (iSCSI's OutgoingUser).
    fn single_instance(&self, _attr: &str) -> bool {
        false
    }

    /// Single-valued target attributes written through their file, each with the value
    /// a target that does not set it runs with.
    fn target_params(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Check a target attribute (a parameter or a dynamic attribute's value).
    fn validate_target_attr(&self, name: &str, _value: &str) -> Result<(), MgmtError> {
        Err(unsupported(format!(
            "driver {}: target attribute {name}",
            self.name()
        )))
    }

    /// Create a target from `add_target`'s parameters: `rel_tgt_id` and `addr_method`
    /// are the core's, the rest the driver's target attributes. Every parameter is
    /// checked before anything is created: nothing half-applied.
    fn add_target(
        &self,
        scst: &Scst,
        name: &str,
        params: &[(String, String)],
    ) -> Result<Arc<Target>, MgmtError> {
        add_target_checked(self, scst, name, params)
    }

    /// A target's `enabled`: whether it accepts new sessions. A driver whose sessions
    /// must end when their target is disabled (a vhost-user connection, which has no
    /// login to refuse later) closes them here. Must not wait for them to end.
    fn set_target_enabled(&self, target: &Target, on: bool) -> Result<(), MgmtError> {
        target.set_enabled(on);
        Ok(())
    }

    /// Delete a target; the core closes its sessions.
    fn del_target(&self, scst: &Scst, name: &str) -> Result<(), MgmtError> {
        scst.del_target(self.name(), name)
    }

    /// The configured driver attributes, multi-valued, in the order they were given.
    fn driver_attrs(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Single-valued driver attributes set by writing their file; an empty write
    /// removes them.
    fn driver_params(&self) -> &'static [&'static str] {
        &[]
    }

    /// Add one instance of a driver attribute.
    fn add_driver_attr(&self, name: &str, _value: &str) -> Result<(), MgmtError> {
        Err(unsupported(format!(
            "driver {}: attribute {name}",
            self.name()
        )))
    }

    /// Remove the instances of `name` (only the one equal to `value` when given).
    /// Returns how many were removed.
    fn remove_driver_attr(&self, _name: &str, _value: Option<&str>) -> usize {
        0
    }

    /// Attribute files of the driver's directory that the driver computes.
    fn driver_files(&self) -> Vec<AttrFile> {
        Vec::new()
    }

    /// Write one of [`TargetDriver::driver_files`].
    fn write_driver_file(&self, name: &str, _value: &str) -> Result<(), MgmtError> {
        Err(unsupported(format!(
            "driver {}: writing {name}",
            self.name()
        )))
    }
}

/// `add_target` as every driver does it: `rel_tgt_id` and `addr_method` are the core's,
/// the rest are checked with the driver's `validate_target_attr` and kept as the
/// target's attributes, all before anything is created. Drivers that do more at
/// creation (bind a socket) call it from their own `add_target`.
pub fn add_target_checked<D: TargetDriver + ?Sized>(
    driver: &D,
    scst: &Scst,
    name: &str,
    params: &[(String, String)],
) -> Result<Arc<Target>, MgmtError> {
    let mut rel = None;
    let mut addr_method = None;
    let mut attrs = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "addr_method" => addr_method = Some(parse_addr_method(v)?),
            "rel_tgt_id" => {
                rel = Some(v.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    MgmtError::Invalid(format!("target {name}: rel_tgt_id must be 1..65535"))
                })?)
            }
            _ => {
                driver.validate_target_attr(k, v).map_err(|e| match e {
                    MgmtError::NotSupported(m) => {
                        MgmtError::NotSupported(format!("target {name}: {m}"))
                    }
                    e => MgmtError::Invalid(format!("target {name}: {e}")),
                })?;
                attrs.push((k.clone(), v.clone()));
            }
        }
    }
    let t = scst.add_target(driver.name(), name, rel)?;
    t.attrs.lock().extend(attrs);
    if let Some(m) = addr_method {
        *t.addr_method.lock() = m;
    }
    Ok(t)
}

/// `addr_method` of a target or an initiator group (scst-reference 2.6).
pub fn parse_addr_method(v: &str) -> Result<AddrMethod, MgmtError> {
    AddrMethod::from_name(&v.trim().to_ascii_uppercase()).ok_or_else(|| {
        MgmtError::Invalid(format!(
            "addr_method must be PERIPHERAL, FLAT or LUN, not '{}'",
            v.trim()
        ))
    })
}

/// A dev handler, as management sees it: `handlers/<name>/` and the devices it creates.
pub trait DevHandler: Send + Sync {
    /// The directory name under `handlers/` (e.g. `vdisk_fileio`).
    fn name(&self) -> &str;

    /// The SCSI peripheral device type of its devices.
    fn scsi_type(&self) -> u8;

    /// The parameters `add_device` accepts, for the usage text.
    fn creation_params(&self) -> &'static [&'static str];

    /// Create a device from `add_device`'s parameters. `setup_id` is the daemon's
    /// setup id, the high half of generated device ids.
    fn create_device(
        &self,
        name: &str,
        params: &[(String, String)],
        setup_id: u64,
    ) -> Result<Arc<dyn Device>, MgmtError>;

    /// Optional attributes (`add_attribute` and `add_device_attribute`); SCST offers
    /// those commands only for handlers that declare some.
    fn optional_attrs(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The drivers and handlers registered with one core.
///
/// A target driver is held weakly: it holds the core, and it leaves `targets/` when
/// whoever runs it drops it. Dev handlers are factories without state and are held.
#[derive(Default)]
pub(crate) struct Registrations {
    target_drivers: Mutex<Vec<Weak<dyn TargetDriver>>>,
    dev_handlers: Mutex<Vec<Arc<dyn DevHandler>>>,
}

impl Scst {
    /// Register a target driver: its directory appears under `targets/`.
    pub fn register_target_driver<D: TargetDriver + 'static>(
        &self,
        driver: &Arc<D>,
    ) -> Result<(), MgmtError> {
        let mut drivers = self.registrations.target_drivers.lock();
        drivers.retain(|d| d.strong_count() > 0);
        if drivers
            .iter()
            .filter_map(Weak::upgrade)
            .any(|d| d.name() == driver.name())
        {
            return Err(MgmtError::Exists {
                kind: "target driver",
                name: driver.name().to_string(),
            });
        }
        let weak: Weak<D> = Arc::downgrade(driver);
        drivers.push(weak);
        Ok(())
    }

    pub fn target_driver(&self, name: &str) -> Option<Arc<dyn TargetDriver>> {
        self.target_drivers().into_iter().find(|d| d.name() == name)
    }

    /// The live target drivers, in registration order.
    pub fn target_drivers(&self) -> Vec<Arc<dyn TargetDriver>> {
        self.registrations
            .target_drivers
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Register a dev handler: its directory appears under `handlers/`.
    pub fn register_dev_handler(&self, handler: Arc<dyn DevHandler>) -> Result<(), MgmtError> {
        let mut handlers = self.registrations.dev_handlers.lock();
        if handlers.iter().any(|h| h.name() == handler.name()) {
            return Err(MgmtError::Exists {
                kind: "dev handler",
                name: handler.name().to_string(),
            });
        }
        handlers.push(handler);
        Ok(())
    }

    pub fn dev_handler(&self, name: &str) -> Option<Arc<dyn DevHandler>> {
        self.registrations
            .dev_handlers
            .lock()
            .iter()
            .find(|h| h.name() == name)
            .cloned()
    }

    /// The dev handlers, in registration order.
    pub fn dev_handlers(&self) -> Vec<Arc<dyn DevHandler>> {
        self.registrations.dev_handlers.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bare;
    impl TargetDriver for Bare {
        fn name(&self) -> &str {
            "bare"
        }
    }

    #[test]
    fn optional_capabilities_are_refused_not_ignored() {
        let d = Bare;
        assert!(matches!(
            d.set_enabled(false),
            Err(MgmtError::NotSupported(_))
        ));
        assert!(matches!(
            d.add_driver_attr("x", "1"),
            Err(MgmtError::NotSupported(_))
        ));
        assert!(matches!(
            d.write_driver_file("x", "1"),
            Err(MgmtError::NotSupported(_))
        ));
        let scst = Scst::new(1);
        // A target attribute the driver does not declare refuses the whole target.
        let e = d
            .add_target(&scst, "t", &[("x".into(), "1".into())])
            .err()
            .unwrap();
        assert!(matches!(e, MgmtError::NotSupported(_)), "{e}");
        assert_eq!(
            e.to_string(),
            "target t: driver bare: target attribute x is not supported"
        );
        assert!(scst.target("bare", "t").is_none());
        let t = d
            .add_target(
                &scst,
                "t",
                &[
                    ("rel_tgt_id".into(), "7".into()),
                    ("addr_method".into(), "flat".into()),
                ],
            )
            .unwrap();
        assert_eq!(t.rel_tgt_id(), 7);
        assert_eq!(*t.addr_method.lock(), AddrMethod::Flat);
        assert!(d
            .add_target(&scst, "u", &[("rel_tgt_id".into(), "0".into())])
            .is_err());
        d.del_target(&scst, "t").unwrap();
        assert!(scst.target("bare", "t").is_none());
    }

    #[test]
    fn registry_holds_drivers_weakly_and_names_once() {
        let scst = Scst::new(1);
        let d = Arc::new(Bare);
        scst.register_target_driver(&d).unwrap();
        assert!(matches!(
            scst.register_target_driver(&Arc::new(Bare)),
            Err(MgmtError::Exists { .. })
        ));
        assert_eq!(scst.target_driver("bare").unwrap().name(), "bare");
        drop(d);
        assert!(scst.target_driver("bare").is_none());
        assert!(scst.target_drivers().is_empty());
        // Gone, the name is free again.
        scst.register_target_driver(&Arc::new(Bare)).unwrap();
    }
}
