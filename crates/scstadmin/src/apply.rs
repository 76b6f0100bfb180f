//! `-config`, `-check_config`, `-clear_config` and `-write_config` (docs/scst-reference.md
//! 3.4): reading and checking the file here; planning and applying it is scst-mgmt's apply
//! engine, the one scstd runs its configuration through at start-up. The output follows
//! SCST's scstadmin: the check, then each change as it is made, then the count.

use anyhow::{anyhow, bail, Context, Result};
use scst_mgmt::apply::{self as engine, read_config};
use scst_mgmt::conf::ScstConf;

use crate::args::Invocation;
use crate::session::Admin;

/// Read and check a whole scst.conf; errors name the line.
pub fn load(file: &str) -> Result<ScstConf> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("cannot read {file}: {e}"))?;
    // Every problem, of syntax or meaning, in one pass.
    scst_mgmt::conf::load(&text).map_err(|all| {
        let list: Vec<String> = all.0.iter().map(|p| format!("{file}: {p}")).collect();
        anyhow!("{}", list.join("\n"))
    })
}

/// The file a configuration command works on, read and checked before the daemon is
/// asked anything; None for the other commands.
pub fn file_for(inv: &Invocation) -> Result<Option<ScstConf>> {
    Ok(match inv.command.as_str() {
        "config" | "check_config" if is_dry_run(inv) => Some(load(inv.config_file())?),
        "config" | "check_config" => {
            let file = inv.config_file();
            say!("-> Checking configuration file '{file}' for errors.");
            let conf = load(file)?;
            say!("\t-> Done, 0 errors found.\n");
            Some(conf)
        }
        "clear_config" if !inv.flag("force") => {
            bail!("-clear_config removes the whole configuration; give -force to confirm")
        }
        "clear_config" => Some(ScstConf::default()),
        _ => None,
    })
}

/// `-config -dry_run` (or SCST's `-debug`): the planned writes, one `path <- value` a
/// line, then their count, and nothing else, for scripts to read.
pub fn is_dry_run(inv: &Invocation) -> bool {
    inv.command == "config" && (inv.flag("dry_run") || inv.flag("debug"))
}

/// Run `inv` if it is a configuration command (`file` from [`file_for`]).
pub fn run(a: &mut Admin, inv: &Invocation, file: Option<ScstConf>) -> Result<bool> {
    let c = &mut a.client;
    match inv.command.as_str() {
        "write_config" => {
            let path = inv.config_file();
            let conf = read_config(c, inv.flag("nonkey"))?;
            let text = scst_mgmt::write_config(&conf);
            std::fs::write(path, text).with_context(|| format!("cannot write {path}"))?;
            say!("Writing current configuration to file '{path}'.. done.");
        }
        "config" | "clear_config" => {
            let file = file.context("the configuration file was not read")?;
            let force = inv.flag("force") || inv.command == "clear_config";
            let dry = is_dry_run(inv);
            let plan = engine::plan(c, &file, force)?;
            for w in &plan.warnings {
                say!("\t-> WARNING: {w}");
            }
            if dry {
                for op in &plan.ops {
                    say!("{op}");
                }
                say!(
                    "{} change(s) needed; dry run, nothing changed.",
                    plan.ops.len()
                );
            } else {
                say!("-> Applying configuration.");
                engine::execute(c, &plan.ops)?;
                for op in &plan.ops {
                    say!("\t-> {}: done.", describe(&op.path, &op.value));
                }
                say!("\t-> Done, {} change(s) made.", plan.ops.len());
            }
        }
        "check_config" => {
            let file = file.context("the configuration file was not read")?;
            let plan = engine::plan(c, &file, true)?;
            for w in &plan.warnings {
                say!("\t-> WARNING: {w}");
            }
            for op in &plan.ops {
                say!("{op}");
            }
            if plan.ops.is_empty() {
                say!("Configuration is valid and matches the running configuration.");
            } else {
                say!(
                    "Configuration is valid; {} change(s) would make the running configuration match it (removals only with -force).",
                    plan.ops.len()
                );
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A planned write in SCST's scstadmin's words ("Opening device 'd1' using handler
/// 'vdisk_nullio'"); attribute writes as "Setting attribute ...".
fn describe(path: &str, value: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let mut words = value.split_whitespace();
    let (verb, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    match (parts.as_slice(), verb) {
        (["handlers", h, "mgmt"], "add_device") => {
            format!("Opening device '{name}' using handler '{h}'")
        }
        (["handlers", h, "mgmt"], "del_device") => {
            format!("Closing device '{name}' using handler '{h}'")
        }
        (["targets", drv, "mgmt"], "add_target") => {
            format!("Creating target '{name}' for driver '{drv}'")
        }
        (["targets", drv, "mgmt"], "del_target") => {
            format!("Removing virtual target '{name}' from driver '{drv}'")
        }
        ([.., "luns", "mgmt"], "add") => format!(
            "Adding device '{name}' at LUN {} to '{}'",
            words.next().unwrap_or(""),
            parts[1..parts.len() - 2].join("/")
        ),
        ([.., "luns", "mgmt"], "del") => format!(
            "Removing LUN {name} from '{}'",
            parts[1..parts.len() - 2].join("/")
        ),
        ([.., "ini_groups", "mgmt"], "create") => format!(
            "Adding new group '{name}' to driver/target '{}'",
            parts[1..parts.len() - 2].join("/")
        ),
        ([.., "ini_groups", "mgmt"], "del") => format!(
            "Removing group '{name}' from driver/target '{}'",
            parts[1..parts.len() - 2].join("/")
        ),
        ([.., "initiators", "mgmt"], "add") => {
            format!(
                "Adding new initiator '{name}' to group '{}'",
                parts[parts.len() - 3]
            )
        }
        ([.., "initiators", "mgmt"], "del") => {
            format!(
                "Removing initiator '{name}' from group '{}'",
                parts[parts.len() - 3]
            )
        }
        ([.., "enabled"], _) if parts.len() == 4 => {
            let onoff = if value.trim() == "0" {
                "Disabling"
            } else {
                "Enabling"
            };
            format!("{onoff} driver/target '{}/{}'", parts[1], parts[2])
        }
        ([.., last], _) if !last.ends_with("mgmt") => format!(
            "Setting attribute '{last}' to value '{value}' for '{}'",
            parts[..parts.len() - 1].join("/")
        ),
        _ => format!("{path} <- {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn planned_writes_read_as_scst_reports_them() {
        assert_eq!(
            describe("handlers/vdisk_nullio/mgmt", "add_device n1 size_mb=8"),
            "Opening device 'n1' using handler 'vdisk_nullio'"
        );
        assert_eq!(
            describe("targets/iscsi/t1/luns/mgmt", "add n1 0 read_only=1"),
            "Adding device 'n1' at LUN 0 to 'iscsi/t1'"
        );
        assert_eq!(
            describe("targets/iscsi/t1/enabled", "1"),
            "Enabling driver/target 'iscsi/t1'"
        );
        assert_eq!(
            describe("devices/n1/t10_dev_id", "abc"),
            "Setting attribute 't10_dev_id' to value 'abc' for 'devices/n1'"
        );
    }
}
