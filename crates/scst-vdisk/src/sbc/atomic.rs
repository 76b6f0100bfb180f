//! The vdisk commands that must look indivisible to every other command on the device,
//! from any session: COMPARE AND WRITE (SBC-4 5.3, docs/scst-reference.md 4.2), ORWRITE(16)
//! (SBC-4 5.8) and WRITE ATOMIC(16) (SBC-4 5.48).
//!
//! Each holds the device's LBA range lock exclusively across its whole medium access
//! (read, compare or merge, write), while ordinary READs and WRITEs hold it shared, so
//! no other command can observe or modify the range half-way. They always run on an
//! I/O thread: waiting for the lock may block.

use super::{CmdResult, Vdisk};
use crate::backend::Backend;
use crate::inquiry;
use scsi_wire::atomic::{
    decode_compare_and_write, decode_orwrite_16, decode_write_atomic_16, field, AtomicRwCdb,
};
use scsi_wire::inquiry::AtomicLimits;
use scsi_wire::Sense;
use scst_core::IoOp;
use scst_core::{CmdCtx, ExecMode, Response};

/// MAXIMUM COMPARE AND WRITE LENGTH (VPD B0h), also bounded by the one-byte NUMBER OF
/// LOGICAL BLOCKS field (docs/scst-reference.md 4.4).
const MAX_COMPARE_AND_WRITE: u32 = 255;

/// Where the first differing byte is, if any.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

impl<B: Backend> Vdisk<B> {
    /// MAXIMUM COMPARE AND WRITE LENGTH: 255 blocks, unless the verify + write data of
    /// that many blocks would exceed the largest transfer we accept.
    pub(crate) fn max_compare_and_write(&self) -> u32 {
        MAX_COMPARE_AND_WRITE.min(self.max_xfer_blocks() / 2)
    }

    /// The atomic write limits reported in VPD B0h and enforced by WRITE ATOMIC(16).
    ///
    /// The range lock makes any write atomic against concurrent commands, so the only
    /// constraint we impose is the one that keeps an atomic write from tearing inside
    /// the backing store: whole physical blocks (as READ CAPACITY(16) reports them),
    /// so that the store never has to read-modify-write a block we only partly cover.
    pub(crate) fn atomic_limits(&self) -> AtomicLimits {
        let unit = 1u32 << inquiry::lb_per_pb_exp(self);
        // TRANSFER LENGTH is a 16-bit field; keep the maximum a multiple of the unit.
        let max = self.max_xfer_blocks().min(u16::MAX as u32) / unit * unit;
        AtomicLimits {
            max_transfer_len: max,
            alignment: unit,
            granularity: unit,
            // The whole transfer is atomic, so any boundary the initiator asks for is
            // honoured (each boundary-delimited piece is atomic a fortiori).
            max_transfer_len_with_boundary: max,
            max_boundary_size: max,
        }
    }

    /// Whether a write must reach stable storage before GOOD.
    fn stable_write(&self, fua: bool) -> bool {
        !self.cfg.nv_cache && (fua || !self.mode.wce())
    }

    /// Checks common to the three commands, in the order initiators expect (libiscsi):
    /// write protection, the PROTECT field (no T10-PI), then the LBA range.
    fn check_atomic_cdb(&self, ctx: &CmdCtx<'_>, c: &AtomicRwCdb) -> Result<(), Sense> {
        if let Some(s) = self.write_protect(ctx) {
            return Err(s);
        }
        if c.protect != 0 {
            return Err(Sense::invalid_field_in_cdb(
                field::PROTECT_BYTE,
                Some(field::PROTECT_BIT),
            ));
        }
        self.check_range(c.lba, c.blocks as u64)
    }

    /// The data-out, which must be exactly the `len` bytes the CDB describes: a
    /// partial compare or OR would not be atomic with what the initiator meant.
    /// `len_field` names the CDB field the length came from.
    fn data_out_prefix(data_out: &[u8], len: usize, len_field: u16) -> Result<&[u8], Sense> {
        if data_out.len() != len {
            return Err(Sense::invalid_field_in_cdb(len_field, None));
        }
        Ok(data_out)
    }

    /// Read `buf.len()` bytes at block `lba` (Blocking mode).
    fn read_blocks(&self, buf: &mut [u8], lba: u64) -> Result<(), Sense> {
        let off = lba << self.shift;
        let o = self.backend.read(buf, off, ExecMode::Blocking);
        self.io("read", IoOp::Read, off, o).map(|_| ())
    }

    /// Write `buf` at block `lba` (Blocking mode).
    fn write_blocks(&self, buf: &[u8], lba: u64, fua: bool) -> Result<(), Sense> {
        let off = lba << self.shift;
        let o = self
            .backend
            .write(buf, off, self.stable_write(fua), ExecMode::Blocking);
        self.io("write", IoOp::Write, off, o).map(|_| ())
    }

    /// COMPARE AND WRITE: compare the medium with the first half of the data-out and,
    /// only if every byte matches, write the second half; MISCOMPARE with the offset
    /// of the first differing byte otherwise (docs/scst-reference.md 4.2).
    pub(super) fn compare_and_write(
        &self,
        ctx: &CmdCtx<'_>,
        cdb: &[u8],
        data_out: &[u8],
        mode: ExecMode,
    ) -> CmdResult {
        let c = decode_compare_and_write(cdb)?;
        self.check_atomic_cdb(ctx, &c)?;
        if c.blocks > self.max_compare_and_write() {
            return Err(Sense::invalid_field_in_cdb(field::CAW_BLOCKS, None));
        }
        let len = (c.blocks as usize) << self.shift;
        // The size check comes first: a count that wrapped to 0 in the one-byte field
        // still arrives with data, and must fail rather than succeed as a no-op.
        let data = Self::data_out_prefix(data_out, 2 * len, field::CAW_BLOCKS)?;
        if c.blocks == 0 {
            return Ok(Some(Response::good()));
        }
        let (expected, new) = data.split_at(len);
        if mode == ExecMode::Inline {
            return Ok(None);
        }
        let _range = self.ranges.exclusive(c.lba, c.blocks as u64);
        // nullio has no medium: like VERIFY, the comparison always succeeds.
        if !self.backend.is_null() {
            let mut current = vec![0u8; len];
            self.read_blocks(&mut current, c.lba)?;
            if let Some(i) = first_difference(&current, expected) {
                return Err(Sense::MISCOMPARE.with_information(i as u64));
            }
        }
        self.write_blocks(new, c.lba, c.fua)?;
        Ok(Some(Response::good()))
    }

    /// ORWRITE(16): medium = medium OR data-out, as one indivisible update.
    pub(super) fn orwrite(
        &self,
        ctx: &CmdCtx<'_>,
        cdb: &[u8],
        data_out: &[u8],
        mode: ExecMode,
    ) -> CmdResult {
        let c = decode_orwrite_16(cdb)?;
        self.check_atomic_cdb(ctx, &c)?;
        if c.blocks > self.max_xfer_blocks() {
            return Err(Sense::invalid_field_in_cdb(field::ORWRITE_LEN, None));
        }
        if c.blocks == 0 {
            return Ok(Some(Response::good()));
        }
        let len = (c.blocks as usize) << self.shift;
        let mask = Self::data_out_prefix(data_out, len, field::ORWRITE_LEN)?;
        if mode == ExecMode::Inline {
            return Ok(None);
        }
        let _range = self.ranges.exclusive(c.lba, c.blocks as u64);
        let mut merged = vec![0u8; len];
        self.read_blocks(&mut merged, c.lba)?;
        merged.iter_mut().zip(mask).for_each(|(m, b)| *m |= b);
        self.write_blocks(&merged, c.lba, c.fua)?;
        Ok(Some(Response::good()))
    }

    /// WRITE ATOMIC(16): a write that other commands see entirely or not at all,
    /// within the limits of VPD B0h (checked after the LBA range, as libiscsi expects
    /// LBA OUT OF RANGE for out-of-range misaligned writes).
    pub(super) fn write_atomic(
        &self,
        ctx: &CmdCtx<'_>,
        cdb: &[u8],
        data_out: &[u8],
        mode: ExecMode,
    ) -> CmdResult {
        let c = decode_write_atomic_16(cdb)?;
        self.check_atomic_cdb(ctx, &c)?;
        if c.blocks == 0 {
            return Ok(Some(Response::good()));
        }
        let lim = self.atomic_limits();
        let boundary = c.boundary as u32;
        let max = if boundary == 0 {
            lim.max_transfer_len
        } else {
            lim.max_transfer_len_with_boundary
        };
        if boundary > lim.max_boundary_size {
            return Err(Sense::invalid_field_in_cdb(field::ATOMIC_BOUNDARY, None));
        }
        if c.blocks > max || (lim.granularity > 1 && c.blocks % lim.granularity != 0) {
            return Err(Sense::invalid_field_in_cdb(field::ATOMIC_LEN, None));
        }
        if lim.alignment > 1 && c.lba % lim.alignment as u64 != 0 {
            return Err(Sense::invalid_field_in_cdb(field::LBA, None));
        }
        let len = (c.blocks as usize) << self.shift;
        let data = Self::data_out_prefix(data_out, len, field::ATOMIC_LEN)?;
        if mode == ExecMode::Inline {
            return Ok(None);
        }
        let _range = self.ranges.exclusive(c.lba, c.blocks as u64);
        self.write_blocks(data, c.lba, c.fua)?;
        Ok(Some(Response::good()))
    }
}
