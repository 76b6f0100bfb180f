//! One normal session's connection in its full-feature phase, behind one surface: the
//! driver reads the socket into [`FullFeatureConnection::recv_buf`], calls
//! [`FullFeatureConnection::handle_next`] for each PDU received, acts on
//! [`FullFeatureConnection::poll_event`] (commands for the core, task management,
//! SendTargets, logout), hands results back ([`respond`], [`release`], [`tmf_acted`],
//! [`tmf_done`], [`answer_text`]), writes out [`FullFeatureConnection::transmit`] and
//! sleeps until [`FullFeatureConnection::poll_timeout`].
//!
//! [`respond`]: FullFeatureConnection::respond
//! [`release`]: FullFeatureConnection::release
//! [`tmf_acted`]: FullFeatureConnection::tmf_acted
//! [`tmf_done`]: FullFeatureConnection::tmf_done
//! [`answer_text`]: FullFeatureConnection::answer_text

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use iscsi_wire::pdu::{self, reject_reason, tmf_response};
use iscsi_wire::{Bhs, Digests, Opcode, WireError};

use super::commands::{Command, DataBudget, Failure, Incoming, SharedBudget, TagMap, Task};
use super::{
    Admit, Framer, FullFeature, FullFeatureConfig, Reply, ResponseSink, TaskInfo, TextRequest,
    Timer, TmfRequest, Transmit,
};

/// What [`FullFeatureConnection::handle_next`] did.
#[derive(Debug)]
pub enum Next {
    /// No whole PDU is buffered (or the engine waits for a TMF's outcome).
    Idle,
    /// A PDU was handled.
    Handled,
    /// A PDU was handled and completed this command: submit it to the core, as for
    /// [`Event::Command`].
    Command(Command),
}

/// What the driver acts on, in order.
#[derive(Debug)]
pub enum Event {
    /// A command whose data-out is all in: submit it to the core. Its [`Task`] comes
    /// back with [`FullFeatureConnection::respond`] or
    /// [`FullFeatureConnection::release`].
    Command(Command),
    /// A command the connection failed before the core saw it: answer it with CHECK
    /// CONDITION and the sense for `why`, through [`FullFeatureConnection::respond`].
    Failed { task: Task, why: Failure },
    /// Task management for the core's task sets. Answer at once with
    /// [`FullFeatureConnection::tmf_acted`]; no further PDU is handled until then.
    TaskManagement { tag: u32, function: TaskManagement },
    /// A text request asking SendTargets: answer with what discovery would show this
    /// initiator ([`FullFeatureConnection::answer_text`]).
    SendTargets(TextRequest),
    /// The initiator logged out: end the session (before the Logout Response, which is
    /// queued, goes out), then close once it is sent.
    LoggedOut,
}

/// A task management function for the core, with the LUN decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskManagement {
    /// The task is in the core (the connection held no data for it).
    AbortTask {
        lun: u64,
        itt: u32,
    },
    AbortTaskSet {
        lun: u64,
    },
    ClearTaskSet {
        lun: u64,
    },
    LunReset {
        lun: u64,
    },
    ClearAca {
        lun: u64,
    },
    /// Target warm or cold reset; a cold one closes the connection after its response.
    TargetReset {
        cold: bool,
    },
}

/// What the core made of a task management function (SAM-5 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfOutcome {
    Complete,
    TaskNotExist,
    LunNotExist,
    NotSupported,
    Rejected,
}

impl TmfOutcome {
    fn response_code(self) -> u8 {
        match self {
            TmfOutcome::Complete => tmf_response::COMPLETE,
            TmfOutcome::TaskNotExist => tmf_response::TASK_DOES_NOT_EXIST,
            TmfOutcome::LunNotExist => tmf_response::LUN_DOES_NOT_EXIST,
            TmfOutcome::NotSupported => tmf_response::NOT_SUPPORTED,
            TmfOutcome::Rejected => tmf_response::REJECTED,
        }
    }
}

/// Why the connection ends on the target's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The Logout Response is the last PDU.
    Logout,
    /// TARGET COLD RESET: its response is the last PDU.
    ColdReset,
    /// A NOP-In ping went unanswered for NopInTimeout.
    NopInTimeout,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ending::Logout => "logout",
            Ending::ColdReset => "target cold reset",
            Ending::NopInTimeout => "no answer to NOP-In",
        })
    }
}

/// One connection of a normal session in full feature (ERL 0, one connection per
/// session).
#[derive(Debug)]
pub struct FullFeatureConnection {
    framer: Framer,
    pub(super) ff: FullFeature,
    pub(super) tx: Transmit,
    /// Commands still collecting data-out (or budget), by ITT: the core has not seen
    /// them.
    pub(super) incoming: TagMap<Incoming>,
    pub(super) budget: DataBudget,
    pub(super) events: VecDeque<Event>,
    /// Commands handed to the driver and not yet answered or released.
    pub(super) submitted: usize,
    /// A task management function the driver is acting on.
    tmf_waiting: Option<(u32, TaskManagement)>,
    ending: Option<Ending>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").field("cmd", &self.cmd).finish()
    }
}

impl FullFeatureConnection {
    /// The full-feature phase of a connection whose login ended at `now`. `received`:
    /// the bytes the login phase read past its last PDU
    /// ([`crate::Connection::take_received`]); `max_recv`: our
    /// MaxRecvDataSegmentLength.
    /// `shared`: the daemon-wide buffer budget the commands' buffers are charged to.
    pub fn new(
        config: FullFeatureConfig,
        digests: Digests,
        max_recv: u32,
        received: &[u8],
        shared: Arc<dyn SharedBudget>,
        now: Instant,
    ) -> FullFeatureConnection {
        let mut framer = Framer::new(max_recv, received);
        framer.set_digests(digests);
        FullFeatureConnection {
            framer,
            ff: FullFeature::new(config, now),
            tx: Transmit::new(digests),
            incoming: TagMap::default(),
            budget: DataBudget::new(shared),
            events: VecDeque::new(),
            submitted: 0,
            tmf_waiting: None,
            ending: None,
        }
    }

    /// The buffer to read the socket into (append only), with room for one read.
    #[inline]
    pub fn recv_buf(&mut self) -> &mut BytesMut {
        self.framer.recv_buf()
    }

    /// Frame and handle the next PDU received, if a whole one is buffered. `in_core`
    /// tells whether the core holds a command with this ITT (a new command may not
    /// reuse it; ABORT TASK asks the core for it). The driver acts on what it returns,
    /// then on [`FullFeatureConnection::poll_event`], before the next call. An error
    /// ends the connection.
    #[inline]
    pub fn handle_next<C: Fn(u32) -> bool>(&mut self, in_core: &C) -> Result<Next, WireError> {
        if self.tmf_waiting.is_some() || self.ending.is_some() {
            return Ok(Next::Idle);
        }
        let Some(pdu) = self.framer.next_pdu()? else {
            return Ok(Next::Idle);
        };
        self.ff.received();
        // A command complete on its own PDU (most are) goes straight back to the driver,
        // not through the event queue.
        let ready = match pdu.bhs.opcode() {
            Some(Opcode::ScsiCommand) => self.on_scsi_command(pdu, in_core),
            Some(Opcode::DataOut) => self.on_data_out(pdu),
            _ => {
                self.handle_other(pdu, in_core);
                None
            }
        };
        Ok(match ready {
            Some(cmd) => Next::Command(cmd),
            None => Next::Handled,
        })
    }

    fn handle_other<C: Fn(u32) -> bool>(&mut self, pdu: super::Pdu, in_core: &C) {
        match pdu.bhs.opcode() {
            Some(Opcode::NopOut) => self.on_nop_out(pdu),
            Some(Opcode::TaskMgmtRequest) => self.on_tmf(&pdu.bhs, in_core),
            Some(Opcode::LogoutRequest) => self.on_logout(&pdu.bhs),
            Some(Opcode::TextRequest) => self.on_text(&pdu.bhs, &pdu.data),
            // ERL 0: no SNACK support.
            Some(Opcode::Snack) => self.reject(reject_reason::COMMAND_NOT_SUPPORTED, &pdu.bhs),
            Some(Opcode::LoginRequest) => self.reject(reject_reason::PROTOCOL_ERROR, &pdu.bhs),
            // A target opcode from the initiator is a protocol error.
            Some(o) if !o.is_initiator() => self.reject(reject_reason::PROTOCOL_ERROR, &pdu.bhs),
            _ => self.reject(reject_reason::COMMAND_NOT_SUPPORTED, &pdu.bhs),
        }
    }

    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What to send, in order; the driver writes it out and clears it.
    #[inline]
    pub fn transmit(&mut self) -> &mut Transmit {
        &mut self.tx
    }

    /// When [`FullFeatureConnection::handle_timeout`] is to be called next, if ever.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ff.poll_timeout()
    }

    /// A deadline from [`FullFeatureConnection::poll_timeout`] passed (or may have).
    pub fn handle_timeout(&mut self, now: Instant) {
        let held = self.outstanding();
        match self.ff.handle_timeout(now, held) {
            Timer::Idle => {}
            Timer::Ping(b) => self.tx.push(b, None),
            Timer::Dead => self.ending = Some(Ending::NopInTimeout),
        }
    }

    /// Set once the connection is to close after what is queued has been sent.
    #[inline]
    pub fn ending(&self) -> Option<Ending> {
        self.ending
    }

    /// Commands the connection holds, whether collecting data or with the driver: they
    /// close the CmdSN window as they pile up.
    #[inline]
    pub fn outstanding(&self) -> usize {
        self.incoming.len() + self.submitted
    }

    /// A command's response, from the core or for [`Event::Failed`]: `data` is what
    /// the command produced (the initiator gets at most its EDTL), `sense` the sense
    /// data as it goes on the wire (fixed or descriptor format).
    #[inline]
    pub fn respond(
        &mut self,
        task: Task,
        status: u8,
        data: Bytes,
        sense: Option<&[u8]>,
        data_out_len: Option<u32>,
    ) {
        let mut sense_seg = Vec::new();
        if let Some(s) = sense {
            pdu::encode_sense_segment(s, &mut sense_seg);
        }
        let info = TaskInfo {
            itt: task.itt(),
            lun: task.lun_raw(),
            edtl: task.edtl(),
            read: task.read(),
        };
        let reply = Reply {
            status,
            data_len: data.len() as u32,
            data_out_len,
            sense_len: sense_seg.len() as u32,
        };
        // The window this response announces still counts the command it answers.
        let held = self.outstanding();
        let send = super::data_in_len(&info, &reply);
        let mut sink = Sink {
            tx: &mut self.tx,
            data: (send > 0).then(|| {
                let mut d = data;
                d.truncate(send as usize);
                d
            }),
            sense: sense_seg,
        };
        self.ff.respond(&info, &reply, held, &mut sink);
        self.release(task);
    }

    /// A command handed out ended without a response (aborted): forget it.
    #[inline]
    pub fn release(&mut self, task: Task) {
        self.budget.release(&task);
        self.submitted -= 1;
    }

    /// The answer to [`Event::SendTargets`].
    pub fn answer_text(&mut self, req: &TextRequest, keys: &[(String, String)]) {
        let held = self.outstanding();
        let (b, data) = self.ff.answer_text(req, keys, held);
        self.tx.push(b, Some(Bytes::from(data)));
    }

    pub(super) fn reject(&mut self, reason: u8, bhs: &Bhs) {
        let held = self.outstanding();
        let r = self.ff.reject(reason, held);
        self.tx.push(r, Some(Bytes::copy_from_slice(&bhs.0)));
    }

    /// CmdSN rules (RFC 7143 4.2.2.1). False: the PDU is ignored.
    pub(super) fn accept_cmd_sn(&mut self, bhs: &Bhs) -> bool {
        let held = self.outstanding();
        matches!(self.ff.admit(bhs, held), Admit::Immediate | Admit::InOrder)
    }

    fn on_nop_out(&mut self, pdu: super::Pdu) {
        let held = self.outstanding();
        if let Some(b) = self.ff.nop_out(&pdu.bhs, pdu.data.len() as u32, held) {
            self.tx.push(b, Some(pdu.data));
        }
    }

    fn on_logout(&mut self, bhs: &Bhs) {
        let held = self.outstanding();
        let b = self.ff.logout(bhs, held);
        self.tx.push(b, None);
        self.events.push_back(Event::LoggedOut);
        self.ending = Some(Ending::Logout);
    }

    fn on_text(&mut self, bhs: &Bhs, data: &[u8]) {
        let held = self.outstanding();
        let Some(req) = self.ff.text(bhs, data, held) else {
            return;
        };
        if req.send_targets.is_some() {
            self.events.push_back(Event::SendTargets(req));
        } else {
            self.answer_text(&req, &[]);
        }
    }

    // ------------------------------------------------------------ task management

    fn on_tmf<C: Fn(u32) -> bool>(&mut self, bhs: &Bhs, in_core: &C) {
        if !self.accept_cmd_sn(bhs) {
            return;
        }
        let tag = bhs.itt();
        let decode = scsi_wire::lun::decode_lun;
        let function = match TmfRequest::decode(bhs) {
            TmfRequest::AbortTask {
                lun,
                rtt,
                ref_cmd_sn,
                cmd_sn,
            } => {
                let lun = decode(lun);
                if let Some(inc) = self.incoming.get(&rtt) {
                    let outcome = if inc.cmd.lun == lun {
                        self.drop_incoming_where(|i| i.cmd.task.itt() == rtt);
                        TmfOutcome::Complete
                    } else {
                        TmfOutcome::TaskNotExist
                    };
                    return self.tmf_done(tag, outcome);
                }
                if !in_core(rtt) {
                    let outcome = if self.ff.never_received(ref_cmd_sn, cmd_sn) {
                        TmfOutcome::Complete
                    } else {
                        TmfOutcome::TaskNotExist
                    };
                    return self.tmf_done(tag, outcome);
                }
                TaskManagement::AbortTask { lun, itt: rtt }
            }
            TmfRequest::AbortTaskSet { lun } => TaskManagement::AbortTaskSet { lun: decode(lun) },
            TmfRequest::ClearTaskSet { lun } => TaskManagement::ClearTaskSet { lun: decode(lun) },
            TmfRequest::LunReset { lun } => TaskManagement::LunReset { lun: decode(lun) },
            TmfRequest::ClearAca { lun } => TaskManagement::ClearAca { lun: decode(lun) },
            TmfRequest::TargetWarmReset => TaskManagement::TargetReset { cold: false },
            TmfRequest::TargetColdReset => TaskManagement::TargetReset { cold: true },
            TmfRequest::TaskReassign => {
                let held = self.outstanding();
                let b = self.ff.tmf_response(
                    tag,
                    tmf_response::ALLEGIANCE_REASSIGNMENT_UNSUPPORTED,
                    held,
                );
                return self.tx.push(b, None);
            }
            TmfRequest::Unsupported(_) => return self.tmf_done(tag, TmfOutcome::NotSupported),
        };
        self.tmf_waiting = Some((tag, function));
        self.events
            .push_back(Event::TaskManagement { tag, function });
    }

    /// The answer to [`Event::TaskManagement`]: what the core did, or `None` when it
    /// answers later ([`FullFeatureConnection::tmf_done`]) because aborted commands are
    /// still finishing. The commands still collecting data that the function covers
    /// end here, without a response.
    pub fn tmf_acted(&mut self, tag: u32, outcome: Option<TmfOutcome>) {
        let Some((waiting, function)) = self.tmf_waiting.take() else {
            return;
        };
        debug_assert_eq!(waiting, tag);
        // A function on a LUN that does not exist leaves that LUN's commands alone:
        // they get their own LOGICAL UNIT NOT SUPPORTED.
        let applies = outcome.is_none_or(|o| o == TmfOutcome::Complete);
        match function {
            TaskManagement::AbortTask { .. } | TaskManagement::ClearAca { .. } => {}
            TaskManagement::AbortTaskSet { lun }
            | TaskManagement::ClearTaskSet { lun }
            | TaskManagement::LunReset { lun } => {
                if applies {
                    self.drop_incoming_where(|i| i.cmd.lun == lun);
                }
            }
            TaskManagement::TargetReset { cold } => {
                self.drop_incoming_where(|_| true);
                if cold {
                    self.ending = Some(Ending::ColdReset);
                }
            }
        }
        if let Some(outcome) = outcome {
            self.tmf_done(waiting, outcome);
        }
    }

    /// A task management function's response.
    pub fn tmf_done(&mut self, tag: u32, outcome: TmfOutcome) {
        let held = self.outstanding();
        let b = self.ff.tmf_response(tag, outcome.response_code(), held);
        self.tx.push(b, None);
    }
}

/// The transmit queue as the end of one response: the data-in and the sense.
struct Sink<'a> {
    tx: &'a mut Transmit,
    /// The data-in not yet attached; `None` when there is none.
    data: Option<Bytes>,
    sense: Vec<u8>,
}

impl ResponseSink for Sink<'_> {
    #[inline(always)]
    fn data_in(&mut self, bhs: Bhs, len: u32, last: bool) {
        // The last piece takes the buffer itself: slicing a Bytes made from a Vec
        // allocates a shared header, which a one-PDU read (the 4 KiB case) never needs.
        let piece = if last {
            self.data.take().unwrap_or_default()
        } else {
            match &mut self.data {
                Some(d) => d.split_to(len as usize),
                None => Bytes::new(),
            }
        };
        self.tx.push(bhs, Some(piece));
    }

    #[inline(always)]
    fn response(&mut self, bhs: Bhs, sense: bool) {
        let seg = sense.then(|| Bytes::from(std::mem::take(&mut self.sense)));
        self.tx.push(bhs, seg);
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
