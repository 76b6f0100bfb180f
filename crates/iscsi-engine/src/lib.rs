//! The sans-I/O iSCSI target engine (RFC 7143), as quinn-proto is to quinn: the
//! protocol of one connection, fed with received bytes and the current time, polled for
//! the bytes to send, the events for the driver, and when to wake it next. No runtime,
//! no socket, no clock: `now` is always an argument, so tests drive whole exchanges in
//! memory with a fake clock, and the fuzzer drives it with arbitrary PDU sequences.
//!
//! What it covers: the login phase (a type per state: the first request and its
//! admission, security negotiation with one-way and mutual CHAP ([`auth`]), operational
//! negotiation, the transition to full feature), the login timeout, the whole life of a
//! discovery session (SendTargets text exchanges in pieces, NOP-Out, logout), and a
//! normal session's full-feature phase ([`full_feature`]): framing, the CmdSN window, a
//! write's immediate, unsolicited and R2T-solicited data, the commands still collecting
//! data and the connection's buffer budget, task management against them, Data-In and
//! SCSI Response headers with the status folded, NOP-In pings and their timeout,
//! NOP-Out, text, Rejects and logout.
//!
//! What the engine needs from the driver comes two ways: synchronous decisions through
//! the [`LoginHost`] trait (admission of a normal session to a target, CHAP accounts,
//! internal portals, TSIH allocation), and questions that take I/O as query events
//! answered later ([`Event::AccessQuery`], [`Event::SendTargets`]).
//!
//! # Call order
//!
//! ```text
//!   Connection::new(config, now)
//!   loop:
//!     handle_bytes(now, bytes, host) | handle_timeout(now) | answer_*(...)
//!     while let Some(b) = poll_transmit()  -> write b to the socket
//!     while let Some(e) = poll_event()     -> act (answer queries, hand over, close)
//!     sleep until poll_timeout()
//! ```
//!
//! Transmit is drained before events, so a refusal's Login Response is on the wire
//! before the [`Event::Closed`] that follows it is acted on.
//!
//! # The full-feature phase
//!
//! After [`Event::SessionReady`] the [`Connection`] is in [`Phase::FullFeature`] and
//! consumes nothing more: the driver builds a [`full_feature::FullFeatureConnection`]
//! from the negotiated parameters and the bytes already received
//! ([`Connection::take_received`]), and drives it the same way, with one difference
//! that keeps the data path free of copies: the driver reads the socket straight into
//! the engine's buffer, and each PDU's data segment stays a slice of that read.
//!
//! ```text
//!   FullFeatureConnection::new(config, digests, max_recv, take_received(), now)
//!   loop:
//!     read the socket into recv_buf()
//!     loop handle_next(in_core):
//!       Next::Command(c)  -> submit c to the core
//!       then poll_event(): Command, Failed, TaskManagement (-> tmf_acted),
//!                          SendTargets (-> answer_text), LoggedOut
//!       Next::Idle        -> break
//!     per completion:     respond(task, status, data, sense) | release(task)
//!     TMF done later:     tmf_done(tag, outcome)
//!     pump_budget()       (commands that waited for buffer budget go on)
//!     write out transmit(), then clear it; stop once ending() is set
//!     sleep until poll_timeout(); handle_timeout(now)
//! ```
//!
//! Commands leave the engine with their [`full_feature::Task`], which comes back with the
//! response: the connection keeps no second table of the commands the core holds.
//! [`FullFeature`] holds the rules themselves (window, data-out sequencing, headers,
//! keep-alive), each a plain function of the state it is given.

#![forbid(unsafe_code)]

pub mod auth;
mod discovery;
pub mod full_feature;
pub mod host;
mod login;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use iscsi_wire::frame::{self, Digests};
use iscsi_wire::negotiate::SCST_MAX_DATA_SEGMENT;
use iscsi_wire::Bhs;

pub use auth::Accounts;
pub use full_feature::{FullFeature, FullFeatureConfig};
pub use host::{AdmissionRequest, Admitted, LoginHost, Refusal};
pub use login::NormalSession;

use discovery::Discovery;
use login::{Login, Outcome};

/// Received bytes the engine holds at most: one whole PDU of the largest data segment
/// it declares (a discovery session's MaxRecvDataSegmentLength) with its header and
/// AHS, and some slack.
const MAX_AHEAD: usize = SCST_MAX_DATA_SEGMENT as usize + 64 * 1024;

/// How one connection runs.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// How long the whole login may take, however its bytes trickle in (the driver's
    /// `login_timeout`).
    pub login_timeout: Duration,
}

/// What the driver must act on.
#[derive(Debug)]
pub enum Event<A> {
    /// May `initiator` see `target` (iSNS access control)? Answer with
    /// [`Connection::answer_access`]; the login waits.
    AccessQuery { target: String, initiator: String },
    /// A discovery session asks `SendTargets=<what>`: answer with the key list
    /// (`TargetName`, `TargetAddress`...) through [`Connection::answer_send_targets`].
    SendTargets { initiator: String, what: String },
    /// A discovery session's login completed; the engine serves it from now on.
    DiscoveryReady { initiator: String },
    /// A normal session's login completed: the full-feature phase starts from this.
    SessionReady(Box<NormalSession<A>>),
    /// The connection is over; close the socket once transmit is drained.
    Closed(Close),
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// The login was refused with this status; the Login Response is queued before.
    LoginRefused {
        /// The initiator's name, once the first request gave it and passed its checks.
        initiator: Option<String>,
        status: (u8, u8),
        /// For the log; never a secret.
        why: String,
    },
    /// The login did not complete within [`Config::login_timeout`].
    LoginTimedOut,
    /// Bytes that cannot be an iSCSI exchange here (framing, an unexpected opcode).
    ProtocolError(String),
    /// The discovery session logged out; the Logout Response is queued before.
    Logout,
}

/// Encoded PDUs waiting to be sent. Login and discovery are control traffic: each PDU
/// is one buffer.
#[derive(Debug, Default)]
pub(crate) struct Transmit(VecDeque<Vec<u8>>);

impl Transmit {
    pub(crate) fn push(&mut self, bhs: &Bhs, data: &[u8]) {
        // Login and discovery run without digests (RFC 7143 13.1: digests start after
        // the login; SCST negotiates none on discovery sessions).
        self.0
            .push_back(frame::encode_pdu(bhs, data, Digests::NONE));
    }
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Login,
    /// A discovery session in its full-feature phase, served here.
    Discovery,
    /// A normal session's full-feature phase, run by the driver (see the crate docs).
    FullFeature,
    Closed,
}

enum State<A> {
    /// `None` only while a call moves it from one state to the next.
    Login(Option<Login<A>>),
    Discovery(Discovery),
    FullFeature,
    Closed,
}

/// One iSCSI connection, target side.
pub struct Connection<A> {
    state: State<A>,
    /// Received bytes not yet consumed as PDUs.
    rx: Vec<u8>,
    tx: Transmit,
    events: VecDeque<Event<A>>,
    login_deadline: Instant,
}

impl<A> std::fmt::Debug for Connection<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("phase", &self.phase())
            .field("rx", &self.rx.len())
            .field("tx", &self.tx.0.len())
            .finish()
    }
}

impl<A> Connection<A> {
    /// A connection just accepted at `now`.
    pub fn new(config: Config, now: Instant) -> Connection<A> {
        Connection {
            state: State::Login(Some(Login::Start)),
            rx: Vec::new(),
            tx: Transmit::default(),
            events: VecDeque::new(),
            login_deadline: now + config.login_timeout,
        }
    }

    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Login(_) => Phase::Login,
            State::Discovery(_) => Phase::Discovery,
            State::FullFeature => Phase::FullFeature,
            State::Closed => Phase::Closed,
        }
    }

    /// Bytes received from the initiator.
    pub fn handle_bytes<H: LoginHost<Admission = A>>(
        &mut self,
        now: Instant,
        bytes: &[u8],
        host: &mut H,
    ) {
        if matches!(self.state, State::Closed | State::FullFeature) {
            return;
        }
        self.rx.extend_from_slice(bytes);
        self.handle_timeout(now);
        self.process(host);
        // What is left is at most one partial PDU, unless the exchange waits for the
        // driver's answer: an initiator that keeps sending meanwhile is not buffered
        // without end.
        if self.rx.len() > MAX_AHEAD {
            self.close(Close::ProtocolError(format!(
                "{} bytes received ahead of the exchange",
                self.rx.len()
            )));
        }
    }

    /// A deadline from [`Connection::poll_timeout`] passed (or may have).
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Login(_)) && now >= self.login_deadline {
            self.close(Close::LoginTimedOut);
        }
    }

    /// The answer to [`Event::AccessQuery`].
    pub fn answer_access<H: LoginHost<Admission = A>>(&mut self, allowed: bool, host: &mut H) {
        let State::Login(login) = &mut self.state else {
            return;
        };
        let Some(login) = login.take() else { return };
        let outcome = login.access_answered(allowed, host, &mut self.tx);
        self.login_outcome(outcome);
        self.process(host);
    }

    /// The answer to [`Event::SendTargets`].
    pub fn answer_send_targets<H: LoginHost<Admission = A>>(
        &mut self,
        keys: &[(String, String)],
        host: &mut H,
    ) {
        if let State::Discovery(d) = &mut self.state {
            d.answer(keys, &mut self.tx);
            self.process(host);
        }
    }

    /// The next encoded PDU to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.0.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.events.pop_front()
    }

    /// When [`Connection::handle_timeout`] is to be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        matches!(self.state, State::Login(_)).then_some(self.login_deadline)
    }

    /// After [`Event::SessionReady`]: the bytes already received that belong to the
    /// full-feature phase.
    pub fn take_received(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rx)
    }

    fn close(&mut self, why: Close) {
        self.state = State::Closed;
        self.rx = Vec::new();
        self.events.push_back(Event::Closed(why));
    }

    /// Consumes whole PDUs from `rx` until one has to wait (for more bytes or for the
    /// driver's answer) or the phase leaves the engine.
    fn process<H: LoginHost<Admission = A>>(&mut self, host: &mut H) {
        loop {
            let max_data = match &self.state {
                State::Login(Some(Login::AwaitingAccess(_))) | State::Login(None) => return,
                State::Login(_) => login::LOGIN_MAX_DATA,
                State::Discovery(d) if d.waiting() => return,
                State::Discovery(d) => d.max_recv(),
                State::FullFeature | State::Closed => return,
            };
            let f = match frame::parse_frame(&self.rx, Digests::NONE, max_data) {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => return self.close(Close::ProtocolError(e.to_string())),
            };
            let data = self.rx.get(f.data.clone()).unwrap_or_default().to_vec();
            self.rx.drain(..f.total_len);
            match &mut self.state {
                State::Login(login) => {
                    let Some(l) = login.take() else { return };
                    let outcome = l.handle(&f.bhs, &data, host, &mut self.tx);
                    self.login_outcome(outcome);
                }
                State::Discovery(d) => match d.handle(&f.bhs, &data, &mut self.tx) {
                    discovery::Step::Done => {}
                    discovery::Step::Query(what) => {
                        let initiator = d.initiator.clone();
                        self.events
                            .push_back(Event::SendTargets { initiator, what });
                    }
                    discovery::Step::Logout => return self.close(Close::Logout),
                },
                State::FullFeature | State::Closed => return,
            }
        }
    }

    fn login_outcome(&mut self, outcome: Outcome<A>) {
        match outcome {
            Outcome::Continue(l) => self.state = State::Login(Some(l)),
            Outcome::AccessQuery {
                login,
                target,
                initiator,
            } => {
                self.state = State::Login(Some(login));
                self.events
                    .push_back(Event::AccessQuery { target, initiator });
            }
            Outcome::Normal(s) => {
                self.state = State::FullFeature;
                self.events.push_back(Event::SessionReady(s));
            }
            Outcome::Discovery(s) => {
                let initiator = s.initiator.clone();
                self.state = State::Discovery(Discovery::new(s));
                self.events.push_back(Event::DiscoveryReady { initiator });
            }
            Outcome::Refused { initiator, refusal } => self.close(Close::LoginRefused {
                initiator,
                status: refusal.status,
                why: refusal.why,
            }),
            Outcome::ProtocolError(why) => self.close(Close::ProtocolError(why)),
        }
    }
}
