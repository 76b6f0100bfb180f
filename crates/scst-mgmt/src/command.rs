//! The command lines SCST's `mgmt` files accept (spec/scst.md 2.1, 2.4, 2.6, 2.7), parsed
//! into a typed [`MgmtCommand`], and the usage texts those files return when read.
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

/// Highest LUN number SCST accepts (14-bit flat space, spec 2.7).
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
        // SCST's ALUA mgmt files take `create` and `add` as synonyms (spec 2.9).
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

const PARAMS_NOTE: &str =
    "\nwhere parameters are one or more param_name=value pairs separated by ';'\n";

/// What `handlers/<h>/mgmt` returns on read. `params` are the creation parameters
/// `add_device` accepts; `attributes` the optional attributes, if the handler has any.
pub fn handler_help(params: &[&str], attributes: &[&str]) -> String {
    let mut s = String::from(
        "Usage: echo \"add_device device_name [parameters]\" >mgmt\n       \
         echo \"del_device device_name\" >mgmt\n",
    );
    if !attributes.is_empty() {
        s.push_str(
            "       echo \"add_attribute <attribute> <value>\" >mgmt\n       \
             echo \"del_attribute <attribute> <value>\" >mgmt\n       \
             echo \"add_device_attribute device_name <attribute> <value>\" >mgmt\n       \
             echo \"del_device_attribute device_name <attribute> <value>\" >mgmt\n",
        );
    }
    s.push_str(PARAMS_NOTE);
    if !params.is_empty() {
        s.push_str(&format!(
            "\nThe following parameters available: {}.\n",
            params.join(", ")
        ));
    }
    if !attributes.is_empty() {
        s.push_str(&format!(
            "The following device attributes available: {}.\n",
            attributes.join(", ")
        ));
    }
    s
}

/// What `targets/<driver>/mgmt` returns on read: the creation parameters of
/// `add_target`, the driver's and the targets' multi-value (dynamic) attributes.
pub fn target_driver_help(params: &[&str], driver_attrs: &[&str], target_attrs: &[&str]) -> String {
    let mut s = String::from(
        "Usage: echo \"add_target target_name [parameters]\" >mgmt\n       \
         echo \"del_target target_name\" >mgmt\n",
    );
    if !driver_attrs.is_empty() {
        s.push_str(
            "       echo \"add_attribute <attribute> <value>\" >mgmt\n       \
             echo \"del_attribute <attribute> <value>\" >mgmt\n",
        );
    }
    if !target_attrs.is_empty() {
        s.push_str(
            "       echo \"add_target_attribute target_name <attribute> <value>\" >mgmt\n       \
             echo \"del_target_attribute target_name <attribute> <value>\" >mgmt\n",
        );
    }
    s.push_str(PARAMS_NOTE);
    if !params.is_empty() {
        s.push_str(&format!(
            "\nThe following parameters available: {}.\n",
            params.join(", ")
        ));
    }
    if !driver_attrs.is_empty() {
        s.push_str(&format!(
            "The following target driver attributes available: {}.\n",
            driver_attrs.join(", ")
        ));
    }
    if !target_attrs.is_empty() {
        s.push_str(&format!(
            "The following target attributes available: {}.\n",
            target_attrs.join(", ")
        ));
    }
    s
}

/// What `luns/mgmt` returns on read (target and group LUN sets alike).
pub const LUNS_HELP: &str = "Usage: echo \"add H:C:I:L lun [parameters]\" >mgmt\n       \
echo \"add VNAME lun [parameters]\" >mgmt\n       \
echo \"del lun\" >mgmt\n       \
echo \"replace H:C:I:L lun [parameters]\" >mgmt\n       \
echo \"replace VNAME lun [parameters]\" >mgmt\n       \
echo \"replace_no_ua H:C:I:L lun [parameters]\" >mgmt\n       \
echo \"replace_no_ua VNAME lun [parameters]\" >mgmt\n       \
echo \"clear\" >mgmt\n\
\n\
where parameters are one or more param_name=value pairs separated by ';'\n\
\n\
The following parameters available: read_only.\n";

/// What `ini_groups/mgmt` returns on read.
pub const INI_GROUPS_HELP: &str = "Usage: echo \"create GROUP_NAME\" >mgmt\n       \
echo \"del GROUP_NAME\" >mgmt\n";

/// What `ini_groups/<g>/initiators/mgmt` returns on read.
pub const INITIATORS_HELP: &str = "Usage: echo \"add INITIATOR_NAME\" >mgmt\n       \
echo \"del INITIATOR_NAME\" >mgmt\n       \
echo \"move INITIATOR_NAME DEST_GROUP_NAME\" >mgmt\n       \
echo \"clear\" >mgmt\n";

/// What `device_groups/mgmt` returns on read.
pub const DEVICE_GROUPS_HELP: &str = "Usage: echo \"create group_name\" >mgmt\n       \
echo \"del group_name\" >mgmt\n";

/// What `device_groups/<dg>/devices/mgmt` returns on read.
pub const DG_DEVICES_HELP: &str = "Usage: echo \"add device\" >mgmt\n       \
echo \"del device\" >mgmt\n";

/// What `device_groups/<dg>/target_groups/mgmt` returns on read.
pub const TARGET_GROUPS_HELP: &str = "Usage: echo \"create group_name\" >mgmt\n       \
echo \"del group_name\" >mgmt\n";

/// What `device_groups/<dg>/target_groups/<tg>/mgmt` returns on read.
pub const TARGET_GROUP_HELP: &str = "Usage: echo \"add target_name [rel_tgt_id=N]\" >mgmt\n       \
echo \"del target_name\" >mgmt\n\
\n\
rel_tgt_id is required for a target of another node.\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(file: MgmtFile, line: &str) -> Result<MgmtCommand, CmdError> {
        parse_command(file, line)
    }

    #[test]
    fn alua_commands() {
        assert_eq!(
            p(MgmtFile::DeviceGroups, "create dg1"),
            Ok(MgmtCommand::CreateDeviceGroup { name: "dg1".into() })
        );
        assert_eq!(
            p(MgmtFile::DeviceGroups, "ADD dg1"),
            Ok(MgmtCommand::CreateDeviceGroup { name: "dg1".into() })
        );
        assert_eq!(
            p(MgmtFile::DeviceGroupDevices, "del disk1"),
            Ok(MgmtCommand::DeviceGroupDelDevice {
                device: "disk1".into()
            })
        );
        assert_eq!(
            p(MgmtFile::TargetGroups, "create tg1"),
            Ok(MgmtCommand::CreateTargetGroup { name: "tg1".into() })
        );
        assert_eq!(
            p(MgmtFile::TargetGroup, "add iqn.x:t"),
            Ok(MgmtCommand::TargetGroupAddTarget {
                target: "iqn.x:t".into(),
                rel_tgt_id: None,
            })
        );
        assert_eq!(
            p(MgmtFile::TargetGroup, "add iqn.x:b rel_tgt_id=2"),
            Ok(MgmtCommand::TargetGroupAddTarget {
                target: "iqn.x:b".into(),
                rel_tgt_id: Some(2),
            })
        );
        assert!(p(MgmtFile::TargetGroup, "add iqn.x:b rel_tgt_id=0").is_err());
        assert!(p(MgmtFile::TargetGroup, "add iqn.x:b group_id=2").is_err());
        assert_eq!(
            p(MgmtFile::TargetGroup, "create x")
                .unwrap_err()
                .to_string(),
            "unknown command 'create' for target group mgmt (read the mgmt file for usage)"
        );
        assert_eq!(
            p(MgmtFile::DeviceGroups, "del a b")
                .unwrap_err()
                .to_string(),
            "del: unexpected 'b'"
        );
    }

    #[test]
    fn add_device_with_params() {
        assert_eq!(
            p(
                MgmtFile::Handler,
                "add_device disk1 filename=/disk1; blocksize=4096; nv_cache=1"
            ),
            Ok(MgmtCommand::AddDevice {
                name: "disk1".into(),
                params: vec![
                    ("filename".into(), "/disk1".into()),
                    ("blocksize".into(), "4096".into()),
                    ("nv_cache".into(), "1".into()),
                ],
            })
        );
        // Case-insensitive command word, trailing ';', surrounding blanks.
        assert_eq!(
            p(MgmtFile::Handler, "  ADD_DEVICE  d2   size_mb = 16 ;\n"),
            Ok(MgmtCommand::AddDevice {
                name: "d2".into(),
                params: vec![("size_mb".into(), "16".into())],
            })
        );
        assert_eq!(
            p(MgmtFile::Handler, "add_device d3"),
            Ok(MgmtCommand::AddDevice {
                name: "d3".into(),
                params: vec![],
            })
        );
    }

    #[test]
    fn handler_errors_name_the_problem() {
        assert_eq!(p(MgmtFile::Handler, "   "), Err(CmdError::Empty));
        let e = p(MgmtFile::Handler, "add_device").unwrap_err();
        assert_eq!(e.to_string(), "add_device: missing device name");
        let e = p(MgmtFile::Handler, "add_device d1 filename").unwrap_err();
        assert_eq!(
            e.to_string(),
            "add_device: parameter 'filename' is not name=value"
        );
        let e = p(MgmtFile::Handler, "add_device d1 =5").unwrap_err();
        assert!(matches!(e, CmdError::BadParam { .. }));
        let e = p(MgmtFile::Handler, "del_device d1 d2").unwrap_err();
        assert_eq!(e.to_string(), "del_device: unexpected 'd2'");
        let e = p(MgmtFile::Handler, "frobnicate d1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown command 'frobnicate' for handler mgmt (read the mgmt file for usage)"
        );
        // Target driver commands are not handler commands.
        assert!(matches!(
            p(MgmtFile::Handler, "add_target t"),
            Err(CmdError::UnknownCommand { .. })
        ));
    }

    #[test]
    fn handler_attribute_commands() {
        assert_eq!(
            p(MgmtFile::Handler, "del_device d1"),
            Ok(MgmtCommand::DelDevice { name: "d1".into() })
        );
        assert_eq!(
            p(
                MgmtFile::Handler,
                "add_device_attribute d1 t10_dev_id abc def"
            ),
            Ok(MgmtCommand::AddDeviceAttribute {
                device: "d1".into(),
                attr: "t10_dev_id".into(),
                value: "abc def".into(),
            })
        );
        assert_eq!(
            p(MgmtFile::Handler, "Del_Device_Attribute d1 a v"),
            Ok(MgmtCommand::DelDeviceAttribute {
                device: "d1".into(),
                attr: "a".into(),
                value: "v".into(),
            })
        );
        assert_eq!(
            p(MgmtFile::Handler, "add_device_attribute d1 a").unwrap_err(),
            CmdError::Missing {
                command: "add_device_attribute",
                what: "attribute value"
            }
        );
        assert_eq!(
            p(MgmtFile::Handler, "add_attribute trace_level x"),
            Ok(MgmtCommand::AddAttribute {
                attr: "trace_level".into(),
                value: "x".into()
            })
        );
    }

    #[test]
    fn target_driver_commands() {
        let t = MgmtFile::TargetDriver;
        assert_eq!(
            p(t, "add_target iqn.2026-01.x:t1"),
            Ok(MgmtCommand::AddTarget {
                name: "iqn.2026-01.x:t1".into(),
                params: vec![]
            })
        );
        assert_eq!(
            p(t, "add_target t2 rel_tgt_id=5"),
            Ok(MgmtCommand::AddTarget {
                name: "t2".into(),
                params: vec![("rel_tgt_id".into(), "5".into())]
            })
        );
        assert_eq!(
            p(t, "del_target t2"),
            Ok(MgmtCommand::DelTarget { name: "t2".into() })
        );
        assert_eq!(
            p(t, "add_attribute IncomingUser joe secret12345"),
            Ok(MgmtCommand::AddAttribute {
                attr: "IncomingUser".into(),
                value: "joe secret12345".into()
            })
        );
        assert_eq!(
            p(t, "del_attribute IncomingUser joe secret12345"),
            Ok(MgmtCommand::DelAttribute {
                attr: "IncomingUser".into(),
                value: "joe secret12345".into()
            })
        );
        assert_eq!(
            p(t, "add_target_attribute t1 allowed_portal 10.0.0.*"),
            Ok(MgmtCommand::AddTargetAttribute {
                target: "t1".into(),
                attr: "allowed_portal".into(),
                value: "10.0.0.*".into()
            })
        );
        assert_eq!(
            p(t, "DEL_TARGET_ATTRIBUTE t1 allowed_portal 10.0.0.*"),
            Ok(MgmtCommand::DelTargetAttribute {
                target: "t1".into(),
                attr: "allowed_portal".into(),
                value: "10.0.0.*".into()
            })
        );
        assert_eq!(
            p(t, "del_attribute IncomingUser").unwrap_err().to_string(),
            "del_attribute: missing attribute value"
        );
        assert_eq!(
            p(t, "add_target_attribute").unwrap_err().to_string(),
            "add_target_attribute: missing target name"
        );
        assert!(matches!(
            p(t, "add_device d"),
            Err(CmdError::UnknownCommand { .. })
        ));
    }

    #[test]
    fn lun_commands() {
        let l = MgmtFile::Luns;
        assert_eq!(
            p(l, "add disk1 0"),
            Ok(MgmtCommand::AddLun {
                device: "disk1".into(),
                lun: 0,
                read_only: false
            })
        );
        assert_eq!(
            p(l, "ADD disk1 7 read_only=1"),
            Ok(MgmtCommand::AddLun {
                device: "disk1".into(),
                lun: 7,
                read_only: true
            })
        );
        assert_eq!(
            p(l, "replace disk2 7 read_only=0;"),
            Ok(MgmtCommand::ReplaceLun {
                device: "disk2".into(),
                lun: 7,
                read_only: false,
                unit_attention: true
            })
        );
        assert_eq!(
            p(l, "replace_no_ua disk2 16383"),
            Ok(MgmtCommand::ReplaceLun {
                device: "disk2".into(),
                lun: MAX_LUN,
                read_only: false,
                unit_attention: false
            })
        );
        assert_eq!(p(l, "del 3"), Ok(MgmtCommand::DelLun { lun: 3 }));
        assert_eq!(p(l, "Clear"), Ok(MgmtCommand::ClearLuns));
    }

    #[test]
    fn lun_errors() {
        let l = MgmtFile::Luns;
        assert_eq!(
            p(l, "add disk1 16384").unwrap_err().to_string(),
            "add: LUN '16384' is not a number in 0..16383"
        );
        assert!(matches!(p(l, "add disk1 -1"), Err(CmdError::BadLun { .. })));
        assert!(matches!(p(l, "add disk1 +1"), Err(CmdError::BadLun { .. })));
        assert!(matches!(p(l, "del x"), Err(CmdError::BadLun { .. })));
        assert_eq!(
            p(l, "add disk1").unwrap_err().to_string(),
            "add: missing LUN number"
        );
        assert_eq!(
            p(l, "add disk1 0 read_only=2").unwrap_err().to_string(),
            "add: read_only must be 0 or 1, not '2'"
        );
        assert_eq!(
            p(l, "add disk1 0 foo=1").unwrap_err().to_string(),
            "add: unknown parameter 'foo'"
        );
        assert_eq!(
            p(l, "clear now").unwrap_err().to_string(),
            "clear: unexpected 'now'"
        );
        assert_eq!(
            p(l, "del").unwrap_err().to_string(),
            "del: missing LUN number"
        );
        assert!(matches!(p(l, "del 1 2"), Err(CmdError::Unexpected { .. })));
    }

    #[test]
    fn group_and_initiator_commands() {
        let g = MgmtFile::IniGroups;
        assert_eq!(
            p(g, "create hosts"),
            Ok(MgmtCommand::CreateGroup {
                name: "hosts".into()
            })
        );
        assert_eq!(
            p(g, "DEL hosts"),
            Ok(MgmtCommand::DelGroup {
                name: "hosts".into()
            })
        );
        assert!(matches!(p(g, "create"), Err(CmdError::Missing { .. })));
        let i = MgmtFile::Initiators;
        assert_eq!(
            p(i, "add iqn.1993-08.org.debian:*"),
            Ok(MgmtCommand::AddInitiator {
                pattern: "iqn.1993-08.org.debian:*".into()
            })
        );
        assert_eq!(
            p(i, "del !iqn.x"),
            Ok(MgmtCommand::DelInitiator {
                pattern: "!iqn.x".into()
            })
        );
        assert_eq!(
            p(i, "move iqn.x other"),
            Ok(MgmtCommand::MoveInitiator {
                pattern: "iqn.x".into(),
                group: "other".into()
            })
        );
        assert_eq!(
            p(i, "move iqn.x").unwrap_err().to_string(),
            "move: missing destination group name"
        );
        assert_eq!(p(i, "clear"), Ok(MgmtCommand::ClearInitiators));
        assert!(matches!(
            p(i, "create g"),
            Err(CmdError::UnknownCommand { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let files = [
            MgmtFile::Handler,
            MgmtFile::TargetDriver,
            MgmtFile::Luns,
            MgmtFile::IniGroups,
            MgmtFile::Initiators,
        ];
        let inputs = [
            "",
            "\0",
            "add \u{feff} 0",
            "add d 0 ;;;;",
            "add d 0 read_only",
            "é=ü",
            "add_device x ;=;",
            "move",
            "add_target t a=b=c",
            "\t\t\n",
        ];
        for f in files {
            for i in inputs {
                let _ = parse_command(f, i);
            }
        }
        // `a=b=c` splits at the first '='.
        assert_eq!(
            p(MgmtFile::TargetDriver, "add_target t a=b=c"),
            Ok(MgmtCommand::AddTarget {
                name: "t".into(),
                params: vec![("a".into(), "b=c".into())]
            })
        );
    }

    #[test]
    fn help_texts() {
        let h = handler_help(&["filename", "blocksize"], &[]);
        assert!(h.starts_with("Usage: echo \"add_device device_name [parameters]\" >mgmt\n"));
        assert!(h.contains("The following parameters available: filename, blocksize.\n"));
        assert!(!h.contains("add_device_attribute"));
        let h = handler_help(&[], &["t10_dev_id"]);
        assert!(h.contains("add_device_attribute device_name <attribute> <value>"));
        let t = target_driver_help(&[], &["IncomingUser"], &["allowed_portal"]);
        assert!(t.contains("add_target_attribute target_name <attribute> <value>"));
        assert!(t.contains("The following target attributes available: allowed_portal.\n"));
        assert!(LUNS_HELP.contains("echo \"del lun\" >mgmt"));
        assert!(INITIATORS_HELP.contains("move INITIATOR_NAME DEST_GROUP_NAME"));
        assert!(INI_GROUPS_HELP.contains("create GROUP_NAME"));
    }
}
