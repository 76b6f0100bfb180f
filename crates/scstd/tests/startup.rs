//! scstd's start-up applies its configuration with the apply engine through its own
//! management tree: the result is what `scstadmin -config` of the same file would make,
//! and a failure names the file's line and the object.

use std::sync::Arc;

use scst_core::Scst;
use scst_mgmt::apply::{plan, read_config, InProcess};

/// A core with the dev handlers registered, as scstd has it before the configuration.
fn core() -> Arc<Scst> {
    let scst = Scst::new(1);
    scst_vdisk::handler::register_all(&scst).unwrap();
    scst
}

fn conf(dir: &std::path::Path, file: &str) -> String {
    format!(
        "setup_id 0x10\nasync_lun_replace 1\n\
         HANDLER vdisk_fileio {{\n\tDEVICE f1 {{\n\t\tfilename {}\n\t\twrite_through 1\n\
         \t\tcluster_mode 0\n\t}}\n}}\n\
         HANDLER vdisk_nullio {{\n\tDEVICE n1 {{\n\t\tsize_mb 16\n\t\tprod_id NULL1\n\
         \t\tpr_file_name {pr}\n\t}}\n}}\n\
         TARGET_DRIVER iscsi {{\n\tenabled 1\n\tIncomingUser \"joe 12charsecretA\"\n\
         \tTARGET iqn.2026-11.rs.scst:s1 {{\n\t\tenabled 1\n\t\trel_tgt_id 3\n\
         \t\tQueuedCommands 32\n\t\tLUN 0 f1\n\
         \t\tGROUP g1 {{\n\t\t\tLUN 0 n1 {{\n\t\t\t\tread_only 1\n\t\t\t}}\n\
         \t\t\tINITIATOR iqn.2026-11.rs.scst:i*\n\t\t}}\n\t}}\n}}\n\
         DEVICE_GROUP dg {{\n\tDEVICE f1\n\tTARGET_GROUP tg {{\n\t\tgroup_id 7\n\
         \t\tstate nonoptimized\n\t\tTARGET iqn.2026-11.rs.scst:s1\n\t}}\n}}\n",
        dir.join(file).display(),
        pr = dir.join("n1.pr").display(),
    )
}

#[test]
fn after_start_up_config_of_the_same_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::File::create(dir.path().join("f1.img"))
        .and_then(|f| f.set_len(8 << 20))
        .unwrap();
    let conf = scst_mgmt::parse(&conf(dir.path(), "f1.img")).unwrap();
    let scst = core();
    let started = scstd::apply_config(&scst, &conf, None).unwrap();
    let mut tree = InProcess(&*started.tree);
    let p = plan(&mut tree, &conf, true).unwrap();
    let ops: Vec<String> = p.ops.iter().map(|o| o.to_string()).collect();
    assert!(
        ops.is_empty() && p.warnings.is_empty(),
        "{ops:?} {:?}",
        p.warnings
    );
    // And what write_config would save plans to nothing as well.
    let saved = read_config(&mut tree, false).unwrap();
    let text = scst_mgmt::write_config(&saved);
    let again = scst_mgmt::parse(&text).unwrap();
    assert!(
        plan(&mut tree, &again, true).unwrap().ops.is_empty(),
        "{text}"
    );
    assert!(text.contains("async_lun_replace 1"), "{text}");
    assert!(text.contains("write_through 1"), "{text}");
    // The APTPL file stays where the configuration put it.
    assert!(text.contains("pr_file_name "), "{text}");
}

#[test]
fn a_failing_start_up_names_the_line_and_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let conf = scst_mgmt::parse(&conf(dir.path(), "missing.img")).unwrap();
    let e = scstd::apply_config(&core(), &conf, None)
        .err()
        .expect("a missing backing file fails");
    let e = format!("{e:#}");
    // At the filename line, where the problem is.
    assert!(e.starts_with("line 5: DEVICE f1: "), "{e}");
    assert!(e.contains("missing.img"), "{e}");
    // Refused attributes are reported before anything is opened.
    // (A mask of CPU 32 alone: scst-rs accepts only one holding every CPU.)
    let text = conf_with(dir.path(), "\t\tcpu_mask 1,00000000\n");
    let e = scstd::apply_config(&core(), &scst_mgmt::parse(&text).unwrap(), None)
        .err()
        .expect("cpu_mask is refused");
    assert!(
        format!("{e:#}").contains("attribute 'cpu_mask' is not supported"),
        "{e:#}"
    );
}

/// The configuration with `extra` lines in the target's block.
fn conf_with(dir: &std::path::Path, extra: &str) -> String {
    conf(dir, "missing.img").replace("\t\trel_tgt_id 3\n", &format!("\t\trel_tgt_id 3\n{extra}"))
}
