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
    assert!(out.contains("applied"), "{out}");
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
    assert!(err.contains("line 8: DEVICE gone"), "{err}");
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
