//! The management tree's `devices/<dev>/` attributes of a vdisk disk (fileio, blockio,
//! nullio; docs/scst-reference.md 2.5): reading them, and writing the ones that change at run
//! time while commands execute.
//!
//! Writable at run time:
//! - `read_only` (0/1). A deviation from SCST, where it is creation-only (the
//!   management brief asks for it live): WRITE and friends then fail with DATA PROTECT
//!   and MODE SENSE reports WP. A file-backed device created read-only had its backend
//!   opened read-only, so it cannot be made writable without re-creating it.
//! - `write_through` (0/1, fileio/blockio). Also a deviation (SCST: creation-only):
//!   WCE's default and current value become !(write_through || nv_cache) (scst-reference 4.5),
//!   so writes become stable at once. nv_cache still pins WCE at 0.
//! - `size`, `size_mb` (nullio, blockio): resize; CAPACITY DATA HAS CHANGED when the
//!   block count changed. blockio's must be a multiple of the block size and no more
//!   than the device holds (SCST checks only the first; past the device's end every
//!   command would fail).
//! - `resync_size` (fileio/blockio, write-only, any value): re-read the backend's size;
//!   CAPACITY DATA HAS CHANGED when the block count changed. fileio's `size` stays
//!   read-only, as in SCST: its size is the file's.
//! - `sync` (fileio/blockio, write-only, any value): flush the backend.
//! - Identity: `t10_vend_id`, `prod_id`, `prod_rev_lvl`, `t10_dev_id`,
//!   `vend_specific_id`, `usn`, `naa_id`, `eui64_id` (empty or a newline clears),
//!   `scsi_device_name`: INQUIRY DATA HAS CHANGED when the value changed. As at
//!   creation, `vend_specific_id` follows `t10_dev_id` until it is set itself.
//!   `t10_dev_id` is accepted while the device is exported (the device does not know
//!   its exports); initiators learn of it through the unit attention.
//! - `opt_trans_len` (VPD B0), `lb_per_pb_exp` (fileio/blockio, READ CAPACITY(16): a
//!   change is reported as CAPACITY DATA HAS CHANGED), `async` (fileio, recorded only),
//!   `read_zero` (nullio; reads return zeros either way).
//!
//! Values are parsed by the creation code ([`VdiskConfig::apply`]), so validation and
//! errors are the same; a refused write changes nothing. The command path reads these
//! values with one relaxed atomic load each (the identity through an `ArcSwap`, read by
//! INQUIRY only); writers serialise on a mutex the command path never takes.

use crate::backend::Backend;
use crate::config::{Handler, VdiskConfig};
use crate::sbc::Vdisk;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use scsi_wire::inquiry::InquiryIdentity;
use scst_core::{AttrEffect, AttrError, ExecMode};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

const IDENTITY: &[&str] = &[
    "t10_vend_id",
    "prod_id",
    "prod_rev_lvl",
    "t10_dev_id",
    "vend_specific_id",
    "usn",
    "naa_id",
    "eui64_id",
    "scsi_device_name",
    "inq_vend_specific",
];

/// The run-time writable part of a vdisk's configuration.
pub(crate) struct LiveAttrs {
    read_only: AtomicBool,
    write_through: AtomicBool,
    /// Exported size in bytes.
    size: AtomicU64,
    opt_trans_len: AtomicU32,
    lb_per_pb_exp: AtomicBool,
    async_io: AtomicBool,
    read_zero: AtomicBool,
    pub(crate) identity: ArcSwap<InquiryIdentity>,
    /// Serialises writers; the names of the attributes written at run time (reported
    /// as key attributes, like those given at creation).
    written: Mutex<Vec<String>>,
}

impl LiveAttrs {
    pub(crate) fn new(cfg: &VdiskConfig, size: u64) -> LiveAttrs {
        LiveAttrs {
            read_only: AtomicBool::new(cfg.read_only),
            write_through: AtomicBool::new(cfg.write_through),
            size: AtomicU64::new(size),
            opt_trans_len: AtomicU32::new(cfg.opt_trans_len),
            lb_per_pb_exp: AtomicBool::new(cfg.lb_per_pb_exp),
            async_io: AtomicBool::new(cfg.async_io),
            read_zero: AtomicBool::new(cfg.read_zero),
            identity: ArcSwap::from_pointee(cfg.identity.clone()),
            written: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    pub(crate) fn opt_trans_len(&self) -> u32 {
        self.opt_trans_len.load(Ordering::Relaxed)
    }

    pub(crate) fn lb_per_pb_exp(&self) -> bool {
        self.lb_per_pb_exp.load(Ordering::Relaxed)
    }
}

fn bool_attr(v: bool) -> String {
    if v { "1" } else { "0" }.to_string()
}

fn hex(v: &Option<Vec<u8>>) -> String {
    v.as_ref()
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        .unwrap_or_default()
}

impl<B: Backend> Vdisk<B> {
    /// The configuration as it is now: the creation values with the run-time writes.
    fn current_cfg(&self) -> VdiskConfig {
        let l = &self.live;
        let mut c = self.cfg.clone();
        c.read_only = l.read_only();
        c.write_through = l.write_through.load(Ordering::Relaxed);
        c.size = l.size();
        c.opt_trans_len = l.opt_trans_len();
        c.lb_per_pb_exp = l.lb_per_pb_exp();
        c.async_io = l.async_io.load(Ordering::Relaxed);
        c.read_zero = l.read_zero.load(Ordering::Relaxed);
        c.identity = InquiryIdentity::clone(&l.identity.load());
        c
    }

    /// `Device::attributes`: (name, value, is_key).
    pub(crate) fn attribute_list(&self) -> Vec<(String, String, bool)> {
        let c = &self.current_cfg();
        let id = &c.identity;
        let file_based = c.handler != Handler::Nullio;
        let mut a: Vec<(&str, String)> = Vec::new();
        if file_based {
            a.push(("filename", c.filename.clone().unwrap_or_default()));
        }
        a.push(("blocksize", c.block_size.to_string()));
        a.push(("size", c.size.to_string()));
        a.push(("size_mb", (c.size >> 20).to_string()));
        a.push(("read_only", bool_attr(c.read_only)));
        if file_based {
            a.push(("write_through", bool_attr(c.write_through)));
            a.push(("nv_cache", bool_attr(c.nv_cache)));
            a.push(("thin_provisioned", bool_attr(c.thin_provisioned)));
            a.push(("lb_per_pb_exp", bool_attr(c.lb_per_pb_exp)));
        }
        if file_based && c.handler != Handler::Vcdrom {
            // Actions, as SCST's write-only files: listed so that the tree lets them be
            // written; they read empty and are never saved.
            a.push(("resync_size", String::new()));
            a.push(("sync", String::new()));
        }
        if c.handler == Handler::Fileio {
            a.push(("o_direct", bool_attr(c.o_direct)));
            a.push(("async", bool_attr(c.async_io)));
        }
        if c.handler == Handler::Nullio {
            a.push(("dummy", bool_attr(c.dummy)));
            a.push(("read_zero", bool_attr(c.read_zero)));
        }
        a.push(("rotational", bool_attr(c.rotational)));
        a.push(("removable", bool_attr(c.removable)));
        a.push(("tst", c.tst.to_string()));
        a.push(("opt_trans_len", c.opt_trans_len.to_string()));
        a.push(("t10_vend_id", id.vendor.clone()));
        a.push(("prod_id", id.product.clone()));
        a.push(("prod_rev_lvl", id.revision.clone()));
        a.push(("t10_dev_id", id.t10_dev_id.clone()));
        a.push(("vend_specific_id", id.vend_specific_id.clone()));
        a.push(("usn", id.usn.clone()));
        a.push(("naa_id", hex(&id.naa_id)));
        a.push(("eui64_id", hex(&id.eui64_id)));
        a.push((
            "scsi_device_name",
            id.scsi_device_name.clone().unwrap_or_default(),
        ));
        a.push((
            "inq_vend_specific",
            String::from_utf8_lossy(&id.vend_specific).into_owned(),
        ));
        let written = self.live.written.lock();
        a.into_iter()
            .map(|(k, v)| {
                let key = k == "filename" || c.was_given(k) || written.iter().any(|w| w == k);
                (k.to_string(), v, key)
            })
            .collect()
    }

    /// `Device::apply_attribute`: write `attr` at run time (module doc).
    pub(crate) fn write_attribute(&self, attr: &str, value: &str) -> Result<AttrEffect, AttrError> {
        let h = self.cfg.handler;
        let file_based = h != Handler::Nullio;
        let device = || self.cfg.name.clone();
        let invalid = |reason: String| AttrError::Invalid {
            device: device(),
            attr: attr.to_string(),
            reason,
        };
        let backend = |reason: String| AttrError::Backend {
            device: device(),
            attr: attr.to_string(),
            reason,
        };
        let mut written = self.live.written.lock();
        match attr {
            "sync" if file_based => {
                return match self.backend.flush(ExecMode::Blocking) {
                    Some(Err(e)) => Err(backend(format!("flush failed: {e}"))),
                    _ => Ok(AttrEffect::Nothing),
                };
            }
            "resync_size" if file_based => {
                let size = match self.backend.current_size() {
                    Some(Ok(s)) => s,
                    Some(Err(e)) => return Err(backend(format!("cannot read the size: {e}"))),
                    None => return Err(backend("the backend has no size".into())),
                };
                return Ok(self.resize(size));
            }
            // SCST lets blockio export less (or again more) of its device by writing
            // the size (scst-reference "Online resize"); fileio's is the file's.
            "size" | "size_mb" if h == Handler::Blockio => {
                let mut c = self.current_cfg();
                c.apply(attr, value)?;
                let block = 1u64 << self.shift;
                if !c.size.is_multiple_of(block) || c.size == 0 {
                    return Err(invalid(format!(
                        "{} bytes is not a non-zero multiple of the block size {block}",
                        c.size
                    )));
                }
                let device = match self.backend.current_size() {
                    Some(Ok(s)) => s,
                    Some(Err(e)) => return Err(backend(format!("cannot read the size: {e}"))),
                    None => return Err(backend("the backend has no size".into())),
                };
                if c.size > device {
                    return Err(invalid(format!(
                        "{} bytes is more than the backing device's {device}",
                        c.size
                    )));
                }
                if !written.iter().any(|w| w == attr) {
                    written.push(attr.to_string());
                }
                return Ok(self.resize(c.size));
            }
            "size" | "size_mb" if file_based => {
                return Err(invalid(format!(
                    "read-only on {}: the size is the backend's; \
                     resize the backend and write resync_size",
                    h.name()
                )));
            }
            _ => {}
        }
        let writable = matches!(
            attr,
            "read_only" | "write_through" | "size" | "size_mb" | "opt_trans_len"
        ) || matches!(attr, "lb_per_pb_exp" | "async" | "read_zero")
            || IDENTITY.contains(&attr);
        if !writable || !h.accepts(attr) {
            return Err(if h.accepts(attr) {
                AttrError::CreationOnly {
                    device: device(),
                    attr: attr.to_string(),
                }
            } else {
                AttrError::NotWritable {
                    device: device(),
                    attr: attr.to_string(),
                }
            });
        }
        // Validate exactly as at creation, on a copy of the current configuration.
        let old = self.current_cfg();
        let mut c = old.clone();
        c.apply(attr, value)?;
        c.check()?;
        let l = &self.live;
        let effect = match attr {
            "read_only" => {
                if !c.read_only && self.cfg.read_only && !self.backend.is_null() {
                    return Err(invalid(
                        "the backend was opened read-only at creation; \
                         re-create the device to make it writable"
                            .into(),
                    ));
                }
                l.read_only.store(c.read_only, Ordering::Relaxed);
                AttrEffect::Nothing
            }
            "write_through" => {
                l.write_through.store(c.write_through, Ordering::Relaxed);
                self.mode.set_write_through(c.write_through);
                AttrEffect::Nothing
            }
            "size" | "size_mb" => self.resize(c.size),
            "opt_trans_len" => {
                l.opt_trans_len.store(c.opt_trans_len, Ordering::Relaxed);
                AttrEffect::Nothing
            }
            "lb_per_pb_exp" => {
                l.lb_per_pb_exp.store(c.lb_per_pb_exp, Ordering::Relaxed);
                if c.lb_per_pb_exp == old.lb_per_pb_exp {
                    AttrEffect::Nothing
                } else {
                    AttrEffect::CapacityChanged
                }
            }
            "async" => {
                l.async_io.store(c.async_io, Ordering::Relaxed);
                self.backend.set_async(c.async_io);
                AttrEffect::Nothing
            }
            "read_zero" => {
                l.read_zero.store(c.read_zero, Ordering::Relaxed);
                AttrEffect::Nothing
            }
            _ => {
                // Identity. vend_specific_id follows t10_dev_id until set itself.
                let vend_set = self.cfg.was_given("vend_specific_id")
                    || written.iter().any(|w| w == "vend_specific_id");
                if attr == "t10_dev_id" && !vend_set {
                    c.identity.vend_specific_id = c.identity.t10_dev_id.clone();
                }
                if c.identity == old.identity {
                    AttrEffect::Nothing
                } else {
                    l.identity.store(Arc::new(c.identity));
                    AttrEffect::InquiryDataChanged
                }
            }
        };
        if !written.iter().any(|w| w == attr) {
            written.push(attr.to_string());
        }
        log::info!(
            "{}: attribute {attr} set to '{}'",
            self.cfg.name,
            value.trim()
        );
        Ok(effect)
    }

    /// New exported size in bytes; capacity changed when the block count did.
    fn resize(&self, size: u64) -> AttrEffect {
        let old = self.live.size.swap(size, Ordering::Relaxed);
        if old >> self.shift == size >> self.shift {
            AttrEffect::Nothing
        } else {
            log::info!("{}: resized from {old} to {size} bytes", self.cfg.name);
            AttrEffect::CapacityChanged
        }
    }
}
