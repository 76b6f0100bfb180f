//! The `vhost` target driver as management sees it (`targets/vhost/<target>`), and the
//! socket each target listens on.
//!
//! A target is a vhost-user socket; the virtual machine attached to it is the target's
//! one session at a time, named after the target (`sessions/<target>`, which an
//! ini_group's `INITIATOR` pattern matches), with a SAS TransportID derived from the
//! target's name so that persistent reservations find a reconnecting VM again.
//!
//! Teardown never waits for a session (the lesson of SCST's scst_local deadlock,
//! docs/vhost.md): deleting or disabling a target, or stopping the daemon, shuts the
//! connection's socket down and returns. The connection's own thread then stops the
//! event loop and hands the worker, with whatever commands are still running in a
//! stalled backend, to a reaper thread of its own that lets the session go once they
//! have completed. Nothing holds a lock of the core's or the management tree's while
//! it waits.

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use scst_core::driver::add_target_checked;
use scst_core::{AttrFile, MgmtError, Scst, Target, TargetDriver, TransportId};
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{new_event_consumer_and_notifier, EventFlag};

use crate::backend::Conn;
use crate::worker::{Wake, Worker, WAKE_EVENT};

/// The driver's name: `targets/vhost/`, `TARGET_DRIVER vhost`.
pub const DRIVER: &str = "vhost";

/// The `vhost` target driver.
pub struct VhostDriver {
    scst: Arc<Scst>,
    ports: Mutex<HashMap<String, Arc<Port>>>,
    /// Every connection whose session still exists (connected, or being reaped).
    conns: Arc<Mutex<Vec<Weak<Wake>>>>,
}

/// One target's socket and its accepting thread.
struct Port {
    target: String,
    socket: PathBuf,
    closing: AtomicBool,
    /// The last connection was refused (disabled target): a VM that retries every
    /// second is logged once, not every second.
    refusing: AtomicBool,
}

impl Port {
    /// Stop accepting: wake the accepting thread with a connection of our own, which
    /// it drops on seeing `closing`, and remove the socket file, so that the path is
    /// free for a new target at once. Returns without waiting for the thread.
    fn stop(&self) {
        self.closing.store(true, Ordering::Release);
        // Fails if the socket is already gone, when nothing is accepting on it.
        let _ = UnixStream::connect(&self.socket);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Why serving a connection failed (logged by the accepting thread, which goes on).
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot set up a connection: {0}")]
    Setup(vhost_user_backend::Error),
    #[error("accept: {0}")]
    Accept(vhost_user_backend::Error),
    #[error("cannot watch the completion eventfd: {0}")]
    Watch(std::io::Error),
    #[error("cannot start a reaper thread: {0}")]
    Reaper(std::io::Error),
}

impl VhostDriver {
    pub fn new(scst: Arc<Scst>) -> Arc<VhostDriver> {
        Arc::new(VhostDriver {
            scst,
            ports: Mutex::new(HashMap::new()),
            conns: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The live counters of `targets/vhost/`: connected VMs, commands not answered yet
    /// (those of closed connections included, until their backend completes them) and
    /// the data buffer bytes they hold. After a teardown they fall to zero: nothing is
    /// left behind.
    fn counters(&self) -> (usize, usize, usize) {
        let mut conns = self.conns.lock();
        conns.retain(|w| w.strong_count() > 0);
        conns
            .iter()
            .filter_map(Weak::upgrade)
            .fold((0, 0, 0), |(c, n, b), w| {
                (
                    c + usize::from(w.connected.load(Ordering::Acquire)),
                    n + w.commands.load(Ordering::Relaxed),
                    b + w.buffer_bytes.load(Ordering::Relaxed),
                )
            })
    }

    /// Daemon shutdown (and the driver's end): every target stops accepting and its
    /// connection is closed. Does not wait for commands a stalled backend still holds.
    pub fn shutdown(&self) {
        let ports: Vec<Arc<Port>> = self.ports.lock().drain().map(|(_, p)| p).collect();
        for p in ports {
            if let Some(t) = self.scst.target(DRIVER, &p.target) {
                for s in t.sessions() {
                    s.events().close();
                }
            }
            p.stop();
        }
    }
}

impl Drop for VhostDriver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A SAS address for the target's VM: NAA 5 with 60 bits of the target name's FNV-1a
/// hash, stable across restarts (persistent reservations are keyed by it).
fn sas_address(target: &str) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((5u64 << 60) | (h >> 4)).to_be_bytes()
}

/// Check the socket path and bind it. An existing socket nobody listens on (left by
/// a daemon that was killed) is replaced; anything else there is refused.
fn bind(target: &str, path: &Path) -> Result<Listener, MgmtError> {
    let invalid = |why: String| {
        MgmtError::Invalid(format!("target {target}: socket {}: {why}", path.display()))
    };
    if !path.is_absolute() {
        return Err(invalid("must be an absolute path".into()));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(invalid("exists and is not a socket".into()))
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            return Err(invalid("another process is listening on it".into()))
        }
        _ => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| invalid(format!("cannot create its directory: {e}")))?;
    }
    // A stale socket file goes; the file is then the port's to remove (Port::stop),
    // never the listener's, which could outlive it and remove a newer target's.
    let _ = std::fs::remove_file(path);
    let l = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| invalid(format!("cannot listen: {e}")))?;
    Ok(Listener::from(l))
}

impl TargetDriver for VhostDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    fn add_target_params(&self) -> &'static [&'static str] {
        &["socket", "rel_tgt_id"]
    }

    fn validate_target_attr(&self, name: &str, value: &str) -> Result<(), MgmtError> {
        match name {
            "socket" if Path::new(value).is_absolute() => Ok(()),
            "socket" => Err(MgmtError::Invalid(format!(
                "socket must be an absolute path, not '{value}'"
            ))),
            // The core's target attributes; those scst-rs has only at their default are
            // held to it by the attribute table before they get here.
            "comment" | "cpu_mask" | "io_grouping_type" | "black_hole" | "forward_src"
            | "forward_dst" | "forwarding" | "aen_disabled" => Ok(()),
            _ => Err(MgmtError::NotSupported(format!(
                "driver vhost: target attribute {name} is not supported"
            ))),
        }
    }

    fn add_target(
        &self,
        scst: &Scst,
        name: &str,
        params: &[(String, String)],
    ) -> Result<Arc<Target>, MgmtError> {
        let socket = params
            .iter()
            .rev()
            .find(|(k, _)| k == "socket")
            .map(|(_, v)| PathBuf::from(v.trim()))
            .ok_or_else(|| {
                MgmtError::Invalid(format!(
                    "target {name}: the socket parameter is required (add_target {name} socket=/run/scstd/{name}.sock)"
                ))
            })?;
        let mut ports = self.ports.lock();
        if let Some(p) = ports.values().find(|p| p.socket == socket) {
            return Err(MgmtError::Invalid(format!(
                "target {name}: socket {} is already target {}'s",
                socket.display(),
                p.target
            )));
        }
        if scst.target(DRIVER, name).is_some() {
            return Err(MgmtError::Exists {
                kind: "target",
                name: name.to_string(),
            });
        }
        let listener = bind(name, &socket)?;
        let target = add_target_checked(self, scst, name, params).inspect_err(|_| {
            // The listener does not remove its file (Port::stop does): nothing half-made
            // stays behind.
            let _ = std::fs::remove_file(&socket);
        })?;
        let port = Arc::new(Port {
            target: name.to_string(),
            socket,
            closing: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
        });
        let scst = self.scst.clone();
        let p = port.clone();
        let conns = self.conns.clone();
        std::thread::Builder::new()
            .name(format!("vhost-{name}"))
            .spawn(move || accept_loop(scst, p, conns, listener))
            .map_err(|e| {
                let _ = self.scst.del_target(DRIVER, name);
                MgmtError::Busy {
                    kind: "target",
                    name: name.to_string(),
                    why: format!("cannot start its thread: {e}"),
                }
            })?;
        ports.insert(name.to_string(), port);
        log::info!(
            "target {DRIVER}/{name}: listening on {}",
            target.attr("socket").unwrap_or_default()
        );
        Ok(target)
    }

    fn del_target(&self, scst: &Scst, name: &str) -> Result<(), MgmtError> {
        // The core closes the session (its connection is shut down); the port stops
        // accepting. Neither waits.
        scst.del_target(DRIVER, name)?;
        let mut ports = self.ports.lock();
        if let Some(p) = ports.remove(name) {
            p.stop();
        }
        Ok(())
    }

    fn driver_files(&self) -> Vec<AttrFile> {
        let (conns, commands, bytes) = self.counters();
        let file = |name: &str, value: usize| AttrFile {
            name: name.to_string(),
            value: value.to_string(),
            key: false,
        };
        vec![
            file("open_connections", conns),
            file("active_commands", commands),
            file("data_buffer_bytes", bytes),
        ]
    }

    fn set_target_enabled(&self, target: &Target, on: bool) -> Result<(), MgmtError> {
        target.set_enabled(on);
        if !on {
            // A vhost-user connection has no login to refuse later: a disabled
            // target's VM is disconnected now, and reconnects are refused.
            for s in target.sessions() {
                s.events().close();
            }
        }
        Ok(())
    }
}

/// Accept connections on a target's socket, one VM at a time, until the target goes.
fn accept_loop(
    scst: Arc<Scst>,
    port: Arc<Port>,
    conns: Arc<Mutex<Vec<Weak<Wake>>>>,
    mut listener: Listener,
) {
    let name = port.target.clone();
    while !port.closing.load(Ordering::Acquire) {
        if let Err(e) = serve_one(&scst, &port, &conns, &mut listener) {
            log::error!("target {DRIVER}/{name}: {e}");
            // Do not spin on a socket that keeps failing.
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    log::info!("target {DRIVER}/{name}: socket closed");
}

/// Accept one connection and serve it until it ends.
fn serve_one(
    scst: &Arc<Scst>,
    port: &Port,
    conns: &Mutex<Vec<Weak<Wake>>>,
    listener: &mut Listener,
) -> Result<(), ServeError> {
    let name = &port.target;
    let span = tracing::info_span!("vhost", target = %name, session = tracing::field::Empty);
    let conn = Arc::new(Conn::new(span.clone()).map_err(ServeError::EventFd)?);
    let mut daemon = VhostUserDaemon::new(
        format!("vhost-{name}"),
        conn.clone(),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    )
    .map_err(ServeError::Setup)?;
    // Blocks until a frontend (or Port::stop) connects.
    daemon.start(listener).map_err(ServeError::Accept)?;
    let end = |daemon: VhostUserDaemon<Arc<Conn>>, conn: &Conn| {
        daemon.request_shutdown();
        conn.stop();
        drop(daemon);
    };
    if port.closing.load(Ordering::Acquire) {
        end(daemon, &conn);
        return Ok(());
    }
    let target = match scst.target(DRIVER, name) {
        Some(t) if t.enabled() => t,
        _ => {
            if !port.refusing.swap(true, Ordering::Relaxed) {
                log::info!("target {DRIVER}/{name}: connection refused: the target is not enabled");
            }
            end(daemon, &conn);
            return Ok(());
        }
    };
    port.refusing.store(false, Ordering::Relaxed);
    let (consumer, notifier) =
        new_event_consumer_and_notifier(EventFlag::CLOEXEC).map_err(ServeError::EventFd)?;
    let wake_fd = std::os::fd::AsRawFd::as_raw_fd(&consumer);
    let wake = Arc::new(Wake::new(notifier));
    conns.lock().push(Arc::downgrade(&wake));
    if let Some(h) = daemon.shutdown_handle() {
        wake.on_close(Box::new(move || h.shutdown()));
    }
    let session = scst.register_session_as(
        &target,
        TransportId::Sas {
            address: sas_address(name),
        },
        name.clone(),
        wake.clone(),
    );
    span.record("session", session.id);
    conn.install(Worker::new(scst.clone(), session, wake.clone(), consumer));
    for h in daemon.get_epoll_handlers() {
        h.register_listener(wake_fd, EventSet::IN, WAKE_EVENT as u64)
            .map_err(ServeError::Watch)?;
    }
    // Deleted or disabled while this connection was being set up: the core's close
    // may have listed the target's sessions before this one existed.
    if !target.enabled() || port.closing.load(Ordering::Acquire) {
        scst_core::SessionEvents::close(&*wake);
    }
    span.in_scope(|| log::info!("connected"));
    let ended = daemon.wait();
    span.in_scope(|| match &ended {
        Ok(()) => log::info!("disconnected"),
        Err(e) => log::info!("disconnected: {e}"),
    });
    // Stop the event loop; the worker is taken from it first, so the loop's last
    // event (which cannot block) is all this waits for.
    let worker = conn.take();
    end(daemon, &conn);
    if let Some(mut w) = worker {
        w.close();
        if w.in_flight() > 0 {
            let n = w.in_flight();
            span.in_scope(|| {
                log::info!("{n} command(s) still running: released when they complete")
            });
            let span = span.clone();
            std::thread::Builder::new()
                .name(format!("vhost-{name}-reap"))
                .spawn(move || {
                    let _s = span.enter();
                    w.reap();
                    log::info!("last command of the closed connection completed");
                })
                .map_err(ServeError::Reaper)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_addresses_are_naa5_and_stable() {
        let a = sas_address("vm1");
        assert_eq!(a[0] >> 4, 5);
        assert_eq!(a, sas_address("vm1"));
        assert_ne!(a, sas_address("vm2"));
    }
}
