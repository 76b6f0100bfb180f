//! The management socket (protocol: `scst_mgmt::protocol`, docs/management.md) and the
//! management tree over what the core offers today.
//!
//! One tokio task per client. Reads and lists run concurrently; writes are serialized
//! by one async mutex so that each write is atomic with respect to the others (the
//! core's own locks keep the data path consistent). Tree operations are blocking (they
//! take core locks, a fileio `add_device` opens a file), so they run on the blocking
//! pool, never on the reactor. A panic inside one is caught by the join and reported
//! to that client as an error; the daemon keeps serving.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use scst_core::{LunSet, Scst, Target};
use scst_iscsi::IscsiDriver;
use scst_mgmt::apply::WriteCheck;
use scst_mgmt::command::{self, parse_command, MgmtCommand, MgmtFile};
use scst_mgmt::protocol::{
    dispatch, MgmtPath, MgmtTree, ProtoError, Request, RequestParser, Response, TreeError, MAX_LINE,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Bind the management socket at `path` with mode 0600.
///
/// A socket file left by a daemon that died is removed; a live one (something accepts
/// connections on it) or a path that is not a socket is an error, so that we never
/// steal another daemon's socket or delete a user's file. Must be called before other
/// threads create files: it narrows the process umask around bind(2) so the socket is
/// never reachable by others, not even between bind and chmod.
pub fn bind_socket(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "management socket {}: another daemon is listening on it",
                    path.display()
                );
            }
            std::fs::remove_file(path).with_context(|| {
                format!(
                    "management socket {}: cannot remove stale socket",
                    path.display()
                )
            })?;
        }
        Ok(_) => bail!(
            "management socket {}: the path exists and is not a socket",
            path.display()
        ),
        Err(_) => {}
    }
    // SAFETY: umask(2) has no memory-safety preconditions.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above; restores the previous mask.
    unsafe { libc::umask(old) };
    let listener =
        bound.with_context(|| format!("cannot bind management socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("management socket {}: cannot set mode 0600", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Removes the socket file when the server goes away.
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Accept clients forever, one task each.
pub async fn serve(listener: UnixListener, tree: Arc<dyn MgmtTree>) {
    let write_lock = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Err(why) = check_peer(&stream) {
                    log::warn!("management socket: {why}");
                    tokio::spawn(refuse(stream, why));
                    continue;
                }
                let tree = tree.clone();
                let write_lock = write_lock.clone();
                tokio::spawn(async move {
                    if let Err(e) = client(stream, tree, write_lock).await {
                        log::debug!("management client: {e}");
                    }
                });
            }
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                log::warn!("management socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Only root and the daemon's own user may manage it. The socket's mode already keeps
/// others out; this holds even when the mode or a directory's permissions are loosened
/// (or the socket is passed on), and gives the refused client a clear answer.
fn check_peer(stream: &UnixStream) -> Result<(), String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("cannot read the client's credentials (SO_PEERCRED): {e}"))?;
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let uid = cred.uid();
    if uid == 0 || uid == me {
        Ok(())
    } else {
        Err(format!(
            "permission denied: uid {uid} may not manage scstd (only root and uid {me})"
        ))
    }
}

/// Answer a refused client with one error line and close. What it sends is read and
/// dropped (bounded in time) so that its first request does not fail with EPIPE
/// before it gets to read the reason.
async fn refuse(mut stream: UnixStream, why: String) {
    let _ = stream
        .write_all(Response::Error(why).encode().as_bytes())
        .await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}

async fn client(
    stream: UnixStream,
    tree: Arc<dyn MgmtTree>,
    write_lock: Arc<tokio::sync::Mutex<()>>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut parser = RequestParser::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a client sending an endless line gets an error, not our memory.
        let n = (&mut r)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let (resp, close) = match parser.push_line(&line) {
            Ok(None) => continue,
            Ok(Some(req)) => (execute(&tree, req, &write_lock).await, false),
            Err(ProtoError { message, fatal }) => (Response::Error(message), fatal),
        };
        w.write_all(resp.encode().as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

async fn execute(
    tree: &Arc<dyn MgmtTree>,
    req: Request,
    write_lock: &tokio::sync::Mutex<()>,
) -> Response {
    let _guard = match req {
        Request::Write { .. } => Some(write_lock.lock().await),
        _ => None,
    };
    let what = match &req {
        Request::Read(p) | Request::List(p) | Request::Write { path: p, .. } => p.to_string(),
    };
    let tree = tree.clone();
    match tokio::task::spawn_blocking(move || dispatch(tree.as_ref(), &req)).await {
        Ok(r) => r,
        Err(e) => {
            log::error!("management request on {what} failed: {e}");
            Response::Error(format!("{what}: internal error"))
        }
    }
}

/// The management tree over the core's current API. Paths follow SCST's sysfs layout
/// (spec/scst.md 2.2); only the `iscsi` target driver exists.
pub struct ScstTree {
    pub scst: Arc<Scst>,
    pub iscsi: Arc<IscsiDriver>,
    /// The root `setup_id`, fixed at startup (devices created later use it too).
    pub setup_id: u64,
    /// `last_sysfs_mgmt_res`: 0 or -errno of the last write. Writes complete before
    /// they are answered, so this is never EAGAIN.
    pub last_result: AtomicI32,
    /// The root `threads`: the I/O pool's size, fixed at start, and whether the
    /// configuration (or `--io-threads`) chose it (then it is a key attribute).
    pub io_threads: (usize, bool),
}

impl ScstTree {
    pub fn new(scst: Arc<Scst>, iscsi: Arc<IscsiDriver>, setup_id: u64) -> ScstTree {
        ScstTree {
            scst,
            iscsi,
            setup_id,
            last_result: AtomicI32::new(0),
            io_threads: (crate::config::DEFAULT_IO_THREADS, false),
        }
    }

    pub fn with_io_threads(mut self, threads: usize, configured: bool) -> ScstTree {
        self.io_threads = (threads, configured);
        self
    }
}

const DRIVER: &str = "iscsi";
/// iSCSI's multi-value attributes (spec 2.6): driver level and target level.
const DRIVER_DYN_ATTRS: &[&str] = &["IncomingUser", "OutgoingUser"];
const TARGET_DYN_ATTRS: &[&str] = &["IncomingUser", "OutgoingUser", "allowed_portal"];
/// Driver attributes with one value, set by writing their file (spec 6.6); an empty
/// write removes them.
const DRIVER_PARAMS: &[&str] = &[
    "iSNSServer",
    "isns_entity_name",
    "internal_portal",
    "link_local",
];
/// Writable iSCSI target parameters (spec 6.2, 6.3, 6.6) the driver reads when a
/// session logs in, with the value a target that does not set them runs with. Writes
/// are checked by `scst_iscsi::validate_target_attr` and affect new sessions only;
/// `:default:` restores the default.
const TARGET_PARAMS: &[(&str, &str)] = &[
    ("InitialR2T", "No"),
    ("ImmediateData", "Yes"),
    ("MaxRecvDataSegmentLength", "1048576"),
    ("MaxXmitDataSegmentLength", "1048576"),
    ("MaxBurstLength", "1048576"),
    ("FirstBurstLength", "65536"),
    ("MaxOutstandingR2T", "32"),
    ("HeaderDigest", "None"),
    ("DataDigest", "None"),
    ("QueuedCommands", "128"),
    ("NopInInterval", "30"),
    ("NopInTimeout", "30"),
    ("MaxSessions", "0"),
    ("alias", ""),
    ("per_portal_acl", "0"),
    ("redirect", ""),
];

fn target_param_default(name: &str) -> Option<&'static str> {
    TARGET_PARAMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
}

/// Multi-value and free-form attributes of a target (not its parameters), as files.
fn target_attr_files(t: &Target) -> Vec<(String, String)> {
    let attrs: Vec<(String, String)> = t
        .attrs
        .lock()
        .iter()
        .filter(|(n, _)| target_param_default(n).is_none())
        .cloned()
        .collect();
    instance_names(&attrs)
}

/// `-errno` for `last_sysfs_mgmt_res`, from the error's wording (the core's errors are
/// typed, but reach the tree as text).
fn errno_of(e: &TreeError) -> i32 {
    let m = e.0.as_str();
    let errno = if m.contains("no such") || m.contains("does not exist") {
        libc::ENOENT
    } else if m.contains("already") {
        libc::EEXIST
    } else if m.contains("in use") || m.contains("busy") || m.contains("sessions") {
        libc::EBUSY
    } else if m.contains("not supported") {
        libc::ENOSYS
    } else {
        libc::EINVAL
    };
    -errno
}

/// Replace every value of `name` in a target's attributes with `value` (None: remove).
fn set_single_attr(t: &Target, name: &str, value: Option<&str>) {
    let mut attrs = t.attrs.lock();
    attrs.retain(|(n, _)| n != name);
    if let Some(v) = value {
        attrs.push((name.to_string(), v.to_string()));
    }
}

fn with_key(value: String, key: bool) -> String {
    if key {
        format!("{value}\n[key]")
    } else {
        value
    }
}

fn bool01(path: &MgmtPath, v: &str) -> Result<bool, TreeError> {
    match v.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(TreeError(format!("{path}: '{other}' must be 0 or 1"))),
    }
}

fn parse_addr_method(path: &MgmtPath, v: &str) -> Result<scsi_wire::lun::AddrMethod, TreeError> {
    scsi_wire::lun::AddrMethod::from_name(&v.trim().to_ascii_uppercase()).ok_or_else(|| {
        TreeError(format!(
            "{path}: addr_method must be PERIPHERAL, FLAT or LUN, not '{}'",
            v.trim()
        ))
    })
}

fn type_text(t: u8) -> String {
    let desc = match t {
        0 => "Direct-access device (e.g., magnetic disk)",
        5 => "CD-ROM device",
        _ => "unknown",
    };
    format!("{t} - {desc}")
}

/// Statistics of a session (spec 2.7, as for targets); writing 0 to one resets them.
const SESSION_COUNTERS: &[&str] = &[
    "read_cmd_count",
    "read_io_count_kb",
    "read_unaligned_cmd_count",
    "write_cmd_count",
    "write_io_count_kb",
    "write_unaligned_cmd_count",
    "bidi_cmd_count",
    "bidi_io_count_kb",
    "bidi_unaligned_cmd_count",
    "none_cmd_count",
    "unknown_cmd_count",
];

fn session_counter(s: &scst_core::Session, name: &str) -> Option<u64> {
    let st = &s.stats;
    let io = |c: &scst_core::stats::IoCounters, what: &str| match what {
        "cmd_count" => Some(c.cmds()),
        "io_count_kb" => Some(c.kib()),
        "unaligned_cmd_count" => Some(c.unaligned()),
        _ => None,
    };
    match name {
        "none_cmd_count" => Some(st.none_cmds()),
        "unknown_cmd_count" => Some(st.unknown_cmds()),
        _ => {
            let (dir, what) = name.split_once('_')?;
            match dir {
                "read" => io(&st.read, what),
                "write" => io(&st.write, what),
                "bidi" => io(&st.bidi, what),
                _ => None,
            }
        }
    }
}

/// Files of `sessions/<s>/` (spec 2.7, 6.7): core attributes and counters, the
/// transport's attributes (connection directories among them), `lun<N>/` per LUN.
fn list_session(
    path: &MgmtPath,
    s: &scst_core::Session,
    rest: &[&str],
) -> Result<Vec<String>, TreeError> {
    let tattrs = s.transport_attrs();
    match rest {
        [] => {
            let mut v: Vec<String> = [
                "initiator_name",
                "transport_id",
                "luns",
                "commands",
                "active_commands",
                "force_close",
            ]
            .map(String::from)
            .to_vec();
            v.extend(SESSION_COUNTERS.iter().map(|c| c.to_string()));
            let mut dirs: Vec<String> = Vec::new();
            for (n, _) in &tattrs {
                match n.split_once('/') {
                    Some((d, _)) => {
                        let d = format!("{d}/");
                        if !dirs.contains(&d) {
                            dirs.push(d);
                        }
                    }
                    None => v.push(n.clone()),
                }
            }
            v.extend(dirs);
            v.extend(s.luns().entries.iter().map(|td| format!("lun{}/", td.lun)));
            Ok(v)
        }
        [lun] if session_lun(s, lun).is_some() => Ok(vec!["active_commands".to_string()]),
        [dir] => {
            let prefix = format!("{dir}/");
            let v: Vec<String> = tattrs
                .iter()
                .filter_map(|(n, _)| n.strip_prefix(&prefix).map(String::from))
                .collect();
            if v.is_empty() {
                Err(TreeError::not_found(path))
            } else {
                Ok(v)
            }
        }
        _ => Err(TreeError::not_found(path)),
    }
}

fn session_lun(s: &scst_core::Session, name: &str) -> Option<Arc<scst_core::TgtDev>> {
    let n: u64 = name.strip_prefix("lun")?.parse().ok()?;
    s.luns().get(n).cloned()
}

fn read_session(
    path: &MgmtPath,
    s: &scst_core::Session,
    rest: &[&str],
) -> Result<String, TreeError> {
    match rest {
        ["initiator_name"] => Ok(s.initiator_name.clone()),
        // Where SCST has a link to the LUN set the session is bound to.
        ["luns"] => Ok(match &s.group {
            Some(g) => format!("ini_groups/{g}/luns"),
            None => "luns".to_string(),
        }),
        ["transport_id"] => Ok(s.transport_id.port_name()),
        ["force_close"] => Err(TreeError(format!("{path}: write-only"))),
        ["commands"] => Ok(s.stats.outstanding().to_string()),
        ["active_commands"] => Ok(s
            .luns()
            .entries
            .iter()
            .map(|td| td.active_commands())
            .sum::<usize>()
            .to_string()),
        [lun, "active_commands"] => session_lun(s, lun)
            .map(|td| td.active_commands().to_string())
            .ok_or_else(|| TreeError::not_found(path)),
        [name] if SESSION_COUNTERS.contains(name) => session_counter(s, name)
            .map(|n| n.to_string())
            .ok_or_else(|| TreeError::not_found(path)),
        _ => {
            let key = rest.join("/");
            s.transport_attrs()
                .into_iter()
                .find(|(n, _)| *n == key)
                .map(|(_, v)| v)
                .ok_or_else(|| TreeError::not_found(path))
        }
    }
}

/// Session directory names: the initiator name, `_<n>` for later duplicates (spec 2.7).
fn session_names(t: &Target) -> Vec<(String, Arc<scst_core::Session>)> {
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut out = Vec::new();
    let mut sessions = t.sessions();
    sessions.sort_by_key(|s| s.id);
    for s in sessions {
        let n = seen.entry(s.initiator_name.clone()).or_default();
        let name = if *n == 0 {
            s.initiator_name.clone()
        } else {
            format!("{}_{n}", s.initiator_name)
        };
        *n += 1;
        out.push((name, s));
    }
    out
}

/// Attribute file names of a multi-value attribute: `Name`, `Name1`, `Name2`...
fn instance_names(attrs: &[(String, String)]) -> Vec<(String, String)> {
    let mut count: std::collections::HashMap<&str, usize> = Default::default();
    attrs
        .iter()
        .map(|(n, v)| {
            let c = count.entry(n.as_str()).or_default();
            let file = if *c == 0 {
                n.clone()
            } else {
                format!("{n}{c}")
            };
            *c += 1;
            (file, v.clone())
        })
        .collect()
}

impl ScstTree {
    fn target(&self, path: &MgmtPath, name: &str) -> Result<Arc<Target>, TreeError> {
        self.scst
            .target(DRIVER, name)
            .ok_or_else(|| TreeError::not_found(path))
    }

    fn device(
        &self,
        path: &MgmtPath,
        name: &str,
    ) -> Result<Arc<scst_core::DeviceEntry>, TreeError> {
        self.scst
            .device(name)
            .map_err(|_| TreeError::not_found(path))
    }

    /// `handlers/<h>/<dev>/...` is a link to `devices/<dev>/...`.
    fn resolve<'a>(&self, parts: &[&'a str]) -> Vec<&'a str> {
        if let ["handlers", h, dev, rest @ ..] = parts {
            if *dev != "mgmt" && *dev != "type" {
                if let Ok(d) = self.scst.device(dev) {
                    if d.dev.handler_name() == *h {
                        let mut v = vec!["devices", *dev];
                        v.extend_from_slice(rest);
                        return v;
                    }
                }
            }
        }
        parts.to_vec()
    }

    fn handler_exists(h: &str) -> bool {
        scst_vdisk::handler_names().contains(&h)
    }

    fn read_luns(&self, path: &MgmtPath, set: &LunSet, rest: &[&str]) -> Result<String, TreeError> {
        match rest {
            ["mgmt"] => Ok(command::LUNS_HELP.to_string()),
            [n, attr] => {
                let e = n
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| set.luns.get(&n))
                    .ok_or_else(|| TreeError::not_found(path))?;
                match *attr {
                    "device" => Ok(e.device.name().to_string()),
                    "read_only" => Ok(u8::from(e.read_only).to_string()),
                    _ => Err(TreeError::not_found(path)),
                }
            }
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn list_luns(
        &self,
        path: &MgmtPath,
        set: &LunSet,
        rest: &[&str],
    ) -> Result<Vec<String>, TreeError> {
        match rest {
            [] => Ok(std::iter::once("mgmt".to_string())
                .chain(set.luns.keys().map(|n| format!("{n}/")))
                .collect()),
            [n] if n.parse::<u64>().is_ok_and(|n| set.luns.contains_key(&n)) => {
                Ok(vec!["device".into(), "read_only".into()])
            }
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn read_target(&self, path: &MgmtPath, t: &Target, rest: &[&str]) -> Result<String, TreeError> {
        match rest {
            ["enabled"] => Ok(with_key(u8::from(t.enabled()).to_string(), t.enabled())),
            ["rel_tgt_id"] => Ok(with_key(t.rel_tgt_id().to_string(), true)),
            ["addr_method"] => {
                let m = *t.addr_method.lock();
                Ok(with_key(
                    m.name().to_string(),
                    m != scsi_wire::lun::AddrMethod::Peripheral,
                ))
            }
            ["luns", rest @ ..] => {
                let set = t.acl.lock().default_luns.clone();
                self.read_luns(path, &set, rest)
            }
            ["ini_groups", "mgmt"] => Ok(command::INI_GROUPS_HELP.to_string()),
            ["ini_groups", g, rest @ ..] => {
                let group = t
                    .acl
                    .lock()
                    .groups
                    .iter()
                    .find(|x| x.name == *g)
                    .cloned()
                    .ok_or_else(|| TreeError::not_found(path))?;
                match rest {
                    ["addr_method"] => Ok(match group.addr_method {
                        Some(m) => with_key(m.name().to_string(), true),
                        None => t.addr_method.lock().name().to_string(),
                    }),
                    ["luns", rest @ ..] => self.read_luns(path, &group.luns, rest),
                    ["initiators", "mgmt"] => Ok(command::INITIATORS_HELP.to_string()),
                    ["initiators", name] => group
                        .initiators
                        .iter()
                        .find(|i| i == name)
                        .cloned()
                        .ok_or_else(|| TreeError::not_found(path)),
                    _ => Err(TreeError::not_found(path)),
                }
            }
            ["sessions", s, rest @ ..] => {
                let (_, sess) = session_names(t)
                    .into_iter()
                    .find(|(n, _)| n == s)
                    .ok_or_else(|| TreeError::not_found(path))?;
                read_session(path, &sess, rest)
            }
            [attr] => {
                if let Some(d) = target_param_default(attr) {
                    return Ok(match t.attr(attr) {
                        Some(v) => with_key(v, true),
                        None => d.to_string(),
                    });
                }
                target_attr_files(t)
                    .into_iter()
                    .find(|(n, _)| n == attr)
                    // These only exist when configured: always saved.
                    .map(|(_, v)| with_key(v, true))
                    .ok_or_else(|| TreeError::not_found(path))
            }
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn list_target(
        &self,
        path: &MgmtPath,
        t: &Target,
        rest: &[&str],
    ) -> Result<Vec<String>, TreeError> {
        match rest {
            [] => {
                let mut v: Vec<String> = ["enabled", "rel_tgt_id", "addr_method"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                v.extend(TARGET_PARAMS.iter().map(|(n, _)| n.to_string()));
                v.extend(target_attr_files(t).into_iter().map(|(n, _)| n));
                v.extend(["luns/", "ini_groups/", "sessions/"].map(String::from));
                Ok(v)
            }
            ["luns", rest @ ..] => {
                let set = t.acl.lock().default_luns.clone();
                self.list_luns(path, &set, rest)
            }
            ["ini_groups"] => Ok(std::iter::once("mgmt".to_string())
                .chain(t.acl.lock().groups.iter().map(|g| format!("{}/", g.name)))
                .collect()),
            ["ini_groups", g, rest @ ..] => {
                let group = t
                    .acl
                    .lock()
                    .groups
                    .iter()
                    .find(|x| x.name == *g)
                    .cloned()
                    .ok_or_else(|| TreeError::not_found(path))?;
                match rest {
                    [] => Ok(vec![
                        "addr_method".into(),
                        "luns/".into(),
                        "initiators/".into(),
                    ]),
                    ["luns", rest @ ..] => self.list_luns(path, &group.luns, rest),
                    ["initiators"] => Ok(std::iter::once("mgmt".to_string())
                        .chain(group.initiators.iter().cloned())
                        .collect()),
                    _ => Err(TreeError::not_found(path)),
                }
            }
            ["sessions"] => Ok(session_names(t)
                .into_iter()
                .map(|(n, _)| format!("{n}/"))
                .collect()),
            ["sessions", s, rest @ ..] => {
                let (_, sess) = session_names(t)
                    .into_iter()
                    .find(|(n, _)| n == s)
                    .ok_or_else(|| TreeError::not_found(path))?;
                list_session(path, &sess, rest)
            }
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn write_handler_mgmt(
        &self,
        path: &MgmtPath,
        handler: &str,
        value: &str,
    ) -> Result<(), TreeError> {
        let err = |m: String| TreeError(format!("{path}: {m}"));
        match parse_command(MgmtFile::Handler, value).map_err(|e| err(e.to_string()))? {
            MgmtCommand::AddDevice { name, mut params } => {
                // pr_file_name is the core's (spec 2.5), the rest the dev handler's.
                let pr_file = match params.iter().position(|(k, _)| k == "pr_file_name") {
                    Some(i) => {
                        let (_, v) = params.remove(i);
                        let v = v.trim();
                        if !v.is_empty() && !v.starts_with('/') {
                            return Err(err(format!(
                                "device {name}: pr_file_name must be an absolute path, not '{v}'"
                            )));
                        }
                        // Empty means the default (spec 2.5).
                        (!v.is_empty()).then(|| PathBuf::from(v))
                    }
                    None => None,
                };
                let dev = scst_vdisk::create_device(handler, &name, &params, self.setup_id)
                    .map_err(|e| err(e.to_string()))?;
                self.scst
                    .add_device_with_pr_file(dev, pr_file)
                    .map_err(|e| err(e.to_string()))?;
                log::info!("device {name} added ({handler})");
                Ok(())
            }
            MgmtCommand::DelDevice { name } => {
                match self.scst.device(&name) {
                    Ok(d) if d.dev.handler_name() != handler => {
                        return Err(err(format!(
                            "device '{name}' belongs to handler {}",
                            d.dev.handler_name()
                        )))
                    }
                    _ => {}
                }
                self.scst.del_device(&name).map_err(|e| err(e.to_string()))
            }
            // SCST offers these only for handlers that declare optional attributes
            // (its help text then lists them); the vdisk handlers declare none, and
            // this help text leaves the commands out accordingly.
            MgmtCommand::AddAttribute { .. }
            | MgmtCommand::DelAttribute { .. }
            | MgmtCommand::AddDeviceAttribute { .. }
            | MgmtCommand::DelDeviceAttribute { .. } => Err(err(format!(
                "{}: {handler} declares no optional attributes",
                value.split_whitespace().next().unwrap_or_default()
            ))),
            _ => Err(TreeError::not_supported(path)),
        }
    }

    fn write_driver_mgmt(&self, path: &MgmtPath, value: &str) -> Result<(), TreeError> {
        let err = |m: String| TreeError(format!("{path}: {m}"));
        match parse_command(MgmtFile::TargetDriver, value).map_err(|e| err(e.to_string()))? {
            MgmtCommand::AddTarget { name, params } => {
                // Check every parameter before creating anything: nothing half-applied.
                let mut rel = None;
                let mut attrs = Vec::new();
                let mut addr_method = None;
                for (k, v) in params {
                    if k == "addr_method" {
                        addr_method = Some(parse_addr_method(path, &v)?);
                    } else if k == "rel_tgt_id" {
                        rel = Some(v.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| {
                            err(format!("target {name}: rel_tgt_id must be 1..65535"))
                        })?);
                    } else {
                        scst_iscsi::validate_target_attr(&k, &v)
                            .map_err(|e| err(format!("target {name}: {e}")))?;
                        attrs.push((k, v));
                    }
                }
                let t = self
                    .scst
                    .add_target(DRIVER, &name, rel)
                    .map_err(|e| err(e.to_string()))?;
                t.attrs.lock().extend(attrs);
                if let Some(m) = addr_method {
                    *t.addr_method.lock() = m;
                }
                log::info!("target {name} added");
                Ok(())
            }
            // The iSCSI driver keeps nothing per target besides its sessions, which the
            // core closes; each connection unregisters its session as it ends.
            MgmtCommand::DelTarget { name } => self
                .scst
                .del_target(DRIVER, &name)
                .map_err(|e| err(e.to_string())),
            MgmtCommand::AddAttribute { attr, value } => {
                if !DRIVER_DYN_ATTRS.contains(&attr.as_str()) {
                    return Err(err(format!(
                        "'{attr}' is not a dynamic driver attribute ({})",
                        DRIVER_DYN_ATTRS.join(", ")
                    )));
                }
                let old = self.iscsi.driver_attrs();
                if old.iter().any(|(n, v)| *n == attr && *v == value) {
                    return Err(err(format!("{attr} '{value}' already exists")));
                }
                // One OutgoingUser: a new one replaces the old (spec 6.5).
                let replace = attr == "OutgoingUser";
                if replace {
                    self.iscsi.remove_driver_attr(&attr, None);
                }
                if let Err(e) = self.iscsi.set_driver_attr(&attr, &value) {
                    if replace {
                        for (n, v) in old.iter().filter(|(n, _)| *n == attr) {
                            let _ = self.iscsi.set_driver_attr(n, v);
                        }
                    }
                    return Err(err(e));
                }
                log::info!("driver {DRIVER}: {attr} added");
                Ok(())
            }
            MgmtCommand::DelAttribute { attr, value } => {
                if self.iscsi.remove_driver_attr(&attr, Some(&value)) == 0 {
                    return Err(err(format!("no {attr} '{value}' to delete")));
                }
                log::info!("driver {DRIVER}: {attr} deleted");
                Ok(())
            }
            MgmtCommand::AddTargetAttribute {
                target,
                attr,
                value,
            } => {
                let t = self
                    .scst
                    .target(DRIVER, &target)
                    .ok_or_else(|| err(format!("target '{target}' does not exist")))?;
                if !TARGET_DYN_ATTRS.contains(&attr.as_str()) {
                    return Err(err(format!(
                        "'{attr}' is not a dynamic target attribute ({})",
                        TARGET_DYN_ATTRS.join(", ")
                    )));
                }
                scst_iscsi::validate_target_attr(&attr, &value)
                    .map_err(|e| err(format!("target {target}: {e}")))?;
                let mut attrs = t.attrs.lock();
                if attrs.iter().any(|(n, v)| *n == attr && *v == value) {
                    return Err(err(format!(
                        "target {target}: {attr} '{value}' already exists"
                    )));
                }
                if attr == "OutgoingUser" {
                    attrs.retain(|(n, _)| *n != attr);
                }
                attrs.push((attr.clone(), value));
                log::info!("target {target}: {attr} added");
                Ok(())
            }
            MgmtCommand::DelTargetAttribute {
                target,
                attr,
                value,
            } => {
                let t = self
                    .scst
                    .target(DRIVER, &target)
                    .ok_or_else(|| err(format!("target '{target}' does not exist")))?;
                let mut attrs = t.attrs.lock();
                let before = attrs.len();
                attrs.retain(|(n, v)| !(*n == attr && *v == value));
                if attrs.len() == before {
                    return Err(err(format!(
                        "target {target}: no {attr} '{value}' to delete"
                    )));
                }
                log::info!("target {target}: {attr} deleted");
                Ok(())
            }
            _ => Err(TreeError::not_supported(path)),
        }
    }

    fn write_luns_mgmt(
        &self,
        path: &MgmtPath,
        t: &Target,
        group: Option<&str>,
        value: &str,
    ) -> Result<(), TreeError> {
        let err = |m: String| TreeError(format!("{path}: {m}"));
        match parse_command(MgmtFile::Luns, value).map_err(|e| err(e.to_string()))? {
            MgmtCommand::AddLun {
                device,
                lun,
                read_only,
            } => {
                self.scst
                    .lun_add(t, group, lun.into(), &device, read_only)
                    .map_err(|e| err(e.to_string()))?;
                log::info!("target {}: LUN {lun} -> {device} added", t.name);
                Ok(())
            }
            MgmtCommand::DelLun { lun } => self
                .scst
                .lun_del(t, group, lun.into())
                .map_err(|e| err(e.to_string())),
            MgmtCommand::ReplaceLun {
                device,
                lun,
                read_only,
                unit_attention,
            } => self
                .scst
                .lun_replace(t, group, lun.into(), &device, read_only, unit_attention)
                .map_err(|e| err(e.to_string())),
            MgmtCommand::ClearLuns => self
                .scst
                .lun_clear(t, group)
                .map_err(|e| err(e.to_string())),
            _ => Err(TreeError::not_supported(path)),
        }
    }

    fn write_ini_groups_mgmt(
        &self,
        path: &MgmtPath,
        t: &Target,
        value: &str,
    ) -> Result<(), TreeError> {
        let err = |m: String| TreeError(format!("{path}: {m}"));
        match parse_command(MgmtFile::IniGroups, value).map_err(|e| err(e.to_string()))? {
            MgmtCommand::CreateGroup { name } => self.scst.ini_group_create(t, &name),
            MgmtCommand::DelGroup { name } => self.scst.ini_group_del(t, &name),
            _ => return Err(TreeError::not_supported(path)),
        }
        .map_err(|e| err(e.to_string()))
    }

    fn write_initiators_mgmt(
        &self,
        path: &MgmtPath,
        t: &Target,
        group: &str,
        value: &str,
    ) -> Result<(), TreeError> {
        let err = |m: String| TreeError(format!("{path}: {m}"));
        match parse_command(MgmtFile::Initiators, value).map_err(|e| err(e.to_string()))? {
            MgmtCommand::AddInitiator { pattern } => self.scst.initiator_add(t, group, &pattern),
            MgmtCommand::DelInitiator { pattern } => self.scst.initiator_del(t, group, &pattern),
            MgmtCommand::MoveInitiator {
                pattern,
                group: dest,
            } => self.scst.initiator_move(t, group, &pattern, &dest),
            MgmtCommand::ClearInitiators => self.scst.initiator_clear(t, group),
            _ => return Err(TreeError::not_supported(path)),
        }
        .map_err(|e| err(e.to_string()))
    }
}

impl ScstTree {
    fn device_group(
        &self,
        path: &MgmtPath,
        dg: &str,
    ) -> Result<scst_core::DeviceGroupInfo, TreeError> {
        self.scst
            .device_groups()
            .into_iter()
            .find(|g| g.name == dg)
            .ok_or_else(|| TreeError::not_found(path))
    }

    /// `device_groups/...` (spec 2.9).
    fn read_device_groups(&self, path: &MgmtPath, rest: &[&str]) -> Result<String, TreeError> {
        if rest == ["mgmt"] {
            return Ok(command::DEVICE_GROUPS_HELP.to_string());
        }
        let [dg, rest @ ..] = rest else {
            return Err(TreeError::not_found(path));
        };
        let g = self.device_group(path, dg)?;
        match rest {
            ["devices", "mgmt"] => Ok(command::DG_DEVICES_HELP.to_string()),
            ["devices", d] if g.devices.iter().any(|x| x == d) => Ok(d.to_string()),
            ["target_groups", "mgmt"] => Ok(command::TARGET_GROUPS_HELP.to_string()),
            ["target_groups", tg, rest @ ..] => {
                let tg = g
                    .target_groups
                    .iter()
                    .find(|t| t.name == *tg)
                    .ok_or_else(|| TreeError::not_found(path))?;
                match rest {
                    ["mgmt"] => Ok(command::TARGET_GROUP_HELP.to_string()),
                    ["group_id"] => Ok(with_key(tg.group_id.to_string(), true)),
                    ["preferred"] => Ok(with_key(u8::from(tg.preferred).to_string(), tg.preferred)),
                    ["state"] => Ok(with_key(tg.state.name().to_string(), true)),
                    [t, "rel_tgt_id"] => {
                        let (_, id) = tg
                            .targets
                            .iter()
                            .find(|(n, _)| n == t)
                            .ok_or_else(|| TreeError::not_found(path))?;
                        // Only a remote target's id is configuration; a local one
                        // reports its own live rel_tgt_id.
                        let remote = self.scst.target(DRIVER, t).is_none();
                        Ok(with_key(id.to_string(), remote))
                    }
                    _ => Err(TreeError::not_found(path)),
                }
            }
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn list_device_groups(&self, path: &MgmtPath, rest: &[&str]) -> Result<Vec<String>, TreeError> {
        let [dg, rest @ ..] = rest else {
            return Ok(std::iter::once("mgmt".to_string())
                .chain(
                    self.scst
                        .device_groups()
                        .into_iter()
                        .map(|g| format!("{}/", g.name)),
                )
                .collect());
        };
        let g = self.device_group(path, dg)?;
        match rest {
            [] => Ok(vec!["devices/".into(), "target_groups/".into()]),
            ["devices"] => Ok(std::iter::once("mgmt".to_string())
                .chain(g.devices.iter().cloned())
                .collect()),
            ["target_groups"] => Ok(std::iter::once("mgmt".to_string())
                .chain(g.target_groups.iter().map(|t| format!("{}/", t.name)))
                .collect()),
            ["target_groups", tg, rest @ ..] => {
                let tg = g
                    .target_groups
                    .iter()
                    .find(|t| t.name == *tg)
                    .ok_or_else(|| TreeError::not_found(path))?;
                match rest {
                    [] => Ok(["mgmt", "group_id", "preferred", "state"]
                        .into_iter()
                        .map(String::from)
                        .chain(tg.targets.iter().map(|(n, _)| format!("{n}/")))
                        .collect()),
                    [t] if tg.targets.iter().any(|(n, _)| n == t) => Ok(vec!["rel_tgt_id".into()]),
                    _ => Err(TreeError::not_found(path)),
                }
            }
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn write_device_groups(
        &self,
        path: &MgmtPath,
        rest: &[&str],
        value: &str,
    ) -> Result<(), TreeError> {
        let err = |m: String| TreeError(format!("{path}: {m}"));
        let parse = |file| parse_command(file, value).map_err(|e| err(e.to_string()));
        let scst = &self.scst;
        let r = match rest {
            ["mgmt"] => match parse(MgmtFile::DeviceGroups)? {
                MgmtCommand::CreateDeviceGroup { name } => scst.create_device_group(&name),
                MgmtCommand::DelDeviceGroup { name } => scst.delete_device_group(&name),
                _ => return Err(TreeError::not_supported(path)),
            },
            [dg, "devices", "mgmt"] => match parse(MgmtFile::DeviceGroupDevices)? {
                MgmtCommand::DeviceGroupAddDevice { device } => {
                    scst.device_group_add_device(dg, &device)
                }
                MgmtCommand::DeviceGroupDelDevice { device } => {
                    scst.device_group_remove_device(dg, &device)
                }
                _ => return Err(TreeError::not_supported(path)),
            },
            [dg, "target_groups", "mgmt"] => match parse(MgmtFile::TargetGroups)? {
                MgmtCommand::CreateTargetGroup { name } => scst
                    .free_target_group_id(dg)
                    .and_then(|id| scst.create_target_group(dg, &name, id)),
                MgmtCommand::DelTargetGroup { name } => scst.delete_target_group(dg, &name),
                _ => return Err(TreeError::not_supported(path)),
            },
            [dg, "target_groups", tg, "mgmt"] => match parse(MgmtFile::TargetGroup)? {
                MgmtCommand::TargetGroupAddTarget { target, rel_tgt_id } => {
                    scst.target_group_add_target(dg, tg, &target, rel_tgt_id)
                }
                MgmtCommand::TargetGroupDelTarget { target } => {
                    scst.target_group_remove_target(dg, tg, &target)
                }
                _ => return Err(TreeError::not_supported(path)),
            },
            [dg, "target_groups", tg, "group_id"] => {
                let id = value
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| err(format!("'{}' is not 1..65535", value.trim())))?;
                scst.set_target_group_id(dg, tg, id)
            }
            [dg, "target_groups", tg, "preferred"] => {
                scst.set_target_group_preferred(dg, tg, bool01(path, value)?)
            }
            [dg, "target_groups", tg, "state"] => scst_core::AluaState::from_name(value.trim())
                .and_then(|st| scst.set_target_group_state(dg, tg, st)),
            [dg, "target_groups", tg, t, "rel_tgt_id"] => {
                let id = value
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| err(format!("'{}' is not 1..65535", value.trim())))?;
                scst.set_target_group_member_rel_tgt_id(dg, tg, t, id)
            }
            _ => {
                return match self.read(path) {
                    Ok(_) => Err(TreeError::not_supported(path)),
                    Err(e) => Err(e),
                }
            }
        };
        r.map_err(|e| err(e.to_string()))
    }

    fn write_driver_attr(&self, path: &MgmtPath, attr: &str, value: &str) -> Result<(), TreeError> {
        let err = |m: String| TreeError(format!("{path}: {m}"));
        if DRIVER_DYN_ATTRS
            .iter()
            .any(|a| attr.trim_end_matches(|c: char| c.is_ascii_digit()) == *a)
        {
            return Err(err(format!(
                "{attr} is changed with add_attribute/del_attribute on targets/{DRIVER}/mgmt"
            )));
        }
        if !DRIVER_PARAMS.contains(&attr) {
            return match self.read(path) {
                Ok(_) => Err(TreeError::not_supported(path)),
                Err(e) => Err(e),
            };
        }
        let value = value.trim();
        let old = self.iscsi.driver_attrs();
        self.iscsi.remove_driver_attr(attr, None);
        if value.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.iscsi.set_driver_attr(attr, value) {
            for (n, v) in old.iter().filter(|(n, _)| n == attr) {
                let _ = self.iscsi.set_driver_attr(n, v);
            }
            return Err(err(e));
        }
        log::info!("driver {DRIVER}: {attr} set");
        Ok(())
    }

    fn write_target_attr(
        &self,
        path: &MgmtPath,
        t: &Target,
        rest: &[&str],
        value: &str,
    ) -> Result<(), TreeError> {
        let err = |m: String| TreeError(format!("{path}: {m}"));
        let v = value.trim();
        match rest {
            ["addr_method"] => {
                *t.addr_method.lock() = parse_addr_method(path, v)?;
                Ok(())
            }
            ["ini_groups", g, "addr_method"] => {
                let m = parse_addr_method(path, v)?;
                let mut acl = t.acl.lock();
                acl.group_mut(g)
                    .map_err(|_| TreeError::not_found(path))?
                    .addr_method = Some(m);
                Ok(())
            }
            ["sessions", s, "force_close"] => {
                let (_, sess) = session_names(t)
                    .into_iter()
                    .find(|(n, _)| n == s)
                    .ok_or_else(|| TreeError::not_found(path))?;
                log::info!("target {}: closing session {s}", t.name);
                sess.events().close();
                Ok(())
            }
            ["sessions", s, attr] if SESSION_COUNTERS.contains(attr) => {
                let (_, sess) = session_names(t)
                    .into_iter()
                    .find(|(n, _)| n == s)
                    .ok_or_else(|| TreeError::not_found(path))?;
                if v.trim() != "0" {
                    return Err(err(format!(
                        "{path}: only 0 may be written (it resets the session's statistics)"
                    )));
                }
                sess.stats.reset();
                Ok(())
            }
            [attr] if target_param_default(attr).is_some() => {
                if v == ":default:" {
                    set_single_attr(t, attr, None);
                } else {
                    scst_iscsi::validate_target_attr(attr, v)
                        .map_err(|e| err(format!("target {}: {e}", t.name)))?;
                    set_single_attr(t, attr, Some(v));
                }
                log::info!("target {}: {attr} set (new sessions)", t.name);
                Ok(())
            }
            [attr]
                if TARGET_DYN_ATTRS
                    .iter()
                    .any(|a| attr.trim_end_matches(|c: char| c.is_ascii_digit()) == *a) =>
            {
                Err(err(format!(
                    "{attr} is changed with add_target_attribute/del_target_attribute on \
                     targets/{DRIVER}/mgmt"
                )))
            }
            _ => match self.read(path) {
                // It exists: writing it just is not possible yet.
                Ok(_) => Err(TreeError::not_supported(path)),
                Err(e) => Err(e),
            },
        }
    }

    fn write_inner(&self, path: &MgmtPath, value: &str) -> Result<(), TreeError> {
        let parts = path.components();
        let parts = self.resolve(&parts);
        let handler_of = |d: &str| self.scst.device(d).ok().map(|e| e.dev.handler_name());
        match scst_mgmt::apply::check_write(&parts, value, handler_of) {
            WriteCheck::Proceed => {}
            WriteCheck::AlreadyInEffect => return Ok(()),
            WriteCheck::Refused(why) => return Err(TreeError(format!("{path}: {why}"))),
        }
        match parts.as_slice() {
            ["handlers", h, "mgmt"] if Self::handler_exists(h) => {
                self.write_handler_mgmt(path, h, value)
            }
            ["handlers", h, "pr_dump_dir"]
                if scst_mgmt::attrs::handler_attr(h, "pr_dump_dir").is_some() =>
            {
                let dir = value.trim();
                if !dir.is_empty() && !dir.starts_with('/') {
                    return Err(TreeError(format!(
                        "{path}: '{dir}' is not an absolute path"
                    )));
                }
                self.scst.set_pr_dump_dir(h, Some(dir.into()));
                Ok(())
            }
            ["devices", d, "pr_state"] => {
                let d = self.device(path, d)?;
                d.import_pr_state(value)
                    .map_err(|e| TreeError(format!("{path}: {e}")))
            }
            ["devices", d, attr] => {
                let d = self.device(path, d)?;
                if !matches!(*attr, "handler" | "type")
                    && d.dev.attributes().iter().any(|(n, _, _)| n == attr)
                {
                    self.scst
                        .set_device_attr(d.name(), attr, value.trim_end_matches('\n'))
                        .map(|effect| log::info!("device {}: {attr} set ({effect:?})", d.name()))
                        .map_err(|e| TreeError(format!("{path}: {e}")))
                } else {
                    Err(TreeError(format!("{path}: no such writable attribute")))
                }
            }
            ["async_lun_replace"] => {
                self.scst.set_async_lun_replace(bool01(path, value)?);
                Ok(())
            }
            ["threads"] => Err(TreeError(format!(
                "{path}: the I/O thread pool is sized at start; restart scstd with \
                 --io-threads or the configuration's threads attribute"
            ))),
            ["device_groups", rest @ ..] => self.write_device_groups(path, rest, value),
            ["targets", DRIVER, "mgmt"] => self.write_driver_mgmt(path, value),
            ["targets", DRIVER, "enabled"] => {
                self.iscsi.set_enabled(bool01(path, value)?);
                Ok(())
            }
            ["targets", DRIVER, limit @ ("login_timeout" | "max_open_connections")] => self
                .iscsi
                .set_driver_attr(limit, value.trim())
                .map_err(|e| TreeError(format!("{path}: {e}"))),
            ["targets", DRIVER, attr] if self.scst.target(DRIVER, attr).is_none() => {
                self.write_driver_attr(path, attr, value)
            }
            ["targets", DRIVER, t, rest @ ..] => {
                let target = self.target(path, t)?;
                match rest {
                    ["enabled"] => {
                        target.set_enabled(bool01(path, value)?);
                        log::info!("target {t}: enabled={}", u8::from(target.enabled()));
                        Ok(())
                    }
                    ["rel_tgt_id"] => {
                        let id = value
                            .trim()
                            .parse::<u16>()
                            .map_err(|_| TreeError(format!("{path}: '{value}' is not 1..65535")))?;
                        self.scst
                            .set_rel_tgt_id(&target, id)
                            .map_err(|e| TreeError(format!("{path}: {e}")))
                    }
                    ["luns", "mgmt"] => self.write_luns_mgmt(path, &target, None, value),
                    ["ini_groups", "mgmt"] => self.write_ini_groups_mgmt(path, &target, value),
                    ["ini_groups", g, "luns", "mgmt"] => {
                        self.write_luns_mgmt(path, &target, Some(g), value)
                    }
                    ["ini_groups", g, "initiators", "mgmt"] => {
                        self.write_initiators_mgmt(path, &target, g, value)
                    }
                    _ => self.write_target_attr(path, &target, rest, value),
                }
            }
            _ => match self.read(path) {
                Ok(_) => Err(TreeError::not_supported(path)),
                Err(e) => Err(e),
            },
        }
    }
}

impl MgmtTree for ScstTree {
    fn read(&self, path: &MgmtPath) -> Result<String, TreeError> {
        let parts = path.components();
        let parts = self.resolve(&parts);
        match parts.as_slice() {
            ["version"] => Ok(format!("scst-rs {}", env!("CARGO_PKG_VERSION"))),
            ["setup_id"] => Ok(with_key(
                format!("{:#x}", self.setup_id),
                self.setup_id != 0,
            )),
            ["threads"] => Ok(with_key(self.io_threads.0.to_string(), self.io_threads.1)),
            ["async_lun_replace"] => {
                let on = self.scst.async_lun_replace();
                Ok(with_key(u8::from(on).to_string(), on))
            }
            ["last_sysfs_mgmt_res"] => Ok(self.last_result.load(Ordering::Relaxed).to_string()),
            ["device_groups", rest @ ..] => self.read_device_groups(path, rest),
            ["handlers", h, file] if Self::handler_exists(h) => match *file {
                "mgmt" => Ok(command::handler_help(scst_vdisk::creation_params(h), &[])),
                "type" => Ok(type_text(if *h == "vcdrom" { 5 } else { 0 })),
                "pr_dump_dir" if scst_mgmt::attrs::handler_attr(h, file).is_some() => {
                    let dir = self.scst.pr_dump_dir(h);
                    let set = dir.is_some();
                    Ok(with_key(
                        dir.map(|d| d.display().to_string()).unwrap_or_default(),
                        set,
                    ))
                }
                _ => Err(TreeError::not_found(path)),
            },
            ["devices", d, attr] => {
                let d = self.device(path, d)?;
                match *attr {
                    "handler" => Ok(d.dev.handler_name().to_string()),
                    "type" => Ok(type_text(d.dev.scsi_type())),
                    "pr_state" => Ok(d.pr_state_text()),
                    // A key attribute when it is not the default, so that write_config
                    // keeps the APTPL file where it is.
                    "pr_file_name" => {
                        let file = d.pr_file();
                        let default = self.scst.state_dir().map(|s| s.join("pr").join(d.name()));
                        let shown = file.as_ref().map(|f| f.display().to_string());
                        Ok(with_key(shown.unwrap_or_default(), file != default))
                    }
                    _ => d
                        .dev
                        .attributes()
                        .into_iter()
                        .find(|(n, _, _)| n == attr)
                        .map(|(_, v, key)| with_key(v, key))
                        .ok_or_else(|| TreeError::not_found(path)),
                }
            }
            ["targets", DRIVER, "mgmt"] => Ok(command::target_driver_help(
                &["rel_tgt_id"],
                DRIVER_DYN_ATTRS,
                TARGET_DYN_ATTRS,
            )),
            ["targets", DRIVER, "enabled"] => {
                let on = self.iscsi.enabled();
                Ok(with_key(u8::from(on).to_string(), on))
            }
            // Connection limits (set in scst.conf) and live counters that show leaks.
            ["targets", DRIVER, "login_timeout"] => {
                let v = self.iscsi.login_timeout().as_secs();
                let key = v != scst_iscsi::DEFAULT_LOGIN_TIMEOUT as u64;
                Ok(with_key(v.to_string(), key))
            }
            ["targets", DRIVER, "max_open_connections"] => {
                let v = self.iscsi.max_open_connections();
                let key = v != scst_iscsi::DEFAULT_MAX_OPEN_CONNECTIONS;
                Ok(with_key(v.to_string(), key))
            }
            ["targets", DRIVER, "open_connections"] => {
                Ok(self.iscsi.open_connections().to_string())
            }
            ["targets", DRIVER, "active_commands"] => Ok(self.iscsi.active_commands().to_string()),
            ["targets", DRIVER, "data_buffer_bytes"] => {
                Ok(self.iscsi.data_buffer_bytes().to_string())
            }
            ["active_sessions"] => Ok(scst_core::session::live_counts().0.to_string()),
            ["active_tgt_devs"] => Ok(scst_core::session::live_counts().1.to_string()),
            ["targets", DRIVER, t, rest @ ..] if !rest.is_empty() => {
                let target = self.target(path, t)?;
                self.read_target(path, &target, rest)
            }
            ["targets", DRIVER, attr] => instance_names(&self.iscsi.driver_attrs())
                .into_iter()
                .find(|(n, _)| n == attr)
                // Driver attributes only exist when configured: always saved.
                .map(|(_, v)| with_key(v, true))
                .ok_or_else(|| TreeError::not_found(path)),
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn list(&self, path: &MgmtPath) -> Result<Vec<String>, TreeError> {
        let parts = path.components();
        let parts = self.resolve(&parts);
        let dirs = |names: Vec<String>| names.into_iter().map(|n| format!("{n}/")).collect();
        match parts.as_slice() {
            [] => Ok([
                "version",
                "setup_id",
                "threads",
                "async_lun_replace",
                "last_sysfs_mgmt_res",
                "active_sessions",
                "active_tgt_devs",
                "handlers/",
                "devices/",
                "targets/",
                "device_groups/",
            ]
            .map(String::from)
            .to_vec()),
            ["handlers"] => Ok(dirs(
                scst_vdisk::handler_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            )),
            ["handlers", h] if Self::handler_exists(h) => {
                let mut v = vec!["mgmt".to_string(), "type".to_string()];
                if scst_mgmt::attrs::handler_attr(h, "pr_dump_dir").is_some() {
                    v.push("pr_dump_dir".to_string());
                }
                v.extend(
                    self.scst
                        .devices()
                        .iter()
                        .filter(|d| d.dev.handler_name() == *h)
                        .map(|d| format!("{}/", d.name())),
                );
                Ok(v)
            }
            ["devices"] => Ok(dirs(
                self.scst
                    .devices()
                    .iter()
                    .map(|d| d.name().to_string())
                    .collect(),
            )),
            ["devices", d] => {
                let d = self.device(path, d)?;
                let mut v = vec!["handler".to_string(), "type".to_string()];
                v.extend(d.dev.attributes().into_iter().map(|(n, _, _)| n));
                v.push("pr_file_name".to_string());
                v.push("pr_state".to_string());
                Ok(v)
            }
            ["targets"] => Ok(vec![format!("{DRIVER}/")]),
            ["targets", DRIVER] => {
                let mut v = vec!["mgmt".to_string(), "enabled".to_string()];
                v.extend(
                    [
                        "login_timeout",
                        "max_open_connections",
                        "open_connections",
                        "active_commands",
                        "data_buffer_bytes",
                    ]
                    .map(String::from),
                );
                v.extend(
                    instance_names(&self.iscsi.driver_attrs())
                        .into_iter()
                        .map(|(n, _)| n),
                );
                v.extend(
                    self.scst
                        .targets(DRIVER)
                        .iter()
                        .map(|t| format!("{}/", t.name)),
                );
                Ok(v)
            }
            ["targets", DRIVER, t, rest @ ..] => {
                let target = self.target(path, t)?;
                self.list_target(path, &target, rest)
            }
            ["device_groups", rest @ ..] => self.list_device_groups(path, rest),
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn write(&self, path: &MgmtPath, value: &str) -> Result<(), TreeError> {
        let r = self.write_inner(path, value);
        let code = match &r {
            Ok(()) => 0,
            Err(e) => errno_of(e),
        };
        self.last_result.store(code, Ordering::Relaxed);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_attributes_and_parameters() {
        let t = tree();
        let drv = p("targets/iscsi/mgmt");
        t.write(&drv, "add_attribute IncomingUser joe 12charsecret")
            .unwrap();
        t.write(&drv, "add_attribute IncomingUser ann 12charsecre2")
            .unwrap();
        assert!(t
            .write(&drv, "add_attribute IncomingUser joe 12charsecret")
            .unwrap_err()
            .0
            .contains("already exists"));
        // The driver's own validator refuses short secrets.
        assert!(t
            .write(&drv, "add_attribute IncomingUser bob short")
            .is_err());
        assert!(t.write(&drv, "add_attribute tid 3").is_err());
        let l = t.list(&p("targets/iscsi")).unwrap();
        assert!(
            l.contains(&"IncomingUser".into()) && l.contains(&"IncomingUser1".into()),
            "{l:?}"
        );
        assert_eq!(
            t.read(&p("targets/iscsi/IncomingUser1")).unwrap(),
            "ann 12charsecre2\n[key]"
        );
        assert_eq!(
            t.iscsi.driver_attrs(),
            vec![
                ("IncomingUser".to_string(), "joe 12charsecret".to_string()),
                ("IncomingUser".to_string(), "ann 12charsecre2".to_string())
            ]
        );
        t.write(&drv, "del_attribute IncomingUser joe 12charsecret")
            .unwrap();
        assert!(t
            .write(&drv, "del_attribute IncomingUser joe 12charsecret")
            .is_err());
        t.write(&p("targets/iscsi/iSNSServer"), "192.0.2.1")
            .unwrap();
        assert_eq!(
            t.read(&p("targets/iscsi/iSNSServer")).unwrap(),
            "192.0.2.1\n[key]"
        );
        t.write(&p("targets/iscsi/iSNSServer"), "").unwrap();
        assert!(t.read(&p("targets/iscsi/iSNSServer")).is_err());

        t.write(
            &drv,
            "add_target iqn.x:t QueuedCommands=16; addr_method=LUN",
        )
        .unwrap();
        let tgt = t.scst.target("iscsi", "iqn.x:t").unwrap();
        assert_eq!(
            t.read(&p("targets/iscsi/iqn.x:t/QueuedCommands")).unwrap(),
            "16\n[key]"
        );
        assert_eq!(
            t.read(&p("targets/iscsi/iqn.x:t/addr_method")).unwrap(),
            "LUN\n[key]"
        );
        t.write(&drv, "add_target_attribute iqn.x:t allowed_portal 10.0.0.*")
            .unwrap();
        t.write(&drv, "add_target_attribute iqn.x:t allowed_portal !*")
            .unwrap();
        t.write(
            &drv,
            "add_target_attribute iqn.x:t OutgoingUser tgt 12charsecret",
        )
        .unwrap();
        t.write(
            &drv,
            "add_target_attribute iqn.x:t OutgoingUser tgt2 12charsecret",
        )
        .unwrap();
        assert_eq!(
            tgt.attr_values("allowed_portal"),
            vec!["10.0.0.*".to_string(), "!*".to_string()]
        );
        assert_eq!(
            tgt.attr_values("OutgoingUser"),
            vec!["tgt2 12charsecret".to_string()]
        );
        assert_eq!(
            t.read(&p("targets/iscsi/iqn.x:t/allowed_portal1")).unwrap(),
            "!*\n[key]"
        );
        t.write(&drv, "del_target_attribute iqn.x:t allowed_portal !*")
            .unwrap();
        assert!(t
            .write(&drv, "add_target_attribute iqn.x:nope allowed_portal x")
            .unwrap_err()
            .0
            .contains("does not exist"));
        assert!(t
            .write(&p("targets/iscsi/iqn.x:t/allowed_portal"), "x")
            .unwrap_err()
            .0
            .contains("add_target_attribute"));

        // Parameters: defaults, validated writes, :default:.
        let mrdsl = p("targets/iscsi/iqn.x:t/MaxRecvDataSegmentLength");
        assert_eq!(t.read(&mrdsl).unwrap(), "1048576");
        t.write(&mrdsl, "65536").unwrap();
        assert_eq!(t.read(&mrdsl).unwrap(), "65536\n[key]");
        assert_eq!(
            tgt.attr("MaxRecvDataSegmentLength").as_deref(),
            Some("65536")
        );
        assert!(t.write(&mrdsl, "100").is_err());
        assert_eq!(t.read(&mrdsl).unwrap(), "65536\n[key]");
        t.write(&mrdsl, ":default:").unwrap();
        assert_eq!(t.read(&mrdsl).unwrap(), "1048576");
        assert!(t
            .write(&p("targets/iscsi/iqn.x:t/HeaderDigest"), "MD5")
            .is_err());
    }

    #[test]
    fn device_groups_through_the_tree() {
        let t = tree();
        t.write(&p("handlers/vdisk_nullio/mgmt"), "add_device d1")
            .unwrap();
        t.write(&p("targets/iscsi/mgmt"), "add_target iqn.x:a")
            .unwrap();
        t.write(&p("device_groups/mgmt"), "create dg").unwrap();
        t.write(&p("device_groups/dg/devices/mgmt"), "add d1")
            .unwrap();
        let tgs = p("device_groups/dg/target_groups/mgmt");
        t.write(&tgs, "create local").unwrap();
        t.write(&tgs, "create remote").unwrap();
        t.write(&p("device_groups/dg/target_groups/remote/group_id"), "7")
            .unwrap();
        t.write(
            &p("device_groups/dg/target_groups/local/mgmt"),
            "add iqn.x:a",
        )
        .unwrap();
        // A remote target needs its rel_tgt_id before it can be a member.
        assert!(t
            .write(
                &p("device_groups/dg/target_groups/remote/mgmt"),
                "add iqn.x:b"
            )
            .is_err());
        t.write(
            &p("device_groups/dg/target_groups/remote/mgmt"),
            "add iqn.x:b rel_tgt_id=9",
        )
        .unwrap();
        t.write(
            &p("device_groups/dg/target_groups/remote/iqn.x:b/rel_tgt_id"),
            "10",
        )
        .unwrap();
        assert_eq!(
            t.read(&p(
                "device_groups/dg/target_groups/remote/iqn.x:b/rel_tgt_id"
            ))
            .unwrap(),
            "10\n[key]"
        );
        t.write(&p("device_groups/dg/target_groups/local/state"), "standby")
            .unwrap();
        t.write(&p("device_groups/dg/target_groups/local/preferred"), "1")
            .unwrap();
        assert!(t
            .write(&p("device_groups/dg/target_groups/local/state"), "sleepy")
            .is_err());
        assert_eq!(t.list(&p("device_groups")).unwrap(), vec!["mgmt", "dg/"]);
        assert_eq!(
            t.list(&p("device_groups/dg/devices")).unwrap(),
            vec!["mgmt", "d1"]
        );
        assert_eq!(
            t.list(&p("device_groups/dg/target_groups/local")).unwrap(),
            vec!["mgmt", "group_id", "preferred", "state", "iqn.x:a/"]
        );
        let rd = |s: &str| t.read(&p(s)).unwrap();
        assert_eq!(
            rd("device_groups/dg/target_groups/local/group_id"),
            "1\n[key]"
        );
        assert_eq!(
            rd("device_groups/dg/target_groups/remote/group_id"),
            "7\n[key]"
        );
        assert_eq!(
            rd("device_groups/dg/target_groups/local/state"),
            "standby\n[key]"
        );
        assert_eq!(
            rd("device_groups/dg/target_groups/local/preferred"),
            "1\n[key]"
        );
        let rel = rd("device_groups/dg/target_groups/local/iqn.x:a/rel_tgt_id");
        assert_eq!(rel, "1", "a local member's id is its live one, not saved");
        t.write(
            &p("device_groups/dg/target_groups/local/mgmt"),
            "del iqn.x:a",
        )
        .unwrap();
        t.write(&tgs, "del remote").unwrap();
        t.write(&p("device_groups/dg/devices/mgmt"), "del d1")
            .unwrap();
        t.write(&p("device_groups/mgmt"), "del dg").unwrap();
        assert_eq!(t.list(&p("device_groups")).unwrap(), vec!["mgmt"]);
    }

    fn tree() -> ScstTree {
        let scst = Scst::new(1);
        let iscsi = IscsiDriver::new(scst.clone());
        ScstTree::new(scst, iscsi, 0)
    }

    fn p(s: &str) -> MgmtPath {
        MgmtPath::parse(s).unwrap()
    }

    #[test]
    fn device_target_lun_through_the_tree() {
        let t = tree();
        t.write(
            &p("handlers/vdisk_nullio/mgmt"),
            "add_device null1 size_mb=16",
        )
        .unwrap();
        assert_eq!(t.read(&p("devices/null1/handler")).unwrap(), "vdisk_nullio");
        assert_eq!(
            t.read(&p("handlers/vdisk_nullio/null1/handler")).unwrap(),
            "vdisk_nullio"
        );
        assert!(t
            .list(&p("devices"))
            .unwrap()
            .contains(&"null1/".to_string()));
        t.write(&p("targets/iscsi/mgmt"), "add_target iqn.x:t1")
            .unwrap();
        t.write(&p("targets/iscsi/iqn.x:t1/luns/mgmt"), "add null1 0")
            .unwrap();
        let e = t
            .write(&p("targets/iscsi/iqn.x:t1/luns/mgmt"), "add null1 0")
            .unwrap_err();
        assert!(
            e.0.contains("targets/iscsi/iqn.x:t1/luns/mgmt") && e.0.contains("LUN '0'"),
            "{e}"
        );
        assert_eq!(
            t.list(&p("targets/iscsi/iqn.x:t1/luns")).unwrap(),
            vec!["mgmt", "0/"]
        );
        assert_eq!(
            t.read(&p("targets/iscsi/iqn.x:t1/luns/0/device")).unwrap(),
            "null1"
        );
        t.write(&p("targets/iscsi/iqn.x:t1/enabled"), "1").unwrap();
        assert_eq!(
            t.read(&p("targets/iscsi/iqn.x:t1/enabled")).unwrap(),
            "1\n[key]"
        );
        assert!(t
            .write(&p("targets/iscsi/iqn.x:t1/enabled"), "yes")
            .is_err());
    }

    #[test]
    fn unsupported_and_missing_are_errors() {
        let t = tree();
        t.write(&p("targets/iscsi/mgmt"), "add_target t").unwrap();
        assert_eq!(
            t.write(&p("handlers/vdisk_nullio/mgmt"), "add_attribute a b")
                .unwrap_err()
                .0,
            "handlers/vdisk_nullio/mgmt: add_attribute: vdisk_nullio declares no optional attributes"
        );
        assert_eq!(t.read(&p("last_sysfs_mgmt_res")).unwrap(), "-22");
        assert!(t
            .write(
                &p("handlers/vdisk_fileio/mgmt"),
                "add_device_attribute d t10_dev_id x"
            )
            .unwrap_err()
            .0
            .ends_with("add_device_attribute: vdisk_fileio declares no optional attributes"));
        // An attribute the tree does not take writes to (here a read-only one).
        assert_eq!(
            t.write(&p("version"), "9").unwrap_err().0,
            "version: not supported yet"
        );
        assert_eq!(t.read(&p("last_sysfs_mgmt_res")).unwrap(), "-38");
        assert_eq!(
            t.write(&p("targets/iscsi/t/rel_tgt_id"), "").unwrap_err().0,
            "targets/iscsi/t/rel_tgt_id: '' is not 1..65535"
        );
        assert!(t
            .write(&p("targets/iscsi/t/addr_method"), "SIDEWAYS")
            .unwrap_err()
            .0
            .contains("PERIPHERAL, FLAT or LUN"));
        assert_eq!(t.read(&p("last_sysfs_mgmt_res")).unwrap(), "-22");
        t.write(&p("targets/iscsi/t/addr_method"), "flat").unwrap();
        assert_eq!(t.read(&p("last_sysfs_mgmt_res")).unwrap(), "0");
        assert_eq!(
            t.read(&p("targets/iscsi/t/addr_method")).unwrap(),
            "FLAT\n[key]"
        );
        assert!(t.read(&p("nope")).unwrap_err().0.contains("no such"));
        assert!(t
            .write(&p("handlers/vdisk_nullio/mgmt"), "bogus")
            .unwrap_err()
            .0
            .starts_with("handlers/vdisk_nullio/mgmt: unknown command 'bogus'"));
        assert!(t
            .read(&p("handlers/vdisk_fileio/mgmt"))
            .unwrap()
            .contains("filename"));
        assert_eq!(t.read(&p("targets/iscsi/enabled")).unwrap(), "0");
    }

    #[test]
    fn reconfiguration_through_the_tree() {
        let t = tree();
        let lerr = |r: Result<(), TreeError>| r.unwrap_err().0;
        for d in ["d1", "d2"] {
            t.write(&p("handlers/vdisk_nullio/mgmt"), &format!("add_device {d}"))
                .unwrap();
        }
        t.write(&p("targets/iscsi/mgmt"), "add_target t").unwrap();
        let luns = p("targets/iscsi/t/luns/mgmt");
        t.write(&luns, "add d1 0").unwrap();
        t.write(&luns, "add d2 1").unwrap();
        t.write(&luns, "replace d2 0").unwrap();
        assert_eq!(t.read(&p("targets/iscsi/t/luns/0/device")).unwrap(), "d2");
        t.write(&luns, "replace_no_ua d1 0 read_only=1").unwrap();
        assert_eq!(t.read(&p("targets/iscsi/t/luns/0/read_only")).unwrap(), "1");
        t.write(&luns, "del 1").unwrap();
        let e = lerr(t.write(&luns, "del 1"));
        assert!(
            e.starts_with("targets/iscsi/t/luns/mgmt: ") && e.contains("'1'"),
            "{e}"
        );
        t.write(&luns, "clear").unwrap();
        assert_eq!(t.list(&p("targets/iscsi/t/luns")).unwrap(), vec!["mgmt"]);

        // Groups and initiators.
        let groups = p("targets/iscsi/t/ini_groups/mgmt");
        t.write(&groups, "create g1").unwrap();
        t.write(&groups, "create g2").unwrap();
        assert!(lerr(t.write(&groups, "create g1")).contains("ini_groups/g1' already exists"));
        let inits = p("targets/iscsi/t/ini_groups/g1/initiators/mgmt");
        t.write(&inits, "add iqn.a:*").unwrap();
        t.write(&inits, "add iqn.b").unwrap();
        t.write(&inits, "move iqn.b g2").unwrap();
        assert_eq!(
            t.list(&p("targets/iscsi/t/ini_groups/g2/initiators"))
                .unwrap(),
            vec!["mgmt", "iqn.b"]
        );
        t.write(&inits, "del iqn.a:*").unwrap();
        t.write(&p("targets/iscsi/t/ini_groups/g2/initiators/mgmt"), "clear")
            .unwrap();
        t.write(&p("targets/iscsi/t/ini_groups/g1/luns/mgmt"), "add d1 0")
            .unwrap();
        let e = lerr(t.write(&p("handlers/vdisk_nullio/mgmt"), "del_device d1"));
        assert!(
            e.starts_with("handlers/vdisk_nullio/mgmt: device 'd1' is in use"),
            "{e}"
        );
        let e = lerr(t.write(&p("handlers/vdisk_fileio/mgmt"), "del_device d2"));
        assert!(e.contains("vdisk_nullio"), "{e}");
        t.write(&groups, "del g1").unwrap();
        t.write(&groups, "del g2").unwrap();
        t.write(&p("handlers/vdisk_nullio/mgmt"), "del_device d1")
            .unwrap();
        assert_eq!(t.list(&p("devices")).unwrap(), vec!["d2/"]);

        // Device attributes go through the core (Scst::set_device_attr): identity
        // attributes change live; creation-only ones are refused, naming both.
        t.write(&p("devices/d2/prod_id"), "NEWPROD").unwrap();
        assert!(t
            .read(&p("devices/d2/prod_id"))
            .unwrap()
            .starts_with("NEWPROD"));
        assert_eq!(
            lerr(t.write(&p("devices/d2/blocksize"), "4096")),
            "devices/d2/blocksize: device d2: attribute blocksize: read-only (set at creation)"
        );
        assert!(lerr(t.write(&p("devices/d2/handler"), "x")).contains("no such writable"));

        // Root attribute.
        assert_eq!(t.read(&p("threads")).unwrap(), "8");
        assert!(t.write(&p("threads"), "4").is_err());
        assert_eq!(t.read(&p("async_lun_replace")).unwrap(), "0");
        t.write(&p("async_lun_replace"), "1").unwrap();
        assert_eq!(t.read(&p("async_lun_replace")).unwrap(), "1\n[key]");
        assert!(lerr(t.write(&p("async_lun_replace"), "2")).contains("must be 0 or 1"));
        t.write(&p("async_lun_replace"), "0").unwrap();

        t.write(&p("targets/iscsi/mgmt"), "del_target t").unwrap();
        assert!(lerr(t.write(&p("targets/iscsi/mgmt"), "del_target t"))
            .contains("target 'iscsi/t' does not exist"));
        assert!(!t
            .list(&p("targets/iscsi"))
            .unwrap()
            .iter()
            .any(|e| e.ends_with('/')));
    }
}
