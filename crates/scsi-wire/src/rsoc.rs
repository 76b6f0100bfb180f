//! MAINTENANCE IN service actions that describe the device server itself:
//! REPORT SUPPORTED OPERATION CODES (SPC-4 6.35) and REPORT SUPPORTED TASK MANAGEMENT
//! FUNCTIONS (SPC-4 6.36). Parameter data encoders and CDB decoders; which commands
//! and functions are supported is the caller's business.

use crate::cdb::{be16, be32, u8_at};
use crate::sense::Sense;

/// MAINTENANCE IN (0xA3) service actions.
pub mod service_action {
    pub const REPORT_TARGET_PORT_GROUPS: u8 = 0x0A;
    pub const REPORT_SUPPORTED_OPCODES: u8 = 0x0C;
    pub const REPORT_SUPPORTED_TMFS: u8 = 0x0D;
}

/// Recommended timeouts of one command (the command timeouts descriptor, SPC-4
/// 6.35.4), in seconds; 0 means "not specified".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandTimeouts {
    pub nominal_secs: u32,
    pub recommended_secs: u32,
}

/// What REPORT SUPPORTED OPERATION CODES says about one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandDesc<'a> {
    pub opcode: u8,
    /// Service action, for opcodes that have them.
    pub service_action: Option<u16>,
    /// CDB USAGE DATA: byte 0 is the opcode, the service action sits in its CDB field,
    /// every other bit is 1 where the device server evaluates that CDB bit. Its length
    /// is the CDB length.
    pub usage: &'a [u8],
    pub timeouts: CommandTimeouts,
}

/// Reporting options of REPORT SUPPORTED OPERATION CODES (CDB byte 2, bits 2-0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportingOptions {
    /// 000b: every supported command, all_commands format.
    All,
    /// 001b: one opcode (which must not have service actions), one_command format.
    Opcode,
    /// 010b: one opcode + service action (the opcode must have service actions).
    OpcodeServiceAction,
    /// 011b: one opcode, + service action if the opcode has them.
    OpcodeMaybeServiceAction,
}

/// REPORT SUPPORTED OPERATION CODES CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsocCdb {
    /// Return command timeouts descriptors.
    pub rctd: bool,
    pub options: ReportingOptions,
    pub opcode: u8,
    pub service_action: u16,
    pub alloc_len: u32,
}

/// Field pointer of REPORTING OPTIONS (byte 2, bits 2-0) for errors about it.
pub const REPORTING_OPTIONS_FIELD: (u16, u8) = (2, 2);

pub fn decode_rsoc(cdb: &[u8]) -> Result<RsocCdb, Sense> {
    let b2 = u8_at(cdb, 2)?;
    let options = match b2 & 0x07 {
        0 => ReportingOptions::All,
        1 => ReportingOptions::Opcode,
        2 => ReportingOptions::OpcodeServiceAction,
        3 => ReportingOptions::OpcodeMaybeServiceAction,
        _ => {
            let (byte, bit) = REPORTING_OPTIONS_FIELD;
            return Err(Sense::invalid_field_in_cdb(byte, Some(bit)));
        }
    };
    Ok(RsocCdb {
        rctd: b2 & 0x80 != 0,
        options,
        opcode: u8_at(cdb, 3)?,
        service_action: be16(cdb, 4)?,
        alloc_len: be32(cdb, 6)?,
    })
}

/// SUPPORT field values of the one_command format.
pub mod support {
    /// The device server does not support the command.
    pub const NOT_SUPPORTED: u8 = 0b001;
    /// Supported in conformance with a SCSI standard.
    pub const STANDARD: u8 = 0b011;
}

/// Bytes of a command timeouts descriptor.
const TIMEOUTS_LEN: usize = 12;

fn push_timeouts(out: &mut Vec<u8>, t: &CommandTimeouts) {
    // DESCRIPTOR LENGTH counts the bytes after itself.
    out.extend_from_slice(&((TIMEOUTS_LEN - 2) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]); // reserved, command specific
    out.extend_from_slice(&t.nominal_secs.to_be_bytes());
    out.extend_from_slice(&t.recommended_secs.to_be_bytes());
}

/// all_commands parameter data (SPC-4 6.35.2): COMMAND DATA LENGTH, then one command
/// descriptor per command, each followed by its timeouts descriptor when `rctd`.
pub fn all_commands(descs: &[CommandDesc<'_>], rctd: bool) -> Vec<u8> {
    let per = 8 + if rctd { TIMEOUTS_LEN } else { 0 };
    let mut out = Vec::with_capacity(4 + per * descs.len());
    out.extend_from_slice(&[0; 4]);
    for d in descs {
        out.push(d.opcode);
        out.push(0);
        out.extend_from_slice(&d.service_action.unwrap_or(0).to_be_bytes());
        out.push(0);
        out.push(if rctd { 0x02 } else { 0 } | u8::from(d.service_action.is_some()));
        out.extend_from_slice(&(d.usage.len() as u16).to_be_bytes());
        if rctd {
            push_timeouts(&mut out, &d.timeouts);
        }
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// one_command parameter data (SPC-4 6.35.3) for a supported command, or SUPPORT
/// "not supported" (and no CDB usage data) for `None`.
pub fn one_command(desc: Option<&CommandDesc<'_>>, rctd: bool) -> Vec<u8> {
    let Some(d) = desc else {
        return vec![0, support::NOT_SUPPORTED, 0, 0];
    };
    let mut out = Vec::with_capacity(4 + d.usage.len() + TIMEOUTS_LEN);
    out.push(0);
    out.push(if rctd { 0x80 } else { 0 } | support::STANDARD);
    out.extend_from_slice(&(d.usage.len() as u16).to_be_bytes());
    out.extend_from_slice(d.usage);
    if rctd {
        push_timeouts(&mut out, &d.timeouts);
    }
    out
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RstmfCdb {
    /// Return extended parameter data (timeouts).
    pub repd: bool,
    pub alloc_len: u32,
}

pub fn decode_rstmf(cdb: &[u8]) -> Result<RstmfCdb, Sense> {
    Ok(RstmfCdb {
        repd: u8_at(cdb, 2)? & 0x80 != 0,
        alloc_len: be32(cdb, 6)?,
    })
}

/// The task management functions a logical unit supports (SPC-4 table 372).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TmfSupport {
    pub abort_task: bool,
    pub abort_task_set: bool,
    pub clear_aca: bool,
    pub clear_task_set: bool,
    pub lu_reset: bool,
    pub query_task: bool,
    pub target_reset: bool,
    pub query_async_event: bool,
    pub query_task_set: bool,
    pub i_t_nexus_reset: bool,
    /// Extended data: TMF timeouts in units of 100 ms.
    pub long_timeout: u32,
    pub short_timeout: u32,
    /// Functions that use the short timeout (the others use the long one).
    pub abort_task_short: bool,
    pub clear_aca_short: bool,
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS parameter data: 4 bytes, or 16 with
/// `repd` (extended format with TMFTMOV and the timeouts).
pub fn supported_tmfs(s: &TmfSupport, repd: bool) -> Vec<u8> {
    let bit = |b: bool, n: u8| if b { 1u8 << n } else { 0 };
    let mut out = vec![
        bit(s.abort_task, 7)
            | bit(s.abort_task_set, 6)
            | bit(s.clear_aca, 5)
            | bit(s.clear_task_set, 4)
            | bit(s.lu_reset, 3)
            | bit(s.query_task, 2)
            | bit(s.target_reset, 1),
        bit(s.query_async_event, 2) | bit(s.query_task_set, 1) | bit(s.i_t_nexus_reset, 0),
        0,
        0,
    ];
    if repd {
        out[3] = 0x0C; // ADDITIONAL DATA LENGTH
        out.push(0x01); // TMFTMOV: the timeout fields are valid
        out.push(0);
        out.push(bit(s.abort_task_short, 7) | bit(s.clear_aca_short, 5));
        out.push(0);
        out.extend_from_slice(&s.long_timeout.to_be_bytes());
        out.extend_from_slice(&s.short_timeout.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_10_USAGE: [u8; 10] = [0x28, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0];
    const RC16_USAGE: [u8; 16] = [
        0x9E, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0,
    ];
    const T: CommandTimeouts = CommandTimeouts {
        nominal_secs: 1,
        recommended_secs: 30,
    };

    fn descs() -> [CommandDesc<'static>; 2] {
        [
            CommandDesc {
                opcode: 0x28,
                service_action: None,
                usage: &READ_10_USAGE,
                timeouts: T,
            },
            CommandDesc {
                opcode: 0x9E,
                service_action: Some(0x10),
                usage: &RC16_USAGE,
                timeouts: T,
            },
        ]
    }

    #[test]
    fn all_commands_format() {
        let b = all_commands(&descs(), false);
        assert_eq!(b.len(), 4 + 16);
        assert_eq!(&b[..4], &16u32.to_be_bytes());
        assert_eq!(&b[4..12], &[0x28, 0, 0, 0, 0, 0, 0, 10]);
        assert_eq!(&b[12..20], &[0x9E, 0, 0, 0x10, 0, 0x01, 0, 16]);
        let b = all_commands(&descs(), true);
        assert_eq!(b.len(), 4 + 2 * 20);
        // CTDP set, then the timeouts descriptor of length 0Ah.
        assert_eq!(b[9], 0x02);
        assert_eq!(&b[12..16], &[0, 0x0A, 0, 0]);
        assert_eq!(&b[16..24], &[0, 0, 0, 1, 0, 0, 0, 30]);
        assert_eq!(b[24 + 5], 0x03);
    }

    #[test]
    fn one_command_format() {
        let d = descs();
        let b = one_command(Some(&d[0]), false);
        assert_eq!(&b[..4], &[0, 0x03, 0, 10]);
        assert_eq!(&b[4..], &READ_10_USAGE);
        let b = one_command(Some(&d[1]), true);
        assert_eq!(b[1], 0x83);
        assert_eq!(b.len(), 4 + 16 + 12);
        assert_eq!(one_command(None, true), vec![0, 1, 0, 0]);
    }

    #[test]
    fn rsoc_cdb() {
        let c = [0xA3, 0x0C, 0x82, 0x9E, 0, 0x10, 0, 0, 1, 0, 0, 0];
        let r = decode_rsoc(&c).unwrap();
        assert!(r.rctd);
        assert_eq!(r.options, ReportingOptions::OpcodeServiceAction);
        assert_eq!((r.opcode, r.service_action, r.alloc_len), (0x9E, 0x10, 256));
        let bad = [0xA3, 0x0C, 0x04, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            decode_rsoc(&bad),
            Err(Sense::invalid_field_in_cdb(2, Some(2)))
        );
        assert!(decode_rsoc(&c[..8]).is_err());
    }

    #[test]
    fn tmf_data() {
        let s = TmfSupport {
            abort_task: true,
            abort_task_set: true,
            clear_aca: true,
            clear_task_set: true,
            lu_reset: true,
            i_t_nexus_reset: true,
            long_timeout: 300,
            short_timeout: 150,
            abort_task_short: true,
            clear_aca_short: true,
            ..Default::default()
        };
        assert_eq!(supported_tmfs(&s, false), vec![0xF8, 0x01, 0, 0]);
        let e = supported_tmfs(&s, true);
        assert_eq!(e.len(), 16);
        assert_eq!(&e[..8], &[0xF8, 0x01, 0, 0x0C, 0x01, 0, 0xA0, 0]);
        assert_eq!(&e[8..], &[0, 0, 0x01, 0x2C, 0, 0, 0, 0x96]);
        let c = decode_rstmf(&[0xA3, 0x0D, 0x80, 0, 0, 0, 0, 0, 0, 16, 0, 0]).unwrap();
        assert_eq!((c.repd, c.alloc_len), (true, 16));
    }
}
