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
use std::sync::Arc;

use anyhow::{bail, Context};
use scst_core::{LunSet, Scst, Target};
use scst_iscsi::IscsiDriver;
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
}

const DRIVER: &str = "iscsi";
/// iSCSI's multi-value attributes (spec 2.6): driver level and target level.
const DRIVER_DYN_ATTRS: &[&str] = &["IncomingUser", "OutgoingUser"];
const TARGET_DYN_ATTRS: &[&str] = &["IncomingUser", "OutgoingUser", "allowed_portal"];

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

fn type_text(t: u8) -> String {
    let desc = match t {
        0 => "Direct-access device (e.g., magnetic disk)",
        5 => "CD-ROM device",
        _ => "unknown",
    };
    format!("{t} - {desc}")
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
            ["addr_method"] => Ok(t.addr_method.lock().name().to_string()),
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
            ["sessions", s, "initiator_name"] => session_names(t)
                .into_iter()
                .find(|(n, _)| n == s)
                .map(|(_, s)| s.initiator_name.clone())
                .ok_or_else(|| TreeError::not_found(path)),
            [attr] => instance_names(&t.attrs.lock())
                .into_iter()
                .find(|(n, _)| n == attr)
                // Driver attributes only exist when configured: always saved.
                .map(|(_, v)| with_key(v, true))
                .ok_or_else(|| TreeError::not_found(path)),
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
                v.extend(instance_names(&t.attrs.lock()).into_iter().map(|(n, _)| n));
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
                    [] => Ok(vec!["luns/".into(), "initiators/".into()]),
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
            ["sessions", s] if session_names(t).iter().any(|(n, _)| n == s) => {
                Ok(vec!["initiator_name".into()])
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
            MgmtCommand::AddDevice { name, params } => {
                let dev = scst_vdisk::create_device(handler, &name, &params, self.setup_id)
                    .map_err(|e| err(e.to_string()))?;
                self.scst.add_device(dev).map_err(|e| err(e.to_string()))?;
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
                for (k, v) in params {
                    if k == "rel_tgt_id" {
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
                log::info!("target {name} added");
                Ok(())
            }
            // The iSCSI driver keeps nothing per target besides its sessions, which the
            // core closes; each connection unregisters its session as it ends.
            MgmtCommand::DelTarget { name } => self
                .scst
                .del_target(DRIVER, &name)
                .map_err(|e| err(e.to_string())),
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
            ["async_lun_replace"] => {
                let on = self.scst.async_lun_replace();
                Ok(with_key(u8::from(on).to_string(), on))
            }
            ["handlers", h, file] if Self::handler_exists(h) => match *file {
                "mgmt" => Ok(command::handler_help(scst_vdisk::creation_params(h), &[])),
                "type" => Ok(type_text(if *h == "vcdrom" { 5 } else { 0 })),
                _ => Err(TreeError::not_found(path)),
            },
            ["devices", d, attr] => {
                let d = self.device(path, d)?;
                match *attr {
                    "handler" => Ok(d.dev.handler_name().to_string()),
                    "type" => Ok(type_text(d.dev.scsi_type())),
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
            ["targets", DRIVER, t, rest @ ..] if !rest.is_empty() => {
                let target = self.target(path, t)?;
                self.read_target(path, &target, rest)
            }
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
                "async_lun_replace",
                "handlers/",
                "devices/",
                "targets/",
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
                Ok(v)
            }
            ["targets"] => Ok(vec![format!("{DRIVER}/")]),
            ["targets", DRIVER] => {
                let mut v = vec!["mgmt".to_string(), "enabled".to_string()];
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
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn write(&self, path: &MgmtPath, value: &str) -> Result<(), TreeError> {
        let parts = path.components();
        let parts = self.resolve(&parts);
        match parts.as_slice() {
            ["handlers", h, "mgmt"] if Self::handler_exists(h) => {
                self.write_handler_mgmt(path, h, value)
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
            ["targets", DRIVER, "mgmt"] => self.write_driver_mgmt(path, value),
            ["targets", DRIVER, "enabled"] => {
                self.iscsi.set_enabled(bool01(path, value)?);
                Ok(())
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
                    _ => match self.read(path) {
                        // It exists: writing it just is not possible yet.
                        Ok(_) => Err(TreeError::not_supported(path)),
                        Err(e) => Err(e),
                    },
                }
            }
            _ => match self.read(path) {
                Ok(_) => Err(TreeError::not_supported(path)),
                Err(e) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> ScstTree {
        let scst = Scst::new(1);
        let iscsi = IscsiDriver::new(scst.clone());
        ScstTree {
            scst,
            iscsi,
            setup_id: 0,
        }
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
            t.write(&p("targets/iscsi/mgmt"), "add_attribute IncomingUser u p")
                .unwrap_err()
                .0,
            "targets/iscsi/mgmt: not supported yet"
        );
        assert_eq!(
            t.write(&p("targets/iscsi/t/rel_tgt_id"), "").unwrap_err().0,
            "targets/iscsi/t/rel_tgt_id: '' is not 1..65535"
        );
        assert_eq!(
            t.write(&p("targets/iscsi/t/addr_method"), "FLAT")
                .unwrap_err()
                .0,
            "targets/iscsi/t/addr_method: not supported yet"
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
        assert_eq!(t.read(&p("async_lun_replace")).unwrap(), "0");
        t.write(&p("async_lun_replace"), "1").unwrap();
        assert_eq!(t.read(&p("async_lun_replace")).unwrap(), "1\n[key]");
        assert!(lerr(t.write(&p("async_lun_replace"), "2")).contains("must be 0 or 1"));
        t.write(&p("async_lun_replace"), "0").unwrap();

        t.write(&p("targets/iscsi/mgmt"), "del_target t").unwrap();
        assert!(lerr(t.write(&p("targets/iscsi/mgmt"), "del_target t"))
            .contains("target 'iscsi/t' does not exist"));
        assert_eq!(
            t.list(&p("targets/iscsi")).unwrap(),
            vec!["mgmt", "enabled"]
        );
    }
}
