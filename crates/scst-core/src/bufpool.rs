//! Data buffer pool (SCST's SGV cache): command data buffers are reused instead of
//! allocated and freed per command. Large allocations come from mmap and return to the
//! kernel on free, so without a pool every 1 MiB read pays page faults and a TLB
//! shootdown; with it the pages stay mapped and warm.
//!
//! Buffers are grouped by power-of-two size class. A freed buffer goes back to its
//! class's free list unless the class already holds its share of the cap, then it is
//! really freed. Contents are NOT cleared on reuse: callers fill the whole buffer
//! (reads fail unless complete) so that no data crosses between commands.

use std::ops::{Deref, DerefMut};

use parking_lot::Mutex;

/// Smallest and largest pooled sizes; outside them buffers are plain allocations.
const MIN_CLASS_SHIFT: u32 = 12; // 4 KiB
const MAX_CLASS_SHIFT: u32 = 23; // 8 MiB
const CLASSES: usize = (MAX_CLASS_SHIFT - MIN_CLASS_SHIFT + 1) as usize;
/// Bytes each class may keep cached.
const CLASS_CACHE_BYTES: usize = 32 << 20;

static POOL: [Mutex<Vec<Vec<u8>>>; CLASSES] = [const { Mutex::new(Vec::new()) }; CLASSES];

fn class_of(len: usize) -> Option<usize> {
    if len == 0 || len > 1 << MAX_CLASS_SHIFT {
        return None;
    }
    let shift = len.next_power_of_two().trailing_zeros().max(MIN_CLASS_SHIFT);
    Some((shift - MIN_CLASS_SHIFT) as usize)
}

/// A buffer of `len` bytes from the pool; its contents are unspecified (stale).
pub struct PoolBuf {
    buf: Vec<u8>,
    len: usize,
}

impl PoolBuf {
    /// A buffer of exactly `len` bytes whose contents are left from earlier use: the
    /// caller must overwrite all of it.
    pub fn uninit_contents(len: usize) -> PoolBuf {
        let Some(class) = class_of(len) else {
            return PoolBuf { buf: vec![0; len], len };
        };
        let cached = POOL[class].lock().pop();
        let buf = cached.unwrap_or_else(|| vec![0; 1 << (class as u32 + MIN_CLASS_SHIFT)]);
        PoolBuf { buf, len }
    }

    /// A buffer of `len` zero bytes.
    pub fn zeroed(len: usize) -> PoolBuf {
        let mut b = PoolBuf::uninit_contents(len);
        b.fill(0);
        b
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shrink the visible length (e.g. a short answer); the capacity stays pooled.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Deref for PoolBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl DerefMut for PoolBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl AsRef<[u8]> for PoolBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        let cap = self.buf.len();
        if !cap.is_power_of_two() {
            return;
        }
        let Some(class) = class_of(cap) else { return };
        if 1 << (class as u32 + MIN_CLASS_SHIFT) != cap {
            return;
        }
        let mut free = POOL[class].lock();
        if (free.len() + 1) * cap <= CLASS_CACHE_BYTES {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_size_class() {
        let p = {
            let mut b = PoolBuf::uninit_contents(5000);
            assert_eq!(b.len(), 5000);
            b[4999] = 7;
            b.buf.as_ptr()
        };
        let b = PoolBuf::uninit_contents(8192);
        assert_eq!(b.buf.as_ptr(), p, "an 8 KiB-class buffer comes back from the pool");
        let z = PoolBuf::zeroed(100);
        assert!(z.iter().all(|&x| x == 0));
        let big = PoolBuf::uninit_contents((8 << 20) + 1);
        assert_eq!(big.len(), (8 << 20) + 1, "oversized buffers are plain allocations");
    }
}
