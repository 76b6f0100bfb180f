//! Login (security and operational stages, CHAP, answers to the target's offers),
//! the negotiated parameters, and discovery's SendTargets over Text requests.

use iscsi_wire::bhs::{Opcode, Stage, RESERVED_TAG};
use iscsi_wire::frame::Digests;
use iscsi_wire::negotiate::{parse_bool, parse_number};
use iscsi_wire::pdu::{self};
use iscsi_wire::text;

use super::{chap, Initiator, InitiatorError, Pdu, Result};

/// What to offer at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOptions {
    /// HeaderDigest offer, e.g. "None", "CRC32C", "CRC32C,None".
    pub header_digest: String,
    pub data_digest: String,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// What this initiator can receive per PDU (declared).
    pub max_recv_data_segment_length: u32,
    pub first_burst_length: u32,
    pub max_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub isid: [u8; 6],
    /// Nonzero to reinstate/continue an existing session.
    pub tsih: u16,
    /// Extra keys sent in the operational stage (e.g. unknown keys, duplicates).
    pub extra_keys: Vec<(String, String)>,
}

impl Default for LoginOptions {
    fn default() -> Self {
        LoginOptions {
            header_digest: "None".into(),
            data_digest: "None".into(),
            immediate_data: true,
            initial_r2t: false,
            max_recv_data_segment_length: 262_144,
            first_burst_length: 65_536,
            max_burst_length: 1 << 20,
            max_outstanding_r2t: 1,
            // ISID type "random" (0b10) with fixed bytes: deterministic tests.
            isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x01],
            tsih: 0,
            extra_keys: Vec::new(),
        }
    }
}

/// Negotiated parameters, from the initiator's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u32,
    pub header_digest: bool,
    pub data_digest: bool,
    /// The target's declared MaxRecvDataSegmentLength (our send limit), 8192 if the
    /// target never declared one.
    pub target_max_recv_data_segment_length: u32,
    /// What we declared.
    pub max_recv_data_segment_length: u32,
}

impl Negotiated {
    /// RFC 7143 defaults.
    pub(super) fn rfc_defaults(our_mrdsl: u32) -> Negotiated {
        Negotiated {
            initial_r2t: true,
            immediate_data: true,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            header_digest: false,
            data_digest: false,
            target_max_recv_data_segment_length: 8192,
            max_recv_data_segment_length: our_mrdsl,
        }
    }

    pub(super) fn digests(&self) -> Digests {
        Digests {
            header: self.header_digest,
            data: self.data_digest,
        }
    }

    /// Records one key from a login response (answer to our offer or declaration).
    fn apply(&mut self, key: &str, value: &str) {
        if matches!(value, "Reject" | "Irrelevant" | "NotUnderstood") {
            return;
        }
        let num = || parse_number(value).map(|v| v.min(u32::MAX as u64) as u32);
        match key {
            "InitialR2T" => self.initial_r2t = parse_bool(value).unwrap_or(self.initial_r2t),
            "ImmediateData" => {
                self.immediate_data = parse_bool(value).unwrap_or(self.immediate_data)
            }
            "DataPDUInOrder" => {
                self.data_pdu_in_order = parse_bool(value).unwrap_or(self.data_pdu_in_order)
            }
            "DataSequenceInOrder" => {
                self.data_sequence_in_order =
                    parse_bool(value).unwrap_or(self.data_sequence_in_order)
            }
            "MaxBurstLength" => self.max_burst_length = num().unwrap_or(self.max_burst_length),
            "FirstBurstLength" => {
                self.first_burst_length = num().unwrap_or(self.first_burst_length)
            }
            "MaxOutstandingR2T" => {
                self.max_outstanding_r2t = num().unwrap_or(self.max_outstanding_r2t)
            }
            "ErrorRecoveryLevel" => {
                self.error_recovery_level = num().unwrap_or(self.error_recovery_level)
            }
            "MaxRecvDataSegmentLength" => {
                self.target_max_recv_data_segment_length =
                    num().unwrap_or(self.target_max_recv_data_segment_length)
            }
            "HeaderDigest" => self.header_digest = value == "CRC32C",
            "DataDigest" => self.data_digest = value == "CRC32C",
            _ => {}
        }
    }
}

const MAX_LOGIN_ROUNDS: usize = 16;

impl Initiator {
    /// Logs in to a discovery session.
    pub fn login_discovery(&mut self, initiator_name: &str) -> Result<()> {
        let security = vec![
            kv("InitiatorName", initiator_name),
            kv("SessionType", "Discovery"),
            kv("AuthMethod", &self.auth_method()),
        ];
        let opts = LoginOptions::default();
        let operational = vec![
            kv("HeaderDigest", &opts.header_digest),
            kv("DataDigest", &opts.data_digest),
            kv(
                "MaxRecvDataSegmentLength",
                &opts.max_recv_data_segment_length.to_string(),
            ),
        ];
        self.run_login(&opts, security, operational)
    }

    /// Logs in to a normal session with `target_name`.
    pub fn login(
        &mut self,
        initiator_name: &str,
        target_name: &str,
        opts: &LoginOptions,
    ) -> Result<()> {
        let security = vec![
            kv("InitiatorName", initiator_name),
            kv("TargetName", target_name),
            kv("SessionType", "Normal"),
            kv("AuthMethod", &self.auth_method()),
        ];
        let mut operational = vec![
            kv("HeaderDigest", &opts.header_digest),
            kv("DataDigest", &opts.data_digest),
            kv("InitialR2T", yes_no(opts.initial_r2t)),
            kv("ImmediateData", yes_no(opts.immediate_data)),
            kv(
                "MaxRecvDataSegmentLength",
                &opts.max_recv_data_segment_length.to_string(),
            ),
            kv("MaxBurstLength", &opts.max_burst_length.to_string()),
            kv("FirstBurstLength", &opts.first_burst_length.to_string()),
            kv("MaxOutstandingR2T", &opts.max_outstanding_r2t.to_string()),
            kv("MaxConnections", "1"),
            kv("ErrorRecoveryLevel", "0"),
            kv("DefaultTime2Wait", "2"),
            kv("DefaultTime2Retain", "0"),
            kv("DataPDUInOrder", "Yes"),
            kv("DataSequenceInOrder", "Yes"),
        ];
        operational.extend(opts.extra_keys.iter().cloned());
        self.run_login(opts, security, operational)
    }

    fn run_login(
        &mut self,
        opts: &LoginOptions,
        security: Vec<(String, String)>,
        operational: Vec<(String, String)>,
    ) -> Result<()> {
        self.isid = opts.isid;
        self.tsih = opts.tsih;
        self.negotiated = Negotiated::rfc_defaults(opts.max_recv_data_segment_length);
        self.login_keys.clear();
        let result = self.login_stages(opts, security, operational);
        // Whatever happened, the reader must not stay paused.
        let digests = if result.is_ok() {
            self.negotiated.digests()
        } else {
            Digests::NONE
        };
        self.resume_rx(digests);
        result
    }

    fn login_stages(
        &mut self,
        opts: &LoginOptions,
        security: Vec<(String, String)>,
        operational: Vec<(String, String)>,
    ) -> Result<()> {
        let itt = self.alloc_itt();
        let chap_cfg = self.chap.clone();
        let mut chap_state = chap::ChapState::default();
        // Security stage first, asking to move on to the operational stage.
        let mut keys = security;
        let mut stage = Stage::SecurityNegotiation;
        for _ in 0..MAX_LOGIN_ROUNDS {
            let next = match stage {
                Stage::SecurityNegotiation => Stage::LoginOperational,
                _ => Stage::FullFeature,
            };
            let resp = self.login_round(itt, stage, next, &keys)?;
            let pairs = text::parse_text(&resp.data)?;
            self.login_keys.extend(pairs.iter().cloned());
            keys = Vec::new();
            if stage == Stage::LoginOperational {
                keys = self.answer_target_offers(opts, &pairs, &operational);
            } else if let Some(cfg) = &chap_cfg {
                keys = chap_state.next(cfg, &pairs)?;
            }
            // A target that lets us in without answering our challenge has not
            // authenticated itself.
            if resp.bhs.transit()
                && stage == Stage::SecurityNegotiation
                && chap_cfg.as_ref().is_some_and(|c| c.mutual.is_some())
                && !matches!(chap_state, chap::ChapState::Done)
            {
                return Err(InitiatorError::Protocol(
                    "target left the security stage before mutual CHAP finished".into(),
                ));
            }
            if resp.bhs.transit() {
                match resp.bhs.nsg() {
                    Stage::FullFeature => {
                        self.full_feature = true;
                        self.digests = self.negotiated.digests();
                        return Ok(());
                    }
                    Stage::LoginOperational if stage == Stage::SecurityNegotiation => {
                        stage = Stage::LoginOperational;
                        keys = operational.clone();
                    }
                    other => {
                        return Err(InitiatorError::Protocol(format!(
                            "login response transits to {other:?} from {stage:?}"
                        )))
                    }
                }
            }
        }
        Err(InitiatorError::Protocol(
            "target never completed the login".into(),
        ))
    }

    /// Sends one login request and waits for its response; fails on a non-success
    /// status.
    fn login_round(
        &mut self,
        itt: u32,
        csg: Stage,
        nsg: Stage,
        keys: &[(String, String)],
    ) -> Result<Pdu> {
        let data = text::encode_text(keys);
        let bhs = pdu::login_request(&pdu::LoginRequest {
            transit: true,
            cont: false,
            csg,
            nsg,
            isid: self.isid,
            tsih: self.tsih,
            itt,
            cid: self.cid,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data_len: data.len() as u32,
        });
        self.send_pdu(&bhs, &data)?;
        let resp = self.wait_pdu(|p| p.opcode() == Some(Opcode::LoginResponse))?;
        let b = &resp.bhs;
        self.login_status = Some((b.status_class(), b.status_detail()));
        if b.status_class() != 0 {
            return Err(InitiatorError::LoginFailed {
                class: b.status_class(),
                detail: b.status_detail(),
            });
        }
        if b.tsih() != 0 {
            self.tsih = b.tsih();
        }
        Ok(resp)
    }

    /// Records the target's answers/declarations and answers the keys the target
    /// offered on its own (keys we did not send).
    fn answer_target_offers(
        &mut self,
        opts: &LoginOptions,
        pairs: &[(String, String)],
        ours: &[(String, String)],
    ) -> Vec<(String, String)> {
        let mut replies = Vec::new();
        for (k, v) in pairs {
            let offered_by_us = ours.iter().any(|(ok, _)| ok == k);
            let declarative = matches!(
                k.as_str(),
                "MaxRecvDataSegmentLength"
                    | "TargetPortalGroupTag"
                    | "TargetAlias"
                    | "TargetAddress"
            );
            if offered_by_us || declarative {
                self.negotiated.apply(k, v);
                continue;
            }
            let reply = match k.as_str() {
                "ImmediateData" => parse_bool(v).map(|b| yes_no(b && opts.immediate_data).into()),
                "InitialR2T" => parse_bool(v).map(|b| yes_no(b || opts.initial_r2t).into()),
                "MaxBurstLength" => {
                    parse_number(v).map(|n| n.min(opts.max_burst_length as u64).to_string())
                }
                "FirstBurstLength" => {
                    parse_number(v).map(|n| n.min(opts.first_burst_length as u64).to_string())
                }
                "HeaderDigest" | "DataDigest" => {
                    let mine = if k == "HeaderDigest" {
                        &opts.header_digest
                    } else {
                        &opts.data_digest
                    };
                    v.split(',')
                        .find(|d| mine.split(',').any(|m| m == *d))
                        .map(str::to_string)
                }
                _ => Some("NotUnderstood".into()),
            }
            .unwrap_or_else(|| "Reject".into());
            self.negotiated.apply(k, &reply);
            replies.push((k.clone(), reply));
        }
        replies
    }

    /// SendTargets; returns (TargetName, [TargetAddress...]) in the order received.
    /// Follows continuation (C bit / F=0) responses.
    pub fn send_targets(&mut self, what: &str) -> Result<Vec<(String, Vec<String>)>> {
        let data = self.text_exchange(&[kv("SendTargets", what)])?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in text::parse_text(&data)? {
            match k.as_str() {
                "TargetName" => out.push((v, Vec::new())),
                "TargetAddress" => match out.last_mut() {
                    Some(t) => t.1.push(v),
                    None => {
                        return Err(InitiatorError::Protocol(
                            "TargetAddress before TargetName".into(),
                        ))
                    }
                },
                _ => {}
            }
        }
        Ok(out)
    }

    /// Sends a Text Request and returns the concatenated response text.
    pub fn text_exchange(&mut self, keys: &[(String, String)]) -> Result<Vec<u8>> {
        let itt = self.alloc_itt();
        let mut request = text::encode_text(keys);
        let mut ttt = RESERVED_TAG;
        let mut all = Vec::new();
        loop {
            self.wait_cmd_window()?;
            let bhs = pdu::text_request(
                false,
                true,
                false,
                itt,
                ttt,
                self.cmd_sn,
                self.exp_stat_sn,
                request.len() as u32,
            );
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
            self.send_pdu(&bhs, &request)?;
            let resp = self.wait_pdu(|p| {
                matches!(p.opcode(), Some(Opcode::TextResponse | Opcode::Reject))
                    && (p.bhs.itt() == itt || p.opcode() == Some(Opcode::Reject))
            })?;
            if resp.opcode() == Some(Opcode::Reject) {
                return Err(InitiatorError::Rejected {
                    reason: resp.bhs.reject_reason(),
                });
            }
            all.extend_from_slice(&resp.data);
            if resp.bhs.final_bit() && !resp.bhs.continue_bit() {
                return Ok(all);
            }
            // Ask for the rest with an empty request carrying the target's TTT.
            ttt = resp.bhs.ttt();
            request.clear();
        }
    }
}

pub(super) fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn yes_no(b: bool) -> &'static str {
    iscsi_wire::negotiate::yes_no(b)
}
