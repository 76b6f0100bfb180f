//! Device errors (device-errors.conf): LUN 0 is a scsi_debug disk whose reads of a
//! sector range fail with MEDIUM ERROR, LUN 1 a device-mapper table with an error
//! target over a range (reads and writes fail with EIO), LUN 2 a healthy file. Failed
//! reads and writes must reach the initiator as MEDIUM ERROR sense (SCST's: UNRECOVERED
//! READ ERROR for reads, PERIPHERAL DEVICE WRITE FAULT for writes), a write that failed
//! must never be answered GOOD, and the healthy LUN must be served while errors happen
//! and after.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use scsi_wire::asc::{self, Asc};
use scsi_wire::sense::key;
use test_support::iscsi_wire::bhs::task_attr;
use test_support::{scsi, Initiator, ScsiResult};

use crate::record::{self, Content};
use crate::{login, Res};

const MEDIUM_LUN: u16 = 0;
const FAULTY_LUN: u16 = 1;
const HEALTHY_LUN: u16 = 2;
const READ_ERROR: Asc = asc::UNRECOVERED_READ_ERROR;
/// SCST's answer to a failed write.
const WRITE_ERROR: Asc = asc::PERIPHERAL_DEVICE_WRITE_FAULT;

/// A range of blocks, parsed from START+COUNT.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub start: u64,
    pub count: u64,
}

impl std::str::FromStr for Range {
    type Err = String;
    fn from_str(s: &str) -> Result<Range, String> {
        let (a, b) = s
            .split_once('+')
            .ok_or_else(|| format!("'{s}': expected START+COUNT"))?;
        let start = a.parse().map_err(|_| format!("'{s}': bad START"))?;
        let count: u64 = b.parse().map_err(|_| format!("'{s}': bad COUNT"))?;
        if count == 0 {
            return Err(format!("'{s}': COUNT must be positive"));
        }
        Ok(Range { start, count })
    }
}

fn expect_sense(what: &str, r: &ScsiResult, want: Asc) -> Res {
    if r.is_good() {
        return Err(format!("{what}: answered GOOD, but the device failed it").into());
    }
    match r.sense_key_asc_ascq() {
        Some((key::MEDIUM_ERROR, code, qualifier)) if Asc { code, qualifier } == want => Ok(()),
        got => Err(format!(
            "{what}: status {:#04x} sense {got:02x?}, expected MEDIUM ERROR, {want}",
            r.status
        )
        .into()),
    }
}

fn pattern(lun: u16, lba: u64, blocks: u64, gen: u64) -> Vec<u8> {
    let mut data = vec![0u8; blocks as usize * 512];
    for (i, b) in data.chunks_mut(512).enumerate() {
        record::encode(b, lun, lba + i as u64, gen);
    }
    data
}

/// Write `blocks` at `lba` and read them back intact.
fn write_read_back(ini: &mut Initiator, lun: u16, lba: u64, blocks: u64, gen: u64) -> Res {
    let data = pattern(lun, lba, blocks, gen);
    ini.write16(lun, lba, &data, 512)?
        .good()
        .map_err(|e| format!("LUN {lun}: WRITE(16) at LBA {lba}: {e}"))?;
    let back = ini
        .read16(lun, lba, blocks as u32, 512)?
        .good()
        .map_err(|e| format!("LUN {lun}: READ(16) at LBA {lba}: {e}"))?;
    if back.data != data {
        return Err(
            format!("LUN {lun}: LBA {lba}: data read back differs from data written").into(),
        );
    }
    Ok(())
}

pub fn run(addr: &str, target: &str, medium: Range, dm_error: Range) -> Res {
    let mut ini = login(addr, target)?;
    for lun in [MEDIUM_LUN, FAULTY_LUN, HEALTHY_LUN] {
        crate::settle(&mut ini, lun)?;
        let (_, block_len) = ini.capacity(lun)?;
        if block_len != 512 {
            return Err(format!("LUN {lun}: {block_len}-byte blocks, the test expects 512").into());
        }
    }

    // scsi_debug's medium error: reads in the range fail, reads beside it do not.
    let r = ini.read16(MEDIUM_LUN, medium.start, 8, 512)?;
    expect_sense("LUN 0: READ(16) of the medium error range", &r, READ_ERROR)?;
    ini.read16(MEDIUM_LUN, medium.start.saturating_sub(8), 8, 512)?
        .good()
        .map_err(|e| format!("LUN 0: READ(16) before the medium error range: {e}"))?;
    write_read_back(&mut ini, MEDIUM_LUN, medium.start + medium.count, 8, 1)?;
    println!(
        "device-errors: scsi_debug medium error read -> MEDIUM ERROR / UNRECOVERED READ ERROR"
    );

    // The error target: reads and writes fail, and a failed write is never GOOD, also
    // when part of it lies on good blocks.
    let bad = dm_error.start;
    let r = ini.read16(FAULTY_LUN, bad, 8, 512)?;
    expect_sense("LUN 1: READ(16) of the error target", &r, READ_ERROR)?;
    let r = ini.write16(FAULTY_LUN, bad, &pattern(FAULTY_LUN, bad, 8, 2), 512)?;
    expect_sense("LUN 1: WRITE(16) to the error target", &r, WRITE_ERROR)?;
    let straddle = bad.saturating_sub(4);
    let r = ini.write16(
        FAULTY_LUN,
        straddle,
        &pattern(FAULTY_LUN, straddle, 8, 3),
        512,
    )?;
    expect_sense(
        "LUN 1: WRITE(16) straddling the error target",
        &r,
        WRITE_ERROR,
    )?;
    let r = ini.scsi(
        FAULTY_LUN,
        &crate::write16_fua(bad, 8),
        &pattern(FAULTY_LUN, bad, 8, 4),
        0,
        task_attr::SIMPLE,
    )?;
    expect_sense(
        "LUN 1: WRITE(16) with FUA to the error target",
        &r,
        WRITE_ERROR,
    )?;
    // Beside the bad range the same device works, and a flush of it succeeds.
    write_read_back(&mut ini, FAULTY_LUN, bad + dm_error.count, 8, 5)?;
    write_read_back(&mut ini, FAULTY_LUN, 0, 8, 6)?;
    ini.sync_cache(FAULTY_LUN)?
        .good()
        .map_err(|e| format!("LUN 1: SYNCHRONIZE CACHE: {e}"))?;
    println!("device-errors: device-mapper error target -> MEDIUM ERROR on read and write, no failed write acknowledged");

    // Failing commands and healthy ones in flight together: the healthy LUN's all
    // complete GOOD with their data.
    let mut failing = Vec::new();
    let mut healthy = Vec::new();
    for i in 0..8u64 {
        failing.push(ini.submit(
            FAULTY_LUN,
            &scsi::read16(bad, 8),
            &[],
            4096,
            task_attr::SIMPLE,
        )?);
        failing.push(ini.submit(
            MEDIUM_LUN,
            &scsi::read16(medium.start, 8),
            &[],
            4096,
            task_attr::SIMPLE,
        )?);
        let lba = i * 8;
        let data = pattern(HEALTHY_LUN, lba, 8, 10 + i);
        healthy.push((
            ini.submit(
                HEALTHY_LUN,
                &scsi::write16(lba, 8),
                &data,
                0,
                task_attr::SIMPLE,
            )?,
            lba,
            10 + i,
        ));
    }
    for itt in failing {
        if ini.wait(itt)?.is_good() {
            return Err("a read of a failing range was answered GOOD".into());
        }
    }
    for (itt, lba, _) in &healthy {
        ini.wait(*itt)?
            .good()
            .map_err(|e| format!("LUN 2: WRITE(16) at LBA {lba} beside failing I/O: {e}"))?;
    }
    for (_, lba, gen) in healthy {
        let r = ini.read16(HEALTHY_LUN, lba, 8, 512)?.good()?;
        for (i, b) in r.data.chunks(512).enumerate() {
            if record::decode(b, HEALTHY_LUN, lba + i as u64) != (Content::Write { gen }) {
                return Err(format!("LUN 2: LBA {}: not the data written", lba + i as u64).into());
            }
        }
    }

    // After the errors: every LUN answers, and a new session is served.
    drop(ini);
    let mut ini = login(addr, target)?;
    for lun in [MEDIUM_LUN, FAULTY_LUN, HEALTHY_LUN] {
        crate::settle(&mut ini, lun)?;
    }
    write_read_back(&mut ini, HEALTHY_LUN, 100, 8, 20)?;
    write_read_back(&mut ini, MEDIUM_LUN, 0, 8, 21)?;
    println!(
        "device-errors: the healthy LUN was served during and after the errors; all LUNs answer"
    );
    Ok(())
}

/// Device timeouts (device-timeout.conf): LUN 0's device answers nothing, LUN 1 is
/// healthy. A read of LUN 0 must end, after the kernel's error handling gives up, in
/// MEDIUM ERROR sense, and LUN 1 must be served while it hangs; afterwards a write to
/// LUN 0 must fail too, never be answered GOOD.
pub fn timeout(addr: &str, target: &str) -> Res {
    const STUCK_LUN: u16 = 0;
    const HEALTHY: u16 = 1;
    // The kernel's error handling takes tens of seconds to give up on the device.
    const HANG_LIMIT: Duration = Duration::from_secs(300);
    let mut ini = login(addr, target)?;
    ini.set_timeout(HANG_LIMIT);
    crate::settle(&mut ini, STUCK_LUN)?;
    crate::settle(&mut ini, HEALTHY)?;
    let started = Instant::now();
    let stuck = ini.submit(STUCK_LUN, &scsi::read16(0, 8), &[], 4096, task_attr::SIMPLE)?;
    // Served while the read hangs, through the kernel's aborts and resets: writes and
    // reads of the healthy LUN, one pair at a time, until the hung read completes.
    let mut served = 0u64;
    while ini.outstanding().contains(&stuck) {
        if started.elapsed() > HANG_LIMIT {
            return Err(format!("LUN 0: the hung read did not end within {HANG_LIMIT:?}").into());
        }
        write_read_back(&mut ini, HEALTHY, served * 8 % 32768, 8, 100 + served)?;
        served += 1;
        // Paced, so that the guest's one emulated CPU is not all spent serving them.
        std::thread::sleep(Duration::from_millis(20));
    }
    if served == 0 {
        return Err("LUN 0: the read of the device that stopped answering did not hang".into());
    }
    let r = ini.wait(stuck)?;
    let waited = started.elapsed();
    expect_sense(
        "LUN 0: READ(16) of the device that stopped answering",
        &r,
        READ_ERROR,
    )?;
    let r = ini.write16(STUCK_LUN, 0, &pattern(STUCK_LUN, 0, 8, 1), 512)?;
    expect_sense(
        "LUN 0: WRITE(16) to the device that stopped answering",
        &r,
        WRITE_ERROR,
    )?;
    write_read_back(&mut ini, HEALTHY, 0, 8, 2)?;
    println!(
        "device-timeout: the hung read ended in MEDIUM ERROR after {:.1} s; the healthy LUN \
         served {served} write+read pairs meanwhile and answers after",
        waited.as_secs_f64()
    );
    Ok(())
}
