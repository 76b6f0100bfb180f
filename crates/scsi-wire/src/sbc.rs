//! SBC commands outside the READ/WRITE family that need no state: PRE-FETCH (10/16)
//! (SBC-4 5.9, 5.10) and READ DEFECT DATA (10/12) (SBC-4 5.18, 5.19).

use crate::cdb::{be16, be32, be64, u8_at};
use crate::sense::Sense;

/// Operation codes handled here (not in [`crate::opcode`] to keep that list to the
/// commands every device sees).
pub mod opcode {
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;
}

/// PRE-FETCH (10) / (16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreFetchCdb {
    pub lba: u64,
    /// PREFETCH LENGTH in blocks; 0 means "through the last LBA".
    pub blocks: u32,
    /// Return status as soon as the CDB is validated.
    pub immed: bool,
}

pub fn decode_pre_fetch(cdb: &[u8]) -> Result<PreFetchCdb, Sense> {
    let immed = u8_at(cdb, 1)? & 0x02 != 0;
    match u8_at(cdb, 0)? {
        opcode::PRE_FETCH_10 => Ok(PreFetchCdb {
            lba: be32(cdb, 2)? as u64,
            blocks: be16(cdb, 7)? as u32,
            immed,
        }),
        opcode::PRE_FETCH_16 => Ok(PreFetchCdb {
            lba: be64(cdb, 2)?,
            blocks: be32(cdb, 10)?,
            immed,
        }),
        _ => Err(Sense::INVALID_OPCODE),
    }
}

/// READ DEFECT DATA (10) / (12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadDefectDataCdb {
    pub twelve: bool,
    /// REQ_PLIST / REQ_GLIST: which lists the initiator asks for.
    pub req_plist: bool,
    pub req_glist: bool,
    /// DEFECT LIST FORMAT (3 bits).
    pub format: u8,
    pub alloc_len: u32,
}

pub fn decode_read_defect_data(cdb: &[u8]) -> Result<ReadDefectDataCdb, Sense> {
    let (twelve, flags, alloc_len) = match u8_at(cdb, 0)? {
        opcode::READ_DEFECT_DATA_10 => (false, u8_at(cdb, 2)?, be16(cdb, 7)? as u32),
        opcode::READ_DEFECT_DATA_12 => (true, u8_at(cdb, 1)?, be32(cdb, 6)?),
        _ => return Err(Sense::INVALID_OPCODE),
    };
    Ok(ReadDefectDataCdb {
        twelve,
        req_plist: flags & 0x10 != 0,
        req_glist: flags & 0x08 != 0,
        format: flags & 0x07,
        alloc_len,
    })
}

/// Defect data with empty lists: a 4-byte (10) or 8-byte (12) header that reports
/// the requested lists as valid, in the requested format, with no entries.
pub fn empty_defect_data(c: &ReadDefectDataCdb) -> Vec<u8> {
    let mut flags = c.format;
    if c.req_plist {
        flags |= 0x10;
    }
    if c.req_glist {
        flags |= 0x08;
    }
    // Byte 1 carries PLISTV/GLISTV/format in both; the rest (generation code,
    // list length) stays zero.
    let mut b = vec![0u8; if c.twelve { 8 } else { 4 }];
    b[1] = flags;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_fetch() {
        let p = decode_pre_fetch(&[0x34, 0x02, 0, 0, 1, 0, 3, 0, 8, 0]).unwrap();
        assert_eq!(
            p,
            PreFetchCdb {
                lba: 256,
                blocks: 8,
                immed: true
            }
        );
        let mut c = [0u8; 16];
        c[0] = 0x90;
        c[2] = 0x80;
        c[13] = 1;
        let p = decode_pre_fetch(&c).unwrap();
        assert_eq!(
            p,
            PreFetchCdb {
                lba: 1 << 63,
                blocks: 1,
                immed: false
            }
        );
        assert!(decode_pre_fetch(&c[..11]).is_err());
        assert_eq!(
            decode_pre_fetch(&[0x28, 0]).unwrap_err(),
            Sense::INVALID_OPCODE
        );
    }

    #[test]
    fn read_defect_data() {
        let c = decode_read_defect_data(&[0x37, 0, 0x18 | 5, 0, 0, 0, 0, 0, 32, 0]).unwrap();
        assert!(!c.twelve && c.req_plist && c.req_glist);
        assert_eq!((c.format, c.alloc_len), (5, 32));
        assert_eq!(empty_defect_data(&c), vec![0, 0x1D, 0, 0]);
        let c = decode_read_defect_data(&[0xB7, 0x08 | 4, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]).unwrap();
        assert!(c.twelve && !c.req_plist && c.req_glist);
        assert_eq!((c.format, c.alloc_len), (4, 256));
        assert_eq!(empty_defect_data(&c), vec![0, 0x0C, 0, 0, 0, 0, 0, 0]);
        assert!(decode_read_defect_data(&[0xB7, 0, 0]).is_err());
    }
}
