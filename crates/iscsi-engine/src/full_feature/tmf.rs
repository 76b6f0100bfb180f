//! Task Management Function Requests (RFC 7143 11.5): what the initiator asks, in the
//! engine's terms, and the iSCSI rule for a task the target never received (11.6.1).
//! The task sets themselves are the core's; the driver acts on the request there.

use iscsi_wire::pdu::tmf_function;
use iscsi_wire::Bhs;

use super::{sn_lt, FullFeature};

/// A Task Management Function Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfRequest {
    /// ABORT TASK of the task `rtt` (Referenced Task Tag) on `lun`; `ref_cmd_sn` is its
    /// CmdSN, for a task never received.
    AbortTask {
        lun: [u8; 8],
        rtt: u32,
        ref_cmd_sn: u32,
        cmd_sn: u32,
    },
    AbortTaskSet {
        lun: [u8; 8],
    },
    ClearTaskSet {
        lun: [u8; 8],
    },
    LunReset {
        lun: [u8; 8],
    },
    ClearAca {
        lun: [u8; 8],
    },
    TargetWarmReset,
    /// Closes the connection after its response.
    TargetColdReset,
    /// TASK REASSIGN: no connection allegiance to reassign at ERL 0.
    TaskReassign,
    /// A function this target does not support (the QUERY functions of RFC 7144,
    /// reserved codes).
    Unsupported(u8),
}

impl TmfRequest {
    pub fn decode(bhs: &Bhs) -> TmfRequest {
        let lun = bhs.lun();
        match bhs.tmf_function() {
            tmf_function::ABORT_TASK => TmfRequest::AbortTask {
                lun,
                rtt: bhs.ref_task_tag(),
                ref_cmd_sn: bhs.ref_cmd_sn(),
                cmd_sn: bhs.cmd_sn(),
            },
            tmf_function::ABORT_TASK_SET => TmfRequest::AbortTaskSet { lun },
            tmf_function::CLEAR_TASK_SET => TmfRequest::ClearTaskSet { lun },
            tmf_function::LOGICAL_UNIT_RESET => TmfRequest::LunReset { lun },
            tmf_function::CLEAR_ACA => TmfRequest::ClearAca { lun },
            tmf_function::TARGET_WARM_RESET => TmfRequest::TargetWarmReset,
            tmf_function::TARGET_COLD_RESET => TmfRequest::TargetColdReset,
            tmf_function::TASK_REASSIGN => TmfRequest::TaskReassign,
            other => TmfRequest::Unsupported(other),
        }
    }
}

impl FullFeature {
    /// ABORT TASK of a task the connection does not hold: was it never received
    /// (inside the window and before this request: RFC 7143 11.6.1 b, it counts as
    /// received and aborted, FUNCTION COMPLETE), rather than received and already
    /// answered (below the window: 11.6.1 c, TASK DOES NOT EXIST)?
    pub fn never_received(&self, ref_cmd_sn: u32, cmd_sn: u32) -> bool {
        !sn_lt(ref_cmd_sn, self.window().exp_cmd_sn()) && !sn_lt(cmd_sn, ref_cmd_sn)
    }
}
