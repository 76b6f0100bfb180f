//! `scstadmin -config / -check_config / -clear_config / -write_config` against a real
//! scstd: round trips, all-or-nothing application, dry runs.

mod common;

use std::path::{Path, PathBuf};

use common::{admin, admin_ok, Daemon};

/// The running configuration as `-write_config` writes it.
fn written(d: &Daemon, dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    admin_ok(d, &["-write_config", p.to_str().unwrap()]);
    std::fs::read_to_string(p).unwrap()
}

const T1: &str = "iqn.2026-11.rs.scst:cfg1";

/// Config X: nullio + fileio devices, a target with LUNs and a group with initiators.
fn config_x(dir: &Path) -> PathBuf {
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(8 << 20))
        .unwrap();
    let conf = dir.join("x.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE null1 {{\n\t\tsize_mb 64\n\t\tblocksize 4096\n\t}}\n}}\n\
             HANDLER vdisk_fileio {{\n\tDEVICE file1 {{\n\t\tfilename {}\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {T1} {{\n\t\tenabled 1\n\
             \t\tLUN 0 null1\n\t\tLUN 1 file1 {{\n\t\t\tread_only 1\n\t\t}}\n\
             \t\tGROUP hosts {{\n\t\t\tLUN 0 file1\n\t\t\tINITIATOR iqn.2026-11.rs.scst:h1\n\
             \t\t\tINITIATOR iqn.2026-11.rs.scst:h2*\n\t\t}}\n\t}}\n}}\n",
            disk.display()
        ),
    )
    .unwrap();
    conf
}

fn empty_daemon(dir: &Path) -> Daemon {
    let conf = dir.join("empty.conf");
    std::fs::write(&conf, "TARGET_DRIVER iscsi {\n\tenabled 1\n}\n").unwrap();
    Daemon::start(&conf)
}

#[test]
fn write_config_round_trips_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let x = config_x(dir.path());
    let d = Daemon::start(&x);
    let a = written(&d, dir.path(), "a.conf");
    assert!(a.contains("INITIATOR iqn.2026-11.rs.scst:h2*"), "{a}");
    let out = admin_ok(&d, &["-check_config", x.to_str().unwrap()]);
    assert!(out.contains("matches the running configuration"), "{out}");
    d.stop();
    let d = Daemon::start(&dir.path().join("a.conf"));
    let b = written(&d, dir.path(), "b.conf");
    assert_eq!(a, b);
}

#[test]
fn config_onto_an_empty_daemon_equals_starting_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let x = config_x(dir.path());
    let d = Daemon::start(&x);
    let a = written(&d, dir.path(), "a.conf");
    d.stop();
    let d = empty_daemon(dir.path());
    let out = admin_ok(&d, &["-config", x.to_str().unwrap()]);
    assert!(out.contains("change(s) made."), "{out}");
    assert_eq!(a, written(&d, dir.path(), "b.conf"));
    // Applying it again changes nothing.
    let out = admin_ok(&d, &["-config", x.to_str().unwrap(), "-dry_run"]);
    assert!(out.starts_with("0 change(s)"), "{out}");
    // -clear_config needs -force, then leaves nothing.
    assert!(!admin(&d, &["-clear_config"]).status.success());
    admin_ok(&d, &["-clear_config", "-force"]);
    let c = written(&d, dir.path(), "c.conf");
    assert!(!c.contains("HANDLER") && !c.contains("TARGET "), "{c}");
}

#[test]
fn dry_run_prints_operations_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let x = config_x(dir.path());
    let d = empty_daemon(dir.path());
    let before = written(&d, dir.path(), "before.conf");
    let out = admin_ok(&d, &["-config", x.to_str().unwrap(), "-dry_run"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "handlers/vdisk_nullio/mgmt <- add_device null1 size_mb=64; blocksize=4096"
    );
    assert!(lines
        .contains(&format!("targets/iscsi/{T1}/luns/mgmt <- add file1 1 read_only=1").as_str()));
    assert!(lines.contains(&format!("targets/iscsi/{T1}/ini_groups/mgmt <- create hosts").as_str()));
    // Enabling comes after every target, LUN and group.
    let enable = lines
        .iter()
        .position(|l| *l == format!("targets/iscsi/{T1}/enabled <- 1"))
        .expect("enable line");
    assert_eq!(enable, lines.len() - 2, "{out}");
    assert_eq!(before, written(&d, dir.path(), "after.conf"));
}

#[test]
fn a_failing_config_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let x = config_x(dir.path());
    let d = Daemon::start(&x);
    let before = written(&d, dir.path(), "before.conf");
    let bad = dir.path().join("bad.conf");

    // The last target's rel_tgt_id is taken by the running target: only applying shows
    // it, after devices, a target, LUNs, a group and an initiator were added.
    std::fs::write(
        &bad,
        "HANDLER vdisk_nullio {\n\tDEVICE null2 {\n\t\tsize_mb 8\n\t}\n}\n\
         TARGET_DRIVER iscsi {\n\tTARGET iqn.2026-11.rs.scst:new {\n\t\tenabled 1\n\t\tLUN 0 null2\n\
         \t\tGROUP g {\n\t\t\tLUN 3 null2\n\t\t\tINITIATOR iqn.x:y\n\t\t}\n\t}\n\
         \tTARGET iqn.2026-11.rs.scst:clash {\n\t\trel_tgt_id 1\n\t\tLUN 0 null2\n\t}\n}\n",
    )
    .unwrap();
    let out = admin(&d, &["-config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 15: TARGET iqn.2026-11.rs.scst:clash")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(before, written(&d, dir.path(), "after1.conf"));

    // A fileio device whose file is missing passes validation and fails at open; with
    // -force the running target, its LUNs and group were removed first and come back.
    std::fs::write(
        &bad,
        format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE null1 {{\n\t\tsize_mb 64\n\t\tblocksize 4096\n\t}}\n}}\n\
             HANDLER vdisk_fileio {{\n\tDEVICE gone {{\n\t\tfilename {}\n\t}}\n}}\n",
            dir.path().join("missing.img").display()
        ),
    )
    .unwrap();
    let out = admin(&d, &["-config", bad.to_str().unwrap(), "-force"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Named at its filename line, where the problem is.
    assert!(err.contains("line 9: DEVICE gone"), "{err}");
    assert_eq!(before, written(&d, dir.path(), "after2.conf"));

    // A syntax error anywhere: nothing is read or applied.
    std::fs::write(
        &bad,
        "HANDLER vdisk_nullio {\n\tDEVICE null3 {\n\t\tsize_mb 8\n\t}\n}\nTARGET_DRIVER iscsi {\n",
    )
    .unwrap();
    let out = admin(&d, &["-config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 6"));
    assert_eq!(before, written(&d, dir.path(), "after3.conf"));
}

#[test]
fn force_removes_what_the_file_lacks_and_additive_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let x = config_x(dir.path());
    let d = Daemon::start(&x);
    let before = written(&d, dir.path(), "before.conf");
    // A file with only the nullio device and a new target mapping it.
    let small = dir.path().join("small.conf");
    std::fs::write(
        &small,
        "HANDLER vdisk_nullio {\n\tDEVICE null1 {\n\t\tsize_mb 64\n\t\tblocksize 4096\n\t}\n}\n\
         TARGET_DRIVER iscsi {\n\tTARGET iqn.2026-11.rs.scst:other {\n\t\tLUN 5 null1\n\t}\n}\n",
    )
    .unwrap();
    let check = admin_ok(&d, &["-check_config", small.to_str().unwrap()]);
    assert!(
        check.contains("add_target iqn.2026-11.rs.scst:other"),
        "{check}"
    );
    assert!(check.contains("del_device file1"), "{check}");
    assert_eq!(before, written(&d, dir.path(), "after-check.conf"));

    // Without -force: only added.
    admin_ok(&d, &["-config", small.to_str().unwrap()]);
    let added = written(&d, dir.path(), "added.conf");
    assert!(
        added.contains("DEVICE file1") && added.contains(T1),
        "{added}"
    );
    assert!(
        added.contains("TARGET iqn.2026-11.rs.scst:other"),
        "{added}"
    );

    // With -force: exactly the file.
    admin_ok(&d, &["-config", small.to_str().unwrap(), "-force"]);
    let forced = written(&d, dir.path(), "forced.conf");
    assert!(
        !forced.contains("file1") && !forced.contains(T1),
        "{forced}"
    );
    assert!(forced.contains("LUN 5 null1"), "{forced}");
    let again = admin_ok(
        &d,
        &["-config", small.to_str().unwrap(), "-force", "-dry_run"],
    );
    assert!(again.starts_with("0 change(s)"), "{again}");
}

const T2: &str = "iqn.2026-11.rs.scst:alua";

/// Config Y: driver and target dynamic attributes, target parameters, a group
/// attribute and an ALUA device group with a local and a remote target group.
fn config_y(dev1_blocksize: u32, queued: u32, second_user: bool) -> String {
    let user2 = if second_user {
        "\t\tIncomingUser \"lin 12charsecretC\"\n"
    } else {
        ""
    };
    format!(
        "HANDLER vdisk_nullio {{\n\tDEVICE dev1 {{\n\t\tblocksize {dev1_blocksize}\n\t}}\n\
         \tDEVICE dev2\n}}\n\
         TARGET_DRIVER iscsi {{\n\tenabled 1\n\tIncomingUser \"disc 12charsecretA\"\n\
         \tTARGET {T2} {{\n\t\tenabled 1\n\t\trel_tgt_id 3\n\t\taddr_method FLAT\n\
         \t\tQueuedCommands {queued}\n\t\tIncomingUser \"esx 12charsecretB\"\n{user2}\
         \t\tallowed_portal 127.0.0.1\n\t\tLUN 0 dev1\n\
         \t\tGROUP g {{\n\t\t\taddr_method LUN\n\t\t\tLUN 0 dev2\n\
         \t\t\tINITIATOR iqn.2026-11.rs.scst:g*\n\t\t}}\n\t}}\n}}\n\
         DEVICE_GROUP dg {{\n\tDEVICE dev1\n\
         \tTARGET_GROUP local {{\n\t\tgroup_id 101\n\t\tpreferred 1\n\t\tstate active\n\
         \t\tTARGET {T2}\n\t}}\n\
         \tTARGET_GROUP remote {{\n\t\tgroup_id 102\n\t\tstate nonoptimized\n\
         \t\tTARGET iqn.2026-11.rs.scst:peer {{\n\t\t\trel_tgt_id 2\n\t\t}}\n\t}}\n}}\n"
    )
}

#[test]
fn alua_and_dynamic_attributes_through_config() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("y.conf");
    std::fs::write(&y, config_y(512, 64, true)).unwrap();

    // Applied at runtime onto an empty daemon == started with the file.
    let d = empty_daemon(dir.path());
    admin_ok(&d, &["-config", y.to_str().unwrap()]);
    let applied = written(&d, dir.path(), "applied.conf");
    let started = {
        let d2 = Daemon::start(&y);
        written(&d2, dir.path(), "started.conf")
    };
    assert_eq!(applied, started);
    for want in [
        "IncomingUser \"disc 12charsecretA\"",
        "IncomingUser \"lin 12charsecretC\"",
        "allowed_portal 127.0.0.1",
        "QueuedCommands 64",
        "addr_method FLAT",
        "addr_method LUN",
        "DEVICE_GROUP dg",
        "group_id 102",
        "state nonoptimized",
        "rel_tgt_id 2",
    ] {
        assert!(applied.contains(want), "{want} missing:\n{applied}");
    }
    let again = admin_ok(&d, &["-config", y.to_str().unwrap(), "-force", "-dry_run"]);
    assert!(again.starts_with("0 change(s)"), "{again}");

    // The ALUA listings.
    let dg = admin_ok(&d, &["-list_dgrp"]);
    assert!(
        dg.contains("dev1") && dg.contains("remote") && dg.contains(T2),
        "{dg}"
    );
    let tg = admin_ok(&d, &["-list_tgrp_attr", "remote", "-dev_group", "dg"]);
    assert!(tg.contains("nonoptimized"), "{tg}");
    admin_ok(
        &d,
        &[
            "-set_tgrp_attr",
            "remote",
            "-dev_group",
            "dg",
            "-attributes",
            "state=standby",
        ],
    );
    let tg = admin_ok(&d, &["-list_tgrp_attr", "remote", "-dev_group", "dg"]);
    assert!(tg.contains("standby"), "{tg}");

    // A changed parameter and a dropped account are applied to the running target;
    // a changed creation parameter (blocksize) needs -force, which re-creates the
    // device with its LUN and device-group membership.
    let y2 = dir.path().join("y2.conf");
    std::fs::write(&y2, config_y(4096, 32, false)).unwrap();
    let out = admin(&d, &["-config", y2.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("blocksize"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    admin_ok(&d, &["-config", y2.to_str().unwrap(), "-force"]);
    let forced = written(&d, dir.path(), "forced.conf");
    assert!(forced.contains("blocksize 4096"), "{forced}");
    assert!(forced.contains("QueuedCommands 32"), "{forced}");
    assert!(!forced.contains("lin 12charsecretC"), "{forced}");
    assert!(forced.contains("LUN 0 dev1"), "{forced}");
    assert!(forced.contains("\tDEVICE dev1\n"), "still in dg:\n{forced}");
    let again = admin_ok(&d, &["-config", y2.to_str().unwrap(), "-force", "-dry_run"]);
    assert!(again.starts_with("0 change(s)"), "{again}");

    // Dynamic attributes by hand.
    admin_ok(
        &d,
        &[
            "-add_tgt_attr",
            T2,
            "-driver",
            "iscsi",
            "-attributes",
            "IncomingUser=joe 12charsecretD",
        ],
    );
    let attrs = admin_ok(&d, &["-list_tgt_attr", T2, "-driver", "iscsi"]);
    assert!(attrs.contains("joe 12charsecretD"), "{attrs}");
    admin_ok(
        &d,
        &[
            "-rem_tgt_attr",
            T2,
            "-driver",
            "iscsi",
            "-attributes",
            "IncomingUser=joe 12charsecretD",
        ],
    );
    admin_ok(
        &d,
        &[
            "-set_drv_attr",
            "iscsi",
            "-attributes",
            "internal_portal=10.0.0.1",
        ],
    );
    let drv = admin_ok(&d, &["-list_drv_attr", "iscsi"]);
    assert!(
        drv.contains("internal_portal") && drv.contains("10.0.0.1"),
        "{drv}"
    );

    // -clear_config removes the device group too.
    admin_ok(&d, &["-clear_config", "-force"]);
    let cleared = written(&d, dir.path(), "cleared.conf");
    assert!(!cleared.contains("DEVICE_GROUP"), "{cleared}");
    assert!(!cleared.contains("HANDLER"), "{cleared}");
    assert!(
        !cleared.contains("IncomingUser") && !cleared.contains("internal_portal"),
        "{cleared}"
    );
}

/// The three ways of changing configuration agree: what a tree write (here through
/// `-set_dev_attr`) sets, `-check_config` and `-config` treat alike, and after tree
/// writes `-write_config` saves a file that `-config` applies with zero changes.
#[test]
fn tree_writes_config_and_check_config_agree() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk02.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(8 << 20))
        .unwrap();
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_fileio {{\n\tDEVICE disk02 {{\n\t\tfilename {}\n\
             \t\twrite_through 1\n\t}}\n}}\n\
             HANDLER vdisk_nullio {{\n\tDEVICE null1 {{\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {T1} {{\n\t\tenabled 1\n\
             \t\tLUN 0 disk02\n\t\tLUN 1 null1\n\t}}\n}}\n",
            disk.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&conf);
    let file = conf.to_str().unwrap();

    admin_ok(
        &d,
        &["-set_dev_attr", "disk02", "-attributes", "write_through=0"],
    );
    // Both see the one write that brings the file's value back.
    let check = admin_ok(&d, &["-check_config", file]);
    assert!(
        check.contains("devices/disk02/write_through <- 1"),
        "{check}"
    );
    let dry = admin_ok(&d, &["-config", file, "-dry_run"]);
    assert!(
        dry.ends_with("1 change(s) needed; dry run, nothing changed.\n"),
        "{dry}"
    );
    admin_ok(&d, &["-config", file]);
    let again = admin_ok(&d, &["-config", file, "-dry_run"]);
    assert!(again.starts_with("0 change(s)"), "{again}");

    // Tree writes of several kinds, then write_config: its file is what runs.
    admin_ok(
        &d,
        &[
            "-set_dev_attr",
            "disk02",
            "-attributes",
            "write_through=0,prod_id=P2",
        ],
    );
    admin_ok(&d, &["-set_dev_attr", "null1", "-attributes", "size_mb=8"]);
    admin_ok(
        &d,
        &[
            "-set_tgt_attr",
            T1,
            "-driver",
            "iscsi",
            "-attributes",
            "QueuedCommands=32",
        ],
    );
    let saved = dir.path().join("saved.conf");
    let saved_s = saved.to_str().unwrap();
    admin_ok(&d, &["-write_config", saved_s]);
    let out = admin_ok(&d, &["-config", saved_s, "-dry_run"]);
    assert!(out.starts_with("0 change(s)"), "{out}");
    let out = admin_ok(&d, &["-config", saved_s]);
    assert!(out.contains("\t-> Done, 0 change(s) made.\n"), "{out}");
    let check = admin_ok(&d, &["-check_config", saved_s]);
    assert!(
        check.contains("matches the running configuration"),
        "{check}"
    );

    // What scst-rs does not implement is refused alike by all three, as not supported.
    let refused = |out: std::process::Output| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success() && err.contains("'black_hole' is not supported"),
            "{err}"
        );
    };
    refused(admin(
        &d,
        &[
            "-set_tgt_attr",
            T1,
            "-driver",
            "iscsi",
            "-attributes",
            "black_hole=1",
        ],
    ));
    let bad = dir.path().join("bad.conf");
    let text = std::fs::read_to_string(&saved).unwrap();
    let marked = format!("TARGET {T1} {{\n");
    assert!(text.contains(&marked), "{text}");
    let text = text.replace(&marked, &format!("{marked}\t\tblack_hole 1\n"));
    std::fs::write(&bad, text).unwrap();
    refused(admin(&d, &["-check_config", bad.to_str().unwrap()]));
    refused(admin(&d, &["-config", bad.to_str().unwrap()]));
}
