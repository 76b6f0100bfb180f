//! The login phase and discovery sessions on a TCP connection: a thin tokio driver over
//! the sans-I/O engine (crate iscsi-engine). It reads the socket into the engine, writes
//! what the engine queues, sleeps until its deadline, answers its questions (the
//! driver's checks through [`LoginHost`], the iSNS server's through query events), and
//! when a normal session's login completes, registers the session with the core
//! (reinstating an older one with the same ISID, RFC 7143 6.3.5) and runs its
//! full-feature phase.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iscsi_engine::auth::Accounts;
use iscsi_engine::{
    AdmissionRequest, Admitted, Close, Config, Connection, Event, LoginHost, NormalSession, Phase,
    Refusal,
};
use iscsi_wire::negotiate::Digest;
use iscsi_wire::pdu::login_status;
use scst_core::{Target, TransportId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::admission::Pending;
use crate::conn::{self, ConnEvent};
use crate::params::{self, ConnParams};
use crate::{EventSink, IscsiDriver, SessionHandle, SessionKey, SessionSlot};

/// What a normal session's admission holds until the session ends.
struct Admission {
    target: Arc<Target>,
    /// The target's MaxSessions slot, given back when the admission is dropped.
    _slot: SessionSlot,
}

/// The driver's side of one connection's login.
struct DriverHost<'a> {
    driver: &'a IscsiDriver,
    /// The portal (local address) the connection came in on.
    local: SocketAddr,
}

impl LoginHost for DriverHost<'_> {
    type Admission = Admission;

    fn accepting_logins(&self) -> bool {
        self.driver.enabled() && !self.driver.shutting_down()
    }

    fn admit(&mut self, req: &AdmissionRequest<'_>) -> Result<Admitted<Admission>, Refusal> {
        let (driver, initiator, name) = (self.driver, req.initiator, req.target);
        let target = driver.scst().target("iscsi", name).ok_or_else(|| {
            Refusal::new(
                login_status::NOT_FOUND,
                format!("{initiator}: no target {name}"),
            )
        })?;
        if !target.enabled() {
            return Err(Refusal::new(
                login_status::SERVICE_UNAVAILABLE,
                format!("target {name} is disabled"),
            ));
        }
        let portal = self.local.ip();
        if !params::portal_allowed(&target, portal) {
            return Err(Refusal::new(
                login_status::NOT_FOUND,
                format!("{initiator}: target {name} is not reachable through portal {portal}"),
            ));
        }
        let acl_name = params::acl_name(&target, initiator, portal);
        if !target.initiator_has_luns(&acl_name) {
            return Err(Refusal::new(
                login_status::NOT_FOUND,
                format!("{acl_name} has no LUNs on {name}"),
            ));
        }
        if let Some(r) = params::redirect(&target) {
            let status = if r.permanent {
                login_status::TARGET_MOVED_PERMANENTLY
            } else {
                login_status::TARGET_MOVED_TEMPORARILY
            };
            let why = format!("{initiator}: target {name} redirects to {}", r.address);
            let mut refusal = Refusal::new(status, why);
            refusal.keys.push(("TargetAddress".to_string(), r.address));
            return Err(refusal);
        }
        if req.tsih != 0 && !driver.sessions.lock().values().any(|h| h.tsih == req.tsih) {
            return Err(Refusal::new(
                login_status::SESSION_DOES_NOT_EXIST,
                format!("no session with TSIH {}", req.tsih),
            ));
        }
        let max_sessions = params::target_num(&target, "MaxSessions", 0);
        // A reinstatement (same initiator and ISID) replaces a session: not counted.
        let reinstating = || {
            driver.sessions.lock().contains_key(&SessionKey {
                initiator: acl_name.to_ascii_lowercase(),
                isid: req.isid,
                target: target.name.clone(),
            })
        };
        // The slot is taken now and held until the session ends: counting live
        // sessions here would let concurrent logins all pass for the last one.
        let forced = req.tsih != 0 || reinstating();
        let slot = driver
            .take_session_slot(&target.name, max_sessions, forced)
            .ok_or_else(|| {
                Refusal::new(
                    login_status::OUT_OF_RESOURCES,
                    format!("target {name}: MaxSessions ({max_sessions}) reached"),
                )
            })?;
        let accounts = Accounts::from_attrs(&target.attrs.lock());
        Ok(Admitted {
            acl_name,
            accounts,
            params: params::local_params(Some(&target)),
            alias: target.attr("alias"),
            handle: Admission {
                target,
                _slot: slot,
            },
        })
    }

    fn discovery_accounts(&self) -> Accounts {
        Accounts::from_attrs(&self.driver.driver_attrs())
    }

    fn internal_portal(&self) -> bool {
        params::is_internal_portal(&self.driver.driver_attrs(), self.local.ip())
    }

    fn alloc_tsih(&mut self) -> u16 {
        self.driver.alloc_tsih()
    }
}

/// Tells the engine its deadline passed; never earlier than the deadline itself, in
/// case the timer fired a hair early.
fn timed_out(conn: &mut Connection<Admission>, deadline: Instant) {
    conn.handle_timeout(Instant::now().max(deadline));
}

/// Runs the engine until a normal session's login completes (handing the session and
/// the bytes received after it back) or the connection ends.
async fn login_and_discovery(
    driver: &IscsiDriver,
    stream: &mut TcpStream,
    local: SocketAddr,
    peer: &str,
) -> Option<(NormalSession<Admission>, Vec<u8>)> {
    let mut host = DriverHost { driver, local };
    let config = Config {
        login_timeout: driver.login_timeout(),
    };
    let mut conn = Connection::new(config, Instant::now());
    let mut ready = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Transmit before events: a refusal's response is sent before its close.
        while let Some(bytes) = conn.poll_transmit() {
            if let Err(e) = stream.write_all(&bytes).await {
                log::info!("connection from {peer}: send: {e}");
                return None;
            }
        }
        if let Some(event) = conn.poll_event() {
            match event {
                Event::AccessQuery { target, initiator } => {
                    // iSNS AccessControl (scst-reference 6.4, 6.9) asks the server, within the
                    // login's time.
                    let ask = crate::isns::login_allowed(driver, &target, &initiator);
                    match conn.poll_timeout() {
                        Some(deadline) => {
                            match tokio::time::timeout_at(deadline.into(), ask).await {
                                Ok(allowed) => conn.answer_access(allowed, &mut host),
                                Err(_) => timed_out(&mut conn, deadline),
                            }
                        }
                        None => conn.answer_access(ask.await, &mut host),
                    }
                }
                Event::SendTargets { initiator, what } => {
                    crate::isns::refresh_visibility(driver, &initiator).await;
                    let keys = crate::discovery::send_targets(driver, &what, &initiator, local);
                    conn.answer_send_targets(&keys, &mut host);
                }
                Event::DiscoveryReady { initiator } => {
                    log::debug!("{initiator}: discovery session from {peer}");
                }
                Event::SessionReady(session) => ready = Some(*session),
                Event::Closed(why) => {
                    log_close(peer, &why);
                    return None;
                }
            }
            continue;
        }
        if conn.phase() == Phase::FullFeature {
            return ready.map(|s| (s, conn.take_received()));
        }
        let read = stream.read(&mut buf);
        let n = match conn.poll_timeout() {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), read).await {
                Ok(r) => r,
                Err(_) => {
                    timed_out(&mut conn, deadline);
                    continue;
                }
            },
            None => read.await,
        };
        match n {
            Ok(n) if n > 0 => conn.handle_bytes(Instant::now(), &buf[..n], &mut host),
            Ok(_) | Err(_) => {
                let why = n
                    .err()
                    .map_or("connection closed".to_string(), |e| e.to_string());
                if conn.phase() == Phase::Discovery {
                    log::debug!("discovery session from {peer} ended: {why}");
                } else {
                    log::info!("login from {peer} failed: {why}");
                }
                return None;
            }
        }
    }
}

fn log_close(peer: &str, why: &Close) {
    match why {
        Close::LoginRefused {
            initiator,
            status,
            why,
        } => {
            if *status == login_status::AUTHENTICATION_FAILURE {
                // Operators need to see refused credentials; the reason never carries
                // a secret.
                log::warn!(
                    "authentication of initiator {} from {peer} failed: {why}",
                    initiator.as_deref().unwrap_or("(unnamed)"),
                );
            }
            log::info!("login from {peer} failed: {why}");
        }
        Close::LoginTimedOut => log::info!("login from {peer} timed out"),
        Close::ProtocolError(why) => log::info!("connection from {peer} closed: {why}"),
        Close::Logout => log::debug!("discovery session from {peer} logged out"),
    }
}

pub(crate) async fn serve_connection(
    driver: Arc<IscsiDriver>,
    mut stream: TcpStream,
    pending: Pending,
) {
    let local_addr = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr.map(|a| a.to_string()).unwrap_or_default();
    // Until its login completes the connection may have to give way to a newer one
    // (admission explains why the oldest goes).
    let logged_in = tokio::select! {
        r = login_and_discovery(&driver, &mut stream, local_addr, &peer) => r,
        why = pending.evicted() => {
            log::debug!("connection from {peer} closed before its login completed: {why}");
            None
        }
    };
    let Some((li, received)) = logged_in else {
        return;
    };
    drop(pending);
    let p = &li.params;
    let target = li.admission.target.clone();
    let nop = params::target_num(&target, "NopInInterval", params::DEFAULT_NOP_IN_INTERVAL);
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
        queued_commands: params::target_num(
            &target,
            "QueuedCommands",
            params::DEFAULT_QUEUED_COMMANDS,
        ),
        nop_in_interval: (nop > 0).then(|| Duration::from_secs(nop as u64)),
        nop_in_timeout: Duration::from_secs(params::target_num(
            &target,
            "NopInTimeout",
            params::DEFAULT_NOP_IN_TIMEOUT,
        ) as u64),
    };
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
        received,
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
    drop(li.admission);
    let _ = done_tx.send(true);
}

/// What `sessions/<initiator>/` shows of an iSCSI session (scst-reference 6.7): the negotiated
/// keys, `sid` (ISID and TSIH), and a directory per connection named by the
/// initiator's address with its `cid`, `ip` and `state`.
fn session_attrs(
    li: &NormalSession<Admission>,
    peer: &Option<SocketAddr>,
) -> Vec<(String, String)> {
    let p = &li.params;
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
