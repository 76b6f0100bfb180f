//! What the engine asks of the target driver that runs it: the decisions that need the
//! driver's configuration (targets, ACLs, portals, CHAP accounts, MaxSessions, session
//! reinstatement), asked synchronously through [`LoginHost`]. Questions whose answers
//! take I/O (the iSNS server's access control, a SendTargets listing after an iSNS
//! refresh) are not here: they are query events the driver answers later (see
//! [`crate::Event`]).

use iscsi_wire::negotiate::LocalParams;

use crate::auth::Accounts;

/// A normal session's login asks to be admitted (RFC 7143 6.1, docs/scst-reference.md 6.4).
#[derive(Debug, Clone, Copy)]
pub struct AdmissionRequest<'a> {
    /// InitiatorName as sent.
    pub initiator: &'a str,
    /// TargetName as sent (non-empty).
    pub target: &'a str,
    pub isid: [u8; 6],
    /// Non-zero when the initiator adds a connection to (or reinstates) a session.
    pub tsih: u16,
}

/// A normal session's admission, with what its login needs to know of the target.
#[derive(Debug)]
pub struct Admitted<A> {
    /// The driver's own handle (the target, the MaxSessions slot the session holds...):
    /// kept by the engine and given back when the login completes, dropped when it
    /// fails.
    pub handle: A,
    /// The name the session is registered and matched against the ACL under.
    pub acl_name: String,
    /// The target's CHAP accounts.
    pub accounts: Accounts,
    /// The target's side of the operational negotiation.
    pub params: LocalParams,
    /// TargetAlias to declare, if any.
    pub alias: Option<String>,
}

/// A login the driver refuses: the login status, a reason for the log (never a secret)
/// and keys the refusal carries (a redirection's TargetAddress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// (Status-Class, Status-Detail), see [`iscsi_wire::pdu::login_status`].
    pub status: (u8, u8),
    pub why: String,
    pub keys: Vec<(String, String)>,
}

impl Refusal {
    pub fn new(status: (u8, u8), why: impl Into<String>) -> Refusal {
        Refusal {
            status,
            why: why.into(),
            keys: Vec::new(),
        }
    }
}

/// The driver's answers to a login on one connection (it knows the portal the
/// connection came in on).
pub trait LoginHost {
    /// See [`Admitted::handle`].
    type Admission;

    /// Whether new logins are taken at all (the driver is enabled and not shutting
    /// down). Refused logins get SERVICE UNAVAILABLE.
    fn accepting_logins(&self) -> bool;

    /// Admit a normal session to a target: it exists, is enabled, is reachable through
    /// this portal, gives the initiator LUNs, does not redirect, the TSIH (if any)
    /// names a live session, and MaxSessions has room.
    fn admit(&mut self, req: &AdmissionRequest<'_>) -> Result<Admitted<Self::Admission>, Refusal>;

    /// The CHAP accounts discovery sessions authenticate against (the driver's own).
    fn discovery_accounts(&self) -> Accounts;

    /// Whether this connection's portal is an internal one, where CHAP is not required.
    fn internal_portal(&self) -> bool;

    /// A new, non-zero TSIH for a normal session that completes its login.
    fn alloc_tsih(&mut self) -> u16;
}
