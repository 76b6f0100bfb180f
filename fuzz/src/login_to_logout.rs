//! One normal session from its first login request to logout, through the engine's
//! two phases: iscsi-engine's login [`Connection`] until the session is ready, then its
//! [`FullFeatureConnection`], fed with what the login read past its last PDU and then
//! with SCSI commands, Data-Out, task management, NOP-Out, text, raw headers, raw
//! bytes and clock steps, while a fake core answers, aborts or holds the commands it
//! gets. Every byte the engine transmits frames into whole PDUs, ExpCmdSN never goes
//! back, the commands it counts are never fewer than the core holds, and a logout
//! ends the session once, with its response last.

use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi_engine::full_feature::{
    Command, DataOutParams, Ending, Event as FfEvent, FullFeatureConnection, Next, NoSharedLimit,
    TaskManagement, TmfOutcome,
};
use iscsi_engine::{
    Accounts, AdmissionRequest, Admitted, Config, Connection, Event, FullFeatureConfig, LoginHost,
    Phase, Refusal,
};
use iscsi_wire::negotiate::LocalParams;
use iscsi_wire::pdu::{self, LoginRequest};
use iscsi_wire::{frame, Bhs, Digests, Stage};

const TARGET: &str = "iqn.2024-01.org.example:t";

struct Host {
    params: LocalParams,
}

impl LoginHost for Host {
    type Admission = ();

    fn accepting_logins(&self) -> bool {
        true
    }

    fn admit(&mut self, req: &AdmissionRequest<'_>) -> Result<Admitted<()>, Refusal> {
        Ok(Admitted {
            handle: (),
            acl_name: req.initiator.to_string(),
            accounts: self.discovery_accounts(),
            params: self.params.clone(),
            alias: None,
        })
    }

    fn discovery_accounts(&self) -> Accounts {
        Accounts::from_attrs(&[])
    }

    fn internal_portal(&self) -> bool {
        false
    }

    fn alloc_tsih(&mut self) -> u16 {
        1
    }
}

/// Operational keys the input may add to the login, by bit.
const KEYS: &[(&str, &str)] = &[
    ("ImmediateData", "No"),
    ("InitialR2T", "No"),
    ("MaxBurstLength", "16384"),
    ("FirstBurstLength", "4096"),
    ("MaxRecvDataSegmentLength", "4096"),
    ("MaxOutstandingR2T", "2"),
    ("ErrorRecoveryLevel", "0"),
    ("DataPDUInOrder", "Yes"),
];

/// The fake core: the commands it holds, and a TMF it answers later.
#[derive(Default)]
struct Core {
    held: Vec<Command>,
    later: Option<u32>,
}

/// What the initiator remembers: sequence numbers and the last R2T.
struct Initiator {
    cmd_sn: u32,
    exp_stat_sn: u32,
    exp_cmd_sn: u32,
    r2t: Option<(u32, u32, u32, u32)>,
}

impl Initiator {
    /// Everything the engine queued: whole PDUs, ExpCmdSN never going back.
    fn observe(&mut self, ff: &mut FullFeatureConnection) {
        let bytes = ff.transmit().to_bytes();
        ff.transmit().clear();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let f = match frame::parse_frame(rest, Digests::NONE, 1 << 26) {
                Ok(Some(f)) => f,
                other => panic!("the engine queued a partial or bad PDU: {other:?}"),
            };
            let b = f.bhs;
            let exp = b.exp_cmd_sn();
            assert!(
                !iscsi_engine::full_feature::sn_lt(exp, self.exp_cmd_sn),
                "ExpCmdSN went back from {} to {exp}",
                self.exp_cmd_sn
            );
            self.exp_cmd_sn = exp;
            self.exp_stat_sn = b.stat_sn().wrapping_add(1);
            if b.opcode() == Some(iscsi_wire::Opcode::R2t) {
                self.r2t = Some((
                    b.itt(),
                    b.ttt(),
                    b.buffer_offset(),
                    b.desired_data_transfer_len(),
                ));
            }
            rest = &rest[f.total_len..];
        }
    }
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut x = [0u8; 4];
    for (k, v) in x.iter_mut().enumerate() {
        *v = b.get(i + k).copied().unwrap_or(0);
    }
    u32::from_le_bytes(x)
}

/// Log in with the keys `flags` picks; `ahead`: bytes that arrive in the same read
/// as the login request. The full-feature connection, when the login succeeded.
fn login(flags: u8, ahead: &[u8], now: Instant) -> Option<FullFeatureConnection> {
    let mut host = Host {
        params: LocalParams {
            immediate_data: flags & 1 == 0,
            initial_r2t: flags & 2 != 0,
            // A smaller MaxBurstLength than the initiator's makes the target offer it,
            // and hold the transition until it is answered.
            max_burst_length: if flags & 0x80 != 0 { 65536 } else { 262144 },
            ..LocalParams::default()
        },
    };
    let mut keys = vec![
        (
            "InitiatorName".to_string(),
            "iqn.1994-05.com.example:i".to_string(),
        ),
        ("TargetName".to_string(), TARGET.to_string()),
        ("SessionType".to_string(), "Normal".to_string()),
    ];
    for (i, (k, v)) in KEYS.iter().enumerate() {
        if flags & (1 << i) != 0 {
            keys.push((k.to_string(), v.to_string()));
        }
    }
    let config = Config {
        login_timeout: Duration::from_secs(15),
    };
    let mut conn: Connection<()> = Connection::new(config, now);
    let mut session = None;
    let mut sent: Vec<String> = Vec::new();
    // The target may hold the transition while keys it offered wait for an answer:
    // the next request answers them with the values offered (keys it answered, being
    // ours, are negotiated already).
    for round in 0..3u32 {
        sent.extend(keys.iter().map(|(k, _)| k.clone()));
        let text = iscsi_wire::encode_text(&keys);
        let req = pdu::login_request(&LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::LoginOperational,
            nsg: Stage::FullFeature,
            isid: [0x80, 0, 0, 1, 0, 0],
            tsih: 0,
            itt: round,
            cid: 0,
            cmd_sn: 1,
            exp_stat_sn: round,
            data_len: text.len() as u32,
        });
        let mut bytes = frame::encode_pdu(&req, &text, Digests::NONE);
        if round == 0 {
            bytes.extend_from_slice(ahead);
        }
        conn.handle_bytes(now, &bytes, &mut host);
        while let Some(ev) = conn.poll_event() {
            match ev {
                // iSNS access control lets the initiator see the target.
                Event::AccessQuery { .. } => conn.answer_access(true, &mut host),
                Event::SessionReady(s) => session = Some(s),
                _ => {}
            }
        }
        keys.clear();
        while let Some(t) = conn.poll_transmit() {
            let Ok(Some(f)) = frame::parse_frame(&t, Digests::NONE, 1 << 24) else {
                continue;
            };
            let offered = iscsi_wire::parse_text(&t[f.data.clone()]).unwrap_or_default();
            keys.extend(offered.into_iter().filter(|(k, _)| {
                !sent.contains(k)
                    && !matches!(
                        k.as_str(),
                        "TargetPortalGroupTag" | "TargetAlias" | "TargetAddress"
                    )
            }));
        }
        if session.is_some() || conn.phase() != Phase::Login {
            break;
        }
    }
    let s = session?;
    let p = &s.params;
    let config = FullFeatureConfig {
        stat_sn: s.stat_sn,
        exp_cmd_sn: s.exp_cmd_sn,
        queued_commands: 8,
        nop_in_interval: Some(Duration::from_secs(5)),
        nop_in_timeout: Duration::from_secs(5),
        data_out: DataOutParams {
            first_burst_length: p.first_burst_length,
            max_burst_length: p.max_burst_length,
            max_outstanding_r2t: p.max_outstanding_r2t.max(1),
            initial_r2t: p.initial_r2t,
            immediate_data: p.immediate_data,
        },
        max_xmit_data_segment_length: p.max_xmit_data_segment_length,
    };
    Some(FullFeatureConnection::new(
        config,
        Digests::NONE,
        p.max_recv_data_segment_length,
        &conn.take_received(),
        std::sync::Arc::new(NoSharedLimit),
        now,
    ))
}

pub fn run(data: &[u8]) {
    let _ = session(data);
}

/// The session `data` drives, and how it ended: None when the login failed or the
/// connection broke on bad framing.
pub fn session(data: &[u8]) -> Option<Ending> {
    let (&flags, rest) = data.split_first()?;
    let (&ahead_len, rest) = rest.split_first()?;
    let (ahead, mut rest) = rest.split_at(rest.len().min(ahead_len as usize % 64));
    let mut now = Instant::now();
    let mut ff = login(flags, ahead, now)?;
    let mut core = Core::default();
    let mut ini = Initiator {
        cmd_sn: 1,
        exp_stat_sn: 0,
        exp_cmd_sn: 0,
        r2t: None,
    };
    let mut logged_out = 0;
    let mut step = 0;
    loop {
        step += 1;
        let (op, body) = match rest.split_first() {
            Some((&op, tail)) if step < 256 => {
                let len = tail.first().copied().unwrap_or(0) as usize;
                let tail = tail.get(1..).unwrap_or_default();
                let (body, tail) = tail.split_at(tail.len().min(len));
                rest = tail;
                (op, body)
            }
            // The input is spent: the session logs out.
            _ => (5, &[][..]),
        };
        let sel = body.first().copied().unwrap_or(0);
        let arg = body.get(1..).unwrap_or_default();
        let lun = pdu::lun_from_u16(u16::from(sel & 3));
        let itt = u32::from(sel >> 4);
        let mut bytes = Vec::new();
        match op % 10 {
            // A SCSI command, with immediate data from the input.
            0 => {
                let edtl = u32_at(arg, 0) % (256 << 10);
                let write = sel & 4 != 0;
                let cdb = [if write { 0x2a } else { 0x28 }, 0, 0, 0, 0, 0, 0, 0, 1, 0];
                let imm = arg.get(4..).unwrap_or_default();
                let b = pdu::scsi_command(&pdu::ScsiCommand {
                    immediate: sel & 8 != 0,
                    lun,
                    itt,
                    attr: sel & 7,
                    read: !write,
                    write,
                    final_pdu: true,
                    exp_data_transfer_len: edtl,
                    cmd_sn: ini.cmd_sn,
                    exp_stat_sn: ini.exp_stat_sn,
                    cdb: &cdb,
                    data_len: imm.len() as u32,
                });
                if sel & 8 == 0 {
                    ini.cmd_sn = ini.cmd_sn.wrapping_add(1);
                }
                bytes = frame::encode_pdu(&b, imm, Digests::NONE);
            }
            // Data-Out answering the last R2T, or anywhere.
            1 => {
                let (ritt, ttt, off, len) = match ini.r2t {
                    Some(r) if sel & 1 == 0 => r,
                    _ => (itt, u32_at(arg, 0), u32_at(arg, 4) % (1 << 20), 512),
                };
                let len = len.min(8192);
                let b = pdu::data_out(lun, ritt, ttt, u32::from(sel >> 5), off, true, 0, len);
                bytes = frame::encode_pdu(&b, &vec![sel; len as usize], Digests::NONE);
            }
            // Task management.
            2 => {
                let b = pdu::tmf_request(&pdu::TmfRequest {
                    immediate: true,
                    function: 1 + (sel >> 4) % 9,
                    lun,
                    itt: 1000 + u32::from(sel),
                    ref_task_tag: u32::from(arg.first().copied().unwrap_or(0) >> 4),
                    cmd_sn: ini.cmd_sn,
                    exp_stat_sn: ini.exp_stat_sn,
                    ref_cmd_sn: ini.cmd_sn.wrapping_sub(u32::from(sel & 7)),
                    exp_data_sn: 0,
                });
                bytes = frame::encode_pdu(&b, &[], Digests::NONE);
            }
            // NOP-Out: a ping of ours, or an answer to one of the target's.
            3 => {
                let (itt, ttt) = if sel & 1 == 0 {
                    (itt, u32::MAX)
                } else {
                    (u32::MAX, u32_at(arg, 0))
                };
                let b = pdu::nop_out(true, lun, itt, ttt, ini.cmd_sn, 0, arg.len() as u32);
                bytes = frame::encode_pdu(&b, arg, Digests::NONE);
            }
            // Text: SendTargets or anything.
            4 => {
                let text = if sel & 1 == 0 {
                    iscsi_wire::encode_text(&[("SendTargets".to_string(), "All".to_string())])
                } else {
                    arg.to_vec()
                };
                let b = pdu::text_request(
                    true,
                    true,
                    false,
                    itt,
                    u32::MAX,
                    ini.cmd_sn,
                    ini.exp_stat_sn,
                    text.len() as u32,
                );
                bytes = frame::encode_pdu(&b, &text, Digests::NONE);
            }
            5 => {
                let b = pdu::logout_request(true, 0, 0x7000, 0, ini.cmd_sn, ini.exp_stat_sn);
                bytes = frame::encode_pdu(&b, &[], Digests::NONE);
            }
            // Any header, with the rest as its data segment.
            6 => {
                let mut bhs = Bhs([0; 48]);
                for (d, s) in bhs.0.iter_mut().zip(arg) {
                    *d = *s;
                }
                let data = arg.get(48..).unwrap_or_default();
                bhs.set_data_segment_len(data.len() as u32);
                bytes = frame::encode_pdu(&bhs, data, Digests::NONE);
            }
            // Raw bytes, as a socket might split them.
            7 => bytes = body.to_vec(),
            // The core answers, or aborts, one command it holds.
            8 => {
                if !core.held.is_empty() {
                    let c = core.held.remove(sel as usize % core.held.len());
                    if sel & 0x80 != 0 {
                        ff.release(c.task);
                    } else {
                        let data = Bytes::from(vec![0u8; (u32_at(arg, 0) % (128 << 10)) as usize]);
                        let sense =
                            (sel & 0x40 != 0).then_some(&[0x70u8, 0, 5, 0, 0, 0, 0, 10][..]);
                        let status = if sense.is_some() { 2 } else { 0 };
                        ff.respond(c.task, status, data, sense, None);
                    }
                }
                if let Some(tag) = core.later.take() {
                    ff.tmf_done(tag, TmfOutcome::Complete);
                }
                ff.pump_budget();
            }
            // Time passes.
            _ => {
                now += Duration::from_secs(u64::from(sel) / 16);
                ff.handle_timeout(now);
            }
        }
        ff.recv_buf().extend_from_slice(&bytes);
        loop {
            let held = &core.held;
            let more = match ff.handle_next(&|itt| held.iter().any(|c| c.task.itt() == itt)) {
                Ok(Next::Idle) => false,
                Ok(Next::Handled) => true,
                Ok(Next::Command(c)) => {
                    core.held.push(c);
                    true
                }
                // A framing error ends the connection.
                Err(_) => return None,
            };
            while let Some(ev) = ff.poll_event() {
                match ev {
                    FfEvent::Command(c) => {
                        assert!(c.cdb().len() <= iscsi_engine::full_feature::MAX_CDB);
                        core.held.push(c);
                    }
                    FfEvent::Failed { task, .. } => {
                        ff.respond(task, 2, Bytes::new(), Some(&[0x70, 0, 5]), None)
                    }
                    FfEvent::TaskManagement { tag, function } => {
                        let covered = |c: &Command| match function {
                            TaskManagement::AbortTask { itt, .. } => c.task.itt() == itt,
                            TaskManagement::ClearAca { .. } => false,
                            TaskManagement::AbortTaskSet { lun }
                            | TaskManagement::ClearTaskSet { lun }
                            | TaskManagement::LunReset { lun } => c.lun == lun,
                            TaskManagement::TargetReset { .. } => true,
                        };
                        let (gone, kept) = std::mem::take(&mut core.held)
                            .into_iter()
                            .partition::<Vec<_>, _>(covered);
                        core.held = kept;
                        for c in gone {
                            ff.release(c.task);
                        }
                        let outcome = match (sel & 3, core.later) {
                            (0, None) => {
                                core.later = Some(tag);
                                None
                            }
                            (1, _) => Some(TmfOutcome::LunNotExist),
                            _ => Some(TmfOutcome::Complete),
                        };
                        ff.tmf_acted(tag, outcome);
                    }
                    FfEvent::SendTargets(req) => ff.answer_text(&req, &[]),
                    FfEvent::LoggedOut => logged_out += 1,
                }
            }
            if !more {
                break;
            }
        }
        assert!(ff.outstanding() >= core.held.len());
        ini.observe(&mut ff);
        if let Some(ending) = ff.ending() {
            assert_eq!(logged_out, u32::from(ending == Ending::Logout));
            return Some(ending);
        }
        if step > 320 {
            // Bytes that leave the stream mid-PDU (raw bytes, a header whose length
            // promises more) keep every later PDU from framing, the logouts included:
            // the connection would wait for its timeouts.
            assert!(
                ff.transmit().is_empty(),
                "nothing to send while the stream is stuck"
            );
            return None;
        }
    }
}
