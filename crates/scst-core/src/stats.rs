//! Per-session I/O statistics, as SCST shows them under `sessions/<initiator>/`
//! (docs/scst-reference.md 2.7): commands by data direction with their bytes and how many were
//! not 4 KiB aligned, commands without data, and commands with an unknown opcode.
//!
//! A session is served by one connection task, so the counters see no contention;
//! they are atomics only because the management tree reads them from elsewhere.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use scsi_wire::Sense;

use crate::cmd::{Cmd, Response};

/// Data direction of a command, from what the transport carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
    Bidi,
    None,
}

impl Direction {
    pub fn of(cmd: &Cmd) -> Direction {
        match (cmd.expected_in > 0, !cmd.data_out.is_empty()) {
            (true, true) => Direction::Bidi,
            (true, false) => Direction::Read,
            (false, true) => Direction::Write,
            (false, false) => Direction::None,
        }
    }
}

/// Commands, bytes and unaligned commands of one direction.
#[derive(Default)]
pub struct IoCounters {
    cmds: AtomicU64,
    bytes: AtomicU64,
    unaligned: AtomicU64,
}

impl IoCounters {
    fn add(&self, bytes: u64, unaligned: bool) {
        self.cmds.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if unaligned {
            self.unaligned.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn cmds(&self) -> u64 {
        self.cmds.load(Ordering::Relaxed)
    }

    pub fn kib(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed) >> 10
    }

    pub fn unaligned(&self) -> u64 {
        self.unaligned.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.cmds.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.unaligned.store(0, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct SessionStats {
    /// Commands the transport holds for the session now (SCST's `commands`):
    /// received and not yet answered, whether waiting for data, held or executing.
    outstanding: AtomicUsize,
    pub read: IoCounters,
    pub write: IoCounters,
    pub bidi: IoCounters,
    none: AtomicU64,
    unknown: AtomicU64,
}

impl SessionStats {
    /// The transport took a new command.
    pub fn cmd_received(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    /// The transport is done with `n` commands (answered, aborted, or its
    /// connection ended).
    pub fn cmds_done(&self, n: usize) {
        self.outstanding.fetch_sub(n, Ordering::Relaxed);
    }

    /// The transport holds `n` commands now (a transport that counts them itself
    /// and reports once per turn, instead of per command).
    pub fn set_outstanding(&self, n: usize) {
        self.outstanding.store(n, Ordering::Relaxed);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn none_cmds(&self) -> u64 {
        self.none.load(Ordering::Relaxed)
    }

    pub fn unknown_cmds(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed)
    }

    /// Count a command routed by the core, by direction and size.
    pub(crate) fn count(&self, cmd: &Cmd) {
        let dir = Direction::of(cmd);
        let bytes = match dir {
            Direction::Read => cmd.expected_in as u64,
            Direction::Write => cmd.data_out.len() as u64,
            Direction::Bidi => cmd.expected_in as u64 + cmd.data_out.len() as u64,
            Direction::None => {
                self.none.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let unaligned = unaligned(&cmd.cdb, bytes);
        match dir {
            Direction::Read => self.read.add(bytes, unaligned),
            Direction::Write => self.write.add(bytes, unaligned),
            _ => self.bidi.add(bytes, unaligned),
        }
    }

    /// Count the outcome of a command a device executed.
    pub(crate) fn count_result(&self, r: &Response) {
        if r.sense == Some(Sense::INVALID_OPCODE) {
            self.unknown.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writing 0 to a statistics attribute resets the session's counters (not the
    /// outstanding-command gauge, which is state).
    pub fn reset(&self) {
        self.read.reset();
        self.write.reset();
        self.bidi.reset();
        self.none.store(0, Ordering::Relaxed);
        self.unknown.store(0, Ordering::Relaxed);
    }
}

/// Whether a transfer is not 4 KiB aligned: its length, or for READ/WRITE commands its
/// byte offset on the medium (LBA times the block size the CDB implies).
fn unaligned(cdb: &[u8], bytes: u64) -> bool {
    const ALIGN: u64 = 4096;
    if !bytes.is_multiple_of(ALIGN) {
        return true;
    }
    let be = |r: std::ops::Range<usize>| {
        cdb.get(r)
            .map(|b| b.iter().fold(0u64, |a, &x| a << 8 | x as u64))
    };
    let extent = match cdb.first() {
        // READ(6)/WRITE(6): 21-bit LBA, 0 blocks means 256.
        Some(0x08 | 0x0A) => be(1..4)
            .zip(be(4..5))
            .map(|(l, n)| (l & 0x1F_FFFF, if n == 0 { 256 } else { n })),
        Some(0x28 | 0x2A) => be(2..6).zip(be(7..9)),
        Some(0xA8 | 0xAA) => be(2..6).zip(be(6..10)),
        Some(0x88 | 0x8A) => be(2..10).zip(be(10..14)),
        _ => None,
    };
    match extent {
        Some((lba, blocks)) if blocks > 0 => {
            !lba.wrapping_mul(bytes / blocks).is_multiple_of(ALIGN)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read10(lba: u32, blocks: u16) -> Vec<u8> {
        let mut c = vec![0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    #[test]
    fn alignment_of_length_and_offset() {
        assert!(!unaligned(&read10(8, 8), 4096));
        assert!(unaligned(&read10(1, 8), 4096), "offset 512");
        assert!(unaligned(&read10(0, 1), 512), "length 512");
        assert!(!unaligned(&read10(3, 1), 4096), "4 KiB blocks");
        assert!(!unaligned(&[0x12, 0, 0, 0, 0x24, 0], 0));
    }
}
