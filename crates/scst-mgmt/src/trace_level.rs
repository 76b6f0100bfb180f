//! SCST's `trace_level` knobs (docs/scst-reference.md, "trace_level"): the root's, each
//! target driver's and each dev handler's logging mask, written as `all`, `none`,
//! `default`, `add TOKEN`, `del TOKEN` or `value N` and read as the set tokens followed by
//! SCST's usage text.
//!
//! The masks are kept here, in SCST's bit layout, so that reading shows what was
//! written; what they mean for the daemon's log is [`Component::directives`]: a level
//! per log target. The daemon's logger registers an observer ([`TraceLevels::observe`])
//! and re-filters at once when a mask changes; nothing here knows the logger.

use std::sync::Arc;

use parking_lot::Mutex;

/// Whose `trace_level` it is. SCST's vdisk handlers share one mask (one module), as
/// here they share one crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// `/sys/kernel/scst_tgt/trace_level`: the core, management and the daemon.
    Core,
    /// `targets/iscsi/trace_level`: the iSCSI driver and its engine.
    Iscsi,
    /// `handlers/<vdisk_*|vcdrom>/trace_level`: the vdisk dev handlers.
    Vdisk,
}

/// How much a component logs, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Warn,
    Info,
    Debug,
    Trace,
}

impl Verbosity {
    pub fn name(self) -> &'static str {
        match self {
            Verbosity::Warn => "warn",
            Verbosity::Info => "info",
            Verbosity::Debug => "debug",
            Verbosity::Trace => "trace",
        }
    }
}

// SCST's scst_debug.h bits, shared by every table.
const DEBUG: u32 = 0x1;
const ENTRYEXIT: u32 = 0x10;
const BUFF: u32 = 0x20;
const MEMORY: u32 = 0x40;
const SG_OP: u32 = 0x80;
const MINOR: u32 = 0x200;
const MGMT: u32 = 0x400;
const MGMT_DEBUG: u32 = 0x800;
const SCSI: u32 = 0x1000;
const SPECIAL: u32 = 0x2000;
const FLOW_CONTROL: u32 = 0x4000;
const PRES: u32 = 0x8000;
const BLOCKING: u32 = 0x10000;

/// SCST's common table, in the order SCST prints it.
const COMMON_TOKENS: &[(&str, u32)] = &[
    ("out_of_mem", 0x100),
    ("minor", MINOR),
    ("sg", SG_OP),
    ("mem", MEMORY),
    ("buff", BUFF),
    ("entryexit", ENTRYEXIT),
    ("pid", 0x8),
    ("line", 0x4),
    ("function", 0x2),
    ("debug", DEBUG),
    ("special", SPECIAL),
    ("scsi", SCSI),
    ("mgmt", MGMT),
    ("mgmt_dbg", MGMT_DEBUG),
    ("flow_control", FLOW_CONTROL),
    ("pr", PRES),
];

/// The core's own tokens (scst_priv.h).
const CORE_TOKENS: &[(&str, u32)] = &[
    ("retry", 0x8000_0000),
    ("scsi_serializing", 0x4000_0000),
    ("data_send", 0x2000_0000),
    ("data_received", 0x0100_0000),
    ("block", BLOCKING),
];
/// iscsi-scst's tokens (iscsi_dbg.h).
const ISCSI_TOKENS: &[(&str, u32)] = &[
    ("d_write", 0x8000_0000),
    ("conn", 0x4000_0000),
    ("conn_dbg", 0x0400_0000),
    ("iov", 0x2000_0000),
    ("pdu", 0x1000_0000),
    ("net_page", 0x0800_0000),
];
/// scst_vdisk's token.
const VDISK_TOKENS: &[(&str, u32)] = &[("order", 0x8000_0000)];

/// SCST's default mask in a release build (out_of_mem, mgmt, pid, special) for the core,
/// iscsi-scst and the dev handlers alike.
pub const DEFAULT_MASK: u32 = 0x0000_2508;

impl Component {
    pub const ALL: [Component; 3] = [Component::Core, Component::Iscsi, Component::Vdisk];

    /// The component of target driver `driver`, if it has a `trace_level`.
    pub fn of_driver(driver: &str) -> Option<Component> {
        (driver == "iscsi").then_some(Component::Iscsi)
    }

    /// The component of dev handler `handler`, if it has a `trace_level`.
    pub fn of_handler(handler: &str) -> Option<Component> {
        matches!(
            handler,
            "vdisk_fileio" | "vdisk_blockio" | "vdisk_nullio" | "vcdrom"
        )
        .then_some(Component::Vdisk)
    }

    fn index(self) -> usize {
        self as usize
    }

    fn local_tokens(self) -> &'static [(&'static str, u32)] {
        match self {
            Component::Core => CORE_TOKENS,
            Component::Iscsi => ISCSI_TOKENS,
            Component::Vdisk => VDISK_TOKENS,
        }
    }

    /// Bits that ask for every detail (data, buffers, PDUs): `trace`.
    fn trace_bits(self) -> u32 {
        ENTRYEXIT
            | BUFF
            | MEMORY
            | SG_OP
            | match self {
                Component::Core => 0x2000_0000 | 0x0100_0000,
                Component::Iscsi => 0x2000_0000 | 0x1000_0000 | 0x0800_0000,
                Component::Vdisk => 0,
            }
    }

    /// Bits that ask for debugging of the whole component: `debug`.
    fn debug_bits(self) -> u32 {
        DEBUG
            | SCSI
            | FLOW_CONTROL
            | match self {
                Component::Core => 0x8000_0000 | 0x4000_0000 | BLOCKING,
                Component::Iscsi => 0x8000_0000 | 0x4000_0000 | 0x0400_0000,
                Component::Vdisk => 0x8000_0000,
            }
    }

    /// The crates (log targets) the component's mask governs. The core's also sets
    /// the level of everything else (the global level).
    pub fn log_targets(self) -> &'static [&'static str] {
        match self {
            Component::Core => &["scst_core", "scst_mgmt", "scstd"],
            Component::Iscsi => &["scst_iscsi", "iscsi_engine", "iscsi_wire"],
            Component::Vdisk => &["scst_vdisk"],
        }
    }

    /// What `mask` means for the log: the component's level for each of its targets,
    /// then narrower targets raised by a token of their own (`pr`, `mgmt_dbg`).
    /// No verbose token: `warn` without `mgmt`/`minor`/`special` (SCST's `none` still
    /// prints errors and warnings), `info` with them.
    pub fn directives(self, mask: u32) -> Vec<(&'static str, Verbosity)> {
        let base = if mask & self.trace_bits() != 0 {
            Verbosity::Trace
        } else if mask & self.debug_bits() != 0 {
            Verbosity::Debug
        } else if mask & (MGMT | MINOR | SPECIAL) != 0 {
            Verbosity::Info
        } else {
            Verbosity::Warn
        };
        let mut out: Vec<_> = self.log_targets().iter().map(|t| (*t, base)).collect();
        if self == Component::Core && base < Verbosity::Debug {
            if mask & PRES != 0 {
                for t in [
                    "scst_core::pr",
                    "scst_core::reservation",
                    "scst_core::pr_persist",
                    "scst_core::pr_scst_import",
                ] {
                    out.push((t, Verbosity::Debug));
                }
            }
            if mask & MGMT_DEBUG != 0 {
                out.push(("scst_mgmt", Verbosity::Debug));
            }
        }
        out
    }

    /// The tokens set in `mask`, SCST's common table first, joined as SCST joins them.
    pub fn tokens(self, mask: u32) -> String {
        COMMON_TOKENS
            .iter()
            .chain(self.local_tokens())
            .filter(|(_, bit)| mask & bit != 0)
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn token(self, name: &str) -> Option<u32> {
        self.local_tokens()
            .iter()
            .chain(COMMON_TOKENS)
            .find(|(t, _)| t.eq_ignore_ascii_case(name))
            .map(|(_, bit)| *bit)
    }

    /// SCST's usage text after the tokens.
    fn usage(self) -> String {
        let local: String = self
            .local_tokens()
            .iter()
            .map(|(t, _)| format!(", {t}"))
            .collect();
        format!(
            "\n\n\nUsage:\n\techo \"all|none|default\" >trace_level\n\
             \techo \"value DEC|0xHEX|0OCT\" >trace_level\n\
             \techo \"add|del TOKEN\" >trace_level\n\
             \nwhere TOKEN is one of [debug, function, line, pid,\n\
             \t\t       entryexit, buff, mem, sg, out_of_mem,\n\
             \t\t       special, scsi, mgmt, minor,\n\
             \t\t       mgmt_dbg, flow_control, pr{local}]\n"
        )
    }
}

/// Why a `trace_level` write was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TraceLevelError {
    #[error("empty value; expected all, none, default, add TOKEN, del TOKEN or value N")]
    Empty,
    #[error("unknown action '{0}'; expected all, none, default, add, del or value")]
    Action(String),
    #[error("unknown token '{0}'")]
    Token(String),
    #[error("'{0}' needs a token")]
    MissingToken(&'static str),
    #[error("invalid trace value '{0}' (DEC, 0xHEX or 0OCT)")]
    Value(String),
}

/// Called with every component's mask after a change (and once when registered).
pub type Observer = Arc<dyn Fn(&[(Component, u32)]) + Send + Sync>;

/// The three masks and who is told of changes.
pub struct TraceLevels {
    masks: Mutex<[u32; 3]>,
    observer: Mutex<Option<Observer>>,
}

impl Default for TraceLevels {
    fn default() -> Self {
        TraceLevels {
            masks: Mutex::new([DEFAULT_MASK; 3]),
            observer: Mutex::new(None),
        }
    }
}

impl TraceLevels {
    pub fn mask(&self, c: Component) -> u32 {
        self.masks.lock()[c.index()]
    }

    /// Every component with its mask.
    pub fn masks(&self) -> Vec<(Component, u32)> {
        let m = *self.masks.lock();
        Component::ALL.iter().map(|c| (*c, m[c.index()])).collect()
    }

    /// What reading `trace_level` shows: the set tokens, then SCST's usage.
    pub fn read(&self, c: Component) -> String {
        format!("{}{}", c.tokens(self.mask(c)), c.usage())
    }

    /// Apply a write of `value` to `c`'s `trace_level` and tell the observer. Besides
    /// SCST's actions, the tokens line that reading shows (`out_of_mem | mgmt`) sets
    /// exactly those tokens, so that a saved configuration loads back.
    pub fn write(&self, c: Component, value: &str) -> Result<(), TraceLevelError> {
        // What reading shows, usage included, writes back as its first line.
        let value = value.lines().next().unwrap_or("").trim();
        let mut words = value.split_ascii_whitespace();
        let action = words.next().ok_or(TraceLevelError::Empty)?;
        let arg = words.next();
        let token = |what: &'static str| {
            let t = arg.ok_or(TraceLevelError::MissingToken(what))?;
            c.token(t)
                .ok_or_else(|| TraceLevelError::Token(t.to_string()))
        };
        // Held from read to write: `add` and `del` change the mask in place.
        let mut masks = self.masks.lock();
        let old = masks[c.index()];
        let new = match action.to_ascii_lowercase().as_str() {
            "all" => u32::MAX,
            "none" | "null" => 0,
            "default" => DEFAULT_MASK,
            "add" => old | token("add")?,
            "del" => old & !token("del")?,
            "value" => {
                let v = arg.ok_or(TraceLevelError::MissingToken("value"))?;
                parse_c_number(v).ok_or_else(|| TraceLevelError::Value(v.to_string()))?
            }
            _ if c.token(action).is_some() => value.split('|').try_fold(0u32, |m, t| {
                c.token(t.trim())
                    .map(|bit| m | bit)
                    .ok_or_else(|| TraceLevelError::Token(t.trim().to_string()))
            })?,
            _ => return Err(TraceLevelError::Action(action.to_string())),
        };
        if new == old {
            // The shared vdisk mask is written once per handler by a saved config:
            // nothing to log or re-filter.
            return Ok(());
        }
        masks[c.index()] = new;
        drop(masks);
        log::info!(
            "changed trace level for \"{}\": old {old:#010x}, new {new:#010x}",
            match c {
                Component::Core => "scst",
                Component::Iscsi => "iscsi",
                Component::Vdisk => "vdisk",
            }
        );
        self.notify();
        Ok(())
    }

    /// Register the observer (the logger) and tell it the current masks.
    pub fn observe(&self, f: Observer) {
        *self.observer.lock() = Some(f);
        self.notify();
    }

    fn notify(&self) {
        let f = self.observer.lock().clone();
        if let Some(f) = f {
            f(&self.masks());
        }
    }
}

/// What a configuration keeps of attribute `path`'s `value`: for a `trace_level`, the
/// tokens line without SCST's usage text (as SCST's scstadmin keeps it), else all of it.
pub fn saved_value<'a>(path: &str, value: &'a str) -> &'a str {
    if path == "trace_level" || path.ends_with("/trace_level") {
        value.lines().next().unwrap_or("")
    } else {
        value
    }
}

/// `kstrtoul(.., 0, ..)`: decimal, `0x` hex or leading-`0` octal.
fn parse_c_number(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_scst_shows_it() {
        let t = TraceLevels::default();
        let text = t.read(Component::Iscsi);
        let (first, rest) = text.split_once('\n').unwrap();
        assert_eq!(first, "out_of_mem | pid | special | mgmt");
        assert!(rest.starts_with("\n\nUsage:\n"), "{rest}");
        assert!(rest.contains("pr, d_write, conn, conn_dbg, iov, pdu, net_page]"));
    }

    #[test]
    fn actions_change_the_mask() {
        let t = TraceLevels::default();
        let c = Component::Core;
        t.write(c, "none").unwrap();
        assert_eq!(t.mask(c), 0);
        t.write(c, "add debug").unwrap();
        t.write(c, "add PR").unwrap();
        assert_eq!(t.mask(c), DEBUG | PRES);
        t.write(c, "del debug").unwrap();
        assert_eq!(t.mask(c), PRES);
        t.write(c, "value 0x10").unwrap();
        assert_eq!(t.mask(c), ENTRYEXIT);
        t.write(c, "value 010").unwrap();
        assert_eq!(t.mask(c), 8);
        t.write(c, "all").unwrap();
        assert_eq!(t.mask(c), u32::MAX);
        t.write(c, "default").unwrap();
        assert_eq!(t.mask(c), DEFAULT_MASK);
        // The line reading shows loads back as the same mask.
        t.write(c, "pid | scsi | retry").unwrap();
        assert_eq!(t.mask(c), 0x8 | SCSI | 0x8000_0000);
        assert_eq!(
            t.write(c, "add order"),
            Err(TraceLevelError::Token("order".into()))
        );
        assert_eq!(t.write(c, "add"), Err(TraceLevelError::MissingToken("add")));
        assert_eq!(
            t.write(c, "frob"),
            Err(TraceLevelError::Action("frob".into()))
        );
        assert_eq!(
            t.write(c, "value 0xzz"),
            Err(TraceLevelError::Value("0xzz".into()))
        );
        assert_eq!(t.write(Component::Vdisk, "add order"), Ok(()));
    }

    #[test]
    fn masks_map_to_levels() {
        let lvl = |c: Component, m: u32| c.directives(m)[0].1;
        assert_eq!(lvl(Component::Core, DEFAULT_MASK), Verbosity::Info);
        assert_eq!(lvl(Component::Core, 0), Verbosity::Warn);
        assert_eq!(lvl(Component::Iscsi, DEBUG), Verbosity::Debug);
        assert_eq!(lvl(Component::Iscsi, 0x1000_0000), Verbosity::Trace);
        assert_eq!(lvl(Component::Vdisk, u32::MAX), Verbosity::Trace);
        // `pr` raises only the reservation modules.
        let d = Component::Core.directives(DEFAULT_MASK | PRES);
        assert!(d.contains(&("scst_core", Verbosity::Info)));
        assert!(d.contains(&("scst_core::pr", Verbosity::Debug)));
    }

    #[test]
    fn the_observer_hears_every_change() {
        let t = TraceLevels::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        t.observe(Arc::new(move |m| s.lock().push(m[1].1)));
        t.write(Component::Iscsi, "add debug").unwrap();
        assert_eq!(*seen.lock(), [DEFAULT_MASK, DEFAULT_MASK | DEBUG]);
    }
}
