//! The iSNS client (RFC 4171, docs/scst-reference.md 6.6 and 6.9): announces the enabled targets
//! and our portals to the server named by the driver's `iSNSServer` attribute, keeps
//! that registration current and alive, and with `AccessControl` asks the server which
//! initiators may see a target before admitting them.
//!
//! A background task compares what should be registered with what it registered, once
//! a second, and sends DevAttrReg/DevDereg for the difference; it re-registers before
//! the server's registration period runs out. Every exchange is bounded by a timeout
//! and failures back off, so a missing server costs log lines, not logins. The targets
//! register for state change notifications, which the server delivers to our SCN
//! port (scn.rs).

pub mod client;
mod error;
pub mod scn;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::IscsiDriver;
use client::Connection;
pub use error::{CallError, IsnsError, ServerSyntaxError};
use wire::{func, node_type, status, tag, Attr};

/// The IANA-assigned iSNS port.
pub const DEFAULT_PORT: u16 = 3205;
/// How often the task looks for targets enabled, disabled, added or removed.
const POLL: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Refresh interval when the server does not state a registration period.
const DEFAULT_REFRESH: Duration = Duration::from_secs(600);
/// Bound on remembered access-control answers (fallbacks for an unreachable server).
const MAX_ACL_CACHE: usize = 4096;

/// The parsed `iSNSServer` attribute: `<host-or-ip>[:port] [AccessControl [Yes|No]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub access_control: bool,
}

/// Parse `iSNSServer`; an empty value means no server.
pub fn parse_server(value: &str) -> Result<Option<ServerConfig>, ServerSyntaxError> {
    let v = value.trim().trim_matches('"');
    let mut words = v.split_whitespace();
    let Some(addr) = words.next() else {
        return Ok(None);
    };
    let (host, port) =
        split_host_port(addr).ok_or_else(|| ServerSyntaxError::Address(addr.to_string()))?;
    let yes_no = |w: &str| {
        if w.eq_ignore_ascii_case("yes") {
            Ok(true)
        } else if w.eq_ignore_ascii_case("no") {
            Ok(false)
        } else {
            Err(ServerSyntaxError::AccessControl(w.to_string()))
        }
    };
    let access_control = match (words.next(), words.next(), words.next()) {
        (None, _, _) => false,
        (Some(w), yn, None) if w.eq_ignore_ascii_case("AccessControl") => match yn {
            None => true,
            Some(yn) => yes_no(yn)?,
        },
        _ => return Err(ServerSyntaxError::Form(v.to_string())),
    };
    Ok(Some(ServerConfig {
        host,
        port,
        access_control,
    }))
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']')?;
        ip.parse::<std::net::Ipv6Addr>().ok()?;
        let p = match tail {
            "" => DEFAULT_PORT,
            t => port(t.strip_prefix(':')?)?,
        };
        return Some((ip.to_string(), p));
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some((s.to_string(), DEFAULT_PORT));
    }
    let (host, p) = match s.split_once(':') {
        Some((h, p)) => (h, port(p)?),
        None => (s, DEFAULT_PORT),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    host_ok.then(|| (host.to_string(), p))
}

/// The driver's iSNS state: the background task and remembered access answers.
#[derive(Default)]
pub(crate) struct IsnsState {
    /// (target, initiator), lowercase → whether the server showed the initiator to the
    /// target when last asked.
    acl: Mutex<HashMap<(String, String), bool>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Start the registration task for a driver serving on `listening` (the bound
/// addresses: wildcard ones are announced as our address toward the server).
pub fn start(driver: &Arc<IscsiDriver>, listening: &[SocketAddr]) {
    let task = tokio::spawn(run(driver.clone(), listening.to_vec()));
    if let Some(old) = driver.isns.task.lock().replace(task) {
        old.abort();
    }
}

/// Wait (bounded: an unreachable server must not hold up shutdown) for the task to
/// deregister after shutdown was signalled.
pub(crate) async fn stopped(driver: &IscsiDriver) {
    let task = driver.isns.task.lock().take();
    if let Some(t) = task {
        let _ = tokio::time::timeout(client::CALL_TIMEOUT, t).await;
    }
}

fn driver_attr(driver: &IscsiDriver, name: &str) -> Option<String> {
    driver
        .attrs
        .lock()
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn server_config(driver: &IscsiDriver) -> Option<ServerConfig> {
    driver_attr(driver, "iSNSServer").and_then(|v| parse_server(&v).ok().flatten())
}

/// The default entity name; read once, as the task asks every second.
fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "scstd".to_string())
    })
    .clone()
}

/// What the server should know.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Desired {
    server: Option<(String, u16)>,
    eid: String,
    /// Enabled target name → alias ("" when none).
    nodes: BTreeMap<String, String>,
}

fn desired(driver: &IscsiDriver) -> Desired {
    let server = server_config(driver).map(|s| (s.host, s.port));
    let eid = driver_attr(driver, "isns_entity_name")
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(host_name);
    // A disabled driver admits nobody, so it announces nothing either.
    let nodes = if driver.enabled() && !driver.shutting_down() {
        driver
            .scst()
            .targets("iscsi")
            .into_iter()
            .filter(|t| t.enabled())
            .map(|t| (t.name.clone(), t.attr("alias").unwrap_or_default()))
            .collect()
    } else {
        BTreeMap::new()
    };
    Desired { server, eid, nodes }
}

/// What we last registered successfully.
#[derive(Debug)]
struct Registered {
    server: (String, u16),
    eid: String,
    nodes: BTreeMap<String, String>,
    portals: Vec<(IpAddr, u16)>,
    /// The SCN port announced with the portals, if one could be opened.
    scn_port: Option<u16>,
    refresh_at: Instant,
}

fn needs_work(want: &Desired, reg: Option<&Registered>, now: Instant) -> bool {
    match reg {
        None => want.server.is_some() && !want.nodes.is_empty(),
        Some(r) => {
            want.server.as_ref() != Some(&r.server)
                || want.eid != r.eid
                || want.nodes != r.nodes
                || now >= r.refresh_at
        }
    }
}

/// Our portals as the server should see them: a wildcard listener is reachable at the
/// address our connection to the server comes from.
fn announced_portals(listening: &[SocketAddr], local: IpAddr) -> Vec<(IpAddr, u16)> {
    let mut v: Vec<(IpAddr, u16)> = listening
        .iter()
        .map(|a| {
            let ip = wire::canonical_ip(a.ip());
            (if ip.is_unspecified() { local } else { ip }, a.port())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

async fn run(driver: Arc<IscsiDriver>, listening: Vec<SocketAddr>) {
    let mut stop = driver.shutdown.subscribe();
    let mut reg: Option<Registered> = None;
    let mut scn: Option<scn::ScnListener> = None;
    let mut retry_at = Instant::now();
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        if *stop.borrow() {
            break;
        }
        let want = desired(&driver);
        let now = Instant::now();
        if now >= retry_at && needs_work(&want, reg.as_ref(), now) {
            match sync(&driver, &want, &mut reg, &mut scn, &listening).await {
                Ok(()) => {
                    if failing {
                        log::info!("iSNS: server reachable again");
                    }
                    failing = false;
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    if failing {
                        log::debug!("iSNS: {e}; retrying in {backoff:?}");
                    } else {
                        log::warn!("iSNS: {e}; retrying in {backoff:?}");
                    }
                    failing = true;
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
    // Shutting down: take our targets off the server so initiators stop coming here.
    if let Some(r) = reg {
        match deregister_entity(&r).await {
            Ok(()) => log::info!("iSNS: deregistered entity {}", r.eid),
            Err(e) => log::warn!("iSNS: deregistering entity {}: {e}", r.eid),
        }
    }
}

async fn sync(
    driver: &Arc<IscsiDriver>,
    want: &Desired,
    reg: &mut Option<Registered>,
    scn: &mut Option<scn::ScnListener>,
    listening: &[SocketAddr],
) -> Result<(), IsnsError> {
    // A different server or entity name: the old registration goes first.
    if let Some(r) = reg.as_ref() {
        if want.server.as_ref() != Some(&r.server) || want.eid != r.eid {
            if let Some(old) = reg.take() {
                if let Err(e) = deregister_entity(&old).await {
                    log::warn!("iSNS: deregistering entity {}: {e}", old.eid);
                }
            }
        }
    }
    let Some((host, port)) = want.server.clone() else {
        return Ok(());
    };
    if reg.is_none() && want.nodes.is_empty() {
        return Ok(());
    }
    let server = format!("{host}:{port}");
    let mut conn = Connection::connect(&host, port)
        .await
        .map_err(|source| IsnsError::Connect {
            server: server.clone(),
            source,
        })?;
    if want.nodes.is_empty() {
        // Nothing left to announce: the entity goes, with its portals. It is forgotten
        // only once the server confirms, so a failure is retried.
        if let Some(old) = reg.as_ref() {
            dereg(
                &mut conn,
                &old.nodes,
                vec![Attr::string(tag::ENTITY_ID, &old.eid)],
            )
            .await
            .map_err(|source| IsnsError::DeregisterEntity {
                server: server.clone(),
                eid: old.eid.clone(),
                source,
            })?;
            log::info!("iSNS: no enabled targets; deregistered entity {}", old.eid);
        }
        *reg = None;
        return Ok(());
    }
    let local = conn.local_ip().map_err(|source| IsnsError::LocalAddress {
        server: server.clone(),
        source,
    })?;
    let portals = announced_portals(listening, local);
    // The SCN port listens where the server reaches us; without one (bind failure),
    // registration goes on and changes are seen at the next query instead.
    if scn.as_ref().is_none_or(|l| l.local != local) {
        *scn = None;
        let server_ip = conn.peer_ip().map_err(|source| IsnsError::PeerAddress {
            server: server.clone(),
            source,
        })?;
        match scn::listen(driver, local, server_ip).await {
            Ok(l) => *scn = Some(l),
            Err(e) => log::warn!("iSNS: cannot listen for state change notifications: {e}"),
        }
    }
    let scn_port = scn.as_ref().map(|l| l.port);
    let now = Instant::now();
    let (mut refresh_at, mut replace) = (now, true);
    if let Some(r) = reg.as_ref() {
        refresh_at = r.refresh_at;
        // An update cannot remove an attribute: a dropped alias needs a replacement.
        replace = want
            .nodes
            .iter()
            .any(|(n, a)| a.is_empty() && r.nodes.get(n).is_some_and(|old| !old.is_empty()));
    }
    let changed = reg.as_ref().is_none_or(|r| {
        r.portals != portals
            || r.scn_port != scn_port
            || want.nodes.iter().any(|(n, a)| r.nodes.get(n) != Some(a))
    });
    if changed || now >= refresh_at {
        // The first registration replaces whatever an earlier run left under our name.
        let period = register(&mut conn, want, &portals, scn_port, replace)
            .await
            .map_err(|source| IsnsError::Register {
                server: server.clone(),
                source,
            })?;
        refresh_at = Instant::now() + refresh_interval(period);
        if scn_port.is_some() {
            for name in want.nodes.keys() {
                if let Err(e) = scn_register(&mut conn, name).await {
                    log::warn!("iSNS: {server}: SCNReg for {name}: {e}");
                }
            }
        }
        if changed {
            log::info!(
                "iSNS: registered entity {} with {server}: targets {:?}, portals {:?}",
                want.eid,
                want.nodes.keys().collect::<Vec<_>>(),
                portals
                    .iter()
                    .map(|(ip, port)| SocketAddr::new(*ip, *port).to_string())
                    .collect::<Vec<_>>()
            );
        }
    }
    let removed: BTreeMap<String, String> = reg
        .as_ref()
        .map(|r| {
            r.nodes
                .iter()
                .filter(|(n, _)| !want.nodes.contains_key(*n))
                .map(|(n, a)| (n.clone(), a.clone()))
                .collect()
        })
        .unwrap_or_default();
    if !removed.is_empty() {
        let ops = removed
            .keys()
            .map(|n| Attr::string(tag::ISCSI_NAME, n))
            .collect();
        dereg(&mut conn, &removed, ops)
            .await
            .map_err(|source| IsnsError::DeregisterTargets {
                server: server.clone(),
                source,
            })?;
        log::info!(
            "iSNS: deregistered targets {:?}",
            removed.keys().collect::<Vec<_>>()
        );
    }
    *reg = Some(Registered {
        server: (host, port),
        eid: want.eid.clone(),
        nodes: want.nodes.clone(),
        portals,
        scn_port,
        refresh_at,
    });
    Ok(())
}

/// SCNReg (RFC 4171 5.6.5.5): `name` asks to hear of the changes in `TARGET_EVENTS`.
async fn scn_register(conn: &mut Connection, name: &str) -> Result<(), CallError> {
    let node = Attr::string(tag::ISCSI_NAME, name);
    let payload = wire::request_payload(
        &node,
        std::slice::from_ref(&node),
        &[Attr::u32(tag::ISCSI_SCN_BITMAP, scn::TARGET_EVENTS)],
    );
    call_ok(conn, func::SCN_REG, 0, &payload).await.map(|_| ())
}

/// One request whose answer must be SUCCESS; the response, else what went wrong.
async fn call_ok(
    conn: &mut Connection,
    function: u16,
    flags: u16,
    payload: &[u8],
) -> Result<wire::Response, CallError> {
    let r = conn.call(function, flags, payload).await?;
    if r.status != status::SUCCESS {
        return Err(CallError::Status(r.status));
    }
    Ok(r)
}

/// Re-register halfway through the registration period so it never lapses.
fn refresh_interval(period_secs: Option<u32>) -> Duration {
    match period_secs {
        Some(p) if p > 0 => Duration::from_secs(u64::from(p / 2).clamp(1, 600)),
        _ => DEFAULT_REFRESH,
    }
}

/// DevAttrReg of the entity with all portals and nodes (RFC 4171 5.6.5.1). Returns the
/// registration period the server granted.
async fn register(
    conn: &mut Connection,
    want: &Desired,
    portals: &[(IpAddr, u16)],
    scn_port: Option<u16>,
    replace: bool,
) -> Result<Option<u32>, CallError> {
    let source = want.nodes.keys().next().ok_or(CallError::NoSource)?;
    let mut ops = vec![
        Attr::string(tag::ENTITY_ID, &want.eid),
        Attr::u32(tag::ENTITY_PROTOCOL, wire::ENTITY_PROTOCOL_ISCSI),
    ];
    for (ip, port) in portals {
        ops.push(Attr::ip(tag::PORTAL_IP, *ip));
        ops.push(Attr::tcp_port(tag::PORTAL_PORT, *port));
        if let Some(p) = scn_port {
            ops.push(Attr::tcp_port(tag::SCN_PORT, p));
        }
    }
    // Nodes and portals registered together get a default portal group with tag 1
    // (RFC 4171 5.6.5.1), which is the TPGT our logins report.
    for (name, alias) in &want.nodes {
        ops.push(Attr::string(tag::ISCSI_NAME, name));
        ops.push(Attr::u32(tag::ISCSI_NODE_TYPE, node_type::TARGET));
        if !alias.is_empty() {
            ops.push(Attr::string(tag::ISCSI_ALIAS, alias));
        }
    }
    let payload = wire::request_payload(
        &Attr::string(tag::ISCSI_NAME, source),
        &[Attr::string(tag::ENTITY_ID, &want.eid)],
        &ops,
    );
    let flags = if replace { wire::flags::REPLACE } else { 0 };
    let r = call_ok(conn, func::DEV_ATTR_REG, flags, &payload).await?;
    Ok(r.operating()
        .iter()
        .find(|a| a.tag == tag::REGISTRATION_PERIOD)
        .and_then(Attr::as_u32))
}

/// DevDereg (RFC 4171 5.6.5.4) with `ops` as operating attributes, sourced from one of
/// the nodes being removed (still registered until this succeeds).
async fn dereg(
    conn: &mut Connection,
    nodes: &BTreeMap<String, String>,
    ops: Vec<Attr>,
) -> Result<(), CallError> {
    let Some(source) = nodes.keys().next() else {
        return Ok(());
    };
    let payload = wire::request_payload(&Attr::string(tag::ISCSI_NAME, source), &[], &ops);
    let r = conn.call(func::DEV_DEREG, 0, &payload).await?;
    // Already gone (expired, or the server restarted) is as good as removed.
    if r.status != status::SUCCESS && r.status != status::NO_SUCH_ENTRY {
        return Err(CallError::Status(r.status));
    }
    Ok(())
}

async fn deregister_entity(r: &Registered) -> Result<(), CallError> {
    let mut conn = Connection::connect(&r.server.0, r.server.1).await?;
    dereg(
        &mut conn,
        &r.nodes,
        vec![Attr::string(tag::ENTITY_ID, &r.eid)],
    )
    .await
}

/// The server to ask about initiators, when `AccessControl` is on.
fn access_server(driver: &IscsiDriver) -> Option<ServerConfig> {
    server_config(driver).filter(|s| s.access_control)
}

/// Ask the server, for each of `targets`, whether it shows `initiator` to the target
/// (same discovery domain): DevAttrQry sourced from the target, keyed by the initiator's
/// name. Answers are remembered; when the server cannot be asked, the last answer
/// stands, and an initiator never seen is refused.
async fn query_access(
    driver: &IscsiDriver,
    server: &ServerConfig,
    targets: &[String],
    initiator: &str,
) -> Vec<bool> {
    let ini = initiator.to_ascii_lowercase();
    let asked = async {
        let mut conn = Connection::connect(&server.host, server.port).await?;
        let mut answers = Vec::with_capacity(targets.len());
        for t in targets {
            let payload = wire::request_payload(
                &Attr::string(tag::ISCSI_NAME, t),
                &[Attr::string(tag::ISCSI_NAME, initiator)],
                &[
                    Attr::empty(tag::ISCSI_NAME),
                    Attr::empty(tag::ISCSI_NODE_TYPE),
                ],
            );
            let r = conn.call(func::DEV_ATTR_QRY, 0, &payload).await?;
            let seen = r.status == status::SUCCESS
                && r.operating().iter().any(|a| {
                    a.tag == tag::ISCSI_NAME
                        && a.as_str().is_some_and(|n| n.eq_ignore_ascii_case(&ini))
                });
            answers.push(seen);
        }
        Ok::<_, client::ClientError>(answers)
    };
    let mut cache = match asked.await {
        Ok(answers) => {
            let mut cache = driver.isns.acl.lock();
            if cache.len() > MAX_ACL_CACHE {
                cache.clear();
            }
            for (t, seen) in targets.iter().zip(answers) {
                cache.insert((t.to_ascii_lowercase(), ini.clone()), seen);
            }
            cache
        }
        Err(e) => {
            log::warn!(
                "iSNS: cannot ask {}:{} about {initiator}: {e}; using earlier answers",
                server.host,
                server.port
            );
            driver.isns.acl.lock()
        }
    };
    targets
        .iter()
        .map(|t| {
            *cache
                .entry((t.to_ascii_lowercase(), ini.clone()))
                .or_insert(false)
        })
        .collect()
}

/// Login hook: may `initiator` log in to `target`? Always yes without AccessControl.
pub(crate) async fn login_allowed(driver: &IscsiDriver, target: &str, initiator: &str) -> bool {
    let Some(server) = access_server(driver) else {
        return true;
    };
    query_access(driver, &server, &[target.to_string()], initiator)
        .await
        .first()
        .copied()
        .unwrap_or(false)
}

/// SendTargets hook, before [`visible`]: ask the server about every enabled target.
pub(crate) async fn refresh_visibility(driver: &IscsiDriver, initiator: &str) {
    let Some(server) = access_server(driver) else {
        return;
    };
    let targets: Vec<String> = driver
        .scst()
        .targets("iscsi")
        .into_iter()
        .filter(|t| t.enabled())
        .map(|t| t.name.clone())
        .collect();
    if !targets.is_empty() {
        query_access(driver, &server, &targets, initiator).await;
    }
}

/// SendTargets filter: whether `target` is listed for `initiator` (the answer fetched
/// by [`refresh_visibility`]). Always yes without AccessControl.
pub(crate) fn visible(driver: &IscsiDriver, target: &str, initiator: &str) -> bool {
    if access_server(driver).is_none() {
        return true;
    }
    let key = (target.to_ascii_lowercase(), initiator.to_ascii_lowercase());
    driver.isns.acl.lock().get(&key).copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_attribute_syntax() {
        let s = |h: &str, p, ac| {
            Some(ServerConfig {
                host: h.into(),
                port: p,
                access_control: ac,
            })
        };
        assert_eq!(parse_server("").unwrap(), None);
        assert_eq!(parse_server("  ").unwrap(), None);
        assert_eq!(
            parse_server("192.0.2.10").unwrap(),
            s("192.0.2.10", 3205, false)
        );
        assert_eq!(
            parse_server("\"192.0.2.10 AccessControl\"").unwrap(),
            s("192.0.2.10", 3205, true)
        );
        assert_eq!(
            parse_server("isns.example.com:4000 AccessControl No").unwrap(),
            s("isns.example.com", 4000, false)
        );
        assert_eq!(
            parse_server("127.0.0.1:1234 accesscontrol yes").unwrap(),
            s("127.0.0.1", 1234, true)
        );
        assert_eq!(parse_server("::1").unwrap(), s("::1", 3205, false));
        assert_eq!(parse_server("[::1]:99").unwrap(), s("::1", 99, false));
        assert_eq!(parse_server("[::1]").unwrap(), s("::1", 3205, false));
        for bad in [
            "host:0",
            "host:x",
            "host:70000",
            "[::1",
            "[nothost]:1",
            "h AccessControl Maybe",
            "h Foo",
            "h AccessControl Yes extra",
            "bad/host",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcard_portals_use_the_local_address() {
        let local: IpAddr = "10.1.2.3".parse().unwrap();
        let l: Vec<SocketAddr> = vec![
            "0.0.0.0:3260".parse().unwrap(),
            "127.0.0.1:3261".parse().unwrap(),
            "10.1.2.3:3260".parse().unwrap(),
        ];
        assert_eq!(
            announced_portals(&l, local),
            vec![(local, 3260), ("127.0.0.1".parse().unwrap(), 3261)]
        );
    }

    #[test]
    fn refresh_before_the_period_ends() {
        assert_eq!(refresh_interval(Some(60)), Duration::from_secs(30));
        assert_eq!(refresh_interval(Some(1)), Duration::from_secs(1));
        assert_eq!(refresh_interval(Some(0)), DEFAULT_REFRESH);
        assert_eq!(refresh_interval(None), DEFAULT_REFRESH);
        assert_eq!(refresh_interval(Some(86400)), Duration::from_secs(600));
    }

    #[test]
    fn work_is_only_done_on_change_or_refresh() {
        let now = Instant::now();
        let mut want = Desired {
            server: Some(("h".into(), 1)),
            eid: "e".into(),
            nodes: BTreeMap::new(),
        };
        assert!(!needs_work(&want, None, now));
        want.nodes.insert("iqn.a".into(), String::new());
        assert!(needs_work(&want, None, now));
        let reg = Registered {
            server: ("h".into(), 1),
            eid: "e".into(),
            nodes: want.nodes.clone(),
            portals: vec![],
            scn_port: None,
            refresh_at: now + Duration::from_secs(10),
        };
        assert!(!needs_work(&want, Some(&reg), now));
        assert!(needs_work(&want, Some(&reg), now + Duration::from_secs(11)));
        want.nodes.insert("iqn.a".into(), "alias".into());
        assert!(needs_work(&want, Some(&reg), now));
    }
}
