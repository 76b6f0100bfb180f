//! What the full-feature phase sends: PDUs encoded as they are queued (header with its
//! digest, the data segment by reference, padding and data digest), gathered into one
//! vectored write per flush. A read's data-in and a NOP-Out's echo are sent from the
//! buffers that hold them, never copied.

use std::io::IoSlice;

use bytes::Bytes;
use iscsi_wire::frame::MAX_ENCODED_HEADER;
use iscsi_wire::{Bhs, Digests};

struct OutPdu {
    header: [u8; MAX_ENCODED_HEADER],
    header_len: u8,
    /// Never empty when present.
    data: Option<Bytes>,
    /// Padding to a 4-byte boundary plus the data digest.
    trailer: [u8; 8],
    trailer_len: u8,
}

/// PDUs queued to send, in order.
pub struct Transmit {
    queue: Vec<OutPdu>,
    queued_bytes: usize,
    digests: Digests,
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmit")
            .field("pdus", &self.queue.len())
            .field("bytes", &self.queued_bytes)
            .finish()
    }
}

impl Transmit {
    pub fn new(digests: Digests) -> Transmit {
        Transmit {
            queue: Vec::with_capacity(64),
            queued_bytes: 0,
            digests,
        }
    }

    /// Queue a PDU; its DataSegmentLength is set from `data`.
    #[inline]
    pub fn push(&mut self, mut bhs: Bhs, data: Option<Bytes>) {
        let len = data.as_ref().map_or(0, Bytes::len);
        bhs.set_data_segment_len(len as u32);
        let (header, header_len) = iscsi_wire::encode_header(&bhs, self.digests.header);
        let (trailer, trailer_len) = match &data {
            Some(d) => iscsi_wire::data_trailer(d, self.digests.data),
            None => ([0u8; 8], 0),
        };
        self.queued_bytes += header_len + len + trailer_len;
        self.queue.push(OutPdu {
            header,
            header_len: header_len as u8,
            data: data.filter(|d| !d.is_empty()),
            trailer,
            trailer_len: trailer_len as u8,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes queued: the driver flushes early past a limit.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Everything queued, in order, as slices for one vectored write.
    pub fn slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        out.reserve(self.queue.len() * 3);
        for p in &self.queue {
            out.push(IoSlice::new(&p.header[..p.header_len as usize]));
            if let Some(d) = &p.data {
                out.push(IoSlice::new(d));
            }
            if p.trailer_len > 0 {
                out.push(IoSlice::new(&p.trailer[..p.trailer_len as usize]));
            }
        }
    }

    /// All of it was sent.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.queued_bytes = 0;
    }

    /// The queued bytes as one buffer (tests, the fuzzer).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut slices = Vec::new();
        self.slices(&mut slices);
        slices.iter().flat_map(|s| s.iter().copied()).collect()
    }
}
