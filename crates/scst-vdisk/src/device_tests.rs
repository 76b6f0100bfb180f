//! Command-level tests of the vdisk handlers through the `Device` interface.

use crate::create_device;
use crate::test_util::{
    attrs, cmd, exec, fileio, good, nullio, pattern, run_ctx, rw10, rw16, sense, AsDevice, READ_16,
    WRITE_16,
};
use scsi_wire::sense::key;
use scsi_wire::Sense;
use scst_core::{CmdCtx, ExecMode, Response};

/// This module's nexus: relative target port 3 rather than the shared `CTX`'s 1.
const CTX: CmdCtx<'static> = CmdCtx {
    target_name: "iqn.t",
    rel_tgt_id: 3,
    initiator_name: "iqn.i",
    lun_read_only: false,
    alua: None,
};
const RO_CTX: CmdCtx<'static> = CmdCtx {
    lun_read_only: true,
    ..CTX
};

fn run(d: &(impl AsDevice + ?Sized), cdb: &[u8], data_out: Vec<u8>) -> Response {
    run_ctx(d, &CTX, cdb, data_out)
}

fn inline(d: &(impl AsDevice + ?Sized), cdb: &[u8], data_out: Vec<u8>) -> Option<Response> {
    exec(d, &CTX, cdb, data_out, ExecMode::Inline)
}

const READ_10: u8 = 0x28;
const WRITE_10: u8 = 0x2A;
const VERIFY_10: u8 = 0x2F;
const WRITE_VERIFY_10: u8 = 0x2E;
const FUA: u8 = 0x08;

#[test]
fn fileio_round_trips_every_cdb_size() {
    let (_f, d) = fileio(1024, None, &[]);
    let data = pattern(4 * 512, 1);
    good(&run(&d, &rw10(WRITE_10, 10, 4, 0), data.clone()));
    let r = run(&d, &rw10(READ_10, 10, 4, 0), vec![]);
    good(&r);
    assert!(r.data == data);
    // WRITE(6)/READ(6): 21-bit LBA.
    let d6 = pattern(512, 2);
    good(&run(&d, &[0x0A, 0, 0, 20, 1, 0], d6.clone()));
    assert!(run(&d, &[0x08, 0, 0, 20, 1, 0], vec![]).data == d6);
    // WRITE(12)/READ(12).
    let d12 = pattern(1024, 3);
    good(&run(
        &d,
        &[0xAA, 0, 0, 0, 0, 30, 0, 0, 0, 2, 0, 0],
        d12.clone(),
    ));
    assert!(run(&d, &[0xA8, 0, 0, 0, 0, 30, 0, 0, 0, 2, 0, 0], vec![]).data == d12);
    // WRITE(16) with FUA/READ(16).
    let d16 = pattern(512, 4);
    good(&run(&d, &rw16(WRITE_16, 1023, 1, FUA), d16.clone()));
    assert!(run(&d, &rw16(READ_16, 1023, 1, 0), vec![]).data == d16);
    // Inline read: from the page cache or deferred, never wrong.
    if let Some(r) = inline(&d, &rw10(READ_10, 10, 4, 0), vec![]) {
        good(&r);
        assert!(r.data == data);
    }
}

#[test]
fn range_errors_and_zero_length() {
    let (_f, d) = fileio(100, None, &[]);
    assert_eq!(
        sense(&run(&d, &rw10(READ_10, 99, 2, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &rw10(WRITE_10, 100, 1, 0), vec![0; 512])),
        Sense::LBA_OUT_OF_RANGE
    );
    // Overflowing LBA + length.
    assert_eq!(
        sense(&run(&d, &rw16(READ_16, u64::MAX, 2, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    // Zero blocks: no data, GOOD, but the LBA is still range checked.
    let r = run(&d, &rw10(READ_10, 100, 0, 0), vec![]);
    good(&r);
    assert!(r.data.is_empty());
    good(&run(&d, &rw10(WRITE_10, 5, 0, 0), vec![]));
    assert_eq!(
        sense(&run(&d, &rw10(READ_10, 101, 0, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    // READ(6) length 0 means 256 blocks: beyond this 100-block disk.
    assert_eq!(
        sense(&run(&d, &[0x08, 0, 0, 0, 0, 0], vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
}

#[test]
fn cdb_field_errors() {
    let (_f, d) = fileio(100, None, &[]);
    // RDPROTECT without T10-PI.
    assert_eq!(
        sense(&run(&d, &rw10(READ_10, 0, 1, 0x20), vec![])),
        Sense::invalid_field_in_cdb(1, Some(7))
    );
    // BYTCHK 2 is reserved.
    assert_eq!(
        sense(&run(&d, &rw10(VERIFY_10, 0, 1, 0x04), vec![])),
        Sense::invalid_field_in_cdb(1, Some(2))
    );
    // Data-out shorter than the transfer length: only the whole blocks that arrived
    // are written (the transport reports the residual).
    assert!(run(&d, &rw10(WRITE_10, 0, 2, 0), vec![0xAB; 512 + 100]).status == 0);
    let r = run(&d, &rw10(READ_10, 0, 2, 0), vec![]);
    assert!(
        r.data[..512].iter().all(|&b| b == 0xAB),
        "the block that arrived is written"
    );
    assert!(
        r.data[512..].iter().all(|&b| b == 0),
        "the partial block is not"
    );
    // Truncated CDB.
    assert_eq!(sense(&run(&d, &[READ_10, 0, 0], vec![])).asc, 0x24);
    // Unknown opcode, log pages.
    assert_eq!(
        sense(&run(&d, &[0xC5, 0, 0, 0, 0, 0], vec![])),
        Sense::INVALID_OPCODE
    );
    assert_eq!(
        sense(&run(&d, &[0x4D, 0, 0x40, 0, 0, 0, 0, 0, 255, 0], vec![])).asc,
        0x24
    );
    // READ TOC is for CD-ROMs only.
    assert_eq!(
        sense(&run(&d, &[0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0], vec![])),
        Sense::INVALID_OPCODE
    );
}

#[test]
fn transfer_length_limit_bounds_allocation() {
    let d = nullio(&[]);
    // 2^32-1 blocks fits in 2.5 TiB but not in one buffer.
    let r = run(&d, &rw16(READ_16, 0, u32::MAX, 0), vec![]);
    assert_eq!(sense(&r), Sense::invalid_field_in_cdb(10, None));
    good(&run(&d, &rw16(READ_16, 0, 16384, 0), vec![]));
}

#[test]
fn read_only_lun_and_device() {
    let (_f, d) = fileio(100, None, &[]);
    let w = rw10(WRITE_10, 0, 1, 0);
    assert_eq!(
        sense(&run_ctx(&d, &RO_CTX, &w, vec![0; 512])),
        Sense::WRITE_PROTECTED
    );
    assert_eq!(
        sense(&run_ctx(
            &d,
            &RO_CTX,
            &rw10(WRITE_VERIFY_10, 0, 1, 0),
            vec![0; 512]
        ))
        .key,
        key::DATA_PROTECT
    );
    good(&run_ctx(&d, &RO_CTX, &rw10(READ_10, 0, 1, 0), vec![]));
    // WP bit in MODE SENSE for the read-only LUN only.
    assert_eq!(
        run_ctx(&d, &RO_CTX, &[0x1A, 0x08, 0x3F, 0, 255, 0], vec![]).data[2] & 0x80,
        0x80
    );
    assert_eq!(
        run(&d, &[0x1A, 0x08, 0x3F, 0, 255, 0], vec![]).data[2],
        0x10
    );

    let (_f2, ro) = fileio(100, None, &[("read_only", "1")]);
    assert_eq!(sense(&run(&ro, &w, vec![0; 512])), Sense::WRITE_PROTECTED);
    good(&run(&ro, &rw10(READ_10, 0, 1, 0), vec![]));
}

#[test]
fn fua_and_write_cache_modes() {
    let (_f, d) = fileio(100, None, &[]);
    // A FUA write needs stable storage: never inline.
    assert!(inline(&d, &rw10(WRITE_10, 0, 1, FUA), vec![1; 512]).is_none());
    good(&run(&d, &rw10(WRITE_10, 0, 1, FUA), vec![1; 512]));
    // write_through: WCE=0, every write is stable.
    let (_f2, wt) = fileio(100, None, &[("write_through", "1")]);
    assert!(inline(&wt, &rw10(WRITE_10, 0, 1, 0), vec![1; 512]).is_none());
    let caching = run(&wt, &[0x1A, 0x08, 0x08, 0, 255, 0], vec![]).data;
    assert_eq!(caching[4 + 2] & 0x04, 0);
    good(&run(&wt, &rw10(WRITE_10, 0, 1, 0), vec![2; 512]));
    // nv_cache: FUA and SYNCHRONIZE CACHE cost nothing; SYNC CACHE completes inline.
    let (_f3, nv) = fileio(100, None, &[("nv_cache", "1")]);
    good(&inline(&nv, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![]).unwrap());
    good(&run(&nv, &rw10(WRITE_10, 0, 1, FUA), vec![3; 512]));
}

#[test]
fn synchronize_cache() {
    let (_f, d) = fileio(100, None, &[]);
    let sc10 = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(inline(&d, &sc10, vec![]).is_none());
    good(&run(&d, &sc10, vec![]));
    let mut sc16 = [0u8; 16];
    sc16[0] = 0x91;
    sc16[9] = 99;
    sc16[13] = 1;
    good(&run(&d, &sc16, vec![]));
    sc16[13] = 2;
    assert_eq!(sense(&run(&d, &sc16, vec![])), Sense::LBA_OUT_OF_RANGE);
}

#[test]
fn verify_and_write_and_verify() {
    let (_f, d) = fileio(100, None, &[]);
    let data = pattern(3 * 512, 9);
    good(&run(&d, &rw10(WRITE_10, 4, 3, 0), data.clone()));
    // BYTCHK=0: medium check only.
    good(&run(&d, &rw10(VERIFY_10, 0, 100, 0), vec![]));
    // BYTCHK=1: compare.
    good(&run(&d, &rw10(VERIFY_10, 4, 3, 0x02), data.clone()));
    let mut bad = data.clone();
    bad[700] ^= 0xFF;
    let s = sense(&run(&d, &rw10(VERIFY_10, 4, 3, 0x02), bad));
    assert_eq!(s, Sense::MISCOMPARE.with_information(700));
    // BYTCHK=3: one block compared against each block.
    good(&run(&d, &rw10(VERIFY_10, 50, 4, 0x06), vec![0; 512]));
    let s = sense(&run(&d, &rw10(VERIFY_10, 3, 2, 0x06), vec![0; 512]));
    assert_eq!((s.key, s.information), (key::MISCOMPARE, Some(512)));
    // WRITE AND VERIFY.
    let d2 = pattern(1024, 7);
    good(&run(&d, &rw10(WRITE_VERIFY_10, 60, 2, 0x02), d2.clone()));
    assert!(run(&d, &rw10(READ_10, 60, 2, 0), vec![]).data == d2);
    assert!(inline(&d, &rw10(WRITE_VERIFY_10, 60, 2, 0), d2).is_none());
}

#[test]
fn inquiry_standard_and_vpd() {
    let (_f, d) = fileio(2048, None, &[("prod_id", "PROD"), ("rotational", "0")]);
    let std = run(&d, &[0x12, 0, 0, 0, 255, 0], vec![]).data;
    assert_eq!((std[0], std[2]), (0, 6));
    assert_eq!(&std[8..16], b"SCST_FIO");
    assert_eq!(&std[16..32], b"PROD            ");
    assert_eq!(&std[32..36], b"3110");
    // Allocation length honoured.
    assert_eq!(run(&d, &[0x12, 0, 0, 0, 5, 0], vec![]).data.len(), 5);
    // Field errors.
    assert_eq!(
        sense(&run(&d, &[0x12, 0x02, 0, 0, 255, 0], vec![])),
        Sense::invalid_field_in_cdb(1, Some(1))
    );
    assert_eq!(
        sense(&run(&d, &[0x12, 0, 0x80, 0, 255, 0], vec![])),
        Sense::invalid_field_in_cdb(2, None)
    );
    assert_eq!(
        sense(&run(&d, &[0x12, 1, 0xC0, 0, 255, 0], vec![])),
        Sense::invalid_field_in_cdb(2, None)
    );
    let vpd = |p: u8| run(&d, &[0x12, 1, p, 0, 255, 0], vec![]).data;
    assert_eq!(&vpd(0x00)[4..], &[0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1]);
    let usn = format!("{:x}", crate::gen_dev_id_num("disk1", 0));
    assert_eq!(&vpd(0x80)[4..], usn.as_bytes());
    let id = vpd(0x83);
    let t10 = format!("SCST_FIO{usn}-disk1");
    assert_eq!(&id[8..8 + t10.len()], t10.as_bytes());
    let rtp = 8 + t10.len();
    assert_eq!(&id[rtp..rtp + 8], &[0x01, 0x14, 0, 4, 0, 0, 0, 3]);
    let b0 = vpd(0xB0);
    // MAXIMUM TRANSFER LENGTH: 32 MiB of 512-byte blocks.
    assert_eq!(u32::from_be_bytes(b0[8..12].try_into().unwrap()), 65536);
    assert_eq!(u32::from_be_bytes(b0[12..16].try_into().unwrap()), 1024);
    assert_eq!(&vpd(0xB1)[4..6], &[0, 1]);
    assert_eq!(vpd(0x86)[6], 1);
    // Dummy nullio: LU not present.
    let dummy = nullio(&[("dummy", "1")]);
    assert_eq!(run(&dummy, &[0x12, 0, 0, 0, 255, 0], vec![]).data[0], 0x3F);
}

#[test]
fn read_capacity() {
    let (_f, d) = fileio(2048, None, &[]);
    let r = run(&d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![]);
    assert_eq!(r.data, vec![0, 0, 0x07, 0xFF, 0, 0, 2, 0]);
    assert_eq!(
        sense(&run(&d, &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], vec![])),
        Sense::invalid_field_in_cdb(2, None)
    );
    good(&run(&d, &[0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0], vec![]));
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x10;
    c[13] = 32;
    let r = run(&d, &c, vec![]).data;
    assert_eq!(r.len(), 32);
    assert_eq!(u64::from_be_bytes(r[..8].try_into().unwrap()), 2047);
    assert_eq!((r[13], r[14]), (3, 0)); // 8 logical blocks per 4096-byte physical block
    c[13] = 12;
    assert_eq!(run(&d, &c, vec![]).data.len(), 12);
    c[1] = 0x12; // GET LBA STATUS: implemented (provisioning.rs), cut to the allocation length
    let r = run(&d, &c, vec![]);
    good(&r);
    assert_eq!(r.data.len(), 12);
    // 2.5 TiB nullio: READ CAPACITY(10) saturates.
    let n = nullio(&[]);
    assert_eq!(
        &run(&n, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![]).data[..4],
        &[0xFF; 4]
    );
}

#[test]
fn mode_select_changes_wce_and_d_sense() {
    let (_f, d) = fileio(100, None, &[]);
    assert!(!d.descriptor_sense());
    // Current caching page via MODE SENSE(10), no block descriptor.
    let ms10 = [0x5A, 0x08, 0x08, 0, 0, 0, 0, 0, 255, 0];
    let cur = run(&d, &ms10, vec![]).data;
    assert_eq!(cur[8 + 2] & 0x04, 0x04);
    // Echo it back with WCE cleared via MODE SELECT(10).
    let mut list = vec![0u8; 8];
    let mut pg = cur[8..].to_vec();
    pg[2] &= !0x04;
    list.extend_from_slice(&pg);
    let sel = [0x55, 0x10, 0, 0, 0, 0, 0, 0, list.len() as u8, 0];
    good(&run(&d, &sel, list));
    assert_eq!(run(&d, &ms10, vec![]).data[8 + 2] & 0x04, 0);
    // Now plain writes are stable: not inline.
    assert!(inline(&d, &rw10(WRITE_10, 0, 1, 0), vec![0; 512]).is_none());
    // D_SENSE through the control page.
    let ctl = run(&d, &[0x1A, 0x08, 0x0A, 0, 255, 0], vec![]).data;
    let mut list = vec![0u8; 4];
    let mut pg = ctl[4..].to_vec();
    pg[2] |= 0x04;
    list.extend_from_slice(&pg);
    good(&run(&d, &[0x15, 0x10, 0, 0, list.len() as u8, 0], list));
    assert!(d.descriptor_sense());
    d.reset();
    assert!(!d.descriptor_sense());
    assert_eq!(run(&d, &ms10, vec![]).data[8 + 2] & 0x04, 0x04);
    // SWP makes the medium write protected.
    let mut list = vec![0u8; 4];
    let mut pg = ctl[4..].to_vec();
    pg[4] |= 0x08;
    list.extend_from_slice(&pg);
    good(&run(&d, &[0x15, 0x10, 0, 0, list.len() as u8, 0], list));
    let s = sense(&run(&d, &rw10(WRITE_10, 0, 1, 0), vec![0; 512]));
    assert_eq!((s.key, s.asc, s.ascq), (key::DATA_PROTECT, 0x27, 0x02));
}

#[test]
fn misc_commands() {
    let (_f, d) = fileio(100, None, &[]);
    good(&inline(&d, &[0, 0, 0, 0, 0, 0], vec![]).unwrap());
    good(&run(&d, &[0x1D, 0, 0, 0, 0, 0], vec![]));
    good(&run(&d, &[0x1B, 0, 0, 0, 1, 0], vec![]));
    assert!(inline(&d, &[0x1B, 0, 0, 0, 1, 0], vec![]).is_none());
    good(&run(&d, &[0x1E, 0, 0, 0, 1, 0], vec![]));
    let rs = run(&d, &[0x03, 0, 0, 0, 18, 0], vec![]).data;
    assert_eq!((rs[0], rs[2], rs.len()), (0x70, 0, 18));
    assert_eq!(run(&d, &[0x03, 1, 0, 0, 18, 0], vec![]).data[0], 0x72);
}

#[test]
fn nullio_is_inline() {
    let d = nullio(&[("size_mb", "1")]);
    let r = inline(&d, &rw10(READ_10, 0, 8, 0), vec![]).unwrap();
    good(&r);
    assert!(r.data.iter().all(|&b| b == 0) && r.data.len() == 4096);
    good(&inline(&d, &rw10(WRITE_10, 0, 1, FUA), vec![1; 512]).unwrap());
    good(&inline(&d, &rw10(VERIFY_10, 0, 1, 0x02), vec![1; 512]).unwrap());
    good(&inline(&d, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![]).unwrap());
    assert_eq!(
        sense(&inline(&d, &rw10(READ_10, 2048, 1, 0), vec![]).unwrap()),
        Sense::LBA_OUT_OF_RANGE
    );
}

#[test]
fn blockio_round_trip() {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(1 << 20).unwrap();
    let a = attrs(&[
        ("filename", f.path().to_str().unwrap()),
        ("blocksize", "4096"),
    ]);
    let d = create_device("vdisk_blockio", "b1", &a, 0).unwrap();
    let data = pattern(8192, 5);
    assert!(inline(&d, &rw10(WRITE_10, 2, 2, 0), data.clone()).is_none());
    good(&run(&d, &rw10(WRITE_10, 2, 2, 0), data.clone()));
    assert!(inline(&d, &rw10(READ_10, 2, 2, 0), vec![]).is_none());
    assert!(run(&d, &rw10(READ_10, 2, 2, 0), vec![]).data == data);
    assert_eq!(
        &run(&d, &[0x12, 0, 0, 0, 36, 0], vec![]).data[8..16],
        b"SCST_BIO"
    );
    let cap = run(&d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![]).data;
    assert_eq!(cap, vec![0, 0, 0, 255, 0, 0, 0x10, 0]);
}

#[test]
fn attributes_and_keys() {
    let (f, d) = fileio(2048, None, &[("nv_cache", "1"), ("usn", "SER1")]);
    let a = d.attributes();
    let get = |k: &str| a.iter().find(|(n, _, _)| n == k).cloned().unwrap();
    assert_eq!(
        get("filename"),
        ("filename".into(), f.path().to_str().unwrap().into(), true)
    );
    assert_eq!(get("nv_cache"), ("nv_cache".into(), "1".into(), true));
    assert_eq!(get("usn"), ("usn".into(), "SER1".into(), true));
    assert_eq!(
        get("size"),
        ("size".into(), (2048 * 512).to_string(), false)
    );
    assert_eq!(get("size_mb").1, "1");
    assert_eq!(get("blocksize"), ("blocksize".into(), "512".into(), false));
    assert_eq!(get("t10_vend_id").1, "SCST_FIO");
    assert!(d.flush().is_ok());
}

/// Arbitrary CDBs and data-out never panic, whatever the opcode.
#[test]
fn random_cdbs_never_panic() {
    let (_f, d) = fileio(64, None, &[]);
    let n = nullio(&[("size_mb", "1")]);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000u32 {
        let len = 1 + (next() % 32) as usize;
        let mut cdb: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        cdb[0] = (i % 256) as u8;
        // Keep transfer sizes small so the test stays fast.
        if len > 4 && next() % 2 == 0 {
            for b in cdb.iter_mut().skip(2) {
                *b &= 0x01;
            }
        }
        let data: Vec<u8> = (0..(next() % 1100) as usize)
            .map(|_| next() as u8)
            .collect();
        for dev in [&d, &n] {
            let _ = dev.execute(&CTX, &mut cmd(&cdb, data.clone()), ExecMode::Inline);
            let r = dev.execute(&CTX, &mut cmd(&cdb, data.clone()), ExecMode::Blocking);
            assert!(r.is_some());
        }
        d.reset();
    }
}

/// The NAA designators in a VPD 83h page.
fn naa_designators(page: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = 4;
    while p + 4 <= page.len() {
        let len = page[p + 3] as usize;
        if page[p + 1] & 0x0F == 3 {
            out.push(page[p + 4..p + 4 + len].to_vec());
        }
        p += 4 + len;
    }
    out
}

#[test]
fn every_device_reports_a_distinct_naa_designator_by_default() {
    let vpd83 = |name: &str, extra: &[(&str, &str)]| {
        let d = create_device("vdisk_nullio", name, &attrs(extra), 0).unwrap();
        let r = run(&d, &[0x12, 1, 0x83, 1, 0, 0], vec![]);
        good(&r);
        naa_designators(&r.data)
    };
    let a = vpd83("disk-a", &[]);
    let b = vpd83("disk-b", &[]);
    assert_eq!(a.len(), 1, "one NAA designator");
    assert_eq!(a[0].len(), 8);
    assert_eq!(a[0][0] >> 4, 3, "NAA 3h: locally assigned");
    assert_ne!(a, b, "distinct devices get distinct NAA designators");
    // A configured naa_id replaces the default.
    let c = vpd83("disk-a", &[("naa_id", "0x6001405aabbccdde")]);
    assert_eq!(
        c,
        vec![vec![0x60, 0x01, 0x40, 0x5a, 0xab, 0xbc, 0xcd, 0xde]]
    );
}

/// With the io_uring engine, a read that misses the page cache is started inline and
/// completes on the ring, and so does a stable write; the data is right either way.
#[test]
fn the_io_uring_engine_completes_commands_asynchronously() {
    use crate::backend::FileBackend;
    use crate::config::{Handler, VdiskConfig};
    use crate::IoEngine;
    use scst_core::Device;
    use std::os::unix::io::AsRawFd;
    use std::sync::Arc;
    if let Some(why) = crate::uring_unavailable() {
        eprintln!("io_uring test skipped: io_uring unavailable here: {why}");
        return;
    }
    let f = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
    f.as_file().set_len(4096 * 512).unwrap();
    let path = f.path().to_str().unwrap().to_string();
    let cfg =
        VdiskConfig::parse(Handler::Fileio, "disk1", &attrs(&[("filename", &path)]), 0).unwrap();
    let (b, size) = FileBackend::open_with(&path, false, false, true, IoEngine::Uring).unwrap();
    let d: Arc<dyn Device> = Arc::new(crate::sbc::Vdisk::new(cfg, b, size));
    let inline = |cdb: &[u8], data: Vec<u8>| -> (bool, Response) {
        match d.execute(&CTX, &mut cmd(cdb, data.clone()), ExecMode::Inline) {
            Some(mut r) => match r.deferred.take() {
                Some(deferred) => (true, crate::test_util::settle(deferred)),
                None => (false, r),
            },
            None => (false, run(&d, cdb, data)),
        }
    };
    // A FUA write never completes inline: here it goes to the ring.
    let data = pattern(64 * 512, 7);
    let (deferred, r) = inline(&rw10(WRITE_10, 100, 64, FUA), data.clone());
    good(&r);
    assert!(deferred, "a stable write is started on the ring");
    // Drop the cached pages so that the inline attempt of the read misses.
    // SAFETY: a hint on an open descriptor; no memory is passed.
    let rc =
        unsafe { libc::posix_fadvise(f.as_file().as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
    let (_, r) = inline(&rw10(READ_10, 100, 64, 0), vec![]);
    good(&r);
    assert!(r.data == data);
}

/// A backend whose every transfer fails with one OS error.
struct Broken(i32);

impl crate::backend::Backend for Broken {
    fn read(&self, _: &mut [u8], _: u64, _: ExecMode) -> crate::backend::IoOutcome {
        Some(Err(std::io::Error::from_raw_os_error(self.0)))
    }
    fn write(&self, _: &[u8], _: u64, _: bool, _: ExecMode) -> crate::backend::IoOutcome {
        Some(Err(std::io::Error::from_raw_os_error(self.0)))
    }
    fn flush(&self, _: ExecMode) -> crate::backend::IoOutcome {
        Some(Err(std::io::Error::from_raw_os_error(self.0)))
    }
}

fn broken(errno: i32) -> std::sync::Arc<dyn scst_core::Device> {
    use crate::config::{Handler, VdiskConfig};
    let a = attrs(&[("filename", "/nonexistent/broken")]);
    let cfg = VdiskConfig::parse(Handler::Fileio, "broken0", &a, 0).unwrap();
    std::sync::Arc::new(crate::sbc::Vdisk::new(cfg, Broken(errno), 1 << 20))
}

#[test]
fn backend_failures_reach_the_initiator_by_kind() {
    let write = rw16(WRITE_16, 0, 1, 0);
    let block = vec![0u8; 512];
    let d = broken(libc::EIO);
    assert_eq!(
        sense(&run(&d, &rw16(READ_16, 0, 1, 0), vec![])),
        Sense::READ_ERROR
    );
    assert_eq!(sense(&run(&d, &write, block.clone())), Sense::WRITE_ERROR);
    let mut sync_cache_10 = [0u8; 10];
    sync_cache_10[0] = scsi_wire::opcode::SYNCHRONIZE_CACHE_10;
    assert_eq!(sense(&run(&d, &sync_cache_10, vec![])), Sense::WRITE_ERROR);
    for errno in [libc::ENOSPC, libc::EDQUOT] {
        let s = sense(&run(&broken(errno), &write, block.clone()));
        assert_eq!(s, Sense::SPACE_ALLOCATION_FAILED);
    }
    let s = sense(&run(&broken(libc::EROFS), &write, block.clone()));
    assert_eq!((s.key, s), (key::DATA_PROTECT, Sense::WRITE_PROTECTED));
}

/// A write or read that must block stops inline with the rest of the command, which
/// runs on an "I/O thread" from there: with the LBA range still held (an exclusive
/// request on it waits until the rest has run) and the data-out written in place.
#[test]
fn a_command_that_must_block_resumes_where_it_stopped() {
    use crate::backend::FileBackend;
    use crate::config::{Handler, VdiskConfig};
    use crate::uring::IoEngine;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(64 * 512).unwrap();
    let path = f.path().to_str().unwrap().to_string();
    let cfg =
        VdiskConfig::parse(Handler::Fileio, "disk1", &attrs(&[("filename", &path)]), 0).unwrap();
    let (b, size) = FileBackend::open_with(&path, false, false, true, IoEngine::Threads).unwrap();
    let d = Arc::new(crate::sbc::Vdisk::new(cfg, b, size));
    let ranges = d.ranges.clone();
    let d: Arc<dyn scst_core::Device> = d;
    let data = pattern(2 * 512, 9);
    // FUA: stable storage, which never completes inline.
    let mut c = cmd(&rw10(WRITE_10, 4, 2, FUA), data.clone());
    let mut placeholder = d
        .execute(&CTX, &mut c, ExecMode::Inline)
        .expect("stops with the rest of the command");
    let rest = placeholder.resume.take().expect("resumable");
    let took_exclusive = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (ranges, took) = (ranges.clone(), took_exclusive.clone());
        std::thread::spawn(move || {
            let _g = ranges.exclusive(5, 1);
            took.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        !took_exclusive.load(Ordering::SeqCst),
        "the stopped write still holds its range"
    );
    good(&rest.run(&mut c));
    waiter.join().unwrap();
    assert!(took_exclusive.load(Ordering::SeqCst));
    assert_eq!(run(&d, &rw10(READ_10, 4, 2, 0), vec![]).data, data);
}
