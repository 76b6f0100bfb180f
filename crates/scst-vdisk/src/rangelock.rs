//! A per-device LBA range lock that makes COMPARE AND WRITE, ORWRITE and WRITE ATOMIC
//! indivisible with respect to every other medium access, from any session
//! (docs/scst-reference.md 4.2: atomic over its LBA range by a range lock, not by draining
//! the queue).
//!
//! Ordinary reads and writes take the range *shared*; the atomic commands take it
//! *exclusive*. Shared holders never exclude each other, so the common case must stay
//! cheap: while no exclusive request exists, a shared acquisition is one increment of a
//! per-thread-striped counter plus one load of the count of exclusive requests, with no
//! mutex and no shared cache line between threads. Only when an exclusive request is
//! pending or held do shared requests go through the mutex-protected list of ranges.
//!
//! Exclusive requests are rare; to keep the fast path free of bookkeeping they wait
//! until every fast-path holder (of any range) has finished, and then for the earlier
//! overlapping entries of the list. Requests in the list are served in arrival order
//! among overlapping ranges, so a stream of shared requests cannot starve a COMPARE AND
//! WRITE and vice versa. An entry only ever waits for earlier entries, hence no deadlock.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Number of fast-path counters. Threads spread over them so that concurrent shared
/// holders on different cores do not bounce one cache line.
const STRIPES: usize = 16;

/// An atomic counter alone on its cache line (128 bytes covers adjacent-line prefetch).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicUsize);

thread_local! {
    /// This thread's fast-path stripe, assigned round-robin on first use.
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
}

/// One range in the list: half-open `[start, end)` in blocks.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    start: u64,
    end: u64,
    exclusive: bool,
}

impl Entry {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

#[derive(Default)]
struct List {
    /// In arrival order (ids ascending).
    entries: Vec<Entry>,
    next_id: u64,
}

impl List {
    fn push(&mut self, start: u64, end: u64, exclusive: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push(Entry {
            id,
            start,
            end,
            exclusive,
        });
        id
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.entries.iter().position(|e| e.id == id) {
            self.entries.remove(i);
        }
    }

    /// Whether an entry that arrived before `id` blocks `[start, end)`: any overlapping
    /// one for an exclusive request, an overlapping exclusive one for a shared request.
    fn blocked(&self, id: u64, start: u64, end: u64, exclusive: bool) -> bool {
        self.entries
            .iter()
            .take_while(|e| e.id < id)
            .any(|e| (exclusive || e.exclusive) && e.overlaps(start, end))
    }
}

#[derive(Default)]
pub struct RangeLock {
    /// Exclusive requests waiting or holding. Non-zero sends shared requests to the list.
    exclusive: AtomicUsize,
    /// Shared holders that took the fast path, striped by thread.
    fast: [Padded; STRIPES],
    list: Mutex<List>,
    changed: Condvar,
}

/// Held range; released on drop.
#[must_use = "the range is unlocked when the guard is dropped"]
pub struct RangeGuard<'a> {
    lock: LockRef<'a>,
    kind: GuardKind,
}

/// The lock a guard releases: borrowed for the usual scoped use, owned by a guard that
/// outlives the call that took it (an asynchronous transfer).
enum LockRef<'a> {
    Borrowed(&'a RangeLock),
    Owned(Arc<RangeLock>),
}

impl std::ops::Deref for LockRef<'_> {
    type Target = RangeLock;
    fn deref(&self) -> &RangeLock {
        match self {
            LockRef::Borrowed(l) => l,
            LockRef::Owned(l) => l,
        }
    }
}

impl RangeGuard<'_> {
    /// The same hold, kept alive by `lock` (the lock this guard came from) rather than
    /// by a borrow.
    pub fn into_owned(mut self, lock: Arc<RangeLock>) -> RangeGuard<'static> {
        assert!(std::ptr::eq(&*self.lock, &*lock), "guard of another lock");
        // The hold moves to the new guard: the old one, emptied, releases nothing.
        let kind = std::mem::replace(&mut self.kind, GuardKind::Empty);
        RangeGuard {
            lock: LockRef::Owned(lock),
            kind,
        }
    }
}

#[derive(Clone, Copy)]
enum GuardKind {
    /// Empty range: nothing was locked.
    Empty,
    Fast(usize),
    Listed {
        id: u64,
        exclusive: bool,
    },
}

/// `[lba, lba + blocks)`, saturated: callers range-check first, and a saturated end
/// still covers every block the command can touch.
fn span(lba: u64, blocks: u64) -> (u64, u64) {
    (lba, lba.saturating_add(blocks))
}

impl RangeLock {
    pub fn new() -> RangeLock {
        RangeLock::default()
    }

    /// Lock `blocks` blocks at `lba` shared (ordinary reads and writes). With `wait`
    /// false, `None` means an exclusive holder or an earlier exclusive request overlaps
    /// and taking the lock would block (the caller defers to an I/O thread).
    pub fn shared(&self, lba: u64, blocks: u64, wait: bool) -> Option<RangeGuard<'_>> {
        let (start, end) = span(lba, blocks);
        if start == end {
            return Some(self.guard(GuardKind::Empty));
        }
        let stripe = STRIPE.with(|s| *s);
        // SeqCst pairs with `exclusive()`: either it sees our increment and waits for
        // us, or we see its increment and take the slow path.
        self.fast[stripe].0.fetch_add(1, Ordering::SeqCst);
        if self.exclusive.load(Ordering::SeqCst) == 0 {
            return Some(self.guard(GuardKind::Fast(stripe)));
        }
        self.release_fast(stripe);
        let mut list = self.list.lock();
        if !wait {
            let none_before = u64::MAX;
            if list.blocked(none_before, start, end, false) {
                return None;
            }
            let id = list.push(start, end, false);
            return Some(self.guard(GuardKind::Listed {
                id,
                exclusive: false,
            }));
        }
        let id = list.push(start, end, false);
        while list.blocked(id, start, end, false) {
            self.changed.wait(&mut list);
        }
        Some(self.guard(GuardKind::Listed {
            id,
            exclusive: false,
        }))
    }

    /// Lock `blocks` blocks at `lba` exclusively, waiting as long as it takes. Only
    /// called on I/O threads (Blocking mode).
    pub fn exclusive(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        let (start, end) = span(lba, blocks);
        if start == end {
            return self.guard(GuardKind::Empty);
        }
        self.exclusive.fetch_add(1, Ordering::SeqCst);
        let mut list = self.list.lock();
        let id = list.push(start, end, true);
        while self.fast_holders() || list.blocked(id, start, end, true) {
            self.changed.wait(&mut list);
        }
        self.guard(GuardKind::Listed {
            id,
            exclusive: true,
        })
    }

    fn guard(&self, kind: GuardKind) -> RangeGuard<'_> {
        RangeGuard {
            lock: LockRef::Borrowed(self),
            kind,
        }
    }

    fn fast_holders(&self) -> bool {
        self.fast.iter().any(|c| c.0.load(Ordering::SeqCst) != 0)
    }

    fn release_fast(&self, stripe: usize) {
        self.fast[stripe].0.fetch_sub(1, Ordering::SeqCst);
        if self.exclusive.load(Ordering::SeqCst) != 0 {
            // An exclusive request may be waiting for the fast holders to drain. Taking
            // the mutex orders this wake-up after its check, so it cannot be lost.
            let _list = self.list.lock();
            self.changed.notify_all();
        }
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        match self.kind {
            GuardKind::Empty => {}
            GuardKind::Fast(stripe) => self.lock.release_fast(stripe),
            GuardKind::Listed { id, exclusive } => {
                let mut list = self.lock.list.lock();
                list.remove(id);
                if exclusive {
                    self.lock.exclusive.fetch_sub(1, Ordering::SeqCst);
                }
                drop(list);
                self.lock.changed.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn shared_holders_coexist_and_empty_ranges_lock_nothing() {
        let l = RangeLock::new();
        let a = l.shared(0, 10, false).unwrap();
        let b = l.shared(5, 10, false).unwrap();
        let _e = l.exclusive(3, 0);
        drop((a, b));
        let _x = l.exclusive(0, 10);
        // Non-overlapping shared requests are not held up by an exclusive holder.
        assert!(l.shared(10, 5, false).is_some());
        // Overlapping ones would block.
        assert!(l.shared(9, 5, false).is_none());
        assert!(l.shared(u64::MAX - 1, 5, false).is_some());
    }

    #[test]
    fn exclusive_waits_for_shared_and_blocks_new_overlapping_shared() {
        let l = Arc::new(RangeLock::new());
        let reader = l.shared(100, 1, true).unwrap();
        let got = Arc::new(AtomicBool::new(false));
        let t = {
            let (l, got) = (l.clone(), got.clone());
            std::thread::spawn(move || {
                let _g = l.exclusive(100, 1);
                got.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            })
        };
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !got.load(Ordering::SeqCst),
            "exclusive ran under a shared holder"
        );
        drop(reader);
        while !got.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // Held exclusively now (or just released): a waiting shared request gets in
        // only after the exclusive holder is done.
        let g = l.shared(100, 1, true).unwrap();
        drop(g);
        t.join().unwrap();
        assert_eq!(l.exclusive.load(Ordering::SeqCst), 0);
        assert!(l.list.lock().entries.is_empty());
    }

    #[test]
    fn exclusive_sections_never_overlap() {
        let l = Arc::new(RangeLock::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (l, inside) = (l.clone(), inside.clone());
                std::thread::spawn(move || {
                    for j in 0..200u64 {
                        if (i + j) % 3 == 0 {
                            // [1,4), [2,5) or [3,6): always overlaps [3,5).
                            let _g = l.shared(j % 3 + 1, 3, true).unwrap();
                            assert_eq!(inside.load(Ordering::SeqCst), 0);
                        } else {
                            let _g = l.exclusive(3, 2);
                            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                            std::thread::yield_now();
                            inside.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
