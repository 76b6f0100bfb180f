//! The apply engine against an in-memory tree: the order of a plan from an empty
//! daemon, what it leaves out, and undoing on a failed write.

use std::collections::BTreeMap;

use super::*;
use crate::conf::parse;
use crate::protocol::ErrorKind;

/// A tree of files (path -> value) that records writes and applies none, failing the
/// write whose index is `fail_at`.
#[derive(Default)]
struct FakeTree {
    files: BTreeMap<String, String>,
    writes: Vec<String>,
    fail_at: Option<usize>,
}

impl TreeAccess for FakeTree {
    fn read(&mut self, path: &str) -> Result<String, TreeError> {
        // As in the real tree, empty path components do not count.
        let path = path.trim_start_matches('/');
        self.files.get(path).cloned().ok_or_else(|| {
            TreeError::new(
                ErrorKind::NotFound,
                format!("{path}: no such file or directory"),
            )
        })
    }
    fn list(&mut self, path: &str) -> Result<Vec<String>, TreeError> {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut out: Vec<String> = Vec::new();
        for k in self.files.keys().filter_map(|k| k.strip_prefix(&prefix)) {
            let entry = match k.split_once('/') {
                Some((dir, _)) => format!("{dir}/"),
                None => k.to_string(),
            };
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
        Ok(out)
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), TreeError> {
        let n = self.writes.len();
        self.writes.push(format!("{path} <- {value}"));
        if self.fail_at == Some(n) {
            return Err(TreeError::new(
                ErrorKind::Invalid,
                format!("{path}: refused"),
            ));
        }
        Ok(())
    }
}

/// An empty daemon: the directories read_config walks, nothing in them.
fn empty_daemon() -> FakeTree {
    let mut t = FakeTree::default();
    for f in [
        "version",
        "handlers/vdisk_nullio/mgmt",
        "targets/iscsi/mgmt",
        "device_groups/mgmt",
    ] {
        t.files.insert(f.into(), String::new());
    }
    t.files.insert("targets/iscsi/enabled".into(), "0".into());
    t.files.insert("async_lun_replace".into(), "0".into());
    t
}

const CONF: &str = "async_lun_replace 1
HANDLER vdisk_nullio {
\tDEVICE n1 {
\t\tsize_mb 8
\t\tcluster_mode 0
\t}
}
TARGET_DRIVER iscsi {
\tenabled 1
\tTARGET iqn.x:t1 {
\t\tenabled 1
\t\tblack_hole 0
\t\tLUN 0 n1
\t\tGROUP g {
\t\t\tLUN 1 n1
\t\t\tINITIATOR iqn.x:i*
\t\t}
\t}
}
DEVICE_GROUP dg {
\tDEVICE n1
\tTARGET_GROUP tg {
\t\tgroup_id 3
\t\tTARGET iqn.x:t1
\t}
}
";

fn ops(p: &Plan) -> Vec<String> {
    p.ops.iter().map(|o| o.to_string()).collect()
}

#[test]
fn a_plan_from_an_empty_daemon_follows_scsts_order() {
    let conf = parse(CONF).unwrap();
    let mut t = empty_daemon();
    let p = plan(&mut t, &conf, false).unwrap();
    assert!(t.writes.is_empty(), "planning only reads");
    assert_eq!(
        ops(&p),
        [
            // Defaults of features scst-rs lacks (cluster_mode 0, black_hole 0) are in
            // effect already: no write, no parameter.
            "handlers/vdisk_nullio/mgmt <- add_device n1 size_mb=8",
            "targets/iscsi/mgmt <- add_target iqn.x:t1",
            "targets/iscsi/iqn.x:t1/luns/mgmt <- add n1 0",
            "targets/iscsi/iqn.x:t1/ini_groups/mgmt <- create g",
            "targets/iscsi/iqn.x:t1/ini_groups/g/luns/mgmt <- add n1 1",
            "targets/iscsi/iqn.x:t1/ini_groups/g/initiators/mgmt <- add iqn.x:i*",
            "device_groups/mgmt <- create dg",
            "device_groups/dg/devices/mgmt <- add n1",
            "device_groups/dg/target_groups/mgmt <- create tg",
            "device_groups/dg/target_groups/tg/group_id <- 3",
            "device_groups/dg/target_groups/tg/mgmt <- add iqn.x:t1",
            // Enabling comes after everything it exposes; root attributes last.
            "targets/iscsi/iqn.x:t1/enabled <- 1",
            "targets/iscsi/enabled <- 1",
            "async_lun_replace <- 1",
        ]
    );
}

#[test]
fn a_failed_write_undoes_the_applied_ones_in_reverse_order() {
    let conf = parse(CONF).unwrap();
    let p = plan(&mut empty_daemon(), &conf, false).unwrap();
    // The fifth write (the group's LUN) fails.
    let mut t = FakeTree {
        fail_at: Some(4),
        ..FakeTree::default()
    };
    let e = execute(&mut t, &p.ops).unwrap_err();
    assert!(
        matches!(&e, ApplyError::Write { applied: 4, undo_failures, .. } if undo_failures.is_empty()),
        "{e:?}"
    );
    assert_eq!(
        t.writes[4..],
        [
            "targets/iscsi/iqn.x:t1/ini_groups/g/luns/mgmt <- add n1 1",
            "targets/iscsi/iqn.x:t1/ini_groups/mgmt <- del g",
            "targets/iscsi/iqn.x:t1/luns/mgmt <- del 0",
            "targets/iscsi/mgmt <- del_target iqn.x:t1",
            "handlers/vdisk_nullio/mgmt <- del_device n1",
        ]
    );
    assert!(e.to_string().contains("nothing was changed"), "{e}");
}

#[test]
fn what_the_running_daemon_has_is_not_written_again() {
    let conf = parse("HANDLER vdisk_nullio {\n\tDEVICE n1 {\n\t\tsize_mb 8\n\t}\n}\n").unwrap();
    let mut t = empty_daemon();
    t.files
        .insert("handlers/vdisk_nullio/n1/size_mb".into(), "8".into());
    t.files
        .insert("devices/n1/size_mb".into(), "8\n[key]".into());
    assert!(plan(&mut t, &conf, false).unwrap().ops.is_empty());
    // A writable attribute that differs is written, with its old value as the undo.
    t.files
        .insert("devices/n1/size_mb".into(), "4\n[key]".into());
    let p = plan(&mut t, &conf, false).unwrap();
    assert_eq!(ops(&p), ["devices/n1/size_mb <- 8"]);
    assert_eq!(
        p.ops[0].undo,
        Some(("devices/n1/size_mb".into(), "4".into()))
    );
}
