//! The vdisk dev handlers (docs/scst-reference.md 1.2, 2.4, 2.5, 4.3-4.8): `vdisk_fileio`,
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
    #[error("device {dev}: filename {path}: {why}")]
    Unusable {
        dev: String,
        path: String,
        why: Unusable,
    },
}

/// Why a backing file that opens cannot serve as a disk (SCST accepts only regular
/// files and block devices of at least one block).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("is a {0}, not a regular file or block device")]
    NotFileOrBlockDevice(&'static str),
    #[error("holds {size} bytes, less than one block of {block_size}")]
    SmallerThanABlock { size: u64, block_size: u32 },
}

/// Refuse what is not a regular file or a block device before opening it: opening a
/// FIFO could block, and a character device such as /dev/zero or /dev/null would
/// pass for a disk whose every read fails or returns nothing.
pub(crate) fn check_file_type(path: &str) -> Result<(), std::io::Error> {
    use std::os::unix::fs::FileTypeExt;
    // A file that does not exist fails here with the error open would give.
    let m = std::fs::metadata(path)?;
    let t = m.file_type();
    let kind = if m.is_file() || t.is_block_device() {
        return Ok(());
    } else if t.is_dir() {
        "directory"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        Unusable::NotFileOrBlockDevice(kind),
    ))
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
            VdiskError::Unusable { dev, path, why } => scst_core::AttrError::Backend {
                device: dev,
                attr: "filename".into(),
                reason: format!("{path}: {why}"),
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

/// The [`Unusable`] reason an I/O error carries, if it carries one.
fn unusable_reason(e: &std::io::Error) -> Option<Unusable> {
    e.get_ref()?.downcast_ref::<Unusable>().cloned()
}

/// The dev handlers this crate provides.
pub fn handler_names() -> &'static [&'static str] {
    &["vdisk_fileio", "vdisk_blockio", "vdisk_nullio", "vcdrom"]
}

/// The creation parameters `add_device` accepts for `handler` (SCST's mgmt help text,
/// scst-reference 2.4). `create_device` also accepts the identity attributes (t10_vend_id,
/// prod_id, prod_rev_lvl, usn, vend_specific_id, naa_id, eui64_id, scsi_device_name).
/// Empty for an unknown handler.
pub fn creation_params(handler: &str) -> &'static [&'static str] {
    Handler::from_name(handler)
        .map(Handler::creation_params)
        .unwrap_or(&[])
}

/// blockio's exported size: the device's, or the `size`/`size_mb` given (as SCST's
/// writable blockio size, saved in scst.conf once written): a non-zero multiple of the
/// block size, no more than the device holds.
fn exported_size(cfg: &VdiskConfig, device_size: u64) -> Result<u64, VdiskError> {
    if !(cfg.was_given("size") || cfg.was_given("size_mb")) {
        return Ok(device_size);
    }
    let block = u64::from(cfg.block_size);
    let attr = if cfg.was_given("size") {
        "size"
    } else {
        "size_mb"
    };
    if cfg.size == 0 || !cfg.size.is_multiple_of(block) {
        return Err(VdiskError::invalid(
            &cfg.name,
            attr,
            format!(
                "{} bytes is not a non-zero multiple of the block size {block}",
                cfg.size
            ),
        ));
    }
    if cfg.size > device_size {
        return Err(VdiskError::invalid(
            &cfg.name,
            attr,
            format!(
                "{} bytes is more than the backing device's {device_size}",
                cfg.size
            ),
        ));
    }
    Ok(cfg.size)
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
        let unusable = |why| VdiskError::Unusable {
            dev: name.into(),
            path: path.clone(),
            why,
        };
        let opened = check_file_type(&path)
            .and_then(|()| FileBackend::open(&path, cfg.read_only, direct, inline_io));
        let (backend, size) = opened.map_err(|err| match unusable_reason(&err) {
            Some(why) => unusable(why),
            None => VdiskError::Open {
                dev: name.into(),
                path: path.clone(),
                err,
            },
        })?;
        if size < u64::from(cfg.block_size) {
            return Err(unusable(Unusable::SmallerThanABlock {
                size,
                block_size: cfg.block_size,
            }));
        }
        Ok((backend, size))
    };
    Ok(match h {
        Handler::Nullio => {
            let size = cfg.size;
            Arc::new(Vdisk::new(cfg, NullBackend, size))
        }
        Handler::Fileio => {
            let (b, size) = open(cfg.o_direct, true)?;
            b.select_engine(cfg.async_io);
            Arc::new(Vdisk::new(cfg, b, size))
        }
        Handler::Blockio => {
            let (b, device_size) = open(true, false)?;
            let size = exported_size(&cfg, device_size)?;
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

    #[test]
    fn backing_files_that_cannot_serve_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path it is given.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let empty = dir.path().join("empty.img");
        std::fs::File::create(&empty).unwrap();
        let short = dir.path().join("short.img");
        std::fs::write(&short, [0u8; 4000]).unwrap();
        let dir_path = dir.path().display().to_string();
        let (fifo, empty, short) = (
            fifo.display().to_string(),
            empty.display().to_string(),
            short.display().to_string(),
        );
        let cases = [
            (
                "vdisk_fileio",
                "/dev/zero",
                "",
                "is a character device, not a regular file or block device",
            ),
            (
                "vdisk_fileio",
                "/dev/null",
                "",
                "is a character device, not a regular file or block device",
            ),
            (
                "vdisk_blockio",
                "/dev/zero",
                "",
                "is a character device, not a regular file or block device",
            ),
            (
                "vdisk_fileio",
                &dir_path,
                "",
                "is a directory, not a regular file or block device",
            ),
            (
                "vdisk_fileio",
                &fifo,
                "",
                "is a FIFO, not a regular file or block device",
            ),
            (
                "vdisk_fileio",
                &empty,
                "",
                "holds 0 bytes, less than one block of 512",
            ),
            (
                "vdisk_blockio",
                &empty,
                "",
                "holds 0 bytes, less than one block of 512",
            ),
            (
                "vdisk_fileio",
                &short,
                "4096",
                "holds 4000 bytes, less than one block of 4096",
            ),
            (
                "vcdrom",
                "/dev/null",
                "",
                "is a character device, not a regular file or block device",
            ),
        ];
        for (handler, path, bs, why) in cases {
            let mut attrs = vec![("filename".to_string(), path.to_string())];
            if !bs.is_empty() {
                attrs.push(("blocksize".to_string(), bs.to_string()));
            }
            let e = create_device(handler, "d", &attrs, 0).err().expect(path);
            assert_eq!(
                e.to_string(),
                format!("device d: filename {path}: {why}"),
                "{handler}"
            );
        }
        // One whole block is enough.
        let attrs = vec![
            ("filename".to_string(), short),
            ("blocksize".to_string(), "2048".to_string()),
        ];
        let d = create_device("vdisk_fileio", "d", &attrs, 0).expect("one block serves");
        assert_eq!(d.name(), "d");
    }
}
