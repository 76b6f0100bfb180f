//! CDBs of the SBC commands whose read-modify-write or write must look indivisible to
//! other commands: COMPARE AND WRITE (SBC-4 5.3), ORWRITE(16) (SBC-4 5.8) and
//! WRITE ATOMIC(16) (SBC-4 5.48).
//!
//! Decoders only pick fields out of the bytes; limits (transfer lengths, alignment,
//! range) are the device's business.

use crate::cdb::{be16, be32, be64, u8_at};
use crate::sense::Sense;

/// Operation codes decoded here (COMPARE AND WRITE is in [`crate::opcode`]).
pub mod opcode {
    pub const ORWRITE_16: u8 = 0x8B;
    pub const WRITE_ATOMIC_16: u8 = 0x9C;
}

/// Byte 1 flag bits shared by the three commands.
const DPO: u8 = 0x10;
const FUA: u8 = 0x08;

/// Field offsets, for sense field pointers.
pub mod field {
    /// WRPROTECT / ORPROTECT (byte 1, bits 7-5).
    pub const PROTECT_BYTE: u16 = 1;
    pub const PROTECT_BIT: u8 = 7;
    pub const LBA: u16 = 2;
    /// COMPARE AND WRITE NUMBER OF LOGICAL BLOCKS.
    pub const CAW_BLOCKS: u16 = 13;
    /// ORWRITE(16) TRANSFER LENGTH.
    pub const ORWRITE_LEN: u16 = 10;
    /// WRITE ATOMIC(16) ATOMIC BOUNDARY.
    pub const ATOMIC_BOUNDARY: u16 = 10;
    /// WRITE ATOMIC(16) TRANSFER LENGTH.
    pub const ATOMIC_LEN: u16 = 12;
}

/// The fields of COMPARE AND WRITE, ORWRITE(16) and WRITE ATOMIC(16) the emulation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicRwCdb {
    pub lba: u64,
    /// NUMBER OF LOGICAL BLOCKS (COMPARE AND WRITE: the data-out holds twice this) or
    /// TRANSFER LENGTH.
    pub blocks: u32,
    /// WRPROTECT / ORPROTECT (3 bits); only 0 without T10-PI.
    pub protect: u8,
    pub dpo: bool,
    pub fua: bool,
    /// WRITE ATOMIC(16) ATOMIC BOUNDARY in blocks; 0 for the other commands.
    pub boundary: u16,
}

/// COMPARE AND WRITE: LBA in bytes 2-9, NUMBER OF LOGICAL BLOCKS in byte 13.
pub fn decode_compare_and_write(cdb: &[u8]) -> Result<AtomicRwCdb, Sense> {
    let flags = u8_at(cdb, 1)?;
    Ok(AtomicRwCdb {
        lba: be64(cdb, 2)?,
        blocks: u8_at(cdb, 13)? as u32,
        protect: flags >> 5,
        dpo: flags & DPO != 0,
        fua: flags & FUA != 0,
        boundary: 0,
    })
}

/// ORWRITE(16): LBA in bytes 2-9, TRANSFER LENGTH in bytes 10-13.
pub fn decode_orwrite_16(cdb: &[u8]) -> Result<AtomicRwCdb, Sense> {
    let flags = u8_at(cdb, 1)?;
    Ok(AtomicRwCdb {
        lba: be64(cdb, 2)?,
        blocks: be32(cdb, 10)?,
        protect: flags >> 5,
        dpo: flags & DPO != 0,
        fua: flags & FUA != 0,
        boundary: 0,
    })
}

/// WRITE ATOMIC(16): LBA in bytes 2-9, ATOMIC BOUNDARY in 10-11, TRANSFER LENGTH in
/// 12-13 (a 16-bit field, unlike WRITE(16)).
pub fn decode_write_atomic_16(cdb: &[u8]) -> Result<AtomicRwCdb, Sense> {
    let flags = u8_at(cdb, 1)?;
    Ok(AtomicRwCdb {
        lba: be64(cdb, 2)?,
        blocks: be16(cdb, 12)? as u32,
        protect: flags >> 5,
        dpo: flags & DPO != 0,
        fua: flags & FUA != 0,
        boundary: be16(cdb, 10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caw_fields() {
        let mut c = [0u8; 16];
        c[0] = 0x89;
        c[1] = 0x18;
        c[9] = 7;
        c[13] = 255;
        let d = decode_compare_and_write(&c).unwrap();
        assert_eq!(
            (d.lba, d.blocks, d.dpo, d.fua, d.protect),
            (7, 255, true, true, 0)
        );
        c[1] = 0x20;
        assert_eq!(decode_compare_and_write(&c).unwrap().protect, 1);
        assert!(decode_compare_and_write(&c[..13]).is_err());
    }

    #[test]
    fn orwrite_and_atomic_fields() {
        let mut c = [0u8; 16];
        c[0] = opcode::ORWRITE_16;
        c[2] = 1;
        c[10..14].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        let d = decode_orwrite_16(&c).unwrap();
        assert_eq!((d.lba, d.blocks), (1 << 56, 0x0102_0304));
        let mut a = [0u8; 16];
        a[0] = opcode::WRITE_ATOMIC_16;
        a[1] = 0xE8;
        a[11] = 8;
        a[13] = 16;
        let d = decode_write_atomic_16(&a).unwrap();
        assert_eq!(
            (d.blocks, d.boundary, d.protect, d.fua, d.dpo),
            (16, 8, 7, true, false)
        );
        assert!(decode_write_atomic_16(&a[..12]).is_err());
    }
}
