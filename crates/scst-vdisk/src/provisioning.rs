//! Logical block provisioning of a vdisk (docs/scst-reference.md 4.3, 4.4; SBC-4 4.7): UNMAP,
//! WRITE SAME (10/16) with and without the UNMAP bit, GET LBA STATUS, and the
//! provisioning fields of VPD B0h/B2h and READ CAPACITY(16).
//!
//! Thin provisioning (`thin_provisioned=1`, fileio/blockio only) deallocates by
//! punching holes, so deallocated blocks read back as zeros (LBPRZ=1), and reports
//! allocation from the file's real extents (SEEK_DATA/SEEK_HOLE).

use crate::backend::Backend;
use crate::config::Handler;
use crate::sbc::{failed, CmdResult, Vdisk};
use scsi_wire::inquiry::BlockLimits;
use scsi_wire::provisioning::{
    decode_get_lba_status, decode_unmap, decode_write_same, lba_status_data, parse_unmap_list,
    vpd_logical_block_provisioning, write_same_bit, LbaStatus, LogicalBlockProvisioning,
    ProvisioningStatus, LBA_STATUS_DESCRIPTOR_LEN, LBA_STATUS_HEADER_LEN, PROVISIONING_THIN,
};
use scsi_wire::Sense;
use scst_core::{CmdCtx, ExecMode, IoError, IoOp, Response};
use std::borrow::Cow;

/// Largest range one WRITE SAME may cover (scst-reference 4.3: 256 MiB per command), reported
/// as MAXIMUM WRITE SAME LENGTH.
const MAX_WRITE_SAME_BYTES: u64 = 256 << 20;
/// Largest total range one UNMAP may deallocate (scst-reference 4.4: 256 MiB for files),
/// reported as MAXIMUM UNMAP LBA COUNT.
const MAX_UNMAP_BYTES: u64 = 256 << 20;
/// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT: the most UNMAP's 16-bit parameter list
/// length can carry ((65535 - 8) / 16). A finite value, unlike "unlimited"
/// (0xFFFFFFFF), also reads right in initiators that keep the field in a signed int,
/// as libiscsi's tests do.
const MAX_UNMAP_DESCRIPTORS: u32 = 4095;
/// Bytes written per call while repeating a WRITE SAME block, so that a long range
/// never needs a buffer of its own size.
const WRITE_SAME_CHUNK: usize = 1 << 20;
/// Descriptors one GET LBA STATUS returns at most: the allocation length bounds the
/// answer anyway, this bounds the extent walk.
const MAX_LBA_STATUS_DESCRIPTORS: usize = 64;

fn good() -> CmdResult {
    Ok(Some(Response::good()))
}

impl<B: Backend> Vdisk<B> {
    /// Thin provisioning is on (nullio has none: nothing to deallocate).
    pub(crate) fn thin(&self) -> bool {
        self.cfg.thin_provisioned && self.cfg.handler != Handler::Nullio
    }

    fn max_write_same_blocks(&self) -> u32 {
        u32::try_from(MAX_WRITE_SAME_BYTES >> self.shift).unwrap_or(u32::MAX)
    }

    fn max_unmap_blocks(&self) -> u32 {
        u32::try_from(MAX_UNMAP_BYTES >> self.shift).unwrap_or(u32::MAX)
    }

    /// Whether deallocations and writes of this command must be stable on return.
    fn stable_writes(&self) -> bool {
        !self.cfg.nv_cache && !self.mode.wce()
    }

    /// UNMAP (SBC-4 5.32): validate the whole parameter list first, so that a bad
    /// descriptor deallocates nothing, then punch each range.
    pub(crate) fn unmap(
        &self,
        ctx: &CmdCtx<'_>,
        cdb: &[u8],
        data_out: &[u8],
        mode: ExecMode,
    ) -> CmdResult {
        if !self.thin() {
            return Err(Sense::INVALID_OPCODE);
        }
        let c = decode_unmap(cdb)?;
        if let Some(s) = self.write_protect(ctx) {
            return Err(s);
        }
        // No anchored LBAs (ANC_SUP = 0).
        if c.anchor {
            return Err(Sense::invalid_field_in_cdb(1, Some(0)));
        }
        let list = &data_out[..data_out.len().min(c.param_len as usize)];
        let descs = parse_unmap_list(list)?;
        if descs.len() as u64 > u64::from(MAX_UNMAP_DESCRIPTORS) {
            return Err(Sense::invalid_field_in_param(2, None));
        }
        let mut total = 0u64;
        for d in &descs {
            self.check_range(d.lba, u64::from(d.blocks))?;
            total += u64::from(d.blocks);
            if total > u64::from(self.max_unmap_blocks()) {
                // Point at the NUMBER OF LOGICAL BLOCKS that crossed the limit.
                return Err(Sense::invalid_field_in_param(
                    d.offset.saturating_add(8),
                    None,
                ));
            }
        }
        if total == 0 {
            return good();
        }
        if mode == ExecMode::Inline {
            return Ok(None);
        }
        let stable = self.stable_writes();
        for d in descs.iter().filter(|d| d.blocks > 0) {
            // Shared like any write, so COMPARE AND WRITE's exclusive range stays atomic.
            let Some(_range) = self.ranges.shared(d.lba, u64::from(d.blocks), true) else {
                return Ok(None);
            };
            let off = d.lba << self.shift;
            let len = u64::from(d.blocks) << self.shift;
            let o = self
                .backend
                .deallocate(off, len, stable, ExecMode::Blocking);
            self.io("unmap", IoOp::Deallocate, off, o)?;
        }
        good()
    }

    /// WRITE SAME (10/16) (SBC-4 5.50, 5.52). With UNMAP the range is deallocated
    /// whatever the data block holds, as SCST does: deallocated blocks read back as
    /// zeros, which is what initiators using it for zeroing expect (libiscsi checks
    /// that exactly when LBPRZ is set). Without UNMAP the block is written repeatedly.
    pub(crate) fn write_same(
        &self,
        ctx: &CmdCtx<'_>,
        cdb: &[u8],
        data_out: &[u8],
        mode: ExecMode,
    ) -> CmdResult {
        let ws = decode_write_same(cdb)?;
        if ws.unmap && !self.thin() {
            return Err(Sense::INVALID_OPCODE);
        }
        if let Some(s) = self.write_protect(ctx) {
            return Err(s);
        }
        if ws.wrprotect != 0 {
            // No T10-PI.
            return Err(Sense::invalid_field_in_cdb(
                1,
                Some(write_same_bit::WRPROTECT),
            ));
        }
        if ws.anchor {
            return Err(Sense::invalid_field_in_cdb(1, Some(write_same_bit::ANCHOR)));
        }
        // The LBA first: a zero-length request beyond the end is still out of range.
        if ws.lba >= self.nblocks() {
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        // WSNZ=0 (VPD B0): zero blocks means every block from the LBA to the end of the
        // medium (SBC-4 5.50), within MAXIMUM WRITE SAME LENGTH like any other count.
        let blocks = match ws.blocks {
            0 => self.nblocks() - ws.lba,
            n => u64::from(n),
        };
        self.check_range(ws.lba, blocks)?;
        if blocks > u64::from(self.max_write_same_blocks()) {
            return Err(Sense::invalid_field_in_cdb(ws.len_offset, None));
        }
        let bs = self.block_size() as usize;
        let block: Cow<'_, [u8]> = if ws.ndob {
            Cow::Owned(vec![0u8; bs])
        } else {
            // Exactly one block: SBC defines no meaning for more or less.
            if data_out.len() != bs {
                return Err(Sense::invalid_field_in_cdb(ws.len_offset, None));
            }
            Cow::Borrowed(data_out)
        };
        if self.backend.is_null() {
            return good();
        }
        if mode == ExecMode::Inline {
            return Ok(None);
        }
        let Some(_range) = self.ranges.shared(ws.lba, blocks, true) else {
            return Ok(None);
        };
        let off = ws.lba << self.shift;
        let len = blocks << self.shift;
        let stable = self.stable_writes();
        if ws.unmap {
            let o = self
                .backend
                .deallocate(off, len, stable, ExecMode::Blocking);
            self.io("write same unmap", IoOp::Deallocate, off, o)?;
            return good();
        }
        self.write_repeated(&block, off, len, stable)?;
        good()
    }

    /// Write `block` over `len` bytes at `off` in chunks of whole blocks.
    fn write_repeated(&self, block: &[u8], off: u64, len: u64, stable: bool) -> Result<(), Sense> {
        let per_chunk = (WRITE_SAME_CHUNK / block.len()).max(1);
        let chunk_len = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(per_chunk * block.len());
        let buf: Vec<u8> = block.iter().copied().cycle().take(chunk_len).collect();
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            let o = self
                .backend
                .write(&buf[..n], off + done, stable, ExecMode::Blocking);
            self.io("write same", IoOp::Write, off + done, o)?;
            done += n as u64;
        }
        Ok(())
    }

    /// GET LBA STATUS (SBC-4 5.20): the provisioning status of the extents from the
    /// starting LBA on. Without thin provisioning every LBA is mapped.
    pub(crate) fn get_lba_status(&self, cdb: &[u8], mode: ExecMode) -> CmdResult {
        let c = decode_get_lba_status(cdb)?;
        if c.lba >= self.nblocks() {
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        let room = (c.alloc_len as usize).saturating_sub(LBA_STATUS_HEADER_LEN)
            / LBA_STATUS_DESCRIPTOR_LEN;
        let max_desc = room.clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
        let mut out: Vec<LbaStatus> = Vec::new();
        let mut lba = c.lba;
        while lba < self.nblocks() && out.len() < max_desc {
            let (mapped, end) = if self.thin() {
                match self.extent_blocks(lba, mode)? {
                    Some(e) => e,
                    None => return Ok(None),
                }
            } else {
                (true, self.nblocks())
            };
            let status = if mapped {
                ProvisioningStatus::Mapped
            } else {
                ProvisioningStatus::Deallocated
            };
            // Descriptors count blocks in 32 bits: split longer extents.
            let blocks = u32::try_from(end - lba).unwrap_or(u32::MAX);
            match out.last_mut() {
                // Rounding to whole blocks can make neighbours agree: merge them.
                Some(prev)
                    if prev.status == status
                        && prev.lba + u64::from(prev.blocks) == lba
                        && prev.blocks.checked_add(blocks).is_some() =>
                {
                    prev.blocks += blocks
                }
                _ => out.push(LbaStatus {
                    lba,
                    blocks,
                    status,
                }),
            }
            lba += u64::from(blocks);
        }
        Ok(Some(Response::data_alloc(
            lba_status_data(&out),
            c.alloc_len as usize,
        )))
    }

    /// The allocation state of the blocks from `lba`, as (mapped, end LBA), with
    /// `end > lba`. A block only partly deallocated (a hole smaller than a block)
    /// counts as mapped. `None`: would block.
    fn extent_blocks(&self, lba: u64, mode: ExecMode) -> Result<Option<(bool, u64)>, Sense> {
        let off = lba << self.shift;
        let limit = self.nblocks() << self.shift;
        let e = match self.backend.extent(off, limit, mode) {
            None => return Ok(None),
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                let e = IoError::new(IoOp::Read, off, e);
                return Err(failed(&self.cfg.name, "allocation map", e));
            }
        };
        let bs_mask = (1u64 << self.shift) - 1;
        let end = if e.mapped {
            e.end.saturating_add(bs_mask) >> self.shift
        } else {
            e.end >> self.shift
        };
        Ok(Some(if end <= lba {
            (true, lba + 1)
        } else {
            (e.mapped, end.min(self.nblocks()))
        }))
    }

    /// VPD B0h fields that depend on provisioning: WRITE SAME always, the UNMAP
    /// limits only when thin provisioned (libiscsi checks they are 0 otherwise).
    pub(crate) fn provisioning_limits(&self, l: &mut BlockLimits, physical_block: u32) {
        l.max_write_same_len = u64::from(self.max_write_same_blocks());
        if self.thin() {
            l.max_unmap_lba_count = self.max_unmap_blocks();
            l.max_unmap_desc_count = MAX_UNMAP_DESCRIPTORS;
            // Holes are punched in whole filesystem blocks; smaller ranges are zeroed.
            l.opt_unmap_granularity = (physical_block / self.block_size()).max(1);
            l.unmap_granularity_alignment = Some(0);
        }
    }

    /// VPD B2h (thin provisioning only).
    pub(crate) fn vpd_provisioning(&self, periph: u8) -> Vec<u8> {
        let p = LogicalBlockProvisioning {
            lbpu: true,
            lbpws: true,
            lbpws10: true,
            lbprz: true,
            anc_sup: false,
            provisioning_type: PROVISIONING_THIN,
        };
        vpd_logical_block_provisioning(periph, &p)
    }
}
