//! CDB decoding (SPC-4 4.2, SBC-3 5.x): opcode constants, CDB length by group code,
//! checked big-endian field readers and decoders for the block commands.
//!
//! CDBs are untrusted bytes: every reader is checked and a CDB too short for the field
//! asked for yields INVALID FIELD IN CDB pointing at the first missing byte, never a panic.

use crate::sense::Sense;

/// Operation codes (SPC-4 / SBC-3 / MMC).
pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const FORMAT_UNIT: u8 = 0x04;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const SEND_DIAGNOSTIC: u8 = 0x1D;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const READ_TOC: u8 = 0x43;
    pub const LOG_SELECT: u8 = 0x4C;
    pub const LOG_SENSE: u8 = 0x4D;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    pub const VARIABLE_LENGTH: u8 = 0x7F;
    pub const EXTENDED_COPY: u8 = 0x83;
    pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8A;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    /// SERVICE ACTION IN(16): READ CAPACITY(16), GET LBA STATUS.
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const MAINTENANCE_OUT: u8 = 0xA4;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
}

/// Service actions of SERVICE ACTION IN(16) (0x9E).
pub mod service_action {
    pub const READ_CAPACITY_16: u8 = 0x10;
    pub const GET_LBA_STATUS: u8 = 0x12;
}

/// CDB length implied by the opcode's group code (SPC-4 4.2.5.1). Returns 0 for group 3
/// (reserved / variable length: the length is in byte 7) and the vendor-specific groups
/// 6 and 7, whose length the opcode does not tell.
pub const fn cdb_len(opcode: u8) -> usize {
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 0,
    }
}

/// The error for a CDB that ends before byte `off`.
fn short(off: usize) -> Sense {
    Sense::invalid_field_in_cdb(off.min(u16::MAX as usize) as u16, None)
}

/// `N` bytes of `b` starting at `off`, or the short-CDB error.
pub fn bytes_at<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], Sense> {
    let end = off.checked_add(N).ok_or_else(|| short(off))?;
    match b.get(off..end) {
        Some(s) => {
            let mut a = [0u8; N];
            a.copy_from_slice(s);
            Ok(a)
        }
        None => Err(short(b.len().max(off))),
    }
}

pub fn u8_at(b: &[u8], off: usize) -> Result<u8, Sense> {
    b.get(off).copied().ok_or_else(|| short(off))
}

pub fn be16(b: &[u8], off: usize) -> Result<u16, Sense> {
    bytes_at::<2>(b, off).map(u16::from_be_bytes)
}

pub fn be24(b: &[u8], off: usize) -> Result<u32, Sense> {
    bytes_at::<3>(b, off).map(|a| u32::from_be_bytes([0, a[0], a[1], a[2]]))
}

pub fn be32(b: &[u8], off: usize) -> Result<u32, Sense> {
    bytes_at::<4>(b, off).map(u32::from_be_bytes)
}

pub fn be64(b: &[u8], off: usize) -> Result<u64, Sense> {
    bytes_at::<8>(b, off).map(u64::from_be_bytes)
}

/// Which medium access a READ/WRITE/VERIFY family CDB asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RwKind {
    Read,
    Write,
    Verify,
    WriteAndVerify,
}

/// The fields of READ/WRITE/VERIFY/WRITE AND VERIFY (6/10/12/16) that the emulation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RwCdb {
    pub kind: RwKind,
    pub lba: u64,
    /// Transfer (or verification) length in logical blocks. READ(6)/WRITE(6) 0 is
    /// already turned into 256.
    pub blocks: u32,
    /// Force unit access: the data must reach stable storage before GOOD.
    pub fua: bool,
    /// Disable page out: a caching hint only.
    pub dpo: bool,
    /// VERIFY / WRITE AND VERIFY BYTCHK (2 bits): 0 medium check, 1 compare the
    /// data-out, 3 compare one block of data-out against every block.
    pub bytchk: u8,
    /// RDPROTECT / WRPROTECT / VRPROTECT (3 bits); only 0 without T10-PI.
    pub protect: u8,
    /// Offset of the transfer length field, for field pointers.
    pub len_offset: u16,
}

impl RwCdb {
    /// Whether the command writes the medium (read-only devices reject these).
    pub fn writes_medium(&self) -> bool {
        matches!(self.kind, RwKind::Write | RwKind::WriteAndVerify)
    }
}

/// Decode any of the READ/WRITE/VERIFY/WRITE AND VERIFY CDBs. Other opcodes give
/// INVALID COMMAND OPERATION CODE.
pub fn decode_rw(cdb: &[u8]) -> Result<RwCdb, Sense> {
    use opcode::*;
    let op = u8_at(cdb, 0)?;
    let kind = match op {
        READ_6 | READ_10 | READ_12 | READ_16 => RwKind::Read,
        WRITE_6 | WRITE_10 | WRITE_12 | WRITE_16 => RwKind::Write,
        VERIFY_10 | VERIFY_12 | VERIFY_16 => RwKind::Verify,
        WRITE_AND_VERIFY_10 | WRITE_AND_VERIFY_12 | WRITE_AND_VERIFY_16 => RwKind::WriteAndVerify,
        _ => return Err(Sense::INVALID_OPCODE),
    };
    if matches!(op, READ_6 | WRITE_6) {
        // 21-bit LBA, no flags; a transfer length of 0 means 256 blocks (SBC-3 5.7).
        let lba = (be24(cdb, 1)? & 0x1F_FFFF) as u64;
        let len = u8_at(cdb, 4)?;
        let blocks = if len == 0 { 256 } else { len as u32 };
        return Ok(RwCdb {
            kind,
            lba,
            blocks,
            fua: false,
            dpo: false,
            bytchk: 0,
            protect: 0,
            len_offset: 4,
        });
    }
    let flags = u8_at(cdb, 1)?;
    let (lba, blocks, len_offset) = match cdb_len(op) {
        10 => (be32(cdb, 2)? as u64, be16(cdb, 7)? as u32, 7),
        12 => (be32(cdb, 2)? as u64, be32(cdb, 6)?, 6),
        _ => (be64(cdb, 2)?, be32(cdb, 10)?, 10),
    };
    let verifies = matches!(kind, RwKind::Verify | RwKind::WriteAndVerify);
    Ok(RwCdb {
        kind,
        lba,
        blocks,
        // Only READ and WRITE have FUA; bit 3 is reserved in VERIFY / WRITE AND VERIFY.
        fua: matches!(kind, RwKind::Read | RwKind::Write) && flags & 0x08 != 0,
        dpo: flags & 0x10 != 0,
        bytchk: if verifies { (flags >> 1) & 0x03 } else { 0 },
        protect: flags >> 5,
        len_offset,
    })
}

/// SYNCHRONIZE CACHE (10/16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncCacheCdb {
    pub lba: u64,
    /// Number of blocks; 0 means "through the last LBA".
    pub blocks: u32,
    pub immed: bool,
}

pub fn decode_sync_cache(cdb: &[u8]) -> Result<SyncCacheCdb, Sense> {
    let op = u8_at(cdb, 0)?;
    let immed = u8_at(cdb, 1)? & 0x02 != 0;
    match op {
        opcode::SYNCHRONIZE_CACHE_10 => Ok(SyncCacheCdb {
            lba: be32(cdb, 2)? as u64,
            blocks: be16(cdb, 7)? as u32,
            immed,
        }),
        opcode::SYNCHRONIZE_CACHE_16 => Ok(SyncCacheCdb {
            lba: be64(cdb, 2)?,
            blocks: be32(cdb, 10)?,
            immed,
        }),
        _ => Err(Sense::INVALID_OPCODE),
    }
}

/// INQUIRY (SPC-4 6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InquiryCdb {
    pub evpd: bool,
    /// Obsolete CMDDT bit: targets reject it.
    pub cmddt: bool,
    pub page: u8,
    pub alloc_len: u16,
}

pub fn decode_inquiry(cdb: &[u8]) -> Result<InquiryCdb, Sense> {
    let flags = u8_at(cdb, 1)?;
    Ok(InquiryCdb {
        evpd: flags & 0x01 != 0,
        cmddt: flags & 0x02 != 0,
        page: u8_at(cdb, 2)?,
        alloc_len: be16(cdb, 3)?,
    })
}

/// Page control field of MODE SENSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    Current,
    Changeable,
    Default,
    Saved,
}

/// MODE SENSE (6/10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSenseCdb {
    pub ten: bool,
    /// Disable block descriptors.
    pub dbd: bool,
    /// Long LBA accepted (MODE SENSE(10) only): use the 16-byte block descriptor.
    pub llbaa: bool,
    pub pc: PageControl,
    pub page: u8,
    pub subpage: u8,
    pub alloc_len: u16,
}

pub fn decode_mode_sense(cdb: &[u8]) -> Result<ModeSenseCdb, Sense> {
    let op = u8_at(cdb, 0)?;
    let ten = op == opcode::MODE_SENSE_10;
    let flags = u8_at(cdb, 1)?;
    let b2 = u8_at(cdb, 2)?;
    let pc = match b2 >> 6 {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => PageControl::Saved,
    };
    Ok(ModeSenseCdb {
        ten,
        dbd: flags & 0x08 != 0,
        llbaa: ten && flags & 0x10 != 0,
        pc,
        page: b2 & 0x3F,
        subpage: u8_at(cdb, 3)?,
        alloc_len: if ten {
            be16(cdb, 7)?
        } else {
            u8_at(cdb, 4)? as u16
        },
    })
}

/// MODE SELECT (6/10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSelectCdb {
    pub ten: bool,
    /// Page format: pages follow the SPC format (must be 1 for us).
    pub pf: bool,
    /// Save pages.
    pub sp: bool,
    pub param_len: u16,
}

pub fn decode_mode_select(cdb: &[u8]) -> Result<ModeSelectCdb, Sense> {
    let ten = u8_at(cdb, 0)? == opcode::MODE_SELECT_10;
    let flags = u8_at(cdb, 1)?;
    Ok(ModeSelectCdb {
        ten,
        pf: flags & 0x10 != 0,
        sp: flags & 0x01 != 0,
        param_len: if ten {
            be16(cdb, 7)?
        } else {
            u8_at(cdb, 4)? as u16
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_lengths() {
        assert_eq!(cdb_len(opcode::READ_6), 6);
        assert_eq!(cdb_len(opcode::READ_10), 10);
        assert_eq!(cdb_len(opcode::MODE_SENSE_10), 10);
        assert_eq!(cdb_len(opcode::READ_12), 12);
        assert_eq!(cdb_len(opcode::READ_16), 16);
        assert_eq!(cdb_len(opcode::VARIABLE_LENGTH), 0);
        assert_eq!(cdb_len(0xC0), 0);
    }

    #[test]
    fn readers_are_checked() {
        let b = [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0, 0x11];
        assert_eq!(be16(&b, 0), Ok(0x1234));
        assert_eq!(be24(&b, 1), Ok(0x34_5678));
        assert_eq!(be32(&b, 0), Ok(0x1234_5678));
        assert_eq!(be64(&b, 1), Ok(0x3456_789A_BCDE_F011));
        let e = be32(&b, 7).unwrap_err();
        assert_eq!((e.key, e.asc), (0x05, 0x24));
        assert!(be64(&b, usize::MAX).is_err());
        assert!(u8_at(&[], 0).is_err());
    }

    #[test]
    fn rw6_zero_means_256() {
        let r = decode_rw(&[opcode::READ_6, 0xFF, 0x12, 0x34, 0, 0]).unwrap();
        assert_eq!(r.lba, 0x1F_1234);
        assert_eq!(r.blocks, 256);
        assert_eq!(r.kind, RwKind::Read);
        let w = decode_rw(&[opcode::WRITE_6, 0, 0, 1, 8, 0]).unwrap();
        assert_eq!((w.lba, w.blocks), (1, 8));
        assert!(w.writes_medium());
    }

    #[test]
    fn rw10_12_16_fields() {
        let r = decode_rw(&[opcode::WRITE_10, 0x18, 0, 0, 1, 0, 0, 0, 4, 0]).unwrap();
        assert_eq!((r.lba, r.blocks, r.fua, r.dpo), (256, 4, true, true));
        assert_eq!(r.len_offset, 7);
        let r = decode_rw(&[opcode::READ_12, 0, 0, 0, 0, 9, 0, 0, 1, 0, 0, 0]).unwrap();
        assert_eq!((r.lba, r.blocks), (9, 256));
        let mut c = [0u8; 16];
        c[0] = opcode::VERIFY_16;
        c[1] = 0x02 | 0x08;
        c[2] = 1;
        c[13] = 3;
        let r = decode_rw(&c).unwrap();
        assert_eq!((r.lba, r.blocks, r.bytchk, r.fua), (1 << 56, 3, 1, false));
        assert_eq!(r.kind, RwKind::Verify);
        // Short CDBs error instead of panicking.
        assert!(decode_rw(&[opcode::READ_16, 0, 0]).is_err());
        assert_eq!(decode_rw(&[0x00]).unwrap_err(), Sense::INVALID_OPCODE);
    }

    #[test]
    fn sync_cache() {
        let s = decode_sync_cache(&[0x35, 0x02, 0, 0, 0, 5, 0, 0, 7, 0]).unwrap();
        assert_eq!(
            s,
            SyncCacheCdb {
                lba: 5,
                blocks: 7,
                immed: true
            }
        );
        let mut c = [0u8; 16];
        c[0] = 0x91;
        c[9] = 1;
        c[13] = 2;
        assert_eq!(
            decode_sync_cache(&c).unwrap(),
            SyncCacheCdb {
                lba: 1,
                blocks: 2,
                immed: false
            }
        );
    }

    #[test]
    fn inquiry_and_mode_cdbs() {
        let i = decode_inquiry(&[0x12, 0x01, 0x83, 0x01, 0x00, 0]).unwrap();
        assert!(i.evpd && !i.cmddt);
        assert_eq!((i.page, i.alloc_len), (0x83, 256));
        let m = decode_mode_sense(&[0x5A, 0x18, 0x7F, 0, 0, 0, 0, 0x01, 0x00, 0]).unwrap();
        assert!(m.ten && m.dbd && m.llbaa);
        assert_eq!(
            (m.pc, m.page, m.alloc_len),
            (PageControl::Changeable, 0x3F, 256)
        );
        let m = decode_mode_sense(&[0x1A, 0x10, 0xC8, 0, 0xFF, 0]).unwrap();
        assert!(!m.llbaa);
        assert_eq!((m.pc, m.page, m.alloc_len), (PageControl::Saved, 8, 255));
        let s = decode_mode_select(&[0x55, 0x11, 0, 0, 0, 0, 0, 0, 20, 0]).unwrap();
        assert!(s.ten && s.pf && s.sp);
        assert_eq!(s.param_len, 20);
    }
}
