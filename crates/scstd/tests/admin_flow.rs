//! A whole administration session against a running scstd, through scstadmin and the
//! management socket only: devices, a target, LUNs, two initiator groups, logins from
//! libiscsi's tools and the in-tree initiator, a LUN replaced under I/O, a resize, and
//! the removal of everything, each step checked in the tree and from the initiators.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{admin, admin_ok, Daemon};
use scst_mgmt::protocol::strip_key;
use scst_mgmt::Client;
use test_support::{scsi, Initiator, LoginOptions};

const TARGET: &str = "iqn.2026-11.rs.scst:flow";
/// In group `apps` (matched by its negated pattern: anything that is not a host-b).
const HOST_A: &str = "iqn.2026-11.rs.scst:host-a1";
/// In group `backup` (`host-b?`); `apps`' negation keeps it out of that group.
const HOST_B: &str = "iqn.2026-11.rs.scst:host-b7";
const BS: u32 = 512;
const MIB: u64 = 1 << 20;

/// libiscsi's command-line tools are required, never optional: scripts/test installs
/// them (Debian package libiscsi-bin).
fn libiscsi_tool(name: &str) -> &str {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} not found: install libiscsi-bin (apt-get install libiscsi-bin); \
         scripts/test does this"
    );
    name
}

fn portal(d: &Daemon) -> String {
    format!("iscsi://127.0.0.1:{}", d.addr.port())
}

/// The LUN numbers `iscsi-ls -s` shows `initiator` on [`TARGET`] (empty when the target
/// is hidden from it or refuses its login).
fn iscsi_ls_luns(d: &Daemon, initiator: &str) -> Vec<u16> {
    let out = Command::new(libiscsi_tool("iscsi-ls"))
        .args(["-s", "-i", initiator, &portal(d)])
        .output()
        .expect("run iscsi-ls");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "iscsi-ls -i {initiator}: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut luns = Vec::new();
    let mut in_target = false;
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("Target:") {
            in_target = rest.starts_with(TARGET);
        } else if let Some(rest) = l.strip_prefix("Lun:") {
            if in_target {
                let n = rest.split_whitespace().next().unwrap_or("");
                luns.push(n.parse().unwrap_or_else(|_| panic!("iscsi-ls line '{l}'")));
            }
        }
    }
    luns
}

/// INQUIRY product identification through `iscsi-inq` (vdisk: the device name).
fn iscsi_inq_product(d: &Daemon, initiator: &str, lun: u16) -> String {
    let url = format!("{}/{TARGET}/{lun}", portal(d));
    let out = Command::new(libiscsi_tool("iscsi-inq"))
        .args(["-i", initiator, &url])
        .output()
        .expect("run iscsi-inq");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "iscsi-inq {url}: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Product:"))
        .unwrap_or_else(|| panic!("no product identification in:\n{text}"))
        .trim()
        .to_string()
}

fn login(d: &Daemon, initiator: &str) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    i.login(initiator, TARGET, &LoginOptions::default())
        .expect("login");
    i
}

/// TEST UNIT READY until GOOD; the unit attentions seen on the way.
fn drain_uas(i: &mut Initiator, lun: u16) -> Vec<(u8, u8, u8)> {
    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = i.test_unit_ready(lun).expect("TEST UNIT READY");
        if r.is_good() {
            return seen;
        }
        let s = r.sense_key_asc_ascq().expect("CHECK CONDITION with sense");
        assert_eq!(
            s.0, 6,
            "LUN {lun}: only unit attentions expected, got {s:?}"
        );
        seen.push(s);
    }
    panic!("LUN {lun}: unit attentions never stop: {seen:?}");
}

fn report_luns(i: &mut Initiator) -> Vec<u16> {
    for _ in 0..10 {
        let r = i.report_luns().expect("REPORT LUNS");
        if r.is_good() {
            return scsi::parse_report_luns(&r.data)
                .expect("REPORT LUNS data")
                .iter()
                .map(scsi::lun_number)
                .collect();
        }
        assert_eq!(r.sense_key_asc_ascq().map(|s| s.0), Some(6), "{r:?}");
    }
    panic!("REPORT LUNS never GOOD");
}

fn block(tag: &str) -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    b[..tag.len()].copy_from_slice(tag.as_bytes());
    b
}

fn backing_file(dir: &Path, name: &str, first_block: &str) -> String {
    let path = dir.join(name);
    let mut data = block(first_block);
    data.resize((4 * MIB) as usize, 0);
    std::fs::write(&path, data).expect("backing file");
    path.to_str().unwrap().to_string()
}

/// Entries of a tree directory, e.g. the LUN numbers of a `luns/` directory.
fn tree_dirs(c: &mut Client, path: &str) -> Vec<String> {
    c.list(path)
        .unwrap_or_else(|e| panic!("list {path}: {e}"))
        .into_iter()
        .filter_map(|e| e.strip_suffix('/').map(String::from))
        .collect()
}

#[test]
fn administer_a_target_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("scst.conf");
    std::fs::write(&conf, "TARGET_DRIVER iscsi {\n\tenabled 1\n}\n").unwrap();
    let d = Daemon::start(&conf);
    let mut c = Client::connect(&d.mgmt_socket).expect("connect to the socket");
    let tgt = ["-driver", "iscsi", "-target", TARGET];
    let run = |args: &[&str], extra: &[&str]| {
        let all: Vec<&str> = args.iter().chain(extra).copied().collect();
        admin_ok(&d, &all)
    };

    // 1. Devices: two file-backed disks, a third one to swap in later, a null disk.
    let file_a = backing_file(dir.path(), "a.img", "DEVICE-A");
    let file_b = backing_file(dir.path(), "b.img", "DEVICE-B");
    let file_c = backing_file(dir.path(), "c.img", "DEVICE-C");
    for (name, file) in [("diskA", &file_a), ("diskB", &file_b), ("diskC", &file_c)] {
        run(
            &["-open_dev", name, "-handler", "vdisk_fileio"],
            &["-attributes", &format!("filename={file}")],
        );
    }
    run(
        &["-open_dev", "null1", "-handler", "vdisk_nullio"],
        &["-attributes", "size_mb=64"],
    );
    let devs = admin_ok(&d, &["-list_device"]);
    for name in ["diskA", "diskB", "diskC", "null1"] {
        assert!(devs.contains(name), "{devs}");
    }
    assert_eq!(
        strip_key(&c.read("devices/diskB/filename").unwrap()).0,
        file_b
    );

    // 2. A target with two groups; the target's own LUN set stays empty.
    run(&["-add_target", TARGET, "-driver", "iscsi"], &[]);
    run(&["-add_group", "apps"], &tgt);
    run(&["-add_group", "backup"], &tgt);
    run(
        &[
            "-add_init",
            "!iqn.2026-11.rs.scst:host-b*",
            "-group",
            "apps",
        ],
        &tgt,
    );
    run(
        &[
            "-add_init",
            "iqn.2026-11.rs.scst:host-b?",
            "-group",
            "backup",
        ],
        &tgt,
    );
    run(
        &["-add_lun", "0", "-group", "apps", "-device", "diskA"],
        &tgt,
    );
    run(
        &["-add_lun", "1", "-group", "apps", "-device", "null1"],
        &tgt,
    );
    run(
        &["-add_lun", "0", "-group", "backup", "-device", "diskB"],
        &tgt,
    );
    run(&["-enable_target", TARGET, "-driver", "iscsi"], &[]);
    let groups = admin_ok(&d, &["-list_group", "-driver", "iscsi", "-target", TARGET]);
    assert!(
        groups.contains("Group: apps")
            && groups.contains("Group: backup")
            && groups.contains("!iqn.2026-11.rs.scst:host-b*")
            && groups.contains("iqn.2026-11.rs.scst:host-b?"),
        "{groups}"
    );
    let tbase = format!("targets/iscsi/{TARGET}");
    assert_eq!(
        tree_dirs(&mut c, &format!("{tbase}/ini_groups")),
        ["apps", "backup"]
    );
    assert_eq!(
        strip_key(&c.read(&format!("{tbase}/enabled")).unwrap()).0,
        "1"
    );

    // 3. Each initiator sees its own group's LUNs (libiscsi).
    assert_eq!(iscsi_ls_luns(&d, HOST_A), [0, 1]);
    assert_eq!(iscsi_ls_luns(&d, HOST_B), [0]);
    assert_eq!(iscsi_inq_product(&d, HOST_A, 0), "diskA");
    assert_eq!(iscsi_inq_product(&d, HOST_A, 1), "null1");
    assert_eq!(iscsi_inq_product(&d, HOST_B, 0), "diskB");

    // A target parameter written now applies to the sessions that log in next.
    run(
        &["-set_tgt_attr", TARGET, "-driver", "iscsi"],
        &["-attributes", "MaxRecvDataSegmentLength=65536"],
    );
    let out = admin(
        &d,
        &[
            "-set_tgt_attr",
            TARGET,
            "-driver",
            "iscsi",
            "-attributes",
            "MaxRecvDataSegmentLength=12",
        ],
    );
    assert!(!out.status.success(), "an out-of-range value is refused");
    let tattrs = admin_ok(&d, &["-list_tgt_attr", TARGET, "-driver", "iscsi"]);
    assert!(
        tattrs
            .lines()
            .any(|l| l.contains("MaxRecvDataSegmentLength") && l.contains("65536")),
        "{tattrs}"
    );

    // The in-tree initiator agrees, and its session is in the tree, bound to `apps`.
    let mut a = login(&d, HOST_A);
    assert!(
        a.login_keys()
            .iter()
            .any(|(k, v)| k == "MaxRecvDataSegmentLength" && v == "65536"),
        "the target declares the written value: {:?}",
        a.login_keys()
    );
    assert_eq!(report_luns(&mut a), [0, 1]);
    drain_uas(&mut a, 0);
    drain_uas(&mut a, 1);
    let r = a.read10(0, 0, 1, BS).expect("READ").good().expect("good");
    assert_eq!(&r.data[..8], b"DEVICE-A");
    let sessions = tree_dirs(&mut c, &format!("{tbase}/sessions"));
    assert_eq!(sessions, [HOST_A]);
    assert_eq!(
        c.read(&format!("{tbase}/sessions/{HOST_A}/luns")).unwrap(),
        "ini_groups/apps/luns"
    );
    let listed = admin_ok(&d, &["-list_sessions"]);
    assert!(listed.contains(HOST_A), "{listed}");

    // 4. Replace LUN 0 of `apps` (diskA -> diskC) while a thread keeps reading and
    // writing it. Commands either succeed or report a unit attention; nothing else.
    let stop = Arc::new(AtomicBool::new(false));
    let done_ops = Arc::new(AtomicUsize::new(0));
    let io = {
        let (stop, done_ops) = (stop.clone(), done_ops.clone());
        std::thread::spawn(move || {
            let mut uas = Vec::new();
            let mut n: u32 = 0;
            while !stop.load(Ordering::Acquire) {
                // Blocks 100.. only: block 0 carries each disk's own marker.
                let lba = 100 + n % 64;
                let data = block(&format!("io-{n}"));
                for r in [
                    a.write10(0, lba, &data, BS).expect("WRITE"),
                    a.read10(0, lba, 1, BS).expect("READ"),
                ] {
                    if !r.is_good() {
                        let s = r.sense_key_asc_ascq().expect("sense");
                        assert_eq!(s.0, 6, "I/O error during replace: {s:02x?}");
                        uas.push(s);
                    }
                }
                n += 1;
                done_ops.fetch_add(1, Ordering::AcqRel);
            }
            (a, uas)
        })
    };
    let wait_ops = |at_least: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while done_ops.load(Ordering::Acquire) < at_least {
            assert!(Instant::now() < deadline, "I/O thread stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_ops(20);
    run(
        &["-replace_lun", "0", "-group", "apps", "-device", "diskC"],
        &tgt,
    );
    let after = done_ops.load(Ordering::Acquire);
    wait_ops(after + 20);
    stop.store(true, Ordering::Release);
    let (mut a, uas) = io.join().expect("I/O thread");
    assert!(
        uas.contains(&(6, 0x3f, 0x03)),
        "INQUIRY DATA HAS CHANGED expected after the replace, saw {uas:02x?}"
    );
    assert_eq!(
        strip_key(
            &c.read(&format!("{tbase}/ini_groups/apps/luns/0/device"))
                .unwrap()
        )
        .0,
        "diskC"
    );
    drain_uas(&mut a, 0);
    let r = a.read10(0, 0, 1, BS).expect("READ").good().expect("good");
    assert_eq!(
        &r.data[..8],
        b"DEVICE-C",
        "the new device's data is visible"
    );
    assert_eq!(iscsi_inq_product(&d, HOST_A, 0), "diskC");

    // 5. Resize null1 (LUN 1): READ CAPACITY follows, with CAPACITY DATA HAS CHANGED.
    drain_uas(&mut a, 1);
    let (blocks, bs) = a.capacity(1).expect("READ CAPACITY");
    assert_eq!((blocks, bs), (64 * MIB / BS as u64, BS));
    run(
        &[
            "-set_dev_attr",
            "null1",
            "-attributes",
            &format!("size={}", 128 * MIB),
        ],
        &[],
    );
    assert_eq!(
        strip_key(&c.read("devices/null1/size").unwrap()).0,
        (128 * MIB).to_string()
    );
    let uas = drain_uas(&mut a, 1);
    assert!(
        uas.contains(&(6, 0x2a, 0x09)),
        "CAPACITY DATA HAS CHANGED expected, saw {uas:02x?}"
    );
    let (blocks, _) = a.capacity(1).expect("READ CAPACITY");
    assert_eq!(blocks, 128 * MIB / BS as u64);

    // 6. Remove everything, one object at a time.
    run(&["-rem_lun", "1", "-group", "apps"], &tgt);
    assert_eq!(
        tree_dirs(&mut c, &format!("{tbase}/ini_groups/apps/luns")),
        ["0"]
    );
    assert_eq!(report_luns(&mut a), [0]);
    assert_eq!(iscsi_ls_luns(&d, HOST_A), [0]);

    run(&["-rem_group", "backup"], &tgt);
    assert_eq!(tree_dirs(&mut c, &format!("{tbase}/ini_groups")), ["apps"]);
    // host-b7 now falls through to the target's empty LUN set: it sees nothing.
    assert_eq!(iscsi_ls_luns(&d, HOST_B), Vec::<u16>::new());

    run(&["-close_dev", "diskB", "-handler", "vdisk_fileio"], &[]);
    assert!(c.read("devices/diskB/filename").is_err());

    // A device still exported cannot be closed; the error says why.
    let out = admin(&d, &["-close_dev", "diskC", "-handler", "vdisk_fileio"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    run(&["-rem_target", TARGET, "-driver", "iscsi"], &[]);
    assert!(
        a.wait_closed(Duration::from_secs(10)),
        "the session of a removed target is closed"
    );
    assert!(!tree_dirs(&mut c, "targets/iscsi").contains(&TARGET.to_string()));
    assert_eq!(iscsi_ls_luns(&d, HOST_A), Vec::<u16>::new());
    let targets = admin_ok(&d, &["-list_target"]);
    assert!(!targets.contains(TARGET), "{targets}");

    for (name, h) in [
        ("diskA", "vdisk_fileio"),
        ("diskC", "vdisk_fileio"),
        ("null1", "vdisk_nullio"),
    ] {
        run(&["-close_dev", name, "-handler", h], &[]);
    }
    assert!(tree_dirs(&mut c, "devices").is_empty());
    assert_eq!(c.read("last_sysfs_mgmt_res").unwrap(), "0");
    assert_eq!(d.stop(), Some(0));
}

/// `async_lun_replace` through the socket: while it is 1, the cleanup of the nexus a
/// `replace` removed waits. Observable from outside: the SPC-2 reservation the old
/// nexus held keeps other initiators out of the old device until the gate opens.
#[test]
fn async_lun_replace_parks_the_old_nexus_cleanup() {
    use test_support::iscsi_wire::bhs::task_attr;
    const RESERVATION_CONFLICT: u8 = 0x18;
    const OTHER: &str = "iqn.2026-11.rs.scst:other";

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("scst.conf");
    std::fs::write(&conf, "TARGET_DRIVER iscsi {\n\tenabled 1\n}\n").unwrap();
    let d = Daemon::start(&conf);
    let tgt = ["-driver", "iscsi", "-target", TARGET];
    let run = |args: &[&str], extra: &[&str]| {
        let all: Vec<&str> = args.iter().chain(extra).copied().collect();
        admin_ok(&d, &all)
    };
    for dev in ["old", "new"] {
        run(&["-open_dev", dev, "-handler", "vdisk_nullio"], &[]);
    }
    run(&["-add_target", TARGET, "-driver", "iscsi"], &[]);
    // HOST_A uses the target's LUN set, OTHER its own group: both reach `old`.
    run(&["-add_lun", "0", "-device", "old"], &tgt);
    run(&["-add_group", "other"], &tgt);
    run(&["-add_init", OTHER, "-group", "other"], &tgt);
    run(
        &["-add_lun", "0", "-group", "other", "-device", "old"],
        &tgt,
    );
    run(&["-enable_target", TARGET, "-driver", "iscsi"], &[]);

    let mut a = login(&d, HOST_A);
    let mut b = login(&d, OTHER);
    drain_uas(&mut a, 0);
    drain_uas(&mut b, 0);
    let reserve6 = [0x16u8, 0, 0, 0, 0, 0];
    let r = a.scsi(0, &reserve6, &[], 0, task_attr::SIMPLE).unwrap();
    assert!(r.is_good(), "RESERVE: {r:?}");
    let b_read = |b: &mut Initiator| b.read10(0, 0, 1, BS).expect("READ").status;
    assert_eq!(b_read(&mut b), RESERVATION_CONFLICT);

    run(
        &["-set_scst_attr", "-attributes", "async_lun_replace=1"],
        &[],
    );
    run(&["-replace_lun", "0", "-device", "new"], &tgt);
    // The old nexus is gone from HOST_A's view, but its cleanup is parked: the
    // reservation it held on `old` still stands.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b_read(&mut b), RESERVATION_CONFLICT);
    assert_eq!(
        strip_key(
            &Client::connect(&d.mgmt_socket)
                .unwrap()
                .read("async_lun_replace")
                .unwrap()
        )
        .0,
        "1"
    );

    // Opening the gate runs the cleanup: the reservation goes.
    run(
        &["-set_scst_attr", "-attributes", "async_lun_replace=0"],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match b_read(&mut b) {
            0 => break,
            RESERVATION_CONFLICT if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => panic!("READ after the cleanup: status {other:#x}"),
        }
    }
    // HOST_A's LUN 0 is the new device now.
    drain_uas(&mut a, 0);
    let r = a.inquiry(0, false, 0, 96).unwrap().good().unwrap();
    assert_eq!(String::from_utf8_lossy(&r.data[16..32]).trim(), "new");
    drop((a, b));
    assert_eq!(d.stop(), Some(0));
}
