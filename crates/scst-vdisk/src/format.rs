//! FORMAT UNIT (SBC-4 5.3): there is no physical format to do, so the command checks
//! what it is asked for and then, on a thin provisioned device, deallocates the whole
//! medium: a format leaves user data undefined, and a thin LU that reads back zeros
//! everywhere afterwards (LBPRZ) with all its space returned is what SBC-4 describes
//! for a logical block provisioned LU after FORMAT UNIT. On a fully provisioned device
//! (and nullio) the content is left as it is: rewriting gigabytes to "format" them
//! would protect nobody (SANITIZE is the command for that) and cost a lot.
//!
//! Supported: FMTDATA 0 (defaults) or 1 with a short or long parameter list header,
//! FOV with DPRY/DCRT/STPF (nothing to certify, no defect lists to use or not), IMMED
//! (the format then runs in the background: NOT READY / FORMAT IN PROGRESS with the
//! progress indication for other commands and in REQUEST SENSE). Not supported: T10
//! protection information (FMTPINFO, RTO_REQ, PROTECTION FIELD USAGE, P_I_INFORMATION,
//! PROTECTION INTERVAL EXPONENT must all be zero), fast format (FFMT), initialization
//! patterns (IP) and defect lists (DEFECT LIST LENGTH must be zero).

use crate::backend::Backend;
use crate::longop::{self, OpKind, Work, FORMAT_FAILED};
use crate::sbc::{CmdResult, Vdisk};
use scsi_wire::cdb;
use scsi_wire::Sense;
use scst_core::{CmdCtx, ExecMode, Response};

// CDB byte 1.
const FMTPINFO: u8 = 0x80;
const RTO_REQ: u8 = 0x40;
const LONGLIST: u8 = 0x20;
const FMTDATA: u8 = 0x10;
// CDB byte 4: FFMT.
const FFMT_MASK: u8 = 0x03;

// Parameter list header byte 1.
const FOV: u8 = 0x80;
/// DPRY, DCRT, STPF, IP: only meaningful (and only allowed) with FOV set.
const FOV_BITS: [u8; 4] = [6, 5, 4, 3];
const IP_BIT: u8 = 3;
const HEADER_IMMED: u8 = 0x02;

const SHORT_HEADER_LEN: usize = 4;
const LONG_HEADER_LEN: usize = 8;

/// The highest bit set in `b` (which must be non-zero).
fn top_bit(b: u8) -> u8 {
    7u8.saturating_sub(b.leading_zeros() as u8)
}

/// Check the parameter list header (SBC-4 5.3.2); returns its IMMED bit. The list may
/// be longer than the header, but anything that would follow it (an initialization
/// pattern descriptor, a defect list) is refused by the header already.
fn parse_header(list: &[u8], long: bool) -> Result<bool, Sense> {
    let header_len = if long {
        LONG_HEADER_LEN
    } else {
        SHORT_HEADER_LEN
    };
    let h = list
        .get(..header_len)
        .ok_or(Sense::PARAM_LIST_LENGTH_ERROR)?;
    // Byte 0: reserved bits, then PROTECTION FIELD USAGE (only 000b without PI).
    if h[0] != 0 {
        return Err(Sense::invalid_field_in_param(0, Some(top_bit(h[0]))));
    }
    let flags = h[1];
    if flags & FOV == 0 {
        if let Some(&bit) = FOV_BITS.iter().find(|&&b| flags & (1 << b) != 0) {
            return Err(Sense::invalid_field_in_param(1, Some(bit)));
        }
    }
    if flags & (1 << IP_BIT) != 0 {
        return Err(Sense::invalid_field_in_param(1, Some(IP_BIT)));
    }
    if long {
        if h[2] != 0 {
            return Err(Sense::invalid_field_in_param(2, None));
        }
        // P_I_INFORMATION, PROTECTION INTERVAL EXPONENT.
        if h[3] & 0xF0 != 0 {
            return Err(Sense::invalid_field_in_param(3, Some(7)));
        }
        if h[3] & 0x0F != 0 {
            return Err(Sense::invalid_field_in_param(3, Some(3)));
        }
        if cdb::be32(h, 4)? != 0 {
            return Err(Sense::invalid_field_in_param(4, None));
        }
    } else if cdb::be16(h, 2)? != 0 {
        return Err(Sense::invalid_field_in_param(2, None));
    }
    Ok(flags & HEADER_IMMED != 0)
}

impl<B: Backend> Vdisk<B> {
    pub(crate) fn format_unit(
        &self,
        ctx: &CmdCtx<'_>,
        cdb: &[u8],
        data_out: &[u8],
        mode: ExecMode,
    ) -> CmdResult {
        let b1 = cdb::u8_at(cdb, 1)?;
        let b4 = cdb::u8_at(cdb, 4)?;
        if b1 & FMTPINFO != 0 {
            return Err(Sense::invalid_field_in_cdb(1, Some(7)));
        }
        if b1 & RTO_REQ != 0 {
            return Err(Sense::invalid_field_in_cdb(1, Some(6)));
        }
        if b4 & FFMT_MASK != 0 {
            return Err(Sense::invalid_field_in_cdb(4, Some(1)));
        }
        if let Some(s) = self.write_protect(ctx) {
            return Err(s);
        }
        // FMTDATA 0: no parameter list, default format, status at the end. CMPLST and
        // DEFECT LIST FORMAT only qualify a defect list, which we never take.
        let immed = if b1 & FMTDATA != 0 {
            parse_header(data_out, b1 & LONGLIST != 0)?
        } else {
            false
        };
        if mode == ExecMode::Inline {
            return Ok(None);
        }
        let work = if self.block_erase_supported() {
            Work::Deallocate
        } else {
            Work::Nothing
        };
        let ticket = self.longop.begin(OpKind::Format, false)?;
        longop::start(self.medium_job(work), ticket, immed, FORMAT_FAILED)?;
        Ok(Some(Response::good()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_pointers() {
        let at = |byte, bit| Err(Sense::invalid_field_in_param(byte, bit));
        assert_eq!(parse_header(&[0, 0, 0, 0], false), Ok(false));
        assert_eq!(
            parse_header(&[0, FOV | 0x70 | HEADER_IMMED, 0, 0], false),
            Ok(true)
        );
        assert_eq!(parse_header(&[0, 0, 0, 0, 0, 0, 0, 0], true), Ok(false));
        // Too short for its header.
        assert_eq!(
            parse_header(&[0, 0, 0], false),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
        assert_eq!(
            parse_header(&[0, 0, 0, 0], true),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
        // PROTECTION FIELD USAGE, reserved bits.
        assert_eq!(parse_header(&[0x01, 0, 0, 0], false), at(0, Some(0)));
        assert_eq!(parse_header(&[0x05, 0, 0, 0], false), at(0, Some(2)));
        assert_eq!(parse_header(&[0x40, 0, 0, 0], false), at(0, Some(6)));
        // DPRY/DCRT/STPF/IP need FOV; IP is unsupported even with it.
        assert_eq!(parse_header(&[0, 0x20, 0, 0], false), at(1, Some(5)));
        assert_eq!(parse_header(&[0, 0x08, 0, 0], false), at(1, Some(3)));
        assert_eq!(parse_header(&[0, FOV | 0x08, 0, 0], false), at(1, Some(3)));
        // Defect lists, protection fields of the long header.
        assert_eq!(parse_header(&[0, 0, 0, 8], false), at(2, None));
        assert_eq!(parse_header(&[0, 0, 0, 0, 0, 0, 0, 8], true), at(4, None));
        assert_eq!(parse_header(&[0, 0, 1, 0, 0, 0, 0, 0], true), at(2, None));
        assert_eq!(
            parse_header(&[0, 0, 0, 0x10, 0, 0, 0, 0], true),
            at(3, Some(7))
        );
        assert_eq!(
            parse_header(&[0, 0, 0, 0x01, 0, 0, 0, 0], true),
            at(3, Some(3))
        );
    }
}
