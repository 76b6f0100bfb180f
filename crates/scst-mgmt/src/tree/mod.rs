//! The management tree (docs/scst-reference.md 2.2): SCST's sysfs layout over the core, served by
//! [`ScstTree`] through [`MgmtTree`]'s read, list and write.
//!
//! Each node kind has its own module holding its read, list and write together, so the
//! shape of a directory is written once: [`root`], [`handler`], [`device`],
//! [`target_driver`], [`target`], [`luns`], [`ini_group`], [`session`] and
//! [`device_group`] (with its target groups). Target drivers and dev handlers are
//! reached only through the core's registered [`scst_core::TargetDriver`] and
//! [`scst_core::DevHandler`], so a driver appears under `targets/` by registering.
//!
//! Every failure keeps its [`ErrorKind`] up to the socket; `last_sysfs_mgmt_res` reports
//! the errno of that kind.

pub mod device;
pub mod device_group;
pub mod handler;
pub mod ini_group;
pub mod luns;
pub mod root;
pub mod session;
pub mod target;
pub mod target_driver;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use scst_core::{AttrError, MgmtError, Scst};

use crate::apply::{check_write, WriteCheck};
use crate::protocol::{ErrorKind, MgmtPath, MgmtTree, TreeError};
use crate::trace_level::{Component, TraceLevels};

/// The root `threads` when neither the configuration nor `--io-threads` chose it.
pub const DEFAULT_IO_THREADS: usize = 8;

/// The management tree over one core.
pub struct ScstTree {
    scst: Arc<Scst>,
    /// The root `setup_id`, fixed at start-up (devices created later use it too).
    setup_id: u64,
    /// `last_sysfs_mgmt_res`: 0 or -errno of the last write. Writes complete before
    /// they are answered, so this is never EAGAIN.
    last_result: AtomicI32,
    /// The root `threads`: the I/O pool's size, fixed at start, and whether the
    /// configuration (or `--io-threads`) chose it (then it is a key attribute).
    io_threads: (usize, bool),
    /// The `trace_level` masks (root, drivers, handlers); the daemon's logger observes them.
    trace: Arc<TraceLevels>,
}

impl ScstTree {
    /// The tree over `scst`, whose target drivers and dev handlers are those registered
    /// with it (now or later).
    pub fn new(scst: Arc<Scst>, setup_id: u64) -> ScstTree {
        ScstTree {
            scst,
            setup_id,
            last_result: AtomicI32::new(0),
            io_threads: (DEFAULT_IO_THREADS, false),
            trace: Arc::default(),
        }
    }

    /// The `trace_level` masks, for the logger to observe.
    pub fn trace_levels(&self) -> &Arc<TraceLevels> {
        &self.trace
    }

    /// The component whose `trace_level` `parts` names, if it is one: the root's, a
    /// registered target driver's or dev handler's that SCST gives one.
    fn trace_component(&self, parts: &[&str]) -> Option<Component> {
        match parts {
            ["trace_level"] => Some(Component::Core),
            ["targets", d, "trace_level"] if self.scst.target_driver(d).is_some() => {
                Component::of_driver(d)
            }
            ["handlers", h, "trace_level"] if self.scst.dev_handler(h).is_some() => {
                Component::of_handler(h)
            }
            _ => None,
        }
    }

    pub fn with_io_threads(mut self, threads: usize, configured: bool) -> ScstTree {
        self.io_threads = (threads, configured);
        self
    }

    pub fn scst(&self) -> &Arc<Scst> {
        &self.scst
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

    fn write_inner(&self, path: &MgmtPath, value: &str) -> Result<(), TreeError> {
        let parts = path.components();
        let parts = self.resolve(&parts);
        // Attributes scst-rs does not implement are refused here, before any node sees
        // the write, with the same words a configuration load uses.
        let handler_of = |d: &str| self.scst.device(d).ok().map(|e| e.dev.handler_name());
        match check_write(&parts, value, handler_of) {
            WriteCheck::Proceed => {}
            WriteCheck::AlreadyInEffect => return Ok(()),
            WriteCheck::Refused(why) => {
                return Err(TreeError::at(path, ErrorKind::NotSupported, why))
            }
        }
        if let Some(c) = self.trace_component(&parts) {
            return self
                .trace
                .write(c, value)
                .map_err(|e| TreeError::invalid(path, e));
        }
        match parts.as_slice() {
            [] => refuse_write(self, path),
            ["handlers", rest @ ..] => handler::write(self, path, rest, value),
            ["devices", rest @ ..] => device::write(self, path, rest, value),
            ["targets", rest @ ..] => target_driver::write(self, path, rest, value),
            ["device_groups", rest @ ..] => device_group::write(self, path, rest, value),
            [name] => root::write(self, path, name, value),
            _ => refuse_write(self, path),
        }
    }
}

impl MgmtTree for ScstTree {
    fn read(&self, path: &MgmtPath) -> Result<String, TreeError> {
        let parts = path.components();
        let parts = self.resolve(&parts);
        if let Some(c) = self.trace_component(&parts) {
            return Ok(self.trace.read(c));
        }
        match parts.as_slice() {
            ["handlers", rest @ ..] => handler::read(self, path, rest),
            ["devices", rest @ ..] => device::read(self, path, rest),
            ["targets", rest @ ..] => target_driver::read(self, path, rest),
            ["device_groups", rest @ ..] => device_group::read(self, path, rest),
            [name] => root::read(self, path, name),
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn list(&self, path: &MgmtPath) -> Result<Vec<String>, TreeError> {
        let parts = path.components();
        match self.resolve(&parts).as_slice() {
            [] => Ok(root::list()),
            ["handlers", rest @ ..] => handler::list(self, path, rest),
            ["devices", rest @ ..] => device::list(self, path, rest),
            ["targets", rest @ ..] => target_driver::list(self, path, rest),
            ["device_groups", rest @ ..] => device_group::list(self, path, rest),
            _ => Err(TreeError::not_found(path)),
        }
    }

    fn write(&self, path: &MgmtPath, value: &str) -> Result<(), TreeError> {
        let r = self.write_inner(path, value);
        let code = match &r {
            Ok(()) => 0,
            Err(e) => e.neg_errno(),
        };
        self.last_result.store(code, Ordering::Relaxed);
        r
    }
}

/// A write to a path no node takes writes at: an existing file is not writable yet,
/// anything else does not exist.
fn refuse_write(tree: &ScstTree, path: &MgmtPath) -> Result<(), TreeError> {
    match tree.read(path) {
        Ok(_) => Err(TreeError::not_supported(path)),
        Err(e) => Err(e),
    }
}

/// A core failure at `path`, keeping its kind.
fn core_error(path: &MgmtPath, e: MgmtError) -> TreeError {
    TreeError::at(path, kind_of(&e), e)
}

/// A core failure at `path` concerning `what` (e.g. "target t"), keeping its kind.
fn core_error_about(path: &MgmtPath, what: impl std::fmt::Display, e: MgmtError) -> TreeError {
    TreeError::at(path, kind_of(&e), format!("{what}: {e}"))
}

fn kind_of(e: &MgmtError) -> ErrorKind {
    match e {
        MgmtError::NotFound { .. } => ErrorKind::NotFound,
        MgmtError::Exists { .. } => ErrorKind::Exists,
        MgmtError::Busy { .. } => ErrorKind::Busy,
        MgmtError::Invalid(_) => ErrorKind::Invalid,
        MgmtError::NotSupported(_) => ErrorKind::NotSupported,
        MgmtError::Attribute(e) => match e {
            AttrError::NotWritable { .. } | AttrError::CreationOnly { .. } => ErrorKind::ReadOnly,
            AttrError::Invalid { .. } => ErrorKind::Invalid,
            AttrError::Busy { .. } => ErrorKind::Busy,
            // The value was acceptable; carrying it out failed (a file that will not
            // open, a flush): the operation's own failure.
            AttrError::Backend { .. } => ErrorKind::Internal,
        },
    }
}

/// `value`, marked `[key]` (saved by `-write_config`) when `key`.
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
        other => Err(TreeError::invalid(
            path,
            format!("'{other}' must be 0 or 1"),
        )),
    }
}

/// A relative target id or a target group id: 1..65535 (0 is refused by the core).
fn parse_id(path: &MgmtPath, v: &str) -> Result<u16, TreeError> {
    v.trim()
        .parse::<u16>()
        .map_err(|_| TreeError::invalid(path, format!("'{}' is not 1..65535", v.trim())))
}

fn type_text(t: u8) -> String {
    let desc = match t {
        0 => "Direct-access device (e.g., magnetic disk)",
        5 => "CD-ROM device",
        _ => "unknown",
    };
    format!("{t} - {desc}")
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

/// Whether `file` is an instance (`Name`, `Name1`...) of one of `attrs`.
fn is_instance_of_any(file: &str, attrs: &[&str]) -> bool {
    attrs
        .iter()
        .any(|a| file.trim_end_matches(|c: char| c.is_ascii_digit()) == *a)
}
