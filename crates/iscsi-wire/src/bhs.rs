//! The 48-byte Basic Header Segment (RFC 7143 section 11.2) and its fields.
//!
//! `Bhs` is a plain byte array with accessors. Several byte ranges mean different
//! things in different PDUs (bytes 24..28 are CmdSN in initiator PDUs and StatSN in
//! target PDUs, for example); the accessors are named after the field, and their docs
//! say which PDUs carry it. Nothing here validates: the accessors read whatever bytes
//! are there, so a hostile header can never make them fail.

/// Length of the basic header segment.
pub const BHS_LEN: usize = 48;

/// The "reserved" tag value (RFC 7143: 0xffffffff means "no task" / "no transfer").
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// PDU opcodes (low six bits of byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    // Initiator opcodes.
    NopOut = 0x00,
    ScsiCommand = 0x01,
    TaskMgmtRequest = 0x02,
    LoginRequest = 0x03,
    TextRequest = 0x04,
    DataOut = 0x05,
    LogoutRequest = 0x06,
    Snack = 0x10,
    // Target opcodes.
    NopIn = 0x20,
    ScsiResponse = 0x21,
    TaskMgmtResponse = 0x22,
    LoginResponse = 0x23,
    TextResponse = 0x24,
    DataIn = 0x25,
    LogoutResponse = 0x26,
    R2t = 0x31,
    AsyncMessage = 0x32,
    Reject = 0x3f,
}

impl Opcode {
    /// Decodes the six opcode bits; `None` for opcodes RFC 7143 does not define
    /// (including vendor-specific ones, which a target answers with a Reject).
    pub fn from_u8(v: u8) -> Option<Opcode> {
        use Opcode::*;
        Some(match v & 0x3f {
            0x00 => NopOut,
            0x01 => ScsiCommand,
            0x02 => TaskMgmtRequest,
            0x03 => LoginRequest,
            0x04 => TextRequest,
            0x05 => DataOut,
            0x06 => LogoutRequest,
            0x10 => Snack,
            0x20 => NopIn,
            0x21 => ScsiResponse,
            0x22 => TaskMgmtResponse,
            0x23 => LoginResponse,
            0x24 => TextResponse,
            0x25 => DataIn,
            0x26 => LogoutResponse,
            0x31 => R2t,
            0x32 => AsyncMessage,
            0x3f => Reject,
            _ => return None,
        })
    }

    /// True for opcodes an initiator sends (the target receives these).
    pub fn is_initiator(self) -> bool {
        (self as u8) < 0x20
    }
}

/// Flag bits of byte 1.
pub mod flags {
    /// Final bit (most PDUs).
    pub const FINAL: u8 = 0x80;
    /// SCSI Command: read expected.
    pub const READ: u8 = 0x40;
    /// SCSI Command: write expected.
    pub const WRITE: u8 = 0x20;
    /// SCSI Command: task attribute mask.
    pub const ATTR_MASK: u8 = 0x07;
    /// Login/Text: transit (login) bit.
    pub const TRANSIT: u8 = 0x80;
    /// Login/Text: continue bit.
    pub const CONTINUE: u8 = 0x40;
    /// Data-In: acknowledge requested.
    pub const ACK: u8 = 0x40;
    /// SCSI Response: bidirectional read residual overflow.
    pub const BIDI_OVERFLOW: u8 = 0x10;
    /// SCSI Response: bidirectional read residual underflow.
    pub const BIDI_UNDERFLOW: u8 = 0x08;
    /// SCSI Response / Data-In: residual overflow.
    pub const OVERFLOW: u8 = 0x04;
    /// SCSI Response / Data-In: residual underflow.
    pub const UNDERFLOW: u8 = 0x02;
    /// Data-In: status present.
    pub const STATUS: u8 = 0x01;
}

/// SCSI task attributes (SCSI Command byte 1 bits 0..2).
pub mod task_attr {
    pub const UNTAGGED: u8 = 0;
    pub const SIMPLE: u8 = 1;
    pub const ORDERED: u8 = 2;
    pub const HEAD_OF_QUEUE: u8 = 3;
    pub const ACA: u8 = 4;
}

/// Login stages (CSG/NSG values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Stage {
    SecurityNegotiation = 0,
    LoginOperational = 1,
    /// Value 2 is reserved by RFC 7143; kept so that decoding is total.
    Reserved = 2,
    FullFeature = 3,
}

impl Stage {
    pub fn from_bits(v: u8) -> Stage {
        match v & 3 {
            0 => Stage::SecurityNegotiation,
            1 => Stage::LoginOperational,
            2 => Stage::Reserved,
            _ => Stage::FullFeature,
        }
    }
}

/// A 48-byte basic header segment.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bhs(pub [u8; BHS_LEN]);

impl Default for Bhs {
    fn default() -> Self {
        Bhs([0; BHS_LEN])
    }
}

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bhs")
            .field("opcode", &format_args!("{:#04x}", self.opcode_raw()))
            .field("immediate", &self.immediate())
            .field("flags", &format_args!("{:#04x}", self.flags()))
            .field("ahs_words", &self.total_ahs_words())
            .field("data_len", &self.data_segment_len())
            .field("itt", &format_args!("{:#010x}", self.itt()))
            .field("bytes", &&self.0[..])
            .finish()
    }
}

macro_rules! u32_field {
    ($(#[$m:meta])* $get:ident, $set:ident, $off:expr) => {
        $(#[$m])*
        #[inline]
        pub fn $get(&self) -> u32 {
            self.u32_at($off)
        }
        #[inline]
        pub fn $set(&mut self, v: u32) {
            self.set_u32_at($off, v)
        }
    };
}

macro_rules! u16_field {
    ($(#[$m:meta])* $get:ident, $set:ident, $off:expr) => {
        $(#[$m])*
        #[inline]
        pub fn $get(&self) -> u16 {
            u16::from_be_bytes([self.0[$off], self.0[$off + 1]])
        }
        #[inline]
        pub fn $set(&mut self, v: u16) {
            self.0[$off..$off + 2].copy_from_slice(&v.to_be_bytes())
        }
    };
}

macro_rules! u8_field {
    ($(#[$m:meta])* $get:ident, $set:ident, $off:expr) => {
        $(#[$m])*
        #[inline]
        pub fn $get(&self) -> u8 {
            self.0[$off]
        }
        #[inline]
        pub fn $set(&mut self, v: u8) {
            self.0[$off] = v
        }
    };
}

macro_rules! flag_bit {
    ($(#[$m:meta])* $get:ident, $set:ident, $bit:expr) => {
        $(#[$m])*
        #[inline]
        pub fn $get(&self) -> bool {
            self.0[1] & $bit != 0
        }
        #[inline]
        pub fn $set(&mut self, on: bool) {
            if on {
                self.0[1] |= $bit
            } else {
                self.0[1] &= !$bit
            }
        }
    };
}

impl Bhs {
    /// A zeroed header with the given opcode.
    pub fn new(opcode: Opcode) -> Bhs {
        let mut b = Bhs::default();
        b.0[0] = opcode as u8;
        b
    }

    /// Copies a header out of the first 48 bytes of `buf`; `None` if `buf` is shorter.
    pub fn from_slice(buf: &[u8]) -> Option<Bhs> {
        let bytes: [u8; BHS_LEN] = buf.get(..BHS_LEN)?.try_into().ok()?;
        Some(Bhs(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; BHS_LEN] {
        &self.0
    }

    #[inline]
    fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes([
            self.0[off],
            self.0[off + 1],
            self.0[off + 2],
            self.0[off + 3],
        ])
    }

    #[inline]
    fn set_u32_at(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes())
    }

    // ---- Byte 0..8: common to every PDU ----

    /// The six opcode bits, whatever they are.
    #[inline]
    pub fn opcode_raw(&self) -> u8 {
        self.0[0] & 0x3f
    }

    /// The decoded opcode, `None` for undefined opcodes.
    #[inline]
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.0[0])
    }

    pub fn set_opcode(&mut self, op: Opcode) {
        self.0[0] = (self.0[0] & 0xc0) | op as u8;
    }

    /// Immediate delivery bit (initiator PDUs).
    #[inline]
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }

    pub fn set_immediate(&mut self, on: bool) {
        if on {
            self.0[0] |= 0x40
        } else {
            self.0[0] &= !0x40
        }
    }

    u8_field!(
        /// The whole opcode-specific flags byte (byte 1).
        flags, set_flags, 1);

    flag_bit!(
        /// F bit: final PDU of a sequence (most PDUs).
        final_bit, set_final, flags::FINAL);
    flag_bit!(
        /// SCSI Command R bit.
        read_bit, set_read, flags::READ);
    flag_bit!(
        /// SCSI Command W bit.
        write_bit, set_write, flags::WRITE);
    flag_bit!(
        /// Login T bit (transit to the next stage).
        transit, set_transit, flags::TRANSIT);
    flag_bit!(
        /// Login / Text C bit (text continues in the next PDU).
        continue_bit, set_continue, flags::CONTINUE);
    flag_bit!(
        /// Data-In A bit (acknowledge requested, ERL > 0 only).
        ack_bit, set_ack, flags::ACK);
    flag_bit!(
        /// Data-In S bit (status present in this PDU).
        status_bit, set_status_bit, flags::STATUS);
    flag_bit!(
        /// SCSI Response / Data-In O bit (residual overflow).
        overflow_bit, set_overflow, flags::OVERFLOW);
    flag_bit!(
        /// SCSI Response / Data-In U bit (residual underflow).
        underflow_bit, set_underflow, flags::UNDERFLOW);
    flag_bit!(
        /// SCSI Response o bit (bidirectional read residual overflow).
        bidi_overflow_bit, set_bidi_overflow, flags::BIDI_OVERFLOW);
    flag_bit!(
        /// SCSI Response u bit (bidirectional read residual underflow).
        bidi_underflow_bit, set_bidi_underflow, flags::BIDI_UNDERFLOW);

    /// SCSI Command task attribute (byte 1 bits 0..2).
    pub fn task_attr(&self) -> u8 {
        self.0[1] & flags::ATTR_MASK
    }

    pub fn set_task_attr(&mut self, attr: u8) {
        self.0[1] = (self.0[1] & !flags::ATTR_MASK) | (attr & flags::ATTR_MASK);
    }

    /// Login current stage (byte 1 bits 2..3).
    pub fn csg(&self) -> Stage {
        Stage::from_bits(self.0[1] >> 2)
    }

    pub fn set_csg(&mut self, s: Stage) {
        self.0[1] = (self.0[1] & !0x0c) | ((s as u8 & 3) << 2);
    }

    /// Login next stage (byte 1 bits 0..1).
    pub fn nsg(&self) -> Stage {
        Stage::from_bits(self.0[1])
    }

    pub fn set_nsg(&mut self, s: Stage) {
        self.0[1] = (self.0[1] & !0x03) | (s as u8 & 3);
    }

    /// TMF Request function (byte 1 bits 0..6).
    pub fn tmf_function(&self) -> u8 {
        self.0[1] & 0x7f
    }

    pub fn set_tmf_function(&mut self, f: u8) {
        self.0[1] = (self.0[1] & 0x80) | (f & 0x7f);
    }

    /// Logout Request reason code (byte 1 bits 0..6).
    pub fn logout_reason(&self) -> u8 {
        self.0[1] & 0x7f
    }

    pub fn set_logout_reason(&mut self, r: u8) {
        self.0[1] = (self.0[1] & 0x80) | (r & 0x7f);
    }

    /// SNACK type (byte 1 bits 0..3).
    pub fn snack_type(&self) -> u8 {
        self.0[1] & 0x0f
    }

    pub fn set_snack_type(&mut self, t: u8) {
        self.0[1] = (self.0[1] & 0xf0) | (t & 0x0f);
    }

    u8_field!(
        /// SCSI/TMF/Logout Response: response code (byte 2).
        response, set_response, 2);
    u8_field!(
        /// SCSI Response / Data-In: SCSI status (byte 3).
        status, set_status, 3);
    u8_field!(
        /// Reject reason (byte 2).
        reject_reason, set_reject_reason, 2);
    u8_field!(
        /// Login: Version-max (byte 2).
        version_max, set_version_max, 2);
    u8_field!(
        /// Login Request: Version-min (byte 3).
        version_min, set_version_min, 3);
    u8_field!(
        /// Login Response: Version-active (byte 3).
        version_active, set_version_active, 3);

    /// TotalAHSLength in 4-byte words (byte 4).
    #[inline]
    pub fn total_ahs_words(&self) -> u8 {
        self.0[4]
    }

    /// TotalAHSLength in bytes.
    #[inline]
    pub fn total_ahs_len(&self) -> usize {
        self.0[4] as usize * 4
    }

    pub fn set_total_ahs_words(&mut self, words: u8) {
        self.0[4] = words;
    }

    /// DataSegmentLength (bytes 5..8, 24 bits), without padding.
    #[inline]
    pub fn data_segment_len(&self) -> u32 {
        u32::from_be_bytes([0, self.0[5], self.0[6], self.0[7]])
    }

    /// Sets DataSegmentLength; values above 2^24-1 are truncated to 24 bits, so callers
    /// must respect the negotiated MaxRecvDataSegmentLength (always < 2^24).
    pub fn set_data_segment_len(&mut self, len: u32) {
        let b = len.to_be_bytes();
        self.0[5..8].copy_from_slice(&b[1..4]);
    }

    // ---- Bytes 8..16: LUN (or ISID/TSIH in login PDUs) ----

    /// LUN field, raw 8 bytes (SAM format).
    pub fn lun(&self) -> [u8; 8] {
        let mut l = [0u8; 8];
        l.copy_from_slice(&self.0[8..16]);
        l
    }

    pub fn set_lun(&mut self, lun: [u8; 8]) {
        self.0[8..16].copy_from_slice(&lun);
    }

    /// Login: ISID (bytes 8..14).
    pub fn isid(&self) -> [u8; 6] {
        let mut i = [0u8; 6];
        i.copy_from_slice(&self.0[8..14]);
        i
    }

    pub fn set_isid(&mut self, isid: [u8; 6]) {
        self.0[8..14].copy_from_slice(&isid);
    }

    u16_field!(
        /// Login: TSIH (bytes 14..16).
        tsih, set_tsih, 14);

    // ---- Bytes 16..48 ----

    u32_field!(
        /// Initiator Task Tag (bytes 16..20), every PDU.
        itt, set_itt, 16);
    u32_field!(
        /// Target Transfer Tag (bytes 20..24): NOP, Text, Data-In/Out, R2T.
        ttt, set_ttt, 20);
    u32_field!(
        /// TMF Request: Referenced Task Tag (bytes 20..24).
        ref_task_tag, set_ref_task_tag, 20);
    u32_field!(
        /// SCSI Command: Expected Data Transfer Length (bytes 20..24).
        exp_data_transfer_len, set_exp_data_transfer_len, 20);
    u32_field!(
        /// SCSI Response: SNACK Tag (bytes 20..24).
        snack_tag, set_snack_tag, 20);
    u16_field!(
        /// Login / Logout Request: CID (bytes 20..22).
        cid, set_cid, 20);
    u32_field!(
        /// Initiator PDUs: CmdSN (bytes 24..28).
        cmd_sn, set_cmd_sn, 24);
    u32_field!(
        /// Target PDUs: StatSN (bytes 24..28).
        stat_sn, set_stat_sn, 24);
    u32_field!(
        /// Initiator PDUs: ExpStatSN (bytes 28..32).
        exp_stat_sn, set_exp_stat_sn, 28);
    u32_field!(
        /// Target PDUs: ExpCmdSN (bytes 28..32).
        exp_cmd_sn, set_exp_cmd_sn, 28);
    u32_field!(
        /// Target PDUs: MaxCmdSN (bytes 32..36).
        max_cmd_sn, set_max_cmd_sn, 32);
    u32_field!(
        /// TMF Request: RefCmdSN (bytes 32..36).
        ref_cmd_sn, set_ref_cmd_sn, 32);
    u32_field!(
        /// Data-In/Data-Out: DataSN (bytes 36..40).
        data_sn, set_data_sn, 36);
    u32_field!(
        /// R2T: R2TSN (bytes 36..40).
        r2t_sn, set_r2t_sn, 36);
    u32_field!(
        /// SCSI Response / TMF Request: ExpDataSN (bytes 36..40).
        exp_data_sn, set_exp_data_sn, 36);
    u32_field!(
        /// Data-In/Data-Out/R2T: Buffer Offset (bytes 40..44).
        buffer_offset, set_buffer_offset, 40);
    u32_field!(
        /// SCSI Response: Bidirectional Read Residual Count (bytes 40..44).
        bidi_residual_count, set_bidi_residual_count, 40);
    u32_field!(
        /// SNACK: BegRun (bytes 40..44).
        beg_run, set_beg_run, 40);
    u32_field!(
        /// R2T: Desired Data Transfer Length (bytes 44..48).
        desired_data_transfer_len, set_desired_data_transfer_len, 44);
    u32_field!(
        /// SCSI Response / Data-In: Residual Count (bytes 44..48).
        residual_count, set_residual_count, 44);
    u32_field!(
        /// SNACK: RunLength (bytes 44..48).
        run_length, set_run_length, 44);

    u8_field!(
        /// Login Response: Status-Class (byte 36).
        status_class, set_status_class, 36);
    u8_field!(
        /// Login Response: Status-Detail (byte 37).
        status_detail, set_status_detail, 37);
    u8_field!(
        /// Async Message: AsyncEvent (byte 36).
        async_event, set_async_event, 36);
    u8_field!(
        /// Async Message: AsyncVCode (byte 37).
        async_vcode, set_async_vcode, 37);
    u16_field!(
        /// Async Message: Parameter1 (bytes 38..40).
        async_param1, set_async_param1, 38);
    u16_field!(
        /// Async Message: Parameter2 (bytes 40..42).
        async_param2, set_async_param2, 40);
    u16_field!(
        /// Async Message: Parameter3 (bytes 42..44).
        async_param3, set_async_param3, 42);
    u16_field!(
        /// Logout Response: Time2Wait (bytes 40..42).
        time2wait, set_time2wait, 40);
    u16_field!(
        /// Logout Response: Time2Retain (bytes 42..44).
        time2retain, set_time2retain, 42);

    /// SCSI Command: the CDB bytes 32..48 (the first 16 bytes of the CDB; longer CDBs
    /// continue in an Extended CDB AHS).
    pub fn cdb(&self) -> &[u8; 16] {
        // Infallible: a fixed 16-byte window of a 48-byte array.
        self.0[32..48].try_into().unwrap_or(&[0; 16])
    }

    /// Writes up to 16 CDB bytes (zero-filled); longer CDBs are truncated here and
    /// must carry the rest in an Extended CDB AHS.
    pub fn set_cdb(&mut self, cdb: &[u8]) {
        let n = cdb.len().min(16);
        self.0[32..48].fill(0);
        self.0[32..32 + n].copy_from_slice(&cdb[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_roundtrip() {
        for v in 0u8..=0xff {
            if let Some(op) = Opcode::from_u8(v) {
                assert_eq!(op as u8, v & 0x3f);
            }
        }
        assert_eq!(Opcode::from_u8(0x41), Some(Opcode::ScsiCommand));
        assert_eq!(Opcode::from_u8(0x07), None);
        assert!(Opcode::Snack.is_initiator());
        assert!(!Opcode::Reject.is_initiator());
    }

    #[test]
    fn fields_land_at_rfc_offsets() {
        let mut b = Bhs::new(Opcode::ScsiCommand);
        b.set_immediate(true);
        b.set_final(true);
        b.set_read(true);
        b.set_task_attr(task_attr::SIMPLE);
        b.set_data_segment_len(0x0123_4567);
        b.set_itt(0x1122_3344);
        b.set_exp_data_transfer_len(512);
        b.set_cmd_sn(7);
        b.set_exp_stat_sn(9);
        b.set_cdb(&[0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0]);
        assert_eq!(b.0[0], 0x41);
        assert_eq!(b.0[1], 0xc1);
        assert_eq!(&b.0[5..8], &[0x23, 0x45, 0x67]);
        assert_eq!(b.data_segment_len(), 0x23_4567);
        assert_eq!(&b.0[16..20], &[0x11, 0x22, 0x33, 0x44]);
        assert_eq!(b.exp_data_transfer_len(), 512);
        assert_eq!(b.cmd_sn(), 7);
        assert_eq!(b.exp_stat_sn(), 9);
        assert_eq!(b.cdb()[0], 0x28);
        assert_eq!(b.cdb()[8], 1);
        assert_eq!(b.task_attr(), task_attr::SIMPLE);
        assert!(b.read_bit() && !b.write_bit());
    }

    #[test]
    fn login_bits() {
        let mut b = Bhs::new(Opcode::LoginRequest);
        b.set_transit(true);
        b.set_csg(Stage::LoginOperational);
        b.set_nsg(Stage::FullFeature);
        assert_eq!(b.0[1], 0x87);
        assert_eq!(b.csg(), Stage::LoginOperational);
        assert_eq!(b.nsg(), Stage::FullFeature);
        b.set_isid([1, 2, 3, 4, 5, 6]);
        b.set_tsih(0xabcd);
        assert_eq!(&b.0[8..16], &[1, 2, 3, 4, 5, 6, 0xab, 0xcd]);
        b.set_cid(0x0102);
        assert_eq!(&b.0[20..22], &[1, 2]);
    }

    #[test]
    fn from_slice_is_checked() {
        assert!(Bhs::from_slice(&[0u8; 47]).is_none());
        assert!(Bhs::from_slice(&[0u8; 60]).is_some());
    }
}
