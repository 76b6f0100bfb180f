//! Persistent reservation state on disk: the `pr_state` text format (docs/scst-reference.md
//! 5.3.5), the APTPL file (5.3.4) and the handler's `pr_dump_dir` dumps (2.4).
//!
//! The APTPL file uses the `pr_state` text format rather than SCST's binary layout:
//! one parser and one writer serve the `pr_state` attribute, the dumps and the APTPL
//! file, a human can read and repair it, and a dump taken with `pr_dump_dir` can be
//! dropped in as an APTPL file. SCST's binary layout guards against torn writes with a
//! zeroed signature and a `.1` backup; here every file is replaced atomically (temp file,
//! fsync, rename, fsync of the directory), so a reader sees the old or the new state,
//! never a mix. An APTPL file exists only while APTPL=1 and registrants exist, so
//! loading one implies APTPL=1 (the text format has no APTPL field).
//!
//! SCST's own file sits at the same default path (`/var/lib/scst/pr/<device>`); one found
//! there is told apart by its binary signature and imported once (pr_scst_import.rs).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::pr::{PrRegistrant, PrReservation, PrState, PrType};
use crate::pr_scst_import::ScstPrError;
use crate::session::TransportId;

/// SPC-4 bounds a TransportID to far less; SCST's import accepts 1..512 bytes.
const MAX_TID_LEN: usize = 512;
/// What a bad `tid_len` is told (`MAX_TID_LEN`).
const TID_LEN_RANGE: &str = "is not 1..512";

/// The `pr_state` text (version 1) of `st`.
pub fn format_text(st: &PrState) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "version 1");
    let _ = writeln!(s, "generation {}", st.generation);
    if let Some(res) = st.reservation {
        let _ = writeln!(s, "reservation {:02x} {:02x}", res.pr_type as u8, res.scope);
    }
    for r in &st.registrants {
        let tid = r.tid.encode();
        let hex: String = tid.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(
            s,
            "registrant {} {:016x} {} {} {hex}",
            r.rel_tgt_id,
            r.key,
            r.holder as u8,
            tid.len()
        );
    }
    s
}

/// Why a `pr_state` text was refused. Each names the line (1-based) where it can.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PrTextError {
    #[error("line 1: expected 'version 1', the text is empty")]
    Empty,
    #[error("line {line}: expected 'version 1', found '{found}'")]
    Version { line: usize, found: String },
    #[error("line {line}: unknown keyword '{keyword}'")]
    UnknownKeyword { line: usize, keyword: String },
    #[error("line {line}: '{keyword}' takes {want} fields, found {found}")]
    FieldCount {
        line: usize,
        keyword: String,
        want: usize,
        found: usize,
    },
    #[error("line {line}: a second '{keyword}' line")]
    Repeated { line: usize, keyword: &'static str },
    /// A field whose value is out of its range or not a number.
    #[error("line {line}: {field} '{value}' {expected}")]
    Field {
        line: usize,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("line {line}: TransportID is not hex")]
    TransportIdNotHex { line: usize },
    #[error("line {line}: TransportID has {bytes} bytes, tid_len says {tid_len}")]
    TransportIdLength {
        line: usize,
        bytes: usize,
        tid_len: usize,
    },
    #[error("line {line}: TransportID length field disagrees with tid_len")]
    TransportIdLengthField { line: usize },
    #[error("line {line}: not a valid TransportID (byte {byte})")]
    TransportIdInvalid { line: usize, byte: usize },
    #[error("line {line}: duplicate registrant (same TransportID and port)")]
    DuplicateRegistrant { line: usize },
    #[error("no 'generation' line")]
    NoGeneration,
    #[error("a registrant is marked holder but there is no reservation")]
    HolderWithoutReservation,
    #[error("line {line}: an all-registrants reservation without registrants")]
    AllRegistrantsWithoutRegistrants { line: usize },
    #[error(
        "line {line}: the reservation needs exactly one 'holder 1' registrant, found {holders}"
    )]
    HolderCount { line: usize, holders: usize },
}

/// Parse the `pr_state` text format.
/// The result has APTPL=0; the caller decides (an APTPL file implies APTPL=1).
pub fn parse_text(text: &str) -> Result<PrState, PrTextError> {
    use PrTextError as E;
    let mut st = PrState::default();
    let mut version_seen = false;
    let mut generation_seen = false;
    let mut reservation_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim();
        if text.is_empty() {
            continue;
        }
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        if !version_seen {
            if words != ["version", "1"] {
                return Err(E::Version {
                    line,
                    found: text.to_string(),
                });
            }
            version_seen = true;
            continue;
        }
        let want = |n: usize| {
            if words.len() == n {
                Ok(())
            } else {
                Err(E::FieldCount {
                    line,
                    keyword: words[0].to_string(),
                    want: n - 1,
                    found: words.len() - 1,
                })
            }
        };
        let field = |field: &'static str, value: &str, expected: &'static str| E::Field {
            line,
            field,
            value: value.to_string(),
            expected,
        };
        match words[0] {
            "generation" => {
                want(2)?;
                if generation_seen {
                    return Err(E::Repeated {
                        line,
                        keyword: "generation",
                    });
                }
                st.generation = words[1]
                    .parse()
                    .map_err(|_| field("generation", words[1], "is not a u32"))?;
                generation_seen = true;
            }
            "reservation" => {
                want(3)?;
                if reservation_line != 0 {
                    return Err(E::Repeated {
                        line,
                        keyword: "reservation",
                    });
                }
                let t = u8::from_str_radix(words[1], 16)
                    .ok()
                    .and_then(PrType::from_u8)
                    .ok_or_else(|| field("reservation type", words[1], "is invalid"))?;
                let scope = u8::from_str_radix(words[2], 16)
                    .ok()
                    .filter(|s| *s == 0)
                    .ok_or_else(|| field("reservation scope", words[2], "is not 00 (LU scope)"))?;
                st.reservation = Some(PrReservation { pr_type: t, scope });
                reservation_line = line;
            }
            "registrant" => {
                want(6)?;
                let rel_tgt_id: u16 = words[1]
                    .parse()
                    .ok()
                    .filter(|id| *id != 0)
                    .ok_or_else(|| field("rel_tgt_id", words[1], "is not 1..65535"))?;
                let key = (words[2].len() <= 16)
                    .then(|| u64::from_str_radix(words[2], 16).ok())
                    .flatten()
                    .filter(|k| *k != 0)
                    .ok_or_else(|| field("key", words[2], "is not a non-zero 64-bit hex number"))?;
                let holder = match words[3] {
                    "0" => false,
                    "1" => true,
                    h => return Err(field("holder", h, "is not 0 or 1")),
                };
                let tid_len: usize = words[4]
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_TID_LEN).contains(l))
                    .ok_or_else(|| field("tid_len", words[4], TID_LEN_RANGE))?;
                let bytes = decode_hex(words[5]).ok_or(E::TransportIdNotHex { line })?;
                if bytes.len() != tid_len {
                    return Err(E::TransportIdLength {
                        line,
                        bytes: bytes.len(),
                        tid_len,
                    });
                }
                let tid = match TransportId::decode(&bytes) {
                    Ok((t, used)) if used == bytes.len() => t,
                    Ok(_) => return Err(E::TransportIdLengthField { line }),
                    Err(byte) => return Err(E::TransportIdInvalid { line, byte }),
                };
                if st
                    .registrants
                    .iter()
                    .any(|r| r.rel_tgt_id == rel_tgt_id && r.tid == tid)
                {
                    return Err(E::DuplicateRegistrant { line });
                }
                st.registrants.push(PrRegistrant {
                    tid,
                    rel_tgt_id,
                    key,
                    holder,
                });
            }
            other => {
                return Err(E::UnknownKeyword {
                    line,
                    keyword: other.to_string(),
                })
            }
        }
    }
    if !version_seen {
        return Err(E::Empty);
    }
    if !generation_seen {
        return Err(E::NoGeneration);
    }
    let holders = st.registrants.iter().filter(|r| r.holder).count();
    match st.reservation {
        None if holders > 0 => return Err(E::HolderWithoutReservation),
        Some(res) if res.pr_type.all_registrants() => {
            if st.registrants.is_empty() {
                return Err(E::AllRegistrantsWithoutRegistrants {
                    line: reservation_line,
                });
            }
            // Every registrant holds it; the flags carry nothing.
            for r in &mut st.registrants {
                r.holder = false;
            }
        }
        Some(_) if holders != 1 => {
            return Err(E::HolderCount {
                line: reservation_line,
                holders,
            })
        }
        _ => {}
    }
    Ok(st)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Attach the path to an I/O error so that logs and management errors name the file.
fn at(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| at(dir, "cannot fsync directory", e))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replace `path` with `contents` so that after a crash it holds either the old or the
/// new contents: write a temp file beside it, fsync it, rename it over `path`, fsync the
/// directory (which makes the rename itself durable). Creates missing directories.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    fs::create_dir_all(dir).map_err(|e| at(dir, "cannot create directory", e))?;
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a file path", path.display()),
            )
        })?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp: PathBuf = dir.join(tmp_name);
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(at(&tmp, "cannot write", e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        at(path, "cannot rename the temp file over", e)
    })?;
    sync_dir(dir)
}

/// The file is not there: missing, or a path component is not a directory.
fn absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Remove `path` durably; a missing file is fine.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if absent(&e) => Ok(()),
        Err(e) => Err(at(path, "cannot remove", e)),
    }
}

/// What loading a device's APTPL file found.
#[derive(Debug)]
pub enum Loaded {
    /// No file: no persistent state.
    Absent,
    /// The state, with APTPL=1.
    State(PrState),
}

/// Why an APTPL file could not be loaded: one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum AptplError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Parse { path: PathBuf, source: PrTextError },
    /// SCST's binary file, and its `.1` backup when there is one, refused.
    #[error("{}: SCST PR file refused: {source}{}", path.display(),
        backup.as_ref().map(|b| format!("; backup {b}")).unwrap_or_default())]
    Scst {
        path: PathBuf,
        source: ScstPrError,
        /// Why the `.1` backup was not used either (absent: not mentioned).
        backup: Option<String>,
    },
    /// The import was valid but could not be recorded.
    #[error("{}: importing SCST PR file: {source}", path.display())]
    Import { path: PathBuf, source: io::Error },
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Import the SCST PR file `scst_bytes` found at `path` (docs/scst-reference.md, "SCST's
/// PR file layout"). SCST itself falls back to the `.1` backup when the file is bad; so
/// does this. On success the registrations, reservation and APTPL become ours: SCST's
/// bytes are saved as `<path>.scst-imported` (and `<path>.1` renamed to
/// `<path>.1.scst-imported`) before our text replaces `<path>`, so a crash in between
/// at worst imports again, and a rollback to SCST is a rename. A refused file is left
/// where it is for the caller, which logs the reason and starts without PR state.
fn import_scst(path: &Path, scst_bytes: &[u8]) -> Result<Loaded, AptplError> {
    use crate::pr_scst_import::{parse, IMPORTED_SUFFIX};
    let backup = with_suffix(path, ".1");
    let st = match parse(scst_bytes) {
        Ok(st) => st,
        Err(source) => {
            let from_backup = match fs::read(&backup) {
                Ok(b) => parse(&b).map_err(|e| format!("{}: {e}", backup.display())),
                Err(e) if absent(&e) => {
                    return Err(AptplError::Scst {
                        path: path.into(),
                        source,
                        backup: None,
                    })
                }
                Err(e) => Err(format!("cannot read {}: {e}", backup.display())),
            };
            match from_backup {
                Ok(st) => {
                    log::warn!(
                        "{}: SCST PR file refused ({source}); importing its backup {}",
                        path.display(),
                        backup.display()
                    );
                    st
                }
                Err(b) => {
                    return Err(AptplError::Scst {
                        path: path.into(),
                        source,
                        backup: Some(b),
                    })
                }
            }
        }
    };
    let import = |e| AptplError::Import {
        path: path.into(),
        source: e,
    };
    let kept = with_suffix(path, IMPORTED_SUFFIX);
    // Nothing of SCST's main file to keep when only its backup was there.
    if !scst_bytes.is_empty() {
        write_atomic(&kept, scst_bytes).map_err(import)?;
    }
    let persisted = st.aptpl && !st.registrants.is_empty();
    if persisted {
        write_atomic(path, format_text(&st).as_bytes()).map_err(import)?;
    } else {
        // Our file exists only with APTPL=1 and registrants (as SCST's does).
        remove_durable(path).map_err(import)?;
    }
    let kept_backup = with_suffix(&backup, IMPORTED_SUFFIX);
    let mut kept_files = Vec::new();
    if !scst_bytes.is_empty() {
        kept_files.push(kept.display().to_string());
    }
    match fs::rename(&backup, &kept_backup) {
        Ok(()) => kept_files.push(kept_backup.display().to_string()),
        Err(e) if absent(&e) => {}
        Err(e) => return Err(import(at(&backup, "cannot rename", e))),
    }
    log::info!(
        "{}: imported SCST PR file ({} registrants, reservation {}, APTPL {}); SCST's \
         files kept as {}",
        path.display(),
        st.registrants.len(),
        match st.reservation {
            Some(r) => format!("type {:#x}", r.pr_type as u8),
            None => "none".to_string(),
        },
        st.aptpl as u8,
        kept_files.join(" and ")
    );
    Ok(if persisted {
        Loaded::State(st)
    } else {
        Loaded::Absent
    })
}

/// Read an APTPL file. A file SCST wrote at the same path (its binary layout) is
/// imported: see `import_scst`.
pub fn load_aptpl(path: &Path) -> Result<Loaded, AptplError> {
    // SCST copies its file to `.1` and then truncates and rewrites it: after a crash
    // in between only the backup holds the state, and SCST would load it.
    let scst_backup =
        || fs::read(with_suffix(path, ".1")).is_ok_and(|b| crate::pr_scst_import::is_scst_file(&b));
    let text = match fs::read(path) {
        Ok(b) => b,
        Err(e) if absent(&e) && scst_backup() => return import_scst(path, &[]),
        Err(e) if absent(&e) => return Ok(Loaded::Absent),
        Err(source) => {
            return Err(AptplError::Read {
                path: path.into(),
                source,
            })
        }
    };
    if crate::pr_scst_import::is_scst_file(&text) || (text.is_empty() && scst_backup()) {
        return import_scst(path, &text);
    }
    let text = String::from_utf8(text).map_err(|_| AptplError::NotUtf8 { path: path.into() })?;
    let mut st = parse_text(&text).map_err(|source| AptplError::Parse {
        path: path.into(),
        source,
    })?;
    if st.registrants.is_empty() {
        // Written only with registrants present; an empty one means no state.
        return Ok(Loaded::Absent);
    }
    st.aptpl = true;
    Ok(Loaded::State(st))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tid_len_message_names_the_bound() {
        assert!(super::TID_LEN_RANGE.ends_with(&format!("..{}", super::MAX_TID_LEN)));
    }
}
