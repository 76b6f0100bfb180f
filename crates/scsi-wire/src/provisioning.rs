//! Logical block provisioning wire formats (SBC-4 4.7, 5.32, 5.50, 5.20, 6.6.4):
//! WRITE SAME (10/16) and UNMAP CDBs, the UNMAP parameter list, GET LBA STATUS
//! CDB and parameter data, and the Logical Block Provisioning VPD page (B2h).
//!
//! Like the rest of this crate: pure functions over untrusted bytes that return
//! the sense to report instead of panicking.

use crate::cdb::{be16, be32, be64, u8_at};
use crate::sense::Sense;

/// WRITE SAME (10) / (16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSameCdb {
    pub lba: u64,
    /// NUMBER OF LOGICAL BLOCKS. 0 means "to the last LBA" unless the device
    /// reports WSNZ, in which case it is invalid.
    pub blocks: u32,
    /// WRPROTECT (3 bits).
    pub wrprotect: u8,
    pub anchor: bool,
    /// Deallocate instead of writing (thin provisioning).
    pub unmap: bool,
    /// WRITE SAME (16) only: no data-out buffer, the block is all zeros.
    pub ndob: bool,
    /// Offset of the NUMBER OF LOGICAL BLOCKS field, for field pointers.
    pub len_offset: u16,
}

/// Bits of WRITE SAME byte 1, for field pointers.
pub mod write_same_bit {
    pub const WRPROTECT: u8 = 7;
    pub const ANCHOR: u8 = 4;
    pub const UNMAP: u8 = 3;
    pub const NDOB: u8 = 0;
}

pub fn decode_write_same(cdb: &[u8]) -> Result<WriteSameCdb, Sense> {
    let op = u8_at(cdb, 0)?;
    let flags = u8_at(cdb, 1)?;
    let (lba, blocks, len_offset, ndob) = match op {
        crate::opcode::WRITE_SAME_10 => (be32(cdb, 2)? as u64, be16(cdb, 7)? as u32, 7, false),
        crate::opcode::WRITE_SAME_16 => (be64(cdb, 2)?, be32(cdb, 10)?, 10, flags & 0x01 != 0),
        _ => return Err(Sense::INVALID_OPCODE),
    };
    Ok(WriteSameCdb {
        lba,
        blocks,
        wrprotect: flags >> 5,
        anchor: flags & 0x10 != 0,
        unmap: flags & 0x08 != 0,
        ndob,
        len_offset,
    })
}

/// UNMAP (SBC-4 5.32.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnmapCdb {
    pub anchor: bool,
    pub param_len: u16,
}

pub fn decode_unmap(cdb: &[u8]) -> Result<UnmapCdb, Sense> {
    Ok(UnmapCdb {
        anchor: u8_at(cdb, 1)? & 0x01 != 0,
        param_len: be16(cdb, 7)?,
    })
}

/// Size of the UNMAP parameter list header and of one block descriptor.
pub const UNMAP_HEADER_LEN: usize = 8;
pub const UNMAP_DESCRIPTOR_LEN: usize = 16;

/// One UNMAP block descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnmapDescriptor {
    pub lba: u64,
    pub blocks: u32,
    /// Offset of this descriptor in the parameter list, for field pointers.
    pub offset: u16,
}

/// Parse an UNMAP parameter list (SBC-4 5.32.2). `list` is the parameter data, at
/// most PARAMETER LIST LENGTH bytes.
///
/// - An empty list transfers nothing and is not an error.
/// - A list shorter than its 8-byte header: PARAMETER LIST LENGTH ERROR.
/// - Header lengths that claim more than the list holds: INVALID FIELD IN
///   PARAMETER LIST pointing at the offending length field.
/// - A trailing partial descriptor is ignored, as SBC-4 requires.
pub fn parse_unmap_list(list: &[u8]) -> Result<Vec<UnmapDescriptor>, Sense> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    if list.len() < UNMAP_HEADER_LEN {
        return Err(Sense::PARAM_LIST_LENGTH_ERROR);
    }
    let data_len = be16(list, 0)? as usize;
    let desc_len = be16(list, 2)? as usize;
    // UNMAP DATA LENGTH counts the bytes after itself.
    if data_len + 2 > list.len() {
        return Err(Sense::invalid_field_in_param(0, None));
    }
    if desc_len + UNMAP_HEADER_LEN > list.len() {
        return Err(Sense::invalid_field_in_param(2, None));
    }
    let count = desc_len / UNMAP_DESCRIPTOR_LEN;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let off = UNMAP_HEADER_LEN + i * UNMAP_DESCRIPTOR_LEN;
        out.push(UnmapDescriptor {
            lba: be64(list, off)?,
            blocks: be32(list, off + 8)?,
            // The list is at most 65535 bytes long (16-bit PARAMETER LIST LENGTH).
            offset: off.min(u16::MAX as usize) as u16,
        });
    }
    Ok(out)
}

/// GET LBA STATUS (SERVICE ACTION IN(16) / 12h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetLbaStatusCdb {
    pub lba: u64,
    pub alloc_len: u32,
}

pub fn decode_get_lba_status(cdb: &[u8]) -> Result<GetLbaStatusCdb, Sense> {
    Ok(GetLbaStatusCdb {
        lba: be64(cdb, 2)?,
        alloc_len: be32(cdb, 10)?,
    })
}

/// Provisioning status of an LBA extent (SBC-4 table 67).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningStatus {
    Mapped = 0,
    Deallocated = 1,
    Anchored = 2,
}

/// One LBA status descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaStatus {
    pub lba: u64,
    pub blocks: u32,
    pub status: ProvisioningStatus,
}

/// Length of the GET LBA STATUS parameter data header and of one descriptor.
pub const LBA_STATUS_HEADER_LEN: usize = 8;
pub const LBA_STATUS_DESCRIPTOR_LEN: usize = 16;

/// GET LBA STATUS parameter data: the 8-byte header (PARAMETER DATA LENGTH counts
/// the bytes after itself) and one 16-byte descriptor per extent.
pub fn lba_status_data(extents: &[LbaStatus]) -> Vec<u8> {
    let mut b = vec![0u8; LBA_STATUS_HEADER_LEN];
    for e in extents {
        b.extend_from_slice(&e.lba.to_be_bytes());
        b.extend_from_slice(&e.blocks.to_be_bytes());
        b.extend_from_slice(&[e.status as u8, 0, 0, 0]);
    }
    let param_len = u32::try_from(b.len() - 4).unwrap_or(u32::MAX);
    b[..4].copy_from_slice(&param_len.to_be_bytes());
    b
}

/// Logical Block Provisioning VPD page (B2h) contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogicalBlockProvisioning {
    /// UNMAP is supported.
    pub lbpu: bool,
    /// WRITE SAME (16) with UNMAP is supported.
    pub lbpws: bool,
    /// WRITE SAME (10) with UNMAP is supported.
    pub lbpws10: bool,
    /// Deallocated blocks read back as zeros.
    pub lbprz: bool,
    /// Anchored LBAs are supported.
    pub anc_sup: bool,
    /// PROVISIONING TYPE: 0 full, 1 resource, 2 thin.
    pub provisioning_type: u8,
}

/// Provisioning type of a thin provisioned logical unit.
pub const PROVISIONING_THIN: u8 = 2;

/// VPD B2h: the 4-byte header and the 4-byte body without provisioning group
/// descriptor (DP = 0).
pub fn vpd_logical_block_provisioning(periph: u8, p: &LogicalBlockProvisioning) -> Vec<u8> {
    let mut flags = 0u8;
    if p.lbpu {
        flags |= 0x80;
    }
    if p.lbpws {
        flags |= 0x40;
    }
    if p.lbpws10 {
        flags |= 0x20;
    }
    // SBC-3 has a single LBPRZ bit here (bit 2); SBC-4 widened it into a 3-bit field
    // (bits 4..2) whose value 001b means the same, so both readings agree.
    if p.lbprz {
        flags |= 0x04;
    }
    if p.anc_sup {
        flags |= 0x02;
    }
    vec![
        periph,
        0xB2,
        0,
        4,
        0, // threshold exponent: no thresholds
        flags,
        p.provisioning_type & 0x07,
        0, // threshold percentage
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_same_cdbs() {
        let c = [0x41, 0x08, 0, 0, 0x01, 0x00, 0, 0x00, 0x10, 0];
        let w = decode_write_same(&c).unwrap();
        assert_eq!(
            (w.lba, w.blocks, w.unmap, w.anchor, w.ndob),
            (256, 16, true, false, false)
        );
        assert_eq!(w.len_offset, 7);
        let mut c = [0u8; 16];
        c[0] = 0x93;
        c[1] = 0x10 | 0x01 | 0x20;
        c[9] = 5;
        c[13] = 2;
        let w = decode_write_same(&c).unwrap();
        assert_eq!(
            (w.lba, w.blocks, w.anchor, w.ndob, w.wrprotect),
            (5, 2, true, true, 1)
        );
        assert_eq!(w.len_offset, 10);
        assert!(decode_write_same(&c[..12]).is_err());
        assert_eq!(
            decode_write_same(&[0x2A, 0]).unwrap_err(),
            Sense::INVALID_OPCODE
        );
    }

    fn unmap_list(descs: &[(u64, u32)]) -> Vec<u8> {
        let n = descs.len() * 16;
        let mut b = Vec::new();
        b.extend_from_slice(&((n + 6) as u16).to_be_bytes());
        b.extend_from_slice(&(n as u16).to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        for (lba, blocks) in descs {
            b.extend_from_slice(&lba.to_be_bytes());
            b.extend_from_slice(&blocks.to_be_bytes());
            b.extend_from_slice(&[0; 4]);
        }
        b
    }

    #[test]
    fn unmap_parameter_list() {
        let l = unmap_list(&[(1, 2), (u64::MAX, 7)]);
        let d = parse_unmap_list(&l).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].lba, d[0].blocks, d[0].offset), (1, 2, 8));
        assert_eq!((d[1].lba, d[1].blocks, d[1].offset), (u64::MAX, 7, 24));
        // Nothing transferred / header only: no descriptors, no error.
        assert!(parse_unmap_list(&[]).unwrap().is_empty());
        assert!(parse_unmap_list(&unmap_list(&[])).unwrap().is_empty());
        // Shorter than the header.
        assert_eq!(
            parse_unmap_list(&l[..5]).unwrap_err(),
            Sense::PARAM_LIST_LENGTH_ERROR
        );
        // Descriptor length beyond the list.
        assert_eq!(
            parse_unmap_list(&l[..30]).unwrap_err(),
            Sense::invalid_field_in_param(0, None)
        );
        let mut bad = l.clone();
        bad[0..2].copy_from_slice(&6u16.to_be_bytes());
        bad[2..4].copy_from_slice(&48u16.to_be_bytes());
        assert_eq!(
            parse_unmap_list(&bad).unwrap_err(),
            Sense::invalid_field_in_param(2, None)
        );
        // A trailing partial descriptor is ignored.
        let mut partial = l.clone();
        partial[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(parse_unmap_list(&partial).unwrap().len(), 1);
    }

    #[test]
    fn lba_status_encoding() {
        let d = lba_status_data(&[
            LbaStatus {
                lba: 0,
                blocks: 8,
                status: ProvisioningStatus::Deallocated,
            },
            LbaStatus {
                lba: 8,
                blocks: 1,
                status: ProvisioningStatus::Mapped,
            },
        ]);
        assert_eq!(d.len(), 40);
        assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()), 36);
        assert_eq!(u32::from_be_bytes(d[16..20].try_into().unwrap()), 8);
        assert_eq!(d[20], 1);
        assert_eq!(u64::from_be_bytes(d[24..32].try_into().unwrap()), 8);
        assert_eq!(d[36], 0);
        let g = decode_get_lba_status(&[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 24, 0, 0])
            .unwrap();
        assert_eq!((g.lba, g.alloc_len), (9, 24));
    }

    #[test]
    fn vpd_b2() {
        let p = LogicalBlockProvisioning {
            lbpu: true,
            lbpws: true,
            lbpws10: true,
            lbprz: true,
            anc_sup: false,
            provisioning_type: PROVISIONING_THIN,
        };
        assert_eq!(
            vpd_logical_block_provisioning(0, &p),
            vec![0, 0xB2, 0, 4, 0, 0xE4, 2, 0]
        );
    }
}
