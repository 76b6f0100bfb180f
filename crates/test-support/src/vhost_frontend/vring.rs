//! The driver side of a split virtqueue (virtio 1.x, section 2.7) laid out in guest
//! memory, and a first-fit allocator for the buffers that descriptors point at.

use std::collections::HashMap;
use std::sync::atomic::{fence, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;

/// Bytes a queue of `size` entries takes: descriptor table, available ring (with
/// used_event), used ring (with avail_event), each aligned.
pub fn ring_bytes(size: u16) -> u64 {
    let q = u64::from(size);
    let desc = 16 * q;
    let avail = (6 + 2 * q).next_multiple_of(4);
    let used = 6 + 8 * q;
    (desc + avail + used).next_multiple_of(4096)
}

/// One buffer of a chain: guest address, length, whether the device writes it.
#[derive(Debug, Clone, Copy)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    pub writable: bool,
}

pub struct DriverQueue {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    event_idx: bool,
    free: Vec<u16>,
    /// The descriptors of each chain the device owns, by head.
    chains: HashMap<u16, Vec<u16>>,
    avail_idx: u16,
    last_used: u16,
}

/// Guest memory access failed: a bug in this driver's layout, not the device's.
fn mem_ok<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("guest memory access outside the mapping: {e:?}"),
    }
}

impl DriverQueue {
    /// A queue at `base` (4 KiB aligned, [`ring_bytes`] long, zeroed).
    pub fn new(base: u64, size: u16, event_idx: bool) -> DriverQueue {
        let q = u64::from(size);
        let desc = base;
        let avail = desc + 16 * q;
        let used = (avail + 6 + 2 * q).next_multiple_of(4);
        DriverQueue {
            size,
            desc,
            avail,
            used,
            event_idx,
            free: (0..size).rev().collect(),
            chains: HashMap::new(),
            avail_idx: 0,
            last_used: 0,
        }
    }

    /// Descriptors not in use.
    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Chains the device holds.
    pub fn in_flight(&self) -> usize {
        self.chains.len()
    }

    /// Put a chain on the available ring; its head, or None if descriptors ran out.
    pub fn add(&mut self, mem: &GuestMemoryMmap, bufs: &[Buf]) -> Option<u16> {
        if bufs.is_empty() || bufs.len() > self.free.len() {
            return None;
        }
        let ids: Vec<u16> = (0..bufs.len()).filter_map(|_| self.free.pop()).collect();
        for (i, (buf, &id)) in bufs.iter().zip(&ids).enumerate() {
            let next = ids.get(i + 1).copied();
            let mut flags = if buf.writable { DESC_F_WRITE } else { 0 };
            if next.is_some() {
                flags |= DESC_F_NEXT;
            }
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&buf.addr.to_le_bytes());
            d[8..12].copy_from_slice(&buf.len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&next.unwrap_or(0).to_le_bytes());
            let at = self.desc + 16 * u64::from(id);
            mem_ok(mem.write_slice(&d, GuestAddress(at)));
        }
        let head = ids[0];
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem_ok(mem.write_obj(head.to_le(), GuestAddress(slot)));
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // The ring entry and descriptors are visible before the index that publishes them.
        fence(Ordering::SeqCst);
        mem_ok(mem.store(
            self.avail_idx.to_le(),
            GuestAddress(self.avail + 2),
            Ordering::Release,
        ));
        self.chains.insert(head, ids);
        Some(head)
    }

    /// The next used element: (head, length written), its descriptors freed.
    pub fn pop_used(&mut self, mem: &GuestMemoryMmap) -> Option<(u16, u32)> {
        let used_idx = u16::from_le(mem_ok(
            mem.load::<u16>(GuestAddress(self.used + 2), Ordering::Acquire),
        ));
        if used_idx == self.last_used {
            return None;
        }
        let elem = self.used + 4 + 8 * u64::from(self.last_used % self.size);
        let mut e = [0u8; 8];
        mem_ok(mem.read_slice(&mut e, GuestAddress(elem)));
        self.last_used = self.last_used.wrapping_add(1);
        if self.event_idx {
            // used_event: interrupt us as soon as anything more is used.
            let at = self.avail + 4 + 2 * u64::from(self.size);
            mem_ok(mem.store(self.last_used.to_le(), GuestAddress(at), Ordering::Release));
            fence(Ordering::SeqCst);
        }
        let head = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let len = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let head = u16::try_from(head).unwrap_or(u16::MAX);
        // A head the driver never made available is the device's error; the caller
        // finds no request for it and records that.
        if let Some(ids) = self.chains.remove(&head) {
            self.free.extend(ids);
        }
        Some((head, len))
    }
}

/// First-fit allocator of guest memory for request, response and data buffers.
pub struct Allocator {
    /// Free ranges (start, len), sorted by start, never adjacent.
    free: Vec<(u64, u64)>,
}

const ALIGN: u64 = 64;

impl Allocator {
    pub fn new(start: u64, len: u64) -> Allocator {
        Allocator {
            free: vec![(start, len)],
        }
    }

    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        let len = len.max(1).next_multiple_of(ALIGN);
        let i = self.free.iter().position(|&(_, l)| l >= len)?;
        let (start, l) = self.free[i];
        if l == len {
            self.free.remove(i);
        } else {
            self.free[i] = (start + len, l - len);
        }
        Some(start)
    }

    pub fn free(&mut self, start: u64, len: u64) {
        let len = len.max(1).next_multiple_of(ALIGN);
        let i = self.free.partition_point(|&(s, _)| s < start);
        self.free.insert(i, (start, len));
        // Merge with the following and the preceding range.
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }

    /// Bytes free in total.
    pub fn available(&self) -> u64 {
        self.free.iter().map(|&(_, l)| l).sum()
    }
}
