//! The daemon's life as systemd and an administrator see it: `--version`, the default
//! configuration file, readiness reported to `NOTIFY_SOCKET`, SIGHUP reloading the
//! configuration as one transaction (and keeping the running one when the file is bad),
//! and SIGTERM removing the management socket.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use test_support::{scsi, Initiator, LoginOptions};

const TARGET: &str = "iqn.2026-11.rs.scst:life";

/// Long enough for a loaded machine; every wait ends as soon as the event arrives.
const PATIENCE: Duration = Duration::from_secs(30);

/// scstd started with `NOTIFY_SOCKET` pointing at a datagram socket of ours, in the
/// role of systemd.
struct Supervised {
    child: Child,
    addr: SocketAddr,
    mgmt_socket: PathBuf,
    notify: UnixDatagram,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Supervised {
    fn start(conf: &Path) -> Supervised {
        let dir = tempfile::tempdir().expect("tempdir");
        let notify_path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        notify.set_read_timeout(Some(PATIENCE)).unwrap();
        let mgmt_socket = dir.path().join("scstd.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_scstd"))
            .arg("--config")
            .arg(conf)
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--mgmt-socket")
            .arg(&mgmt_socket)
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &notify_path)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn scstd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Supervised {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            mgmt_socket,
            notify,
            log,
            seen: Vec::new(),
            _dir: dir,
        };
        let line = d.wait_log("portal listening on ");
        d.addr = line
            .split("portal listening on ")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
            .expect("portal address");
        d
    }

    /// The next state report sent to NOTIFY_SOCKET.
    fn next_report(&self) -> String {
        let mut buf = [0u8; 512];
        let n = self
            .notify
            .recv(&mut buf)
            .expect("a report on NOTIFY_SOCKET");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Wait for a log line containing `what`; the line.
    fn wait_log(&mut self, what: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(what)) {
            return l.clone();
        }
        loop {
            match self.log.recv_timeout(PATIENCE) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "scstd never logged {what:?}; its log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// SIGHUP, and wait until the daemon says the reload is over.
    fn reload(&mut self) {
        self.signal(libc::SIGHUP);
        let r = self.next_report();
        assert!(r.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{r:?}");
        assert_eq!(self.next_report(), "READY=1");
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn luns(&self) -> Vec<u16> {
        let mut i = Initiator::connect(self.addr).expect("connect");
        i.set_timeout(Duration::from_secs(10));
        i.login(common::INITIATOR, TARGET, &LoginOptions::default())
            .expect("login");
        let r = i.report_luns().expect("REPORT LUNS").good().expect("good");
        let mut luns: Vec<u16> = scsi::parse_report_luns(&r.data)
            .expect("REPORT LUNS data")
            .iter()
            .map(scsi::lun_number)
            .collect();
        luns.sort_unstable();
        luns
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A target with nullio LUNs `0..luns`.
fn config(luns: u16) -> String {
    let mut devices = String::new();
    let mut lun_lines = String::new();
    for n in 0..luns {
        devices.push_str(&format!("\tDEVICE null{n} {{\n\t\tsize_mb 16\n\t}}\n"));
        lun_lines.push_str(&format!("\t\tLUN {n} null{n}\n"));
    }
    format!(
        "HANDLER vdisk_nullio {{\n{devices}}}\n\
         TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {TARGET} {{\n{lun_lines}\t\tenabled 1\n\t}}\n}}\n"
    )
}

#[test]
fn version_lines_name_the_workspace_version() {
    let want = env!("CARGO_PKG_VERSION");
    for (bin, flag) in [
        (PathBuf::from(env!("CARGO_BIN_EXE_scstd")), "--version"),
        (common::scstadmin(), "--version"),
        (common::scstadmin(), "-version"),
    ] {
        let out = Command::new(&bin).arg(flag).output().expect("run");
        assert!(out.status.success(), "{} {flag}: {out:?}", bin.display());
        let text = String::from_utf8_lossy(&out.stdout);
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            text.starts_with(&format!("{name} (scst-rs) {want}")),
            "{name} {flag}: {text}"
        );
    }
}

#[test]
fn a_missing_config_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_scstd"))
        .args(["--config", "/nonexistent/scst.conf"])
        .output()
        .expect("run scstd");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read config /nonexistent/scst.conf"),
        "{err}"
    );
}

#[test]
fn sighup_applies_the_file_and_keeps_the_running_state_when_it_is_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("scst.conf");
    std::fs::write(&conf, config(1)).unwrap();
    let mut d = Supervised::start(&conf);
    let ready = d.next_report();
    assert_eq!(ready, format!("READY=1\nMAINPID={}", d.child.id()));
    assert_eq!(d.luns(), [0]);

    // A LUN added to the file appears once the reload is reported done.
    std::fs::write(&conf, config(2)).unwrap();
    d.reload();
    assert_eq!(d.luns(), [0, 1]);
    d.wait_log("2 change(s) applied");
    d.wait_log("reload: ");

    // The same file again: nothing to do.
    d.reload();
    d.wait_log("nothing changed");

    // A file that does not parse: logged, nothing changes, the daemon serves.
    std::fs::write(&conf, "HANDLER vdisk_nullio {\n\tDEVICE broken {\n").unwrap();
    d.reload();
    let refused = d.wait_log("refused, the running configuration is kept");
    assert!(refused.contains(&conf.display().to_string()), "{refused}");
    assert!(d.is_running());
    assert_eq!(d.luns(), [0, 1]);

    // A file every step of which is valid but one write fails (a backing file that does
    // not exist): the writes before it are undone.
    let missing = dir.path().join("missing.img");
    let failing = config(3).replace(
        "TARGET_DRIVER iscsi {",
        &format!(
            "HANDLER vdisk_fileio {{\n\tDEVICE file0 {{\n\t\tfilename {}\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{",
            missing.display()
        ),
    );
    std::fs::write(&conf, failing).unwrap();
    d.reload();
    let refused = d.wait_log("missing.img");
    assert!(refused.contains("refused"), "{refused}");
    assert!(d.is_running());
    assert_eq!(d.luns(), [0, 1]);
    let out = Command::new(common::scstadmin())
        .arg("-socket")
        .arg(&d.mgmt_socket)
        .arg("-list_device")
        .output()
        .expect("scstadmin");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(listing.contains("null1"), "{listing}");
    assert!(
        !listing.contains("null2") && !listing.contains("file0"),
        "{listing}"
    );

    // SIGTERM: reported, the socket file removed, a clean exit.
    assert!(d.mgmt_socket.exists());
    d.signal(libc::SIGTERM);
    assert_eq!(d.next_report(), "STOPPING=1");
    let status = d.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{}", d.seen.join("\n"));
    assert!(
        !d.mgmt_socket.exists(),
        "the management socket was left behind"
    );
}

#[test]
fn sigint_removes_the_management_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("scst.conf");
    std::fs::write(&conf, config(1)).unwrap();
    let mut d = Supervised::start(&conf);
    assert!(d.next_report().starts_with("READY=1"));
    assert!(d.mgmt_socket.exists());
    d.signal(libc::SIGINT);
    assert_eq!(d.next_report(), "STOPPING=1");
    assert_eq!(d.child.wait().expect("wait").code(), Some(0));
    assert!(
        !d.mgmt_socket.exists(),
        "the management socket was left behind"
    );
}
