//! The engine driven through in-memory initiator/target pairs with a fake clock: every
//! login path (none, CHAP, mutual CHAP, each refusal), negotiation, discovery sessions,
//! logout and the login timeout.

use std::time::{Duration, Instant};

use iscsi_wire::chap::{self, ChapAlgorithm};
use iscsi_wire::negotiate::{Digest, DigestPolicy, LocalParams};
use iscsi_wire::pdu::{self, login_status, reject_reason, LoginRequest};
use iscsi_wire::{frame, Bhs, Digests, Opcode, Stage, RESERVED_TAG};

use crate::*;

const SEC: Stage = Stage::SecurityNegotiation;
const OP: Stage = Stage::LoginOperational;
const FF: Stage = Stage::FullFeature;
const INI: &str = "iqn.1994-05.com.example:ini";
const TGT: &str = "iqn.2024-01.org.example:disk1";

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The driver side: one target, optional CHAP accounts, switches for each refusal.
#[derive(Default)]
struct FakeHost {
    disabled: bool,
    internal_portal: bool,
    target_accounts: Vec<(String, String)>,
    discovery_accounts: Vec<(String, String)>,
    params: LocalParams,
    alias: Option<String>,
    /// Refuse admission with this.
    refusal: Option<Refusal>,
    admitted: Vec<String>,
    next_tsih: u16,
}

/// What the fake driver hands out with an admission: dropped when the login fails.
#[derive(Debug, PartialEq, Eq)]
struct Slot(String);

impl LoginHost for FakeHost {
    type Admission = Slot;

    fn accepting_logins(&self) -> bool {
        !self.disabled
    }

    fn admit(&mut self, req: &AdmissionRequest<'_>) -> Result<Admitted<Slot>, Refusal> {
        if req.target != TGT {
            return Err(Refusal::new(
                login_status::NOT_FOUND,
                format!("no target {}", req.target),
            ));
        }
        if let Some(r) = &self.refusal {
            return Err(r.clone());
        }
        self.admitted.push(req.initiator.to_string());
        Ok(Admitted {
            handle: Slot(req.target.to_string()),
            acl_name: format!("{}#acl", req.initiator),
            accounts: Accounts::from_attrs(&self.target_accounts),
            params: self.params.clone(),
            alias: self.alias.clone(),
        })
    }

    fn discovery_accounts(&self) -> Accounts {
        Accounts::from_attrs(&self.discovery_accounts)
    }

    fn internal_portal(&self) -> bool {
        self.internal_portal
    }

    fn alloc_tsih(&mut self) -> u16 {
        self.next_tsih += 1;
        self.next_tsih
    }
}

/// One PDU the target sent, decoded.
#[derive(Debug)]
struct Sent {
    bhs: Bhs,
    data: Vec<u8>,
}

impl Sent {
    fn keys(&self) -> Vec<(String, String)> {
        iscsi_wire::parse_text(&self.data).expect("target text parses")
    }

    fn key(&self, k: &str) -> Option<String> {
        self.keys()
            .into_iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v)
    }

    fn status(&self) -> (u8, u8) {
        (self.bhs.status_class(), self.bhs.status_detail())
    }
}

/// A deterministic initiator talking to one engine connection.
struct Pair {
    conn: Connection<Slot>,
    host: FakeHost,
    now: Instant,
    isid: [u8; 6],
    tsih: u16,
    itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    /// Events other than the queries `answer_queries` answered.
    events: Vec<Event<Slot>>,
    /// The iSNS server's decision for access queries.
    access: bool,
}

impl Pair {
    fn new(host: FakeHost) -> Pair {
        let now = Instant::now();
        let config = Config {
            login_timeout: Duration::from_secs(15),
        };
        Pair {
            conn: Connection::new(config, now),
            host,
            now,
            isid: [0x80, 0, 0, 0x3d, 0, 1],
            tsih: 0,
            itt: 0x10,
            cmd_sn: 7,
            exp_stat_sn: 0,
            events: Vec::new(),
            access: true,
        }
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.conn.handle_bytes(self.now, bytes, &mut self.host);
    }

    fn login_pdu(
        &mut self,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        cont: bool,
        data: &[u8],
    ) -> Vec<u8> {
        self.itt += 1;
        let b = pdu::login_request(&LoginRequest {
            transit,
            cont,
            csg,
            nsg,
            isid: self.isid,
            tsih: self.tsih,
            itt: self.itt,
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data_len: data.len() as u32,
        });
        frame::encode_pdu(&b, data, Digests::NONE)
    }

    /// One login request; returns what the target answered.
    fn login(
        &mut self,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        keys: &[(String, String)],
    ) -> Vec<Sent> {
        let data = iscsi_wire::encode_text(keys);
        let bytes = self.login_pdu(csg, nsg, transit, false, &data);
        self.send_bytes(&bytes);
        self.answer_queries();
        self.sent()
    }

    /// Answers the engine's access queries with `self.access`.
    fn answer_queries(&mut self) {
        // Queries come out as events; keep the others for the test to see.
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::AccessQuery { target, initiator } => {
                    assert_eq!((target.as_str(), initiator.as_str()), (TGT, INI));
                    self.conn.answer_access(self.access, &mut self.host)
                }
                other => self.events.push(other),
            }
        }
    }

    /// Everything the target has queued, decoded; tracks StatSN.
    fn sent(&mut self) -> Vec<Sent> {
        let mut bytes = Vec::new();
        while let Some(b) = self.conn.poll_transmit() {
            bytes.extend_from_slice(&b);
        }
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while let Some(f) =
            frame::parse_frame(rest, Digests::NONE, 1 << 24).expect("target PDUs parse")
        {
            let data = rest[f.data.clone()].to_vec();
            if f.bhs.opcode() != Some(Opcode::NopIn) || f.bhs.itt() != RESERVED_TAG {
                self.exp_stat_sn = f.bhs.stat_sn().wrapping_add(1);
            }
            out.push(Sent { bhs: f.bhs, data });
            rest = &rest[f.total_len..];
        }
        assert!(rest.is_empty(), "a partial PDU was queued");
        out
    }
}

fn normal_keys() -> Vec<(String, String)> {
    vec![
        kv("InitiatorName", INI),
        kv("TargetName", TGT),
        kv("SessionType", "Normal"),
    ]
}

fn discovery_keys() -> Vec<(String, String)> {
    vec![kv("InitiatorName", INI), kv("SessionType", "Discovery")]
}

fn chap_host(mutual: bool) -> FakeHost {
    let mut accounts = vec![kv("IncomingUser", "joe secret123456")];
    if mutual {
        accounts.push(kv("OutgoingUser", "tgt targetsecret12"));
    }
    FakeHost {
        target_accounts: accounts,
        ..FakeHost::default()
    }
}

/// The one Login Response of an exchange step.
fn one(mut sent: Vec<Sent>) -> Sent {
    assert_eq!(sent.len(), 1, "{sent:?}");
    let s = sent.remove(0);
    assert_eq!(s.bhs.opcode(), Some(Opcode::LoginResponse));
    s
}

fn session_ready(p: &mut Pair) -> NormalSession<Slot> {
    let pos = p
        .events
        .iter()
        .position(|e| matches!(e, Event::SessionReady(_)))
        .expect("SessionReady");
    match p.events.remove(pos) {
        Event::SessionReady(s) => *s,
        _ => unreachable!(),
    }
}

fn refused(p: &Pair) -> ((u8, u8), String) {
    match p.events.last() {
        Some(Event::Closed(Close::LoginRefused { status, why, .. })) => (*status, why.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn login_without_authentication() {
    let mut host = FakeHost {
        alias: Some("disk one".into()),
        ..FakeHost::default()
    };
    host.next_tsih = 40;
    let mut p = Pair::new(host);
    let mut keys = normal_keys();
    keys.push(kv("AuthMethod", "None"));
    let r = one(p.login(SEC, OP, true, &keys));
    assert_eq!(r.status(), login_status::SUCCESS);
    assert!(r.bhs.transit() && r.bhs.nsg() == OP);
    assert_eq!(r.bhs.tsih(), 0, "TSIH only in the final response");
    assert_eq!(r.key("AuthMethod").as_deref(), Some("None"));
    assert_eq!(r.key("TargetPortalGroupTag").as_deref(), Some("1"));
    assert_eq!(r.key("TargetAlias").as_deref(), Some("disk one"));
    assert_eq!(p.conn.phase(), Phase::Login);

    let r = one(p.login(OP, FF, true, &[kv("MaxRecvDataSegmentLength", "65536")]));
    assert_eq!(r.status(), login_status::SUCCESS);
    assert!(r.bhs.transit() && r.bhs.nsg() == FF);
    assert_eq!(r.bhs.tsih(), 41);
    assert_eq!(
        r.key("TargetPortalGroupTag"),
        None,
        "only in the first response"
    );
    assert!(r.key("MaxRecvDataSegmentLength").is_some(), "declared once");
    assert_eq!(p.conn.phase(), Phase::FullFeature);
    assert_eq!(
        p.conn.poll_timeout(),
        None,
        "no login timer after the login"
    );

    let s = session_ready(&mut p);
    assert_eq!(s.initiator, INI);
    assert_eq!(s.acl_name, format!("{INI}#acl"));
    assert_eq!(s.admission, Slot(TGT.into()));
    assert_eq!((s.tsih, s.cid, s.isid), (41, 1, p.isid));
    assert_eq!(s.chap_user, None);
    assert_eq!(s.params.max_xmit_data_segment_length, 65536);
    assert_eq!(
        s.exp_cmd_sn, 7,
        "logins are immediate: CmdSN is not consumed"
    );
    assert_eq!(s.stat_sn, r.bhs.stat_sn() + 1);
}

#[test]
fn straight_to_operational_when_no_chap_is_required() {
    let mut p = Pair::new(FakeHost::default());
    let r = one(p.login(OP, FF, true, &normal_keys()));
    assert_eq!(r.status(), login_status::SUCCESS);
    assert!(r.bhs.transit());
    assert!(session_ready(&mut p).tsih != 0);
}

/// CHAP_A, then the answer to the challenge; returns the last response.
fn chap_login(p: &mut Pair, user: &str, secret: &[u8], mutual: Option<(u8, &[u8])>) -> Sent {
    let mut keys = normal_keys();
    keys.push(kv("AuthMethod", "CHAP,None"));
    let r = one(p.login(SEC, OP, true, &keys));
    assert_eq!(r.key("AuthMethod").as_deref(), Some("CHAP"));
    assert!(!r.bhs.transit(), "held while CHAP is under way");
    let r = one(p.login(SEC, OP, true, &[kv("CHAP_A", "7,5")]));
    assert!(!r.bhs.transit());
    let alg = ChapAlgorithm::from_code(r.key("CHAP_A").unwrap().parse().unwrap()).unwrap();
    assert_eq!(alg.code(), 7, "the initiator's first supported choice");
    let id = chap::decode_identifier(&r.key("CHAP_I").unwrap()).unwrap();
    let challenge = chap::decode_binary(&r.key("CHAP_C").unwrap()).unwrap();
    let response = alg.response(id, secret, &challenge);
    let mut keys = vec![
        kv("CHAP_N", user),
        kv("CHAP_R", &chap::encode_hex(&response)),
    ];
    if let Some((ci, cc)) = mutual {
        keys.push(kv("CHAP_I", &ci.to_string()));
        keys.push(kv("CHAP_C", &chap::encode_hex(cc)));
    }
    one(p.login(SEC, OP, true, &keys))
}

#[test]
fn one_way_chap() {
    let mut p = Pair::new(chap_host(false));
    let r = chap_login(&mut p, "joe", b"secret123456", None);
    assert_eq!(r.status(), login_status::SUCCESS);
    assert!(r.bhs.transit() && r.bhs.nsg() == OP);
    assert!(r.keys().is_empty());
    let r = one(p.login(OP, FF, true, &[]));
    assert!(r.bhs.transit());
    assert_eq!(session_ready(&mut p).chap_user.as_deref(), Some("joe"));
}

#[test]
fn mutual_chap() {
    let mut p = Pair::new(chap_host(true));
    let mine = [0x5au8; 16];
    let r = chap_login(&mut p, "joe", b"secret123456", Some((33, &mine)));
    assert_eq!(r.status(), login_status::SUCCESS);
    assert_eq!(r.key("CHAP_N").as_deref(), Some("tgt"));
    let alg = ChapAlgorithm::from_code(7).unwrap();
    let want = alg.response(33, b"targetsecret12", &mine);
    let got = chap::decode_binary(&r.key("CHAP_R").unwrap()).unwrap();
    assert_eq!(got, want, "the target proves its own secret");
    one(p.login(OP, FF, true, &[]));
    assert_eq!(p.conn.phase(), Phase::FullFeature);
}

#[test]
fn chap_failures() {
    // Wrong secret, unknown user.
    for (user, secret) in [("joe", &b"secret123457"[..]), ("bob", b"secret123456")] {
        let mut p = Pair::new(chap_host(false));
        let r = chap_login(&mut p, user, secret, None);
        assert_eq!(r.status(), login_status::AUTHENTICATION_FAILURE);
        assert_eq!(r.bhs.tsih(), 0);
        let (status, why) = refused(&p);
        assert_eq!(status, login_status::AUTHENTICATION_FAILURE);
        assert!(!why.contains("secret123456"), "{why}");
        assert_eq!(p.conn.phase(), Phase::Closed);
    }
    // Mutual CHAP without an OutgoingUser, and a reflected challenge.
    let mut p = Pair::new(chap_host(false));
    let r = chap_login(&mut p, "joe", b"secret123456", Some((1, &[7u8; 16])));
    assert_eq!(r.status(), login_status::AUTHENTICATION_FAILURE);
    // CHAP required: AuthMethod None, the security stage skipped, or left without
    // an AuthMethod.
    let mut keys = normal_keys();
    keys.push(kv("AuthMethod", "None"));
    let mut p = Pair::new(chap_host(false));
    assert_eq!(
        one(p.login(SEC, OP, true, &keys)).status(),
        login_status::AUTHENTICATION_FAILURE
    );
    let mut p = Pair::new(chap_host(false));
    assert_eq!(
        one(p.login(OP, FF, true, &normal_keys())).status(),
        login_status::AUTHENTICATION_FAILURE
    );
    let mut p = Pair::new(chap_host(false));
    assert_eq!(
        one(p.login(SEC, OP, true, &normal_keys())).status(),
        login_status::AUTHENTICATION_FAILURE
    );
    // CHAP keys outside the security stage.
    let mut p = Pair::new(FakeHost::default());
    let mut keys = normal_keys();
    keys.push(kv("CHAP_A", "5"));
    assert_eq!(
        one(p.login(OP, FF, true, &keys)).status(),
        login_status::INITIATOR_ERROR
    );
    // An internal portal waives CHAP.
    let mut host = chap_host(false);
    host.internal_portal = true;
    let mut p = Pair::new(host);
    assert_eq!(
        one(p.login(OP, FF, true, &normal_keys())).status(),
        login_status::SUCCESS
    );
}

#[test]
fn refusals_before_authentication() {
    type Case = (FakeHost, Vec<(String, String)>, (u8, u8));
    let cases: Vec<Case> = vec![
        (
            FakeHost::default(),
            vec![kv("TargetName", TGT)],
            login_status::MISSING_PARAMETER,
        ),
        (
            FakeHost::default(),
            vec![kv("InitiatorName", INI)],
            login_status::MISSING_PARAMETER,
        ),
        (
            FakeHost::default(),
            vec![kv("InitiatorName", INI), kv("SessionType", "Other")],
            login_status::SESSION_TYPE_NOT_SUPPORTED,
        ),
        (
            FakeHost::default(),
            vec![kv("InitiatorName", INI), kv("TargetName", "iqn.none")],
            login_status::NOT_FOUND,
        ),
        (
            FakeHost {
                disabled: true,
                ..FakeHost::default()
            },
            discovery_keys(),
            login_status::SERVICE_UNAVAILABLE,
        ),
    ];
    for (host, keys, want) in cases {
        let mut p = Pair::new(host);
        let r = one(p.login(SEC, OP, true, &keys));
        assert_eq!(r.status(), want, "{keys:?}");
        assert!(!r.bhs.transit());
        assert_eq!(refused(&p).0, want);
        assert!(p.host.admitted.is_empty() || want == login_status::SUCCESS);
    }
    // A refusal carries the driver's keys (a redirection).
    let mut refusal = Refusal::new(login_status::TARGET_MOVED_TEMPORARILY, "moved");
    refusal.keys.push(kv("TargetAddress", "10.0.0.2:3260"));
    let mut p = Pair::new(FakeHost {
        refusal: Some(refusal),
        ..FakeHost::default()
    });
    let r = one(p.login(SEC, OP, true, &normal_keys()));
    assert_eq!(r.status(), login_status::TARGET_MOVED_TEMPORARILY);
    assert_eq!(r.key("TargetAddress").as_deref(), Some("10.0.0.2:3260"));
}

#[test]
fn isns_access_decides_before_any_answer() {
    let mut p = Pair::new(FakeHost::default());
    let bytes = p.login_pdu(
        SEC,
        OP,
        true,
        false,
        &iscsi_wire::encode_text(&normal_keys()),
    );
    p.send_bytes(&bytes);
    assert!(
        p.sent().is_empty(),
        "the response waits for the access decision"
    );
    match p.conn.poll_event() {
        Some(Event::AccessQuery { target, initiator }) => {
            assert_eq!((target.as_str(), initiator.as_str()), (TGT, INI))
        }
        other => panic!("{other:?}"),
    }
    // What arrives meanwhile waits too.
    let next = p.login_pdu(OP, FF, true, false, &[]);
    p.send_bytes(&next);
    assert!(p.sent().is_empty());
    p.conn.answer_access(true, &mut p.host);
    let sent = p.sent();
    assert_eq!(sent.len(), 2, "both answered once allowed");
    assert!(sent[1].bhs.transit() && sent[1].bhs.nsg() == FF);

    let mut p = Pair::new(FakeHost::default());
    p.access = false;
    let r = one(p.login(SEC, OP, true, &normal_keys()));
    assert_eq!(r.status(), login_status::NOT_FOUND);
    assert!(refused(&p).1.contains("iSNS"));
}

#[test]
fn malformed_logins() {
    // Not a login at all: closed without an answer.
    let mut p = Pair::new(FakeHost::default());
    let nop = pdu::nop_out(true, [0; 8], 1, RESERVED_TAG, 0, 0, 0);
    p.send_bytes(&frame::encode_pdu(&nop, &[], Digests::NONE));
    assert!(p.sent().is_empty());
    assert!(matches!(
        p.conn.poll_event(),
        Some(Event::Closed(Close::ProtocolError(_)))
    ));
    // A data segment beyond the login limit.
    let mut p = Pair::new(FakeHost::default());
    let big = vec![b'a'; 9000];
    let bytes = p.login_pdu(SEC, OP, false, false, &big);
    p.send_bytes(&bytes);
    assert!(matches!(
        p.conn.poll_event(),
        Some(Event::Closed(Close::ProtocolError(_)))
    ));
    // Invalid transitions, C with T, an identity change, a newer version only.
    for case in 0..4 {
        let mut p = Pair::new(FakeHost::default());
        let data = iscsi_wire::encode_text(&normal_keys());
        let mut bytes = match case {
            0 => p.login_pdu(OP, SEC, true, false, &data),
            1 => p.login_pdu(SEC, OP, true, true, &data),
            _ => p.login_pdu(SEC, OP, false, false, &data),
        };
        if case == 3 {
            bytes[3] = 1; // Version-min
        }
        p.send_bytes(&bytes);
        p.answer_queries();
        if case == 2 {
            one(p.sent());
            p.isid[5] = 9;
            let again = p.login_pdu(SEC, OP, true, false, &[]);
            p.send_bytes(&again);
        }
        let r = p.sent().pop().expect("a response");
        let want = if case == 3 {
            login_status::UNSUPPORTED_VERSION
        } else {
            login_status::INITIATOR_ERROR
        };
        assert_eq!(r.status(), want, "case {case}");
        assert_eq!(p.conn.phase(), Phase::Closed);
    }
    // Back to the security stage after leaving it.
    let mut p = Pair::new(FakeHost::default());
    one(p.login(SEC, OP, true, &normal_keys()));
    let r = one(p.login(SEC, OP, true, &[]));
    assert_eq!(r.status(), login_status::INITIATOR_ERROR);
    // Text that is not key=value.
    let mut p = Pair::new(FakeHost::default());
    let bytes = p.login_pdu(SEC, OP, true, false, b"InitiatorName\0");
    p.send_bytes(&bytes);
    assert_eq!(one(p.sent()).status(), login_status::INITIATOR_ERROR);
}

#[test]
fn continued_login_text_and_trickled_bytes() {
    let mut p = Pair::new(FakeHost::default());
    let text = iscsi_wire::encode_text(&normal_keys());
    let (a, b) = text.split_at(10);
    let first = p.login_pdu(SEC, OP, false, true, a);
    p.send_bytes(&first);
    let r = one(p.sent());
    assert_eq!(r.status(), login_status::SUCCESS);
    assert!(
        r.data.is_empty() && !r.bhs.transit(),
        "an empty answer asks for more"
    );
    // The rest, one byte at a time.
    let second = p.login_pdu(SEC, OP, true, false, b);
    for byte in &second {
        p.send_bytes(std::slice::from_ref(byte));
    }
    p.answer_queries();
    let r = one(p.sent());
    assert!(r.bhs.transit());
    assert_eq!(r.key("TargetPortalGroupTag").as_deref(), Some("1"));
}

#[test]
fn negotiation_results_and_held_transit() {
    // The target needs an answer to its own offers before it lets the login go on.
    let params = LocalParams {
        immediate_data: false,
        max_burst_length: 131072,
        header_digest: DigestPolicy::parse("CRC32C").unwrap(),
        ..LocalParams::default()
    };
    let mut p = Pair::new(FakeHost {
        params,
        ..FakeHost::default()
    });
    let mut keys = normal_keys();
    keys.extend([
        kv("MaxRecvDataSegmentLength", "32768"),
        kv("InitialR2T", "No"),
    ]);
    let r = one(p.login(OP, FF, true, &keys));
    assert!(!r.bhs.transit(), "offers outstanding: {:?}", r.keys());
    assert_eq!(r.key("ImmediateData").as_deref(), Some("No"));
    assert_eq!(r.key("MaxBurstLength").as_deref(), Some("131072"));
    assert_eq!(r.key("HeaderDigest").as_deref(), Some("CRC32C"));
    assert_eq!(r.key("InitialR2T").as_deref(), Some("No"));
    let answers = [
        kv("ImmediateData", "No"),
        kv("MaxBurstLength", "131072"),
        kv("HeaderDigest", "CRC32C"),
    ];
    let r = one(p.login(OP, FF, true, &answers));
    assert!(r.bhs.transit(), "{:?}", r.keys());
    let s = session_ready(&mut p).params;
    assert!(!s.immediate_data && !s.initial_r2t);
    assert_eq!(s.max_burst_length, 131072);
    assert_eq!(s.header_digest, Digest::Crc32c);
    assert_eq!(s.data_digest, Digest::None);
    assert_eq!(s.max_xmit_data_segment_length, 32768);

    // A key negotiated twice ends the login.
    let mut p = Pair::new(FakeHost::default());
    let mut keys = normal_keys();
    keys.push(kv("MaxBurstLength", "65536"));
    one(p.login(OP, FF, false, &keys));
    let r = one(p.login(OP, FF, true, &[kv("MaxBurstLength", "65536")]));
    assert_eq!(r.status(), login_status::INITIATOR_ERROR);
}

#[test]
fn login_timeout_follows_the_fake_clock() {
    let mut p = Pair::new(FakeHost::default());
    let start = p.now;
    assert_eq!(p.conn.poll_timeout(), Some(start + Duration::from_secs(15)));
    // Trickling bytes do not move the deadline.
    let bytes = p.login_pdu(
        SEC,
        OP,
        true,
        false,
        &iscsi_wire::encode_text(&normal_keys()),
    );
    p.now = start + Duration::from_secs(10);
    p.send_bytes(&bytes[..20]);
    assert_eq!(p.conn.poll_timeout(), Some(start + Duration::from_secs(15)));
    p.conn.handle_timeout(start + Duration::from_secs(14));
    assert_eq!(p.conn.phase(), Phase::Login);
    p.conn.handle_timeout(start + Duration::from_secs(15));
    assert_eq!(p.conn.phase(), Phase::Closed);
    assert!(matches!(
        p.conn.poll_event(),
        Some(Event::Closed(Close::LoginTimedOut))
    ));
    assert!(
        p.sent().is_empty(),
        "a timed-out login is closed without an answer"
    );
    // Bytes arriving late are the same as a timer firing.
    let mut p = Pair::new(FakeHost::default());
    p.now += Duration::from_secs(16);
    p.send_bytes(&bytes);
    assert!(p.sent().is_empty());
    assert!(matches!(
        p.conn.poll_event(),
        Some(Event::Closed(Close::LoginTimedOut))
    ));
    // A discovery session has no login timer once logged in.
    let mut p = Pair::new(FakeHost::default());
    one(p.login(SEC, FF, true, &discovery_keys()));
    assert_eq!(p.conn.poll_timeout(), None);
    p.conn.handle_timeout(p.now + Duration::from_secs(60));
    assert_eq!(p.conn.phase(), Phase::Discovery);
}

#[test]
fn bytes_after_the_login_are_handed_over() {
    let mut p = Pair::new(FakeHost::default());
    let mut bytes = p.login_pdu(
        OP,
        FF,
        true,
        false,
        &iscsi_wire::encode_text(&normal_keys()),
    );
    let nop = pdu::nop_out(true, [0; 8], 9, RESERVED_TAG, 7, 1, 0);
    let tail = frame::encode_pdu(&nop, &[], Digests::NONE);
    bytes.extend_from_slice(&tail);
    p.send_bytes(&bytes);
    p.answer_queries();
    assert!(one(p.sent()).bhs.transit());
    assert_eq!(p.conn.phase(), Phase::FullFeature);
    let received = p.conn.take_received();
    assert_eq!(received, tail);
    // The full-feature framer starts from them: the first PDU is not lost.
    let mut framer = crate::full_feature::Framer::new(8192, &received);
    let first = framer.next_pdu().expect("valid").expect("the NOP-Out");
    assert_eq!(first.bhs.as_bytes(), nop.as_bytes());
    assert!(framer.next_pdu().expect("nothing more").is_none());
    p.send_bytes(&tail);
    assert!(
        p.sent().is_empty(),
        "the driver runs the full-feature phase"
    );
}

impl Pair {
    fn discovery_login(&mut self) {
        let r = one(self.login(SEC, FF, true, &discovery_keys()));
        assert_eq!(r.status(), login_status::SUCCESS);
        assert!(r.bhs.transit() && r.bhs.nsg() == FF);
        assert_eq!(
            r.bhs.tsih(),
            0,
            "discovery sessions get no TSIH from the driver"
        );
        assert_eq!(r.key("TargetPortalGroupTag"), None);
        assert!(matches!(
            self.events.pop(),
            Some(Event::DiscoveryReady { .. })
        ));
        assert_eq!(self.conn.phase(), Phase::Discovery);
    }

    fn text(&mut self, ttt: u32, keys: &[(String, String)]) {
        let data = iscsi_wire::encode_text(keys);
        self.itt += 1;
        let b = pdu::text_request(
            false,
            true,
            false,
            self.itt,
            ttt,
            self.cmd_sn,
            self.exp_stat_sn,
            data.len() as u32,
        );
        self.cmd_sn += 1;
        self.send_bytes(&frame::encode_pdu(&b, &data, Digests::NONE));
    }

    fn send_targets_query(&mut self) -> String {
        match self.conn.poll_event() {
            Some(Event::SendTargets { initiator, what }) => {
                assert_eq!(initiator, INI);
                what
            }
            other => panic!("expected SendTargets, got {other:?}"),
        }
    }
}

#[test]
fn discovery_session() {
    let mut p = Pair::new(FakeHost::default());
    p.discovery_login();
    assert!(
        p.host.admitted.is_empty(),
        "no target admission for discovery"
    );

    p.text(RESERVED_TAG, &[kv("SendTargets", "All")]);
    assert!(p.sent().is_empty(), "waits for the listing");
    assert_eq!(p.send_targets_query(), "All");
    let listing = [
        kv("TargetName", TGT),
        kv("TargetAddress", "10.0.0.1:3260,1"),
    ];
    p.conn.answer_send_targets(&listing, &mut p.host);
    let r = p.sent();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].bhs.opcode(), Some(Opcode::TextResponse));
    assert!(r[0].bhs.final_bit() && r[0].bhs.ttt() == RESERVED_TAG);
    assert_eq!(r[0].keys(), listing);
    assert_eq!(r[0].bhs.itt(), p.itt);
    assert_eq!(
        r[0].bhs.exp_cmd_sn(),
        p.cmd_sn,
        "the Text request's CmdSN was taken"
    );

    // Other text: an empty answer, no query.
    p.text(RESERVED_TAG, &[kv("X-vendor", "1")]);
    let r = p.sent();
    assert!(r[0].data.is_empty() && r[0].bhs.final_bit());

    // NOP-Out with a reply wanted is echoed; without, nothing.
    p.itt += 1;
    let nop = pdu::nop_out(
        true,
        [0; 8],
        p.itt,
        RESERVED_TAG,
        p.cmd_sn,
        p.exp_stat_sn,
        4,
    );
    p.send_bytes(&frame::encode_pdu(&nop, b"ping", Digests::NONE));
    let r = p.sent();
    assert_eq!(r[0].bhs.opcode(), Some(Opcode::NopIn));
    assert_eq!(r[0].data, b"ping");
    let nop = pdu::nop_out(
        true,
        [0; 8],
        RESERVED_TAG,
        RESERVED_TAG,
        p.cmd_sn,
        p.exp_stat_sn,
        0,
    );
    p.send_bytes(&frame::encode_pdu(&nop, &[], Digests::NONE));
    assert!(p.sent().is_empty());

    // A SCSI command has no place here.
    let mut cmd = Bhs::new(Opcode::ScsiCommand);
    cmd.set_itt(77);
    p.send_bytes(&frame::encode_pdu(&cmd, &[], Digests::NONE));
    let r = p.sent();
    assert_eq!(r[0].bhs.opcode(), Some(Opcode::Reject));
    assert_eq!(r[0].bhs.reject_reason(), reject_reason::PROTOCOL_ERROR);
    assert_eq!(&r[0].data[..], &cmd.0[..]);

    // Logout ends the session.
    p.itt += 1;
    let lo = pdu::logout_request(
        true,
        pdu::logout_reason::CLOSE_SESSION,
        p.itt,
        1,
        p.cmd_sn,
        p.exp_stat_sn,
    );
    p.send_bytes(&frame::encode_pdu(&lo, &[], Digests::NONE));
    let r = p.sent();
    assert_eq!(r[0].bhs.opcode(), Some(Opcode::LogoutResponse));
    assert_eq!(r[0].bhs.response(), pdu::logout_response::SUCCESS);
    assert!(matches!(
        p.conn.poll_event(),
        Some(Event::Closed(Close::Logout))
    ));
    assert_eq!(p.conn.phase(), Phase::Closed);
}

#[test]
fn long_send_targets_answers_go_in_pieces() {
    let mut p = Pair::new(FakeHost::default());
    // The initiator can take 512 bytes per PDU.
    let mut keys = discovery_keys();
    keys.push(kv("MaxRecvDataSegmentLength", "512"));
    let r = one(p.login(SEC, FF, true, &keys));
    assert!(r.bhs.transit());
    let listing: Vec<_> = (0..40)
        .flat_map(|i| {
            [
                kv("TargetName", &format!("iqn.2024-01.org.example:t{i:03}")),
                kv("TargetAddress", "10.0.0.1:3260,1"),
            ]
        })
        .collect();
    p.text(RESERVED_TAG, &[kv("SendTargets", "All")]);
    p.send_targets_query();
    p.conn.answer_send_targets(&listing, &mut p.host);
    let mut body = Vec::new();
    let mut pieces = 0;
    loop {
        let r = p.sent().pop().expect("a Text Response");
        assert!(r.data.len() <= 512);
        body.extend_from_slice(&r.data);
        pieces += 1;
        if r.bhs.final_bit() {
            assert_eq!(r.bhs.ttt(), RESERVED_TAG);
            break;
        }
        assert!(r.bhs.continue_bit() && r.bhs.ttt() != RESERVED_TAG);
        // Asking for the rest: an empty Text request echoing the TTT.
        p.text(r.bhs.ttt(), &[]);
        assert!(
            p.conn.poll_event().is_none(),
            "no new query for a continuation"
        );
    }
    assert!(pieces > 3);
    assert_eq!(iscsi_wire::parse_text(&body).unwrap(), listing);
}

#[test]
fn discovery_chap_uses_the_driver_accounts() {
    let host = FakeHost {
        discovery_accounts: vec![kv("IncomingUser", "disco discosecret99")],
        // The target's accounts do not apply to discovery.
        target_accounts: vec![kv("IncomingUser", "joe secret123456")],
        ..FakeHost::default()
    };
    let mut p = Pair::new(host);
    let r = one(p.login(SEC, FF, true, &discovery_keys()));
    assert_eq!(
        r.status(),
        login_status::AUTHENTICATION_FAILURE,
        "CHAP required"
    );
    let host = FakeHost {
        discovery_accounts: vec![kv("IncomingUser", "disco discosecret99")],
        ..FakeHost::default()
    };
    let mut p = Pair::new(host);
    let mut keys = discovery_keys();
    keys.push(kv("AuthMethod", "CHAP"));
    one(p.login(SEC, FF, true, &keys));
    let r = one(p.login(SEC, FF, true, &[kv("CHAP_A", "5")]));
    let alg = ChapAlgorithm::from_code(5).unwrap();
    let id = chap::decode_identifier(&r.key("CHAP_I").unwrap()).unwrap();
    let c = chap::decode_binary(&r.key("CHAP_C").unwrap()).unwrap();
    let resp = chap::encode_hex(&alg.response(id, b"discosecret99", &c));
    let r = one(p.login(SEC, FF, true, &[kv("CHAP_N", "disco"), kv("CHAP_R", &resp)]));
    assert_eq!(r.status(), login_status::SUCCESS);
    assert!(r.bhs.transit() && r.bhs.nsg() == FF);
    assert_eq!(p.conn.phase(), Phase::Discovery);
}

#[test]
fn a_failed_login_releases_its_admission() {
    // The admission handle (a MaxSessions slot in the driver) lives in the login
    // state: refused after admission, nothing keeps it.
    let mut p = Pair::new(chap_host(false));
    let r = chap_login(&mut p, "joe", b"wrongsecret!", None);
    assert_eq!(r.status(), login_status::AUTHENTICATION_FAILURE);
    assert_eq!(p.host.admitted, [INI]);
    assert!(p
        .events
        .iter()
        .all(|e| !matches!(e, Event::SessionReady(_))));
}

#[test]
fn bytes_piling_up_behind_a_query_close_the_connection() {
    let mut p = Pair::new(FakeHost::default());
    let bytes = p.login_pdu(
        SEC,
        OP,
        true,
        false,
        &iscsi_wire::encode_text(&normal_keys()),
    );
    p.send_bytes(&bytes);
    assert!(matches!(
        p.conn.poll_event(),
        Some(Event::AccessQuery { .. })
    ));
    // Whole, valid PDUs, but nobody may consume them before the answer.
    let next = p.login_pdu(SEC, OP, false, false, &[b'x'; 8000]);
    let mut sent = 0;
    while p.conn.phase() == Phase::Login {
        p.send_bytes(&next);
        sent += next.len();
        assert!(sent < 2 * MAX_AHEAD, "never closed");
    }
    assert!(sent > iscsi_wire::negotiate::SCST_MAX_DATA_SEGMENT as usize);
    assert!(matches!(
        p.conn.poll_event(),
        Some(Event::Closed(Close::ProtocolError(_)))
    ));
}

/// The engine stays sans-I/O: neither it nor the wire crate under it depends on a
/// runtime or a networking crate (`cargo tree -p iscsi-engine -e normal` shows the
/// whole tree; this catches the direct way in).
#[test]
fn no_runtime_in_the_dependency_tree() {
    for (name, manifest) in [
        ("iscsi-engine", include_str!("../Cargo.toml")),
        ("iscsi-wire", include_str!("../../iscsi-wire/Cargo.toml")),
    ] {
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|d| d.split("\n[").next())
            .unwrap_or_default();
        for banned in ["tokio", "mio", "socket2", "async-std", "smol", "libc"] {
            assert!(
                !deps.lines().any(|l| l.trim_start().starts_with(banned)),
                "{name} depends on {banned}"
            );
        }
    }
}
