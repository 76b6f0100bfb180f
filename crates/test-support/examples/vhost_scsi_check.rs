//! Drive a vhost-user-scsi backend through `test_support::vhost_frontend` and check the
//! basics: INQUIRY, READ CAPACITY, a WRITE read back, a task management function, a
//! disconnect and a reconnect. Not part of the test suite: it needs a backend running.
//!
//! ```text
//! truncate -s 64M /tmp/disk.img
//! vhost-device-scsi --socket-path /tmp/vus.sock /tmp/disk.img &
//! cargo run -p test-support --example vhost_scsi_check -- /tmp/vus.sock
//! ```
//!
//! A backend that ignores the control queue (vhost-device-scsi 0.1 does) leaves the
//! TMF unanswered; that is reported, not failed, unless `--require-tmf` is given.
//! `--reconnect` connects a second frontend after the first disconnected (vhost-device-scsi
//! serves one connection and exits: run it in a loop for that), `--event-idx` negotiates
//! VIRTIO_RING_F_EVENT_IDX, `--wait-hangup` waits for the backend to be killed and
//! checks that the frontend notices.

#![forbid(unsafe_code)]

use std::time::Duration;

use test_support::scsi;
use test_support::vhost_frontend::{tmf, FrontendConfig, VhostFrontend, REQUEST_QUEUE};

const T: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: vhost_scsi_check SOCKET [--require-tmf] [--event-idx] [--reconnect] [--wait-hangup]");
        std::process::exit(2);
    };
    let cfg = FrontendConfig {
        event_idx: args.iter().any(|a| a == "--event-idx"),
        ..FrontendConfig::default()
    };
    let q = REQUEST_QUEUE;
    let mut f = VhostFrontend::connect_with(path, &cfg).expect("connect and set up");
    println!(
        "features {:#x}, protocol features {:?}",
        f.features(),
        f.protocol_features()
    );
    let free = f.free_memory();
    match f.config() {
        Ok(c) => println!("config: {c:?}"),
        Err(e) => println!("config: {e}"),
    }

    let r = f
        .command(q, 0, &scsi::inquiry(false, 0, 96), &[], 96, T)
        .expect("submit")
        .expect("INQUIRY completes");
    assert!(r.is_good(), "INQUIRY: {r:?}");
    let vendor = String::from_utf8_lossy(&r.data_in[8..16]).into_owned();
    let product = String::from_utf8_lossy(&r.data_in[16..32]).into_owned();
    println!(
        "INQUIRY: type {:#x} {vendor} {product}",
        r.data_in[0] & 0x1f
    );

    let r = f
        .command(q, 0, &scsi::read_capacity16(32), &[], 32, T)
        .expect("submit")
        .expect("READ CAPACITY completes");
    assert!(r.is_good(), "READ CAPACITY(16): {r:?}");
    let last = u64::from_be_bytes(r.data_in[0..8].try_into().unwrap());
    let bs = u32::from_be_bytes(r.data_in[8..12].try_into().unwrap());
    println!("READ CAPACITY(16): {} blocks of {bs}", last + 1);

    let pattern: Vec<u8> = (0..8 * bs).map(|i| (i % 251) as u8).collect();
    let r = f
        .command(q, 0, &scsi::write10(16, 8), &pattern, 0, T)
        .expect("submit")
        .expect("WRITE completes");
    assert!(r.is_good(), "WRITE(10): {r:?}");
    let r = f
        .command(q, 0, &scsi::read10(16, 8), &[], 8 * bs, T)
        .expect("submit")
        .expect("READ completes");
    assert!(r.is_good(), "READ(10): {r:?}");
    assert_eq!(r.data_in, pattern, "read back what was written");
    println!("WRITE(10) then READ(10) of 8 blocks: data matches");

    // Pipelined: several commands in flight at once, completed in any order.
    let tokens: Vec<_> = (0..16u32)
        .map(|i| {
            f.submit(q, 0, 1000 + u64::from(i), &scsi::read10(i, 1), &[], bs)
                .expect("submit")
        })
        .collect();
    for t in tokens {
        assert!(f.wait(t, T).expect("completes").is_good());
    }
    println!("16 pipelined READs: all good");

    let r = f
        .command(q, 5, &scsi::test_unit_ready(), &[], 0, T)
        .expect("submit")
        .expect("TEST UNIT READY to a missing LUN completes");
    println!(
        "TEST UNIT READY to LUN 5: response {} status {:#x} sense {:?}",
        r.response,
        r.status,
        r.sense_key()
    );

    match f.tmf(tmf::LOGICAL_UNIT_RESET, 0, 0, Duration::from_millis(500)) {
        Ok(Some(resp)) => println!("LOGICAL UNIT RESET: response {resp}"),
        Ok(None) if args.iter().any(|a| a == "--require-tmf") => {
            panic!("LOGICAL UNIT RESET not answered")
        }
        Ok(None) => {
            println!("LOGICAL UNIT RESET: not answered (backend ignores the control queue)")
        }
        Err(e) => panic!("TMF: {e}"),
    }
    f.post_event_buffers(4).expect("post event buffers");
    println!(
        "event while idle: {:?}",
        f.next_event(Duration::from_millis(100))
    );
    assert!(f.is_connected());
    if args.iter().any(|a| a == "--wait-hangup") {
        // The caller kills the backend now; the frontend notices the hang-up.
        println!("waiting for the backend to hang up");
        assert!(
            f.wait_disconnected(Duration::from_secs(30)),
            "no hang-up seen"
        );
        assert!(!f.is_connected());
        let t = f
            .submit(q, 0, 1, &scsi::test_unit_ready(), &[], 0)
            .expect("submit");
        assert!(f.wait(t, Duration::from_millis(100)).is_none());
        println!("hang-up seen; a command sent afterwards is never answered");
        return;
    }
    // The unanswered TMF and the event buffers still hold memory; commands do not.
    println!(
        "guest memory: {} bytes free before, {} after",
        free,
        f.free_memory()
    );
    f.disconnect();

    if !args.iter().any(|a| a == "--reconnect") {
        println!("OK");
        return;
    }
    // A backend that serves one connection and exits (vhost-device-scsi) is restarted
    // by the caller: retry for a while.
    let mut tries = 0;
    let mut g = loop {
        match VhostFrontend::connect_with(path, &cfg) {
            Ok(g) => break g,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("reconnect: {e}"),
        }
    };
    let r = g
        .command(q, 0, &scsi::read10(16, 8), &[], 8 * bs, T)
        .expect("submit")
        .expect("READ after reconnect completes");
    assert_eq!(r.data_in, pattern);
    println!("reconnected: the data is still there");
    println!("OK");
}
