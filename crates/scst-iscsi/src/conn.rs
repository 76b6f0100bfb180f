//! The full-feature phase of one normal-session connection (RFC 7143 ERL 0), the
//! tokio side: the socket reads into the engine's receive buffer, the vectored writes
//! of its transmit queue, the per-thread runtime's lingering, the timer, and the
//! hand-off between the engine and the core.
//!
//! The iSCSI side is iscsi-engine's [`FullFeatureConnection`]: framing, the CmdSN
//! window, a write's immediate/unsolicited/solicited data and its R2Ts, the commands'
//! buffers and the connection's data budget, task management against the commands it
//! holds, every header sent, and the NOP-In ping and its timeout.
//!
//! A command whose data-out is in leaves the engine for the core's [`Nexus`], which
//! runs its lifecycle (LUN lookup, task set, checks, execution, completion) and TMFs;
//! the connection drains the nexus's events back into the engine (conn/core.rs). One
//! tokio task owns the connection and its nexus; commands that finish elsewhere (the
//! I/O pool, an asynchronous engine) come back through a channel, so no lock guards
//! either.

mod core;

use std::sync::Arc;
use std::time::Duration;

use iscsi_engine::full_feature::{DataOutParams, FullFeatureConnection, Next, SharedBudget, Task};
use iscsi_engine::FullFeatureConfig;
use iscsi_wire::Digests;
use scst_core::{CompletionQueue, DeviceEntry, Nexus, Response, Scst, Session};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::io::{self, RecvError};
use crate::params::ConnParams;

/// RspTimeout default (scst-reference 6.3): how long sending may make no progress before the
/// connection is given up.
const DEFAULT_RSP_TIMEOUT: u32 = 90;

/// Bytes queued to send past which the connection flushes before handling more PDUs.
const FLUSH_AT: usize = 4 << 20;

pub(crate) use iscsi_engine::full_feature::live_tasks;

/// The core's `scst_max_cmd_mem` as the engine's shared buffer budget; the connection
/// counts as one of the sharers while it lives.
struct CoreBudget(Arc<Scst>);

impl CoreBudget {
    fn new(scst: Arc<Scst>) -> Arc<CoreBudget> {
        scst.cmd_mem.join();
        Arc::new(CoreBudget(scst))
    }
}

impl Drop for CoreBudget {
    fn drop(&mut self) {
        self.0.cmd_mem.leave();
    }
}

impl SharedBudget for CoreBudget {
    #[inline]
    fn try_charge(&self, mine: usize, need: usize) -> bool {
        self.0.cmd_mem.try_charge(mine, need)
    }
    #[inline]
    fn release(&self, bytes: usize) {
        self.0.cmd_mem.release(bytes)
    }
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

/// Why a connection ended on an error.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("receive: {0}")]
    Receive(RecvError),
    #[error("send: {0}")]
    Send(std::io::Error),
}

pub struct Conn {
    session: Arc<Session>,
    p: ConnParams,
    /// The iSCSI side of the connection.
    engine: FullFeatureConnection,
    /// The core's side of the session: submitted commands, task sets, TMFs.
    nexus: Nexus<Task>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Commands still held when the connection ends go with it.
        self.session.stats.set_outstanding(0);
    }
}

impl Conn {
    /// Handle every PDU already received, acting on what each asks of the core before
    /// the next. Returns how many were handled.
    async fn handle_received<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        stall: Option<Duration>,
    ) -> Result<u32, ConnError> {
        let mut handled = 0;
        loop {
            let nexus = &self.nexus;
            let next = self
                .engine
                .handle_next(&|itt| nexus.contains(itt as u64))
                .map_err(|e| ConnError::Receive(RecvError::Protocol(e)))?;
            match next {
                // Nothing was handled, so nothing new is queued.
                Next::Idle => return Ok(handled),
                Next::Handled => self.drain_engine(),
                Next::Command(cmd) => {
                    self.submit(cmd);
                    self.drain_engine();
                }
            }
            handled += 1;
            if self.engine.transmit().queued_bytes() > FLUSH_AT {
                io::flush(self.engine.transmit(), wr, stall)
                    .await
                    .map_err(ConnError::Send)?;
                self.nexus.sent();
            }
        }
    }

    fn complete(&mut self, done: Completion) {
        self.nexus.complete(done.tag, done.resp);
        self.drain_nexus();
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

/// Run the full-feature phase until logout, close or a connection error. The
/// connection's span (scst-iscsi's lib.rs) gets the session's names first, so every line
/// logged on its behalf (here, by the engine, by the core while it handles the session's
/// commands) says whose it is.
pub async fn run(
    stream: TcpStream,
    received: Vec<u8>,
    session: Arc<Session>,
    p: ConnParams,
    stat_sn: u32,
    exp_cmd_sn: u32,
    events: mpsc::UnboundedReceiver<ConnEvent>,
) {
    let span = tracing::Span::current();
    span.record("target", tracing::field::display(&session.target.name));
    span.record(
        "initiator",
        tracing::field::display(&session.initiator_name),
    );
    span.record("session", session.id);
    run_session(stream, received, session, p, stat_sn, exp_cmd_sn, events).await
}

async fn run_session(
    mut stream: TcpStream,
    received: Vec<u8>,
    session: Arc<Session>,
    p: ConnParams,
    stat_sn: u32,
    exp_cmd_sn: u32,
    mut events: mpsc::UnboundedReceiver<ConnEvent>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let digests = Digests {
        header: p.header_digest,
        data: p.data_digest,
    };
    let engine = FullFeatureConnection::new(
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
        digests,
        p.max_recv_data_segment_length,
        &received,
        CoreBudget::new(p.scst.clone()),
        tokio::time::Instant::now().into_std(),
    );
    drop(received);
    let name = session.initiator_name.clone();
    let nexus = Nexus::new(
        p.scst.clone(),
        session.clone(),
        Arc::new(DoneQueue(done_tx)),
    );
    let mut c = Conn {
        session,
        p,
        engine,
        nexus,
    };
    // A peer that takes nothing we send for RspTimeout is gone (or hostile): close
    // rather than hold its responses forever.
    let rsp_timeout =
        crate::params::target_num(&c.session.target, "RspTimeout", DEFAULT_RSP_TIMEOUT).max(1);
    let stall = Some(Duration::from_secs(rsp_timeout as u64));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let mut muted = false;
    let (mut rd, mut wr) = stream.split();
    // The engine's timers (NOP-In pings and their timeout) in one sleep, re-armed only
    // when the engine's deadline moves, which no command does.
    let mut armed = c.engine.poll_timeout();
    let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(
        armed.unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(3600)),
    ));
    tokio::pin!(timer);
    let linger = crate::net_threads::on_net_thread();
    let mut busy = crate::net_threads::Busy::default();
    let why: String = 'conn: loop {
        // Everything already received, then everything already completed, then one
        // flush for all the responses that produced.
        let handled = match c.handle_received(&mut wr, stall).await {
            Ok(n) => n,
            Err(e) => break 'conn e.to_string(),
        };
        while let Ok(done) = done_rx.try_recv() {
            c.complete(done);
        }
        c.engine.pump_budget();
        c.drain_engine();
        c.session.stats.set_outstanding(c.engine.outstanding());
        if !c.engine.transmit().is_empty() {
            if let Err(e) = io::flush(c.engine.transmit(), &mut wr, stall).await {
                break 'conn format!("send: {e}");
            }
        }
        // What this turn read is answered or running, and what it answered is sent:
        // latency ends here, and the next command starts a new turn.
        c.nexus.end_turn();
        if let Some(ending) = c.engine.ending() {
            break 'conn ending.to_string();
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
                match io::fill_now(fd, c.engine.recv_buf()) {
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
        let due = c.engine.poll_timeout();
        if due != armed {
            armed = due;
            if let Some(at) = due {
                timer.as_mut().reset(tokio::time::Instant::from_std(at));
            }
        }
        tokio::select! {
            r = io::fill(&mut rd, c.engine.recv_buf()) => match r {
                Ok(()) => {}
                Err(RecvError::Closed) => break 'conn "closed by the initiator".to_string(),
                Err(e) => break 'conn format!("receive: {e}"),
            },
            Some(done) = done_rx.recv() => c.complete(done),
            ev = events.recv() => match ev {
                Some(ev) => if !c.on_event(ev) { break 'conn "closed by the target".to_string() },
                None => break 'conn "closed by the target".to_string(),
            },
            _ = &mut timer, if armed.is_some() => {
                c.engine.handle_timeout(tokio::time::Instant::now().into_std());
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
            Ok(Some(done)) => c.complete(done),
            _ => break,
        }
    }
}
