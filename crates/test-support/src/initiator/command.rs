//! SCSI commands: submission with immediate and unsolicited data, Data-Out for
//! R2Ts, the CmdSN window, and the Data-In and SCSI Response PDUs that complete a task.

use std::time::Instant;

use iscsi_wire::bhs::RESERVED_TAG;
use iscsi_wire::frame::extended_cdb_ahs;
use iscsi_wire::pdu::{self, lun_from_u16};

use super::{sn_gt, Initiator, InitiatorError, Pdu, Residual, Result, Task};
use crate::scsi;

/// Outcome of a SCSI command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiResult {
    /// iSCSI Response code (0 = command completed at target).
    pub response: u8,
    pub status: u8,
    pub sense: Vec<u8>,
    /// Data-In bytes received (up to the highest offset written by the target).
    pub data: Vec<u8>,
    pub residual: Residual,
}

impl ScsiResult {
    pub fn is_good(&self) -> bool {
        self.response == 0 && self.status == scsi::status::GOOD
    }

    /// (sense key, ASC, ASCQ) if there is sense data.
    pub fn sense_key_asc_ascq(&self) -> Option<(u8, u8, u8)> {
        scsi::sense_key_asc_ascq(&self.sense)
    }

    /// `Ok(self)` if GOOD, else an error carrying status and sense.
    pub fn good(self) -> Result<ScsiResult> {
        if self.is_good() {
            Ok(self)
        } else {
            Err(InitiatorError::ScsiStatus {
                status: self.status,
                sense: self.sense,
            })
        }
    }
}

impl Initiator {
    /// Runs one SCSI command to completion.
    pub fn scsi(
        &mut self,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        expected_in: u32,
        attr: u8,
    ) -> Result<ScsiResult> {
        let itt = self.submit(lun, cdb, data_out, expected_in, attr)?;
        self.wait(itt)
    }

    /// Sends a SCSI command (with immediate and unsolicited data as negotiated) and
    /// returns its ITT; R2Ts are served while waiting. Bidirectional commands are
    /// not supported.
    pub fn submit(
        &mut self,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        expected_in: u32,
        attr: u8,
    ) -> Result<u32> {
        if !data_out.is_empty() && expected_in > 0 {
            return Err(InitiatorError::Protocol(
                "bidirectional commands are not supported".into(),
            ));
        }
        self.wait_cmd_window()?;
        let itt = self.alloc_itt();
        let lun = lun_from_u16(lun);
        let n = self.negotiated.clone();
        let send_limit = n.target_max_recv_data_segment_length.max(1) as usize;
        let write_len = data_out.len();
        let first_burst = (n.first_burst_length as usize).min(write_len);
        let immediate = if n.immediate_data {
            first_burst.min(send_limit)
        } else {
            0
        };
        let unsolicited_end = if n.initial_r2t {
            immediate
        } else {
            first_burst
        };
        let cmd_sn = self.cmd_sn;
        let mut bhs = pdu::scsi_command(&pdu::ScsiCommand {
            immediate: false,
            lun,
            itt,
            attr,
            read: expected_in > 0,
            write: write_len > 0,
            final_pdu: unsolicited_end == immediate,
            exp_data_transfer_len: if write_len > 0 {
                write_len as u32
            } else {
                expected_in
            },
            cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb,
            data_len: immediate as u32,
        });
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.tasks.insert(
            itt,
            Task {
                lun,
                cmd_sn,
                data_out: data_out.to_vec(),
                expected_in,
                data_in: Vec::new(),
                data_in_extent: 0,
            },
        );
        if cdb.len() > 16 {
            let ahs = extended_cdb_ahs(&cdb[16..]);
            bhs.set_total_ahs_words((ahs.len() / 4) as u8);
            self.send_pdu_with_ahs(&bhs, &ahs, &data_out[..immediate])?;
        } else {
            self.send_pdu(&bhs, &data_out[..immediate])?;
        }
        if unsolicited_end > immediate {
            self.send_data_out(itt, RESERVED_TAG, immediate, unsolicited_end - immediate)?;
        }
        Ok(itt)
    }

    /// Waits for the command `itt` to complete.
    pub fn wait(&mut self, itt: u32) -> Result<ScsiResult> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(r) = self.done.remove(&itt) {
                return r;
            }
            if !self.tasks.contains_key(&itt) {
                return Err(InitiatorError::Protocol(format!(
                    "no command with ITT {itt:#x}"
                )));
            }
            let pdu = self.recv_until(deadline)?;
            self.dispatch(pdu)?;
        }
    }

    /// ITTs of commands not completed yet.
    pub fn outstanding(&self) -> Vec<u32> {
        self.tasks.keys().copied().collect()
    }

    /// Sends Data-Out PDUs for [offset, offset+len) of a task's write buffer.
    pub(super) fn send_data_out(
        &mut self,
        itt: u32,
        ttt: u32,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        let Some(task) = self.tasks.get(&itt) else {
            return Ok(());
        };
        let lun = task.lun;
        // Copy out of the task so that `self` can be borrowed to send.
        let data = task.data_out.get(offset..offset + len).map(<[u8]>::to_vec);
        let Some(data) = data else {
            self.anomalies.push(format!(
                "ITT {itt:#x}: R2T for {offset}+{len} beyond the {} bytes written",
                task.data_out.len()
            ));
            return Ok(());
        };
        let chunk = self.negotiated.target_max_recv_data_segment_length.max(1) as usize;
        let mut sent = 0;
        let mut data_sn = 0u32;
        while sent < len {
            let n = chunk.min(len - sent);
            let bhs = pdu::data_out(
                lun,
                itt,
                ttt,
                data_sn,
                (offset + sent) as u32,
                sent + n == len,
                self.exp_stat_sn,
                n as u32,
            );
            self.send_pdu(&bhs, &data[sent..sent + n])?;
            sent += n;
            data_sn += 1;
        }
        Ok(())
    }

    pub(super) fn wait_cmd_window(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        while sn_gt(self.cmd_sn, self.max_cmd_sn) {
            let pdu = self.recv_until(deadline)?;
            self.dispatch(pdu)?;
        }
        Ok(())
    }

    pub(super) fn on_data_in(&mut self, p: Pdu) -> Result<()> {
        let b = p.bhs;
        let itt = b.itt();
        let Some(task) = self.tasks.get_mut(&itt) else {
            self.anomalies
                .push(format!("Data-In for unknown ITT {itt:#x}"));
            return Ok(());
        };
        let off = b.buffer_offset() as usize;
        let end = off + p.data.len();
        if end > task.expected_in as usize {
            self.anomalies.push(format!(
                "ITT {itt:#x}: Data-In {off}+{} beyond expected length {}",
                p.data.len(),
                task.expected_in
            ));
        } else {
            if task.data_in.len() < end {
                task.data_in.resize(end, 0);
            }
            task.data_in[off..end].copy_from_slice(&p.data);
            task.data_in_extent = task.data_in_extent.max(end);
        }
        if b.status_bit() {
            self.complete(itt, 0, b.status(), Vec::new(), Residual::from_bhs(&b));
        }
        Ok(())
    }

    pub(super) fn on_scsi_response(&mut self, p: Pdu) -> Result<()> {
        let b = p.bhs;
        let itt = b.itt();
        if !self.tasks.contains_key(&itt) {
            self.anomalies
                .push(format!("SCSI Response for unknown ITT {itt:#x}"));
            return Ok(());
        }
        let sense = match pdu::decode_sense_segment(&p.data) {
            Some(s) => s.to_vec(),
            None => {
                self.anomalies
                    .push(format!("ITT {itt:#x}: malformed sense segment"));
                Vec::new()
            }
        };
        self.complete(itt, b.response(), b.status(), sense, Residual::from_bhs(&b));
        Ok(())
    }

    pub(super) fn complete(
        &mut self,
        itt: u32,
        response: u8,
        status: u8,
        sense: Vec<u8>,
        residual: Residual,
    ) {
        if let Some(mut task) = self.tasks.remove(&itt) {
            task.data_in.truncate(task.data_in_extent);
            self.done.insert(
                itt,
                Ok(ScsiResult {
                    response,
                    status,
                    sense,
                    data: task.data_in,
                    residual,
                }),
            );
        }
    }
}
