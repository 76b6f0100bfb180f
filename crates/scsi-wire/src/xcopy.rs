//! EXTENDED COPY (LID1) parameter lists and RECEIVE COPY RESULTS data (SPC-4 6.4,
//! 6.27; the LID1 forms are SPC-3 6.3 / 6.17): decoding of the list header, of the
//! identification descriptor target descriptor (0xE4) and of the block device to block
//! device segment descriptor (0x02), and encoding of the copy status, operating
//! parameters and failed segment details a copy manager returns.
//!
//! Decoders take the bytes of one descriptor; lengths are checked by the caller against
//! the header, so a short slice is simply `None`.

use crate::asc;
use crate::sense::{key, Sense};

/// LID1 parameter list header length.
pub const HEADER_LEN: usize = 16;
/// Every target (CSCD) descriptor type 0xE0..0xE9 is 32 bytes long.
pub const TARGET_DESC_LEN: usize = 32;
/// Block device to block device segment descriptor length, and the value of its
/// DESCRIPTOR LENGTH field (which excludes the first 4 bytes).
pub const B2B_SEG_DESC_LEN: usize = 28;
pub const B2B_DESCRIPTOR_LENGTH: u16 = 0x18;

/// Descriptor type codes.
pub mod desc_type {
    /// Segment descriptor: block device to block device.
    pub const BLOCK_TO_BLOCK: u8 = 0x02;
    /// Target descriptor: identification descriptor (a VPD 83h designator).
    pub const IDENTIFICATION: u8 = 0xE4;
}

/// RECEIVE COPY RESULTS service actions.
pub mod rcr_sa {
    pub const COPY_STATUS: u8 = 0x00;
    pub const RECEIVE_DATA: u8 = 0x01;
    pub const OPERATING_PARAMETERS: u8 = 0x03;
    pub const FAILED_SEGMENT_DETAILS: u8 = 0x04;
}

/// ILLEGAL REQUEST sense of EXTENDED COPY parameter list checks.
pub const TOO_MANY_TARGET_DESCRIPTORS: Sense =
    Sense::named(key::ILLEGAL_REQUEST, asc::TOO_MANY_TARGET_DESCRIPTORS);
pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE: Sense = Sense::named(
    key::ILLEGAL_REQUEST,
    asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
);
pub const TOO_MANY_SEGMENT_DESCRIPTORS: Sense =
    Sense::named(key::ILLEGAL_REQUEST, asc::TOO_MANY_SEGMENT_DESCRIPTORS);
pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE: Sense = Sense::named(
    key::ILLEGAL_REQUEST,
    asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
);
pub const INLINE_DATA_LENGTH_EXCEEDED: Sense =
    Sense::named(key::ILLEGAL_REQUEST, asc::INLINE_DATA_LENGTH_EXCEEDED);
/// A list identifier that is still in use.
pub const OPERATION_IN_PROGRESS: Sense =
    Sense::named(key::ILLEGAL_REQUEST, asc::OPERATION_IN_PROGRESS);

/// LIST ID USAGE (SPC-4 table 110, LID1 byte 1 bits 4-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListIdUsage {
    /// 00b: the copy manager holds data and status for RECEIVE COPY RESULTS.
    Hold,
    /// 01b: reserved.
    Reserved,
    /// 10b: status is kept for RECEIVE COPY RESULTS, no data is held.
    Discard,
    /// 11b: the list identifier is not unique and no results are kept (must be 0).
    NoList,
}

/// The LID1 parameter list header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListHeader {
    pub list_id: u8,
    /// STR: sequential striped.
    pub str_bit: bool,
    pub list_id_usage: ListIdUsage,
    pub priority: u8,
    pub target_desc_len: u16,
    pub segment_desc_len: u32,
    pub inline_data_len: u32,
}

impl ListHeader {
    pub fn decode(b: &[u8]) -> Option<ListHeader> {
        let h = b.get(..HEADER_LEN)?;
        let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(ListHeader {
            list_id: h[0],
            str_bit: h[1] & 0x20 != 0,
            list_id_usage: match (h[1] >> 3) & 0x03 {
                0 => ListIdUsage::Hold,
                1 => ListIdUsage::Reserved,
                2 => ListIdUsage::Discard,
                _ => ListIdUsage::NoList,
            },
            priority: h[1] & 0x07,
            target_desc_len: u16::from_be_bytes([h[2], h[3]]),
            segment_desc_len: be32(8),
            inline_data_len: be32(12),
        })
    }
}

/// An identification descriptor target descriptor (0xE4): which logical unit, named by
/// a designation descriptor as in VPD page 83h, plus the block device parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdTargetDesc<'a> {
    /// LU ID TYPE (0: LUN, 1: proxy token, others reserved).
    pub lu_id_type: u8,
    /// NUL: the descriptor names no device (a placeholder).
    pub nul: bool,
    pub peripheral_type: u8,
    pub relative_initiator_port: u16,
    pub code_set: u8,
    /// ASSOCIATION (0 = the logical unit).
    pub association: u8,
    pub designator_type: u8,
    pub designator: &'a [u8],
    /// Block device type specific: PAD and DISK BLOCK LENGTH.
    pub pad: bool,
    pub disk_block_len: u32,
}

impl<'a> IdTargetDesc<'a> {
    /// Decode 32 bytes; `None` when short, or when the designator does not fit in the
    /// 20 bytes the descriptor has for it.
    pub fn decode(b: &'a [u8]) -> Option<IdTargetDesc<'a>> {
        let d = b.get(..TARGET_DESC_LEN)?;
        let len = d[7] as usize;
        Some(IdTargetDesc {
            lu_id_type: d[1] >> 6,
            nul: d[1] & 0x20 != 0,
            peripheral_type: d[1] & 0x1F,
            relative_initiator_port: u16::from_be_bytes([d[2], d[3]]),
            code_set: d[4] & 0x0F,
            association: (d[5] >> 4) & 0x03,
            designator_type: d[5] & 0x0F,
            designator: d.get(8..8 + len).filter(|_| len <= 20)?,
            pad: d[28] & 0x04 != 0,
            disk_block_len: u32::from_be_bytes([0, d[29], d[30], d[31]]),
        })
    }
}

/// Offsets of segment descriptor fields, for segment pointers in COPY ABORTED sense.
pub mod seg_field {
    pub const DESCRIPTOR_LENGTH: u16 = 2;
    pub const SOURCE_INDEX: u16 = 4;
    pub const DESTINATION_INDEX: u16 = 6;
    pub const BLOCKS: u16 = 10;
}

/// A block device to block device segment descriptor (0x02).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct B2bSegment {
    /// DC: the block count is in destination blocks (else source blocks).
    pub dc: bool,
    pub cat: bool,
    pub descriptor_length: u16,
    pub source_index: u16,
    pub destination_index: u16,
    pub blocks: u16,
    pub source_lba: u64,
    pub destination_lba: u64,
}

impl B2bSegment {
    pub fn decode(b: &[u8]) -> Option<B2bSegment> {
        let d = b.get(..B2B_SEG_DESC_LEN)?;
        let be16 = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
        let be64 = |i: usize| u64::from_be_bytes(d[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(B2bSegment {
            dc: d[1] & 0x02 != 0,
            cat: d[1] & 0x01 != 0,
            descriptor_length: be16(2),
            source_index: be16(4),
            destination_index: be16(6),
            blocks: be16(10),
            source_lba: be64(12),
            destination_lba: be64(20),
        })
    }
}

/// The RECEIVE COPY RESULTS CDB (LID1 form, 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcrCdb {
    pub service_action: u8,
    pub list_id: u8,
    pub alloc_len: u32,
}

impl RcrCdb {
    pub fn decode(cdb: &[u8]) -> Result<RcrCdb, Sense> {
        let c = cdb.get(..14).ok_or(Sense::invalid_field_in_cdb(0, None))?;
        Ok(RcrCdb {
            service_action: c[1] & 0x1F,
            list_id: c[2],
            alloc_len: u32::from_be_bytes([c[10], c[11], c[12], c[13]]),
        })
    }
}

/// COPY MANAGER STATUS of COPY STATUS data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    InProgress = 0,
    Good = 1,
    Failed = 2,
}

/// RECEIVE COPY RESULTS / COPY STATUS parameter data (SPC-3 6.17.2), with the
/// transfer count in KiB (TRANSFER COUNT UNITS 1) as SCST reports it.
pub fn copy_status(state: CopyState, segments_processed: u16, bytes_written: u64) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b[0..4].copy_from_slice(&8u32.to_be_bytes());
    b[4] = state as u8; // HDD 0: no held data
    b[5..7].copy_from_slice(&segments_processed.to_be_bytes());
    b[7] = 1; // KiB
    let kib = u32::try_from(bytes_written >> 10).unwrap_or(u32::MAX);
    b[8..12].copy_from_slice(&kib.to_be_bytes());
    b
}

/// The copy manager's limits, for OPERATING PARAMETERS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatingParams {
    pub supports_no_list_id: bool,
    pub max_target_desc_count: u16,
    pub max_segment_desc_count: u16,
    pub max_desc_list_len: u32,
    pub max_segment_len: u32,
    pub max_inline_data_len: u32,
    pub held_data_limit: u32,
    pub max_stream_transfer_size: u32,
    pub total_concurrent_copies: u16,
    pub max_concurrent_copies: u8,
    /// log2 of the data segment granularity in bytes.
    pub data_segment_granularity_log2: u8,
    pub inline_data_granularity_log2: u8,
    pub held_data_granularity_log2: u8,
    pub implemented_descriptors: Vec<u8>,
}

/// RECEIVE COPY RESULTS / OPERATING PARAMETERS parameter data (SPC-3 6.17.4).
pub fn operating_parameters(p: &OperatingParams) -> Vec<u8> {
    let n = p.implemented_descriptors.len().min(255);
    let mut b = vec![0u8; 44 + n];
    let avail = (b.len() - 4) as u32;
    b[0..4].copy_from_slice(&avail.to_be_bytes());
    b[4] = u8::from(p.supports_no_list_id);
    b[8..10].copy_from_slice(&p.max_target_desc_count.to_be_bytes());
    b[10..12].copy_from_slice(&p.max_segment_desc_count.to_be_bytes());
    b[12..16].copy_from_slice(&p.max_desc_list_len.to_be_bytes());
    b[16..20].copy_from_slice(&p.max_segment_len.to_be_bytes());
    b[20..24].copy_from_slice(&p.max_inline_data_len.to_be_bytes());
    b[24..28].copy_from_slice(&p.held_data_limit.to_be_bytes());
    b[28..32].copy_from_slice(&p.max_stream_transfer_size.to_be_bytes());
    b[34..36].copy_from_slice(&p.total_concurrent_copies.to_be_bytes());
    b[36] = p.max_concurrent_copies;
    b[37] = p.data_segment_granularity_log2;
    b[38] = p.inline_data_granularity_log2;
    b[39] = p.held_data_granularity_log2;
    b[43] = n as u8;
    b[44..].copy_from_slice(&p.implemented_descriptors[..n]);
    b
}

/// RECEIVE COPY RESULTS / FAILED SEGMENT DETAILS parameter data (SPC-3 6.17.5): the
/// EXTENDED COPY's status and the sense data it returned.
pub fn failed_segment_details(status: u8, sense: &[u8]) -> Vec<u8> {
    let sense = &sense[..sense.len().min(u16::MAX as usize)];
    let mut b = vec![0u8; 60];
    let avail = u32::try_from(56 + sense.len()).unwrap_or(u32::MAX);
    b[0..4].copy_from_slice(&avail.to_be_bytes());
    b[56] = status;
    b[58..60].copy_from_slice(&(sense.len() as u16).to_be_bytes());
    b.extend_from_slice(sense);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_descriptors_decode() {
        let mut h = [0u8; 16];
        h[0] = 7;
        h[1] = 0x20 | (2 << 3) | 5;
        h[3] = 32;
        h[11] = 28;
        let d = ListHeader::decode(&h).unwrap();
        assert_eq!(
            (d.list_id, d.str_bit, d.list_id_usage, d.priority),
            (7, true, ListIdUsage::Discard, 5)
        );
        assert_eq!(
            (d.target_desc_len, d.segment_desc_len, d.inline_data_len),
            (32, 28, 0)
        );
        assert_eq!(ListHeader::decode(&h[..15]), None);

        let mut t = [0u8; 32];
        t[0] = 0xE4;
        t[1] = 0x20;
        t[4] = 1;
        t[5] = 3;
        t[7] = 8;
        t[8..16].copy_from_slice(&[0x30, 1, 2, 3, 4, 5, 6, 7]);
        t[30] = 2;
        let d = IdTargetDesc::decode(&t).unwrap();
        assert!(d.nul);
        assert_eq!((d.code_set, d.association, d.designator_type), (1, 0, 3));
        assert_eq!(d.designator.len(), 8);
        assert_eq!(d.disk_block_len, 512);
        t[7] = 21; // does not fit
        assert_eq!(IdTargetDesc::decode(&t), None);

        let mut s = [0u8; 28];
        s[0] = 2;
        s[1] = 0x02;
        s[3] = 0x18;
        s[7] = 1;
        s[11] = 9;
        s[19] = 4;
        s[27] = 5;
        let d = B2bSegment::decode(&s).unwrap();
        assert!(d.dc);
        assert_eq!((d.destination_index, d.blocks), (1, 9));
        assert_eq!((d.source_lba, d.destination_lba), (4, 5));
        assert_eq!(B2bSegment::decode(&s[..27]), None);
    }

    #[test]
    fn results_encode() {
        let p = OperatingParams {
            supports_no_list_id: true,
            max_target_desc_count: 5,
            max_segment_desc_count: 3,
            max_desc_list_len: 244,
            max_segment_len: 1 << 28,
            max_inline_data_len: 0,
            held_data_limit: 0,
            max_stream_transfer_size: 0,
            total_concurrent_copies: 1,
            max_concurrent_copies: 1,
            data_segment_granularity_log2: 9,
            inline_data_granularity_log2: 0,
            held_data_granularity_log2: 0,
            implemented_descriptors: vec![0x02, 0xE4],
        };
        let b = operating_parameters(&p);
        assert_eq!(b.len(), 46);
        assert_eq!(u32::from_be_bytes(b[0..4].try_into().unwrap()), 42);
        assert_eq!(
            (b[4], b[9], b[11], b[43], b[44], b[45]),
            (1, 5, 3, 2, 2, 0xE4)
        );

        let s = copy_status(CopyState::Good, 1, 1 << 20);
        assert_eq!(s, [0, 0, 0, 8, 1, 0, 1, 1, 0, 0, 4, 0]);

        let f = failed_segment_details(2, &[0x70; 18]);
        assert_eq!(f.len(), 78);
        assert_eq!((f[3], f[56], f[59], f[60]), (74, 2, 18, 0x70));
    }

    #[test]
    fn copy_aborted_sense_encodings() {
        let mut s = Sense::copy_aborted(asc::NO_ADDITIONAL_SENSE_INFORMATION, 3);
        if let Some(c) = s.copy.as_mut() {
            c.segment_field = Some(6);
            c.forwarded = Some(crate::sense::ForwardedSense {
                destination: true,
                status: 2,
                key: 5,
                asc: 0x21,
                ascq: 0,
            });
        }
        let f = s.encode(false);
        assert_eq!((f[2], f[12], f[13]), (key::COPY_ABORTED, 0, 0));
        // Segment 3; destination sense at byte 18 (status) onwards; segment pointer.
        assert_eq!(&f[8..12], &[0, 18, 0, 3]);
        assert_eq!(&f[15..18], &[0xA0, 0, 6]);
        assert_eq!((f[18], f[19], f[21], f[31]), (2, 0x70, 5, 0x21));
        assert_eq!(f[7] as usize, f.len() - 8);

        let d = s.encode(true);
        assert_eq!((d[0], d[1]), (0x72, key::COPY_ABORTED));
        assert_eq!(d[7] as usize, d.len() - 8);
        // Command-specific information, sense-key specific, forwarded sense.
        assert_eq!(&d[8..10], &[0x01, 0x0A]);
        assert_eq!(&d[12..16], &[0, 0, 0, 3]);
        assert_eq!(&d[20..28], &[0x02, 0x06, 0, 0, 0xA0, 0, 6, 0]);
        assert_eq!((d[28], d[30], d[31], d[32]), (0x0C, 2, 2, 0x72));
    }
}
