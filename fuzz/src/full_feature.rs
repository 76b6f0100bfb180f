//! The full-feature phase of a normal session (iscsi-engine's `FullFeature`) driven as
//! the connection drives it, from the end of the login to logout: SCSI commands with
//! immediate data, Data-Out in and out of sequence, R2Ts, answers with data-in and
//! sense, NOP-Out pings and answers, text, task management requests and responses,
//! rejects and clock steps. Every Data-Out the engine accepts fits its command's
//! buffer, every R2T stays within the transfer and MaxBurstLength, every answer
//! carries exactly the data-in it announces, StatSN moves by one per PDU with status,
//! and ExpCmdSN never goes back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use iscsi_engine::full_feature::{
    data_in_len, Admit, CommandFault, DataOut, DataOutParams, Reply, ResponseSink, TaskInfo, Timer,
    TmfRequest, WriteSequence,
};
use iscsi_engine::{FullFeature, FullFeatureConfig};
use iscsi_wire::pdu::{self, logout_reason, reject_reason, tmf_response};
use iscsi_wire::{Bhs, Opcode, RESERVED_TAG};

/// A command the fake driver holds: its write sequence, buffer and transfer length.
struct Held {
    write: Option<WriteSequence>,
    buffer: usize,
    edtl: u32,
    read: bool,
    /// The TTT of its last R2T, for Data-Outs that answer it.
    ttt: u32,
}

/// Counts what an answer attaches.
#[derive(Default)]
struct Sink {
    data: u32,
    status_pdus: u32,
    last_seen: bool,
}

impl ResponseSink for Sink {
    fn data_in(&mut self, bhs: Bhs, len: u32, last: bool) {
        assert!(!self.last_seen, "Data-In after the last one");
        assert_eq!(bhs.opcode(), Some(Opcode::DataIn));
        assert_eq!(bhs.data_segment_len(), len);
        assert_eq!(bhs.buffer_offset(), self.data);
        self.data += len;
        self.last_seen = last;
        self.status_pdus += u32::from(bhs.status_bit());
    }
    fn response(&mut self, bhs: Bhs, sense: bool) {
        assert_eq!(bhs.opcode(), Some(Opcode::ScsiResponse));
        assert_eq!(sense, bhs.data_segment_len() > 0);
        self.status_pdus += 1;
    }
}

/// A PDU with status carries the StatSN expected, and the next one follows it.
fn status(b: &Bhs, stat_sn: &mut u32) {
    assert_eq!(b.stat_sn(), *stat_sn, "StatSN out of step");
    *stat_sn = stat_sn.wrapping_add(1);
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut x = [0u8; 4];
    for (k, v) in x.iter_mut().enumerate() {
        *v = b.get(i + k).copied().unwrap_or(0);
    }
    u32::from_le_bytes(x)
}

pub fn run(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let params = DataOutParams {
        first_burst_length: 4096 << (flags & 3),
        max_burst_length: 8192 << ((flags >> 2) & 3),
        max_outstanding_r2t: 1 + u32::from((flags >> 4) & 3),
        initial_r2t: flags & 0x40 != 0,
        immediate_data: flags & 0x80 == 0,
    };
    let mut now = Instant::now();
    let mut ff = FullFeature::new(
        FullFeatureConfig {
            stat_sn: 7,
            exp_cmd_sn: 1,
            queued_commands: 8,
            nop_in_interval: Some(Duration::from_secs(1)),
            nop_in_timeout: Duration::from_secs(2),
            data_out: params,
            max_xmit_data_segment_length: 8192,
        },
        now,
    );
    let mut held: BTreeMap<u32, Held> = BTreeMap::new();
    let mut cmd_sn = 1u32;
    let mut itt = 0u32;
    let mut ping_ttt = RESERVED_TAG;
    let mut stat_sn = 7u32;
    for _ in 0..512 {
        let Some((&op, tail)) = rest.split_first() else {
            break;
        };
        let (arg, tail) = tail.split_at(tail.len().min(8));
        rest = tail;
        let a = u32_at(arg, 0);
        let b = u32_at(arg, 4);
        let sel = arg.first().copied().unwrap_or(0);
        let outstanding = held.len();
        let before = ff.window().exp_cmd_sn();
        match op % 10 {
            // A SCSI command, its CmdSN right or off by the selector.
            0 => {
                itt = itt.wrapping_add(1);
                let (read, write) = (sel & 1 != 0, sel & 2 != 0);
                let edtl = a % (256 << 10);
                let imm = if write { (b % 16384).min(edtl) } else { b % 2 };
                let sn = if sel & 4 != 0 {
                    cmd_sn.wrapping_add(u32::from(sel >> 5))
                } else {
                    cmd_sn
                };
                let bhs = pdu::scsi_command(&pdu::ScsiCommand {
                    immediate: sel & 8 != 0,
                    lun: [0; 8],
                    itt,
                    attr: 0,
                    read,
                    write,
                    final_pdu: sel & 16 != 0,
                    exp_data_transfer_len: edtl,
                    cmd_sn: sn,
                    exp_stat_sn: stat_sn,
                    cdb: &[0; 16],
                    data_len: imm,
                });
                let admit = ff.admit(&bhs, outstanding);
                if admit == Admit::InOrder {
                    cmd_sn = cmd_sn.wrapping_add(1);
                }
                if !admit.accepted() {
                    continue;
                }
                match ff.command(&bhs, imm) {
                    Err(CommandFault::Bidirectional) => assert!(read && write),
                    Err(CommandFault::Malformed) => {
                        assert!(imm > 0, "no data cannot be malformed")
                    }
                    Ok(write_seq) => {
                        assert_eq!(write_seq.is_some(), write);
                        if let Some(w) = &write_seq {
                            assert!(w.unsolicited_limit() <= edtl.max(imm));
                        }
                        held.insert(
                            itt,
                            Held {
                                write: write_seq,
                                buffer: edtl as usize,
                                edtl,
                                read,
                                ttt: RESERVED_TAG,
                            },
                        );
                    }
                }
            }
            // A Data-Out for a held command: solicited, unsolicited, or a stray TTT.
            1 => {
                let Some((&k, h)) = held.iter_mut().nth(a as usize % outstanding.max(1)) else {
                    continue;
                };
                let Some(w) = h.write.as_mut() else { continue };
                let ttt = match sel & 3 {
                    0 => RESERVED_TAG,
                    1 => h.ttt,
                    _ => b,
                };
                let len = b % 16384;
                let off = u32_at(arg, 2) % (h.edtl + 1);
                let d = pdu::data_out(
                    [0; 8],
                    k,
                    ttt,
                    u32::from(sel >> 4),
                    off,
                    sel & 4 != 0,
                    stat_sn,
                    len,
                );
                if let DataOut::Accept { offset } = ff.data_out(w, &d, len, h.buffer) {
                    assert_eq!(offset, off as usize);
                    assert!(
                        offset + len as usize <= h.buffer,
                        "Data-Out beyond the buffer"
                    );
                }
            }
            // R2Ts for every held write that may have them.
            2 => {
                for (&k, h) in held.iter_mut() {
                    let Some(w) = h.write.as_mut() else { continue };
                    while let Some(r) = ff.r2t(w, [0; 8], k, h.edtl, outstanding) {
                        assert_eq!(r.opcode(), Some(Opcode::R2t));
                        let end = r.buffer_offset() as u64 + r.desired_data_transfer_len() as u64;
                        assert!(end <= h.edtl as u64, "R2T beyond the transfer");
                        assert!(r.desired_data_transfer_len() <= params.max_burst_length);
                        assert!(w.r2ts_outstanding() <= params.max_outstanding_r2t as usize);
                        assert_ne!(r.ttt(), RESERVED_TAG);
                        h.ttt = r.ttt();
                    }
                }
            }
            // A held command answered: data-in, status, sense.
            3 => {
                let Some(&k) = held.keys().nth(a as usize % outstanding.max(1)) else {
                    continue;
                };
                let Some(h) = held.remove(&k) else { continue };
                let task = TaskInfo {
                    itt: k,
                    lun: [0; 8],
                    edtl: h.edtl,
                    read: h.read,
                };
                let reply = Reply {
                    status: if sel & 1 != 0 { 2 } else { 0 },
                    data_len: b % (300 << 10),
                    data_out_len: (sel & 2 != 0).then_some(a % 65536),
                    sense_len: if sel & 4 != 0 { 20 } else { 0 },
                };
                let mut sink = Sink::default();
                let first = ff.sn(held.len()).stat_sn;
                ff.respond(&task, &reply, held.len(), &mut sink);
                assert_eq!(sink.data, data_in_len(&task, &reply));
                assert_eq!(sink.status_pdus, 1, "one status per command");
                assert_eq!(first, stat_sn);
                stat_sn = stat_sn.wrapping_add(1);
            }
            // A NOP-Out: a ping of ours answered (rightly or not), or one of its own.
            4 => {
                let (i, t) = if sel & 1 != 0 {
                    (RESERVED_TAG, if sel & 2 != 0 { ping_ttt } else { b })
                } else {
                    itt = itt.wrapping_add(1);
                    (if sel & 2 != 0 { RESERVED_TAG } else { itt }, RESERVED_TAG)
                };
                let n = pdu::nop_out(sel & 4 != 0, [0; 8], i, t, cmd_sn, stat_sn, a % 64);
                if t == RESERVED_TAG && sel & 4 == 0 {
                    cmd_sn = cmd_sn.wrapping_add(1);
                }
                ff.received();
                if let Some(r) = ff.nop_out(&n, a % 64, outstanding) {
                    assert_eq!(r.opcode(), Some(Opcode::NopIn));
                    assert_eq!(r.data_segment_len(), a % 64);
                    status(&r, &mut stat_sn);
                }
            }
            // Text: SendTargets or anything.
            5 => {
                itt = itt.wrapping_add(1);
                let req = pdu::text_request(
                    sel & 1 != 0,
                    true,
                    false,
                    itt,
                    RESERVED_TAG,
                    cmd_sn,
                    stat_sn,
                    0,
                );
                if sel & 1 == 0 {
                    cmd_sn = cmd_sn.wrapping_add(1);
                }
                if let Some(t) = ff.text(&req, arg, outstanding) {
                    let keys = [("TargetName".to_string(), "iqn.x:t".to_string())];
                    let (r, seg) = ff.answer_text(&t, &keys, outstanding);
                    assert_eq!(r.data_segment_len() as usize, seg.len());
                    status(&r, &mut stat_sn);
                }
            }
            // A TMF request decoded and answered, or a PDU rejected.
            6 => {
                if sel & 2 != 0 {
                    let req = pdu::tmf_request(&pdu::TmfRequest {
                        immediate: true,
                        function: (a % 16) as u8,
                        lun: [0; 8],
                        itt,
                        ref_task_tag: b,
                        cmd_sn,
                        exp_stat_sn: stat_sn,
                        ref_cmd_sn: cmd_sn.wrapping_sub(a >> 28),
                        exp_data_sn: 0,
                    });
                    if let TmfRequest::AbortTask {
                        ref_cmd_sn, cmd_sn, ..
                    } = TmfRequest::decode(&req)
                    {
                        // Below the window: answered already, never "never received".
                        if iscsi_engine::full_feature::sn_lt(ref_cmd_sn, ff.window().exp_cmd_sn()) {
                            assert!(!ff.never_received(ref_cmd_sn, cmd_sn));
                        }
                    }
                }
                if sel & 1 != 0 {
                    let r = ff.tmf_response(a, tmf_response::COMPLETE, outstanding);
                    status(&r, &mut stat_sn);
                } else {
                    let r = ff.reject(reject_reason::PROTOCOL_ERROR, outstanding);
                    status(&r, &mut stat_sn);
                }
            }
            // Time passes; the keep-alive may ping or give up.
            7 | 8 => {
                now += Duration::from_millis(u64::from(a % 4000));
                match ff.handle_timeout(now, outstanding) {
                    Timer::Idle => {}
                    Timer::Ping(p) => {
                        assert_eq!(p.stat_sn(), stat_sn, "a ping carries no status");
                        ping_ttt = p.ttt();
                    }
                    Timer::Dead => return,
                }
                if let Some(t) = ff.poll_timeout() {
                    assert!(t > now, "a deadline already past");
                }
            }
            // Logout ends the phase.
            _ => {
                itt = itt.wrapping_add(1);
                let l = pdu::logout_request(
                    sel & 1 != 0,
                    logout_reason::CLOSE_SESSION,
                    itt,
                    0,
                    cmd_sn,
                    stat_sn,
                );
                let r = ff.logout(&l, outstanding);
                assert_eq!(r.opcode(), Some(Opcode::LogoutResponse));
                status(&r, &mut stat_sn);
                return;
            }
        }
        let after = ff.window().exp_cmd_sn();
        assert!(
            !iscsi_engine::full_feature::sn_lt(after, before),
            "ExpCmdSN went back"
        );
    }
}
