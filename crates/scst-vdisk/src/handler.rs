//! The vdisk dev handlers as management sees them: one [`DevHandler`] per handler
//! name, registered with the core at start-up so that `handlers/` lists them and
//! `add_device` reaches [`crate::create_device`].

use std::sync::Arc;

use scst_core::{DevHandler, Device, MgmtError, Scst};

use crate::config::Handler;

/// All four handlers, in the order `handlers/` lists them.
const HANDLERS: [Handler; 4] = [
    Handler::Fileio,
    Handler::Blockio,
    Handler::Nullio,
    Handler::Vcdrom,
];

impl DevHandler for Handler {
    fn name(&self) -> &str {
        Handler::name(*self)
    }

    fn scsi_type(&self) -> u8 {
        match self {
            Handler::Vcdrom => 5,
            Handler::Fileio | Handler::Blockio | Handler::Nullio => 0,
        }
    }

    fn creation_params(&self) -> &'static [&'static str] {
        Handler::creation_params(*self)
    }

    fn create_device(
        &self,
        name: &str,
        params: &[(String, String)],
        setup_id: u64,
    ) -> Result<Arc<dyn Device>, MgmtError> {
        // Every creation failure is a parameter the administrator gave (a bad value, a
        // file that does not open); the message names the device and the attribute.
        crate::create_device(Handler::name(*self), name, params, setup_id)
            .map_err(|e| MgmtError::Invalid(e.to_string()))
    }
}

/// Register the vdisk handlers with `scst`.
pub fn register_all(scst: &Scst) -> Result<(), MgmtError> {
    HANDLERS
        .into_iter()
        .try_for_each(|h| scst.register_dev_handler(Arc::new(h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_register_and_create_their_devices() {
        let scst = Scst::new(1);
        register_all(&scst).unwrap();
        let names: Vec<String> = scst
            .dev_handlers()
            .iter()
            .map(|h| h.name().to_string())
            .collect();
        assert_eq!(names, crate::handler_names());
        assert!(register_all(&scst).is_err(), "a handler registers once");
        let cd = scst.dev_handler("vcdrom").unwrap();
        assert_eq!((cd.scsi_type(), cd.creation_params()), (5, &["tst"][..]));
        let null = scst.dev_handler("vdisk_nullio").unwrap();
        let d = null.create_device("n", &[], 0).unwrap();
        assert_eq!(
            (d.name(), d.handler_name(), d.scsi_type()),
            ("n", "vdisk_nullio", 0)
        );
        let bad = [("filename".to_string(), "/nonexistent/file".to_string())];
        let e = scst
            .dev_handler("vdisk_fileio")
            .unwrap()
            .create_device("f", &bad, 0)
            .err()
            .unwrap();
        assert!(matches!(e, MgmtError::Invalid(_)));
        assert!(
            e.to_string()
                .starts_with("device f: filename /nonexistent/file:"),
            "{e}"
        );
    }
}
