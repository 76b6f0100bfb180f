//! Persistent reservations with APTPL survive a crash (SIGKILL) of scstd and a restart
//! over the same --state-dir; without APTPL they do not survive a restart.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use common::{fileio_fixture, Daemon, IQN};
use test_support::iscsi_wire::bhs::task_attr;
use test_support::{Initiator, LoginOptions};

const REGISTER: u8 = 0;
const RESERVE: u8 = 1;
const WRITE_EXCLUSIVE: u8 = 1;

fn start(conf: &Path, state: &Path) -> Daemon {
    Daemon::start_with(conf, &[OsStr::new("--state-dir"), state.as_os_str()])
}

/// Log in as `name` and clear the POWER ON unit attention.
fn login(d: &Daemon, name: &str, isid_low: u8) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    let opts = LoginOptions {
        isid: [0x80, 0, 0, 0, 0, isid_low],
        ..Default::default()
    };
    i.login(name, IQN, &opts).expect("login");
    let r = i.test_unit_ready(0).expect("TUR");
    assert_eq!(r.sense_key_asc_ascq(), Some((0x06, 0x29, 0x00)));
    i
}

fn prout(i: &mut Initiator, sa: u8, ty: u8, key: u64, sark: u64, aptpl: bool) {
    let cdb = [0x5F, sa, ty, 0, 0, 0, 0, 0, 24, 0];
    let mut l = vec![0u8; 24];
    l[0..8].copy_from_slice(&key.to_be_bytes());
    l[8..16].copy_from_slice(&sark.to_be_bytes());
    l[20] = aptpl as u8;
    let r = i
        .scsi(0, &cdb, &l, 0, task_attr::SIMPLE)
        .expect("PR OUT transport");
    assert!(
        r.is_good(),
        "PR OUT sa {sa} key {key:#x} sark {sark:#x}: {r:?}"
    );
}

/// One READ FULL STATUS descriptor: key, R_HOLDER, scope/type, port, TransportID.
#[derive(Debug, PartialEq, Eq)]
struct Desc {
    key: u64,
    holder: bool,
    scope_type: u8,
    rel_tgt_id: u16,
    tid: Vec<u8>,
}

/// PERSISTENT RESERVE IN, READ FULL STATUS: (generation, descriptors).
fn read_full_status(i: &mut Initiator) -> (u32, Vec<Desc>) {
    let cdb = [0x5E, 3, 0, 0, 0, 0, 0, 0x10, 0, 0];
    let d = i
        .scsi(0, &cdb, &[], 4096, task_attr::SIMPLE)
        .expect("PR IN")
        .good()
        .expect("PR IN status")
        .data;
    let be32 = |o: usize| u32::from_be_bytes(d[o..o + 4].try_into().unwrap());
    let generation = be32(0);
    let end = 8 + be32(4) as usize;
    let mut out = Vec::new();
    let mut o = 8;
    while o < end {
        let tid_len = be32(o + 20) as usize;
        out.push(Desc {
            key: u64::from_be_bytes(d[o..o + 8].try_into().unwrap()),
            holder: d[o + 12] & 1 != 0,
            scope_type: d[o + 13],
            rel_tgt_id: u16::from_be_bytes([d[o + 18], d[o + 19]]),
            tid: d[o + 24..o + 24 + tid_len].to_vec(),
        });
        o += 24 + tid_len;
    }
    (generation, out)
}

fn tid_names(descs: &[Desc]) -> Vec<String> {
    descs
        .iter()
        .map(|d| {
            let s = String::from_utf8_lossy(&d.tid[4..]);
            s.trim_end_matches('\0').to_string()
        })
        .collect()
}

#[test]
fn aptpl_state_survives_sigkill_and_restart() {
    let fx = fileio_fixture(1 << 20, "");
    let state = tempfile::tempdir().expect("state dir");
    let d = start(&fx.conf, state.path());
    let mut a = login(&d, "iqn.2026-11.rs.scst:a", 1);
    let mut b = login(&d, "iqn.2026-11.rs.scst:b", 2);
    let mut c = login(&d, "iqn.2026-11.rs.scst:c", 3);
    prout(&mut a, REGISTER, 0, 0, 0xA, true);
    prout(&mut b, REGISTER, 0, 0, 0xB, true);
    prout(&mut a, RESERVE, WRITE_EXCLUSIVE, 0xA, 0, true);
    let mut generation = 2;
    // A PR-heavy loop: C registers and unregisters keys, each persisted before GOOD.
    const ROUNDS: u64 = 25;
    for n in 0..ROUNDS {
        let key = 0xC00 + n;
        prout(&mut c, REGISTER, 0, 0, key, true);
        generation += 1;
        if n + 1 < ROUNDS {
            prout(&mut c, REGISTER, 0, key, 0, true);
            generation += 1;
        }
    }
    // The last registration was acknowledged: crash now.
    d.kill();
    assert!(state.path().join("pr").join("disk1").exists());

    let d = start(&fx.conf, state.path());
    let mut b = login(&d, "iqn.2026-11.rs.scst:b", 2);
    let (gen, descs) = read_full_status(&mut b);
    assert_eq!(gen, generation, "generation as last acknowledged");
    let keys: Vec<(u64, bool, u8)> = descs
        .iter()
        .map(|d| (d.key, d.holder, d.scope_type))
        .collect();
    assert_eq!(
        keys,
        [
            (0xA, true, WRITE_EXCLUSIVE),
            (0xB, false, 0),
            (0xC00 + ROUNDS - 1, false, 0)
        ]
    );
    assert!(descs.iter().all(|d| d.rel_tgt_id == 1));
    assert_eq!(
        tid_names(&descs),
        [
            "iqn.2026-11.rs.scst:a,i,0x800000000001",
            "iqn.2026-11.rs.scst:b,i,0x800000000002",
            "iqn.2026-11.rs.scst:c,i,0x800000000003",
        ]
    );
    // The reservation is enforced again: B may not write, A (the holder) may.
    let write = |i: &mut Initiator| {
        let cdb = test_support::scsi::write10(0, 1);
        i.scsi(0, &cdb, &[0u8; 512], 0, task_attr::SIMPLE)
            .expect("WRITE")
            .status
    };
    assert_eq!(write(&mut b), 0x18, "RESERVATION CONFLICT for a registrant");
    let mut a = login(&d, "iqn.2026-11.rs.scst:a", 1);
    assert_eq!(write(&mut a), 0x00);
    d.stop();
}

#[test]
fn state_without_aptpl_does_not_survive_a_restart() {
    let fx = fileio_fixture(1 << 20, "");
    let state = tempfile::tempdir().expect("state dir");
    let d = start(&fx.conf, state.path());
    let mut a = login(&d, "iqn.2026-11.rs.scst:a", 1);
    prout(&mut a, REGISTER, 0, 0, 0xA, false);
    prout(&mut a, RESERVE, WRITE_EXCLUSIVE, 0xA, 0, false);
    assert_eq!(read_full_status(&mut a).1.len(), 1);
    d.kill();
    assert!(!state.path().join("pr").join("disk1").exists());
    let d = start(&fx.conf, state.path());
    let mut a = login(&d, "iqn.2026-11.rs.scst:a", 1);
    assert_eq!(read_full_status(&mut a), (0, Vec::new()));
    d.stop();
}

#[test]
fn pr_dump_dir_is_written_at_shutdown() {
    let fx = fileio_fixture(1 << 20, "\t\tusn DUMPSER1\n");
    let dump = tempfile::tempdir().expect("dump dir");
    let conf = std::fs::read_to_string(&fx.conf).unwrap().replacen(
        "HANDLER vdisk_fileio {\n",
        &format!(
            "HANDLER vdisk_fileio {{\n\tpr_dump_dir {}\n",
            dump.path().display()
        ),
        1,
    );
    std::fs::write(&fx.conf, conf).unwrap();
    let state = tempfile::tempdir().expect("state dir");
    let d = start(&fx.conf, state.path());
    let mut a = login(&d, "iqn.2026-11.rs.scst:a", 1);
    prout(&mut a, REGISTER, 0, 0, 0xA, false);
    prout(&mut a, RESERVE, WRITE_EXCLUSIVE, 0xA, 0, false);
    drop(a);
    assert_eq!(d.stop(), Some(0));
    let text = std::fs::read_to_string(dump.path().join("DUMPSER1")).expect("dump");
    let st = scst_core::pr_persist::parse_text(&text).expect("dump parses");
    assert_eq!(st.generation, 1);
    assert_eq!(st.registrants.len(), 1);
    assert!(st.registrants[0].holder && st.registrants[0].key == 0xA);
}
