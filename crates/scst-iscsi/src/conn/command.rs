//! SCSI Command PDUs and their data-out (RFC 7143 11.3, 11.7, 11.8): the commands'
//! buffers, the connection's buffer budget, and the hand-off of each complete command
//! to the core's [`Nexus`](scst_core::Nexus). Which data may come unsolicited, where
//! each Data-Out goes and which R2Ts to send is iscsi-engine's [`WriteSequence`].

use std::sync::atomic::Ordering;

use iscsi_engine::full_feature::{CommandFault, DataOut, WriteSequence};
use iscsi_wire::bhs::task_attr;
use iscsi_wire::pdu::reject_reason;
use iscsi_wire::RESERVED_TAG;
use scsi_wire::Sense;
use scst_core::{Cdb, Cmd, Event, Response, TaskAttr};

use super::{Conn, CHARGED_BYTES, DATA_BUDGET, LIVE_TASKS, MAX_WRITE_BUFFER};
use crate::io::Pdu;

/// What the connection keeps of a command until its response is sent: the core holds
/// it as the command's transport context once the command is submitted.
pub(super) struct Task {
    pub lun_raw: [u8; 8],
    /// Expected Data Transfer Length.
    pub edtl: u32,
    pub read: bool,
    /// Data bytes charged to the connection's budget for this command.
    pub charged: u32,
}

impl Drop for Task {
    fn drop(&mut self) {
        LIVE_TASKS.fetch_sub(1, Ordering::Relaxed);
        if self.charged > 0 {
            CHARGED_BYTES.fetch_sub(self.charged as usize, Ordering::Relaxed);
        }
    }
}

/// A command still collecting its data-out (or waiting for budget to ask for it); the
/// core has not seen it yet.
pub(super) struct Incoming {
    pub task: Task,
    pub cmd: Cmd,
    pub lun: u64,
    /// A write's data-out, as far as it came.
    write: Option<WriteSequence>,
    /// A data digest failed for this command's data: fail it once the data is in.
    crc_error: bool,
    /// Waiting in `budget_waiters`: no R2Ts, no execution until charged.
    pub budget_wait: bool,
}

impl Incoming {
    /// What the command's data buffer may grow to: written data, or the data-in the
    /// initiator can take (devices produce at most their transfer limit).
    fn data_need(&self) -> u32 {
        if self.write.is_some() || self.task.read {
            self.task.edtl.min(MAX_WRITE_BUFFER)
        } else {
            0
        }
    }
}

impl Conn {
    pub(super) fn on_scsi_command(&mut self, pdu: Pdu) {
        let bhs = pdu.bhs;
        if !self.accept_cmd_sn(&bhs) {
            return;
        }
        let itt = bhs.itt();
        if itt == RESERVED_TAG
            || self.incoming.contains_key(&itt)
            || self.nexus.contains(itt as u64)
        {
            self.reject(reject_reason::INVALID_PDU_FIELD, &bhs);
            return;
        }
        if self.ff.window().overfull(self.outstanding()) {
            // Only immediate commands get past a full CmdSN window; refuse them too
            // beyond twice the window, so one initiator cannot queue without bound.
            self.reject(reject_reason::OUT_OF_RESOURCES, &bhs);
            return;
        }
        let read = bhs.read_bit();
        let edtl = bhs.exp_data_transfer_len();
        let lun_raw = bhs.lun();
        let lun = scsi_wire::lun::decode_lun(lun_raw);
        let attr = match bhs.task_attr() {
            task_attr::ORDERED => TaskAttr::Ordered,
            task_attr::HEAD_OF_QUEUE => TaskAttr::HeadOfQueue,
            task_attr::ACA => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        };
        // The CDB: 16 bytes in the BHS, more in an extended-CDB AHS.
        let cdb = match iscsi_wire::frame::extended_cdb(&pdu.ahs) {
            Ok(Some(tail)) => {
                let mut v = bhs.cdb().to_vec();
                v.extend_from_slice(tail);
                Cdb::new(&v)
            }
            Ok(None) => Cdb::new(bhs.cdb()),
            Err(_) => None,
        };
        let Some(cdb) = cdb else {
            self.reject(reject_reason::INVALID_PDU_FIELD, &bhs);
            return;
        };
        let imm = pdu.data.len() as u32;
        let seq = match self.ff.command(&bhs, imm) {
            Ok(seq) => seq,
            Err(CommandFault::Bidirectional) => {
                let task = self.new_task(lun_raw, edtl, false);
                self.respond(
                    itt,
                    task,
                    Response::check(Sense::invalid_field_in_cdb(0, None)),
                );
                return;
            }
            Err(CommandFault::Malformed) => {
                self.reject(reject_reason::PROTOCOL_ERROR, &bhs);
                return;
            }
        };
        let unsolicited_limit = seq.as_ref().map_or(0, WriteSequence::unsolicited_limit);
        let write = seq.is_some();
        if write && edtl > MAX_WRITE_BUFFER {
            let task = self.new_task(lun_raw, edtl, false);
            self.respond(
                itt,
                task,
                Response::check(Sense::invalid_field_in_cdb(0, None)),
            );
            return;
        }
        let mut inc = Incoming {
            task: self.new_task(lun_raw, edtl, read),
            cmd: Cmd {
                cdb,
                lun,
                tag: itt as u64,
                attr,
                data_out: Vec::new(),
                expected_in: if read { edtl } else { 0 },
            },
            lun,
            write: seq,
            crc_error: !pdu.data_digest_ok,
            budget_wait: false,
        };
        let granted = self.try_charge(&mut inc);
        if write && edtl > 0 {
            // Without budget only the unsolicited part (at most FirstBurstLength) is
            // buffered now; the rest waits for the budget before it is solicited.
            let len = if granted { edtl } else { unsolicited_limit };
            // Only the part the immediate data does not fill is zeroed (Data-Out PDUs
            // overwrite it later): a write that arrives whole is copied once, with no
            // memset before.
            let data_out = &mut inc.cmd.data_out;
            data_out.reserve_exact(len as usize);
            data_out.extend_from_slice(&pdu.data);
            data_out.resize(len as usize, 0);
        }
        if !granted {
            self.budget_waiters.push_back(itt);
        }
        self.data_progress(itt, inc);
    }

    fn new_task(&self, lun_raw: [u8; 8], edtl: u32, read: bool) -> Task {
        LIVE_TASKS.fetch_add(1, Ordering::Relaxed);
        self.session.stats.cmd_received();
        Task {
            lun_raw,
            edtl,
            read,
            charged: 0,
        }
    }

    /// Charge a new command's data to the connection's budget if it fits (or nothing
    /// else holds any); false: it must wait, behind any command already waiting.
    fn try_charge(&mut self, inc: &mut Incoming) -> bool {
        let need = inc.data_need();
        if need == 0 {
            return true;
        }
        if !self.budget_waiters.is_empty() || !self.fits(need) {
            inc.budget_wait = true;
            return false;
        }
        self.charge(inc, need);
        true
    }

    fn fits(&self, need: u32) -> bool {
        self.charged == 0 || self.charged + need as usize <= DATA_BUDGET
    }

    fn charge(&mut self, inc: &mut Incoming, need: u32) {
        self.charged += need as usize;
        CHARGED_BYTES.fetch_add(need as usize, Ordering::Relaxed);
        inc.task.charged = need;
        inc.budget_wait = false;
    }

    /// Let waiting commands go, oldest first, while the budget allows.
    pub(super) fn pump_budget(&mut self) {
        while let Some(&itt) = self.budget_waiters.front() {
            // Gone (aborted, failed), or the ITT names a newer command that never
            // waited.
            let Some(need) = self
                .incoming
                .get(&itt)
                .filter(|inc| inc.budget_wait)
                .map(Incoming::data_need)
            else {
                self.budget_waiters.pop_front();
                continue;
            };
            if !self.fits(need) {
                break;
            }
            self.budget_waiters.pop_front();
            let Some(mut inc) = self.incoming.remove(&itt) else {
                continue;
            };
            self.charge(&mut inc, need);
            if inc.write.is_some() {
                inc.cmd.data_out.resize(inc.task.edtl as usize, 0);
            }
            self.data_progress(itt, inc);
        }
    }

    /// A command that has not reached the core ends without a response (aborted).
    pub(super) fn drop_incoming_where(&mut self, pred: impl Fn(&Incoming) -> bool) {
        let mut gone = 0;
        let charged = &mut self.charged;
        self.incoming.retain(|_, inc| {
            if pred(inc) {
                *charged -= inc.task.charged as usize;
                gone += 1;
                false
            } else {
                true
            }
        });
        self.session.stats.cmds_done(gone);
    }

    pub(super) fn on_data_out(&mut self, pdu: Pdu) {
        let bhs = pdu.bhs;
        let itt = bhs.itt();
        let Some(mut inc) = self.incoming.remove(&itt) else {
            // Data for a command already submitted, finished or aborted: nothing to do.
            return;
        };
        let len = pdu.data.len();
        let step = match inc.write.as_mut() {
            Some(seq) => self
                .ff
                .data_out(seq, &bhs, len as u32, inc.cmd.data_out.len()),
            None => DataOut::Reject,
        };
        match step {
            DataOut::Accept { offset } => {
                inc.cmd.data_out[offset..offset + len].copy_from_slice(&pdu.data);
                inc.crc_error |= !pdu.data_digest_ok;
                self.data_progress(itt, inc);
            }
            DataOut::Reject => {
                self.incoming.insert(itt, inc);
                self.reject(reject_reason::PROTOCOL_ERROR, &bhs);
            }
            DataOut::SequenceError { got, expected } => {
                // ERL 0 cannot recover a lost or reordered Data-Out, but the damage is
                // this command's alone: it fails with DATA PHASE ERROR and the rest of
                // its data is ignored, while the connection and the other commands
                // carry on.
                log::info!(
                    "{}: Data-Out DataSN {got} where {expected} was expected: command failed",
                    self.session.initiator_name,
                );
                self.respond(itt, inc.task, Response::check(Sense::DATA_PHASE_ERROR));
            }
        }
    }

    /// After data arrived: hand the command to the core when all is in, else ask for
    /// more (and keep it).
    fn data_progress(&mut self, itt: u32, mut inc: Incoming) {
        if inc.budget_wait {
            self.incoming.insert(itt, inc);
            return;
        }
        let edtl = inc.task.edtl;
        let Some(seq) = inc.write.as_mut().filter(|s| !s.complete(edtl)) else {
            if inc.crc_error {
                return self.respond(itt, inc.task, Response::check(Sense::CRC_ERROR));
            }
            self.nexus.submit(itt as u64, inc.cmd, inc.task);
            self.drain_nexus();
            return;
        };
        let held = self.outstanding();
        while let Some(b) = self.ff.r2t(seq, inc.task.lun_raw, itt, edtl, held) {
            self.out.push(b, None);
        }
        self.incoming.insert(itt, inc);
    }

    /// Act on what the core has for the connection: responses to send, commands that
    /// ended silently, task management results.
    pub(super) fn drain_nexus(&mut self) {
        while let Some(ev) = self.nexus.poll_event() {
            match ev {
                Event::Respond { tag, ctx, resp } => self.respond(tag as u32, ctx, resp),
                Event::Aborted { ctx, .. } => self.release(ctx),
                Event::TmfDone { tag, status } => self.tmf_response(tag as u32, status),
            }
        }
    }

    /// Send a command's response and forget the command.
    fn respond(&mut self, itt: u32, task: Task, resp: Response) {
        self.send_response(itt, &task, resp);
        self.release(task);
    }

    /// Forget a command, returning its budget.
    fn release(&mut self, task: Task) {
        self.charged -= task.charged as usize;
        self.session.stats.cmds_done(1);
    }
}
