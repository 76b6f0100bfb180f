//! Sense data (SPC-4 4.5): one `Sense` value, encoded as fixed (0x70) or descriptor
//! (0x72) format depending on the control mode page's D_SENSE bit ([`SenseFormat`]).
//! Its additional sense codes come from the one table, [`crate::asc`].

use crate::asc::{self, Asc};
use std::fmt;

/// Sense keys.
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const RECOVERED_ERROR: u8 = 0x1;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const HARDWARE_ERROR: u8 = 0x4;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const COPY_ABORTED: u8 = 0xA;
    pub const ABORTED_COMMAND: u8 = 0xB;
    pub const MISCOMPARE: u8 = 0xE;

    /// The SPC-4 name of a sense key (for logs).
    pub fn name(key: u8) -> &'static str {
        match key {
            NO_SENSE => "NO SENSE",
            RECOVERED_ERROR => "RECOVERED ERROR",
            NOT_READY => "NOT READY",
            MEDIUM_ERROR => "MEDIUM ERROR",
            HARDWARE_ERROR => "HARDWARE ERROR",
            ILLEGAL_REQUEST => "ILLEGAL REQUEST",
            UNIT_ATTENTION => "UNIT ATTENTION",
            DATA_PROTECT => "DATA PROTECT",
            COPY_ABORTED => "COPY ABORTED",
            ABORTED_COMMAND => "ABORTED COMMAND",
            MISCOMPARE => "MISCOMPARE",
            _ => "RESERVED SENSE KEY",
        }
    }
}

/// Which sense data format a logical unit returns (SPC-4 4.5.1): descriptor when its
/// control mode page has D_SENSE set, fixed otherwise. REQUEST SENSE chooses for
/// itself with its DESC bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SenseFormat {
    #[default]
    Fixed,
    Descriptor,
}

impl SenseFormat {
    /// The format a D_SENSE (or REQUEST SENSE DESC) bit asks for.
    pub const fn from_d_sense(d_sense: bool) -> SenseFormat {
        if d_sense {
            SenseFormat::Descriptor
        } else {
            SenseFormat::Fixed
        }
    }

    pub const fn is_descriptor(self) -> bool {
        matches!(self, SenseFormat::Descriptor)
    }
}

/// Sense-key-specific field pointer (SPC-4 4.5.2.4.2): which byte (and optionally
/// bit) of the CDB or parameter list is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// true: the error is in the CDB; false: in the parameter list (data-out).
    pub in_cdb: bool,
    pub byte: u16,
    pub bit: Option<u8>,
}

/// What a COPY ABORTED sense tells about the failed EXTENDED COPY (SPC-4 6.4.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyAborted {
    /// The segment descriptor being processed (COMMAND-SPECIFIC INFORMATION).
    pub segment: u16,
    /// Byte of that segment descriptor in error (segment pointer, SD=1).
    pub segment_field: Option<u16>,
    /// The status and sense a copy target answered the copy manager with.
    pub forwarded: Option<ForwardedSense>,
}

/// Sense data a copy target returned to the copy manager, passed on to the initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedSense {
    /// The destination (true) or the source (false) copy target answered.
    pub destination: bool,
    pub status: u8,
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// INFORMATION field (e.g. the offset of a miscompare, the failing LBA).
    pub information: Option<u64>,
    pub field: Option<FieldPointer>,
    /// Progress indication (sense-key specific, for NOT READY / NO SENSE), 0..=65535.
    pub progress: Option<u16>,
    /// EXTENDED COPY details, for COPY ABORTED.
    pub copy: Option<CopyAborted>,
}

impl Sense {
    /// Sense with a named additional sense code: how the target builds sense.
    pub const fn named(key: u8, code: Asc) -> Sense {
        Sense::new(key, code.code, code.qualifier)
    }

    /// Sense from raw codes, as decoded from bytes (a copy target's answer, sense data
    /// being parsed). Sense the target reports itself is built with [`Sense::named`].
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense {
            key,
            asc,
            ascq,
            information: None,
            field: None,
            progress: None,
            copy: None,
        }
    }

    /// The additional sense code and qualifier.
    pub const fn code(&self) -> Asc {
        Asc {
            code: self.asc,
            qualifier: self.ascq,
        }
    }

    /// COPY ABORTED while processing segment descriptor `segment` (SPC-4 6.4.5.1).
    pub const fn copy_aborted(code: Asc, segment: u16) -> Sense {
        let mut s = Sense::named(key::COPY_ABORTED, code);
        s.copy = Some(CopyAborted {
            segment,
            segment_field: None,
            forwarded: None,
        });
        s
    }

    pub const fn with_information(mut self, info: u64) -> Sense {
        self.information = Some(info);
        self
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN CDB with the field pointer on `byte` (and `bit`).
    pub const fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Sense {
        let mut s = Sense::named(key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
        s.field = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit,
        });
        s
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST with the field pointer.
    pub const fn invalid_field_in_param(byte: u16, bit: Option<u8>) -> Sense {
        let mut s = Sense::named(key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_PARAMETER_LIST);
        s.field = Some(FieldPointer {
            in_cdb: false,
            byte,
            bit,
        });
        s
    }

    /// NO SENSE: nothing to report (REQUEST SENSE with no pending condition).
    pub const NO_SENSE: Sense = Sense::named(key::NO_SENSE, asc::NO_ADDITIONAL_SENSE_INFORMATION);
    pub const INVALID_OPCODE: Sense =
        Sense::named(key::ILLEGAL_REQUEST, asc::INVALID_COMMAND_OPERATION_CODE);
    pub const LBA_OUT_OF_RANGE: Sense = Sense::named(
        key::ILLEGAL_REQUEST,
        asc::LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE,
    );
    pub const LUN_NOT_SUPPORTED: Sense =
        Sense::named(key::ILLEGAL_REQUEST, asc::LOGICAL_UNIT_NOT_SUPPORTED);
    pub const PARAM_LIST_LENGTH_ERROR: Sense =
        Sense::named(key::ILLEGAL_REQUEST, asc::PARAMETER_LIST_LENGTH_ERROR);
    pub const PARAM_VALUE_INVALID: Sense =
        Sense::named(key::ILLEGAL_REQUEST, asc::PARAMETER_VALUE_INVALID);
    pub const SAVING_PARAMS_UNSUPPORTED: Sense =
        Sense::named(key::ILLEGAL_REQUEST, asc::SAVING_PARAMETERS_NOT_SUPPORTED);
    pub const INVALID_MESSAGE: Sense =
        Sense::named(key::ILLEGAL_REQUEST, asc::INVALID_MESSAGE_ERROR);
    pub const WRITE_PROTECTED: Sense = Sense::named(key::DATA_PROTECT, asc::WRITE_PROTECTED);
    pub const DATA_PROTECT: Sense =
        Sense::named(key::DATA_PROTECT, asc::NO_ADDITIONAL_SENSE_INFORMATION);
    pub const SPACE_ALLOCATION_FAILED: Sense = Sense::named(
        key::DATA_PROTECT,
        asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
    );
    pub const READ_ERROR: Sense = Sense::named(key::MEDIUM_ERROR, asc::UNRECOVERED_READ_ERROR);
    pub const WRITE_ERROR: Sense =
        Sense::named(key::MEDIUM_ERROR, asc::PERIPHERAL_DEVICE_WRITE_FAULT);
    pub const MISCOMPARE: Sense =
        Sense::named(key::MISCOMPARE, asc::MISCOMPARE_DURING_VERIFY_OPERATION);
    pub const MEDIUM_NOT_PRESENT: Sense = Sense::named(key::NOT_READY, asc::MEDIUM_NOT_PRESENT);
    pub const INTERNAL_FAILURE: Sense =
        Sense::named(key::ABORTED_COMMAND, asc::INTERNAL_TARGET_FAILURE);
    pub const HARDWARE_INTERNAL_FAILURE: Sense =
        Sense::named(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE);
    pub const COMMAND_ABORTED: Sense =
        Sense::named(key::ABORTED_COMMAND, asc::NO_ADDITIONAL_SENSE_INFORMATION);
    /// The transport could not move the data the command called for.
    pub const DATA_PHASE_ERROR: Sense = Sense::named(key::ABORTED_COMMAND, asc::DATA_PHASE_ERROR);
    pub const CRC_ERROR: Sense =
        Sense::named(key::ABORTED_COMMAND, asc::PROTOCOL_SERVICE_CRC_ERROR);
    pub const OVERLAPPED_COMMANDS: Sense =
        Sense::named(key::ABORTED_COMMAND, asc::OVERLAPPED_COMMANDS_ATTEMPTED);
    // Unit attentions (docs/scst-reference.md 5.1).
    pub const UA_POWER_ON_RESET: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET);
    pub const UA_BUS_RESET: Sense = Sense::named(key::UNIT_ATTENTION, asc::SCSI_BUS_RESET_OCCURRED);
    pub const UA_TARGET_RESET: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED);
    pub const UA_I_T_NEXUS_LOSS: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::I_T_NEXUS_LOSS_OCCURRED);
    pub const UA_MODE_PARAMETERS_CHANGED: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::MODE_PARAMETERS_CHANGED);
    pub const UA_RESERVATIONS_PREEMPTED: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::RESERVATIONS_PREEMPTED);
    pub const UA_RESERVATIONS_RELEASED: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::RESERVATIONS_RELEASED);
    pub const UA_REGISTRATIONS_PREEMPTED: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::REGISTRATIONS_PREEMPTED);
    pub const UA_ASYMMETRIC_ACCESS_STATE_CHANGED: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::ASYMMETRIC_ACCESS_STATE_CHANGED);
    pub const UA_CAPACITY_DATA_CHANGED: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::CAPACITY_DATA_HAS_CHANGED);
    pub const UA_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: Sense = Sense::named(
        key::UNIT_ATTENTION,
        asc::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR,
    );
    pub const UA_INQUIRY_DATA_CHANGED: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::INQUIRY_DATA_HAS_CHANGED);
    pub const UA_REPORTED_LUNS_DATA_CHANGED: Sense =
        Sense::named(key::UNIT_ATTENTION, asc::REPORTED_LUNS_DATA_HAS_CHANGED);
    pub const UA_MEDIUM_MAY_HAVE_CHANGED: Sense = Sense::named(
        key::UNIT_ATTENTION,
        asc::NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED,
    );

    /// Fixed-format sense data (response code 0x70), 18 bytes.
    pub fn to_fixed(&self) -> [u8; 18] {
        let mut b = [0u8; 18];
        b[0] = 0x70;
        b[2] = self.key & 0x0F;
        if let Some(info) = self.information {
            // INFORMATION is 4 bytes in fixed format; VALID only when it fits.
            if info <= u32::MAX as u64 {
                b[0] |= 0x80;
                b[3..7].copy_from_slice(&(info as u32).to_be_bytes());
            }
        }
        b[7] = 10; // additional sense length
        if let Some(c) = self.copy {
            b[8..12].copy_from_slice(&c.command_specific());
        }
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(sks) = self.sks_bytes() {
            b[15..18].copy_from_slice(&sks);
        }
        b
    }

    /// Descriptor-format sense data (response code 0x72).
    pub fn to_descriptor(&self) -> Vec<u8> {
        let mut b = vec![0x72, self.key & 0x0F, self.asc, self.ascq, 0, 0, 0, 0];
        if let Some(info) = self.information {
            b.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            b.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(c) = self.copy {
            // Command-specific information descriptor: the fixed-format bytes 8..12,
            // left-aligned in its 8-byte field.
            b.extend_from_slice(&[0x01, 0x0A, 0x00, 0x00]);
            b.extend_from_slice(&c.command_specific());
            b.extend_from_slice(&[0; 4]);
        }
        if let Some(sks) = self.sks_bytes() {
            b.extend_from_slice(&[0x02, 0x06, 0x00, 0x00]);
            b.extend_from_slice(&sks);
            b.push(0);
        }
        if let Some(f) = self.copy.and_then(|c| c.forwarded) {
            // Forwarded sense data descriptor (SPC-4 4.5.2.10): SENSE DATA SOURCE 1 is
            // the EXTENDED COPY source, 2 the destination.
            let inner = f.sense().to_descriptor();
            b.extend_from_slice(&[0x0C, (2 + inner.len()) as u8]);
            b.push(if f.destination { 2 } else { 1 });
            b.push(f.status);
            b.extend_from_slice(&inner);
        }
        b[7] = (b.len() - 8) as u8;
        b
    }

    /// Sense data in `format`: fixed (with a forwarded copy target's answer appended
    /// after the standard bytes) or descriptor.
    pub fn encode_as(&self, format: SenseFormat) -> Vec<u8> {
        if format.is_descriptor() {
            return self.to_descriptor();
        }
        let mut b = self.to_fixed().to_vec();
        if let Some(f) = self.copy.and_then(|c| c.forwarded) {
            // A copy target's answer follows the 18 standard bytes: its status byte then
            // its sense data, located by the SOURCE / DESTINATION SENSE DATA OFFSET
            // byte (SPC-4 6.4.5.1).
            b[if f.destination { 9 } else { 8 }] = 18;
            b.push(f.status);
            b.extend_from_slice(&f.sense().to_fixed());
            b[7] = (b.len() - 8) as u8;
        }
        b
    }

    /// `encode_as` with a D_SENSE bit.
    pub fn encode(&self, descriptor: bool) -> Vec<u8> {
        self.encode_as(SenseFormat::from_d_sense(descriptor))
    }

    /// The 3 sense-key-specific bytes with SKSV set, if any apply.
    fn sks_bytes(&self) -> Option<[u8; 3]> {
        if let Some(byte) = self.copy.and_then(|c| c.segment_field) {
            // Segment pointer: SD=1, the byte is relative to the segment descriptor.
            let [hi, lo] = byte.to_be_bytes();
            return Some([0x80 | 0x20, hi, lo]);
        }
        if let Some(f) = self.field {
            let mut b0 = 0x80u8;
            if f.in_cdb {
                b0 |= 0x40;
            }
            if let Some(bit) = f.bit {
                b0 |= 0x08 | (bit & 0x07);
            }
            let [hi, lo] = f.byte.to_be_bytes();
            return Some([b0, hi, lo]);
        }
        self.progress.map(|p| {
            let [hi, lo] = p.to_be_bytes();
            [0x80, hi, lo]
        })
    }

    /// Decode fixed or descriptor sense data (used by tests and the test initiator).
    pub fn parse(b: &[u8]) -> Option<Sense> {
        match b.first()? & 0x7F {
            0x70 | 0x71 => {
                if b.len() < 14 {
                    return None;
                }
                let mut s = Sense::new(b[2] & 0x0F, b[12], b[13]);
                if b[0] & 0x80 != 0 {
                    s.information = Some(u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as u64);
                }
                if b.len() >= 18 && b[15] & 0x80 != 0 {
                    s.apply_sks([b[15], b[16], b[17]]);
                }
                Some(s)
            }
            0x72 | 0x73 => {
                if b.len() < 8 {
                    return None;
                }
                let mut s = Sense::new(b[1] & 0x0F, b[2], b[3]);
                let end = (8 + b[7] as usize).min(b.len());
                let mut p = 8;
                while p + 2 <= end {
                    let (ty, len) = (b[p], b[p + 1] as usize);
                    let d = b.get(p + 2..(p + 2 + len).min(end))?;
                    match ty {
                        0x00 if d.len() >= 10 => {
                            s.information = Some(u64::from_be_bytes(d[2..10].try_into().ok()?))
                        }
                        0x02 if d.len() >= 5 && d[2] & 0x80 != 0 => s.apply_sks([d[2], d[3], d[4]]),
                        _ => {}
                    }
                    p += 2 + len;
                }
                Some(s)
            }
            _ => None,
        }
    }

    fn apply_sks(&mut self, sks: [u8; 3]) {
        if self.key == key::COPY_ABORTED {
            // The segment number (COMMAND-SPECIFIC INFORMATION) is not decoded.
            return;
        }
        let value = u16::from_be_bytes([sks[1], sks[2]]);
        if self.key == key::ILLEGAL_REQUEST {
            let bit = (sks[0] & 0x08 != 0).then_some(sks[0] & 0x07);
            self.field = Some(FieldPointer {
                in_cdb: sks[0] & 0x40 != 0,
                byte: value,
                bit,
            });
        } else {
            self.progress = Some(value);
        }
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", key::name(self.key), self.code())
    }
}

impl CopyAborted {
    /// COMMAND-SPECIFIC INFORMATION: source and destination sense data offsets (set
    /// when sense is forwarded), then the segment number.
    fn command_specific(&self) -> [u8; 4] {
        let [hi, lo] = self.segment.to_be_bytes();
        [0, 0, hi, lo]
    }
}

impl ForwardedSense {
    fn sense(&self) -> Sense {
        Sense::new(self.key, self.asc, self.ascq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_field_pointer_round_trip() {
        let s = Sense::invalid_field_in_cdb(2, Some(1));
        let b = s.to_fixed();
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], 0x05);
        assert_eq!((b[12], b[13]), (0x24, 0x00));
        assert_eq!(b[15], 0x80 | 0x40 | 0x08 | 1);
        assert_eq!(Sense::parse(&b), Some(s));
    }

    #[test]
    fn named_codes_land_in_the_sense_bytes() {
        let s = Sense::named(
            key::DATA_PROTECT,
            asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
        );
        assert_eq!(s, Sense::SPACE_ALLOCATION_FAILED);
        assert_eq!(s.code(), asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT);
        let b = s.to_fixed();
        assert_eq!((b[2], b[12], b[13]), (0x07, 0x27, 0x07));
        assert_eq!(
            s.to_string(),
            "DATA PROTECT: SPACE ALLOCATION FAILED WRITE PROTECT"
        );
    }

    #[test]
    fn format_follows_d_sense() {
        let s = Sense::INVALID_OPCODE;
        assert_eq!(s.encode_as(SenseFormat::from_d_sense(true))[0], 0x72);
        assert_eq!(s.encode_as(SenseFormat::from_d_sense(false))[0], 0x70);
        assert_eq!(s.encode(true), s.to_descriptor());
        assert_eq!(SenseFormat::default(), SenseFormat::Fixed);
    }

    #[test]
    fn descriptor_round_trip_with_information() {
        let s = Sense::MISCOMPARE.with_information(0x1_0000_0005);
        let b = s.to_descriptor();
        assert_eq!(b[0], 0x72);
        assert_eq!(Sense::parse(&b), Some(s));
        // Does not fit in fixed format: VALID stays clear.
        assert_eq!(s.to_fixed()[0], 0x70);
    }
}
