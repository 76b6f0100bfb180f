//! Framing of the full-feature phase: PDUs cut out of the bytes the driver received,
//! without copying them. The driver reads the socket straight into the receive buffer
//! ([`Framer::recv_buf`]); each PDU's AHS and data segment are then `Bytes` slices of
//! that buffer, which travel on (to a command's data-out, a NOP-In's echo) as they are.

use bytes::{Bytes, BytesMut};
use iscsi_wire::{Bhs, Digests, WireError};

/// Free space below which [`Framer::recv_buf`] grows the buffer before a read, and how
/// much it grows by: one read takes up to a few PDUs of the common sizes, and PDUs cut
/// from one allocation share it until their data is dropped.
const MIN_SPARE: usize = 64 * 1024;
const GROW_BY: usize = 256 * 1024;

/// One received PDU. `ahs` and `data` are zero-copy views into the receive buffer.
#[derive(Debug)]
pub struct Pdu {
    pub bhs: Bhs,
    pub ahs: Bytes,
    pub data: Bytes,
    /// False when the data digest did not match: the connection survives, the command
    /// the data belongs to does not.
    pub data_digest_ok: bool,
}

/// The receive side of one connection in full feature.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    digests: Digests,
    /// Our MaxRecvDataSegmentLength: longer data segments are a protocol error.
    max_data: u32,
}

impl Framer {
    /// A framer for data segments up to `max_data` bytes, starting with the bytes the
    /// login phase already received ([`crate::Connection::take_received`]).
    pub fn new(max_data: u32, received: &[u8]) -> Framer {
        let mut buf = BytesMut::with_capacity(GROW_BY.max(received.len()));
        buf.extend_from_slice(received);
        Framer {
            buf,
            digests: Digests::NONE,
            max_data,
        }
    }

    /// The digests negotiated at login; they apply to every PDU after it.
    pub fn set_digests(&mut self, digests: Digests) {
        self.digests = digests;
    }

    /// The buffer to read the socket into (append only), with room for one read.
    pub fn recv_buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < MIN_SPARE {
            self.buf.reserve(GROW_BY);
        }
        &mut self.buf
    }

    /// Bytes received and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete PDU, if the buffer holds one. An error (a bad header digest,
    /// a data segment over `max_data`, a malformed header) ends the connection.
    pub fn next_pdu(&mut self) -> Result<Option<Pdu>, WireError> {
        let Some(f) = iscsi_wire::parse_frame(&self.buf, self.digests, self.max_data)? else {
            return Ok(None);
        };
        let mut frame = self.buf.split_to(f.total_len).freeze();
        let data = frame.slice(f.data.clone());
        let ahs = frame.slice(f.ahs.clone());
        // The slices keep the allocation; the header part needs no handle of its own.
        frame.clear();
        Ok(Some(Pdu {
            bhs: f.bhs,
            ahs,
            data,
            data_digest_ok: f.data_digest_ok,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iscsi_wire::frame::encode_pdu;
    use iscsi_wire::Opcode;

    fn nop_out(itt: u32, data: &[u8], digests: Digests) -> Vec<u8> {
        let mut bhs = Bhs::new(Opcode::NopOut);
        bhs.set_itt(itt);
        encode_pdu(&bhs, data, digests)
    }

    #[test]
    fn pdus_are_cut_from_bytes_that_arrive_in_any_pieces() {
        let digests = Digests {
            header: true,
            data: true,
        };
        let mut wire = nop_out(1, b"ping", digests);
        wire.extend(nop_out(2, &[7u8; 1000], digests));
        wire.extend(nop_out(3, b"", digests));
        let (first, rest) = wire.split_at(30);
        let mut f = Framer::new(8192, first);
        f.set_digests(digests);
        assert!(f.next_pdu().expect("partial header").is_none());
        let mut got = Vec::new();
        for piece in rest.chunks(333) {
            f.recv_buf().extend_from_slice(piece);
            while let Some(p) = f.next_pdu().expect("valid PDUs") {
                got.push(p);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].bhs.itt(), 1);
        assert_eq!(&got[0].data[..], b"ping");
        assert_eq!(&got[1].data[..], &[7u8; 1000][..]);
        assert!(got[2].data.is_empty() && got[2].ahs.is_empty());
        assert!(got.iter().all(|p| p.data_digest_ok));
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn data_segments_are_views_of_the_receive_buffer() {
        let wire = nop_out(9, &[1u8; 4096], Digests::NONE);
        let mut f = Framer::new(8192, &[]);
        let base = f.recv_buf().as_ptr() as usize;
        f.recv_buf().extend_from_slice(&wire);
        let p = f.next_pdu().expect("valid").expect("whole PDU");
        assert_eq!(p.data.as_ptr() as usize, base + 48, "no copy of the data");
    }

    #[test]
    fn a_bad_data_digest_keeps_the_pdu_and_says_so() {
        let digests = Digests {
            header: false,
            data: true,
        };
        let mut wire = nop_out(4, b"abcd", digests);
        let last = wire.len() - 1;
        wire[last] ^= 0xff;
        let mut f = Framer::new(8192, &wire);
        f.set_digests(digests);
        let p = f.next_pdu().expect("header is good").expect("whole PDU");
        assert!(!p.data_digest_ok);
    }

    #[test]
    fn a_data_segment_over_the_limit_or_a_bad_header_digest_is_an_error() {
        let mut f = Framer::new(512, &nop_out(5, &[0u8; 1024], Digests::NONE));
        assert!(f.next_pdu().is_err());
        let digests = Digests {
            header: true,
            data: false,
        };
        let mut wire = nop_out(6, b"", digests);
        wire[50] ^= 1;
        let mut f = Framer::new(512, &wire);
        f.set_digests(digests);
        assert!(f.next_pdu().is_err());
    }
}
