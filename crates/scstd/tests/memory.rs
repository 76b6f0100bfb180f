//! The daemon-wide budget for command data buffers (`scst_max_cmd_mem`) under a flood:
//! sessions that open large writes and never send their data hold no more than the
//! budget, get BUSY or TASK SET FULL beyond it, and cannot shut out another session's
//! ordinary reads and writes; once they are gone the memory goes back to the system.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, INITIATOR, IQN};
use scst_mgmt::Client;
use test_support::iscsi_wire::bhs::task_attr;
use test_support::iscsi_wire::pdu::{self, lun_from_u16};
use test_support::iscsi_wire::Opcode;
use test_support::{scsi, Initiator, LoginOptions};

const BUDGET_MIB: usize = 128;
const FLOOD_SESSIONS: usize = 12;
const WRITES_PER_SESSION: u32 = 4;
/// WRITE(16) of 65,536 blocks of 512 bytes.
const FLOOD_BLOCKS: u32 = 65536;
const BS: u32 = 512;

fn buffer_bytes(d: &Daemon) -> usize {
    let mut c = Client::connect(&d.mgmt_socket).expect("mgmt connect");
    let v = c.read("targets/iscsi/data_buffer_bytes").expect("read");
    let (v, _) = scst_mgmt::protocol::strip_key(&v);
    v.trim().parse().expect("a number")
}

fn login(d: &Daemon, n: u16) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(30));
    let o = LoginOptions {
        isid: [0x80, 0x0e, 0x33, 0x01, (n >> 8) as u8, n as u8],
        ..Default::default()
    };
    i.login(INITIATOR, IQN, &o).expect("login");
    // The first command of a nexus reports POWER ON/RESET.
    if !i.test_unit_ready(0).expect("TUR").is_good() {
        assert!(i.test_unit_ready(0).expect("TUR").is_good());
    }
    i
}

/// Until `pred` holds for the daemon's charged buffer bytes.
fn wait_buffers(d: &Daemon, what: &str, pred: impl Fn(usize) -> bool) -> usize {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let b = buffer_bytes(d);
        if pred(b) {
            return b;
        }
        assert!(Instant::now() < end, "{what}: buffers stuck at {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_flood_of_writes_without_data_stays_within_scst_max_cmd_mem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "scst_max_cmd_mem {BUDGET_MIB}\n\
             HANDLER vdisk_nullio {{\n\tDEVICE null1 {{\n\t\tsize_mb 4096\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\
             \tTARGET {IQN} {{\n\t\tLUN 0 null1\n\t\tenabled 1\n\t}}\n}}\n"
        ),
    )
    .expect("config");
    let d = Daemon::start(&conf);
    let mut real = login(&d, 1);
    // Warm up the path an ordinary session takes, so the baseline includes it.
    for k in 0..32u64 {
        real.write16(0, k * 128, &vec![k as u8; 128 * BS as usize], BS)
            .expect("warm-up write")
            .good()
            .expect("good");
        real.read16(0, k * 128, 128, BS).expect("warm-up read");
    }
    let idle = d.rss_kib();

    // Each flood session sends WRITE(16)s of 32 MiB and never a Data-Out.
    let mut flood = Vec::new();
    let (mut busy, mut task_set_full) = (0, 0);
    for n in 0..FLOOD_SESSIONS {
        let mut i = login(&d, 100 + n as u16);
        let cmd_sn = i.cmd_sn();
        for k in 0..WRITES_PER_SESSION {
            let cdb = scsi::write16(u64::from(k) * u64::from(FLOOD_BLOCKS), FLOOD_BLOCKS);
            let bhs = pdu::scsi_command(&pdu::ScsiCommand {
                lun: lun_from_u16(0),
                itt: 0x1000 + k,
                attr: task_attr::SIMPLE,
                write: true,
                final_pdu: true,
                exp_data_transfer_len: FLOOD_BLOCKS * BS,
                cmd_sn: cmd_sn.wrapping_add(k),
                exp_stat_sn: i.exp_stat_sn(),
                cdb: &cdb,
                ..Default::default()
            });
            i.send_pdu(&bhs, &[]).expect("send");
        }
        // What comes back: R2Ts for the writes the budget took, a status for the others.
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            let Ok(p) = i.recv_pdu(Duration::from_millis(200)) else {
                break;
            };
            if p.bhs.opcode() == Some(Opcode::ScsiResponse) {
                match p.bhs.status() {
                    0x08 => busy += 1,
                    0x28 => task_set_full += 1,
                    s => panic!("a flood write answered with status {s:#x}"),
                }
            }
        }
        flood.push(i);
    }
    let charged = wait_buffers(&d, "flood charged", |b| b > 0);
    let peak = d.rss_kib();
    eprintln!(
        "flood: {charged} bytes charged of {} MiB; {busy} BUSY, {task_set_full} TASK SET FULL; \
         resident {idle} KiB idle, {peak} KiB under the flood",
        BUDGET_MIB
    );
    assert!(
        charged <= BUDGET_MIB << 20,
        "charged {charged} beyond the budget"
    );
    assert!(
        busy + task_set_full > 0,
        "a flood of {} MiB was neither refused nor bounded",
        FLOOD_SESSIONS * WRITES_PER_SESSION as usize * 32
    );
    assert!(
        peak.saturating_sub(idle) < ((BUDGET_MIB as u64) + 64) << 10,
        "resident size grew from {idle} to {peak} KiB with a {BUDGET_MIB} MiB budget"
    );

    // The ordinary session is still served, with its data intact.
    for k in 0..16u64 {
        let data = vec![0xa5 ^ k as u8; 64 << 10];
        let w = real.write16(0, k * 128, &data, BS).expect("write");
        assert!(
            w.is_good(),
            "a write of the ordinary session during the flood: {w:?}"
        );
        let r = real.read16(0, k * 128, 128, BS).expect("read");
        assert!(
            r.is_good(),
            "a read of the ordinary session during the flood: {r:?}"
        );
    }

    drop(flood);
    wait_buffers(&d, "the flood's buffers released", |b| b == 0);
    // The memory goes back to the system once the burst is over.
    let end = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = d.rss_kib();
        if now < idle + (32 << 10) || Instant::now() > end {
            break now;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("resident after the flood: {after} KiB (idle {idle} KiB)");
    assert!(
        after < idle + (32 << 10),
        "resident size stayed at {after} KiB after the flood (idle {idle} KiB)"
    );
    real.logout().expect("logout");
}
