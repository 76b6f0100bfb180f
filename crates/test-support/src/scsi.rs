//! Minimal SCSI helpers for tests: CDB builders and decoders for the few responses
//! tests look at. Written independently of the target's scsi-wire crate on purpose, so
//! that a bug there is not mirrored here.

/// SCSI status codes.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const CONDITION_MET: u8 = 0x04;
    pub const BUSY: u8 = 0x08;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const TASK_SET_FULL: u8 = 0x28;
    pub const ACA_ACTIVE: u8 = 0x30;
    pub const TASK_ABORTED: u8 = 0x40;
}

pub fn test_unit_ready() -> [u8; 6] {
    [0x00, 0, 0, 0, 0, 0]
}

pub fn inquiry(evpd: bool, page: u8, alloc_len: u16) -> [u8; 6] {
    let a = alloc_len.to_be_bytes();
    [0x12, evpd as u8, page, a[0], a[1], 0]
}

pub fn read_capacity16(alloc_len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x10;
    c[10..14].copy_from_slice(&alloc_len.to_be_bytes());
    c
}

pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

pub fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = read16(lba, blocks);
    c[0] = 0x8a;
    c
}

/// REPORT LUNS, select report 0.
pub fn report_luns(alloc_len: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = 0xa0;
    c[6..10].copy_from_slice(&alloc_len.to_be_bytes());
    c
}

/// SYNCHRONIZE CACHE(10) of the whole medium.
pub fn sync_cache10() -> [u8; 10] {
    [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Sense key, ASC and ASCQ from fixed (0x70/0x71) or descriptor (0x72/0x73) sense.
pub fn sense_key_asc_ascq(sense: &[u8]) -> Option<(u8, u8, u8)> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 => Some((sense.get(2)? & 0x0f, *sense.get(12)?, *sense.get(13)?)),
        0x72 | 0x73 => Some((sense.get(1)? & 0x0f, *sense.get(2)?, *sense.get(3)?)),
        _ => None,
    }
}

/// (number of blocks, block length) from READ CAPACITY(16) data.
pub fn parse_read_capacity16(data: &[u8]) -> Option<(u64, u32)> {
    let last_lba = u64::from_be_bytes(data.get(0..8)?.try_into().ok()?);
    let block_len = u32::from_be_bytes(data.get(8..12)?.try_into().ok()?);
    Some((last_lba.checked_add(1)?, block_len))
}

/// The 8-byte LUN entries of REPORT LUNS data.
pub fn parse_report_luns(data: &[u8]) -> Option<Vec<[u8; 8]>> {
    let len = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    let list = data.get(8..)?;
    // The list may be truncated by the allocation length.
    let n = len.min(list.len()) / 8;
    Some(
        (0..n)
            .filter_map(|i| list.get(i * 8..i * 8 + 8)?.try_into().ok())
            .collect(),
    )
}

/// LUN number of a peripheral (method 0) or flat (method 1) 8-byte LUN.
pub fn lun_number(lun: &[u8; 8]) -> u16 {
    match lun[0] >> 6 {
        0 => lun[1] as u16,
        1 => u16::from_be_bytes([lun[0] & 0x3f, lun[1]]),
        _ => u16::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdbs() {
        assert_eq!(read10(0x01020304, 8), [0x28, 0, 1, 2, 3, 4, 0, 0, 8, 0]);
        assert_eq!(write16(1, 2)[0], 0x8a);
        assert_eq!(&write16(1, 2)[2..14], &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(inquiry(true, 0x83, 255), [0x12, 1, 0x83, 0, 255, 0]);
        assert_eq!(read_capacity16(32)[1], 0x10);
    }

    #[test]
    fn sense() {
        let mut fixed = [0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x05;
        fixed[12] = 0x24;
        assert_eq!(sense_key_asc_ascq(&fixed), Some((5, 0x24, 0)));
        assert_eq!(
            sense_key_asc_ascq(&[0x72, 0x06, 0x29, 0x01, 0, 0, 0, 0]),
            Some((6, 0x29, 1))
        );
        assert_eq!(sense_key_asc_ascq(&[0x70, 0]), None);
    }

    #[test]
    fn parsers() {
        let mut rc = [0u8; 32];
        rc[7] = 0xff;
        rc[10] = 2;
        assert_eq!(parse_read_capacity16(&rc), Some((256, 512)));
        let rl = [
            0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
        ];
        let luns = parse_report_luns(&rl).unwrap();
        assert_eq!(luns.len(), 2);
        assert_eq!(lun_number(&luns[1]), 1);
        assert_eq!(lun_number(&[0x41, 0x2c, 0, 0, 0, 0, 0, 0]), 300);
    }
}
