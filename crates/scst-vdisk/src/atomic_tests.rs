//! Command-level tests of COMPARE AND WRITE, ORWRITE(16), WRITE ATOMIC(16), REPORT
//! SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS and the standard INQUIRY
//! bits, through the `Device` interface.

use crate::test_util::{
    be32_at, exec, fileio, good, nullio, pattern, read, run, rw16, sense, write, CTX, RO_CTX,
};
use scsi_wire::Sense;
use scst_core::{Device, ExecMode};
use std::sync::Arc;

const CAW: u8 = 0x89;
const ORWRITE: u8 = 0x8B;
const WRITE_ATOMIC: u8 = 0x9C;

fn caw(lba: u64, blocks: u8, flags: u8) -> [u8; 16] {
    rw16(CAW, lba, blocks as u32, flags)
}

fn write_atomic(lba: u64, blocks: u16, boundary: u16, flags: u8) -> [u8; 16] {
    let mut c = rw16(WRITE_ATOMIC, lba, 0, flags);
    c[10..12].copy_from_slice(&boundary.to_be_bytes());
    c[12..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn compare_and_write_swaps_on_match_only() {
    let (_f, d) = fileio(64, Some(512), &[]);
    let a = pattern(512, 1);
    let b = pattern(512, 2);
    write(&d, 5, a.clone(), 512);
    good(&run(&d, &caw(5, 1, 0), [a.clone(), b.clone()].concat()));
    assert!(read(&d, 5, 1) == b);
    // The medium now holds B: comparing with A fails at byte 0, nothing is written.
    let s = sense(&run(&d, &caw(5, 1, 0), [a.clone(), a.clone()].concat()));
    assert_eq!(s, Sense::MISCOMPARE.with_information(0));
    assert!(read(&d, 5, 1) == b);
    // INFORMATION is the offset of the first differing byte.
    let mut almost = b.clone();
    almost[300] ^= 0xFF;
    almost[400] ^= 0xFF;
    let s = sense(&run(&d, &caw(5, 1, 0), [almost, a.clone()].concat()));
    assert_eq!(s, Sense::MISCOMPARE.with_information(300));
    // Several blocks, difference 27 bytes before the end of the last (libiscsi).
    let big = pattern(3 * 512, 3);
    write(&d, 10, big.clone(), 512);
    let mut cmp = big.clone();
    cmp[3 * 512 - 27] ^= 1;
    let s = sense(&run(&d, &caw(10, 3, 0), [cmp, vec![0; 3 * 512]].concat()));
    assert_eq!(s.information, Some(3 * 512 - 27));
    assert!(read(&d, 10, 3) == big);
    // FUA and DPO are accepted; the last block of the LUN is reachable.
    write(&d, 63, a.clone(), 512);
    good(&run(&d, &caw(63, 1, 0x18), [a, b.clone()].concat()));
    assert!(read(&d, 63, 1) == b);
}

#[test]
fn compare_and_write_field_checks() {
    let (_f, d) = fileio(64, Some(512), &[]);
    let two = vec![0u8; 1024];
    // 0 blocks: no-op GOOD, LBA still range checked.
    good(&run(&d, &caw(3, 0, 0), vec![]));
    good(&run(&d, &caw(64, 0, 0), vec![]));
    assert_eq!(
        sense(&run(&d, &caw(65, 0, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &caw(64, 1, 0), two.clone())),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &caw(63, 2, 0), vec![0; 2048])),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &caw(u64::MAX, 2, 0), vec![0; 2048])),
        Sense::LBA_OUT_OF_RANGE
    );
    // WRPROTECT without T10-PI.
    for p in 1..8u8 {
        assert_eq!(
            sense(&run(&d, &caw(0, 1, p << 5), two.clone())),
            Sense::invalid_field_in_cdb(1, Some(7))
        );
    }
    // Data-out shorter than verify + write data.
    assert_eq!(
        sense(&run(&d, &caw(0, 1, 0), vec![0; 512])),
        Sense::invalid_field_in_cdb(13, None)
    );
    // Read-only LUN: DATA PROTECT before anything else.
    let r = exec(
        &d,
        &RO_CTX,
        &caw(0, 1, 0x20),
        two.clone(),
        ExecMode::Blocking,
    )
    .unwrap();
    assert_eq!(sense(&r), Sense::WRITE_PROTECTED);
    // Truncated CDB.
    assert_eq!(sense(&run(&d, &caw(0, 1, 0)[..12], two.clone())).asc, 0x24);
    // Valid commands defer to an I/O thread; invalid ones fail inline.
    assert!(exec(&d, &CTX, &caw(0, 1, 0), two.clone(), ExecMode::Inline).is_none());
    let r = exec(&d, &CTX, &caw(64, 1, 0), two, ExecMode::Inline).unwrap();
    assert_eq!(sense(&r), Sense::LBA_OUT_OF_RANGE);
}

#[test]
fn compare_and_write_length_limit() {
    // MAXIMUM COMPARE AND WRITE LENGTH 255 at every block size we accept, and 255
    // blocks work (libiscsi Simple/Miscompare go up to it).
    for bs in [512u32, 4096] {
        let (_f, d) = fileio(300, Some(bs), &[]);
        let b0 = run(&d, &[0x12, 1, 0xB0, 0, 64, 0], vec![]);
        good(&b0);
        assert_eq!(b0.data[5], 255);
        let len = 255 * bs as usize;
        good(&run(
            &d,
            &caw(45, 255, 0),
            [vec![0; len], vec![1; len]].concat(),
        ));
        assert!(read(&d, 45, 255).iter().all(|&b| b == 1));
    }
}

#[test]
fn compare_and_write_on_nullio_always_matches() {
    let d = nullio(&[]);
    good(&run(&d, &caw(0, 2, 0), pattern(4 * 512, 9)));
}

/// Several sessions incrementing one counter with read + COMPARE AND WRITE: the
/// compare-and-swap must never let two of them succeed on the same old value.
#[test]
fn compare_and_write_counter_never_loses_an_update() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 60;
    let (_f, d) = fileio(16, Some(512), &[]);
    let block = |v: u64| {
        let mut b = vec![0u8; 512];
        b[..8].copy_from_slice(&v.to_le_bytes());
        b
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                let mut misses = 0u64;
                while done < PER_THREAD {
                    let cur = read(&d, 7, 1);
                    let v = u64::from_le_bytes(cur[..8].try_into().unwrap());
                    let r = run(&d, &caw(7, 1, 0), [block(v), block(v + 1)].concat());
                    match r.sense {
                        None => done += 1,
                        Some(s) => {
                            assert_eq!((s.key, s.asc), (0x0E, 0x1D), "{s:?}");
                            misses += 1;
                        }
                    }
                }
                misses
            })
        })
        .collect();
    // Ordinary writes to a neighbouring block share the lock without disturbing it.
    let writer = {
        let d = d.clone();
        std::thread::spawn(move || {
            for i in 0..100u64 {
                write(&d, 8, block(i), 512);
            }
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    writer.join().unwrap();
    let v = u64::from_le_bytes(read(&d, 7, 1)[..8].try_into().unwrap());
    assert_eq!(v, THREADS * PER_THREAD);
}

#[test]
fn orwrite_merges_bits() {
    let (_f, d) = fileio(64, Some(512), &[]);
    write(&d, 2, vec![0x0F; 1024], 512);
    good(&run(&d, &rw16(ORWRITE, 2, 2, 0x18), vec![0x30; 1024]));
    assert!(read(&d, 2, 2).iter().all(|&b| b == 0x3F));
    // Neighbours untouched.
    assert!(read(&d, 4, 1).iter().all(|&b| b == 0));
    good(&run(&d, &rw16(ORWRITE, 64, 0, 0), vec![]));
    assert_eq!(
        sense(&run(&d, &rw16(ORWRITE, 63, 2, 0), vec![0; 1024])),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &rw16(ORWRITE, 0, 1, 0x40), vec![0; 512])),
        Sense::invalid_field_in_cdb(1, Some(7))
    );
    // Longer than MAXIMUM TRANSFER LENGTH (after the range check, as for WRITE).
    assert_eq!(
        sense(&run(&d, &rw16(ORWRITE, 0, 1 << 20, 0), vec![])),
        Sense::LBA_OUT_OF_RANGE
    );
    let (_g, big) = fileio(20000, Some(512), &[]);
    assert_eq!(
        sense(&run(&big, &rw16(ORWRITE, 0, 16385, 0), vec![])),
        Sense::invalid_field_in_cdb(10, None)
    );
    assert_eq!(
        sense(&run(&d, &rw16(ORWRITE, 0, 2, 0), vec![0; 512])),
        Sense::invalid_field_in_cdb(10, None)
    );
    let r = exec(
        &d,
        &RO_CTX,
        &rw16(ORWRITE, 0, 1, 0),
        vec![0; 512],
        ExecMode::Blocking,
    );
    assert_eq!(sense(&r.unwrap()), Sense::WRITE_PROTECTED);
    assert!(exec(
        &d,
        &CTX,
        &rw16(ORWRITE, 0, 1, 0),
        vec![0; 512],
        ExecMode::Inline
    )
    .is_none());
}

#[test]
fn write_atomic_limits_and_checks() {
    // 512-byte blocks over 4096-byte physical blocks: atomic unit 8 blocks.
    let (_f, d) = fileio(1024, Some(512), &[]);
    let b0 = run(&d, &[0x12, 1, 0xB0, 0, 64, 0], vec![]);
    good(&b0);
    let b = &b0.data;
    let max = be32_at(b, 44);
    assert_eq!(
        max, 65528,
        "WRITE ATOMIC(16)'s 16-bit length, in whole 8-block units"
    );
    assert!(max <= be32_at(b, 8), "<= MAXIMUM TRANSFER LENGTH");
    assert_eq!((be32_at(b, 48), be32_at(b, 52)), (8, 8));
    assert_eq!((be32_at(b, 56), be32_at(b, 60)), (max, max));

    let data = pattern(8 * 512, 5);
    good(&run(&d, &write_atomic(8, 8, 0, 0x18), data.clone()));
    assert!(read(&d, 8, 8) == data);
    good(&run(&d, &write_atomic(1016, 8, 8, 0), data.clone()));
    // Zero blocks: GOOD, but the LBA is range checked.
    good(&run(&d, &write_atomic(0, 0, 0, 0), vec![]));
    for lba in [1025, 1 << 63, u64::MAX - 7] {
        assert_eq!(
            sense(&run(&d, &write_atomic(lba, 0, 0, 0), vec![])),
            Sense::LBA_OUT_OF_RANGE
        );
    }
    // Out of range wins over misalignment (libiscsi BeyondEol).
    assert_eq!(
        sense(&run(&d, &write_atomic(1020, 8, 0, 0), data.clone())),
        Sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        sense(&run(&d, &write_atomic(1 << 63, 8, 0, 0), data.clone())),
        Sense::LBA_OUT_OF_RANGE
    );
    // Misaligned LBA, length not a multiple of the granularity, too long, boundary.
    assert_eq!(
        sense(&run(&d, &write_atomic(1, 8, 0, 0), data.clone())),
        Sense::invalid_field_in_cdb(2, None)
    );
    assert_eq!(
        sense(&run(&d, &write_atomic(0, 4, 0, 0), vec![0; 2048])),
        Sense::invalid_field_in_cdb(12, None)
    );
    // Past the maximum (65528 blocks) in length, and in boundary size.
    let (_g, big) = fileio(70000, Some(512), &[]);
    assert_eq!(
        sense(&run(&big, &write_atomic(0, 65535, 0, 0), vec![])),
        Sense::invalid_field_in_cdb(12, None)
    );
    assert_eq!(
        sense(&run(&big, &write_atomic(0, 8, 65535, 0), data.clone())),
        Sense::invalid_field_in_cdb(10, None)
    );
    for p in 1..8u8 {
        assert_eq!(
            sense(&run(&d, &write_atomic(0, 8, 0, p << 5), data.clone())),
            Sense::invalid_field_in_cdb(1, Some(7))
        );
    }
    let r = exec(
        &d,
        &RO_CTX,
        &write_atomic(0, 8, 0, 0),
        data.clone(),
        ExecMode::Blocking,
    );
    assert_eq!(sense(&r.unwrap()), Sense::WRITE_PROTECTED);
    assert!(exec(&d, &CTX, &write_atomic(0, 8, 0, 0), data, ExecMode::Inline).is_none());

    // 4096-byte blocks: one block is a physical block, no constraint left.
    let (_h, d4) = fileio(64, Some(4096), &[]);
    let b0 = run(&d4, &[0x12, 1, 0xB0, 0, 64, 0], vec![]);
    assert_eq!((be32_at(&b0.data, 48), be32_at(&b0.data, 52)), (1, 1));
    good(&run(&d4, &write_atomic(3, 1, 0, 0), vec![7; 4096]));
}

/// Parsed all_commands data: (opcode, service action, servactv, cdb length, ctdp).
fn parse_all(b: &[u8]) -> Vec<(u8, u16, bool, u16, bool)> {
    let len = be32_at(b, 0) as usize;
    assert_eq!(len, b.len() - 4);
    let mut out = Vec::new();
    let mut p = 4;
    while p < b.len() {
        let ctdp = b[p + 5] & 0x02 != 0;
        out.push((
            b[p],
            u16::from_be_bytes([b[p + 2], b[p + 3]]),
            b[p + 5] & 0x01 != 0,
            u16::from_be_bytes([b[p + 6], b[p + 7]]),
            ctdp,
        ));
        if ctdp {
            assert_eq!(&b[p + 8..p + 10], &[0, 0x0A]);
            p += 20;
        } else {
            p += 8;
        }
    }
    out
}

fn rsoc(options: u8, opcode: u8, sa: u16, alloc: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = 0xA3;
    c[1] = 0x0C;
    c[2] = options;
    c[3] = opcode;
    c[4..6].copy_from_slice(&sa.to_be_bytes());
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

#[test]
fn report_supported_opcodes_all() {
    let (_f, d) = fileio(64, Some(512), &[]);
    let r = run(&d, &rsoc(0, 0, 0, 65535), vec![]);
    good(&r);
    let all = parse_all(&r.data);
    let has = |op: u8, sa: u16| all.iter().any(|e| e.0 == op && e.1 == sa);
    for op in [
        0x00, 0x03, 0x12, 0x16, 0x17, 0x28, 0x2A, 0x56, 0x57, 0x89, 0x8B, 0x9C, 0xA0,
    ] {
        assert!(has(op, 0), "{op:#x} missing");
    }
    for sa in 0..4 {
        assert!(has(0x5E, sa));
    }
    for sa in 0..8 {
        assert!(has(0x5F, sa));
    }
    assert!(has(0x9E, 0x10) && has(0xA3, 0x0C) && has(0xA3, 0x0D));
    // UNMAP only with thin provisioning; WRITE SAME either way.
    assert!(!all.iter().any(|e| e.0 == 0x42));
    assert!(has(0x41, 0) && has(0x93, 0));
    for e in &all {
        // SERVACTV clear means service action 0 (libiscsi ServActV), no CTDP w/o RCTD.
        assert!(e.2 || e.1 == 0, "{e:?}");
        assert!(!e.4 && e.3 > 0);
    }
    // RCTD: every descriptor carries a timeouts descriptor.
    let r = run(&d, &rsoc(0x80, 0, 0, 65535), vec![]);
    let with = parse_all(&r.data);
    assert_eq!(with.len(), all.len());
    assert!(with.iter().all(|e| e.4));
    // Allocation length truncates.
    let r = run(&d, &rsoc(0, 0, 0, 10), vec![]);
    good(&r);
    assert_eq!(r.data.len(), 10);

    let (_t, thin) = fileio(64, Some(512), &[("thin_provisioned", "1")]);
    let all = parse_all(&run(&thin, &rsoc(0, 0, 0, 65535), vec![]).data);
    assert!(all.iter().any(|e| e.0 == 0x42));
    // WRITE SAME's UNMAP bit is reported only when thin provisioned.
    let ws = |d: &Arc<dyn Device>| run(d, &rsoc(1, 0x93, 0, 512), vec![]).data[5];
    assert_eq!(ws(&thin) & 0x08, 0x08);
    assert_eq!(ws(&d) & 0x08, 0);
}

#[test]
fn report_supported_opcodes_one_command() {
    let (_f, d) = fileio(64, Some(512), &[]);
    // Every listed command answers in its one_command form (libiscsi OneCommand).
    let all = parse_all(&run(&d, &rsoc(0, 0, 0, 65535), vec![]).data);
    for &(op, sa, servactv, cdb_len, _) in &all {
        let (right, wrong) = if servactv { (2, 1) } else { (1, 2) };
        let r = run(&d, &rsoc(right, op, sa, 512), vec![]);
        good(&r);
        assert_eq!(r.data[1] & 0x07, 0x03, "{op:#x}/{sa:#x}");
        assert_eq!(u16::from_be_bytes([r.data[2], r.data[3]]), cdb_len);
        assert_eq!(r.data[4], op);
        assert_eq!(r.data.len(), 4 + cdb_len as usize);
        assert_eq!(
            sense(&run(&d, &rsoc(wrong, op, sa, 512), vec![])),
            Sense::invalid_field_in_cdb(2, Some(2)),
            "{op:#x}"
        );
        good(&run(&d, &rsoc(3, op, sa, 512), vec![]));
    }
    // READ(10): DPO/FUA/RDPROTECT honoured, GROUP NUMBER and CONTROL ignored.
    let r = run(&d, &rsoc(1, 0x28, 0, 512), vec![]);
    assert_eq!(
        &r.data[4..],
        &[0x28, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0]
    );
    // DPO/FUA of WRITE ATOMIC and ORWRITE (libiscsi DpoFua tests).
    for op in [0x9C, 0x8B, 0x89] {
        assert_eq!(run(&d, &rsoc(1, op, 0, 512), vec![]).data[5] & 0x18, 0x18);
    }
    // With RCTD: CTDP and a 12-byte timeouts descriptor.
    let r = run(&d, &rsoc(0x81, 0x28, 0, 512), vec![]);
    assert_eq!(r.data[1], 0x83);
    assert_eq!(r.data.len(), 4 + 10 + 12);
    assert_eq!(&r.data[14..16], &[0, 0x0A]);
    // Service action forms.
    let r = run(&d, &rsoc(2, 0x9E, 0x10, 512), vec![]);
    assert_eq!(&r.data[..6], &[0, 0x03, 0, 16, 0x9E, 0x10]);
    // REPORT TARGET PORT GROUPS, which the core answers for every device.
    let r = run(&d, &rsoc(3, 0xA3, 0x0A, 512), vec![]);
    assert_eq!(&r.data[..6], &[0, 0x03, 0, 12, 0xA3, 0xEA]);
    // Unsupported: SUPPORT 001b, not an error.
    for c in [
        rsoc(1, 0xC5, 0, 512),
        rsoc(2, 0x9E, 0x1F, 512),
        rsoc(2, 0x7F, 3, 512),
        rsoc(3, 0x28, 1, 512),
        // REPORT IDENTIFYING INFORMATION.
        rsoc(3, 0xA3, 0x05, 512),
        rsoc(1, 0x42, 0, 512),
    ] {
        let r = run(&d, &c, vec![]);
        good(&r);
        assert_eq!(r.data, vec![0, 0x01, 0, 0], "{c:02x?}");
    }
    // Reserved reporting options.
    for o in 4..8 {
        assert_eq!(
            sense(&run(&d, &rsoc(o, 0x28, 0, 512), vec![])),
            Sense::invalid_field_in_cdb(2, Some(2))
        );
    }
    // Unknown MAINTENANCE IN service action.
    let mut c = rsoc(0, 0, 0, 512);
    c[1] = 0x1F;
    assert_eq!(
        sense(&run(&d, &c, vec![])),
        Sense::invalid_field_in_cdb(1, Some(4))
    );
}

#[test]
fn report_supported_task_management_functions() {
    let d = nullio(&[]);
    let mut c = [0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0];
    let r = run(&d, &c, vec![]);
    good(&r);
    assert_eq!(r.data, vec![0xF8, 0, 0, 0]);
    c[2] = 0x80;
    let r = run(&d, &c, vec![]);
    good(&r);
    assert_eq!(r.data.len(), 16);
    assert_eq!(&r.data[..8], &[0xF8, 0, 0, 0x0C, 0x01, 0, 0xA0, 0]);
    assert_eq!(be32_at(&r.data, 8), 300);
    assert_eq!(be32_at(&r.data, 12), 150);
    c[9] = 3;
    assert_eq!(
        sense(&run(&d, &c, vec![])),
        Sense::invalid_field_in_cdb(6, None)
    );
    c[9] = 6;
    assert_eq!(run(&d, &c, vec![]).data.len(), 6);
}

#[test]
fn standard_inquiry_bits() {
    let d = nullio(&[]);
    let r = run(&d, &[0x12, 0, 0, 0, 255, 0], vec![]);
    good(&r);
    // VERSION SPC-4; HiSup + RESPONSE DATA FORMAT 2; 3PC; MultiP; CmdQue.
    assert_eq!((r.data[2], r.data[3], r.data[5] & 0x08), (6, 0x12, 0x08));
    assert_eq!((r.data[6], r.data[7]), (0x10, 0x02));
    assert_eq!(r.data[4] as usize, r.data.len() - 5);
}

/// The supported-command table and the dispatch agree: every opcode (and every
/// service action of the opcodes that have them) the table lists for the device is
/// executed, every other one is INVALID COMMAND OPERATION CODE.
#[test]
fn command_table_matches_dispatch() {
    use crate::sbc::opcodes::{Executor, COMMANDS};
    // Dispatched, but every CDB is rejected (no log pages): not reported.
    const REJECTED_ALWAYS: [u8; 2] = [0x4C, 0x4D];
    let (_f, plain) = fileio(4096, Some(512), &[]);
    let (_t, thin) = fileio(4096, Some(512), &[("thin_provisioned", "1")]);
    for (d, is_thin) in [(plain, false), (thin, true)] {
        let listed = |op: u8, sa: Option<u8>| {
            COMMANDS.iter().any(|c| {
                use crate::sbc::opcodes::Gate;
                let gated_in = match c.gate {
                    Gate::Always => true,
                    Gate::Thin => is_thin,
                    Gate::NotThin => !is_thin,
                    Gate::Medium => true,
                };
                gated_in
                    && c.executor == Executor::Device
                    && c.opcode == op
                    && (sa.is_none() || c.service_action == sa)
            })
        };
        let by_core = |op: u8, sa: Option<u8>| {
            COMMANDS.iter().any(|c| {
                c.opcode == op
                    && c.executor == Executor::Core
                    && (sa.is_none() || c.service_action == sa)
            })
        };
        for op in 0..=255u8 {
            // Opcodes only the core answers never reach the dispatch; for one whose
            // service actions are split (MAINTENANCE IN: RTPG by the core, RSOC by the
            // device) only the core's service actions are skipped below.
            let all_by_core = COMMANDS
                .iter()
                .filter(|c| c.opcode == op)
                .all(|c| c.executor == Executor::Core);
            if by_core(op, None) && all_by_core {
                continue;
            }
            let has_sa = COMMANDS
                .iter()
                .any(|c| c.opcode == op && c.service_action.is_some());
            let sas: Vec<Option<u8>> = if has_sa {
                (0..32).map(Some).collect()
            } else {
                vec![None]
            };
            for sa in sas {
                if sa.is_some() && by_core(op, sa) {
                    continue;
                }
                let mut cdb = [0u8; 16];
                cdb[0] = op;
                cdb[1] = sa.unwrap_or(0);
                let r = run(&d, &cdb, vec![]);
                let executed = match r.sense {
                    None => true,
                    Some(s) => {
                        s != Sense::INVALID_OPCODE
                            && !(sa.is_some() && s == Sense::invalid_field_in_cdb(1, Some(4)))
                    }
                };
                let expected = listed(op, sa) || REJECTED_ALWAYS.contains(&op);
                assert_eq!(
                    executed, expected,
                    "opcode {op:#04x} sa {sa:?} thin {is_thin}: {:?}",
                    r.sense
                );
            }
        }
    }
}
