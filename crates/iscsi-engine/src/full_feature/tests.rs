//! The full-feature pieces driven as an initiator would, with a fake clock.

use std::time::{Duration, Instant};

use iscsi_wire::pdu::{self, logout_reason};
use iscsi_wire::{Opcode, RESERVED_TAG};

use super::*;

const WINDOW: u32 = 4;
const PARAMS: DataOutParams = DataOutParams {
    first_burst_length: 8192,
    max_burst_length: 16384,
    max_outstanding_r2t: 2,
    initial_r2t: false,
    immediate_data: true,
};

fn session(now: Instant, interval: Option<u64>) -> FullFeature {
    FullFeature::new(
        FullFeatureConfig {
            stat_sn: 100,
            exp_cmd_sn: 10,
            queued_commands: WINDOW,
            nop_in_interval: interval.map(Duration::from_secs),
            nop_in_timeout: Duration::from_secs(2),
            data_out: PARAMS,
            max_xmit_data_segment_length: 8192,
        },
        now,
    )
}

/// A NOP-Out ping from the initiator: an ordered request with `cmd_sn`.
fn ping(itt: u32, cmd_sn: u32, immediate: bool) -> Bhs {
    pdu::nop_out(immediate, [0; 8], itt, RESERVED_TAG, cmd_sn, 0, 0)
}

#[test]
fn window_takes_requests_in_order_and_ignores_the_rest() {
    let mut ff = session(Instant::now(), None);
    assert_eq!(ff.admit(&ping(1, 10, false), 0), Admit::InOrder);
    // A duplicate and one ahead of a missing CmdSN are ignored and move nothing.
    assert_eq!(
        ff.admit(&ping(2, 10, false), 0),
        Admit::OutOfOrder {
            cmd_sn: 10,
            expected: 11
        }
    );
    assert_eq!(
        ff.admit(&ping(3, 13, false), 0),
        Admit::OutOfOrder {
            cmd_sn: 13,
            expected: 11
        }
    );
    assert_eq!(ff.window().exp_cmd_sn(), 11);
    assert_eq!(ff.admit(&ping(4, 11, false), 0), Admit::InOrder);
    assert_eq!(ff.window().exp_cmd_sn(), 12);
}

#[test]
fn max_cmd_sn_shrinks_with_the_commands_held() {
    let mut ff = session(Instant::now(), None);
    let sn = ff.sn(0);
    assert_eq!((sn.exp_cmd_sn, sn.max_cmd_sn), (10, 10 + WINDOW - 1));
    // With the whole window held, MaxCmdSN = ExpCmdSN - 1: the window is closed.
    assert_eq!(ff.sn(WINDOW as usize).max_cmd_sn, 9);
    assert_eq!(
        ff.admit(&ping(1, 10, false), WINDOW as usize),
        Admit::BeyondMax { cmd_sn: 10, max: 9 }
    );
    assert_eq!(ff.window().exp_cmd_sn(), 10);
    // Immediate requests pass a closed window and leave CmdSN alone, up to twice its
    // depth.
    assert_eq!(
        ff.admit(&ping(2, 10, true), WINDOW as usize),
        Admit::Immediate
    );
    assert_eq!(ff.window().exp_cmd_sn(), 10);
    assert!(!ff.window().overfull(2 * WINDOW as usize - 1));
    assert!(ff.window().overfull(2 * WINDOW as usize));
}

#[test]
fn window_arithmetic_wraps() {
    let mut ff = FullFeature::new(
        FullFeatureConfig {
            stat_sn: u32::MAX,
            exp_cmd_sn: u32::MAX,
            queued_commands: WINDOW,
            nop_in_interval: None,
            nop_in_timeout: Duration::from_secs(2),
            data_out: PARAMS,
            max_xmit_data_segment_length: 8192,
        },
        Instant::now(),
    );
    assert_eq!(ff.sn(0).max_cmd_sn, WINDOW - 2);
    assert_eq!(ff.admit(&ping(1, u32::MAX, false), 0), Admit::InOrder);
    assert_eq!(ff.admit(&ping(2, 0, false), 0), Admit::InOrder);
    assert_eq!(ff.sn_advance(0).stat_sn, u32::MAX);
    assert_eq!(ff.sn(0).stat_sn, 0);
    assert!(sn_lt(u32::MAX, 0) && sn_gt(0, u32::MAX) && !sn_lt(5, 5));
}

#[test]
fn status_advances_stat_sn_and_other_pdus_do_not() {
    let mut ff = session(Instant::now(), None);
    assert_eq!(ff.sn(0).stat_sn, 100);
    assert_eq!(ff.sn_advance(0).stat_sn, 100);
    assert_eq!(ff.sn_advance(0).stat_sn, 101);
    assert_eq!(ff.sn(0).stat_sn, 102);
}

#[test]
fn nop_out_ping_is_answered_with_its_data_and_one_without_itt_is_not() {
    let mut ff = session(Instant::now(), None);
    let mut req = ping(7, 10, false);
    req.set_lun([0, 1, 0, 0, 0, 0, 0, 0]);
    let rsp = ff.nop_out(&req, 5, 0).expect("answered");
    assert_eq!(rsp.opcode(), Some(Opcode::NopIn));
    assert_eq!((rsp.itt(), rsp.ttt()), (7, RESERVED_TAG));
    assert_eq!(rsp.lun(), [0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(rsp.data_segment_len(), 5);
    assert_eq!((rsp.stat_sn(), rsp.exp_cmd_sn()), (100, 11));
    // No answer wanted, yet it takes its CmdSN.
    assert_eq!(ff.nop_out(&ping(RESERVED_TAG, 11, false), 0, 0), None);
    assert_eq!(ff.window().exp_cmd_sn(), 12);
    // Outside the window: ignored.
    assert_eq!(ff.nop_out(&ping(8, 20, false), 0, 0), None);
    assert_eq!(ff.sn(0).stat_sn, 101);
}

#[test]
fn an_idle_connection_is_pinged_and_closed_when_the_ping_goes_unanswered() {
    let t0 = Instant::now();
    let mut ff = session(t0, Some(1));
    let sec = Duration::from_secs(1);
    assert_eq!(ff.poll_timeout(), Some(t0 + sec));
    assert_eq!(ff.handle_timeout(t0 + sec / 2, 0), Timer::Idle);
    let Timer::Ping(nop) = ff.handle_timeout(t0 + sec, 0) else {
        panic!("no ping")
    };
    assert_eq!(nop.opcode(), Some(Opcode::NopIn));
    assert_eq!(nop.itt(), RESERVED_TAG);
    assert_ne!(nop.ttt(), RESERVED_TAG);
    // A ping carries no status.
    assert_eq!(nop.stat_sn(), 100);
    assert_eq!(ff.sn(0).stat_sn, 100);
    // Next tick at 2 s; the answer is due at 3 s. The tick sends no second ping.
    assert_eq!(ff.poll_timeout(), Some(t0 + 2 * sec));
    assert_eq!(ff.handle_timeout(t0 + 2 * sec, 0), Timer::Idle);
    assert_eq!(ff.poll_timeout(), Some(t0 + 3 * sec));
    assert_eq!(ff.handle_timeout(t0 + 3 * sec, 0), Timer::Dead);
}

#[test]
fn an_answered_ping_keeps_the_connection_and_traffic_defers_the_next() {
    let t0 = Instant::now();
    let mut ff = session(t0, Some(1));
    let sec = Duration::from_secs(1);
    let Timer::Ping(nop) = ff.handle_timeout(t0 + sec, 0) else {
        panic!("no ping")
    };
    // The initiator's answer: immediate, ITT reserved, TTT echoed. Nothing to send.
    let answer = pdu::nop_out(true, [0; 8], RESERVED_TAG, nop.ttt(), 10, 101, 0);
    ff.received();
    assert_eq!(ff.nop_out(&answer, 0, 0), None);
    assert_eq!(ff.poll_timeout(), Some(t0 + 2 * sec));
    // Traffic during the interval: no ping at its end, one at the end of the next.
    assert_eq!(ff.handle_timeout(t0 + 2 * sec, 0), Timer::Idle);
    assert!(matches!(ff.handle_timeout(t0 + 3 * sec, 0), Timer::Ping(_)));
    // A wrong TTT does not answer it.
    let wrong = pdu::nop_out(true, [0; 8], RESERVED_TAG, 0x777, 10, 101, 0);
    assert_eq!(ff.nop_out(&wrong, 0, 0), None);
    assert_eq!(ff.handle_timeout(t0 + 5 * sec, 0), Timer::Dead);
}

#[test]
fn without_an_interval_there_is_no_timer() {
    let t0 = Instant::now();
    let mut ff = session(t0, None);
    assert_eq!(ff.poll_timeout(), None);
    assert_eq!(
        ff.handle_timeout(t0 + Duration::from_secs(3600), 0),
        Timer::Idle
    );
}

#[test]
fn r2t_and_ping_tags_are_distinct_and_never_reserved() {
    let t0 = Instant::now();
    let mut ff = session(t0, Some(1));
    let a = ff.r2t_ttt();
    let Timer::Ping(nop) = ff.handle_timeout(t0 + Duration::from_secs(1), 0) else {
        panic!("no ping")
    };
    let b = ff.r2t_ttt();
    assert!(a != nop.ttt() && b != nop.ttt() && a != b);
    ff.next_ttt = RESERVED_TAG - 1;
    assert_eq!(ff.r2t_ttt(), RESERVED_TAG - 1);
    assert_eq!(ff.r2t_ttt(), 0);
}

#[test]
fn logout_takes_its_cmd_sn_and_answers_with_status() {
    let mut ff = session(Instant::now(), None);
    let req = pdu::logout_request(false, logout_reason::CLOSE_SESSION, 9, 0, 10, 100);
    let rsp = ff.logout(&req, 0);
    assert_eq!(rsp.opcode(), Some(Opcode::LogoutResponse));
    assert_eq!(rsp.itt(), 9);
    assert_eq!(rsp.response(), pdu::logout_response::SUCCESS);
    assert_eq!((rsp.stat_sn(), rsp.exp_cmd_sn()), (100, 11));
    assert_eq!(ff.sn(0).stat_sn, 101);
}

#[test]
fn text_in_full_feature_asks_the_driver_and_answers_in_one_response() {
    let mut ff = session(Instant::now(), None);
    let data = iscsi_wire::encode_text(&[("SendTargets", "All")]);
    let req = pdu::text_request(false, true, false, 5, RESERVED_TAG, 10, 100, 0);
    let ask = ff.text(&req, &data, 0).expect("admitted");
    assert_eq!(ask.send_targets.as_deref(), Some("All"));
    assert_eq!(ask.itt, 5);
    let keys = [("TargetName".to_string(), "iqn.x:t".to_string())];
    let (rsp, seg) = ff.answer_text(&ask, &keys, 0);
    assert_eq!(rsp.opcode(), Some(Opcode::TextResponse));
    assert!(rsp.final_bit());
    assert_eq!((rsp.itt(), rsp.ttt()), (5, RESERVED_TAG));
    assert_eq!(rsp.data_segment_len() as usize, seg.len());
    assert_eq!(iscsi_wire::parse_text(&seg).unwrap(), keys.to_vec());
    assert_eq!(rsp.stat_sn(), 100);
    // Other keys: an empty answer. A stale CmdSN: no answer at all.
    let other = iscsi_wire::encode_text(&[("X-Foo", "1")]);
    let req = pdu::text_request(false, true, false, 6, RESERVED_TAG, 11, 101, 0);
    assert_eq!(ff.text(&req, &other, 0).unwrap().send_targets, None);
    assert_eq!(ff.text(&req, &other, 0), None);
}

/// A WRITE of `edtl` bytes carrying `imm` bytes of immediate data; `final_pdu`: no
/// unsolicited Data-Out follows.
fn write_cmd(itt: u32, edtl: u32, imm: u32, final_pdu: bool) -> Bhs {
    pdu::scsi_command(&pdu::ScsiCommand {
        immediate: false,
        lun: [0; 8],
        itt,
        attr: 0,
        read: false,
        write: true,
        final_pdu,
        exp_data_transfer_len: edtl,
        cmd_sn: 10,
        exp_stat_sn: 100,
        cdb: &[0x2a; 10],
        data_len: imm,
    })
}

fn data(ttt: u32, data_sn: u32, offset: u32, len: u32, final_pdu: bool) -> Bhs {
    pdu::data_out([0; 8], 1, ttt, data_sn, offset, final_pdu, 100, len)
}

/// The R2Ts `ff` sends for `w` now, as (TTT, R2TSN, offset, length).
fn r2ts(ff: &mut FullFeature, w: &mut WriteSequence, edtl: u32) -> Vec<(u32, u32, u32, u32)> {
    let mut out = Vec::new();
    while let Some(b) = ff.r2t(w, [0; 8], 1, edtl, 1) {
        assert_eq!(b.opcode(), Some(Opcode::R2t));
        assert_eq!(b.itt(), 1);
        out.push((
            b.ttt(),
            b.r2t_sn(),
            b.buffer_offset(),
            b.desired_data_transfer_len(),
        ));
    }
    out
}

#[test]
fn commands_whose_immediate_data_breaks_the_rules_are_refused() {
    let ff = session(Instant::now(), None);
    let mut both = write_cmd(1, 512, 0, true);
    both.set_read(true);
    assert_eq!(ff.command(&both, 0), Err(CommandFault::Bidirectional));
    // More immediate data than the transfer, than FirstBurstLength, or with a read.
    assert_eq!(
        ff.command(&write_cmd(1, 512, 1024, true), 1024),
        Err(CommandFault::Malformed)
    );
    assert_eq!(
        ff.command(&write_cmd(1, 65536, 9000, true), 9000),
        Err(CommandFault::Malformed)
    );
    let mut read = write_cmd(1, 512, 0, true);
    read.set_write(false);
    read.set_read(true);
    assert_eq!(ff.command(&read, 0), Ok(None));
    assert_eq!(ff.command(&read, 4), Err(CommandFault::Malformed));
    let no_imm = DataOutParams {
        immediate_data: false,
        ..PARAMS
    };
    assert_eq!(
        no_imm.command(&write_cmd(1, 512, 512, true), 512),
        Err(CommandFault::Malformed)
    );
}

#[test]
fn a_write_whose_immediate_data_is_all_of_it_needs_no_r2t() {
    let mut ff = session(Instant::now(), None);
    let mut w = ff
        .command(&write_cmd(1, 4096, 4096, true), 4096)
        .unwrap()
        .unwrap();
    assert!(w.complete(4096));
    assert_eq!(r2ts(&mut ff, &mut w, 4096), vec![]);
}

#[test]
fn unsolicited_data_up_to_first_burst_then_r2ts_for_the_rest() {
    let mut ff = session(Instant::now(), None);
    let edtl = 40960;
    // 1 KiB immediate, the unsolicited rest of FirstBurstLength (8 KiB) in Data-Outs.
    let mut w = ff
        .command(&write_cmd(1, edtl, 1024, false), 1024)
        .unwrap()
        .unwrap();
    assert_eq!(w.unsolicited_limit(), 8192);
    // No R2T while unsolicited data may still come.
    assert_eq!(r2ts(&mut ff, &mut w, edtl), vec![]);
    let buf = edtl as usize;
    assert_eq!(
        ff.data_out(&mut w, &data(RESERVED_TAG, 0, 1024, 3072, false), 3072, buf),
        DataOut::Accept { offset: 1024 }
    );
    // Unsolicited data past FirstBurstLength is a protocol error.
    assert_eq!(
        ff.data_out(&mut w, &data(RESERVED_TAG, 1, 4096, 8192, true), 8192, buf),
        DataOut::Reject
    );
    assert_eq!(
        ff.data_out(&mut w, &data(RESERVED_TAG, 1, 4096, 4096, true), 4096, buf),
        DataOut::Accept { offset: 4096 }
    );
    assert_eq!(w.received(), 8192);
    // The rest, 32 KiB, in MaxBurstLength (16 KiB) pieces, at most MaxOutstandingR2T (2)
    // at once.
    let sent = r2ts(&mut ff, &mut w, edtl);
    assert_eq!(sent.len(), 2);
    assert_eq!((sent[0].1, sent[0].2, sent[0].3), (0, 8192, 16384));
    assert_eq!((sent[1].1, sent[1].2, sent[1].3), (1, 24576, 16384));
    assert_ne!(sent[0].0, sent[1].0);
    // More unsolicited data after the F bit is refused.
    assert_eq!(
        ff.data_out(&mut w, &data(RESERVED_TAG, 2, 0, 512, true), 512, buf),
        DataOut::Reject
    );
    // Each R2T's sequence, its DataSN from 0.
    let (t1, t2) = (sent[0].0, sent[1].0);
    assert_eq!(
        ff.data_out(&mut w, &data(t2, 0, 24576, 16384, true), 16384, buf),
        DataOut::Accept { offset: 24576 }
    );
    assert_eq!(
        ff.data_out(&mut w, &data(t1, 0, 8192, 8192, false), 8192, buf),
        DataOut::Accept { offset: 8192 }
    );
    assert!(!w.complete(edtl));
    assert_eq!(
        ff.data_out(&mut w, &data(t1, 1, 16384, 8192, true), 8192, buf),
        DataOut::Accept { offset: 16384 }
    );
    assert!(w.complete(edtl));
    assert_eq!(w.r2ts_outstanding(), 0);
    assert_eq!(r2ts(&mut ff, &mut w, edtl), vec![]);
}

#[test]
fn initial_r2t_solicits_everything_after_the_immediate_data() {
    let params = DataOutParams {
        initial_r2t: true,
        max_outstanding_r2t: 1,
        ..PARAMS
    };
    let mut ff = FullFeature::new(
        FullFeatureConfig {
            stat_sn: 1,
            exp_cmd_sn: 1,
            queued_commands: WINDOW,
            nop_in_interval: None,
            nop_in_timeout: Duration::from_secs(2),
            data_out: params,
            max_xmit_data_segment_length: 8192,
        },
        Instant::now(),
    );
    let edtl = 40000;
    let mut w = ff
        .command(&write_cmd(1, edtl, 512, false), 512)
        .unwrap()
        .unwrap();
    // No unsolicited Data-Out with InitialR2T=Yes.
    assert_eq!(
        ff.data_out(
            &mut w,
            &data(RESERVED_TAG, 0, 512, 512, true),
            512,
            edtl as usize
        ),
        DataOut::Reject
    );
    let mut offset = 512;
    let mut r2t_sn = 0;
    while offset < edtl {
        let sent = r2ts(&mut ff, &mut w, edtl);
        assert_eq!(sent.len(), 1, "one R2T at a time");
        let (ttt, sn, off, len) = sent[0];
        assert_eq!((sn, off, len), (r2t_sn, offset, (edtl - offset).min(16384)));
        let got = ff.data_out(&mut w, &data(ttt, 0, off, len, true), len, edtl as usize);
        assert_eq!(
            got,
            DataOut::Accept {
                offset: off as usize
            }
        );
        offset += len;
        r2t_sn += 1;
    }
    assert!(w.complete(edtl));
    assert_eq!(r2t_sn, 3);
}

#[test]
fn data_out_out_of_sequence_or_for_an_unknown_ttt() {
    let mut ff = session(Instant::now(), None);
    let edtl = 16384;
    let buf = edtl as usize;
    let mut w = ff
        .command(&write_cmd(1, edtl, 0, true), 0)
        .unwrap()
        .unwrap();
    let sent = r2ts(&mut ff, &mut w, edtl);
    assert_eq!(sent.len(), 1);
    let ttt = sent[0].0;
    // A TTT the target never gave: rejected, the command carries on.
    assert_eq!(
        ff.data_out(&mut w, &data(ttt ^ 0x55, 0, 0, 512, false), 512, buf),
        DataOut::Reject
    );
    // Beyond the buffer: rejected.
    assert_eq!(
        ff.data_out(&mut w, &data(ttt, 0, 16000, 512, false), 512, buf),
        DataOut::Reject
    );
    assert_eq!(
        ff.data_out(&mut w, &data(ttt, 0, 0, 512, false), 512, buf),
        DataOut::Accept { offset: 0 }
    );
    // DataSN 2 where 1 is due: the command fails.
    assert_eq!(
        ff.data_out(&mut w, &data(ttt, 2, 1024, 512, false), 512, buf),
        DataOut::SequenceError {
            got: 2,
            expected: 1
        }
    );
}

fn read_task(edtl: u32) -> TaskInfo {
    TaskInfo {
        itt: 3,
        lun: [0, 2, 0, 0, 0, 0, 0, 0],
        edtl,
        read: true,
    }
}

/// What the driver attaches to each header of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    None,
    Data { len: u32, last: bool },
    Sense,
}

#[derive(Default)]
struct Collect(Vec<(Bhs, Segment)>);

impl ResponseSink for Collect {
    fn data_in(&mut self, bhs: Bhs, len: u32, last: bool) {
        self.0.push((bhs, Segment::Data { len, last }));
    }
    fn response(&mut self, bhs: Bhs, sense: bool) {
        let seg = if sense { Segment::Sense } else { Segment::None };
        self.0.push((bhs, seg));
    }
}

fn answer(ff: &mut FullFeature, task: &TaskInfo, reply: &Reply) -> Vec<(Bhs, Segment)> {
    let mut out = Collect::default();
    ff.respond(task, reply, 0, &mut out);
    let sent: u32 = out
        .0
        .iter()
        .map(|(_, s)| match s {
            Segment::Data { len, .. } => *len,
            _ => 0,
        })
        .sum();
    assert_eq!(sent, data_in_len(task, reply));
    out.0
}

#[test]
fn a_good_read_folds_its_status_into_the_last_data_in() {
    let mut ff = session(Instant::now(), None);
    // 40 KiB in 8 KiB segments; MaxBurstLength 16 KiB closes a sequence every second.
    let reply = Reply {
        status: 0,
        data_len: 40960,
        data_out_len: None,
        sense_len: 0,
    };
    let pdus = answer(&mut ff, &read_task(40960), &reply);
    assert_eq!(pdus.len(), 5);
    for (i, (b, seg)) in pdus.iter().enumerate() {
        let last = i == 4;
        assert_eq!(b.opcode(), Some(Opcode::DataIn));
        assert_eq!((b.itt(), b.data_sn()), (3, i as u32));
        assert_eq!(b.buffer_offset(), i as u32 * 8192);
        assert_eq!(*seg, Segment::Data { len: 8192, last });
        assert_eq!(b.final_bit(), last || i % 2 == 1, "PDU {i}");
        assert_eq!(b.status_bit(), last, "PDU {i}");
        // Only the PDU with status carries and advances StatSN.
        assert_eq!(b.stat_sn(), if last { 100 } else { 0 });
    }
    assert_eq!(ff.sn(0).stat_sn, 101);
}

#[test]
fn a_short_read_reports_an_underflow_and_a_long_one_is_cut_with_an_overflow() {
    let mut ff = session(Instant::now(), None);
    let short = Reply {
        status: 0,
        data_len: 512,
        data_out_len: None,
        sense_len: 0,
    };
    let pdus = answer(&mut ff, &read_task(4096), &short);
    assert_eq!(pdus.len(), 1);
    assert!(pdus[0].0.underflow_bit());
    assert_eq!(pdus[0].0.residual_count(), 3584);
    let long = Reply {
        data_len: 8192,
        ..short
    };
    let pdus = answer(&mut ff, &read_task(4096), &long);
    assert_eq!(
        pdus[0].1,
        Segment::Data {
            len: 4096,
            last: true
        }
    );
    assert!(pdus[0].0.overflow_bit());
    assert_eq!(pdus[0].0.residual_count(), 4096);
}

#[test]
fn a_failed_command_ends_with_a_scsi_response_carrying_its_sense() {
    let mut ff = session(Instant::now(), None);
    // Data produced before the failure goes first, without status.
    let reply = Reply {
        status: 0x02,
        data_len: 1024,
        data_out_len: None,
        sense_len: 20,
    };
    let pdus = answer(&mut ff, &read_task(1024), &reply);
    assert_eq!(pdus.len(), 2);
    assert_eq!(
        pdus[0].1,
        Segment::Data {
            len: 1024,
            last: true
        }
    );
    assert!(!pdus[0].0.status_bit());
    let (rsp, seg) = &pdus[1];
    assert_eq!(rsp.opcode(), Some(Opcode::ScsiResponse));
    assert_eq!(*seg, Segment::Sense);
    assert_eq!((rsp.status(), rsp.data_segment_len()), (0x02, 20));
    assert_eq!(rsp.exp_data_sn(), 1);
    assert_eq!(rsp.stat_sn(), 100);
    // A write with no data and no sense: a bare SCSI Response.
    let write = TaskInfo {
        read: false,
        ..read_task(4096)
    };
    let ok = Reply {
        status: 0,
        data_len: 0,
        data_out_len: None,
        sense_len: 0,
    };
    let pdus = answer(&mut ff, &write, &ok);
    assert_eq!(pdus.len(), 1);
    assert_eq!(pdus[0].1, Segment::None);
    assert_eq!(pdus[0].0.opcode(), Some(Opcode::ScsiResponse));
    assert_eq!(pdus[0].0.stat_sn(), 101);
}

#[test]
fn tmf_responses_and_rejects_carry_status_sequence_numbers() {
    let mut ff = session(Instant::now(), None);
    let b = ff.tmf_response(4, pdu::tmf_response::COMPLETE, 0);
    assert_eq!(b.opcode(), Some(Opcode::TaskMgmtResponse));
    assert_eq!((b.itt(), b.stat_sn()), (4, 100));
    let r = ff.reject(pdu::reject_reason::PROTOCOL_ERROR, 0);
    assert_eq!(r.opcode(), Some(Opcode::Reject));
    assert_eq!(r.stat_sn(), 101);
    assert_eq!(r.data_segment_len(), 48);
}

fn tmf(function: u8, rtt: u32, cmd_sn: u32, ref_cmd_sn: u32) -> Bhs {
    pdu::tmf_request(&pdu::TmfRequest {
        immediate: true,
        function,
        lun: [0, 3, 0, 0, 0, 0, 0, 0],
        itt: 9,
        ref_task_tag: rtt,
        cmd_sn,
        exp_stat_sn: 100,
        ref_cmd_sn,
        exp_data_sn: 0,
    })
}

#[test]
fn task_management_requests_decode_to_what_they_ask() {
    use iscsi_wire::pdu::tmf_function as f;
    let lun = [0, 3, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        TmfRequest::decode(&tmf(f::ABORT_TASK, 5, 12, 11)),
        TmfRequest::AbortTask {
            lun,
            rtt: 5,
            ref_cmd_sn: 11,
            cmd_sn: 12
        }
    );
    assert_eq!(
        TmfRequest::decode(&tmf(f::LOGICAL_UNIT_RESET, 0, 12, 0)),
        TmfRequest::LunReset { lun }
    );
    assert_eq!(
        TmfRequest::decode(&tmf(f::ABORT_TASK_SET, 0, 12, 0)),
        TmfRequest::AbortTaskSet { lun }
    );
    assert_eq!(
        TmfRequest::decode(&tmf(f::TARGET_COLD_RESET, 0, 12, 0)),
        TmfRequest::TargetColdReset
    );
    assert_eq!(
        TmfRequest::decode(&tmf(f::TASK_REASSIGN, 0, 12, 0)),
        TmfRequest::TaskReassign
    );
    assert_eq!(
        TmfRequest::decode(&tmf(f::QUERY_TASK, 0, 12, 0)),
        TmfRequest::Unsupported(f::QUERY_TASK)
    );
}

#[test]
fn abort_of_a_task_never_received_completes_and_of_one_answered_does_not_exist() {
    let mut ff = session(Instant::now(), None);
    // CmdSN 10 and 11 taken (and, say, answered); the window expects 12.
    assert!(ff.admit(&ping(1, 10, false), 0).accepted());
    assert!(ff.admit(&ping(2, 11, false), 0).accepted());
    // RefCmdSN 11: below the window, received and answered: nothing to abort.
    assert!(!ff.never_received(11, 12));
    // RefCmdSN 12, the TMF (immediate) at CmdSN 13: inside the window and before
    // the request, never received: it counts as aborted.
    assert!(ff.never_received(12, 13));
    // A RefCmdSN after the request's own CmdSN names no task before it.
    assert!(!ff.never_received(14, 13));
}
