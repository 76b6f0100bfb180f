//! iSCSI target parameters: validation of the target attributes SCST accepts
//! (docs/scst-reference.md 6.2, 6.3, 6.6) and the per-connection values the full-feature phase runs
//! with.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use scst_core::{Scst, Target};

use crate::IscsiDriver;

/// Target-local defaults (scst-reference 6.3). QueuedCommands is the CmdSN window; we default it
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

/// Why an iSCSI driver or target attribute was refused. Every refusal is of a name the
/// driver does not know or of a value it does not take: management reports them as
/// invalid (EINVAL). Messages name the attribute, and for CHAP accounts the user, never
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// Not an attribute of the iSCSI driver or of its targets.
    #[error("unknown attribute '{0}'")]
    Unknown(String),
    /// A value outside what the attribute takes.
    #[error("{name}: '{value}' must be {expected}")]
    BadValue {
        name: String,
        value: String,
        expected: Expected,
    },
    /// A CHAP account whose secret is too short to be safe (scst-reference 6.5).
    #[error(
        "{name}: the CHAP secret of user '{user}' is {len} bytes long; \
         at least {MIN_CHAP_SECRET} are required"
    )]
    ShortChapSecret {
        name: String,
        user: String,
        len: usize,
    },
    /// A CHAP account that is not `"<user> <secret>"`.
    #[error("{name}: expected \"<user> <secret>\"")]
    NotChapAccount { name: String },
    /// The driver's `iSNSServer` value.
    #[error(transparent)]
    IsnsServer(#[from] crate::isns::ServerSyntaxError),
}

impl AttrError {
    fn bad_value(name: &str, value: &str, expected: Expected) -> AttrError {
        AttrError::BadValue {
            name: name.to_string(),
            value: value.to_string(),
            expected,
        }
    }
}

impl From<AttrError> for scst_core::MgmtError {
    fn from(e: AttrError) -> scst_core::MgmtError {
        match e {
            AttrError::Unknown(_)
            | AttrError::BadValue { .. }
            | AttrError::ShortChapSecret { .. }
            | AttrError::NotChapAccount { .. }
            | AttrError::IsnsServer(_) => scst_core::MgmtError::Invalid(e.to_string()),
        }
    }
}

/// What an attribute's value must be, as a refusal says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A decimal number in `min..=max`.
    Number {
        min: u64,
        max: u64,
    },
    YesNo,
    ZeroOrOne,
    /// A comma-separated list of digest names.
    DigestList,
    /// One `allowed_portal` pattern.
    PortalPattern,
    /// A `redirect` destination.
    Redirect,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Number { min, max } => write!(f, "a number in {min}..{max}"),
            Expected::YesNo => f.write_str("Yes or No"),
            Expected::ZeroOrOne => f.write_str("0 or 1"),
            Expected::DigestList => f.write_str("a list of None and CRC32C"),
            Expected::PortalPattern => {
                f.write_str("one address pattern (*, ? wildcards, optional leading !)")
            }
            Expected::Redirect => f.write_str("\"<ip>[:port] temp|perm\" (IPv6 in [])"),
        }
    }
}

/// A number in `min..=max` (surrounding blanks allowed).
pub(crate) fn number(name: &str, v: &str, min: u64, max: u64) -> Result<u64, AttrError> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(AttrError::bad_value(name, v, Expected::Number { min, max })),
    }
}

fn num(name: &str, v: &str, min: u64, max: u64) -> Result<(), AttrError> {
    number(name, v, min, max).map(|_| ())
}

fn yes_no(name: &str, v: &str) -> Result<(), AttrError> {
    match v {
        "Yes" | "No" => Ok(()),
        _ => Err(AttrError::bad_value(name, v, Expected::YesNo)),
    }
}

pub(crate) fn bool01(name: &str, v: &str) -> Result<(), AttrError> {
    match v {
        "0" | "1" => Ok(()),
        _ => Err(AttrError::bad_value(name, v, Expected::ZeroOrOne)),
    }
}

fn digest_list(name: &str, v: &str) -> Result<(), AttrError> {
    if !v.is_empty() && v.split(',').all(|d| matches!(d.trim(), "None" | "CRC32C")) {
        Ok(())
    } else {
        Err(AttrError::bad_value(name, v, Expected::DigestList))
    }
}

/// iscsi-scst refuses shorter CHAP secrets (scst-reference 6.5); RFC 7143 12.1.3 asks for at
/// least 96 bits where secrets are not random.
pub const MIN_CHAP_SECRET: usize = 12;

/// A CHAP account `"<user> <secret>"`. Errors name the attribute and the user, never
/// the secret.
fn chap_account(name: &str, v: &str) -> Result<(), AttrError> {
    match iscsi_wire::chap::parse_account(v) {
        Some((_, secret)) if secret.len() >= MIN_CHAP_SECRET => Ok(()),
        Some((user, secret)) => Err(AttrError::ShortChapSecret {
            name: name.to_string(),
            user: user.to_string(),
            len: secret.len(),
        }),
        None => Err(AttrError::NotChapAccount {
            name: name.to_string(),
        }),
    }
}

/// An `allowed_portal` pattern: one token of `*`/`?` wildcards with an optional
/// leading `!`.
fn portal_pattern(name: &str, v: &str) -> Result<(), AttrError> {
    let p = v.strip_prefix('!').unwrap_or(v);
    if p.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) || p.contains('!') {
        return Err(AttrError::bad_value(name, v, Expected::PortalPattern));
    }
    Ok(())
}

/// The address text portal patterns and lists are matched against: IPv4-mapped IPv6
/// addresses (a dual-stack listener) as plain IPv4, IPv6 without brackets.
fn portal_ip_text(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// Whether a target may be seen and logged in to through the portal with local address
/// `ip` (scst-reference 6.4): allowed iff there is no positive pattern or one matches, and no
/// negative pattern is violated.
pub fn portal_allowed(t: &Target, ip: IpAddr) -> bool {
    let patterns: Vec<String> = t
        .attrs
        .lock()
        .iter()
        .filter(|(n, _)| iscsi_engine::auth::is_instance_of(n, "allowed_portal"))
        .map(|(_, v)| v.clone())
        .collect();
    portal_matches(&patterns, ip)
}

fn portal_matches(patterns: &[String], ip: IpAddr) -> bool {
    let ip = portal_ip_text(ip);
    let mut positive = patterns.iter().filter(|p| !p.starts_with('!')).peekable();
    let any_positive = positive.peek().is_some();
    let positive_ok = !any_positive || positive.any(|p| scst_core::pattern::matches(p, &ip));
    positive_ok
        && patterns
            .iter()
            .filter(|p| p.starts_with('!'))
            .all(|p| scst_core::pattern::matches(p, &ip))
}

/// Whether `ip` is one of the driver's `internal_portal`s, where CHAP is not required
/// (scst-reference 6.4).
pub fn is_internal_portal(driver_attrs: &[(String, String)], ip: IpAddr) -> bool {
    let ip = portal_ip_text(ip);
    driver_attrs
        .iter()
        .filter(|(n, _)| n == "internal_portal")
        .flat_map(|(_, v)| v.split_whitespace())
        .any(|p| p.trim_start_matches('[').trim_end_matches(']') == ip)
}

/// The name a login to `t` from `initiator` through the portal with local address `ip`
/// is matched against the ACL and registered under: `<iqn>#<portal-ip>` when the target
/// has `per_portal_acl` 1, so initiator groups can grant LUNs per portal (scst-reference 6.4).
pub fn acl_name(t: &Target, initiator: &str, ip: IpAddr) -> String {
    if t.attr("per_portal_acl").as_deref() == Some("1") {
        format!("{initiator}#{}", portal_ip_text(ip))
    } else {
        initiator.to_string()
    }
}

/// A target's `redirect` (scst-reference 6.4): where normal-session logins are sent instead.
#[derive(Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `TargetAddress` value: `<ip>:<port>`, IPv6 in brackets.
    pub address: String,
    pub permanent: bool,
}

/// Parse `"<ip>[:port] temp|perm"`; IPv6 addresses in `[]`. Empty: no redirection.
pub fn parse_redirect(v: &str) -> Result<Option<Redirect>, AttrError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || AttrError::bad_value("redirect", v, Expected::Redirect);
    let (addr, kind) = v.split_once(char::is_whitespace).ok_or_else(bad)?;
    let permanent = match kind.trim() {
        "temp" => false,
        "perm" => true,
        _ => return Err(bad()),
    };
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        let h: std::net::Ipv6Addr = h.parse().map_err(|_| bad())?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (format!("[{h}]"), port)
    } else {
        let (h, port) = match addr.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (addr, None),
        };
        let h: std::net::Ipv4Addr = h.parse().map_err(|_| bad())?;
        (h.to_string(), port)
    };
    let port: u16 = match port {
        None => 3260,
        Some(p) => p.parse().ok().filter(|&p| p != 0).ok_or_else(bad)?,
    };
    Ok(Some(Redirect {
        address: format!("{host}:{port}"),
        permanent,
    }))
}

/// The target's redirection, if set (validated when set; an invalid stored value
/// redirects nowhere).
pub fn redirect(t: &Target) -> Option<Redirect> {
    parse_redirect(&t.attr("redirect")?).ok().flatten()
}

/// Check an iSCSI target attribute (scst.conf TARGET block or `add_target` parameter).
pub fn validate_target_attr(name: &str, v: &str) -> Result<(), AttrError> {
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
        "allowed_portal" => portal_pattern(name, v),
        "redirect" => parse_redirect(v).map(|_| ()),
        "alias" | "comment" | "cpu_mask" | "io_grouping_type" => Ok(()),
        // Instance names (`IncomingUser1`, `allowed_portal2`) as write_config saves them.
        n if iscsi_engine::auth::is_instance_of(n, "IncomingUser") => chap_account(name, v),
        n if iscsi_engine::auth::is_instance_of(n, "allowed_portal") => portal_pattern(name, v),
        _ => Err(AttrError::Unknown(name.to_string())),
    }
}

/// A target attribute as a number, or its default.
pub fn target_num(t: &Target, name: &str, default: u32) -> u32 {
    t.attr(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The target's side of the operational negotiation, from its attributes (scst-reference 6.2).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chap_secret_length() {
        assert!(validate_target_attr("IncomingUser", "joe 123456789012").is_ok());
        assert!(validate_target_attr("IncomingUser3", "joe 123456789012").is_ok());
        let e = validate_target_attr("OutgoingUser", "joe 12345678901")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("OutgoingUser:") && e.contains("at least 12"),
            "{e}"
        );
        assert!(!e.contains("12345678901"), "secret leaked: {e}");
        assert!(validate_target_attr("IncomingUser", "joe").is_err());
        assert!(validate_target_attr("IncomingUserX", "joe 123456789012").is_err());
    }

    /// Each refusal says what was wrong, in the words an administrator has always seen,
    /// and management reports every one as an invalid value.
    #[test]
    fn refusals_by_kind() {
        let refused = |name: &str, v: &str| validate_target_attr(name, v).unwrap_err();
        let cases = [
            (
                refused("QueuedCommands", "lots"),
                "QueuedCommands: 'lots' must be a number in 1..2048",
            ),
            (
                refused("InitialR2T", "yes"),
                "InitialR2T: 'yes' must be Yes or No",
            ),
            (
                refused("per_portal_acl", "2"),
                "per_portal_acl: '2' must be 0 or 1",
            ),
            (
                refused("HeaderDigest", "MD5"),
                "HeaderDigest: 'MD5' must be a list of None and CRC32C",
            ),
            (
                refused("allowed_portal", "a b"),
                "allowed_portal: 'a b' must be one address pattern \
                 (*, ? wildcards, optional leading !)",
            ),
            (
                refused("redirect", " 10.0.0.1 "),
                "redirect: '10.0.0.1' must be \"<ip>[:port] temp|perm\" (IPv6 in [])",
            ),
            (
                refused("IncomingUser", "joe"),
                "IncomingUser: expected \"<user> <secret>\"",
            ),
            (
                refused("IncomingUser", "joe short"),
                "IncomingUser: the CHAP secret of user 'joe' is 5 bytes long; \
                 at least 12 are required",
            ),
            (refused("colour", "red"), "unknown attribute 'colour'"),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
            assert_eq!(
                scst_core::MgmtError::from(e),
                scst_core::MgmtError::Invalid(text.to_string())
            );
        }
        assert_eq!(
            refused("MaxOutstandingR2T", "0"),
            AttrError::BadValue {
                name: "MaxOutstandingR2T".into(),
                value: "0".into(),
                expected: Expected::Number { min: 1, max: 65535 },
            }
        );
        assert_eq!(
            refused("OutgoingUser", "joe 12345"),
            AttrError::ShortChapSecret {
                name: "OutgoingUser".into(),
                user: "joe".into(),
                len: 5,
            }
        );
        assert_eq!(number("n", " 7 ", 1, 7), Ok(7));
        assert!(number("n", "8", 1, 7).is_err());
    }

    #[test]
    fn redirect_addresses() {
        let r = parse_redirect("10.1.2.3 perm").unwrap().unwrap();
        assert_eq!(r.address, "10.1.2.3:3260");
        assert!(r.permanent);
        let r = parse_redirect("[fe80::1]:3261 temp").unwrap().unwrap();
        assert_eq!(r.address, "[fe80::1]:3261");
        assert!(!r.permanent);
        assert_eq!(parse_redirect("  ").unwrap(), None);
        assert!(parse_redirect("[::1 temp").is_err());
        assert!(parse_redirect("10.1.2.3 later").is_err());
    }

    #[test]
    fn portal_patterns() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let v4: IpAddr = "10.0.0.9".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        assert!(portal_matches(&[], v4));
        assert!(portal_matches(&p(&["10.0.0.*"]), v4));
        assert!(portal_matches(&p(&["10.0.0.*"]), mapped));
        assert!(!portal_matches(&p(&["10.0.0.*", "!10.0.0.9"]), v4));
        assert!(!portal_matches(&p(&["192.168.*"]), v4));
        assert!(portal_matches(&p(&["192.168.*", "10.?.0.9"]), v4));
        assert!(!portal_matches(&p(&["!*"]), v6));
        assert!(portal_matches(&p(&["!10.*"]), v6));
        assert!(portal_matches(&p(&["::1"]), v6));
        assert!(validate_target_attr("allowed_portal", "10.0.0.*").is_ok());
        assert!(validate_target_attr("redirect", "").is_ok());
        assert!(validate_target_attr("redirect", "10.0.0.1 temp").is_ok());
        assert!(validate_target_attr("redirect", "[::1]:3261 perm").is_ok());
        assert!(validate_target_attr("redirect", "10.0.0.1").is_err());
        assert!(validate_target_attr("redirect", "10.0.0.1:0 temp").is_err());
        assert!(validate_target_attr("redirect", "host.example temp").is_err());
        assert!(validate_target_attr("allowed_portal1", "!::1").is_ok());
        assert!(validate_target_attr("allowed_portal", "a b").is_err());
        assert!(validate_target_attr("allowed_portal", "!").is_err());
    }

    #[test]
    fn internal_portals() {
        let attrs = vec![("internal_portal".to_string(), "10.0.0.1 [::1]".to_string())];
        assert!(is_internal_portal(&attrs, "10.0.0.1".parse().unwrap()));
        assert!(is_internal_portal(&attrs, "::1".parse().unwrap()));
        assert!(!is_internal_portal(&attrs, "10.0.0.2".parse().unwrap()));
    }
}
