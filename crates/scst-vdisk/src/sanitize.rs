//! SANITIZE (SBC-4 5.30, 4.11): OVERWRITE writes an initialization pattern over every
//! logical block, BLOCK ERASE deallocates every block (only where the backing can:
//! thin provisioned fileio/blockio, whose holes and discards read back as zeros), EXIT
//! FAILURE MODE ends an unrestricted sanitize failure mode.
//!
//! CRYPTOGRAPHIC ERASE is offered where BLOCK ERASE is, and does the same: SBC-4 asks
//! that the old user data become unretrievable, which a crypto erase achieves by
//! changing the media encryption key. Our backings hold no encryption key, so the one
//! way to honour the request is to destroy the data itself: the blocks are
//! deallocated (holes punched or discarded) and read back as zeros. Where blocks
//! cannot be deallocated neither erase is offered. nullio has no medium to sanitize:
//! SANITIZE is not supported there at all (INVALID COMMAND OPERATION CODE).
//!
//! The operation itself runs as a [`MediumJob`] (longop.rs) on a thread of its own:
//! with IMMED the command returns GOOD at once, without it the command waits for the
//! outcome (an abort ends the wait, not the sanitize). Meanwhile the rest of the
//! command set gets NOT READY / SANITIZE IN PROGRESS and REQUEST SENSE reports
//! progress.

use crate::backend::Backend;
use crate::longop::{self, MediumJob, OpKind, Work, SANITIZE_FAILED};
use crate::sbc::{CmdResult, Vdisk};
use scsi_wire::cdb;
use scsi_wire::Sense;
use scst_core::{CmdCtx, ExecMode, Response};

/// Operation code of SANITIZE.
pub(crate) const SANITIZE: u8 = 0x48;

/// Service actions (SBC-4 table 62).
pub(crate) mod sa {
    pub const OVERWRITE: u8 = 0x01;
    pub const BLOCK_ERASE: u8 = 0x02;
    pub const CRYPTO_ERASE: u8 = 0x03;
    pub const EXIT_FAILURE_MODE: u8 = 0x1F;
}

// CDB byte 1.
const IMMED: u8 = 0x80;
/// ZNR only means something for zoned block devices; ours are not, and SBC-3 had the
/// bit reserved, which is how initiators probe it: rejected.
const ZNR: u8 = 0x40;
const AUSE: u8 = 0x20;
/// Bytes 2 to 6 are reserved.
const RESERVED_BYTES: std::ops::RangeInclusive<usize> = 2..=6;

/// The OVERWRITE parameter list header: INVERT/TEST/OVERWRITE COUNT, reserved,
/// INITIALIZATION PATTERN LENGTH.
const OVERWRITE_HEADER_LEN: usize = 4;

impl<B: Backend> Vdisk<B> {
    /// There is a medium behind the device (not nullio).
    pub(crate) fn has_medium(&self) -> bool {
        !self.backend.is_null()
    }

    /// BLOCK ERASE can be honoured: deallocation that reads back as zeros.
    pub(crate) fn block_erase_supported(&self) -> bool {
        self.has_medium() && self.thin()
    }

    /// A job over this device's whole medium.
    pub(crate) fn medium_job(&self, work: Work) -> MediumJob<B> {
        MediumJob {
            backend: self.backend.clone(),
            ranges: self.ranges.clone(),
            name: self.cfg.name.clone(),
            nblocks: self.nblocks(),
            shift: self.shift,
            flush: !self.cfg.nv_cache,
            work,
        }
    }

    /// SANITIZE: validate everything (CDB, then write protection, then the parameter
    /// list) before touching the medium, then run or start the operation.
    pub(crate) fn sanitize(
        &self,
        ctx: &CmdCtx<'_>,
        cdb: &[u8],
        data_out: &[u8],
        mode: ExecMode,
    ) -> CmdResult {
        let b1 = cdb::u8_at(cdb, 1)?;
        let param_len = cdb::be16(cdb, 7)?;
        if b1 & ZNR != 0 {
            return Err(Sense::invalid_field_in_cdb(1, Some(6)));
        }
        for i in RESERVED_BYTES {
            if cdb.get(i).is_some_and(|&b| b != 0) {
                // i <= 6: the cast cannot truncate.
                return Err(Sense::invalid_field_in_cdb(i as u16, None));
            }
        }
        let (immed, ause, action) = (b1 & IMMED != 0, b1 & AUSE != 0, b1 & 0x1F);
        let supported = match action {
            sa::OVERWRITE | sa::EXIT_FAILURE_MODE => true,
            sa::BLOCK_ERASE | sa::CRYPTO_ERASE => self.block_erase_supported(),
            _ => false,
        };
        if !supported {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        // OVERWRITE carries its parameter list (at least one pattern byte, at most a
        // block of them); the other service actions have none.
        let max_overwrite = OVERWRITE_HEADER_LEN as u32 + self.block_size();
        let len_ok = match action {
            sa::OVERWRITE => {
                (OVERWRITE_HEADER_LEN as u32 + 1..=max_overwrite).contains(&u32::from(param_len))
            }
            _ => param_len == 0,
        };
        if !len_ok {
            return Err(Sense::invalid_field_in_cdb(7, None));
        }
        if action == sa::EXIT_FAILURE_MODE {
            self.longop.exit_failure_mode()?;
            return Ok(Some(Response::good()));
        }
        // After a failure in the restricted completion mode, only another restricted
        // sanitize may try again (SBC-4 4.11.3).
        if ause && self.longop.failed_restricted() {
            return Err(Sense::invalid_field_in_cdb(1, Some(5)));
        }
        if let Some(s) = self.write_protect(ctx) {
            return Err(s);
        }
        let work = match action {
            sa::OVERWRITE => parse_overwrite(data_out, param_len, self.block_size())?,
            _ => Work::Deallocate,
        };
        // The operation blocks (or waits for in-flight commands before a background
        // one starts): never on a network thread.
        if mode == ExecMode::Inline {
            return Ok(None);
        }
        let ticket = self.longop.begin(OpKind::Sanitize, ause)?;
        longop::start(self.medium_job(work), ticket, immed, SANITIZE_FAILED)?;
        Ok(Some(Response::good()))
    }
}

/// The OVERWRITE parameter list (SBC-4 5.30.2.2) as the work it asks for: the pattern
/// repeated over one block, so that every block starts with the pattern's first byte.
/// `param_len` has been checked against the block size already.
fn parse_overwrite(data_out: &[u8], param_len: u16, block_size: u32) -> Result<Work, Sense> {
    let list = data_out
        .get(..usize::from(param_len))
        .ok_or(Sense::PARAM_LIST_LENGTH_ERROR)?;
    let [b0, reserved, ipl_hi, ipl_lo] = cdb::bytes_at::<4>(list, 0)?;
    let invert = b0 & 0x80 != 0;
    let test = (b0 >> 5) & 0x03;
    let passes = b0 & 0x1F;
    // TEST values other than 00b are vendor specific: we define none.
    if test != 0 {
        return Err(Sense::invalid_field_in_param(0, Some(6)));
    }
    if passes == 0 {
        return Err(Sense::invalid_field_in_param(0, Some(4)));
    }
    if reserved != 0 {
        return Err(Sense::invalid_field_in_param(1, None));
    }
    let pattern_len = usize::from(u16::from_be_bytes([ipl_hi, ipl_lo]));
    let bs = usize::try_from(block_size).unwrap_or(usize::MAX);
    if pattern_len == 0 || pattern_len > bs {
        return Err(Sense::invalid_field_in_param(2, None));
    }
    // The pattern must have been sent in full; bytes after it are ignored.
    let pattern = list
        .get(OVERWRITE_HEADER_LEN..OVERWRITE_HEADER_LEN + pattern_len)
        .ok_or(Sense::invalid_field_in_param(2, None))?;
    let block: Vec<u8> = pattern.iter().copied().cycle().take(bs).collect();
    Ok(Work::Overwrite {
        block,
        passes,
        invert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(b0: u8, pattern: &[u8]) -> Vec<u8> {
        let mut l = vec![b0, 0];
        l.extend_from_slice(&(pattern.len() as u16).to_be_bytes());
        l.extend_from_slice(pattern);
        l
    }

    #[test]
    fn overwrite_list_fields_and_pointers() {
        let l = list(0x83, &[1, 2, 3]);
        assert_eq!(
            parse_overwrite(&l, l.len() as u16, 8),
            Ok(Work::Overwrite {
                block: vec![1, 2, 3, 1, 2, 3, 1, 2],
                passes: 3,
                invert: true
            })
        );
        let pointer = |l: &[u8], len: u16| parse_overwrite(l, len, 8).err().and_then(|s| s.field);
        let at = |byte, bit| Sense::invalid_field_in_param(byte, bit).field;
        // OVERWRITE COUNT 0, TEST != 0, reserved byte, pattern length 0 / > block.
        assert_eq!(pointer(&list(0x00, &[1]), 5), at(0, Some(4)));
        assert_eq!(pointer(&list(0x21, &[1]), 5), at(0, Some(6)));
        let mut r = list(0x01, &[1]);
        r[1] = 1;
        assert_eq!(pointer(&r, 5), at(1, None));
        assert_eq!(pointer(&list(0x01, &[]), 4), at(2, None));
        assert_eq!(pointer(&list(0x01, &[9; 9]), 13), at(2, None));
        // A pattern longer than the list that carried it.
        let mut short = list(0x01, &[1, 2, 3, 4]);
        short[3] = 6;
        assert_eq!(pointer(&short, 8), at(2, None));
        // Less data-out than the CDB announced.
        assert_eq!(
            parse_overwrite(&list(0x01, &[1]), 6, 8),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
    }
}
