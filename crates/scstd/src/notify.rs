//! systemd's readiness protocol (sd_notify(3)) without libsystemd: when systemd starts
//! scstd as a `Type=notify` service it sets `NOTIFY_SOCKET`, and scstd reports its state
//! as one datagram per change to that socket: `READY=1` once the portals listen and the
//! management socket is up, `RELOADING=1` and `READY=1` around a SIGHUP reload,
//! `STOPPING=1` when it shuts down. Without `NOTIFY_SOCKET` nothing is sent. A report
//! that cannot be sent is logged, never fatal: the daemon serves either way.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where the service manager listens, and a socket to send from.
pub struct Notifier {
    addr: SocketAddr,
    sock: UnixDatagram,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; None when it is unset or empty. A value that cannot be
    /// used is logged once and ignored.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os(NOTIFY_SOCKET)?;
        let path = path.to_str().filter(|p| !p.is_empty())?.to_string();
        match Notifier::new(&path) {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("{NOTIFY_SOCKET}={path}: {e}; not reporting to systemd");
                None
            }
        }
    }

    /// A file-system socket path, or an abstract one when it starts with '@'
    /// (sd_notify(3)).
    pub fn new(path: &str) -> io::Result<Notifier> {
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if path.starts_with('/') => SocketAddr::from_pathname(path)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "expected an absolute path or an abstract name starting with '@'",
                ))
            }
        };
        let sock = UnixDatagram::unbound()?;
        Ok(Notifier { addr, sock })
    }

    /// Ready to serve; `MAINPID` tells systemd which process to watch even when it was
    /// started through a wrapper.
    pub fn ready(&self) {
        self.send(&format!("READY=1\nMAINPID={}", std::process::id()));
    }

    /// A reload starts; systemd waits for the next `READY=1` before it calls the reload
    /// done. `MONOTONIC_USEC` lets it tell this reload from an earlier one.
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// The reload is over (applied or refused: the daemon serves either way).
    pub fn reloaded(&self) {
        self.send("READY=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            log::warn!(
                "cannot report {:?} to systemd ({NOTIFY_SOCKET}): {e}",
                state.lines().next().unwrap_or(state)
            );
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given, which lives here.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn reports_reach_a_path_socket_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str().unwrap()).unwrap();
        n.ready();
        n.reloading();
        n.reloaded();
        n.stopping();
        assert_eq!(
            recv(&listener),
            format!("READY=1\nMAINPID={}", std::process::id())
        );
        let reloading = recv(&listener);
        let usec: u64 = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("not a reload report: {reloading:?}"));
        assert!(usec > 0);
        assert_eq!(recv(&listener), "READY=1");
        assert_eq!(recv(&listener), "STOPPING=1");
    }

    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        let name = format!("scstd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::new(&format!("@{name}")).unwrap().stopping();
        assert_eq!(recv(&listener), "STOPPING=1");
    }

    #[test]
    fn a_relative_path_is_refused() {
        let e = Notifier::new("run/notify").err().expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
