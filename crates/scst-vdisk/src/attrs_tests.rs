//! Run-time attribute writes of the disk handlers (attrs.rs).

use crate::test_util::{exec, fileio, good, nullio, run, run_ctx, rw10, sense, CTX};
use scsi_wire::sense::key;
use scsi_wire::Sense;
use scst_core::{AttrEffect, AttrError, Device, ExecMode};
use std::sync::Arc;

const WRITE_10: u8 = 0x2A;
const READ_10: u8 = 0x28;

fn attr(d: &Arc<dyn Device>, name: &str) -> (String, bool) {
    d.attributes()
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, v, k)| (v, k))
        .unwrap_or_else(|| panic!("no attribute {name}"))
}

fn value(d: &Arc<dyn Device>, name: &str) -> String {
    attr(d, name).0
}

fn read_capacity_16(d: &Arc<dyn Device>) -> (u64, u8) {
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x10;
    c[13] = 32;
    let r = run(d, &c, vec![]).data;
    (u64::from_be_bytes(r[..8].try_into().unwrap()), r[13] & 0x0F)
}

fn inquiry(d: &Arc<dyn Device>, page: Option<u8>) -> Vec<u8> {
    let cdb = match page {
        None => [0x12, 0, 0, 0, 255, 0],
        Some(p) => [0x12, 1, p, 0, 255, 0],
    };
    run(d, &cdb, vec![]).data
}

fn wce(d: &Arc<dyn Device>) -> bool {
    run(d, &[0x1A, 0x08, 0x08, 0, 255, 0], vec![]).data[4 + 2] & 0x04 != 0
}

#[test]
fn every_writable_attribute_round_trips() {
    let (_f, d) = fileio(100, None, &[]);
    let cases = [
        ("read_only", "1"),
        ("write_through", "1"),
        ("opt_trans_len", "1048576"),
        ("lb_per_pb_exp", "0"),
        ("async", "1"),
        ("t10_vend_id", "VEND"),
        ("prod_id", "NEWPROD"),
        ("prod_rev_lvl", "0042"),
        ("t10_dev_id", "dev-id-42"),
        ("vend_specific_id", "vs-42"),
        ("usn", "serial42"),
        ("naa_id", "6001405aabbccdde"),
        ("eui64_id", "0102030405060708"),
        ("scsi_device_name", "iqn.2024-01.x:dev"),
    ];
    for (name, v) in cases {
        assert!(!attr(&d, name).1, "{name} is a key before any write");
        d.apply_attribute(name, v).unwrap();
        assert_eq!(attr(&d, name), (v.to_string(), true), "{name}");
    }
    let n = nullio(&[]);
    for (name, v) in [
        ("read_zero", "1"),
        ("size", "1048576"),
        ("size_mb", "3"),
        ("read_only", "1"),
        ("prod_id", "NULLPROD"),
    ] {
        n.apply_attribute(name, v).unwrap();
        assert_eq!(attr(&n, name), (v.to_string(), true), "{name}");
    }
    assert_eq!(value(&n, "size"), (3u64 << 20).to_string());
    // Identity designators clear with an empty value or a newline.
    n.apply_attribute("naa_id", "\n").unwrap();
    assert_eq!(value(&n, "naa_id"), "");
}

#[test]
fn nullio_resize_reaches_read_capacity() {
    let n = nullio(&[("size_mb", "1")]);
    assert_eq!(read_capacity_16(&n).0, 2047);
    assert_eq!(
        n.apply_attribute("size_mb", "2").unwrap(),
        AttrEffect::CapacityChanged
    );
    assert_eq!(read_capacity_16(&n).0, 4095);
    let rc10 = run(&n, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![]).data;
    assert_eq!(&rc10[..4], &4095u32.to_be_bytes());
    // Past the new end: out of range; inside it: fine.
    good(&run(&n, &rw10(READ_10, 4095, 1, 0), vec![]));
    assert_eq!(
        n.apply_attribute("size", "1048576").unwrap(),
        AttrEffect::CapacityChanged
    );
    assert_eq!(
        sense(&run(&n, &rw10(READ_10, 4095, 1, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    // Same block count: no unit attention.
    assert_eq!(
        n.apply_attribute("size", "1048576").unwrap(),
        AttrEffect::Nothing
    );
    assert_eq!(
        n.apply_attribute("size", "1048700").unwrap(),
        AttrEffect::Nothing
    );
}

#[test]
fn fileio_resync_size_rereads_the_file() {
    let (f, d) = fileio(100, None, &[]);
    let e = d
        .apply_attribute("size", "1048576")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("attribute size") && e.contains("resync_size"),
        "{e}"
    );
    assert_eq!(
        d.apply_attribute("resync_size", "1").unwrap(),
        AttrEffect::Nothing
    );
    f.as_file().set_len(200 * 512).unwrap();
    assert_eq!(read_capacity_16(&d).0, 99);
    assert_eq!(
        d.apply_attribute("resync_size", "1").unwrap(),
        AttrEffect::CapacityChanged
    );
    assert_eq!(read_capacity_16(&d).0, 199);
    assert_eq!(value(&d, "size"), (200 * 512).to_string());
    good(&run(&d, &rw10(WRITE_10, 150, 1, 0), vec![7; 512]));
    // sync flushes (all a test can observe is that it succeeds).
    assert_eq!(d.apply_attribute("sync", "1").unwrap(), AttrEffect::Nothing);
}

#[test]
fn read_only_protects_the_medium_live() {
    let (_f, d) = fileio(100, None, &[]);
    let w = rw10(WRITE_10, 0, 1, 0);
    good(&run(&d, &w, vec![1; 512]));
    let ms = [0x1A, 0x08, 0x3F, 0, 255, 0];
    assert_eq!(run(&d, &ms, vec![]).data[2] & 0x80, 0);
    assert_eq!(
        d.apply_attribute("read_only", "1").unwrap(),
        AttrEffect::Nothing
    );
    let s = sense(&run(&d, &w, vec![1; 512]));
    assert_eq!(s.key, key::DATA_PROTECT);
    assert_eq!(s, Sense::WRITE_PROTECTED);
    assert_eq!(run(&d, &ms, vec![]).data[2] & 0x80, 0x80);
    good(&run(&d, &rw10(READ_10, 0, 1, 0), vec![]));
    d.apply_attribute("read_only", "0").unwrap();
    good(&run(&d, &w, vec![1; 512]));
    assert_eq!(run(&d, &ms, vec![]).data[2] & 0x80, 0);

    // Created read-only: the file was opened read-only, it cannot become writable.
    let (_f2, ro) = fileio(100, None, &[("read_only", "1")]);
    let e = ro
        .apply_attribute("read_only", "0")
        .unwrap_err()
        .to_string();
    assert!(e.contains("read_only") && e.contains("re-create"), "{e}");
    assert_eq!(value(&ro, "read_only"), "1");
    assert_eq!(sense(&run(&ro, &w, vec![0; 512])), Sense::WRITE_PROTECTED);
    // nullio has no file: both ways work.
    let n = nullio(&[("read_only", "1")]);
    n.apply_attribute("read_only", "0").unwrap();
    good(&run_ctx(&n, &CTX, &w, vec![0; 512]));
}

#[test]
fn write_through_clears_wce_and_makes_writes_stable() {
    let (_f, d) = fileio(100, None, &[]);
    assert!(wce(&d));
    d.apply_attribute("write_through", "1").unwrap();
    assert!(!wce(&d));
    // Writes are now stable: never completed inline.
    assert!(exec(
        &d,
        &CTX,
        &rw10(WRITE_10, 0, 1, 0),
        vec![1; 512],
        ExecMode::Inline
    )
    .is_none());
    // A reset restores the new default, not the creation one.
    d.reset();
    assert!(!wce(&d));
    d.apply_attribute("write_through", "0").unwrap();
    assert!(wce(&d));
    // nv_cache pins WCE at 0.
    let (_f2, nv) = fileio(100, None, &[("nv_cache", "1")]);
    nv.apply_attribute("write_through", "0").unwrap();
    assert!(!wce(&nv));
    // Not a nullio attribute.
    assert!(nullio(&[]).apply_attribute("write_through", "1").is_err());
}

#[test]
fn invalid_writes_are_refused_and_change_nothing() {
    let (_f, d) = fileio(100, None, &[]);
    let n = nullio(&[]);
    let before = (d.attributes(), n.attributes());
    let cases: [(&Arc<dyn Device>, &str, &str); 14] = [
        (&d, "read_only", "yes"),
        (&d, "write_through", "2"),
        (&d, "prod_id", "seventeen-chars-x"),
        (&d, "t10_vend_id", "TOO_LONG_V"),
        (&d, "usn", "\u{1}bad"),
        (&d, "naa_id", "0x1234"),
        (&d, "eui64_id", "zz"),
        (&d, "opt_trans_len", "1000"),
        (&d, "blocksize", "4096"),
        (&d, "filename", "/tmp/x"),
        (&d, "nonsense", "1"),
        (&d, "read_zero", "1"),
        (&n, "size", "lots"),
        (&n, "size_mb", "99999999999999999"),
    ];
    for (dev, name, v) in cases {
        let e = dev.apply_attribute(name, v).unwrap_err().to_string();
        assert!(e.contains(name), "{name}: {e}");
        assert!(e.starts_with("device "), "{e}");
    }
    assert_eq!((d.attributes(), n.attributes()), before);
    assert!(n.apply_attribute("sync", "1").is_err());
    assert!(n.apply_attribute("resync_size", "1").is_err());
    let e = d.apply_attribute("blocksize", "4096").unwrap_err();
    assert!(matches!(e, AttrError::CreationOnly { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("read-only"), "{e}");
}

#[test]
fn identity_changes_show_in_inquiry() {
    let (_f, d) = fileio(100, None, &[]);
    assert_eq!(
        d.apply_attribute("prod_id", "NEWPROD").unwrap(),
        AttrEffect::InquiryDataChanged
    );
    let std = inquiry(&d, None);
    assert_eq!(&std[16..32], b"NEWPROD         ");
    d.apply_attribute("t10_vend_id", "ACME").unwrap();
    assert_eq!(&inquiry(&d, None)[8..16], b"ACME    ");
    // Same value again: nothing to announce.
    assert_eq!(
        d.apply_attribute("prod_id", "NEWPROD").unwrap(),
        AttrEffect::Nothing
    );
    d.apply_attribute("usn", "SER123").unwrap();
    let p80 = inquiry(&d, Some(0x80));
    assert_eq!(&p80[4..4 + p80[3] as usize], b"SER123");
    // t10_dev_id drags vend_specific_id along until that is set itself.
    d.apply_attribute("t10_dev_id", "abc").unwrap();
    assert_eq!(value(&d, "vend_specific_id"), "abc");
    let p83 = inquiry(&d, Some(0x83));
    assert!(p83.windows(3).any(|w| w == b"abc"));
    d.apply_attribute("vend_specific_id", "own").unwrap();
    d.apply_attribute("t10_dev_id", "def").unwrap();
    assert_eq!(value(&d, "vend_specific_id"), "own");
    assert_eq!(value(&d, "t10_dev_id"), "def");
}

#[test]
fn opt_trans_len_reaches_block_limits() {
    let (_f, d) = fileio(100, None, &[]);
    d.apply_attribute("opt_trans_len", "1048576").unwrap();
    let b0 = inquiry(&d, Some(0xB0));
    let opt = u32::from_be_bytes(b0[12..16].try_into().unwrap());
    assert_eq!(opt, 2048);
    assert_eq!(read_capacity_16(&d).1, 3);
    assert_eq!(
        d.apply_attribute("lb_per_pb_exp", "0").unwrap(),
        AttrEffect::CapacityChanged
    );
    assert_eq!(read_capacity_16(&d).1, 0);
}

/// `inq_vend_specific` fills bytes 36..56 of the standard INQUIRY data, at creation
/// and at run time; more than the 20 bytes SCST puts there is refused.
#[test]
fn inq_vend_specific_is_in_the_standard_inquiry_data() {
    let std_inquiry = |d: &Arc<dyn Device>| run(d, &[0x12, 0, 0, 0, 96, 0], Vec::new()).data;
    let n = nullio(&[("inq_vend_specific", "made-here")]);
    let b = std_inquiry(&n);
    assert_eq!(&b[36..45], b"made-here");
    assert!(b[45..56].iter().all(|x| *x == 0));
    assert_eq!(
        n.apply_attribute("inq_vend_specific", "0123456789abcdefghij")
            .unwrap(),
        AttrEffect::InquiryDataChanged
    );
    assert_eq!(&std_inquiry(&n)[36..56], b"0123456789abcdefghij");
    assert_eq!(value(&n, "inq_vend_specific"), "0123456789abcdefghij");
    let e = n
        .apply_attribute("inq_vend_specific", "0123456789abcdefghijK")
        .unwrap_err();
    assert!(matches!(e, AttrError::Invalid { .. }), "{e:?}");
    // Without it the data has no vendor-specific bytes.
    assert!(std_inquiry(&nullio(&[]))[36..56].iter().all(|x| *x == 0));
}
