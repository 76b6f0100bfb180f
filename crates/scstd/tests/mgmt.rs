//! The management socket end to end: the scstd binary with `--mgmt-socket`, configured
//! at runtime with the scstadmin binary and the client library, then used by the
//! in-tree initiator.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{admin, admin_ok, Daemon, INITIATOR};
use scst_mgmt::protocol::strip_key;
use scst_mgmt::{Client, ClientError};
use test_support::{scsi, Initiator, LoginOptions};

const TARGET: &str = "iqn.2026-11.rs.scst:mgmt";

fn empty_daemon() -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("scst.conf");
    std::fs::write(&conf, "TARGET_DRIVER iscsi {\n\tenabled 1\n}\n").expect("config");
    let d = Daemon::start(&conf);
    (dir, d)
}

#[test]
fn configure_with_scstadmin_then_log_in() {
    let (_dir, d) = empty_daemon();
    let mode = std::fs::metadata(&d.mgmt_socket)
        .expect("socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode");

    admin_ok(
        &d,
        &[
            "-open_dev",
            "null1",
            "-handler",
            "vdisk_nullio",
            "-attributes",
            "size_mb=64,blocksize=4096",
        ],
    );
    admin_ok(&d, &["-add_target", TARGET, "-driver", "iscsi"]);
    admin_ok(
        &d,
        &[
            "-add_lun", "0", "-driver", "iscsi", "-target", TARGET, "-device", "null1",
        ],
    );
    admin_ok(
        &d,
        &["-enable_target", TARGET, "-driver", "iscsi", "-noprompt"],
    );

    // Listed back.
    let devs = admin_ok(&d, &["-list_device"]);
    assert!(
        devs.lines()
            .any(|l| l.contains("vdisk_nullio") && l.contains("null1")),
        "{devs}"
    );
    let tgts = admin_ok(&d, &["-list_target"]);
    assert!(tgts.contains(TARGET), "{tgts}");
    let attrs = admin_ok(&d, &["-list_dev_attr", "null1"]);
    assert!(
        attrs.contains("blocksize") && attrs.contains("4096"),
        "{attrs}"
    );
    let tattrs = admin_ok(&d, &["-list_tgt_attr", TARGET, "-driver", "iscsi"]);
    assert!(
        tattrs
            .lines()
            .any(|l| l.contains("enabled") && l.contains('1') && l.contains("Yes")),
        "{tattrs}"
    );

    // Errors name the object and the reason; scstadmin exits non-zero.
    let out = admin(
        &d,
        &[
            "-add_lun", "0", "-driver", "iscsi", "-target", TARGET, "-device", "null1",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("targets/iscsi/{TARGET}/luns/mgmt")) && err.contains("LUN '0'"),
        "{err}"
    );
    // A command SCST has and scst-rs cannot run (Fibre Channel's): said so, non-zero exit.
    let out = admin(&d, &["-issue_lip"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported yet"));

    // The client library sees the same tree.
    let mut c = Client::connect(&d.mgmt_socket).expect("connect");
    assert_eq!(
        c.read(&format!("targets/iscsi/{TARGET}/luns/0/device"))
            .unwrap(),
        "null1"
    );
    assert_eq!(
        strip_key(&c.read("devices/null1/blocksize").unwrap()),
        ("4096", true)
    );
    assert!(c
        .read("handlers/vdisk_nullio/mgmt")
        .unwrap()
        .starts_with("Usage:"));
    match c.write("targets/iscsi/mgmt", "del_target x") {
        Err(ClientError::Remote(m)) => {
            assert_eq!(m, "targets/iscsi/mgmt: target 'iscsi/x' does not exist")
        }
        other => panic!("{other:?}"),
    }
    match c.write("targets/iscsi/mgmt", "add_device_attribute d a v") {
        Err(ClientError::Remote(m)) => assert!(m.contains("unknown command"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.read("last_sysfs_mgmt_res").unwrap(), "-22");

    // -write_config saves what was configured, in scst.conf's grammar.
    let saved = _dir.path().join("saved.conf");
    admin_ok(&d, &["-write_config", saved.to_str().unwrap()]);
    let text = std::fs::read_to_string(&saved).unwrap();
    let conf = scst_mgmt::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(conf.handlers[0].devices[0].name, "null1", "{text}");
    assert_eq!(conf.drivers[0].targets[0].luns[0].device, "null1", "{text}");

    // An initiator logs in and sees LUN 0.
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    i.login(INITIATOR, TARGET, &LoginOptions::default())
        .expect("login");
    let r = i.report_luns().expect("REPORT LUNS").good().expect("good");
    let luns = scsi::parse_report_luns(&r.data).expect("REPORT LUNS data");
    assert_eq!(luns, vec![[0u8; 8]]);
    let (_, bs) = i.capacity(0).or_else(|_| i.capacity(0)).expect("capacity");
    assert_eq!(bs, 4096);

    // The session is visible in the tree.
    let sessions = admin_ok(&d, &["-list_sessions"]);
    assert!(sessions.contains(INITIATOR), "{sessions}");
    drop(i);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn garbage_on_the_socket_gets_errors_and_the_daemon_survives() {
    let (_dir, mut d) = empty_daemon();
    let mut s = std::os::unix::net::UnixStream::connect(&d.mgmt_socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    for bad in [
        &b"hello\n"[..],
        b"read\n",
        b"list ../../etc\n",
        b"\xff\xfe\n",
        b"write /targets/iscsi/enabled 7\n",
        b"read /no/such/thing\n",
    ] {
        s.write_all(bad).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("error "), "{bad:?} -> {line:?}");
    }
    // Still usable on the same connection.
    s.write_all(b"read /targets/iscsi/enabled\n").unwrap();
    let mut resp = String::new();
    for _ in 0..4 {
        line.clear();
        r.read_line(&mut line).unwrap();
        resp.push_str(&line);
        if line == ".\n" {
            break;
        }
    }
    assert_eq!(resp, "ok\n1\n[key]\n.\n");
    // An endless line is refused and the connection closed.
    s.write_all(&vec![b'a'; scst_mgmt::protocol::MAX_LINE + 10])
        .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("error line longer"), "{line}");
    line.clear();
    assert_eq!(r.read_line(&mut line).unwrap_or(0), 0, "closed");

    // Concurrent clients.
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let sock = d.mgmt_socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&sock).unwrap();
                c.write(
                    "handlers/vdisk_nullio/mgmt",
                    &format!("add_device n{n} size_mb=1"),
                )
                .unwrap();
                for _ in 0..20 {
                    c.list("devices").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = Client::connect(&d.mgmt_socket).unwrap();
    assert_eq!(c.list("devices").unwrap().len(), 4);
    assert!(d.is_running());
}

const GROUP_INITIATOR: &str = "iqn.2026-11.rs.scst:grp-host1";

fn admin_err(d: &Daemon, args: &[&str]) -> String {
    let out = admin(d, args);
    assert!(!out.status.success(), "scstadmin {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn login(d: &Daemon, initiator: &str) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    i.login(initiator, TARGET, &LoginOptions::default())
        .expect("login");
    i
}

/// INQUIRY's product identification: the device name for vdisk devices.
fn product(i: &mut Initiator, lun: u16) -> String {
    let r = i
        .inquiry(lun, false, 0, 96)
        .expect("INQUIRY")
        .good()
        .expect("good");
    String::from_utf8_lossy(&r.data[16..32]).trim().to_string()
}

/// TEST UNIT READY until GOOD, returning the unit attentions seen on the way.
fn drain_uas(i: &mut Initiator, lun: u16) -> Vec<(u8, u8, u8)> {
    let mut seen = Vec::new();
    for _ in 0..8 {
        let r = i.test_unit_ready(lun).expect("TEST UNIT READY");
        if r.is_good() {
            return seen;
        }
        let s = r.sense_key_asc_ascq().expect("CHECK CONDITION with sense");
        assert_eq!(s.0, 6, "only unit attentions expected, got {s:?}");
        seen.push(s);
    }
    panic!("LUN {lun}: unit attentions never stop: {seen:?}");
}

fn report_luns(i: &mut Initiator) -> Vec<u16> {
    let r = i.report_luns().expect("REPORT LUNS").good().expect("good");
    scsi::parse_report_luns(&r.data)
        .expect("REPORT LUNS data")
        .iter()
        .map(scsi::lun_number)
        .collect()
}

#[test]
fn live_reconfiguration_with_scstadmin() {
    let (_dir, d) = empty_daemon();
    let tgt = ["-driver", "iscsi", "-target", TARGET];
    let with = |a: &[&str], b: &[&str]| -> Vec<String> {
        a.iter().chain(b).map(|s| s.to_string()).collect()
    };
    let run = |a: Vec<String>| admin_ok(&d, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let fail = |a: Vec<String>| admin_err(&d, &a.iter().map(String::as_str).collect::<Vec<_>>());

    for dev in ["nulla", "nullb"] {
        admin_ok(
            &d,
            &[
                "-open_dev",
                dev,
                "-handler",
                "vdisk_nullio",
                "-attributes",
                "size_mb=16",
            ],
        );
    }
    admin_ok(&d, &["-add_target", TARGET, "-driver", "iscsi"]);
    run(with(&["-add_lun", "0", "-device", "nulla"], &tgt));
    run(with(&["-add_group", "hosts"], &tgt));
    run(with(
        &["-add_init", "iqn.2026-11.rs.scst:grp-*", "-group", "hosts"],
        &tgt,
    ));
    run(with(
        &["-add_lun", "0", "-group", "hosts", "-device", "nullb"],
        &tgt,
    ));
    admin_ok(&d, &["-enable_target", TARGET, "-driver", "iscsi"]);
    let groups = run(with(&["-list_group"], &tgt));
    assert!(
        groups.contains("Group: hosts")
            && groups.contains("nullb")
            && groups.contains("iqn.2026-11.rs.scst:grp-*"),
        "{groups}"
    );

    // Each initiator sees its own LUN set.
    let mut plain = login(&d, INITIATOR);
    let mut grp = login(&d, GROUP_INITIATOR);
    assert_eq!(product(&mut plain, 0), "nulla");
    assert_eq!(product(&mut grp, 0), "nullb");
    drain_uas(&mut plain, 0);
    drain_uas(&mut grp, 0);
    assert_eq!(report_luns(&mut grp), vec![0]);

    // A LUN added to the group's set reaches the live session.
    run(with(
        &["-add_lun", "1", "-group", "hosts", "-device", "nulla"],
        &tgt,
    ));
    assert_eq!(drain_uas(&mut grp, 0), vec![(6, 0x3f, 0x0e)]);
    assert_eq!(report_luns(&mut grp), vec![0, 1]);
    assert_eq!(product(&mut grp, 1), "nulla");
    // The default set did not change: nothing for the other session.
    assert_eq!(drain_uas(&mut plain, 0), vec![]);
    assert_eq!(report_luns(&mut plain), vec![0]);

    // Replacing LUN 0 swaps the device under the session with INQUIRY DATA HAS CHANGED.
    run(with(
        &["-replace_lun", "0", "-group", "hosts", "-device", "nulla"],
        &tgt,
    ));
    assert_eq!(drain_uas(&mut grp, 0), vec![(6, 0x3f, 0x03)]);
    assert_eq!(product(&mut grp, 0), "nulla");

    // Removing LUN 1: gone from REPORT LUNS.
    run(with(&["-rem_lun", "1", "-group", "hosts"], &tgt));
    assert_eq!(drain_uas(&mut grp, 0), vec![(6, 0x3f, 0x0e)]);
    assert_eq!(report_luns(&mut grp), vec![0]);

    // Refusals name the object and the reason; nothing changes.
    let e = fail(with(&["-rem_group", "hosts"], &tgt));
    assert!(e.contains("hosts") && e.contains("in use"), "{e}");
    let e = admin_err(&d, &["-close_dev", "nulla", "-handler", "vdisk_nullio"]);
    assert!(e.contains("'nulla' is in use"), "{e}");
    let e = admin_err(
        &d,
        &["-set_dev_attr", "nulla", "-attributes", "blocksize=4096"],
    );
    assert!(
        e.contains("devices/nulla/blocksize") && e.contains("read-only"),
        "{e}"
    );
    let e = fail(with(&["-rem_lun", "7"], &tgt));
    assert!(
        e.contains(&format!("targets/iscsi/{TARGET}/luns/mgmt")),
        "{e}"
    );

    // Initiator patterns move between groups; the bound session stays where it is.
    run(with(&["-add_group", "spare"], &tgt));
    run(with(&["-add_init", "iqn.other", "-group", "hosts"], &tgt));
    run(with(
        &["-move_init", "iqn.other", "-group", "hosts", "-to", "spare"],
        &tgt,
    ));
    let groups = run(with(&["-list_group", "spare"], &tgt));
    assert!(groups.contains("iqn.other"), "{groups}");
    run(with(&["-rem_init", "iqn.other", "-group", "spare"], &tgt));
    run(with(&["-rem_group", "spare"], &tgt));

    // The root attribute async_lun_replace.
    admin_ok(
        &d,
        &["-set_scst_attr", "-attributes", "async_lun_replace=1"],
    );
    let mut c = Client::connect(&d.mgmt_socket).expect("connect");
    assert_eq!(
        strip_key(&c.read("async_lun_replace").unwrap()),
        ("1", true)
    );
    admin_ok(
        &d,
        &["-set_scst_attr", "-attributes", "async_lun_replace=0"],
    );
    assert_eq!(
        strip_key(&c.read("async_lun_replace").unwrap()),
        ("0", false)
    );

    // Tear down: sessions out, then the objects, then check the listings.
    assert_eq!(grp.logout().expect("logout"), 0);
    assert_eq!(plain.logout().expect("logout"), 0);
    drop((grp, plain));
    let mut removed = false;
    for _ in 0..50 {
        // The sessions unregister as their connections end.
        if admin(
            &d,
            &with(&["-rem_group", "hosts"], &tgt)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .status
        .success()
        {
            removed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(removed, "-rem_group after logout");
    run(with(&["-clear_luns"], &tgt));
    assert_eq!(
        c.list(&format!("targets/iscsi/{TARGET}/luns")).unwrap(),
        vec!["mgmt"]
    );
    admin_ok(&d, &["-disable_target", TARGET, "-driver", "iscsi"]);
    admin_ok(&d, &["-rem_target", TARGET, "-driver", "iscsi"]);
    for dev in ["nulla", "nullb"] {
        admin_ok(&d, &["-close_dev", dev, "-handler", "vdisk_nullio"]);
    }
    let tgts = admin_ok(&d, &["-list_target"]);
    assert!(!tgts.contains(TARGET), "{tgts}");
    let devs = admin_ok(&d, &["-list_device"]);
    assert!(!devs.contains("nulla") && !devs.contains("nullb"), "{devs}");
    assert_eq!(c.list("devices").unwrap(), Vec::<String>::new());
    // No target directory is left (the driver's own files stay).
    let left = c.list("targets/iscsi").unwrap();
    assert!(!left.iter().any(|e| e.ends_with('/')), "{left:?}");
    assert_eq!(d.stop(), Some(0));
}

/// Another user is refused even when the socket's mode would let it in: the daemon
/// checks the peer's credentials (SO_PEERCRED) on accept.
#[test]
fn other_users_are_refused() {
    // SAFETY: geteuid(2) has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test runs as root");
    let (_dir, d) = empty_daemon();
    // Open the way through the file system so that only the credential check is left.
    let sock_dir = d.mgmt_socket.parent().unwrap();
    std::fs::set_permissions(sock_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d.mgmt_socket, std::fs::Permissions::from_mode(0o666)).unwrap();

    let out = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(common::scstadmin())
            .arg("-socket")
            .arg(&d.mgmt_socket)
            .arg("-list_handler")
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run scstadmin as nobody")
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody was let in: {err}");
    assert!(
        err.contains("permission denied: uid 65534 may not manage scstd"),
        "{err}"
    );
    // Root still gets in, and the daemon logged the refusal.
    admin_ok(&d, &["-list_handler"]);
    assert!(d.log().contains("uid 65534"), "{}", d.log());
}

/// `sessions/<initiator>/`: I/O statistics by direction (reset by writing 0), the
/// outstanding and executing command gauges back at 0 once commands are answered,
/// `lun<N>/`, the negotiated iSCSI keys, `sid` and the connection's directory.
#[test]
fn session_attributes_show_io_statistics() {
    let (_dir, d) = empty_daemon();
    admin_ok(
        &d,
        &[
            "-open_dev",
            "null1",
            "-handler",
            "vdisk_nullio",
            "-attributes",
            "size_mb=64",
        ],
    );
    admin_ok(&d, &["-add_target", TARGET, "-driver", "iscsi"]);
    admin_ok(
        &d,
        &[
            "-add_lun", "0", "-driver", "iscsi", "-target", TARGET, "-device", "null1",
        ],
    );
    admin_ok(
        &d,
        &["-enable_target", TARGET, "-driver", "iscsi", "-noprompt"],
    );
    let mut i = login(&d, INITIATOR);
    drain_uas(&mut i, 0);

    let mut c = Client::connect(&d.mgmt_socket).expect("connect");
    let dir = format!("targets/iscsi/{TARGET}/sessions/{INITIATOR}");
    let read = |c: &mut Client, a: &str| c.read(&format!("{dir}/{a}")).unwrap();
    c.write(&format!("{dir}/read_cmd_count"), "0").unwrap();
    assert_eq!(read(&mut c, "read_cmd_count"), "0");
    assert_eq!(read(&mut c, "none_cmd_count"), "0");

    for _ in 0..3 {
        i.read10(0, 8, 8, 512).unwrap().good().unwrap(); // 4 KiB at byte 4096
    }
    i.read10(0, 1, 1, 512).unwrap().good().unwrap(); // 512 bytes at byte 512
    for _ in 0..2 {
        i.write10(0, 16, &[0x5A; 4096], 512)
            .unwrap()
            .good()
            .unwrap();
    }
    i.test_unit_ready(0).unwrap().good().unwrap();
    let bad = i.scsi(0, &[0xFF, 0, 0, 0, 0, 0], &[], 0, 0).unwrap();
    assert_eq!(bad.sense_key_asc_ascq(), Some((5, 0x20, 0)));

    assert_eq!(read(&mut c, "read_cmd_count"), "4");
    assert_eq!(read(&mut c, "read_io_count_kb"), "12"); // 12.5 KiB, in whole KiB
    assert_eq!(read(&mut c, "read_unaligned_cmd_count"), "1");
    assert_eq!(read(&mut c, "write_cmd_count"), "2");
    assert_eq!(read(&mut c, "write_io_count_kb"), "8");
    assert_eq!(read(&mut c, "write_unaligned_cmd_count"), "0");
    assert_eq!(read(&mut c, "bidi_cmd_count"), "0");
    assert_eq!(read(&mut c, "none_cmd_count"), "2");
    assert_eq!(read(&mut c, "unknown_cmd_count"), "1");
    // Every command was answered: none is held or executing any more.
    assert_eq!(read(&mut c, "commands"), "0");
    assert_eq!(read(&mut c, "active_commands"), "0");
    assert_eq!(read(&mut c, "lun0/active_commands"), "0");

    match c.write(&format!("{dir}/write_cmd_count"), "7") {
        Err(ClientError::Remote(m)) => assert!(m.contains("only 0"), "{m}"),
        other => panic!("{other:?}"),
    }
    c.write(&format!("{dir}/write_cmd_count"), "0").unwrap();
    assert_eq!(read(&mut c, "write_cmd_count"), "0");
    assert_eq!(read(&mut c, "read_io_count_kb"), "0");

    // iSCSI's view of the session (scst-reference 6.7).
    let files = c.list(&dir).unwrap();
    for f in [
        "MaxRecvDataSegmentLength",
        "HeaderDigest",
        "sid",
        "127.0.0.1/",
        "lun0/",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} missing from {files:?}");
    }
    let isid = i.isid().iter().fold(0u64, |a, &b| a << 8 | b as u64);
    assert_eq!(
        read(&mut c, "sid"),
        format!("{:x}", isid << 16 | i.tsih() as u64)
    );
    assert_eq!(read(&mut c, "HeaderDigest"), "None");
    assert_eq!(read(&mut c, "InitialR2T"), "No");
    assert_eq!(read(&mut c, "127.0.0.1/ip"), "127.0.0.1");
    assert_eq!(
        read(&mut c, "127.0.0.1/cid"),
        "1",
        "the test initiator's CID"
    );
    i.read10(0, 0, 8, 512).unwrap().good().unwrap();
    let listed = admin_ok(&d, &["-list_sessions"]);
    assert!(listed.contains("read_cmd_count: 1"), "{listed}");
    assert!(listed.contains("127.0.0.1/ip: 127.0.0.1"), "{listed}");
}
