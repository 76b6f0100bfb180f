//! A descriptor chain as the device keeps it while its command runs: the guest
//! addresses of its device-readable buffers (request header, then data-out) and of its
//! device-writable ones (response header, then data-in). Data moves between these and
//! the command's buffers with guest-memory reads and writes, bounds-checked by
//! vm-memory: a guest that names memory it does not have gets a failed request, never
//! a crash.

use std::ops::Deref;

use smallvec::SmallVec;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryError};

/// Linux's virtio-scsi sends a header, a few data segments and a response: four
/// segments a side are kept inline, longer scatter lists allocate.
type Segments = SmallVec<[(GuestAddress, u32); 4]>;

#[derive(Debug)]
pub struct Chain {
    pub head: u16,
    readable: Segments,
    writable: Segments,
    readable_len: usize,
    writable_len: usize,
}

impl Chain {
    /// Walk a popped chain. A readable descriptor after a writable one breaks virtio's
    /// rule (2.7.4.2): such a chain is refused, to be returned unused.
    pub fn collect<M>(dc: DescriptorChain<M>) -> Result<Chain, u16>
    where
        M: Deref,
        M::Target: GuestMemory,
    {
        let head = dc.head_index();
        let mut c = Chain {
            head,
            readable: Segments::new(),
            writable: Segments::new(),
            readable_len: 0,
            writable_len: 0,
        };
        for d in dc {
            if d.is_write_only() {
                c.writable.push((d.addr(), d.len()));
                c.writable_len += d.len() as usize;
            } else if c.writable.is_empty() {
                c.readable.push((d.addr(), d.len()));
                c.readable_len += d.len() as usize;
            } else {
                return Err(head);
            }
        }
        Ok(c)
    }

    pub fn readable_len(&self) -> usize {
        self.readable_len
    }

    pub fn writable_len(&self) -> usize {
        self.writable_len
    }

    /// Fill `buf` from the readable side, starting `off` bytes in.
    pub fn read<M: GuestMemory>(
        &self,
        mem: &M,
        off: usize,
        buf: &mut [u8],
    ) -> Result<(), GuestMemoryError> {
        let mut done = 0;
        for (addr, at, n) in span(&self.readable, off, buf.len()) {
            mem.read_slice(&mut buf[done..done + n], addr.unchecked_add(at as u64))?;
            done += n;
        }
        if done < buf.len() {
            return Err(GuestMemoryError::PartialBuffer {
                expected: buf.len(),
                completed: done,
            });
        }
        Ok(())
    }

    /// Write `data` to the writable side, starting `off` bytes in; what does not fit is
    /// left out. Returns the bytes written.
    pub fn write<M: GuestMemory>(
        &self,
        mem: &M,
        off: usize,
        data: &[u8],
    ) -> Result<usize, GuestMemoryError> {
        let mut done = 0;
        for (addr, at, n) in span(&self.writable, off, data.len()) {
            mem.write_slice(&data[done..done + n], addr.unchecked_add(at as u64))?;
            done += n;
        }
        Ok(done)
    }
}

/// The pieces of `segs` covering `len` bytes from `off`: (segment, offset in it, bytes).
fn span(
    segs: &[(GuestAddress, u32)],
    mut off: usize,
    mut len: usize,
) -> impl Iterator<Item = (GuestAddress, usize, usize)> + '_ {
    segs.iter().filter_map(move |&(addr, seg_len)| {
        let seg_len = seg_len as usize;
        if len == 0 {
            return None;
        }
        if off >= seg_len {
            off -= seg_len;
            return None;
        }
        let n = (seg_len - off).min(len);
        let piece = (addr, off, n);
        off = 0;
        len -= n;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cross_segments() {
        let segs = [
            (GuestAddress(0x1000), 10),
            (GuestAddress(0x2000), 5),
            (GuestAddress(0x3000), 100),
        ];
        let v: Vec<_> = span(&segs, 8, 10).collect();
        assert_eq!(
            v,
            vec![
                (GuestAddress(0x1000), 8, 2),
                (GuestAddress(0x2000), 0, 5),
                (GuestAddress(0x3000), 0, 3)
            ]
        );
        assert_eq!(span(&segs, 200, 4).count(), 0);
        assert_eq!(span(&segs, 0, 0).count(), 0);
    }
}
