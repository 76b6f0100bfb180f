//! INQUIRY data (SPC-4 6.6) and the VPD pages a block device reports (SPC-4 7.8,
//! SBC-3 6.5): 00h supported pages, 80h unit serial number, 83h device identification,
//! 86h extended INQUIRY, B0h block limits, B1h block device characteristics.
//!
//! The encoders return the full page; callers truncate to the allocation length.

/// Peripheral qualifier + device type byte for a LUN with no device behind it.
pub const PQ_NOT_CONNECTED_TYPE_UNKNOWN: u8 = 0x7F;
/// Device type "unknown or no device type".
pub const TYPE_UNKNOWN: u8 = 0x1F;

/// Version descriptors (SPC-4 table 29) for the standard INQUIRY data.
pub mod version {
    pub const SAM_4: u16 = 0x008B;
    pub const ISCSI: u16 = 0x0960;
    pub const SPC_4: u16 = 0x0463;
    pub const SBC_3: u16 = 0x04C0;
    pub const MMC_6: u16 = 0x0560;
}

/// The identity of a logical unit as it appears in INQUIRY and VPD pages 80h/83h.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InquiryIdentity {
    /// T10 VENDOR IDENTIFICATION (8 chars, space padded on the wire).
    pub vendor: String,
    /// PRODUCT IDENTIFICATION (16 chars).
    pub product: String,
    /// PRODUCT REVISION LEVEL (4 chars).
    pub revision: String,
    /// SCST's `t10_dev_id`: source of the EUI-64 fallback designator.
    pub t10_dev_id: String,
    /// Vendor-specific part of the T10 vendor ID designator.
    pub vend_specific_id: String,
    /// Unit serial number (VPD 80h).
    pub usn: String,
    /// NAA designator body (8 or 16 bytes).
    pub naa_id: Option<Vec<u8>>,
    /// EUI-64 designator body (8, 12 or 16 bytes).
    pub eui64_id: Option<Vec<u8>>,
    /// SCSI name string designator (target device).
    pub scsi_device_name: Option<String>,
    /// Vendor-specific bytes 36..56 of the standard data (SCST's `inq_vend_specific`,
    /// at most 20 bytes).
    pub vend_specific: Vec<u8>,
}

/// Everything in the standard INQUIRY data that is not identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdInquiry {
    /// Peripheral qualifier (3 bits): 0 connected, 1 not connected now, 3 never.
    pub qualifier: u8,
    pub device_type: u8,
    /// RMB.
    pub removable: bool,
    /// NormACA (only when the transport fakes ACA support).
    pub norm_aca: bool,
    /// HiSup: LUNs use the hierarchical addressing model of SAM (every LUN format we
    /// report is one of its forms).
    pub hierarchical_luns: bool,
    /// TPGS (2 bits): 1 implicit ALUA, 2 explicit, 3 both.
    pub tpgs: u8,
    /// 3PC: third-party copy (EXTENDED COPY) supported.
    pub third_party_copy: bool,
    /// PROTECT: T10-PI supported.
    pub protect: bool,
    /// Version descriptors, up to 8.
    pub versions: Vec<u16>,
    /// Vendor-specific bytes 36..56 (at most 20 are used).
    pub vend_specific: Vec<u8>,
}

/// Copy `s` into `dst`, space-padded, truncated to `dst.len()`.
fn put_ascii(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// Standard INQUIRY data: 36 bytes, or 58 + 2 per version descriptor when there are
/// descriptors.
pub fn standard_inquiry(id: &InquiryIdentity, p: &StdInquiry) -> Vec<u8> {
    let nver = p.versions.len().min(8);
    let len = if nver == 0 && p.vend_specific.is_empty() {
        36
    } else {
        58 + 2 * nver
    };
    let mut b = vec![0u8; len];
    b[0] = (p.qualifier << 5) | (p.device_type & 0x1F);
    if p.removable {
        b[1] = 0x80;
    }
    b[2] = 0x06; // SPC-4
    let hisup = if p.hierarchical_luns { 0x10 } else { 0 };
    b[3] = 0x02 | hisup | if p.norm_aca { 0x20 } else { 0 }; // response data format 2
    b[4] = (len - 5) as u8;
    b[5] = ((p.tpgs & 0x03) << 4)
        | if p.third_party_copy { 0x08 } else { 0 }
        | if p.protect { 0x01 } else { 0 };
    b[6] = 0x10; // MultiP
    b[7] = 0x02; // CmdQue
    put_ascii(&mut b[8..16], &id.vendor);
    put_ascii(&mut b[16..32], &id.product);
    put_ascii(&mut b[32..36], &id.revision);
    if len > 36 {
        let n = p.vend_specific.len().min(20);
        b[36..36 + n].copy_from_slice(&p.vend_specific[..n]);
    }
    for (i, v) in p.versions.iter().take(nver).enumerate() {
        b[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    b
}

/// A VPD page: 4-byte header (peripheral byte, page code, page length) + body.
fn vpd_page(periph: u8, page: u8, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.push(periph);
    b.push(page);
    b.extend_from_slice(&(body.len().min(u16::MAX as usize) as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// VPD 00h: the list of supported pages (ascending, as the caller gives them).
pub fn vpd_supported_pages(periph: u8, pages: &[u8]) -> Vec<u8> {
    vpd_page(periph, 0x00, pages)
}

/// VPD 80h: unit serial number.
pub fn vpd_unit_serial(periph: u8, usn: &str) -> Vec<u8> {
    vpd_page(periph, 0x80, usn.as_bytes())
}

/// Designator code sets, associations and types (SPC-4 7.8.6).
mod desig {
    pub const CODE_BINARY: u8 = 1;
    pub const CODE_ASCII: u8 = 2;
    pub const CODE_UTF8: u8 = 3;
    pub const ASSOC_LU: u8 = 0;
    pub const ASSOC_PORT: u8 = 1;
    pub const ASSOC_TARGET: u8 = 2;
    pub const TYPE_T10: u8 = 1;
    pub const TYPE_EUI64: u8 = 2;
    pub const TYPE_NAA: u8 = 3;
    pub const TYPE_REL_TGT_PORT: u8 = 4;
    pub const TYPE_TPG: u8 = 5;
    pub const TYPE_SCSI_NAME: u8 = 8;
}

fn push_designator(out: &mut Vec<u8>, code_set: u8, assoc: u8, ty: u8, body: &[u8]) {
    let len = body.len().min(255);
    out.extend_from_slice(&[code_set, (assoc << 4) | ty, 0, len as u8]);
    out.extend_from_slice(&body[..len]);
}

/// The nexus-dependent inputs of VPD 83h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortIds {
    /// Relative target port identifier of the port the command came in on.
    pub rel_tgt_id: u16,
    /// Target port group of that port, when ALUA is configured.
    pub tpg_id: Option<u16>,
}

/// VPD 83h: device identification. Designators in SCST's order: SCSI name string, T10
/// vendor ID, relative target port, target port group, EUI-64 (explicit, or the first
/// 8 bytes of `t10_dev_id` when neither EUI-64 nor NAA is configured), NAA.
pub fn vpd_device_id(periph: u8, id: &InquiryIdentity, ports: PortIds) -> Vec<u8> {
    use desig::*;
    let mut body = Vec::with_capacity(128);
    if let Some(name) = id.scsi_device_name.as_deref().filter(|n| !n.is_empty()) {
        // NUL-terminated and padded to a multiple of 4 (SPC-4 7.8.6.11).
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        push_designator(&mut body, CODE_UTF8, ASSOC_TARGET, TYPE_SCSI_NAME, &n);
    }
    let mut t10 = [b' '; 8].to_vec();
    put_ascii(&mut t10, &id.vendor);
    t10.extend_from_slice(id.vend_specific_id.as_bytes());
    push_designator(&mut body, CODE_ASCII, ASSOC_LU, TYPE_T10, &t10);
    push_designator(
        &mut body,
        CODE_BINARY,
        ASSOC_PORT,
        TYPE_REL_TGT_PORT,
        &[0, 0, (ports.rel_tgt_id >> 8) as u8, ports.rel_tgt_id as u8],
    );
    if let Some(tpg) = ports.tpg_id {
        push_designator(
            &mut body,
            CODE_BINARY,
            ASSOC_PORT,
            TYPE_TPG,
            &[0, 0, (tpg >> 8) as u8, tpg as u8],
        );
    }
    match (&id.eui64_id, &id.naa_id) {
        (Some(eui), _) => push_designator(&mut body, CODE_BINARY, ASSOC_LU, TYPE_EUI64, eui),
        (None, None) => {
            let mut eui = [0u8; 8];
            let src = id.t10_dev_id.as_bytes();
            let n = src.len().min(8);
            eui[..n].copy_from_slice(&src[..n]);
            push_designator(&mut body, CODE_BINARY, ASSOC_LU, TYPE_EUI64, &eui);
        }
        (None, Some(_)) => {}
    }
    if let Some(naa) = &id.naa_id {
        push_designator(&mut body, CODE_BINARY, ASSOC_LU, TYPE_NAA, naa);
    }
    vpd_page(periph, 0x83, &body)
}

/// VPD 86h: extended INQUIRY data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtendedInquiry {
    /// SPT (3 bits) and GRD_CHK/APP_CHK/REF_CHK for T10-PI devices.
    pub spt: u8,
    pub grd_chk: bool,
    pub app_chk: bool,
    pub ref_chk: bool,
    /// V_SUP: the device verifies (write-back cache that VERIFY reads back through).
    pub v_sup: bool,
}

pub fn vpd_extended_inquiry(periph: u8, e: &ExtendedInquiry) -> Vec<u8> {
    let mut body = [0u8; 0x3C];
    body[0] = ((e.spt & 7) << 3)
        | if e.grd_chk { 4 } else { 0 }
        | if e.app_chk { 2 } else { 0 }
        | if e.ref_chk { 1 } else { 0 };
    body[1] = 0x07; // HEADSUP, ORDSUP, SIMPSUP
    body[2] = if e.v_sup { 0x01 } else { 0 };
    body[3] = 0x01; // LUICLR
    vpd_page(periph, 0x86, &body)
}

/// VPD B0h: block limits. Lengths are in logical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockLimits {
    /// Write same non-zero: WRITE SAME with 0 blocks is not "the whole medium".
    pub wsnz: bool,
    pub max_compare_and_write: u8,
    pub opt_xfer_granularity: u16,
    pub max_xfer_len: u32,
    pub opt_xfer_len: u32,
    pub max_unmap_lba_count: u32,
    pub max_unmap_desc_count: u32,
    pub opt_unmap_granularity: u32,
    /// UNMAP GRANULARITY ALIGNMENT, with UGAVALID set when present.
    pub unmap_granularity_alignment: Option<u32>,
    pub max_write_same_len: u64,
    /// SBC-4 atomic writes (WRITE ATOMIC(16)); all zero when unsupported.
    pub atomic: AtomicLimits,
}

/// The atomic write fields of VPD B0h (SBC-4 6.6.4), in logical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AtomicLimits {
    /// MAXIMUM ATOMIC TRANSFER LENGTH (0: WRITE ATOMIC not supported).
    pub max_transfer_len: u32,
    /// ATOMIC ALIGNMENT: the LBA of an atomic write is a multiple of this (0: any).
    pub alignment: u32,
    /// ATOMIC TRANSFER LENGTH GRANULARITY: the length is a multiple of this (0: any).
    pub granularity: u32,
    /// MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY.
    pub max_transfer_len_with_boundary: u32,
    /// MAXIMUM ATOMIC BOUNDARY SIZE.
    pub max_boundary_size: u32,
}

pub fn vpd_block_limits(periph: u8, l: &BlockLimits) -> Vec<u8> {
    let mut b = [0u8; 0x3C];
    // Offsets below are page offsets minus the 4-byte header.
    b[0] = if l.wsnz { 1 } else { 0 };
    b[1] = l.max_compare_and_write;
    b[2..4].copy_from_slice(&l.opt_xfer_granularity.to_be_bytes());
    b[4..8].copy_from_slice(&l.max_xfer_len.to_be_bytes());
    b[8..12].copy_from_slice(&l.opt_xfer_len.to_be_bytes());
    b[16..20].copy_from_slice(&l.max_unmap_lba_count.to_be_bytes());
    b[20..24].copy_from_slice(&l.max_unmap_desc_count.to_be_bytes());
    b[24..28].copy_from_slice(&l.opt_unmap_granularity.to_be_bytes());
    if let Some(a) = l.unmap_granularity_alignment {
        b[28..32].copy_from_slice(&((a & 0x7FFF_FFFF) | 0x8000_0000).to_be_bytes());
    }
    b[32..40].copy_from_slice(&l.max_write_same_len.to_be_bytes());
    let a = &l.atomic;
    b[40..44].copy_from_slice(&a.max_transfer_len.to_be_bytes());
    b[44..48].copy_from_slice(&a.alignment.to_be_bytes());
    b[48..52].copy_from_slice(&a.granularity.to_be_bytes());
    b[52..56].copy_from_slice(&a.max_transfer_len_with_boundary.to_be_bytes());
    b[56..60].copy_from_slice(&a.max_boundary_size.to_be_bytes());
    vpd_page(periph, 0xB0, &b)
}

/// Rotation rate of a non-rotating medium (SSD).
pub const NON_ROTATING: u16 = 1;

/// VPD B1h: block device characteristics (rotation rate only).
pub fn vpd_block_characteristics(periph: u8, rotation_rate: u16) -> Vec<u8> {
    let mut b = [0u8; 0x3C];
    b[0..2].copy_from_slice(&rotation_rate.to_be_bytes());
    vpd_page(periph, 0xB1, &b)
}

/// READ CAPACITY(10) data: the last LBA (0xFFFFFFFF when it does not fit: use
/// READ CAPACITY(16)) and the block length.
pub fn read_capacity_10(nblocks: u64, block_size: u32) -> [u8; 8] {
    let last = nblocks.saturating_sub(1).min(u32::MAX as u64) as u32;
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&last.to_be_bytes());
    b[4..].copy_from_slice(&block_size.to_be_bytes());
    b
}

/// The fields of READ CAPACITY(16) data beyond size and block length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity16 {
    /// P_TYPE (3 bits) + PROT_EN, already combined as in byte 12 (e.g. type 1 -> 0x01).
    pub prot_byte: u8,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (4 bits).
    pub lb_per_pb_exp: u8,
    /// Logical block provisioning management enabled (thin provisioning).
    pub lbpme: bool,
    /// Unmapped blocks read back as zeros.
    pub lbprz: bool,
}

/// READ CAPACITY(16) parameter data (32 bytes).
pub fn read_capacity_16(nblocks: u64, block_size: u32, c: &Capacity16) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&nblocks.saturating_sub(1).to_be_bytes());
    b[8..12].copy_from_slice(&block_size.to_be_bytes());
    b[12] = c.prot_byte & 0x0F;
    b[13] = c.lb_per_pb_exp & 0x0F;
    b[14] = if c.lbpme { 0x80 } else { 0 } | if c.lbprz { 0x40 } else { 0 };
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> InquiryIdentity {
        InquiryIdentity {
            vendor: "SCST_FIO".into(),
            product: "disk01".into(),
            revision: "3110".into(),
            t10_dev_id: "1a2b3c4d-disk01".into(),
            vend_specific_id: "1a2b3c4d-disk01".into(),
            usn: "1a2b3c4d".into(),
            ..Default::default()
        }
    }

    #[test]
    fn standard_data() {
        let p = StdInquiry {
            removable: true,
            hierarchical_luns: true,
            tpgs: 1,
            versions: vec![
                version::SAM_4,
                version::ISCSI,
                version::SPC_4,
                version::SBC_3,
            ],
            ..Default::default()
        };
        let b = standard_inquiry(&ident(), &p);
        assert_eq!(b.len(), 66);
        assert_eq!(b[4] as usize, b.len() - 5);
        assert_eq!((b[0], b[1], b[2], b[3]), (0, 0x80, 6, 0x12));
        assert_eq!(b[5], 0x10);
        assert_eq!((b[6], b[7]), (0x10, 0x02));
        assert_eq!(&b[8..16], b"SCST_FIO");
        assert_eq!(&b[16..32], b"disk01          ");
        assert_eq!(&b[32..36], b"3110");
        assert_eq!(&b[58..62], &[0x00, 0x8B, 0x09, 0x60]);
        let dummy = StdInquiry {
            qualifier: 1,
            device_type: TYPE_UNKNOWN,
            ..Default::default()
        };
        let b = standard_inquiry(&ident(), &dummy);
        assert_eq!((b.len(), b[0]), (36, 0x3F));
    }

    #[test]
    fn device_id_designators() {
        let b = vpd_device_id(
            0,
            &ident(),
            PortIds {
                rel_tgt_id: 2,
                tpg_id: Some(7),
            },
        );
        assert_eq!(b[1], 0x83);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]) as usize, b.len() - 4);
        // T10 vendor ID first.
        assert_eq!(&b[4..8], &[0x02, 0x01, 0, 8 + 15]);
        assert_eq!(&b[8..16], b"SCST_FIO");
        assert_eq!(&b[16..31], b"1a2b3c4d-disk01");
        // Relative target port.
        assert_eq!(&b[31..39], &[0x01, 0x14, 0, 4, 0, 0, 0, 2]);
        // Target port group.
        assert_eq!(&b[39..47], &[0x01, 0x15, 0, 4, 0, 0, 0, 7]);
        // EUI-64 fallback from t10_dev_id.
        assert_eq!(&b[47..51], &[0x01, 0x02, 0, 8]);
        assert_eq!(&b[51..59], b"1a2b3c4d");
        assert_eq!(b.len(), 59);

        let mut id = ident();
        id.naa_id = Some(vec![0x60, 1, 2, 3, 4, 5, 6, 7]);
        id.scsi_device_name = Some("iqn.x".into());
        let b = vpd_device_id(0, &id, PortIds::default());
        // SCSI name string first, padded to 8 with NULs.
        assert_eq!(&b[4..8], &[0x03, 0x28, 0, 8]);
        assert_eq!(&b[8..16], b"iqn.x\0\0\0");
        // NAA last, no EUI-64 fallback when NAA is set.
        let tail = &b[b.len() - 12..];
        assert_eq!(&tail[..4], &[0x01, 0x03, 0, 8]);
        assert_eq!(b.len(), 4 + 12 + 27 + 8 + 12);
    }

    #[test]
    fn small_vpd_pages() {
        assert_eq!(
            vpd_supported_pages(0, &[0, 0x80]),
            vec![0, 0, 0, 2, 0, 0x80]
        );
        assert_eq!(vpd_unit_serial(0, "ab"), vec![0, 0x80, 0, 2, b'a', b'b']);
        let e = vpd_extended_inquiry(
            0,
            &ExtendedInquiry {
                v_sup: true,
                ..Default::default()
            },
        );
        assert_eq!((e.len(), e[3], e[5], e[6], e[7]), (64, 0x3C, 7, 1, 1));
        let l = vpd_block_limits(
            0,
            &BlockLimits {
                wsnz: true,
                max_compare_and_write: 255,
                opt_xfer_granularity: 8,
                max_xfer_len: 16384,
                opt_xfer_len: 1024,
                max_write_same_len: 0x80000,
                atomic: AtomicLimits {
                    max_transfer_len: 16384,
                    alignment: 8,
                    granularity: 8,
                    max_transfer_len_with_boundary: 16384,
                    max_boundary_size: 16384,
                },
                ..Default::default()
            },
        );
        assert_eq!((l[1], l[3], l[4], l[5]), (0xB0, 0x3C, 1, 255));
        assert_eq!(&l[6..8], &[0, 8]);
        assert_eq!(&l[8..12], &16384u32.to_be_bytes());
        assert_eq!(&l[12..16], &1024u32.to_be_bytes());
        assert_eq!(&l[36..44], &0x80000u64.to_be_bytes());
        assert_eq!(&l[44..48], &16384u32.to_be_bytes());
        assert_eq!(&l[48..52], &8u32.to_be_bytes());
        assert_eq!(&l[52..56], &8u32.to_be_bytes());
        assert_eq!(&l[56..64], &[0, 0, 0x40, 0, 0, 0, 0x40, 0]);
        let r = vpd_block_characteristics(0, 15000);
        assert_eq!(&r[4..6], &15000u16.to_be_bytes());
    }

    #[test]
    fn capacity() {
        assert_eq!(read_capacity_10(2048, 512), [0, 0, 0x07, 0xFF, 0, 0, 2, 0]);
        assert_eq!(&read_capacity_10(1 << 33, 512)[..4], &[0xFF; 4]);
        let c = Capacity16 {
            prot_byte: 0x01,
            lb_per_pb_exp: 3,
            lbpme: true,
            lbprz: false,
        };
        let b = read_capacity_16(1 << 33, 4096, &c);
        assert_eq!(
            u64::from_be_bytes(b[..8].try_into().unwrap()),
            (1 << 33) - 1
        );
        assert_eq!(&b[8..12], &4096u32.to_be_bytes());
        assert_eq!((b[12], b[13], b[14]), (1, 3, 0x80));
    }
}
