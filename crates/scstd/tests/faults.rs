//! Fault tests: initiators that vanish mid-command, mid-R2T or mid-login, connection
//! churn, slow logins, NOP-Out floods, clients that stop reading, and the connection,
//! session and buffer limits. After each fault a fresh session must write and read back
//! correct data, and the leak counters in the management tree (open connections,
//! sessions, tgt_devs, commands, buffered bytes) must return to their baseline.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, INITIATOR, IQN};
use scst_mgmt::Client;
use test_support::iscsi_wire::bhs::task_attr;
use test_support::iscsi_wire::frame::{encode_pdu, Digests};
use test_support::iscsi_wire::pdu::{self, login_status};
use test_support::iscsi_wire::{encode_text, Opcode, Stage, RESERVED_TAG};
use test_support::{scsi, Initiator, InitiatorError, LoginOptions};

const BS: u32 = 512;
const DISK_SIZE: usize = 64 << 20;
/// NopInInterval 1, NopInTimeout 2, RspTimeout 3: dead connections go quickly.
const STRICT: &str = "iqn.2026-11.rs.scst:strict";
/// MaxSessions 2.
const LIMITED: &str = "iqn.2026-11.rs.scst:limited";
/// The per-connection data buffer budget the target enforces, plus room for the small
/// commands of other sessions (the counter is global).
const DATA_BUDGET: usize = (64 << 20) + (1 << 20);
/// Generous: a poll that needs longer than this means something is stuck.
const DEADLINE: Duration = Duration::from_secs(60);

struct Setup {
    _dir: tempfile::TempDir,
    /// What the backing file of disk1 holds.
    content: Vec<u8>,
    d: Daemon,
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// A daemon exporting a 64 MiB patterned file as LUN 0 of [`IQN`] (and of [`LIMITED`]),
/// and a scratch file through [`STRICT`]. The first goes through vdisk_blockio (O_DIRECT),
/// whose reads all run on I/O threads: nothing completes inline, so many commands can be
/// in flight at once, which is what the buffer limits are about. `driver_attrs` go into the TARGET_DRIVER block.
fn start(driver_attrs: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = pattern(DISK_SIZE, 7);
    let disk1 = dir.path().join("disk1.img");
    std::fs::write(&disk1, &content).expect("disk1");
    let disk2 = dir.path().join("disk2.img");
    std::fs::File::create(&disk2)
        .and_then(|f| f.set_len(DISK_SIZE as u64))
        .expect("disk2");
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_blockio {{\n\
             \tDEVICE disk1 {{\n\t\tfilename {}\n\t}}\n}}\n\
             HANDLER vdisk_fileio {{\n\
             \tDEVICE disk2 {{\n\t\tfilename {}\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n{driver_attrs}\
             \tTARGET {IQN} {{\n\t\tLUN 0 disk1\n\t\tenabled 1\n\t}}\n\
             \tTARGET {LIMITED} {{\n\t\tLUN 0 disk1\n\t\tMaxSessions 2\n\t\tenabled 1\n\t}}\n\
             \tTARGET {STRICT} {{\n\t\tLUN 0 disk2\n\t\tNopInInterval 1\n\t\tNopInTimeout 2\n\
             \t\tRspTimeout 3\n\t\tenabled 1\n\t}}\n}}\n",
            disk1.display(),
            disk2.display()
        ),
    )
    .expect("config");
    let d = Daemon::start(&conf);
    Setup {
        _dir: dir,
        content,
        d,
    }
}

fn start_default() -> Setup {
    start("\tlogin_timeout 2\n")
}

/// A distinct ISID per login, so that no login reinstates another test's session.
fn next_isid() -> [u8; 6] {
    static N: AtomicU16 = AtomicU16::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    [0x80, 0x0f, 0xa1, 0x17, n[0], n[1]]
}

fn opts() -> LoginOptions {
    LoginOptions {
        isid: next_isid(),
        ..Default::default()
    }
}

fn login_to(d: &Daemon, target: &str, o: &LoginOptions) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(30));
    i.login(INITIATOR, target, o).expect("login");
    i
}

fn login(d: &Daemon) -> Initiator {
    login_to(d, IQN, &opts())
}

/// The first command on a new nexus reports POWER ON/RESET; clear it.
fn clear_ua(i: &mut Initiator) {
    let r = i.test_unit_ready(0).expect("TUR");
    if !r.is_good() {
        assert!(i.test_unit_ready(0).expect("TUR").is_good());
    }
}

/// A new session writes, reads back and logs out. Disk1 keeps its pattern: what is
/// written is the pattern itself.
fn fresh_session_works(s: &Setup, round: u64) {
    let mut i = login(&s.d);
    clear_ua(&mut i);
    let lba = (round * 512) % (DISK_SIZE as u64 / BS as u64 - 512);
    let off = lba as usize * BS as usize;
    let data = &s.content[off..off + (256 << 10)];
    assert!(
        i.write16(0, lba, data, BS).expect("write").is_good(),
        "write {round}"
    );
    let r = i
        .read16(0, lba, (data.len() / BS as usize) as u32, BS)
        .expect("read")
        .good()
        .expect("good read");
    assert!(r.data == data, "round {round}: data read back differs");
    assert!(i.anomalies().is_empty(), "anomalies: {:?}", i.anomalies());
    i.logout().expect("logout");
}

/// The leak counters of the management tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counters {
    open_connections: usize,
    sessions: usize,
    tgt_devs: usize,
    commands: usize,
    buffer_bytes: usize,
}

fn read_num(c: &mut Client, path: &str) -> usize {
    let v = c.read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let (v, _) = scst_mgmt::protocol::strip_key(&v);
    v.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{path}: '{v}' is not a number"))
}

fn counters(d: &Daemon) -> Counters {
    let mut c = Client::connect(&d.mgmt_socket).expect("mgmt connect");
    Counters {
        open_connections: read_num(&mut c, "targets/iscsi/open_connections"),
        sessions: read_num(&mut c, "active_sessions"),
        tgt_devs: read_num(&mut c, "active_tgt_devs"),
        commands: read_num(&mut c, "targets/iscsi/active_commands"),
        buffer_bytes: read_num(&mut c, "targets/iscsi/data_buffer_bytes"),
    }
}

/// Poll until `pred` holds for the counters; panic with the last values at the deadline.
fn wait_counters(d: &Daemon, what: &str, pred: impl Fn(&Counters) -> bool) -> Counters {
    let end = Instant::now() + DEADLINE;
    loop {
        let c = counters(d);
        if pred(&c) {
            return c;
        }
        if Instant::now() > end {
            panic!("{what}: counters stuck at {c:?}; log:\n{}", d.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_baseline(d: &Daemon, base: &Counters, what: &str) {
    wait_counters(d, what, |c| c == base);
}

fn baseline(s: &Setup) -> Counters {
    let base = counters(&s.d);
    assert_eq!(
        base,
        Counters {
            open_connections: 0,
            sessions: 0,
            tgt_devs: 0,
            commands: 0,
            buffer_bytes: 0
        },
        "an idle daemon holds nothing"
    );
    base
}

fn login_pdu(isid: [u8; 6], keys: &[(&str, &str)], transit: bool) -> Vec<u8> {
    let text = encode_text(keys);
    let bhs = pdu::login_request(&pdu::LoginRequest {
        transit,
        cont: false,
        csg: Stage::LoginOperational,
        nsg: Stage::FullFeature,
        isid,
        tsih: 0,
        itt: 1,
        cid: 1,
        cmd_sn: 1,
        exp_stat_sn: 0,
        data_len: text.len() as u32,
    });
    encode_pdu(&bhs, &text, Digests::NONE)
}

/// True once the peer has closed `s` (EOF or reset); false while it is open and silent.
fn peer_closed(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    let r = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).expect("blocking");
    r
}

#[test]
fn abrupt_disconnects_leave_nothing_behind() {
    let s = start_default();
    let base = baseline(&s);
    fresh_session_works(&s, 0);
    wait_baseline(&s.d, &base, "after a clean session");

    // Mid-write: the command PDU announces 8 KiB of immediate data, 3000 bytes arrive.
    let mut i = login(&s.d);
    clear_ua(&mut i);
    let itt = i.alloc_itt();
    let cdb = scsi::write10(100, 16);
    let bhs = pdu::scsi_command(&pdu::ScsiCommand {
        immediate: false,
        lun: [0; 8],
        itt,
        attr: task_attr::SIMPLE,
        read: false,
        write: true,
        final_pdu: true,
        exp_data_transfer_len: 8192,
        cmd_sn: i.cmd_sn(),
        exp_stat_sn: i.exp_stat_sn(),
        cdb: &cdb,
        data_len: 8192,
    });
    let wire = encode_pdu(&bhs, &[0x5a; 8192], Digests::NONE);
    i.send_raw(&wire[..48 + 3000]).expect("send");
    drop(i);
    wait_baseline(&s.d, &base, "disconnect inside a command PDU");
    fresh_session_works(&s, 1);

    // Mid-write, later: the command with its immediate data is in, the unsolicited
    // Data-Out it promised (F=0) never comes.
    let mut i = login(&s.d);
    clear_ua(&mut i);
    let itt = i.alloc_itt();
    let cdb = scsi::write10(200, 2048);
    let bhs = pdu::scsi_command(&pdu::ScsiCommand {
        immediate: false,
        lun: [0; 8],
        itt,
        attr: task_attr::SIMPLE,
        read: false,
        write: true,
        final_pdu: false,
        exp_data_transfer_len: 1 << 20,
        cmd_sn: i.cmd_sn(),
        exp_stat_sn: i.exp_stat_sn(),
        cdb: &cdb,
        data_len: 8192,
    });
    i.send_pdu(&bhs, &[0x5a; 8192]).expect("send");
    wait_counters(&s.d, "a write waiting for its data", |c| {
        c.commands == 1 && c.buffer_bytes >= 1 << 20
    });
    drop(i);
    wait_baseline(&s.d, &base, "disconnect while unsolicited data is due");
    fresh_session_works(&s, 2);

    // Mid-R2T: the target asked for the data, the initiator goes away instead.
    let mut i = login_to(
        &s.d,
        IQN,
        &LoginOptions {
            immediate_data: false,
            initial_r2t: true,
            isid: next_isid(),
            ..Default::default()
        },
    );
    clear_ua(&mut i);
    let data = vec![0x33u8; 1 << 20];
    i.submit(0, &scsi::write10(300, 2048), &data, 0, task_attr::SIMPLE)
        .expect("submit");
    let r2t = loop {
        let p = i.recv_pdu(Duration::from_secs(30)).expect("R2T");
        if p.opcode() == Some(Opcode::R2t) {
            break p;
        }
    };
    assert!(r2t.bhs.desired_data_transfer_len() > 0);
    let c = counters(&s.d);
    assert_eq!(c.commands, 1, "the write is pending: {c:?}");
    drop(i);
    wait_baseline(&s.d, &base, "disconnect with an R2T outstanding");
    fresh_session_works(&s, 3);

    // Mid-login: one login request answered, then nothing more.
    let mut raw = TcpStream::connect(s.d.addr).expect("connect");
    raw.write_all(&login_pdu(
        next_isid(),
        &[
            ("InitiatorName", INITIATOR),
            ("TargetName", IQN),
            ("SessionType", "Normal"),
            ("MaxRecvDataSegmentLength", "65536"),
        ],
        false,
    ))
    .expect("login request");
    let mut hdr = [0u8; 48];
    raw.set_read_timeout(Some(Duration::from_secs(30))).ok();
    raw.read_exact(&mut hdr).expect("login response");
    assert_eq!(hdr[0] & 0x3f, 0x23, "a Login Response");
    drop(raw);
    // And one that stops inside the login header.
    let mut raw = TcpStream::connect(s.d.addr).expect("connect");
    raw.write_all(&login_pdu(next_isid(), &[("InitiatorName", INITIATOR)], true)[..30])
        .expect("partial header");
    drop(raw);
    wait_baseline(&s.d, &base, "disconnects during login");
    fresh_session_works(&s, 4);

    // Churn: 200 connections, each ending a different way.
    for k in 0..200u32 {
        match k % 4 {
            0 => drop(TcpStream::connect(s.d.addr).expect("connect")),
            1 => {
                let mut i = login(&s.d);
                i.logout().expect("logout");
            }
            2 => {
                let mut i = login(&s.d);
                if k % 8 == 2 {
                    clear_ua(&mut i);
                    let _ = i.submit(0, &scsi::read10(0, 128), &[], 65536, task_attr::SIMPLE);
                }
                drop(i);
            }
            _ => {
                let mut raw = TcpStream::connect(s.d.addr).expect("connect");
                let _ = raw.write_all(&[0x43, 0x81, 0, 0, 0, 0, 0, 40]);
                drop(raw);
            }
        }
    }
    wait_baseline(&s.d, &base, "after 200 connect/disconnect cycles");
    fresh_session_works(&s, 5);
    wait_baseline(&s.d, &base, "at the end");
}

#[test]
fn slowloris_login_is_cut_off_by_the_login_timeout() {
    let s = start_default();
    let base = baseline(&s);
    let login = login_pdu(
        next_isid(),
        &[
            ("InitiatorName", INITIATOR),
            ("TargetName", IQN),
            ("SessionType", "Normal"),
        ],
        true,
    );
    let mut raw = TcpStream::connect(s.d.addr).expect("connect");
    // One byte every 250 ms: the whole login would take far longer than the 2 s
    // login_timeout the daemon runs with.
    let mut closed_after = None;
    for (n, b) in login.iter().enumerate() {
        if raw.write_all(std::slice::from_ref(b)).is_err() || peer_closed(&mut raw) {
            closed_after = Some(n);
            break;
        }
        if n == 2 {
            // Others are served meanwhile.
            fresh_session_works(&s, 1);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let n = closed_after.expect("the target never closed a login that trickled in");
    assert!(
        n < login.len(),
        "closed only after the whole login ({n} bytes)"
    );
    wait_baseline(&s.d, &base, "after the slow login");
    fresh_session_works(&s, 2);
    wait_baseline(&s.d, &base, "at the end");
}

#[test]
fn nop_out_flood_with_responses_unread() {
    let s = start_default();
    let base = baseline(&s);
    let mut i = login(&s.d);
    clear_ua(&mut i);
    const N: u32 = 20_000;
    const FIRST_ITT: u32 = 0x4000_0000;
    i.pause_reading();
    let mut w = i.raw_writer().expect("writer");
    let (cmd_sn, exp_stat_sn) = (i.cmd_sn(), i.exp_stat_sn());
    let writer = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for n in 0..N {
            // Immediate pings: pipelined without regard to the CmdSN window.
            let data: &[u8] = if n.is_multiple_of(3) {
                b"ping-with-data.."
            } else {
                b""
            };
            let bhs = pdu::nop_out(
                true,
                [0; 8],
                FIRST_ITT + n,
                RESERVED_TAG,
                cmd_sn,
                exp_stat_sn,
                data.len() as u32,
            );
            batch.extend_from_slice(&encode_pdu(&bhs, data, Digests::NONE));
            if batch.len() > 64 << 10 || n == N - 1 {
                w.write_all(&batch).expect("send NOP-Outs");
                batch.clear();
            }
        }
    });
    // While the flooding client reads nothing, the target stops reading it (its
    // responses cannot go anywhere) and serves everyone else.
    fresh_session_works(&s, 1);
    fresh_session_works(&s, 2);
    wait_counters(&s.d, "only the flooding session left", |c| c.sessions == 1);
    i.resume_reading();
    let mut seen = vec![false; N as usize];
    let mut got = 0;
    while got < N {
        let p = i.recv_pdu(Duration::from_secs(30)).expect("NOP-In");
        if p.opcode() == Some(Opcode::NopIn) {
            let k = p.bhs.itt().wrapping_sub(FIRST_ITT) as usize;
            assert!(
                k < N as usize && !seen[k],
                "unexpected NOP-In ITT {:#x}",
                p.bhs.itt()
            );
            assert_eq!(
                p.data.len(),
                if k.is_multiple_of(3) { 16 } else { 0 },
                "the ping data comes back"
            );
            seen[k] = true;
            got += 1;
        }
    }
    writer.join().expect("writer thread");
    // The session still works after the flood.
    assert!(i.test_unit_ready(0).expect("TUR").is_good());
    i.logout().expect("logout");
    drop(i);
    wait_baseline(&s.d, &base, "after the NOP-Out flood");
    fresh_session_works(&s, 3);
}

#[test]
fn a_client_that_stops_reading_holds_bounded_memory() {
    let s = start_default();
    let base = baseline(&s);
    let mut i = login(&s.d);
    clear_ua(&mut i);
    i.set_timeout(Duration::from_secs(120));
    // Warm up the read path so that the baseline includes its steady-state buffers.
    let blocks = (8 << 20) / BS;
    for k in 0..4u64 {
        i.read16(0, k * blocks as u64, blocks, BS)
            .expect("warm-up read");
    }
    let rss0 = s.d.rss_kib();
    i.pause_reading();
    // 96 reads of 8 MiB: 768 MiB of read data the client does not take.
    let mut itts = Vec::new();
    for k in 0..96u64 {
        let lba = (k % 8) * blocks as u64;
        let itt = i
            .submit(
                0,
                &scsi::read16(lba, blocks),
                &[],
                8 << 20,
                task_attr::SIMPLE,
            )
            .expect("submit");
        itts.push((itt, lba));
    }
    // The target takes commands until its responses back up, then stops reading.
    wait_counters(&s.d, "reads under way", |c| c.commands > 0);
    // Sample while the client is stalled: the connection never holds more data than
    // its budget, and the process does not grow by what was asked for.
    for round in 0..10 {
        let c = counters(&s.d);
        assert!(
            c.buffer_bytes <= DATA_BUDGET,
            "data buffers {} beyond the budget",
            c.buffer_bytes
        );
        if round == 5 {
            fresh_session_works(&s, 1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown = s.d.rss_kib().saturating_sub(rss0);
    eprintln!("scstd grew by {grown} KiB while the client read nothing");
    assert!(
        grown < 400 << 10,
        "scstd grew by {grown} KiB for a client that reads nothing"
    );
    i.resume_reading();
    for (itt, lba) in itts {
        let r = i.wait(itt).expect("read").good().expect("good read");
        let off = lba as usize * BS as usize;
        assert!(
            r.data == s.content[off..off + (8 << 20)],
            "read at {lba} differs"
        );
    }
    i.logout().expect("logout");
    drop(i);
    wait_baseline(&s.d, &base, "after the stalled reader");
    fresh_session_works(&s, 2);
}

#[test]
fn dead_connections_are_closed_by_the_nop_in_and_response_timeouts() {
    let s = start_default();
    let base = baseline(&s);
    // A client that answers nothing: the target's NOP-In ping goes unanswered.
    let i = login_to(&s.d, STRICT, &opts());
    i.pause_reading();
    wait_baseline(&s.d, &base, "NOP-In timeout");
    let end = Instant::now() + DEADLINE;
    while !s.d.log().contains("no answer to NOP-In") {
        assert!(Instant::now() < end, "no NOP-In timeout in the log");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(i);

    // A client that takes none of its read data: sending stalls, RspTimeout ends it.
    let mut i = login_to(&s.d, STRICT, &opts());
    clear_ua(&mut i);
    i.pause_reading();
    let blocks = (8 << 20) / BS;
    for k in 0..16u64 {
        i.submit(
            0,
            &scsi::read16(k * blocks as u64 % 65536, blocks),
            &[],
            8 << 20,
            task_attr::SIMPLE,
        )
        .expect("submit");
    }
    wait_baseline(&s.d, &base, "RspTimeout");
    let end = Instant::now() + DEADLINE;
    while !s.d.log().contains("the peer took nothing") {
        assert!(Instant::now() < end, "no send timeout in the log");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(i);
    fresh_session_works(&s, 1);
    wait_baseline(&s.d, &base, "at the end");
}

#[test]
fn connection_session_and_buffer_limits() {
    let s = start("\tlogin_timeout 60\n\tmax_open_connections 4\n");
    let base = baseline(&s);

    // max_open_connections: a fifth connection makes the oldest of four that have not
    // logged in give way (idle ones must not lock logins out)...
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(s.d.addr).expect("connect"))
        .collect();
    wait_counters(&s.d, "four open connections", |c| c.open_connections == 4);
    let mut extra = TcpStream::connect(s.d.addr).expect("connect");
    held[0]
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut b = [0u8; 1];
    assert!(
        matches!(held[0].read(&mut b), Ok(0) | Err(_)),
        "the oldest connection gives way at max_open_connections"
    );
    assert!(!peer_closed(&mut held[1]), "the others stay open");
    assert!(!peer_closed(&mut extra), "the new one stays open");
    drop(held);
    drop(extra);
    wait_baseline(&s.d, &base, "after the connection limit");
    // ...while with four sessions logged in the fifth is closed right after accept.
    let sessions: Vec<Initiator> = (0..4).map(|_| login(&s.d)).collect();
    let mut extra = TcpStream::connect(s.d.addr).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    assert!(
        matches!(extra.read(&mut b), Ok(0) | Err(_)),
        "the connection beyond max_open_connections is closed"
    );
    drop(sessions);
    drop(extra);
    wait_baseline(&s.d, &base, "after the sessions at the connection limit");

    // MaxSessions 2: a third session is refused with "out of resources"; reinstating
    // one of the two is not a new session.
    let o1 = opts();
    let mut s1 = login_to(&s.d, LIMITED, &o1);
    let _s2 = login_to(&s.d, LIMITED, &opts());
    let mut s3 = Initiator::connect(s.d.addr).expect("connect");
    match s3.login(INITIATOR, LIMITED, &opts()) {
        Err(InitiatorError::LoginFailed { class, detail }) => {
            assert_eq!((class, detail), login_status::OUT_OF_RESOURCES)
        }
        other => panic!("third session: {other:?}"),
    }
    drop(s3);
    let mut again = login_to(&s.d, LIMITED, &o1);
    clear_ua(&mut again);
    assert!(again.test_unit_ready(0).expect("TUR").is_good());
    assert!(s1.wait_closed(Duration::from_secs(30)), "reinstated away");
    drop((s1, _s2, again));
    wait_baseline(&s.d, &base, "after the session limit");

    // A data segment beyond our MaxRecvDataSegmentLength ends that connection alone.
    let mut good = login(&s.d);
    clear_ua(&mut good);
    let mut bad = login(&s.d);
    // The header alone is enough for the target to refuse to buffer the segment.
    let mut nop = pdu::nop_out(true, [0; 8], 7, RESERVED_TAG, bad.cmd_sn(), 0, 0);
    nop.set_data_segment_len(0xff_fff0);
    bad.send_raw(nop.as_bytes()).expect("send");
    let _ = bad.send_raw(&[0u8; 4096]);
    assert!(bad.wait_closed(Duration::from_secs(30)), "oversized PDU");
    assert!(good.test_unit_ready(0).expect("TUR").is_good());

    // Many large writes at once: more than the buffer budget is queued, the budget is
    // never exceeded, and every byte lands.
    let mut w = login_to(
        &s.d,
        IQN,
        &LoginOptions {
            initial_r2t: true,
            immediate_data: false,
            max_outstanding_r2t: 4,
            isid: next_isid(),
            ..Default::default()
        },
    );
    clear_ua(&mut w);
    w.set_timeout(Duration::from_secs(120));
    let blocks = (8 << 20) / BS;
    let mut itts = Vec::new();
    for k in 0..24u64 {
        let lba = (k % 8) * blocks as u64;
        let off = lba as usize * BS as usize;
        let data = &s.content[off..off + (8 << 20)];
        itts.push(
            w.submit(0, &scsi::write16(lba, blocks), data, 0, task_attr::SIMPLE)
                .expect("submit"),
        );
    }
    let c = counters(&s.d);
    assert!(c.buffer_bytes <= DATA_BUDGET, "{c:?}");
    for itt in itts {
        assert!(w.wait(itt).expect("write").is_good());
    }
    assert!(w.anomalies().is_empty(), "anomalies: {:?}", w.anomalies());
    w.logout().expect("logout");
    drop((w, good, bad));
    wait_baseline(&s.d, &base, "after the limits");

    // The limits are management attributes too.
    let mut c = Client::connect(&s.d.mgmt_socket).expect("mgmt connect");
    c.write("targets/iscsi/login_timeout", "5")
        .expect("set login_timeout");
    assert_eq!(read_num(&mut c, "targets/iscsi/login_timeout"), 5);
    assert_eq!(read_num(&mut c, "targets/iscsi/max_open_connections"), 4);
    assert!(c.write("targets/iscsi/max_open_connections", "0").is_err());
    fresh_session_works(&s, 1);
    wait_baseline(&s.d, &base, "at the end");
}
