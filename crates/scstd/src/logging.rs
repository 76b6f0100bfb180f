//! scstd's log: `tracing` with a filter that can be replaced while the daemon runs.
//!
//! The start value is `--log-level`, else `RUST_LOG`, else `info` (EnvFilter
//! directives: `debug`, `scst_iscsi=debug,info`, ...). SCST's `trace_level` knobs
//! (scst_mgmt::trace_level) then adjust it at run time: a component whose mask is not
//! SCST's default replaces the start directives for its crates with the levels its
//! mask means, and the new filter takes effect at once. The library crates log with
//! `log`; those records are bridged into `tracing`, so they carry the spans the iSCSI
//! driver opens per connection and session (`target`, `initiator`, `session`).

use std::io::IsTerminal;
use std::sync::Arc;

use scst_mgmt::trace_level::{Component, TraceLevels, DEFAULT_MASK};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// The installed log and how to change its filter.
#[derive(Clone)]
pub struct Logging {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The start directives, kept for components left at their default mask.
    start: String,
}

/// Install the log on stderr. `log_level`: `--log-level`, which wins over `RUST_LOG`.
pub fn init(log_level: Option<&str>) -> anyhow::Result<Logging> {
    let (start, from) = match (log_level, std::env::var("RUST_LOG")) {
        (Some(l), _) => (l.to_string(), "--log-level"),
        (None, Ok(v)) if !v.trim().is_empty() => (v, "RUST_LOG"),
        _ => ("info".to_string(), "the default"),
    };
    // --log-level is checked; a stray RUST_LOG in the environment must not keep the
    // daemon from starting: its valid directives apply and the rest is reported.
    let (filter, ignored) = match EnvFilter::builder().parse(&start) {
        Ok(f) => (f, None),
        Err(e) if from == "RUST_LOG" => (EnvFilter::builder().parse_lossy(&start), Some(e)),
        // The parse error's text already includes its cause: not kept as a source.
        Err(e) => anyhow::bail!("{from} '{start}': not a log level or filter directives: {e}"),
    };
    let max = filter.max_level_hint();
    let (layer, handle) = reload::Layer::new(filter);
    // Colours only for a person at a terminal; journald and log files get plain text.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var("RUST_LOG_STYLE").map_or(true, |s| s != "never");
    let fmt = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(true);
    // A second install (a test calling run twice) keeps the first log.
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(fmt)
        .try_init();
    log::set_max_level(as_log(max));
    if let Some(e) = ignored {
        log::warn!("RUST_LOG '{start}': {e}; its other directives apply");
    }
    Ok(Logging { handle, start })
}

impl Logging {
    /// Follow `levels` from now on: the current masks apply at once, every change after.
    pub fn observe(&self, levels: &Arc<TraceLevels>) {
        let me = self.clone();
        levels.observe(Arc::new(move |masks| me.apply(masks)));
    }

    fn apply(&self, masks: &[(Component, u32)]) {
        let spec = filter_spec(&self.start, masks);
        match EnvFilter::builder().parse(&spec) {
            Ok(filter) => {
                let max = filter.max_level_hint();
                match self.handle.reload(filter) {
                    Ok(()) => {
                        log::set_max_level(as_log(max));
                        log::info!("log filter now '{spec}'");
                    }
                    Err(e) => log::error!("cannot change the log filter to '{spec}': {e}"),
                }
            }
            Err(e) => log::error!("log filter '{spec}' refused: {e}"),
        }
    }
}

/// The `log` crate's own gate, kept at the filter's most verbose level so that
/// disabled `log::debug!` calls cost one load and compare.
fn as_log(max: Option<LevelFilter>) -> log::LevelFilter {
    match max.unwrap_or(LevelFilter::TRACE) {
        LevelFilter::OFF => log::LevelFilter::Off,
        LevelFilter::ERROR => log::LevelFilter::Error,
        LevelFilter::WARN => log::LevelFilter::Warn,
        LevelFilter::INFO => log::LevelFilter::Info,
        LevelFilter::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// The target a directive is about: None for a bare level (the global one).
fn directive_target(d: &str) -> Option<&str> {
    let target = match d.split_once('=') {
        Some((t, _)) => t,
        None if d.parse::<LevelFilter>().is_ok() => return None,
        None => d,
    };
    Some(target.split('[').next().unwrap_or(target))
}

/// The filter for `masks` over the start directives `start`.
fn filter_spec(start: &str, masks: &[(Component, u32)]) -> String {
    let mut parts: Vec<String> = start
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for &(c, mask) in masks {
        if mask == DEFAULT_MASK {
            continue;
        }
        let governed = |t: &str| {
            c.log_targets()
                .iter()
                .any(|ct| t == *ct || t.strip_prefix(ct).is_some_and(|r| r.starts_with("::")))
        };
        parts.retain(|p| match directive_target(p) {
            None => c != Component::Core,
            Some(t) => !governed(t),
        });
        let directives = c.directives(mask);
        if c == Component::Core {
            parts.push(directives[0].1.name().to_string());
        }
        parts.extend(directives.iter().map(|(t, v)| format!("{t}={}", v.name())));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_DEFAULT: [(Component, u32); 3] = [
        (Component::Core, DEFAULT_MASK),
        (Component::Iscsi, DEFAULT_MASK),
        (Component::Vdisk, DEFAULT_MASK),
    ];

    #[test]
    fn default_masks_keep_the_start_value() {
        assert_eq!(
            filter_spec("debug,mio=warn", &ALL_DEFAULT),
            "debug,mio=warn"
        );
    }

    #[test]
    fn a_changed_mask_replaces_its_crates_directives() {
        let masks = [
            (Component::Core, DEFAULT_MASK),
            (Component::Iscsi, DEFAULT_MASK | 1),
            (Component::Vdisk, DEFAULT_MASK),
        ];
        assert_eq!(
            filter_spec("info,scst_iscsi::conn=trace,scst_vdisk=warn", &masks),
            "info,scst_vdisk=warn,scst_iscsi=debug,iscsi_engine=debug,iscsi_wire=debug"
        );
        // The root's mask sets the global level too.
        let masks = [(Component::Core, 0)];
        assert_eq!(
            filter_spec("debug,scst_iscsi=trace", &masks),
            "scst_iscsi=trace,warn,scst_core=warn,scst_mgmt=warn,scstd=warn"
        );
        for spec in [
            filter_spec("info", &masks),
            filter_spec("info", &[(Component::Vdisk, u32::MAX)]),
        ] {
            EnvFilter::builder().parse(&spec).expect(&spec);
        }
    }
}
