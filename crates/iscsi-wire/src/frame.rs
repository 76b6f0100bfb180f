//! PDU framing: finding PDU boundaries in a receive buffer, checking digests, and
//! laying out outgoing headers for vectored writes.
//!
//! A PDU on the wire is: BHS (48) | AHS (TotalAHSLength*4) | header digest (4, if
//! negotiated) | data (DataSegmentLength) | pad to 4 | data digest (4, if negotiated
//! and the data segment is not empty).

use std::ops::Range;

use crate::bhs::{Bhs, BHS_LEN};
use crate::digest::{self, DataDigest, DIGEST_LEN};
use crate::WireError;

/// Which digests are in force on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

impl Digests {
    pub const NONE: Digests = Digests {
        header: false,
        data: false,
    };
}

/// Maximum header bytes we ever emit: BHS + header digest (targets send no AHS).
pub const MAX_ENCODED_HEADER: usize = BHS_LEN + DIGEST_LEN;

/// Total on-wire length of a PDU with this header.
pub fn frame_len(bhs: &Bhs, header_digest: bool, data_digest: bool) -> usize {
    let data = bhs.data_segment_len() as usize;
    BHS_LEN
        + bhs.total_ahs_len()
        + if header_digest { DIGEST_LEN } else { 0 }
        + digest::padded_len(data)
        + if data_digest && data > 0 {
            DIGEST_LEN
        } else {
            0
        }
}

/// Where the parts of a PDU are, once its header has been received and checked.
/// Ranges index into the receive buffer the header was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub bhs: Bhs,
    pub ahs: Range<usize>,
    /// The data segment without padding.
    pub data: Range<usize>,
    /// Padding + data digest that follow `data`.
    pub trailer: Range<usize>,
    pub total_len: usize,
}

/// A complete received PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bhs: Bhs,
    pub ahs: Range<usize>,
    pub data: Range<usize>,
    pub total_len: usize,
    /// False when data digests are on and the data digest did not match: the command
    /// fails but the connection survives (the header was good).
    pub data_digest_ok: bool,
}

/// Parses and checks the header part of a PDU (BHS, AHS, header digest). Returns
/// `Ok(None)` while fewer bytes than the header needs are available; does not need
/// the data segment to be present, so a connection driver can read the data directly
/// into its own buffer afterwards.
pub fn parse_header(
    buf: &[u8],
    digests: Digests,
    max_data_segment: u32,
) -> Result<Option<Header>, WireError> {
    let Some(bhs) = Bhs::from_slice(buf) else {
        return Ok(None);
    };
    let data_len = bhs.data_segment_len();
    // Checked before waiting for the data so a hostile length cannot make us buffer it.
    if data_len > max_data_segment {
        return Err(WireError::DataTooLong {
            len: data_len,
            max: max_data_segment,
        });
    }
    let ahs_end = BHS_LEN + bhs.total_ahs_len();
    let hd_len = if digests.header { DIGEST_LEN } else { 0 };
    let Some(header_bytes) = buf.get(..ahs_end) else {
        return Ok(None);
    };
    let Some(hd) = buf.get(ahs_end..ahs_end + hd_len) else {
        return Ok(None);
    };
    if digests.header {
        let got = digest::digest_from_wire([hd[0], hd[1], hd[2], hd[3]]);
        if got != digest::crc32c(header_bytes) {
            return Err(WireError::HeaderDigest);
        }
    }
    let ahs = BHS_LEN..ahs_end;
    validate_ahs(&header_bytes[BHS_LEN..])?;
    let data_start = ahs_end + hd_len;
    let data_len = data_len as usize;
    let dd_len = if digests.data && data_len > 0 {
        DIGEST_LEN
    } else {
        0
    };
    let data = data_start..data_start + data_len;
    let trailer = data.end..data.end + digest::pad_len(data_len) + dd_len;
    Ok(Some(Header {
        bhs,
        ahs,
        total_len: trailer.end,
        data,
        trailer,
    }))
}

/// Parses one complete PDU from the front of `buf`. `Ok(None)` means more bytes are
/// needed. A header digest mismatch, an oversized data segment or malformed AHS is an
/// error (the connection cannot be resynchronised); a data digest mismatch is reported
/// in `Frame::data_digest_ok`.
pub fn parse_frame(
    buf: &[u8],
    digests: Digests,
    max_data_segment: u32,
) -> Result<Option<Frame>, WireError> {
    let Some(h) = parse_header(buf, digests, max_data_segment)? else {
        return Ok(None);
    };
    if buf.len() < h.total_len {
        return Ok(None);
    }
    let data_digest_ok = if digests.data && !h.data.is_empty() {
        check_data_digest(&buf[h.data.start..h.total_len])
    } else {
        true
    };
    Ok(Some(Frame {
        bhs: h.bhs,
        ahs: h.ahs,
        data: h.data,
        total_len: h.total_len,
        data_digest_ok,
    }))
}

/// Checks a data digest given the data segment followed by its padding and the
/// 4-byte digest, as received. Short input is a mismatch.
pub fn check_data_digest(data_pad_digest: &[u8]) -> bool {
    let Some(split) = data_pad_digest.len().checked_sub(DIGEST_LEN) else {
        return false;
    };
    let (covered, d) = data_pad_digest.split_at(split);
    covered.len() % 4 == 0
        && digest::crc32c(covered) == digest::digest_from_wire([d[0], d[1], d[2], d[3]])
}

/// Checks that the AHS area is a well-formed sequence of AHS entries that exactly
/// fills it (RFC 7143 11.2.2: AHSLength counts the bytes after the type byte, each
/// AHS padded to 4).
fn validate_ahs(ahs: &[u8]) -> Result<(), WireError> {
    for entry in ahs_entries(ahs) {
        entry?;
    }
    Ok(())
}

/// One additional header segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahs<'a> {
    pub ahs_type: u8,
    /// The AHS-specific bytes (AHSLength of them, starting with the reserved byte of
    /// the standard AHS types).
    pub specific: &'a [u8],
}

/// AHS type: Extended CDB.
pub const AHS_EXTENDED_CDB: u8 = 1;
/// AHS type: Bidirectional Read Expected Data Transfer Length.
pub const AHS_BIDI_READ_LENGTH: u8 = 2;

/// Iterator over the entries of an AHS area.
#[derive(Debug, Clone)]
pub struct AhsIter<'a> {
    rest: &'a [u8],
}

/// Iterates the AHS entries of an AHS area (as returned in `Frame::ahs`).
pub fn ahs_entries(ahs: &[u8]) -> AhsIter<'_> {
    AhsIter { rest: ahs }
}

impl<'a> Iterator for AhsIter<'a> {
    type Item = Result<Ahs<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let len = u16::from_be_bytes([*self.rest.first()?, *self.rest.get(1)?]) as usize;
            let ahs_type = *self.rest.get(2)?;
            let specific = self.rest.get(3..3 + len)?;
            let consumed = digest::padded_len(3 + len);
            let rest = self.rest.get(consumed..)?;
            Some((Ahs { ahs_type, specific }, rest))
        })();
        match parsed {
            Some((ahs, rest)) => {
                self.rest = rest;
                Some(Ok(ahs))
            }
            None => {
                self.rest = &[];
                Some(Err(WireError::BadAhs))
            }
        }
    }
}

/// The CDB bytes beyond the first 16, from an Extended CDB AHS if there is one.
pub fn extended_cdb(ahs: &[u8]) -> Result<Option<&[u8]>, WireError> {
    for entry in ahs_entries(ahs) {
        let entry = entry?;
        if entry.ahs_type == AHS_EXTENDED_CDB {
            // First byte is reserved; an AHSLength of 0 has no room for it.
            return entry.specific.get(1..).map(Some).ok_or(WireError::BadAhs);
        }
    }
    Ok(None)
}

/// Builds an Extended CDB AHS for the CDB bytes after the first 16 (initiator side).
/// Returns the padded AHS bytes; the caller sets TotalAHSLength = len/4.
pub fn extended_cdb_ahs(cdb_tail: &[u8]) -> Vec<u8> {
    let ahs_len = (cdb_tail.len() + 1) as u16;
    let mut v = Vec::with_capacity(digest::padded_len(3 + ahs_len as usize));
    v.extend_from_slice(&ahs_len.to_be_bytes());
    v.push(AHS_EXTENDED_CDB);
    v.push(0);
    v.extend_from_slice(cdb_tail);
    v.resize(digest::padded_len(v.len()), 0);
    v
}

/// Writes the BHS and, if enabled, its header digest into a fixed buffer; returns the
/// number of bytes used (48 or 52). Targets never send AHS.
pub fn encode_header(bhs: &Bhs, header_digest: bool) -> ([u8; MAX_ENCODED_HEADER], usize) {
    let mut out = [0u8; MAX_ENCODED_HEADER];
    out[..BHS_LEN].copy_from_slice(&bhs.0);
    if header_digest {
        let d = digest::digest_to_wire(digest::crc32c(&bhs.0));
        out[BHS_LEN..].copy_from_slice(&d);
        (out, MAX_ENCODED_HEADER)
    } else {
        (out, BHS_LEN)
    }
}

/// Header with AHS (initiator side, e.g. extended CDBs): BHS | AHS | header digest.
/// TotalAHSLength in `bhs` must already be `ahs.len() / 4`.
pub fn encode_header_with_ahs(bhs: &Bhs, ahs: &[u8], header_digest: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(BHS_LEN + ahs.len() + DIGEST_LEN);
    v.extend_from_slice(&bhs.0);
    v.extend_from_slice(ahs);
    if header_digest {
        let d = digest::digest_to_wire(digest::crc32c(&v));
        v.extend_from_slice(&d);
    }
    v
}

/// The bytes that follow a data segment: zero padding and, if enabled, the data
/// digest. Returns the buffer and the number of bytes used (0..=7). For data held in
/// several buffers use [`data_trailer_with`] and a [`DataDigest`].
pub fn data_trailer(data: &[u8], data_digest: bool) -> ([u8; 8], usize) {
    let d = if data_digest && !data.is_empty() {
        let mut dd = DataDigest::new();
        dd.update(data);
        Some(dd)
    } else {
        None
    };
    data_trailer_with(data.len(), d)
}

/// Like [`data_trailer`] with a digest already fed with the data (`None` = no data
/// digest, or an empty data segment).
pub fn data_trailer_with(data_len: usize, digest: Option<DataDigest>) -> ([u8; 8], usize) {
    let mut out = [0u8; 8];
    let pad = digest::pad_len(data_len);
    match digest {
        Some(d) if data_len > 0 => {
            out[pad..pad + DIGEST_LEN].copy_from_slice(&digest::digest_to_wire(d.finish()));
            (out, pad + DIGEST_LEN)
        }
        _ => (out, pad),
    }
}

/// Encodes a whole PDU into one buffer (login, text, tests; not the data path).
pub fn encode_pdu(bhs: &Bhs, data: &[u8], digests: Digests) -> Vec<u8> {
    let mut bhs = *bhs;
    bhs.set_data_segment_len(data.len() as u32);
    let (h, hl) = encode_header(&bhs, digests.header);
    let (t, tl) = data_trailer(data, digests.data);
    let mut v = Vec::with_capacity(hl + data.len() + tl);
    v.extend_from_slice(&h[..hl]);
    v.extend_from_slice(data);
    v.extend_from_slice(&t[..tl]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bhs::Opcode;
    use crate::pdu;

    fn sample(data_len: u32) -> Bhs {
        let mut b = pdu::nop_out(true, [0; 8], 1, 0xffff_ffff, 1, 1, 0);
        b.set_data_segment_len(data_len);
        b
    }

    #[test]
    fn roundtrip_all_digest_combinations() {
        let data = b"hello world";
        for (h, d) in [(false, false), (true, false), (false, true), (true, true)] {
            let dg = Digests { header: h, data: d };
            let wire = encode_pdu(&sample(0), data, dg);
            assert_eq!(wire.len(), frame_len(&sample(data.len() as u32), h, d));
            // Every strict prefix needs more bytes.
            for cut in 0..wire.len() {
                assert_eq!(
                    parse_frame(&wire[..cut], dg, 8192).unwrap(),
                    None,
                    "cut {cut}"
                );
            }
            let mut buf = wire.clone();
            buf.extend_from_slice(&[0xde, 0xad]);
            let f = parse_frame(&buf, dg, 8192).unwrap().unwrap();
            assert_eq!(f.total_len, wire.len());
            assert_eq!(&buf[f.data.clone()], data);
            assert!(f.data_digest_ok);
            assert_eq!(f.bhs.opcode(), Some(Opcode::NopOut));
        }
    }

    #[test]
    fn empty_data_has_no_data_digest() {
        let dg = Digests {
            header: true,
            data: true,
        };
        let wire = encode_pdu(&sample(0), &[], dg);
        assert_eq!(wire.len(), 52);
        assert_eq!(frame_len(&sample(0), true, true), 52);
        let f = parse_frame(&wire, dg, 0).unwrap().unwrap();
        assert_eq!(f.total_len, 52);
    }

    #[test]
    fn digest_errors() {
        let dg = Digests {
            header: true,
            data: true,
        };
        let mut wire = encode_pdu(&sample(0), b"abcdef", dg);
        let mut bad_hdr = wire.clone();
        bad_hdr[20] ^= 1;
        assert_eq!(
            parse_frame(&bad_hdr, dg, 8192),
            Err(WireError::HeaderDigest)
        );
        wire[53] ^= 1;
        let f = parse_frame(&wire, dg, 8192).unwrap().unwrap();
        assert!(!f.data_digest_ok);
    }

    #[test]
    fn oversized_data_is_refused_early() {
        let b = sample(9000);
        assert_eq!(
            parse_frame(&b.0, Digests::NONE, 8192),
            Err(WireError::DataTooLong {
                len: 9000,
                max: 8192
            })
        );
    }

    #[test]
    fn ahs_parsing() {
        let cdb_tail = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        let ahs = extended_cdb_ahs(&cdb_tail);
        assert_eq!(ahs.len() % 4, 0);
        assert_eq!(extended_cdb(&ahs).unwrap(), Some(&cdb_tail[..]));
        let mut b = sample(0);
        b.set_total_ahs_words((ahs.len() / 4) as u8);
        let wire = encode_header_with_ahs(&b, &ahs, true);
        let dg = Digests {
            header: true,
            data: false,
        };
        let f = parse_frame(&wire, dg, 0).unwrap().unwrap();
        assert_eq!(&wire[f.ahs.clone()], &ahs[..]);
        assert_eq!(extended_cdb(&wire[f.ahs]).unwrap(), Some(&cdb_tail[..]));

        // AHSLength pointing past the AHS area.
        let mut bad = b;
        bad.set_total_ahs_words(1);
        let mut wire = bad.0.to_vec();
        wire.extend_from_slice(&[0, 9, 1, 0]);
        assert_eq!(parse_frame(&wire, Digests::NONE, 0), Err(WireError::BadAhs));
        // Zero-length extended CDB AHS has no reserved byte.
        assert_eq!(extended_cdb(&[0, 0, 1, 0]), Err(WireError::BadAhs));
        assert_eq!(extended_cdb(&[]), Ok(None));
    }

    #[test]
    fn trailers() {
        let (t, n) = data_trailer(b"abcde", false);
        assert_eq!((n, &t[..n]), (3, &[0u8, 0, 0][..]));
        let (t, n) = data_trailer(b"abcde", true);
        assert_eq!(n, 7);
        let mut padded = b"abcde\0\0\0".to_vec();
        let crc = digest::crc32c(&padded);
        assert_eq!(&t[3..7], &crc.to_le_bytes());
        padded.extend_from_slice(&t[3..7]);
        assert!(check_data_digest(&padded));
        assert_eq!(data_trailer(b"", true).1, 0);
        assert!(!check_data_digest(&[1, 2]));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: random-ish buffers through every parser.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            let mut buf = vec![0u8; (x % 200) as usize];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            for dg in [
                Digests::NONE,
                Digests {
                    header: true,
                    data: true,
                },
            ] {
                let _ = parse_frame(&buf, dg, 1 << 24);
            }
            let _ = extended_cdb(&buf);
        }
    }
}
