//! The security stage of a login (RFC 7143 6.2 and 12.1.3, docs/scst-reference.md 6.5): AuthMethod
//! selection and the target side of one-way and mutual CHAP, as a sans-I/O state
//! machine fed with each login request's keys.
//!
//! Accounts come from `IncomingUser` (several, any may log in) and `OutgoingUser` (the
//! one the target answers mutual challenges with): the target's own for normal
//! sessions, the driver's for discovery sessions.

use iscsi_wire::chap::{self, ChapAlgorithm};
use iscsi_wire::pdu::login_status;

/// Longest initiator challenge we take: RFC 7143 12.1.3 bounds binary CHAP values at
/// 1024 bytes.
const MAX_INITIATOR_CHALLENGE: usize = 1024;

/// Whether attribute `name` is `base` or one of its sysfs instance names (`base1`,
/// `base2`...), as written back by write_config.
pub fn is_instance_of(name: &str, base: &str) -> bool {
    name.strip_prefix(base)
        .is_some_and(|rest| rest.bytes().all(|c| c.is_ascii_digit()))
}

/// The CHAP accounts that govern one login.
#[derive(Default, Clone)]
pub struct Accounts {
    incoming: Vec<(String, String)>,
    outgoing: Option<(String, String)>,
}

/// Names only: secrets stay out of logs and panics.
impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let incoming: Vec<&str> = self.incoming.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("Accounts")
            .field("incoming", &incoming)
            .field("outgoing", &self.outgoing.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Accounts {
    /// Accounts from an attribute list (target or driver level).
    pub fn from_attrs(attrs: &[(String, String)]) -> Accounts {
        let mut a = Accounts::default();
        for (name, value) in attrs {
            let Some((user, secret)) = chap::parse_account(value) else {
                continue;
            };
            let pair = (user.to_string(), secret.to_string());
            if is_instance_of(name, "IncomingUser") {
                a.incoming.push(pair);
            } else if is_instance_of(name, "OutgoingUser") {
                // A later OutgoingUser replaces an earlier one (scst-reference 6.5).
                a.outgoing = Some(pair);
            }
        }
        a
    }
}

/// A refused security stage: the login status and a reason for the log (never a
/// secret).
pub struct AuthFailure {
    pub status: (u8, u8),
    pub why: String,
}

fn refuse(why: impl Into<String>) -> AuthFailure {
    AuthFailure {
        status: login_status::AUTHENTICATION_FAILURE,
        why: why.into(),
    }
}

enum Phase {
    /// No AuthMethod agreed yet.
    Start,
    /// AuthMethod=CHAP agreed: waiting for CHAP_A.
    Algorithm,
    /// Challenge sent: waiting for CHAP_N/CHAP_R.
    Response {
        alg: ChapAlgorithm,
        id: u8,
        challenge: Vec<u8>,
    },
    /// Authenticated, or no authentication wanted.
    Done,
}

pub struct Auth {
    accounts: Accounts,
    required: bool,
    phase: Phase,
    /// The CHAP account name the initiator authenticated as.
    pub user: Option<String>,
}

impl Auth {
    /// `required`: CHAP is demanded (there are IncomingUser accounts and the portal is
    /// not an internal one).
    pub fn new(accounts: Accounts, required: bool) -> Auth {
        Auth {
            required: required && !accounts.incoming.is_empty(),
            accounts,
            phase: Phase::Start,
            user: None,
        }
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// Whether the login may leave the security stage.
    pub fn complete(&self) -> bool {
        !self.required || matches!(self.phase, Phase::Done)
    }

    /// Whether an exchange is under way that the initiator still has to continue (so a
    /// transit request must be held rather than refused).
    pub fn in_progress(&self) -> bool {
        matches!(self.phase, Phase::Algorithm | Phase::Response { .. })
    }

    /// Processes the security keys of one login request, appending the answers.
    pub fn process(
        &mut self,
        pairs: &[(String, String)],
        out: &mut Vec<(String, String)>,
    ) -> Result<(), AuthFailure> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let Some(methods) = get("AuthMethod") {
            if !matches!(self.phase, Phase::Start) {
                return Err(refuse("AuthMethod offered again"));
            }
            let offered = |m: &str| methods.split(',').any(|x| x.trim() == m);
            if self.required {
                if !offered("CHAP") {
                    return Err(refuse(format!(
                        "AuthMethod {methods}: this target requires CHAP"
                    )));
                }
                out.push(("AuthMethod".into(), "CHAP".into()));
                self.phase = Phase::Algorithm;
            } else {
                // Without accounts the target authenticates nobody; an initiator that
                // insists on CHAP learns it from the answer and may give up.
                out.push(("AuthMethod".into(), "None".into()));
                self.phase = Phase::Done;
            }
        }
        let chap_keys = pairs.iter().any(|(k, _)| k.starts_with("CHAP_"));
        if !chap_keys {
            return Ok(());
        }
        match &self.phase {
            Phase::Algorithm => self.algorithm(get("CHAP_A"), out),
            Phase::Response { .. } => self.response(&get, out),
            Phase::Start | Phase::Done => Err(refuse("CHAP keys without AuthMethod=CHAP")),
        }
    }

    fn algorithm(
        &mut self,
        offer: Option<&str>,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), AuthFailure> {
        let offer = offer.ok_or_else(|| refuse("CHAP keys before CHAP_A"))?;
        let alg = chap::select_algorithm(offer, &ChapAlgorithm::ALL)
            .ok_or_else(|| refuse(format!("CHAP_A {offer}: no supported algorithm")))?;
        let id = chap::random_bytes(1)[0];
        let challenge = alg.new_challenge();
        out.push(("CHAP_A".into(), alg.code().to_string()));
        out.push(("CHAP_I".into(), id.to_string()));
        out.push(("CHAP_C".into(), chap::encode_hex(&challenge)));
        self.phase = Phase::Response { alg, id, challenge };
        Ok(())
    }

    fn response<'a>(
        &mut self,
        get: &dyn Fn(&str) -> Option<&'a str>,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), AuthFailure> {
        let Phase::Response { alg, id, challenge } = &self.phase else {
            unreachable!("called in the response phase only")
        };
        let (alg, id) = (*alg, *id);
        let name = get("CHAP_N").ok_or_else(|| refuse("no CHAP_N"))?;
        let response = get("CHAP_R")
            .ok_or_else(|| refuse("no CHAP_R"))
            .and_then(|r| chap::decode_binary(r).map_err(|e| refuse(format!("CHAP_R: {e}"))))?;
        // Every account with this name is tried, without stopping at the first match,
        // so timing says nothing about which secret matched.
        let ok = self
            .accounts
            .incoming
            .iter()
            .filter(|(u, _)| u == name)
            .fold(false, |ok, (_, secret)| {
                alg.verify(id, secret.as_bytes(), challenge, &response) | ok
            });
        if !ok {
            return Err(refuse(format!(
                "CHAP ({alg}) authentication of user '{name}' failed"
            )));
        }
        // Mutual CHAP: the initiator challenges the target in the same request.
        match (get("CHAP_I"), get("CHAP_C")) {
            (None, None) => {}
            (Some(ci), Some(cc)) => {
                let ci = chap::decode_identifier(ci).map_err(|e| refuse(format!("CHAP_I: {e}")))?;
                let cc = chap::decode_binary(cc).map_err(|e| refuse(format!("CHAP_C: {e}")))?;
                if cc.len() > MAX_INITIATOR_CHALLENGE {
                    return Err(refuse("CHAP_C longer than 1024 bytes"));
                }
                // A reflection attack replays our own challenge back to us to have us
                // compute the answer it needs (RFC 7143 12.1.3).
                if chap::constant_time_eq(&cc, challenge) {
                    return Err(refuse("mutual CHAP: the initiator reflected our challenge"));
                }
                let (out_user, out_secret) =
                    self.accounts.outgoing.as_ref().ok_or_else(|| {
                        refuse("mutual CHAP requested but no OutgoingUser is set")
                    })?;
                let r = alg.response(ci, out_secret.as_bytes(), &cc);
                out.push(("CHAP_N".into(), out_user.clone()));
                out.push(("CHAP_R".into(), chap::encode_hex(&r)));
            }
            _ => return Err(refuse("mutual CHAP needs both CHAP_I and CHAP_C")),
        }
        self.user = Some(name.to_string());
        self.phase = Phase::Done;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    fn accounts(out: bool) -> Accounts {
        let mut attrs = vec![
            kv("IncomingUser", "joe secret123456"),
            kv("IncomingUser1", "ann annsecret9876"),
        ];
        if out {
            attrs.push(kv("OutgoingUser", "tgt targetsecret12"));
        }
        Accounts::from_attrs(&attrs)
    }

    /// Drives AuthMethod and CHAP_A; returns (alg, id, challenge) from the answers.
    fn start(a: &mut Auth, algs: &str) -> (ChapAlgorithm, u8, Vec<u8>) {
        let mut out = Vec::new();
        a.process(&[kv("AuthMethod", "CHAP,None")], &mut out)
            .ok()
            .unwrap();
        assert_eq!(out, [kv("AuthMethod", "CHAP")]);
        out.clear();
        a.process(&[kv("CHAP_A", algs)], &mut out).ok().unwrap();
        assert!(!a.complete() && a.in_progress());
        let get = |k: &str| out.iter().find(|(n, _)| n == k).unwrap().1.clone();
        let alg = ChapAlgorithm::from_code(get("CHAP_A").parse().unwrap()).unwrap();
        let id = chap::decode_identifier(&get("CHAP_I")).unwrap();
        let c = chap::decode_binary(&get("CHAP_C")).unwrap();
        assert!(c.len() >= alg.digest_len());
        (alg, id, c)
    }

    #[test]
    fn instance_names() {
        assert!(is_instance_of("IncomingUser", "IncomingUser"));
        assert!(is_instance_of("IncomingUser12", "IncomingUser"));
        assert!(!is_instance_of("IncomingUserX", "IncomingUser"));
        assert!(!is_instance_of("Incoming", "IncomingUser"));
    }

    #[test]
    fn one_way_each_algorithm() {
        for alg in ChapAlgorithm::ALL {
            let mut a = Auth::new(accounts(false), true);
            let (got, id, c) = start(&mut a, &format!("1,{}", alg.code()));
            assert_eq!(got, alg);
            let r = alg.response(id, b"annsecret9876", &c);
            let mut out = Vec::new();
            let keys = [kv("CHAP_N", "ann"), kv("CHAP_R", &chap::encode_base64(&r))];
            a.process(&keys, &mut out).ok().unwrap();
            assert!(out.is_empty() && a.complete());
            assert_eq!(a.user.as_deref(), Some("ann"));
        }
    }

    #[test]
    fn wrong_secret_and_user() {
        for (user, secret) in [("joe", "secret123457"), ("bob", "secret123456")] {
            let mut a = Auth::new(accounts(false), true);
            let (alg, id, c) = start(&mut a, "5");
            let r = alg.response(id, secret.as_bytes(), &c);
            let keys = [kv("CHAP_N", user), kv("CHAP_R", &chap::encode_hex(&r))];
            let e = a.process(&keys, &mut Vec::new()).err().unwrap();
            assert_eq!(e.status, login_status::AUTHENTICATION_FAILURE);
            assert!(!e.why.contains(secret));
        }
    }

    #[test]
    fn method_selection() {
        let mut a = Auth::new(accounts(false), true);
        let e = a.process(&[kv("AuthMethod", "None")], &mut Vec::new());
        assert_eq!(
            e.err().unwrap().status,
            login_status::AUTHENTICATION_FAILURE
        );
        // No accounts: None, even to an initiator offering only CHAP.
        let mut a = Auth::new(Accounts::default(), true);
        let mut out = Vec::new();
        a.process(&[kv("AuthMethod", "CHAP")], &mut out)
            .ok()
            .unwrap();
        assert_eq!(out, [kv("AuthMethod", "None")]);
        assert!(a.complete() && !a.required());
        // Accounts but an internal portal: not required.
        let a = Auth::new(accounts(false), false);
        assert!(a.complete());
    }

    #[test]
    fn mutual() {
        let mut a = Auth::new(accounts(true), true);
        let (alg, id, c) = start(&mut a, "7");
        let r = alg.response(id, b"secret123456", &c);
        let mine = [0x55u8; 20];
        let keys = [
            kv("CHAP_N", "joe"),
            kv("CHAP_R", &chap::encode_hex(&r)),
            kv("CHAP_I", "9"),
            kv("CHAP_C", &chap::encode_hex(&mine)),
        ];
        let mut out = Vec::new();
        a.process(&keys, &mut out).ok().unwrap();
        let want = chap::encode_hex(&alg.response(9, b"targetsecret12", &mine));
        assert_eq!(out, [kv("CHAP_N", "tgt"), kv("CHAP_R", &want)]);

        // Reflected challenge, and no OutgoingUser.
        for (with_out, reflect) in [(true, true), (false, false)] {
            let mut a = Auth::new(accounts(with_out), true);
            let (alg, id, c) = start(&mut a, "5");
            let r = alg.response(id, b"secret123456", &c);
            let theirs = if reflect { c.clone() } else { mine.to_vec() };
            let keys = [
                kv("CHAP_N", "joe"),
                kv("CHAP_R", &chap::encode_hex(&r)),
                kv("CHAP_I", &id.to_string()),
                kv("CHAP_C", &chap::encode_hex(&theirs)),
            ];
            assert!(a.process(&keys, &mut Vec::new()).is_err());
            assert!(!a.complete());
        }
    }
}
