//! SendTargets (RFC 7143 appendix D, spec/scst.md 6.4): which targets an initiator is
//! shown, and at which portal.

use std::net::SocketAddr;

use crate::IscsiDriver;

/// The key list answering `SendTargets=<what>` for `initiator`, arriving on `portal`.
/// Only enabled targets that would give the initiator LUNs are listed.
pub fn send_targets(
    driver: &IscsiDriver,
    what: &str,
    initiator: &str,
    portal: SocketAddr,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !driver.enabled() {
        return out;
    }
    let addr = match portal {
        SocketAddr::V4(a) => format!("{}:{},1", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{},1", a.ip(), a.port()),
    };
    for t in driver.scst().targets("iscsi") {
        if !t.enabled()
            || !crate::params::portal_allowed(&t, portal.ip())
            || !t.initiator_has_luns(&crate::params::acl_name(&t, initiator, portal.ip()))
            || !crate::isns::visible(driver, &t.name, initiator)
        {
            continue;
        }
        if what != "All" && what != t.name && !what.is_empty() {
            continue;
        }
        out.push(("TargetName".to_string(), t.name.clone()));
        out.push(("TargetAddress".to_string(), addr.clone()));
    }
    out
}

use bytes::Bytes;
use iscsi_wire::pdu::{self, reject_reason, TargetSn};
use iscsi_wire::{Opcode, RESERVED_TAG};
use tokio::net::TcpStream;

use crate::io::{PduReader, PduWriter};
use crate::params::ConnParams;

/// The full-feature phase of a discovery session: Text (SendTargets), NOP-Out and
/// Logout; anything else is rejected.
pub(crate) async fn run(
    mut stream: TcpStream,
    mut reader: PduReader,
    p: ConnParams,
    initiator: &str,
    mut stat_sn: u32,
    mut exp_cmd_sn: u32,
) {
    let mut out = PduWriter::default();
    // A long SendTargets answer goes out in pieces (RFC 7143 11.11): what is left, and
    // the TTT the initiator echoes to ask for it.
    let mut pending: Option<(u32, Vec<u8>)> = None;
    let mut next_ttt = 1u32;
    loop {
        let pdu = match reader.recv(&mut stream).await {
            Ok(p) => p,
            Err(e) => {
                log::debug!("{initiator}: discovery session ended: {e}");
                return;
            }
        };
        let bhs = pdu.bhs;
        if !bhs.immediate() && bhs.cmd_sn() == exp_cmd_sn {
            exp_cmd_sn = exp_cmd_sn.wrapping_add(1);
        }
        let mut sn = || {
            let s = TargetSn {
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn: exp_cmd_sn.wrapping_add(31),
            };
            stat_sn = stat_sn.wrapping_add(1);
            s
        };
        let mut logout = false;
        match bhs.opcode() {
            Some(Opcode::TextRequest) => {
                let mut body = match pending.take() {
                    Some((ttt, rest)) if bhs.ttt() == ttt => rest,
                    _ => {
                        let keys = iscsi_wire::parse_text(&pdu.data).unwrap_or_default();
                        let mut answer = Vec::new();
                        if let Some((_, v)) = keys.iter().find(|(k, _)| k == "SendTargets") {
                            crate::isns::refresh_visibility(&p.driver, initiator).await;
                            answer = send_targets(&p.driver, v, initiator, p.local_addr);
                        }
                        iscsi_wire::encode_text(&answer)
                    }
                };
                let max = p.max_xmit_data_segment_length.max(512) as usize;
                let more = body.len() > max;
                let rest = if more {
                    body.split_off(max)
                } else {
                    Vec::new()
                };
                let ttt = if more {
                    next_ttt = next_ttt.wrapping_add(1).max(1);
                    pending = Some((next_ttt, rest));
                    next_ttt
                } else {
                    RESERVED_TAG
                };
                let b = pdu::text_response(
                    !more,
                    more,
                    bhs.lun(),
                    bhs.itt(),
                    ttt,
                    sn(),
                    body.len() as u32,
                );
                out.push(b, Some(Bytes::from(body)));
            }
            Some(Opcode::NopOut) if bhs.itt() != RESERVED_TAG => {
                let b = pdu::nop_in(
                    bhs.lun(),
                    bhs.itt(),
                    RESERVED_TAG,
                    sn(),
                    pdu.data.len() as u32,
                );
                out.push(b, Some(pdu.data));
            }
            Some(Opcode::NopOut) => {}
            Some(Opcode::LogoutRequest) => {
                out.push(
                    pdu::logout_response(bhs.itt(), pdu::logout_response::SUCCESS, 0, 0, sn()),
                    None,
                );
                logout = true;
            }
            _ => {
                let b = pdu::reject(reject_reason::PROTOCOL_ERROR, 0, sn());
                out.push(b, Some(Bytes::copy_from_slice(&bhs.0)));
            }
        }
        if out.flush(&mut stream).await.is_err() || logout {
            return;
        }
    }
}
