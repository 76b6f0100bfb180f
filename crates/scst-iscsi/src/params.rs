//! iSCSI target parameters: validation of the target attributes SCST accepts
//! (spec/scst.md 6.2, 6.3, 6.6) and the per-connection values the full-feature phase runs
//! with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scst_core::{Scst, Target};

use crate::IscsiDriver;

/// Target-local defaults (spec 6.3). QueuedCommands is the CmdSN window; we default it
/// to 128 so that deep queues from one initiator are not throttled.
pub const DEFAULT_QUEUED_COMMANDS: u32 = 128;
pub const DEFAULT_NOP_IN_INTERVAL: u32 = 30;
pub const DEFAULT_NOP_IN_TIMEOUT: u32 = 30;

/// What one full-feature connection runs with: negotiated keys and target-local limits.
#[derive(Clone)]
pub struct ConnParams {
    pub scst: Arc<Scst>,
    pub driver: Arc<IscsiDriver>,
    pub local_addr: SocketAddr,
    pub header_digest: bool,
    pub data_digest: bool,
    /// What we accept in one data segment.
    pub max_recv_data_segment_length: u32,
    /// What we may send in one data segment (the initiator's MaxRecvDataSegmentLength).
    pub max_xmit_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub queued_commands: u32,
    pub nop_in_interval: Option<Duration>,
    pub nop_in_timeout: Duration,
}

fn num(name: &str, v: &str, min: u64, max: u64) -> Result<(), String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(()),
        _ => Err(format!("{name}: '{v}' must be a number in {min}..{max}")),
    }
}

fn yes_no(name: &str, v: &str) -> Result<(), String> {
    match v {
        "Yes" | "No" => Ok(()),
        _ => Err(format!("{name}: '{v}' must be Yes or No")),
    }
}

fn bool01(name: &str, v: &str) -> Result<(), String> {
    match v {
        "0" | "1" => Ok(()),
        _ => Err(format!("{name}: '{v}' must be 0 or 1")),
    }
}

fn digest_list(name: &str, v: &str) -> Result<(), String> {
    if !v.is_empty() && v.split(',').all(|d| matches!(d.trim(), "None" | "CRC32C")) {
        Ok(())
    } else {
        Err(format!("{name}: '{v}' must be a list of None and CRC32C"))
    }
}

fn chap_account(name: &str, v: &str) -> Result<(), String> {
    let mut it = v.split_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some(_), Some(secret), None) if secret.len() >= 12 => Ok(()),
        (Some(_), Some(_), None) => Err(format!(
            "{name}: the CHAP secret must be at least 12 characters"
        )),
        _ => Err(format!("{name}: expected \"<user> <secret>\"")),
    }
}

/// Check an iSCSI target attribute (scst.conf TARGET block or `add_target` parameter).
pub fn validate_target_attr(name: &str, v: &str) -> Result<(), String> {
    const MAX_LEN: u64 = 16 << 20;
    match name {
        "InitialR2T" | "ImmediateData" => yes_no(name, v),
        "MaxRecvDataSegmentLength"
        | "MaxXmitDataSegmentLength"
        | "MaxBurstLength"
        | "FirstBurstLength" => num(name, v, 512, MAX_LEN),
        "MaxOutstandingR2T" => num(name, v, 1, 65535),
        "HeaderDigest" | "DataDigest" => digest_list(name, v),
        "QueuedCommands" => num(name, v, 1, 2048),
        "RspTimeout" | "NopInTimeout" => num(name, v, 2, 65535),
        "NopInInterval" | "MaxSessions" => num(name, v, 0, 65535),
        "per_portal_acl" | "forward_src" | "forward_dst" | "aen_disabled" => bool01(name, v),
        "black_hole" => num(name, v, 0, 4),
        "IncomingUser" | "OutgoingUser" => chap_account(name, v),
        "alias" | "redirect" | "allowed_portal" | "comment" | "cpu_mask" | "io_grouping_type" => {
            Ok(())
        }
        _ => Err(format!("unknown attribute '{name}'")),
    }
}

/// A target attribute as a number, or its default.
pub fn target_num(t: &Target, name: &str, default: u32) -> u32 {
    t.attr(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The target's side of the operational negotiation, from its attributes (spec 6.2).
pub fn local_params(t: Option<&Target>) -> iscsi_wire::negotiate::LocalParams {
    use iscsi_wire::negotiate::{DigestPolicy, LocalParams};
    let mut l = LocalParams::default();
    let Some(t) = t else { return l };
    let yes = |name: &str, d: bool| t.attr(name).map_or(d, |v| v == "Yes");
    l.initial_r2t = yes("InitialR2T", l.initial_r2t);
    l.immediate_data = yes("ImmediateData", l.immediate_data);
    l.max_recv_data_segment_length = target_num(
        t,
        "MaxRecvDataSegmentLength",
        l.max_recv_data_segment_length,
    );
    l.max_xmit_data_segment_length = target_num(
        t,
        "MaxXmitDataSegmentLength",
        l.max_xmit_data_segment_length,
    );
    l.max_burst_length = target_num(t, "MaxBurstLength", l.max_burst_length);
    l.first_burst_length = target_num(t, "FirstBurstLength", l.first_burst_length);
    l.max_outstanding_r2t = target_num(t, "MaxOutstandingR2T", l.max_outstanding_r2t);
    if let Some(p) = t.attr("HeaderDigest").and_then(|v| DigestPolicy::parse(&v)) {
        l.header_digest = p;
    }
    if let Some(p) = t.attr("DataDigest").and_then(|v| DigestPolicy::parse(&v)) {
        l.data_digest = p;
    }
    l
}
