//! The command line: SCST's option style (docs/scst-reference.md 3.4), one command with
//! its value, options that take a value, and flags.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};

pub const USAGE: &str = "usage: scstadmin [-socket PATH] COMMAND [OPTIONS]

Listing:
  -list_handler [h]   -list_device [d]   -list_driver [drv]   -list_target [t] [-driver d]
  -list_group [g] [-driver d] [-target t]  -list_sessions
  -list_dgrp [dg]     -list_tgrp [tg] [-dev_group dg]
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
Options: -socket PATH (default $SCSTADMIN_SOCKET, else /run/scstd.sock), -noprompt, -nonkey
Exit status: 0 done, 1 error, 2 usage error, 3 scstd not running, 141 output pipe closed
Also: -version (or --version), -help";

/// SCST's configuration file, for the configuration commands given no file.
pub const DEFAULT_CONFIG: &str = "/etc/scst.conf";

/// SCST's commands this scstadmin knows but cannot run: `-issue_lip` is Fibre
/// Channel's, and only the iscsi target driver exists.
pub const NOT_YET: &[&str] = &["issue_lip"];

/// Commands and whether their value is required (`Some(true)`), optional
/// (`Some(false)`) or absent (`None`).
pub fn command_arity(name: &str) -> Option<Option<bool>> {
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

pub struct Invocation {
    pub command: String,
    pub value: Option<String>,
    pub options: BTreeMap<String, String>,
    pub flags: Vec<String>,
}

impl Invocation {
    pub fn opt(&self, name: &str) -> Result<&str> {
        self.options
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("-{} needs -{name}", self.command))
    }

    /// The file of -config, -check_config and -write_config: SCST's default when none
    /// is given.
    pub fn config_file(&self) -> &str {
        self.value.as_deref().unwrap_or(DEFAULT_CONFIG)
    }

    pub fn value(&self) -> Result<&str> {
        self.value
            .as_deref()
            .ok_or_else(|| anyhow!("-{} needs a value", self.command))
    }

    /// `targets/<d>/<t>` from `-driver` and `-target`.
    pub fn target_dir(&self) -> Result<String> {
        Ok(format!(
            "targets/{}/{}",
            self.driver()?,
            self.opt("target")?
        ))
    }

    /// The `luns/mgmt` file of the target, or of `-group`'s LUN set.
    pub fn luns_mgmt(&self) -> Result<String> {
        let t = self.target_dir()?;
        Ok(match self.options.get("group") {
            Some(g) => format!("{t}/ini_groups/{g}/luns/mgmt"),
            None => format!("{t}/luns/mgmt"),
        })
    }

    /// `-attributes k=v,k=v` as pairs, for the attribute setters; at least one.
    pub fn attr_pairs(&self) -> Result<Vec<(String, String)>> {
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
    pub fn dg_dir(&self) -> Result<String> {
        Ok(format!("device_groups/{}", self.opt("dev_group")?))
    }

    /// `device_groups/<dg>/target_groups/<tg>` from `-dev_group` and `-tgt_group`.
    pub fn tg_dir(&self) -> Result<String> {
        Ok(format!(
            "{}/target_groups/{}",
            self.dg_dir()?,
            self.opt("tgt_group")?
        ))
    }

    /// The directory of LUN `value` of the target, or of `-group`'s LUN set.
    pub fn lun_dir(&self) -> Result<String> {
        let t = self.target_dir()?;
        Ok(match self.options.get("group") {
            Some(g) => format!("{t}/ini_groups/{g}/luns/{}", self.value()?),
            None => format!("{t}/luns/{}", self.value()?),
        })
    }

    /// `-driver`; when omitted, the run looks it up from the target's name first, as
    /// SCST's scstadmin does (see `resolve_driver` in main.rs).
    pub fn driver(&self) -> Result<&str> {
        self.opt("driver")
    }
}

impl Invocation {
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

/// Why the arguments were refused: usage (exit 2) or a known command not done yet.
pub enum ArgError {
    Usage(String),
    NotYet(String),
}

pub fn parse_args(args: Vec<String>) -> Result<Invocation, ArgError> {
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
pub fn mgmt_params(attrs: Option<&String>) -> Result<String> {
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
    fn attributes_become_mgmt_params() {
        assert_eq!(
            mgmt_params(Some(&"size_mb=16, blocksize=4096".to_string())).unwrap(),
            "size_mb=16; blocksize=4096"
        );
        assert!(mgmt_params(Some(&"nonsense".to_string())).is_err());
        assert_eq!(mgmt_params(None).unwrap(), "");
    }
}
