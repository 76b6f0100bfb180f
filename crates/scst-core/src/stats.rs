//! I/O statistics.
//!
//! - Per session, as SCST shows them under `sessions/<initiator>/` (docs/scst-reference.md
//!   2.7), counted at receipt: commands by data direction with their bytes and how many
//!   were not 4 KiB aligned, commands without data, and commands with an unknown opcode.
//! - Per I_T_L nexus ([`LunStats`] on each tgt_dev), counted at completion by the
//!   nexus's thread: commands and bytes by direction, failed commands, and (while
//!   `measure_latency` is on) latency (crate::latency). Sessions, devices and targets
//!   are sums of their nexuses, read when asked, plus what their gone nexuses left in
//!   their `retired` totals, so that the sums never go down.
//!
//! A session is served by one connection task, so the counters see no contention;
//! they are atomics only because the management tree reads them from elsewhere. That
//! one thread is their only writer, so it adds with a load and a store (`owner_add`),
//! not a locked read-modify-write on every command; totals that several threads fold
//! into (`retired`) use `fetch_add`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use scsi_wire::Sense;

use crate::cmd::{Cmd, Response};

/// Add `n` to a counter that one thread alone writes (the thread of the session's
/// nexus). Readers elsewhere see a recent value. A reset written from another thread
/// while a command completes may be overwritten by that one addition; never a torn value.
#[inline]
pub(crate) fn owner_add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

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
        owner_add(&self.cmds, 1);
        owner_add(&self.bytes, bytes);
        if unaligned {
            owner_add(&self.unaligned, 1);
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
                owner_add(&self.none, 1);
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
            // Results of blocking commands arrive from I/O threads, several at once.
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

/// Completed commands of one I_T_L nexus (or totals folded from gone ones): by data
/// direction, commands and bytes; and the commands that ended in a status other than
/// GOOD (CHECK CONDITION, BUSY, RESERVATION CONFLICT, TASK SET FULL). Counted when the
/// response goes back to the transport, by the nexus's thread only: the atomics are
/// uncontended, and on the tgt_dev's own cache lines.
#[derive(Default)]
#[repr(align(128))]
pub struct IoTotals {
    /// Indexed by [`Direction::index`].
    cmds: [AtomicU64; 4],
    bytes: [AtomicU64; 4],
    errors: AtomicU64,
}

impl Direction {
    /// Position in per-direction arrays and in [`Direction::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub const ALL: [Direction; 4] = [
        Direction::Read,
        Direction::Write,
        Direction::Bidi,
        Direction::None,
    ];

    /// SCST's prefix for the direction's counters (`read_cmd_count`).
    pub fn name(self) -> &'static str {
        match self {
            Direction::Read => "read",
            Direction::Write => "write",
            Direction::Bidi => "bidi",
            Direction::None => "none",
        }
    }

    /// Bytes the command moves in its direction (expected data-in plus data-out).
    pub fn bytes_of(cmd: &Cmd) -> u64 {
        cmd.expected_in as u64 + cmd.data_out.len() as u64
    }
}

impl IoTotals {
    pub(crate) fn count(&self, dir: Direction, bytes: u64, status: u8) {
        let i = dir.index();
        owner_add(&self.cmds[i], 1);
        owner_add(&self.bytes[i], bytes);
        if status != scsi_wire::status::GOOD {
            owner_add(&self.errors, 1);
        }
    }

    pub fn snapshot(&self) -> IoSnapshot {
        let mut s = IoSnapshot::default();
        self.add_to(&mut s);
        s
    }

    pub fn add_to(&self, s: &mut IoSnapshot) {
        for i in 0..4 {
            s.cmds[i] += self.cmds[i].load(Ordering::Relaxed);
            s.bytes[i] += self.bytes[i].load(Ordering::Relaxed);
        }
        s.errors += self.errors.load(Ordering::Relaxed);
    }

    fn absorb(&self, s: &IoSnapshot) {
        for i in 0..4 {
            self.cmds[i].fetch_add(s.cmds[i], Ordering::Relaxed);
            self.bytes[i].fetch_add(s.bytes[i], Ordering::Relaxed);
        }
        self.errors.fetch_add(s.errors, Ordering::Relaxed);
    }
}

/// [`IoTotals`] as read, summed over nexuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoSnapshot {
    pub cmds: [u64; 4],
    pub bytes: [u64; 4],
    pub errors: u64,
}

/// What a tgt_dev records (and what devices, sessions and targets keep of gone ones).
#[derive(Default)]
pub struct LunStats {
    pub io: IoTotals,
    /// Allocated at the first sample with `measure_latency` on.
    latency: std::sync::OnceLock<Box<crate::latency::LatencyTable>>,
}

impl LunStats {
    /// A command finished: its counters.
    pub(crate) fn complete(&self, dir: Direction, bytes: u64, status: u8) {
        self.io.count(dir, bytes, status);
    }

    /// The latency of `n` measured commands of one direction and size class (while
    /// `measure_latency` is on).
    pub(crate) fn record_latency(
        &self,
        dir: Direction,
        bytes: u64,
        took: std::time::Duration,
        n: u64,
    ) {
        self.latency
            .get_or_init(Default::default)
            .record_n(dir, bytes, took, n);
    }

    pub fn latency(&self) -> Option<&crate::latency::LatencyTable> {
        self.latency.get().map(|b| &**b)
    }

    /// Add this nexus's latency samples to `s`.
    pub fn add_latency_to(&self, s: &mut crate::latency::LatencySnapshot) {
        if let Some(t) = self.latency() {
            t.add_to(s);
        }
    }

    pub fn reset_latency(&self) {
        if let Some(t) = self.latency() {
            t.reset();
        }
    }

    /// Take in what a gone nexus recorded.
    pub(crate) fn absorb(&self, gone: &LunStats) {
        self.io.absorb(&gone.io.snapshot());
        if let Some(t) = gone.latency() {
            self.latency
                .get_or_init(Default::default)
                .absorb(&t.snapshot());
        }
    }
}

/// A session is going: its target keeps what its nexuses counted.
pub(crate) fn fold_into_target(s: &crate::Session) {
    for td in &s.luns().entries {
        s.target.retired.absorb(&td.stats);
    }
    s.target.retired.absorb(&s.retired);
}

/// Readers' sums: a session, a target or a device is what its live nexuses recorded
/// plus what its gone ones left in its `retired` totals, so that the sums never go
/// down while the daemon runs (Prometheus counters).
impl crate::Session {
    pub fn io_totals(&self) -> IoSnapshot {
        let mut s = self.retired.io.snapshot();
        for td in &self.luns().entries {
            td.stats.io.add_to(&mut s);
        }
        s
    }

    /// The session's latency table (SCST's `sessions/<s>/latency/`).
    pub fn latency(&self) -> crate::latency::LatencySnapshot {
        let mut s = Default::default();
        self.retired.add_latency_to(&mut s);
        for td in &self.luns().entries {
            td.stats.add_latency_to(&mut s);
        }
        s
    }

    /// Writing to a session latency file clears the session's tables.
    pub fn reset_latency(&self) {
        self.retired.reset_latency();
        for td in &self.luns().entries {
            td.stats.reset_latency();
        }
    }
}

impl crate::Target {
    pub fn io_totals(&self) -> IoSnapshot {
        let mut s = self.retired.io.snapshot();
        for sess in self.sessions() {
            let t = sess.io_totals();
            for i in 0..4 {
                s.cmds[i] += t.cmds[i];
                s.bytes[i] += t.bytes[i];
            }
            s.errors += t.errors;
        }
        s
    }
}

impl crate::DeviceEntry {
    pub fn io_totals(&self) -> IoSnapshot {
        let mut s = self.retired.io.snapshot();
        for td in self.tgt_devs() {
            td.stats.io.add_to(&mut s);
        }
        s
    }

    pub fn latency(&self) -> crate::latency::LatencySnapshot {
        let mut s = Default::default();
        self.retired.add_latency_to(&mut s);
        for td in self.tgt_devs() {
            td.stats.add_latency_to(&mut s);
        }
        s
    }
}

/// The root attribute `measure_latency`, read by every command's submit: on a cache
/// line of its own, so that what the data path writes nearby (the command-memory
/// budget) does not make each read a miss.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct LatencySwitch(std::sync::atomic::AtomicBool);

impl crate::Scst {
    /// Whether commands' latency is measured (the root attribute `measure_latency`).
    pub fn measure_latency(&self) -> bool {
        self.measure_latency.0.load(Ordering::Relaxed)
    }

    /// Turn latency measurement on or off; off clears every latency table, as SCST
    /// frees its tables then.
    pub fn set_measure_latency(&self, on: bool) {
        self.measure_latency.0.store(on, Ordering::Relaxed);
        if on {
            return;
        }
        for t in self.all_targets() {
            t.retired.reset_latency();
            for s in t.sessions() {
                s.reset_latency();
            }
        }
        for d in self.devices() {
            d.retired.reset_latency();
        }
    }

    /// Every target of every driver, by driver then name.
    pub fn all_targets(&self) -> Vec<Arc<crate::Target>> {
        let mut v: Vec<_> = self.registry.lock().targets.values().cloned().collect();
        v.sort_by(|a, b| (&a.driver, &a.name).cmp(&(&b.driver, &b.name)));
        v
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
