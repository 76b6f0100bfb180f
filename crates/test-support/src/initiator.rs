//! The test initiator: login, SCSI commands with all data transfer styles, task
//! management, raw PDU access.
//!
//! Threading: a reader thread owns the receive side of the socket, cuts the byte
//! stream into PDUs and passes them over a channel; everything else happens on the
//! caller's thread. Draining the socket independently means a test can have many
//! large commands in flight without both sides blocking on full socket buffers.

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use iscsi_wire::bhs::{Bhs, Opcode, RESERVED_TAG};
use iscsi_wire::frame::Digests;

pub use iscsi_wire::pdu::Residual;

// One module per concern, each adding methods to `Initiator`; this file holds the
// connection's state and what every concern shares.
mod chap;
mod command;
mod login;
mod requests;
mod transport;

pub use chap::{Chap, MutualChap};
pub use command::ScsiResult;
pub use login::{LoginOptions, Negotiated};
use transport::{reader, RxConfig, RxEvent, RxShared};

/// Errors from the test initiator.
#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad PDU from target: {0}")]
    Wire(#[from] iscsi_wire::WireError),
    #[error("login failed: status class {class:#04x} detail {detail:#04x}")]
    LoginFailed { class: u8, detail: u8 },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("timed out waiting for the target")]
    Timeout,
    #[error("connection closed by the target")]
    ConnectionClosed,
    #[error("PDU rejected by the target, reason {reason:#04x}")]
    Rejected { reason: u8 },
    #[error("SCSI status {status:#04x}, sense {sense:02x?}")]
    ScsiStatus { status: u8, sense: Vec<u8> },
}

type Result<T> = std::result::Result<T, InitiatorError>;

/// A received PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub bhs: Bhs,
    pub ahs: Vec<u8>,
    pub data: Vec<u8>,
    pub data_digest_ok: bool,
}

impl Pdu {
    pub fn opcode(&self) -> Option<Opcode> {
        self.bhs.opcode()
    }
}

/// One SCSI command in flight.
#[derive(Debug)]
struct Task {
    lun: [u8; 8],
    cmd_sn: u32,
    data_out: Vec<u8>,
    expected_in: u32,
    data_in: Vec<u8>,
    data_in_extent: usize,
}

/// An iSCSI initiator over one TCP connection.
pub struct Initiator {
    stream: TcpStream,
    rx: Receiver<RxEvent>,
    rx_config: RxShared,
    closed: bool,
    timeout: Duration,
    digests: Digests,
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
    cmd_sn: u32,
    exp_stat_sn: u32,
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
    /// After a Reject/Async Message, accept a StatSN jump once (their StatSN use is
    /// not uniform across targets).
    stat_sn_resync: bool,
    next_itt: u32,
    negotiated: Negotiated,
    login_keys: Vec<(String, String)>,
    login_status: Option<(u8, u8)>,
    full_feature: bool,
    tasks: HashMap<u32, Task>,
    done: HashMap<u32, Result<ScsiResult>>,
    /// PDUs that belong to no SCSI task, waiting for whoever asked for them.
    stash: VecDeque<Pdu>,
    async_events: Vec<Pdu>,
    anomalies: Vec<String>,
    /// CHAP credentials for the next logins (AuthMethod=None without).
    chap: Option<Chap>,
}

impl Drop for Initiator {
    fn drop(&mut self) {
        // Unblocks the reader thread, which then exits on its own.
        let _ = self.stream.shutdown(Shutdown::Both);
        self.resume_rx(Digests::NONE);
    }
}

/// Serial number arithmetic (RFC 1982, 32 bits): a > b.
fn sn_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Initiator {
    /// Connects (TCP_NODELAY on) and starts the reader thread.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Initiator> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let rx_stream = stream.try_clone()?;
        let rx_config: RxShared = Arc::new((Mutex::new(RxConfig::default()), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let cfg = rx_config.clone();
        thread::Builder::new()
            .name("iscsi-test-rx".into())
            .spawn(move || reader(rx_stream, cfg, tx))?;
        Ok(Initiator {
            stream,
            rx,
            rx_config,
            closed: false,
            timeout: Duration::from_secs(10),
            digests: Digests::NONE,
            isid: LoginOptions::default().isid,
            tsih: 0,
            cid: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
            exp_cmd_sn: 1,
            max_cmd_sn: 1,
            stat_sn_resync: true,
            next_itt: 0x10,
            negotiated: Negotiated::rfc_defaults(8192),
            login_keys: Vec::new(),
            login_status: None,
            full_feature: false,
            tasks: HashMap::new(),
            done: HashMap::new(),
            stash: VecDeque::new(),
            async_events: Vec::new(),
            anomalies: Vec::new(),
            chap: None,
        })
    }

    /// CHAP credentials for the following logins (normal and discovery); `None`
    /// offers AuthMethod=None.
    pub fn set_chap(&mut self, chap: Option<Chap>) {
        self.chap = chap;
    }

    fn auth_method(&self) -> String {
        self.chap
            .as_ref()
            .map_or_else(|| "None".to_string(), |c| c.auth_method.clone())
    }

    /// Timeout for every wait (default 10 s).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// All keys the target sent during login, in order.
    pub fn login_keys(&self) -> &[(String, String)] {
        &self.login_keys
    }

    /// (Status-Class, Status-Detail) of the last login response.
    pub fn login_status(&self) -> Option<(u8, u8)> {
        self.login_status
    }

    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    pub fn isid(&self) -> [u8; 6] {
        self.isid
    }

    pub fn cmd_sn(&self) -> u32 {
        self.cmd_sn
    }

    pub fn exp_stat_sn(&self) -> u32 {
        self.exp_stat_sn
    }

    /// (ExpCmdSN, MaxCmdSN) as last advertised by the target.
    pub fn cmd_window(&self) -> (u32, u32) {
        (self.exp_cmd_sn, self.max_cmd_sn)
    }

    /// Async Messages received so far.
    pub fn async_events(&self) -> &[Pdu] {
        &self.async_events
    }

    /// Protocol irregularities observed in the target's PDUs.
    pub fn anomalies(&self) -> &[String] {
        &self.anomalies
    }

    /// A fresh initiator task tag (never the reserved value).
    pub fn alloc_itt(&mut self) -> u32 {
        let itt = self.next_itt;
        self.next_itt = self.next_itt.wrapping_add(1);
        if self.next_itt == RESERVED_TAG {
            self.next_itt = 0;
        }
        itt
    }
}

#[cfg(test)]
mod tests;
