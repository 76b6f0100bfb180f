//! Long operations on the whole medium that outlive a command's ordinary latency: SANITIZE
//! (sanitize.rs) and FORMAT UNIT (format.rs) (SBC-4 4.11, 5.3, 5.30).
//!
//! [`MediumState`] is the logical unit's side of it: whether such an operation is in
//! progress, how far it got, and whether a sanitize failed (sanitize failure mode).
//! Every command passes [`MediumState::gate`] first: while an operation runs the medium
//! is fenced off (NOT READY / SANITIZE IN PROGRESS or FORMAT IN PROGRESS, with the
//! progress indication), and after a failed sanitize user data stays inaccessible
//! (MEDIUM ERROR / SANITIZE COMMAND FAILED) until a sanitize succeeds or EXIT FAILURE
//! MODE is allowed. REQUEST SENSE reports the same through `Device::pending_sense`.
//!
//! [`MediumJob`] is the work itself. It owns what it needs (`Arc`s of the backend, the
//! range lock and the state) and always runs on a thread of its own: with IMMED=1 the
//! command returns GOOD at once; with IMMED=0 the command's I/O thread waits for the
//! outcome. It survives task aborts, LUN and target resets and the end of the session
//! that started it, as SBC-4 requires of a sanitize: an abort only ends the wait
//! ([`MediumState::detach_waiter`]), so that the task management function completes
//! while the operation goes on and TEST UNIT READY keeps reporting it. It does not survive a
//! daemon restart: the state is not persistent, so an interrupted sanitize leaves a
//! partly sanitized medium that reads normally (documented limitation).

use crate::backend::Backend;
use crate::rangelock::RangeLock;
use parking_lot::{Condvar, Mutex};
use scsi_wire::asc;
use scsi_wire::cdb::opcode;
use scsi_wire::sense::key;
use scsi_wire::Sense;
use scst_core::ExecMode;
use std::io;
use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::Arc;

/// NOT READY / LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS.
pub(crate) const SANITIZE_IN_PROGRESS: Sense = Sense::named(
    key::NOT_READY,
    asc::LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS,
);
/// NOT READY / LOGICAL UNIT NOT READY, FORMAT IN PROGRESS.
pub(crate) const FORMAT_IN_PROGRESS: Sense = Sense::named(
    key::NOT_READY,
    asc::LOGICAL_UNIT_NOT_READY_FORMAT_IN_PROGRESS,
);
/// MEDIUM ERROR / SANITIZE COMMAND FAILED.
pub(crate) const SANITIZE_FAILED: Sense =
    Sense::named(key::MEDIUM_ERROR, asc::SANITIZE_COMMAND_FAILED);
/// MEDIUM ERROR / FORMAT COMMAND FAILED.
pub(crate) const FORMAT_FAILED: Sense = Sense::named(key::MEDIUM_ERROR, asc::FORMAT_COMMAND_FAILED);

/// Bytes written or deallocated per backend call: bounds the buffer, and is the
/// granularity of the progress indication.
const WRITE_CHUNK: usize = 1 << 20;
const DEALLOCATE_CHUNK: u64 = 256 << 20;
/// An overwrite makes what it wrote stable this often (unless nv_cache).
const WRITEBACK_EVERY: u64 = 64 << 20;

/// Which operation holds the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Sanitize,
    Format,
}

// The phase, in one atomic so that the per-command check is a single load.
const READY: u8 = 0;
const SANITIZING: u8 = 1;
const FORMATTING: u8 = 2;
/// A sanitize failed in the unrestricted completion mode (AUSE=1): EXIT FAILURE MODE
/// may end the failure mode.
const FAILED_UNRESTRICTED: u8 = 3;
/// A sanitize failed in the restricted completion mode (AUSE=0): only a sanitize that
/// completes without error ends the failure mode.
const FAILED_RESTRICTED: u8 = 4;

/// The medium-wide state of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct MediumState {
    phase: AtomicU8,
    /// Progress of the running operation, in 65536ths.
    progress: AtomicU16,
    /// The IMMED=0 command waiting for the running operation, if any.
    waiter: Mutex<Option<Arc<Waiter>>>,
}

/// How an IMMED=0 command's wait for its operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitEnd {
    /// The operation ended: true when it succeeded.
    Finished(bool),
    /// The command was aborted; the operation goes on without it.
    Detached,
}

/// Where an IMMED=0 command waits for its operation.
#[derive(Debug, Default)]
struct Waiter {
    end: Mutex<Option<WaitEnd>>,
    cv: Condvar,
}

impl Waiter {
    /// Record how the wait ends; the first word counts.
    fn settle(&self, end: WaitEnd) {
        let mut e = self.end.lock();
        if e.is_none() {
            *e = Some(end);
            self.cv.notify_all();
        }
    }

    fn wait(&self) -> WaitEnd {
        let mut e = self.end.lock();
        loop {
            if let Some(end) = *e {
                return end;
            }
            self.cv.wait(&mut e);
        }
    }
}

/// Commands that are processed while a sanitize or format runs (SBC-4 4.11.4, SPC-4
/// 5.x): they neither read nor change the medium. REPORT LUNS and REQUEST SENSE are
/// answered by the core before the device sees them; REQUEST SENSE is listed for the
/// device's own copy.
fn allowed_while_busy(op: u8) -> bool {
    matches!(
        op,
        opcode::INQUIRY | opcode::REQUEST_SENSE | opcode::LOG_SENSE
    )
}

/// Commands that read or write user data, which a sanitize failure mode refuses (SBC-4
/// 4.11.3). Everything else (TEST UNIT READY, READ CAPACITY, MODE SENSE, another
/// SANITIZE...) proceeds, so that an initiator can learn the state and retry.
fn accesses_user_data(cdb: &[u8]) -> bool {
    use opcode::*;
    let op = cdb.first().copied().unwrap_or(0);
    match op {
        READ_6 | READ_10 | READ_12 | READ_16 | WRITE_6 | WRITE_10 | WRITE_12 | WRITE_16
        | WRITE_AND_VERIFY_10 | WRITE_AND_VERIFY_12 | WRITE_AND_VERIFY_16 | VERIFY_10
        | VERIFY_12 | VERIFY_16 | WRITE_SAME_10 | WRITE_SAME_16 | UNMAP | COMPARE_AND_WRITE
        | VARIABLE_LENGTH | FORMAT_UNIT => true,
        scsi_wire::atomic::opcode::ORWRITE_16 | scsi_wire::atomic::opcode::WRITE_ATOMIC_16 => true,
        scsi_wire::sbc::opcode::PRE_FETCH_10 | scsi_wire::sbc::opcode::PRE_FETCH_16 => true,
        // GET LBA STATUS describes user data; READ CAPACITY(16) does not.
        SERVICE_ACTION_IN_16 => {
            cdb.get(1).map(|b| b & 0x1F) == Some(scsi_wire::cdb::service_action::GET_LBA_STATUS)
        }
        _ => false,
    }
}

impl MediumState {
    /// The check every command passes before the dispatch.
    pub(crate) fn gate(&self, cdb: &[u8]) -> Result<(), Sense> {
        let phase = self.phase.load(Ordering::Acquire);
        if phase == READY {
            return Ok(());
        }
        let op = cdb.first().copied().unwrap_or(0);
        match phase {
            SANITIZING | FORMATTING if !allowed_while_busy(op) => Err(self.busy_sense(phase)),
            FAILED_UNRESTRICTED | FAILED_RESTRICTED if accesses_user_data(cdb) => {
                Err(SANITIZE_FAILED)
            }
            _ => Ok(()),
        }
    }

    /// What REQUEST SENSE reports when no unit attention is pending.
    pub(crate) fn pending_sense(&self) -> Option<Sense> {
        match self.phase.load(Ordering::Acquire) {
            READY => None,
            p @ (SANITIZING | FORMATTING) => Some(self.busy_sense(p)),
            _ => Some(SANITIZE_FAILED),
        }
    }

    fn busy_sense(&self, phase: u8) -> Sense {
        let mut s = if phase == SANITIZING {
            SANITIZE_IN_PROGRESS
        } else {
            FORMAT_IN_PROGRESS
        };
        s.progress = Some(self.progress.load(Ordering::Relaxed));
        s
    }

    /// A running command of this logical unit is being aborted (ABORT TASK, ABORT TASK
    /// SET, CLEAR TASK SET, a reset): the IMMED=0 command waiting for the operation
    /// stops waiting, so the abort completes, while the operation itself goes on (SBC-4
    /// 4.11.4: a sanitize continues across task management functions and resets).
    pub(crate) fn detach_waiter(&self) {
        if let Some(w) = self.waiter.lock().take() {
            w.settle(WaitEnd::Detached);
        }
    }

    /// Whether a failed sanitize restricts what may end the failure mode.
    pub(crate) fn failed_restricted(&self) -> bool {
        self.phase.load(Ordering::Acquire) == FAILED_RESTRICTED
    }

    /// Take the medium for an operation: from READY, or for a sanitize also from
    /// sanitize failure mode (a sanitize that succeeds ends it). `ause`: a failure of
    /// this sanitize may be ended by EXIT FAILURE MODE.
    pub(crate) fn begin(self: &Arc<Self>, kind: OpKind, ause: bool) -> Result<Ticket, Sense> {
        let busy = match kind {
            OpKind::Sanitize => SANITIZING,
            OpKind::Format => FORMATTING,
        };
        let mut cur = self.phase.load(Ordering::Acquire);
        loop {
            let may_start = cur == READY
                || (kind == OpKind::Sanitize
                    && matches!(cur, FAILED_RESTRICTED | FAILED_UNRESTRICTED));
            if !may_start {
                return Err(match cur {
                    SANITIZING | FORMATTING => self.busy_sense(cur),
                    _ => SANITIZE_FAILED,
                });
            }
            match self
                .phase
                .compare_exchange(cur, busy, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.progress.store(0, Ordering::Relaxed);
        Ok(Ticket {
            state: self.clone(),
            kind,
            before: cur,
            ause,
            ended: false,
        })
    }

    /// EXIT FAILURE MODE: leave an unrestricted sanitize failure mode. Outside failure
    /// mode there is nothing to leave and the command succeeds; a restricted failure
    /// mode can only be left by a sanitize that succeeds (INVALID FIELD IN CDB).
    pub(crate) fn exit_failure_mode(&self) -> Result<(), Sense> {
        match self.phase.compare_exchange(
            FAILED_UNRESTRICTED,
            READY,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(FAILED_RESTRICTED) => Err(Sense::invalid_field_in_cdb(1, Some(4))),
            Err(_) => Ok(()),
        }
    }
}

/// The right to run one operation on the medium, from [`MediumState::begin`]. Ending
/// it sets the state the operation leaves behind; dropping it unended (a panic in the
/// job) counts as a failure, so a sanitize never silently reads as done.
pub(crate) struct Ticket {
    state: Arc<MediumState>,
    kind: OpKind,
    before: u8,
    ause: bool,
    ended: bool,
}

impl Ticket {
    fn set_progress(&self, done: u64, total: u64) {
        let p = if total == 0 {
            0
        } else {
            // Numerator over 65536, capped below 1.0: done only when the state changes.
            (u128::from(done) * 65536 / u128::from(total)).min(65535) as u16
        };
        self.state.progress.store(p, Ordering::Relaxed);
    }

    /// The operation never started (no thread could be created for it): back to the
    /// state before `begin`.
    pub(crate) fn abandon(mut self) {
        self.ended = true;
        self.state.phase.store(self.before, Ordering::Release);
    }

    fn end(&mut self, ok: bool) {
        self.ended = true;
        let next = match (self.kind, ok, self.ause) {
            (OpKind::Format, _, _) | (OpKind::Sanitize, true, _) => READY,
            (OpKind::Sanitize, false, true) => FAILED_UNRESTRICTED,
            (OpKind::Sanitize, false, false) => FAILED_RESTRICTED,
        };
        self.state.phase.store(next, Ordering::Release);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.ended {
            self.end(false);
        }
    }
}

/// What to do to every block of the medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Work {
    /// Write `block` over every logical block, `passes` times; with `invert` the
    /// passes alternate between the inverted and the plain pattern, ending with the
    /// plain one (SBC-4 5.30.2.2: an even count starts inverted).
    Overwrite {
        block: Vec<u8>,
        passes: u8,
        invert: bool,
    },
    /// Deallocate every block (holes punched or the range discarded): they read back
    /// as zeros.
    Deallocate,
    /// Nothing to change (a format of a fully provisioned or null medium).
    Nothing,
}

/// One operation over the whole medium, ready to run anywhere.
pub(crate) struct MediumJob<B: Backend> {
    pub backend: Arc<B>,
    pub ranges: Arc<RangeLock>,
    /// Device name, for logs.
    pub name: String,
    pub nblocks: u64,
    pub shift: u32,
    /// Make the result stable before reporting completion (false with nv_cache).
    pub flush: bool,
    pub work: Work,
}

impl<B: Backend> MediumJob<B> {
    /// Run to completion and end `ticket` with the outcome.
    pub(crate) fn run(self, mut ticket: Ticket) -> io::Result<()> {
        let r = self.run_inner(&ticket);
        if let Err(e) = &r {
            log::error!("{}: {:?} failed: {e}", self.name, ticket.kind);
        }
        ticket.end(r.is_ok());
        r
    }

    fn run_inner(&self, ticket: &Ticket) -> io::Result<()> {
        // Wait for the commands that passed the gate before the state changed; new
        // ones are refused by the gate from now on.
        let _all = self.ranges.exclusive(0, self.nblocks);
        let len = self.nblocks << self.shift;
        match &self.work {
            Work::Nothing => {}
            Work::Deallocate => {
                let mut done = 0u64;
                while done < len {
                    let n = (len - done).min(DEALLOCATE_CHUNK);
                    blocking(self.backend.deallocate(done, n, false, ExecMode::Blocking))?;
                    done += n;
                    ticket.set_progress(done, len);
                }
            }
            Work::Overwrite {
                block,
                passes,
                invert,
            } => {
                let chunk = repeat_to(block, WRITE_CHUNK);
                let inverted: Vec<u8> = chunk.iter().map(|b| !b).collect();
                let total = len.saturating_mul(u64::from(*passes));
                for pass in 0..*passes {
                    // Passes left including this one even: the inverted pattern.
                    let buf = if *invert && (*passes - pass) % 2 == 0 {
                        &inverted
                    } else {
                        &chunk
                    };
                    let mut done = 0u64;
                    let mut unflushed = 0u64;
                    while done < len {
                        let n = (len - done).min(buf.len() as u64);
                        // n <= buf.len(), a usize.
                        let data = &buf[..n as usize];
                        blocking(self.backend.write(data, done, false, ExecMode::Blocking))?;
                        done += n;
                        unflushed += n;
                        // Write back as we go: the progress indication then reports
                        // what is on the medium, and dirty pages stay bounded instead
                        // of piling up for one long flush at the end.
                        if self.flush && unflushed >= WRITEBACK_EVERY {
                            blocking(self.backend.flush(ExecMode::Blocking))?;
                            unflushed = 0;
                        }
                        let before = u64::from(pass).saturating_mul(len);
                        ticket.set_progress(before.saturating_add(done), total);
                    }
                }
            }
        }
        if self.flush && self.work != Work::Nothing {
            blocking(self.backend.flush(ExecMode::Blocking))?;
        }
        Ok(())
    }
}

/// A Blocking-mode backend outcome; `None` cannot happen there but is an error, not a
/// panic, if a backend ever returns it.
fn blocking(o: Option<io::Result<()>>) -> io::Result<()> {
    o.unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into()))
}

/// `block` repeated to at most `max` bytes (at least one block).
fn repeat_to(block: &[u8], max: usize) -> Vec<u8> {
    let per = (max / block.len().max(1)).max(1);
    block.repeat(per)
}

/// Start `job` under `ticket` on a thread of its own. With `immed` the command
/// completes at once; without, this (the command's I/O) thread waits for the outcome,
/// or until the command is aborted ([`MediumState::detach_waiter`]). `failed` is the
/// sense a failure is reported with.
pub(crate) fn start<B: Backend>(
    job: MediumJob<B>,
    ticket: Ticket,
    immed: bool,
    failed: Sense,
) -> Result<(), Sense> {
    let state = ticket.state.clone();
    let waiter = (!immed).then(|| {
        let w = Arc::new(Waiter::default());
        *state.waiter.lock() = Some(w.clone());
        w
    });
    let name = format!("medium-{}", job.name);
    // The job and ticket move into the closure; if the thread cannot be created they
    // come back through the error path only as a dropped closure, so hand them over
    // via a slot to run or abandon them here.
    let slot = Arc::new(Mutex::new(Some((job, ticket))));
    let theirs = slot.clone();
    let done = waiter.clone();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        if let Some((job, ticket)) = theirs.lock().take() {
            // The outcome is also in the state (failure mode) and the log.
            let ok = job.run(ticket).is_ok();
            if let Some(w) = done {
                w.settle(WaitEnd::Finished(ok));
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("cannot start a background medium operation: {e}");
        let taken = slot.lock().take();
        state.waiter.lock().take();
        return match taken {
            // The command can still wait for it here.
            Some((job, ticket)) if !immed => job.run(ticket).map_err(|_| failed),
            Some((_, ticket)) => {
                ticket.abandon();
                Err(Sense::INTERNAL_FAILURE)
            }
            None => Err(Sense::INTERNAL_FAILURE),
        };
    }
    let Some(w) = waiter else {
        return Ok(());
    };
    let end = w.wait();
    // Finished: the slot is ours to clear (a detach took it already).
    let mut slot = state.waiter.lock();
    if slot.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &w)) {
        *slot = None;
    }
    match end {
        WaitEnd::Finished(true) => Ok(()),
        WaitEnd::Finished(false) => Err(failed),
        // The task is aborted: nobody reads this answer.
        WaitEnd::Detached => Err(Sense::COMMAND_ABORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_follows_the_phase() {
        let st = Arc::new(MediumState::default());
        let read = [0x28u8, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let tur = [0u8; 6];
        let inquiry = [0x12u8, 0, 0, 0, 36, 0];
        assert!(st.gate(&read).is_ok() && st.pending_sense().is_none());
        let t = st.begin(OpKind::Sanitize, false).unwrap();
        t.set_progress(1, 4);
        let busy = SANITIZE_IN_PROGRESS;
        assert_eq!(st.gate(&tur).unwrap_err().progress, Some(0x4000));
        assert_eq!(st.gate(&read).unwrap_err().asc, busy.asc);
        assert!(st.gate(&inquiry).is_ok());
        assert_eq!(st.pending_sense().map(|s| s.ascq), Some(0x1B));
        // A second operation is refused while one runs.
        assert_eq!(
            st.begin(OpKind::Format, false).err().map(|s| s.ascq),
            Some(0x1B)
        );
        drop(t); // unended: a failure, restricted (AUSE=0)
        assert_eq!(st.gate(&read), Err(SANITIZE_FAILED));
        assert!(st.gate(&tur).is_ok());
        assert_eq!(st.pending_sense(), Some(SANITIZE_FAILED));
        assert!(st.failed_restricted());
        assert!(st.exit_failure_mode().is_err());
        // Format is refused in failure mode, a new sanitize is allowed and ends it.
        assert_eq!(st.begin(OpKind::Format, false).err(), Some(SANITIZE_FAILED));
        let mut t = st.begin(OpKind::Sanitize, true).unwrap();
        t.end(false);
        assert!(!st.failed_restricted());
        assert_eq!(st.exit_failure_mode(), Ok(()));
        assert!(st.gate(&read).is_ok());
        // Outside failure mode EXIT FAILURE MODE has nothing to do.
        assert_eq!(st.exit_failure_mode(), Ok(()));
        let t = st.begin(OpKind::Format, false).unwrap();
        assert_eq!(st.gate(&tur).unwrap_err().ascq, 0x04);
        t.abandon();
        assert!(st.gate(&read).is_ok());
    }

    #[test]
    fn progress_is_a_fraction_of_65536() {
        let st = Arc::new(MediumState::default());
        let t = st.begin(OpKind::Format, false).unwrap();
        for (done, total, want) in [(0, 10, 0), (5, 10, 32768), (10, 10, 65535), (1, 0, 0)] {
            t.set_progress(done, total);
            assert_eq!(st.pending_sense().unwrap().progress, Some(want));
        }
        t.set_progress(u64::MAX, u64::MAX);
        assert_eq!(st.pending_sense().unwrap().progress, Some(65535));
    }

    #[test]
    fn repeat_fills_whole_blocks() {
        assert_eq!(repeat_to(&[1, 2], 5), vec![1, 2, 1, 2]);
        assert_eq!(repeat_to(&[7; 8], 4), vec![7; 8]);
    }
}
