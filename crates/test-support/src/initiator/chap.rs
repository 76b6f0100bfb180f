//! The initiator side of CHAP (RFC 7143 12.1.3): answers the target's challenge and,
//! for mutual CHAP, challenges the target and checks its answer. Knobs let tests play
//! a misbehaving initiator (reflecting the target's challenge).

use iscsi_wire::chap::{self, ChapAlgorithm};

use super::InitiatorError;

/// Credentials and behaviour for a CHAP login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chap {
    /// AuthMethod offer (default `CHAP,None`).
    pub auth_method: String,
    /// CHAP_N and the secret the initiator proves it knows.
    pub user: String,
    pub secret: String,
    /// CHAP_A offer, in preference order.
    pub algorithms: Vec<ChapAlgorithm>,
    /// Mutual CHAP: what the target must answer with.
    pub mutual: Option<MutualChap>,
}

/// The target's expected identity for mutual CHAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutualChap {
    pub target_user: String,
    pub target_secret: String,
    /// Send the target's own challenge back as ours (a reflection attack the target
    /// must refuse).
    pub reflect: bool,
}

impl Chap {
    /// One-way CHAP offering every algorithm.
    pub fn new(user: &str, secret: &str) -> Chap {
        Chap {
            auth_method: "CHAP,None".into(),
            user: user.into(),
            secret: secret.into(),
            algorithms: ChapAlgorithm::ALL.to_vec(),
            mutual: None,
        }
    }

    /// Offer only `alg`.
    pub fn algorithm(mut self, alg: ChapAlgorithm) -> Chap {
        self.algorithms = vec![alg];
        self
    }

    /// Also authenticate the target.
    pub fn mutual(mut self, target_user: &str, target_secret: &str) -> Chap {
        self.mutual = Some(MutualChap {
            target_user: target_user.into(),
            target_secret: target_secret.into(),
            reflect: false,
        });
        self
    }

    /// Mutual CHAP whose challenge is the target's own.
    pub fn reflecting(mut self) -> Chap {
        let m = self.mutual.get_or_insert_with(|| MutualChap {
            target_user: String::new(),
            target_secret: String::new(),
            reflect: false,
        });
        m.reflect = true;
        self
    }
}

/// Where a CHAP exchange stands.
#[derive(Debug, Default)]
pub(crate) enum ChapState {
    #[default]
    Start,
    /// CHAP_A sent.
    AlgorithmSent,
    /// Response sent; for mutual CHAP, what the target must answer.
    ResponseSent {
        alg: ChapAlgorithm,
        expect: Option<(u8, Vec<u8>)>,
    },
    /// Finished (or not used: the target chose AuthMethod=None).
    Done,
}

fn protocol(msg: impl Into<String>) -> InitiatorError {
    InitiatorError::Protocol(msg.into())
}

impl ChapState {
    /// The keys answering the target's security-stage response `pairs`.
    pub(crate) fn next(
        &mut self,
        cfg: &Chap,
        pairs: &[(String, String)],
    ) -> Result<Vec<(String, String)>, InitiatorError> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let kv = |k: &str, v: String| (k.to_string(), v);
        match std::mem::take(self) {
            ChapState::Start => match get("AuthMethod") {
                Some("CHAP") => {
                    *self = ChapState::AlgorithmSent;
                    let algs: Vec<String> = cfg
                        .algorithms
                        .iter()
                        .map(|a| a.code().to_string())
                        .collect();
                    Ok(vec![kv("CHAP_A", algs.join(","))])
                }
                Some(m) if cfg.mutual.is_some() => Err(protocol(format!(
                    "mutual CHAP wanted but the target chose AuthMethod {m}"
                ))),
                Some(_) => {
                    *self = ChapState::Done;
                    Ok(Vec::new())
                }
                None => Err(protocol("no AuthMethod in the target's answer")),
            },
            ChapState::AlgorithmSent => {
                let code = get("CHAP_A").ok_or_else(|| protocol("no CHAP_A from target"))?;
                let alg = code
                    .parse()
                    .ok()
                    .and_then(ChapAlgorithm::from_code)
                    .filter(|a| cfg.algorithms.contains(a))
                    .ok_or_else(|| protocol(format!("target chose CHAP_A {code}")))?;
                let id = chap::decode_identifier(get("CHAP_I").unwrap_or(""))
                    .map_err(|e| protocol(format!("CHAP_I: {e}")))?;
                let challenge = chap::decode_binary(get("CHAP_C").unwrap_or(""))
                    .map_err(|e| protocol(format!("CHAP_C: {e}")))?;
                let r = alg.response(id, cfg.secret.as_bytes(), &challenge);
                let mut keys = vec![
                    kv("CHAP_N", cfg.user.clone()),
                    kv("CHAP_R", chap::encode_hex(&r)),
                ];
                let mut expect = None;
                if let Some(m) = &cfg.mutual {
                    let my_id = chap::random_bytes(1)[0];
                    let mine = if m.reflect {
                        challenge.clone()
                    } else {
                        alg.new_challenge()
                    };
                    keys.push(kv("CHAP_I", my_id.to_string()));
                    keys.push(kv("CHAP_C", chap::encode_hex(&mine)));
                    expect = Some((my_id, mine));
                }
                *self = ChapState::ResponseSent { alg, expect };
                Ok(keys)
            }
            ChapState::ResponseSent { alg, expect } => {
                *self = ChapState::Done;
                let (Some((id, mine)), Some(m)) = (expect, &cfg.mutual) else {
                    return Ok(Vec::new());
                };
                let name = get("CHAP_N").ok_or_else(|| protocol("mutual CHAP: no CHAP_N"))?;
                let r = get("CHAP_R").ok_or_else(|| protocol("mutual CHAP: no CHAP_R"))?;
                let r = chap::decode_binary(r).map_err(|e| protocol(format!("CHAP_R: {e}")))?;
                if name != m.target_user || !alg.verify(id, m.target_secret.as_bytes(), &mine, &r) {
                    return Err(protocol(format!(
                        "mutual CHAP: target failed to authenticate as '{}'",
                        m.target_user
                    )));
                }
                Ok(Vec::new())
            }
            ChapState::Done => Ok(Vec::new()),
        }
    }
}
