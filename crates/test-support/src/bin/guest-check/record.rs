//! The self-describing block the power-loss test writes: which LUN and LBA it belongs
//! to, which write (generation) put it there, and a payload derived from those three,
//! so that after a power cut every block reads as one whole write (and which), as never
//! written (zeros), or as garbage: torn, misdirected or corrupt.

#![forbid(unsafe_code)]

/// Marks a block written by this test.
const MAGIC: &[u8; 8] = b"SCSTDUR1";
/// Header: magic, LBA, generation, LUN.
const HEADER: usize = 8 + 8 + 8 + 2;

/// What a block read back holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// All zeros: never written by this test.
    Zeros,
    /// Intact, written by generation `gen`.
    Write { gen: u64 },
    /// Neither: torn, misdirected (another LBA's or LUN's block) or corrupt.
    Garbage,
}

/// xorshift64: a cheap, reproducible sequence (payloads, choices of the writer).
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // Zero is xorshift's fixed point.
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `0..n` (n > 0) for picking offsets and choices.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn payload_seed(lun: u16, lba: u64, gen: u64) -> u64 {
    lba.rotate_left(32) ^ gen.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(lun)
}

/// Fill `block` (at least 26 bytes) with generation `gen`'s content for `lun`/`lba`.
pub fn encode(block: &mut [u8], lun: u16, lba: u64, gen: u64) {
    block[..8].copy_from_slice(MAGIC);
    block[8..16].copy_from_slice(&lba.to_be_bytes());
    block[16..24].copy_from_slice(&gen.to_be_bytes());
    block[24..26].copy_from_slice(&lun.to_be_bytes());
    let mut rng = XorShift::new(payload_seed(lun, lba, gen));
    for chunk in block[HEADER..].chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// What `block`, read from `lun` at `lba`, holds.
pub fn decode(block: &[u8], lun: u16, lba: u64) -> Content {
    if block.iter().all(|&b| b == 0) {
        return Content::Zeros;
    }
    if block.len() < HEADER || &block[..8] != MAGIC {
        return Content::Garbage;
    }
    let gen = u64::from_be_bytes(block[16..24].try_into().expect("8 bytes"));
    // The whole block must be exactly what that generation wrote at this LUN and LBA:
    // a torn block, another address's block or a flipped bit all differ somewhere.
    let mut expect = vec![0u8; block.len()];
    encode(&mut expect, lun, lba, gen);
    if expect != block {
        return Content::Garbage;
    }
    Content::Write { gen }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut b = vec![0u8; 512];
        assert_eq!(decode(&b, 0, 7), Content::Zeros);
        encode(&mut b, 1, 7, 42);
        assert_eq!(decode(&b, 1, 7), Content::Write { gen: 42 });
        // Another LBA's or LUN's block is misdirected, not valid.
        assert_eq!(decode(&b, 1, 8), Content::Garbage);
        assert_eq!(decode(&b, 0, 7), Content::Garbage);
        // A torn block: the second half of another generation.
        let mut other = vec![0u8; 512];
        encode(&mut other, 1, 7, 43);
        let mut torn = b.clone();
        torn[256..].copy_from_slice(&other[256..]);
        assert_eq!(decode(&torn, 1, 7), Content::Garbage);
        // Half zeros (a write that stopped midway).
        let mut half = b.clone();
        half[256..].fill(0);
        assert_eq!(decode(&half, 1, 7), Content::Garbage);
        let mut flipped = b;
        flipped[100] ^= 1;
        assert_eq!(decode(&flipped, 1, 7), Content::Garbage);
    }

    #[test]
    fn any_block_size() {
        for len in [512usize, 520, 4096] {
            let mut b = vec![0u8; len];
            encode(&mut b, 3, u64::MAX, 1);
            assert_eq!(decode(&b, 3, u64::MAX), Content::Write { gen: 1 });
        }
        assert_eq!(decode(&[1, 2, 3], 0, 0), Content::Garbage);
    }
}
