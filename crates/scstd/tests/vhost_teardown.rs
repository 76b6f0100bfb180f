//! The vhost target's teardown paths with commands in flight, the lesson of SCST's
//! scst_local deadlock (docs/vhost.md "Teardown never waits for a VM"): deleting the
//! target, disabling it, killing the VM and stopping the daemon while a vcdrom LUN is
//! held open by the guest (PREVENT MEDIUM REMOVAL) and the disk's backing file is
//! stalled in I/O (test_support::stallfs). Each returns within a bounded time,
//! management answers meanwhile, and once the storage is released nothing is left: the
//! driver's counters (`targets/vhost/`: open_connections, active_commands,
//! data_buffer_bytes) fall to zero. A VM attaching again afterwards reads and writes.
//!
//! The VM is test_support's vhost-user frontend, which plays QEMU and the guest's
//! virtio-scsi driver over the target's socket.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::mpsc;
use std::time::Duration;

use common::{admin_ok, Daemon};
use test_support::stallfs::StallFs;
use test_support::vhost_frontend::{Token, VhostFrontend, REQUEST_QUEUE};

const SIZE: u64 = 16 << 20;
const BLOCK: usize = 512;
/// What "returns within a bounded time" means here: far beyond any normal answer,
/// far below a hang.
const BOUND: Duration = Duration::from_secs(15);
const CD_LUN: u16 = 1;

struct Rig {
    dir: tempfile::TempDir,
    fs: StallFs,
    daemon: Daemon,
    sock: PathBuf,
}

/// scstd with a vhost target: LUN 0 a fileio disk on the stall file system, LUN 1 a
/// vcdrom.
fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = common::stall_mount(dir.path(), SIZE);
    let iso = dir.path().join("cd.iso");
    std::fs::File::create(&iso)
        .and_then(|f| f.set_len(2 << 20))
        .expect("iso");
    let sock = dir.path().join("vm1.sock");
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_fileio {{\n\tDEVICE disk0 {{\n\t\tfilename {}\n\t}}\n}}\n\
             HANDLER vcdrom {{\n\tDEVICE cd0 {{\n\t\tfilename {}\n\t}}\n}}\n\
             TARGET_DRIVER vhost {{\n\tTARGET vm1 {{\n\t\tsocket {}\n\
             \t\tLUN 0 disk0\n\t\tLUN {CD_LUN} cd0\n\t\tenabled 1\n\t}}\n}}\n",
            fs.path().display(),
            iso.display(),
            sock.display()
        ),
    )
    .expect("config");
    let daemon = Daemon::start(&conf);
    Rig {
        dir,
        fs,
        daemon,
        sock,
    }
}

fn run(f: &mut VhostFrontend, lun: u16, cdb: &[u8], out: &[u8], in_len: u32) -> (u8, u8) {
    let r = f
        .command(REQUEST_QUEUE, lun, cdb, out, in_len, BOUND)
        .expect("command")
        .expect("an answer");
    (r.response, r.status)
}

/// A VM on the target's socket, its power-on unit attentions cleared.
fn attach(sock: &Path) -> VhostFrontend {
    let mut f = VhostFrontend::connect(sock).expect("attach to the vhost socket");
    for lun in [0, CD_LUN] {
        let _ = run(&mut f, lun, &[0; 6], &[], 0);
        assert_eq!(run(&mut f, lun, &[0; 6], &[], 0), (0, 0), "TEST UNIT READY");
    }
    f
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [op, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

const PREVENT_REMOVAL: [u8; 6] = [0x1e, 0, 0, 0, 1, 0];
/// START STOP UNIT with LOEJ: eject the medium.
const EJECT: [u8; 6] = [0x1b, 0, 0, 0, 0x02, 0];
const CHECK_CONDITION: u8 = 0x02;

/// The guest holds the CD-ROM (PREVENT MEDIUM REMOVAL: an eject is refused), then the
/// disk's storage stalls under reads and writes.
fn stall_with_io(r: &Rig, f: &mut VhostFrontend) -> Vec<Token> {
    assert_eq!(run(f, CD_LUN, &PREVENT_REMOVAL, &[], 0), (0, 0));
    assert_eq!(
        run(f, CD_LUN, &EJECT, &[], 0),
        (0, CHECK_CONDITION),
        "the medium may not be removed while the guest holds it"
    );
    r.fs.stall();
    let mut tokens = Vec::new();
    for i in 0..4u32 {
        let data = vec![i as u8 + 1; 8 * BLOCK];
        let w = f
            .submit(
                REQUEST_QUEUE,
                0,
                100 + i as u64,
                &rw10(0x2a, i * 64, 8),
                &data,
                0,
            )
            .expect("submit a write");
        let rd = f
            .submit(
                REQUEST_QUEUE,
                0,
                200 + i as u64,
                &rw10(0x28, 1024 + i * 64, 8),
                &[],
                8 * BLOCK as u32,
            )
            .expect("submit a read");
        tokens.extend([w, rd]);
    }
    assert!(
        r.fs.wait_blocked(1, BOUND),
        "the commands' I/O reached the stalled file"
    );
    let (_, commands, bytes) = counters(&r.daemon);
    assert!(
        commands > 0 && bytes > 0,
        "commands in flight: {commands}, {bytes} bytes"
    );
    tokens
}

/// Run `f` on a thread and insist that it returns within [`BOUND`] (or `bound`).
fn bounded<T: Send + 'static>(
    what: &str,
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(bound)
        .unwrap_or_else(|_| panic!("{what} did not return within {bound:?}"))
}

fn admin_bounded(d: &Daemon, args: &[&str]) -> Output {
    let socket = d.mgmt_socket.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let what = format!("scstadmin {}", args.join(" "));
    bounded(&what, BOUND, move || {
        std::process::Command::new(common::scstadmin())
            .arg("-socket")
            .arg(socket)
            .arg("-noprompt")
            .args(&args)
            .output()
            .expect("run scstadmin")
    })
}

/// Management answers while the storage is stalled.
fn management_answers(d: &Daemon) {
    let out = admin_bounded(d, &["-list_target"]);
    assert!(out.status.success(), "-list_target: {out:?}");
    let out = admin_bounded(d, &["-list_drv_attr", "vhost"]);
    assert!(out.status.success(), "-list_drv_attr: {out:?}");
}

/// (open_connections, active_commands, data_buffer_bytes) of `targets/vhost/`.
fn counters(d: &Daemon) -> (usize, usize, usize) {
    let text = admin_ok(d, &["-list_drv_attr", "vhost"]);
    let get = |name: &str| -> usize {
        text.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    (
        get("open_connections"),
        get("active_commands"),
        get("data_buffer_bytes"),
    )
}

/// Wait until the counters satisfy `done` (what they should show), or fail with them.
fn wait_counters(d: &Daemon, what: &str, done: impl Fn((usize, usize, usize)) -> bool) {
    let mut last = (0, 0, 0);
    for _ in 0..(BOUND.as_millis() / 100) {
        last = counters(d);
        if done(last) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: (open_connections, active_commands, data_buffer_bytes) = {last:?}");
}

/// The counters fall to zero: no connection, command or buffer left.
fn nothing_left(d: &Daemon) {
    wait_counters(d, "left behind", |c| c == (0, 0, 0));
}

/// A VM attaching again reads what was written, writes and reads back, and may eject
/// the CD-ROM: the prevention of the VM that went ended with its nexus.
fn next_vm_works(sock: &Path) {
    let mut f = attach(sock);
    let data: Vec<u8> = (0..8 * BLOCK).map(|i| (i % 251) as u8).collect();
    assert_eq!(run(&mut f, 0, &rw10(0x2a, 4000, 8), &data, 0), (0, 0));
    let r = f
        .command(
            REQUEST_QUEUE,
            0,
            &rw10(0x28, 4000, 8),
            &[],
            8 * BLOCK as u32,
            BOUND,
        )
        .expect("read")
        .expect("answer");
    assert!(r.is_good(), "{r:?}");
    assert_eq!(r.data_in, data);
    assert_eq!(run(&mut f, CD_LUN, &EJECT, &[], 0), (0, 0), "eject");
}

#[test]
fn deleting_the_target_with_io_stalled_returns_and_leaves_nothing() {
    let r = rig();
    let mut f = attach(&r.sock);
    let _tokens = stall_with_io(&r, &mut f);
    let out = admin_bounded(&r.daemon, &["-rem_target", "vm1", "-driver", "vhost"]);
    assert!(out.status.success(), "-rem_target: {out:?}");
    assert!(f.wait_disconnected(BOUND), "the VM is disconnected");
    assert!(!r.sock.exists(), "the socket file is removed");
    management_answers(&r.daemon);
    // The stalled commands are still the backend's: they are shown, not forgotten.
    assert!(counters(&r.daemon).1 > 0);
    r.fs.unstall();
    nothing_left(&r.daemon);
    // The target can be made again on the same socket, and serves.
    let sock = format!("socket={}", r.sock.display());
    admin_ok(
        &r.daemon,
        &[
            "-add_target",
            "vm1",
            "-driver",
            "vhost",
            "-attributes",
            &sock,
        ],
    );
    admin_ok(
        &r.daemon,
        &[
            "-add_lun", "0", "-driver", "vhost", "-target", "vm1", "-device", "disk0",
        ],
    );
    admin_ok(
        &r.daemon,
        &[
            "-add_lun", "1", "-driver", "vhost", "-target", "vm1", "-device", "cd0",
        ],
    );
    admin_ok(&r.daemon, &["-enable_target", "vm1", "-driver", "vhost"]);
    next_vm_works(&r.sock);
    drop(r.dir);
}

#[test]
fn disabling_the_target_with_io_stalled_disconnects_and_refuses_until_enabled() {
    let r = rig();
    let mut f = attach(&r.sock);
    let _tokens = stall_with_io(&r, &mut f);
    let out = admin_bounded(&r.daemon, &["-disable_target", "vm1", "-driver", "vhost"]);
    assert!(out.status.success(), "-disable_target: {out:?}");
    assert!(f.wait_disconnected(BOUND), "the VM is disconnected");
    management_answers(&r.daemon);
    // A disabled target refuses VMs.
    let refused = VhostFrontend::connect(&r.sock);
    assert!(
        refused.map_or(true, |g| g.wait_disconnected(BOUND)),
        "a disabled target does not keep a new VM"
    );
    r.fs.unstall();
    nothing_left(&r.daemon);
    admin_ok(&r.daemon, &["-enable_target", "vm1", "-driver", "vhost"]);
    next_vm_works(&r.sock);
}

#[test]
fn a_vm_killed_with_io_stalled_leaves_nothing_and_the_next_one_resumes() {
    let r = rig();
    let mut f = attach(&r.sock);
    let _tokens = stall_with_io(&r, &mut f);
    // QEMU is killed: its socket closes with the commands still in the backend.
    drop(f);
    management_answers(&r.daemon);
    wait_counters(&r.daemon, "the killed VM's connection is not closed", |c| {
        c.0 == 0
    });
    r.fs.unstall();
    nothing_left(&r.daemon);
    next_vm_works(&r.sock);
}

/// Stopping scstd: its shutdown runs to its end in bounded time (the VM disconnected,
/// the stalled device's last flush given up after 20 s). The process itself can only
/// end once the kernel lets go of the threads whose FUSE requests the file system holds
/// (a request already taken by the server waits uninterruptibly, as I/O on a hung hard
/// NFS mount does): it exits as soon as the storage is released.
#[test]
fn stopping_the_daemon_with_io_stalled_returns() {
    let r = rig();
    let mut f = attach(&r.sock);
    let _tokens = stall_with_io(&r, &mut f);
    let Rig { mut daemon, fs, .. } = r;
    let pid = daemon.pid().expect("pid") as i32;
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(f.wait_disconnected(BOUND), "the VM is disconnected");
    let mut log = String::new();
    for _ in 0..400 {
        log.push_str(&daemon.log());
        log.push('\n');
        if log.contains("scstd stopped") || !daemon.is_running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        log.contains("scstd stopped"),
        "scstd's shutdown did not finish in 40 s:\n{log}"
    );
    assert!(
        !daemon.mgmt_socket.exists(),
        "the management socket is removed"
    );
    fs.unstall();
    let mut running = true;
    for _ in 0..(BOUND.as_millis() / 100) {
        running = daemon.is_running();
        if !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!running, "scstd did not exit once its storage was released");
    drop(fs);
}
