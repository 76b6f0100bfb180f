//! The command lifecycle of one I_T nexus, the same for every target driver (docs/scst-reference.md
//! 4.1, 5.2; SAM-5 8.6): a transport hands over a command once its data-out is in,
//! and the core takes it through LUN lookup, its task set (SIMPLE / ORDERED / HEAD OF
//! QUEUE), the checks SCST makes when a task becomes enabled (unit attention, SPC-2 and
//! persistent reservations, ALUA state, read-only), execution (inline when the device
//! cannot block, else on the I/O pool or its own asynchronous engine) and completion.
//! Task management (ABORT TASK, ABORT/CLEAR TASK SET, LUN and target reset) acts on the
//! same task sets.
//!
//! The shape is sans-I/O: a [`Nexus`] is owned by the transport's thread of control for
//! the session (one connection task for iSCSI, one virtqueue worker for vhost-user), so
//! it needs no lock. The transport calls [`Nexus::submit`], [`Nexus::tmf`] and, for
//! commands that finished on another thread, [`Nexus::complete`]; after each call it
//! drains [`Nexus::poll_event`] for what to send: responses, silently ended tasks and
//! TMF results. Commands that finish off the transport's thread come back through the
//! [`CompletionQueue`] the transport gave the nexus, which wakes it; it then hands them
//! to [`Nexus::complete`] on its own thread.
//!
//! Each submitted command carries a transport context `T` (for iSCSI: the ITT's LUN
//! field, the expected length, the buffer budget it holds) that the core hands back
//! with the response, so the transport keeps no second table of submitted commands.
//!
//! Time, for latency (root attribute `measure_latency`), comes from the transport's
//! turns, as SCST measures from a command's receipt to its response's transmission:
//! a command arrives at the time of its turn (the clock is read once per turn, at its
//! first command) and its latency ends when the transport calls [`Nexus::sent`] after
//! handing its response to the wire. The transport calls [`Nexus::end_turn`] before
//! it waits for more input. With latency off, the nexus never reads the clock.

use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Instant;

use scsi_wire::Sense;

use crate::cmd::{Cmd, ExecMode, Response, TaskAttr};
use crate::registry::{DeviceEntry, Scst};
use crate::session::{Route, Session, TgtDev, TmfStatus};
use crate::stats::Direction;
use crate::taskset::TaskSet;

/// Where a command that finished off the transport's thread (on the I/O pool, or in a
/// device's asynchronous engine) is delivered. Called from any thread; the transport
/// wakes up and passes `(tag, resp)` to [`Nexus::complete`] on its own thread.
pub trait CompletionQueue: Send + Sync {
    fn push(&self, tag: u64, resp: Response);
}

/// A task management function (SAM-5 7), as the transport decoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tmf {
    /// ABORT TASK of the command `tag` on `lun`.
    AbortTask {
        lun: u64,
        tag: u64,
    },
    AbortTaskSet {
        lun: u64,
    },
    ClearTaskSet {
        lun: u64,
    },
    ClearAca {
        lun: u64,
    },
    LunReset {
        lun: u64,
    },
    /// TARGET WARM RESET (and the SCSI part of a cold one).
    TargetReset,
    /// I_T NEXUS RESET (SAM-5 7.6): this nexus's tasks on every LUN end, and the nexus
    /// is treated as lost and re-established (SPC-2 reservations go, I_T NEXUS LOSS
    /// OCCURRED is reported on each LUN).
    ItNexusReset,
    /// QUERY TASK (SAM-5 7.8): whether the command `tag` on `lun` is still in the task
    /// set ([`TmfStatus::Succeeded`]) or not ([`TmfStatus::Complete`]).
    QueryTask {
        lun: u64,
        tag: u64,
    },
    /// QUERY TASK SET (SAM-5 7.9): whether any command of this nexus is in `lun`'s
    /// task set.
    QueryTaskSet {
        lun: u64,
    },
}

/// What the transport is told, in the order it must act on it.
#[derive(Debug)]
pub enum Event<T> {
    /// The command `tag` is done: send `resp` (status, sense, data-in).
    Respond { tag: u64, ctx: T, resp: Response },
    /// The command `tag` ended without a response (aborted by a TMF, a reset from
    /// another nexus, or the session closing).
    Aborted { tag: u64, ctx: T },
    /// The TMF `tag` whose [`Nexus::tmf`] returned None has finished: the aborted
    /// commands it waited for are gone.
    TmfDone { tag: u64, status: TmfStatus },
}

/// A hasher for maps keyed by transport tags and LUNs. The keys come from the
/// initiator but only index its own nexus, whose size the transport's window bounds,
/// so colliding keys slow nobody else; SipHash would cost a few percent of the
/// per-command CPU for no gain. A multiplicative hash spreads sequential tags well.
#[derive(Default)]
pub struct IntHasher(u64);

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

/// A hash map keyed by integers from the initiator, with [`IntHasher`].
pub type IntMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Where a command in the table is. Commands answered inline never enter it.
enum State {
    /// In its task set behind an ORDERED task (or behind one that is).
    Held(Cmd),
    /// Enabled and running elsewhere (the I/O pool, a device's engine) through the
    /// I_T_L nexus `td` (None only while a released held task is being started).
    Running { td: Option<Arc<TgtDev>> },
}

/// How an enabled command went.
enum Started {
    /// Answered already: inline by the device through `td`, or by the core (`td`
    /// None: its LUN is looked up again, off the data path, to count it).
    Done(Response, Option<Arc<TgtDev>>),
    /// Running elsewhere (I/O pool, a device's engine) through `td`; it completes
    /// through the [`CompletionQueue`].
    Away(Arc<TgtDev>),
}

struct Task<T> {
    lun: u64,
    attr: TaskAttr,
    ctx: T,
    state: State,
    /// Aborted while running: its result is dropped when it comes.
    aborted: bool,
    /// What the statistics count it as.
    dir: Direction,
    bytes: u64,
    /// When it arrived (its turn's time), if latency is measured.
    received: Option<Instant>,
}

/// A measured command answered and not yet sent: its latency ends at [`Nexus::sent`].
struct Unsent {
    td: Arc<TgtDev>,
    dir: Direction,
    bytes: u64,
    received: Instant,
}

impl Unsent {
    /// Same LUN, direction, size class and arrival: the same latency cell and value.
    fn same_sample(&self, o: &Unsent) -> bool {
        self.received == o.received
            && self.dir == o.dir
            && Arc::ptr_eq(&self.td, &o.td)
            && (self.bytes == o.bytes
                || crate::latency::size_class(self.bytes) == crate::latency::size_class(o.bytes))
    }

    /// Record it, `n` times, as sent at `now`.
    fn record(self, now: Instant, n: u64) {
        let took = now.saturating_duration_since(self.received);
        self.td.stats.record_latency(self.dir, self.bytes, took, n);
    }
}

/// Answered commands whose latency waits for a [`Nexus::sent`]; beyond this many the
/// nexus records them itself, so a transport that never calls it only loses accuracy.
const MAX_UNSENT: usize = 1024;

/// A TMF answered once the running commands it aborted have finished.
struct PendingTmf {
    tag: u64,
    waiting: Vec<u64>,
}

/// The command lifecycle of one I_T nexus (see the module docs).
pub struct Nexus<T> {
    scst: Arc<Scst>,
    session: Arc<Session>,
    done: Arc<dyn CompletionQueue>,
    tasks: IntMap<u64, Task<T>>,
    /// One task set per LUN (SCST's default TST 001b: per I_T nexus).
    task_sets: IntMap<u64, TaskSet<u64>>,
    /// Held tasks that ordering now lets start, oldest first.
    ready: VecDeque<u64>,
    events: VecDeque<Event<T>>,
    tmfs: Vec<PendingTmf>,
    /// While latency is measured: this turn's time, read at its first command.
    turn: Option<Instant>,
    unsent: Vec<Unsent>,
}

/// Commands answered in the last turn still have their latency recorded (and their
/// tgt_devs released) when the transport ends without a last [`Nexus::sent`].
impl<T> Drop for Nexus<T> {
    fn drop(&mut self) {
        self.sent();
    }
}

impl<T> Nexus<T> {
    pub fn new(scst: Arc<Scst>, session: Arc<Session>, done: Arc<dyn CompletionQueue>) -> Self {
        Nexus {
            scst,
            session,
            done,
            tasks: IntMap::default(),
            task_sets: IntMap::default(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            tmfs: Vec::new(),
            turn: None,
            unsent: Vec::new(),
        }
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Commands submitted and not yet answered or ended.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The command `tag` is in the nexus.
    pub fn contains(&self, tag: u64) -> bool {
        self.tasks.contains_key(&tag)
    }

    /// Commands executing now (not held, not answered).
    pub fn running(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| matches!(t.state, State::Running { .. }))
            .count()
    }

    /// The next thing for the transport to do, in order.
    pub fn poll_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }

    /// A command with all its data-out: it enters its LUN's task set and, when ordering
    /// allows, is checked and executed. `tag` must not name a command still in the
    /// nexus (the transport rejects duplicates before).
    pub fn submit(&mut self, tag: u64, cmd: Cmd, ctx: T) {
        let (lun, attr) = (cmd.lun, cmd.attr);
        // No clock read unless latency is measured; then one per turn.
        let received = self
            .scst
            .measure_latency()
            .then(|| *self.turn.get_or_insert_with(Instant::now));
        let enabled = self
            .task_sets
            .entry(lun)
            .or_default()
            .admit(attr, tag)
            .is_some();
        let mut task = Task {
            lun,
            attr,
            ctx,
            state: State::Running { td: None },
            aborted: false,
            dir: Direction::of(&cmd),
            bytes: Direction::bytes_of(&cmd),
            received,
        };
        if !enabled {
            task.state = State::Held(cmd);
            self.tasks.insert(tag, task);
            return;
        }
        // A command answered inline (most are) never enters the table: nothing can
        // reach it between its start and its answer on this thread.
        match self.start(tag, cmd) {
            Started::Done(resp, td) => self.retire(tag, task, resp, td),
            Started::Away(td) => {
                task.state = State::Running { td: Some(td) };
                self.tasks.insert(tag, task);
            }
        }
        self.run_ready();
    }

    /// A command that finished on another thread (through the [`CompletionQueue`]).
    pub fn complete(&mut self, tag: u64, resp: Response) {
        self.finish(tag, resp);
        self.run_ready();
    }

    /// The responses drained from [`Nexus::poll_event`] so far are on the wire: the
    /// latency of their commands ends now. Reads the clock only if one was measured.
    pub fn sent(&mut self) {
        if self.unsent.is_empty() {
            return;
        }
        if !self.scst.measure_latency() {
            // Switched off meanwhile: its tables were cleared, and stay so.
            self.unsent.clear();
            return;
        }
        let now = Instant::now();
        // The commands of a turn arrived at one time and are sent at one time: a run
        // of them on one LUN, of one direction and size class, is one sample n times.
        let mut run: Option<(Unsent, u64)> = None;
        for u in self.unsent.drain(..) {
            if let Some((r, n)) = &mut run {
                if r.same_sample(&u) {
                    *n += 1;
                    continue;
                }
            }
            if let Some((r, n)) = run.replace((u, 1)) {
                r.record(now, n);
            }
        }
        if let Some((r, n)) = run {
            r.record(now, n);
        }
    }

    /// The transport is done with what it has read and is about to wait for more:
    /// [`Nexus::sent`], and the next command starts a new turn.
    pub fn end_turn(&mut self) {
        self.sent();
        self.turn = None;
    }

    /// A task management function. Some: its result now. None: it waits for running
    /// commands it aborted, and [`Event::TmfDone`] reports it.
    ///
    /// Commands the transport holds that it has not submitted (waiting for data-out)
    /// are the transport's to end; the core knows only submitted ones.
    pub fn tmf(&mut self, tag: u64, tmf: Tmf) -> Option<TmfStatus> {
        let mut waiting = Vec::new();
        let lun_known = |s: &Session, lun| s.luns().get(lun).is_some();
        let status = match tmf {
            Tmf::AbortTask { lun, tag: victim } => match self.tasks.get(&victim) {
                Some(t) if t.lun == lun => {
                    self.abort(victim, &mut waiting);
                    TmfStatus::Complete
                }
                _ => TmfStatus::TaskNotExist,
            },
            Tmf::AbortTaskSet { lun } | Tmf::ClearTaskSet { lun }
                if !lun_known(&self.session, lun) =>
            {
                TmfStatus::LunNotExist
            }
            Tmf::AbortTaskSet { lun } => {
                self.abort_where(|t| t.lun == lun, &mut waiting);
                TmfStatus::Complete
            }
            Tmf::ClearTaskSet { lun } => {
                let _ = self.session.clear_task_set(lun);
                self.abort_where(|t| t.lun == lun, &mut waiting);
                TmfStatus::Complete
            }
            Tmf::ClearAca { .. } => TmfStatus::Complete,
            Tmf::LunReset { lun } => match self.session.lun_reset(lun) {
                Ok(dev) => {
                    self.abort_where(|t| t.lun == lun || t.on_device(&dev), &mut waiting);
                    TmfStatus::Complete
                }
                Err(e) => e,
            },
            Tmf::TargetReset => {
                self.session.target_reset();
                self.abort_where(|_| true, &mut waiting);
                TmfStatus::Complete
            }
            Tmf::ItNexusReset => {
                self.session.it_nexus_reset();
                self.abort_where(|_| true, &mut waiting);
                TmfStatus::Complete
            }
            Tmf::QueryTask { lun, tag: victim } => match self.tasks.get(&victim) {
                Some(t) if t.lun == lun && !t.aborted => TmfStatus::Succeeded,
                _ => TmfStatus::Complete,
            },
            Tmf::QueryTaskSet { lun } if !lun_known(&self.session, lun) => TmfStatus::LunNotExist,
            Tmf::QueryTaskSet { lun } => {
                if self.tasks.values().any(|t| t.lun == lun && !t.aborted) {
                    TmfStatus::Succeeded
                } else {
                    TmfStatus::Complete
                }
            }
        };
        self.run_ready();
        if waiting.is_empty() || status != TmfStatus::Complete {
            return Some(status);
        }
        self.tmfs.push(PendingTmf { tag, waiting });
        None
    }

    /// Another nexus reset or cleared `device`'s task set: this nexus's commands on it
    /// end without a response.
    pub fn abort_device(&mut self, device: &Arc<DeviceEntry>) {
        let mut waiting = Vec::new();
        // A held task has not looked its LUN up yet: it is on the device its LUN
        // maps to now.
        let session = self.session.clone();
        let luns = session.luns();
        let held_on = |t: &Task<T>| {
            matches!(t.state, State::Held(_))
                && luns
                    .get(t.lun)
                    .is_some_and(|td| Arc::ptr_eq(&td.device, device))
        };
        self.abort_where(|t| t.on_device(device) || held_on(t), &mut waiting);
        self.run_ready();
    }

    /// The session is ending: held commands go now, running ones end without a
    /// response when they complete. Nothing else starts.
    pub fn close(&mut self) {
        let held: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, State::Held(_)))
            .map(|(&tag, _)| tag)
            .collect();
        for tag in held {
            self.drop_held(tag);
        }
        for t in self.tasks.values_mut() {
            t.aborted = true;
        }
        self.ready.clear();
    }

    /// The task `tag` became enabled: the checks SCST makes at this point, then
    /// execution, inline when the device can, else on the I/O pool.
    fn start(&mut self, tag: u64, mut cmd: Cmd) -> Started {
        let td = match self.session.route(&cmd) {
            Route::Done(resp) => return Started::Done(resp, None),
            Route::Device(td) => td,
        };
        let Some(mut resp) = self.session.execute(&td, &mut cmd, ExecMode::Inline) else {
            // The device cannot resume: it runs the command again, blocking.
            let session = self.session.clone();
            let done = self.done.clone();
            let away = td.clone();
            // What the device logs on the I/O thread names whose command it was: the
            // transport's span (target, initiator, session) goes with the command.
            let span = tracing::Span::current();
            self.scst.io_pool.spawn(move || {
                let _span = span.enter();
                let resp = session
                    .execute(&td, &mut cmd, ExecMode::Blocking)
                    .unwrap_or_else(|| Response::check(Sense::INTERNAL_FAILURE));
                done.push(tag, resp);
            });
            return Started::Away(away);
        };
        if resp.resume.is_some() {
            // The command continues on an I/O thread from where it stopped.
            let session = self.session.clone();
            let done = self.done.clone();
            let away = td.clone();
            let span = tracing::Span::current();
            self.scst.io_pool.spawn(move || {
                let _span = span.enter();
                let resp = session.resume(&td, &mut cmd, resp);
                done.push(tag, resp);
            });
            return Started::Away(away);
        }
        if let Some(d) = resp.deferred.take() {
            // Started asynchronously: the device completes it from another thread.
            let data_out_len = resp.data_out_len;
            // The device's sense format as the command started; the completion comes
            // from the device's engine, past the core's `finish_response`.
            let format = crate::error::sense_format(&*td.device.dev);
            let done = self.done.clone();
            d.on_complete(move |mut resp| {
                resp.data_out_len = data_out_len;
                crate::error::set_format(format, &mut resp);
                done.push(tag, resp);
            });
            return Started::Away(td);
        }
        Started::Done(resp, Some(td))
    }

    /// A command in the table is done.
    fn finish(&mut self, tag: u64, resp: Response) {
        if let Some(mut task) = self.tasks.remove(&tag) {
            let td = match &mut task.state {
                State::Running { td } => td.take(),
                State::Held(_) => None,
            };
            self.retire(tag, task, resp, td);
        }
    }

    /// A task is done: it leaves its task set (releasing what waited behind it), is
    /// answered unless aborted, and TMFs waiting for it may finish.
    fn retire(&mut self, tag: u64, task: Task<T>, resp: Response, td: Option<Arc<TgtDev>>) {
        if let Some(ts) = self.task_sets.get_mut(&task.lun) {
            ts.complete(task.attr, &mut self.ready);
        }
        if !task.aborted {
            // Answered by the core (REPORT LUNS, a unit attention, a conflict): counted
            // on its LUN if the session has it.
            let td = td.or_else(|| self.session.luns().get(task.lun).cloned());
            if let Some(td) = td {
                let (dir, bytes) = (task.dir, task.bytes);
                td.stats.complete(dir, bytes, resp.status);
                if let Some(received) = task.received {
                    self.unsent.push(Unsent {
                        td,
                        dir,
                        bytes,
                        received,
                    });
                    if self.unsent.len() >= MAX_UNSENT {
                        self.sent();
                    }
                }
            }
        }
        self.events.push_back(if task.aborted {
            Event::Aborted { tag, ctx: task.ctx }
        } else {
            Event::Respond {
                tag,
                ctx: task.ctx,
                resp,
            }
        });
        if !self.tmfs.is_empty() {
            self.tmf_task_done(tag);
        }
    }

    /// Start the held tasks ordering released, one after another (not recursively:
    /// a long queue of held tasks that complete inline must not grow the stack).
    fn run_ready(&mut self) {
        while let Some(tag) = self.ready.pop_front() {
            let Some(task) = self.tasks.get_mut(&tag) else {
                continue;
            };
            let State::Held(cmd) = std::mem::replace(&mut task.state, State::Running { td: None })
            else {
                continue;
            };
            match self.start(tag, cmd) {
                Started::Done(resp, td) => {
                    if let Some(task) = self.tasks.get_mut(&tag) {
                        task.state = State::Running { td };
                    }
                    self.finish(tag, resp);
                }
                Started::Away(td) => {
                    if let Some(task) = self.tasks.get_mut(&tag) {
                        task.state = State::Running { td: Some(td) };
                    }
                }
            }
        }
    }

    fn abort_where(&mut self, pred: impl Fn(&Task<T>) -> bool, waiting: &mut Vec<u64>) {
        let tags: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| pred(t))
            .map(|(&tag, _)| tag)
            .collect();
        for tag in tags {
            self.abort(tag, waiting);
        }
    }

    /// Abort one task: held -> it goes now; running -> its result is dropped when it
    /// completes, and `waiting` records it so that the TMF answers after that.
    fn abort(&mut self, tag: u64, waiting: &mut Vec<u64>) {
        let Some(task) = self.tasks.get_mut(&tag) else {
            return;
        };
        match &task.state {
            State::Held(_) => self.drop_held(tag),
            State::Running { td } => {
                if !task.aborted {
                    // Lets a command that waits on work outliving it (a sanitize) end.
                    if let Some(td) = td {
                        td.device.dev.abort_running();
                    }
                }
                task.aborted = true;
                waiting.push(tag);
            }
        }
    }

    fn drop_held(&mut self, tag: u64) {
        let Some(task) = self.tasks.remove(&tag) else {
            return;
        };
        if let Some(ts) = self.task_sets.get_mut(&task.lun) {
            ts.remove_held(|t| *t == tag);
            // What waited behind the task that went may start now.
            ts.release(&mut self.ready);
        }
        self.events.push_back(Event::Aborted { tag, ctx: task.ctx });
    }

    fn tmf_task_done(&mut self, tag: u64) {
        for p in &mut self.tmfs {
            p.waiting.retain(|w| *w != tag);
        }
        let events = &mut self.events;
        self.tmfs.retain(|p| {
            if p.waiting.is_empty() {
                events.push_back(Event::TmfDone {
                    tag: p.tag,
                    status: TmfStatus::Complete,
                });
            }
            !p.waiting.is_empty()
        });
    }
}

impl<T> Task<T> {
    /// Running on `dev` (a held task has not looked its LUN up yet).
    fn on_device(&self, dev: &Arc<DeviceEntry>) -> bool {
        matches!(&self.state, State::Running { td: Some(td) } if Arc::ptr_eq(&td.device, dev))
    }
}
