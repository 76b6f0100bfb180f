//! SBC-3 / SPC-4 command emulation of a vdisk (docs/scst-reference.md 4.3), generic over the
//! [`Backend`] that moves the bytes.
//!
//! Every command handler returns `Result<Option<Response>, Sense>`: `Err` becomes
//! CHECK CONDITION, `Ok(None)` means "would block, re-run in Blocking mode".

use crate::attrs::LiveAttrs;
use crate::backend::{Backend, IoOutcome};
use crate::config::VdiskConfig;
use crate::inquiry;
use crate::longop::MediumState;
use crate::mode::{ModeGeometry, ModeState};
use crate::rangelock::{RangeGuard, RangeLock};
use crate::removable::{prevent_requested, Removable, StartStop, MEDIUM_REMOVAL_PREVENTED};
use crate::uring::Done;
use scsi_wire::asc;
use scsi_wire::cdb::{self, decode_rw, decode_sync_cache, opcode, RwCdb, RwKind};
use scsi_wire::sbc::opcode as sbc_op;
use scsi_wire::sense::key;
use scsi_wire::Sense;
use scst_core::cmd::Deferred;
use scst_core::{
    AttrEffect, AttrError, Cmd, CmdCtx, Device, ExecMode, IoError, IoOp, Response, Resume,
};
use std::io;
use std::sync::Arc;

/// Largest transfer one command may ask for (VPD B0 MAXIMUM TRANSFER LENGTH): bounds
/// the buffer a single CDB can make us allocate. 32 MiB lets initiators that zero or
/// copy in 65536-block (512-byte) units, as libiscsi's WRITE SAME tests do, work in
/// one command; OPTIMAL TRANSFER LENGTH still steers normal I/O to 512 KiB.
pub const MAX_XFER_BYTES: u64 = 32 << 20;
/// Chunk size for reading back long VERIFY ranges.
const VERIFY_CHUNK: usize = 1 << 20;
/// Writes refused while the control mode page's SWP bit is set.
const SOFTWARE_WRITE_PROTECTED: Sense = Sense::named(
    key::DATA_PROTECT,
    asc::LOGICAL_UNIT_SOFTWARE_WRITE_PROTECTED,
);

pub(crate) type CmdResult = Result<Option<Response>, Sense>;

// COMPARE AND WRITE, ORWRITE, WRITE ATOMIC; the supported-command table and the
// MAINTENANCE IN reports built from it.
mod atomic;
pub(crate) mod opcodes;

/// A vdisk device: configuration, capacity, mode state and its backend.
pub struct Vdisk<B: Backend> {
    pub(crate) cfg: VdiskConfig,
    /// Shared with the background thread of an IMMED sanitize or format (longop.rs).
    pub(crate) backend: Arc<B>,
    /// The attributes writable at run time (attrs.rs); `cfg` keeps their creation
    /// values only.
    pub(crate) live: LiveAttrs,
    /// log2(block size).
    pub(crate) shift: u32,
    pub(crate) mode: ModeState,
    /// LBA range lock: shared by reads and writes, exclusive for the commands that
    /// must be indivisible (COMPARE AND WRITE, ORWRITE, WRITE ATOMIC). Every path that
    /// modifies the medium takes it.
    pub(crate) ranges: Arc<RangeLock>,
    /// A sanitize or format in progress, or sanitize failure mode (longop.rs).
    pub(crate) longop: Arc<MediumState>,
    /// Load/eject and PREVENT MEDIUM REMOVAL; the medium can leave only when the
    /// device is `removable` (removable.rs).
    pub(crate) removable: Removable,
}

fn good() -> CmdResult {
    Ok(Some(Response::good()))
}

fn data(d: Vec<u8>) -> CmdResult {
    Ok(Some(Response::data(d)))
}

/// Zeros for nullio reads in Inline mode, whose responses go straight to the wire: one
/// region allocated zeroed at first use and never written, so a read costs no
/// allocation and no zeroing, and its pages all map the kernel's zero page. (A static
/// array would sit in the executable's read-only data: tens of MB of the binary.)
static ZEROS: std::sync::LazyLock<&'static [u8]> =
    std::sync::LazyLock::new(|| Box::leak(vec![0u8; MAX_XFER_BYTES as usize].into_boxed_slice()));

/// `len` (<= MAX_XFER_BYTES) zero bytes of data-in.
fn zeros(len: usize, mode: ExecMode) -> Response {
    match mode {
        ExecMode::Inline => Response {
            static_data: Some(&ZEROS[..len]),
            ..Response::default()
        },
        // Other callers (EXTENDED COPY, tests) read `data`.
        ExecMode::Blocking => Response::data(vec![0u8; len]),
    }
}

/// Logs a failed backend operation of device `name` (`what`: the command's step) and
/// gives the sense its kind maps to.
pub(crate) fn failed(name: &str, what: &str, e: IoError) -> Sense {
    let e = if e.source.kind() == std::io::ErrorKind::UnexpectedEof {
        // Every range is checked against the device's size first, so the backing
        // store ends early only when it shrank under the device: the block is out of
        // range now (until resync_size tells the initiators), not a medium error.
        let shrunk = std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            "the backing store ends before it: it shrank under the device \
             (write resync_size to report the new capacity)",
        );
        IoError::new(e.op, e.offset, shrunk)
    } else {
        e
    };
    log::error!("{name}: {what} at byte {} failed: {}", e.offset, e.source);
    e.sense()
}

impl<B: Backend> Vdisk<B> {
    pub fn new(cfg: VdiskConfig, backend: B, size: u64) -> Vdisk<B> {
        let shift = cfg.block_size.trailing_zeros();
        Vdisk {
            mode: ModeState::new(cfg.write_through, cfg.nv_cache, cfg.tst),
            ranges: Arc::new(RangeLock::new()),
            longop: Arc::new(MediumState::default()),
            removable: Removable::new(),
            live: LiveAttrs::new(&cfg, size),
            shift,
            cfg,
            backend: Arc::new(backend),
        }
    }

    /// Capacity in logical blocks. A command reads it once per check: a resize
    /// (nullio `size`, `resync_size`) may land between two commands.
    pub(crate) fn nblocks(&self) -> u64 {
        self.live.size() >> self.shift
    }

    pub(crate) fn block_size(&self) -> u32 {
        self.cfg.block_size
    }

    pub(crate) fn max_xfer_blocks(&self) -> u32 {
        (MAX_XFER_BYTES >> self.shift) as u32
    }

    /// Why a medium write must be refused, if it must.
    pub(crate) fn write_protect(&self, ctx: &CmdCtx<'_>) -> Option<Sense> {
        if ctx.lun_read_only || self.live.read_only() {
            Some(Sense::WRITE_PROTECTED)
        } else if self.mode.swp() {
            Some(SOFTWARE_WRITE_PROTECTED)
        } else {
            None
        }
    }

    pub(crate) fn check_range(&self, lba: u64, blocks: u64) -> Result<(), Sense> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.nblocks() => Ok(()),
            _ => Err(Sense::LBA_OUT_OF_RANGE),
        }
    }

    /// Turn a backend outcome into `Ok(true)` (done), `Ok(false)` (would block) or the
    /// mapped sense, logging real I/O errors once here.
    pub(crate) fn io(&self, what: &str, op: IoOp, off: u64, o: IoOutcome) -> Result<bool, Sense> {
        match o {
            None => Ok(false),
            Some(Ok(())) => Ok(true),
            Some(Err(e)) => Err(failed(&self.cfg.name, what, IoError::new(op, off, e))),
        }
    }

    /// Field checks shared by the READ/WRITE/VERIFY family, then the LBA range.
    fn check_rw(&self, rw: &RwCdb) -> Result<(), Sense> {
        if rw.protect != 0 {
            // No T10-PI: any RDPROTECT/WRPROTECT/VRPROTECT value is invalid.
            return Err(Sense::invalid_field_in_cdb(1, Some(7)));
        }
        let bad_bytchk = match rw.kind {
            RwKind::Verify => rw.bytchk == 2,
            RwKind::WriteAndVerify => rw.bytchk > 1,
            _ => false,
        };
        if bad_bytchk {
            return Err(Sense::invalid_field_in_cdb(1, Some(2)));
        }
        self.check_range(rw.lba, rw.blocks as u64)?;
        // VERIFY without data-out reads back any length in chunks; everything else
        // moves the whole transfer in one buffer.
        let buffered = !(rw.kind == RwKind::Verify && rw.bytchk == 0);
        if buffered && rw.blocks > self.max_xfer_blocks() {
            return Err(Sense::invalid_field_in_cdb(rw.len_offset, None));
        }
        Ok(())
    }

    fn read(&self, cdb: &[u8], mode: ExecMode) -> CmdResult {
        let rw = decode_rw(cdb)?;
        self.check_rw(&rw)?;
        if rw.blocks == 0 {
            return good();
        }
        let len = (rw.blocks as usize) << self.shift;
        if self.backend.is_null() {
            // No medium: nothing to read, and nothing a range lock could order.
            return Ok(Some(zeros(len, mode)));
        }
        let off = rw.lba << self.shift;
        let Some(range) = self
            .ranges
            .shared(rw.lba, rw.blocks as u64, mode == ExecMode::Blocking)
        else {
            return self.read_resumed(None, rw.lba, rw.blocks, len, off);
        };
        match self.backend.read_vec(len, off, mode) {
            Some(Ok(buf)) => data(buf),
            Some(Err(e)) => self.io("read", IoOp::Read, off, Some(Err(e))).map(|_| None),
            None if mode == ExecMode::Inline && self.backend.async_io() => {
                self.read_deferred(range, len, off)
            }
            None => self.read_resumed(Some(range), rw.lba, rw.blocks, len, off),
        }
    }

    /// The LBA range a resumed transfer holds on its I/O thread: the guard taken inline
    /// (`range`), or, when the range was not free then, one taken there, waiting.
    fn resumed_range(
        &self,
        range: Option<RangeGuard<'_>>,
        lba: u64,
        blocks: u32,
    ) -> impl FnOnce() -> Option<RangeGuard<'static>> + Send + 'static {
        let ranges = self.ranges.clone();
        let range = range.map(|r| r.into_owned(ranges.clone()));
        move || {
            range.or_else(|| {
                ranges
                    .shared(lba, blocks as u64, true)
                    .map(|r| r.into_owned(ranges.clone()))
            })
        }
    }

    /// A read that would block continues on an I/O thread from here: decoded and
    /// checked, its LBA range held (`range`), or taken there, waiting, when it was
    /// not free.
    fn read_resumed(
        &self,
        range: Option<RangeGuard<'_>>,
        lba: u64,
        blocks: u32,
        len: usize,
        off: u64,
    ) -> CmdResult {
        let hold = self.resumed_range(range, lba, blocks);
        let backend = self.backend.clone();
        let fail = self.async_failure("read", IoOp::Read, off);
        Ok(Some(Response::resume(Resume::new(move |_| {
            let _range = hold();
            match backend.read_vec(len, off, ExecMode::Blocking) {
                Some(Ok(buf)) => Response::data(buf),
                Some(Err(e)) => fail(e),
                // Blocking mode always does the I/O.
                None => Response::check(Sense::INTERNAL_FAILURE),
            }
        }))))
    }

    /// Hand a read that would block to the backend's asynchronous engine. The range
    /// stays locked until the data is in.
    fn read_deferred(&self, range: RangeGuard<'_>, len: usize, off: u64) -> CmdResult {
        let backend = self.backend.clone();
        self.start_async(range, "read", IoOp::Read, off, Response::data, |done| {
            backend.read_async(len, off, done)
        })
    }

    /// Start a transfer on the backend's asynchronous engine (`start` hands it `done`):
    /// the command completes, with `ok(buffer)` or the failure mapped by `map`, when the
    /// transfer does, and its LBA range stays locked until then. `Ok(None)` when nothing
    /// was started: the command is re-run on an I/O thread.
    fn start_async(
        &self,
        range: RangeGuard<'_>,
        what: &'static str,
        op: IoOp,
        off: u64,
        ok: fn(Vec<u8>) -> Response,
        start: impl FnOnce(Done) -> Result<(), Done>,
    ) -> CmdResult {
        let range = range.into_owned(self.ranges.clone());
        let (deferred, completer) = Deferred::new();
        let fail = self.async_failure(what, op, off);
        let done: Done = Box::new(move |r| {
            drop(range);
            completer.complete(match r {
                Ok(buf) => ok(buf),
                Err(e) => fail(e),
            });
        });
        match start(done) {
            Ok(()) => Ok(Some(Response::deferred(deferred))),
            Err(_) => Ok(None),
        }
    }

    /// The response to an asynchronous transfer that failed, logged as `io` logs.
    fn async_failure(
        &self,
        what: &'static str,
        op: IoOp,
        off: u64,
    ) -> impl FnOnce(io::Error) -> Response + Send + 'static {
        let name = self.cfg.name.clone();
        // The core puts the sense in the device's format.
        move |e| Response::check(failed(&name, what, IoError::new(op, off, e)))
    }

    fn write(&self, ctx: &CmdCtx<'_>, cdb: &[u8], data_out: &[u8], mode: ExecMode) -> CmdResult {
        let rw = decode_rw(cdb)?;
        if let Some(s) = self.write_protect(ctx) {
            return Err(s);
        }
        self.check_rw(&rw)?;
        if rw.blocks == 0 {
            return good();
        }
        // An initiator may send less than the CDB asks (its expected length was
        // shorter; the transport reports the residual): write the whole blocks that
        // arrived and nothing else, so no block is written with data it never sent.
        let len =
            ((rw.blocks as usize) << self.shift).min(data_out.len() >> self.shift << self.shift);
        if len == 0 {
            return good();
        }
        let buf = &data_out[..len];
        let off = rw.lba << self.shift;
        if rw.kind == RwKind::WriteAndVerify && mode == ExecMode::Inline && !self.backend.is_null()
        {
            return Ok(None);
        }
        let stable = !self.cfg.nv_cache && (rw.fua || !self.mode.wce());
        if self.backend.is_null() {
            // Nothing is written: no range to lock.
            return good();
        }
        let Some(range) = self
            .ranges
            .shared(rw.lba, rw.blocks as u64, mode == ExecMode::Blocking)
        else {
            return self.write_resumed(None, rw.lba, rw.blocks, len, off, stable);
        };
        if !self.io(
            "write",
            IoOp::Write,
            off,
            self.backend.write(buf, off, stable, mode),
        )? {
            if mode == ExecMode::Inline
                && rw.kind != RwKind::WriteAndVerify
                && self.backend.async_io()
            {
                return self.write_deferred(range, buf, off, stable);
            }
            // (WRITE AND VERIFY never gets here inline: it runs blocking from the top.)
            return self.write_resumed(Some(range), rw.lba, rw.blocks, len, off, stable);
        }
        if rw.kind == RwKind::WriteAndVerify && !self.backend.is_null() {
            let mut back = vec![0u8; len];
            let o = self.backend.read(&mut back, off, ExecMode::Blocking);
            self.io("verify read", IoOp::Read, off, o)?;
            if rw.bytchk == 1 {
                if let Some(i) = back.iter().zip(buf).position(|(a, b)| a != b) {
                    return Err(Sense::MISCOMPARE.with_information(i as u64));
                }
            }
        }
        good()
    }

    /// A write that would block continues on an I/O thread from here, writing the
    /// first `len` bytes of the command's data-out in place (no copy): decoded,
    /// checked, its LBA range held (`range`) or taken there when it was not free.
    fn write_resumed(
        &self,
        range: Option<RangeGuard<'_>>,
        lba: u64,
        blocks: u32,
        len: usize,
        off: u64,
        stable: bool,
    ) -> CmdResult {
        let hold = self.resumed_range(range, lba, blocks);
        let backend = self.backend.clone();
        let fail = self.async_failure("write", IoOp::Write, off);
        Ok(Some(Response::resume(Resume::new(move |cmd| {
            let _range = hold();
            let Some(buf) = cmd.data_out.get(..len) else {
                return Response::check(Sense::INTERNAL_FAILURE);
            };
            match backend.write(buf, off, stable, ExecMode::Blocking) {
                Some(Ok(())) => Response::good(),
                Some(Err(e)) => fail(e),
                None => Response::check(Sense::INTERNAL_FAILURE),
            }
        }))))
    }

    /// Hand a write that would block to the backend's asynchronous engine, with a copy
    /// of the data (the command's buffer goes back to the transport).
    fn write_deferred(
        &self,
        range: RangeGuard<'_>,
        buf: &[u8],
        off: u64,
        stable: bool,
    ) -> CmdResult {
        let (backend, data) = (self.backend.clone(), buf.to_vec());
        self.start_async(
            range,
            "write",
            IoOp::Write,
            off,
            |_| Response::good(),
            |done| backend.write_async(data, off, stable, done),
        )
    }

    fn verify(&self, cdb: &[u8], data_out: &[u8], mode: ExecMode) -> CmdResult {
        let rw = decode_rw(cdb)?;
        self.check_rw(&rw)?;
        if rw.blocks == 0 || self.backend.is_null() {
            return good();
        }
        let bs = self.block_size() as usize;
        let total = (rw.blocks as u64) << self.shift;
        let expected: &[u8] = match rw.bytchk {
            0 => Some(&[][..]),
            1 => data_out.get(..total as usize),
            _ => data_out.get(..bs),
        }
        .ok_or(Sense::invalid_field_in_cdb(rw.len_offset, None))?;
        if mode == ExecMode::Inline {
            return Ok(None);
        }
        let start = rw.lba << self.shift;
        let mut buf = vec![0u8; (total as usize).min(VERIFY_CHUNK)];
        let mut done = 0u64;
        while done < total {
            let n = ((total - done) as usize).min(buf.len());
            let chunk = &mut buf[..n];
            let o = self.backend.read(chunk, start + done, ExecMode::Blocking);
            self.io("verify read", IoOp::Read, start + done, o)?;
            let mismatch = match rw.bytchk {
                0 => None,
                1 => {
                    let exp = &expected[done as usize..done as usize + n];
                    chunk.iter().zip(exp).position(|(a, b)| a != b)
                }
                // BYTCHK 3: the single data-out block is compared with every block.
                _ => chunk.chunks(bs).enumerate().find_map(|(i, blk)| {
                    blk.iter()
                        .zip(expected)
                        .position(|(a, b)| a != b)
                        .map(|j| i * bs + j)
                }),
            };
            if let Some(i) = mismatch {
                return Err(Sense::MISCOMPARE.with_information(done + i as u64));
            }
            done += n as u64;
        }
        good()
    }

    fn sync_cache(&self, cdb: &[u8], mode: ExecMode) -> CmdResult {
        let s = decode_sync_cache(cdb)?;
        self.check_range(s.lba, s.blocks as u64)?;
        // nv_cache declares the cache non-volatile: nothing to flush.
        self.flush_all(mode)
    }

    fn flush_all(&self, mode: ExecMode) -> CmdResult {
        if self.cfg.nv_cache {
            return good();
        }
        if !self.io("flush", IoOp::Flush, 0, self.backend.flush(mode))? {
            return Ok(None);
        }
        good()
    }

    fn read_capacity_10(&self, cdb: &[u8]) -> CmdResult {
        let lba = cdb::be32(cdb, 2)?;
        let pmi = cdb::u8_at(cdb, 8)? & 0x01 != 0;
        if !pmi && lba != 0 {
            return Err(Sense::invalid_field_in_cdb(2, None));
        }
        data(scsi_wire::inquiry::read_capacity_10(self.nblocks(), self.block_size()).to_vec())
    }

    fn service_action_in(&self, cdb: &[u8], mode: ExecMode) -> CmdResult {
        use scsi_wire::cdb::service_action;
        match cdb::u8_at(cdb, 1)? & 0x1F {
            service_action::READ_CAPACITY_16 => {
                let lba = cdb::be64(cdb, 2)?;
                let alloc = cdb::be32(cdb, 10)? as usize;
                let pmi = cdb::u8_at(cdb, 14)? & 0x01 != 0;
                if !pmi && lba != 0 {
                    return Err(Sense::invalid_field_in_cdb(2, None));
                }
                let mut d = inquiry::read_capacity_16(self).to_vec();
                d.truncate(alloc);
                data(d)
            }
            service_action::GET_LBA_STATUS => self.get_lba_status(cdb, mode),
            _ => Err(Sense::invalid_field_in_cdb(1, Some(4))),
        }
    }

    fn request_sense(&self, cdb: &[u8]) -> CmdResult {
        let desc = cdb::u8_at(cdb, 1)? & 0x01 != 0;
        let alloc = cdb::u8_at(cdb, 4)? as usize;
        let mut d = Sense::NO_SENSE.encode(desc);
        d.truncate(alloc);
        data(d)
    }

    fn geometry(&self, ctx: &CmdCtx<'_>) -> ModeGeometry {
        ModeGeometry {
            nblocks: self.nblocks(),
            block_size: self.block_size(),
            rotation_rate: inquiry::rotation_rate(&self.cfg),
            write_protected: ctx.lun_read_only || self.live.read_only(),
            medium_locked: self.removable.prevented(),
        }
    }

    fn dispatch(&self, ctx: &CmdCtx<'_>, cmd: &Cmd, mode: ExecMode) -> CmdResult {
        use opcode::*;
        let cdb: &[u8] = &cmd.cdb;
        // A sanitize or format in progress, or a failed sanitize, fences off the medium.
        self.longop.gate(cdb)?;
        // A removable disk whose medium START STOP UNIT ejected (removable.rs).
        if !self.removable.loaded() && self.needs_medium(cmd.cdb.opcode()) {
            return Err(Sense::MEDIUM_NOT_PRESENT);
        }
        match cmd.cdb.opcode() {
            // The data path first.
            READ_6 | READ_10 | READ_12 | READ_16 => self.read(cdb, mode),
            WRITE_6 | WRITE_10 | WRITE_12 | WRITE_16 | WRITE_AND_VERIFY_10
            | WRITE_AND_VERIFY_12 | WRITE_AND_VERIFY_16 => {
                self.write(ctx, cdb, &cmd.data_out, mode)
            }
            VERIFY_10 | VERIFY_12 | VERIFY_16 => self.verify(cdb, &cmd.data_out, mode),
            SYNCHRONIZE_CACHE_10 | SYNCHRONIZE_CACHE_16 => self.sync_cache(cdb, mode),
            TEST_UNIT_READY | SEND_DIAGNOSTIC => good(),
            INQUIRY => data(inquiry::inquiry(self, ctx, cdb)?),
            READ_CAPACITY_10 => self.read_capacity_10(cdb),
            SERVICE_ACTION_IN_16 => self.service_action_in(cdb, mode),
            MODE_SENSE_6 | MODE_SENSE_10 => data(self.mode.mode_sense(cdb, &self.geometry(ctx))?),
            MODE_SELECT_6 | MODE_SELECT_10 => {
                self.mode
                    .mode_select(cdb, &cmd.data_out, self.block_size())?;
                good()
            }
            // START STOP UNIT has no medium to spin; SCST flushes the cache.
            START_STOP_UNIT => self.start_stop_unit(cdb, mode),
            PREVENT_ALLOW_MEDIUM_REMOVAL => {
                self.removable.set_prevent(ctx, prevent_requested(cdb)?);
                good()
            }
            REQUEST_SENSE => self.request_sense(cdb),
            // Indivisible read-modify-writes and writes (sbc/atomic.rs).
            COMPARE_AND_WRITE => self.compare_and_write(ctx, cdb, &cmd.data_out, mode),
            scsi_wire::atomic::opcode::ORWRITE_16 => self.orwrite(ctx, cdb, &cmd.data_out, mode),
            scsi_wire::atomic::opcode::WRITE_ATOMIC_16 => {
                self.write_atomic(ctx, cdb, &cmd.data_out, mode)
            }
            // REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS (sbc/opcodes.rs).
            MAINTENANCE_IN => self.maintenance_in(cdb),
            // Thin provisioning and WRITE SAME (provisioning.rs).
            WRITE_SAME_10 | WRITE_SAME_16 => self.write_same(ctx, cdb, &cmd.data_out, mode),
            UNMAP => self.unmap(ctx, cdb, &cmd.data_out, mode),
            // PRE-FETCH and READ DEFECT DATA (prefetch.rs).
            sbc_op::PRE_FETCH_10 | sbc_op::PRE_FETCH_16 => self.pre_fetch(cdb, mode),
            sbc_op::READ_DEFECT_DATA_10 | sbc_op::READ_DEFECT_DATA_12 => self.read_defect_data(cdb),
            // Whole-medium operations (sanitize.rs, format.rs).
            FORMAT_UNIT => self.format_unit(ctx, cdb, &cmd.data_out, mode),
            crate::sanitize::SANITIZE if self.has_medium() => {
                self.sanitize(ctx, cdb, &cmd.data_out, mode)
            }
            // No log pages.
            LOG_SELECT | LOG_SENSE => Err(Sense::invalid_field_in_cdb(2, None)),
            _ => Err(Sense::INVALID_OPCODE),
        }
    }

    /// Commands that need the medium (they fail NOT READY / MEDIUM NOT PRESENT while
    /// it is ejected): every supported one but identification, tray and lock control,
    /// mode pages and command reports. Unsupported opcodes stay INVALID OPERATION CODE.
    fn needs_medium(&self, op: u8) -> bool {
        use opcode::*;
        !matches!(
            op,
            INQUIRY
                | START_STOP_UNIT
                | PREVENT_ALLOW_MEDIUM_REMOVAL
                | MODE_SENSE_6
                | MODE_SENSE_10
                | MODE_SELECT_6
                | MODE_SELECT_10
                | LOG_SENSE
                | LOG_SELECT
                | MAINTENANCE_IN
        ) && self.supported_commands().any(|c| c.opcode == op)
    }

    /// START STOP UNIT (SBC-3 5.25). LOEJ (with power condition 0) ejects or loads a
    /// `removable` device's medium, refused while removal is prevented, and is an
    /// invalid field on a fixed one (libiscsi StartStopUnit.Simple). Otherwise SCST's
    /// behaviour: flush the write cache. An eject flushes first.
    fn start_stop_unit(&self, cdb: &[u8], mode: ExecMode) -> CmdResult {
        let s = StartStop::decode(cdb)?;
        if !s.moves_medium() {
            return self.flush_all(mode);
        }
        if !self.cfg.removable {
            return Err(Sense::invalid_field_in_cdb(4, Some(1)));
        }
        if s.start {
            self.removable.load_eject(true)?;
            return good();
        }
        if self.removable.prevented() {
            return Err(MEDIUM_REMOVAL_PREVENTED);
        }
        if self.removable.loaded() && self.flush_all(mode)?.is_none() {
            return Ok(None);
        }
        self.removable.load_eject(false)?;
        good()
    }
}

impl<B: Backend> Device for Vdisk<B> {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn handler_name(&self) -> &'static str {
        self.cfg.handler.name()
    }

    fn scsi_type(&self) -> u8 {
        0
    }

    fn execute(&self, ctx: &CmdCtx<'_>, cmd: &mut Cmd, mode: ExecMode) -> Option<Response> {
        match self.dispatch(ctx, cmd, mode) {
            Ok(r) => r,
            Err(s) => Some(Response::check(s)),
        }
    }

    fn data_out_len(&self, cdb: &[u8]) -> Option<u32> {
        crate::data_out::data_out_len(cdb, self.block_size())
    }

    fn descriptor_sense(&self) -> bool {
        self.mode.d_sense()
    }

    fn shared_task_set(&self) -> bool {
        self.cfg.tst == 0
    }

    fn pending_sense(&self) -> Option<Sense> {
        self.longop.pending_sense().or_else(|| {
            // REQUEST SENSE reports the NOT READY condition of an ejected medium.
            (!self.removable.loaded()).then_some(Sense::MEDIUM_NOT_PRESENT)
        })
    }

    fn abort_running(&self) {
        self.longop.detach_waiter();
    }

    fn reset(&self) {
        self.mode.reset();
        self.removable.reset();
    }

    fn nexus_lost(&self, initiator_name: &str, target_name: &str) {
        self.removable.nexus_lost(initiator_name, target_name);
    }

    fn attributes(&self) -> Vec<(String, String, bool)> {
        self.attribute_list()
    }

    /// Run-time attribute writes (attrs.rs).
    fn apply_attribute(&self, name: &str, value: &str) -> Result<AttrEffect, AttrError> {
        self.write_attribute(name, value)
    }

    fn set_attribute(&self, name: &str, value: &str) -> Result<(), AttrError> {
        self.write_attribute(name, value).map(|_| ())
    }

    fn flush(&self) -> io::Result<()> {
        self.backend.flush(ExecMode::Blocking).unwrap_or(Ok(()))
    }
}
