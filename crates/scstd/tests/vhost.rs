//! The vhost target as an administrator configures it: a VM is a session named after
//! its target, which an initiator group matches, and its persistent reservations are
//! the core's, found again when the VM reconnects. The VM is test_support's vhost-user
//! frontend (QEMU and the guest's virtio-scsi driver).

mod common;

use std::time::Duration;

use common::{admin_ok, Daemon};
use test_support::scsi;
use test_support::vhost_frontend::{VhostFrontend, REQUEST_QUEUE};

const T: Duration = Duration::from_secs(10);

fn daemon(dir: &std::path::Path) -> (Daemon, std::path::PathBuf) {
    let sock = dir.join("vm1.sock");
    let conf = dir.join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE open0 {{\n\t}}\n\tDEVICE grouped0 {{\n\t}}\n}}\n\
             TARGET_DRIVER vhost {{\n\tTARGET vm1 {{\n\t\tsocket {}\n\t\tLUN 0 open0\n\
             \t\tGROUP g1 {{\n\t\t\tLUN 0 grouped0\n\t\t\tINITIATOR vm1\n\t\t}}\n\
             \t\tenabled 1\n\t}}\n}}\n",
            sock.display()
        ),
    )
    .unwrap();
    (Daemon::start(&conf), sock)
}

fn attach(sock: &std::path::Path) -> VhostFrontend {
    let mut f = VhostFrontend::connect(sock).expect("attach");
    // The power-on unit attention.
    let _ = f.command(REQUEST_QUEUE, 0, &[0; 6], &[], 0, T);
    f
}

/// INQUIRY's product identification, trimmed.
fn product(f: &mut VhostFrontend) -> String {
    let r = f
        .command(REQUEST_QUEUE, 0, &scsi::inquiry(false, 0, 96), &[], 96, T)
        .unwrap()
        .unwrap();
    assert!(r.is_good(), "{r:?}");
    String::from_utf8_lossy(&r.data_in[16..32])
        .trim()
        .to_string()
}

const PR_OUT_REGISTER: u8 = 0x00;

fn pr_register(f: &mut VhostFrontend, key: u64) -> bool {
    let mut params = vec![0u8; 24];
    params[8..16].copy_from_slice(&key.to_be_bytes());
    let cdb = [0x5f, PR_OUT_REGISTER, 0, 0, 0, 0, 0, 0, 24, 0];
    f.command(REQUEST_QUEUE, 0, &cdb, &params, 0, T)
        .unwrap()
        .unwrap()
        .is_good()
}

/// PERSISTENT RESERVE IN, READ KEYS: the registered keys.
fn pr_keys(f: &mut VhostFrontend) -> Vec<u64> {
    let cdb = [0x5e, 0x00, 0, 0, 0, 0, 0, 0x01, 0x00, 0];
    let r = f
        .command(REQUEST_QUEUE, 0, &cdb, &[], 256, T)
        .unwrap()
        .unwrap();
    assert!(r.is_good(), "{r:?}");
    let len = u32::from_be_bytes(r.data_in[4..8].try_into().unwrap()) as usize;
    r.data_in[8..8 + len]
        .chunks(8)
        .map(|k| u64::from_be_bytes(k.try_into().unwrap()))
        .collect()
}

#[test]
fn a_vm_is_a_session_its_group_matches_and_its_registrations_outlive_it() {
    let dir = tempfile::tempdir().unwrap();
    let (d, sock) = daemon(dir.path());
    let mut f = attach(&sock);
    // The group's LUN 0, not the target's: the session is named vm1.
    assert_eq!(product(&mut f), "grouped0");
    let sessions = admin_ok(&d, &["-list_sessions"]);
    assert!(sessions.contains("vm1"), "{sessions}");

    assert!(pr_register(&mut f, 0xabcd));
    assert_eq!(pr_keys(&mut f), vec![0xabcd]);
    drop(f);
    // The same VM attaching again is the same SCSI port: its registration is there.
    let mut f = attach(&sock);
    assert_eq!(pr_keys(&mut f), vec![0xabcd]);
    // Registering again from the same port with another key needs the old one
    // (REGISTER with a wrong reservation key is a conflict).
    assert!(!pr_register(&mut f, 0x1111));
}

/// Several request queues with EVENT_IDX, pipelined: every command on every queue is
/// answered, with its own data, whichever queue it came on.
#[test]
fn requests_on_several_queues_with_event_idx() {
    use test_support::vhost_frontend::FrontendConfig;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(8 << 20))
        .unwrap();
    let sock = dir.path().join("vm2.sock");
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_fileio {{\n\tDEVICE d0 {{\n\t\tfilename {}\n\t}}\n}}\n\
             TARGET_DRIVER vhost {{\n\tTARGET vm2 {{\n\t\tsocket {}\n\t\tLUN 0 d0\n\
             \t\tenabled 1\n\t}}\n}}\n",
            img.display(),
            sock.display()
        ),
    )
    .unwrap();
    let _d = Daemon::start(&conf);
    let cfg = FrontendConfig {
        request_queues: 4,
        event_idx: true,
        ..FrontendConfig::default()
    };
    let mut f = VhostFrontend::connect_with(&sock, &cfg).expect("attach");
    let _ = f.command(REQUEST_QUEUE, 0, &[0; 6], &[], 0, T);
    let rw10 = |op: u8, lba: u32| {
        let l = lba.to_be_bytes();
        [op, 0, l[0], l[1], l[2], l[3], 0, 0, 8, 0]
    };
    // 4 queues x 8 writes in flight at once, then as many reads.
    let mut tokens = Vec::new();
    let mut reads = Vec::new();
    for q in 0..4u16 {
        for i in 0..8u32 {
            let lba = (q as u32 * 8 + i) * 8;
            let data = vec![(lba % 251) as u8 + 1; 4096];
            let t = f
                .submit(
                    REQUEST_QUEUE + q,
                    0,
                    lba as u64 + 1,
                    &rw10(0x2a, lba),
                    &data,
                    0,
                )
                .unwrap();
            tokens.push(t);
        }
    }
    for t in tokens.drain(..) {
        assert!(f.wait(t, T).expect("answered").is_good());
    }
    for q in 0..4u16 {
        for i in 0..8u32 {
            let lba = (q as u32 * 8 + i) * 8;
            let t = f
                .submit(
                    (REQUEST_QUEUE + 3) - q,
                    0,
                    1000 + lba as u64,
                    &rw10(0x28, lba),
                    &[],
                    4096,
                )
                .unwrap();
            reads.push((lba, t));
        }
    }
    for (lba, t) in reads {
        let r = f.wait(t, T).expect("answered");
        assert!(r.is_good(), "{r:?}");
        assert_eq!(r.data_in, vec![(lba % 251) as u8 + 1; 4096], "LBA {lba}");
    }
}
