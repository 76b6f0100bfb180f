//! Mode parameters (SPC-4 7.5, SBC-3 6.4): MODE SENSE headers and block descriptors,
//! the disk mode pages SCST reports, and MODE SELECT parameter list parsing.
//!
//! Pages with state (caching, control) are plain structs that encode to and decode from
//! page bytes; the same struct encodes the changeable mask (a set field = changeable).
//! Pages without state are functions of the page control value.

use crate::cdb::PageControl;
use crate::sense::Sense;

pub mod page {
    pub const RW_ERROR_RECOVERY: u8 = 0x01;
    pub const DISCONNECT_RECONNECT: u8 = 0x02;
    pub const FORMAT_DEVICE: u8 = 0x03;
    pub const RIGID_GEOMETRY: u8 = 0x04;
    pub const CACHING: u8 = 0x08;
    pub const CONTROL: u8 = 0x0A;
    pub const INFORMATIONAL_EXCEPTIONS: u8 = 0x1C;
    pub const ALL: u8 = 0x3F;
}

/// Device-specific parameter bits of the mode parameter header (SBC-3 6.4.1).
pub const DSP_WP: u8 = 0x80;
pub const DSP_DPOFUA: u8 = 0x10;

/// Sectors per track and heads reported in the format and geometry pages.
pub const SECTORS_PER_TRACK: u32 = 56;
pub const HEADS: u32 = 255;

/// Caching mode page (08h), the fields we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CachingPage {
    /// Write cache enable.
    pub wce: bool,
    /// Read cache disable.
    pub rcd: bool,
}

impl CachingPage {
    pub const LEN: usize = 20;

    /// Encode for `pc`; `self` holds the values (or the mask for Changeable).
    pub fn encode(&self, pc: PageControl) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = page::CACHING;
        b[1] = (Self::LEN - 2) as u8;
        b[2] = if self.wce { 0x04 } else { 0 } | if self.rcd { 0x01 } else { 0 };
        if pc != PageControl::Changeable {
            // Fixed values SCST reports: DISC, prefetch limits, FSW, 20 cache segments.
            b[2] |= 0x10;
            b[4..6].copy_from_slice(&[0xFF, 0xFF]);
            b[8..12].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
            b[12] = 0x80;
            b[13] = 20;
        }
        b
    }

    pub fn decode(b: &[u8]) -> CachingPage {
        let b2 = b.get(2).copied().unwrap_or(0);
        CachingPage {
            wce: b2 & 0x04 != 0,
            rcd: b2 & 0x01 != 0,
        }
    }
}

/// Control mode page (0Ah).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ControlPage {
    /// Task set type (3 bits): 0 shared, 1 per I_T nexus.
    pub tst: u8,
    pub tmf_only: bool,
    pub dpicz: bool,
    /// Descriptor format sense data.
    pub d_sense: bool,
    /// Queue algorithm modifier (4 bits): 0 restricted, 1 unrestricted reordering.
    pub qam: u8,
    /// Queue error management (2 bits).
    pub qerr: u8,
    /// Software write protect.
    pub swp: bool,
    /// Application tag owner.
    pub ato: bool,
    /// Task aborted status.
    pub tas: bool,
    pub busy_timeout: u16,
}

impl ControlPage {
    pub const LEN: usize = 12;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = page::CONTROL;
        b[1] = (Self::LEN - 2) as u8;
        b[2] = ((self.tst & 7) << 5)
            | if self.tmf_only { 0x10 } else { 0 }
            | if self.dpicz { 0x08 } else { 0 }
            | if self.d_sense { 0x04 } else { 0 };
        b[3] = ((self.qam & 0x0F) << 4) | ((self.qerr & 3) << 1);
        b[4] = if self.swp { 0x08 } else { 0 };
        b[5] = if self.ato { 0x80 } else { 0 } | if self.tas { 0x40 } else { 0 };
        b[8..10].copy_from_slice(&self.busy_timeout.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> ControlPage {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        ControlPage {
            tst: at(2) >> 5,
            tmf_only: at(2) & 0x10 != 0,
            dpicz: at(2) & 0x08 != 0,
            d_sense: at(2) & 0x04 != 0,
            qam: at(3) >> 4,
            qerr: (at(3) >> 1) & 3,
            swp: at(4) & 0x08 != 0,
            ato: at(5) & 0x80 != 0,
            tas: at(5) & 0x40 != 0,
            busy_timeout: u16::from_be_bytes([at(8), at(9)]),
        }
    }
}

/// A page with no changeable fields reports all zeros for PC=changeable.
fn fixed<const N: usize>(pc: PageControl, values: [u8; N]) -> [u8; N] {
    if pc == PageControl::Changeable {
        let mut b = [0u8; N];
        b[0] = values[0];
        b[1] = values[1];
        b
    } else {
        values
    }
}

/// Read-write error recovery page (01h): AWRE, ARRE and SCST's retry counts.
pub fn rw_error_recovery_page(pc: PageControl) -> [u8; 12] {
    fixed(pc, [0x01, 0x0A, 0xC0, 11, 240, 0, 0, 0, 11, 0, 0xFF, 0xFF])
}

/// Disconnect-reconnect page (02h).
pub fn disconnect_reconnect_page(pc: PageControl) -> [u8; 16] {
    fixed(
        pc,
        [0x02, 0x0E, 128, 128, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
}

/// Format device page (03h): sectors per track and bytes per sector.
pub fn format_device_page(pc: PageControl, block_size: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0] = page::FORMAT_DEVICE;
    b[1] = 0x16;
    b[10..12].copy_from_slice(&(SECTORS_PER_TRACK as u16).to_be_bytes());
    b[12..14].copy_from_slice(&(block_size.min(u16::MAX as u32) as u16).to_be_bytes());
    b[20] = 0x40; // HSEC: hard sectors
    fixed(pc, b)
}

/// Rigid disk geometry page (04h): cylinders derived from the capacity, 255 heads.
pub fn rigid_geometry_page(pc: PageControl, nblocks: u64, rotation_rate: u16) -> [u8; 24] {
    let per_cyl = (HEADS * SECTORS_PER_TRACK) as u64;
    let cyls = nblocks.div_ceil(per_cyl).min(0xFF_FFFF) as u32;
    let mut b = [0u8; 24];
    b[0] = page::RIGID_GEOMETRY;
    b[1] = 0x16;
    b[2..5].copy_from_slice(&cyls.to_be_bytes()[1..]);
    b[5] = HEADS as u8;
    b[20..22].copy_from_slice(&rotation_rate.to_be_bytes());
    fixed(pc, b)
}

/// Informational exceptions control page (1Ch): exceptions disabled (DEXCPT).
pub fn informational_exceptions_page(pc: PageControl) -> [u8; 12] {
    fixed(pc, [0x1C, 0x0A, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0])
}

/// The block descriptor of a MODE SENSE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDescriptor {
    pub nblocks: u64,
    pub block_size: u32,
    /// Use the 16-byte long LBA descriptor (MODE SENSE(10) with LLBAA).
    pub long: bool,
}

/// Assemble MODE SENSE(6) or (10) parameter data: header, optional block descriptor and
/// the page bytes, with the length fields filled in.
pub fn mode_sense_data(
    ten: bool,
    medium_type: u8,
    dev_specific: u8,
    bd: Option<BlockDescriptor>,
    pages: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 16 + pages.len());
    let bd_len = match bd {
        None => 0,
        Some(d) if ten && d.long => 16,
        Some(_) => 8,
    };
    if ten {
        out.extend_from_slice(&[0, 0, medium_type, dev_specific, 0, 0, 0, bd_len as u8]);
        if bd_len == 16 {
            out[4] = 0x01; // LONGLBA
        }
    } else {
        out.extend_from_slice(&[0, medium_type, dev_specific, bd_len as u8]);
    }
    if let Some(d) = bd {
        if bd_len == 16 {
            out.extend_from_slice(&d.nblocks.to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&d.block_size.to_be_bytes());
        } else {
            // Short descriptor: block count saturates at 0xFFFFFFFF (SBC-3 6.4.2).
            let n = d.nblocks.min(u32::MAX as u64) as u32;
            out.extend_from_slice(&n.to_be_bytes());
            out.push(0);
            out.extend_from_slice(&d.block_size.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(pages);
    // MODE DATA LENGTH excludes itself.
    if ten {
        let l = (out.len() - 2).min(u16::MAX as usize) as u16;
        out[..2].copy_from_slice(&l.to_be_bytes());
    } else {
        out[0] = (out.len() - 1).min(255) as u8;
    }
    out
}

/// One page of a MODE SELECT parameter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectPage<'a> {
    /// Offset of the page's first byte in the parameter list (for field pointers).
    pub offset: usize,
    pub code: u8,
    /// SPF: sub-page format.
    pub spf: bool,
    /// The whole page, header included.
    pub bytes: &'a [u8],
}

/// A parsed MODE SELECT parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectList<'a> {
    /// Block length of the block descriptor, if one was sent.
    pub block_size: Option<u32>,
    pub pages: Vec<SelectPage<'a>>,
}

/// Parse a MODE SELECT(6)/(10) parameter list: header, block descriptor (0 or 8 bytes,
/// or 16 with LONGLBA for (10)) and the pages. Errors are INVALID FIELD IN PARAMETER
/// LIST pointing at the offending byte, or PARAMETER LIST LENGTH ERROR when truncated.
pub fn parse_select_list(ten: bool, d: &[u8]) -> Result<SelectList<'_>, Sense> {
    let hdr_len = if ten { 8 } else { 4 };
    if d.len() < hdr_len {
        return Err(Sense::PARAM_LIST_LENGTH_ERROR);
    }
    let (bd_len, bd_len_off, long) = if ten {
        (
            u16::from_be_bytes([d[6], d[7]]) as usize,
            6u16,
            d[4] & 0x01 != 0,
        )
    } else {
        (d[3] as usize, 3u16, false)
    };
    let expected_bd = if long { 16 } else { 8 };
    if bd_len != 0 && bd_len != expected_bd {
        return Err(Sense::invalid_field_in_param(bd_len_off, None));
    }
    let mut p = hdr_len;
    let block_size = if bd_len == 0 {
        None
    } else {
        let bd = d.get(p..p + bd_len).ok_or(Sense::PARAM_LIST_LENGTH_ERROR)?;
        p += bd_len;
        Some(if long {
            u32::from_be_bytes([bd[12], bd[13], bd[14], bd[15]])
        } else {
            u32::from_be_bytes([0, bd[5], bd[6], bd[7]])
        })
    };
    let mut pages = Vec::new();
    while p < d.len() {
        let b0 = d[p];
        let spf = b0 & 0x40 != 0;
        let (hdr, len) = if spf {
            let h = d.get(p..p + 4).ok_or(Sense::PARAM_LIST_LENGTH_ERROR)?;
            (4, u16::from_be_bytes([h[2], h[3]]) as usize)
        } else {
            (
                2,
                *d.get(p + 1).ok_or(Sense::PARAM_LIST_LENGTH_ERROR)? as usize,
            )
        };
        let end = p + hdr + len;
        let bytes = d.get(p..end).ok_or(Sense::PARAM_LIST_LENGTH_ERROR)?;
        pages.push(SelectPage {
            offset: p,
            code: b0 & 0x3F,
            spf,
            bytes,
        });
        p = end;
    }
    Ok(SelectList { block_size, pages })
}

/// Check that `new` only differs from `current` in bits set in `changeable`, ignoring the
/// PS bit (reserved in MODE SELECT). Returns the offset and bit of the first violation.
pub fn check_changeable(current: &[u8], changeable: &[u8], new: &[u8]) -> Result<(), (usize, u8)> {
    for (i, &n) in new.iter().enumerate() {
        let cur = current.get(i).copied().unwrap_or(0);
        let mut mask = changeable.get(i).copied().unwrap_or(0);
        if i == 0 {
            mask |= 0x80;
        }
        let bad = (n ^ cur) & !mask;
        if bad != 0 {
            return Err((i, 7 - bad.leading_zeros() as u8));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caching_page_values_and_mask() {
        let cur = CachingPage {
            wce: true,
            rcd: false,
        }
        .encode(PageControl::Current);
        assert_eq!(
            (cur[0], cur[1], cur[2], cur[12], cur[13]),
            (8, 18, 0x14, 0x80, 20)
        );
        let mask = CachingPage {
            wce: true,
            rcd: false,
        }
        .encode(PageControl::Changeable);
        assert_eq!(mask[2], 0x04);
        assert!(mask[3..].iter().all(|&b| b == 0));
        assert_eq!(
            CachingPage::decode(&cur),
            CachingPage {
                wce: true,
                rcd: false
            }
        );
    }

    #[test]
    fn control_page_round_trip() {
        let c = ControlPage {
            tst: 1,
            d_sense: true,
            qam: 1,
            qerr: 3,
            swp: true,
            tas: true,
            busy_timeout: 0x024B,
            ..Default::default()
        };
        let b = c.encode();
        assert_eq!(&b[..6], &[0x0A, 0x0A, 0x24, 0x16, 0x08, 0x40]);
        assert_eq!(&b[8..10], &[0x02, 0x4B]);
        assert_eq!(ControlPage::decode(&b), c);
    }

    #[test]
    fn fixed_pages() {
        assert_eq!(rw_error_recovery_page(PageControl::Current)[2], 0xC0);
        assert_eq!(rw_error_recovery_page(PageControl::Changeable)[2], 0);
        let f = format_device_page(PageControl::Default, 4096);
        assert_eq!((&f[10..12], &f[12..14]), (&[0u8, 56][..], &[0x10u8, 0][..]));
        let g = rigid_geometry_page(PageControl::Current, 255 * 56 * 3 + 1, 15000);
        assert_eq!((&g[2..5], g[5]), (&[0u8, 0, 4][..], 255));
        assert_eq!(&g[20..22], &15000u16.to_be_bytes());
        assert_eq!(informational_exceptions_page(PageControl::Current)[2], 0x08);
        assert_eq!(disconnect_reconnect_page(PageControl::Current).len(), 16);
    }

    #[test]
    fn sense_headers() {
        let bd = BlockDescriptor {
            nblocks: 1 << 40,
            block_size: 512,
            long: false,
        };
        let d = mode_sense_data(false, 0, DSP_WP | DSP_DPOFUA, Some(bd), &[0x1C, 0]);
        assert_eq!(&d[..4], &[13, 0, 0x90, 8]);
        assert_eq!(&d[4..12], &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]);
        let d = mode_sense_data(true, 0, 0, Some(BlockDescriptor { long: true, ..bd }), &[]);
        assert_eq!(&d[..8], &[0, 22, 0, 0, 1, 0, 0, 16]);
        assert_eq!(&d[8..16], &(1u64 << 40).to_be_bytes());
        assert_eq!(&d[20..24], &512u32.to_be_bytes());
        let d = mode_sense_data(true, 0, 0, None, &[1, 2]);
        assert_eq!(&d[..8], &[0, 8, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn select_list_parsing() {
        let mut l = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 2, 0];
        l.extend_from_slice(
            &CachingPage {
                wce: false,
                rcd: false,
            }
            .encode(PageControl::Current),
        );
        let s = parse_select_list(false, &l).unwrap();
        assert_eq!(s.block_size, Some(512));
        assert_eq!(s.pages.len(), 1);
        assert_eq!((s.pages[0].offset, s.pages[0].code), (12, 8));
        // Truncated page.
        assert_eq!(
            parse_select_list(false, &l[..20]),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
        // Bad block descriptor length.
        let e = parse_select_list(false, &[0, 0, 0, 4, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e, Sense::invalid_field_in_param(3, None));
        assert_eq!(
            parse_select_list(true, &[0; 4]),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
    }

    #[test]
    fn changeable_check() {
        let cur = [0x08, 0x12, 0x14, 0];
        let mask = [0x08, 0x12, 0x04, 0];
        assert_eq!(
            check_changeable(&cur, &mask, &[0x88, 0x12, 0x10, 0]),
            Ok(())
        );
        assert_eq!(
            check_changeable(&cur, &mask, &[0x08, 0x12, 0x15, 0]),
            Err((2, 0))
        );
        assert_eq!(
            check_changeable(&cur, &mask, &[0x08, 0x12, 0x14, 0x80]),
            Err((3, 7))
        );
    }
}
