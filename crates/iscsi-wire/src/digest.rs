//! CRC32C header and data digests (RFC 7143 section 13.1 / RFC 3720 appendix B.4).
//!
//! The digest is the standard reflected CRC32C (initial value all ones, final
//! complement), which is what the `crc32c` crate computes (with SSE4.2 / ARMv8 CRC
//! instructions when available). On the wire the 32-bit value is sent least
//! significant byte first: RFC 3720 B.4 lists the CRC of 32 zero bytes as the byte
//! sequence `aa 36 91 8a`, i.e. 0x8A9136AA little-endian, and the Linux initiator,
//! libiscsi and SCST all store it with cpu_to_le32.

/// Length of a digest on the wire.
pub const DIGEST_LEN: usize = 4;

/// CRC32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues a CRC32C over more bytes (`crc` is a previous result).
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// Wire bytes of a digest value.
#[inline]
pub fn digest_to_wire(crc: u32) -> [u8; 4] {
    crc.to_le_bytes()
}

/// Digest value from its wire bytes.
#[inline]
pub fn digest_from_wire(b: [u8; 4]) -> u32 {
    u32::from_le_bytes(b)
}

/// Number of zero bytes that pad a data segment of `len` bytes to a 4-byte boundary.
#[inline]
pub fn pad_len(len: usize) -> usize {
    (4 - (len & 3)) & 3
}

/// `len` rounded up to a multiple of 4.
#[inline]
pub fn padded_len(len: usize) -> usize {
    len + pad_len(len)
}

/// Streaming data digest over a data segment that may live in several buffers. The
/// padding is part of the digest, so `finish` folds it in from the total length.
#[derive(Debug, Clone, Copy)]
pub struct DataDigest {
    crc: u32,
    len: usize,
}

impl Default for DataDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl DataDigest {
    pub fn new() -> Self {
        // crc32c_append(0, ..) is the same as crc32c(..): the crate handles the
        // initial/final complement itself.
        DataDigest { crc: 0, len: 0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.crc = crc32c_append(self.crc, data);
        self.len += data.len();
    }

    /// The digest value, including the zero padding of the segment.
    pub fn finish(mut self) -> u32 {
        let pad = pad_len(self.len);
        if pad != 0 {
            self.crc = crc32c_append(self.crc, &[0u8; 3][..pad]);
        }
        self.crc
    }
}

/// Data digest of one contiguous data segment (padding included).
pub fn data_digest(data: &[u8]) -> u32 {
    let mut d = DataDigest::new();
    d.update(data);
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers from RFC 3720 appendix B.4 (bytes as sent on the wire).
    #[test]
    fn rfc3720_vectors() {
        let zeros = [0u8; 32];
        assert_eq!(crc32c(&zeros), 0x8A91_36AA);
        assert_eq!(digest_to_wire(crc32c(&zeros)), [0xaa, 0x36, 0x91, 0x8a]);
        let ones = [0xffu8; 32];
        assert_eq!(crc32c(&ones), 0x62A8_AB43);
        assert_eq!(digest_to_wire(crc32c(&ones)), [0x43, 0xab, 0xa8, 0x62]);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        assert_eq!(digest_to_wire(crc32c(&inc)), [0x4e, 0x79, 0xdd, 0x46]);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&dec), 0x113F_DB5C);
        // The classic CRC-32C check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn streaming_equals_one_shot_with_padding() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 7) as u8).collect();
        let mut padded = data.clone();
        padded.resize(padded_len(data.len()), 0);
        let mut d = DataDigest::new();
        d.update(&data[..300]);
        d.update(&data[300..]);
        assert_eq!(d.finish(), crc32c(&padded));
        assert_eq!(data_digest(&data), crc32c(&padded));
        assert_eq!(digest_from_wire(digest_to_wire(0x1234_5678)), 0x1234_5678);
    }

    #[test]
    fn padding() {
        assert_eq!(
            (0..8).map(pad_len).collect::<Vec<_>>(),
            [0, 3, 2, 1, 0, 3, 2, 1]
        );
        assert_eq!(padded_len(5), 8);
    }
}
