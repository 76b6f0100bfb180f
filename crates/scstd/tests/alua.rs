//! End-to-end ALUA: one device exported through two targets, each in its own target
//! port group of one device group (active and standby), configured by scst.conf.

mod common;

use std::time::Duration;

use common::{Daemon, INITIATOR};
use test_support::iscsi_wire::bhs::task_attr;
use test_support::{Initiator, LoginOptions};

const TARGET_A: &str = "iqn.2026-11.rs.scst:alua-a";
const TARGET_B: &str = "iqn.2026-11.rs.scst:alua-b";

fn login(d: &Daemon, target: &str) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    i.login(INITIATOR, target, &LoginOptions::default())
        .expect("login");
    // The first command on a new nexus reports POWER ON/RESET.
    let r = i.test_unit_ready(0).expect("TUR");
    assert_eq!(r.sense_key_asc_ascq(), Some((0x06, 0x29, 0x00)));
    i
}

fn rtpg(i: &mut Initiator, format: u8) -> Vec<u8> {
    let cdb = [0xA3, (format << 5) | 0x0A, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0];
    let r = i.scsi(0, &cdb, &[], 1024, task_attr::SIMPLE).expect("RTPG");
    assert!(r.is_good(), "RTPG: {:?}", r.sense_key_asc_ascq());
    r.data
}

#[test]
fn two_paths_active_and_standby() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 20))
        .expect("backing file");
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_fileio {{\n\tDEVICE disk1 {{\n\t\tfilename {}\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\
             \tTARGET {TARGET_A} {{\n\t\trel_tgt_id 1\n\t\tLUN 0 disk1\n\t\tenabled 1\n\t}}\n\
             \tTARGET {TARGET_B} {{\n\t\trel_tgt_id 2\n\t\tLUN 0 disk1\n\t\tenabled 1\n\t}}\n}}\n\
             DEVICE_GROUP dg1 {{\n\tDEVICE disk1\n\
             \tTARGET_GROUP tg_a {{\n\t\tgroup_id 101\n\t\tpreferred 1\n\t\tstate active\n\
             \t\tTARGET {TARGET_A}\n\t}}\n\
             \tTARGET_GROUP tg_b {{\n\t\tgroup_id 102\n\t\tstate standby\n\
             \t\tTARGET {TARGET_B}\n\t\tTARGET iqn.2026-11.rs.scst:peer {{\n\t\t\trel_tgt_id 9\n\t\t}}\n\t}}\n}}\n",
            disk.display()
        ),
    )
    .expect("config");
    let d = Daemon::start(&conf);
    let mut a = login(&d, TARGET_A);
    let mut b = login(&d, TARGET_B);

    // Both groups, whichever path asks: tg_a preferred + active/optimized with port 1,
    // tg_b standby with port 2 and the peer's port 9.
    let body: Vec<u8> = [
        &[0x80, 0xCF, 0, 101, 0, 0x02, 0, 1, 0, 0, 0, 1][..],
        &[0x02, 0xCF, 0, 102, 0, 0x02, 0, 2, 0, 0, 0, 2, 0, 0, 0, 9],
    ]
    .concat();
    for i in [&mut a, &mut b] {
        let d0 = rtpg(i, 0);
        assert_eq!(&d0[..4], &(body.len() as u32).to_be_bytes());
        assert_eq!(&d0[4..], &body[..]);
        let d1 = rtpg(i, 1);
        assert_eq!(&d1[..8], &[0, 0, 0, body.len() as u8 + 4, 0x10, 0, 0, 0]);
        assert_eq!(&d1[8..], &body[..]);
    }

    // Media access: fine through the active path, NOT READY / ALUA STANDBY through
    // the standby one.
    assert!(a.read10(0, 0, 1, 512).expect("READ A").is_good());
    let r = b.read10(0, 0, 1, 512).expect("READ B");
    assert_eq!(r.sense_key_asc_ascq(), Some((0x02, 0x04, 0x0B)));

    // INQUIRY works on both: TPGS implicit, PQ 0 (standby is accessible for INQUIRY),
    // and VPD 0x83 carries the port's target port group.
    for (i, tpg) in [(&mut a, 101u16), (&mut b, 102)] {
        let std = i.inquiry(0, false, 0, 96).expect("INQUIRY");
        assert!(std.is_good());
        assert_eq!(std.data[0], 0x00);
        assert_eq!((std.data[5] >> 4) & 0x03, 0x01, "TPGS implicit");
        let vpd = i.inquiry(0, true, 0x83, 512).expect("VPD 83");
        assert!(vpd.is_good());
        assert!(
            has_tpg_designator(&vpd.data, tpg),
            "VPD 0x83 lacks target port group {tpg}: {:02x?}",
            vpd.data
        );
    }
    drop(a);
    drop(b);
    assert!(d.stop().is_some());
}

/// Whether the Device Identification page holds a target port group designator
/// (association 01b, type 5) with `id`.
fn has_tpg_designator(page: &[u8], id: u16) -> bool {
    let mut off = 4;
    while off + 4 <= page.len() {
        let len = page[off + 3] as usize;
        let d = &page[off..(off + 4 + len).min(page.len())];
        if (d[1] & 0x3F) == 0x15 && d.len() >= 8 && d[6..8] == id.to_be_bytes() {
            return true;
        }
        off += 4 + len;
    }
    false
}
