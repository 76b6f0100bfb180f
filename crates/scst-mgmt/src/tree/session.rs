//! `sessions/` of a target (docs/scst-reference.md 2.7, 6.7): one directory per session with the
//! core's attributes and counters, the transport's attributes (connection directories
//! among them) and `lun<N>/` per LUN.

use std::sync::Arc;

use scst_core::latency;
use scst_core::stats::Direction;
use scst_core::{Session, Target, TgtDev};

use super::{refuse_write, ScstTree};
use crate::protocol::{ErrorKind, MgmtPath, TreeError};

/// Statistics of a session (scst-reference 2.7, as for targets); writing 0 to one resets them.
const COUNTERS: &[&str] = &[
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

/// Counters of completed commands (docs/management.md, "Counters and latency"): by
/// direction, commands and kilobytes, and those that ended in a status other than
/// GOOD. They only grow (the metrics endpoint exports them). Shown per I_T_L nexus
/// (`sessions/<s>/lun<N>/`), and summed with gone nexuses in `statistics/` of devices
/// and targets.
pub(super) const IO_COUNTERS: &[&str] = &[
    "read_cmd_count",
    "read_io_count_kb",
    "write_cmd_count",
    "write_io_count_kb",
    "bidi_cmd_count",
    "bidi_io_count_kb",
    "none_cmd_count",
    "error_cmd_count",
];

/// Why an [`IO_COUNTERS`] file cannot be written.
pub(super) fn counter_is_read_only(path: &MgmtPath) -> TreeError {
    TreeError::at(
        path,
        ErrorKind::ReadOnly,
        "a counter of completed commands (it never goes back)",
    )
}

/// The counter `name` of [`IO_COUNTERS`] in `io`.
pub(super) fn io_counter(io: &scst_core::stats::IoSnapshot, name: &str) -> Option<u64> {
    if name == "error_cmd_count" {
        return Some(io.errors);
    }
    let dir = Direction::ALL.into_iter().find(|d| {
        name.strip_prefix(d.name())
            .is_some_and(|r| r.starts_with('_'))
    })?;
    match &name[dir.name().len()..] {
        "_cmd_count" => Some(io.cmds[dir.index()]),
        "_io_count_kb" if dir != Direction::None => Some(io.bytes[dir.index()] >> 10),
        _ => None,
    }
}

/// SCST's latency file names: `<n|r|w|b><size>` for each size class.
fn latency_files() -> Vec<String> {
    let mut v = Vec::new();
    for class in 0..latency::SIZE_CLASSES {
        for p in ['n', 'r', 'w', 'b'] {
            v.push(format!("{p}{}", latency::class_size(class)));
        }
    }
    v
}

/// (size class, table direction) of a latency file name.
fn latency_file(name: &str) -> Option<(usize, usize)> {
    let mut chars = name.chars();
    let p = chars.next()?;
    let dir = latency::TABLE_DIR_PREFIX.iter().position(|&c| c == p)?;
    let size: u64 = chars.as_str().parse().ok()?;
    let class = (0..latency::SIZE_CLASSES).find(|&c| latency::class_size(c) == size)?;
    Some((class, dir))
}

fn counter(s: &Session, name: &str) -> Option<u64> {
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

/// Session directory names: the initiator name, `_<n>` for later duplicates (scst-reference 2.7).
/// The metrics endpoint labels sessions with them too.
pub fn names(t: &Target) -> Vec<(String, Arc<Session>)> {
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

fn lookup(path: &MgmtPath, t: &Target, name: &str) -> Result<Arc<Session>, TreeError> {
    names(t)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .ok_or_else(|| TreeError::not_found(path))
}

fn session_lun(s: &Session, name: &str) -> Option<Arc<TgtDev>> {
    let n: u64 = name.strip_prefix("lun")?.parse().ok()?;
    s.luns().get(n).cloned()
}

pub(super) fn read(path: &MgmtPath, t: &Target, rest: &[&str]) -> Result<String, TreeError> {
    let [name, rest @ ..] = rest else {
        return Err(TreeError::not_found(path));
    };
    let s = lookup(path, t, name)?;
    match rest {
        ["initiator_name"] => Ok(s.initiator_name.clone()),
        // Where SCST has a link to the LUN set the session is bound to.
        ["luns"] => Ok(match &s.group {
            Some(g) => format!("ini_groups/{g}/luns"),
            None => "luns".to_string(),
        }),
        ["transport_id"] => Ok(s.transport_id.port_name()),
        ["force_close"] => Err(TreeError::at(path, ErrorKind::Invalid, "write-only")),
        ["commands"] => Ok(s.stats.outstanding().to_string()),
        ["active_commands"] => Ok(s
            .luns()
            .entries
            .iter()
            .map(|td| td.active_commands())
            .sum::<usize>()
            .to_string()),
        [lun, "active_commands"] => session_lun(&s, lun)
            .map(|td| td.active_commands().to_string())
            .ok_or_else(|| TreeError::not_found(path)),
        [lun, name] if IO_COUNTERS.contains(name) => session_lun(&s, lun)
            .and_then(|td| io_counter(&td.stats.io.snapshot(), name))
            .map(|n| n.to_string())
            .ok_or_else(|| TreeError::not_found(path)),
        ["latency", file] => latency_file(file)
            .map(|(class, dir)| s.latency().scst_file(class, dir))
            .ok_or_else(|| TreeError::not_found(path)),
        [lun, "latency", file] => match (session_lun(&s, lun), latency_file(file)) {
            (Some(td), Some((class, dir))) => {
                let mut snap = latency::LatencySnapshot::default();
                td.stats.add_latency_to(&mut snap);
                Ok(snap.scst_file(class, dir))
            }
            _ => Err(TreeError::not_found(path)),
        },
        [name] if COUNTERS.contains(name) => counter(&s, name)
            .map(|n| n.to_string())
            .ok_or_else(|| TreeError::not_found(path)),
        [] => Err(TreeError::not_found(path)),
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

pub(super) fn list(path: &MgmtPath, t: &Target, rest: &[&str]) -> Result<Vec<String>, TreeError> {
    let [name, rest @ ..] = rest else {
        return Ok(names(t).into_iter().map(|(n, _)| format!("{n}/")).collect());
    };
    let s = lookup(path, t, name)?;
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
            v.extend(COUNTERS.iter().map(|c| c.to_string()));
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
            v.push("latency/".to_string());
            v.extend(s.luns().entries.iter().map(|td| format!("lun{}/", td.lun)));
            Ok(v)
        }
        ["latency"] => Ok(latency_files()),
        [lun] if session_lun(&s, lun).is_some() => {
            let mut v = vec!["active_commands".to_string()];
            v.extend(IO_COUNTERS.iter().map(|c| c.to_string()));
            v.push("latency/".to_string());
            Ok(v)
        }
        [lun, "latency"] if session_lun(&s, lun).is_some() => Ok(latency_files()),
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

pub(super) fn write(
    tree: &ScstTree,
    path: &MgmtPath,
    t: &Target,
    rest: &[&str],
    value: &str,
) -> Result<(), TreeError> {
    match rest {
        [name, "force_close"] => {
            let s = lookup(path, t, name)?;
            log::info!("target {}: closing session {name}", t.name);
            s.events().close();
            Ok(())
        }
        // Writing anything to a latency file clears the session's (or the LUN's) table,
        // as in SCST.
        [name, "latency", file] if latency_file(file).is_some() => {
            lookup(path, t, name)?.reset_latency();
            Ok(())
        }
        [name, lun, "latency", file] if latency_file(file).is_some() => {
            let s = lookup(path, t, name)?;
            let td = session_lun(&s, lun).ok_or_else(|| TreeError::not_found(path))?;
            td.stats.reset_latency();
            Ok(())
        }
        [_, lun, counter] if lun.starts_with("lun") && IO_COUNTERS.contains(counter) => {
            Err(counter_is_read_only(path))
        }
        [name, counter] if COUNTERS.contains(counter) => {
            let s = lookup(path, t, name)?;
            if value.trim() != "0" {
                return Err(TreeError::invalid(
                    path,
                    "only 0 may be written (it resets the session's statistics)",
                ));
            }
            s.stats.reset();
            Ok(())
        }
        _ => refuse_write(tree, path),
    }
}
