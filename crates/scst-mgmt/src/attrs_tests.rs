//! Tests of the attribute table (attrs.rs).

use super::*;

#[test]
fn int_parsing() {
    assert_eq!(parse_int("0x0a01"), Some(0xa01));
    assert_eq!(parse_int("42"), Some(42));
    assert_eq!(parse_int("-1"), Some(-1));
    assert_eq!(parse_int("+1"), None);
    assert_eq!(parse_int("0x"), None);
    assert_eq!(parse_int(""), None);
    assert_eq!(parse_int("1e3"), None);
    assert_eq!(parse_int("99999999999999999999"), None);
}

#[test]
fn per_handler_differences() {
    let fio = device_attr("vdisk_fileio", "filename").unwrap();
    assert!(fio.creation && fio.access == Access::ReadOnly && fio.key);
    let cd = device_attr("vcdrom", "filename").unwrap();
    assert!(!cd.creation && cd.access == Access::ReadWrite);
    assert!(device_attr("vdisk_blockio", "o_direct").is_none());
    assert!(device_attr("vdisk_nullio", "dummy").unwrap().creation);
    assert!(device_attr("vdisk_fileio", "dummy").is_none());
    assert!(device_attr("vdisk_nullio", "size").unwrap().creation);
    assert!(!device_attr("vdisk_fileio", "size").unwrap().configurable());
    assert!(device_attr("vdisk_fileio", "threads_num").is_some());
    assert!(device_attr("dev_disk", "filename").is_none());
    let cd = creation_params("vcdrom");
    assert!(cd.contains(&"tst") && cd.contains(&"prod_id") && !cd.contains(&"filename"));
    let nullio = creation_params("vdisk_nullio");
    for p in [
        "blocksize",
        "dummy",
        "size",
        "size_mb",
        "tst",
        "t10_dev_id",
        "numa_node_id",
    ] {
        assert!(nullio.contains(&p), "{p}");
    }
    assert!(!creation_params("vdisk_blockio").contains(&"async"));
}

#[test]
fn value_kinds() {
    let bs = device_attr("vdisk_fileio", "blocksize").unwrap();
    assert!(bs.check_value("4096").is_ok());
    assert!(bs.check_value("4000").is_err());
    assert!(bs.check_value("256").is_err());
    let b = lun_attr("read_only").unwrap();
    assert!(b.check_value("1").is_ok());
    assert_eq!(
        b.check_value("yes").unwrap_err().to_string(),
        "must be 0 or 1"
    );
    let am = target_attr("iscsi", "addr_method").unwrap();
    assert!(am.check_value("flat").is_ok());
    let d = target_attr("iscsi", "HeaderDigest").unwrap();
    assert!(d.check_value("CRC32C,None").is_ok());
    assert!(d.check_value("MD5").is_err());
    let dm = device_attr("vdisk_fileio", "dif_mode").unwrap();
    assert!(dm.check_value("tgt|dev_check").is_ok());
    assert!(dm.check_value("tgt|bogus").is_err());
    let io = group_attr("iscsi", "io_grouping_type").unwrap();
    assert!(io.check_value("auto").is_ok() && io.check_value("3").is_ok());
    assert!(io.check_value("0").is_err());
    assert!(root_attr("setup_id").unwrap().check_value("0x0a01").is_ok());
    let chap = driver_attr("iscsi", "IncomingUser").unwrap();
    assert!(chap.check_value("joe 123456789012").is_ok());
    assert_eq!(
        chap.check_value("joe short").unwrap_err().to_string(),
        "has a CHAP secret shorter than 12 bytes"
    );
    assert!(chap.check_value("joe").is_err());
    assert!(chap.check_value("a b c").is_err());
}

#[test]
fn levels() {
    assert!(driver_attr("iscsi", "IncomingUser").unwrap().multi);
    assert!(!driver_attr("iscsi", "OutgoingUser").unwrap().multi);
    assert!(target_attr("iscsi", "allowed_portal").unwrap().dynamic);
    assert!(target_attr("iscsi", "rel_tgt_id").is_some());
    assert!(target_attr("qla2x00t", "rel_tgt_id").is_some());
    assert!(target_attr("qla2x00t", "alias").is_none());
    assert!(group_attr("iscsi", "per_sess_dedicated_tgt_threads").is_some());
    assert!(handler_attr("vdisk_fileio", "pr_dump_dir").is_some());
    assert!(handler_attr("vcdrom", "pr_dump_dir").is_none());
    assert!(target_group_attr("state")
        .unwrap()
        .check_value("standby")
        .is_ok());
    assert!(tg_target_attr("rel_tgt_id").is_some());
    assert_eq!(driver_support("scst_local"), Support::NotSupported);
    assert_eq!(handler_support("vdisk_fileio"), Support::Supported);
    assert_eq!(handler_support("vdisk"), Support::Unknown);
}

#[test]
fn cpu_masks() {
    assert!(cpu_mask_covers("ff", 8));
    assert!(cpu_mask_covers("ffffffff,ffffffff", 40));
    assert!(!cpu_mask_covers("ff", 9));
    assert!(!cpu_mask_covers("1,00000000", 1));
    assert!(cpu_mask_covers("00000001", 1));
    for bad in ["", "xyz", "123456789", "ff,", ",ff"] {
        assert!(check_kind(CpuMask, bad).is_err(), "{bad}");
    }
    let mask = target_attr("iscsi", "cpu_mask").unwrap();
    assert!(mask
        .check_supported("ffffffff,".repeat(32).trim_end_matches(','))
        .is_ok());
    assert_eq!(
        mask.check_supported("1,00000000"),
        Err(ValueError::NotAllCpus)
    );
}
