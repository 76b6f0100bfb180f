//! Fuzz entry points, one module per cargo-fuzz target. Each `run` feeds untrusted bytes
//! to the parser the daemon uses on them and must never panic. The same functions
//! replay the checked-in corpora on stable Rust (crates/scstd/tests/fuzz_corpus.rs
//! includes this file as a module), so only external crate paths are used here.

#![forbid(unsafe_code)]

/// iSCSI PDU framing: BHS, AHS, digests and the per-opcode field accessors.
pub mod pdu_decode {
    use iscsi_wire::frame::{self, Digests};

    pub fn run(data: &[u8]) {
        let Some((&flags, buf)) = data.split_first() else {
            return;
        };
        let digests = Digests {
            header: flags & 1 != 0,
            data: flags & 2 != 0,
        };
        // Small and large receive limits both: the limit check is part of the parser.
        let max_data = if flags & 4 != 0 { 512 } else { 1 << 24 };
        let mut rest = buf;
        // What the walk found, for the engine's framer to find the same, and whether
        // the stream ended in an error.
        let mut walked = Vec::new();
        let mut failed = false;
        // Walk a stream of PDUs the way the connection reader does.
        for _ in 0..64 {
            let f = match frame::parse_frame(rest, digests, max_data) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            };
            assert!(f.total_len > 0 && f.total_len <= rest.len());
            let ahs = &rest[f.ahs.clone()];
            let seg = &rest[f.data.clone()];
            assert_eq!(seg.len(), f.bhs.data_segment_len() as usize);
            for a in frame::ahs_entries(ahs) {
                if a.is_err() {
                    break;
                }
            }
            let _ = frame::extended_cdb(ahs);
            let b = &f.bhs;
            let _ = (b.opcode(), b.immediate(), b.task_attr(), b.csg(), b.nsg());
            let _ = (b.tmf_function(), b.logout_reason(), b.snack_type());
            let _ = (b.lun(), b.isid(), b.cdb(), b.total_ahs_len());
            let _ = iscsi_wire::pdu::Residual::from_bhs(b);
            // Re-encoding what was parsed gives the same header back.
            let (h, hl) = frame::encode_header(b, digests.header);
            assert_eq!(&h[..48], b.as_bytes());
            assert!(hl >= 48);
            if seg.len() <= 1 << 16 {
                let _ = iscsi_wire::parse_text(seg);
            }
            walked.push((*b.as_bytes(), ahs, seg, f.data_digest_ok));
            rest = &rest[f.total_len..];
        }
        let _ = frame::parse_header(buf, digests, max_data);
        framer_agrees(buf, flags, digests, max_data, &walked, failed);
    }

    /// One PDU the walk cut: its header, AHS, data and data digest verdict.
    type Walked<'a> = ([u8; 48], &'a [u8], &'a [u8], bool);

    /// The full-feature framer, fed the stream in reads of a size the flags pick,
    /// cuts the same PDUs and fails where the walk failed.
    fn framer_agrees(
        buf: &[u8],
        flags: u8,
        digests: Digests,
        max_data: u32,
        walked: &[Walked<'_>],
        failed: bool,
    ) {
        let read = 1 + usize::from(flags >> 3) * 97;
        let mut framer = iscsi_engine::full_feature::Framer::new(max_data, &[]);
        framer.set_digests(digests);
        let mut cut = 0;
        for piece in buf.chunks(read) {
            framer.recv_buf().extend_from_slice(piece);
            while cut < walked.len() {
                match framer.next_pdu() {
                    Ok(Some(p)) => {
                        let (bhs, ahs, data, digest_ok) = walked[cut];
                        assert_eq!(p.bhs.as_bytes(), &bhs);
                        assert_eq!(&p.ahs[..], ahs);
                        assert_eq!(&p.data[..], data);
                        assert_eq!(p.data_digest_ok, digest_ok);
                        cut += 1;
                    }
                    Ok(None) => break,
                    Err(_) => panic!("the framer failed on a PDU the walk cut"),
                }
            }
        }
        assert_eq!(cut, walked.len(), "the framer cut fewer PDUs");
        if cut < 64 {
            assert_eq!(framer.next_pdu().is_err(), failed);
        }
    }
}

/// Login/Text key=value parsing and the operational negotiation over the result.
pub mod text_negotiate {
    use iscsi_wire::negotiate::{self, DigestPolicy, LocalParams, Negotiator};

    pub fn run(data: &[u8]) {
        let Some((&flags, text)) = data.split_first() else {
            return;
        };
        let Ok(pairs) = iscsi_wire::parse_text(text) else {
            return;
        };
        let mut local = LocalParams::default();
        if flags & 2 != 0 {
            local.initial_r2t = true;
            local.immediate_data = false;
            local.header_digest = DigestPolicy::parse("CRC32C").unwrap_or(local.header_digest);
            local.max_recv_data_segment_length = 512;
            local.first_burst_length = 512;
        }
        let mut n = Negotiator::new(local, flags & 1 != 0);
        // Feed the keys in one round and again in a second one, as continued logins do.
        for round in 0..2 {
            match n.process(&pairs) {
                Ok(out) => {
                    let bytes = iscsi_wire::encode_text(&out);
                    // What we answer must itself parse.
                    iscsi_wire::parse_text(&bytes).expect("our own response keys parse");
                }
                Err(_) => return,
            }
            if round == 0 {
                let _ = n.target_declarations();
            }
            let _ = n.awaiting_replies();
        }
        let p = n.params();
        let _ = p.to_pairs();
        for (k, v) in &pairs {
            let _ = negotiate::is_login_key(k);
            let _ = negotiate::parse_number(v);
            let _ = negotiate::parse_bool(v);
            let _ = DigestPolicy::parse(v);
        }
    }
}

/// CDB decoding: the scsi-wire field decoders, then a nullio vdisk executing the CDB
/// with the rest of the input as its data-out buffer.
pub mod cdb_parse {
    use scsi_wire::{atomic, cdb, provisioning, rsoc, sbc, xcopy};
    use scst_core::{Cdb, Cmd, CmdCtx, ExecMode, TaskAttr};

    pub fn run(data: &[u8]) {
        let Some((&len, rest)) = data.split_first() else {
            return;
        };
        let n = (len as usize % 33).min(rest.len());
        let (c, data_out) = rest.split_at(n);
        let _ = cdb::decode_rw(c);
        let _ = cdb::decode_sync_cache(c);
        let _ = cdb::decode_inquiry(c);
        let _ = cdb::decode_mode_sense(c);
        let _ = cdb::decode_mode_select(c);
        let _ = atomic::decode_compare_and_write(c);
        let _ = atomic::decode_orwrite_16(c);
        let _ = atomic::decode_write_atomic_16(c);
        let _ = provisioning::decode_write_same(c);
        let _ = provisioning::decode_unmap(c);
        let _ = provisioning::decode_get_lba_status(c);
        let _ = provisioning::parse_unmap_list(data_out);
        let _ = rsoc::decode_rsoc(c);
        let _ = rsoc::decode_rstmf(c);
        let _ = sbc::decode_pre_fetch(c);
        let _ = sbc::decode_read_defect_data(c);
        let _ = xcopy::RcrCdb::decode(c);
        let _ = xcopy::ListHeader::decode(data_out);
        let _ = scsi_wire::mode::parse_select_list(len & 0x80 != 0, data_out);
        let _ = scsi_wire::Sense::parse(data_out);
        execute(c, data_out);
    }

    fn execute(c: &[u8], data_out: &[u8]) {
        let Some(cdb) = Cdb::new(c) else { return };
        // Small, so that whole-device commands stay cheap; a fresh device per input
        // keeps runs reproducible.
        let attrs = [("size".to_string(), (1u64 << 20).to_string())];
        let dev = scst_vdisk::create_device("vdisk_nullio", "fuzz", &attrs, 1)
            .expect("a 1 MiB nullio device");
        let ctx = CmdCtx {
            target_name: "iqn.2026-11.rs.scst:fuzz",
            rel_tgt_id: 1,
            initiator_name: "iqn.2026-11.rs.scst:ini",
            lun_read_only: false,
            alua: None,
        };
        let mut cmd = Cmd {
            cdb,
            lun: 0,
            tag: 1,
            attr: TaskAttr::Simple,
            data_out: data_out.to_vec(),
            expected_in: 1 << 16,
        };
        let _ = dev.data_out_len(c);
        if dev.execute(&ctx, &mut cmd, ExecMode::Inline).is_none() {
            let _ = dev.execute(&ctx, &mut cmd, ExecMode::Blocking);
        }
    }
}

/// PERSISTENT RESERVE OUT parameter lists and the TransportIDs in them.
pub mod pr_params {
    use scsi_wire::pr::{IscsiTid, PrOutParams, RegisterMoveParams};

    pub fn run(data: &[u8]) {
        let Some((&sa, list)) = data.split_first() else {
            return;
        };
        if let Ok(p) = PrOutParams::parse(sa & 0x1f, list) {
            for t in &p.tids {
                // What we decoded encodes and decodes to the same identity.
                let (back, _) = IscsiTid::decode(&t.encode()).expect("re-decode");
                assert!(back.matches(t));
            }
        }
        if let Ok(m) = RegisterMoveParams::parse(list) {
            let _ = m.tid.encode();
        }
        let _ = IscsiTid::decode(list);
    }
}

/// scst.conf: parse, semantic checks, and writing the result back out.
pub mod scst_conf {
    pub fn run(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        // The one-pass reading that skips malformed items and goes on.
        let _ = scst_mgmt::conf::load(&text);
        let Ok(conf) = scst_mgmt::parse(&text) else {
            return;
        };
        let _ = scst_mgmt::conf::problems(&conf);
        let _ = conf.canonical();
        let _ = scst_mgmt::write_config(&conf);
    }
}

/// Management commands written to the tree's `mgmt` files.
pub mod mgmt_command {
    use scst_mgmt::MgmtFile;

    const FILES: [MgmtFile; 10] = [
        MgmtFile::Handler,
        MgmtFile::TargetDriver,
        MgmtFile::Luns,
        MgmtFile::IniGroups,
        MgmtFile::Initiators,
        MgmtFile::DeviceGroups,
        MgmtFile::DeviceGroupDevices,
        MgmtFile::TargetGroups,
        MgmtFile::TargetGroup,
        MgmtFile::Handler,
    ];

    pub fn run(data: &[u8]) {
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        let line = String::from_utf8_lossy(rest);
        let _ = scst_mgmt::parse_command(FILES[sel as usize % FILES.len()], &line);
        let _ = scst_mgmt::command::parse_params("add_device", &line);
    }
}

/// iSNS messages from the server (registration and query responses, state change
/// notifications): PDU headers, reassembly, attributes and the SCN fields.
pub mod isns_message {
    use scst_iscsi::isns::scn::Notification;
    use scst_iscsi::isns::wire::{self, Header, Reassembler, Response, HEADER_LEN};

    pub fn run(data: &[u8]) {
        let mut re = Reassembler::default();
        let mut rest = data;
        for _ in 0..64 {
            if rest.len() < HEADER_LEN {
                break;
            }
            let Ok(h) = Header::decode(&rest[..HEADER_LEN]) else {
                break;
            };
            rest = &rest[HEADER_LEN..];
            let n = (h.length as usize).min(rest.len());
            let (body, tail) = rest.split_at(n);
            rest = tail;
            let payload = match re.push(&h, body) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(_) => {
                    re = Reassembler::default();
                    continue;
                }
            };
            if let Ok(r) = Response::decode(&payload) {
                let _ = (r.operating().len(), r.find(wire::tag::REGISTRATION_PERIOD));
            }
            if let Ok(attrs) = wire::decode_attrs(&payload) {
                for a in &attrs {
                    let _ = (a.as_str(), a.as_u32(), a.as_ip());
                }
                if let Some(n) = Notification::parse(&attrs) {
                    assert!(!n.destination.contains('\0'));
                }
                // What decodes must encode back to the same bytes.
                assert_eq!(wire::encode_attrs(&attrs), payload);
            }
        }
    }
}

/// The iSCSI engine (crate iscsi-engine) driven from login onward: a sequence of
/// operations, each building one PDU (login requests with keys from a table or raw
/// text, CHAP answers computed from the target's challenge, Text, NOP-Out, Logout, any
/// other header), raw bytes, or a clock step. The target's output must always frame
/// into whole PDUs and nothing may follow a close.
pub mod login_session {
    use std::time::{Duration, Instant};

    use iscsi_engine::{
        Accounts, AdmissionRequest, Admitted, Config, Connection, Event, LoginHost, Phase, Refusal,
    };
    use iscsi_wire::chap::{self, ChapAlgorithm};
    use iscsi_wire::negotiate::LocalParams;
    use iscsi_wire::pdu::{self, login_status, LoginRequest};
    use iscsi_wire::{frame, Bhs, Digests, Opcode, Stage};

    const TARGET: &str = "iqn.2024-01.org.example:t";
    const SECRET: &str = "secret123456";

    struct Host {
        chap: bool,
        internal: bool,
        accepting: bool,
        tsih: u16,
    }

    impl LoginHost for Host {
        type Admission = ();

        fn accepting_logins(&self) -> bool {
            self.accepting
        }

        fn admit(&mut self, req: &AdmissionRequest<'_>) -> Result<Admitted<()>, Refusal> {
            if req.target != TARGET {
                return Err(Refusal::new(login_status::NOT_FOUND, "no such target"));
            }
            Ok(Admitted {
                handle: (),
                acl_name: req.initiator.to_string(),
                accounts: self.discovery_accounts(),
                params: LocalParams {
                    immediate_data: false,
                    max_burst_length: 65536,
                    ..LocalParams::default()
                },
                alias: Some("fuzz".to_string()),
            })
        }

        fn discovery_accounts(&self) -> Accounts {
            let mut attrs = Vec::new();
            if self.chap {
                attrs.push(("IncomingUser".to_string(), format!("joe {SECRET}")));
                attrs.push(("OutgoingUser".to_string(), "tgt targetsecret12".to_string()));
            }
            Accounts::from_attrs(&attrs)
        }

        fn internal_portal(&self) -> bool {
            self.internal
        }

        fn alloc_tsih(&mut self) -> u16 {
            self.tsih = self.tsih.wrapping_add(1).max(1);
            self.tsih
        }
    }

    /// Login keys the operations pick from by index.
    const KEYS: &[(&str, &str)] = &[
        ("InitiatorName", "iqn.1994-05.com.example:i"),
        ("TargetName", TARGET),
        ("SessionType", "Discovery"),
        ("SessionType", "Normal"),
        ("AuthMethod", "CHAP,None"),
        ("AuthMethod", "None"),
        ("CHAP_A", "5,7"),
        ("MaxRecvDataSegmentLength", "512"),
        ("HeaderDigest", "CRC32C,None"),
        ("ImmediateData", "No"),
        ("MaxBurstLength", "65536"),
        ("InitialR2T", "No"),
        ("TargetName", "iqn.none"),
        ("SessionType", "Bogus"),
        ("ErrorRecoveryLevel", "1"),
        ("SendTargets", "All"),
    ];

    fn stage(bits: u8) -> Stage {
        match bits & 3 {
            0 => Stage::SecurityNegotiation,
            1 => Stage::LoginOperational,
            _ => Stage::FullFeature,
        }
    }

    /// What the initiator side remembers between operations.
    struct Initiator {
        itt: u32,
        cmd_sn: u32,
        exp_stat_sn: u32,
        /// The target's last CHAP_A/CHAP_I/CHAP_C.
        challenge: Option<(u32, u8, Vec<u8>)>,
        ttt: u32,
    }

    impl Initiator {
        fn login(&mut self, flags: u8, text: &[u8]) -> Vec<u8> {
            self.itt = self.itt.wrapping_add(1);
            let b = pdu::login_request(&LoginRequest {
                transit: flags & 0x10 != 0,
                cont: flags & 0x20 != 0,
                csg: stage(flags),
                nsg: stage(flags >> 2),
                isid: [0x80, 0, 0, 1, 0, flags >> 6],
                tsih: 0,
                itt: self.itt,
                cid: 0,
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
                data_len: text.len() as u32,
            });
            frame::encode_pdu(&b, text, Digests::NONE)
        }

        /// CHAP_N/CHAP_R answering the last challenge, right or wrong, with a mutual
        /// challenge of our own when asked.
        fn chap_answer(&self, body: &[u8]) -> Vec<(String, String)> {
            let sel = body.first().copied().unwrap_or(0);
            let Some((code, id, c)) = &self.challenge else {
                return vec![("CHAP_N".into(), "joe".into())];
            };
            let Some(alg) = ChapAlgorithm::from_code(*code) else {
                return Vec::new();
            };
            let secret = if sel & 1 == 0 { SECRET } else { "wrongsecret1" };
            let r = alg.response(*id, secret.as_bytes(), c);
            let mut keys = vec![
                ("CHAP_N".to_string(), "joe".to_string()),
                ("CHAP_R".to_string(), chap::encode_hex(&r)),
            ];
            if sel & 2 != 0 {
                let mine = body.get(1..).unwrap_or_default();
                keys.push(("CHAP_I".into(), (sel >> 2).to_string()));
                keys.push(("CHAP_C".into(), chap::encode_hex(mine)));
            }
            keys
        }

        /// Learns StatSN, the CHAP challenge and a Text TTT from what the target sent.
        fn observe(&mut self, bytes: &[u8]) {
            let f = match frame::parse_frame(bytes, Digests::NONE, 1 << 24) {
                Ok(Some(f)) => f,
                other => panic!("the target queued something that is not one PDU: {other:?}"),
            };
            assert_eq!(f.total_len, bytes.len(), "one PDU per transmit");
            self.exp_stat_sn = f.bhs.stat_sn().wrapping_add(1);
            if f.bhs.opcode() == Some(Opcode::TextResponse) {
                self.ttt = f.bhs.ttt();
            }
            let Ok(keys) = iscsi_wire::parse_text(&bytes[f.data.clone()]) else {
                return;
            };
            let get = |k: &str| keys.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            if let (Some(a), Some(i), Some(c)) = (get("CHAP_A"), get("CHAP_I"), get("CHAP_C")) {
                if let (Ok(a), Ok(i), Ok(c)) = (
                    a.parse(),
                    chap::decode_identifier(i),
                    chap::decode_binary(c),
                ) {
                    self.challenge = Some((a, i, c));
                }
            }
        }
    }

    pub fn run(data: &[u8]) {
        let Some((&flags, mut rest)) = data.split_first() else {
            return;
        };
        let mut host = Host {
            chap: flags & 1 != 0,
            internal: flags & 2 != 0,
            accepting: flags & 4 == 0,
            tsih: 0,
        };
        let access = flags & 8 == 0;
        let mut now = Instant::now();
        let config = Config {
            login_timeout: Duration::from_secs(15),
        };
        let mut conn: Connection<()> = Connection::new(config, now);
        let mut ini = Initiator {
            itt: 0,
            cmd_sn: 1,
            exp_stat_sn: 0,
            challenge: None,
            ttt: u32::MAX,
        };
        let mut closed = false;
        for _ in 0..256 {
            let Some((&op, tail)) = rest.split_first() else {
                break;
            };
            let Some((&len, tail)) = tail.split_first() else {
                break;
            };
            let (body, tail) = tail.split_at(tail.len().min(len as usize));
            rest = tail;
            let sel = body.first().copied().unwrap_or(0);
            let arg = body.get(1..).unwrap_or_default();
            let bytes = match op % 9 {
                // A login request with keys from the table.
                0 => {
                    let keys: Vec<(String, String)> = arg
                        .iter()
                        .map(|&i| KEYS[i as usize % KEYS.len()])
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    ini.login(sel, &iscsi_wire::encode_text(&keys))
                }
                // A login request with raw text.
                1 => ini.login(sel, arg),
                // The answer to the last CHAP challenge.
                2 => ini.login(sel, &iscsi_wire::encode_text(&ini.chap_answer(arg))),
                // Text request: SendTargets, or continuing the last answer.
                3 => {
                    let text =
                        iscsi_wire::encode_text(&[("SendTargets".to_string(), "All".to_string())]);
                    let (ttt, text) = if sel & 1 != 0 {
                        (ini.ttt, &[][..])
                    } else {
                        (u32::MAX, &text[..])
                    };
                    ini.itt = ini.itt.wrapping_add(1);
                    let b = pdu::text_request(
                        sel & 2 != 0,
                        true,
                        false,
                        ini.itt,
                        ttt,
                        ini.cmd_sn,
                        ini.exp_stat_sn,
                        text.len() as u32,
                    );
                    ini.cmd_sn = ini.cmd_sn.wrapping_add(1);
                    frame::encode_pdu(&b, text, Digests::NONE)
                }
                4 => {
                    let itt = if sel & 1 != 0 { u32::MAX } else { ini.itt };
                    let b =
                        pdu::nop_out(true, [0; 8], itt, u32::MAX, ini.cmd_sn, 0, arg.len() as u32);
                    frame::encode_pdu(&b, arg, Digests::NONE)
                }
                5 => {
                    let b =
                        pdu::logout_request(true, sel & 3, ini.itt, 0, ini.cmd_sn, ini.exp_stat_sn);
                    frame::encode_pdu(&b, &[], Digests::NONE)
                }
                // Any header, with the rest as its data segment.
                6 => {
                    let mut bhs = Bhs([0; 48]);
                    for (d, s) in bhs.0.iter_mut().zip(arg) {
                        *d = *s;
                    }
                    let text = arg.get(48..).unwrap_or_default();
                    bhs.set_data_segment_len(text.len() as u32);
                    frame::encode_pdu(&bhs, text, Digests::NONE)
                }
                // Raw bytes, as a socket might split them.
                7 => body.to_vec(),
                // Time passes.
                _ => {
                    now += Duration::from_secs(u64::from(sel) / 8);
                    conn.handle_timeout(now);
                    Vec::new()
                }
            };
            if !bytes.is_empty() {
                conn.handle_bytes(now, &bytes, &mut host);
            }
            loop {
                while let Some(out) = conn.poll_transmit() {
                    assert!(!closed, "transmit after close");
                    ini.observe(&out);
                }
                let Some(event) = conn.poll_event() else {
                    break;
                };
                assert!(!closed, "event after close");
                match event {
                    Event::AccessQuery { .. } => conn.answer_access(access, &mut host),
                    Event::SendTargets { .. } => {
                        let listing: Vec<(String, String)> = (0..sel % 64)
                            .flat_map(|i| {
                                [
                                    ("TargetName".to_string(), format!("{TARGET}{i}")),
                                    ("TargetAddress".to_string(), "10.0.0.1:3260,1".to_string()),
                                ]
                            })
                            .collect();
                        conn.answer_send_targets(&listing, &mut host);
                    }
                    Event::Closed(_) => closed = true,
                    Event::SessionReady(_) | Event::DiscoveryReady { .. } => {}
                }
            }
            match conn.phase() {
                Phase::Login => assert!(conn.poll_timeout().is_some()),
                Phase::Closed => assert!(closed),
                Phase::Discovery | Phase::FullFeature => assert!(conn.poll_timeout().is_none()),
            }
            if closed || conn.phase() == Phase::FullFeature {
                break;
            }
        }
    }
}

/// The full-feature rules of a normal session (iscsi-engine's `FullFeature`) from the
/// end of the login to logout.
#[path = "full_feature.rs"]
pub mod full_feature;

/// One session from login to logout through both phases of the engine.
#[path = "login_to_logout.rs"]
pub mod login_to_logout;
