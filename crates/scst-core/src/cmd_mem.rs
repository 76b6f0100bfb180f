//! The daemon-wide budget for command data buffers, SCST's `scst_max_cmd_mem` (MiB,
//! about a quarter of RAM by default). Every transport charges a command's data buffer
//! (write data being collected, read data being produced) here before it allocates
//! it, and gives it back when the command ends. A command that does not fit is
//! answered BUSY or TASK SET FULL, as SCST answers any resource shortage, instead of
//! growing the process without bound.
//!
//! Sharing is fair: while less than half the budget is in use anyone may take what
//! fits; beyond that a connection that already holds buffers gets no more than its
//! share (the budget over the connections registered), so that one initiator's large
//! queue cannot starve the others. A connection holding nothing may always take one
//! buffer that fits, and when nothing at all is charged one command is let through
//! whatever its size, so that a single large command never waits forever. The last
//! eighth of the budget is kept for small buffers (at most 1/64 of it): large
//! transfers that stall, holding their buffers, cannot shut out the reads and writes
//! of ordinary size that other initiators send.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// SCST's default: about a quarter of the machine's memory (1 GiB where it cannot be
/// read).
pub fn default_limit() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .unwrap_or(4 << 20);
    // Whole MiB, as the attribute shows it.
    (total_kib / 4) >> 10 << 20
}

/// `scst_max_cmd_mem`: limit, use and the connections sharing it.
#[derive(Debug)]
pub struct CmdMem {
    limit: AtomicUsize,
    used: AtomicUsize,
    /// Connections (or queues) that charge buffers here.
    sharers: AtomicUsize,
    /// Set when use went past a quarter of the limit since the last
    /// [`CmdMem::take_burst`]: the allocator may hold memory worth returning.
    burst: AtomicBool,
}

impl CmdMem {
    pub fn new(limit_bytes: usize) -> CmdMem {
        CmdMem {
            limit: AtomicUsize::new(limit_bytes),
            used: AtomicUsize::new(0),
            sharers: AtomicUsize::new(0),
            burst: AtomicBool::new(false),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A new limit; buffers charged already stay until their commands end.
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A connection that charges buffers here starts (it counts for the fair share);
    /// [`CmdMem::leave`] when it ends.
    pub fn join(&self) {
        self.sharers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn leave(&self) {
        self.sharers.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection that holds `mine` bytes asks for `need` more: true when charged.
    #[inline]
    pub fn try_charge(&self, mine: usize, need: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        if mine > 0 {
            let used = self.used.load(Ordering::Relaxed);
            let share = limit / self.sharers.load(Ordering::Relaxed).max(1);
            if used + need > limit / 2 && mine + need > share {
                return false;
            }
        }
        let ceiling = if need <= limit / 64 {
            limit
        } else {
            limit - limit / 8
        };
        let before = self.used.fetch_add(need, Ordering::Relaxed);
        let after = before + need;
        if after > ceiling && before > 0 {
            self.used.fetch_sub(need, Ordering::Relaxed);
            return false;
        }
        if after > limit / 4 {
            self.burst.store(true, Ordering::Relaxed);
        }
        true
    }

    /// A command's buffer is gone.
    #[inline]
    pub fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Whether use went past a quarter of the limit since the last call: after such a
    /// burst the allocator may hold freed memory the daemon can give back.
    pub fn take_burst(&self) -> bool {
        self.burst.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn charges_what_fits_and_refuses_the_rest() {
        let m = CmdMem::new(64 * MIB);
        m.join();
        assert!(m.try_charge(0, 40 * MIB));
        assert!(!m.try_charge(0, 40 * MIB), "beyond the limit");
        assert_eq!(m.used(), 40 * MIB);
        m.release(40 * MIB);
        assert_eq!(m.used(), 0);
    }

    #[test]
    fn large_buffers_leave_the_last_eighth_to_small_ones() {
        let m = CmdMem::new(64 * MIB);
        m.join();
        m.join();
        assert!(m.try_charge(0, 32 * MIB));
        assert!(m.try_charge(0, 24 * MIB));
        // 56 MiB of 64 charged: another large one would eat into the reserve.
        assert!(!m.try_charge(0, 4 * MIB));
        // A small one still fits.
        assert!(m.try_charge(0, MIB));
    }

    #[test]
    fn one_command_goes_through_when_nothing_is_charged() {
        let m = CmdMem::new(16 * MIB);
        assert!(m.try_charge(0, 32 * MIB));
        assert!(!m.try_charge(0, 4096), "the limit is taken");
        m.release(32 * MIB);
        assert!(m.try_charge(0, 4096));
    }

    #[test]
    fn past_half_a_connection_with_buffers_gets_its_share_only() {
        let m = CmdMem::new(100 * MIB);
        for _ in 0..4 {
            m.join();
        }
        // Below half the budget anyone takes what fits.
        assert!(m.try_charge(0, 20 * MIB));
        assert!(m.try_charge(20 * MIB, 20 * MIB));
        // Past half, the busy connection holds more than its share (25 MiB): no more.
        assert!(!m.try_charge(40 * MIB, 20 * MIB));
        // Another connection, holding nothing, still gets a buffer.
        assert!(m.try_charge(0, 20 * MIB));
        // And one within its share may grow.
        assert!(m.try_charge(20 * MIB, 4 * MIB));
        assert!(m.take_burst());
        assert!(!m.take_burst());
    }
}
