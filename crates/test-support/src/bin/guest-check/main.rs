//! The host side of the guest tests (scripts/guest/): an iSCSI initiator that checks
//! what scstd, running in a QEMU guest, did with its storage.
//!
//! - `guest-check free-port`: a free TCP port on 127.0.0.1, for the guest's portal.
//! - `guest-check durable-verify ADDR TARGET STATE`: after a boot, read every block
//!   under test and check it against the record in STATE (acknowledged-durable writes
//!   intact, plain writes old or new, nothing torn); register (first round) or check
//!   the APTPL persistent reservation; tighten the record to what survived.
//! - `guest-check durable-write ADDR TARGET STATE SEED`: prints `writing`, then writes
//!   with FUA, with SYNCHRONIZE CACHE and plain, until the connection is cut (the
//!   guest's power), recording in STATE which writes were acknowledged as durable.
//! - `guest-check device-errors ADDR TARGET MEDIUM DMERROR`: the device-error checks
//!   (faults.rs); MEDIUM and DMERROR are the failing ranges as START+COUNT sectors.
//! - `guest-check device-timeout ADDR TARGET`: a device that stops answering fails
//!   its commands in the end while a healthy LUN is served (faults.rs).

#![forbid(unsafe_code)]

mod durable;
mod faults;
mod record;

use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;

use test_support::{scsi, Initiator, LoginOptions};

type Res = Result<(), Box<dyn std::error::Error>>;

const INITIATOR: &str = "iqn.2026-12.rs.scst:guest-check";

fn usage() -> ExitCode {
    eprintln!(
        "usage: guest-check free-port\n       \
         guest-check durable-verify ADDR:PORT TARGET STATE\n       \
         guest-check durable-write ADDR:PORT TARGET STATE SEED\n       \
         guest-check device-errors ADDR:PORT TARGET START+COUNT START+COUNT\n       \
         guest-check device-timeout ADDR:PORT TARGET"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["free-port"] => free_port(),
        ["durable-verify", addr, target, state] => durable::verify(addr, target, Path::new(state)),
        ["durable-write", addr, target, state, seed] => match seed.parse() {
            Ok(seed) => durable::write(addr, target, Path::new(state), seed),
            Err(_) => return usage(),
        },
        ["device-errors", addr, target, medium, dm_error] => {
            match (medium.parse(), dm_error.parse()) {
                (Ok(m), Ok(d)) => faults::run(addr, target, m, d),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("guest-check: {e}");
                    return usage();
                }
            }
        }
        ["device-timeout", addr, target] => faults::timeout(addr, target),
        _ => return usage(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guest-check: {e}");
            ExitCode::FAILURE
        }
    }
}

fn free_port() -> Res {
    let l = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", l.local_addr()?.port());
    Ok(())
}

/// A session under the checker's one initiator name and ISID, so that each round's
/// sessions are the same I_T nexus (the persistent reservation's registrant).
fn login(addr: &str, target: &str) -> Result<Initiator, Box<dyn std::error::Error>> {
    let mut ini = Initiator::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    ini.login(INITIATOR, target, &LoginOptions::default())
        .map_err(|e| format!("login to {target} at {addr}: {e}"))?;
    Ok(ini)
}

/// Unit attentions (power on, reset) greet every new nexus: consume them.
fn settle(ini: &mut Initiator, lun: u16) -> Res {
    for _ in 0..8 {
        if ini.test_unit_ready(lun)?.is_good() {
            return Ok(());
        }
    }
    Err(format!("LUN {lun}: TEST UNIT READY never answered GOOD").into())
}

/// WRITE(16) with the FUA bit: durable once answered GOOD.
fn write16_fua(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = scsi::write16(lba, blocks);
    c[1] |= 0x08;
    c
}
