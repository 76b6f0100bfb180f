//! Header constructors for every PDU the target sends and every PDU an initiator
//! sends, plus the codes that go in them.
//!
//! Constructors only build the 48-byte header; the data segment (sense data, text,
//! read data, the rejected header) is written separately so that the caller can send
//! it straight from its own buffer. `data_len` parameters become DataSegmentLength.

use crate::bhs::{flags, Bhs, Opcode, Stage, RESERVED_TAG};

/// The three sequence numbers every target PDU carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetSn {
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

impl TargetSn {
    fn apply(&self, b: &mut Bhs) {
        b.set_stat_sn(self.stat_sn);
        b.set_exp_cmd_sn(self.exp_cmd_sn);
        b.set_max_cmd_sn(self.max_cmd_sn);
    }
}

/// Residual of a SCSI command relative to its Expected Data Transfer Length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residual {
    #[default]
    None,
    /// Less data was transferred than expected (U bit); count = expected - actual.
    Underflow(u32),
    /// More data was needed than expected (O bit); count = needed - expected.
    Overflow(u32),
}

impl Residual {
    /// Decodes the U/O bits and Residual Count of a SCSI Response or Data-In header.
    pub fn from_bhs(b: &Bhs) -> Residual {
        if b.underflow_bit() {
            Residual::Underflow(b.residual_count())
        } else if b.overflow_bit() {
            Residual::Overflow(b.residual_count())
        } else {
            Residual::None
        }
    }

    fn apply(&self, b: &mut Bhs) {
        match *self {
            Residual::None => {}
            Residual::Underflow(n) => {
                b.set_underflow(true);
                b.set_residual_count(n);
            }
            Residual::Overflow(n) => {
                b.set_overflow(true);
                b.set_residual_count(n);
            }
        }
    }

    /// The residual for `expected` bytes requested and `actual` bytes the command
    /// wanted to transfer.
    pub fn compute(expected: u32, actual: u32) -> Residual {
        use std::cmp::Ordering::*;
        match actual.cmp(&expected) {
            Less => Residual::Underflow(expected - actual),
            Greater => Residual::Overflow(actual - expected),
            Equal => Residual::None,
        }
    }
}

/// SCSI Response "Response" codes (byte 2).
pub mod scsi_response {
    pub const COMMAND_COMPLETED: u8 = 0x00;
    pub const TARGET_FAILURE: u8 = 0x01;
}

/// Task management function codes (TMF Request byte 1).
pub mod tmf_function {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_ACA: u8 = 3;
    pub const CLEAR_TASK_SET: u8 = 4;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
    pub const TASK_REASSIGN: u8 = 8;
    // RFC 7144 additions.
    pub const QUERY_TASK: u8 = 9;
    pub const QUERY_TASK_SET: u8 = 10;
    pub const I_T_NEXUS_RESET: u8 = 11;
    pub const QUERY_ASYNC_EVENT: u8 = 12;
}

/// Task management response codes (TMF Response byte 2).
pub mod tmf_response {
    pub const COMPLETE: u8 = 0;
    pub const TASK_DOES_NOT_EXIST: u8 = 1;
    pub const LUN_DOES_NOT_EXIST: u8 = 2;
    pub const TASK_STILL_ALLEGIANT: u8 = 3;
    pub const ALLEGIANCE_REASSIGNMENT_UNSUPPORTED: u8 = 4;
    pub const NOT_SUPPORTED: u8 = 5;
    pub const AUTHORIZATION_FAILED: u8 = 6;
    /// RFC 7144.
    pub const FUNCTION_SUCCEEDED: u8 = 7;
    pub const REJECTED: u8 = 255;
}

/// Reject reasons (Reject byte 2).
pub mod reject_reason {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const SNACK_REJECT: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_DATA_ACK: u8 = 0x08;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    pub const OUT_OF_RESOURCES: u8 = 0x0a;
    pub const NEGOTIATION_RESET: u8 = 0x0b;
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// Logout reason codes (Logout Request byte 1).
pub mod logout_reason {
    pub const CLOSE_SESSION: u8 = 0;
    pub const CLOSE_CONNECTION: u8 = 1;
    pub const REMOVE_CONNECTION_FOR_RECOVERY: u8 = 2;
}

/// Logout response codes (Logout Response byte 2).
pub mod logout_response {
    pub const SUCCESS: u8 = 0;
    pub const CID_NOT_FOUND: u8 = 1;
    pub const RECOVERY_NOT_SUPPORTED: u8 = 2;
    pub const CLEANUP_FAILED: u8 = 3;
}

/// AsyncEvent codes (Async Message byte 36).
pub mod async_event {
    /// SCSI asynchronous event; the data segment carries sense data.
    pub const SCSI_EVENT: u8 = 0;
    pub const LOGOUT_REQUEST: u8 = 1;
    pub const CONNECTION_DROP: u8 = 2;
    pub const SESSION_DROP: u8 = 3;
    pub const NEGOTIATION_REQUEST: u8 = 4;
    pub const TASK_TERMINATION: u8 = 5;
    pub const VENDOR: u8 = 255;
}

/// SNACK types (SNACK byte 1 bits 0..3).
pub mod snack_type {
    pub const DATA_R2T: u8 = 0;
    pub const STATUS: u8 = 1;
    pub const DATA_ACK: u8 = 2;
    pub const R_DATA: u8 = 3;
}

/// Login response Status-Class / Status-Detail pairs (RFC 7143 11.13.5).
pub mod login_status {
    pub const SUCCESS: (u8, u8) = (0x00, 0x00);
    pub const TARGET_MOVED_TEMPORARILY: (u8, u8) = (0x01, 0x01);
    pub const TARGET_MOVED_PERMANENTLY: (u8, u8) = (0x01, 0x02);
    pub const INITIATOR_ERROR: (u8, u8) = (0x02, 0x00);
    pub const AUTHENTICATION_FAILURE: (u8, u8) = (0x02, 0x01);
    pub const AUTHORIZATION_FAILURE: (u8, u8) = (0x02, 0x02);
    pub const NOT_FOUND: (u8, u8) = (0x02, 0x03);
    pub const TARGET_REMOVED: (u8, u8) = (0x02, 0x04);
    pub const UNSUPPORTED_VERSION: (u8, u8) = (0x02, 0x05);
    pub const TOO_MANY_CONNECTIONS: (u8, u8) = (0x02, 0x06);
    pub const MISSING_PARAMETER: (u8, u8) = (0x02, 0x07);
    pub const CANT_INCLUDE_IN_SESSION: (u8, u8) = (0x02, 0x08);
    pub const SESSION_TYPE_NOT_SUPPORTED: (u8, u8) = (0x02, 0x09);
    pub const SESSION_DOES_NOT_EXIST: (u8, u8) = (0x02, 0x0a);
    pub const INVALID_DURING_LOGIN: (u8, u8) = (0x02, 0x0b);
    pub const TARGET_ERROR: (u8, u8) = (0x03, 0x00);
    pub const SERVICE_UNAVAILABLE: (u8, u8) = (0x03, 0x01);
    pub const OUT_OF_RESOURCES: (u8, u8) = (0x03, 0x02);
}

/// The only iSCSI version there is (Version-max / Version-min / Version-active).
pub const ISCSI_VERSION: u8 = 0x00;

// ======================= Target -> initiator =======================

/// SCSI Response. `data_len` is the length of the sense/response data segment
/// (2-byte SenseLength + sense, see [`encode_sense_segment`]), 0 if none. Bidirectional
/// residual fields stay zero (bidirectional commands are not supported).
pub fn scsi_response(
    itt: u32,
    response: u8,
    status: u8,
    residual: Residual,
    exp_data_sn: u32,
    sn: TargetSn,
    data_len: u32,
) -> Bhs {
    let mut b = Bhs::new(Opcode::ScsiResponse);
    b.set_flags(flags::FINAL);
    b.set_response(response);
    b.set_status(status);
    b.set_data_segment_len(data_len);
    b.set_itt(itt);
    sn.apply(&mut b);
    b.set_exp_data_sn(exp_data_sn);
    residual.apply(&mut b);
    b
}

/// Data-In parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataIn {
    pub lun: [u8; 8],
    pub itt: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
    pub data_len: u32,
    /// F bit: last PDU of the sequence (forced on when `status` is set).
    pub final_pdu: bool,
    /// SCSI status to fold into this (final) PDU, setting the S bit; StatSN and the
    /// residual are only meaningful then.
    pub status: Option<u8>,
    pub residual: Residual,
    /// ExpCmdSN/MaxCmdSN always; StatSN only when `status` is set.
    pub sn: TargetSn,
}

/// Data-In. TTT is the reserved value (no DataACK, ERL 0).
pub fn data_in(p: &DataIn) -> Bhs {
    let mut b = Bhs::new(Opcode::DataIn);
    b.set_final(p.final_pdu || p.status.is_some());
    b.set_data_segment_len(p.data_len);
    // The LUN is only required with the A bit, but libiscsi and Linux copy it; harmless.
    b.set_lun(p.lun);
    b.set_itt(p.itt);
    b.set_ttt(RESERVED_TAG);
    b.set_exp_cmd_sn(p.sn.exp_cmd_sn);
    b.set_max_cmd_sn(p.sn.max_cmd_sn);
    b.set_data_sn(p.data_sn);
    b.set_buffer_offset(p.buffer_offset);
    if let Some(status) = p.status {
        b.set_status_bit(true);
        b.set_status(status);
        b.set_stat_sn(p.sn.stat_sn);
        p.residual.apply(&mut b);
    }
    b
}

/// Ready To Transfer. `sn.stat_sn` is the *next* StatSN (R2T does not advance it).
pub fn r2t(
    lun: [u8; 8],
    itt: u32,
    ttt: u32,
    r2t_sn: u32,
    buffer_offset: u32,
    desired_len: u32,
    sn: TargetSn,
) -> Bhs {
    let mut b = Bhs::new(Opcode::R2t);
    b.set_flags(flags::FINAL);
    b.set_lun(lun);
    b.set_itt(itt);
    b.set_ttt(ttt);
    sn.apply(&mut b);
    b.set_r2t_sn(r2t_sn);
    b.set_buffer_offset(buffer_offset);
    b.set_desired_data_transfer_len(desired_len);
    b
}

/// Login Response parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResponse {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    /// (Status-Class, Status-Detail), see [`login_status`].
    pub status: (u8, u8),
    pub sn: TargetSn,
    pub data_len: u32,
}

pub fn login_response(p: &LoginResponse) -> Bhs {
    let mut b = Bhs::new(Opcode::LoginResponse);
    b.set_transit(p.transit);
    b.set_continue(p.cont);
    b.set_csg(p.csg);
    // NSG is only valid with T set; RFC says it is reserved otherwise.
    if p.transit {
        b.set_nsg(p.nsg);
    }
    b.set_version_max(ISCSI_VERSION);
    b.set_version_active(ISCSI_VERSION);
    b.set_data_segment_len(p.data_len);
    b.set_isid(p.isid);
    b.set_tsih(p.tsih);
    b.set_itt(p.itt);
    p.sn.apply(&mut b);
    b.set_status_class(p.status.0);
    b.set_status_detail(p.status.1);
    b
}

/// Text Response. `ttt` is the reserved tag on the final response, or a tag of the
/// target's choosing when more text follows (C bit or F=0).
#[allow(clippy::too_many_arguments)]
pub fn text_response(
    final_pdu: bool,
    cont: bool,
    lun: [u8; 8],
    itt: u32,
    ttt: u32,
    sn: TargetSn,
    data_len: u32,
) -> Bhs {
    let mut b = Bhs::new(Opcode::TextResponse);
    b.set_final(final_pdu);
    b.set_continue(cont);
    b.set_data_segment_len(data_len);
    b.set_lun(lun);
    b.set_itt(itt);
    b.set_ttt(ttt);
    sn.apply(&mut b);
    b
}

/// NOP-In. As a reply to a NOP-Out: `itt` = the NOP-Out's ITT, `ttt` = reserved, the
/// NOP-Out's data echoed. Target-initiated ping: `itt` = reserved, `ttt` = a tag the
/// initiator will echo (and StatSN is not advanced by the caller).
pub fn nop_in(lun: [u8; 8], itt: u32, ttt: u32, sn: TargetSn, data_len: u32) -> Bhs {
    let mut b = Bhs::new(Opcode::NopIn);
    b.set_flags(flags::FINAL);
    b.set_data_segment_len(data_len);
    b.set_lun(lun);
    b.set_itt(itt);
    b.set_ttt(ttt);
    sn.apply(&mut b);
    b
}

/// Logout Response (see [`logout_response`](mod@logout_response) codes).
pub fn logout_response(
    itt: u32,
    response: u8,
    time2wait: u16,
    time2retain: u16,
    sn: TargetSn,
) -> Bhs {
    let mut b = Bhs::new(Opcode::LogoutResponse);
    b.set_flags(flags::FINAL);
    b.set_response(response);
    b.set_itt(itt);
    sn.apply(&mut b);
    b.set_time2wait(time2wait);
    b.set_time2retain(time2retain);
    b
}

/// Task Management Function Response (see [`tmf_response`](mod@tmf_response) codes).
pub fn tmf_response(itt: u32, response: u8, sn: TargetSn) -> Bhs {
    let mut b = Bhs::new(Opcode::TaskMgmtResponse);
    b.set_flags(flags::FINAL);
    b.set_response(response);
    b.set_itt(itt);
    sn.apply(&mut b);
    b
}

/// Reject. The data segment is the rejected PDU's 48-byte header (send
/// `rejected.0` as the data); DataSegmentLength is set accordingly.
pub fn reject(reason: u8, data_sn_or_r2t_sn: u32, sn: TargetSn) -> Bhs {
    let mut b = Bhs::new(Opcode::Reject);
    b.set_flags(flags::FINAL);
    b.set_reject_reason(reason);
    b.set_data_segment_len(crate::bhs::BHS_LEN as u32);
    b.set_itt(RESERVED_TAG);
    sn.apply(&mut b);
    b.set_data_sn(data_sn_or_r2t_sn);
    b
}

/// Async Message parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncMessage {
    pub lun: [u8; 8],
    pub event: u8,
    pub vcode: u8,
    pub param1: u16,
    pub param2: u16,
    pub param3: u16,
    pub sn: TargetSn,
    /// SenseLength (2 bytes) + sense + iSCSI event data, see [`encode_sense_segment`].
    pub data_len: u32,
}

pub fn async_message(p: &AsyncMessage) -> Bhs {
    let mut b = Bhs::new(Opcode::AsyncMessage);
    b.set_flags(flags::FINAL);
    b.set_data_segment_len(p.data_len);
    b.set_lun(p.lun);
    b.set_itt(RESERVED_TAG);
    p.sn.apply(&mut b);
    b.set_async_event(p.event);
    b.set_async_vcode(p.vcode);
    b.set_async_param1(p.param1);
    b.set_async_param2(p.param2);
    b.set_async_param3(p.param3);
    b
}

/// The 2-byte SenseLength prefix of a SCSI Response / Async Message data segment.
/// Sense longer than 65535 bytes is truncated (SPC sense is at most 252 bytes).
pub fn sense_length_prefix(sense_len: usize) -> [u8; 2] {
    (sense_len.min(u16::MAX as usize) as u16).to_be_bytes()
}

/// Appends a sense data segment (SenseLength + sense) to `out`.
pub fn encode_sense_segment(sense: &[u8], out: &mut Vec<u8>) {
    let sense = &sense[..sense.len().min(u16::MAX as usize)];
    out.extend_from_slice(&sense_length_prefix(sense.len()));
    out.extend_from_slice(sense);
}

/// Extracts the sense bytes from a SCSI Response / Async Message data segment.
/// An empty segment means no sense; a SenseLength beyond the segment is an error.
pub fn decode_sense_segment(data: &[u8]) -> Option<&[u8]> {
    if data.is_empty() {
        return Some(&[]);
    }
    let len = u16::from_be_bytes([*data.first()?, *data.get(1)?]) as usize;
    data.get(2..2 + len)
}

// ======================= Initiator -> target =======================

/// SCSI Command parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiCommand<'a> {
    pub immediate: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub attr: u8,
    pub read: bool,
    pub write: bool,
    /// F bit: no unsolicited Data-Out PDUs follow.
    pub final_pdu: bool,
    pub exp_data_transfer_len: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    /// CDB; bytes beyond 16 must go in an Extended CDB AHS (see `frame::extended_cdb_ahs`).
    pub cdb: &'a [u8],
    /// Immediate data length.
    pub data_len: u32,
}

pub fn scsi_command(p: &ScsiCommand<'_>) -> Bhs {
    let mut b = Bhs::new(Opcode::ScsiCommand);
    b.set_immediate(p.immediate);
    b.set_final(p.final_pdu);
    b.set_read(p.read);
    b.set_write(p.write);
    b.set_task_attr(p.attr);
    b.set_data_segment_len(p.data_len);
    b.set_lun(p.lun);
    b.set_itt(p.itt);
    b.set_exp_data_transfer_len(p.exp_data_transfer_len);
    b.set_cmd_sn(p.cmd_sn);
    b.set_exp_stat_sn(p.exp_stat_sn);
    b.set_cdb(p.cdb);
    b
}

/// Data-Out. `ttt` = the R2T's TTT for solicited data, reserved for unsolicited data.
#[allow(clippy::too_many_arguments)]
pub fn data_out(
    lun: [u8; 8],
    itt: u32,
    ttt: u32,
    data_sn: u32,
    buffer_offset: u32,
    final_pdu: bool,
    exp_stat_sn: u32,
    data_len: u32,
) -> Bhs {
    let mut b = Bhs::new(Opcode::DataOut);
    b.set_final(final_pdu);
    b.set_data_segment_len(data_len);
    b.set_lun(lun);
    b.set_itt(itt);
    b.set_ttt(ttt);
    b.set_exp_stat_sn(exp_stat_sn);
    b.set_data_sn(data_sn);
    b.set_buffer_offset(buffer_offset);
    b
}

/// Login Request parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub data_len: u32,
}

pub fn login_request(p: &LoginRequest) -> Bhs {
    let mut b = Bhs::new(Opcode::LoginRequest);
    // Login requests are always immediate (RFC 7143 11.12).
    b.set_immediate(true);
    b.set_transit(p.transit);
    b.set_continue(p.cont);
    b.set_csg(p.csg);
    if p.transit {
        b.set_nsg(p.nsg);
    }
    b.set_version_max(ISCSI_VERSION);
    b.set_version_min(ISCSI_VERSION);
    b.set_data_segment_len(p.data_len);
    b.set_isid(p.isid);
    b.set_tsih(p.tsih);
    b.set_itt(p.itt);
    b.set_cid(p.cid);
    b.set_cmd_sn(p.cmd_sn);
    b.set_exp_stat_sn(p.exp_stat_sn);
    b
}

/// Text Request. `ttt` is reserved for a new request, or the TTT of the previous
/// Text Response when continuing a long response.
#[allow(clippy::too_many_arguments)]
pub fn text_request(
    immediate: bool,
    final_pdu: bool,
    cont: bool,
    itt: u32,
    ttt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    data_len: u32,
) -> Bhs {
    let mut b = Bhs::new(Opcode::TextRequest);
    b.set_immediate(immediate);
    b.set_final(final_pdu);
    b.set_continue(cont);
    b.set_data_segment_len(data_len);
    b.set_itt(itt);
    b.set_ttt(ttt);
    b.set_cmd_sn(cmd_sn);
    b.set_exp_stat_sn(exp_stat_sn);
    b
}

/// NOP-Out. A ping: `itt` = a fresh tag, `ttt` = reserved. A reply to a target NOP-In:
/// `itt` = reserved, `ttt` = the NOP-In's TTT, `immediate` = true.
#[allow(clippy::too_many_arguments)]
pub fn nop_out(
    immediate: bool,
    lun: [u8; 8],
    itt: u32,
    ttt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    data_len: u32,
) -> Bhs {
    let mut b = Bhs::new(Opcode::NopOut);
    b.set_immediate(immediate);
    b.set_flags(flags::FINAL);
    b.set_data_segment_len(data_len);
    b.set_lun(lun);
    b.set_itt(itt);
    b.set_ttt(ttt);
    b.set_cmd_sn(cmd_sn);
    b.set_exp_stat_sn(exp_stat_sn);
    b
}

/// Task Management Function Request parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TmfRequest {
    pub immediate: bool,
    pub function: u8,
    pub lun: [u8; 8],
    pub itt: u32,
    /// ITT of the task to abort (ABORT TASK / QUERY TASK), reserved otherwise.
    pub ref_task_tag: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: u32,
    pub exp_data_sn: u32,
}

pub fn tmf_request(p: &TmfRequest) -> Bhs {
    let mut b = Bhs::new(Opcode::TaskMgmtRequest);
    b.set_immediate(p.immediate);
    b.set_flags(flags::FINAL);
    b.set_tmf_function(p.function);
    b.set_lun(p.lun);
    b.set_itt(p.itt);
    b.set_ref_task_tag(p.ref_task_tag);
    b.set_cmd_sn(p.cmd_sn);
    b.set_exp_stat_sn(p.exp_stat_sn);
    b.set_ref_cmd_sn(p.ref_cmd_sn);
    b.set_exp_data_sn(p.exp_data_sn);
    b
}

/// Logout Request (see [`logout_reason`] codes).
pub fn logout_request(
    immediate: bool,
    reason: u8,
    itt: u32,
    cid: u16,
    cmd_sn: u32,
    exp_stat_sn: u32,
) -> Bhs {
    let mut b = Bhs::new(Opcode::LogoutRequest);
    b.set_immediate(immediate);
    b.set_flags(flags::FINAL);
    b.set_logout_reason(reason);
    b.set_itt(itt);
    b.set_cid(cid);
    b.set_cmd_sn(cmd_sn);
    b.set_exp_stat_sn(exp_stat_sn);
    b
}

/// SNACK Request (see [`snack_type`]).
#[allow(clippy::too_many_arguments)]
pub fn snack(
    snack_type: u8,
    lun: [u8; 8],
    itt: u32,
    ttt: u32,
    exp_stat_sn: u32,
    beg_run: u32,
    run_length: u32,
) -> Bhs {
    let mut b = Bhs::new(Opcode::Snack);
    b.set_flags(flags::FINAL);
    b.set_snack_type(snack_type);
    b.set_lun(lun);
    b.set_itt(itt);
    b.set_ttt(ttt);
    b.set_exp_stat_sn(exp_stat_sn);
    b.set_beg_run(beg_run);
    b.set_run_length(run_length);
    b
}

/// Encodes a LUN number as an 8-byte SAM LUN: peripheral addressing (method 0) below
/// 256, flat addressing (method 1) up to 16383, which is what SCST reports by default.
pub fn lun_from_u16(lun: u16) -> [u8; 8] {
    let mut l = [0u8; 8];
    if lun < 256 {
        l[1] = lun as u8;
    } else {
        let v = 0x4000 | (lun & 0x3fff);
        l[..2].copy_from_slice(&v.to_be_bytes());
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    const SN: TargetSn = TargetSn {
        stat_sn: 0x10,
        exp_cmd_sn: 0x20,
        max_cmd_sn: 0x30,
    };

    #[test]
    fn scsi_response_layout() {
        let b = scsi_response(5, 0, 2, Residual::Underflow(100), 3, SN, 20);
        assert_eq!(b.0[0], 0x21);
        assert_eq!(b.0[1], 0x82);
        assert_eq!(b.0[3], 2);
        assert_eq!(b.data_segment_len(), 20);
        assert_eq!(b.stat_sn(), 0x10);
        assert_eq!(b.exp_cmd_sn(), 0x20);
        assert_eq!(b.max_cmd_sn(), 0x30);
        assert_eq!(b.exp_data_sn(), 3);
        assert_eq!(b.bidi_residual_count(), 0);
        assert_eq!(Residual::from_bhs(&b), Residual::Underflow(100));
        let o = scsi_response(5, 0, 0, Residual::Overflow(7), 0, SN, 0);
        assert_eq!(o.0[1], 0x84);
        assert_eq!(Residual::from_bhs(&o), Residual::Overflow(7));
    }

    #[test]
    fn data_in_with_and_without_status() {
        let mut p = DataIn {
            lun: lun_from_u16(1),
            itt: 9,
            data_sn: 2,
            buffer_offset: 8192,
            data_len: 4096,
            sn: SN,
            ..Default::default()
        };
        let b = data_in(&p);
        assert_eq!(b.0[1], 0);
        assert_eq!(b.stat_sn(), 0, "StatSN reserved without S");
        assert_eq!(b.ttt(), RESERVED_TAG);
        assert_eq!(b.data_sn(), 2);
        assert_eq!(b.buffer_offset(), 8192);
        p.status = Some(0);
        p.residual = Residual::Underflow(512);
        let b = data_in(&p);
        assert_eq!(b.0[1], 0x83);
        assert_eq!(b.stat_sn(), 0x10);
        assert_eq!(b.residual_count(), 512);
    }

    #[test]
    fn r2t_and_reject() {
        let b = r2t(lun_from_u16(0), 1, 2, 3, 4, 5, SN);
        assert_eq!(b.opcode(), Some(Opcode::R2t));
        assert_eq!((b.ttt(), b.r2t_sn(), b.buffer_offset()), (2, 3, 4));
        assert_eq!(b.desired_data_transfer_len(), 5);
        let r = reject(reject_reason::PROTOCOL_ERROR, 0, SN);
        assert_eq!(r.reject_reason(), 4);
        assert_eq!(r.data_segment_len(), 48);
        assert_eq!(r.itt(), RESERVED_TAG);
    }

    #[test]
    fn login_roundtrip() {
        let req = login_request(&LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::SecurityNegotiation,
            nsg: Stage::LoginOperational,
            isid: [0x80, 1, 2, 3, 4, 5],
            tsih: 0,
            itt: 0,
            cid: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
            data_len: 10,
        });
        assert_eq!(req.0[0], 0x43);
        assert_eq!(req.0[1], 0x81);
        let resp = login_response(&LoginResponse {
            transit: false,
            cont: false,
            csg: Stage::LoginOperational,
            nsg: Stage::FullFeature,
            isid: req.isid(),
            tsih: 7,
            itt: req.itt(),
            status: login_status::NOT_FOUND,
            sn: SN,
            data_len: 0,
        });
        assert_eq!(resp.0[1], 0x04, "NSG is zero without T");
        assert_eq!((resp.status_class(), resp.status_detail()), (2, 3));
        assert_eq!(resp.tsih(), 7);
    }

    #[test]
    fn sense_segment() {
        let mut v = Vec::new();
        encode_sense_segment(&[0x70, 0, 6], &mut v);
        assert_eq!(v, [0, 3, 0x70, 0, 6]);
        assert_eq!(decode_sense_segment(&v), Some(&[0x70, 0, 6][..]));
        assert_eq!(decode_sense_segment(&[0, 9, 1]), None);
        assert_eq!(decode_sense_segment(&[0]), None);
        assert_eq!(decode_sense_segment(&[]), Some(&[][..]));
    }

    #[test]
    fn luns() {
        assert_eq!(lun_from_u16(5), [0, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lun_from_u16(300), [0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
    }
}
