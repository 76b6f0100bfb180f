//! The full-feature pieces driven as an initiator would, with a fake clock.

use std::time::{Duration, Instant};

use iscsi_wire::pdu::{self, logout_reason};
use iscsi_wire::{Opcode, RESERVED_TAG};

use super::*;

const WINDOW: u32 = 4;

fn session(now: Instant, interval: Option<u64>) -> FullFeature {
    FullFeature::new(
        FullFeatureConfig {
            stat_sn: 100,
            exp_cmd_sn: 10,
            queued_commands: WINDOW,
            nop_in_interval: interval.map(Duration::from_secs),
            nop_in_timeout: Duration::from_secs(2),
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
