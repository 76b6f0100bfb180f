//! Measurement helpers for scripts/bench-report that libiscsi's tools do not offer:
//!
//! - `iscsi-probe latency ADDR TARGET LUN COUNT`: COUNT 4 KiB READ(10)s at random
//!   4 KiB-aligned offsets of the first GiB, one at a time; prints the median, the
//!   99th percentile and the mean per I/O in microseconds (`p50_us p99_us mean_us`).
//! - `iscsi-probe idle ADDR TARGET N`: logs in N sessions under distinct initiator
//!   names, prints `ready`, and keeps them open (idle) until stdin reaches EOF.
//!
//! The same client runs against every target compared, so its own costs cancel out
//! of the ratios.

#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

use test_support::{Initiator, LoginOptions};

const BLOCK: u32 = 4096;

fn usage() -> ExitCode {
    eprintln!(
        "usage: iscsi-probe latency ADDR:PORT TARGET LUN COUNT\n       iscsi-probe idle ADDR:PORT TARGET N"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["latency", addr, target, lun, count] => match (lun.parse(), count.parse()) {
            (Ok(lun), Ok(count)) => latency(addr, target, lun, count),
            _ => return usage(),
        },
        ["idle", addr, target, n] => match n.parse() {
            Ok(n) => idle(addr, target, n),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iscsi-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn session(
    addr: &str,
    target: &str,
    name: &str,
    n: u32,
) -> Result<Initiator, Box<dyn std::error::Error>> {
    let mut ini = Initiator::connect(addr)?;
    let mut opts = LoginOptions::default();
    // A distinct ISID per session: each is its own I_T nexus.
    opts.isid[2..6].copy_from_slice(&n.to_be_bytes());
    ini.login(name, target, &opts)?;
    Ok(ini)
}

fn latency(addr: &str, target: &str, lun: u16, count: usize) -> Res {
    let mut ini = session(addr, target, "iqn.2026-11.rs.scst:probe-latency", 1)?;
    // A new nexus starts with unit attentions (power on, reset): consume them.
    for _ in 0..8 {
        if ini.test_unit_ready(lun)?.is_good() {
            break;
        }
    }
    let (blocks, block_size) = ini.capacity(lun)?;
    let per = BLOCK / block_size;
    let span = (blocks.min((1 << 30) / u64::from(block_size)) / u64::from(per)).max(1);
    // xorshift64: a fixed, cheap sequence of offsets.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut lat = Vec::with_capacity(count);
    // Warm up the path (and the page cache of a file LUN) before measuring.
    for i in 0..count.min(1000) + count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let lba = u32::try_from((x % span) * u64::from(per))?;
        let t = Instant::now();
        ini.read10(lun, lba, u16::try_from(per)?, block_size)?
            .good()?;
        if i >= count.min(1000) {
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }
    lat.sort_unstable();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)] as f64 / 1000.0;
    let mean = lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0;
    println!("{:.1} {:.1} {:.1}", pct(50), pct(99), mean);
    Ok(())
}

fn idle(addr: &str, target: &str, n: u32) -> Res {
    let mut sessions = Vec::with_capacity(n as usize);
    for i in 0..n {
        let name = format!("iqn.2026-11.rs.scst:probe-idle-{i}");
        sessions.push(session(addr, target, &name, i + 2)?);
    }
    println!("ready");
    // Hold the sessions until the caller closes our stdin; the initiator answers the
    // target's NOP-In pings in the background, so the sessions stay alive and idle.
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    drop(sessions);
    Ok(())
}
