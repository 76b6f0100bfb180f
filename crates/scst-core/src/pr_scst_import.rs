//! SCST's binary persistent reservation file (docs/scst-reference.md, "SCST's PR file
//! layout"), read once so that registrations survive a switch from SCST: the file SCST
//! left at `/var/lib/scst/pr/<device>` (our default state directory's `pr/`) is
//! recognised by its signature, validated strictly and turned into a [`PrState`].
//!
//! Nothing here writes SCST's format: after an import the daemon keeps its own text
//! format (pr_persist.rs) and sets SCST's file aside under [`IMPORTED_SUFFIX`].

use crate::pr::{PrRegistrant, PrReservation, PrState, PrType};
use crate::session::TransportId;

/// SCST's `SCST_PR_FILE_SIGN`, a host-endian u64 (little-endian on every platform SCST
/// runs on that we read files from).
pub const SIGNATURE: u64 = 0xBBEE_EEAA_EEBB_DD77;
/// SCST's `SCST_PR_FILE_VERSION`.
pub const VERSION: u64 = 1;
/// signature, version, aptpl, pr_is_set, pr_type, pr_scope.
pub const HEADER_LEN: usize = 8 + 8 + 4;
/// SCST refuses files this large (or empty) before reading them.
pub const MAX_FILE_LEN: usize = 15 * 1024 * 1024;
/// What an imported SCST file (and its `.1` backup) is renamed with: kept so that a
/// rollback to SCST is a rename away, and renamed so that it is never imported twice.
pub const IMPORTED_SUFFIX: &str = ".scst-imported";

/// Whether `bytes` look like a file SCST wrote: its signature, or the zeroed signature
/// SCST writes first and replaces last (a write it never finished), followed by
/// SCST's version. Our own text format starts with "version", never with either.
pub fn is_scst_file(bytes: &[u8]) -> bool {
    match bytes.len() {
        0..8 => false,
        8..16 => le64(bytes, 0) == SIGNATURE,
        _ => match le64(bytes, 0) {
            SIGNATURE => true,
            0 => le64(bytes, 8) == VERSION,
            _ => false,
        },
    }
}

/// Why an SCST PR file was refused; `offset` is the byte where the fault starts and
/// `record` the registrant (0-based) it belongs to.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScstPrError {
    #[error("{len} bytes, shorter than SCST's {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("{len} bytes, larger than SCST's limit of {MAX_FILE_LEN}")]
    TooLarge { len: usize },
    #[error("signature is zero: SCST did not finish writing this file")]
    Unfinished,
    #[error("bad signature {found:#018x} (expected {SIGNATURE:#018x})")]
    Signature { found: u64 },
    #[error("unsupported version {found} (expected {VERSION})")]
    Version { found: u64 },
    #[error("registrant {record} at byte {offset}: record truncated")]
    Truncated { record: usize, offset: usize },
    #[error("registrant {record} at byte {offset}: unknown protocol identifier {protocol:#x}")]
    UnknownProtocol {
        record: usize,
        offset: usize,
        protocol: u8,
    },
    #[error("registrant {record} at byte {offset}: invalid TransportID")]
    TransportId { record: usize, offset: usize },
    #[error("registrant {record}: reservation key is zero")]
    ZeroKey { record: usize },
    #[error("registrant {record}: relative target port identifier is zero")]
    ZeroRelTgtId { record: usize },
    #[error("registrant {record}: holder flag {value} is not 0 or 1")]
    HolderFlag { record: usize, value: u8 },
    #[error("registrant {record}: duplicate of an earlier one (same TransportID and port)")]
    Duplicate { record: usize },
    #[error("byte {offset}: {what} {value} is not 0 or 1")]
    Flag {
        offset: usize,
        what: &'static str,
        value: u8,
    },
    #[error("reservation type {value:#x} is not a persistent reservation type")]
    Type { value: u8 },
    #[error("reservation scope {value:#x} is not LU scope (0)")]
    Scope { value: u8 },
    #[error("a reservation is set but no registrant holds it")]
    NoHolder,
    #[error("{holders} registrants are marked holder")]
    Holders { holders: usize },
    #[error("a registrant is marked holder but no reservation is set")]
    HolderWithoutReservation,
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parse and validate a whole SCST PR file. Untrusted bytes: never panics. The
/// generation starts at 0 (SCST does not store it).
pub fn parse(b: &[u8]) -> Result<PrState, ScstPrError> {
    use ScstPrError as E;
    if b.len() > MAX_FILE_LEN {
        return Err(E::TooLarge { len: b.len() });
    }
    if b.len() < HEADER_LEN {
        return Err(E::TooShort { len: b.len() });
    }
    match le64(b, 0) {
        SIGNATURE => {}
        0 => return Err(E::Unfinished),
        found => return Err(E::Signature { found }),
    }
    let version = le64(b, 8);
    if version != VERSION {
        return Err(E::Version { found: version });
    }
    let flag = |offset: usize, what: &'static str| match b[offset] {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(E::Flag {
            offset,
            what,
            value,
        }),
    };
    let aptpl = flag(16, "aptpl")?;
    let pr_is_set = flag(17, "pr_is_set")?;
    let (pr_type, pr_scope) = (b[18], b[19]);

    let mut st = PrState {
        aptpl,
        ..PrState::default()
    };
    let mut pos = HEADER_LEN;
    while pos < b.len() {
        let record = st.registrants.len();
        let truncated = E::Truncated {
            record,
            offset: pos,
        };
        let holder = match b[pos] {
            0 => false,
            1 => true,
            value => return Err(E::HolderFlag { record, value }),
        };
        let tid_at = pos + 1;
        let Some(&b0) = b.get(tid_at) else {
            return Err(truncated);
        };
        let protocol = b0 & 0x0F;
        if !matches!(
            protocol,
            crate::transport_id::protocol::FC
                | crate::transport_id::protocol::SRP
                | crate::transport_id::protocol::ISCSI
                | crate::transport_id::protocol::SAS
        ) {
            return Err(E::UnknownProtocol {
                record,
                offset: tid_at,
                protocol,
            });
        }
        let (tid, used) = match TransportId::decode(&b[tid_at..]) {
            Ok(t) => t,
            // The decoder reports a fault past the end of the input as truncation.
            Err(at) if tid_at + at >= b.len() || short_iscsi(&b[tid_at..]) => {
                return Err(truncated)
            }
            Err(at) => {
                return Err(E::TransportId {
                    record,
                    offset: tid_at + at,
                })
            }
        };
        let key_at = tid_at + used;
        let Some(fixed) = b.get(key_at..key_at + 10) else {
            return Err(truncated);
        };
        // The key is kept as SCST holds it, big-endian; rel_tgt_id is host-endian.
        let key = u64::from_be_bytes(fixed[..8].try_into().expect("8 bytes"));
        let rel_tgt_id = u16::from_le_bytes([fixed[8], fixed[9]]);
        if key == 0 {
            return Err(E::ZeroKey { record });
        }
        if rel_tgt_id == 0 {
            return Err(E::ZeroRelTgtId { record });
        }
        if st
            .registrants
            .iter()
            .any(|r| r.rel_tgt_id == rel_tgt_id && r.tid == tid)
        {
            return Err(E::Duplicate { record });
        }
        st.registrants.push(PrRegistrant {
            tid,
            rel_tgt_id,
            key,
            holder,
        });
        pos = key_at + 10;
    }

    let holders = st.registrants.iter().filter(|r| r.holder).count();
    if !pr_is_set {
        // SCST leaves type and scope as they were; only the holder flags must agree.
        if holders > 0 {
            return Err(E::HolderWithoutReservation);
        }
        return Ok(st);
    }
    let t = PrType::from_u8(pr_type).ok_or(E::Type { value: pr_type })?;
    if pr_scope != 0 {
        return Err(E::Scope { value: pr_scope });
    }
    if t.all_registrants() {
        if st.registrants.is_empty() {
            return Err(E::NoHolder);
        }
        // Every registrant holds it; the flags carry nothing.
        for r in &mut st.registrants {
            r.holder = false;
        }
    } else if holders != 1 {
        return Err(if holders == 0 {
            E::NoHolder
        } else {
            E::Holders { holders }
        });
    }
    st.reservation = Some(PrReservation {
        pr_type: t,
        scope: pr_scope,
    });
    Ok(st)
}

/// An iSCSI TransportID whose additional length runs past the end of the input.
fn short_iscsi(tid: &[u8]) -> bool {
    tid[0] & 0x0F == crate::transport_id::protocol::ISCSI
        && tid
            .get(2..4)
            .is_none_or(|l| 4 + u16::from_be_bytes([l[0], l[1]]) as usize > tid.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr_persist::{load_aptpl, Loaded};

    /// One registrant record as SCST writes it: holder, TransportID, key, rel_tgt_id.
    struct Rec<'a> {
        holder: u8,
        tid: &'a [u8],
        key: u64,
        rel_tgt_id: u16,
    }

    /// The bytes SCST's scst_pr_sync_device_file writes (x86: host order is LE).
    fn scst_file(aptpl: u8, is_set: u8, pr_type: u8, scope: u8, recs: &[Rec<'_>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&SIGNATURE.to_le_bytes());
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&[aptpl, is_set, pr_type, scope]);
        for r in recs {
            b.push(r.holder);
            b.extend_from_slice(r.tid);
            b.extend_from_slice(&r.key.to_be_bytes());
            b.extend_from_slice(&r.rel_tgt_id.to_le_bytes());
        }
        b
    }

    /// An iSCSI TransportID as iscsi-scst builds it: format 01b, `name,i,0x%llx` of
    /// the ISID with the TSIH zeroed, NUL-padded to a multiple of 4.
    fn scst_iscsi_tid(text: &str) -> Vec<u8> {
        let len = (4 + text.len() + 1 + 3) & !3;
        let mut b = vec![0u8; len];
        b[0] = 0x45;
        b[2..4].copy_from_slice(&((len - 4) as u16).to_be_bytes());
        b[4..4 + text.len()].copy_from_slice(text.as_bytes());
        b
    }

    fn fc_tid(wwn: [u8; 8]) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        b[8..16].copy_from_slice(&wwn);
        b
    }

    fn sample() -> Vec<u8> {
        let a = scst_iscsi_tid("iqn.2026-11.rs.scst:a,i,0x4000000000010000");
        let fc = fc_tid([0x21, 0, 0, 0x24, 0xff, 0x31, 0x4c, 0x2e]);
        scst_file(
            1,
            1,
            1,
            0,
            &[
                Rec {
                    holder: 1,
                    tid: &a,
                    key: 0xA,
                    rel_tgt_id: 1,
                },
                Rec {
                    holder: 0,
                    tid: &fc,
                    key: 0xF0,
                    rel_tgt_id: 2,
                },
            ],
        )
    }

    #[test]
    fn reads_registrants_holder_and_reservation() {
        let st = parse(&sample()).expect("valid file");
        assert!(st.aptpl);
        assert_eq!(
            st.reservation,
            Some(PrReservation {
                pr_type: PrType::WriteExclusive,
                scope: 0
            })
        );
        let r = &st.registrants;
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].tid,
            TransportId::iscsi("iqn.2026-11.rs.scst:a", Some([0x40, 0, 0, 0, 0, 1]))
        );
        assert_eq!((r[0].key, r[0].rel_tgt_id, r[0].holder), (0xA, 1, true));
        assert_eq!(r[1].tid.name(), "21:00:00:24:ff:31:4c:2e");
        assert_eq!((r[1].key, r[1].rel_tgt_id, r[1].holder), (0xF0, 2, false));
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        let good = sample();
        let mut bad_sign = good.clone();
        bad_sign[0] ^= 1;
        let mut unfinished = good.clone();
        unfinished[..8].fill(0);
        let mut version = good.clone();
        version[8] = 2;
        let mut proto = good.clone();
        // The FC record's TransportID starts after header, record 0 and its holder byte.
        let fc_at = good.len() - (1 + 24 + 10) + 1;
        proto[fc_at] = 0x0B;
        let mut scope = good.clone();
        scope[19] = 1;
        let mut ty = good.clone();
        ty[18] = 2;
        let mut no_holder = good.clone();
        no_holder[HEADER_LEN] = 0;
        let mut zero_key = good.clone();
        zero_key[good.len() - 10..good.len() - 2].fill(0);
        assert_eq!(parse(&good[..10]), Err(ScstPrError::TooShort { len: 10 }));
        assert!(matches!(
            parse(&bad_sign),
            Err(ScstPrError::Signature { .. })
        ));
        assert_eq!(parse(&unfinished), Err(ScstPrError::Unfinished));
        assert_eq!(parse(&version), Err(ScstPrError::Version { found: 2 }));
        assert_eq!(
            parse(&proto),
            Err(ScstPrError::UnknownProtocol {
                record: 1,
                offset: fc_at,
                protocol: 0xB
            })
        );
        assert_eq!(parse(&scope), Err(ScstPrError::Scope { value: 1 }));
        assert_eq!(parse(&ty), Err(ScstPrError::Type { value: 2 }));
        assert_eq!(parse(&no_holder), Err(ScstPrError::NoHolder));
        assert_eq!(parse(&zero_key), Err(ScstPrError::ZeroKey { record: 1 }));
        // Every cut inside a record names that record (a cut between records is a
        // shorter, valid file).
        let first_record_end = good.len() - (1 + 24 + 10);
        for cut in (HEADER_LEN + 1..good.len()).filter(|c| *c != first_record_end) {
            match parse(&good[..cut]) {
                Err(ScstPrError::Truncated { record, .. }) => assert!(record <= 1, "{cut}"),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let good = sample();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = good.clone();
            // Flip one byte past the signature and cut at a random length.
            let i = 8 + (x as usize % (b.len() - 8));
            b[i] ^= (x >> 32) as u8 | 1;
            b.truncate(HEADER_LEN + (x >> 16) as usize % (b.len() - HEADER_LEN + 1));
            if let Ok(st) = parse(&b) {
                assert!(st
                    .registrants
                    .iter()
                    .all(|r| r.key != 0 && r.rel_tgt_id != 0));
            }
        }
    }

    #[test]
    fn our_text_is_never_taken_for_scst() {
        assert!(is_scst_file(&sample()));
        assert!(!is_scst_file(b"version 1\ngeneration 0\n"));
        assert!(!is_scst_file(&[]));
    }

    #[test]
    fn import_keeps_scst_file_aside_and_writes_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk01");
        std::fs::write(&path, sample()).unwrap();
        std::fs::write(dir.path().join("disk01.1"), b"older").unwrap();
        let Ok(Loaded::State(st)) = load_aptpl(&path) else {
            panic!("import failed");
        };
        assert_eq!(st.registrants.len(), 2);
        let kept = std::fs::read(dir.path().join("disk01.scst-imported")).unwrap();
        assert_eq!(kept, sample());
        assert!(dir.path().join("disk01.1.scst-imported").exists());
        assert!(!dir.path().join("disk01.1").exists());
        // Ours now: loading again reads the text format with the same state.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("version 1"), "{text}");
        let Ok(Loaded::State(again)) = load_aptpl(&path) else {
            panic!("reload failed");
        };
        assert_eq!(again, st);
    }

    #[test]
    fn a_bad_file_falls_back_to_the_backup_and_is_untouched_when_both_are_bad() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk01");
        let mut unfinished = sample();
        unfinished[..8].fill(0);
        std::fs::write(&path, &unfinished).unwrap();
        let err = load_aptpl(&path).expect_err("no backup");
        assert!(err.to_string().contains("did not finish"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), unfinished);

        std::fs::write(dir.path().join("disk01.1"), &unfinished[..30]).unwrap();
        let err = load_aptpl(&path).expect_err("bad backup");
        assert!(err.to_string().contains("disk01.1"), "{err}");

        std::fs::write(dir.path().join("disk01.1"), sample()).unwrap();
        let Ok(Loaded::State(st)) = load_aptpl(&path) else {
            panic!("backup not imported");
        };
        assert_eq!(st.registrants.len(), 2);
        assert_eq!(
            std::fs::read(dir.path().join("disk01.scst-imported")).unwrap(),
            unfinished
        );
    }

    #[test]
    fn a_backup_alone_or_beside_an_empty_file_is_imported() {
        for main in [None, Some(&b""[..])] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("disk01");
            if let Some(bytes) = main {
                std::fs::write(&path, bytes).unwrap();
            }
            std::fs::write(dir.path().join("disk01.1"), sample()).unwrap();
            let Ok(Loaded::State(st)) = load_aptpl(&path) else {
                panic!("backup not imported ({main:?})");
            };
            assert_eq!(st.registrants.len(), 2);
            assert!(dir.path().join("disk01.1.scst-imported").exists());
            assert!(!dir.path().join("disk01.scst-imported").exists());
            assert!(std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("version 1"));
        }
        // Our own empty file without an SCST backup stays a refused text file.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk01");
        std::fs::write(&path, b"").unwrap();
        assert!(load_aptpl(&path).is_err());
    }
}
