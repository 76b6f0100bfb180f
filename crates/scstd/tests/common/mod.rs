//! Starting and stopping a real scstd binary for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const IQN: &str = "iqn.2026-11.rs.scst:test";
pub const INITIATOR: &str = "iqn.2026-11.rs.scst:initiator";

pub struct Daemon {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The management socket, in a scratch directory of its own (never /run).
    pub mgmt_socket: PathBuf,
    _mgmt_dir: tempfile::TempDir,
    /// What scstd logged before its portal was up (configuration, devices, engine).
    pub startup_log: Vec<String>,
    /// stderr lines, collected by a thread, for diagnostics.
    log: mpsc::Receiver<String>,
}

impl Daemon {
    /// Start scstd with `conf` on an ephemeral loopback port and wait for its portal.
    pub fn start(conf: &Path) -> Daemon {
        Daemon::start_with(conf, &[])
    }

    /// [`Daemon::start`] with extra command-line arguments (e.g. `--state-dir`).
    pub fn start_with(conf: &Path, extra: &[&std::ffi::OsStr]) -> Daemon {
        Daemon::start_cmd(conf, extra, |_| {})
    }

    /// [`Daemon::start`] with RLIMIT_NOFILE set to `soft` and `hard`.
    pub fn start_with_nofile(conf: &Path, soft: u64, hard: u64) -> Daemon {
        use std::os::unix::process::CommandExt;
        Daemon::start_cmd(conf, &[], |cmd| {
            let limit = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: the closure runs in the child between fork and exec, where it
            // only calls setrlimit (async-signal-safe) on a value it owns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        })
    }

    fn start_cmd(
        conf: &Path,
        extra: &[&std::ffi::OsStr],
        configure: impl FnOnce(&mut Command),
    ) -> Daemon {
        let mgmt_dir = tempfile::tempdir().expect("tempdir");
        let mgmt_socket = mgmt_dir.path().join("scstd.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scstd"));
        cmd.arg("--config")
            .arg(conf)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--mgmt-socket")
            .arg(&mgmt_socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn scstd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    if let Some(a) = line.split("portal listening on ").nth(1) {
                        let addr = a.trim().parse().expect("portal address");
                        return Daemon {
                            child: Some(child),
                            addr,
                            mgmt_socket,
                            _mgmt_dir: mgmt_dir,
                            startup_log: seen,
                            log: rx,
                        };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("scstd did not start; its output:\n{}", seen.join("\n"));
                }
            }
        }
    }

    /// The daemon's process id.
    /// The daemon's resident size (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("daemon pid");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().ok()?;
        status.code()
    }

    /// SIGKILL (a crash: no shutdown path runs) and reap.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL scstd");
            let _ = c.wait();
        }
    }

    /// Everything scstd logged so far.
    pub fn log(&self) -> String {
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A scratch directory with a backing file of `size` bytes and a config exporting it
/// as LUN 0 of [`IQN`] through vdisk_fileio.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub disk: PathBuf,
}

pub fn fileio_fixture(size: u64, extra_device_attrs: &str) -> Fixture {
    fileio_fixture_in(&std::env::temp_dir(), size, extra_device_attrs)
}

/// [`fileio_fixture`] in a scratch directory under `parent` (a filesystem of choice).
pub fn fileio_fixture_in(parent: &Path, size: u64, extra_device_attrs: &str) -> Fixture {
    let dir = tempfile::tempdir_in(parent).expect("tempdir");
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(size))
        .expect("backing file");
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_fileio {{\n\tDEVICE disk1 {{\n\t\tfilename {}\n{extra_device_attrs}\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {IQN} {{\n\t\tLUN 0 disk1\n\t\tenabled 1\n\t}}\n}}\n",
            disk.display()
        ),
    )
    .expect("config");
    Fixture { dir, conf, disk }
}

/// scstadmin is a sibling binary crate, built into the directory scstd is in. Build it
/// once per test run with the same cargo and profile: a no-op when it is fresh, and
/// never a stale binary when only scstd's tests were asked for.
pub fn scstadmin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let scstd = PathBuf::from(env!("CARGO_BIN_EXE_scstd"));
            let path = scstd.with_file_name("scstadmin");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "scstadmin"]);
            if scstd.parent().and_then(|p| p.file_name()) == Some("release".as_ref()) {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("run cargo build -p scstadmin");
            assert!(st.success(), "cargo build -p scstadmin failed");
            assert!(path.exists(), "{} not found", path.display());
            path
        })
        .clone()
}

pub fn admin(d: &Daemon, args: &[&str]) -> Output {
    let out = Command::new(scstadmin())
        .arg("-socket")
        .arg(&d.mgmt_socket)
        .args(args)
        .output()
        .expect("run scstadmin");
    eprintln!(
        "scstadmin {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn admin_ok(d: &Daemon, args: &[&str]) -> String {
    let out = admin(d, args);
    assert!(out.status.success(), "scstadmin {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A stall file system (test_support::stallfs) holding one file, `disk.img` of `size`
/// bytes, mounted under `parent/mnt`. Never skipped: the tests that use it are about a
/// stalled backend, so without root and /dev/fuse they fail, saying so.
pub fn stall_mount(parent: &Path, size: u64) -> test_support::stallfs::StallFs {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root && Path::new("/dev/fuse").exists(),
        "these tests mount a FUSE file system: they need root and /dev/fuse"
    );
    let mnt = parent.join("mnt");
    std::fs::create_dir(&mnt).expect("mount point");
    test_support::stallfs::StallFs::mount(&mnt, "disk.img", size)
        .unwrap_or_else(|e| panic!("mount the stall file system: {e}"))
}
