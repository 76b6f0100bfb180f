//! Command-level tests of thin provisioning, WRITE SAME, GET LBA STATUS, PRE-FETCH,
//! READ DEFECT DATA and `data_out_len`, through the `Device` interface.

use crate::create_device;
use crate::test_util::{be32_at, exec, fileio_on, good, read, run, rw10, rw16, sense, CTX, RO_CTX};
use scsi_wire::sense::key;
use scsi_wire::Sense;
use scst_core::{Device, ExecMode, Response};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

/// A fileio device of `blocks` blocks of `bs` bytes over a temp file filled with 0xAB
/// (so every block starts allocated).
fn fileio(
    blocks: u64,
    bs: u32,
    extra: &[(&str, &str)],
) -> (tempfile::NamedTempFile, Arc<dyn Device>) {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file()
        .write_all_at(&vec![0xAB; (blocks * bs as u64) as usize], 0)
        .unwrap();
    f.as_file().sync_all().unwrap();
    let d = fileio_on(&f, "tp1", Some(bs), extra);
    (f, d)
}

fn thin(blocks: u64, bs: u32) -> (tempfile::NamedTempFile, Arc<dyn Device>) {
    fileio(blocks, bs, &[("thin_provisioned", "1")])
}

fn unmap_cdb(param_len: u16, anchor: bool) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x42;
    c[1] = anchor as u8;
    c[7..9].copy_from_slice(&param_len.to_be_bytes());
    c
}

fn unmap_list(descs: &[(u64, u32)]) -> Vec<u8> {
    let n = descs.len() * 16;
    let mut b = Vec::new();
    b.extend_from_slice(&((n + 6) as u16).to_be_bytes());
    b.extend_from_slice(&(n as u16).to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    for (lba, blocks) in descs {
        b.extend_from_slice(&lba.to_be_bytes());
        b.extend_from_slice(&blocks.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
    }
    b
}

fn unmap(d: &Arc<dyn Device>, descs: &[(u64, u32)]) -> Response {
    let l = unmap_list(descs);
    run(d, &unmap_cdb(l.len() as u16, false), l)
}

fn ws10(lba: u32, blocks: u16, flags: u8) -> [u8; 10] {
    rw10(0x41, lba, blocks, flags)
}

fn get_lba_status(d: &Arc<dyn Device>, lba: u64, alloc: u32) -> Response {
    let mut c = rw16(0x9E, lba, alloc, 0x12);
    c[1] = 0x12;
    run(d, &c, vec![])
}

/// (lba, blocks, status) of each GET LBA STATUS descriptor.
fn descriptors(data: &[u8]) -> Vec<(u64, u32, u8)> {
    data[8..]
        .chunks_exact(16)
        .map(|c| {
            (
                u64::from_be_bytes(c[..8].try_into().unwrap()),
                be32_at(c, 8),
                c[12],
            )
        })
        .collect()
}

fn vpd(d: &Arc<dyn Device>, page: u8) -> Response {
    run(d, &[0x12, 1, page, 0, 255, 0], vec![])
}

#[test]
fn data_out_len_through_the_device() {
    let (_f, d) = fileio(64, 4096, &[]);
    assert_eq!(
        d.data_out_len(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 2, 0]),
        Some(8192)
    );
    assert_eq!(d.data_out_len(&ws10(0, 9, 0)), Some(4096));
    assert_eq!(d.data_out_len(&[0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0]), None);
}

#[test]
fn provisioning_is_reported_only_when_thin() {
    let (_f, d) = thin(256, 512);
    let pages = vpd(&d, 0).data;
    assert_eq!(&pages[4..], &[0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2]);
    let b2 = vpd(&d, 0xB2).data;
    // LBPU, LBPWS, LBPWS10, LBPRZ; provisioning type thin.
    assert_eq!(b2, vec![0, 0xB2, 0, 4, 0, 0xE4, 2, 0]);
    let b0 = vpd(&d, 0xB0).data;
    let be32 = |o: usize| be32_at(&b0, o);
    assert_eq!(be32(20), (256 << 20) / 512); // MAXIMUM UNMAP LBA COUNT
    assert_eq!(be32(24), 4095); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
    assert_eq!(be32(28), 8); // OPTIMAL UNMAP GRANULARITY: one 4 KiB physical block
    assert_eq!(be32(32), 0x8000_0000); // UGAVALID, alignment 0
    assert_eq!(&b0[36..44], &((256u64 << 20) / 512).to_be_bytes()); // MAX WRITE SAME LEN
    let rc = run(&d, &rw16(0x9E, 0, 32, 0x10), vec![]).data;
    assert_eq!(rc[14] & 0xC0, 0xC0); // LBPME, LBPRZ
    let a = d.attributes();
    let tp = a.iter().find(|(k, _, _)| k == "thin_provisioned").unwrap();
    assert_eq!((tp.1.as_str(), tp.2), ("1", true));

    let (_f, full) = fileio(256, 512, &[]);
    assert_eq!(vpd(&full, 0).data.len(), 4 + 6);
    assert_eq!(
        sense(&vpd(&full, 0xB2)),
        Sense::invalid_field_in_cdb(2, None)
    );
    let b0 = vpd(&full, 0xB0).data;
    assert_eq!(&b0[20..32], &[0; 12]); // no UNMAP limits without UNMAP
    assert_ne!(&b0[36..44], &[0; 8]); // WRITE SAME works anyway
    assert_eq!(run(&full, &rw16(0x9E, 0, 32, 0x10), vec![]).data[14], 0);
}

#[test]
fn unmap_frees_space_and_reads_back_zeros() {
    let (f, d) = thin(256, 4096); // 1 MiB
    let before = f.as_file().metadata().unwrap().blocks();
    // Not yet: UNMAP that would block completes on an I/O thread.
    let l = unmap_list(&[(16, 64), (128, 64)]);
    assert!(exec(
        &d,
        &CTX,
        &unmap_cdb(l.len() as u16, false),
        l,
        ExecMode::Inline
    )
    .is_none());
    good(&unmap(&d, &[(16, 64), (128, 64)]));
    let after = f.as_file().metadata().unwrap().blocks();
    // 128 blocks of 4 KiB = 512 KiB = 1024 sectors freed.
    assert!(before - after >= 1024, "st_blocks {before} -> {after}");
    assert!(read(&d, 16, 64).iter().all(|&b| b == 0));
    assert!(read(&d, 128, 64).iter().all(|&b| b == 0));
    assert!(read(&d, 0, 16).iter().all(|&b| b == 0xAB));
    assert!(read(&d, 80, 48).iter().all(|&b| b == 0xAB));
    assert!(read(&d, 192, 64).iter().all(|&b| b == 0xAB));
    // A sub-physical-block UNMAP on 512-byte blocks still reads back zeros.
    let (_f, d) = thin(64, 512);
    good(&unmap(&d, &[(3, 2)]));
    assert!(read(&d, 3, 2).iter().all(|&b| b == 0));
    assert!(read(&d, 2, 1).iter().all(|&b| b == 0xAB));
    assert!(read(&d, 5, 1).iter().all(|&b| b == 0xAB));
}

#[test]
fn unmap_field_checks() {
    let (_f, d) = thin(256, 512);
    // Nothing to do: empty list, header only, zero-block descriptors (also at the end).
    good(&run(&d, &unmap_cdb(0, false), vec![]));
    good(&unmap(&d, &[]));
    good(&unmap(&d, &[(0, 0), (256, 0)]));
    // Nothing to do never blocks.
    let l = unmap_list(&[(5, 0)]);
    good(
        &exec(
            &d,
            &CTX,
            &unmap_cdb(l.len() as u16, false),
            l,
            ExecMode::Inline,
        )
        .unwrap(),
    );
    // ANCHOR is not supported.
    let l = unmap_list(&[(0, 1)]);
    assert_eq!(
        sense(&run(&d, &unmap_cdb(l.len() as u16, true), l.clone())),
        Sense::invalid_field_in_cdb(1, Some(0))
    );
    // Parameter list shorter than its header.
    assert_eq!(
        sense(&run(&d, &unmap_cdb(4, false), l[..4].to_vec())),
        Sense::PARAM_LIST_LENGTH_ERROR
    );
    // Header lengths beyond the parameter list length.
    assert_eq!(
        sense(&run(&d, &unmap_cdb(20, false), l[..20].to_vec())),
        Sense::invalid_field_in_param(0, None)
    );
    let mut bad = l.clone();
    bad[2..4].copy_from_slice(&32u16.to_be_bytes());
    assert_eq!(
        sense(&run(&d, &unmap_cdb(bad.len() as u16, false), bad)),
        Sense::invalid_field_in_param(2, None)
    );
    // Ranges: past the end, at the end, u64 overflow. Nothing is deallocated when a
    // later descriptor is bad.
    assert_eq!(
        sense(&unmap(&d, &[(0, 8), (250, 7)])),
        Sense::LBA_OUT_OF_RANGE
    );
    assert!(read(&d, 0, 8).iter().all(|&b| b == 0xAB));
    assert_eq!(sense(&unmap(&d, &[(256, 1)])), Sense::LBA_OUT_OF_RANGE);
    assert_eq!(sense(&unmap(&d, &[(u64::MAX, 2)])), Sense::LBA_OUT_OF_RANGE);
    // MAXIMUM UNMAP LBA COUNT is per command: point at the descriptor crossing it.
    let big_file = tempfile::NamedTempFile::new().unwrap();
    big_file.as_file().set_len(512 << 20).unwrap(); // sparse: nothing written
    let a = vec![
        (
            "filename".to_string(),
            big_file.path().to_str().unwrap().to_string(),
        ),
        ("thin_provisioned".to_string(), "1".to_string()),
    ];
    let big = create_device("vdisk_fileio", "big", &a, 0).unwrap();
    assert_eq!(
        sense(&unmap(&big, &[(0, 1 << 19), (1 << 19, 1)])),
        Sense::invalid_field_in_param(24 + 8, None)
    );
    // Write protection.
    let l = unmap_list(&[(0, 1)]);
    let r = exec(
        &d,
        &RO_CTX,
        &unmap_cdb(l.len() as u16, false),
        l,
        ExecMode::Blocking,
    )
    .unwrap();
    assert_eq!(sense(&r), Sense::WRITE_PROTECTED);
    // Without thin provisioning UNMAP is not supported at all.
    let (_f, full) = fileio(256, 512, &[]);
    assert_eq!(sense(&unmap(&full, &[(0, 1)])), Sense::INVALID_OPCODE);
    let n = create_device("vdisk_nullio", "n", &[], 0).unwrap();
    assert_eq!(sense(&unmap(&n, &[(0, 1)])), Sense::INVALID_OPCODE);
}

#[test]
fn write_same_writes_and_unmaps() {
    let (_f, d) = thin(8192, 512);
    let block: Vec<u8> = (0..512).map(|i| i as u8).collect();
    // More than one internal chunk (1 MiB) at an offset.
    assert!(exec(
        &d,
        &CTX,
        &ws10(100, 4000, 0),
        block.clone(),
        ExecMode::Inline
    )
    .is_none());
    good(&run(&d, &ws10(100, 4000, 0), block.clone()));
    let back = read(&d, 99, 4002);
    assert!(back[..512].iter().all(|&b| b == 0xAB));
    assert!(back[512..512 * 4001].chunks(512).all(|c| c == &block[..]));
    assert!(back[512 * 4001..].iter().all(|&b| b == 0xAB));
    // WRITE SAME(16) with UNMAP deallocates whatever the data says.
    good(&run(&d, &rw16(0x93, 200, 16, 0x08), vec![0xFF; 512]));
    assert!(read(&d, 200, 16).iter().all(|&b| b == 0));
    // WRITE SAME(10) with UNMAP.
    good(&run(&d, &ws10(300, 8, 0x08), vec![0; 512]));
    assert!(read(&d, 300, 8).iter().all(|&b| b == 0));
    // NDOB: no data-out, zeros written.
    assert_eq!(d.data_out_len(&rw16(0x93, 0, 4, 0x01)), Some(0));
    good(&run(&d, &rw16(0x93, 400, 4, 0x01), vec![]));
    assert!(read(&d, 400, 4).iter().all(|&b| b == 0));
    // Up to the last block, and the whole of the maximum length.
    good(&run(&d, &ws10(8191, 1, 0), block.clone()));
    assert_eq!(read(&d, 8191, 1), block);
}

#[test]
fn write_same_zero_blocks_beyond_the_maximum_length_is_refused() {
    // 512 MiB sparse: more blocks than MAXIMUM WRITE SAME LENGTH (256 MiB).
    let (_f, d) = thin(1 << 20, 512);
    let blk = || vec![7u8; 512];
    assert_eq!(
        sense(&run(&d, &ws10(0, 0, 0), blk())),
        Sense::invalid_field_in_cdb(7, None)
    );
    assert_eq!(
        sense(&run(&d, &rw16(0x93, 0, 0, 0), blk())),
        Sense::invalid_field_in_cdb(10, None)
    );
    // Exactly the maximum from the end: written.
    good(&run(&d, &ws10((1 << 20) - 524_288, 0, 0x08), blk()));
}

#[test]
fn write_same_field_checks() {
    let (_f, d) = thin(1024, 512);
    let blk = || vec![7u8; 512];
    // WSNZ=0: zero blocks reaches to the end of the medium; an LBA beyond the end is
    // still out of range (below).
    good(&run(&d, &ws10(1000, 0, 0), blk()));
    assert!(read(&d, 1000, 24).iter().all(|&b| b == 7));
    good(&run(&d, &rw16(0x93, 1020, 0, 0), vec![9u8; 512]));
    assert!(read(&d, 1020, 4).iter().all(|&b| b == 9));
    assert_eq!(
        sense(&run(&d, &ws10(1025, 0, 0), blk())),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &ws10(1024, 1, 0), blk())),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &ws10(u32::MAX, 0, 0), blk())),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &ws10(1000, 25, 0), blk())),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &rw16(0x93, u64::MAX, 2, 0), blk())),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &rw16(0x93, 1 << 63, 1, 0), blk())),
        Sense::LBA_OUT_OF_RANGE
    );
    // WRPROTECT and ANCHOR.
    assert_eq!(
        sense(&run(&d, &ws10(0, 1, 0x20), blk())),
        Sense::invalid_field_in_cdb(1, Some(7))
    );
    assert_eq!(
        sense(&run(&d, &ws10(0, 1, 0x10), blk())),
        Sense::invalid_field_in_cdb(1, Some(4))
    );
    assert_eq!(
        sense(&run(&d, &ws10(0, 1, 0x18), blk())),
        Sense::invalid_field_in_cdb(1, Some(4))
    );
    // Read-only LUN.
    let r = exec(&d, &RO_CTX, &ws10(0, 1, 0), blk(), ExecMode::Blocking).unwrap();
    let s = sense(&r);
    assert_eq!((s.key, s.asc), (key::DATA_PROTECT, 0x27));
    // MAXIMUM WRITE SAME LENGTH.
    let (_f, big) = fileio(1, 512, &[]);
    let max = (256u32 << 20) / 512;
    assert_eq!(
        sense(&run(&big, &rw16(0x93, 0, max + 1, 0), blk())),
        Sense::LBA_OUT_OF_RANGE
    );
    let n = create_device("vdisk_nullio", "n", &[], 0).unwrap();
    assert_eq!(
        sense(&run(&n, &rw16(0x93, 0, max + 1, 0), blk())),
        Sense::invalid_field_in_cdb(10, None)
    );
    good(&exec(&n, &CTX, &rw16(0x93, 0, max, 0), blk(), ExecMode::Inline).unwrap());
    // UNMAP bit needs thin provisioning; plain WRITE SAME does not.
    assert_eq!(
        sense(&run(&n, &ws10(0, 1, 0x08), blk())),
        Sense::INVALID_OPCODE
    );
    let (_f, full) = fileio(64, 512, &[]);
    assert_eq!(
        sense(&run(&full, &ws10(0, 1, 0x08), blk())),
        Sense::INVALID_OPCODE
    );
    good(&run(&full, &ws10(0, 2, 0), blk()));
    assert_eq!(read(&full, 0, 2), vec![7u8; 1024]);
}

#[test]
fn get_lba_status_reports_real_extents() {
    let (_f, d) = thin(256, 4096);
    good(&unmap(&d, &[(8, 8), (100, 56)]));
    let r = get_lba_status(&d, 0, 8 + 16 * 8);
    good(&r);
    assert_eq!(
        u32::from_be_bytes(r.data[..4].try_into().unwrap()) as usize,
        r.data.len() - 4
    );
    assert_eq!(
        descriptors(&r.data),
        vec![
            (0, 8, 0),
            (8, 8, 1),
            (16, 84, 0),
            (100, 56, 1),
            (156, 100, 0)
        ]
    );
    // The first descriptor starts at the requested LBA.
    let r = get_lba_status(&d, 10, 24);
    assert_eq!(r.data.len(), 24);
    assert_eq!(descriptors(&r.data), vec![(10, 6, 1)]);
    assert_eq!(
        descriptors(&get_lba_status(&d, 255, 24).data),
        vec![(255, 1, 0)]
    );
    // Allocation length cuts the data.
    assert_eq!(get_lba_status(&d, 0, 10).data.len(), 10);
    // Beyond the end.
    for lba in [256, 257, 1 << 63, u64::MAX] {
        assert_eq!(sense(&get_lba_status(&d, lba, 24)), Sense::LBA_OUT_OF_RANGE);
    }
    // Walking the file's extents waits for an I/O thread.
    let mut c = rw16(0x9E, 0, 24, 0x12);
    c[1] = 0x12;
    assert!(exec(&d, &CTX, &c, vec![], ExecMode::Inline).is_none());
    // Fully provisioned: one mapped extent to the end, even over holes.
    let (f, full) = fileio(64, 512, &[]);
    f.as_file().set_len(1 << 20).unwrap();
    assert_eq!(
        descriptors(&get_lba_status(&full, 3, 24).data),
        vec![(3, 61, 0)]
    );
    let n = create_device("vdisk_nullio", "n", &[], 0).unwrap();
    let r = exec(&n, &CTX, &c, vec![], ExecMode::Inline).unwrap();
    let nblocks = (5u64 << 39) / 512;
    assert_eq!(descriptors(&r.data), vec![(0, u32::MAX, 0)]);
    assert!(nblocks > u32::MAX as u64);
}

#[test]
fn pre_fetch() {
    let (_f, d) = fileio(256, 512, &[]);
    let pf10 = |lba: u32, n: u16, flags: u8| {
        let mut c = [0u8; 10];
        c[0] = 0x34;
        c[1] = flags;
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[6] = 3; // GROUP NUMBER: ignored
        c[7..9].copy_from_slice(&n.to_be_bytes());
        c
    };
    good(&run(&d, &pf10(0, 8, 0), vec![]));
    good(&run(&d, &pf10(0, 8, 0x02), vec![]));
    good(&run(&d, &pf10(0, 0, 0), vec![]));
    good(&run(&d, &pf10(255, 1, 0), vec![]));
    assert_eq!(
        sense(&run(&d, &pf10(255, 2, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &pf10(257, 0, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &pf10(u32::MAX, 0, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    good(&run(&d, &rw16(0x90, 10, 20, 0), vec![]));
    assert_eq!(
        sense(&run(&d, &rw16(0x90, u64::MAX, 1, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &rw16(0x90, 1 << 63, 0, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    assert!(exec(&d, &CTX, &pf10(0, 8, 0), vec![], ExecMode::Inline).is_none());
    let n = create_device("vdisk_nullio", "n", &[], 0).unwrap();
    good(&exec(&n, &CTX, &pf10(0, 8, 0), vec![], ExecMode::Inline).unwrap());
}

#[test]
fn read_defect_data_is_empty() {
    let (_f, d) = fileio(16, 512, &[]);
    let r = run(&d, &[0x37, 0, 0x18, 0, 0, 0, 0, 0, 32, 0], vec![]);
    good(&r);
    assert_eq!(r.data, vec![0, 0x18, 0, 0]);
    let r = run(
        &d,
        &[0xB7, 0x08 | 0x05, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        vec![],
    );
    good(&r);
    assert_eq!(r.data, vec![0, 0x0D, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        run(&d, &[0x37, 0, 0, 0, 0, 0, 0, 0, 2, 0], vec![])
            .data
            .len(),
        2
    );
    assert!(run(&d, &[0xB7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![])
        .data
        .is_empty());
}

/// Random CDBs and parameter lists for the commands of this module never panic, on a
/// thin device, in either mode.
#[test]
fn random_provisioning_cdbs_never_panic() {
    let (_f, d) = thin(64, 512);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ops = [0x41u8, 0x42, 0x93, 0x9E, 0x34, 0x90, 0x37, 0xB7];
    for i in 0..4000usize {
        let op = ops[i % ops.len()];
        let len = scsi_wire::cdb::cdb_len(op);
        let mut cdb: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        cdb[0] = op;
        if op == 0x9E {
            cdb[1] = 0x12;
        }
        // Mostly small numbers, so that some commands get past the range checks.
        if next() % 2 == 0 {
            for b in cdb.iter_mut().skip(2) {
                *b &= 0x03;
            }
        }
        let mut data: Vec<u8> = (0..(next() % 600) as usize).map(|_| next() as u8).collect();
        if op == 0x42 && data.len() >= 8 && next() % 2 == 0 {
            // A plausible header over random descriptors.
            let n = ((data.len() - 8) / 16 * 16) as u16;
            data[0..2].copy_from_slice(&(n + 6).to_be_bytes());
            data[2..4].copy_from_slice(&n.to_be_bytes());
        }
        if let Some(n) = d.data_out_len(&cdb) {
            data.resize(n.min(1 << 20) as usize, 0);
        }
        let _ = exec(&d, &CTX, &cdb, data.clone(), ExecMode::Inline);
        assert!(exec(&d, &CTX, &cdb, data, ExecMode::Blocking).is_some());
    }
}
