//! PRE-FETCH (10/16) and READ DEFECT DATA (10/12) of a vdisk (SBC-4 5.9, 5.10, 5.18,
//! 5.19).

use crate::backend::Backend;
use crate::sbc::{CmdResult, Vdisk};
use scsi_wire::sbc::{decode_pre_fetch, decode_read_defect_data, empty_defect_data};
use scst_core::{ExecMode, Response};

impl<B: Backend> Vdisk<B> {
    /// PRE-FETCH: a read-ahead hint to the page cache (fileio without O_DIRECT).
    ///
    /// Completes with GOOD, never CONDITION MET: the page cache gives no guarantee
    /// that the range stays cached, and GOOD is SBC's answer for "not all of it will
    /// fit"; it is also what libiscsi's PreFetch tests accept.
    pub(crate) fn pre_fetch(&self, cdb: &[u8], mode: ExecMode) -> CmdResult {
        let p = decode_pre_fetch(cdb)?;
        self.check_range(p.lba, u64::from(p.blocks))?;
        // PREFETCH LENGTH 0: through the last LBA (check_range made lba <= nblocks).
        let blocks = if p.blocks == 0 {
            self.nblocks() - p.lba
        } else {
            u64::from(p.blocks)
        };
        if blocks > 0 {
            let off = p.lba << self.shift;
            match self.backend.prefetch(off, blocks << self.shift, mode) {
                None => return Ok(None),
                // Only a hint: a failure costs performance, not correctness.
                Some(Err(e)) => log::debug!("{}: prefetch at byte {off}: {e}", self.cfg.name),
                Some(Ok(())) => {}
            }
        }
        Ok(Some(Response::good()))
    }

    /// READ DEFECT DATA: a virtual disk has no defects; the requested lists are
    /// reported valid and empty, in the requested format.
    pub(crate) fn read_defect_data(&self, cdb: &[u8]) -> CmdResult {
        let c = decode_read_defect_data(cdb)?;
        Ok(Some(Response::data_alloc(
            empty_defect_data(&c),
            c.alloc_len as usize,
        )))
    }
}
