//! The iSCSI target driver (RFC 7143, spec/scst.md section 6): portals, login with
//! operational negotiation, discovery sessions, session reinstatement, and the
//! full-feature connection engine over the SCST core.

mod conn;
mod discovery;
mod io;
mod login;
mod params;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use scst_core::{DeviceEntry, Scst, SessionEvents};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

pub use conn::ConnEvent;
pub use params::validate_target_attr;

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

pub struct IscsiDriver {
    scst: Arc<Scst>,
    enabled: AtomicBool,
    /// Driver-level attributes (IncomingUser, OutgoingUser, internal_portal...).
    attrs: Mutex<Vec<(String, String)>>,
    pub(crate) sessions: Mutex<HashMap<SessionKey, SessionHandle>>,
    next_tsih: AtomicU16,
    shutdown: watch::Sender<bool>,
    active_conns: AtomicUsize,
}

impl IscsiDriver {
    pub fn new(scst: Arc<Scst>) -> Arc<IscsiDriver> {
        Arc::new(IscsiDriver {
            scst,
            enabled: AtomicBool::new(false),
            attrs: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            next_tsih: AtomicU16::new(1),
            shutdown: watch::channel(false).0,
            active_conns: AtomicUsize::new(0),
        })
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

    /// Driver-level attributes (spec 6.6).
    pub fn set_driver_attr(&self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "IncomingUser" | "OutgoingUser" => params::validate_target_attr(name, value)?,
            "iSNSServer" | "isns_entity_name" | "internal_portal" | "trace_level" => {}
            "link_local" => {
                if !matches!(value, "0" | "1") {
                    return Err(format!("link_local: '{value}' must be 0 or 1"));
                }
            }
            _ => return Err(format!("unknown attribute '{name}'")),
        }
        self.attrs
            .lock()
            .push((name.to_string(), value.to_string()));
        Ok(())
    }

    pub(crate) fn alloc_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }

    /// Accept connections on `listener` until shutdown.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut stop = self.shutdown.subscribe();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        let me = self.clone();
                        me.active_conns.fetch_add(1, Ordering::AcqRel);
                        tokio::spawn(async move {
                            me.connection(stream).await;
                            me.active_conns.fetch_sub(1, Ordering::AcqRel);
                            log::debug!("connection from {peer} finished");
                        });
                    }
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        log::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }

    async fn connection(self: &Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        login::serve_connection(self.clone(), stream).await;
    }

    /// Stop accepting, close every session, and wait (bounded) for their connections.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        for h in self.sessions.lock().values() {
            let _ = h.events.send(ConnEvent::Close);
        }
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
