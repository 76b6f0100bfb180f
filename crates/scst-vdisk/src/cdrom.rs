//! The `vcdrom` dev handler (docs/scst-reference.md 1.2, 2.4, 4.3): a read-only CD/DVD-ROM
//! drive (peripheral type 5, RMB=1, 2048-byte blocks) over an ISO file, with media
//! inserted and ejected at runtime through its `filename` attribute and by START STOP
//! UNIT, and the MMC commands initiators' CD drivers need (mmc.rs).
//!
//! The medium is swapped under a lock: a command takes its own reference to the
//! medium at the start, so commands in flight finish on the file they started on.
//! Inserting a medium queues MEDIUM MAY HAVE CHANGED on every nexus (through the
//! core's [`DeviceEvents`]); with no medium every command that needs one gets NOT
//! READY / MEDIUM NOT PRESENT.

use crate::backend::{Backend, FileBackend};
use crate::config::VdiskConfig;
use crate::mmc::{self, opcode as mmc_op, Disc, MediaEvent};
use crate::mode::{ModeGeometry, ModeState};
use crate::removable::{prevent_requested, Removable, StartStop};
use crate::sbc::{failed, CmdResult, MAX_XFER_BYTES};
use parking_lot::{Mutex, RwLock};
use scsi_wire::cdb::{self, decode_inquiry, decode_rw, decode_sync_cache, opcode};
use scsi_wire::inquiry::{self as wire, version, PortIds, StdInquiry};
use scsi_wire::Sense;
use scst_core::{AttrError, Cmd, CmdCtx, Device, DeviceEvents, ExecMode, IoError, IoOp, Response};
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};

pub(crate) mod opcodes;

/// SCSI peripheral device type of a CD/DVD device.
pub const TYPE_CDROM: u8 = 5;
const BLOCK_SHIFT: u32 = 11;
/// Writes a drive knows but read-only media refuse (not reported as supported).
const WRITES: [u8; 7] = [
    opcode::WRITE_6,
    opcode::WRITE_10,
    opcode::WRITE_12,
    opcode::WRITE_16,
    opcode::WRITE_AND_VERIFY_10,
    opcode::WRITE_AND_VERIFY_12,
    opcode::WRITE_AND_VERIFY_16,
];
/// VPD pages a vcdrom reports.
const VPD_PAGES: [u8; 3] = [0x00, 0x80, 0x83];

/// An inserted ISO image.
struct Medium {
    path: String,
    backend: FileBackend,
    /// File size in bytes; a partial last block is not addressable.
    size: u64,
    nblocks: u64,
}

impl Medium {
    fn open(path: &str) -> io::Result<Medium> {
        crate::check_file_type(path)?;
        let (backend, size) = FileBackend::open(path, true, false, true)?;
        Ok(Medium {
            path: path.to_string(),
            backend,
            size,
            nblocks: size >> BLOCK_SHIFT,
        })
    }

    fn disc(&self) -> Disc {
        Disc {
            nblocks: self.nblocks,
        }
    }
}

pub struct Vcdrom {
    cfg: VdiskConfig,
    mode: ModeState,
    /// The ISO in the drive; None: no medium (empty `filename`).
    medium: RwLock<Option<Arc<Medium>>>,
    /// Tray (START STOP UNIT LoEj) and PREVENT ALLOW MEDIUM REMOVAL.
    state: Removable,
    /// Media event for GET EVENT STATUS NOTIFICATION ([`MediaEvent`] as u8), reported
    /// once.
    media_event: AtomicU8,
    /// Where medium changes are announced to every nexus; set at registration.
    events: Mutex<Option<Weak<dyn DeviceEvents>>>,
}

/// Commands a drive answers with no medium (MMC-6 4.1.3 and the drive-state
/// commands): identification, tray and lock control, mode pages, command reports.
/// REQUEST SENSE and REPORT LUNS never reach the device.
fn works_without_medium(op: u8) -> bool {
    matches!(
        op,
        opcode::INQUIRY
            | opcode::START_STOP_UNIT
            | opcode::PREVENT_ALLOW_MEDIUM_REMOVAL
            | opcode::MODE_SENSE_6
            | opcode::MODE_SENSE_10
            | opcode::MODE_SELECT_6
            | opcode::MODE_SELECT_10
            | opcode::LOG_SENSE
            | opcode::LOG_SELECT
            | opcode::MAINTENANCE_IN
            | mmc_op::GET_CONFIGURATION
            | mmc_op::GET_EVENT_STATUS_NOTIFICATION
            | mmc_op::MECHANISM_STATUS
    )
}

fn good() -> CmdResult {
    Ok(Some(Response::good()))
}

fn data(d: Vec<u8>) -> CmdResult {
    Ok(Some(Response::data(d)))
}

/// Why a medium could not be inserted or ejected (the `filename` attribute).
#[derive(Debug, thiserror::Error)]
pub enum MediumChangeError {
    #[error("device {device}: filename '{path}' is not an absolute path")]
    NotAbsolute { device: String, path: String },
    #[error("device {device}: filename {path}: {source}")]
    Open {
        device: String,
        path: String,
        source: io::Error,
    },
    #[error(
        "device {device}: medium removal is prevented (PREVENT ALLOW MEDIUM REMOVAL); the \
         initiator must allow it first"
    )]
    RemovalPrevented { device: String },
}

/// A refused medium change is a refused `filename` write: a relative path is an invalid
/// value, a file that will not open is the backend's failure, and a prevented removal
/// waits on the initiator.
impl From<MediumChangeError> for AttrError {
    fn from(e: MediumChangeError) -> AttrError {
        let attr = || "filename".to_string();
        match e {
            MediumChangeError::NotAbsolute { device, path } => AttrError::Invalid {
                device,
                attr: attr(),
                reason: format!("'{path}' is not an absolute path"),
            },
            MediumChangeError::Open {
                device,
                path,
                source,
            } => AttrError::Backend {
                device,
                attr: attr(),
                reason: format!("{path}: {source}"),
            },
            MediumChangeError::RemovalPrevented { device } => AttrError::Busy {
                device,
                reason: "medium removal is prevented (PREVENT ALLOW MEDIUM REMOVAL); the \
                         initiator must allow it first"
                    .into(),
            },
        }
    }
}

impl Vcdrom {
    /// A drive with the medium `cfg.filename` (None: empty). Fails when the file
    /// cannot be opened.
    pub fn new(cfg: VdiskConfig) -> io::Result<Vcdrom> {
        let medium = cfg
            .filename
            .as_deref()
            .map(Medium::open)
            .transpose()?
            .map(Arc::new);
        Ok(Vcdrom {
            mode: ModeState::new_cdrom(cfg.tst),
            cfg,
            medium: RwLock::new(medium),
            state: Removable::new(),
            media_event: AtomicU8::new(MediaEvent::NoChange as u8),
            events: Mutex::new(None),
        })
    }

    /// The medium a command may use: inserted and not ejected.
    fn loaded(&self) -> Option<Arc<Medium>> {
        if !self.state.loaded() {
            return None;
        }
        self.medium.read().clone()
    }

    fn set_event(&self, e: MediaEvent) {
        self.media_event.store(e as u8, Ordering::Relaxed);
    }

    /// Insert the ISO at `path`, or eject with an empty path (the `filename`
    /// attribute). Refused while PREVENT MEDIUM REMOVAL is in effect, as SCST does.
    fn change_medium(&self, path: &str) -> Result<(), MediumChangeError> {
        let name = &self.cfg.name;
        let device = || name.clone();
        if !path.is_empty() && !path.starts_with('/') {
            return Err(MediumChangeError::NotAbsolute {
                device: device(),
                path: path.to_string(),
            });
        }
        // Open before taking the lock: a slow open must not stall commands.
        let new = if path.is_empty() {
            None
        } else {
            let m = Medium::open(path).map_err(|source| MediumChangeError::Open {
                device: device(),
                path: path.to_string(),
                source,
            })?;
            Some(Arc::new(m))
        };
        {
            let mut slot = self.medium.write();
            if self.state.prevented() {
                return Err(MediumChangeError::RemovalPrevented { device: device() });
            }
            *slot = new.clone();
            // A new medium closes the tray, whatever START STOP UNIT did before.
            self.state.close_tray();
        }
        match new {
            Some(m) => {
                log::info!("{name}: medium {} inserted ({} bytes)", m.path, m.size);
                self.set_event(MediaEvent::NewMedia);
                if let Some(ev) = self.events.lock().as_ref().and_then(Weak::upgrade) {
                    ev.queue_ua_all(Sense::UA_MEDIUM_MAY_HAVE_CHANGED);
                }
            }
            None => {
                log::info!("{name}: medium ejected");
                self.set_event(MediaEvent::MediaRemoval);
            }
        }
        Ok(())
    }

    fn read(&self, m: &Medium, cdb: &[u8], mode: ExecMode) -> CmdResult {
        let rw = decode_rw(cdb)?;
        // MMC READ(10/12) byte 1 bits 7-5 are reserved (SBC's RDPROTECT): no T10-PI.
        if rw.protect != 0 {
            return Err(Sense::invalid_field_in_cdb(1, Some(7)));
        }
        match rw.lba.checked_add(rw.blocks as u64) {
            Some(end) if end <= m.nblocks => {}
            _ => return Err(Sense::LBA_OUT_OF_RANGE),
        }
        if rw.blocks as u64 > MAX_XFER_BYTES >> BLOCK_SHIFT {
            return Err(Sense::invalid_field_in_cdb(rw.len_offset, None));
        }
        if rw.blocks == 0 {
            return good();
        }
        let off = rw.lba << BLOCK_SHIFT;
        let mut buf = vec![0u8; (rw.blocks as usize) << BLOCK_SHIFT];
        match m.backend.read(&mut buf, off, mode) {
            None => Ok(None),
            Some(Ok(())) => data(buf),
            Some(Err(e)) => {
                let what = format!("read of {}", m.path);
                Err(failed(
                    &self.cfg.name,
                    &what,
                    IoError::new(IoOp::Read, off, e),
                ))
            }
        }
    }

    fn inquiry(&self, ctx: &CmdCtx<'_>, cdb: &[u8]) -> CmdResult {
        let c = decode_inquiry(cdb)?;
        if c.cmddt {
            return Err(Sense::invalid_field_in_cdb(1, Some(1)));
        }
        let id = &self.cfg.identity;
        let mut out = if !c.evpd {
            if c.page != 0 {
                return Err(Sense::invalid_field_in_cdb(2, None));
            }
            let p = StdInquiry {
                device_type: TYPE_CDROM,
                removable: true,
                hierarchical_luns: true,
                versions: vec![
                    version::SAM_4,
                    version::ISCSI,
                    version::SPC_4,
                    version::MMC_6,
                ],
                vend_specific: id.vend_specific.clone(),
                ..Default::default()
            };
            wire::standard_inquiry(id, &p)
        } else {
            match c.page {
                0x00 => wire::vpd_supported_pages(TYPE_CDROM, &VPD_PAGES),
                0x80 => wire::vpd_unit_serial(TYPE_CDROM, &id.usn),
                0x83 => {
                    let ports = PortIds {
                        rel_tgt_id: ctx.rel_tgt_id,
                        tpg_id: None,
                    };
                    wire::vpd_device_id(TYPE_CDROM, id, ports)
                }
                _ => return Err(Sense::invalid_field_in_cdb(2, None)),
            }
        };
        out.truncate(c.alloc_len as usize);
        data(out)
    }

    /// START STOP UNIT (MMC-6 6.39): LoEj with Start=0 opens the tray (the medium is
    /// gone until loaded), with Start=1 closes it; refused while removal is prevented.
    /// Without LoEj, or with a power condition, there is nothing to do.
    fn start_stop(&self, cdb: &[u8]) -> CmdResult {
        let s = StartStop::decode(cdb)?;
        if s.moves_medium() {
            self.state.load_eject(s.start)?;
            if self.medium.read().is_some() {
                self.set_event(if s.start {
                    MediaEvent::NewMedia
                } else {
                    MediaEvent::MediaRemoval
                });
            }
        }
        good()
    }

    fn get_event_status(&self, cdb: &[u8]) -> CmdResult {
        // The pending event is consumed only by a request that reports it.
        let event = if mmc::gesn_wants_media(cdb)? && cdb::u8_at(cdb, 1)? & 0x01 != 0 {
            MediaEvent::from_u8(
                self.media_event
                    .swap(MediaEvent::NoChange as u8, Ordering::Relaxed),
            )
        } else {
            MediaEvent::NoChange
        };
        let present = self.loaded().is_some();
        data(mmc::get_event_status(
            cdb,
            event,
            present,
            !self.state.loaded(),
        )?)
    }

    fn mode_sense(&self, cdb: &[u8], m: Option<&Medium>) -> CmdResult {
        let g = ModeGeometry {
            nblocks: m.map_or(0, |m| m.nblocks),
            block_size: self.cfg.block_size,
            rotation_rate: 0,
            write_protected: true,
            medium_locked: self.state.prevented(),
        };
        data(self.mode.mode_sense(cdb, &g)?)
    }

    fn dispatch(&self, ctx: &CmdCtx<'_>, cmd: &Cmd, mode: ExecMode) -> CmdResult {
        use opcode::*;
        let cdb: &[u8] = &cmd.cdb;
        let op = cmd.cdb.opcode();
        let medium = self.loaded();
        // Opcodes the drive does not know stay INVALID OPERATION CODE without medium.
        let known = opcodes::supported(op) || WRITES.contains(&op);
        if medium.is_none() && known && !works_without_medium(op) {
            return Err(Sense::MEDIUM_NOT_PRESENT);
        }
        // Every arm below that needs the medium is one works_without_medium() excludes.
        let m = || medium.as_deref().ok_or(Sense::MEDIUM_NOT_PRESENT);
        match op {
            READ_10 | READ_12 | READ_16 => self.read(m()?, cdb, mode),
            // Read-only media (SCST: DATA PROTECT, WRITE PROTECTED).
            _ if WRITES.contains(&op) => Err(Sense::WRITE_PROTECTED),
            TEST_UNIT_READY | SEND_DIAGNOSTIC => good(),
            // Nothing is ever dirty; the range is still checked.
            SYNCHRONIZE_CACHE_10 => {
                let s = decode_sync_cache(cdb)?;
                match s.lba.checked_add(s.blocks as u64) {
                    Some(end) if end <= m()?.nblocks => good(),
                    _ => Err(Sense::LBA_OUT_OF_RANGE),
                }
            }
            INQUIRY => self.inquiry(ctx, cdb),
            READ_CAPACITY_10 => {
                let lba = cdb::be32(cdb, 2)?;
                let pmi = cdb::u8_at(cdb, 8)? & 0x01 != 0;
                if !pmi && lba != 0 {
                    return Err(Sense::invalid_field_in_cdb(2, None));
                }
                let nblocks = m()?.nblocks;
                data(wire::read_capacity_10(nblocks, self.cfg.block_size).to_vec())
            }
            MODE_SENSE_6 | MODE_SENSE_10 => self.mode_sense(cdb, medium.as_deref()),
            MODE_SELECT_6 | MODE_SELECT_10 => {
                self.mode
                    .mode_select(cdb, &cmd.data_out, self.cfg.block_size)?;
                good()
            }
            START_STOP_UNIT => self.start_stop(cdb),
            PREVENT_ALLOW_MEDIUM_REMOVAL => {
                self.state.set_prevent(ctx, prevent_requested(cdb)?);
                good()
            }
            // No log pages.
            LOG_SELECT | LOG_SENSE => Err(Sense::invalid_field_in_cdb(2, None)),
            MAINTENANCE_IN => opcodes::maintenance_in(cdb),
            READ_TOC => data(mmc::read_toc(cdb, m()?.disc())?),
            mmc_op::GET_CONFIGURATION => data(mmc::get_configuration(
                cdb,
                medium.as_deref().map(Medium::disc),
            )?),
            mmc_op::GET_EVENT_STATUS_NOTIFICATION => self.get_event_status(cdb),
            mmc_op::READ_DISC_INFORMATION => data(mmc::read_disc_information(cdb, m()?.disc())?),
            mmc_op::MECHANISM_STATUS => data(mmc::mechanism_status(cdb, !self.state.loaded())?),
            _ => Err(Sense::INVALID_OPCODE),
        }
    }
}

impl Device for Vcdrom {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn handler_name(&self) -> &'static str {
        self.cfg.handler.name()
    }

    fn scsi_type(&self) -> u8 {
        TYPE_CDROM
    }

    fn execute(&self, ctx: &CmdCtx<'_>, cmd: &mut Cmd, mode: ExecMode) -> Option<Response> {
        match self.dispatch(ctx, cmd, mode) {
            Ok(r) => r,
            Err(s) => Some(Response::check(s)),
        }
    }

    fn data_out_len(&self, cdb: &[u8]) -> Option<u32> {
        crate::data_out::data_out_len(cdb, self.cfg.block_size)
    }

    fn descriptor_sense(&self) -> bool {
        self.mode.d_sense()
    }

    fn shared_task_set(&self) -> bool {
        self.cfg.tst == 0
    }

    /// REQUEST SENSE reports the NOT READY condition of an empty drive (SPC-4 6.39).
    fn pending_sense(&self) -> Option<Sense> {
        self.loaded().is_none().then_some(Sense::MEDIUM_NOT_PRESENT)
    }

    fn reset(&self) {
        self.mode.reset();
        self.state.reset();
    }

    fn attributes(&self) -> Vec<(String, String, bool)> {
        let c = &self.cfg;
        let id = &c.identity;
        let hex = |v: &Option<Vec<u8>>| {
            v.as_ref()
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                .unwrap_or_default()
        };
        let (path, size) = match self.medium.read().as_deref() {
            Some(m) => (m.path.clone(), m.size),
            None => (String::new(), 0),
        };
        let a: Vec<(&str, String)> = vec![
            ("filename", path),
            ("size", size.to_string()),
            ("size_mb", (size >> 20).to_string()),
            ("tst", c.tst.to_string()),
            ("t10_vend_id", id.vendor.clone()),
            ("prod_id", id.product.clone()),
            ("prod_rev_lvl", id.revision.clone()),
            ("t10_dev_id", id.t10_dev_id.clone()),
            ("vend_specific_id", id.vend_specific_id.clone()),
            ("usn", id.usn.clone()),
            ("naa_id", hex(&id.naa_id)),
            ("eui64_id", hex(&id.eui64_id)),
            (
                "scsi_device_name",
                id.scsi_device_name.clone().unwrap_or_default(),
            ),
            (
                "inq_vend_specific",
                String::from_utf8_lossy(&id.vend_specific).into_owned(),
            ),
        ];
        a.into_iter()
            .map(|(k, v)| {
                let key = k == "filename" || c.was_given(k);
                (k.to_string(), v, key)
            })
            .collect()
    }

    fn set_attribute(&self, name: &str, value: &str) -> Result<(), AttrError> {
        match name {
            "filename" => Ok(self.change_medium(value.trim())?),
            _ => Err(AttrError::NotWritable {
                device: self.cfg.name.clone(),
                attr: name.to_string(),
            }),
        }
    }

    fn attach_events(&self, events: Weak<dyn DeviceEvents>) {
        *self.events.lock() = Some(events);
    }

    fn nexus_lost(&self, initiator_name: &str, target_name: &str) {
        self.state.nexus_lost(initiator_name, target_name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn iso(fill: u8) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[fill; 4 * 2048]).unwrap();
        f.flush().unwrap();
        f
    }

    /// A command holds its own reference to the medium: changing the medium under it
    /// leaves it reading the file it started on.
    #[test]
    fn commands_in_flight_keep_their_medium() {
        let (a, b) = (iso(0xAA), iso(0xBB));
        let attrs = vec![("filename".to_string(), a.path().display().to_string())];
        let cfg = VdiskConfig::parse(crate::Handler::Vcdrom, "cd", &attrs, 0).unwrap();
        let d = Vcdrom::new(cfg).unwrap();
        let in_flight = d.loaded().unwrap();
        d.set_attribute("filename", b.path().to_str().unwrap())
            .unwrap();
        let read = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let old = d
            .read(&in_flight, &read, ExecMode::Blocking)
            .unwrap()
            .unwrap();
        assert_eq!(old.data[0], 0xAA);
        let new = d.read(&d.loaded().unwrap(), &read, ExecMode::Blocking);
        assert_eq!(new.unwrap().unwrap().data[0], 0xBB);
    }
}
