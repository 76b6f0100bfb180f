//! The command lines SCST's `mgmt` files accept (docs/scst-reference.md 2.1, 2.4, 2.6, 2.7), parsed
//! into a typed [`MgmtCommand`]; [`help`] holds the usage texts those files return when read.
//!
//! Pure: no I/O, no core. Everything here reads untrusted input (a management client's
//! line), so every failure is a [`CmdError`] that names the command and the problem.
//!
//! Conventions (SCST's): tokens are separated by whitespace; command words and parameter
//! names are case-insensitive; creation parameters are `name=value` pairs separated by `;`.

use std::fmt;

/// Which kind of `mgmt` file a command line was written to; each accepts its own set
/// of commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgmtFile {
    /// `handlers/<handler>/mgmt`
    Handler,
    /// `targets/<driver>/mgmt`
    TargetDriver,
    /// `targets/<driver>/<target>/luns/mgmt` and `.../ini_groups/<g>/luns/mgmt`
    Luns,
    /// `targets/<driver>/<target>/ini_groups/mgmt`
    IniGroups,
    /// `targets/<driver>/<target>/ini_groups/<g>/initiators/mgmt`
    Initiators,
    /// `device_groups/mgmt`
    DeviceGroups,
    /// `device_groups/<dg>/devices/mgmt`
    DeviceGroupDevices,
    /// `device_groups/<dg>/target_groups/mgmt`
    TargetGroups,
    /// `device_groups/<dg>/target_groups/<tg>/mgmt`
    TargetGroup,
}

impl fmt::Display for MgmtFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MgmtFile::Handler => "handler mgmt",
            MgmtFile::TargetDriver => "target driver mgmt",
            MgmtFile::Luns => "luns mgmt",
            MgmtFile::IniGroups => "ini_groups mgmt",
            MgmtFile::Initiators => "initiators mgmt",
            MgmtFile::DeviceGroups => "device_groups mgmt",
            MgmtFile::DeviceGroupDevices => "device group devices mgmt",
            MgmtFile::TargetGroups => "target_groups mgmt",
            MgmtFile::TargetGroup => "target group mgmt",
        })
    }
}

/// Highest LUN number SCST accepts (14-bit flat space, scst-reference 2.7).
pub const MAX_LUN: u16 = 16383;

/// One parsed management command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MgmtCommand {
    /// `add_device <name> [k=v; ...]` (handler)
    AddDevice {
        name: String,
        params: Vec<(String, String)>,
    },
    /// `del_device <name>` (handler)
    DelDevice { name: String },
    /// `add_device_attribute <dev> <attr> <value...>` (handler)
    AddDeviceAttribute {
        device: String,
        attr: String,
        value: String,
    },
    /// `del_device_attribute <dev> <attr> <value...>` (handler)
    DelDeviceAttribute {
        device: String,
        attr: String,
        value: String,
    },
    /// `add_attribute <attr> <value...>` (handler or driver level)
    AddAttribute { attr: String, value: String },
    /// `del_attribute <attr> <value...>`; the value distinguishes instances of a
    /// multi-value attribute, so it is required.
    DelAttribute { attr: String, value: String },
    /// `add_target <name> [k=v; ...]` (target driver)
    AddTarget {
        name: String,
        params: Vec<(String, String)>,
    },
    /// `del_target <name>` (target driver)
    DelTarget { name: String },
    /// `add_target_attribute <target> <attr> <value...>` (target driver)
    AddTargetAttribute {
        target: String,
        attr: String,
        value: String,
    },
    /// `del_target_attribute <target> <attr> <value...>` (target driver)
    DelTargetAttribute {
        target: String,
        attr: String,
        value: String,
    },
    /// `add <dev> <lun> [read_only=0|1]` (luns)
    AddLun {
        device: String,
        lun: u16,
        read_only: bool,
    },
    /// `del <lun>` (luns)
    DelLun { lun: u16 },
    /// `replace <dev> <lun> [read_only=0|1]`; `unit_attention` false for
    /// `replace_no_ua` (HA redirection without INQUIRY DATA HAS CHANGED).
    ReplaceLun {
        device: String,
        lun: u16,
        read_only: bool,
        unit_attention: bool,
    },
    /// `clear` (luns): remove every LUN.
    ClearLuns,
    /// `create <group>` (ini_groups)
    CreateGroup { name: String },
    /// `del <group>` (ini_groups)
    DelGroup { name: String },
    /// `add <pattern>` (initiators)
    AddInitiator { pattern: String },
    /// `del <pattern>` (initiators)
    DelInitiator { pattern: String },
    /// `move <pattern> <dest group>` (initiators)
    MoveInitiator { pattern: String, group: String },
    /// `clear` (initiators)
    ClearInitiators,
    /// `device_groups/mgmt`: `create <dg>` (SCST also accepts `add`).
    CreateDeviceGroup { name: String },
    /// `device_groups/mgmt`: `del <dg>`
    DelDeviceGroup { name: String },
    /// `device_groups/<dg>/devices/mgmt`: `add <dev>`
    DeviceGroupAddDevice { device: String },
    /// `device_groups/<dg>/devices/mgmt`: `del <dev>`
    DeviceGroupDelDevice { device: String },
    /// `device_groups/<dg>/target_groups/mgmt`: `create <tg>` (or `add`)
    CreateTargetGroup { name: String },
    /// `device_groups/<dg>/target_groups/mgmt`: `del <tg>`
    DelTargetGroup { name: String },
    /// `device_groups/<dg>/target_groups/<tg>/mgmt`: `add <target> [rel_tgt_id=N]`.
    /// The parameter is an extension: a target of another node has no id of its own,
    /// and the core wants one from the moment the target is a member.
    TargetGroupAddTarget {
        target: String,
        rel_tgt_id: Option<u16>,
    },
    /// `device_groups/<dg>/target_groups/<tg>/mgmt`: `del <target>`
    TargetGroupDelTarget { target: String },
}

/// Why a command line was refused. The message names the command and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    #[error("empty command")]
    Empty,
    #[error("unknown command '{command}' for {file} (read the mgmt file for usage)")]
    UnknownCommand { file: MgmtFile, command: String },
    #[error("{command}: missing {what}")]
    Missing {
        command: &'static str,
        what: &'static str,
    },
    #[error("{command}: unexpected '{token}'")]
    Unexpected {
        command: &'static str,
        token: String,
    },
    #[error("{command}: parameter '{param}' is not name=value")]
    BadParam {
        command: &'static str,
        param: String,
    },
    #[error("{command}: unknown parameter '{param}'")]
    UnknownParam {
        command: &'static str,
        param: String,
    },
    #[error("{command}: {param} must be 0 or 1, not '{value}'")]
    BadBool {
        command: &'static str,
        param: String,
        value: String,
    },
    #[error("{command}: LUN '{lun}' is not a number in 0..{MAX_LUN}")]
    BadLun { command: &'static str, lun: String },
}

/// Parse one command line written to a `mgmt` file of kind `file`.
pub fn parse_command(file: MgmtFile, line: &str) -> Result<MgmtCommand, CmdError> {
    let line = line.trim();
    let (word, rest) = split_token(line);
    if word.is_empty() {
        return Err(CmdError::Empty);
    }
    let cmd = word.to_ascii_lowercase();
    let unknown = || CmdError::UnknownCommand {
        file,
        command: word.to_string(),
    };
    match file {
        MgmtFile::Handler => match cmd.as_str() {
            "add_device" => {
                let (name, params) = name_and_params("add_device", "device name", rest)?;
                Ok(MgmtCommand::AddDevice { name, params })
            }
            "del_device" => Ok(MgmtCommand::DelDevice {
                name: only_name("del_device", "device name", rest)?,
            }),
            "add_device_attribute" => {
                let (device, attr, value) = three("add_device_attribute", "device name", rest)?;
                Ok(MgmtCommand::AddDeviceAttribute {
                    device,
                    attr,
                    value,
                })
            }
            "del_device_attribute" => {
                let (device, attr, value) = three("del_device_attribute", "device name", rest)?;
                Ok(MgmtCommand::DelDeviceAttribute {
                    device,
                    attr,
                    value,
                })
            }
            "add_attribute" => attr_value("add_attribute", rest)
                .map(|(attr, value)| MgmtCommand::AddAttribute { attr, value }),
            "del_attribute" => attr_value("del_attribute", rest)
                .map(|(attr, value)| MgmtCommand::DelAttribute { attr, value }),
            _ => Err(unknown()),
        },
        MgmtFile::TargetDriver => match cmd.as_str() {
            "add_target" => {
                let (name, params) = name_and_params("add_target", "target name", rest)?;
                Ok(MgmtCommand::AddTarget { name, params })
            }
            "del_target" => Ok(MgmtCommand::DelTarget {
                name: only_name("del_target", "target name", rest)?,
            }),
            "add_attribute" => attr_value("add_attribute", rest)
                .map(|(attr, value)| MgmtCommand::AddAttribute { attr, value }),
            "del_attribute" => attr_value("del_attribute", rest)
                .map(|(attr, value)| MgmtCommand::DelAttribute { attr, value }),
            "add_target_attribute" => {
                let (target, attr, value) = three("add_target_attribute", "target name", rest)?;
                Ok(MgmtCommand::AddTargetAttribute {
                    target,
                    attr,
                    value,
                })
            }
            "del_target_attribute" => {
                let (target, attr, value) = three("del_target_attribute", "target name", rest)?;
                Ok(MgmtCommand::DelTargetAttribute {
                    target,
                    attr,
                    value,
                })
            }
            _ => Err(unknown()),
        },
        MgmtFile::Luns => match cmd.as_str() {
            "add" => {
                let (device, lun, read_only) = lun_spec("add", rest)?;
                Ok(MgmtCommand::AddLun {
                    device,
                    lun,
                    read_only,
                })
            }
            "replace" | "replace_no_ua" => {
                let name = if cmd == "replace" {
                    "replace"
                } else {
                    "replace_no_ua"
                };
                let (device, lun, read_only) = lun_spec(name, rest)?;
                Ok(MgmtCommand::ReplaceLun {
                    device,
                    lun,
                    read_only,
                    unit_attention: cmd == "replace",
                })
            }
            "del" => {
                let (lun, extra) = split_token(rest);
                if lun.is_empty() {
                    return Err(CmdError::Missing {
                        command: "del",
                        what: "LUN number",
                    });
                }
                no_more("del", extra)?;
                Ok(MgmtCommand::DelLun {
                    lun: parse_lun("del", lun)?,
                })
            }
            "clear" => no_more("clear", rest).map(|()| MgmtCommand::ClearLuns),
            _ => Err(unknown()),
        },
        MgmtFile::IniGroups => match cmd.as_str() {
            "create" => Ok(MgmtCommand::CreateGroup {
                name: only_name("create", "group name", rest)?,
            }),
            "del" => Ok(MgmtCommand::DelGroup {
                name: only_name("del", "group name", rest)?,
            }),
            _ => Err(unknown()),
        },
        MgmtFile::Initiators => match cmd.as_str() {
            "add" => Ok(MgmtCommand::AddInitiator {
                pattern: only_name("add", "initiator name", rest)?,
            }),
            "del" => Ok(MgmtCommand::DelInitiator {
                pattern: only_name("del", "initiator name", rest)?,
            }),
            "move" => {
                let (pattern, rest) = split_token(rest);
                if pattern.is_empty() {
                    return Err(CmdError::Missing {
                        command: "move",
                        what: "initiator name",
                    });
                }
                let group = only_name("move", "destination group name", rest)?;
                Ok(MgmtCommand::MoveInitiator {
                    pattern: pattern.to_string(),
                    group,
                })
            }
            "clear" => no_more("clear", rest).map(|()| MgmtCommand::ClearInitiators),
            _ => Err(unknown()),
        },
        // SCST's ALUA mgmt files take `create` and `add` as synonyms (scst-reference 2.9).
        MgmtFile::DeviceGroups => match cmd.as_str() {
            "create" | "add" => Ok(MgmtCommand::CreateDeviceGroup {
                name: only_name("create", "device group name", rest)?,
            }),
            "del" => Ok(MgmtCommand::DelDeviceGroup {
                name: only_name("del", "device group name", rest)?,
            }),
            _ => Err(unknown()),
        },
        MgmtFile::DeviceGroupDevices => match cmd.as_str() {
            "add" => Ok(MgmtCommand::DeviceGroupAddDevice {
                device: only_name("add", "device name", rest)?,
            }),
            "del" => Ok(MgmtCommand::DeviceGroupDelDevice {
                device: only_name("del", "device name", rest)?,
            }),
            _ => Err(unknown()),
        },
        MgmtFile::TargetGroups => match cmd.as_str() {
            "create" | "add" => Ok(MgmtCommand::CreateTargetGroup {
                name: only_name("create", "target group name", rest)?,
            }),
            "del" => Ok(MgmtCommand::DelTargetGroup {
                name: only_name("del", "target group name", rest)?,
            }),
            _ => Err(unknown()),
        },
        MgmtFile::TargetGroup => match cmd.as_str() {
            "add" => {
                let (target, params) = name_and_params("add", "target name", rest)?;
                let mut rel_tgt_id = None;
                for (k, v) in params {
                    if !k.eq_ignore_ascii_case("rel_tgt_id") {
                        return Err(CmdError::UnknownParam {
                            command: "add",
                            param: k,
                        });
                    }
                    rel_tgt_id = Some(v.parse::<u16>().ok().filter(|n| *n > 0).ok_or(
                        CmdError::BadParam {
                            command: "add",
                            param: format!("rel_tgt_id={v}"),
                        },
                    )?);
                }
                Ok(MgmtCommand::TargetGroupAddTarget { target, rel_tgt_id })
            }
            "del" => Ok(MgmtCommand::TargetGroupDelTarget {
                target: only_name("del", "target name", rest)?,
            }),
            _ => Err(unknown()),
        },
    }
}

/// The first whitespace-separated token and the (left-trimmed) rest.
fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn no_more(command: &'static str, rest: &str) -> Result<(), CmdError> {
    let (extra, _) = split_token(rest);
    if extra.is_empty() {
        Ok(())
    } else {
        Err(CmdError::Unexpected {
            command,
            token: extra.to_string(),
        })
    }
}

fn only_name(command: &'static str, what: &'static str, rest: &str) -> Result<String, CmdError> {
    let (name, extra) = split_token(rest);
    if name.is_empty() {
        return Err(CmdError::Missing { command, what });
    }
    no_more(command, extra)?;
    Ok(name.to_string())
}

fn name_and_params(
    command: &'static str,
    what: &'static str,
    rest: &str,
) -> Result<(String, Vec<(String, String)>), CmdError> {
    let (name, params) = split_token(rest);
    if name.is_empty() {
        return Err(CmdError::Missing { command, what });
    }
    Ok((name.to_string(), parse_params(command, params)?))
}

/// `name=value` pairs separated by `;` (SCST's creation parameters). Whitespace around
/// names and values is dropped; empty items (`a=1;;b=2;`) are skipped as SCST does.
/// Names keep their case: attribute names such as `IncomingUser` are case-sensitive.
pub fn parse_params(command: &'static str, text: &str) -> Result<Vec<(String, String)>, CmdError> {
    let mut out = Vec::new();
    for item in text.split(';') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(CmdError::BadParam {
                command,
                param: item.to_string(),
            });
        };
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(CmdError::BadParam {
                command,
                param: item.to_string(),
            });
        }
        out.push((k.to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// `<attr> <value...>`: the value is the rest of the line (e.g. `IncomingUser joe secret`).
fn attr_value(command: &'static str, rest: &str) -> Result<(String, String), CmdError> {
    let (attr, value) = split_token(rest);
    if attr.is_empty() {
        return Err(CmdError::Missing {
            command,
            what: "attribute name",
        });
    }
    let value = value.trim_end();
    if value.is_empty() {
        return Err(CmdError::Missing {
            command,
            what: "attribute value",
        });
    }
    Ok((attr.to_string(), value.to_string()))
}

/// `<object> <attr> <value...>`
fn three(
    command: &'static str,
    what: &'static str,
    rest: &str,
) -> Result<(String, String, String), CmdError> {
    let (object, rest) = split_token(rest);
    if object.is_empty() {
        return Err(CmdError::Missing { command, what });
    }
    let (attr, value) = attr_value(command, rest)?;
    Ok((object.to_string(), attr, value))
}

fn parse_lun(command: &'static str, text: &str) -> Result<u16, CmdError> {
    // Decimal only: SCST reads the LUN with simple_strtoul(.., 0) but a leading zero
    // octal LUN would surprise everyone; digits-only keeps "08" meaning 8.
    text.parse::<u16>()
        .ok()
        .filter(|n| *n <= MAX_LUN && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| CmdError::BadLun {
            command,
            lun: text.to_string(),
        })
}

/// `<dev> <lun> [read_only=0|1]` of `add`/`replace`/`replace_no_ua`.
fn lun_spec(command: &'static str, rest: &str) -> Result<(String, u16, bool), CmdError> {
    let (device, rest) = split_token(rest);
    if device.is_empty() {
        return Err(CmdError::Missing {
            command,
            what: "device name",
        });
    }
    let (lun, params) = split_token(rest);
    if lun.is_empty() {
        return Err(CmdError::Missing {
            command,
            what: "LUN number",
        });
    }
    let lun = parse_lun(command, lun)?;
    let mut read_only = false;
    // SCST accepts the parameters separated by ';' and, in practice, by blanks too.
    let params = params.split_whitespace().collect::<Vec<_>>().join(";");
    for (k, v) in parse_params(command, &params)? {
        if !k.eq_ignore_ascii_case("read_only") {
            return Err(CmdError::UnknownParam { command, param: k });
        }
        read_only = match v.as_str() {
            "0" => false,
            "1" => true,
            _ => {
                return Err(CmdError::BadBool {
                    command,
                    param: k,
                    value: v,
                })
            }
        };
    }
    Ok((device.to_string(), lun, read_only))
}

pub mod help;
pub use help::*;

#[cfg(test)]
mod tests;
