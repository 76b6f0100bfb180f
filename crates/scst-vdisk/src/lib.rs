//! The vdisk dev handlers (spec/scst.md 1.2, 2.4, 2.5, 4.3-4.8): `vdisk_fileio`,
//! `vdisk_blockio`, `vdisk_nullio` and `vcdrom`, as [`scst_core::Device`]s.
//!
//! - `config`: creation attributes, defaults, identity generation.
//! - `backend`: how bytes move (page cache with RWF_NOWAIT, O_DIRECT, nothing).
//! - `sbc`: the SBC/SPC command emulation, generic over the backend.
//! - `mode`: mode page state, MODE SENSE / MODE SELECT.
//! - `inquiry`: INQUIRY, VPD pages, READ CAPACITY.
//! - `sanitize`, `format`, `longop`: SANITIZE and FORMAT UNIT, and the whole-medium
//!   operation state they share (NOT READY while in progress, sanitize failure mode).
//! - `removable`: removable media (vcdrom, `removable` disks): load/eject, prevention.
//! - `cdrom`, `mmc`: the vcdrom device and its MMC command data.
//! - `handler`: the handlers as the core's `DevHandler`s, registered at start-up.

#[cfg(test)]
mod atomic_tests;
mod attrs;
#[cfg(test)]
mod attrs_tests;
mod backend;
mod cdrom;
#[cfg(test)]
mod cdrom_tests;
mod config;
mod data_out;
#[cfg(test)]
mod device_tests;
mod format;
mod fsalloc;
pub mod handler;
mod inquiry;
mod longop;
mod mmc;
mod mode;
mod prefetch;
mod provisioning;
#[cfg(test)]
mod provisioning_tests;
mod rangelock;
mod removable;
mod sanitize;
#[cfg(test)]
mod sanitize_tests;
mod sbc;
#[cfg(test)]
mod test_util;
mod uring;

pub use config::{gen_dev_id_num, Handler, NULLIO_DEFAULT_SIZE};
pub use uring::{io_engine, set_io_engine, uring_unavailable, IoEngine, ENGINE_ENV};

use backend::{FileBackend, NullBackend};
use config::VdiskConfig;
use sbc::Vdisk;
use scst_core::Device;
use std::sync::Arc;

/// A device could not be created. Messages are one line naming the device, the
/// attribute and the reason.
#[derive(Debug, thiserror::Error)]
pub enum VdiskError {
    #[error("unknown dev handler {0}")]
    UnknownHandler(String),
    #[error("device {dev}: unknown attribute {attr}")]
    UnknownAttribute { dev: String, attr: String },
    #[error("device {dev}: attribute {attr}: {reason}")]
    InvalidAttribute {
        dev: String,
        attr: String,
        reason: String,
    },
    #[error("device {dev}: filename {path}: {err}")]
    Open {
        dev: String,
        path: String,
        err: std::io::Error,
    },
}

/// A run-time attribute write is validated by the creation code: its errors, by kind.
impl From<VdiskError> for scst_core::AttrError {
    fn from(e: VdiskError) -> Self {
        match e {
            VdiskError::UnknownHandler(h) => scst_core::AttrError::NotWritable {
                device: String::new(),
                attr: h,
            },
            VdiskError::UnknownAttribute { dev, attr } => {
                scst_core::AttrError::NotWritable { device: dev, attr }
            }
            VdiskError::InvalidAttribute { dev, attr, reason } => scst_core::AttrError::Invalid {
                device: dev,
                attr,
                reason,
            },
            VdiskError::Open { dev, path, err } => scst_core::AttrError::Backend {
                device: dev,
                attr: "filename".into(),
                reason: format!("{path}: {err}"),
            },
        }
    }
}

impl VdiskError {
    pub(crate) fn invalid(dev: &str, attr: &str, reason: String) -> VdiskError {
        VdiskError::InvalidAttribute {
            dev: dev.into(),
            attr: attr.into(),
            reason,
        }
    }
}

/// The dev handlers this crate provides.
pub fn handler_names() -> &'static [&'static str] {
    &["vdisk_fileio", "vdisk_blockio", "vdisk_nullio", "vcdrom"]
}

/// The creation parameters `add_device` accepts for `handler` (SCST's mgmt help text,
/// spec 2.4). `create_device` also accepts the identity attributes (t10_vend_id,
/// prod_id, prod_rev_lvl, usn, vend_specific_id, naa_id, eui64_id, scsi_device_name).
/// Empty for an unknown handler.
pub fn creation_params(handler: &str) -> &'static [&'static str] {
    Handler::from_name(handler)
        .map(Handler::creation_params)
        .unwrap_or(&[])
}

/// Create a device of `handler` named `name` from its creation attributes.
/// `setup_id` is the daemon's setup id, the high half of generated device ids.
pub fn create_device(
    handler: &str,
    name: &str,
    attrs: &[(String, String)],
    setup_id: u64,
) -> Result<Arc<dyn Device>, VdiskError> {
    let h =
        Handler::from_name(handler).ok_or_else(|| VdiskError::UnknownHandler(handler.into()))?;
    let cfg = VdiskConfig::parse(h, name, attrs, setup_id)?;
    let open = |direct: bool, inline_io: bool| {
        let path = cfg.filename.clone().unwrap_or_default();
        FileBackend::open(&path, cfg.read_only, direct, inline_io).map_err(|err| VdiskError::Open {
            dev: name.into(),
            path,
            err,
        })
    };
    Ok(match h {
        Handler::Nullio => {
            let size = cfg.size;
            Arc::new(Vdisk::new(cfg, NullBackend, size))
        }
        Handler::Fileio => {
            let (b, size) = open(cfg.o_direct, true)?;
            Arc::new(Vdisk::new(cfg, b, size))
        }
        Handler::Blockio => {
            let (b, size) = open(true, false)?;
            Arc::new(Vdisk::new(cfg, b, size))
        }
        Handler::Vcdrom => {
            let path = cfg.filename.clone().unwrap_or_default();
            Arc::new(cdrom::Vcdrom::new(cfg).map_err(|err| VdiskError::Open {
                dev: name.into(),
                path,
                err,
            })?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_and_params() {
        assert_eq!(handler_names().len(), 4);
        assert_eq!(creation_params("vcdrom"), ["tst"]);
        assert!(creation_params("vdisk_fileio").contains(&"o_direct"));
        assert!(!creation_params("vdisk_blockio").contains(&"o_direct"));
        assert!(creation_params("vdisk_nullio").contains(&"dummy"));
        assert!(creation_params("nope").is_empty());
    }

    #[test]
    fn create_errors() {
        let e = create_device("vdisk_x", "d", &[], 0).err().unwrap();
        assert_eq!(e.to_string(), "unknown dev handler vdisk_x");
        let attrs = vec![("filename".to_string(), "/nonexistent/file".to_string())];
        let e = create_device("vdisk_fileio", "d", &attrs, 0).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("device d: filename /nonexistent/file:"),
            "{e}"
        );
        let d = create_device("vdisk_nullio", "n", &[], 0).unwrap();
        assert_eq!(
            (d.name(), d.handler_name(), d.scsi_type()),
            ("n", "vdisk_nullio", 0)
        );
    }
}
