//! scstadmin for scst-rs: SCST's option style (docs/scst-reference.md 3.4), talking to a running
//! scstd over its management socket (docs/management.md) instead of sysfs.
//! Exit status: 0 on success, 1 with a message on any error, 2 on a usage error.

#![forbid(unsafe_code)]

mod apply;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use scst_mgmt::apply::{self as engine, dirs, files, read_config};
use scst_mgmt::conf::ScstConf;
use scst_mgmt::protocol::strip_key;
use scst_mgmt::Client;

const USAGE: &str = "usage: scstadmin [-socket PATH] COMMAND [OPTIONS]

Listing:
  -list_handler [h]   -list_device [d]   -list_driver [drv]   -list_target [t] [-driver d]
  -list_group [g] -driver d -target t    -list_sessions
  -list_dgrp [dg]     -list_tgrp [tg] -dev_group dg
  -list_scst_attr     -list_hnd_attr h   -list_dev_attr d     -list_drv_attr drv
  -list_tgt_attr t -driver d             -list_grp_attr g -driver d -target t
  -list_lun_attr n -driver d -target t [-group g]
  -list_init_attr i -driver d -target t -group g
  -list_dgrp_attr dg  -list_tgrp_attr tg -dev_group dg
  -list_ttgt_attr t -dev_group dg -tgt_group tg
Setting attributes (all take -attributes k=v,k=v):
  -set_scst_attr  -set_hnd_attr h  -set_dev_attr d  -set_drv_attr drv
  -set_tgt_attr t -driver d        -set_grp_attr g -driver d -target t
  -set_lun_attr n -driver d -target t [-group g]  -set_init_attr i ... -group g
  -set_dgrp_attr dg  -set_tgrp_attr tg -dev_group dg  -set_ttgt_attr t -dev_group dg -tgt_group tg
  -add_drv_attr drv / -rem_drv_attr drv       (IncomingUser, OutgoingUser)
  -add_tgt_attr t -driver d / -rem_tgt_attr   (IncomingUser, OutgoingUser, allowed_portal)
Objects:
  -open_dev d -handler h [-attributes k=v,k=v]   -close_dev d -handler h   -resync_dev d
  -add_target t -driver d   -rem_target t -driver d
  -enable_target t -driver d                          -disable_target t -driver d
  -add_lun n -driver d -target t [-group g] -device dev [-attributes read_only=1]
  -replace_lun n -driver d -target t [-group g] -device dev [-attributes read_only=1]
  -rem_lun n -driver d -target t [-group g]           -clear_luns -driver d -target t [-group g]
  -add_group g -driver d -target t                    -rem_group g -driver d -target t
  -add_init i -driver d -target t -group g            -rem_init i -driver d -target t -group g
  -move_init i -driver d -target t -group g -to g2    -clear_inits -driver d -target t -group g
  -add_dgrp dg / -rem_dgrp dg      -add_dgrp_dev d -dev_group dg / -rem_dgrp_dev
  -add_tgrp tg -dev_group dg / -rem_tgrp      -add_tgrp_tgt t -dev_group dg -tgt_group tg / -rem_tgrp_tgt
Configuration (FILE defaults to /etc/scst.conf):
  -write_config [FILE]
  -config [FILE] [-force] [-dry_run]  apply FILE: all or nothing; -force also removes
                            what FILE lacks and re-creates devices whose creation
                            parameters changed; -dry_run prints the writes, changes nothing
  -check_config [FILE]      validate FILE and print its differences from the running config
  -clear_config -force      remove every LUN, group, target, device group and device
Options: -socket PATH (default /run/scstd.sock), -noprompt, -nonkey
Also: -version (or --version), -help";

/// SCST's configuration file, for the configuration commands given no file.
const DEFAULT_CONFIG: &str = "/etc/scst.conf";

/// The git commit of the build (set by the build script), empty when unknown.
const COMMIT: &str = env!("SCST_RS_COMMIT");

fn version_line() -> String {
    let version = env!("CARGO_PKG_VERSION");
    if COMMIT.is_empty() {
        format!("scstadmin (scst-rs) {version}")
    } else {
        format!("scstadmin (scst-rs) {version} (git {COMMIT})")
    }
}

/// SCST's commands this scstadmin knows but cannot run: `-issue_lip` is Fibre
/// Channel's, and only the iscsi target driver exists.
const NOT_YET: &[&str] = &["issue_lip"];

/// Commands and whether their value is required (`Some(true)`), optional
/// (`Some(false)`) or absent (`None`).
fn command_arity(name: &str) -> Option<Option<bool>> {
    Some(match name {
        "list_handler" | "list_device" | "list_target" | "list_group" | "list_driver"
        | "list_drivers" | "list_dgrp" | "list_tgrp" => Some(false),
        // SCST's default file, /etc/scst.conf, when none is given.
        "write_config" | "config" | "check_config" => Some(false),
        "list_sessions" | "clear_luns" | "clear_inits" | "set_scst_attr" | "clear_config"
        | "list_scst_attr" => None,
        "list_dev_attr" | "list_tgt_attr" | "open_dev" | "close_dev" | "set_dev_attr"
        | "add_target" | "rem_target" | "enable_target" | "disable_target" | "add_lun"
        | "rem_lun" | "replace_lun" | "add_group" | "rem_group" | "add_init" | "rem_init"
        | "move_init" | "list_hnd_attr" | "list_drv_attr" | "list_grp_attr" | "list_lun_attr"
        | "list_init_attr" | "list_dgrp_attr" | "list_tgrp_attr" | "list_ttgt_attr"
        | "set_hnd_attr" | "set_drv_attr" | "set_tgt_attr" | "set_grp_attr" | "set_lun_attr"
        | "set_init_attr" | "set_dgrp_attr" | "set_tgrp_attr" | "set_ttgt_attr"
        | "add_drv_attr" | "rem_drv_attr" | "add_tgt_attr" | "rem_tgt_attr" | "resync_dev"
        | "add_dgrp" | "rem_dgrp" | "add_dgrp_dev" | "rem_dgrp_dev" | "add_tgrp" | "rem_tgrp"
        | "add_tgrp_tgt" | "rem_tgrp_tgt" => Some(true),
        _ => return None,
    })
}

/// Options that modify a command; all take a value except the flags.
const VALUE_OPTIONS: &[&str] = &[
    "socket",
    "driver",
    "target",
    "device",
    "handler",
    "attributes",
    "group",
    "to",
    "dev_group",
    "tgt_group",
];
const FLAGS: &[&str] = &[
    "noprompt",
    "nonkey",
    "force",
    "cont_on_err",
    "debug",
    "dry_run",
];

struct Invocation {
    command: String,
    value: Option<String>,
    options: BTreeMap<String, String>,
    flags: Vec<String>,
}

impl Invocation {
    fn opt(&self, name: &str) -> Result<&str> {
        self.options
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("-{} needs -{name}", self.command))
    }

    /// The file of -config, -check_config and -write_config: SCST's default when none
    /// is given.
    fn config_file(&self) -> &str {
        self.value.as_deref().unwrap_or(DEFAULT_CONFIG)
    }

    fn value(&self) -> Result<&str> {
        self.value
            .as_deref()
            .ok_or_else(|| anyhow!("-{} needs a value", self.command))
    }

    /// `targets/<d>/<t>` from `-driver` and `-target`.
    fn target_dir(&self) -> Result<String> {
        Ok(format!(
            "targets/{}/{}",
            self.driver()?,
            self.opt("target")?
        ))
    }

    /// The `luns/mgmt` file of the target, or of `-group`'s LUN set.
    fn luns_mgmt(&self) -> Result<String> {
        let t = self.target_dir()?;
        Ok(match self.options.get("group") {
            Some(g) => format!("{t}/ini_groups/{g}/luns/mgmt"),
            None => format!("{t}/luns/mgmt"),
        })
    }

    /// `-attributes k=v,k=v` as pairs, for the attribute setters; at least one.
    fn attr_pairs(&self) -> Result<Vec<(String, String)>> {
        let a = self.opt("attributes")?;
        let mut out = Vec::new();
        for item in a.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| anyhow!("-attributes: '{item}' is not name=value"))?;
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
        if out.is_empty() {
            bail!("-{}: -attributes is empty", self.command);
        }
        Ok(out)
    }

    /// `device_groups/<dg>` from `-dev_group`.
    fn dg_dir(&self) -> Result<String> {
        Ok(format!("device_groups/{}", self.opt("dev_group")?))
    }

    /// `device_groups/<dg>/target_groups/<tg>` from `-dev_group` and `-tgt_group`.
    fn tg_dir(&self) -> Result<String> {
        Ok(format!(
            "{}/target_groups/{}",
            self.dg_dir()?,
            self.opt("tgt_group")?
        ))
    }

    /// The directory of LUN `value` of the target, or of `-group`'s LUN set.
    fn lun_dir(&self) -> Result<String> {
        let t = self.target_dir()?;
        Ok(match self.options.get("group") {
            Some(g) => format!("{t}/ini_groups/{g}/luns/{}", self.value()?),
            None => format!("{t}/luns/{}", self.value()?),
        })
    }

    fn driver(&self) -> Result<&str> {
        let d = self.opt("driver")?;
        if !scst_mgmt::attrs::SUPPORTED_DRIVERS.contains(&d) {
            bail!(
                "driver {d}: only the {} target drivers exist",
                scst_mgmt::attrs::SUPPORTED_DRIVERS.join(" and ")
            );
        }
        Ok(d)
    }
}

/// Why the arguments were refused: usage (exit 2) or a known command not done yet.
enum ArgError {
    Usage(String),
    NotYet(String),
}

fn parse_args(args: Vec<String>) -> Result<Invocation, ArgError> {
    let mut command: Option<(String, Option<String>)> = None;
    let mut options = BTreeMap::new();
    let mut flags = Vec::new();
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        // SCST's scstadmin takes -opt and --opt alike.
        let name = a
            .strip_prefix("--")
            .or_else(|| a.strip_prefix('-'))
            .ok_or_else(|| ArgError::Usage(format!("unexpected argument '{a}'")))?
            .to_string();
        if let Some(arity) = command_arity(&name) {
            if let Some((prev, _)) = &command {
                return Err(ArgError::Usage(format!(
                    "-{prev} and -{name}: one command at a time"
                )));
            }
            let value = match arity {
                None => None,
                Some(required) => {
                    let next_is_value = it.peek().is_some_and(|n| !n.starts_with('-'));
                    if next_is_value {
                        it.next()
                    } else if required {
                        return Err(ArgError::Usage(format!("-{name} needs a value")));
                    } else {
                        None
                    }
                }
            };
            command = Some((name, value));
        } else if VALUE_OPTIONS.contains(&name.as_str()) {
            let v = it
                .next()
                .ok_or_else(|| ArgError::Usage(format!("-{name} needs a value")))?;
            options.insert(name, v);
        } else if FLAGS.contains(&name.as_str()) {
            flags.push(name);
        } else if NOT_YET.contains(&name.as_str()) {
            return Err(ArgError::NotYet(name));
        } else {
            return Err(ArgError::Usage(format!("unknown option '{a}'")));
        }
    }
    let (command, value) = command.ok_or_else(|| ArgError::Usage("no command given".into()))?;
    Ok(Invocation {
        command,
        value,
        options,
        flags,
    })
}

/// `-attributes k=v,k=v` into the `k=v; k=v` form of SCST's mgmt commands.
fn mgmt_params(attrs: Option<&String>) -> Result<String> {
    let Some(a) = attrs else {
        return Ok(String::new());
    };
    let mut out = Vec::new();
    for item in a.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !item.contains('=') {
            bail!("-attributes: '{item}' is not name=value");
        }
        out.push(item.to_string());
    }
    Ok(out.join("; "))
}

/// A session's attributes and counters, then its sub-directories (connections,
/// `lun<N>/`) the same way, as `<sub>/<attr>: <value>`.
fn print_session_dir(c: &mut Client, dir: &str, prefix: &str) -> Result<()> {
    let entries = c.list(dir)?;
    for name in files(&entries).into_iter().filter(|n| *n != "force_close") {
        let v = c.read(&format!("{dir}/{name}"))?;
        println!("\t\t{prefix}{name}: {}", strip_key(&v).0.replace('\n', " "));
    }
    if prefix.is_empty() {
        for sub in dirs(&entries) {
            print_session_dir(c, &format!("{dir}/{sub}"), &format!("{sub}/"))?;
        }
    }
    Ok(())
}

/// Every attribute of `dir` with its value and whether it is a key attribute.
fn print_attrs(c: &mut Client, dir: &str) -> Result<()> {
    let entries = c.list(dir)?;
    println!("\t{:<24} {:<40} Key", "Attribute", "Value");
    for name in files(&entries) {
        let raw = match c.read(&format!("{dir}/{name}")) {
            Ok(v) => v,
            Err(e) => format!("<{e}>"),
        };
        let (v, key) = strip_key(&raw);
        let v = v.replace('\n', " ");
        println!("\t{name:<24} {v:<40} {}", if key { "Yes" } else { "No" });
    }
    Ok(())
}

impl Invocation {
    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

fn run(inv: &Invocation) -> Result<()> {
    // The whole file is checked before anything is read or changed.
    let file_conf = match inv.command.as_str() {
        "config" | "check_config" => Some(apply::load(inv.config_file())?),
        "clear_config" if !inv.flag("force") => {
            bail!("-clear_config removes the whole configuration; give -force to confirm")
        }
        "clear_config" => Some(ScstConf::default()),
        _ => None,
    };
    let socket = inv
        .options
        .get("socket")
        .cloned()
        .unwrap_or_else(|| scst_mgmt::client::DEFAULT_SOCKET.to_string());
    let mut c = Client::connect(&socket)?;
    let nonkey = inv.flags.iter().any(|f| f == "nonkey");
    match inv.command.as_str() {
        "list_handler" => {
            let hs = c.list("handlers")?;
            println!("\tHandler");
            println!("\t-------------");
            for h in dirs(&hs) {
                if inv.value.as_deref().is_none_or(|v| v == h) {
                    println!("\t{h}");
                }
            }
        }
        "list_device" => {
            if let Some(d) = &inv.value {
                return print_attrs(&mut c, &format!("devices/{d}"));
            }
            println!("\t{:<20} Device", "Handler");
            println!("\t----------------------------------");
            for h in dirs(&c.list("handlers")?) {
                let entries = c.list(&format!("handlers/{h}"))?;
                let devs = dirs(&entries);
                if devs.is_empty() {
                    println!("\t{h:<20} -");
                }
                for d in devs {
                    println!("\t{h:<20} {d}");
                }
            }
        }
        "list_target" => {
            let drivers = c.list("targets")?;
            let only_driver = inv.options.get("driver");
            println!("\t{:<20} Target", "Driver");
            println!("\t----------------------------------");
            for drv in dirs(&drivers) {
                if only_driver.is_some_and(|d| d != drv) {
                    continue;
                }
                for t in dirs(&c.list(&format!("targets/{drv}"))?) {
                    if inv.value.as_deref().is_none_or(|v| v == t) {
                        println!("\t{drv:<20} {t}");
                    }
                }
            }
        }
        "list_group" => {
            let drv = inv.driver()?;
            let t = inv.opt("target")?;
            let base = format!("targets/{drv}/{t}/ini_groups");
            for g in dirs(&c.list(&base)?) {
                if inv.value.as_deref().is_some_and(|v| v != g) {
                    continue;
                }
                println!("Group: {g}");
                println!("\tLUN\tDevice");
                for n in dirs(&c.list(&format!("{base}/{g}/luns"))?) {
                    let dev = c.read(&format!("{base}/{g}/luns/{n}/device"))?;
                    println!("\t{n}\t{dev}");
                }
                println!("\tInitiators");
                for i in files(&c.list(&format!("{base}/{g}/initiators"))?) {
                    println!("\t{i}");
                }
            }
        }
        "list_sessions" => {
            for drv in dirs(&c.list("targets")?) {
                for t in dirs(&c.list(&format!("targets/{drv}"))?) {
                    let base = format!("targets/{drv}/{t}/sessions");
                    for s in dirs(&c.list(&base)?) {
                        println!("Driver/Target: {drv}/{t}");
                        println!("\tSession: {s}");
                        print_session_dir(&mut c, &format!("{base}/{s}"), "")?;
                    }
                }
            }
        }
        "list_dev_attr" => print_attrs(&mut c, &format!("devices/{}", inv.value()?))?,
        "list_tgt_attr" => print_attrs(
            &mut c,
            &format!("targets/{}/{}", inv.driver()?, inv.value()?),
        )?,
        "open_dev" => {
            let h = inv.opt("handler")?;
            let params = mgmt_params(inv.options.get("attributes"))?;
            c.write(
                &format!("handlers/{h}/mgmt"),
                format!("add_device {} {params}", inv.value()?).trim_end(),
            )?;
        }
        "add_target" => {
            let drv = inv.driver()?;
            let params = mgmt_params(inv.options.get("attributes"))?;
            c.write(
                &format!("targets/{drv}/mgmt"),
                format!("add_target {} {params}", inv.value()?).trim_end(),
            )?;
        }
        "close_dev" => {
            let h = inv.opt("handler")?;
            c.write(
                &format!("handlers/{h}/mgmt"),
                &format!("del_device {}", inv.value()?),
            )?;
        }
        "set_dev_attr" => {
            let d = inv.value()?;
            for (k, v) in inv.attr_pairs()? {
                c.write(&format!("devices/{d}/{k}"), &v)?;
            }
        }
        "set_scst_attr" => {
            for (k, v) in inv.attr_pairs()? {
                c.write(&k, &v)?;
            }
        }
        "rem_target" => {
            let drv = inv.driver()?;
            c.write(
                &format!("targets/{drv}/mgmt"),
                &format!("del_target {}", inv.value()?),
            )?;
        }
        "add_lun" | "replace_lun" => {
            let dev = inv.opt("device")?;
            let params = mgmt_params(inv.options.get("attributes"))?;
            let verb = if inv.command == "add_lun" {
                "add"
            } else {
                "replace"
            };
            c.write(
                &inv.luns_mgmt()?,
                format!("{verb} {dev} {} {params}", inv.value()?).trim_end(),
            )?;
        }
        "rem_lun" => c.write(&inv.luns_mgmt()?, &format!("del {}", inv.value()?))?,
        "clear_luns" => c.write(&inv.luns_mgmt()?, "clear")?,
        "add_group" | "rem_group" => {
            let verb = if inv.command == "add_group" {
                "create"
            } else {
                "del"
            };
            c.write(
                &format!("{}/ini_groups/mgmt", inv.target_dir()?),
                &format!("{verb} {}", inv.value()?),
            )?;
        }
        "add_init" | "rem_init" | "move_init" | "clear_inits" => {
            let mgmt = format!(
                "{}/ini_groups/{}/initiators/mgmt",
                inv.target_dir()?,
                inv.opt("group")?
            );
            let cmd = match inv.command.as_str() {
                "add_init" => format!("add {}", inv.value()?),
                "rem_init" => format!("del {}", inv.value()?),
                "move_init" => format!("move {} {}", inv.value()?, inv.opt("to")?),
                _ => "clear".to_string(),
            };
            c.write(&mgmt, &cmd)?;
        }
        "enable_target" | "disable_target" => {
            let drv = inv.driver()?;
            let on = if inv.command == "enable_target" {
                "1"
            } else {
                "0"
            };
            c.write(&format!("targets/{drv}/{}/enabled", inv.value()?), on)?;
        }
        "write_config" => {
            let file = inv.config_file();
            let conf = read_config(&mut c, nonkey)?;
            let text = scst_mgmt::write_config(&conf);
            std::fs::write(file, text).with_context(|| format!("cannot write {file}"))?;
            println!("Writing current configuration to file '{file}'.. done.");
        }
        "config" | "clear_config" => {
            let file = file_conf.expect("loaded above");
            let force = inv.flag("force") || inv.command == "clear_config";
            // -debug is SCST's name for a dry run.
            let dry = inv.flag("dry_run") || inv.flag("debug");
            let plan = engine::plan(&mut c, &file, force)?;
            for w in &plan.warnings {
                eprintln!("scstadmin: warning: {w}");
            }
            if dry {
                for op in &plan.ops {
                    println!("{op}");
                }
                println!(
                    "{} change(s) needed; dry run, nothing changed.",
                    plan.ops.len()
                );
            } else {
                engine::execute(&mut c, &plan.ops)?;
                println!("{} change(s) applied.", plan.ops.len());
            }
        }
        "check_config" => {
            let file = file_conf.expect("loaded above");
            let plan = engine::plan(&mut c, &file, true)?;
            for w in &plan.warnings {
                println!("warning: {w}");
            }
            for op in &plan.ops {
                println!("{op}");
            }
            if plan.ops.is_empty() {
                println!("Configuration is valid and matches the running configuration.");
            } else {
                println!(
                    "Configuration is valid; {} change(s) would make the running configuration match it (removals only with -force).",
                    plan.ops.len()
                );
            }
        }
        "list_driver" | "list_drivers" => {
            println!("\tDriver");
            println!("\t-------------");
            for d in dirs(&c.list("targets")?) {
                if inv.value.as_deref().is_none_or(|v| v == d) {
                    println!("\t{d}");
                }
            }
        }
        "list_scst_attr" => print_attrs(&mut c, "")?,
        "list_hnd_attr" => {
            let h = inv.value()?;
            print_attrs(&mut c, &format!("handlers/{h}"))?;
            let help = c.read(&format!("handlers/{h}/mgmt"))?;
            if let Some(p) = help
                .lines()
                .find_map(|l| l.strip_prefix("The following parameters available: "))
            {
                println!(
                    "\n\tDevice CREATE attributes available: {}",
                    p.trim_end_matches('.')
                );
            }
        }
        "list_drv_attr" => {
            let d = inv.value()?;
            print_attrs(&mut c, &format!("targets/{d}"))?
        }
        "list_grp_attr" => print_attrs(
            &mut c,
            &format!("{}/ini_groups/{}", inv.target_dir()?, inv.value()?),
        )?,
        "list_lun_attr" => print_attrs(&mut c, &inv.lun_dir()?)?,
        "list_init_attr" => {
            // Initiator entries are names, without attributes of their own.
            let dir = format!(
                "{}/ini_groups/{}/initiators",
                inv.target_dir()?,
                inv.opt("group")?
            );
            let i = inv.value()?;
            if !files(&c.list(&dir)?).contains(&i) {
                bail!("{dir}/{i}: no such initiator");
            }
            println!("\t{:<24} {:<40} Key", "Attribute", "Value");
        }
        "list_dgrp" => {
            for dg in dirs(&c.list("device_groups")?) {
                if inv.value.as_deref().is_some_and(|v| v != dg) {
                    continue;
                }
                println!("Device Group: {dg}");
                println!("\tDevices");
                for d in files(&c.list(&format!("device_groups/{dg}/devices"))?) {
                    println!("\t\t{d}");
                }
                println!("\tTarget Groups");
                let base = format!("device_groups/{dg}/target_groups");
                for tg in dirs(&c.list(&base)?) {
                    println!("\t\t{tg}");
                    for t in dirs(&c.list(&format!("{base}/{tg}"))?) {
                        println!("\t\t\t{t}");
                    }
                }
            }
        }
        "list_tgrp" => {
            let base = format!("{}/target_groups", inv.dg_dir()?);
            for tg in dirs(&c.list(&base)?) {
                if inv.value.as_deref().is_some_and(|v| v != tg) {
                    continue;
                }
                println!("Target Group: {tg}");
                print_attrs(&mut c, &format!("{base}/{tg}"))?;
                println!("\tTargets");
                for t in dirs(&c.list(&format!("{base}/{tg}"))?) {
                    println!("\t\t{t}");
                }
            }
        }
        "list_dgrp_attr" => print_attrs(&mut c, &format!("device_groups/{}", inv.value()?))?,
        "list_tgrp_attr" => print_attrs(
            &mut c,
            &format!("{}/target_groups/{}", inv.dg_dir()?, inv.value()?),
        )?,
        "list_ttgt_attr" => print_attrs(&mut c, &format!("{}/{}", inv.tg_dir()?, inv.value()?))?,
        "set_hnd_attr" | "set_drv_attr" | "set_tgt_attr" | "set_grp_attr" | "set_lun_attr"
        | "set_init_attr" | "set_dgrp_attr" | "set_tgrp_attr" | "set_ttgt_attr" => {
            let v = inv.value()?;
            let dir = match inv.command.as_str() {
                "set_hnd_attr" => format!("handlers/{v}"),
                "set_drv_attr" => format!("targets/{v}"),
                "set_tgt_attr" => format!("targets/{}/{v}", inv.driver()?),
                "set_grp_attr" => format!("{}/ini_groups/{v}", inv.target_dir()?),
                "set_lun_attr" => inv.lun_dir()?,
                "set_init_attr" => format!(
                    "{}/ini_groups/{}/initiators/{v}",
                    inv.target_dir()?,
                    inv.opt("group")?
                ),
                "set_dgrp_attr" => format!("device_groups/{v}"),
                "set_tgrp_attr" => format!("{}/target_groups/{v}", inv.dg_dir()?),
                _ => format!("{}/{v}", inv.tg_dir()?),
            };
            for (k, val) in inv.attr_pairs()? {
                c.write(&format!("{dir}/{k}"), &val)?;
            }
        }
        "add_drv_attr" | "rem_drv_attr" => {
            let d = inv.value()?;
            let verb = if inv.command == "add_drv_attr" {
                "add_attribute"
            } else {
                "del_attribute"
            };
            for (k, v) in inv.attr_pairs()? {
                c.write(&format!("targets/{d}/mgmt"), &format!("{verb} {k} {v}"))?;
            }
        }
        "add_tgt_attr" | "rem_tgt_attr" => {
            let drv = inv.driver()?;
            let t = inv.value()?;
            let verb = if inv.command == "add_tgt_attr" {
                "add_target_attribute"
            } else {
                "del_target_attribute"
            };
            for (k, v) in inv.attr_pairs()? {
                c.write(
                    &format!("targets/{drv}/mgmt"),
                    &format!("{verb} {t} {k} {v}"),
                )?;
            }
        }
        "resync_dev" => c.write(&format!("devices/{}/resync_size", inv.value()?), "1")?,
        "add_dgrp" | "rem_dgrp" => {
            let verb = if inv.command == "add_dgrp" {
                "create"
            } else {
                "del"
            };
            c.write("device_groups/mgmt", &format!("{verb} {}", inv.value()?))?;
        }
        "add_dgrp_dev" | "rem_dgrp_dev" => {
            let verb = if inv.command == "add_dgrp_dev" {
                "add"
            } else {
                "del"
            };
            c.write(
                &format!("{}/devices/mgmt", inv.dg_dir()?),
                &format!("{verb} {}", inv.value()?),
            )?;
        }
        "add_tgrp" | "rem_tgrp" => {
            let verb = if inv.command == "add_tgrp" {
                "create"
            } else {
                "del"
            };
            c.write(
                &format!("{}/target_groups/mgmt", inv.dg_dir()?),
                &format!("{verb} {}", inv.value()?),
            )?;
        }
        "add_tgrp_tgt" | "rem_tgrp_tgt" => {
            let verb = if inv.command == "add_tgrp_tgt" {
                "add"
            } else {
                "del"
            };
            c.write(
                &format!("{}/mgmt", inv.tg_dir()?),
                &format!("{verb} {}", inv.value()?),
            )?;
        }
        other => bail!("-{other}: not supported yet"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty()
        || args
            .iter()
            .any(|a| a == "-h" || a == "-help" || a == "--help")
    {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    if args.iter().any(|a| a == "-version" || a == "--version") {
        println!("{}", version_line());
        return ExitCode::SUCCESS;
    }
    let inv = match parse_args(args) {
        Ok(i) => i,
        Err(ArgError::Usage(m)) => {
            eprintln!("scstadmin: {m}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        Err(ArgError::NotYet(cmd)) => {
            eprintln!("scstadmin: -{cmd}: not supported yet");
            return ExitCode::FAILURE;
        }
    };
    match run(&inv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scstadmin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_scst_style_options() {
        let Ok(i) = parse_args(args(
            "-add_lun 0 -driver iscsi -target iqn.x:t -device d1 -attributes read_only=1 -noprompt",
        )) else {
            panic!("parse")
        };
        assert_eq!(i.command, "add_lun");
        assert_eq!(i.value.as_deref(), Some("0"));
        assert_eq!(i.options["device"], "d1");
        assert_eq!(i.flags, vec!["noprompt"]);
        let Ok(i) = parse_args(args("-list_target -driver iscsi")) else {
            panic!("parse")
        };
        assert_eq!(i.value, None);
        assert!(matches!(
            parse_args(args("-issue_lip")),
            Err(ArgError::NotYet(c)) if c == "issue_lip"
        ));
        let Ok(i) = parse_args(args("-add_tgrp_tgt iqn.x:t -dev_group dg -tgt_group tg")) else {
            panic!("parse")
        };
        assert_eq!(i.tg_dir().unwrap(), "device_groups/dg/target_groups/tg");
        let Ok(i) = parse_args(args("-list_lun_attr 3 -driver iscsi -target t -group g")) else {
            panic!("parse")
        };
        assert_eq!(i.lun_dir().unwrap(), "targets/iscsi/t/ini_groups/g/luns/3");
        let Ok(i) = parse_args(args(
            "-move_init iqn.a -driver iscsi -target t -group g1 -to g2",
        )) else {
            panic!("parse")
        };
        assert_eq!(
            (i.command.as_str(), i.options["to"].as_str()),
            ("move_init", "g2")
        );
        let Ok(i) = parse_args(args("-clear_luns -driver iscsi -target t")) else {
            panic!("parse")
        };
        assert_eq!(
            (i.command.as_str(), i.value.as_deref()),
            ("clear_luns", None)
        );
        assert_eq!(i.luns_mgmt().unwrap(), "targets/iscsi/t/luns/mgmt");
        let Ok(i) = parse_args(args("-set_scst_attr -attributes async_lun_replace=1")) else {
            panic!("parse")
        };
        assert_eq!(
            i.attr_pairs().unwrap(),
            vec![("async_lun_replace".to_string(), "1".to_string())]
        );
        assert!(matches!(
            parse_args(args("-open_dev")),
            Err(ArgError::Usage(_))
        ));
        assert!(matches!(
            parse_args(args("-bogus")),
            Err(ArgError::Usage(_))
        ));
        assert!(matches!(
            parse_args(args("-list_device -list_target")),
            Err(ArgError::Usage(_))
        ));
    }

    #[test]
    fn configuration_commands_default_to_etc_scst_conf() {
        for cmd in ["-config", "-write_config", "-check_config"] {
            let Ok(i) = parse_args(args(cmd)) else {
                panic!("{cmd} without a file")
            };
            assert_eq!(i.config_file(), "/etc/scst.conf");
        }
        let Ok(i) = parse_args(args("-config /tmp/x.conf -dry_run")) else {
            panic!("parse")
        };
        assert_eq!(i.config_file(), "/tmp/x.conf");
    }

    #[test]
    fn version_line_names_the_package_version() {
        assert!(
            version_line().starts_with(concat!("scstadmin (scst-rs) ", env!("CARGO_PKG_VERSION")))
        );
    }

    #[test]
    fn attributes_become_mgmt_params() {
        assert_eq!(
            mgmt_params(Some(&"size_mb=16, blocksize=4096".to_string())).unwrap(),
            "size_mb=16; blocksize=4096"
        );
        assert!(mgmt_params(Some(&"nonsense".to_string())).is_err());
        assert_eq!(mgmt_params(None).unwrap(), "");
    }
}
