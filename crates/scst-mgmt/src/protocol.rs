//! The management socket protocol between `scstd` and its clients (`scstadmin`, scripts).
//!
//! A Unix domain stream socket (mode 0600: only its owner may manage the target). The
//! client sends requests, the server answers each in order; a connection may carry any
//! number of them. Everything is UTF-8 text in lines ending with `\n` (a `\r` before it
//! is dropped), so `socat - UNIX-CONNECT:/run/scstd.sock` is a usable client.
//!
//! Paths name entries of SCST's management tree (docs/scst-reference.md 2.2) relative to its root
//! `/sys/kernel/scst_tgt`, e.g. `targets/iscsi/enabled`; a leading `/` is ignored, and
//! `.`/`..` components are refused.
//!
//! Requests:
//!
//! ```text
//! read <path>                 value of an attribute, or the usage text of a mgmt file
//! list <path>                 entries of a directory, one per line; directories end in '/'
//! write <path> <value>        one-line value: everything after the blank following <path>
//!                             (a mgmt file's command line, an attribute's new value)
//! mwrite <path>               multi-line value: the lines that follow, up to a line '.',
//! <line>...                   dot-stuffed (a line starting with '.' is sent with one more
//! .                           '.' in front, as in SMTP)
//! ```
//!
//! Responses:
//!
//! ```text
//! ok                          success; then the payload lines (none for a write),
//! <line>...                   dot-stuffed, then a line '.'
//! .
//! error <message>             failure: one line naming the object and the reason
//! ```
//!
//! A read of a key attribute ends with a line `[key]`, as in SCST's sysfs.
//!
//! Limits: a line is at most [`MAX_LINE`] bytes and a multi-line value at most
//! [`MAX_VALUE`] bytes; past either the server answers `error` and closes the connection,
//! since the framing can no longer be trusted. Any other malformed request gets an
//! `error` and the connection continues.
//!
//! This module is sans-I/O: [`RequestParser`] and [`ResponseParser`] are fed one line
//! at a time by whoever owns the socket.

use std::fmt;

/// Longest accepted line, in bytes, without its `\n`.
pub const MAX_LINE: usize = 64 * 1024;
/// Longest accepted multi-line value, in bytes.
pub const MAX_VALUE: usize = 1024 * 1024;

/// A normalized path in the management tree: its components, without empty ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MgmtPath(Vec<String>);

/// A path a client wrote that names no place in the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path '{path}': {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

impl MgmtPath {
    pub fn parse(text: &str) -> Result<MgmtPath, PathError> {
        let refuse = |reason: String| PathError {
            path: text.to_string(),
            reason,
        };
        let mut parts = Vec::new();
        for c in text.split('/') {
            match c {
                "" => {}
                "." | ".." => return Err(refuse(format!("'{c}' is not allowed"))),
                c if c.chars().any(|ch| ch.is_whitespace() || ch.is_control()) => {
                    return Err(refuse("blanks are not allowed".into()))
                }
                c => parts.push(c.to_string()),
            }
        }
        Ok(MgmtPath(parts))
    }

    pub fn components(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for MgmtPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// One client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read(MgmtPath),
    List(MgmtPath),
    Write { path: MgmtPath, value: String },
}

impl Request {
    /// The wire form, ending with `\n`. Values with a newline go as `mwrite`.
    pub fn encode(&self) -> String {
        match self {
            Request::Read(p) => format!("read /{p}\n"),
            Request::List(p) => format!("list /{p}\n"),
            Request::Write { path, value } if value.contains('\n') => {
                let mut s = format!("mwrite /{path}\n");
                push_block(&mut s, value.split('\n'));
                s
            }
            Request::Write { path, value } => format!("write /{path} {value}\n"),
        }
    }
}

/// The server's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Success with its payload (empty for writes): text, lines joined with `\n`.
    Ok(String),
    /// Failure: one line naming the object and the reason.
    Error(String),
}

impl Response {
    pub fn encode(&self) -> String {
        match self {
            Response::Ok(payload) => {
                let mut s = String::from("ok\n");
                // Exact round trip: "" is no line at all, "a\n" is "a" and "".
                if payload.is_empty() {
                    s.push_str(".\n");
                } else {
                    push_block(&mut s, payload.split('\n'));
                }
                s
            }
            // One line, whatever the message holds: the framing depends on it.
            Response::Error(m) => format!("error {}\n", m.replace(['\n', '\r'], " ")),
        }
    }
}

/// Dot-stuffed lines then the terminating `.`.
fn push_block<'a>(s: &mut String, lines: impl Iterator<Item = &'a str>) {
    for l in lines {
        if l.starts_with('.') {
            s.push('.');
        }
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(".\n");
}

/// A protocol violation. `fatal` ones leave the stream unframed: close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    pub message: String,
    pub fatal: bool,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProtoError {}

fn soft(message: String) -> ProtoError {
    ProtoError {
        message,
        fatal: false,
    }
}

fn fatal(message: String) -> ProtoError {
    ProtoError {
        message,
        fatal: true,
    }
}

/// Strip the line ending and check the length.
fn clean_line(line: &[u8]) -> Result<&str, ProtoError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return Err(fatal(format!("line longer than {MAX_LINE} bytes")));
    }
    std::str::from_utf8(line).map_err(|_| soft("request is not UTF-8".into()))
}

/// Server side: turns lines into [`Request`]s.
#[derive(Debug, Default)]
pub struct RequestParser {
    /// Inside an `mwrite`: its path and the value so far.
    block: Option<(MgmtPath, String)>,
}

impl RequestParser {
    pub fn new() -> RequestParser {
        RequestParser::default()
    }

    /// Feed one line (with or without its `\n`). Ok(None): more lines needed.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<Request>, ProtoError> {
        let in_block = self.block.is_some();
        let line = match clean_line(line) {
            Ok(l) => l,
            Err(e) => {
                // A bad line inside a block would desynchronize us from the client.
                self.block = None;
                return Err(if in_block { fatal(e.message) } else { e });
            }
        };
        if let Some((path, value)) = &mut self.block {
            if line == "." {
                let (path, mut value) = self.block.take().expect("in block");
                value.pop(); // the '\n' after the last line
                return Ok(Some(Request::Write { path, value }));
            }
            let l = line.strip_prefix('.').unwrap_or(line);
            if value.len() + l.len() + 1 > MAX_VALUE {
                let message = format!("write {path}: value longer than {MAX_VALUE} bytes");
                self.block = None;
                return Err(fatal(message));
            }
            value.push_str(l);
            value.push('\n');
            return Ok(None);
        }
        let (verb, rest) = match line.split_once(' ') {
            Some((v, r)) => (v, r),
            None => (line, ""),
        };
        match verb.to_ascii_lowercase().as_str() {
            "" => Err(soft("empty request".into())),
            "read" | "list" => {
                let rest = rest.trim();
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    return Err(soft(format!("usage: {verb} <path>")));
                }
                let p = MgmtPath::parse(rest).map_err(|e| soft(e.to_string()))?;
                Ok(Some(if verb.eq_ignore_ascii_case("read") {
                    Request::Read(p)
                } else {
                    Request::List(p)
                }))
            }
            "write" => {
                let rest = rest.trim_start_matches(' ');
                let (p, value) = match rest.split_once(' ') {
                    Some((p, v)) => (p, v),
                    None => (rest, ""),
                };
                if p.is_empty() {
                    return Err(soft("usage: write <path> <value>".into()));
                }
                let path = MgmtPath::parse(p).map_err(|e| soft(e.to_string()))?;
                Ok(Some(Request::Write {
                    path,
                    value: value.to_string(),
                }))
            }
            "mwrite" => {
                let rest = rest.trim();
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    // The value lines follow regardless: the connection is unframed now.
                    return Err(fatal("usage: mwrite <path>, then lines, then '.'".into()));
                }
                let path = MgmtPath::parse(rest).map_err(|e| fatal(e.to_string()))?;
                self.block = Some((path, String::new()));
                Ok(None)
            }
            _ => Err(soft(format!(
                "unknown request '{verb}' (expected read, list, write or mwrite)"
            ))),
        }
    }
}

/// Client side: turns lines into [`Response`]s.
#[derive(Debug, Default)]
pub struct ResponseParser {
    /// Inside an `ok` block: the payload so far.
    block: Option<String>,
}

impl ResponseParser {
    pub fn new() -> ResponseParser {
        ResponseParser::default()
    }

    /// Feed one line. Ok(None): more lines needed.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<Response>, ProtoError> {
        let line = clean_line(line).map_err(|e| fatal(e.message))?;
        if let Some(payload) = &mut self.block {
            if line == "." {
                let mut p = self.block.take().expect("in block");
                p.pop();
                return Ok(Some(Response::Ok(p)));
            }
            if payload.len() + line.len() > MAX_VALUE * 16 {
                return Err(fatal("response too long".into()));
            }
            payload.push_str(line.strip_prefix('.').unwrap_or(line));
            payload.push('\n');
            return Ok(None);
        }
        if line == "ok" {
            self.block = Some(String::new());
            return Ok(None);
        }
        if let Some(m) = line.strip_prefix("error") {
            return Ok(Some(Response::Error(m.trim_start().to_string())));
        }
        Err(fatal(format!("unexpected response line '{line}'")))
    }
}

/// What went wrong in a tree operation, as a client can act on it. It travels with the
/// error to the socket, where it alone decides the errno (`last_sysfs_mgmt_res`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The path, or an object a command names, does not exist.
    NotFound,
    /// The object to create exists already.
    Exists,
    /// A malformed command or an unacceptable value.
    Invalid,
    /// The attribute exists but is not changed by writing it.
    ReadOnly,
    /// The object is in use (sessions, LUNs, group members).
    Busy,
    /// Something SCST offers that this daemon does not do; never reported as success.
    NotSupported,
    /// The operation itself failed (a panic inside it, an I/O error).
    Internal,
}

/// Linux errno values, as SCST's sysfs reports them (asm-generic/errno-base.h, errno.h).
mod errno {
    pub const EIO: i32 = 5;
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
    pub const ENOSYS: i32 = 38;
}

impl ErrorKind {
    /// The (positive) errno a failed write of this kind reports, as SCST's sysfs does.
    pub fn errno(self) -> i32 {
        match self {
            ErrorKind::NotFound => errno::ENOENT,
            ErrorKind::Exists => errno::EEXIST,
            ErrorKind::Invalid => errno::EINVAL,
            ErrorKind::ReadOnly => errno::EACCES,
            ErrorKind::Busy => errno::EBUSY,
            ErrorKind::NotSupported => errno::ENOSYS,
            ErrorKind::Internal => errno::EIO,
        }
    }
}

/// Why a tree operation failed: its kind, and one line naming the object and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl TreeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> TreeError {
        TreeError {
            kind,
            message: message.into(),
        }
    }

    /// A failure of `path` of this kind: `"<path>: <reason>"`.
    pub fn at(path: &MgmtPath, kind: ErrorKind, reason: impl fmt::Display) -> TreeError {
        TreeError::new(kind, format!("{path}: {reason}"))
    }

    /// An unacceptable value or command written to `path`.
    pub fn invalid(path: &MgmtPath, reason: impl fmt::Display) -> TreeError {
        TreeError::at(path, ErrorKind::Invalid, reason)
    }

    pub fn not_found(path: &MgmtPath) -> TreeError {
        TreeError::at(path, ErrorKind::NotFound, "no such file or directory")
    }

    /// A write the daemon cannot do yet; never reported as success.
    pub fn not_supported(path: &MgmtPath) -> TreeError {
        TreeError::at(path, ErrorKind::NotSupported, "not supported yet")
    }

    /// The errno `last_sysfs_mgmt_res` reports for this error, negative as SCST's.
    pub fn neg_errno(&self) -> i32 {
        -self.kind.errno()
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TreeError {}

/// What the client is told of a failure: its message. The kind stays with the server,
/// which reports its errno in `last_sysfs_mgmt_res`.
impl From<TreeError> for Response {
    fn from(e: TreeError) -> Response {
        Response::Error(e.message)
    }
}

/// The management tree the server exposes. Implementations do their own locking; the
/// server serializes writes so that each is atomic with respect to other writes.
pub trait MgmtTree: Send + Sync + 'static {
    /// An attribute's value (with a last line `[key]` for key attributes) or a mgmt
    /// file's usage text.
    fn read(&self, path: &MgmtPath) -> Result<String, TreeError>;
    /// A directory's entries; subdirectories end with `/`.
    fn list(&self, path: &MgmtPath) -> Result<Vec<String>, TreeError>;
    /// Write an attribute or execute a mgmt command line.
    fn write(&self, path: &MgmtPath, value: &str) -> Result<(), TreeError>;
}

/// Run one request against a tree and build the response.
pub fn dispatch(tree: &dyn MgmtTree, req: &Request) -> Response {
    match req {
        Request::Read(p) => tree.read(p).map(Response::Ok),
        Request::List(p) => tree.list(p).map(|v| Response::Ok(v.join("\n"))),
        Request::Write { path, value } => tree
            .write(path, value)
            .map(|()| Response::Ok(String::new())),
    }
    .unwrap_or_else(Response::from)
}

/// Split a read value into its text and whether it was marked `[key]`.
pub fn strip_key(value: &str) -> (&str, bool) {
    let v = value.strip_suffix('\n').unwrap_or(value);
    match v.strip_suffix("[key]") {
        Some(rest) if rest.is_empty() || rest.ends_with('\n') => {
            (rest.strip_suffix('\n').unwrap_or(rest), true)
        }
        _ => (v, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Vec<Result<Option<Request>, ProtoError>> {
        let mut p = RequestParser::new();
        text.split_inclusive('\n')
            .map(|l| p.push_line(l.as_bytes()))
            .collect()
    }

    fn path(s: &str) -> MgmtPath {
        MgmtPath::parse(s).unwrap()
    }

    #[test]
    fn paths_normalize() {
        assert_eq!(path("/targets//iscsi/").to_string(), "targets/iscsi");
        assert!(path("/").is_root());
        assert!(MgmtPath::parse("devices/../x").is_err());
        assert!(MgmtPath::parse("a/./b").is_err());
        assert!(MgmtPath::parse("a\tb").is_err());
    }

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::Read(path("version")),
            Request::List(path("")),
            Request::Write {
                path: path("targets/iscsi/mgmt"),
                value: "add_target iqn.x:t  rel_tgt_id=3".into(),
            },
            Request::Write {
                path: path("devices/d/eui64_id"),
                value: String::new(),
            },
            Request::Write {
                path: path("devices/d/pr_state"),
                value: "line1\n.dotted\n..two\n\nlast".into(),
            },
        ];
        for r in reqs {
            let wire = r.encode();
            let mut p = RequestParser::new();
            let mut got = None;
            for l in wire.split_inclusive('\n') {
                if let Some(x) = p.push_line(l.as_bytes()).unwrap() {
                    got = Some(x);
                }
            }
            assert_eq!(got, Some(r), "wire: {wire:?}");
        }
    }

    #[test]
    fn responses_round_trip() {
        for r in [
            Response::Ok(String::new()),
            Response::Ok("1\n[key]".into()),
            Response::Ok(".hidden\nx".into()),
            Response::Ok("\n".into()),
            Response::Ok("a\n".into()),
            Response::Error("LUN '0' already exists".into()),
        ] {
            let wire = r.encode();
            let mut p = ResponseParser::new();
            let mut got = None;
            for l in wire.split_inclusive('\n') {
                if let Some(x) = p.push_line(l.as_bytes()).unwrap() {
                    got = Some(x);
                }
            }
            assert_eq!(got, Some(r), "wire: {wire:?}");
        }
        // An error message can never break the framing.
        assert_eq!(Response::Error("a\nb".into()).encode(), "error a b\n");
    }

    #[test]
    fn write_value_is_the_rest_of_the_line() {
        let r = parse_all("WRITE /luns/mgmt add d 0 read_only=1\r\n");
        assert_eq!(
            r[0],
            Ok(Some(Request::Write {
                path: path("luns/mgmt"),
                value: "add d 0 read_only=1".into()
            }))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bad = [
            "\n",
            "frob x\n",
            "read\n",
            "read a b\n",
            "list ../x\n",
            "write\n",
            "write \n",
        ];
        for b in bad {
            let r = parse_all(b);
            let e = r[0].clone().unwrap_err();
            assert!(!e.fatal, "{b:?}: {e}");
        }
        let mut p = RequestParser::new();
        let e = p.push_line(&[0xff, 0xfe, b'\n']).unwrap_err();
        assert!(!e.fatal);
        // A too-long line is fatal: the rest of the stream cannot be framed.
        let long = vec![b'a'; MAX_LINE + 1];
        assert!(p.push_line(&long).unwrap_err().fatal);
        // An oversized mwrite is fatal too.
        let mut p = RequestParser::new();
        assert_eq!(p.push_line(b"mwrite x\n"), Ok(None));
        let chunk = vec![b'b'; MAX_LINE];
        let mut failed = false;
        for _ in 0..(MAX_VALUE / MAX_LINE + 2) {
            if let Err(e) = p.push_line(&chunk) {
                assert!(e.fatal);
                failed = true;
                break;
            }
        }
        assert!(failed);
        // Responses: an unknown line is fatal for the client.
        let mut rp = ResponseParser::new();
        assert!(rp.push_line(b"hello\n").unwrap_err().fatal);
    }

    #[test]
    fn key_marker() {
        assert_eq!(strip_key("1\n[key]\n"), ("1", true));
        assert_eq!(strip_key("1\n[key]"), ("1", true));
        assert_eq!(strip_key("[key]"), ("", true));
        assert_eq!(strip_key("0\n"), ("0", false));
        assert_eq!(strip_key("x[key]"), ("x[key]", false));
    }

    struct Fixed;
    impl MgmtTree for Fixed {
        fn read(&self, p: &MgmtPath) -> Result<String, TreeError> {
            Ok(format!("value of {p}"))
        }
        fn list(&self, _: &MgmtPath) -> Result<Vec<String>, TreeError> {
            Ok(vec!["a".into(), "b/".into()])
        }
        fn write(&self, p: &MgmtPath, _: &str) -> Result<(), TreeError> {
            Err(TreeError::not_supported(p))
        }
    }

    #[test]
    fn errno_follows_the_kind_not_the_text() {
        let p = path("devices/d/x");
        // A message that reads like another kind keeps its own kind's errno.
        let e = TreeError::invalid(&p, "no such thing: already in use, not supported");
        assert_eq!(e.neg_errno(), -22);
        assert_eq!(TreeError::not_found(&p).neg_errno(), -2);
        assert_eq!(TreeError::not_supported(&p).neg_errno(), -38);
        assert_eq!(
            TreeError::not_supported(&p).to_string(),
            "devices/d/x: not supported yet"
        );
        let cases = [
            (ErrorKind::NotFound, 2),
            (ErrorKind::Exists, 17),
            (ErrorKind::Invalid, 22),
            (ErrorKind::ReadOnly, 13),
            (ErrorKind::Busy, 16),
            (ErrorKind::NotSupported, 38),
            (ErrorKind::Internal, 5),
        ];
        for (kind, errno) in cases {
            assert_eq!(TreeError::new(kind, "x").neg_errno(), -errno, "{kind:?}");
        }
    }

    #[test]
    fn dispatch_maps_results() {
        assert_eq!(
            dispatch(&Fixed, &Request::List(path("x"))),
            Response::Ok("a\nb/".into())
        );
        assert_eq!(
            dispatch(&Fixed, &Request::Read(path("x/y"))),
            Response::Ok("value of x/y".into())
        );
        assert_eq!(
            dispatch(
                &Fixed,
                &Request::Write {
                    path: path("x"),
                    value: "1".into()
                }
            ),
            Response::Error("x: not supported yet".into())
        );
    }
}
