//! Task Management Function requests (RFC 7143 11.5, 11.6): the iSCSI side (CmdSN,
//! commands still collecting data, the rules for tasks never received) here; the task
//! sets, resets and waiting for aborted commands in the core's [`Nexus`](scst_core::Nexus).

use iscsi_wire::pdu::{tmf_function, tmf_response};
use scst_core::{Tmf, TmfStatus};

use iscsi_engine::full_feature::sn_lt;

use super::Conn;
use crate::io::Pdu;

impl Conn {
    pub(super) fn on_tmf(&mut self, pdu: Pdu) {
        let bhs = pdu.bhs;
        if !self.accept_cmd_sn(&bhs) {
            return;
        }
        let lun = scsi_wire::lun::decode_lun(bhs.lun());
        let func = bhs.tmf_function();
        let tag = bhs.itt() as u64;
        let status = match func {
            tmf_function::ABORT_TASK => {
                let rtt = bhs.ref_task_tag();
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
                } else if !sn_lt(bhs.ref_cmd_sn(), self.ff.window().exp_cmd_sn())
                    && !sn_lt(bhs.cmd_sn(), bhs.ref_cmd_sn())
                {
                    // Never received but inside the window and before this request
                    // (RFC 7143 11.6.1 b): consider it received, and aborted.
                    Some(TmfStatus::Complete)
                } else {
                    // Received and already answered (its CmdSN is below the window):
                    // the task completed, there is nothing to abort (11.6.1 c).
                    Some(TmfStatus::TaskNotExist)
                }
            }
            tmf_function::ABORT_TASK_SET => self.lun_tmf(tag, lun, Tmf::AbortTaskSet { lun }),
            tmf_function::CLEAR_TASK_SET => self.lun_tmf(tag, lun, Tmf::ClearTaskSet { lun }),
            tmf_function::LOGICAL_UNIT_RESET => self.lun_tmf(tag, lun, Tmf::LunReset { lun }),
            tmf_function::CLEAR_ACA => self.nexus.tmf(tag, Tmf::ClearAca { lun }),
            tmf_function::TARGET_WARM_RESET | tmf_function::TARGET_COLD_RESET => {
                let status = self.nexus.tmf(tag, Tmf::TargetReset);
                self.drop_incoming_where(|_| true);
                if func == tmf_function::TARGET_COLD_RESET {
                    // Cold reset drops the connection after the response.
                    self.logged_out = true;
                }
                status
            }
            tmf_function::TASK_REASSIGN => {
                self.tmf_code_response(
                    tag as u32,
                    tmf_response::ALLEGIANCE_REASSIGNMENT_UNSUPPORTED,
                );
                return;
            }
            _ => Some(TmfStatus::NotSupported),
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
