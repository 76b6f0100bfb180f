//! The login phase (RFC 7143 6, spec/scst.md 6.4): security and operational stages,
//! the checks SCST makes before admitting a normal session, session reinstatement, and
//! then the hand-over to the full-feature phase (normal or discovery).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iscsi_wire::negotiate::{Digest, Negotiator};
use iscsi_wire::pdu::{self, login_status, LoginResponse, TargetSn};
use iscsi_wire::{Opcode, Stage};
use scst_core::{Target, TransportId};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::auth::{Accounts, Auth};
use crate::conn::{self, ConnEvent};
use crate::io::{PduReader, PduWriter};
use crate::params::{self, ConnParams};
use crate::{EventSink, IscsiDriver, SessionHandle, SessionKey, SessionSlot};

/// Login PDUs carry at most the RFC default data segment (8192) until negotiated.
const LOGIN_MAX_DATA: u32 = 8192;
/// Cap on accumulated login text (C bit continuation) against memory abuse.
const MAX_LOGIN_TEXT: usize = 64 * 1024;

struct Failure {
    status: (u8, u8),
    why: String,
    /// Keys the refusal carries (a redirection's TargetAddress).
    keys: Vec<(String, String)>,
}

fn fail(status: (u8, u8), why: impl Into<String>) -> Failure {
    Failure {
        status,
        why: why.into(),
        keys: Vec::new(),
    }
}

/// What a successful login produced.
struct LoggedIn {
    discovery: bool,
    initiator: String,
    target: Option<Arc<Target>>,
    /// The name the session registers with the core (`<iqn>#<portal>` under
    /// `per_portal_acl`).
    acl_name: String,
    /// The target's MaxSessions slot this session holds while it lives.
    slot: Option<SessionSlot>,
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
    negotiated: iscsi_wire::negotiate::SessionParams,
    stat_sn: u32,
    exp_cmd_sn: u32,
}

pub(crate) async fn serve_connection(driver: Arc<IscsiDriver>, mut stream: TcpStream) {
    let local_addr = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr.map(|a| a.to_string()).unwrap_or_default();
    let mut reader = PduReader::new(LOGIN_MAX_DATA);
    let mut out = PduWriter::default();
    // The whole login, however its bytes trickle in, must finish in time (driver
    // attribute `login_timeout`).
    let li = match tokio::time::timeout(
        driver.login_timeout(),
        login(
            &driver,
            &mut stream,
            local_addr,
            &peer,
            &mut reader,
            &mut out,
        ),
    )
    .await
    {
        Ok(Ok(li)) => li,
        Ok(Err(why)) => {
            log::info!("login from {peer} failed: {why}");
            return;
        }
        Err(_) => {
            log::info!("login from {peer} timed out");
            return;
        }
    };
    let p = &li.negotiated;
    let target = li.target.clone();
    let nop = target
        .as_ref()
        .map_or(params::DEFAULT_NOP_IN_INTERVAL, |t| {
            params::target_num(t, "NopInInterval", params::DEFAULT_NOP_IN_INTERVAL)
        });
    let cp = ConnParams {
        scst: driver.scst().clone(),
        driver: driver.clone(),
        local_addr,
        header_digest: p.header_digest == Digest::Crc32c,
        data_digest: p.data_digest == Digest::Crc32c,
        max_recv_data_segment_length: p.max_recv_data_segment_length,
        max_xmit_data_segment_length: p.max_xmit_data_segment_length,
        max_burst_length: p.max_burst_length,
        first_burst_length: p.first_burst_length,
        initial_r2t: p.initial_r2t,
        immediate_data: p.immediate_data,
        max_outstanding_r2t: p.max_outstanding_r2t.max(1),
        queued_commands: target
            .as_ref()
            .map_or(params::DEFAULT_QUEUED_COMMANDS, |t| {
                params::target_num(t, "QueuedCommands", params::DEFAULT_QUEUED_COMMANDS)
            }),
        nop_in_interval: (nop > 0).then(|| Duration::from_secs(nop as u64)),
        nop_in_timeout: Duration::from_secs(
            target.as_ref().map_or(params::DEFAULT_NOP_IN_TIMEOUT, |t| {
                params::target_num(t, "NopInTimeout", params::DEFAULT_NOP_IN_TIMEOUT)
            }) as u64,
        ),
    };
    reader.max_data = cp.max_recv_data_segment_length;
    if li.discovery {
        crate::discovery::run(stream, reader, cp, &li.initiator, li.stat_sn, li.exp_cmd_sn).await;
        return;
    }
    let Some(target) = target else { return };
    // Under per_portal_acl each portal's name is a distinct initiator, as in SCST:
    // a login through another portal does not reinstate this one's session.
    let key = SessionKey {
        initiator: li.acl_name.to_ascii_lowercase(),
        isid: li.isid,
        target: target.name.clone(),
    };

    // Session reinstatement: the old session with this ISID goes first (RFC 7143 6.3.5).
    let old = driver.sessions.lock().remove(&key);
    if let Some(old) = old {
        log::info!("{}: reinstating session (TSIH {})", li.initiator, old.tsih);
        let _ = old.events.send(ConnEvent::Close);
        let mut done = old.done;
        let _ = tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| *d)).await;
    }
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    let tid = TransportId::Iscsi {
        name: li.initiator.clone(),
        isid: Some(li.isid),
    };
    let session = driver.scst().register_session_as(
        &target,
        tid,
        li.acl_name.clone(),
        Arc::new(EventSink(ev_tx.clone())),
    );
    session.set_transport_attrs(session_attrs(&li, &peer_addr));
    // The new nexus starts with POWER ON/RESET like any other, which already tells the
    // initiator its earlier state is gone. SCST queues I_T NEXUS LOSS on the old
    // session's nexuses, which end with it, so none is queued here.
    driver.sessions.lock().insert(
        key.clone(),
        SessionHandle {
            tsih: li.tsih,
            events: ev_tx,
            done: done_rx,
        },
    );
    log::info!(
        "{}: session TSIH {} to {} (group {})",
        li.initiator,
        li.tsih,
        target.name,
        session.group.as_deref().unwrap_or("default")
    );
    conn::run(
        stream,
        reader,
        session.clone(),
        cp,
        li.stat_sn,
        li.exp_cmd_sn,
        ev_rx,
    )
    .await;
    // I_T nexus loss: the session's SPC-2 reservation goes with it.
    session.unregister();
    {
        let mut s = driver.sessions.lock();
        if s.get(&key).is_some_and(|h| h.tsih == li.tsih) {
            s.remove(&key);
        }
    }
    drop(li.slot);
    let _ = done_tx.send(true);
}

/// What `sessions/<initiator>/` shows of an iSCSI session (spec 6.7): the negotiated
/// keys, `sid` (ISID and TSIH), and a directory per connection named by the
/// initiator's address with its `cid`, `ip` and `state`.
fn session_attrs(li: &LoggedIn, peer: &Option<SocketAddr>) -> Vec<(String, String)> {
    let p = &li.negotiated;
    let yn = |b: bool| if b { "Yes" } else { "No" }.to_string();
    let digest = |d: Digest| {
        if d == Digest::Crc32c {
            "CRC32C"
        } else {
            "None"
        }
        .to_string()
    };
    let isid = li.isid.iter().fold(0u64, |a, &b| a << 8 | b as u64);
    let mut v = vec![
        ("InitialR2T".to_string(), yn(p.initial_r2t)),
        ("ImmediateData".to_string(), yn(p.immediate_data)),
        (
            "MaxRecvDataSegmentLength".to_string(),
            p.max_recv_data_segment_length.to_string(),
        ),
        (
            "MaxXmitDataSegmentLength".to_string(),
            p.max_xmit_data_segment_length.to_string(),
        ),
        ("MaxBurstLength".to_string(), p.max_burst_length.to_string()),
        (
            "FirstBurstLength".to_string(),
            p.first_burst_length.to_string(),
        ),
        (
            "MaxOutstandingR2T".to_string(),
            p.max_outstanding_r2t.to_string(),
        ),
        ("HeaderDigest".to_string(), digest(p.header_digest)),
        ("DataDigest".to_string(), digest(p.data_digest)),
        (
            "sid".to_string(),
            format!("{:x}", isid << 16 | li.tsih as u64),
        ),
    ];
    if let Some(a) = peer {
        let ip = a.ip().to_canonical().to_string();
        v.push((format!("{ip}/cid"), li.cid.to_string()));
        v.push((format!("{ip}/ip"), ip.clone()));
        v.push((format!("{ip}/state"), "established".to_string()));
    }
    v
}

struct State {
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
    itt: u32,
    stat_sn: u32,
    exp_cmd_sn: u32,
    initiator: Option<String>,
    discovery: bool,
    target: Option<Arc<Target>>,
    acl_name: String,
    slot: Option<SessionSlot>,
    neg: Option<Negotiator>,
    text: Vec<u8>,
    sent_tpgt: bool,
    /// The portal (local address) the connection came in on.
    local: SocketAddr,
    /// The security stage, set up once the session type and target are known.
    auth: Option<Auth>,
}

impl State {
    fn sn(&self) -> TargetSn {
        TargetSn {
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.exp_cmd_sn,
        }
    }
}

async fn login(
    driver: &Arc<IscsiDriver>,
    stream: &mut TcpStream,
    local: SocketAddr,
    peer: &str,
    reader: &mut PduReader,
    out: &mut PduWriter,
) -> Result<LoggedIn, String> {
    let mut st: Option<State> = None;
    loop {
        let pdu = reader.recv(stream).await.map_err(|e| e.to_string())?;
        let bhs = pdu.bhs;
        if bhs.opcode() != Some(Opcode::LoginRequest) {
            return Err(format!(
                "expected a Login Request, got opcode {:#x}",
                bhs.opcode_raw()
            ));
        }
        let s = st.get_or_insert_with(|| State {
            isid: bhs.isid(),
            tsih: bhs.tsih(),
            cid: bhs.cid(),
            itt: bhs.itt(),
            stat_sn: bhs.exp_stat_sn(),
            exp_cmd_sn: bhs.cmd_sn(),
            initiator: None,
            discovery: false,
            target: None,
            acl_name: String::new(),
            slot: None,
            neg: None,
            text: Vec::new(),
            sent_tpgt: false,
            local,
            auth: None,
        });
        s.itt = bhs.itt();
        let csg = bhs.csg();
        let (transit, nsg) = (bhs.transit(), bhs.nsg());
        let first = s.neg.is_none();
        let mut step = step(driver, s, &bhs, &pdu.data);
        // iSNS AccessControl (spec 6.4, 6.9) asks the server, so it runs here, awaited.
        if let (true, Ok(_), Some(t), Some(i)) = (first, &step, &s.target, &s.initiator) {
            if !crate::isns::login_allowed(driver, &t.name, i).await {
                let why = format!("{i}: the iSNS server does not show {} to it", t.name);
                step = Err(fail(login_status::NOT_FOUND, why));
            }
        }
        let (keys, status, done) = match step {
            Ok(Step::Continue) => (Vec::new(), login_status::SUCCESS, false),
            Ok(Step::Keys(keys)) => {
                let done = transit && nsg == Stage::FullFeature;
                (keys, login_status::SUCCESS, done)
            }
            Err(f) => {
                if f.status == login_status::AUTHENTICATION_FAILURE {
                    // Operators need to see refused credentials; the reason never
                    // carries a secret.
                    log::warn!(
                        "authentication of initiator {} from {peer} failed: {}",
                        s.initiator.as_deref().unwrap_or("(unnamed)"),
                        f.why
                    );
                }
                let data = iscsi_wire::encode_text(&f.keys);
                let resp = LoginResponse {
                    transit: false,
                    cont: false,
                    csg,
                    nsg: csg,
                    isid: s.isid,
                    tsih: 0,
                    itt: s.itt,
                    status: f.status,
                    sn: s.sn(),
                    data_len: data.len() as u32,
                };
                let data = (!data.is_empty()).then(|| Bytes::from(data));
                out.push(pdu::login_response(&resp), data);
                let _ = out.flush(stream).await;
                return Err(f.why);
            }
        };
        // Hold the transit while target offers await the initiator's answers.
        // Likewise while CHAP is still under way: the initiator may ask to move on
        // from its first security request, before it has been challenged.
        let awaiting = s.neg.as_ref().is_some_and(|n| n.awaiting_replies())
            || s.auth.as_ref().is_some_and(|a| !a.complete());
        let transit = transit && !awaiting;
        let done = done && transit;
        if done && !s.discovery && s.tsih == 0 {
            s.tsih = driver.alloc_tsih();
        }
        let data = iscsi_wire::encode_text(&keys);
        let resp = LoginResponse {
            transit,
            cont: false,
            csg,
            nsg: if transit { nsg } else { csg },
            isid: s.isid,
            tsih: if done { s.tsih } else { 0 },
            itt: s.itt,
            status,
            sn: s.sn(),
            data_len: data.len() as u32,
        };
        s.stat_sn = s.stat_sn.wrapping_add(1);
        out.push(pdu::login_response(&resp), Some(Bytes::from(data)));
        out.flush(stream).await.map_err(|e| format!("send: {e}"))?;
        if done {
            let neg = s.neg.take().ok_or("login finished without negotiation")?;
            return Ok(LoggedIn {
                discovery: s.discovery,
                initiator: s.initiator.clone().unwrap_or_default(),
                target: s.target.clone(),
                acl_name: std::mem::take(&mut s.acl_name),
                slot: s.slot.take(),
                isid: s.isid,
                tsih: s.tsih,
                cid: s.cid,
                negotiated: neg.params(),
                stat_sn: s.stat_sn,
                exp_cmd_sn: s.exp_cmd_sn,
            });
        }
    }
}

enum Step {
    /// More text follows (C bit): answer with an empty response.
    Continue,
    /// The response keys.
    Keys(Vec<(String, String)>),
}

/// One login request: checks, key processing, the response keys.
fn step(
    driver: &IscsiDriver,
    s: &mut State,
    bhs: &iscsi_wire::Bhs,
    data: &[u8],
) -> Result<Step, Failure> {
    if bhs.version_min() > pdu::ISCSI_VERSION {
        return Err(fail(
            login_status::UNSUPPORTED_VERSION,
            "unsupported iSCSI version",
        ));
    }
    if bhs.isid() != s.isid || bhs.tsih() != s.tsih || bhs.cid() != s.cid {
        return Err(fail(
            login_status::INITIATOR_ERROR,
            "ISID/TSIH/CID changed during login",
        ));
    }
    let (csg, nsg, transit) = (bhs.csg(), bhs.nsg(), bhs.transit());
    let stage_ok = match csg {
        Stage::SecurityNegotiation => {
            !transit || matches!(nsg, Stage::LoginOperational | Stage::FullFeature)
        }
        Stage::LoginOperational => !transit || nsg == Stage::FullFeature,
        _ => false,
    };
    if !stage_ok {
        return Err(fail(
            login_status::INITIATOR_ERROR,
            "invalid login stage transition",
        ));
    }
    if s.text.len() + data.len() > MAX_LOGIN_TEXT {
        return Err(fail(login_status::INITIATOR_ERROR, "login text too long"));
    }
    s.text.extend_from_slice(data);
    if bhs.continue_bit() {
        if transit {
            return Err(fail(login_status::INITIATOR_ERROR, "C and T bits both set"));
        }
        return Ok(Step::Continue);
    }
    let text = std::mem::take(&mut s.text);
    let pairs = iscsi_wire::parse_text(&text).map_err(|e| {
        fail(
            login_status::INITIATOR_ERROR,
            format!("malformed login text: {e}"),
        )
    })?;
    let mut out: Vec<(String, String)> = Vec::new();

    if s.neg.is_none() {
        // The first request names the initiator, the session type and the target.
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let initiator = get("InitiatorName")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| fail(login_status::MISSING_PARAMETER, "no InitiatorName"))?;
        s.discovery = match get("SessionType").as_deref() {
            None | Some("Normal") => false,
            Some("Discovery") => true,
            Some(other) => {
                return Err(fail(
                    login_status::SESSION_TYPE_NOT_SUPPORTED,
                    format!("SessionType {other}"),
                ))
            }
        };
        if !driver.enabled() || driver.shutting_down() {
            return Err(fail(
                login_status::SERVICE_UNAVAILABLE,
                "the iscsi target driver is disabled",
            ));
        }
        if !s.discovery {
            let name = get("TargetName").filter(|n| !n.is_empty()).ok_or_else(|| {
                fail(
                    login_status::MISSING_PARAMETER,
                    format!("{initiator}: no TargetName"),
                )
            })?;
            let target = driver.scst().target("iscsi", &name).ok_or_else(|| {
                fail(
                    login_status::NOT_FOUND,
                    format!("{initiator}: no target {name}"),
                )
            })?;
            if !target.enabled() {
                return Err(fail(
                    login_status::SERVICE_UNAVAILABLE,
                    format!("target {name} is disabled"),
                ));
            }
            if !params::portal_allowed(&target, s.local.ip()) {
                return Err(fail(
                    login_status::NOT_FOUND,
                    format!(
                        "{initiator}: target {name} is not reachable through portal {}",
                        s.local.ip()
                    ),
                ));
            }
            let acl_name = params::acl_name(&target, &initiator, s.local.ip());
            if !target.initiator_has_luns(&acl_name) {
                return Err(fail(
                    login_status::NOT_FOUND,
                    format!("{acl_name} has no LUNs on {name}"),
                ));
            }
            if let Some(r) = params::redirect(&target) {
                let mut f = fail(
                    if r.permanent {
                        login_status::TARGET_MOVED_PERMANENTLY
                    } else {
                        login_status::TARGET_MOVED_TEMPORARILY
                    },
                    format!("{initiator}: target {name} redirects to {}", r.address),
                );
                f.keys.push(("TargetAddress".to_string(), r.address));
                return Err(f);
            }
            if s.tsih != 0 && !driver.sessions.lock().values().any(|h| h.tsih == s.tsih) {
                return Err(fail(
                    login_status::SESSION_DOES_NOT_EXIST,
                    format!("no session with TSIH {}", s.tsih),
                ));
            }
            let max_sessions = params::target_num(&target, "MaxSessions", 0);
            // A reinstatement (same initiator and ISID) replaces a session: not counted.
            let reinstating = || {
                driver.sessions.lock().contains_key(&SessionKey {
                    initiator: acl_name.to_ascii_lowercase(),
                    isid: s.isid,
                    target: target.name.clone(),
                })
            };
            // The slot is taken now and held until the session ends: counting live
            // sessions here would let concurrent logins all pass for the last one.
            let forced = s.tsih != 0 || reinstating();
            s.slot = Some(
                driver
                    .take_session_slot(&target.name, max_sessions, forced)
                    .ok_or_else(|| {
                        fail(
                            login_status::OUT_OF_RESOURCES,
                            format!("target {name}: MaxSessions ({max_sessions}) reached"),
                        )
                    })?,
            );
            s.acl_name = acl_name;
            s.target = Some(target);
        }
        s.initiator = Some(initiator);
        // Normal sessions authenticate against the target's accounts, discovery
        // sessions against the driver's (spec 6.5).
        let accounts = match &s.target {
            Some(t) => Accounts::from_attrs(&t.attrs.lock()),
            None => Accounts::from_attrs(&driver.driver_attrs()),
        };
        let internal = params::is_internal_portal(&driver.driver_attrs(), s.local.ip());
        s.auth = Some(Auth::new(accounts, !internal));
        s.neg = Some(Negotiator::new(
            params::local_params(s.target.as_deref()),
            s.discovery,
        ));
    }

    // The security stage (AuthMethod, CHAP) is the login state machine's own.
    let auth = s.auth.as_mut().expect("auth set up with the first request");
    let security_keys = pairs
        .iter()
        .any(|(k, _)| k == "AuthMethod" || k.starts_with("CHAP_"));
    if csg == Stage::SecurityNegotiation {
        auth.process(&pairs, &mut out)
            .map_err(|f| fail(f.status, f.why))?;
        // Asking to leave the security stage without ever starting CHAP cannot
        // succeed: refuse instead of holding the initiator in this stage forever.
        if transit && auth.required() && !auth.complete() && !auth.in_progress() {
            return Err(fail(
                login_status::AUTHENTICATION_FAILURE,
                "CHAP is required but the initiator did not offer AuthMethod",
            ));
        }
    } else if security_keys {
        return Err(fail(
            login_status::INITIATOR_ERROR,
            "AuthMethod or CHAP keys outside the security stage",
        ));
    } else if !auth.complete() {
        // Skipping straight to the operational stage (RFC 7143 6.3) is only allowed
        // where no authentication is required.
        return Err(fail(
            login_status::AUTHENTICATION_FAILURE,
            "CHAP is required but the security stage was skipped",
        ));
    }
    // TargetPortalGroupTag goes in the first response of a normal session (RFC 7143 13.9).
    if !s.sent_tpgt && !s.discovery {
        s.sent_tpgt = true;
        out.push(("TargetPortalGroupTag".into(), "1".into()));
        if let Some(alias) = s
            .target
            .as_ref()
            .and_then(|t| t.attr("alias"))
            .filter(|a| !a.is_empty())
        {
            out.push(("TargetAlias".into(), alias));
        }
    }
    let neg = s.neg.as_mut().expect("negotiator created above");
    let replies = neg
        .process(&pairs)
        .map_err(|e| fail(login_status::INITIATOR_ERROR, format!("negotiation: {e}")))?;
    out.extend(replies);
    // Declarations and the target's own offers go out in the operational stage, or
    // when the initiator jumps from security straight to full feature. Offers in a
    // response that leaves the security stage would hold that transit until the
    // initiator answered keys it has not reached yet.
    if bhs.csg() == Stage::LoginOperational || (transit && nsg == Stage::FullFeature) {
        out.extend(neg.target_declarations());
    }
    Ok(Step::Keys(out))
}
