//! The full-feature phase of a discovery session (RFC 7143 appendix D, docs/scst-reference.md
//! 6.4): Text requests (SendTargets, answered in pieces when long), NOP-Out and
//! Logout; anything else is rejected. Which targets are listed is the driver's answer
//! to a query (see [`crate::Event::SendTargets`]).

use iscsi_wire::negotiate::SessionParams;
use iscsi_wire::pdu::{self, reject_reason, TargetSn};
use iscsi_wire::{Bhs, Opcode, RESERVED_TAG};

use crate::login::DiscoverySession;
use crate::Transmit;

/// What one PDU of a discovery session led to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Answered (or nothing to answer).
    Done,
    /// `SendTargets=<what>` needs the driver's listing before it can be answered.
    Query(String),
    /// Logged out: the response is queued, the connection ends.
    Logout,
}

/// A Text request waiting for its SendTargets listing.
struct Asked {
    lun: [u8; 8],
    itt: u32,
}

pub(crate) struct Discovery {
    pub(crate) initiator: String,
    params: SessionParams,
    stat_sn: u32,
    exp_cmd_sn: u32,
    /// A long answer goes out in pieces (RFC 7143 11.11): what is left, and the TTT
    /// the initiator echoes to ask for it.
    pending: Option<(u32, Vec<u8>)>,
    next_ttt: u32,
    asked: Option<Asked>,
}

impl Discovery {
    pub(crate) fn new(s: DiscoverySession) -> Discovery {
        Discovery {
            initiator: s.initiator,
            params: s.params,
            stat_sn: s.stat_sn,
            exp_cmd_sn: s.exp_cmd_sn,
            pending: None,
            next_ttt: 1,
            asked: None,
        }
    }

    /// What we accept in one data segment.
    pub(crate) fn max_recv(&self) -> u32 {
        self.params.max_recv_data_segment_length
    }

    /// Whether a SendTargets listing is awaited (no PDU is handled meanwhile).
    pub(crate) fn waiting(&self) -> bool {
        self.asked.is_some()
    }

    fn sn(&mut self) -> TargetSn {
        let s = TargetSn {
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.exp_cmd_sn.wrapping_add(31),
        };
        self.stat_sn = self.stat_sn.wrapping_add(1);
        s
    }

    pub(crate) fn handle(&mut self, bhs: &Bhs, data: &[u8], tx: &mut Transmit) -> Step {
        if !bhs.immediate() && bhs.cmd_sn() == self.exp_cmd_sn {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        }
        match bhs.opcode() {
            Some(Opcode::TextRequest) => {
                match self.pending.take() {
                    Some((ttt, rest)) if bhs.ttt() == ttt => {
                        self.text_response(bhs.lun(), bhs.itt(), rest, tx)
                    }
                    _ => {
                        let keys = iscsi_wire::parse_text(data).unwrap_or_default();
                        if let Some((_, what)) = keys.iter().find(|(k, _)| k == "SendTargets") {
                            self.asked = Some(Asked {
                                lun: bhs.lun(),
                                itt: bhs.itt(),
                            });
                            return Step::Query(what.clone());
                        }
                        self.text_response(bhs.lun(), bhs.itt(), Vec::new(), tx)
                    }
                }
                Step::Done
            }
            Some(Opcode::NopOut) if bhs.itt() != RESERVED_TAG => {
                let sn = self.sn();
                let b = pdu::nop_in(bhs.lun(), bhs.itt(), RESERVED_TAG, sn, data.len() as u32);
                tx.push(&b, data);
                Step::Done
            }
            Some(Opcode::NopOut) => Step::Done,
            Some(Opcode::LogoutRequest) => {
                let sn = self.sn();
                let b = pdu::logout_response(bhs.itt(), pdu::logout_response::SUCCESS, 0, 0, sn);
                tx.push(&b, &[]);
                Step::Logout
            }
            _ => {
                let sn = self.sn();
                tx.push(&pdu::reject(reject_reason::PROTOCOL_ERROR, 0, sn), &bhs.0);
                Step::Done
            }
        }
    }

    /// The driver's SendTargets listing for the Text request that asked.
    pub(crate) fn answer(&mut self, keys: &[(String, String)], tx: &mut Transmit) {
        if let Some(a) = self.asked.take() {
            let body = iscsi_wire::encode_text(keys);
            self.text_response(a.lun, a.itt, body, tx);
        }
    }

    fn text_response(&mut self, lun: [u8; 8], itt: u32, mut body: Vec<u8>, tx: &mut Transmit) {
        let max = self.params.max_xmit_data_segment_length.max(512) as usize;
        let more = body.len() > max;
        let ttt = if more {
            let rest = body.split_off(max);
            self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
            self.pending = Some((self.next_ttt, rest));
            self.next_ttt
        } else {
            RESERVED_TAG
        };
        let sn = self.sn();
        let b = pdu::text_response(!more, more, lun, itt, ttt, sn, body.len() as u32);
        tx.push(&b, &body);
    }
}
