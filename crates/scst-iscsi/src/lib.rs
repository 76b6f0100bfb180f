//! The iSCSI target driver (RFC 7143, docs/scst-reference.md section 6): portals, session
//! reinstatement, and the tokio side of each connection over the sans-I/O engine
//! (iscsi-engine): login, discovery and the full-feature phase's rules are the
//! engine's; the connection (`conn`) reads and writes the socket, keeps the commands'
//! buffers and hands complete commands to the core's `Nexus`.

use iscsi_engine::auth;
pub mod admission;
mod conn;
mod discovery;
mod io;
pub mod isns;
mod login;
pub mod mgmt;
pub mod net_threads;
mod params;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use scst_core::{DeviceEntry, Scst, SessionEvents};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use admission::Eviction;
pub use conn::ConnEvent;
pub use params::{validate_target_attr, AttrError, Expected};

/// iSCSI sessions are identified by initiator name, ISID and target (RFC 7143 4.4.3):
/// a new login with the same triple reinstates the old session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey {
    pub initiator: String,
    pub isid: [u8; 6],
    pub target: String,
}

pub(crate) struct SessionHandle {
    pub tsih: u16,
    pub events: mpsc::UnboundedSender<ConnEvent>,
    /// Becomes true when the session's connection has finished.
    pub done: watch::Receiver<bool>,
}

/// How the core reaches a connection task.
pub(crate) struct EventSink(pub mpsc::UnboundedSender<ConnEvent>);

impl SessionEvents for EventSink {
    fn abort_device_tasks(&self, device: &Arc<DeviceEntry>) {
        let _ = self.0.send(ConnEvent::AbortDevice(device.clone()));
    }

    fn close(&self) {
        let _ = self.0.send(ConnEvent::Close);
    }
}

/// Driver attribute `login_timeout` default (seconds): a connection that has not
/// completed its login by then is closed, so idle or trickling clients cannot hold
/// connection slots.
pub const DEFAULT_LOGIN_TIMEOUT: u32 = 15;
/// Driver attribute `max_open_connections` default: TCP connections beyond it are
/// closed right after accept, before any per-connection state exists.
pub const DEFAULT_MAX_OPEN_CONNECTIONS: usize = 1024;

/// Counts one open connection for as long as it lives, however its task ends.
struct ConnSlot(Arc<IscsiDriver>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.active_conns.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Holds one of a target's session slots (MaxSessions) from the first login request
/// until the session ends, so that concurrent logins cannot both take the last one.
pub(crate) struct SessionSlot(Arc<AtomicUsize>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct IscsiDriver {
    scst: Arc<Scst>,
    enabled: AtomicBool,
    /// Driver-level attributes (IncomingUser, OutgoingUser, internal_portal...).
    attrs: Mutex<Vec<(String, String)>>,
    pub(crate) sessions: Mutex<HashMap<SessionKey, SessionHandle>>,
    /// Per target: normal sessions logged in or logging in (see `SessionSlot`).
    session_slots: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    next_tsih: AtomicU16,
    shutdown: watch::Sender<bool>,
    active_conns: AtomicUsize,
    login_timeout: AtomicU32,
    max_open_connections: AtomicUsize,
    /// Connections that have not logged in yet (see `admission`).
    pending: Arc<admission::PendingLogins>,
    pub(crate) isns: isns::IsnsState,
    /// Where connections run; without them (tests), on the caller's runtime.
    net_threads: std::sync::OnceLock<net_threads::NetThreads>,
}

impl IscsiDriver {
    pub fn new(scst: Arc<Scst>) -> Arc<IscsiDriver> {
        Arc::new(IscsiDriver {
            scst,
            enabled: AtomicBool::new(false),
            attrs: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            session_slots: Mutex::new(HashMap::new()),
            next_tsih: AtomicU16::new(1),
            shutdown: watch::channel(false).0,
            active_conns: AtomicUsize::new(0),
            login_timeout: AtomicU32::new(DEFAULT_LOGIN_TIMEOUT),
            max_open_connections: AtomicUsize::new(DEFAULT_MAX_OPEN_CONNECTIONS),
            pending: Arc::default(),
            isns: isns::IsnsState::default(),
            net_threads: std::sync::OnceLock::new(),
        })
    }

    /// Take a session slot of `target`: refused (None) when `max` (MaxSessions, 0 =
    /// unlimited) are taken, unless `forced` (a reinstatement replaces a session).
    pub(crate) fn take_session_slot(
        &self,
        target: &str,
        max: u32,
        forced: bool,
    ) -> Option<SessionSlot> {
        let counter = self
            .session_slots
            .lock()
            .entry(target.to_string())
            .or_default()
            .clone();
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (forced || max == 0 || n < max as usize).then_some(n + 1)
            })
            .ok()?;
        Some(SessionSlot(counter))
    }

    pub fn scst(&self) -> &Arc<Scst> {
        &self.scst
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The driver's `enabled` attribute: 0 refuses every new login.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release)
    }

    /// Driver-level attributes (scst-reference 6.6).
    pub fn set_driver_attr(&self, name: &str, value: &str) -> Result<(), AttrError> {
        match name {
            "IncomingUser" | "OutgoingUser" => params::validate_target_attr(name, value)?,
            // Instance names (`IncomingUser1`) as scst.conf and write_config use them.
            n if auth::is_instance_of(n, "IncomingUser") => {
                params::validate_target_attr(name, value)?
            }
            "iSNSServer" => {
                isns::parse_server(value)?;
            }
            "isns_entity_name" | "internal_portal" | "trace_level" => {}
            // Limits: kept as atomics for the accept loop, not as attribute instances.
            "login_timeout" => {
                let n = params::number(name, value, 1, 65535)?;
                self.login_timeout.store(n as u32, Ordering::Relaxed);
                return Ok(());
            }
            "max_open_connections" => {
                let n = params::number(name, value, 1, 1 << 20)?;
                self.max_open_connections
                    .store(n as usize, Ordering::Relaxed);
                return Ok(());
            }
            "link_local" => params::bool01(name, value)?,
            _ => return Err(AttrError::Unknown(name.to_string())),
        }
        self.attrs
            .lock()
            .push((name.to_string(), value.to_string()));
        Ok(())
    }

    /// The driver-level attributes, multi-valued, in the order they were given.
    pub fn driver_attrs(&self) -> Vec<(String, String)> {
        self.attrs.lock().clone()
    }

    /// Remove the instances of driver attribute `name` (only the one equal to `value`
    /// when given: multi-value instances are told apart by value). Returns how many
    /// were removed.
    pub fn remove_driver_attr(&self, name: &str, value: Option<&str>) -> usize {
        let mut attrs = self.attrs.lock();
        let before = attrs.len();
        attrs.retain(|(n, v)| !(n == name && value.is_none_or(|x| x == v)));
        before - attrs.len()
    }

    /// How long a connection may take to complete its login.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout.load(Ordering::Relaxed) as u64)
    }

    pub fn max_open_connections(&self) -> usize {
        self.max_open_connections.load(Ordering::Relaxed)
    }

    /// TCP connections open now, in login or full-feature phase.
    pub fn open_connections(&self) -> usize {
        self.active_conns.load(Ordering::Acquire)
    }

    /// TCP connections open now that have not completed a normal session's login
    /// (discovery sessions included).
    pub fn pending_logins(&self) -> usize {
        self.pending.len()
    }

    /// iSCSI commands alive now (received, not yet answered or dropped).
    pub fn active_commands(&self) -> usize {
        conn::live_tasks()
    }

    /// Bytes of data-in and data-out buffers charged to commands now (the core's
    /// `scst_max_cmd_mem` budget, which only this driver charges today).
    pub fn data_buffer_bytes(&self) -> usize {
        self.scst().cmd_mem.used()
    }

    pub(crate) fn alloc_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }

    /// Serve connections accepted from now on on these threads.
    pub fn use_net_threads(&self, threads: net_threads::NetThreads) {
        let _ = self.net_threads.set(threads);
    }

    /// Accept connections on `listener` until shutdown.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut stop = self.shutdown.subscribe();
        // Measured here, after the daemon raised the soft limit at start.
        let mut fds = admission::FdBudget::measure(self.open_connections());
        let (mut failures, mut refused) = (0u64, 0u64);
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        failures = 0;
                        let open = self.active_conns.fetch_add(1, Ordering::AcqRel);
                        let slot = ConnSlot(self.clone());
                        // At the limit a connection still logging in gives way, as at
                        // the pending bounds: idle ones must not lock logins out.
                        if open >= self.max_open_connections()
                            && !self.pending.make_room(Eviction::OpenConnections)
                        {
                            log::warn!(
                                "connection from {peer} closed: {open} connections are open \
                                 (max_open_connections), none of them logging in"
                            );
                            continue;
                        }
                        let pressure = fds.pressure(open + 1);
                        if pressure == admission::FdPressure::Exhausted {
                            self.pending.make_room(Eviction::Descriptors);
                        }
                        let admitted = match pressure {
                            admission::FdPressure::Exhausted => None,
                            p => self.pending.admit(peer.ip(), p == admission::FdPressure::Short),
                        };
                        let Some(pending) = admitted else {
                            refused += 1;
                            if refused == 1 || refused.is_multiple_of(1000) {
                                log::warn!(
                                    "connection from {peer} closed: open files are running \
                                     short ({} connections and {} kept free of a limit of \
                                     {}; {refused} closed so far)",
                                    open + 1,
                                    fds.reserve(),
                                    fds.limit()
                                );
                            }
                            continue;
                        };
                        // One span per connection: whatever is logged on its behalf names
                        // the peer, and once logged in its session (conn::run records
                        // target, initiator and session id in it). One span, not one per
                        // phase nested in another: it is entered at every poll of the
                        // connection's task. Always recorded, whatever the crates' levels.
                        let span = tracing::error_span!(
                            "conn",
                            peer = %peer,
                            target = tracing::field::Empty,
                            initiator = tracing::field::Empty,
                            session = tracing::field::Empty,
                        );
                        let serve = move |stream: TcpStream| {
                            tracing::Instrument::instrument(
                                async move {
                                    slot.0.connection(stream, pending).await;
                                    log::debug!("connection from {peer} finished");
                                    drop(slot);
                                },
                                span,
                            )
                        };
                        match self.net_threads.get() {
                            Some(threads) => match stream.into_std() {
                                Ok(std) => threads.spawn(std, serve),
                                Err(e) => log::warn!("connection from {peer}: {e}"),
                            },
                            None => {
                                tokio::spawn(serve(stream));
                            }
                        }
                    }
                    Err(e) => {
                        // Out of descriptors: a connection still logging in gives way,
                        // and the loop backs off instead of spinning on the error.
                        failures += 1;
                        let out_of_fds =
                            matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                        if out_of_fds {
                            fds.remeasure(self.open_connections());
                            self.pending.make_room(Eviction::Descriptors);
                        }
                        if failures == 1 || failures.is_multiple_of(100) {
                            log::warn!("accept: {e} ({failures} in a row)");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }

    async fn connection(self: &Arc<Self>, stream: TcpStream, pending: admission::Pending) {
        let _ = stream.set_nodelay(true);
        login::serve_connection(self.clone(), stream, pending).await;
    }

    /// Stop accepting, close every session, and wait (bounded) for their connections.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        for h in self.sessions.lock().values() {
            let _ = h.events.send(ConnEvent::Close);
        }
        isns::stopped(self).await;
        for _ in 0..100 {
            if self.active_conns.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log::warn!(
            "shutdown: {} connections still open",
            self.active_conns.load(Ordering::Acquire)
        );
    }

    pub(crate) fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn connection_limits_are_driver_attributes() {
        let d = IscsiDriver::new(Scst::new(1));
        assert_eq!(d.login_timeout(), Duration::from_secs(15));
        assert_eq!(d.max_open_connections(), 1024);
        d.set_driver_attr("login_timeout", "2")
            .expect("login_timeout");
        d.set_driver_attr("max_open_connections", " 8 ")
            .expect("max_open_connections");
        assert_eq!(d.login_timeout(), Duration::from_secs(2));
        assert_eq!(d.max_open_connections(), 8);
        for (name, bad) in [
            ("login_timeout", "0"),
            ("login_timeout", "65536"),
            ("max_open_connections", "0"),
            ("max_open_connections", "many"),
        ] {
            assert!(d.set_driver_attr(name, bad).is_err(), "{name}={bad}");
        }
        assert_eq!(d.login_timeout(), Duration::from_secs(2), "unchanged");
        // Limits are not attribute instances (nothing to list or save twice).
        assert!(d.driver_attrs().is_empty());
        assert_eq!(d.open_connections(), 0);
    }

    #[test]
    fn driver_attribute_refusals() {
        let d = IscsiDriver::new(Scst::new(1));
        let refused = |name: &str, v: &str| d.set_driver_attr(name, v).unwrap_err().to_string();
        assert_eq!(
            refused("login_timeout", "0"),
            "login_timeout: '0' must be a number in 1..65535"
        );
        assert_eq!(
            refused("max_open_connections", "many"),
            "max_open_connections: 'many' must be a number in 1..1048576"
        );
        assert_eq!(
            refused("link_local", "yes"),
            "link_local: 'yes' must be 0 or 1"
        );
        assert_eq!(
            refused("iSNSServer", "h AccessControl Maybe"),
            "iSNSServer: AccessControl takes Yes or No, not 'Maybe'"
        );
        assert_eq!(refused("enable", "1"), "unknown attribute 'enable'");
        assert!(matches!(
            d.set_driver_attr("iSNSServer", "bad/host"),
            Err(AttrError::IsnsServer(isns::ServerSyntaxError::Address(_)))
        ));
        assert!(d.driver_attrs().is_empty(), "nothing refused is kept");
    }
}
