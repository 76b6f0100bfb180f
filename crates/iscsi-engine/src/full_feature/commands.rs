//! SCSI Command PDUs and their data-out (RFC 7143 11.3, 11.7, 11.8), the connection's
//! side of each command: its buffer while data comes in, the connection's data budget,
//! and the moment it leaves for the core as an [`Event::Command`]. Which data may come
//! unsolicited, where each Data-Out goes and which R2Ts to send is [`WriteSequence`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use iscsi_wire::bhs::task_attr;
use iscsi_wire::pdu::reject_reason;
use iscsi_wire::{Bhs, RESERVED_TAG};

use super::connection::{Event, FullFeatureConnection};
use super::data_out::{CommandFault, DataOut, WriteSequence};
use super::Pdu;

/// Largest Expected Data Transfer Length buffered for one command. Block Limits
/// advertise 8 MiB transfers; this leaves room without letting one PDU claim gigabytes.
pub const MAX_COMMAND_BUFFER: u32 = 64 << 20;

/// Data buffer bytes (write data being collected, read data being produced) one
/// connection's commands may hold at once. Without it a full CmdSN window of large
/// transfers could pin window x transfer size (gigabytes) per session; commands beyond
/// it wait, unanswered and without R2Ts, until earlier ones finish. One command is
/// always let through, however large, so nothing waits forever.
pub const DATA_BUDGET: usize = 64 << 20;

/// The longest CDB accepted: 16 bytes in the header, the rest in an extended-CDB AHS.
pub const MAX_CDB: usize = 32;

/// Commands alive over all connections: the management tree shows them so that
/// leaks are visible. Relaxed, being statistics.
static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);

/// Commands alive over every connection of the process.
pub fn live_tasks() -> usize {
    LIVE_TASKS.load(Ordering::Relaxed)
}

/// The daemon-wide budget that every connection's data buffers are charged to as well
/// (SCST's `scst_max_cmd_mem`, which the driver brings from the core). A command it
/// refuses is answered BUSY or TASK SET FULL.
pub trait SharedBudget: Send + Sync {
    /// The connection holds `mine` bytes and asks for `need` more: true when charged.
    fn try_charge(&self, mine: usize, need: usize) -> bool;
    /// Bytes charged before are free again.
    fn release(&self, bytes: usize);
}

/// A multiplicative hash for tags chosen by the initiator: a map per connection, so
/// colliding keys slow nobody else, and SipHash would cost a few percent of the
/// per-command CPU for no gain.
#[derive(Default)]
pub(super) struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(8) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(super) type TagMap<V> = HashMap<u32, V, BuildHasherDefault<TagHasher>>;

/// SAM task attributes, as the SCSI Command PDU gives them (untagged is simple).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAttribute {
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// What the connection keeps of a command until its response is sent. It leaves with
/// the command ([`Command::task`]); the driver hands it back with the response
/// ([`FullFeatureConnection::respond`]) or when the command ended without one
/// ([`FullFeatureConnection::release`]).
#[derive(Debug)]
pub struct Task {
    itt: u32,
    lun_raw: [u8; 8],
    /// Expected Data Transfer Length.
    edtl: u32,
    read: bool,
    /// Data bytes charged to the connection's budget for this command.
    charged: u32,
}

impl Task {
    pub(super) fn new(itt: u32, lun_raw: [u8; 8], edtl: u32, read: bool) -> Task {
        LIVE_TASKS.fetch_add(1, Ordering::Relaxed);
        Task {
            itt,
            lun_raw,
            edtl,
            read,
            charged: 0,
        }
    }

    /// The Initiator Task Tag: the command's tag in the core.
    #[inline]
    pub fn itt(&self) -> u32 {
        self.itt
    }

    /// The LUN field as the initiator sent it (drivers name the LUN in their logs).
    #[inline]
    pub fn lun_raw(&self) -> [u8; 8] {
        self.lun_raw
    }

    #[inline]
    pub(super) fn edtl(&self) -> u32 {
        self.edtl
    }

    #[inline]
    pub(super) fn read(&self) -> bool {
        self.read
    }

    #[inline]
    pub(super) fn charged(&self) -> usize {
        self.charged as usize
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        LIVE_TASKS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A command whose data-out is all in: the driver submits it to the core.
#[derive(Debug)]
pub struct Command {
    pub task: Task,
    /// The LUN, decoded (SAM-5 4.7).
    pub lun: u64,
    cdb: [u8; MAX_CDB],
    cdb_len: u8,
    pub attr: TaskAttribute,
    /// A write's data (EDTL bytes); empty for other commands.
    pub data_out: Vec<u8>,
    /// The data-in the initiator can take: a read's EDTL, else 0.
    pub expected_in: u32,
}

impl Command {
    /// The CDB, 1 to [`MAX_CDB`] bytes.
    #[inline]
    pub fn cdb(&self) -> &[u8] {
        &self.cdb[..self.cdb_len as usize]
    }

    /// The CDB as held: a buffer of [`MAX_CDB`] bytes and the length used, for a core
    /// that keeps CDBs the same way (no copy).
    #[inline]
    pub fn cdb_buffer(&self) -> ([u8; MAX_CDB], u8) {
        (self.cdb, self.cdb_len)
    }
}

/// A command still collecting its data-out (or waiting for budget to ask for it).
pub(super) struct Incoming {
    pub(super) cmd: Command,
    /// A write's data-out, as far as it came.
    write: Option<WriteSequence>,
    /// A data digest failed for this command's data: fail it once the data is in.
    crc_error: bool,
    /// Waiting in the budget's queue: no R2Ts, no execution until charged.
    budget_wait: bool,
}

impl Incoming {
    /// What the command's data buffer may grow to: written data, or the data-in the
    /// initiator can take (devices produce at most their transfer limit).
    fn data_need(&self) -> u32 {
        if self.write.is_some() || self.cmd.task.read {
            self.cmd.task.edtl.min(MAX_COMMAND_BUFFER)
        } else {
            0
        }
    }
}

/// The connection's share of data buffers, and its part of the shared budget.
pub(super) struct DataBudget {
    /// Bytes charged by the connection's commands (at most DATA_BUDGET, or one's),
    /// those still collecting data and those with the core alike.
    charged: usize,
    /// Commands waiting for budget, oldest first (may name commands since gone).
    waiters: VecDeque<u32>,
    shared: std::sync::Arc<dyn SharedBudget>,
}

/// A shared budget with no limit: the connection's own is the only one (tests, the
/// fuzzer).
#[derive(Debug, Default)]
pub struct NoSharedLimit;

impl SharedBudget for NoSharedLimit {
    fn try_charge(&self, _mine: usize, _need: usize) -> bool {
        true
    }
    fn release(&self, _bytes: usize) {}
}

/// Whether a command's buffer may be allocated.
enum Charge {
    Granted,
    /// Over the connection's own budget: it waits for the connection's commands.
    Wait,
    /// Over the shared budget: answered BUSY or TASK SET FULL.
    Refused,
}

impl DataBudget {
    pub(super) fn new(shared: std::sync::Arc<dyn SharedBudget>) -> DataBudget {
        DataBudget {
            charged: 0,
            waiters: VecDeque::new(),
            shared,
        }
    }

    fn fits(&self, need: u32) -> bool {
        self.charged == 0 || self.charged + need as usize <= DATA_BUDGET
    }

    /// Charge the shared budget, then the connection's.
    fn charge(&mut self, inc: &mut Incoming, need: u32) -> bool {
        if !self.shared.try_charge(self.charged, need as usize) {
            return false;
        }
        self.charged += need as usize;
        inc.cmd.task.charged = need;
        inc.budget_wait = false;
        true
    }

    #[inline]
    pub(super) fn release(&mut self, task: &Task) {
        if task.charged > 0 {
            self.charged -= task.charged();
            self.shared.release(task.charged());
        }
    }
}

impl Drop for DataBudget {
    /// Commands the connection never got back (still running when it closed) give
    /// their buffers' share back with it.
    fn drop(&mut self) {
        if self.charged > 0 {
            self.shared.release(self.charged);
        }
    }
}

impl std::fmt::Debug for DataBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataBudget")
            .field("charged", &self.charged)
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

/// The CDB of a SCSI Command PDU: 16 bytes in the header, more in an extended-CDB AHS.
fn cdb_of(bhs: &Bhs, ahs: &[u8]) -> Option<([u8; MAX_CDB], u8)> {
    let mut cdb = [0u8; MAX_CDB];
    cdb[..16].copy_from_slice(bhs.cdb());
    match iscsi_wire::frame::extended_cdb(ahs) {
        Ok(None) => Some((cdb, 16)),
        Ok(Some(tail)) if 16 + tail.len() <= MAX_CDB => {
            cdb[16..16 + tail.len()].copy_from_slice(tail);
            Some((cdb, (16 + tail.len()) as u8))
        }
        _ => None,
    }
}

impl FullFeatureConnection {
    /// A SCSI Command PDU; the command, when it needs nothing more before the core.
    pub(super) fn on_scsi_command<C: Fn(u32) -> bool>(
        &mut self,
        pdu: Pdu,
        in_core: &C,
    ) -> Option<Command> {
        let bhs = pdu.bhs;
        if !self.accept_cmd_sn(&bhs) {
            return None;
        }
        let itt = bhs.itt();
        if itt == RESERVED_TAG || self.incoming.contains_key(&itt) || in_core(itt) {
            self.reject(reject_reason::INVALID_PDU_FIELD, &bhs);
            return None;
        }
        if self.ff.window().overfull(self.outstanding()) {
            // Only immediate commands get past a full CmdSN window; refuse them too
            // beyond twice the window, so one initiator cannot queue without bound.
            self.reject(reject_reason::OUT_OF_RESOURCES, &bhs);
            return None;
        }
        let Some((cdb, cdb_len)) = cdb_of(&bhs, &pdu.ahs) else {
            self.reject(reject_reason::INVALID_PDU_FIELD, &bhs);
            return None;
        };
        let read = bhs.read_bit();
        let edtl = bhs.exp_data_transfer_len();
        let lun_raw = bhs.lun();
        let imm = pdu.data.len() as u32;
        let seq = match self.ff.command(&bhs, imm) {
            Ok(seq) => seq,
            Err(CommandFault::Bidirectional) => {
                let task = Task::new(itt, lun_raw, edtl, false);
                self.fail(task, Failure::InvalidFieldInCdb);
                return None;
            }
            Err(CommandFault::Malformed) => {
                self.reject(reject_reason::PROTOCOL_ERROR, &bhs);
                return None;
            }
        };
        let unsolicited_limit = seq.as_ref().map_or(0, WriteSequence::unsolicited_limit);
        let write = seq.is_some();
        if write && edtl > MAX_COMMAND_BUFFER {
            let task = Task::new(itt, lun_raw, edtl, false);
            self.fail(task, Failure::InvalidFieldInCdb);
            return None;
        }
        let attr = match bhs.task_attr() {
            task_attr::ORDERED => TaskAttribute::Ordered,
            task_attr::HEAD_OF_QUEUE => TaskAttribute::HeadOfQueue,
            task_attr::ACA => TaskAttribute::Aca,
            _ => TaskAttribute::Simple,
        };
        let mut inc = Incoming {
            cmd: Command {
                task: Task::new(itt, lun_raw, edtl, read),
                lun: scsi_wire::lun::decode_lun(lun_raw),
                cdb,
                cdb_len,
                attr,
                data_out: Vec::new(),
                expected_in: if read { edtl } else { 0 },
            },
            write: seq,
            crc_error: !pdu.data_digest_ok,
            budget_wait: false,
        };
        let granted = match self.try_charge(&mut inc) {
            Charge::Granted => true,
            Charge::Wait => false,
            Charge::Refused => {
                self.refuse(inc.cmd.task);
                return None;
            }
        };
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
            self.budget.waiters.push_back(itt);
        }
        self.data_progress(inc)
    }

    /// Charge a new command's data to the budgets: the connection's when it fits (or
    /// nothing else holds any), else it waits behind any command already waiting; and
    /// the shared one, which may refuse.
    fn try_charge(&mut self, inc: &mut Incoming) -> Charge {
        let need = inc.data_need();
        if need == 0 {
            return Charge::Granted;
        }
        if !self.budget.waiters.is_empty() || !self.budget.fits(need) {
            inc.budget_wait = true;
            return Charge::Wait;
        }
        if self.budget.charge(inc, need) {
            Charge::Granted
        } else {
            Charge::Refused
        }
    }

    /// A command the shared budget has no room for: BUSY when the connection holds no
    /// other command, TASK SET FULL otherwise (SCST's rule for any resource shortage).
    fn refuse(&mut self, task: Task) {
        let why = if self.outstanding() == 0 {
            Failure::Busy
        } else {
            Failure::TaskSetFull
        };
        self.fail(task, why);
    }

    /// Let waiting commands go, oldest first, while the budget allows.
    pub fn pump_budget(&mut self) {
        while let Some(&itt) = self.budget.waiters.front() {
            // Gone (aborted, failed), or the ITT names a newer command that never
            // waited.
            let Some(need) = self
                .incoming
                .get(&itt)
                .filter(|inc| inc.budget_wait)
                .map(Incoming::data_need)
            else {
                self.budget.waiters.pop_front();
                continue;
            };
            if !self.budget.fits(need) {
                break;
            }
            self.budget.waiters.pop_front();
            let Some(mut inc) = self.incoming.remove(&itt) else {
                continue;
            };
            if !self.budget.charge(&mut inc, need) {
                self.refuse(inc.cmd.task);
                continue;
            }
            if inc.write.is_some() {
                let edtl = inc.cmd.task.edtl as usize;
                inc.cmd.data_out.resize(edtl, 0);
            }
            if let Some(cmd) = self.data_progress(inc) {
                self.events.push_back(Event::Command(cmd));
            }
        }
    }

    /// Commands that have not reached the core end without a response (aborted).
    pub(super) fn drop_incoming_where(&mut self, pred: impl Fn(&Incoming) -> bool) {
        let budget = &mut self.budget;
        self.incoming.retain(|_, inc| {
            if pred(inc) {
                budget.release(&inc.cmd.task);
                false
            } else {
                true
            }
        });
    }

    /// A Data-Out PDU; the command, when this was the last of its data.
    pub(super) fn on_data_out(&mut self, pdu: Pdu) -> Option<Command> {
        let bhs = pdu.bhs;
        let itt = bhs.itt();
        // Data for a command already submitted, finished or aborted: nothing to do.
        let mut inc = self.incoming.remove(&itt)?;
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
                return self.data_progress(inc);
            }
            DataOut::Reject => {
                self.incoming.insert(itt, inc);
                self.reject(reject_reason::PROTOCOL_ERROR, &bhs);
            }
            DataOut::SequenceError { .. } => {
                // ERL 0 cannot recover a lost or reordered Data-Out, but the damage is
                // this command's alone: it fails with DATA PHASE ERROR and the rest of
                // its data is ignored, while the connection and the other commands
                // carry on.
                self.fail(inc.cmd.task, Failure::DataPhase);
            }
        }
        None
    }

    /// After data arrived: the command for the core when all is in, else ask for
    /// more (and keep it).
    #[inline]
    fn data_progress(&mut self, mut inc: Incoming) -> Option<Command> {
        let itt = inc.cmd.task.itt;
        if inc.budget_wait {
            self.incoming.insert(itt, inc);
            return None;
        }
        let edtl = inc.cmd.task.edtl;
        let Some(seq) = inc.write.as_mut().filter(|s| !s.complete(edtl)) else {
            if inc.crc_error {
                self.fail(inc.cmd.task, Failure::Crc);
                return None;
            }
            self.submitted += 1;
            return Some(inc.cmd);
        };
        let held = self.outstanding();
        let lun = inc.cmd.task.lun_raw;
        while let Some(b) = self.ff.r2t(seq, lun, itt, edtl, held) {
            self.tx.push(b, None);
        }
        self.incoming.insert(itt, inc);
        None
    }

    /// A command the connection fails itself, before the core saw it: CHECK CONDITION
    /// with the sense the driver encodes ([`Event::Failed`]).
    fn fail(&mut self, task: Task, why: Failure) {
        self.submitted += 1;
        self.events.push_back(Event::Failed { task, why });
    }
}

/// Why the connection failed a command itself ([`Event::Failed`]): the driver answers
/// it with CHECK CONDITION and the sense its error model gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A bidirectional command, or a write longer than [`MAX_COMMAND_BUFFER`]:
    /// INVALID FIELD IN CDB.
    InvalidFieldInCdb,
    /// A Data-Out out of sequence: DATA PHASE ERROR.
    DataPhase,
    /// A data digest failed for the command's data: CRC ERROR.
    Crc,
    /// No room in the shared buffer budget, and the connection holds no other command:
    /// status BUSY.
    Busy,
    /// No room in the shared buffer budget: status TASK SET FULL.
    TaskSetFull,
}
