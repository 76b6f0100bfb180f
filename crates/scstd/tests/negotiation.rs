//! Target iSCSI parameters below what initiators offer (docs/scst-reference.md 6.2, 6.6): the
//! login settles on the target's limits, and writes then follow them (immediate,
//! unsolicited and R2T-solicited data within FirstBurstLength, MaxBurstLength and the
//! declared MaxRecvDataSegmentLength).

mod common;

use std::process::Command;

use common::{Daemon, INITIATOR, IQN};
use test_support::{Initiator, LoginOptions};

#[test]
fn small_target_limits_are_negotiated_and_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(8 << 20))
        .unwrap();
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_fileio {{\n\tDEVICE disk1 {{\n\t\tfilename {}\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {IQN} {{\n\
             \t\tFirstBurstLength 4096\n\t\tMaxBurstLength 16384\n\
             \t\tMaxRecvDataSegmentLength 8192\n\t\tLUN 0 disk1\n\t\tenabled 1\n\t}}\n}}\n",
            disk.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&conf);

    let mut i = Initiator::connect(d.addr).unwrap();
    i.login(INITIATOR, IQN, &LoginOptions::default())
        .unwrap_or_else(|e| panic!("login: {e}; keys {:?}", i.login_keys()));
    let n = i.negotiated().clone();
    assert_eq!(n.first_burst_length, 4096);
    assert_eq!(n.max_burst_length, 16384);
    assert_eq!(n.target_max_recv_data_segment_length, 8192);
    for _ in 0..3 {
        if i.test_unit_ready(0).unwrap().is_good() {
            break;
        }
    }
    // 64 KiB: 4 KiB immediate, the rest in R2T sequences of at most 16 KiB.
    let data: Vec<u8> = (0..65536u32).map(|x| (x * 7 + x / 512) as u8).collect();
    i.write10(0, 0, &data, 512).unwrap().good().unwrap();
    let back = i.read10(0, 0, 128, 512).unwrap().good().unwrap().data;
    assert_eq!(back, data);

    // libiscsi logs in and reads through the same limits.
    let url = format!("iscsi://127.0.0.1:{}/{IQN}/0", d.addr.port());
    let out = Command::new("iscsi-inq")
        .args(["-i", "iqn.2026-11.rs.scst:libiscsi", &url])
        .output()
        .expect("iscsi-inq (libiscsi-bin) must be installed; scripts/test installs it");
    assert!(
        out.status.success(),
        "iscsi-inq: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
