//! One-call helpers for common CDBs, and the session's other requests: NOP-Out,
//! task management and logout.

use iscsi_wire::bhs::{task_attr, Opcode, RESERVED_TAG};
use iscsi_wire::pdu::{self, lun_from_u16};

use super::{Initiator, InitiatorError, Result, ScsiResult};
use crate::scsi;

impl Initiator {
    pub fn test_unit_ready(&mut self, lun: u16) -> Result<ScsiResult> {
        self.scsi(lun, &scsi::test_unit_ready(), &[], 0, task_attr::SIMPLE)
    }

    pub fn inquiry(&mut self, lun: u16, evpd: bool, page: u8, alloc: u16) -> Result<ScsiResult> {
        self.scsi(
            lun,
            &scsi::inquiry(evpd, page, alloc),
            &[],
            alloc as u32,
            task_attr::SIMPLE,
        )
    }

    pub fn read_capacity16(&mut self, lun: u16) -> Result<ScsiResult> {
        self.scsi(lun, &scsi::read_capacity16(32), &[], 32, task_attr::SIMPLE)
    }

    /// (number of blocks, block size) via READ CAPACITY(16); error unless GOOD.
    pub fn capacity(&mut self, lun: u16) -> Result<(u64, u32)> {
        let r = self.read_capacity16(lun)?.good()?;
        scsi::parse_read_capacity16(&r.data)
            .ok_or_else(|| InitiatorError::Protocol("short READ CAPACITY(16) data".into()))
    }

    pub fn read10(
        &mut self,
        lun: u16,
        lba: u32,
        blocks: u16,
        block_size: u32,
    ) -> Result<ScsiResult> {
        self.scsi(
            lun,
            &scsi::read10(lba, blocks),
            &[],
            blocks as u32 * block_size,
            task_attr::SIMPLE,
        )
    }

    pub fn read16(
        &mut self,
        lun: u16,
        lba: u64,
        blocks: u32,
        block_size: u32,
    ) -> Result<ScsiResult> {
        self.scsi(
            lun,
            &scsi::read16(lba, blocks),
            &[],
            blocks * block_size,
            task_attr::SIMPLE,
        )
    }

    /// WRITE(10) of `data` (a whole number of `block_size` blocks).
    pub fn write10(
        &mut self,
        lun: u16,
        lba: u32,
        data: &[u8],
        block_size: u32,
    ) -> Result<ScsiResult> {
        let blocks = (data.len() / block_size.max(1) as usize) as u16;
        self.scsi(lun, &scsi::write10(lba, blocks), data, 0, task_attr::SIMPLE)
    }

    pub fn write16(
        &mut self,
        lun: u16,
        lba: u64,
        data: &[u8],
        block_size: u32,
    ) -> Result<ScsiResult> {
        let blocks = (data.len() / block_size.max(1) as usize) as u32;
        self.scsi(lun, &scsi::write16(lba, blocks), data, 0, task_attr::SIMPLE)
    }

    /// REPORT LUNS (sent to LUN 0, as initiators do).
    pub fn report_luns(&mut self) -> Result<ScsiResult> {
        self.scsi(0, &scsi::report_luns(8192), &[], 8192, task_attr::SIMPLE)
    }

    pub fn sync_cache(&mut self, lun: u16) -> Result<ScsiResult> {
        self.scsi(lun, &scsi::sync_cache10(), &[], 0, task_attr::SIMPLE)
    }

    /// NOP-Out ping (immediate); waits for the NOP-In reply.
    pub fn nop(&mut self) -> Result<()> {
        self.nop_with_data(&[]).map(|_| ())
    }

    /// NOP-Out ping carrying `data`; returns the echoed data.
    pub fn nop_with_data(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let itt = self.alloc_itt();
        let bhs = pdu::nop_out(
            true,
            [0; 8],
            itt,
            RESERVED_TAG,
            self.cmd_sn,
            self.exp_stat_sn,
            data.len() as u32,
        );
        self.send_pdu(&bhs, data)?;
        let r = self.wait_pdu(|p| p.opcode() == Some(Opcode::NopIn) && p.bhs.itt() == itt)?;
        Ok(r.data)
    }

    /// Task management request (immediate); returns the TMF response code.
    /// `ref_itt` is the task to act on for ABORT TASK (RESERVED_TAG otherwise).
    pub fn tmf(&mut self, function: u8, lun: u16, ref_itt: u32) -> Result<u8> {
        let itt = self.alloc_itt();
        let ref_cmd_sn = self.tasks.get(&ref_itt).map_or(self.cmd_sn, |t| t.cmd_sn);
        let bhs = pdu::tmf_request(&pdu::TmfRequest {
            immediate: true,
            function,
            lun: lun_from_u16(lun),
            itt,
            ref_task_tag: ref_itt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: 0,
        });
        self.send_pdu(&bhs, &[])?;
        let r =
            self.wait_pdu(|p| p.opcode() == Some(Opcode::TaskMgmtResponse) && p.bhs.itt() == itt)?;
        let response = r.bhs.response();
        // An aborted task gets no response of its own; forget it.
        if function == pdu::tmf_function::ABORT_TASK
            && response == pdu::tmf_response::COMPLETE
            && !self.done.contains_key(&ref_itt)
        {
            self.tasks.remove(&ref_itt);
        }
        Ok(response)
    }

    /// Logout (close session); returns the logout response code.
    pub fn logout(&mut self) -> Result<u8> {
        let itt = self.alloc_itt();
        let bhs = pdu::logout_request(
            true,
            pdu::logout_reason::CLOSE_SESSION,
            itt,
            self.cid,
            self.cmd_sn,
            self.exp_stat_sn,
        );
        self.send_pdu(&bhs, &[])?;
        let r =
            self.wait_pdu(|p| p.opcode() == Some(Opcode::LogoutResponse) && p.bhs.itt() == itt)?;
        self.full_feature = false;
        Ok(r.bhs.response())
    }
}
