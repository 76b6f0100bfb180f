//! Admission under a connection flood: idle TCP connections that never log in must not
//! lock real initiators out. A flood beyond every bound is held open by the test while
//! a real initiator logs in and does I/O (the oldest idle connection gives way); a
//! flood from one address does not push out another address's pending login; and with
//! a low open-file limit the management socket still answers and a real login works.
//! Login latency under the flood is printed, never asserted.

mod common;

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use common::{fileio_fixture, Daemon, INITIATOR, IQN};
use scst_iscsi::admission::{fd_reserve, MAX_PENDING_LOGINS, MAX_PENDING_LOGINS_PER_ADDR};
use scst_iscsi::DEFAULT_MAX_OPEN_CONNECTIONS;
use scst_mgmt::Client;
use test_support::{Initiator, LoginOptions};

const BS: u32 = 512;
/// Generous: a poll that needs longer than this means something is stuck.
const DEADLINE: Duration = Duration::from_secs(60);
/// The flood's connections outlive any login that is not refused: only admission can
/// make room for a real initiator while it is held.
const SLOW_LOGIN_TIMEOUT: &str = "\tlogin_timeout 600\n";

fn start(nofile: Option<(u64, u64)>) -> (common::Fixture, Daemon) {
    let f = fileio_fixture(8 << 20, "");
    // The fixture's driver block gets a login timeout no test outlives.
    let conf = std::fs::read_to_string(&f.conf).expect("config");
    let conf = conf.replace(
        "TARGET_DRIVER iscsi {\n\tenabled 1\n",
        &format!("TARGET_DRIVER iscsi {{\n\tenabled 1\n{SLOW_LOGIN_TIMEOUT}"),
    );
    std::fs::write(&f.conf, conf).expect("config");
    let d = match nofile {
        Some((soft, hard)) => Daemon::start_with_nofile(&f.conf, soft, hard),
        None => Daemon::start(&f.conf),
    };
    (f, d)
}

/// Idle TCP connections to `to`, `per_addr` from each loopback address 127.0.0.`n`
/// for `n` in `addrs`. They send nothing.
fn flood(to: SocketAddr, addrs: RangeInclusive<u8>, per_addr: usize) -> Vec<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut held = Vec::new();
        for n in addrs {
            for _ in 0..per_addr {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                let from = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, n), 0);
                socket
                    .bind(from.into())
                    .expect("bind a loopback source address");
                let stream = socket.connect(to).await.expect("connect");
                held.push(stream.into_std().expect("std stream"));
            }
        }
        held
    })
}

/// Whether the target has closed `s` (it reads end of stream or an error).
fn closed_by_target(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    match (&*s).read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

fn still_open(held: &[TcpStream]) -> usize {
    held.iter().filter(|s| !closed_by_target(s)).count()
}

/// Wait until at most `bound` of `held` are still open; returns how many are.
fn wait_held_at_most(held: &[TcpStream], bound: usize, what: &str) -> usize {
    let end = Instant::now() + DEADLINE;
    loop {
        let open = still_open(held);
        if open <= bound {
            return open;
        }
        assert!(
            Instant::now() < end,
            "{what}: {open} of {} flood connections still open, expected at most {bound}",
            held.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn opts(n: u8) -> LoginOptions {
    LoginOptions {
        isid: [0x80, 0x0f, 0xad, 0x01, 0x00, n],
        ..Default::default()
    }
}

/// Clears the first command's POWER ON/RESET, then writes a block and reads it back.
fn io_works(i: &mut Initiator, lba: u64, seed: u8) {
    let r = i.test_unit_ready(0).expect("TUR");
    if !r.is_good() {
        assert!(i.test_unit_ready(0).expect("TUR").is_good());
    }
    let data: Vec<u8> = (0..BS as usize * 8)
        .map(|k| (k as u8).wrapping_mul(seed))
        .collect();
    assert!(i.write16(0, lba, &data, BS).expect("write").is_good());
    let r = i
        .read16(0, lba, 8, BS)
        .expect("read")
        .good()
        .expect("good read");
    assert!(r.data == data, "data read back differs");
}

/// Connects and logs in from 127.0.0.1; prints and returns how long that took.
fn timed_login(d: &Daemon, what: &str, n: u8) -> Initiator {
    let t0 = Instant::now();
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(DEADLINE);
    i.login(INITIATOR, IQN, &opts(n))
        .expect("login under the flood");
    eprintln!("login latency {what}: {:?}", t0.elapsed());
    i
}

#[test]
fn an_idle_connection_flood_gives_way_to_a_real_login() {
    let (_f, mut d) = start(None);
    // Resident size, for the log only: the buffer budget's tests bound it.
    let idle_rss = d.rss_kib();
    // More idle connections than max_open_connections (which used to lock everyone
    // out until the login timeout) and than the pending bound, from many addresses so
    // that the overall bound is the one reached.
    let addrs = 2..=70u8;
    let per_addr = MAX_PENDING_LOGINS_PER_ADDR;
    let total = addrs.clone().count() * per_addr;
    assert!(total > DEFAULT_MAX_OPEN_CONNECTIONS, "{total} connections");
    let held = flood(d.addr, addrs, per_addr);
    let open = wait_held_at_most(&held, MAX_PENDING_LOGINS, "the flood");
    eprintln!(
        "{total} idle connections opened, {open} held by the target ({} given way); \
         scstd resident {idle_rss} KiB idle, {} KiB under the flood",
        total - open,
        d.rss_kib()
    );
    // The first ones went first.
    assert!(held[..total - MAX_PENDING_LOGINS]
        .iter()
        .all(closed_by_target));

    let mut i = timed_login(&d, "with the flood held", 1);
    io_works(&mut i, 0, 3);
    // The flood is still held: only the oldest idle connection gave way.
    assert!(
        still_open(&held) >= MAX_PENDING_LOGINS - 1,
        "the flood is still held while the real initiator logs in"
    );

    // A second wave does not touch a logged-in session.
    let more = flood(d.addr, 71..=80, per_addr);
    io_works(&mut i, 64, 5);
    wait_held_at_most(&more, MAX_PENDING_LOGINS, "the second wave");
    let mut j = timed_login(&d, "after a second wave", 2);
    io_works(&mut j, 128, 7);
    drop((held, more));
    assert!(d.is_running(), "scstd keeps running");
}

#[test]
fn a_flood_from_one_address_does_not_push_out_another_addresses_login() {
    let (_f, mut d) = start(None);
    // 127.0.0.1 connects first: the oldest pending connection of all.
    let mut real = Initiator::connect(d.addr).expect("connect");
    real.set_timeout(DEADLINE);
    let per_addr = MAX_PENDING_LOGINS_PER_ADDR;
    let held = flood(d.addr, 2..=2, 4 * per_addr);
    wait_held_at_most(&held, per_addr, "the one-address flood");
    assert!(
        held[..3 * per_addr].iter().all(closed_by_target),
        "the flooding address's own oldest connections gave way"
    );
    let t0 = Instant::now();
    real.login(INITIATOR, IQN, &opts(3))
        .expect("the other address's pending login survives the flood");
    eprintln!(
        "login latency after a one-address flood: {:?}",
        t0.elapsed()
    );
    io_works(&mut real, 256, 11);
    drop(held);
    assert!(d.is_running());
}

#[test]
fn descriptor_exhaustion_leaves_management_and_real_logins_working() {
    // The daemon raises its soft limit to the hard one at start, and says so.
    let (_f, mut d) = start(Some((96, 128)));
    let limit = 128u64;
    assert!(
        d.startup_log
            .iter()
            .any(|l| l.contains("open-file limit raised from 96 to 128")),
        "{:?}",
        d.startup_log
    );
    // Far more connections than descriptors: from 20 addresses, each under the
    // per-address bound, more than the pending bound in all.
    let held = flood(d.addr, 2..=21, MAX_PENDING_LOGINS_PER_ADDR - 1);
    assert!(held.len() as u64 > limit && held.len() > MAX_PENDING_LOGINS);
    // The descriptor reserve, not the pending bound, holds the flood.
    let reserve = fd_reserve(limit);
    let open = wait_held_at_most(&held, (limit - reserve) as usize, "descriptor reserve");
    eprintln!(
        "{} idle connections against a limit of {limit} descriptors: {open} held",
        held.len()
    );

    // Management answers, and can open a device file of its own.
    let mut c = Client::connect(&d.mgmt_socket).expect("management connects");
    assert_eq!(
        c.read("targets/iscsi/enabled")
            .expect("read")
            .lines()
            .next(),
        Some("1")
    );
    let extra = tempfile::NamedTempFile::new().expect("temp file");
    extra.as_file().set_len(1 << 20).expect("size");
    c.write(
        "handlers/vdisk_fileio/mgmt",
        &format!("add_device extra filename={}", extra.path().display()),
    )
    .expect("add_device under descriptor pressure");
    let devices = c.list("handlers/vdisk_fileio").expect("list");
    assert!(
        devices.iter().any(|d| d.trim_end_matches('/') == "extra"),
        "{devices:?}"
    );

    // A real initiator logs in and does I/O while the flood is held.
    let mut i = timed_login(&d, "with descriptors short", 4);
    io_works(&mut i, 512, 13);
    // And keeps working once more connections pour in.
    let more = flood(d.addr, 22..=31, MAX_PENDING_LOGINS_PER_ADDR - 1);
    io_works(&mut i, 640, 17);
    wait_held_at_most(&more, (limit - reserve) as usize, "the second wave");
    let mut j = timed_login(&d, "after a second wave with descriptors short", 5);
    io_works(&mut j, 768, 19);
    assert_eq!(
        c.read("targets/iscsi/enabled")
            .expect("read")
            .lines()
            .next(),
        Some("1")
    );
    drop((held, more));
    assert!(d.is_running(), "scstd keeps running");
}
