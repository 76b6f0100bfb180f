//! The full-feature phase of one normal-session connection (RFC 7143 ERL 0): SCSI
//! commands with immediate, unsolicited and R2T-solicited data, Data-In with status
//! folded into the last PDU, the CmdSN window, NOP keep-alive, task management and
//! logout. One tokio task owns the connection; commands that may block run on the
//! core's I/O pool and come back through a channel, so no lock guards the connection.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iscsi_wire::bhs::task_attr;
use iscsi_wire::pdu::{self, reject_reason, tmf_function, tmf_response, Residual, TargetSn};
use iscsi_wire::{Bhs, Opcode, RESERVED_TAG};
use scsi_wire::{status, Sense};
use scst_core::{
    Cdb, Cmd, DeviceEntry, ExecMode, Response, Route, Session, TaskAttr, TaskSet, TgtDev,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::io::{Pdu, PduReader, PduWriter, RecvError};
use crate::params::ConnParams;

/// Largest Expected Data Transfer Length we buffer for one write. Block Limits
/// advertise 8 MiB transfers; this leaves room without letting one PDU claim gigabytes.
const MAX_WRITE_BUFFER: u32 = 64 << 20;

/// Data buffer bytes (write data being collected, read data being produced) one
/// connection's commands may hold at once. Without it a full CmdSN window of large
/// transfers could pin window x transfer size (gigabytes) per session; commands beyond
/// it wait, unanswered and without R2Ts, until earlier ones finish. One command is
/// always let through, however large, so nothing waits forever.
const DATA_BUDGET: usize = 64 << 20;

/// RspTimeout default (spec 6.3): how long sending may make no progress before the
/// connection is given up.
const DEFAULT_RSP_TIMEOUT: u32 = 90;

/// Commands alive and data bytes charged, over all connections: the management tree
/// shows them so that leaks are visible. Relaxed, being statistics.
static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);
static CHARGED_BYTES: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn live_tasks() -> usize {
    LIVE_TASKS.load(Ordering::Relaxed)
}

pub(crate) fn charged_bytes() -> usize {
    CHARGED_BYTES.load(Ordering::Relaxed)
}

/// A hasher for the per-command maps keyed by ITT and LUN. The keys come from the
/// initiator but only index that initiator's own session, whose size the CmdSN window
/// bounds, so colliding keys can slow nothing but the session that chose them. The
/// default SipHash would cost a few percent of the per-command CPU for no gain; a
/// multiplicative hash spreads sequential ITTs well.
#[derive(Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// ABORTED COMMAND / DATA PHASE ERROR: the command's data transfer went wrong.
const DATA_PHASE_ERROR: Sense = Sense::new(scsi_wire::sense::key::ABORTED_COMMAND, 0x4B, 0x00);

/// Messages from outside the connection task.
pub enum ConnEvent {
    /// Another nexus reset or cleared a device's task set: drop our tasks on it.
    AbortDevice(Arc<DeviceEntry>),
    /// Close the connection (reinstatement, force_close, shutdown).
    Close,
}

/// A command finished on an I/O thread.
struct Completion {
    itt: u32,
    resp: Response,
}

/// Where a task is in its life.
enum Phase {
    /// Collecting write data; the command is not yet in its task set.
    ReceivingData(Cmd),
    /// Waiting in its task set behind an ORDERED task.
    Held(Cmd),
    /// Executing (inline or on an I/O thread).
    Running,
}

struct Task {
    lun: u64,
    lun_raw: [u8; 8],
    attr: TaskAttr,
    edtl: u32,
    read: bool,
    write: bool,
    /// Admitted to its task set (which must hear of its completion).
    in_task_set: bool,
    phase: Phase,
    /// Data-out bytes received so far.
    received: u32,
    /// The initiator will send no more unsolicited data.
    unsolicited_done: bool,
    /// Next offset to request with an R2T, and R2Ts outstanding: (TTT, end offset,
    /// DataSN expected next in that sequence).
    next_r2t_offset: u32,
    r2ts: Vec<(u32, u32, u32)>,
    /// DataSN expected next in the unsolicited sequence.
    unsolicited_data_sn: u32,
    r2t_sn: u32,
    /// A data digest failed for this command's data: fail it once the data is in.
    crc_error: bool,
    aborted: bool,
    device: Option<Arc<DeviceEntry>>,
    /// Data bytes charged to the connection's budget for this command.
    charged: u32,
    /// Waiting in `budget_waiters`: no R2Ts, no execution until charged.
    budget_wait: bool,
}

impl Task {
    /// What the command's data buffer may grow to: written data, or the data-in the
    /// initiator can take (devices produce at most their transfer limit).
    fn data_need(&self) -> u32 {
        if self.write || self.read {
            self.edtl.min(MAX_WRITE_BUFFER)
        } else {
            0
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        LIVE_TASKS.fetch_sub(1, Ordering::Relaxed);
        if self.charged > 0 {
            CHARGED_BYTES.fetch_sub(self.charged as usize, Ordering::Relaxed);
        }
    }
}

/// A task management response waiting for aborted tasks to finish executing.
struct PendingTmf {
    itt: u32,
    waiting: Vec<u32>,
}

pub struct Conn {
    session: Arc<Session>,
    p: ConnParams,
    stat_sn: u32,
    exp_cmd_sn: u32,
    tasks: IntMap<u32, Task>,
    task_sets: IntMap<u64, TaskSet<u32>>,
    pending_tmfs: Vec<PendingTmf>,
    next_ttt: u32,
    done_tx: mpsc::UnboundedSender<Completion>,
    out: PduWriter,
    /// Outstanding target NOP-In ping: (TTT, when sent).
    nop_outstanding: Option<(u32, tokio::time::Instant)>,
    logged_out: bool,
    /// Bytes charged by this connection's tasks (at most DATA_BUDGET, or one task's).
    charged: usize,
    /// Tasks waiting for budget, oldest first (may name tasks since gone).
    budget_waiters: VecDeque<u32>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Tasks still held when the connection ends go with it.
        self.session.stats.cmds_done(self.tasks.len());
    }
}

impl Conn {
    fn sn(&self) -> TargetSn {
        // The window shrinks by the commands we hold so that a fast initiator cannot
        // make us queue without bound.
        let free = self
            .p
            .queued_commands
            .saturating_sub(self.tasks.len() as u32);
        TargetSn {
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.exp_cmd_sn.wrapping_add(free).wrapping_sub(1),
        }
    }

    /// TargetSn for a PDU that carries status: StatSN advances.
    fn sn_advance(&mut self) -> TargetSn {
        let sn = self.sn();
        self.stat_sn = self.stat_sn.wrapping_add(1);
        sn
    }

    fn reject(&mut self, reason: u8, bhs: &Bhs) {
        let sn = self.sn_advance();
        let r = pdu::reject(reason, 0, sn);
        self.out.push(r, Some(Bytes::copy_from_slice(&bhs.0)));
    }

    // ---------------------------------------------------------------- receive side

    fn handle_pdu(&mut self, pdu: Pdu) -> Result<(), String> {
        let op = pdu.bhs.opcode();
        match op {
            Some(Opcode::ScsiCommand) => self.on_scsi_command(pdu),
            Some(Opcode::DataOut) => self.on_data_out(pdu),
            Some(Opcode::NopOut) => self.on_nop_out(pdu),
            Some(Opcode::TaskMgmtRequest) => {
                self.on_tmf(pdu);
                Ok(())
            }
            Some(Opcode::LogoutRequest) => {
                self.on_logout(pdu);
                Ok(())
            }
            Some(Opcode::TextRequest) => {
                self.on_text(pdu);
                Ok(())
            }
            Some(Opcode::Snack) => {
                // ERL 0: no SNACK support.
                self.reject(reject_reason::COMMAND_NOT_SUPPORTED, &pdu.bhs);
                Ok(())
            }
            Some(Opcode::LoginRequest) => {
                self.reject(reject_reason::PROTOCOL_ERROR, &pdu.bhs);
                Ok(())
            }
            _ => {
                if pdu.bhs.opcode().is_some_and(|o| !o.is_initiator()) {
                    // A target opcode from the initiator is a protocol error.
                    self.reject(reject_reason::PROTOCOL_ERROR, &pdu.bhs);
                } else {
                    self.reject(reject_reason::COMMAND_NOT_SUPPORTED, &pdu.bhs);
                }
                Ok(())
            }
        }
    }

    /// CmdSN rules (RFC 7143 4.2.2.1). Returns false when the PDU must be ignored.
    fn accept_cmd_sn(&mut self, bhs: &Bhs) -> bool {
        let cmd_sn = bhs.cmd_sn();
        if bhs.immediate() {
            return true;
        }
        if cmd_sn != self.exp_cmd_sn {
            log::debug!(
                "{}: CmdSN {cmd_sn} outside the window (expected {}): ignored",
                self.session.initiator_name,
                self.exp_cmd_sn
            );
            return false;
        }
        let max = self.sn().max_cmd_sn;
        if sn_gt(cmd_sn, max) {
            log::debug!(
                "{}: CmdSN {cmd_sn} beyond MaxCmdSN {max}: ignored",
                self.session.initiator_name
            );
            return false;
        }
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        true
    }

    fn on_scsi_command(&mut self, pdu: Pdu) -> Result<(), String> {
        let bhs = pdu.bhs;
        if !self.accept_cmd_sn(&bhs) {
            return Ok(());
        }
        let itt = bhs.itt();
        if itt == RESERVED_TAG || self.tasks.contains_key(&itt) {
            self.reject(reject_reason::INVALID_PDU_FIELD, &bhs);
            return Ok(());
        }
        if self.tasks.len() as u32 >= self.p.queued_commands.saturating_mul(2) {
            // Only immediate commands get past a full CmdSN window; refuse them too
            // beyond twice the window, so one initiator cannot queue without bound.
            self.reject(reject_reason::OUT_OF_RESOURCES, &bhs);
            return Ok(());
        }
        let (read, write) = (bhs.read_bit(), bhs.write_bit());
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
            return Ok(());
        };
        let imm = pdu.data.len() as u32;
        if (read && write)
            || (!write && imm > 0)
            || imm > edtl
            || (imm > 0 && !self.p.immediate_data)
            || imm > self.p.first_burst_length
        {
            // Bidirectional commands are unsupported; data with a non-write, or more
            // immediate data than announced, is a malformed PDU.
            if read && write {
                let sn_resp = Response::check(Sense::invalid_field_in_cdb(0, None));
                self.tasks
                    .insert(itt, self.new_task(lun, lun_raw, attr, edtl, false));
                self.finish(itt, sn_resp);
            } else {
                self.reject(reject_reason::PROTOCOL_ERROR, &bhs);
            }
            return Ok(());
        }
        if write && edtl > MAX_WRITE_BUFFER {
            self.tasks
                .insert(itt, self.new_task(lun, lun_raw, attr, edtl, false));
            self.finish(itt, Response::check(Sense::invalid_field_in_cdb(0, None)));
            return Ok(());
        }
        let mut task = self.new_task(lun, lun_raw, attr, edtl, read);
        task.write = write;
        let granted = self.try_charge(&mut task);
        let unsolicited_limit = if self.p.initial_r2t {
            imm
        } else {
            edtl.min(self.p.first_burst_length)
        };
        let mut data_out = Vec::new();
        if write && edtl > 0 {
            // Without budget only the unsolicited part (at most FirstBurstLength) is
            // buffered now; the rest waits for the budget before it is solicited.
            let len = if granted { edtl } else { unsolicited_limit };
            // Only the part the immediate data does not fill is zeroed (Data-Out PDUs
            // overwrite it later): a write that arrives whole is copied once, with no
            // memset before.
            data_out = Vec::with_capacity(len as usize);
            data_out.extend_from_slice(&pdu.data);
            data_out.resize(len as usize, 0);
        }
        let cmd = Cmd {
            cdb,
            lun,
            tag: itt as u64,
            attr,
            data_out,
            expected_in: if read { edtl } else { 0 },
        };
        task.crc_error = !pdu.data_digest_ok;
        task.received = imm;
        // Unsolicited data ends with the command itself (F bit), or when InitialR2T=Yes.
        task.unsolicited_done = !write || bhs.final_bit() || self.p.initial_r2t;
        task.next_r2t_offset = if task.unsolicited_done {
            imm
        } else {
            unsolicited_limit
        };
        task.phase = Phase::ReceivingData(cmd);
        self.tasks.insert(itt, task);
        if !granted {
            self.budget_waiters.push_back(itt);
        }
        self.data_progress(itt);
        Ok(())
    }

    /// Charge a new task's data to the connection's budget if it fits (or nothing else
    /// holds any); false: it must wait, behind any task already waiting.
    fn try_charge(&mut self, task: &mut Task) -> bool {
        let need = task.data_need();
        if need == 0 {
            return true;
        }
        if !self.budget_waiters.is_empty() || !self.fits(need) {
            task.budget_wait = true;
            return false;
        }
        self.charge(task, need);
        true
    }

    fn fits(&self, need: u32) -> bool {
        self.charged == 0 || self.charged + need as usize <= DATA_BUDGET
    }

    fn charge(&mut self, task: &mut Task, need: u32) {
        self.charged += need as usize;
        CHARGED_BYTES.fetch_add(need as usize, Ordering::Relaxed);
        task.charged = need;
        task.budget_wait = false;
    }

    /// Let waiting tasks go, oldest first, while the budget allows.
    fn pump_budget(&mut self) {
        while let Some(&itt) = self.budget_waiters.front() {
            let Some(mut task) = self.tasks.remove(&itt).filter(|t| t.budget_wait) else {
                // Gone (aborted), or the ITT now names a newer task that never waited.
                self.budget_waiters.pop_front();
                continue;
            };
            let need = task.data_need();
            if !self.fits(need) {
                self.tasks.insert(itt, task);
                break;
            }
            self.budget_waiters.pop_front();
            self.charge(&mut task, need);
            if let Phase::ReceivingData(cmd) = &mut task.phase {
                if task.write {
                    cmd.data_out.resize(task.edtl as usize, 0);
                }
            }
            self.tasks.insert(itt, task);
            self.data_progress(itt);
        }
    }

    /// Forget a task, returning its budget.
    fn remove_task(&mut self, itt: u32) -> Option<Task> {
        let t = self.tasks.remove(&itt)?;
        self.charged -= t.charged as usize;
        self.session.stats.cmds_done(1);
        Some(t)
    }

    fn new_task(&self, lun: u64, lun_raw: [u8; 8], attr: TaskAttr, edtl: u32, read: bool) -> Task {
        LIVE_TASKS.fetch_add(1, Ordering::Relaxed);
        self.session.stats.cmd_received();
        Task {
            lun,
            lun_raw,
            attr,
            edtl,
            read,
            write: false,
            in_task_set: false,
            phase: Phase::Running,
            received: 0,
            unsolicited_done: true,
            next_r2t_offset: 0,
            r2ts: Vec::new(),
            unsolicited_data_sn: 0,
            r2t_sn: 0,
            crc_error: false,
            aborted: false,
            device: None,
            charged: 0,
            budget_wait: false,
        }
    }

    fn on_data_out(&mut self, pdu: Pdu) -> Result<(), String> {
        let bhs = pdu.bhs;
        let itt = bhs.itt();
        let first_burst = self.p.first_burst_length;
        let Some(task) = self.tasks.get_mut(&itt) else {
            // Data for a task we already finished or aborted: nothing to do.
            return Ok(());
        };
        let Phase::ReceivingData(cmd) = &mut task.phase else {
            return Ok(());
        };
        let off = bhs.buffer_offset() as u64;
        let len = pdu.data.len() as u64;
        let ttt = bhs.ttt();
        let in_range = off + len <= cmd.data_out.len() as u64;
        let unsolicited_ok =
            ttt != RESERVED_TAG || (!task.unsolicited_done && off + len <= first_burst as u64);
        let r2t = (ttt != RESERVED_TAG)
            .then(|| task.r2ts.iter().position(|(t, _, _)| *t == ttt))
            .flatten();
        if !in_range || !unsolicited_ok || (ttt != RESERVED_TAG && r2t.is_none()) {
            self.reject(reject_reason::PROTOCOL_ERROR, &bhs);
            return Ok(());
        }
        // ERL 0 cannot recover a lost or reordered Data-Out, but the damage is this
        // command's alone: it fails with DATA PHASE ERROR and the rest of its data is
        // ignored, while the connection and the other commands carry on.
        let expected_sn = match r2t {
            Some(i) => &mut task.r2ts[i].2,
            None => &mut task.unsolicited_data_sn,
        };
        if bhs.data_sn() != *expected_sn {
            log::info!(
                "{}: Data-Out DataSN {} where {} was expected: command failed",
                self.session.initiator_name,
                bhs.data_sn(),
                expected_sn
            );
            self.finish(itt, Response::check(DATA_PHASE_ERROR));
            return Ok(());
        }
        *expected_sn += 1;
        cmd.data_out[off as usize..(off + len) as usize].copy_from_slice(&pdu.data);
        task.received = task.received.saturating_add(len as u32);
        task.crc_error |= !pdu.data_digest_ok;
        if bhs.final_bit() {
            match r2t {
                Some(i) => {
                    task.r2ts.swap_remove(i);
                }
                None => {
                    // The initiator may stop short of FirstBurstLength; solicit the
                    // rest from where its unsolicited data ended.
                    task.unsolicited_done = true;
                    task.next_r2t_offset = task.received;
                }
            }
        }
        self.data_progress(itt);
        Ok(())
    }

    /// After data arrived: start the command when all is in, else ask for more.
    fn data_progress(&mut self, itt: u32) {
        let (max_burst, max_r2t) = (self.p.max_burst_length, self.p.max_outstanding_r2t);
        let mut new_r2ts = Vec::new();
        let Some(task) = self.tasks.get_mut(&itt) else {
            return;
        };
        if task.budget_wait {
            return;
        }
        if !task.write || task.received >= task.edtl {
            let Phase::ReceivingData(cmd) = std::mem::replace(&mut task.phase, Phase::Running)
            else {
                return;
            };
            if task.crc_error {
                self.finish(itt, Response::check(Sense::CRC_ERROR));
                return;
            }
            self.admit(itt, cmd);
            return;
        }
        if !task.unsolicited_done {
            return;
        }
        while task.r2ts.len() < max_r2t as usize && task.next_r2t_offset < task.edtl {
            let off = task.next_r2t_offset;
            let len = (task.edtl - off).min(max_burst);
            let ttt = self.next_ttt;
            self.next_ttt = self.next_ttt.wrapping_add(1);
            if self.next_ttt == RESERVED_TAG {
                self.next_ttt = 0;
            }
            task.r2ts.push((ttt, off + len, 0));
            task.next_r2t_offset += len;
            new_r2ts.push((task.lun_raw, ttt, task.r2t_sn, off, len));
            task.r2t_sn += 1;
        }
        for (lun, ttt, r2t_sn, off, len) in new_r2ts {
            let b = pdu::r2t(lun, itt, ttt, r2t_sn, off, len, self.sn());
            self.out.push(b, None);
        }
    }

    /// Enter the task set; run now if ordering allows.
    fn admit(&mut self, itt: u32, cmd: Cmd) {
        let Some(task) = self.tasks.get_mut(&itt) else {
            return;
        };
        let ts = self.task_sets.entry(task.lun).or_default();
        task.in_task_set = true;
        match ts.admit(task.attr, itt) {
            Some(_) => self.dispatch(itt, cmd),
            None => task.phase = Phase::Held(cmd),
        }
    }

    /// Route through the core and execute: inline when the device can, else on the
    /// I/O pool.
    fn dispatch(&mut self, itt: u32, mut cmd: Cmd) {
        let td: Arc<TgtDev> = match self.session.route(&cmd) {
            Route::Done(resp) => {
                self.finish(itt, resp);
                return;
            }
            Route::Device(td) => td,
        };
        if let Some(t) = self.tasks.get_mut(&itt) {
            t.device = Some(td.device.clone());
            t.phase = Phase::Running;
        }
        if let Some(mut resp) = self.session.execute(&td, &mut cmd, ExecMode::Inline) {
            if let Some(d) = resp.deferred.take() {
                // Started asynchronously: the device completes it from another
                // thread, through the same channel as the I/O pool.
                let data_out_len = resp.data_out_len;
                let done = self.done_tx.clone();
                d.on_complete(move |mut resp| {
                    resp.data_out_len = data_out_len;
                    let _ = done.send(Completion { itt, resp });
                });
                return;
            }
            self.finish(itt, resp);
            return;
        }
        let session = self.session.clone();
        let done = self.done_tx.clone();
        self.p.scst.io_pool.spawn(move || {
            let resp = session
                .execute(&td, &mut cmd, ExecMode::Blocking)
                .unwrap_or_else(|| Response::check(Sense::INTERNAL_FAILURE));
            // The connection may be gone; then nobody wants the result.
            let _ = done.send(Completion { itt, resp });
        });
    }

    /// A task is done: release its task-set successors, answer it unless aborted, and
    /// answer task management requests that waited for it.
    fn finish(&mut self, itt: u32, resp: Response) {
        let Some(task) = self.remove_task(itt) else {
            return;
        };
        if let Some(ts) = self
            .task_sets
            .get_mut(&task.lun)
            .filter(|_| task.in_task_set)
        {
            let ready = ts.complete(task.attr);
            for r in ready {
                if let Some(Phase::Held(cmd)) = self
                    .tasks
                    .get_mut(&r)
                    .map(|t| std::mem::replace(&mut t.phase, Phase::Running))
                {
                    self.dispatch(r, cmd);
                }
            }
        }
        if !task.aborted {
            self.send_response(itt, &task, resp);
        }
        self.tmf_task_done(itt);
    }

    fn send_response(&mut self, itt: u32, task: &Task, resp: Response) {
        let produced = resp.data_len() as u32;
        // Data-In carries at most what the initiator expects; the rest is a residual.
        let send = if task.read {
            produced.min(task.edtl)
        } else {
            0
        };
        let residual = if task.read {
            Residual::compute(task.edtl, produced)
        } else if produced > 0 {
            Residual::Overflow(produced)
        } else if let Some(needed) = resp.data_out_len {
            Residual::compute(task.edtl, needed)
        } else {
            Residual::None
        };
        let good = resp.status == status::GOOD && resp.sense.is_none();
        let mut data_sn = 0u32;
        if send > 0 {
            let mut data = match resp.static_data {
                Some(b) => Bytes::from_static(b),
                None => Bytes::from(resp.data),
            };
            data.truncate(send as usize);
            let seg = self.p.max_xmit_data_segment_length.max(512);
            let burst = self.p.max_burst_length.max(seg);
            let mut off = 0u32;
            while off < send {
                let n = (send - off).min(seg);
                let last = off + n == send;
                // F closes each MaxBurstLength sequence (RFC 7143 11.7.1).
                let burst_end = (off + n).is_multiple_of(burst);
                let with_status = last && good;
                let sn = if with_status {
                    self.sn_advance()
                } else {
                    self.sn()
                };
                let b = pdu::data_in(&pdu::DataIn {
                    lun: task.lun_raw,
                    itt,
                    data_sn,
                    buffer_offset: off,
                    data_len: n,
                    final_pdu: last || burst_end,
                    status: with_status.then_some(resp.status),
                    residual,
                    sn,
                });
                // The last piece takes the buffer itself: slicing a Bytes made from a
                // Vec allocates a shared header, which a one-PDU read (the 4 KiB
                // case) never needs.
                let piece = if last {
                    std::mem::take(&mut data)
                } else {
                    data.split_to(n as usize)
                };
                self.out.push(b, Some(piece));
                data_sn += 1;
                off += n;
            }
            if good {
                return;
            }
        }
        let sense = resp.sense.map(|s| s.encode(resp.descriptor_sense));
        let mut seg = Vec::new();
        if let Some(s) = &sense {
            pdu::encode_sense_segment(s, &mut seg);
        }
        let sn = self.sn_advance();
        let b = pdu::scsi_response(
            itt,
            pdu::scsi_response::COMMAND_COMPLETED,
            resp.status,
            residual,
            data_sn,
            sn,
            seg.len() as u32,
        );
        self.out
            .push(b, (!seg.is_empty()).then(|| Bytes::from(seg)));
    }

    fn on_nop_out(&mut self, pdu: Pdu) -> Result<(), String> {
        let bhs = pdu.bhs;
        if bhs.ttt() != RESERVED_TAG {
            // The answer to our ping.
            if self.nop_outstanding.is_some_and(|(t, _)| t == bhs.ttt()) {
                self.nop_outstanding = None;
            }
            return Ok(());
        }
        if !self.accept_cmd_sn(&bhs) {
            return Ok(());
        }
        if bhs.itt() == RESERVED_TAG {
            // A NOP-Out that wants no answer.
            return Ok(());
        }
        let sn = self.sn_advance();
        let b = pdu::nop_in(
            bhs.lun(),
            bhs.itt(),
            RESERVED_TAG,
            sn,
            pdu.data.len() as u32,
        );
        self.out.push(b, Some(pdu.data));
        Ok(())
    }

    fn on_logout(&mut self, pdu: Pdu) {
        let bhs = pdu.bhs;
        if !bhs.immediate() && bhs.cmd_sn() == self.exp_cmd_sn {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        }
        // Every reason closes the one connection of the session (MC/S unsupported).
        // The nexus ends before the initiator hears so: one that logs straight back in
        // must not meet this session's reservation or medium-removal prevention.
        self.session.unregister();
        let sn = self.sn_advance();
        let b = pdu::logout_response(bhs.itt(), pdu::logout_response::SUCCESS, 0, 0, sn);
        self.out.push(b, None);
        self.logged_out = true;
    }

    fn on_text(&mut self, pdu: Pdu) {
        let bhs = pdu.bhs;
        if !self.accept_cmd_sn(&bhs) {
            return;
        }
        // Full-feature sessions may ask SendTargets too; answer with what discovery
        // would show this initiator.
        let keys = iscsi_wire::parse_text(&pdu.data).unwrap_or_default();
        let mut out = Vec::new();
        if let Some((_, v)) = keys.iter().find(|(k, _)| k == "SendTargets") {
            out = crate::discovery::send_targets(
                &self.p.driver,
                v,
                &self.session.initiator_name,
                self.p.local_addr,
            );
        }
        let data = iscsi_wire::encode_text(&out);
        let sn = self.sn_advance();
        let b = pdu::text_response(
            true,
            false,
            bhs.lun(),
            bhs.itt(),
            RESERVED_TAG,
            sn,
            data.len() as u32,
        );
        self.out.push(b, Some(Bytes::from(data)));
    }

    // ---------------------------------------------------------------- task management

    fn on_tmf(&mut self, pdu: Pdu) {
        let bhs = pdu.bhs;
        if !self.accept_cmd_sn(&bhs) {
            return;
        }
        let lun = scsi_wire::lun::decode_lun(bhs.lun());
        let func = bhs.tmf_function();
        let lun_known = self.session.luns().get(lun).is_some();
        let mut waiting = Vec::new();
        let response = match func {
            tmf_function::ABORT_TASK => {
                let rtt = bhs.ref_task_tag();
                match self.tasks.get(&rtt) {
                    Some(t) if t.lun == lun => {
                        self.abort_task(rtt, &mut waiting);
                        tmf_response::COMPLETE
                    }
                    Some(_) => tmf_response::TASK_DOES_NOT_EXIST,
                    // Never received but inside the window and before this request
                    // (RFC 7143 11.6.1 b): consider it received, and aborted.
                    None if !sn_lt(bhs.ref_cmd_sn(), self.exp_cmd_sn)
                        && (sn_lt(bhs.ref_cmd_sn(), bhs.cmd_sn())
                            || bhs.ref_cmd_sn() == bhs.cmd_sn()) =>
                    {
                        tmf_response::COMPLETE
                    }
                    // Received and already answered (its CmdSN is below the window):
                    // the task completed, there is nothing to abort (11.6.1 c).
                    None => tmf_response::TASK_DOES_NOT_EXIST,
                }
            }
            tmf_function::ABORT_TASK_SET | tmf_function::CLEAR_TASK_SET if !lun_known => {
                tmf_response::LUN_DOES_NOT_EXIST
            }
            tmf_function::ABORT_TASK_SET => {
                self.abort_where(|t| t.lun == lun, &mut waiting);
                tmf_response::COMPLETE
            }
            tmf_function::CLEAR_TASK_SET => {
                let _ = self.session.clear_task_set(lun);
                self.abort_where(|t| t.lun == lun, &mut waiting);
                tmf_response::COMPLETE
            }
            tmf_function::CLEAR_ACA => tmf_response::COMPLETE,
            tmf_function::LOGICAL_UNIT_RESET => match self.session.lun_reset(lun) {
                Ok(dev) => {
                    self.abort_where(
                        |t| t.device.as_ref().is_some_and(|d| Arc::ptr_eq(d, &dev)) || t.lun == lun,
                        &mut waiting,
                    );
                    tmf_response::COMPLETE
                }
                Err(_) => tmf_response::LUN_DOES_NOT_EXIST,
            },
            tmf_function::TARGET_WARM_RESET | tmf_function::TARGET_COLD_RESET => {
                self.session.target_reset();
                self.abort_where(|_| true, &mut waiting);
                if func == tmf_function::TARGET_COLD_RESET {
                    // Cold reset drops the connection after the response.
                    self.logged_out = true;
                }
                tmf_response::COMPLETE
            }
            tmf_function::TASK_REASSIGN => tmf_response::ALLEGIANCE_REASSIGNMENT_UNSUPPORTED,
            _ => tmf_response::NOT_SUPPORTED,
        };
        if waiting.is_empty() || response != tmf_response::COMPLETE {
            let sn = self.sn_advance();
            self.out
                .push(pdu::tmf_response(bhs.itt(), response, sn), None);
        } else {
            self.pending_tmfs.push(PendingTmf {
                itt: bhs.itt(),
                waiting,
            });
        }
    }

    fn abort_where(&mut self, pred: impl Fn(&Task) -> bool, waiting: &mut Vec<u32>) {
        let itts: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, t)| pred(t))
            .map(|(i, _)| *i)
            .collect();
        for itt in itts {
            self.abort_task(itt, waiting);
        }
    }

    /// Abort one task: not yet running -> gone now; running -> its result is dropped
    /// when it completes, and `waiting` records it so the TMF answers after that.
    fn abort_task(&mut self, itt: u32, waiting: &mut Vec<u32>) {
        let Some(task) = self.tasks.get_mut(&itt) else {
            return;
        };
        task.aborted = true;
        match task.phase {
            Phase::Running => {
                // Lets a command that waits on work outliving it (a sanitize) end.
                if let Some(d) = &task.device {
                    d.dev.abort_running();
                }
                waiting.push(itt)
            }
            Phase::Held(_) => {
                let lun = task.lun;
                self.remove_task(itt);
                if let Some(ts) = self.task_sets.get_mut(&lun) {
                    ts.remove_held(|t| *t == itt);
                }
            }
            Phase::ReceivingData(_) => {
                self.remove_task(itt);
            }
        }
    }

    fn tmf_task_done(&mut self, itt: u32) {
        let mut ready = Vec::new();
        for p in &mut self.pending_tmfs {
            p.waiting.retain(|w| *w != itt);
            if p.waiting.is_empty() {
                ready.push(p.itt);
            }
        }
        if ready.is_empty() {
            return;
        }
        self.pending_tmfs.retain(|p| !p.waiting.is_empty());
        for tmf_itt in ready {
            let sn = self.sn_advance();
            self.out
                .push(pdu::tmf_response(tmf_itt, tmf_response::COMPLETE, sn), None);
        }
    }

    fn on_event(&mut self, ev: ConnEvent) -> bool {
        match ev {
            ConnEvent::AbortDevice(dev) => {
                let mut waiting = Vec::new();
                self.abort_where(
                    |t| t.device.as_ref().is_some_and(|d| Arc::ptr_eq(d, &dev)),
                    &mut waiting,
                );
                true
            }
            ConnEvent::Close => false,
        }
    }

    fn running_tasks(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| matches!(t.phase, Phase::Running))
            .count()
    }
}

/// Serial number arithmetic (RFC 1982) for 32-bit sequence numbers.
fn sn_lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

fn sn_gt(a: u32, b: u32) -> bool {
    sn_lt(b, a)
}

/// How a connection lingers (see net_threads) after a turn that handled a burst of
/// PDUs: a few long naps. The initiator answers a burst of responses with a burst of
/// commands within tens of microseconds, and a long nap gathers more of them into one
/// read for less CPU than several short ones.
const LINGER_AFTER_BURST: Linger = Linger {
    nap: Duration::from_micros(30),
    naps: 2,
};
/// How it lingers after a turn with a single PDU, an initiator with one command in
/// flight: its next one comes a round trip later, at no predictable moment, and short
/// naps see it sooner.
const LINGER_AFTER_ONE: Linger = Linger {
    nap: Duration::from_micros(10),
    naps: 6,
};
/// PDUs in a turn that make a burst.
const LINGER_BURST: u32 = 2;

/// SO_RCVLOWAT while a connection lingers. Each command the initiator sends then lands
/// in our socket without waking anything: below the low-water mark the kernel skips
/// the socket's wakeup callbacks (epoll's included), work done in the initiator's own
/// send. The lingering connection reads by itself after each nap.
const LINGER_RCVLOWAT: libc::c_int = 16 * 1024;

/// Naps of `nap` before a connection sleeps in epoll like any other.
struct Linger {
    nap: Duration,
    naps: u32,
}

/// Run the full-feature phase until logout, close or a connection error.
pub async fn run(
    mut stream: TcpStream,
    mut reader: PduReader,
    session: Arc<Session>,
    p: ConnParams,
    stat_sn: u32,
    exp_cmd_sn: u32,
    mut events: mpsc::UnboundedReceiver<ConnEvent>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut out = PduWriter::default();
    out.header_digest = p.header_digest;
    out.data_digest = p.data_digest;
    reader.header_digest = p.header_digest;
    reader.data_digest = p.data_digest;
    let nop_interval = p.nop_in_interval;
    let nop_timeout = p.nop_in_timeout;
    let name = session.initiator_name.clone();
    let mut c = Conn {
        session,
        p,
        stat_sn,
        exp_cmd_sn,
        tasks: IntMap::default(),
        task_sets: IntMap::default(),
        pending_tmfs: Vec::new(),
        next_ttt: 1,
        done_tx,
        out,
        nop_outstanding: None,
        logged_out: false,
        charged: 0,
        budget_waiters: VecDeque::new(),
    };
    // A peer that takes nothing we send for RspTimeout is gone (or hostile): close
    // rather than hold its responses forever.
    let rsp_timeout =
        crate::params::target_num(&c.session.target, "RspTimeout", DEFAULT_RSP_TIMEOUT).max(1);
    c.out.stall_timeout = Some(Duration::from_secs(rsp_timeout as u64));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let mut muted = false;
    let (mut rd, mut wr) = stream.split();
    let mut nop_timer = tokio::time::interval(nop_interval.unwrap_or(Duration::from_secs(3600)));
    nop_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    nop_timer.reset();
    // When the outstanding NOP-In ping must have been answered: NopInTimeout after it
    // was sent, not rounded up to the next NopInInterval tick.
    let nop_deadline = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(nop_deadline);
    let mut idle = true;
    let linger = crate::net_threads::on_net_thread();
    let mut busy = crate::net_threads::Busy::default();
    let why: String = 'conn: loop {
        let mut handled = 0u32;
        // Everything already received, then everything already completed, then one
        // flush for all the responses that produced.
        loop {
            match reader.next_buffered() {
                Ok(Some(pdu)) => {
                    idle = false;
                    handled += 1;
                    if let Err(e) = c.handle_pdu(pdu) {
                        break 'conn e;
                    }
                    if c.out.queued_bytes() > 4 << 20 {
                        if let Err(e) = c.out.flush(&mut wr).await {
                            break 'conn format!("send: {e}");
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => break 'conn format!("receive: {e}"),
            }
        }
        while let Ok(done) = done_rx.try_recv() {
            c.finish(done.itt, done.resp);
        }
        if !c.budget_waiters.is_empty() {
            c.pump_budget();
        }
        if !c.out.is_empty() {
            if let Err(e) = c.out.flush(&mut wr).await {
                break 'conn format!("send: {e}");
            }
        }
        if c.logged_out {
            break 'conn "logout".to_string();
        }
        // Linger (see net_threads): after a turn that handled commands, when no other
        // connection of this thread has work, nap a few times for the next commands
        // before sleeping in epoll. After each nap the runtime polls epoll once without
        // blocking (yield_now), and the socket is read if that found it readable.
        busy.set(linger && handled > 0);
        if linger && handled > 0 && crate::net_threads::busy_here() == 1 {
            let how = if handled >= LINGER_BURST {
                &LINGER_AFTER_BURST
            } else {
                &LINGER_AFTER_ONE
            };
            if !muted {
                // A failed raise leaves the mark at 1: the callbacks come back, nothing is lost.
                let _ = crate::io::set_rcvlowat(fd, LINGER_RCVLOWAT);
                muted = true;
            }
            for _ in 0..how.naps {
                std::thread::sleep(how.nap);
                tokio::task::yield_now().await;
                match reader.fill_now(fd) {
                    Ok(true) => continue 'conn,
                    Ok(false) => {}
                    Err(RecvError::Closed) => break 'conn "closed by the initiator".to_string(),
                    Err(e) => break 'conn format!("receive: {e}"),
                }
                if !done_rx.is_empty() || !events.is_empty() {
                    continue 'conn;
                }
            }
            busy.set(false);
        }
        if muted {
            // Fails only for a bad argument, and 1 is a constant.
            let _ = crate::io::set_rcvlowat(fd, 1);
            muted = false;
        }
        tokio::select! {
            r = reader.fill(&mut rd) => match r {
                Ok(()) => {}
                Err(RecvError::Closed) => break 'conn "closed by the initiator".to_string(),
                Err(e) => break 'conn format!("receive: {e}"),
            },
            Some(done) = done_rx.recv() => c.finish(done.itt, done.resp),
            ev = events.recv() => match ev {
                Some(ev) => if !c.on_event(ev) { break 'conn "closed by the target".to_string() },
                None => break 'conn "closed by the target".to_string(),
            },
            _ = nop_timer.tick(), if nop_interval.is_some() => {
                if c.nop_outstanding.is_none() && idle {
                    let ttt = c.next_ttt;
                    c.next_ttt = c.next_ttt.wrapping_add(1).max(1);
                    let now = tokio::time::Instant::now();
                    c.nop_outstanding = Some((ttt, now));
                    nop_deadline.as_mut().reset(now + nop_timeout);
                    let b = pdu::nop_in([0; 8], RESERVED_TAG, ttt, c.sn(), 0);
                    c.out.push(b, None);
                }
                idle = true;
            }
            _ = &mut nop_deadline, if c.nop_outstanding.is_some() => {
                break 'conn "no answer to NOP-In".to_string();
            }
        }
    };
    log::info!("{name}: connection ended: {why}");
    // Commands still on I/O threads hold buffers and device references; wait for them
    // so that the session's teardown happens after its last command.
    while c.running_tasks() > 0 {
        match tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await {
            Ok(Some(done)) => {
                c.remove_task(done.itt);
            }
            _ => break,
        }
    }
}
