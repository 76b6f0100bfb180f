//! The full-feature phase of one normal-session connection (RFC 7143 ERL 0), the
//! tokio side: reading and framing PDUs (digests), the vectored writes, the per-thread
//! runtime's lingering, the commands' buffers and the connection's data budget, and
//! the hand-off between the engine and the core.
//!
//! The iSCSI rules are iscsi-engine's [`FullFeature`]: the CmdSN window, a write's
//! immediate/unsolicited/solicited data and its R2Ts, every header sent (Data-In with
//! status folded, SCSI Response, R2T, NOP-In, Text, Logout and TMF responses, Reject),
//! and the NOP-In ping and its timeout as one deadline the task sleeps on.
//!
//! A command whose data-out is in goes to the core's [`Nexus`], which runs its
//! lifecycle (LUN lookup, task set, checks, execution, completion) and TMFs; the
//! connection drains the nexus's events into the engine's responses. One tokio task
//! owns the connection and its nexus; commands that finish elsewhere (the I/O pool, an
//! asynchronous engine) come back through a channel, so no lock guards either.

mod command;
mod response;
mod tmf;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iscsi_engine::full_feature::{Admit, DataOutParams, Timer};
use iscsi_engine::{FullFeature, FullFeatureConfig};
use iscsi_wire::pdu::reject_reason;
use iscsi_wire::{Bhs, Opcode};
use scst_core::{CompletionQueue, DeviceEntry, IntMap, Nexus, Response, Session};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::io::{Pdu, PduReader, PduWriter, RecvError};
use crate::params::ConnParams;
use command::{Incoming, Task};

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

/// Messages from outside the connection task.
pub enum ConnEvent {
    /// Another nexus reset or cleared a device's task set: drop our tasks on it.
    AbortDevice(Arc<DeviceEntry>),
    /// Close the connection (reinstatement, force_close, shutdown).
    Close,
}

/// A command finished off the connection's thread (I/O pool, asynchronous engine).
struct Completion {
    tag: u64,
    resp: Response,
}

/// The core's way back into the connection task for commands that finished elsewhere.
struct DoneQueue(mpsc::UnboundedSender<Completion>);

impl CompletionQueue for DoneQueue {
    fn push(&self, tag: u64, resp: Response) {
        // The connection may be gone; then nobody wants the result.
        let _ = self.0.send(Completion { tag, resp });
    }
}

pub struct Conn {
    session: Arc<Session>,
    p: ConnParams,
    /// The window, the keep-alive pings, the tags: the engine's side of the phase.
    ff: FullFeature,
    /// Commands still collecting data-out, by ITT: the core has not seen them.
    incoming: IntMap<u32, Incoming>,
    /// The core's side of the session: submitted commands, task sets, TMFs.
    nexus: Nexus<Task>,
    out: PduWriter,
    logged_out: bool,
    /// Bytes charged by this connection's commands (at most DATA_BUDGET, or one's).
    charged: usize,
    /// Commands waiting for budget, oldest first (may name commands since gone).
    budget_waiters: VecDeque<u32>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Commands still held when the connection ends go with it.
        self.session.stats.cmds_done(self.outstanding());
    }
}

impl Conn {
    /// Commands the connection holds, whether collecting data or in the core.
    fn outstanding(&self) -> usize {
        self.incoming.len() + self.nexus.len()
    }

    fn reject(&mut self, reason: u8, bhs: &Bhs) {
        let held = self.outstanding();
        let r = self.ff.reject(reason, held);
        self.out.push(r, Some(Bytes::copy_from_slice(&bhs.0)));
    }

    // ---------------------------------------------------------------- receive side

    fn handle_pdu(&mut self, pdu: Pdu) {
        match pdu.bhs.opcode() {
            Some(Opcode::ScsiCommand) => self.on_scsi_command(pdu),
            Some(Opcode::DataOut) => self.on_data_out(pdu),
            Some(Opcode::NopOut) => self.on_nop_out(pdu),
            Some(Opcode::TaskMgmtRequest) => self.on_tmf(pdu),
            Some(Opcode::LogoutRequest) => self.on_logout(pdu),
            Some(Opcode::TextRequest) => self.on_text(pdu),
            // ERL 0: no SNACK support.
            Some(Opcode::Snack) => self.reject(reject_reason::COMMAND_NOT_SUPPORTED, &pdu.bhs),
            Some(Opcode::LoginRequest) => self.reject(reject_reason::PROTOCOL_ERROR, &pdu.bhs),
            // A target opcode from the initiator is a protocol error.
            Some(o) if !o.is_initiator() => self.reject(reject_reason::PROTOCOL_ERROR, &pdu.bhs),
            _ => self.reject(reject_reason::COMMAND_NOT_SUPPORTED, &pdu.bhs),
        }
    }

    /// CmdSN rules (RFC 7143 4.2.2.1). Returns false when the PDU must be ignored.
    fn accept_cmd_sn(&mut self, bhs: &Bhs) -> bool {
        let held = self.outstanding();
        match self.ff.admit(bhs, held) {
            Admit::Immediate | Admit::InOrder => true,
            Admit::OutOfOrder { cmd_sn, expected } => {
                log::debug!(
                    "{}: CmdSN {cmd_sn} outside the window (expected {expected}): ignored",
                    self.session.initiator_name,
                );
                false
            }
            Admit::BeyondMax { cmd_sn, max } => {
                log::debug!(
                    "{}: CmdSN {cmd_sn} beyond MaxCmdSN {max}: ignored",
                    self.session.initiator_name
                );
                false
            }
        }
    }

    fn on_nop_out(&mut self, pdu: Pdu) {
        let held = self.outstanding();
        if let Some(b) = self.ff.nop_out(&pdu.bhs, pdu.data.len() as u32, held) {
            self.out.push(b, Some(pdu.data));
        }
    }

    fn on_logout(&mut self, pdu: Pdu) {
        // The nexus ends before the initiator hears so: one that logs straight back in
        // must not meet this session's reservation or medium-removal prevention.
        self.session.unregister();
        let held = self.outstanding();
        let b = self.ff.logout(&pdu.bhs, held);
        self.out.push(b, None);
        self.logged_out = true;
    }

    fn on_text(&mut self, pdu: Pdu) {
        let held = self.outstanding();
        let Some(req) = self.ff.text(&pdu.bhs, &pdu.data, held) else {
            return;
        };
        // Full-feature sessions may ask SendTargets too; answer with what discovery
        // would show this initiator.
        let keys = match &req.send_targets {
            Some(what) => crate::discovery::send_targets(
                &self.p.driver,
                what,
                &self.session.initiator_name,
                self.p.local_addr,
            ),
            None => Vec::new(),
        };
        let (b, data) = self.ff.answer_text(&req, &keys, held);
        self.out.push(b, Some(Bytes::from(data)));
    }

    fn on_event(&mut self, ev: ConnEvent) -> bool {
        match ev {
            ConnEvent::AbortDevice(dev) => {
                self.nexus.abort_device(&dev);
                self.drain_nexus();
                true
            }
            ConnEvent::Close => false,
        }
    }
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
    reader.set_digests(iscsi_wire::Digests {
        header: p.header_digest,
        data: p.data_digest,
    });
    let ff = FullFeature::new(
        FullFeatureConfig {
            stat_sn,
            exp_cmd_sn,
            queued_commands: p.queued_commands,
            nop_in_interval: p.nop_in_interval,
            nop_in_timeout: p.nop_in_timeout,
            data_out: DataOutParams {
                first_burst_length: p.first_burst_length,
                max_burst_length: p.max_burst_length,
                max_outstanding_r2t: p.max_outstanding_r2t,
                initial_r2t: p.initial_r2t,
                immediate_data: p.immediate_data,
            },
            max_xmit_data_segment_length: p.max_xmit_data_segment_length,
        },
        tokio::time::Instant::now().into_std(),
    );
    let name = session.initiator_name.clone();
    let nexus = Nexus::new(
        p.scst.clone(),
        session.clone(),
        Arc::new(DoneQueue(done_tx)),
    );
    let mut c = Conn {
        session,
        p,
        ff,
        incoming: IntMap::default(),
        nexus,
        out,
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
    // The engine's timers (NOP-In pings and their timeout) in one sleep, re-armed only
    // when the engine's deadline moves, which no command does.
    let mut armed = c.ff.poll_timeout();
    let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(
        armed.unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(3600)),
    ));
    tokio::pin!(timer);
    let linger = crate::net_threads::on_net_thread();
    let mut busy = crate::net_threads::Busy::default();
    let why: String = 'conn: loop {
        let mut handled = 0u32;
        // Everything already received, then everything already completed, then one
        // flush for all the responses that produced.
        loop {
            match reader.next_buffered() {
                Ok(Some(pdu)) => {
                    handled += 1;
                    c.handle_pdu(pdu);
                    if c.out.queued_bytes() > 4 << 20 {
                        if let Err(e) = c.out.flush(&mut wr).await {
                            break 'conn format!("send: {e}");
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => break 'conn format!("receive: {}", RecvError::Protocol(e)),
            }
        }
        if handled > 0 {
            c.ff.received();
        }
        while let Ok(done) = done_rx.try_recv() {
            c.nexus.complete(done.tag, done.resp);
            c.drain_nexus();
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
        let due = c.ff.poll_timeout();
        if due != armed {
            armed = due;
            if let Some(at) = due {
                timer.as_mut().reset(tokio::time::Instant::from_std(at));
            }
        }
        tokio::select! {
            r = reader.fill(&mut rd) => match r {
                Ok(()) => {}
                Err(RecvError::Closed) => break 'conn "closed by the initiator".to_string(),
                Err(e) => break 'conn format!("receive: {e}"),
            },
            Some(done) = done_rx.recv() => {
                c.nexus.complete(done.tag, done.resp);
                c.drain_nexus();
            }
            ev = events.recv() => match ev {
                Some(ev) => if !c.on_event(ev) { break 'conn "closed by the target".to_string() },
                None => break 'conn "closed by the target".to_string(),
            },
            _ = &mut timer, if armed.is_some() => {
                let held = c.outstanding();
                match c.ff.handle_timeout(tokio::time::Instant::now().into_std(), held) {
                    Timer::Idle => {}
                    Timer::Ping(b) => c.out.push(b, None),
                    Timer::Dead => break 'conn "no answer to NOP-In".to_string(),
                }
                // Re-armed from the engine's next deadline on the next turn, even if
                // this wake-up moved nothing.
                armed = None;
            }
        }
    };
    log::info!("{name}: connection ended: {why}");
    // Commands still on I/O threads hold buffers and device references; wait for them
    // so that the session's teardown happens after its last command.
    c.nexus.close();
    c.drain_nexus();
    while c.nexus.running() > 0 {
        match tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await {
            Ok(Some(done)) => {
                c.nexus.complete(done.tag, done.resp);
                c.drain_nexus();
            }
            _ => break,
        }
    }
}
