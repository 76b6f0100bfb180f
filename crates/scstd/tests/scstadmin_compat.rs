//! scstadmin as SCST's: scripts written for SCST's scstadmin read the same output and
//! exit codes. Each change is reported in SCST's words and a run ends with "All done.";
//! listings not narrowed list everything; missing objects are named as SCST names them,
//! never as tree paths; a daemon that is not running is one message and its own exit
//! status; a listing into a closed pipe exits quietly. And the online resize behind
//! `-resync_dev` and writable `size`/`size_mb`: the initiator sees CAPACITY DATA HAS
//! CHANGED, then the new capacity.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{admin, admin_ok, scstadmin, Daemon, INITIATOR, IQN};
use scsi_wire::asc::{self, Asc};
use test_support::{Initiator, LoginOptions};

const BS: u32 = 512;
const MIB: u64 = 1 << 20;
const UNIT_ATTENTION: u8 = 0x06;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A nullio device on LUN 0 of [`IQN`], a group `hosts` with its own LUN and an
/// initiator pattern, a fileio and a blockio device on backing files in `dir`.
fn start(dir: &std::path::Path) -> Daemon {
    for (name, size) in [("f.img", 4 * MIB), ("b.img", 4 * MIB)] {
        std::fs::File::create(dir.join(name))
            .and_then(|f| f.set_len(size))
            .expect("backing file");
    }
    let conf = dir.join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE n1 {{\n\t\tsize_mb 16\n\t}}\n}}\n\
             HANDLER vdisk_fileio {{\n\tDEVICE f {{\n\t\tfilename {f}\n\t}}\n}}\n\
             HANDLER vdisk_blockio {{\n\tDEVICE b {{\n\t\tfilename {b}\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {IQN} {{\n\t\tLUN 0 n1\n\
             \t\tLUN 1 f\n\t\tLUN 2 b\n\
             \t\tGROUP hosts {{\n\t\t\tLUN 0 n1\n\t\t\tINITIATOR iqn.2026-11.rs.scst:h*\n\t\t}}\n\
             \t\tenabled 1\n\t}}\n}}\n",
            f = dir.join("f.img").display(),
            b = dir.join("b.img").display(),
        ),
    )
    .expect("config");
    Daemon::start(&conf)
}

#[test]
fn changes_are_reported_in_scst_words_and_listings_list_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());

    let out = admin_ok(
        &d,
        &[
            "-open_dev",
            "n2",
            "-handler",
            "vdisk_nullio",
            "-attributes",
            "size_mb=8",
        ],
    );
    assert_eq!(
        out,
        "\n-> Making requested changes.\n\
         \t-> Opening device 'n2' using handler 'vdisk_nullio': done.\n\
         \t-> Done.\n\nAll done.\n"
    );
    // -driver may be left out when the target's name says which driver has it.
    let out = admin_ok(&d, &["-add_lun", "5", "-target", IQN, "-device", "n2"]);
    assert!(
        out.contains(&format!(
            "\t-> Adding device 'n2' at LUN 5 to driver/target 'iscsi/{IQN}': done.\n"
        )),
        "{out}"
    );
    // Attribute setters count their changes and skip values already in effect.
    let out = admin_ok(
        &d,
        &["-set_dev_attr", "n2", "-attributes", "prod_id=P2,size_mb=8"],
    );
    assert!(
        out.contains(
            "\t-> Setting device attribute 'prod_id' to value 'P2' for device 'n2': done.\n"
        ) && out.contains("\t-> Attribute 'size_mb' already set to value '8', ignoring.\n")
            && out.contains("\t-> Done, 1 change(s) made.\n"),
        "{out}"
    );

    // -list_group with nothing narrowing it: every group of every target.
    let groups = admin_ok(&d, &["-list_group"]);
    assert!(
        groups.contains("Driver: iscsi\n")
            && groups.contains(&format!("Target: {IQN}\n"))
            && groups.contains("Group: hosts\n")
            && groups.contains("iqn.2026-11.rs.scst:h*")
            && groups.contains("\t5    n2"),
        "{groups}"
    );
    assert!(groups.ends_with("\nAll done.\n"), "{groups}");
    // Narrowed by the group alone (-target and -driver found for it).
    let one = admin_ok(&d, &["-list_group", "hosts", "-target", IQN]);
    assert!(
        one.contains("Group: hosts") && one.contains("Assigned Initiators:"),
        "{one}"
    );
    // Every target's sessions, or SCST's "(no sessions)".
    let sessions = admin_ok(&d, &["-list_sessions"]);
    assert!(
        sessions.contains(&format!("Driver/Target: iscsi/{IQN}\n"))
            && sessions.contains("\t(no sessions)\n"),
        "{sessions}"
    );
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.login(INITIATOR, IQN, &LoginOptions::default())
        .expect("login");
    let sessions = admin_ok(&d, &["-list_sessions"]);
    assert!(
        sessions.contains(&format!("\tSession: {INITIATOR}")),
        "{sessions}"
    );
    // SCST's attribute table: name, value, writable, key.
    let attrs = admin_ok(&d, &["-list_dev_attr", "n2"]);
    let row = |name: &str| {
        attrs
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no {name} in {attrs}"))
    };
    assert_eq!(
        row("Attribute"),
        ["Attribute", "Value", "Writable", "KEY"],
        "{attrs}"
    );
    assert_eq!(row("size_mb"), ["size_mb", "8", "Yes", "Yes"], "{attrs}");
    assert_eq!(row("blocksize")[2], "No", "{attrs}");
    assert_eq!(row("prod_id"), ["prod_id", "P2", "Yes", "Yes"], "{attrs}");
    let handlers = admin_ok(&d, &["-list_device"]);
    assert!(
        handlers.contains("vdisk_nullio") && handlers.contains("n2"),
        "{handlers}"
    );
}

#[test]
fn missing_objects_are_named_as_scst_names_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let cases: &[(&[&str], &str)] = &[
        (
            &["-list_dev_attr", "nosuch"],
            "No such device 'nosuch' exists.",
        ),
        (
            &["-list_device", "nosuch"],
            "No such device 'nosuch' exists.",
        ),
        (
            &["-close_dev", "x", "-handler", "vdisk_nothing"],
            "No such handler 'vdisk_nothing' exists.",
        ),
        (
            &["-set_dev_attr", "n1", "-attributes", "frob=1"],
            "No such attribute 'frob' of device 'n1' exists.",
        ),
        (
            &[
                "-add_lun",
                "3",
                "-driver",
                "iscsi",
                "-target",
                "iqn.x:none",
                "-device",
                "n1",
            ],
            "No such target 'iqn.x:none' of driver 'iscsi' exists.",
        ),
        (
            &["-list_target", "-driver", "fc"],
            "No such driver 'fc' exists.",
        ),
        (
            &[
                "-list_grp_attr",
                "nogroup",
                "-driver",
                "iscsi",
                "-target",
                IQN,
            ],
            &format!("No such group 'nogroup' of driver/target 'iscsi/{IQN}' exists."),
        ),
        (
            &["-list_dgrp_attr", "nodg"],
            "No such device group 'nodg' exists.",
        ),
    ];
    for (args, message) in cases {
        let out = admin(&d, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(
            !err.contains("no such file or directory"),
            "{args:?} reads like a path: {err}"
        );
    }
    // A usage error is 2, as documented.
    assert_eq!(admin(&d, &["-no_such_command"]).status.code(), Some(2));
}

#[test]
fn a_daemon_that_is_not_running_is_one_clear_message_and_exit_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("not-there.sock");
    let out = Command::new(scstadmin())
        .arg("-socket")
        .arg(&socket)
        .arg("-list_target")
        .output()
        .expect("run scstadmin");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    let path = socket.display().to_string();
    assert_eq!(err.matches(&path).count(), 1, "named once: {err}");
    assert!(
        err.contains("scstd is not running") && err.contains("-socket"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    // A socket file left behind with nobody listening reads the same.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let out = Command::new(scstadmin())
        .arg("-socket")
        .arg(&stale)
        .arg("-list_sessions")
        .output()
        .expect("run scstadmin");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("scstd is not running"),
        "{}",
        stderr(&out)
    );

    // The environment names the socket when -socket is not given.
    let d = start(dir.path());
    let out = Command::new(scstadmin())
        .arg("-list_target")
        .env("SCSTADMIN_SOCKET", &d.mgmt_socket)
        .output()
        .expect("run scstadmin");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(IQN));
}

#[test]
fn a_listing_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    // A pipe whose reader is gone before scstadmin writes: every write is EPIPE.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(scstadmin())
        .arg("-socket")
        .arg(&d.mgmt_socket)
        .arg("-list_sessions")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run scstadmin");
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "not quiet: {}", stderr(&out));

    // And through a shell pipeline that stops reading after one line.
    let script = format!(
        "'{}' -socket '{}' -list_dev_attr n1 | head -1; echo \"status ${{PIPESTATUS[0]}}\"",
        scstadmin().display(),
        d.mgmt_socket.display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    let text = stdout(&out);
    let status = text.lines().last().unwrap_or("");
    assert!(
        status == "status 0" || status == "status 141",
        "{text}{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

fn capacity_changed(i: &mut Initiator, lun: u16) -> bool {
    let r = i.test_unit_ready(lun).expect("TUR");
    r.sense_key_asc_ascq()
        .map(|(k, code, qualifier)| (k, Asc { code, qualifier }))
        == Some((UNIT_ATTENTION, asc::CAPACITY_DATA_HAS_CHANGED))
}

fn clear_ua(i: &mut Initiator, lun: u16) {
    for _ in 0..4 {
        if i.test_unit_ready(lun).expect("TUR").is_good() {
            return;
        }
    }
    panic!("LUN {lun} keeps reporting unit attentions");
}

#[test]
fn online_resize_reaches_the_initiator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(30));
    i.login(INITIATOR, IQN, &LoginOptions::default())
        .expect("login");
    for lun in 0..3 {
        clear_ua(&mut i, lun);
    }
    // A second I_T nexus on the same LUN 0 device.
    let mut other = Initiator::connect(d.addr).expect("connect");
    other
        .login("iqn.2026-11.rs.scst:other", IQN, &LoginOptions::default())
        .expect("login");
    clear_ua(&mut other, 0);

    // nullio: size_mb is writable; every nexus of the device hears of it.
    admin_ok(&d, &["-set_dev_attr", "n1", "-attributes", "size_mb=32"]);
    for ini in [&mut i, &mut other] {
        assert!(capacity_changed(ini, 0));
        assert_eq!(
            ini.capacity(0).expect("capacity"),
            (32 * MIB / BS as u64, BS)
        );
    }

    // blockio: size is writable within the device, as SCST allows.
    admin_ok(&d, &["-set_dev_attr", "b", "-attributes", "size_mb=2"]);
    assert!(capacity_changed(&mut i, 2));
    assert_eq!(i.capacity(2).expect("capacity"), (2 * MIB / BS as u64, BS));
    let out = admin(&d, &["-set_dev_attr", "b", "-attributes", "size_mb=64"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("more than the backing device"),
        "{}",
        stderr(&out)
    );
    assert!(
        i.test_unit_ready(2).expect("TUR").is_good(),
        "a refused size changes nothing"
    );
    // The written size is saved and a fresh scstd gives it back at creation.
    let saved = dir.path().join("saved.conf");
    admin_ok(&d, &["-write_config", saved.to_str().unwrap()]);
    let text = std::fs::read_to_string(&saved).expect("saved config");
    assert!(text.contains("\t\tsize_mb 2\n"), "{text}");
    let again = Daemon::start(&saved);
    let out = admin_ok(&again, &["-config", saved.to_str().unwrap()]);
    assert!(out.contains("\t-> Done, 0 change(s) made.\n"), "{out}");
    let mut j = Initiator::connect(again.addr).expect("connect");
    j.login(INITIATOR, IQN, &LoginOptions::default())
        .expect("login");
    clear_ua(&mut j, 2);
    assert_eq!(j.capacity(2).expect("capacity"), (2 * MIB / BS as u64, BS));
    drop(again);

    // fileio: size is read-only, as in SCST; -resync_dev picks up a resized file.
    let out = admin(&d, &["-set_dev_attr", "f", "-attributes", "size_mb=8"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
    let st = Command::new("truncate")
        .args(["-s", "8M"])
        .arg(dir.path().join("f.img"))
        .status()
        .expect("truncate");
    assert!(st.success());
    let out = admin_ok(&d, &["-resync_dev", "f"]);
    assert!(
        out.contains(
            "\t-> Setting device attribute 'resync_size' to value '1' for device 'f': done.\n"
        ),
        "{out}"
    );
    assert!(capacity_changed(&mut i, 1));
    assert_eq!(i.capacity(1).expect("capacity"), (8 * MIB / BS as u64, BS));
}
