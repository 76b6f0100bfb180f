//! Persistent reservations written by SCST survive the switch to scstd: a PR file in
//! SCST's binary layout (docs/scst-reference.md, "SCST's PR file layout") at
//! `<state dir>/pr/<device>` is imported at start, and PERSISTENT RESERVE IN reports its
//! registrations and reservation.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{fileio_fixture, Daemon, IQN};
use test_support::iscsi_wire::bhs::task_attr;
use test_support::{Initiator, LoginOptions};

const WRITE_EXCLUSIVE: u8 = 1;

/// The checked-in fixture: three registrants as SCST 3.x writes them.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scst-core/tests/fixtures/scst-pr/disk01")
}

/// SCST's PR file, built field by field from the documented layout: signature and
/// version (host-endian u64), aptpl, pr_is_set, pr_type, pr_scope, then per registrant
/// is_holder, the TransportID, the key (big-endian) and rel_tgt_id (host-endian u16).
fn scst_pr_file(regs: &[(u8, Vec<u8>, u64, u16)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xBBEE_EEAA_EEBB_DD77u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&[1, 1, WRITE_EXCLUSIVE, 0]);
    for (holder, tid, key, rel_tgt_id) in regs {
        b.push(*holder);
        b.extend_from_slice(tid);
        b.extend_from_slice(&key.to_be_bytes());
        b.extend_from_slice(&rel_tgt_id.to_le_bytes());
    }
    b
}

/// An iSCSI TransportID (format 01b) padded as SCST pads it.
fn iscsi_tid(port: &str) -> Vec<u8> {
    let len = (4 + port.len() + 1).next_multiple_of(4);
    let mut b = vec![0u8; len];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&((len - 4) as u16).to_be_bytes());
    b[4..4 + port.len()].copy_from_slice(port.as_bytes());
    b
}

const FC_WWN: [u8; 8] = [0x21, 0, 0, 0x24, 0xff, 0x31, 0x4c, 0x2e];

fn expected_file() -> Vec<u8> {
    let mut fc = vec![0u8; 24];
    fc[8..16].copy_from_slice(&FC_WWN);
    scst_pr_file(&[
        // iscsi-scst's own ISID spelling (`%llx` of ISID<<16 | TSIH 0) and the standard one.
        (
            1,
            iscsi_tid("iqn.2026-11.rs.scst:a,i,0x4000000000010000"),
            0xA,
            1,
        ),
        (
            0,
            iscsi_tid("iqn.2026-11.rs.scst:b,i,0x400000000002"),
            0xB,
            1,
        ),
        (0, fc, 0xF0, 2),
    ])
}

fn login(d: &Daemon, name: &str, isid_low: u8) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    let opts = LoginOptions {
        isid: [0x40, 0, 0, 0, 0, isid_low],
        ..Default::default()
    };
    i.login(name, IQN, &opts).expect("login");
    let r = i.test_unit_ready(0).expect("TUR");
    assert_eq!(r.sense_key_asc_ascq(), Some((0x06, 0x29, 0x00)));
    i
}

fn pr_in(i: &mut Initiator, sa: u8) -> Vec<u8> {
    let cdb = [0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0];
    i.scsi(0, &cdb, &[], 4096, task_attr::SIMPLE)
        .expect("PR IN")
        .good()
        .expect("PR IN status")
        .data
}

fn be32(d: &[u8], o: usize) -> usize {
    u32::from_be_bytes(d[o..o + 4].try_into().unwrap()) as usize
}

fn be64(d: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(d[o..o + 8].try_into().unwrap())
}

#[test]
fn the_fixture_is_scsts_layout() {
    assert_eq!(std::fs::read(fixture()).unwrap(), expected_file());
}

#[test]
fn scst_registrations_and_reservation_survive_the_switch() {
    let fx = fileio_fixture(1 << 20, "");
    let state = tempfile::tempdir().expect("state dir");
    let pr = state.path().join("pr");
    std::fs::create_dir_all(&pr).unwrap();
    std::fs::copy(fixture(), pr.join("disk1")).unwrap();
    let d = Daemon::start_with(
        &fx.conf,
        &[OsStr::new("--state-dir"), state.path().as_os_str()],
    );
    assert!(
        d.startup_log
            .iter()
            .any(|l| l.contains("imported SCST PR file") && l.contains("3 registrants")),
        "{:#?}",
        d.startup_log
    );
    // SCST's file is kept for a rollback; ours replaced it.
    assert_eq!(
        std::fs::read(pr.join("disk1.scst-imported")).unwrap(),
        expected_file()
    );
    assert!(std::fs::read_to_string(pr.join("disk1"))
        .unwrap()
        .starts_with("version 1"));

    let mut b = login(&d, "iqn.2026-11.rs.scst:b", 2);
    // READ KEYS: every key, in SCST's order.
    let keys = pr_in(&mut b, 0);
    let n = be32(&keys, 4) / 8;
    let got: Vec<u64> = (0..n).map(|k| be64(&keys, 8 + 8 * k)).collect();
    assert_eq!(got, [0xA, 0xB, 0xF0]);
    // READ RESERVATION: A's key, Write Exclusive, LU scope.
    let res = pr_in(&mut b, 1);
    assert_eq!(be32(&res, 4), 16);
    assert_eq!((be64(&res, 8), res[21]), (0xA, WRITE_EXCLUSIVE));
    // READ FULL STATUS: holder, ports and TransportIDs (names normalised to SPC-4's).
    let full = pr_in(&mut b, 3);
    let end = 8 + be32(&full, 4);
    let mut o = 8;
    let mut descs = Vec::new();
    while o < end {
        let tid_len = be32(&full, o + 20);
        let tid = &full[o + 24..o + 24 + tid_len];
        let name = if tid[0] & 0x0F == 5 {
            String::from_utf8_lossy(&tid[4..])
                .trim_end_matches('\0')
                .to_string()
        } else {
            format!("fc {:02x?}", &tid[8..16])
        };
        let rel = u16::from_be_bytes([full[o + 18], full[o + 19]]);
        descs.push((be64(&full, o), full[o + 12] & 1 != 0, rel, name));
        o += 24 + tid_len;
    }
    assert_eq!(
        descs,
        [
            (
                0xA,
                true,
                1,
                "iqn.2026-11.rs.scst:a,i,0x400000000001".to_string()
            ),
            (
                0xB,
                false,
                1,
                "iqn.2026-11.rs.scst:b,i,0x400000000002".to_string()
            ),
            (0xF0, false, 2, format!("fc {FC_WWN:02x?}")),
        ]
    );
    // The reservation is enforced: B (a registrant) may not write, A (the holder) may.
    let write = |i: &mut Initiator| {
        let cdb = test_support::scsi::write10(0, 1);
        i.scsi(0, &cdb, &[0u8; 512], 0, task_attr::SIMPLE)
            .expect("WRITE")
            .status
    };
    assert_eq!(write(&mut b), 0x18, "RESERVATION CONFLICT");
    let mut a = login(&d, "iqn.2026-11.rs.scst:a", 1);
    assert_eq!(write(&mut a), 0x00);
    d.stop();

    // A restart reads our own file; nothing is imported twice.
    let d = Daemon::start_with(
        &fx.conf,
        &[OsStr::new("--state-dir"), state.path().as_os_str()],
    );
    assert!(!d.startup_log.iter().any(|l| l.contains("imported SCST")));
    let mut b = login(&d, "iqn.2026-11.rs.scst:b", 2);
    assert_eq!(be32(&pr_in(&mut b, 0), 4), 24);
    d.stop();
}

#[test]
fn a_bad_scst_file_is_reported_and_the_device_starts_without_registrations() {
    let fx = fileio_fixture(1 << 20, "");
    let state = tempfile::tempdir().expect("state dir");
    let pr = state.path().join("pr");
    std::fs::create_dir_all(&pr).unwrap();
    let mut bad = expected_file();
    bad[8] = 7; // version 7
    std::fs::write(pr.join("disk1"), &bad).unwrap();
    let d = Daemon::start_with(
        &fx.conf,
        &[OsStr::new("--state-dir"), state.path().as_os_str()],
    );
    assert!(
        d.startup_log
            .iter()
            .any(|l| l.contains("disk1") && l.contains("unsupported version 7")),
        "{:#?}",
        d.startup_log
    );
    let mut b = login(&d, "iqn.2026-11.rs.scst:b", 2);
    assert_eq!(be32(&pr_in(&mut b, 0), 4), 0, "no registrations");
    // The refused bytes are kept, unchanged, beside the device's (now empty) state.
    assert_eq!(std::fs::read(pr.join("disk1.corrupt")).unwrap(), bad);
    d.stop();
}
