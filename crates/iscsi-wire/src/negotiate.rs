//! Operational key negotiation, target side, without I/O (RFC 7143 sections 6 and 13,
//! SCST defaults from scst-reference section 6.2).
//!
//! The login state machine owns the connection and the login-only keys
//! (InitiatorName, TargetName, SessionType, AuthMethod and CHAP keys, ...; see
//! [`is_login_key`]). It hands every received key list (the concatenated text of one
//! login request sequence) to [`Negotiator::process`], which returns the answers to
//! put in the login response. Before answering with T=1 towards full feature phase it
//! calls [`Negotiator::target_declarations`] and adds those keys; if
//! [`Negotiator::awaiting_replies`] is then true it must answer with T=0 and let the
//! initiator reply first. [`Negotiator::params`] gives the negotiated result.
//!
//! Result rules: boolean AND/OR, numeric min/max, list = first initiator value we
//! support, declarative MaxRecvDataSegmentLength, `NotUnderstood` for unknown keys,
//! `Reject` for malformed or out-of-range values, `Irrelevant` for normal-session keys
//! on discovery sessions. A key negotiated twice is a login error (RFC 7143 6.2).

use std::collections::HashSet;
use std::fmt;

/// Largest value of the segment/burst length keys (2^24 - 1).
pub const MAX_SEGMENT_KEY: u32 = (1 << 24) - 1;
/// Smallest value of the segment/burst length keys.
pub const MIN_SEGMENT_KEY: u32 = 512;
/// RFC default MaxRecvDataSegmentLength, used when a side never declares it.
pub const DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 8192;
/// SCST's "kernel max": 256 pages of 4 KiB.
pub const SCST_MAX_DATA_SEGMENT: u32 = 1 << 20;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Digest {
    #[default]
    None,
    Crc32c,
}

impl Digest {
    pub fn as_str(self) -> &'static str {
        match self {
            Digest::None => "None",
            Digest::Crc32c => "CRC32C",
        }
    }

    /// Parses one list element; RFC values are case-sensitive.
    pub fn parse(s: &str) -> Option<Digest> {
        match s {
            "None" => Some(Digest::None),
            "CRC32C" => Some(Digest::Crc32c),
            _ => None,
        }
    }
}

/// The target's configured digest setting (the HeaderDigest/DataDigest attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestPolicy {
    /// `None`
    #[default]
    None,
    /// `CRC32C`
    Crc32c,
    /// `CRC32C,None`
    Crc32cOrNone,
    /// `None,CRC32C`
    NoneOrCrc32c,
}

impl DigestPolicy {
    pub fn parse(s: &str) -> Option<DigestPolicy> {
        let mut it = s.split(',').map(str::trim);
        let first = Digest::parse(it.next()?)?;
        let second = it.next().map(Digest::parse);
        if it.next().is_some() {
            return None;
        }
        Some(match (first, second) {
            (Digest::None, None) => DigestPolicy::None,
            (Digest::Crc32c, None) => DigestPolicy::Crc32c,
            (Digest::Crc32c, Some(Some(Digest::None))) => DigestPolicy::Crc32cOrNone,
            (Digest::None, Some(Some(Digest::Crc32c))) => DigestPolicy::NoneOrCrc32c,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DigestPolicy::None => "None",
            DigestPolicy::Crc32c => "CRC32C",
            DigestPolicy::Crc32cOrNone => "CRC32C,None",
            DigestPolicy::NoneOrCrc32c => "None,CRC32C",
        }
    }

    pub fn allows(self, d: Digest) -> bool {
        match d {
            Digest::None => self != DigestPolicy::Crc32c,
            Digest::Crc32c => self != DigestPolicy::None,
        }
    }
}

impl fmt::Display for DigestPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The target's configured values for the negotiable keys (scst-reference 6.2 defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalParams {
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_connections: u32,
    /// What the target can receive in one PDU; declared to the initiator.
    pub max_recv_data_segment_length: u32,
    /// Target-local cap on what it sends per PDU (never on the wire).
    pub max_xmit_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u32,
    pub header_digest: DigestPolicy,
    pub data_digest: DigestPolicy,
}

impl Default for LocalParams {
    fn default() -> Self {
        LocalParams {
            initial_r2t: false,
            immediate_data: true,
            max_connections: 1,
            max_recv_data_segment_length: SCST_MAX_DATA_SEGMENT,
            max_xmit_data_segment_length: SCST_MAX_DATA_SEGMENT,
            max_burst_length: SCST_MAX_DATA_SEGMENT,
            first_burst_length: 65536,
            default_time2wait: 0,
            default_time2retain: 0,
            max_outstanding_r2t: 32,
            data_pdu_in_order: false,
            data_sequence_in_order: false,
            error_recovery_level: 0,
            header_digest: DigestPolicy::None,
            data_digest: DigestPolicy::None,
        }
    }
}

/// The negotiated parameters of a session/connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_connections: u32,
    /// The target's declared receive limit (what the initiator may send per PDU).
    pub max_recv_data_segment_length: u32,
    /// What the target may send per PDU: min(local cap, initiator's
    /// MaxRecvDataSegmentLength, or 8192 if it never declared one).
    pub max_xmit_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u32,
    pub header_digest: Digest,
    pub data_digest: Digest,
}

impl SessionParams {
    /// RFC 7143 defaults (what applies to a key nobody negotiated), with the target's
    /// own declared receive limit.
    pub fn rfc_defaults(local: &LocalParams) -> SessionParams {
        SessionParams {
            initial_r2t: true,
            immediate_data: true,
            max_connections: 1,
            max_recv_data_segment_length: local.max_recv_data_segment_length,
            max_xmit_data_segment_length: local
                .max_xmit_data_segment_length
                .min(DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH),
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            header_digest: Digest::None,
            data_digest: Digest::None,
        }
    }

    /// The parameters as RFC key=value strings (for session attributes and logs).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("InitialR2T", yes_no(self.initial_r2t).into()),
            ("ImmediateData", yes_no(self.immediate_data).into()),
            ("MaxConnections", self.max_connections.to_string()),
            (
                "MaxRecvDataSegmentLength",
                self.max_recv_data_segment_length.to_string(),
            ),
            (
                "MaxXmitDataSegmentLength",
                self.max_xmit_data_segment_length.to_string(),
            ),
            ("MaxBurstLength", self.max_burst_length.to_string()),
            ("FirstBurstLength", self.first_burst_length.to_string()),
            ("DefaultTime2Wait", self.default_time2wait.to_string()),
            ("DefaultTime2Retain", self.default_time2retain.to_string()),
            ("MaxOutstandingR2T", self.max_outstanding_r2t.to_string()),
            ("DataPDUInOrder", yes_no(self.data_pdu_in_order).into()),
            (
                "DataSequenceInOrder",
                yes_no(self.data_sequence_in_order).into(),
            ),
            ("ErrorRecoveryLevel", self.error_recovery_level.to_string()),
            ("HeaderDigest", self.header_digest.as_str().into()),
            ("DataDigest", self.data_digest.as_str().into()),
        ]
    }
}

/// "Yes"/"No".
pub fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Parses an RFC boolean ("Yes"/"No", case-sensitive).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

/// Parses an RFC numerical value: decimal or `0x` hexadecimal.
pub fn parse_number(v: &str) -> Option<u64> {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    } else {
        if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }
}

/// Keys the login state machine handles itself, not the Negotiator: identity, session
/// type, addressing and authentication keys.
pub fn is_login_key(key: &str) -> bool {
    matches!(
        key,
        "InitiatorName"
            | "InitiatorAlias"
            | "TargetName"
            | "TargetAlias"
            | "TargetAddress"
            | "TargetPortalGroupTag"
            | "SessionType"
            | "AuthMethod"
            | "SendTargets"
    ) || key.starts_with("CHAP_")
        || key.starts_with("SRP_")
}

/// A login must fail (initiator error, class 2) because of the negotiation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// RFC 7143 6.2: re-negotiating a key is a protocol error.
    #[error("key {0} negotiated more than once")]
    Duplicate(String),
    /// The initiator's answer to a target offer is not an admissible result.
    #[error("invalid reply {key}={value} to the target's offer")]
    BadReply { key: String, value: String },
}

/// How a key's result is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    And,
    Or,
    Min(u32, u32),
    Max(u32, u32),
    /// MaxRecvDataSegmentLength: each side declares its own.
    Declare(u32, u32),
    DigestList,
    /// IFMarker/OFMarker (obsolete): answered "No".
    Marker,
    /// IFMarkInt/OFMarkInt (obsolete): RFC 7143 13.26 says MUST answer Reject.
    Reject,
    /// iSER-only keys: irrelevant on TCP.
    Irrelevant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    HeaderDigest,
    DataDigest,
    MaxConnections,
    InitialR2T,
    ImmediateData,
    MaxRecvDataSegmentLength,
    MaxBurstLength,
    FirstBurstLength,
    DefaultTime2Wait,
    DefaultTime2Retain,
    MaxOutstandingR2T,
    DataPDUInOrder,
    DataSequenceInOrder,
    ErrorRecoveryLevel,
    IFMarker,
    OFMarker,
    IFMarkInt,
    OFMarkInt,
    RDMAExtensions,
    IserOnly,
}

impl Key {
    fn lookup(name: &str) -> Option<Key> {
        use Key::*;
        Some(match name {
            "HeaderDigest" => HeaderDigest,
            "DataDigest" => DataDigest,
            "MaxConnections" => MaxConnections,
            "InitialR2T" => InitialR2T,
            "ImmediateData" => ImmediateData,
            "MaxRecvDataSegmentLength" => MaxRecvDataSegmentLength,
            "MaxBurstLength" => MaxBurstLength,
            "FirstBurstLength" => FirstBurstLength,
            "DefaultTime2Wait" => DefaultTime2Wait,
            "DefaultTime2Retain" => DefaultTime2Retain,
            "MaxOutstandingR2T" => MaxOutstandingR2T,
            "DataPDUInOrder" => DataPDUInOrder,
            "DataSequenceInOrder" => DataSequenceInOrder,
            "ErrorRecoveryLevel" => ErrorRecoveryLevel,
            "IFMarker" => IFMarker,
            "OFMarker" => OFMarker,
            "IFMarkInt" => IFMarkInt,
            "OFMarkInt" => OFMarkInt,
            "RDMAExtensions" => RDMAExtensions,
            "TargetRecvDataSegmentLength"
            | "InitiatorRecvDataSegmentLength"
            | "MaxAHSLength"
            | "TaggedBufferForSolicitedDataOnly"
            | "iSERHelloRequired"
            | "MaxOutstandingUnexpectedPDUs" => IserOnly,
            _ => return None,
        })
    }

    fn rule(self) -> Rule {
        use Key::*;
        match self {
            HeaderDigest | DataDigest => Rule::DigestList,
            MaxConnections | MaxOutstandingR2T => Rule::Min(1, 65535),
            InitialR2T | DataPDUInOrder | DataSequenceInOrder => Rule::Or,
            ImmediateData | RDMAExtensions => Rule::And,
            MaxRecvDataSegmentLength => Rule::Declare(MIN_SEGMENT_KEY, MAX_SEGMENT_KEY),
            MaxBurstLength | FirstBurstLength => Rule::Min(MIN_SEGMENT_KEY, MAX_SEGMENT_KEY),
            DefaultTime2Wait => Rule::Max(0, 3600),
            DefaultTime2Retain => Rule::Min(0, 3600),
            ErrorRecoveryLevel => Rule::Min(0, 2),
            IFMarker | OFMarker => Rule::Marker,
            IFMarkInt | OFMarkInt => Rule::Reject,
            IserOnly => Rule::Irrelevant,
        }
    }

    /// Keys RFC 7143 declares irrelevant on discovery sessions.
    fn normal_session_only(self) -> bool {
        use Key::*;
        matches!(
            self,
            MaxConnections
                | InitialR2T
                | ImmediateData
                | MaxBurstLength
                | FirstBurstLength
                | MaxOutstandingR2T
                | DataPDUInOrder
                | DataSequenceInOrder
        )
    }
}

const REJECT: &str = "Reject";
const IRRELEVANT: &str = "Irrelevant";
const NOT_UNDERSTOOD: &str = "NotUnderstood";

fn is_answer_constant(v: &str) -> bool {
    matches!(v, REJECT | IRRELEVANT | NOT_UNDERSTOOD)
}

/// Target-side negotiation state for one login.
#[derive(Debug, Clone)]
pub struct Negotiator {
    local: LocalParams,
    discovery: bool,
    result: SessionParams,
    /// Keys seen from the initiator (offers or replies), by name.
    seen: HashSet<String>,
    /// Keys the target offered and the initiator has not answered yet.
    pending: HashSet<Key>,
    /// Target offers, with the value offered, for checking the replies.
    offered: Vec<(Key, String)>,
    declared_mrdsl: bool,
    initiator_mrdsl: Option<u32>,
}

impl Negotiator {
    /// `discovery`: SessionType=Discovery (known from the first login request).
    pub fn new(local: LocalParams, discovery: bool) -> Negotiator {
        let result = SessionParams::rfc_defaults(&local);
        Negotiator {
            local,
            discovery,
            result,
            seen: HashSet::new(),
            pending: HashSet::new(),
            offered: Vec::new(),
            declared_mrdsl: false,
            initiator_mrdsl: None,
        }
    }

    /// Changes the session type (if SessionType arrives after the negotiator was made).
    pub fn set_discovery(&mut self, discovery: bool) {
        self.discovery = discovery;
    }

    pub fn is_discovery(&self) -> bool {
        self.discovery
    }

    pub fn local(&self) -> &LocalParams {
        &self.local
    }

    /// Digest policy in force: SCST negotiates no digests on discovery sessions.
    fn digest_policy(&self, key: Key) -> DigestPolicy {
        if self.discovery {
            DigestPolicy::None
        } else if key == Key::HeaderDigest {
            self.local.header_digest
        } else {
            self.local.data_digest
        }
    }

    /// Processes the initiator's keys (login keys are skipped; the caller handles
    /// them) and returns the response pairs, in order.
    pub fn process(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<Vec<(String, String)>, NegotiationError> {
        let mut out = Vec::new();
        for (name, value) in pairs {
            if is_login_key(name) {
                continue;
            }
            let key = Key::lookup(name);
            if let Some(k) = key {
                if self.pending.remove(&k) {
                    self.seen.insert(name.clone());
                    self.apply_reply(k, name, value)?;
                    continue;
                }
            }
            if !self.seen.insert(name.clone()) {
                return Err(NegotiationError::Duplicate(name.clone()));
            }
            let Some(key) = key else {
                out.push((name.clone(), NOT_UNDERSTOOD.to_string()));
                continue;
            };
            // The initiator answering something nobody asked: nothing to negotiate.
            if is_answer_constant(value) {
                continue;
            }
            if self.discovery && key.normal_session_only() {
                out.push((name.clone(), IRRELEVANT.to_string()));
                continue;
            }
            if let Some(answer) = self.answer(key, value) {
                out.push((name.clone(), answer));
            }
            // A declaration from the initiator is answered by the target's own.
            if key == Key::MaxRecvDataSegmentLength && !self.declared_mrdsl {
                self.declared_mrdsl = true;
                out.push((
                    name.clone(),
                    self.local.max_recv_data_segment_length.to_string(),
                ));
            }
        }
        Ok(out)
    }

    /// Computes the answer to an offer and records the result. `None` = no answer
    /// (declarations).
    fn answer(&mut self, key: Key, value: &str) -> Option<String> {
        let reject = Some(REJECT.to_string());
        match key.rule() {
            Rule::And | Rule::Or => {
                let Some(offered) = parse_bool(value) else {
                    return reject;
                };
                let local = self.local_bool(key);
                let r = if key.rule() == Rule::And {
                    offered && local
                } else {
                    offered || local
                };
                self.set_bool(key, r);
                Some(yes_no(r).to_string())
            }
            Rule::Min(lo, hi) | Rule::Max(lo, hi) => {
                let Some(v) = parse_number(value).filter(|v| (lo as u64..=hi as u64).contains(v))
                else {
                    return reject;
                };
                let v = v as u32;
                let local = self.local_number(key).clamp(lo, hi);
                let r = if matches!(key.rule(), Rule::Min(..)) {
                    v.min(local)
                } else {
                    v.max(local)
                };
                self.set_number(key, r);
                Some(r.to_string())
            }
            Rule::Declare(lo, hi) => {
                match parse_number(value).filter(|v| (lo as u64..=hi as u64).contains(v)) {
                    Some(v) => {
                        self.initiator_mrdsl = Some(v as u32);
                        None
                    }
                    None => reject,
                }
            }
            Rule::DigestList => {
                let policy = self.digest_policy(key);
                // First value in the initiator's order that we accept; values we do
                // not know are skipped, not errors.
                let chosen = value
                    .split(',')
                    .filter_map(Digest::parse)
                    .find(|d| policy.allows(*d));
                match chosen {
                    Some(d) => {
                        self.set_digest(key, d);
                        Some(d.as_str().to_string())
                    }
                    None => reject,
                }
            }
            Rule::Marker => match parse_bool(value) {
                Some(_) => Some(yes_no(false).to_string()),
                None => reject,
            },
            Rule::Reject => reject,
            Rule::Irrelevant => Some(IRRELEVANT.to_string()),
        }
    }

    /// Checks and records the initiator's reply to a target offer.
    fn apply_reply(&mut self, key: Key, name: &str, value: &str) -> Result<(), NegotiationError> {
        let bad = || NegotiationError::BadReply {
            key: name.to_string(),
            value: value.to_string(),
        };
        let offered = self
            .offered
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(bad)?;
        match key.rule() {
            Rule::And | Rule::Or => {
                let r = parse_bool(value).ok_or_else(bad)?;
                let o = parse_bool(&offered).ok_or_else(bad)?;
                // AND: a No offer can only yield No; OR: a Yes offer only Yes.
                let admissible = if key.rule() == Rule::And {
                    o || !r
                } else {
                    !o || r
                };
                if !admissible {
                    return Err(bad());
                }
                self.set_bool(key, r);
            }
            Rule::Min(lo, _) => {
                let o = parse_number(&offered).ok_or_else(bad)?;
                let r = parse_number(value)
                    .filter(|r| *r >= lo as u64 && *r <= o)
                    .ok_or_else(bad)?;
                self.set_number(key, r as u32);
            }
            Rule::DigestList => {
                let d = Digest::parse(value).ok_or_else(bad)?;
                if !offered.split(',').any(|o| o == value) {
                    return Err(bad());
                }
                self.set_digest(key, d);
            }
            // The target offers nothing else.
            _ => return Err(bad()),
        }
        Ok(())
    }

    /// Keys the target must send before the transition to full feature phase: its own
    /// MaxRecvDataSegmentLength if not yet declared, plus offers for keys whose RFC
    /// default the target cannot live with (e.g. MaxBurstLength above its limit, a
    /// required digest). Offers expect a reply; see [`Negotiator::awaiting_replies`].
    /// Each key is returned once.
    pub fn target_declarations(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.declared_mrdsl {
            self.declared_mrdsl = true;
            out.push((
                "MaxRecvDataSegmentLength".to_string(),
                self.local.max_recv_data_segment_length.to_string(),
            ));
        }
        let mut offers: Vec<(Key, String)> = Vec::new();
        if !self.discovery {
            let l = &self.local;
            if !l.immediate_data {
                offers.push((Key::ImmediateData, yes_no(false).into()));
            }
            if l.max_burst_length < self.result.max_burst_length {
                offers.push((Key::MaxBurstLength, l.max_burst_length.to_string()));
            }
            let first = l.first_burst_length.min(l.max_burst_length);
            if first < self.result.first_burst_length {
                offers.push((Key::FirstBurstLength, first.to_string()));
            }
            if !l.header_digest.allows(Digest::None) {
                offers.push((Key::HeaderDigest, Digest::Crc32c.as_str().into()));
            }
            if !l.data_digest.allows(Digest::None) {
                offers.push((Key::DataDigest, Digest::Crc32c.as_str().into()));
            }
        }
        for (key, value) in offers {
            let name = key_name(key);
            if self.seen.contains(name) || self.offered.iter().any(|(k, _)| *k == key) {
                continue;
            }
            self.pending.insert(key);
            self.offered.push((key, value.clone()));
            out.push((name.to_string(), value));
        }
        out
    }

    /// True while target offers are unanswered: the target must not set T=1 yet.
    pub fn awaiting_replies(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The negotiated parameters (RFC defaults for keys nobody negotiated).
    pub fn params(&self) -> SessionParams {
        let mut p = self.result.clone();
        p.max_xmit_data_segment_length = self.local.max_xmit_data_segment_length.min(
            self.initiator_mrdsl
                .unwrap_or(DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH),
        );
        // RFC 7143 13.14: FirstBurstLength MUST NOT exceed MaxBurstLength.
        p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
        if self.discovery {
            p.header_digest = Digest::None;
            p.data_digest = Digest::None;
        }
        p
    }

    fn local_bool(&self, key: Key) -> bool {
        match key {
            Key::InitialR2T => self.local.initial_r2t,
            Key::ImmediateData => self.local.immediate_data,
            Key::DataPDUInOrder => self.local.data_pdu_in_order,
            Key::DataSequenceInOrder => self.local.data_sequence_in_order,
            // RDMAExtensions: this is a TCP target.
            _ => false,
        }
    }

    fn set_bool(&mut self, key: Key, v: bool) {
        let r = &mut self.result;
        match key {
            Key::InitialR2T => r.initial_r2t = v,
            Key::ImmediateData => r.immediate_data = v,
            Key::DataPDUInOrder => r.data_pdu_in_order = v,
            Key::DataSequenceInOrder => r.data_sequence_in_order = v,
            _ => {}
        }
    }

    fn local_number(&self, key: Key) -> u32 {
        let l = &self.local;
        match key {
            Key::MaxConnections => l.max_connections,
            Key::MaxBurstLength => l.max_burst_length,
            Key::FirstBurstLength => l.first_burst_length,
            Key::DefaultTime2Wait => l.default_time2wait,
            Key::DefaultTime2Retain => l.default_time2retain,
            Key::MaxOutstandingR2T => l.max_outstanding_r2t,
            Key::ErrorRecoveryLevel => l.error_recovery_level,
            _ => 0,
        }
    }

    fn set_number(&mut self, key: Key, v: u32) {
        let r = &mut self.result;
        match key {
            Key::MaxConnections => r.max_connections = v,
            Key::MaxBurstLength => r.max_burst_length = v,
            Key::FirstBurstLength => r.first_burst_length = v,
            Key::DefaultTime2Wait => r.default_time2wait = v,
            Key::DefaultTime2Retain => r.default_time2retain = v,
            Key::MaxOutstandingR2T => r.max_outstanding_r2t = v,
            Key::ErrorRecoveryLevel => r.error_recovery_level = v,
            _ => {}
        }
    }

    fn set_digest(&mut self, key: Key, d: Digest) {
        if key == Key::HeaderDigest {
            self.result.header_digest = d;
        } else {
            self.result.data_digest = d;
        }
    }
}

fn key_name(key: Key) -> &'static str {
    match key {
        Key::HeaderDigest => "HeaderDigest",
        Key::DataDigest => "DataDigest",
        Key::ImmediateData => "ImmediateData",
        Key::MaxBurstLength => "MaxBurstLength",
        Key::FirstBurstLength => "FirstBurstLength",
        // Only offered keys are named here.
        _ => "",
    }
}

#[cfg(test)]
mod tests;
