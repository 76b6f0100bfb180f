//! Sense data (SPC-4 4.5): one `Sense` value, encoded as fixed (0x70) or descriptor
//! (0x72) format depending on the control mode page's D_SENSE bit.

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

    /// COPY ABORTED while processing segment descriptor `segment` (SPC-4 6.4.5.1).
    pub const fn copy_aborted(asc: u8, ascq: u8, segment: u16) -> Sense {
        let mut s = Sense::new(key::COPY_ABORTED, asc, ascq);
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
        let mut s = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
        s.field = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit,
        });
        s
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST with the field pointer.
    pub const fn invalid_field_in_param(byte: u16, bit: Option<u8>) -> Sense {
        let mut s = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x00);
        s.field = Some(FieldPointer {
            in_cdb: false,
            byte,
            bit,
        });
        s
    }

    pub const INVALID_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
    pub const LUN_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
    pub const PARAM_LIST_LENGTH_ERROR: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x1A, 0x00);
    pub const PARAM_VALUE_INVALID: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x02);
    pub const SAVING_PARAMS_UNSUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
    pub const INVALID_MESSAGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x49, 0x00);
    pub const WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x00);
    pub const DATA_PROTECT: Sense = Sense::new(key::DATA_PROTECT, 0x00, 0x00);
    pub const SPACE_ALLOCATION_FAILED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x07);
    pub const READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
    pub const WRITE_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x03, 0x00);
    pub const MISCOMPARE: Sense = Sense::new(key::MISCOMPARE, 0x1D, 0x00);
    pub const MEDIUM_NOT_PRESENT: Sense = Sense::new(key::NOT_READY, 0x3A, 0x00);
    pub const INTERNAL_FAILURE: Sense = Sense::new(key::ABORTED_COMMAND, 0x44, 0x00);
    pub const HARDWARE_INTERNAL_FAILURE: Sense = Sense::new(key::HARDWARE_ERROR, 0x44, 0x00);
    pub const COMMAND_ABORTED: Sense = Sense::new(key::ABORTED_COMMAND, 0x00, 0x00);
    pub const CRC_ERROR: Sense = Sense::new(key::ABORTED_COMMAND, 0x47, 0x05);
    pub const OVERLAPPED_COMMANDS: Sense = Sense::new(key::ABORTED_COMMAND, 0x4E, 0x00);
    // Unit attentions (spec/scst.md 5.1).
    pub const UA_POWER_ON_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x00);
    pub const UA_BUS_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x02);
    pub const UA_TARGET_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x03);
    pub const UA_I_T_NEXUS_LOSS: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x07);
    pub const UA_MODE_PARAMETERS_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x01);
    pub const UA_RESERVATIONS_PREEMPTED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x03);
    pub const UA_RESERVATIONS_RELEASED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x04);
    pub const UA_REGISTRATIONS_PREEMPTED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x05);
    pub const UA_ASYMMETRIC_ACCESS_STATE_CHANGED: Sense =
        Sense::new(key::UNIT_ATTENTION, 0x2A, 0x06);
    pub const UA_CAPACITY_DATA_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x09);
    pub const UA_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: Sense =
        Sense::new(key::UNIT_ATTENTION, 0x2F, 0x00);
    pub const UA_INQUIRY_DATA_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x3F, 0x03);
    pub const UA_REPORTED_LUNS_DATA_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x3F, 0x0E);
    pub const UA_MEDIUM_MAY_HAVE_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x28, 0x00);

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

    pub fn encode(&self, descriptor: bool) -> Vec<u8> {
        if descriptor {
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
    fn descriptor_round_trip_with_information() {
        let s = Sense::MISCOMPARE.with_information(0x1_0000_0005);
        let b = s.to_descriptor();
        assert_eq!(b[0], 0x72);
        assert_eq!(Sense::parse(&b), Some(s));
        // Does not fit in fixed format: VALID stays clear.
        assert_eq!(s.to_fixed()[0], 0x70);
    }
}
