//! The login phase (RFC 7143 6, docs/scst-reference.md 6.4) as a state machine with a type per
//! state:
//!
//! ```text
//!  Start --first PDU, C bit--> FirstText --...--+
//!    |                                          | first complete request: names, session
//!    +------------------------------------------+ type, admission, accounts
//!    v
//!  [AwaitingAccess]  normal sessions: the iSNS access decision (a query event)
//!    v
//!  Security (AuthMethod, CHAP) --T, NSG=1--> Operational --T, NSG=3--> complete
//!    \--------------------------T, NSG=3------------------------------> complete
//! ```
//!
//! Any refusal answers with a Login Response carrying the status and ends the login.

use iscsi_wire::negotiate::{LocalParams, Negotiator, SessionParams};
use iscsi_wire::pdu::{self, login_status, LoginResponse, TargetSn};
use iscsi_wire::{Bhs, Opcode, Stage};

use crate::auth::Auth;
use crate::host::{AdmissionRequest, LoginHost, Refusal};
use crate::Transmit;

/// Login PDUs carry at most the RFC default data segment (8192) until negotiated.
pub(crate) const LOGIN_MAX_DATA: u32 = 8192;
/// Cap on accumulated login text (C bit continuation) against memory abuse.
const MAX_LOGIN_TEXT: usize = 64 * 1024;

type Keys = Vec<(String, String)>;

/// A normal session whose login completed: what the full-feature phase starts from.
#[derive(Debug)]
pub struct NormalSession<A> {
    /// InitiatorName as sent.
    pub initiator: String,
    /// The name the session registers with the core (see [`crate::Admitted::acl_name`]).
    pub acl_name: String,
    /// The driver's admission handle ([`crate::Admitted::handle`]).
    pub admission: A,
    /// The CHAP account the initiator authenticated as, if it did.
    pub chap_user: Option<String>,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub cid: u16,
    /// The negotiated operational parameters.
    pub params: SessionParams,
    /// The next StatSN to send and the next CmdSN expected.
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
}

/// A discovery session whose login completed.
#[derive(Debug)]
pub(crate) struct DiscoverySession {
    pub initiator: String,
    pub params: SessionParams,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
}

/// What one login request led to.
pub(crate) enum Outcome<A> {
    /// The login goes on in this state; the response is queued.
    Continue(Login<A>),
    /// The response is held until the driver answers whether the iSNS server lets
    /// `initiator` see `target`.
    AccessQuery {
        login: Login<A>,
        target: String,
        initiator: String,
    },
    /// The final response is queued.
    Normal(Box<NormalSession<A>>),
    Discovery(DiscoverySession),
    /// Refused: the response with the status is queued; the connection closes.
    Refused {
        initiator: Option<String>,
        refusal: Refusal,
    },
    /// Not a login request at all: closed without an answer.
    ProtocolError(String),
}

/// The login states.
pub(crate) enum Login<A> {
    /// Nothing received yet.
    Start,
    /// The first request's text continues (C bit): names are not known yet.
    FirstText(Exchange),
    /// The first request passed the driver's checks; the iSNS access decision and the
    /// response wait.
    AwaitingAccess(Box<Held<A>>),
    Security(Box<Security<A>>),
    Operational(Box<Operational<A>>),
}

/// A response held for the access decision.
pub(crate) struct Held<A> {
    stage: Negotiating<A>,
    keys: Keys,
    req: Request,
}

/// The flags of one login request that shape its response.
#[derive(Debug, Clone, Copy)]
struct Request {
    csg: Stage,
    nsg: Stage,
    transit: bool,
}

impl Request {
    fn of(bhs: &Bhs) -> Request {
        Request {
            csg: bhs.csg(),
            nsg: bhs.nsg(),
            transit: bhs.transit(),
        }
    }
}

/// The sequencing of one login exchange, fixed by its first request, and the text of a
/// request still arriving.
#[derive(Debug)]
pub(crate) struct Exchange {
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
    itt: u32,
    stat_sn: u32,
    exp_cmd_sn: u32,
    text: Vec<u8>,
}

impl Exchange {
    fn first(bhs: &Bhs) -> Exchange {
        Exchange {
            isid: bhs.isid(),
            tsih: bhs.tsih(),
            cid: bhs.cid(),
            itt: bhs.itt(),
            stat_sn: bhs.exp_stat_sn(),
            exp_cmd_sn: bhs.cmd_sn(),
            text: Vec::new(),
        }
    }

    fn sn(&self) -> TargetSn {
        TargetSn {
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.exp_cmd_sn,
        }
    }

    /// The checks every login request passes; its complete text once the last PDU of
    /// it arrived (None while the C bit says more follows).
    fn accept(&mut self, bhs: &Bhs, data: &[u8]) -> Result<Option<Keys>, Refusal> {
        self.itt = bhs.itt();
        if bhs.version_min() > pdu::ISCSI_VERSION {
            return Err(Refusal::new(
                login_status::UNSUPPORTED_VERSION,
                "unsupported iSCSI version",
            ));
        }
        if bhs.isid() != self.isid || bhs.tsih() != self.tsih || bhs.cid() != self.cid {
            return Err(Refusal::new(
                login_status::INITIATOR_ERROR,
                "ISID/TSIH/CID changed during login",
            ));
        }
        let (csg, nsg, transit) = (bhs.csg(), bhs.nsg(), bhs.transit());
        let stage_ok = match csg {
            Stage::SecurityNegotiation => {
                !transit || matches!(nsg, Stage::LoginOperational | Stage::FullFeature)
            }
            Stage::LoginOperational => !transit || nsg == Stage::FullFeature,
            _ => false,
        };
        if !stage_ok {
            return Err(Refusal::new(
                login_status::INITIATOR_ERROR,
                "invalid login stage transition",
            ));
        }
        if self.text.len() + data.len() > MAX_LOGIN_TEXT {
            return Err(Refusal::new(
                login_status::INITIATOR_ERROR,
                "login text too long",
            ));
        }
        self.text.extend_from_slice(data);
        if bhs.continue_bit() {
            if transit {
                return Err(Refusal::new(
                    login_status::INITIATOR_ERROR,
                    "C and T bits both set",
                ));
            }
            return Ok(None);
        }
        let text = std::mem::take(&mut self.text);
        iscsi_wire::parse_text(&text).map(Some).map_err(|e| {
            Refusal::new(
                login_status::INITIATOR_ERROR,
                format!("malformed login text: {e}"),
            )
        })
    }

    fn send(&mut self, resp: LoginResponse, keys: &Keys, tx: &mut Transmit) {
        let data = iscsi_wire::encode_text(keys);
        let resp = LoginResponse {
            data_len: data.len() as u32,
            ..resp
        };
        tx.push(&pdu::login_response(&resp), &data);
    }

    /// A response that does not move the login on (more text is wanted).
    fn hold(&mut self, req: Request, keys: &Keys, tx: &mut Transmit) {
        let resp = self.response(req, false, pdu::login_status::SUCCESS);
        self.send(resp, keys, tx);
        self.stat_sn = self.stat_sn.wrapping_add(1);
    }

    fn response(&self, req: Request, transit: bool, status: (u8, u8)) -> LoginResponse {
        LoginResponse {
            transit,
            cont: false,
            csg: req.csg,
            nsg: if transit { req.nsg } else { req.csg },
            isid: self.isid,
            tsih: 0,
            itt: self.itt,
            status,
            sn: self.sn(),
            data_len: 0,
        }
    }

    fn refuse<A>(
        &mut self,
        req: Request,
        initiator: Option<String>,
        refusal: Refusal,
        tx: &mut Transmit,
    ) -> Outcome<A> {
        let resp = self.response(req, false, refusal.status);
        self.send(resp, &refusal.keys, tx);
        Outcome::Refused { initiator, refusal }
    }
}

/// Who logs in to what, settled by the first complete request.
struct Setup<A> {
    initiator: String,
    kind: Kind<A>,
    neg: Negotiator,
    /// TargetPortalGroupTag goes in the first response of a normal session only.
    sent_tpgt: bool,
}

enum Kind<A> {
    Discovery,
    Normal {
        target: String,
        admission: A,
        acl_name: String,
        alias: Option<String>,
    },
}

/// The security stage: AuthMethod and CHAP.
pub(crate) struct Security<A> {
    x: Exchange,
    setup: Setup<A>,
    auth: Auth,
}

/// The operational stage: authentication is over.
pub(crate) struct Operational<A> {
    x: Exchange,
    setup: Setup<A>,
    chap_user: Option<String>,
}

enum Negotiating<A> {
    Security(Box<Security<A>>),
    Operational(Box<Operational<A>>),
}

fn security_keys(pairs: &Keys) -> bool {
    pairs
        .iter()
        .any(|(k, _)| k == "AuthMethod" || k.starts_with("CHAP_"))
}

fn get<'a>(pairs: &'a Keys, key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == key)
        .map(|(_, v)| v.as_str())
}

impl<A> Login<A> {
    /// One received PDU. The connection never feeds one while the state is
    /// `AwaitingAccess`.
    pub(crate) fn handle<H: LoginHost<Admission = A>>(
        self,
        bhs: &Bhs,
        data: &[u8],
        host: &mut H,
        tx: &mut Transmit,
    ) -> Outcome<A> {
        if bhs.opcode() != Some(Opcode::LoginRequest) {
            return Outcome::ProtocolError(format!(
                "expected a Login Request, got opcode {:#x}",
                bhs.opcode_raw()
            ));
        }
        let req = Request::of(bhs);
        let stage = match self {
            Login::Start => return first(Exchange::first(bhs), bhs, data, req, host, tx),
            Login::FirstText(x) => return first(x, bhs, data, req, host, tx),
            Login::AwaitingAccess(_) => {
                return Outcome::ProtocolError("login request before the last was answered".into())
            }
            Login::Security(s) => Negotiating::Security(s),
            Login::Operational(o) => Negotiating::Operational(o),
        };
        let mut stage = stage;
        let pairs = match stage.exchange().accept(bhs, data) {
            Ok(Some(pairs)) => pairs,
            Ok(None) => {
                stage.exchange().hold(req, &Vec::new(), tx);
                return Outcome::Continue(stage.into_login());
            }
            Err(r) => {
                let who = Some(stage.initiator().to_string());
                return stage.exchange().refuse(req, who, r, tx);
            }
        };
        match stage.process(&pairs, req, tx) {
            Ok((stage, keys)) => stage.respond(keys, req, host, tx),
            Err(refused) => refused,
        }
    }

    /// The driver's answer to an [`Outcome::AccessQuery`].
    pub(crate) fn access_answered<H: LoginHost<Admission = A>>(
        self,
        allowed: bool,
        host: &mut H,
        tx: &mut Transmit,
    ) -> Outcome<A> {
        let Login::AwaitingAccess(held) = self else {
            return Outcome::ProtocolError("an access answer nobody asked for".into());
        };
        let Held {
            mut stage,
            keys,
            req,
        } = *held;
        if !allowed {
            let who = stage.initiator().to_string();
            let target = match &stage.setup().kind {
                Kind::Normal { target, .. } => target.clone(),
                Kind::Discovery => String::new(),
            };
            let why = format!("{who}: the iSNS server does not show {target} to it");
            let r = Refusal::new(login_status::NOT_FOUND, why);
            return stage.exchange().refuse(req, Some(who), r, tx);
        }
        stage.respond(keys, req, host, tx)
    }
}

/// The first complete request: who logs in to what, admission by the driver, then
/// the request's keys like any other.
fn first<A, H: LoginHost<Admission = A>>(
    mut x: Exchange,
    bhs: &Bhs,
    data: &[u8],
    req: Request,
    host: &mut H,
    tx: &mut Transmit,
) -> Outcome<A> {
    let pairs = match x.accept(bhs, data) {
        Ok(Some(pairs)) => pairs,
        Ok(None) => {
            x.hold(req, &Vec::new(), tx);
            return Outcome::Continue(Login::FirstText(x));
        }
        Err(r) => return x.refuse(req, None, r, tx),
    };
    let (setup, auth) = match settle(&x, &pairs, host) {
        Ok(s) => s,
        Err(r) => return x.refuse(req, None, r, tx),
    };
    let stage = Negotiating::Security(Box::new(Security { x, setup, auth }));
    let (stage, keys) = match stage.process(&pairs, req, tx) {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    match &stage.setup().kind {
        // iSNS AccessControl (scst-reference 6.4, 6.9) asks the server, so the answer waits.
        Kind::Normal { target, .. } => Outcome::AccessQuery {
            target: target.clone(),
            initiator: stage.initiator().to_string(),
            login: Login::AwaitingAccess(Box::new(Held { stage, keys, req })),
        },
        Kind::Discovery => stage.respond(keys, req, host, tx),
    }
}

/// The first request names the initiator, the session type and the target.
fn settle<A, H: LoginHost<Admission = A>>(
    x: &Exchange,
    pairs: &Keys,
    host: &mut H,
) -> Result<(Setup<A>, Auth), Refusal> {
    let initiator = get(pairs, "InitiatorName")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Refusal::new(login_status::MISSING_PARAMETER, "no InitiatorName"))?
        .to_string();
    let discovery = match get(pairs, "SessionType") {
        None | Some("Normal") => false,
        Some("Discovery") => true,
        Some(other) => {
            return Err(Refusal::new(
                login_status::SESSION_TYPE_NOT_SUPPORTED,
                format!("SessionType {other}"),
            ))
        }
    };
    if !host.accepting_logins() {
        return Err(Refusal::new(
            login_status::SERVICE_UNAVAILABLE,
            "the iscsi target driver is disabled",
        ));
    }
    // Normal sessions authenticate against the target's accounts, discovery sessions
    // against the driver's (scst-reference 6.5).
    let (kind, accounts, params) = if discovery {
        (
            Kind::Discovery,
            host.discovery_accounts(),
            LocalParams::default(),
        )
    } else {
        let target = get(pairs, "TargetName")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Refusal::new(
                    login_status::MISSING_PARAMETER,
                    format!("{initiator}: no TargetName"),
                )
            })?;
        let admitted = host.admit(&AdmissionRequest {
            initiator: &initiator,
            target,
            isid: x.isid,
            tsih: x.tsih,
        })?;
        let kind = Kind::Normal {
            target: target.to_string(),
            admission: admitted.handle,
            acl_name: admitted.acl_name,
            alias: admitted.alias,
        };
        (kind, admitted.accounts, admitted.params)
    };
    let auth = Auth::new(accounts, !host.internal_portal());
    let setup = Setup {
        initiator,
        kind,
        neg: Negotiator::new(params, discovery),
        sent_tpgt: false,
    };
    Ok((setup, auth))
}

impl<A> Negotiating<A> {
    fn exchange(&mut self) -> &mut Exchange {
        match self {
            Negotiating::Security(s) => &mut s.x,
            Negotiating::Operational(o) => &mut o.x,
        }
    }

    fn setup(&self) -> &Setup<A> {
        match self {
            Negotiating::Security(s) => &s.setup,
            Negotiating::Operational(o) => &o.setup,
        }
    }

    fn initiator(&self) -> &str {
        &self.setup().initiator
    }

    fn into_login(self) -> Login<A> {
        match self {
            Negotiating::Security(s) => Login::Security(s),
            Negotiating::Operational(o) => Login::Operational(o),
        }
    }

    /// One complete request's keys: the stage's own keys (security), then the
    /// operational negotiation. Err: refused, with the response queued.
    fn process(
        self,
        pairs: &Keys,
        req: Request,
        tx: &mut Transmit,
    ) -> Result<(Self, Keys), Outcome<A>> {
        let mut out = Keys::new();
        let mut stage = match (self, req.csg) {
            (Negotiating::Security(mut s), Stage::SecurityNegotiation) => {
                let r = s
                    .auth
                    .process(pairs, &mut out)
                    .map_err(|f| Refusal::new(f.status, f.why));
                // Asking to leave the security stage without ever starting CHAP cannot
                // succeed: refuse instead of holding the initiator in this stage forever.
                let r = r.and_then(|()| {
                    let a = &s.auth;
                    if req.transit && a.required() && !a.complete() && !a.in_progress() {
                        Err(Refusal::new(
                            login_status::AUTHENTICATION_FAILURE,
                            "CHAP is required but the initiator did not offer AuthMethod",
                        ))
                    } else {
                        Ok(())
                    }
                });
                if let Err(r) = r {
                    let who = Some(s.setup.initiator.clone());
                    return Err(s.x.refuse(req, who, r, tx));
                }
                Negotiating::Security(s)
            }
            (Negotiating::Security(mut s), _) => {
                // Skipping straight to the operational stage (RFC 7143 6.3) is only
                // allowed where no authentication is required.
                let refusal = if security_keys(pairs) {
                    Some(Refusal::new(
                        login_status::INITIATOR_ERROR,
                        "AuthMethod or CHAP keys outside the security stage",
                    ))
                } else if !s.auth.complete() {
                    Some(Refusal::new(
                        login_status::AUTHENTICATION_FAILURE,
                        "CHAP is required but the security stage was skipped",
                    ))
                } else {
                    None
                };
                if let Some(r) = refusal {
                    let who = Some(s.setup.initiator.clone());
                    return Err(s.x.refuse(req, who, r, tx));
                }
                Negotiating::Operational(Box::new(s.into_operational()))
            }
            (Negotiating::Operational(mut o), csg) => {
                let refusal = if csg == Stage::SecurityNegotiation {
                    Some("security negotiation after the operational stage began")
                } else if security_keys(pairs) {
                    Some("AuthMethod or CHAP keys outside the security stage")
                } else {
                    None
                };
                if let Some(why) = refusal {
                    let who = Some(o.setup.initiator.clone());
                    let r = Refusal::new(login_status::INITIATOR_ERROR, why);
                    return Err(o.x.refuse(req, who, r, tx));
                }
                Negotiating::Operational(o)
            }
        };
        let setup = match &mut stage {
            Negotiating::Security(s) => &mut s.setup,
            Negotiating::Operational(o) => &mut o.setup,
        };
        if let Kind::Normal { alias, .. } = &setup.kind {
            if !setup.sent_tpgt {
                // RFC 7143 13.9: in the first response of a normal session.
                setup.sent_tpgt = true;
                out.push(("TargetPortalGroupTag".into(), "1".into()));
                if let Some(alias) = alias.as_ref().filter(|a| !a.is_empty()) {
                    out.push(("TargetAlias".into(), alias.clone()));
                }
            }
        }
        match setup.neg.process(pairs) {
            Ok(replies) => out.extend(replies),
            Err(e) => {
                let who = Some(setup.initiator.clone());
                let r = Refusal::new(login_status::INITIATOR_ERROR, format!("negotiation: {e}"));
                return Err(stage.exchange().refuse(req, who, r, tx));
            }
        }
        // Declarations and the target's own offers go out in the operational stage, or
        // when the initiator jumps from security straight to full feature. Offers in a
        // response that leaves the security stage would hold that transit until the
        // initiator answered keys it has not reached yet.
        if req.csg == Stage::LoginOperational || (req.transit && req.nsg == Stage::FullFeature) {
            out.extend(setup.neg.target_declarations());
        }
        Ok((stage, out))
    }

    /// Answers a processed request, moving the login on where the initiator asked to
    /// and nothing holds it.
    fn respond<H: LoginHost<Admission = A>>(
        mut self,
        keys: Keys,
        req: Request,
        host: &mut H,
        tx: &mut Transmit,
    ) -> Outcome<A> {
        // Hold the transit while target offers await the initiator's answers. Likewise
        // while CHAP is still under way: the initiator may ask to move on from its
        // first security request, before it has been challenged.
        let awaiting = self.setup().neg.awaiting_replies()
            || matches!(&self, Negotiating::Security(s) if !s.auth.complete());
        let transit = req.transit && !awaiting;
        let done = transit && req.nsg == Stage::FullFeature;
        let normal = matches!(self.setup().kind, Kind::Normal { .. });
        let x = self.exchange();
        if done && normal && x.tsih == 0 {
            x.tsih = host.alloc_tsih();
        }
        let mut resp = x.response(req, transit, login_status::SUCCESS);
        if done {
            resp.tsih = x.tsih;
        }
        x.send(resp, &keys, tx);
        x.stat_sn = x.stat_sn.wrapping_add(1);
        if done {
            return self.complete();
        }
        match self {
            Negotiating::Security(s) if transit => {
                Outcome::Continue(Login::Operational(Box::new(s.into_operational())))
            }
            stage => Outcome::Continue(stage.into_login()),
        }
    }

    fn complete(self) -> Outcome<A> {
        let (x, setup, chap_user) = match self {
            Negotiating::Security(s) => (s.x, s.setup, s.auth.user),
            Negotiating::Operational(o) => (o.x, o.setup, o.chap_user),
        };
        let params = setup.neg.params();
        match setup.kind {
            Kind::Discovery => Outcome::Discovery(DiscoverySession {
                initiator: setup.initiator,
                params,
                stat_sn: x.stat_sn,
                exp_cmd_sn: x.exp_cmd_sn,
            }),
            Kind::Normal {
                admission,
                acl_name,
                ..
            } => Outcome::Normal(Box::new(NormalSession {
                initiator: setup.initiator,
                acl_name,
                admission,
                chap_user,
                isid: x.isid,
                tsih: x.tsih,
                cid: x.cid,
                params,
                stat_sn: x.stat_sn,
                exp_cmd_sn: x.exp_cmd_sn,
            })),
        }
    }
}

impl<A> Security<A> {
    fn into_operational(self) -> Operational<A> {
        Operational {
            x: self.x,
            setup: self.setup,
            chap_user: self.auth.user,
        }
    }
}
