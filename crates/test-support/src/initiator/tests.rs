use std::io::{Read, Write};
use std::net::TcpListener;

use iscsi_wire::bhs::{task_attr, Stage};
use iscsi_wire::frame::parse_frame;
use iscsi_wire::negotiate::{Digest, DigestPolicy};
use iscsi_wire::pdu::{self, TargetSn};
use iscsi_wire::text;

use super::*;
use crate::scsi;

#[test]
fn serial_arithmetic() {
    assert!(sn_gt(2, 1));
    assert!(!sn_gt(1, 1));
    assert!(sn_gt(0, u32::MAX));
    assert!(!sn_gt(u32::MAX, 0));
}

/// A scripted fake target on a thread: reads PDUs, answers with a closure.
fn fake_target(
    script: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> (std::net::SocketAddr, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        script(&mut s);
    });
    (addr, h)
}

/// Reads exactly one PDU (so that nothing of the next one is consumed).
fn read_pdu(s: &mut TcpStream, digests: Digests) -> (Bhs, Vec<u8>) {
    let mut buf = vec![0u8; 48];
    s.read_exact(&mut buf).unwrap();
    let bhs = Bhs::from_slice(&buf).unwrap();
    buf.resize(iscsi_wire::frame_len(&bhs, digests.header, digests.data), 0);
    s.read_exact(&mut buf[48..]).unwrap();
    let f = parse_frame(&buf, digests, 1 << 24).unwrap().unwrap();
    assert!(f.data_digest_ok);
    assert_eq!(f.total_len, buf.len());
    (f.bhs, buf[f.data].to_vec())
}

fn send(s: &mut TcpStream, bhs: &Bhs, data: &[u8], digests: Digests) {
    s.write_all(&iscsi_wire::frame::encode_pdu(bhs, data, digests))
        .unwrap();
}

fn sn(stat_sn: u32, exp_cmd_sn: u32) -> TargetSn {
    TargetSn {
        stat_sn,
        exp_cmd_sn,
        max_cmd_sn: exp_cmd_sn + 31,
    }
}

/// Answers a two-stage login (security, then operational with the Negotiator);
/// returns the operational keys received and the negotiated parameters.
fn serve_login(
    s: &mut TcpStream,
    local: iscsi_wire::LocalParams,
    discovery: bool,
) -> (Vec<(String, String)>, iscsi_wire::SessionParams) {
    let (req, data) = read_pdu(s, Digests::NONE);
    assert_eq!(req.opcode(), Some(Opcode::LoginRequest));
    assert!(req.immediate() && req.transit());
    assert_eq!(req.csg(), Stage::SecurityNegotiation);
    assert_eq!(req.nsg(), Stage::LoginOperational);
    let keys = text::parse_text(&data).unwrap();
    assert_eq!(text::find(&keys, "AuthMethod"), Some("None"));
    let expected_type = if discovery { "Discovery" } else { "Normal" };
    assert_eq!(text::find(&keys, "SessionType"), Some(expected_type));
    let resp_data = text::encode_text(&[("TargetPortalGroupTag", "1"), ("AuthMethod", "None")]);
    let mut p = pdu::LoginResponse {
        transit: true,
        cont: false,
        csg: Stage::SecurityNegotiation,
        nsg: Stage::LoginOperational,
        isid: req.isid(),
        tsih: 0,
        itt: req.itt(),
        status: pdu::login_status::SUCCESS,
        sn: sn(100, req.cmd_sn()),
        data_len: resp_data.len() as u32,
    };
    send(s, &pdu::login_response(&p), &resp_data, Digests::NONE);
    let (req, data) = read_pdu(s, Digests::NONE);
    assert_eq!(req.csg(), Stage::LoginOperational);
    assert_eq!(req.nsg(), Stage::FullFeature);
    assert_eq!(req.exp_stat_sn(), 101);
    let op = text::parse_text(&data).unwrap();
    let mut neg = iscsi_wire::Negotiator::new(local, discovery);
    let mut answer = neg.process(&op).unwrap();
    answer.extend(neg.target_declarations());
    assert!(!neg.awaiting_replies());
    let resp_data = text::encode_text(&answer);
    p.csg = Stage::LoginOperational;
    p.nsg = Stage::FullFeature;
    p.tsih = 0x55;
    p.sn = sn(101, req.cmd_sn());
    p.data_len = resp_data.len() as u32;
    send(s, &pdu::login_response(&p), &resp_data, Digests::NONE);
    (op, neg.params())
}

#[test]
fn login_and_read_with_data_in_status_and_digests() {
    let dg = Digests {
        header: true,
        data: true,
    };
    let (addr, h) = fake_target(move |s| {
        let local = iscsi_wire::LocalParams {
            header_digest: DigestPolicy::Crc32cOrNone,
            data_digest: DigestPolicy::Crc32cOrNone,
            ..Default::default()
        };
        let (_, params) = serve_login(s, local, false);
        assert_eq!(params.header_digest, Digest::Crc32c);
        assert_eq!(params.data_digest, Digest::Crc32c);
        // READ(10) of 3 x 512 bytes, answered with two Data-In PDUs.
        let (cmd, _) = read_pdu(s, dg);
        assert_eq!(cmd.opcode(), Some(Opcode::ScsiCommand));
        assert!(cmd.read_bit() && cmd.final_bit());
        assert_eq!(cmd.exp_data_transfer_len(), 1536);
        let payload: Vec<u8> = (0..1536u32).map(|i| i as u8).collect();
        let mut di = pdu::DataIn {
            lun: cmd.lun(),
            itt: cmd.itt(),
            data_sn: 0,
            buffer_offset: 0,
            data_len: 1024,
            sn: sn(102, cmd.cmd_sn() + 1),
            ..Default::default()
        };
        send(s, &pdu::data_in(&di), &payload[..1024], dg);
        di.data_sn = 1;
        di.buffer_offset = 1024;
        di.data_len = 512;
        di.status = Some(0);
        send(s, &pdu::data_in(&di), &payload[1024..], dg);
        // NOP-Out ping.
        let (nop, data) = read_pdu(s, dg);
        assert_eq!(nop.opcode(), Some(Opcode::NopOut));
        let r = pdu::nop_in(
            [0; 8],
            nop.itt(),
            RESERVED_TAG,
            sn(103, nop.cmd_sn()),
            data.len() as u32,
        );
        send(s, &r, &data, dg);
    });
    let mut ini = Initiator::connect(addr).unwrap();
    let opts = LoginOptions {
        header_digest: "CRC32C".into(),
        data_digest: "CRC32C".into(),
        ..Default::default()
    };
    ini.login("iqn.test:ini", "iqn.test:tgt", &opts).unwrap();
    assert_eq!(ini.tsih(), 0x55);
    assert!(ini.negotiated().header_digest && ini.negotiated().data_digest);
    assert_eq!(
        ini.negotiated().target_max_recv_data_segment_length,
        1 << 20
    );
    let r = ini.read10(0, 0, 3, 512).unwrap();
    assert!(r.is_good());
    assert_eq!(r.data.len(), 1536);
    assert_eq!(r.data[1030], 1030u32 as u8);
    assert_eq!(ini.nop_with_data(b"ping").unwrap(), b"ping");
    h.join().unwrap();
    assert!(ini.anomalies().is_empty(), "{:?}", ini.anomalies());
}

#[test]
fn write_with_immediate_unsolicited_and_r2t_data() {
    let (addr, h) = fake_target(move |s| {
        let (op, _) = serve_login(s, Default::default(), false);
        assert_eq!(text::find(&op, "InitialR2T"), Some("No"));
        // 200 KiB write: FirstBurst 64 KiB -> 64 KiB immediate (MRDSL 1 MiB),
        // then the rest by R2T in two bursts.
        let (cmd, imm) = read_pdu(s, Digests::NONE);
        assert_eq!(cmd.opcode(), Some(Opcode::ScsiCommand));
        assert!(cmd.write_bit());
        assert!(
            cmd.final_bit(),
            "immediate data covers the whole first burst"
        );
        assert_eq!(imm.len(), 65536);
        let total = cmd.exp_data_transfer_len();
        assert_eq!(total, 200 * 1024);
        let mut got = imm.clone();
        let mut r2t_sn = 0;
        let mut off = 65536u32;
        while off < total {
            let len = (total - off).min(100 * 1024);
            let r = pdu::r2t(
                cmd.lun(),
                cmd.itt(),
                0x1000 + r2t_sn,
                r2t_sn,
                off,
                len,
                sn(102, cmd.cmd_sn() + 1),
            );
            send(s, &r, &[], Digests::NONE);
            r2t_sn += 1;
            let mut burst = 0;
            loop {
                let (d, data) = read_pdu(s, Digests::NONE);
                assert_eq!(d.opcode(), Some(Opcode::DataOut));
                assert_eq!(d.ttt(), 0x1000 + r2t_sn - 1);
                assert_eq!(d.buffer_offset(), off + burst);
                burst += data.len() as u32;
                got.extend_from_slice(&data);
                if d.final_bit() {
                    break;
                }
            }
            assert_eq!(burst, len);
            off += len;
        }
        let expect: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        assert_eq!(got, expect);
        let mut sense = Vec::new();
        pdu::encode_sense_segment(
            &[0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0],
            &mut sense,
        );
        let r = pdu::scsi_response(
            cmd.itt(),
            0,
            2,
            Residual::None,
            0,
            sn(102, cmd.cmd_sn() + 1),
            sense.len() as u32,
        );
        send(s, &r, &sense, Digests::NONE);
    });
    let mut ini = Initiator::connect(addr).unwrap();
    ini.login("iqn.test:ini", "iqn.test:tgt", &LoginOptions::default())
        .unwrap();
    let data: Vec<u8> = (0..200 * 1024u32).map(|i| (i % 251) as u8).collect();
    let r = ini.write10(0, 0, &data, 512).unwrap();
    assert_eq!(r.status, scsi::status::CHECK_CONDITION);
    assert_eq!(r.sense_key_asc_ascq(), Some((6, 0x29, 0)));
    h.join().unwrap();
    assert!(ini.anomalies().is_empty(), "{:?}", ini.anomalies());
}

#[test]
fn login_failure_reports_status() {
    let (addr, h) = fake_target(move |s| {
        let (req, _) = read_pdu(s, Digests::NONE);
        let p = pdu::LoginResponse {
            transit: false,
            cont: false,
            csg: Stage::SecurityNegotiation,
            nsg: Stage::SecurityNegotiation,
            isid: req.isid(),
            tsih: 0,
            itt: req.itt(),
            status: pdu::login_status::NOT_FOUND,
            sn: sn(0, 1),
            data_len: 0,
        };
        send(s, &pdu::login_response(&p), &[], Digests::NONE);
    });
    let mut ini = Initiator::connect(addr).unwrap();
    let e = ini
        .login("iqn.test:ini", "iqn.test:nope", &LoginOptions::default())
        .unwrap_err();
    assert!(matches!(
        e,
        InitiatorError::LoginFailed {
            class: 2,
            detail: 3
        }
    ));
    assert_eq!(ini.login_status(), Some((2, 3)));
    h.join().unwrap();
    assert!(ini.wait_closed(Duration::from_secs(5)));
}

#[test]
fn send_targets_with_continuation_and_target_ping() {
    let (addr, h) = fake_target(move |s| {
        let (op, params) = serve_login(s, Default::default(), true);
        assert_eq!(text::find(&op, "InitialR2T"), None);
        assert_eq!(params.header_digest, Digest::None);
        let (t, data) = read_pdu(s, Digests::NONE);
        assert_eq!(t.opcode(), Some(Opcode::TextRequest));
        assert_eq!(text::parse_text(&data).unwrap()[0].1, "All");
        // A target ping first; the initiator must answer it.
        let ping = pdu::nop_in([0; 8], RESERVED_TAG, 0x77, sn(102, t.cmd_sn() + 1), 0);
        send(s, &ping, &[], Digests::NONE);
        let (pong, _) = read_pdu(s, Digests::NONE);
        assert_eq!(pong.opcode(), Some(Opcode::NopOut));
        assert_eq!((pong.itt(), pong.ttt()), (RESERVED_TAG, 0x77));
        let full = text::encode_text(&[
            ("TargetName", "iqn.a"),
            ("TargetAddress", "10.0.0.1:3260,1"),
            ("TargetAddress", "[::1]:3260,1"),
            ("TargetName", "iqn.b"),
            ("TargetAddress", "10.0.0.1:3260,1"),
        ]);
        let (first, rest) = full.split_at(20);
        let r = pdu::text_response(
            false,
            true,
            [0; 8],
            t.itt(),
            0x99,
            sn(102, t.cmd_sn() + 1),
            first.len() as u32,
        );
        send(s, &r, first, Digests::NONE);
        let (t2, d2) = read_pdu(s, Digests::NONE);
        assert_eq!((t2.itt(), t2.ttt(), d2.len()), (t.itt(), 0x99, 0));
        let r = pdu::text_response(
            true,
            false,
            [0; 8],
            t.itt(),
            RESERVED_TAG,
            sn(103, t2.cmd_sn() + 1),
            rest.len() as u32,
        );
        send(s, &r, rest, Digests::NONE);
    });
    let mut ini = Initiator::connect(addr).unwrap();
    ini.login_discovery("iqn.test:ini").unwrap();
    let targets = ini.send_targets("All").unwrap();
    assert_eq!(
        targets,
        vec![
            (
                "iqn.a".to_string(),
                vec!["10.0.0.1:3260,1".to_string(), "[::1]:3260,1".to_string()]
            ),
            ("iqn.b".to_string(), vec!["10.0.0.1:3260,1".to_string()]),
        ]
    );
    h.join().unwrap();
    assert!(ini.anomalies().is_empty(), "{:?}", ini.anomalies());
}

#[test]
fn unsolicited_data_out_when_immediate_data_is_off() {
    let (addr, h) = fake_target(move |s| {
        let local = iscsi_wire::LocalParams {
            immediate_data: false,
            max_recv_data_segment_length: 16384,
            ..Default::default()
        };
        let (_, params) = serve_login(s, local, false);
        assert!(!params.immediate_data && !params.initial_r2t);
        let (cmd, imm) = read_pdu(s, Digests::NONE);
        assert!(imm.is_empty());
        assert!(!cmd.final_bit(), "unsolicited Data-Out follows");
        // First burst: 64 KiB as four 16 KiB unsolicited Data-Out PDUs.
        for i in 0..4u32 {
            let (d, data) = read_pdu(s, Digests::NONE);
            assert_eq!(d.opcode(), Some(Opcode::DataOut));
            assert_eq!(d.ttt(), RESERVED_TAG);
            assert_eq!((d.data_sn(), d.buffer_offset()), (i, i * 16384));
            assert_eq!(data.len(), 16384);
            assert_eq!(d.final_bit(), i == 3);
        }
        let r = pdu::r2t(
            cmd.lun(),
            cmd.itt(),
            7,
            0,
            65536,
            34816,
            sn(102, cmd.cmd_sn() + 1),
        );
        send(s, &r, &[], Digests::NONE);
        let mut got = 0;
        while got < 34816 {
            let (d, data) = read_pdu(s, Digests::NONE);
            assert_eq!(d.ttt(), 7);
            assert!(data.len() <= 16384);
            got += data.len();
        }
        let r = pdu::scsi_response(
            cmd.itt(),
            0,
            0,
            Residual::None,
            0,
            sn(102, cmd.cmd_sn() + 1),
            0,
        );
        send(s, &r, &[], Digests::NONE);
    });
    let mut ini = Initiator::connect(addr).unwrap();
    ini.login("iqn.test:ini", "iqn.test:tgt", &LoginOptions::default())
        .unwrap();
    assert_eq!(ini.negotiated().target_max_recv_data_segment_length, 16384);
    let r = ini.write16(0, 0, &vec![0xa5; 100 * 1024], 512).unwrap();
    assert!(r.is_good());
    h.join().unwrap();
    assert!(ini.anomalies().is_empty(), "{:?}", ini.anomalies());
}

#[test]
fn pipelined_commands_complete_out_of_order_within_the_window() {
    let (addr, h) = fake_target(move |s| {
        serve_login(s, Default::default(), false);
        // The login response opened a 32-command window; read four commands.
        let mut cmds = Vec::new();
        for _ in 0..4 {
            cmds.push(read_pdu(s, Digests::NONE).0);
        }
        let mut stat_sn = 102;
        let last = cmds[3].cmd_sn() + 1;
        // An async event in between, then answers in reverse order; the read
        // gets its data in a Data-In without status plus a separate response.
        let ev = pdu::async_message(&pdu::AsyncMessage {
            event: pdu::async_event::SCSI_EVENT,
            sn: sn(stat_sn, last),
            ..Default::default()
        });
        send(s, &ev, &[], Digests::NONE);
        stat_sn += 1;
        for c in cmds.iter().rev() {
            if c.read_bit() {
                let di = pdu::DataIn {
                    itt: c.itt(),
                    data_len: 8,
                    final_pdu: true,
                    sn: sn(stat_sn, last),
                    ..Default::default()
                };
                send(s, &pdu::data_in(&di), b"abcdefgh", Digests::NONE);
            }
            let resid = if c.read_bit() {
                Residual::Underflow(504)
            } else {
                Residual::None
            };
            let r = pdu::scsi_response(c.itt(), 0, 0, resid, 1, sn(stat_sn, last), 0);
            send(s, &r, &[], Digests::NONE);
            stat_sn += 1;
        }
        // A Reject for a fifth command.
        let (c5, _) = read_pdu(s, Digests::NONE);
        let rj = pdu::reject(
            pdu::reject_reason::INVALID_PDU_FIELD,
            0,
            sn(stat_sn, last + 1),
        );
        send(s, &rj, &c5.0, Digests::NONE);
    });
    let mut ini = Initiator::connect(addr).unwrap();
    ini.login("iqn.test:ini", "iqn.test:tgt", &LoginOptions::default())
        .unwrap();
    let itts: Vec<u32> = (0..4)
        .map(|i| {
            if i == 2 {
                ini.submit(0, &scsi::read10(0, 1), &[], 512, task_attr::SIMPLE)
            } else {
                ini.submit(0, &scsi::test_unit_ready(), &[], 0, task_attr::SIMPLE)
            }
            .unwrap()
        })
        .collect();
    assert_eq!(ini.outstanding().len(), 4);
    for (i, itt) in itts.iter().enumerate() {
        let r = ini.wait(*itt).unwrap();
        assert!(r.is_good());
        if i == 2 {
            assert_eq!(r.data, b"abcdefgh");
            assert_eq!(r.residual, Residual::Underflow(504));
        }
    }
    assert_eq!(ini.async_events().len(), 1);
    let e = ini.test_unit_ready(0).unwrap_err();
    assert!(matches!(e, InitiatorError::Rejected { reason: 0x09 }));
    h.join().unwrap();
    assert!(ini.anomalies().is_empty(), "{:?}", ini.anomalies());
}
