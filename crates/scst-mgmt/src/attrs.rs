//! What scst-rs knows about attributes, as data (scst-reference sections 2.3-2.9, 6.6).
//!
//! For every level of the management tree that scst.conf can configure there is a lookup
//! function returning an [`AttrInfo`]: how a value is checked, whether the attribute is
//! writable, whether it is a creation parameter (`add_device`/`add_target` `k=v;`), a key
//! attribute (★, saved by write_config) and whether it is dynamic / multi-valued
//! (`add_attribute`), and whether scst-rs implements it at all ([`AttrSupport`]: what it
//! does not is refused as not supported, at load and at write). The apply engine
//! ([`crate::apply`]) uses the same data to decide what goes into `add_device`, what is
//! written afterwards, and what needs the object re-created; [`configurable_attrs`]
//! walks the whole table (docs/management.md lists it, a test compares).
//!
//! Runtime-only entries (statistics, counters, links) are not listed; read-only ones that
//! people tend to copy into a config are, so that validation can say "read-only" rather than
//! "unknown".

/// How an attribute may be accessed after the object exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
    /// An action (e.g. `resync_size`), never part of a configuration.
    WriteOnly,
}

/// The shape of a valid value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// `0` or `1`.
    Bool,
    /// Decimal or `0x` hex integer within `min..=max`.
    Int { min: i64, max: i64 },
    /// A power of two within `min..=max` (block sizes).
    PowerOfTwo { min: i64, max: i64 },
    /// One of the listed words, compared exactly.
    Enum(&'static [&'static str]),
    /// One of the listed words, compared ignoring ASCII case.
    EnumNoCase(&'static [&'static str]),
    /// `|`-separated combination of the listed words (`dif_mode`).
    Flags(&'static [&'static str]),
    /// `auto`, `this_group_only`, `never` or a group number > 0.
    IoGrouping,
    /// iSCSI CHAP account `"<name> <secret>"`, secret at least 12 bytes (scst-reference 6.5).
    ChapAccount,
    /// A Linux CPU bitmap: comma-separated groups of up to 8 hex digits, most
    /// significant first (`ff`, `00000000,0000ffff`).
    CpuMask,
    /// Anything.
    Text,
}

/// Whether scst-rs implements an attribute SCST defines. Nothing is accepted and then
/// ignored: an attribute is either in effect or refused as not supported, at load and at
/// write (docs/management.md lists both sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrSupport {
    Implemented,
    /// Not implemented, but SCST's default value describes how scst-rs behaves, so that
    /// value is accepted (SCST's write_config saves key attributes such as
    /// `cluster_mode 0` even at their default); any other value is refused.
    DefaultOnly(&'static str),
    /// Refused whatever the value.
    NotSupported,
    /// A CPU mask (`cpu_mask`): scst-rs does not pin threads, which is SCST's default of
    /// every CPU, so only a mask holding every CPU of this host is accepted.
    AllCpus,
}

/// Static facts about one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrInfo {
    pub name: &'static str,
    pub kind: ValueKind,
    pub access: Access,
    /// Accepted as a creation parameter (`add_device`, `add_target`, LUN `add ... k=v`).
    /// Read-only attributes can only be set this way.
    pub creation: bool,
    /// Key attribute (★): saved by write_config even at its default value.
    pub key: bool,
    /// Added/removed with `add_attribute`/`add_target_attribute` rather than written.
    pub dynamic: bool,
    /// May occur several times (multi-instance, e.g. `IncomingUser`).
    pub multi: bool,
    pub support: AttrSupport,
}

impl AttrInfo {
    const fn new(name: &'static str, kind: ValueKind, access: Access) -> Self {
        AttrInfo {
            name,
            kind,
            access,
            creation: false,
            key: false,
            dynamic: false,
            multi: false,
            support: AttrSupport::Implemented,
        }
    }
    /// SCST has it, scst-rs does not implement it.
    const fn not_supported(mut self) -> Self {
        self.support = AttrSupport::NotSupported;
        self
    }
    /// SCST has it, scst-rs behaves as its default `value` and accepts only that.
    const fn default_only(mut self, value: &'static str) -> Self {
        self.support = AttrSupport::DefaultOnly(value);
        self
    }
    /// SCST's `cpu_mask`: accepted when it leaves every CPU in ([`AttrSupport::AllCpus`]).
    const fn all_cpus_only(mut self) -> Self {
        self.support = AttrSupport::AllCpus;
        self
    }
    const fn creation(mut self) -> Self {
        self.creation = true;
        self
    }
    const fn key(mut self) -> Self {
        self.key = true;
        self
    }
    /// Dynamic attribute; `multi` says whether several instances may exist.
    const fn dynamic(mut self, multi: bool) -> Self {
        self.dynamic = true;
        self.multi = multi;
        self
    }

    /// Whether a configuration file may set it at all.
    pub fn configurable(&self) -> bool {
        self.creation || self.dynamic || self.access == Access::ReadWrite
    }

    /// Check a value's shape; the error's text completes "attribute 'x' ...".
    pub fn check_value(&self, value: &str) -> Result<(), ValueError> {
        check_kind(self.kind, value)
    }

    /// Whether scst-rs puts `value` into effect; the error's text completes
    /// "attribute 'x' ..." and says "not supported" (never "unknown").
    pub fn check_supported(&self, value: &str) -> Result<(), ValueError> {
        match self.support {
            AttrSupport::Implemented => Ok(()),
            AttrSupport::DefaultOnly(default) if same_value(self.kind, value, default) => Ok(()),
            AttrSupport::DefaultOnly(default) => Err(ValueError::OnlyDefault(default)),
            AttrSupport::NotSupported => Err(ValueError::NotSupported),
            AttrSupport::AllCpus if cpu_mask_covers(value, host_cpus()) => Ok(()),
            AttrSupport::AllCpus => Err(ValueError::NotAllCpus),
        }
    }

    pub fn implemented(&self) -> bool {
        self.support == AttrSupport::Implemented
    }
}

/// Equal as values of `kind`: `0x0` is `0`, `AUTO` is `auto` where case does not matter,
/// `"0 0"` is `0  0` (blanks between words do not count).
pub fn same_value(kind: ValueKind, a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    match kind {
        ValueKind::Int { .. } | ValueKind::PowerOfTwo { .. } | ValueKind::Bool => {
            a == b || parse_int(a).is_some_and(|n| Some(n) == parse_int(b))
        }
        ValueKind::EnumNoCase(_) | ValueKind::IoGrouping => a.eq_ignore_ascii_case(b),
        _ => a.split_whitespace().eq(b.split_whitespace()),
    }
}

/// Why a value is refused; displayed, it completes "attribute 'x' ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("must be 0 or 1")]
    NotBool,
    #[error("must be a number in {min}..{max}")]
    NotInRange { min: i64, max: i64 },
    #[error("must be a power of two in {min}..{max}")]
    NotPowerOfTwo { min: i64, max: i64 },
    #[error("must be one of {}", .0.join(", "))]
    NotOneOf(&'static [&'static str]),
    #[error("must be a '|'-separated list of {}", .0.join(", "))]
    NotFlags(&'static [&'static str]),
    #[error("must be a CPU mask of comma-separated hex groups (e.g. ff or 0000ffff,ffffffff)")]
    NotCpuMask,
    #[error("must be auto, this_group_only, never or a group number > 0")]
    NotIoGrouping,
    #[error("has a CHAP secret shorter than {MIN_CHAP_SECRET} bytes")]
    ShortChapSecret,
    #[error("must be \"<user name> <secret>\"")]
    NotChapAccount,
    /// scst-rs does not implement the attribute.
    #[error("is not supported by scst-rs")]
    NotSupported,
    /// A CPU mask leaving some CPU out: scst-rs does not pin threads.
    #[error("is not supported by scst-rs (threads are not pinned: only a mask of every CPU is accepted)")]
    NotAllCpus,
    /// scst-rs implements only the attribute's default behaviour.
    #[error("is not supported by scst-rs (only its default, '{0}', is accepted)")]
    OnlyDefault(&'static str),
}

fn check_kind(kind: ValueKind, value: &str) -> Result<(), ValueError> {
    let ok = |good: bool, e: ValueError| if good { Ok(()) } else { Err(e) };
    match kind {
        ValueKind::Text => Ok(()),
        ValueKind::Bool => ok(matches!(value, "0" | "1"), ValueError::NotBool),
        ValueKind::Int { min, max } => ok(
            parse_int(value).is_some_and(|n| (min..=max).contains(&n)),
            ValueError::NotInRange { min, max },
        ),
        ValueKind::PowerOfTwo { min, max } => ok(
            parse_int(value)
                .is_some_and(|n| (min..=max).contains(&n) && (n as u64).is_power_of_two()),
            ValueError::NotPowerOfTwo { min, max },
        ),
        ValueKind::Enum(words) => ok(words.contains(&value), ValueError::NotOneOf(words)),
        ValueKind::EnumNoCase(words) => ok(
            words.iter().any(|w| w.eq_ignore_ascii_case(value)),
            ValueError::NotOneOf(words),
        ),
        ValueKind::Flags(words) => ok(
            value.split('|').all(|part| words.contains(&part.trim())),
            ValueError::NotFlags(words),
        ),
        ValueKind::IoGrouping => ok(
            matches!(value, "auto" | "this_group_only" | "never")
                || parse_int(value).is_some_and(|n| n > 0),
            ValueError::NotIoGrouping,
        ),
        ValueKind::CpuMask => ok(cpu_mask_words(value).is_some(), ValueError::NotCpuMask),
        ValueKind::ChapAccount => {
            let mut words = value.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(_), Some(secret), None) if secret.len() >= MIN_CHAP_SECRET => Ok(()),
                (Some(_), Some(_), None) => Err(ValueError::ShortChapSecret),
                _ => Err(ValueError::NotChapAccount),
            }
        }
    }
}

/// The 32-bit words of a CPU bitmap, least significant first; None if malformed.
fn cpu_mask_words(text: &str) -> Option<Vec<u32>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    text.rsplit(',')
        .map(|g| {
            let ok = !g.is_empty() && g.len() <= 8 && g.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u32::from_str_radix(g, 16).ok()).flatten()
        })
        .collect()
}

/// Whether `mask` holds CPUs `0..cpus`.
fn cpu_mask_covers(mask: &str, cpus: usize) -> bool {
    let Some(words) = cpu_mask_words(mask) else {
        return false;
    };
    (0..cpus).all(|cpu| {
        words
            .get(cpu / 32)
            .is_some_and(|w| w >> (cpu % 32) & 1 == 1)
    })
}

/// The CPUs this process may run on.
fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// iscsi-scst refuses shorter CHAP secrets.
pub const MIN_CHAP_SECRET: usize = 12;

/// Decimal or `0x` hex, optionally negative. `None` on anything else or overflow.
pub fn parse_int(text: &str) -> Option<i64> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            i64::from_str_radix(hex, 16).ok()?
        }
        Some(_) => return None,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse::<i64>().ok()?
        }
        None => return None,
    };
    Some(if neg { -magnitude } else { magnitude })
}

use Access::{ReadOnly as RO, ReadWrite as RW, WriteOnly as WO};
use ValueKind::*;

const fn int(min: i64, max: i64) -> ValueKind {
    Int { min, max }
}

const U16: ValueKind = int(0, 65535);
const U32: ValueKind = int(0, u32::MAX as i64);
const I32: ValueKind = int(i32::MIN as i64, i32::MAX as i64);
const SIZE: ValueKind = int(0, i64::MAX);
/// iSCSI data segment / burst lengths: 512 up to the 24-bit RFC 7143 maximum.
const SEG_LEN: ValueKind = int(512, (1 << 24) - 1);
const YES_NO: ValueKind = Enum(&["Yes", "No"]);
const DIGEST: ValueKind = EnumNoCase(&["None", "CRC32C", "CRC32C,None", "None,CRC32C"]);
const ADDR_METHOD: ValueKind = EnumNoCase(&["PERIPHERAL", "FLAT", "LUN"]);
const CPU_MASK: ValueKind = ValueKind::CpuMask;

fn find(table: &[AttrInfo], name: &str) -> Option<AttrInfo> {
    table.iter().find(|a| a.name == name).copied()
}

// ---------------------------------------------------------------------------------------
// Root (scst-reference 2.3)

const ROOT: &[AttrInfo] = &[
    // Fixed while scstd runs (SCST: RW): setup_id names the installation in every
    // device id, threads sizes the I/O pool. Both are read from the configuration at
    // start, hence "creation".
    AttrInfo::new("setup_id", U32, RO).creation().key(),
    AttrInfo::new("threads", int(1, 4096), RO).creation(),
    AttrInfo::new("poll_us", U32, RW).default_only("0"),
    AttrInfo::new("suspend", I32, RW).default_only("0"),
    // SCST's tasklet budget (default 10); scst-rs has no tasklet context, every
    // command runs in its connection's thread, which is SCST's behaviour at the default.
    AttrInfo::new("max_tasklet_cmd", U32, RW).default_only("10"),
    AttrInfo::new("measure_latency", Bool, RW),
    AttrInfo::new("async_lun_replace", Bool, RW),
    // SCST's module parameter of that name (MiB), here an attribute: the budget for
    // command data buffers, about a quarter of RAM by default.
    AttrInfo::new("scst_max_cmd_mem", U32, RW),
    AttrInfo::new("force_global_sgv_pool", Bool, RW).default_only("0"),
    // The logging mask (trace_level.rs), mapped onto the daemon's log levels.
    AttrInfo::new("trace_level", Text, RW),
    // Cluster mode is a later step; SCST's -nonkey output saves the empty name.
    AttrInfo::new("cluster_name", Text, RW)
        .key()
        .default_only(""),
    AttrInfo::new("version", Text, RO),
    AttrInfo::new("trace_cmds", Text, RO),
    AttrInfo::new("trace_mcmds", Text, RO),
    AttrInfo::new("last_sysfs_mgmt_res", Text, RO),
    // scst-rs: live objects, to make leaks visible.
    AttrInfo::new("active_sessions", Text, RO),
    AttrInfo::new("active_tgt_devs", Text, RO),
];

/// Root attribute (`/sys/kernel/scst_tgt/<name>`).
pub fn root_attr(name: &str) -> Option<AttrInfo> {
    find(ROOT, name)
}

// ---------------------------------------------------------------------------------------
// Handlers and devices (scst-reference 2.4, 2.5)

/// Dev handlers scst-rs implements.
pub const SUPPORTED_HANDLERS: &[&str] =
    &["vcdrom", "vdisk_blockio", "vdisk_fileio", "vdisk_nullio"];

/// SCST handlers that exist but scst-rs does not implement (pass-through and scst_user).
pub const UNSUPPORTED_HANDLERS: &[&str] = &[
    "dev_cdrom",
    "dev_changer",
    "dev_disk",
    "dev_disk_perf",
    "dev_modisk",
    "dev_modisk_perf",
    "dev_processor",
    "dev_raid",
    "dev_tape",
    "dev_tape_perf",
    "scst_user",
];

/// Target drivers scst-rs implements.
pub const SUPPORTED_DRIVERS: &[&str] = &["copy_manager", "iscsi", "vhost"];

/// The copy manager's driver and its one fixed target (docs/scst-reference.md
/// "The copy manager target"): its LUNs are the devices EXTENDED COPY may use.
pub const COPY_MANAGER: &str = "copy_manager";
pub const COPY_MANAGER_TGT: &str = "copy_manager_tgt";

/// SCST target drivers that exist but scst-rs does not implement.
pub const UNSUPPORTED_DRIVERS: &[&str] = &[
    "fcst",
    "ib_srpt",
    "isert_scst",
    "qla2x00t",
    "qla2x00tgt",
    "scst_local",
];

/// Whether a handler/driver name is implemented, known from SCST, or unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Supported,
    /// Exists in SCST, not (yet) in scst-rs.
    NotSupported,
    Unknown,
}

fn support(name: &str, supported: &[&str], unsupported: &[&str]) -> Support {
    if supported.contains(&name) {
        Support::Supported
    } else if unsupported.contains(&name) {
        Support::NotSupported
    } else {
        Support::Unknown
    }
}

pub fn handler_support(handler: &str) -> Support {
    support(handler, SUPPORTED_HANDLERS, UNSUPPORTED_HANDLERS)
}

pub fn driver_support(driver: &str) -> Support {
    support(driver, SUPPORTED_DRIVERS, UNSUPPORTED_DRIVERS)
}

// Handler bit masks for the vdisk table (the f/b/n/c columns of scst-reference 2.5).
const F: u8 = 1;
const B: u8 = 2;
const N: u8 = 4;
const C: u8 = 8;
const FB: u8 = F | B;
const FBN: u8 = F | B | N;
const ALL: u8 = F | B | N | C;

fn vdisk_mask(handler: &str) -> Option<u8> {
    Some(match handler {
        "vdisk_fileio" => F,
        "vdisk_blockio" => B,
        "vdisk_nullio" => N,
        "vcdrom" => C,
        _ => return None,
    })
}

/// Handler directory attributes. `pr_dump_dir` is dev_disk's in SCST; scst-rs offers it on
/// its disk-type vdisk handlers, which are the ones that keep PR state.
const HANDLER_ATTRS: &[(u8, AttrInfo)] = &[
    (ALL, AttrInfo::new("trace_level", Text, RW)),
    (FBN, AttrInfo::new("pr_dump_dir", Text, RW)),
    (ALL, AttrInfo::new("type", Text, RO)),
];

/// Handler-level attribute (`handlers/<handler>/<name>`).
pub fn handler_attr(handler: &str, name: &str) -> Option<AttrInfo> {
    let mask = vdisk_mask(handler)?;
    HANDLER_ATTRS
        .iter()
        .find(|(m, a)| m & mask != 0 && a.name == name)
        .map(|(_, a)| *a)
}

/// vdisk device attributes. An attribute whose access differs between handlers has one row
/// per variant; the first row matching the handler wins.
const VDISK_ATTRS: &[(u8, AttrInfo)] = &[
    (FB, AttrInfo::new("filename", Text, RO).creation().key()),
    // vcdrom: filename is how media is inserted (empty = eject), not a creation param.
    (C, AttrInfo::new("filename", Text, RW).key()),
    (
        FBN,
        AttrInfo::new(
            "blocksize",
            PowerOfTwo {
                min: 512,
                max: 1 << 16,
            },
            RO,
        )
        .creation()
        .key(),
    ),
    // fileio's size is the file's (resync_size re-reads it); blockio's is writable as
    // in SCST (an online resize within the device).
    (N, AttrInfo::new("size", SIZE, RW).creation()),
    (B, AttrInfo::new("size", SIZE, RW).creation()),
    (F | C, AttrInfo::new("size", SIZE, RO)),
    (N, AttrInfo::new("size_mb", SIZE, RW).creation()),
    (B, AttrInfo::new("size_mb", SIZE, RW).creation()),
    (F | C, AttrInfo::new("size_mb", SIZE, RO)),
    (FB, AttrInfo::new("resync_size", Text, WO)),
    (FB, AttrInfo::new("sync", Text, WO)),
    // read_only and write_through change at run time in scst-rs (SCST: creation only);
    // see scst-vdisk's attrs.rs.
    (FBN, AttrInfo::new("read_only", Bool, RW).creation().key()),
    (
        FB,
        AttrInfo::new("write_through", Bool, RW).creation().key(),
    ),
    (FB, AttrInfo::new("nv_cache", Bool, RO).creation().key()),
    (F, AttrInfo::new("o_direct", Bool, RO).creation()),
    (F, AttrInfo::new("async", Bool, RW).creation()),
    (
        FB,
        AttrInfo::new("thin_provisioned", Bool, RO).creation().key(),
    ),
    (
        FB,
        AttrInfo::new("gen_tp_soft_threshold_reached_UA", Text, WO),
    ),
    (FBN, AttrInfo::new("rotational", Bool, RO).creation()),
    (FBN, AttrInfo::new("removable", Bool, RO).creation()),
    (ALL, AttrInfo::new("tst", Bool, RO).creation()),
    (FBN, AttrInfo::new("opt_trans_len", U32, RW)),
    (FB, AttrInfo::new("lb_per_pb_exp", Bool, RW)),
    // Explicit ALUA (SET TARGET PORT GROUPS) is a later step.
    (FB, AttrInfo::new("expl_alua", Bool, RW).default_only("0")),
    (
        FB,
        AttrInfo::new("active", Bool, RW)
            .creation()
            .default_only("1"),
    ),
    // Fixed in scst-rs (compared, see CORE_DEVICE_ATTRS): the backing file stays open
    // whatever the ALUA state (SCST's 0, fileio's default); the core refuses the
    // commands a state forbids either way.
    (FB, AttrInfo::new("bind_alua_state", Bool, RO)),
    (
        FBN,
        AttrInfo::new("cluster_mode", Bool, RW)
            .creation()
            .key()
            .default_only("0"),
    ),
    (N, AttrInfo::new("dummy", Bool, RO).creation()),
    (N, AttrInfo::new("read_zero", Bool, RW)),
    // Identity: the disks change it at run time (INQUIRY DATA HAS CHANGED); vcdrom
    // takes it when the device is created.
    (FBN, AttrInfo::new("t10_vend_id", Text, RW)),
    (C, AttrInfo::new("t10_vend_id", Text, RO).creation()),
    (FBN, AttrInfo::new("prod_id", Text, RW).key()),
    (C, AttrInfo::new("prod_id", Text, RO).creation().key()),
    (FBN, AttrInfo::new("prod_rev_lvl", Text, RW)),
    (C, AttrInfo::new("prod_rev_lvl", Text, RO).creation()),
    (FBN, AttrInfo::new("t10_dev_id", Text, RW).creation().key()),
    (C, AttrInfo::new("t10_dev_id", Text, RO).creation().key()),
    (FBN, AttrInfo::new("vend_specific_id", Text, RW)),
    (C, AttrInfo::new("vend_specific_id", Text, RO).creation()),
    (FBN, AttrInfo::new("usn", Text, RW)),
    (C, AttrInfo::new("usn", Text, RO).creation()),
    (FBN, AttrInfo::new("eui64_id", Text, RW)),
    (C, AttrInfo::new("eui64_id", Text, RO).creation()),
    (FBN, AttrInfo::new("naa_id", Text, RW)),
    (C, AttrInfo::new("naa_id", Text, RO).creation()),
    (FBN, AttrInfo::new("scsi_device_name", Text, RW)),
    (C, AttrInfo::new("scsi_device_name", Text, RO).creation()),
    (FBN, AttrInfo::new("inq_vend_specific", Text, RW)),
    (C, AttrInfo::new("inq_vend_specific", Text, RO).creation()),
    (
        FBN,
        AttrInfo::new(
            "dif_mode",
            Flags(&["tgt", "scst", "dev_check", "dev_store"]),
            RO,
        )
        .creation()
        .not_supported(),
    ),
    // T10-PI is a later step.
    (
        FBN,
        AttrInfo::new("dif_type", int(0, 3), RO)
            .creation()
            .default_only("0"),
    ),
    (
        FBN,
        AttrInfo::new("dif_static_app_tag", U16, RW)
            .creation()
            .not_supported(),
    ),
    (
        FB,
        AttrInfo::new("dif_filename", Text, RO)
            .creation()
            .not_supported(),
    ),
    (
        FBN,
        AttrInfo::new("numa_node_id", int(-1, 4095), RO)
            .creation()
            .default_only("-1"),
    ),
];

/// Core device attributes every device has (scst-reference 2.5, first table), consulted after the
/// handler's own table.
const CORE_DEVICE_ATTRS: &[AttrInfo] = &[
    // Fixed in scst-rs (read-only, compared with a file's value, docs/scst-reference.md
    // "Loading SCST-written configurations"): every device's blocking I/O runs on the
    // one shared I/O pool (`threads`), and a session's commands are bounded by its
    // transport (iSCSI QueuedCommands), not per LUN.
    AttrInfo::new("max_tgt_dev_commands", int(1, 65535), RO),
    AttrInfo::new("numa_node_id", int(-1, 4095), RW).default_only("-1"),
    AttrInfo::new("threads_num", I32, RO),
    AttrInfo::new("threads_pool_type", Enum(&["per_initiator", "shared"]), RO),
    // SCST's external blocking ("<blocks> <pending>"); nothing blocks an scst-rs device.
    AttrInfo::new("block", Text, RO),
    // Given when the device is added (its PR state is loaded from it then); SCST lets it
    // change later.
    AttrInfo::new("pr_file_name", Text, RO).creation(),
    AttrInfo::new("type", Text, RO),
    AttrInfo::new("pr_state", Text, RO),
];

/// Device attribute (`devices/<dev>/<name>`) for a device of `handler`.
pub fn device_attr(handler: &str, name: &str) -> Option<AttrInfo> {
    let mask = vdisk_mask(handler)?;
    VDISK_ATTRS
        .iter()
        .find(|(m, a)| m & mask != 0 && a.name == name)
        .map(|(_, a)| *a)
        .or_else(|| find(CORE_DEVICE_ATTRS, name))
}

/// Every attribute a device of `handler` has (handler-specific first, then core ones);
/// empty for handlers scst-rs does not implement. Useful for help texts and
/// `-list_hnd_attr`.
pub fn device_attrs(handler: &str) -> Vec<AttrInfo> {
    let Some(mask) = vdisk_mask(handler) else {
        return Vec::new();
    };
    let mut out: Vec<AttrInfo> = Vec::new();
    let rows = VDISK_ATTRS
        .iter()
        .filter(|(m, _)| m & mask != 0)
        .map(|(_, a)| *a)
        .chain(CORE_DEVICE_ATTRS.iter().copied());
    for a in rows {
        if !out.iter().any(|o| o.name == a.name) {
            out.push(a);
        }
    }
    out
}

/// Creation parameters `add_device` accepts for `handler` (scst-reference 2.4).
pub fn creation_params(handler: &str) -> Vec<&'static str> {
    device_attrs(handler)
        .into_iter()
        .filter(|a| a.creation)
        .map(|a| a.name)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Target drivers, targets, groups, LUNs (scst-reference 2.6, 2.7, 6.6)

const ISCSI_DRIVER: &[AttrInfo] = &[
    AttrInfo::new("enabled", Bool, RW).key(),
    AttrInfo::new("IncomingUser", ChapAccount, RW).dynamic(true),
    AttrInfo::new("OutgoingUser", ChapAccount, RW).dynamic(false),
    AttrInfo::new("iSNSServer", Text, RW).key(),
    AttrInfo::new("isns_entity_name", Text, RW),
    AttrInfo::new("internal_portal", Text, RW),
    // SendTargets reports link-local IPv6 portals too: SCST's default.
    AttrInfo::new("link_local", Bool, RW).default_only("1"),
    // scst-rs connection limits and counters.
    AttrInfo::new("login_timeout", int(1, 65535), RW).key(),
    AttrInfo::new("max_open_connections", int(1, 1 << 20), RW).key(),
    AttrInfo::new("open_connections", Text, RO),
    AttrInfo::new("active_commands", Text, RO),
    AttrInfo::new("data_buffer_bytes", Text, RO),
    AttrInfo::new("trace_level", Text, RW),
    AttrInfo::new("open_state", Text, RO),
    AttrInfo::new("version", Text, RO),
];

/// The copy manager's driver attributes (scst_copy_mgr.c).
const COPY_MANAGER_DRIVER: &[AttrInfo] = &[
    // Whether EXTENDED COPY may use a device the issuing initiator has no LUN of.
    AttrInfo::new("allow_not_connected_copy", Bool, RW),
];

/// Target-driver attribute (`targets/<driver>/<name>`).
pub fn driver_attr(driver: &str, name: &str) -> Option<AttrInfo> {
    match driver {
        "iscsi" => find(ISCSI_DRIVER, name),
        COPY_MANAGER => find(COPY_MANAGER_DRIVER, name),
        _ => None,
    }
}

/// Attributes every target has, whatever its driver (scst-reference 2.7).
const CORE_TARGET: &[AttrInfo] = &[
    AttrInfo::new("enabled", Bool, RW).key(),
    // 0: not assigned yet (SCST assigns one when the target is enabled); scst-rs
    // assigns one at creation, so a file's 0 asks for no particular id.
    AttrInfo::new("rel_tgt_id", int(0, 65535), RW).key(),
    AttrInfo::new("addr_method", ADDR_METHOD, RW),
    AttrInfo::new("io_grouping_type", IoGrouping, RW).default_only("auto"),
    AttrInfo::new("black_hole", int(0, 4), RW).default_only("0"),
    AttrInfo::new("cpu_mask", CPU_MASK, RW).all_cpus_only(),
    AttrInfo::new("comment", Text, RW),
    // Forwarding belongs to pass-through and cluster mode, later steps.
    AttrInfo::new("forward_src", Bool, RW).default_only("0"),
    AttrInfo::new("forward_dst", Bool, RW).default_only("0"),
    AttrInfo::new("forwarding", Bool, RW).default_only("0"),
    // scst-rs reports every event as a unit attention and sends no AEN, which is what
    // SCST does with AENs enabled over a transport that has none to send.
    AttrInfo::new("aen_disabled", Bool, RW).default_only("0"),
    AttrInfo::new("sg_tablesize", Text, RO),
    AttrInfo::new("hw_target", Text, RO),
    AttrInfo::new("dif_capabilities", Text, RO),
];

/// iSCSI target attributes (scst-reference 6.6); session keys are also `add_target` parameters.
const ISCSI_TARGET: &[AttrInfo] = &[
    AttrInfo::new("tid", Text, RO),
    AttrInfo::new("alias", Text, RW),
    AttrInfo::new("redirect", Text, RW),
    AttrInfo::new("per_portal_acl", Bool, RW),
    AttrInfo::new("IncomingUser", ChapAccount, RW).dynamic(true),
    AttrInfo::new("OutgoingUser", ChapAccount, RW).dynamic(false),
    AttrInfo::new("allowed_portal", Text, RW).dynamic(true),
    AttrInfo::new("InitialR2T", YES_NO, RW).creation(),
    AttrInfo::new("ImmediateData", YES_NO, RW).creation(),
    AttrInfo::new("MaxRecvDataSegmentLength", SEG_LEN, RW)
        .creation()
        .key(),
    AttrInfo::new("MaxXmitDataSegmentLength", SEG_LEN, RW).creation(),
    AttrInfo::new("MaxBurstLength", SEG_LEN, RW)
        .creation()
        .key(),
    AttrInfo::new("FirstBurstLength", SEG_LEN, RW)
        .creation()
        .key(),
    AttrInfo::new("MaxOutstandingR2T", int(1, 65535), RW).creation(),
    AttrInfo::new("HeaderDigest", DIGEST, RW).creation().key(),
    AttrInfo::new("DataDigest", DIGEST, RW).creation().key(),
    AttrInfo::new("QueuedCommands", int(1, 2048), RW)
        .creation()
        .key(),
    AttrInfo::new("RspTimeout", int(2, 65535), RW).creation(),
    AttrInfo::new("NopInInterval", U16, RW).creation(),
    AttrInfo::new("NopInTimeout", int(2, 65535), RW).creation(),
    AttrInfo::new("MaxSessions", U16, RW).creation(),
    // iSER; scst-rs serves iSCSI over TCP only.
    AttrInfo::new("RDMAExtensions", YES_NO, RW)
        .creation()
        .default_only("No"),
];

/// vhost target attributes (docs/vhost.md): the socket is chosen at creation.
const VHOST_TARGET: &[AttrInfo] = &[AttrInfo::new("socket", Text, RO).creation().key()];

/// Target attribute (`targets/<driver>/<target>/<name>`): the driver's own, then core.
pub fn target_attr(driver: &str, name: &str) -> Option<AttrInfo> {
    let own = match driver {
        "iscsi" => find(ISCSI_TARGET, name),
        "vhost" => find(VHOST_TARGET, name),
        // SCST's copy manager target is never enabled (it has no `enabled`).
        COPY_MANAGER if name == "enabled" => return None,
        _ => None,
    };
    own.or_else(|| find(CORE_TARGET, name))
}

const CORE_GROUP: &[AttrInfo] = &[
    AttrInfo::new("addr_method", ADDR_METHOD, RW),
    AttrInfo::new("io_grouping_type", IoGrouping, RW).default_only("auto"),
    AttrInfo::new("black_hole", int(0, 4), RW).default_only("0"),
    AttrInfo::new("cpu_mask", CPU_MASK, RW).all_cpus_only(),
];

const ISCSI_GROUP: &[AttrInfo] =
    &[AttrInfo::new("per_sess_dedicated_tgt_threads", Bool, RW).default_only("0")];

/// Security group attribute (`targets/<driver>/<target>/ini_groups/<group>/<name>`).
pub fn group_attr(driver: &str, name: &str) -> Option<AttrInfo> {
    let own = match driver {
        "iscsi" => find(ISCSI_GROUP, name),
        _ => None,
    };
    own.or_else(|| find(CORE_GROUP, name))
}

const LUN: &[AttrInfo] = &[AttrInfo::new("read_only", Bool, RO).creation().key()];

/// LUN attribute (`.../luns/<n>/<name>`), set as a parameter of the LUN `add` command.
pub fn lun_attr(name: &str) -> Option<AttrInfo> {
    find(LUN, name)
}

// ---------------------------------------------------------------------------------------
// ALUA (scst-reference 2.9)

/// Device groups have no attributes of their own (only `devices/` and `target_groups/`).
pub fn device_group_attr(_name: &str) -> Option<AttrInfo> {
    None
}

/// The `device_groups/` directory (scst.conf `ALUA { }`) has no attributes scst-rs knows.
pub fn alua_attr(_name: &str) -> Option<AttrInfo> {
    None
}

const TARGET_GROUP: &[AttrInfo] = &[
    AttrInfo::new("group_id", U16, RW).key(),
    AttrInfo::new("preferred", Bool, RW),
    AttrInfo::new(
        "state",
        Enum(&[
            "active",
            "nonoptimized",
            "standby",
            "unavailable",
            "offline",
            "transitioning",
        ]),
        RW,
    )
    .key(),
    AttrInfo::new("comment", Text, RW).not_supported(),
];

/// Target group attribute (`device_groups/<dg>/target_groups/<tg>/<name>`).
pub fn target_group_attr(name: &str) -> Option<AttrInfo> {
    find(TARGET_GROUP, name)
}

const TARGET_GROUP_TARGET: &[AttrInfo] = &[AttrInfo::new("rel_tgt_id", int(1, 65535), RW).key()];

/// Attribute of a target inside a target group (`.../target_groups/<tg>/<target>/<name>`).
pub fn tg_target_attr(name: &str) -> Option<AttrInfo> {
    find(TARGET_GROUP_TARGET, name)
}

// ---------------------------------------------------------------------------------------
// The whole table, for documentation and for tests that walk it

/// Where in the tree (and in scst.conf) an attribute lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Root,
    /// `handlers/<handler>/`
    Handler(&'static str),
    /// `devices/<dev>/` of a device of this handler
    Device(&'static str),
    /// `targets/<driver>/`
    Driver(&'static str),
    /// `targets/<driver>/<target>/`
    Target(&'static str),
    /// `targets/<driver>/<target>/ini_groups/<group>/`
    Group(&'static str),
    /// `.../luns/<n>/`
    Lun,
    /// `device_groups/<dg>/target_groups/<tg>/`
    TargetGroup,
    /// `device_groups/<dg>/target_groups/<tg>/<target>/`
    TargetGroupTarget,
}

/// Every attribute a configuration may set (creation parameters, writable and dynamic
/// ones), at each level, for the handlers and drivers scst-rs implements.
pub fn configurable_attrs() -> Vec<(Level, AttrInfo)> {
    fn merged(own: &[AttrInfo], core: &[AttrInfo]) -> Vec<AttrInfo> {
        let mut out: Vec<AttrInfo> = Vec::new();
        for a in own.iter().chain(core) {
            if !out.iter().any(|o| o.name == a.name) {
                out.push(*a);
            }
        }
        out
    }
    let mut out: Vec<(Level, AttrInfo)> = Vec::new();
    let mut add = |level: Level, list: Vec<AttrInfo>| {
        out.extend(
            list.into_iter()
                .filter(AttrInfo::configurable)
                .map(|a| (level, a)),
        );
    };
    add(Level::Root, ROOT.to_vec());
    for h in SUPPORTED_HANDLERS {
        let mask = vdisk_mask(h).unwrap_or(0);
        let own: Vec<AttrInfo> = HANDLER_ATTRS
            .iter()
            .filter(|(m, _)| m & mask != 0)
            .map(|(_, a)| *a)
            .collect();
        add(Level::Handler(h), own);
        add(Level::Device(h), device_attrs(h));
    }
    add(Level::Driver("iscsi"), ISCSI_DRIVER.to_vec());
    add(Level::Target("iscsi"), merged(ISCSI_TARGET, CORE_TARGET));
    add(Level::Target("vhost"), merged(VHOST_TARGET, CORE_TARGET));
    add(Level::Group("vhost"), CORE_GROUP.to_vec());
    add(Level::Driver(COPY_MANAGER), COPY_MANAGER_DRIVER.to_vec());
    let cm_target: Vec<AttrInfo> = CORE_TARGET
        .iter()
        .filter(|a| a.name != "enabled")
        .copied()
        .collect();
    add(Level::Target(COPY_MANAGER), cm_target);
    add(Level::Group("iscsi"), merged(ISCSI_GROUP, CORE_GROUP));
    add(Level::Lun, LUN.to_vec());
    add(Level::TargetGroup, TARGET_GROUP.to_vec());
    add(Level::TargetGroupTarget, TARGET_GROUP_TARGET.to_vec());
    out
}

#[cfg(test)]
#[path = "attrs_tests.rs"]
mod tests;
