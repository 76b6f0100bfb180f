//! `sessions/` of a target (docs/scst-reference.md 2.7, 6.7): one directory per session with the
//! core's attributes and counters, the transport's attributes (connection directories
//! among them) and `lun<N>/` per LUN.

use std::sync::Arc;

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
fn names(t: &Target) -> Vec<(String, Arc<Session>)> {
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
            v.extend(s.luns().entries.iter().map(|td| format!("lun{}/", td.lun)));
            Ok(v)
        }
        [lun] if session_lun(&s, lun).is_some() => Ok(vec!["active_commands".to_string()]),
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
