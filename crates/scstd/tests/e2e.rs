//! End-to-end tests: the real scstd binary over loopback, driven by the in-tree
//! initiator (test-support).

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{fileio_fixture, fileio_fixture_in, Daemon, INITIATOR, IQN};
use test_support::iscsi_wire::bhs::task_attr;
use test_support::iscsi_wire::pdu::{tmf_function, tmf_response};
use test_support::{scsi, Initiator, LoginOptions};

const BS: u32 = 512;

fn login(d: &Daemon, opts: &LoginOptions) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    i.login(INITIATOR, IQN, opts).expect("login");
    i
}

/// The first command on a new nexus reports POWER ON/RESET; clear it.
fn clear_power_on_ua(i: &mut Initiator) {
    let r = i.test_unit_ready(0).expect("TUR");
    assert_eq!(
        r.sense_key_asc_ascq(),
        Some((0x06, 0x29, 0x00)),
        "first TUR must report POWER ON"
    );
    assert!(i.test_unit_ready(0).expect("TUR").is_good());
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn write_then_read_back_with_and_without_digests() {
    let fx = fileio_fixture(64 << 20, "");
    let d = Daemon::start(&fx.conf);
    for digest in ["None", "CRC32C"] {
        let opts = LoginOptions {
            header_digest: digest.into(),
            data_digest: digest.into(),
            ..Default::default()
        };
        let mut i = login(&d, &opts);
        clear_power_on_ua(&mut i);
        let (blocks, bs) = i.capacity(0).expect("capacity");
        assert_eq!(
            (blocks, bs),
            ((64 << 20) / 512, 512),
            "READ CAPACITY(16) reports the file size"
        );
        // Immediate data only, then immediate + unsolicited + R2T bursts.
        for (lba, len) in [
            (10u64, 4096usize),
            (1000, 1 << 20),
            (20000, 3 * (1 << 20) + 512),
        ] {
            let data = pattern(len, lba as u8);
            assert!(i.write16(0, lba, &data, BS).expect("write").is_good());
            let r = i
                .read16(0, lba, (len / 512) as u32, BS)
                .expect("read")
                .good()
                .expect("good");
            assert!(
                r.data == data,
                "read back differs at lba {lba} ({digest} digests)"
            );
        }
        assert!(
            i.anomalies().is_empty(),
            "protocol anomalies: {:?}",
            i.anomalies()
        );
        i.logout().expect("logout");
    }
    // The backing file holds the data too.
    let f = std::fs::read(&fx.disk).expect("backing file");
    assert_eq!(&f[10 * 512..10 * 512 + 4096], &pattern(4096, 10)[..]);
}

#[test]
fn discovery_lists_the_target() {
    let fx = fileio_fixture(1 << 20, "");
    let d = Daemon::start(&fx.conf);
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    i.login_discovery(INITIATOR).expect("discovery login");
    let targets = i.send_targets("All").expect("SendTargets");
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].0, IQN);
    assert_eq!(targets[0].1, vec![format!("{},1", d.addr)]);
}

#[test]
fn data_survives_a_daemon_restart() {
    let fx = fileio_fixture(8 << 20, "");
    let data = pattern(256 * 1024, 7);
    {
        let d = Daemon::start(&fx.conf);
        let mut i = login(&d, &LoginOptions::default());
        clear_power_on_ua(&mut i);
        assert!(i.write10(0, 2048, &data, BS).expect("write").is_good());
        assert!(i.sync_cache(0).expect("sync").is_good());
        // SIGTERM with the session still logged in: the daemon drains and exits 0.
        assert_eq!(d.stop(), Some(0));
    }
    let d = Daemon::start(&fx.conf);
    let mut i = login(&d, &LoginOptions::default());
    clear_power_on_ua(&mut i);
    let r = i
        .read10(0, 2048, (data.len() / 512) as u16, BS)
        .expect("read")
        .good()
        .expect("good");
    assert!(
        r.data == data,
        "data written before the restart must read back after it"
    );
}

#[test]
fn many_commands_in_flight_with_task_attributes() {
    let fx = fileio_fixture(16 << 20, "");
    let d = Daemon::start(&fx.conf);
    let mut i = login(&d, &LoginOptions::default());
    clear_power_on_ua(&mut i);
    let attrs = [
        task_attr::SIMPLE,
        task_attr::ORDERED,
        task_attr::HEAD_OF_QUEUE,
    ];
    let mut itts = Vec::new();
    for n in 0..96u32 {
        let data = pattern(8192, n as u8);
        let cdb = scsi::write10(n * 16, 16);
        itts.push(
            i.submit(0, &cdb, &data, 0, attrs[n as usize % 3])
                .expect("submit"),
        );
    }
    for itt in itts {
        assert!(i.wait(itt).expect("write result").is_good());
    }
    let mut reads = Vec::new();
    for n in 0..96u32 {
        reads.push((
            n,
            i.submit(0, &scsi::read10(n * 16, 16), &[], 8192, task_attr::SIMPLE)
                .expect("submit"),
        ));
    }
    for (n, itt) in reads {
        let r = i.wait(itt).expect("read result");
        assert!(r.is_good());
        assert!(
            r.data == pattern(8192, n as u8),
            "block run {n} read back wrong"
        );
    }
    assert!(
        i.anomalies().is_empty(),
        "protocol anomalies: {:?}",
        i.anomalies()
    );
}

/// With `--io-engine io_uring`, stable writes (write_through) and reads that miss the
/// page cache are started from the connection and complete on the ring: many in
/// flight at once, and what reads back is what was written, also in the file.
#[test]
fn io_uring_engine_reads_back_what_it_wrote() {
    use std::os::unix::io::AsRawFd;
    // On disk, not tmpfs: a memory filesystem never waits, so it never uses the ring.
    let size = 16u64 << 20;
    let fx = fileio_fixture_in(Path::new("/var/tmp"), size, "\t\twrite_through 1\n");
    let disk = &fx.disk;
    let d = Daemon::start_with(&fx.conf, &["--io-engine".as_ref(), "io_uring".as_ref()]);
    // The daemon says which engine it runs; io_uring wherever this process has it.
    let expected = match scst_vdisk::uring_unavailable() {
        None => "io_uring",
        Some(why) => {
            eprintln!("io_uring unavailable here ({why}): the daemon must fall back");
            "threads"
        }
    };
    let said = format!("fileio backing-file I/O engine: {expected}");
    assert!(
        d.startup_log.iter().any(|l| l.contains(&said)),
        "expected '{said}' in {:?}",
        d.startup_log
    );
    let mut i = login(&d, &LoginOptions::default());
    clear_power_on_ua(&mut i);
    // 64 writes of 16 KiB in flight, scattered over the LUN.
    let run = |n: u32| (n * 509) % ((size / 512) as u32 - 32);
    let itts: Vec<u32> = (0..64u32)
        .map(|n| {
            i.submit(
                0,
                &scsi::write10(run(n) / 32 * 32, 32),
                &pattern(16384, n as u8),
                0,
                task_attr::SIMPLE,
            )
            .expect("submit write")
        })
        .collect();
    for itt in itts {
        assert!(i.wait(itt).expect("write result").is_good());
    }
    // Drop the file's cached pages (clean after write-through) so that the reads
    // miss the cache and go to the ring.
    let f = std::fs::File::open(disk).expect("open backing file");
    // SAFETY: a hint on an open descriptor; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
    let reads: Vec<(u32, u32)> = (0..64u32)
        .map(|n| {
            let itt = i
                .submit(
                    0,
                    &scsi::read10(run(n) / 32 * 32, 32),
                    &[],
                    16384,
                    task_attr::SIMPLE,
                )
                .expect("submit read");
            (n, itt)
        })
        .collect();
    for (n, itt) in reads {
        let r = i.wait(itt).expect("read result");
        assert!(r.is_good(), "read {n}: {:?}", r.sense_key_asc_ascq());
        assert!(r.data == pattern(16384, n as u8), "run {n} read back wrong");
    }
    assert!(
        i.anomalies().is_empty(),
        "protocol anomalies: {:?}",
        i.anomalies()
    );
    i.logout().expect("logout");
    let file = std::fs::read(disk).expect("backing file");
    let at = (run(5) / 32 * 32) as usize * 512;
    assert!(
        file[at..at + 16384] == pattern(16384, 5)[..],
        "the file holds the data"
    );
}

#[test]
fn unknown_lun_and_report_luns() {
    let fx = fileio_fixture(1 << 20, "");
    let d = Daemon::start(&fx.conf);
    let mut i = login(&d, &LoginOptions::default());
    let r = i.test_unit_ready(5).expect("TUR");
    assert_eq!(
        r.sense_key_asc_ascq(),
        Some((0x05, 0x25, 0x00)),
        "LOGICAL UNIT NOT SUPPORTED"
    );
    let r = i.report_luns().expect("REPORT LUNS").good().expect("good");
    let luns = scsi::parse_report_luns(&r.data).expect("REPORT LUNS data");
    assert_eq!(luns, vec![[0u8; 8]]);
}

#[test]
fn lun_reset_raises_a_unit_attention() {
    let fx = fileio_fixture(1 << 20, "");
    let d = Daemon::start(&fx.conf);
    let mut a = login(&d, &LoginOptions::default());
    clear_power_on_ua(&mut a);
    let mut b = login(
        &d,
        &LoginOptions {
            isid: [0x80, 0, 0, 0, 0, 2],
            ..Default::default()
        },
    );
    clear_power_on_ua(&mut b);
    assert_eq!(
        a.tmf(tmf_function::LOGICAL_UNIT_RESET, 0, 0xffff_ffff)
            .expect("TMF"),
        tmf_response::COMPLETE
    );
    for i in [&mut a, &mut b] {
        let r = i.test_unit_ready(0).expect("TUR");
        assert_eq!(
            r.sense_key_asc_ascq(),
            Some((0x06, 0x29, 0x00)),
            "every nexus learns of the reset"
        );
        assert!(i.test_unit_ready(0).expect("TUR").is_good());
    }
    assert_eq!(
        a.tmf(tmf_function::LOGICAL_UNIT_RESET, 9, 0xffff_ffff)
            .expect("TMF"),
        tmf_response::LUN_DOES_NOT_EXIST
    );
}

#[test]
fn session_reinstatement_replaces_the_old_session() {
    let fx = fileio_fixture(1 << 20, "");
    let d = Daemon::start(&fx.conf);
    let mut old = login(&d, &LoginOptions::default());
    clear_power_on_ua(&mut old);
    // Same initiator name and ISID: the target must drop the old session.
    let mut new = login(&d, &LoginOptions::default());
    assert!(
        old.wait_closed(Duration::from_secs(10)),
        "the reinstated session's connection is closed"
    );
    let r = new.test_unit_ready(0).expect("TUR");
    assert_eq!(
        r.sense_key_asc_ascq().map(|s| s.0),
        Some(0x06),
        "the new nexus starts with a unit attention"
    );
}

/// Garbage, truncated and oversized PDUs never crash scstd and never disturb another
/// initiator's session.
#[test]
fn malformed_pdus_do_not_disturb_other_sessions() {
    let fx = fileio_fixture(4 << 20, "");
    let mut d = Daemon::start(&fx.conf);
    let mut good = login(&d, &LoginOptions::default());
    clear_power_on_ua(&mut good);
    let data = pattern(65536, 3);
    let check_good_session = |good: &mut Initiator, round: usize| {
        assert!(
            good.write10(0, 64, &data, BS).expect("write").is_good(),
            "round {round}"
        );
        let r = good
            .read10(0, 64, 128, BS)
            .expect("read")
            .good()
            .expect("good");
        assert!(
            r.data == data,
            "round {round}: the good session's data changed"
        );
    };
    let mut seed = 0x1234_5678u32;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for round in 0..40usize {
        let mut raw = std::net::TcpStream::connect(d.addr).expect("connect");
        raw.set_write_timeout(Some(Duration::from_secs(5))).ok();
        let bytes: Vec<u8> = match round % 4 {
            // Pure garbage of random length.
            0 => (0..(rand() % 4096 + 1)).map(|_| rand() as u8).collect(),
            // A truncated login header.
            1 => {
                let mut b = vec![0x43u8, 0x87, 0, 0];
                b.extend((0..20).map(|_| rand() as u8));
                b
            }
            // A header announcing a huge data segment (16 MiB - 1) and some of it.
            2 => {
                let mut b = vec![0u8; 48];
                b[0] = 0x43;
                b[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
                b.extend(vec![0x41u8; 1000]);
                b
            }
            // A plausible header with random fields and a random AHS length.
            _ => {
                let mut b: Vec<u8> = (0..48).map(|_| rand() as u8).collect();
                b[0] = (rand() % 64) as u8;
                b[5..8].copy_from_slice(&[0, 0, 8]);
                b.extend((0..64).map(|_| rand() as u8));
                b
            }
        };
        let _ = raw.write_all(&bytes);
        drop(raw);
        if round % 5 == 0 {
            check_good_session(&mut good, round);
        }
    }
    // A logged-in session that sends garbage in full-feature phase is dropped alone.
    let mut bad = login(
        &d,
        &LoginOptions {
            isid: [0x80, 0, 0, 0, 0, 9],
            ..Default::default()
        },
    );
    bad.send_raw(&[0xffu8; 48]).expect("send");
    bad.send_raw(&(0..4000).map(|_| rand() as u8).collect::<Vec<_>>())
        .ok();
    check_good_session(&mut good, 999);
    assert!(
        d.is_running(),
        "scstd must survive malformed input; log:\n{}",
        d.log()
    );
    assert!(
        good.anomalies().is_empty(),
        "protocol anomalies: {:?}",
        good.anomalies()
    );
}

#[test]
fn a_bad_config_names_the_line_and_exits_nonzero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        "HANDLER vdisk_nullio {\n\tDEVICE n1 {\n\t\tblocksiz 4096\n\t}\n}\n",
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scstd"))
        .arg("--config")
        .arg(&conf)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run scstd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("blocksiz"),
        "error must name the line and attribute: {err}"
    );
}
