//! Task Management Function requests (RFC 7143 11.5, 11.6): decoded by the engine
//! ([`TmfRequest`], with the rule for tasks never received), acted on here against
//! the commands still collecting data, and in the core's [`Nexus`](scst_core::Nexus)
//! for the task sets, resets and waiting for aborted commands.

use iscsi_engine::full_feature::TmfRequest;
use iscsi_wire::pdu::tmf_response;
use scst_core::{Tmf, TmfStatus};

use super::Conn;
use crate::io::Pdu;

impl Conn {
    pub(super) fn on_tmf(&mut self, pdu: Pdu) {
        let bhs = pdu.bhs;
        if !self.accept_cmd_sn(&bhs) {
            return;
        }
        let tag = bhs.itt() as u64;
        let decode = scsi_wire::lun::decode_lun;
        let status = match TmfRequest::decode(&bhs) {
            TmfRequest::AbortTask {
                lun,
                rtt,
                ref_cmd_sn,
                cmd_sn,
            } => {
                let lun = decode(lun);
                if let Some(inc) = self.incoming.get(&rtt) {
                    if inc.lun == lun {
                        self.drop_incoming_where(|i| i.cmd.tag == rtt as u64);
                        Some(TmfStatus::Complete)
                    } else {
                        Some(TmfStatus::TaskNotExist)
                    }
                } else if self.nexus.contains(rtt as u64) {
                    self.nexus.tmf(
                        tag,
                        Tmf::AbortTask {
                            lun,
                            tag: rtt as u64,
                        },
                    )
                } else if self.ff.never_received(ref_cmd_sn, cmd_sn) {
                    Some(TmfStatus::Complete)
                } else {
                    Some(TmfStatus::TaskNotExist)
                }
            }
            TmfRequest::AbortTaskSet { lun } => {
                let lun = decode(lun);
                self.lun_tmf(tag, lun, Tmf::AbortTaskSet { lun })
            }
            TmfRequest::ClearTaskSet { lun } => {
                let lun = decode(lun);
                self.lun_tmf(tag, lun, Tmf::ClearTaskSet { lun })
            }
            TmfRequest::LunReset { lun } => {
                let lun = decode(lun);
                self.lun_tmf(tag, lun, Tmf::LunReset { lun })
            }
            TmfRequest::ClearAca { lun } => self.nexus.tmf(tag, Tmf::ClearAca { lun: decode(lun) }),
            req @ (TmfRequest::TargetWarmReset | TmfRequest::TargetColdReset) => {
                let status = self.nexus.tmf(tag, Tmf::TargetReset);
                self.drop_incoming_where(|_| true);
                if req == TmfRequest::TargetColdReset {
                    // Cold reset drops the connection after the response.
                    self.logged_out = true;
                }
                status
            }
            TmfRequest::TaskReassign => {
                self.tmf_code_response(
                    tag as u32,
                    tmf_response::ALLEGIANCE_REASSIGNMENT_UNSUPPORTED,
                );
                return;
            }
            TmfRequest::Unsupported(_) => Some(TmfStatus::NotSupported),
        };
        // Aborted commands end silently; the TMF answers now or when the last one it
        // waits for has finished (`Event::TmfDone`).
        self.drain_nexus();
        if let Some(status) = status {
            self.tmf_response(tag as u32, status);
        }
    }

    /// A TMF on one LUN's task set: the core's part, then the commands of that LUN
    /// still collecting data, unless the LUN does not exist.
    fn lun_tmf(&mut self, tag: u64, lun: u64, tmf: Tmf) -> Option<TmfStatus> {
        let status = self.nexus.tmf(tag, tmf);
        if status.is_none_or(|s| s == TmfStatus::Complete) {
            self.drop_incoming_where(|i| i.lun == lun);
        }
        status
    }

    pub(super) fn tmf_response(&mut self, itt: u32, status: TmfStatus) {
        let code = match status {
            TmfStatus::Complete => tmf_response::COMPLETE,
            TmfStatus::TaskNotExist => tmf_response::TASK_DOES_NOT_EXIST,
            TmfStatus::LunNotExist => tmf_response::LUN_DOES_NOT_EXIST,
            TmfStatus::NotSupported => tmf_response::NOT_SUPPORTED,
            TmfStatus::Rejected => tmf_response::REJECTED,
        };
        self.tmf_code_response(itt, code);
    }

    fn tmf_code_response(&mut self, itt: u32, code: u8) {
        let held = self.outstanding();
        let b = self.ff.tmf_response(itt, code, held);
        self.out.push(b, None);
    }
}
