//! Device errors (device-errors.conf): LUN 0 is a scsi_debug disk whose reads of a
//! sector range fail with MEDIUM ERROR, LUN 1 a device-mapper table with an error
//! target over a range (reads and writes fail with EIO), LUN 2 a healthy file. Failed
//! reads and writes must reach the initiator as MEDIUM ERROR sense (SCST's: UNRECOVERED
//! READ ERROR for reads, PERIPHERAL DEVICE WRITE FAULT for writes), a write that failed
//! must never be answered GOOD, and the healthy LUN must be served while errors happen
//! and after.

#![forbid(unsafe_code)]

use test_support::iscsi_wire::bhs::task_attr;
use test_support::{scsi, Initiator, ScsiResult};

use crate::record::{self, Content};
use crate::{login, Res};

const MEDIUM_LUN: u16 = 0;
const FAULTY_LUN: u16 = 1;
const HEALTHY_LUN: u16 = 2;
const MEDIUM_ERROR: u8 = 0x03;
/// UNRECOVERED READ ERROR.
const READ_ERROR: (u8, u8) = (0x11, 0x00);
/// PERIPHERAL DEVICE WRITE FAULT, SCST's answer to a failed write.
const WRITE_ERROR: (u8, u8) = (0x03, 0x00);

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

fn expect_sense(what: &str, r: &ScsiResult, want: (u8, u8)) -> Res {
    if r.is_good() {
        return Err(format!("{what}: answered GOOD, but the device failed it").into());
    }
    match r.sense_key_asc_ascq() {
        Some((MEDIUM_ERROR, asc, ascq)) if (asc, ascq) == want => Ok(()),
        got => Err(format!(
            "{what}: status {:#04x} sense {got:02x?}, expected MEDIUM ERROR {:02x}/{:02x}",
            r.status, want.0, want.1
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
    let fua = {
        let mut c = scsi::write16(bad, 8);
        c[1] |= 0x08;
        c
    };
    let r = ini.scsi(
        FAULTY_LUN,
        &fua,
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
