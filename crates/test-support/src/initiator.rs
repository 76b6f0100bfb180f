//! The test initiator: login, SCSI commands with all data transfer styles, task
//! management, raw PDU access.
//!
//! Threading: a reader thread owns the receive side of the socket, cuts the byte
//! stream into PDUs and passes them over a channel; everything else happens on the
//! caller's thread. Draining the socket independently means a test can have many
//! large commands in flight without both sides blocking on full socket buffers.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use iscsi_wire::bhs::{task_attr, Bhs, Opcode, Stage, RESERVED_TAG};
use iscsi_wire::frame::{encode_header_with_ahs, extended_cdb_ahs, parse_frame, Digests};
use iscsi_wire::negotiate::{parse_bool, parse_number};
use iscsi_wire::pdu::{self, lun_from_u16, TargetSn};
use iscsi_wire::text;

pub use iscsi_wire::pdu::Residual;

use crate::scsi;

mod chap;

pub use chap::{Chap, MutualChap};

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

/// Outcome of a SCSI command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiResult {
    /// iSCSI Response code (0 = command completed at target).
    pub response: u8,
    pub status: u8,
    pub sense: Vec<u8>,
    /// Data-In bytes received (up to the highest offset written by the target).
    pub data: Vec<u8>,
    pub residual: Residual,
}

impl ScsiResult {
    pub fn is_good(&self) -> bool {
        self.response == 0 && self.status == scsi::status::GOOD
    }

    /// (sense key, ASC, ASCQ) if there is sense data.
    pub fn sense_key_asc_ascq(&self) -> Option<(u8, u8, u8)> {
        scsi::sense_key_asc_ascq(&self.sense)
    }

    /// `Ok(self)` if GOOD, else an error carrying status and sense.
    pub fn good(self) -> Result<ScsiResult> {
        if self.is_good() {
            Ok(self)
        } else {
            Err(InitiatorError::ScsiStatus {
                status: self.status,
                sense: self.sense,
            })
        }
    }
}

/// What to offer at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOptions {
    /// HeaderDigest offer, e.g. "None", "CRC32C", "CRC32C,None".
    pub header_digest: String,
    pub data_digest: String,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// What this initiator can receive per PDU (declared).
    pub max_recv_data_segment_length: u32,
    pub first_burst_length: u32,
    pub max_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub isid: [u8; 6],
    /// Nonzero to reinstate/continue an existing session.
    pub tsih: u16,
    /// Extra keys sent in the operational stage (e.g. unknown keys, duplicates).
    pub extra_keys: Vec<(String, String)>,
}

impl Default for LoginOptions {
    fn default() -> Self {
        LoginOptions {
            header_digest: "None".into(),
            data_digest: "None".into(),
            immediate_data: true,
            initial_r2t: false,
            max_recv_data_segment_length: 262_144,
            first_burst_length: 65_536,
            max_burst_length: 1 << 20,
            max_outstanding_r2t: 1,
            // ISID type "random" (0b10) with fixed bytes: deterministic tests.
            isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x01],
            tsih: 0,
            extra_keys: Vec::new(),
        }
    }
}

/// Negotiated parameters, from the initiator's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u32,
    pub header_digest: bool,
    pub data_digest: bool,
    /// The target's declared MaxRecvDataSegmentLength (our send limit), 8192 if the
    /// target never declared one.
    pub target_max_recv_data_segment_length: u32,
    /// What we declared.
    pub max_recv_data_segment_length: u32,
}

impl Negotiated {
    /// RFC 7143 defaults.
    fn rfc_defaults(our_mrdsl: u32) -> Negotiated {
        Negotiated {
            initial_r2t: true,
            immediate_data: true,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            header_digest: false,
            data_digest: false,
            target_max_recv_data_segment_length: 8192,
            max_recv_data_segment_length: our_mrdsl,
        }
    }

    fn digests(&self) -> Digests {
        Digests {
            header: self.header_digest,
            data: self.data_digest,
        }
    }

    /// Records one key from a login response (answer to our offer or declaration).
    fn apply(&mut self, key: &str, value: &str) {
        if matches!(value, "Reject" | "Irrelevant" | "NotUnderstood") {
            return;
        }
        let num = || parse_number(value).map(|v| v.min(u32::MAX as u64) as u32);
        match key {
            "InitialR2T" => self.initial_r2t = parse_bool(value).unwrap_or(self.initial_r2t),
            "ImmediateData" => {
                self.immediate_data = parse_bool(value).unwrap_or(self.immediate_data)
            }
            "DataPDUInOrder" => {
                self.data_pdu_in_order = parse_bool(value).unwrap_or(self.data_pdu_in_order)
            }
            "DataSequenceInOrder" => {
                self.data_sequence_in_order =
                    parse_bool(value).unwrap_or(self.data_sequence_in_order)
            }
            "MaxBurstLength" => self.max_burst_length = num().unwrap_or(self.max_burst_length),
            "FirstBurstLength" => {
                self.first_burst_length = num().unwrap_or(self.first_burst_length)
            }
            "MaxOutstandingR2T" => {
                self.max_outstanding_r2t = num().unwrap_or(self.max_outstanding_r2t)
            }
            "ErrorRecoveryLevel" => {
                self.error_recovery_level = num().unwrap_or(self.error_recovery_level)
            }
            "MaxRecvDataSegmentLength" => {
                self.target_max_recv_data_segment_length =
                    num().unwrap_or(self.target_max_recv_data_segment_length)
            }
            "HeaderDigest" => self.header_digest = value == "CRC32C",
            "DataDigest" => self.data_digest = value == "CRC32C",
            _ => {}
        }
    }
}

/// How the reader thread decodes the stream. Digests switch on right after the final
/// login response, whose keys the caller's thread must see first: the reader pauses
/// after passing that response on (the next PDU may already be in the same read)
/// until [`Initiator::resume_rx`] hands it the negotiated digests.
#[derive(Debug, Default)]
struct RxConfig {
    digests: Digests,
    paused: bool,
}

type RxShared = Arc<(Mutex<RxConfig>, Condvar)>;

enum RxEvent {
    Pdu(Pdu),
    Closed,
    Error(InitiatorError),
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

const MAX_LOGIN_ROUNDS: usize = 16;
/// The reader accepts any PDU size the wire format allows; limits the target must
/// respect are checked separately and reported as anomalies.
const RX_MAX_DATA: u32 = (1 << 24) - 1;

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

    // ------------------------------------------------------------------ login

    /// Logs in to a discovery session.
    pub fn login_discovery(&mut self, initiator_name: &str) -> Result<()> {
        let security = vec![
            kv("InitiatorName", initiator_name),
            kv("SessionType", "Discovery"),
            kv("AuthMethod", &self.auth_method()),
        ];
        let opts = LoginOptions::default();
        let operational = vec![
            kv("HeaderDigest", &opts.header_digest),
            kv("DataDigest", &opts.data_digest),
            kv(
                "MaxRecvDataSegmentLength",
                &opts.max_recv_data_segment_length.to_string(),
            ),
        ];
        self.run_login(&opts, security, operational)
    }

    /// Logs in to a normal session with `target_name`.
    pub fn login(
        &mut self,
        initiator_name: &str,
        target_name: &str,
        opts: &LoginOptions,
    ) -> Result<()> {
        let security = vec![
            kv("InitiatorName", initiator_name),
            kv("TargetName", target_name),
            kv("SessionType", "Normal"),
            kv("AuthMethod", &self.auth_method()),
        ];
        let mut operational = vec![
            kv("HeaderDigest", &opts.header_digest),
            kv("DataDigest", &opts.data_digest),
            kv("InitialR2T", yes_no(opts.initial_r2t)),
            kv("ImmediateData", yes_no(opts.immediate_data)),
            kv(
                "MaxRecvDataSegmentLength",
                &opts.max_recv_data_segment_length.to_string(),
            ),
            kv("MaxBurstLength", &opts.max_burst_length.to_string()),
            kv("FirstBurstLength", &opts.first_burst_length.to_string()),
            kv("MaxOutstandingR2T", &opts.max_outstanding_r2t.to_string()),
            kv("MaxConnections", "1"),
            kv("ErrorRecoveryLevel", "0"),
            kv("DefaultTime2Wait", "2"),
            kv("DefaultTime2Retain", "0"),
            kv("DataPDUInOrder", "Yes"),
            kv("DataSequenceInOrder", "Yes"),
        ];
        operational.extend(opts.extra_keys.iter().cloned());
        self.run_login(opts, security, operational)
    }

    fn run_login(
        &mut self,
        opts: &LoginOptions,
        security: Vec<(String, String)>,
        operational: Vec<(String, String)>,
    ) -> Result<()> {
        self.isid = opts.isid;
        self.tsih = opts.tsih;
        self.negotiated = Negotiated::rfc_defaults(opts.max_recv_data_segment_length);
        self.login_keys.clear();
        let result = self.login_stages(opts, security, operational);
        // Whatever happened, the reader must not stay paused.
        let digests = if result.is_ok() {
            self.negotiated.digests()
        } else {
            Digests::NONE
        };
        self.resume_rx(digests);
        result
    }

    fn login_stages(
        &mut self,
        opts: &LoginOptions,
        security: Vec<(String, String)>,
        operational: Vec<(String, String)>,
    ) -> Result<()> {
        let itt = self.alloc_itt();
        let chap_cfg = self.chap.clone();
        let mut chap_state = chap::ChapState::default();
        // Security stage first, asking to move on to the operational stage.
        let mut keys = security;
        let mut stage = Stage::SecurityNegotiation;
        for _ in 0..MAX_LOGIN_ROUNDS {
            let next = match stage {
                Stage::SecurityNegotiation => Stage::LoginOperational,
                _ => Stage::FullFeature,
            };
            let resp = self.login_round(itt, stage, next, &keys)?;
            let pairs = text::parse_text(&resp.data)?;
            self.login_keys.extend(pairs.iter().cloned());
            keys = Vec::new();
            if stage == Stage::LoginOperational {
                keys = self.answer_target_offers(opts, &pairs, &operational);
            } else if let Some(cfg) = &chap_cfg {
                keys = chap_state.next(cfg, &pairs)?;
            }
            // A target that lets us in without answering our challenge has not
            // authenticated itself.
            if resp.bhs.transit()
                && stage == Stage::SecurityNegotiation
                && chap_cfg.as_ref().is_some_and(|c| c.mutual.is_some())
                && !matches!(chap_state, chap::ChapState::Done)
            {
                return Err(InitiatorError::Protocol(
                    "target left the security stage before mutual CHAP finished".into(),
                ));
            }
            if resp.bhs.transit() {
                match resp.bhs.nsg() {
                    Stage::FullFeature => {
                        self.full_feature = true;
                        self.digests = self.negotiated.digests();
                        return Ok(());
                    }
                    Stage::LoginOperational if stage == Stage::SecurityNegotiation => {
                        stage = Stage::LoginOperational;
                        keys = operational.clone();
                    }
                    other => {
                        return Err(InitiatorError::Protocol(format!(
                            "login response transits to {other:?} from {stage:?}"
                        )))
                    }
                }
            }
        }
        Err(InitiatorError::Protocol(
            "target never completed the login".into(),
        ))
    }

    /// Sends one login request and waits for its response; fails on a non-success
    /// status.
    fn login_round(
        &mut self,
        itt: u32,
        csg: Stage,
        nsg: Stage,
        keys: &[(String, String)],
    ) -> Result<Pdu> {
        let data = text::encode_text(keys);
        let bhs = pdu::login_request(&pdu::LoginRequest {
            transit: true,
            cont: false,
            csg,
            nsg,
            isid: self.isid,
            tsih: self.tsih,
            itt,
            cid: self.cid,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data_len: data.len() as u32,
        });
        self.send_pdu(&bhs, &data)?;
        let resp = self.wait_pdu(|p| p.opcode() == Some(Opcode::LoginResponse))?;
        let b = &resp.bhs;
        self.login_status = Some((b.status_class(), b.status_detail()));
        if b.status_class() != 0 {
            return Err(InitiatorError::LoginFailed {
                class: b.status_class(),
                detail: b.status_detail(),
            });
        }
        if b.tsih() != 0 {
            self.tsih = b.tsih();
        }
        Ok(resp)
    }

    /// Records the target's answers/declarations and answers the keys the target
    /// offered on its own (keys we did not send).
    fn answer_target_offers(
        &mut self,
        opts: &LoginOptions,
        pairs: &[(String, String)],
        ours: &[(String, String)],
    ) -> Vec<(String, String)> {
        let mut replies = Vec::new();
        for (k, v) in pairs {
            let offered_by_us = ours.iter().any(|(ok, _)| ok == k);
            let declarative = matches!(
                k.as_str(),
                "MaxRecvDataSegmentLength"
                    | "TargetPortalGroupTag"
                    | "TargetAlias"
                    | "TargetAddress"
            );
            if offered_by_us || declarative {
                self.negotiated.apply(k, v);
                continue;
            }
            let reply = match k.as_str() {
                "ImmediateData" => parse_bool(v).map(|b| yes_no(b && opts.immediate_data).into()),
                "InitialR2T" => parse_bool(v).map(|b| yes_no(b || opts.initial_r2t).into()),
                "MaxBurstLength" => {
                    parse_number(v).map(|n| n.min(opts.max_burst_length as u64).to_string())
                }
                "FirstBurstLength" => {
                    parse_number(v).map(|n| n.min(opts.first_burst_length as u64).to_string())
                }
                "HeaderDigest" | "DataDigest" => {
                    let mine = if k == "HeaderDigest" {
                        &opts.header_digest
                    } else {
                        &opts.data_digest
                    };
                    v.split(',')
                        .find(|d| mine.split(',').any(|m| m == *d))
                        .map(str::to_string)
                }
                _ => Some("NotUnderstood".into()),
            }
            .unwrap_or_else(|| "Reject".into());
            self.negotiated.apply(k, &reply);
            replies.push((k.clone(), reply));
        }
        replies
    }

    // --------------------------------------------------------------- discovery

    /// SendTargets; returns (TargetName, [TargetAddress...]) in the order received.
    /// Follows continuation (C bit / F=0) responses.
    pub fn send_targets(&mut self, what: &str) -> Result<Vec<(String, Vec<String>)>> {
        let data = self.text_exchange(&[kv("SendTargets", what)])?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in text::parse_text(&data)? {
            match k.as_str() {
                "TargetName" => out.push((v, Vec::new())),
                "TargetAddress" => match out.last_mut() {
                    Some(t) => t.1.push(v),
                    None => {
                        return Err(InitiatorError::Protocol(
                            "TargetAddress before TargetName".into(),
                        ))
                    }
                },
                _ => {}
            }
        }
        Ok(out)
    }

    /// Sends a Text Request and returns the concatenated response text.
    pub fn text_exchange(&mut self, keys: &[(String, String)]) -> Result<Vec<u8>> {
        let itt = self.alloc_itt();
        let mut request = text::encode_text(keys);
        let mut ttt = RESERVED_TAG;
        let mut all = Vec::new();
        loop {
            self.wait_cmd_window()?;
            let bhs = pdu::text_request(
                false,
                true,
                false,
                itt,
                ttt,
                self.cmd_sn,
                self.exp_stat_sn,
                request.len() as u32,
            );
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
            self.send_pdu(&bhs, &request)?;
            let resp = self.wait_pdu(|p| {
                matches!(p.opcode(), Some(Opcode::TextResponse | Opcode::Reject))
                    && (p.bhs.itt() == itt || p.opcode() == Some(Opcode::Reject))
            })?;
            if resp.opcode() == Some(Opcode::Reject) {
                return Err(InitiatorError::Rejected {
                    reason: resp.bhs.reject_reason(),
                });
            }
            all.extend_from_slice(&resp.data);
            if resp.bhs.final_bit() && !resp.bhs.continue_bit() {
                return Ok(all);
            }
            // Ask for the rest with an empty request carrying the target's TTT.
            ttt = resp.bhs.ttt();
            request.clear();
        }
    }

    // -------------------------------------------------------------------- SCSI

    /// Runs one SCSI command to completion.
    pub fn scsi(
        &mut self,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        expected_in: u32,
        attr: u8,
    ) -> Result<ScsiResult> {
        let itt = self.submit(lun, cdb, data_out, expected_in, attr)?;
        self.wait(itt)
    }

    /// Sends a SCSI command (with immediate and unsolicited data as negotiated) and
    /// returns its ITT; R2Ts are served while waiting. Bidirectional commands are
    /// not supported.
    pub fn submit(
        &mut self,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        expected_in: u32,
        attr: u8,
    ) -> Result<u32> {
        if !data_out.is_empty() && expected_in > 0 {
            return Err(InitiatorError::Protocol(
                "bidirectional commands are not supported".into(),
            ));
        }
        self.wait_cmd_window()?;
        let itt = self.alloc_itt();
        let lun = lun_from_u16(lun);
        let n = self.negotiated.clone();
        let send_limit = n.target_max_recv_data_segment_length.max(1) as usize;
        let write_len = data_out.len();
        let first_burst = (n.first_burst_length as usize).min(write_len);
        let immediate = if n.immediate_data {
            first_burst.min(send_limit)
        } else {
            0
        };
        let unsolicited_end = if n.initial_r2t {
            immediate
        } else {
            first_burst
        };
        let cmd_sn = self.cmd_sn;
        let mut bhs = pdu::scsi_command(&pdu::ScsiCommand {
            immediate: false,
            lun,
            itt,
            attr,
            read: expected_in > 0,
            write: write_len > 0,
            final_pdu: unsolicited_end == immediate,
            exp_data_transfer_len: if write_len > 0 {
                write_len as u32
            } else {
                expected_in
            },
            cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb,
            data_len: immediate as u32,
        });
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.tasks.insert(
            itt,
            Task {
                lun,
                cmd_sn,
                data_out: data_out.to_vec(),
                expected_in,
                data_in: Vec::new(),
                data_in_extent: 0,
            },
        );
        if cdb.len() > 16 {
            let ahs = extended_cdb_ahs(&cdb[16..]);
            bhs.set_total_ahs_words((ahs.len() / 4) as u8);
            self.send_pdu_with_ahs(&bhs, &ahs, &data_out[..immediate])?;
        } else {
            self.send_pdu(&bhs, &data_out[..immediate])?;
        }
        if unsolicited_end > immediate {
            self.send_data_out(itt, RESERVED_TAG, immediate, unsolicited_end - immediate)?;
        }
        Ok(itt)
    }

    /// Waits for the command `itt` to complete.
    pub fn wait(&mut self, itt: u32) -> Result<ScsiResult> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(r) = self.done.remove(&itt) {
                return r;
            }
            if !self.tasks.contains_key(&itt) {
                return Err(InitiatorError::Protocol(format!(
                    "no command with ITT {itt:#x}"
                )));
            }
            let pdu = self.recv_until(deadline)?;
            self.dispatch(pdu)?;
        }
    }

    /// ITTs of commands not completed yet.
    pub fn outstanding(&self) -> Vec<u32> {
        self.tasks.keys().copied().collect()
    }

    /// Sends Data-Out PDUs for [offset, offset+len) of a task's write buffer.
    fn send_data_out(&mut self, itt: u32, ttt: u32, offset: usize, len: usize) -> Result<()> {
        let Some(task) = self.tasks.get(&itt) else {
            return Ok(());
        };
        let lun = task.lun;
        // Copy out of the task so that `self` can be borrowed to send.
        let data = task.data_out.get(offset..offset + len).map(<[u8]>::to_vec);
        let Some(data) = data else {
            self.anomalies.push(format!(
                "ITT {itt:#x}: R2T for {offset}+{len} beyond the {} bytes written",
                task.data_out.len()
            ));
            return Ok(());
        };
        let chunk = self.negotiated.target_max_recv_data_segment_length.max(1) as usize;
        let mut sent = 0;
        let mut data_sn = 0u32;
        while sent < len {
            let n = chunk.min(len - sent);
            let bhs = pdu::data_out(
                lun,
                itt,
                ttt,
                data_sn,
                (offset + sent) as u32,
                sent + n == len,
                self.exp_stat_sn,
                n as u32,
            );
            self.send_pdu(&bhs, &data[sent..sent + n])?;
            sent += n;
            data_sn += 1;
        }
        Ok(())
    }

    fn wait_cmd_window(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        while sn_gt(self.cmd_sn, self.max_cmd_sn) {
            let pdu = self.recv_until(deadline)?;
            self.dispatch(pdu)?;
        }
        Ok(())
    }

    // ------------------------------------------------------------ helpers

    pub fn test_unit_ready(&mut self, lun: u16) -> Result<ScsiResult> {
        self.scsi(lun, &scsi::test_unit_ready(), &[], 0, task_attr::SIMPLE)
    }

    pub fn inquiry(&mut self, lun: u16, evpd: bool, page: u8, alloc: u16) -> Result<ScsiResult> {
        self.scsi(
            lun,
            &scsi::inquiry(evpd, page, alloc),
            &[],
            alloc as u32,
            task_attr::SIMPLE,
        )
    }

    pub fn read_capacity16(&mut self, lun: u16) -> Result<ScsiResult> {
        self.scsi(lun, &scsi::read_capacity16(32), &[], 32, task_attr::SIMPLE)
    }

    /// (number of blocks, block size) via READ CAPACITY(16); error unless GOOD.
    pub fn capacity(&mut self, lun: u16) -> Result<(u64, u32)> {
        let r = self.read_capacity16(lun)?.good()?;
        scsi::parse_read_capacity16(&r.data)
            .ok_or_else(|| InitiatorError::Protocol("short READ CAPACITY(16) data".into()))
    }

    pub fn read10(
        &mut self,
        lun: u16,
        lba: u32,
        blocks: u16,
        block_size: u32,
    ) -> Result<ScsiResult> {
        self.scsi(
            lun,
            &scsi::read10(lba, blocks),
            &[],
            blocks as u32 * block_size,
            task_attr::SIMPLE,
        )
    }

    pub fn read16(
        &mut self,
        lun: u16,
        lba: u64,
        blocks: u32,
        block_size: u32,
    ) -> Result<ScsiResult> {
        self.scsi(
            lun,
            &scsi::read16(lba, blocks),
            &[],
            blocks * block_size,
            task_attr::SIMPLE,
        )
    }

    /// WRITE(10) of `data` (a whole number of `block_size` blocks).
    pub fn write10(
        &mut self,
        lun: u16,
        lba: u32,
        data: &[u8],
        block_size: u32,
    ) -> Result<ScsiResult> {
        let blocks = (data.len() / block_size.max(1) as usize) as u16;
        self.scsi(lun, &scsi::write10(lba, blocks), data, 0, task_attr::SIMPLE)
    }

    pub fn write16(
        &mut self,
        lun: u16,
        lba: u64,
        data: &[u8],
        block_size: u32,
    ) -> Result<ScsiResult> {
        let blocks = (data.len() / block_size.max(1) as usize) as u32;
        self.scsi(lun, &scsi::write16(lba, blocks), data, 0, task_attr::SIMPLE)
    }

    /// REPORT LUNS (sent to LUN 0, as initiators do).
    pub fn report_luns(&mut self) -> Result<ScsiResult> {
        self.scsi(0, &scsi::report_luns(8192), &[], 8192, task_attr::SIMPLE)
    }

    pub fn sync_cache(&mut self, lun: u16) -> Result<ScsiResult> {
        self.scsi(lun, &scsi::sync_cache10(), &[], 0, task_attr::SIMPLE)
    }

    // ------------------------------------------------------ other requests

    /// NOP-Out ping (immediate); waits for the NOP-In reply.
    pub fn nop(&mut self) -> Result<()> {
        self.nop_with_data(&[]).map(|_| ())
    }

    /// NOP-Out ping carrying `data`; returns the echoed data.
    pub fn nop_with_data(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let itt = self.alloc_itt();
        let bhs = pdu::nop_out(
            true,
            [0; 8],
            itt,
            RESERVED_TAG,
            self.cmd_sn,
            self.exp_stat_sn,
            data.len() as u32,
        );
        self.send_pdu(&bhs, data)?;
        let r = self.wait_pdu(|p| p.opcode() == Some(Opcode::NopIn) && p.bhs.itt() == itt)?;
        Ok(r.data)
    }

    /// Task management request (immediate); returns the TMF response code.
    /// `ref_itt` is the task to act on for ABORT TASK (RESERVED_TAG otherwise).
    pub fn tmf(&mut self, function: u8, lun: u16, ref_itt: u32) -> Result<u8> {
        let itt = self.alloc_itt();
        let ref_cmd_sn = self.tasks.get(&ref_itt).map_or(self.cmd_sn, |t| t.cmd_sn);
        let bhs = pdu::tmf_request(&pdu::TmfRequest {
            immediate: true,
            function,
            lun: lun_from_u16(lun),
            itt,
            ref_task_tag: ref_itt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: 0,
        });
        self.send_pdu(&bhs, &[])?;
        let r =
            self.wait_pdu(|p| p.opcode() == Some(Opcode::TaskMgmtResponse) && p.bhs.itt() == itt)?;
        let response = r.bhs.response();
        // An aborted task gets no response of its own; forget it.
        if function == pdu::tmf_function::ABORT_TASK
            && response == pdu::tmf_response::COMPLETE
            && !self.done.contains_key(&ref_itt)
        {
            self.tasks.remove(&ref_itt);
        }
        Ok(response)
    }

    /// Logout (close session); returns the logout response code.
    pub fn logout(&mut self) -> Result<u8> {
        let itt = self.alloc_itt();
        let bhs = pdu::logout_request(
            true,
            pdu::logout_reason::CLOSE_SESSION,
            itt,
            self.cid,
            self.cmd_sn,
            self.exp_stat_sn,
        );
        self.send_pdu(&bhs, &[])?;
        let r =
            self.wait_pdu(|p| p.opcode() == Some(Opcode::LogoutResponse) && p.bhs.itt() == itt)?;
        self.full_feature = false;
        Ok(r.bhs.response())
    }

    // ------------------------------------------------------------ raw access

    /// Writes raw bytes to the socket.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// A second handle on the socket, for writing from another thread (e.g. while this
    /// one does not read).
    pub fn raw_writer(&self) -> Result<TcpStream> {
        Ok(self.stream.try_clone()?)
    }

    /// Stop taking bytes off the socket (at most one read already under way still
    /// completes), as a client that no longer reads would, until
    /// [`Initiator::resume_reading`].
    pub fn pause_reading(&self) {
        let (m, _) = &*self.rx_config;
        m.lock().unwrap_or_else(|e| e.into_inner()).paused = true;
    }

    pub fn resume_reading(&self) {
        self.resume_rx(self.digests);
    }

    /// Sends a PDU with the connection's digests; DataSegmentLength is set from `data`.
    pub fn send_pdu(&mut self, bhs: &Bhs, data: &[u8]) -> Result<()> {
        let wire = iscsi_wire::frame::encode_pdu(bhs, data, self.digests);
        self.send_raw(&wire)
    }

    /// Like [`Initiator::send_pdu`] with an AHS area (TotalAHSLength must match).
    pub fn send_pdu_with_ahs(&mut self, bhs: &Bhs, ahs: &[u8], data: &[u8]) -> Result<()> {
        let mut bhs = *bhs;
        bhs.set_data_segment_len(data.len() as u32);
        let mut wire = encode_header_with_ahs(&bhs, ahs, self.digests.header);
        wire.extend_from_slice(data);
        let (t, tl) = iscsi_wire::frame::data_trailer(data, self.digests.data);
        wire.extend_from_slice(&t[..tl]);
        self.send_raw(&wire)
    }

    /// The next PDU from the target, not handled as part of any task (no R2T served,
    /// no ping answered); only sequence numbers are tracked. PDUs stashed by earlier
    /// waits come first.
    pub fn recv_pdu(&mut self, timeout: Duration) -> Result<Pdu> {
        if let Some(p) = self.stash.pop_front() {
            return Ok(p);
        }
        self.recv_until(Instant::now() + timeout)
    }

    /// True if the target closes the connection within `timeout` (PDUs received in
    /// the meantime are discarded).
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_until(deadline) {
                Ok(_) => continue,
                Err(InitiatorError::Timeout) => return false,
                Err(_) => return true,
            }
        }
    }

    // ------------------------------------------------------------ receive side

    /// Lets the reader continue after the final login response, with `digests`.
    fn resume_rx(&self, digests: Digests) {
        let (m, cv) = &*self.rx_config;
        let mut c = m.lock().unwrap_or_else(|e| e.into_inner());
        c.digests = digests;
        c.paused = false;
        cv.notify_all();
    }

    fn recv_until(&mut self, deadline: Instant) -> Result<Pdu> {
        if self.closed {
            return Err(InitiatorError::ConnectionClosed);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(RxEvent::Pdu(p)) => {
                self.observe(&p);
                Ok(p)
            }
            Ok(RxEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Err(InitiatorError::ConnectionClosed)
            }
            Ok(RxEvent::Error(e)) => {
                self.closed = true;
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => Err(InitiatorError::Timeout),
        }
    }

    /// Waits for a PDU matching `pred`, handling everything else on the way.
    fn wait_pdu(&mut self, pred: impl Fn(&Pdu) -> bool) -> Result<Pdu> {
        if let Some(i) = self.stash.iter().position(&pred) {
            if let Some(p) = self.stash.remove(i) {
                return Ok(p);
            }
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let p = self.recv_until(deadline)?;
            if pred(&p) {
                return Ok(p);
            }
            self.dispatch(p)?;
        }
    }

    /// Sequence number bookkeeping common to every target PDU.
    fn observe(&mut self, p: &Pdu) {
        let b = &p.bhs;
        let Some(op) = b.opcode() else {
            self.anomalies
                .push(format!("unknown opcode {:#04x}", b.opcode_raw()));
            return;
        };
        if op.is_initiator() {
            self.anomalies
                .push(format!("initiator opcode {op:?} from target"));
            return;
        }
        if p.data.len() > self.negotiated.max_recv_data_segment_length as usize && self.full_feature
        {
            self.anomalies.push(format!(
                "{op:?} data segment of {} bytes exceeds our MaxRecvDataSegmentLength {}",
                p.data.len(),
                self.negotiated.max_recv_data_segment_length
            ));
        }
        if !p.data_digest_ok {
            self.anomalies
                .push(format!("{op:?} with a bad data digest"));
        }
        let sn = TargetSn {
            stat_sn: b.stat_sn(),
            exp_cmd_sn: b.exp_cmd_sn(),
            max_cmd_sn: b.max_cmd_sn(),
        };
        // MaxCmdSN = ExpCmdSN - 1 (closed window) is valid; anything further behind
        // is stale or garbage and is ignored (RFC 7143 4.2.2.1).
        if !sn_gt(sn.exp_cmd_sn, sn.max_cmd_sn.wrapping_add(1)) {
            if sn_gt(sn.exp_cmd_sn, self.exp_cmd_sn) {
                self.exp_cmd_sn = sn.exp_cmd_sn;
            }
            if sn_gt(sn.max_cmd_sn, self.max_cmd_sn) || op == Opcode::LoginResponse {
                self.max_cmd_sn = sn.max_cmd_sn;
            }
        }
        let carries_status = match op {
            Opcode::ScsiResponse
            | Opcode::TaskMgmtResponse
            | Opcode::LogoutResponse
            | Opcode::TextResponse
            | Opcode::LoginResponse => true,
            Opcode::DataIn => b.status_bit(),
            Opcode::NopIn => b.itt() != RESERVED_TAG,
            Opcode::Reject | Opcode::AsyncMessage => {
                self.stat_sn_resync = true;
                false
            }
            _ => false,
        };
        if carries_status {
            if sn.stat_sn != self.exp_stat_sn && !self.stat_sn_resync {
                self.anomalies.push(format!(
                    "{op:?} StatSN {} but expected {}",
                    sn.stat_sn, self.exp_stat_sn
                ));
            }
            self.stat_sn_resync = false;
            self.exp_stat_sn = sn.stat_sn.wrapping_add(1);
        }
    }

    /// Handles a PDU nobody is specifically waiting for.
    fn dispatch(&mut self, p: Pdu) -> Result<()> {
        match p.opcode() {
            Some(Opcode::DataIn) => self.on_data_in(p)?,
            Some(Opcode::ScsiResponse) => self.on_scsi_response(p)?,
            Some(Opcode::R2t) => {
                let b = p.bhs;
                if !self.tasks.contains_key(&b.itt()) {
                    self.anomalies
                        .push(format!("R2T for unknown ITT {:#x}", b.itt()));
                    return Ok(());
                }
                self.send_data_out(
                    b.itt(),
                    b.ttt(),
                    b.buffer_offset() as usize,
                    b.desired_data_transfer_len() as usize,
                )?;
            }
            Some(Opcode::NopIn) if p.bhs.itt() == RESERVED_TAG => {
                // Target ping: answer only if it asks for an answer.
                if p.bhs.ttt() != RESERVED_TAG {
                    let bhs = pdu::nop_out(
                        true,
                        p.bhs.lun(),
                        RESERVED_TAG,
                        p.bhs.ttt(),
                        self.cmd_sn,
                        self.exp_stat_sn,
                        p.data.len() as u32,
                    );
                    self.send_pdu(&bhs, &p.data)?;
                }
            }
            Some(Opcode::AsyncMessage) => self.async_events.push(p),
            Some(Opcode::Reject) => {
                let rejected = Bhs::from_slice(&p.data);
                match rejected.map(|r| r.itt()) {
                    Some(itt) if self.tasks.contains_key(&itt) => {
                        self.tasks.remove(&itt);
                        self.done.insert(
                            itt,
                            Err(InitiatorError::Rejected {
                                reason: p.bhs.reject_reason(),
                            }),
                        );
                    }
                    _ => self.stash.push_back(p),
                }
            }
            _ => self.stash.push_back(p),
        }
        Ok(())
    }

    fn on_data_in(&mut self, p: Pdu) -> Result<()> {
        let b = p.bhs;
        let itt = b.itt();
        let Some(task) = self.tasks.get_mut(&itt) else {
            self.anomalies
                .push(format!("Data-In for unknown ITT {itt:#x}"));
            return Ok(());
        };
        let off = b.buffer_offset() as usize;
        let end = off + p.data.len();
        if end > task.expected_in as usize {
            self.anomalies.push(format!(
                "ITT {itt:#x}: Data-In {off}+{} beyond expected length {}",
                p.data.len(),
                task.expected_in
            ));
        } else {
            if task.data_in.len() < end {
                task.data_in.resize(end, 0);
            }
            task.data_in[off..end].copy_from_slice(&p.data);
            task.data_in_extent = task.data_in_extent.max(end);
        }
        if b.status_bit() {
            self.complete(itt, 0, b.status(), Vec::new(), Residual::from_bhs(&b));
        }
        Ok(())
    }

    fn on_scsi_response(&mut self, p: Pdu) -> Result<()> {
        let b = p.bhs;
        let itt = b.itt();
        if !self.tasks.contains_key(&itt) {
            self.anomalies
                .push(format!("SCSI Response for unknown ITT {itt:#x}"));
            return Ok(());
        }
        let sense = match pdu::decode_sense_segment(&p.data) {
            Some(s) => s.to_vec(),
            None => {
                self.anomalies
                    .push(format!("ITT {itt:#x}: malformed sense segment"));
                Vec::new()
            }
        };
        self.complete(itt, b.response(), b.status(), sense, Residual::from_bhs(&b));
        Ok(())
    }

    fn complete(&mut self, itt: u32, response: u8, status: u8, sense: Vec<u8>, residual: Residual) {
        if let Some(mut task) = self.tasks.remove(&itt) {
            task.data_in.truncate(task.data_in_extent);
            self.done.insert(
                itt,
                Ok(ScsiResult {
                    response,
                    status,
                    sense,
                    data: task.data_in,
                    residual,
                }),
            );
        }
    }
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn yes_no(b: bool) -> &'static str {
    iscsi_wire::negotiate::yes_no(b)
}

/// The reader thread: bytes -> PDUs -> channel, until EOF, error or shutdown.
fn reader(mut s: TcpStream, cfg: RxShared, tx: mpsc::Sender<RxEvent>) {
    let (m, cv) = &*cfg;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        // Parse everything complete in the buffer.
        let mut consumed = 0;
        loop {
            let digests = {
                let mut c = m.lock().unwrap_or_else(|e| e.into_inner());
                while c.paused {
                    c = cv.wait(c).unwrap_or_else(|e| e.into_inner());
                }
                c.digests
            };
            match parse_frame(&buf[consumed..], digests, RX_MAX_DATA) {
                Ok(Some(f)) => {
                    let base = consumed;
                    let pdu = Pdu {
                        bhs: f.bhs,
                        ahs: buf[base + f.ahs.start..base + f.ahs.end].to_vec(),
                        data: buf[base + f.data.start..base + f.data.end].to_vec(),
                        data_digest_ok: f.data_digest_ok,
                    };
                    consumed += f.total_len;
                    let b = &pdu.bhs;
                    if b.opcode() == Some(Opcode::LoginResponse)
                        && b.transit()
                        && b.nsg() == Stage::FullFeature
                        && b.status_class() == 0
                    {
                        // Set before the PDU is passed on, so that resume_rx cannot
                        // come first.
                        m.lock().unwrap_or_else(|e| e.into_inner()).paused = true;
                    }
                    if tx.send(RxEvent::Pdu(pdu)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(RxEvent::Error(e.into()));
                    return;
                }
            }
        }
        buf.drain(..consumed);
        match s.read(&mut chunk) {
            Ok(0) => {
                let _ = tx.send(RxEvent::Closed);
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(RxEvent::Error(e.into()));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
