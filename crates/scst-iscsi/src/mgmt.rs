//! The iSCSI driver as management sees it (docs/scst-reference.md 6.2-6.6): its directory
//! `targets/iscsi/`, the parameters and dynamic attributes of its targets, and its
//! limits and live counters. The core's [`TargetDriver`] is all the tree knows of it.

use scst_core::{AttrFile, MgmtError, TargetDriver};

use crate::{IscsiDriver, DEFAULT_LOGIN_TIMEOUT, DEFAULT_MAX_OPEN_CONNECTIONS};

/// The driver's name: its directory under `targets/`.
pub const DRIVER_NAME: &str = "iscsi";

/// iSCSI's multi-value attributes (scst-reference 6.5, 6.6): driver level and target level.
const DRIVER_DYN_ATTRS: &[&str] = &["IncomingUser", "OutgoingUser"];
const TARGET_DYN_ATTRS: &[&str] = &["IncomingUser", "OutgoingUser", "allowed_portal"];

/// Driver attributes with one value, set by writing their file (scst-reference 6.6).
const DRIVER_PARAMS: &[&str] = &[
    "iSNSServer",
    "isns_entity_name",
    "internal_portal",
    "link_local",
];

/// Writable iSCSI target parameters (scst-reference 6.2, 6.3, 6.6) the driver reads when a
/// session logs in, with the value a target that does not set them runs with. Writes
/// affect new sessions only.
const TARGET_PARAMS: &[(&str, &str)] = &[
    ("InitialR2T", "No"),
    ("ImmediateData", "Yes"),
    ("MaxRecvDataSegmentLength", "1048576"),
    ("MaxXmitDataSegmentLength", "1048576"),
    ("MaxBurstLength", "1048576"),
    ("FirstBurstLength", "65536"),
    ("MaxOutstandingR2T", "32"),
    ("HeaderDigest", "None"),
    ("DataDigest", "None"),
    ("QueuedCommands", "128"),
    ("NopInInterval", "30"),
    ("NopInTimeout", "30"),
    ("MaxSessions", "0"),
    ("alias", ""),
    ("per_portal_acl", "0"),
    ("redirect", ""),
];

/// The connection limits, written through their files (set in scst.conf too).
const LIMITS: &[&str] = &["login_timeout", "max_open_connections"];

impl TargetDriver for IscsiDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn enabled(&self) -> Option<bool> {
        Some(IscsiDriver::enabled(self))
    }

    fn set_enabled(&self, on: bool) -> Result<(), MgmtError> {
        IscsiDriver::set_enabled(self, on);
        Ok(())
    }

    fn driver_dyn_attrs(&self) -> &'static [&'static str] {
        DRIVER_DYN_ATTRS
    }

    fn target_dyn_attrs(&self) -> &'static [&'static str] {
        TARGET_DYN_ATTRS
    }

    /// One OutgoingUser: a new one replaces the old (scst-reference 6.5).
    fn single_instance(&self, attr: &str) -> bool {
        attr == "OutgoingUser"
    }

    fn target_params(&self) -> &'static [(&'static str, &'static str)] {
        TARGET_PARAMS
    }

    fn validate_target_attr(&self, name: &str, value: &str) -> Result<(), MgmtError> {
        Ok(crate::validate_target_attr(name, value)?)
    }

    fn driver_attrs(&self) -> Vec<(String, String)> {
        IscsiDriver::driver_attrs(self)
    }

    fn driver_params(&self) -> &'static [&'static str] {
        DRIVER_PARAMS
    }

    fn add_driver_attr(&self, name: &str, value: &str) -> Result<(), MgmtError> {
        Ok(self.set_driver_attr(name, value)?)
    }

    fn remove_driver_attr(&self, name: &str, value: Option<&str>) -> usize {
        IscsiDriver::remove_driver_attr(self, name, value)
    }

    /// Connection limits (set in scst.conf) and live counters that show leaks.
    fn driver_files(&self) -> Vec<AttrFile> {
        let file = |name: &str, value: String, key: bool| AttrFile {
            name: name.to_string(),
            value,
            key,
        };
        let timeout = self.login_timeout().as_secs();
        let max_conns = self.max_open_connections();
        vec![
            file(
                "login_timeout",
                timeout.to_string(),
                timeout != u64::from(DEFAULT_LOGIN_TIMEOUT),
            ),
            file(
                "max_open_connections",
                max_conns.to_string(),
                max_conns != DEFAULT_MAX_OPEN_CONNECTIONS,
            ),
            file(
                "open_connections",
                self.open_connections().to_string(),
                false,
            ),
            file("active_commands", self.active_commands().to_string(), false),
            file(
                "data_buffer_bytes",
                self.data_buffer_bytes().to_string(),
                false,
            ),
        ]
    }

    fn write_driver_file(&self, name: &str, value: &str) -> Result<(), MgmtError> {
        if LIMITS.contains(&name) {
            Ok(self.set_driver_attr(name, value.trim())?)
        } else {
            Err(MgmtError::NotSupported(format!(
                "driver {DRIVER_NAME}: {name} is read-only"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scst_core::Scst;

    #[test]
    fn limits_are_written_counters_are_not() {
        let d = IscsiDriver::new(Scst::new(1));
        let d: &dyn TargetDriver = d.as_ref();
        d.write_driver_file("login_timeout", "30\n").unwrap();
        let files = d.driver_files();
        let get = |n: &str| files.iter().find(|f| f.name == n).unwrap().clone();
        assert_eq!(
            get("login_timeout"),
            AttrFile {
                name: "login_timeout".into(),
                value: "30".into(),
                key: true
            }
        );
        assert!(!get("max_open_connections").key);
        assert!(matches!(
            d.write_driver_file("open_connections", "0"),
            Err(MgmtError::NotSupported(_))
        ));
        assert!(matches!(
            d.write_driver_file("login_timeout", "0"),
            Err(MgmtError::Invalid(_))
        ));
    }

    #[test]
    fn add_target_checks_parameters_first() {
        let scst = Scst::new(1);
        let d = IscsiDriver::new(scst.clone());
        let e = d
            .add_target(
                &scst,
                "iqn.x:t",
                &[
                    ("QueuedCommands".into(), "16".into()),
                    ("HeaderDigest".into(), "MD5".into()),
                ],
            )
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("target iqn.x:t: "), "{e}");
        assert!(scst.target(DRIVER_NAME, "iqn.x:t").is_none());
        let t = d
            .add_target(&scst, "iqn.x:t", &[("QueuedCommands".into(), "16".into())])
            .unwrap();
        assert_eq!(t.attr("QueuedCommands").as_deref(), Some("16"));
    }
}
