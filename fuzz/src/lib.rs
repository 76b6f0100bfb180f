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
        // Walk a stream of PDUs the way the connection reader does.
        for _ in 0..64 {
            let f = match frame::parse_frame(rest, digests, max_data) {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => break,
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
            rest = &rest[f.total_len..];
        }
        let _ = frame::parse_header(buf, digests, max_data);
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
