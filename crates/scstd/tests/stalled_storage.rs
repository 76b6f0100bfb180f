//! vdisk_fileio on a backing file whose I/O hangs (test_support::stallfs, a FUSE file
//! system): a command stays in flight while the storage is stalled and completes,
//! with the right data, once it is released; buffered and O_DIRECT alike. This is the
//! fixture the transport tests build on ("delete the target while the storage hangs"),
//! so it checks that the stall really reaches vdisk's I/O path.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, INITIATOR, IQN};
use test_support::stallfs::StallFs;
use test_support::{scsi, Initiator, LoginOptions};

const SIZE: u64 = 16 << 20;

/// A stall file system with a config exporting its file as LUN 0.
fn stalled_fixture(device_attrs: &str) -> (tempfile::TempDir, StallFs, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = common::stall_mount(dir.path(), SIZE);
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_fileio {{\n\tDEVICE disk1 {{\n\t\tfilename {}\n{device_attrs}\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {IQN} {{\n\t\tLUN 0 disk1\n\t\tenabled 1\n\t}}\n}}\n",
            fs.path().display()
        ),
    )
    .expect("config");
    (dir, fs, conf)
}

fn login(d: &Daemon) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    i.login(INITIATOR, IQN, &LoginOptions::default())
        .expect("login");
    // The first command on a new nexus reports POWER ON/RESET.
    let _ = i.test_unit_ready(0);
    assert!(i.test_unit_ready(0).expect("TUR").is_good());
    i
}

/// Submit `cdb`, check it is held in the file system and not answered while stalled,
/// then release it and return its result.
fn held_then_released(
    i: &mut Initiator,
    fs: &StallFs,
    cdb: &[u8],
    data_out: &[u8],
    expected_in: u32,
) -> test_support::ScsiResult {
    fs.stall();
    let itt = i.submit(0, cdb, data_out, expected_in, 0).expect("submit");
    assert!(
        fs.wait_blocked(1, Duration::from_secs(10)),
        "the command's I/O reached the stalled file"
    );
    i.set_timeout(Duration::from_millis(300));
    assert!(
        i.wait(itt).is_err(),
        "no answer while the storage is stalled"
    );
    i.set_timeout(Duration::from_secs(10));
    fs.unstall();
    i.wait(itt).expect("answered once released")
}

fn stall_and_release(device_attrs: &str) {
    let (_dir, fs, conf) = stalled_fixture(device_attrs);
    let d = Daemon::start(&conf);
    let mut i = login(&d);
    let data: Vec<u8> = (0..4096u32).map(|n| (n % 253) as u8).collect();
    fs.write_at(64 * 512, &data);

    let r = held_then_released(&mut i, &fs, &scsi::read10(64, 8), &[], 4096);
    assert!(r.is_good(), "READ: {r:?}");
    assert_eq!(r.data, data);

    let new: Vec<u8> = data.iter().map(|b| b ^ 0xff).collect();
    let r = held_then_released(&mut i, &fs, &scsi::write10(128, 8), &new, 0);
    assert!(r.is_good(), "WRITE: {r:?}");
    assert_eq!(fs.read_at(128 * 512, 4096), new);
    assert_eq!(fs.blocked(), 0);
    assert!(fs.open_handles() > 0, "scstd has the file open");
    i.logout().expect("logout");
    assert_eq!(d.stop(), Some(0), "a clean shutdown");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs.open_handles() > 0 {
        assert!(
            Instant::now() < deadline,
            "scstd let go of the backing file"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn buffered_fileio_waits_for_a_stalled_file() {
    stall_and_release("");
}

#[test]
fn o_direct_fileio_waits_for_a_stalled_file() {
    stall_and_release("\t\to_direct 1\n");
}
