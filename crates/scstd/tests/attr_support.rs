//! Every attribute of SCST's tables that a configuration may set (`scst_mgmt::attrs`) is
//! either in effect after scstd loads a configuration giving it (the management tree
//! reads it back with that value) or refused, naming it as not supported; and
//! docs/management.md lists both sets exactly as the table has them.

use std::path::Path;
use std::sync::Arc;

use scst_core::Scst;
use scst_mgmt::attrs::{configurable_attrs, AttrInfo, AttrSupport, Level, ValueKind};
use scst_mgmt::trace_level::saved_value;
use scst_mgmt::{ErrorKind, MgmtPath, MgmtTree};
use scstd::Started;

const TARGET: &str = "iqn.2026-11.rs.scst:attrs";
/// A target of another node, named in a target group.
const REMOTE: &str = "iqn.2026-11.rs.scst:remote";

/// The device of each handler that device attributes are given to.
fn device_of(handler: &str) -> &'static str {
    match handler {
        "vdisk_fileio" => "f1",
        "vdisk_blockio" => "b1",
        "vdisk_nullio" => "n1",
        _ => "c1",
    }
}

/// A value for `a` that differs from SCST's default where that matters: an implemented
/// attribute must show it, one scst-rs lacks must be refused for it.
fn sample(level: Level, a: &AttrInfo, dir: &Path) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    let special = match (level, a.name) {
        (Level::Device("vcdrom"), "filename") => Some(file("c1.iso")),
        (Level::Device(h), "filename") => Some(file(&format!("{}.img", device_of(h)))),
        (Level::Device(_), "pr_file_name") => Some(file("pr-file")),
        (Level::Handler(_), "pr_dump_dir") => Some(dir.display().to_string()),
        (Level::Target("vhost"), "socket") => Some(file("vm9.sock")),
        (_, "setup_id") => Some("0x2a".into()),
        (_, "threads") => Some("3".into()),
        (_, "blocksize") => Some("4096".into()),
        (_, "size") => Some("2097152".into()),
        (_, "size_mb") => Some("3".into()),
        (_, "opt_trans_len") => Some("65536".into()),
        (_, "lb_per_pb_exp") => Some("0".into()),
        // tmpfs has no O_DIRECT: its default is what can be shown everywhere.
        (_, "o_direct") => Some("0".into()),
        (_, "tst") => Some("0".into()),
        (_, "naa_id") => Some("6001405aabbccdd0".into()),
        (_, "eui64_id") => Some("0011223344556677".into()),
        (_, "prod_rev_lvl") => Some("0001".into()),
        (_, "IncomingUser" | "OutgoingUser") => Some("joe 12charsecretA".into()),
        (_, "allowed_portal") => Some("10.0.0.*".into()),
        (_, "redirect") => Some("10.0.0.2 temp".into()),
        (_, "iSNSServer") => Some("192.0.2.10".into()),
        (_, "internal_portal") => Some("10.0.0.1".into()),
        (_, "addr_method") => Some("FLAT".into()),
        (_, "HeaderDigest" | "DataDigest") => Some("CRC32C".into()),
        (_, "InitialR2T") => Some("Yes".into()),
        (_, "ImmediateData") => Some("No".into()),
        (_, "RDMAExtensions") => Some("Yes".into()),
        (_, "rel_tgt_id") => Some("9".into()),
        (_, "group_id") => Some("5".into()),
        (_, "state") => Some("standby".into()),
        (_, "numa_node_id") => Some("0".into()),
        // Set as the tokens line reading shows (SCST's order).
        (_, "trace_level") => Some("out_of_mem | pid | debug | mgmt".into()),
        _ => None,
    };
    if let Some(v) = special {
        return v;
    }
    let default = match a.support {
        AttrSupport::DefaultOnly(d) => Some(d),
        _ => None,
    };
    match a.kind {
        ValueKind::Bool if default == Some("1") => "0".into(),
        ValueKind::Bool => "1".into(),
        ValueKind::Int { min, max } | ValueKind::PowerOfTwo { min, max } => {
            let n = (min.max(1) * 2).min(max);
            n.to_string()
        }
        ValueKind::IoGrouping => "never".into(),
        ValueKind::Enum(words) | ValueKind::EnumNoCase(words) | ValueKind::Flags(words) => {
            words[words.len() - 1].into()
        }
        ValueKind::ChapAccount => "joe 12charsecretA".into(),
        // CPU 32 alone: never every CPU of the host.
        ValueKind::CpuMask => "1,00000000".into(),
        ValueKind::Text => "x1".into(),
    }
}

/// A configuration with one object of each kind, `name value` given at `level`.
fn config(dir: &Path, level: Level, name: &str, value: &str) -> String {
    let line = |at: Level| {
        if at == level && !name.is_empty() {
            format!("{name} \"{value}\"\n")
        } else {
            String::new()
        }
    };
    let dev = |h: &'static str| line(Level::Device(h));
    let f = |n: &str| dir.join(n).display().to_string();
    // The file-backed devices get their filename from `line` when that is the attribute.
    let filename = |h: &'static str, file: &str| {
        if level == Level::Device(h) && name == "filename" {
            String::new()
        } else {
            format!("filename {}\n", f(file))
        }
    };
    format!(
        "{root}\
         HANDLER vdisk_fileio {{\n{hf}DEVICE f1 {{\n{ff}{df}}}\n}}\n\
         HANDLER vdisk_blockio {{\n{hb}DEVICE b1 {{\n{fb}{db}}}\n}}\n\
         HANDLER vdisk_nullio {{\n{hn}DEVICE n1 {{\n{dn}}}\n}}\n\
         HANDLER vcdrom {{\n{hc}DEVICE c1 {{\n{dc}}}\n}}\n\
         TARGET_DRIVER iscsi {{\n{drv}TARGET {TARGET} {{\n{tgt}\
         LUN 0 n1 {{\n{lun}}}\n\
         GROUP g1 {{\n{grp}LUN 0 f1\n}}\n}}\n}}\n\
         TARGET_DRIVER vhost {{\nTARGET {TARGET} {{\n{vsock}{vtgt}LUN 0 n1\n\
         GROUP g1 {{\n{vgrp}LUN 0 f1\n}}\n}}\n}}\n\
         TARGET_DRIVER copy_manager {{\n{cmd}TARGET copy_manager_tgt {{\n{cmt}LUN 0 n1\n}}\n}}\n\
         DEVICE_GROUP dg1 {{\nDEVICE n1\nTARGET_GROUP tg1 {{\n{tg}\
         TARGET {REMOTE} {{\n{tgt_in_tg}}}\n}}\n}}\n",
        root = line(Level::Root),
        hf = line(Level::Handler("vdisk_fileio")),
        hb = line(Level::Handler("vdisk_blockio")),
        hn = line(Level::Handler("vdisk_nullio")),
        hc = line(Level::Handler("vcdrom")),
        ff = filename("vdisk_fileio", "f1.img"),
        fb = filename("vdisk_blockio", "b1.img"),
        df = dev("vdisk_fileio"),
        db = dev("vdisk_blockio"),
        dn = dev("vdisk_nullio"),
        dc = dev("vcdrom"),
        drv = line(Level::Driver("iscsi")),
        cmd = line(Level::Driver("copy_manager")),
        cmt = line(Level::Target("copy_manager")),
        tgt = line(Level::Target("iscsi")),
        vtgt = line(Level::Target("vhost")),
        vgrp = line(Level::Group("vhost")),
        // The vhost target's socket comes from `line` when that is the attribute.
        vsock = if level == Level::Target("vhost") && name == "socket" {
            String::new()
        } else {
            format!("socket {}\n", f("vm1.sock"))
        },
        lun = line(Level::Lun),
        grp = line(Level::Group("iscsi")),
        tg = if level == Level::TargetGroup && name == "group_id" {
            line(Level::TargetGroup)
        } else {
            format!("group_id 1\n{}", line(Level::TargetGroup))
        },
        tgt_in_tg = if level == Level::TargetGroupTarget {
            line(Level::TargetGroupTarget)
        } else {
            "rel_tgt_id 2\n".into()
        },
    )
}

/// Where the tree shows the attribute of `level`.
fn tree_path(level: Level, name: &str) -> String {
    match level {
        Level::Root => name.to_string(),
        Level::Handler(h) => format!("handlers/{h}/{name}"),
        Level::Device(h) => format!("devices/{}/{name}", device_of(h)),
        Level::Driver(d) => format!("targets/{d}/{name}"),
        Level::Target("copy_manager") => format!("targets/copy_manager/copy_manager_tgt/{name}"),
        Level::Target(d) => format!("targets/{d}/{TARGET}/{name}"),
        Level::Group(d) => format!("targets/{d}/{TARGET}/ini_groups/g1/{name}"),
        Level::Lun => format!("targets/iscsi/{TARGET}/luns/0/{name}"),
        Level::TargetGroup => format!("device_groups/dg1/target_groups/tg1/{name}"),
        Level::TargetGroupTarget => {
            format!("device_groups/dg1/target_groups/tg1/{REMOTE}/{name}")
        }
    }
}

fn same(kind: ValueKind, shown: &str, given: &str) -> bool {
    let shown = scst_mgmt::protocol::strip_key(shown).0.trim();
    let n = scst_mgmt::attrs::parse_int;
    shown == given
        || (matches!(kind, ValueKind::EnumNoCase(_)) && shown.eq_ignore_ascii_case(given))
        || n(shown).is_some_and(|a| Some(a) == n(given))
}

/// The core with `text` applied, as scstd starts. `Started` holds the iSCSI driver,
/// which the core keeps only while it lives.
fn load(text: &str) -> Result<(Arc<Scst>, Started), String> {
    let conf = scst_mgmt::parse(text).map_err(|e| e.to_string())?;
    let scst = Scst::new(1);
    scst_vdisk::handler::register_all(&scst).map_err(|e| e.to_string())?;
    let started = scstd::apply_config(&scst, &conf, None).map_err(|e| format!("{e:#}"))?;
    Ok((scst, started))
}

fn scratch(dir: &Path) {
    for (name, len) in [
        ("f1.img", 8 << 20),
        ("b1.img", 8 << 20),
        ("c1.iso", 2 << 20),
    ] {
        std::fs::File::create(dir.join(name))
            .and_then(|f| f.set_len(len))
            .unwrap();
    }
}

#[test]
fn every_attribute_is_in_effect_or_refused_as_not_supported() {
    let dir = tempfile::tempdir().unwrap();
    scratch(dir.path());
    // The configuration without any of them loads.
    load(&config(dir.path(), Level::Root, "", ""))
        .map(|_| ())
        .unwrap_or_else(|e| {
            panic!("base configuration: {e}");
        });
    let mut wrong = Vec::new();
    for (level, a) in configurable_attrs() {
        let value = sample(level, &a, dir.path());
        let text = config(dir.path(), level, a.name, &value);
        let what = format!("{level:?} {} = '{value}'", a.name);
        match (a.support, load(&text)) {
            (AttrSupport::Implemented, Err(e)) => wrong.push(format!("{what}: refused: {e}")),
            (AttrSupport::Implemented, Ok((_scst, Started { tree, .. }))) => {
                let shown = MgmtPath::parse(&tree_path(level, a.name))
                    .ok()
                    .and_then(|p| tree.read(&p).ok());
                match shown {
                    Some(v) if same(a.kind, saved_value(a.name, &v), &value) => {}
                    Some(v) => wrong.push(format!("{what}: shows '{}'", v.trim())),
                    None => wrong.push(format!("{what}: not shown")),
                }
            }
            (_, Ok(_)) => wrong.push(format!("{what}: accepted, but not supported")),
            (_, Err(e)) if e.contains(&format!("'{}' is not supported", a.name)) => {}
            (_, Err(e)) => wrong.push(format!("{what}: refused for another reason: {e}")),
        }
        if let AttrSupport::DefaultOnly(default) = a.support {
            let text = config(dir.path(), level, a.name, default);
            if let Err(e) = load(&text) {
                wrong.push(format!(
                    "{level:?} {} = its default '{default}': {e}",
                    a.name
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// docs/management.md's two lists, `<!-- attrs:implemented -->` and
/// `<!-- attrs:not-supported -->`, each a set of `name` entries, per level.
fn documented(marker: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/management.md"
    ))
    .unwrap();
    let Some(start) = doc.find(&format!("<!-- attrs:{marker} -->")) else {
        return Vec::new();
    };
    let rest = &doc[start..];
    let end = rest.find("<!-- attrs:end -->").expect("list end marker");
    let mut out = Vec::new();
    for line in rest[..end].lines().filter(|l| l.starts_with("- ")) {
        let (level, names) = line[2..].split_once(':').expect("'- level: names'");
        for n in names.split(',') {
            let n = n.split(" (only").next().unwrap_or_default();
            let n = n.trim().trim_matches('`').trim_end_matches('.');
            if !n.is_empty() {
                out.push(format!("{}: {n}", level.trim()));
            }
        }
    }
    out.sort();
    out
}

fn level_name(level: Level) -> String {
    match level {
        Level::Root => "root".into(),
        Level::Handler(h) => format!("handler {h}"),
        Level::Device(h) => format!("device {h}"),
        Level::Driver(d) => format!("driver {d}"),
        Level::Target(d) => format!("target {d}"),
        Level::Group(d) => format!("group {d}"),
        Level::Lun => "LUN".into(),
        Level::TargetGroup => "target group".into(),
        Level::TargetGroupTarget => "target group target".into(),
    }
}

/// The list as docs/management.md should have it, for the failure message.
fn markdown(implemented: bool) -> String {
    let mut levels: Vec<(String, Vec<String>)> = Vec::new();
    for (l, a) in configurable_attrs() {
        if a.implemented() != implemented {
            continue;
        }
        let shown = match a.support {
            AttrSupport::DefaultOnly(d) => format!("`{}` (only {d})", a.name),
            _ => format!("`{}`", a.name),
        };
        match levels.iter_mut().find(|(n, _)| *n == level_name(l)) {
            Some((_, names)) => names.push(shown),
            None => levels.push((level_name(l), vec![shown])),
        }
    }
    levels
        .into_iter()
        .map(|(l, names)| format!("- {l}: {}\n", names.join(", ")))
        .collect()
}

#[test]
fn the_documented_lists_match_the_attribute_table() {
    let table = |implemented: bool| {
        let mut v: Vec<String> = configurable_attrs()
            .into_iter()
            .filter(|(_, a)| a.implemented() == implemented)
            .map(|(l, a)| format!("{}: {}", level_name(l), a.name))
            .collect();
        v.sort();
        v
    };
    for (marker, implemented) in [("implemented", true), ("not-supported", false)] {
        assert_eq!(
            documented(marker),
            table(implemented),
            "docs/management.md's attrs:{marker} list should read:\n{}",
            markdown(implemented)
        );
    }
}

#[test]
fn tree_writes_refuse_what_is_not_supported_and_accept_its_default() {
    let dir = tempfile::tempdir().unwrap();
    scratch(dir.path());
    let (
        _scst,
        Started {
            tree,
            iscsi: _iscsi,
            vhost: _vhost,
        },
    ) = load(&config(dir.path(), Level::Root, "", "")).unwrap();
    let mut wrong = Vec::new();
    for (level, a) in configurable_attrs() {
        if a.implemented() {
            continue;
        }
        let path = MgmtPath::parse(&tree_path(level, a.name)).unwrap();
        let value = sample(level, &a, dir.path());
        match tree.write(&path, &value) {
            Err(e)
                if e.kind == ErrorKind::NotSupported
                    && e.message
                        .contains(&format!("'{}' is not supported", a.name)) => {}
            other => wrong.push(format!("{path} <- {value}: {other:?}")),
        }
        if let AttrSupport::DefaultOnly(default) = a.support {
            if let Err(e) = tree.write(&path, default) {
                wrong.push(format!("{path} <- its default {default}: {e}"));
            }
        }
    }
    // Also as parameters of the commands that create objects.
    let refused = [
        ("handlers/vdisk_nullio/mgmt", "add_device n2 cluster_mode=1"),
        (
            "targets/iscsi/mgmt",
            "add_target iqn.2026-11.rs.scst:t2 black_hole=1",
        ),
        ("targets/iscsi/mgmt", "add_attribute link_local 0"),
    ];
    for (path, value) in refused {
        let p = MgmtPath::parse(path).unwrap();
        match tree.write(&p, value) {
            Err(e)
                if e.kind == ErrorKind::NotSupported && e.message.contains("is not supported") => {}
            other => wrong.push(format!("{path} <- {value}: {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What the table says about writing at run time is what the tree does: writing an
/// implemented attribute's current value back succeeds exactly when the table calls it
/// writable. (`-config` decides between writing an attribute and re-creating its object
/// from the table, so a difference makes it refuse or re-create needlessly.)
#[test]
fn the_table_says_which_attributes_change_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    scratch(dir.path());
    let (
        _scst,
        Started {
            tree,
            iscsi: _iscsi,
            vhost: _vhost,
        },
    ) = load(&config(dir.path(), Level::Root, "", "")).unwrap();
    let mut wrong = Vec::new();
    for (level, a) in configurable_attrs() {
        if !a.implemented() || a.dynamic {
            continue;
        }
        let path = MgmtPath::parse(&tree_path(level, a.name)).unwrap();
        let Ok(shown) = tree.read(&path) else {
            continue;
        };
        let value = scst_mgmt::protocol::strip_key(&shown).0.to_string();
        let writable = a.access == scst_mgmt::attrs::Access::ReadWrite;
        match (writable, tree.write(&path, &value)) {
            (true, Err(e)) => wrong.push(format!("{path} is writable in the table: {e}")),
            (false, Ok(())) => wrong.push(format!("{path} is read-only in the table")),
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
