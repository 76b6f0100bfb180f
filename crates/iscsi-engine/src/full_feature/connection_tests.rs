//! The full-feature connection driven through an in-memory pair: an initiator that
//! encodes PDUs into the engine's receive buffer and decodes what it transmits, and a
//! fake core that holds the commands the engine hands out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi_wire::pdu::{self, logout_reason, reject_reason, tmf_function, tmf_response};
use iscsi_wire::{Bhs, Digests, Opcode, RESERVED_TAG};

use super::*;
use crate::full_feature::{
    DataOutParams, NoSharedLimit, SharedBudget, TaskAttribute, MAX_COMMAND_BUFFER,
};

const MAX_RECV: u32 = 8192;
const WINDOW: u32 = 8;

fn connection(params: DataOutParams) -> FullFeatureConnection {
    connection_sharing(params, Arc::new(NoSharedLimit))
}

fn connection_sharing(
    params: DataOutParams,
    shared: Arc<dyn SharedBudget>,
) -> FullFeatureConnection {
    FullFeatureConnection::new(
        FullFeatureConfig {
            stat_sn: 100,
            exp_cmd_sn: 1,
            queued_commands: WINDOW,
            nop_in_interval: None,
            nop_in_timeout: Duration::from_secs(2),
            data_out: params,
            max_xmit_data_segment_length: 8192,
        },
        Digests::NONE,
        MAX_RECV,
        &[],
        shared,
        Instant::now(),
    )
}

const R2T_PARAMS: DataOutParams = DataOutParams {
    first_burst_length: 8192,
    max_burst_length: 16384,
    max_outstanding_r2t: 1,
    initial_r2t: true,
    immediate_data: true,
};

/// One decoded PDU the target sent.
#[derive(Debug)]
struct Sent {
    bhs: Bhs,
    data: Vec<u8>,
}

/// The initiator's end and the core's, around one engine.
struct Pair {
    conn: FullFeatureConnection,
    /// Commands the fake core holds, by ITT.
    core: Vec<Command>,
    tmfs: Vec<(u32, TaskManagement)>,
    logged_out: bool,
    failed: Vec<(u32, Failure)>,
    cmd_sn: u32,
}

impl Pair {
    fn new(params: DataOutParams) -> Pair {
        Pair {
            conn: connection(params),
            core: Vec::new(),
            tmfs: Vec::new(),
            logged_out: false,
            failed: Vec::new(),
            cmd_sn: 1,
        }
    }

    /// Send a PDU and handle everything received, acting on the events as a driver
    /// would, except that TMFs wait for the test to answer.
    fn send(&mut self, bhs: &Bhs, data: &[u8]) {
        let bytes = iscsi_wire::frame::encode_pdu(bhs, data, Digests::NONE);
        self.conn.recv_buf().extend_from_slice(&bytes);
        self.run();
    }

    fn run(&mut self) {
        loop {
            let core = &self.core;
            let next = self
                .conn
                .handle_next(&|itt| core.iter().any(|c| c.task.itt() == itt))
                .expect("well-formed PDUs");
            let more = match next {
                Next::Idle => false,
                Next::Handled => true,
                Next::Command(c) => {
                    self.core.push(c);
                    true
                }
            };
            while let Some(ev) = self.conn.poll_event() {
                match ev {
                    Event::Command(c) => self.core.push(c),
                    Event::Failed { task, why } => {
                        self.failed.push((task.itt(), why));
                        self.conn
                            .respond(task, 2, Bytes::new(), Some(&[0x70; 18]), None);
                    }
                    Event::TaskManagement { tag, function } => self.tmfs.push((tag, function)),
                    Event::SendTargets(req) => self.conn.answer_text(&req, &[]),
                    Event::LoggedOut => self.logged_out = true,
                }
            }
            if !more {
                return;
            }
        }
    }

    fn next_cmd_sn(&mut self) -> u32 {
        let sn = self.cmd_sn;
        self.cmd_sn += 1;
        sn
    }

    fn write(&mut self, lun: u16, itt: u32, edtl: u32, immediate: &[u8]) {
        let cmd_sn = self.next_cmd_sn();
        let cdb = [0x2a, 0, 0, 0, 0, 0, 0, 0, (edtl / 512) as u8, 0];
        let bhs = pdu::scsi_command(&pdu::ScsiCommand {
            lun: pdu::lun_from_u16(lun),
            itt,
            attr: 1,
            write: true,
            final_pdu: true,
            exp_data_transfer_len: edtl,
            cmd_sn,
            cdb: &cdb,
            data_len: immediate.len() as u32,
            ..Default::default()
        });
        self.send(&bhs, immediate);
    }

    fn read(&mut self, lun: u16, itt: u32, edtl: u32) {
        let cmd_sn = self.next_cmd_sn();
        let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, (edtl / 512) as u8, 0];
        let bhs = pdu::scsi_command(&pdu::ScsiCommand {
            lun: pdu::lun_from_u16(lun),
            itt,
            attr: 1,
            read: true,
            final_pdu: true,
            exp_data_transfer_len: edtl,
            cmd_sn,
            cdb: &cdb,
            ..Default::default()
        });
        self.send(&bhs, &[]);
    }

    fn data_out(&mut self, lun: u16, itt: u32, ttt: u32, offset: u32, data: &[u8]) {
        let bhs = pdu::data_out(
            pdu::lun_from_u16(lun),
            itt,
            ttt,
            0,
            offset,
            true,
            0,
            data.len() as u32,
        );
        self.send(&bhs, data);
    }

    fn tmf(&mut self, function: u8, lun: u16, itt: u32, ref_task_tag: u32, ref_cmd_sn: u32) {
        let cmd_sn = self.cmd_sn;
        let bhs = pdu::tmf_request(&pdu::TmfRequest {
            immediate: true,
            function,
            lun: pdu::lun_from_u16(lun),
            itt,
            ref_task_tag,
            cmd_sn,
            exp_stat_sn: 0,
            ref_cmd_sn,
            exp_data_sn: 0,
        });
        self.send(&bhs, &[]);
    }

    /// What the target sent since the last call.
    fn sent(&mut self) -> Vec<Sent> {
        let bytes = self.conn.transmit().to_bytes();
        self.conn.transmit().clear();
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let f = iscsi_wire::frame::parse_frame(rest, Digests::NONE, 1 << 24)
                .expect("target PDUs frame")
                .expect("whole PDUs");
            out.push(Sent {
                bhs: f.bhs,
                data: rest[f.data.clone()].to_vec(),
            });
            rest = &rest[f.total_len..];
        }
        out
    }

    fn take_command(&mut self, itt: u32) -> Command {
        let i = self
            .core
            .iter()
            .position(|c| c.task.itt() == itt)
            .expect("the core holds the command");
        self.core.remove(i)
    }
}

fn opcodes(sent: &[Sent]) -> Vec<Opcode> {
    sent.iter().filter_map(|s| s.bhs.opcode()).collect()
}

#[test]
fn a_read_leaves_as_a_command_and_its_data_comes_back_with_status() {
    let mut p = Pair::new(R2T_PARAMS);
    p.read(0, 7, 4096);
    assert!(
        p.sent().is_empty(),
        "nothing is sent before the core answers"
    );
    assert_eq!(p.conn.outstanding(), 1);
    let c = p.take_command(7);
    assert_eq!((c.lun, c.cdb()[0], c.expected_in), (0, 0x28, 4096));
    assert_eq!(c.attr, TaskAttribute::Simple);
    p.conn
        .respond(c.task, 0, Bytes::from(vec![5u8; 4096]), None, None);
    let sent = p.sent();
    assert_eq!(opcodes(&sent), [Opcode::DataIn]);
    let d = &sent[0];
    assert!(d.bhs.status_bit(), "status folded into the last Data-In");
    assert_eq!(d.bhs.stat_sn(), 100);
    assert_eq!(d.data, vec![5u8; 4096]);
    assert_eq!(p.conn.outstanding(), 0);
}

#[test]
fn a_write_is_solicited_by_r2t_and_handed_over_once_its_data_is_in() {
    let mut p = Pair::new(R2T_PARAMS);
    p.write(1, 9, 8192, &[]);
    let sent = p.sent();
    assert_eq!(opcodes(&sent), [Opcode::R2t]);
    let r2t = &sent[0].bhs;
    assert_eq!(
        (
            r2t.itt(),
            r2t.buffer_offset(),
            r2t.desired_data_transfer_len()
        ),
        (9, 0, 8192)
    );
    assert!(
        p.core.is_empty(),
        "the core sees the write only once its data is in"
    );
    p.data_out(1, 9, r2t.ttt(), 0, &[3u8; 8192]);
    let c = p.take_command(9);
    assert_eq!(c.lun, 1);
    assert_eq!(c.data_out, vec![3u8; 8192]);
    p.conn.respond(c.task, 0, Bytes::new(), None, None);
    let sent = p.sent();
    assert_eq!(opcodes(&sent), [Opcode::ScsiResponse]);
    assert_eq!(p.conn.outstanding(), 0);
}

#[test]
fn abort_task_of_a_write_waiting_for_data_out_ends_it_without_a_response() {
    let mut p = Pair::new(R2T_PARAMS);
    p.write(0, 11, 8192, &[]);
    let ttt = p.sent()[0].bhs.ttt();
    assert_eq!(p.conn.outstanding(), 1);
    p.tmf(tmf_function::ABORT_TASK, 0, 50, 11, 1);
    assert!(
        p.tmfs.is_empty(),
        "the connection answers for a command it holds"
    );
    let sent = p.sent();
    assert_eq!(opcodes(&sent), [Opcode::TaskMgmtResponse]);
    assert_eq!(sent[0].bhs.response(), tmf_response::COMPLETE);
    assert_eq!(p.conn.outstanding(), 0);
    // Its late data is ignored: no command reaches the core, nothing is sent.
    p.data_out(0, 11, ttt, 0, &[1u8; 8192]);
    assert!(p.core.is_empty());
    assert!(p.sent().is_empty());
}

#[test]
fn abort_task_of_a_command_in_the_core_asks_the_core() {
    let mut p = Pair::new(R2T_PARAMS);
    p.read(0, 12, 512);
    p.tmf(tmf_function::ABORT_TASK, 0, 51, 12, 1);
    assert_eq!(
        p.tmfs,
        [(51, TaskManagement::AbortTask { lun: 0, itt: 12 })]
    );
    // The core aborted it: it ends silently, then the TMF answers.
    let c = p.take_command(12);
    p.conn.release(c.task);
    p.conn.tmf_acted(51, Some(TmfOutcome::Complete));
    let sent = p.sent();
    assert_eq!(opcodes(&sent), [Opcode::TaskMgmtResponse]);
    assert_eq!(p.conn.outstanding(), 0);
}

#[test]
fn abort_task_of_a_task_never_received_or_long_answered() {
    let mut p = Pair::new(R2T_PARAMS);
    // RefCmdSN at the window's edge: never received, counts as aborted.
    p.tmf(tmf_function::ABORT_TASK, 0, 52, 99, 1);
    assert_eq!(p.sent()[0].bhs.response(), tmf_response::COMPLETE);
    // A command answered earlier: below the window, the task does not exist.
    p.read(0, 13, 512);
    let c = p.take_command(13);
    p.conn.respond(c.task, 0, Bytes::new(), None, None);
    p.sent();
    p.tmf(tmf_function::ABORT_TASK, 0, 53, 13, 1);
    assert_eq!(
        p.sent()[0].bhs.response(),
        tmf_response::TASK_DOES_NOT_EXIST
    );
}

#[test]
fn lun_reset_drops_that_luns_writes_waiting_for_data_and_pauses_until_the_core_acts() {
    let mut p = Pair::new(R2T_PARAMS);
    p.write(2, 20, 8192, &[]);
    p.write(3, 21, 8192, &[]);
    let ttts: Vec<u32> = p.sent().iter().map(|s| s.bhs.ttt()).collect();
    assert_eq!(p.conn.outstanding(), 2);
    // The reset and a Data-Out behind it arrive in one read.
    let reset = pdu::tmf_request(&pdu::TmfRequest {
        immediate: true,
        function: tmf_function::LOGICAL_UNIT_RESET,
        lun: pdu::lun_from_u16(2),
        itt: 60,
        ref_task_tag: RESERVED_TAG,
        cmd_sn: p.cmd_sn,
        exp_stat_sn: 0,
        ref_cmd_sn: 0,
        exp_data_sn: 0,
    });
    let data = pdu::data_out(pdu::lun_from_u16(2), 20, ttts[0], 0, 0, true, 0, 8192);
    let mut bytes = iscsi_wire::frame::encode_pdu(&reset, &[], Digests::NONE);
    bytes.extend(iscsi_wire::frame::encode_pdu(
        &data,
        &[9u8; 8192],
        Digests::NONE,
    ));
    p.conn.recv_buf().extend_from_slice(&bytes);
    p.run();
    assert_eq!(p.tmfs, [(60, TaskManagement::LunReset { lun: 2 })]);
    assert!(
        p.core.is_empty(),
        "nothing after the TMF is handled before the core acts"
    );
    p.conn.tmf_acted(60, Some(TmfOutcome::Complete));
    p.run();
    // LUN 2's write is gone, with its data; LUN 3's still waits for its own.
    assert!(p.core.is_empty());
    assert_eq!(p.conn.outstanding(), 1);
    let sent = p.sent();
    assert_eq!(opcodes(&sent), [Opcode::TaskMgmtResponse]);
    assert_eq!(sent[0].bhs.response(), tmf_response::COMPLETE);
    p.data_out(3, 21, ttts[1], 0, &[4u8; 8192]);
    assert_eq!(p.take_command(21).data_out, vec![4u8; 8192]);
}

#[test]
fn a_reset_of_a_lun_that_does_not_exist_leaves_commands_alone() {
    let mut p = Pair::new(R2T_PARAMS);
    p.write(5, 30, 8192, &[]);
    p.sent();
    p.tmf(tmf_function::LOGICAL_UNIT_RESET, 5, 61, RESERVED_TAG, 0);
    p.conn.tmf_acted(61, Some(TmfOutcome::LunNotExist));
    assert_eq!(p.conn.outstanding(), 1);
    assert_eq!(p.sent()[0].bhs.response(), tmf_response::LUN_DOES_NOT_EXIST);
}

#[test]
fn a_tmf_the_core_finishes_later_answers_then() {
    let mut p = Pair::new(R2T_PARAMS);
    p.read(0, 40, 512);
    p.tmf(tmf_function::ABORT_TASK_SET, 0, 62, RESERVED_TAG, 0);
    p.conn.tmf_acted(62, None);
    assert!(
        p.sent().is_empty(),
        "no answer while aborted commands finish"
    );
    let c = p.take_command(40);
    p.conn.release(c.task);
    p.conn.tmf_done(62, TmfOutcome::Complete);
    assert_eq!(opcodes(&p.sent()), [Opcode::TaskMgmtResponse]);
}

#[test]
fn target_cold_reset_ends_the_connection_after_its_response() {
    let mut p = Pair::new(R2T_PARAMS);
    p.write(0, 41, 8192, &[]);
    p.sent();
    p.tmf(tmf_function::TARGET_COLD_RESET, 0, 63, RESERVED_TAG, 0);
    p.conn.tmf_acted(63, Some(TmfOutcome::Complete));
    assert_eq!(p.conn.outstanding(), 0);
    assert_eq!(p.conn.ending(), Some(Ending::ColdReset));
    assert_eq!(opcodes(&p.sent()), [Opcode::TaskMgmtResponse]);
    // Nothing more is handled.
    p.read(0, 42, 512);
    assert!(p.core.is_empty());
}

#[test]
fn a_reused_itt_is_rejected_whether_held_here_or_in_the_core() {
    let mut p = Pair::new(R2T_PARAMS);
    p.write(0, 70, 8192, &[]);
    p.read(0, 71, 512);
    p.sent();
    p.read(0, 70, 512);
    p.read(0, 71, 512);
    let sent = p.sent();
    assert_eq!(opcodes(&sent), [Opcode::Reject, Opcode::Reject]);
    assert_eq!(
        sent[0].bhs.reject_reason(),
        reject_reason::INVALID_PDU_FIELD
    );
    // The rejected header comes back as the Reject's data.
    assert_eq!(Bhs::from_slice(&sent[1].data).map(|b| b.itt()), Some(71));
    assert_eq!(p.core.len(), 1);
}

#[test]
fn a_data_out_out_of_sequence_fails_that_command_only() {
    let mut p = Pair::new(R2T_PARAMS);
    p.write(0, 80, 8192, &[]);
    let ttt = p.sent()[0].bhs.ttt();
    let bhs = pdu::data_out(pdu::lun_from_u16(0), 80, ttt, 5, 0, true, 0, 8192);
    p.send(&bhs, &[0u8; 8192]);
    assert_eq!(p.failed, [(80, Failure::DataPhase)]);
    assert_eq!(opcodes(&p.sent()), [Opcode::ScsiResponse]);
    assert_eq!(p.conn.outstanding(), 0);
}

#[test]
fn writes_beyond_the_data_budget_wait_without_r2ts_until_budget_returns() {
    let mut p = Pair::new(R2T_PARAMS);
    let big = MAX_COMMAND_BUFFER;
    p.write(0, 90, big, &[]);
    p.write(0, 91, big, &[]);
    let sent = p.sent();
    assert!(
        sent.iter().all(|s| s.bhs.itt() == 90),
        "only the first is solicited"
    );
    // The first one's data arrives in bursts; once it is done and answered, the second
    // gets its R2Ts.
    let mut offset = 0;
    let mut r2ts = sent;
    while offset < big {
        for r in r2ts {
            let len = r.bhs.desired_data_transfer_len();
            let off = r.bhs.buffer_offset();
            let bhs = pdu::data_out(pdu::lun_from_u16(0), 90, r.bhs.ttt(), 0, off, true, 0, len);
            // Segments of at most MaxRecvDataSegmentLength.
            let mut sent_len = 0;
            let mut data_sn = 0;
            while sent_len < len {
                let n = (len - sent_len).min(MAX_RECV);
                let mut b = bhs;
                b.set_data_sn(data_sn);
                b.set_buffer_offset(off + sent_len);
                b.set_final(sent_len + n == len);
                p.send(&b, &vec![1u8; n as usize]);
                sent_len += n;
                data_sn += 1;
            }
            offset += len;
        }
        r2ts = p.sent();
    }
    let first = p.take_command(90);
    assert_eq!(first.data_out.len(), big as usize);
    p.conn.respond(first.task, 0, Bytes::new(), None, None);
    p.conn.pump_budget();
    let sent = p.sent();
    assert!(sent
        .iter()
        .any(|s| s.bhs.opcode() == Some(Opcode::R2t) && s.bhs.itt() == 91));
}

#[test]
fn nop_out_is_echoed_and_logout_ends_the_session_before_its_response_goes() {
    let mut p = Pair::new(R2T_PARAMS);
    let sn = p.next_cmd_sn();
    let ping = pdu::nop_out(false, [0; 8], 5, RESERVED_TAG, sn, 0, 4);
    p.send(&ping, b"ping");
    let sent = p.sent();
    assert_eq!(opcodes(&sent), [Opcode::NopIn]);
    assert_eq!(sent[0].data, b"ping");
    let sn = p.next_cmd_sn();
    let logout = pdu::logout_request(false, logout_reason::CLOSE_SESSION, 6, 0, sn, 0);
    p.send(&logout, &[]);
    assert!(p.logged_out);
    assert_eq!(p.conn.ending(), Some(Ending::Logout));
    assert_eq!(opcodes(&p.sent()), [Opcode::LogoutResponse]);
}

#[test]
fn the_window_closes_as_commands_pile_up() {
    let mut p = Pair::new(R2T_PARAMS);
    for itt in 0..WINDOW {
        p.read(0, 100 + itt, 512);
    }
    assert_eq!(p.conn.outstanding(), WINDOW as usize);
    // One beyond MaxCmdSN is ignored.
    p.read(0, 200, 512);
    assert_eq!(p.core.len(), WINDOW as usize);
    let c = p.take_command(100);
    p.conn.respond(c.task, 0, Bytes::new(), None, None);
    let sent = p.sent();
    // The response still counts the command it answers: the window stays shut.
    assert_eq!(
        sent[0].bhs.max_cmd_sn(),
        sent[0].bhs.exp_cmd_sn().wrapping_sub(1)
    );
}

#[test]
fn bad_framing_ends_the_connection() {
    let mut conn = connection(R2T_PARAMS);
    let mut bhs = pdu::nop_out(false, [0; 8], 5, RESERVED_TAG, 1, 0, 0);
    bhs.set_data_segment_len(MAX_RECV + 4);
    conn.recv_buf()
        .extend_from_slice(&iscsi_wire::frame::encode_pdu(
            &bhs,
            &vec![0; MAX_RECV as usize + 4],
            Digests::NONE,
        ));
    assert!(conn.handle_next(&|_| false).is_err());
}

/// A shared budget of a fixed size, counting what is charged.
struct Fixed {
    limit: usize,
    used: AtomicUsize,
}

impl SharedBudget for Fixed {
    fn try_charge(&self, _mine: usize, need: usize) -> bool {
        let before = self.used.fetch_add(need, Ordering::Relaxed);
        if before + need > self.limit {
            self.used.fetch_sub(need, Ordering::Relaxed);
            return false;
        }
        true
    }
    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[test]
fn the_shared_budget_refuses_with_busy_then_task_set_full_and_gets_everything_back() {
    let shared = Arc::new(Fixed {
        limit: 16384,
        used: AtomicUsize::new(0),
    });
    let mut p = Pair::new(R2T_PARAMS);
    p.conn = connection_sharing(R2T_PARAMS, shared.clone());
    // Nothing held: a read that does not fit is BUSY.
    p.read(0, 1, 32768);
    assert_eq!(p.failed, [(1, Failure::Busy)]);
    // One that fits is charged; the next, with a command held, is TASK SET FULL.
    p.read(0, 2, 16384);
    assert_eq!(shared.used.load(Ordering::Relaxed), 16384);
    p.read(0, 3, 4096);
    assert_eq!(p.failed[1], (3, Failure::TaskSetFull));
    let c = p.take_command(2);
    p.conn.respond(c.task, 0, Bytes::new(), None, None);
    assert_eq!(shared.used.load(Ordering::Relaxed), 0);
    // A write waiting for its data when the connection goes gives its share back too.
    p.write(0, 4, 8192, &[]);
    assert_eq!(shared.used.load(Ordering::Relaxed), 8192);
    drop(p);
    assert_eq!(shared.used.load(Ordering::Relaxed), 0);
}
