//! Command latency, recorded while the root attribute `measure_latency` is 1
//! (docs/scst-reference.md, "Observability: counters and latency"): the time from the transport handing a command to the
//! core (`Nexus::submit`) to its response going back to the transport.
//!
//! Two views of the same samples are kept per I_T_L nexus:
//! - SCST's table: per transfer-size class (512 B to 512 KiB, log2) and data direction,
//!   count, min, max, sum and sum of squares in 100 ns units, shown as
//!   `sessions/<s>/latency/<d><size>` (and per LUN) and reset by writing to those files;
//! - a histogram per direction class (read, write, other) over fixed log-scale buckets,
//!   for the metrics endpoint. It is never reset, so that scraped counters never go down.
//!
//! One nexus thread writes a table, with loads and stores (no locked read-modify-write);
//! the tables that gone nexuses are folded into are added to with `fetch_add`. Readers
//! (management, scrapes) sum tables when they read. The table is allocated the first time a sample is recorded, so sessions
//! never measured carry none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::stats::{owner_add, Direction};

/// SCST's size classes: 2^9 (512 B) to 2^19 (512 KiB); smaller transfers count as
/// 512, larger as 512 KiB (SCST_STATS_LOG2_SZ_OFFSET, SCST_STATS_MAX_LOG2_SZ).
pub const SIZE_CLASSES: usize = 11;
const LOG2_SIZE_OFFSET: u32 = 9;

/// Finite histogram buckets: upper bounds 16 us * 2^k, k = 0..BUCKETS (16 us to about
/// 0.5 s); one more slot counts what is slower.
pub const BUCKETS: usize = 16;
const FIRST_BUCKET_NS: u64 = 16_000;

/// Direction classes of the histogram, in the order [`HIST_DIRECTIONS`] names them.
pub const HIST_DIRECTIONS: [&str; 3] = ["read", "write", "other"];

/// Upper bound of finite bucket `k`, in seconds (the `le` label).
pub fn bucket_bound_seconds(k: usize) -> f64 {
    (FIRST_BUCKET_NS << k) as f64 / 1e9
}

/// The size class of a transfer of `bytes` (SCST rounds up to a power of two).
pub fn size_class(bytes: u64) -> usize {
    let log2 = bytes.max(1).next_power_of_two().trailing_zeros();
    (log2.saturating_sub(LOG2_SIZE_OFFSET) as usize).min(SIZE_CLASSES - 1)
}

/// Transfer size of class `i`, as SCST names its files (`r4096`).
pub fn class_size(i: usize) -> u64 {
    1 << (i as u32 + LOG2_SIZE_OFFSET)
}

/// SCST's index of a data direction (its SCST_DATA_* & 3), the table's second axis,
/// and the file prefix for it.
pub fn table_dir(d: Direction) -> usize {
    match d {
        Direction::None => 0,
        Direction::Write => 1,
        Direction::Read => 2,
        Direction::Bidi => 3,
    }
}

/// File name prefixes by [`table_dir`] index.
pub const TABLE_DIR_PREFIX: [char; 4] = ['n', 'w', 'r', 'b'];

fn hist_dir(d: Direction) -> usize {
    match d {
        Direction::Read => 0,
        Direction::Write => 1,
        Direction::Bidi | Direction::None => 2,
    }
}

/// One cell of SCST's table, in 100 ns units (SCST prints them as microseconds with
/// one decimal).
struct Cell {
    count: AtomicU64,
    sum: AtomicU64,
    sumsq: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for Cell {
    fn default() -> Self {
        Cell {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            sumsq: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }
}

impl Cell {
    /// `n` samples of `units` each, from the nexus's thread (the table's one writer,
    /// see `stats::owner_add`).
    fn add(&self, units: u64, n: u64) {
        owner_add(&self.count, n);
        owner_add(&self.sum, units.saturating_mul(n));
        owner_add(&self.sumsq, units.saturating_mul(units).saturating_mul(n));
        if units < self.min.load(Ordering::Relaxed) {
            self.min.store(units, Ordering::Relaxed);
        }
        if units > self.max.load(Ordering::Relaxed) {
            self.max.store(units, Ordering::Relaxed);
        }
    }

    fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.sum.store(0, Ordering::Relaxed);
        self.sumsq.store(0, Ordering::Relaxed);
        self.min.store(u64::MAX, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CellSnapshot {
        CellSnapshot {
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
            sumsq: self.sumsq.load(Ordering::Relaxed),
            min: self.min.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
        }
    }

    fn absorb(&self, s: &CellSnapshot) {
        if s.count == 0 {
            return;
        }
        self.count.fetch_add(s.count, Ordering::Relaxed);
        self.sum.fetch_add(s.sum, Ordering::Relaxed);
        self.sumsq.fetch_add(s.sumsq, Ordering::Relaxed);
        self.min.fetch_min(s.min, Ordering::Relaxed);
        self.max.fetch_max(s.max, Ordering::Relaxed);
    }
}

/// The latency samples of one I_T_L nexus (or the totals folded from gone ones).
#[derive(Default)]
pub struct LatencyTable {
    cells: [[Cell; 4]; SIZE_CLASSES],
    /// Per direction class: BUCKETS finite buckets, then the slower-than-all slot.
    hist: [[AtomicU64; BUCKETS + 1]; 3],
    hist_sum_ns: [AtomicU64; 3],
}

impl LatencyTable {
    /// One command of direction `dir` moving `bytes` took `took`; called by the table's
    /// one writer, the thread of its nexus.
    pub fn record(&self, dir: Direction, bytes: u64, took: Duration) {
        self.record_n(dir, bytes, took, 1);
    }

    /// `n` commands of direction `dir` and `bytes`' size class each took `took` (the
    /// commands of one transport turn, answered in one send: the nexus records them as
    /// one run).
    pub fn record_n(&self, dir: Direction, bytes: u64, took: Duration, n: u64) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.cells[size_class(bytes)][table_dir(dir)].add(ns / 100, n);
        let h = hist_dir(dir);
        // Bucket k holds (16 us * 2^(k-1), 16 us * 2^k]; the first holds up to 16 us.
        let k = if ns <= FIRST_BUCKET_NS {
            0
        } else {
            (64 - ((ns - 1) / FIRST_BUCKET_NS).leading_zeros()) as usize
        };
        owner_add(&self.hist[h][k.min(BUCKETS)], n);
        owner_add(&self.hist_sum_ns[h], ns.saturating_mul(n));
    }

    /// Clear SCST's table (writing to a latency file or `measure_latency` 0). The
    /// histograms stay: they are counters for scrapes.
    pub fn reset(&self) {
        self.cells.iter().flatten().for_each(Cell::reset);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let mut s = LatencySnapshot::default();
        self.add_to(&mut s);
        s
    }

    /// Add this table's samples to `s` (a reader summing several nexuses).
    pub fn add_to(&self, s: &mut LatencySnapshot) {
        for (i, row) in self.cells.iter().enumerate() {
            for (j, c) in row.iter().enumerate() {
                s.cells[i][j].merge(&c.snapshot());
            }
        }
        for h in 0..3 {
            for k in 0..=BUCKETS {
                s.hist[h][k] += self.hist[h][k].load(Ordering::Relaxed);
            }
            s.hist_sum_ns[h] += self.hist_sum_ns[h].load(Ordering::Relaxed);
        }
    }

    /// Take in a gone nexus's samples (so device and target totals never go down).
    pub fn absorb(&self, s: &LatencySnapshot) {
        for (i, row) in self.cells.iter().enumerate() {
            for (j, c) in row.iter().enumerate() {
                c.absorb(&s.cells[i][j]);
            }
        }
        for h in 0..3 {
            for k in 0..=BUCKETS {
                self.hist[h][k].fetch_add(s.hist[h][k], Ordering::Relaxed);
            }
            self.hist_sum_ns[h].fetch_add(s.hist_sum_ns[h], Ordering::Relaxed);
        }
    }
}

/// A cell as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellSnapshot {
    pub count: u64,
    /// Sum, sum of squares, min and max in 100 ns units.
    pub sum: u64,
    pub sumsq: u64,
    pub min: u64,
    pub max: u64,
}

impl Default for CellSnapshot {
    fn default() -> Self {
        CellSnapshot {
            count: 0,
            sum: 0,
            sumsq: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl CellSnapshot {
    fn merge(&mut self, o: &CellSnapshot) {
        self.count += o.count;
        self.sum = self.sum.saturating_add(o.sum);
        self.sumsq = self.sumsq.saturating_add(o.sumsq);
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// Tables summed for reading.
#[derive(Debug, Clone, Default)]
pub struct LatencySnapshot {
    pub cells: [[CellSnapshot; 4]; SIZE_CLASSES],
    /// Per direction class ([`HIST_DIRECTIONS`]), non-cumulative bucket counts.
    pub hist: [[u64; BUCKETS + 1]; 3],
    pub hist_sum_ns: [u64; 3],
}

impl LatencySnapshot {
    /// SCST's latency file for size class `class` and table direction `dir`: a header,
    /// one line per measured stage (here one, `total`'s only stage: receipt to
    /// response, named `RECEIVED_TO_DONE`), then the `total` line; empty cells print
    /// only the header, as SCST's do.
    pub fn scst_file(&self, class: usize, dir: usize) -> String {
        let mut out = String::from("state count min max avg stddev\n");
        let c = &self.cells[class][dir];
        if c.count == 0 {
            return out;
        }
        let avg = c.sum / c.count;
        let stddev = stddev(c.sumsq, c.sum, c.count);
        out.push_str(&format!(
            "RECEIVED_TO_DONE {} {} {} {} {} us\n",
            c.count,
            tenths(c.min),
            tenths(c.max),
            tenths(avg),
            tenths(stddev)
        ));
        out.push_str(&format!(
            "total {} - - {} {} us\n",
            c.count,
            tenths(avg),
            tenths(stddev)
        ));
        out
    }
}

/// sqrt((sumsq - sum^2/count) / count), as SCST's calc_stddev.
fn stddev(sumsq: u64, sum: u64, count: u64) -> u64 {
    let mean_sq = (sum as u128 * sum as u128 / count as u128) as u64;
    let var = sumsq.saturating_sub(mean_sq) / count;
    (var as f64).sqrt() as u64
}

/// 100 ns units as microseconds with one decimal.
fn tenths(units: u64) -> String {
    format!("{}.{}", units / 10, units % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_and_clamp_as_scst() {
        assert_eq!(size_class(0), 0);
        assert_eq!(size_class(512), 0);
        assert_eq!(size_class(513), 1);
        assert_eq!(size_class(4096), 3);
        assert_eq!(class_size(3), 4096);
        assert_eq!(size_class(512 * 1024), 10);
        assert_eq!(size_class(8 << 20), 10);
    }

    #[test]
    fn a_run_of_n_equal_samples_reads_as_n_samples() {
        let (one_by_one, as_run) = (LatencyTable::default(), LatencyTable::default());
        for _ in 0..3 {
            one_by_one.record(Direction::Read, 4096, Duration::from_micros(40));
        }
        one_by_one.record(Direction::Read, 4000, Duration::from_micros(7));
        as_run.record_n(Direction::Read, 4096, Duration::from_micros(40), 3);
        as_run.record_n(Direction::Read, 4000, Duration::from_micros(7), 1);
        let (a, b) = (one_by_one.snapshot(), as_run.snapshot());
        let cell = |s: &LatencySnapshot| s.cells[size_class(4096)][table_dir(Direction::Read)];
        assert_eq!(cell(&a), cell(&b));
        assert_eq!((cell(&b).count, cell(&b).min, cell(&b).max), (4, 70, 400));
        assert_eq!(a.hist, b.hist);
        assert_eq!(a.hist_sum_ns, b.hist_sum_ns);
    }

    #[test]
    fn buckets_hold_their_upper_bound() {
        let t = LatencyTable::default();
        t.record(Direction::Read, 4096, Duration::from_micros(16));
        t.record(Direction::Read, 4096, Duration::from_nanos(16_001));
        t.record(Direction::Read, 4096, Duration::from_micros(32));
        t.record(Direction::Write, 4096, Duration::from_secs(10));
        let s = t.snapshot();
        assert_eq!(s.hist[0][0], 1);
        assert_eq!(s.hist[0][1], 2);
        assert_eq!(s.hist[1][BUCKETS], 1, "slower than every bound");
        assert_eq!(s.hist_sum_ns[0], 16_000 + 16_001 + 32_000);
        assert_eq!(bucket_bound_seconds(1), 32e-6);
    }

    #[test]
    fn scst_file_shows_count_min_max_avg_in_microseconds() {
        let t = LatencyTable::default();
        t.record(Direction::Write, 4096, Duration::from_micros(10));
        t.record(Direction::Write, 3000, Duration::from_micros(30));
        let s = t.snapshot();
        let w = table_dir(Direction::Write);
        assert_eq!(
            s.scst_file(size_class(4096), w),
            "state count min max avg stddev\n\
             RECEIVED_TO_DONE 2 10.0 30.0 20.0 10.0 us\n\
             total 2 - - 20.0 10.0 us\n"
        );
        assert_eq!(
            s.scst_file(size_class(4096), table_dir(Direction::Read)),
            "state count min max avg stddev\n"
        );
        t.reset();
        assert_eq!(t.snapshot().cells[size_class(4096)][w].count, 0);
        assert_eq!(
            t.snapshot().hist[1].iter().sum::<u64>(),
            2,
            "histograms stay"
        );
    }

    #[test]
    fn absorbing_a_gone_table_keeps_min_and_max() {
        let a = LatencyTable::default();
        let b = LatencyTable::default();
        a.record(Direction::Read, 512, Duration::from_micros(5));
        b.record(Direction::Read, 512, Duration::from_micros(50));
        a.absorb(&b.snapshot());
        let c = a.snapshot().cells[0][table_dir(Direction::Read)];
        assert_eq!((c.count, c.min, c.max), (2, 50, 500));
    }
}
