//! The commands that change the running configuration, each reporting what it did in
//! SCST's scstadmin's words ("\t-> Opening device 'd1' using handler 'vdisk_fileio':
//! done."). A line is printed once its change is made, so the output never claims a
//! change that failed.

use anyhow::Result;
use scst_mgmt::protocol::strip_key;

use crate::args::{mgmt_params, Invocation};
use crate::session::Admin;

/// How SCST ends a command: "Done." or, for attribute setters, the count of changes.
pub enum Outcome {
    Done,
    Changes(usize),
}

/// Run `inv` if it changes the configuration; None when it is no such command.
pub fn run(a: &mut Admin, inv: &Invocation) -> Result<Option<Outcome>> {
    let cmd = inv.command.as_str();
    if !is_change(cmd) {
        return Ok(None);
    }
    say!("\n-> Making requested changes.");
    let outcome = change(a, inv)?;
    match outcome {
        Outcome::Done => say!("\t-> Done."),
        Outcome::Changes(n) => say!("\t-> Done, {n} change(s) made."),
    }
    Ok(Some(outcome))
}

fn is_change(cmd: &str) -> bool {
    cmd.starts_with("set_")
        || matches!(
            cmd,
            "open_dev"
                | "close_dev"
                | "resync_dev"
                | "add_target"
                | "rem_target"
                | "enable_target"
                | "disable_target"
                | "add_lun"
                | "replace_lun"
                | "rem_lun"
                | "clear_luns"
                | "add_group"
                | "rem_group"
                | "add_init"
                | "rem_init"
                | "move_init"
                | "clear_inits"
                | "add_drv_attr"
                | "rem_drv_attr"
                | "add_tgt_attr"
                | "rem_tgt_attr"
                | "add_dgrp"
                | "rem_dgrp"
                | "add_dgrp_dev"
                | "rem_dgrp_dev"
                | "add_tgrp"
                | "rem_tgrp"
                | "add_tgrp_tgt"
                | "rem_tgrp_tgt"
        )
}

/// Make the write, then report it.
fn act(a: &mut Admin, path: &str, value: &str, report: String) -> Result<()> {
    a.write(path, value)?;
    say!("\t-> {report}: done.");
    Ok(())
}

fn change(a: &mut Admin, inv: &Invocation) -> Result<Outcome> {
    let cmd = inv.command.as_str();
    match cmd {
        "open_dev" => {
            let (h, d) = (inv.opt("handler")?, inv.value()?);
            let params = mgmt_params(inv.options.get("attributes"))?;
            act(
                a,
                &format!("handlers/{h}/mgmt"),
                format!("add_device {d} {params}").trim_end(),
                format!("Opening device '{d}' using handler '{h}'"),
            )?;
        }
        "close_dev" => {
            let (h, d) = (inv.opt("handler")?, inv.value()?);
            act(
                a,
                &format!("handlers/{h}/mgmt"),
                &format!("del_device {d}"),
                format!("Closing device '{d}' using handler '{h}'"),
            )?;
        }
        // SCST's -resync_dev is a write of the device's resync_size attribute.
        "resync_dev" => {
            let d = inv.value()?;
            return set_attrs(
                a,
                &format!("devices/{d}"),
                &[("resync_size".into(), "1".into())],
                &format!("device '{d}'"),
                "device",
            );
        }
        "add_target" => {
            let (drv, t) = (inv.driver()?, inv.value()?);
            let params = mgmt_params(inv.options.get("attributes"))?;
            act(
                a,
                &format!("targets/{drv}/mgmt"),
                format!("add_target {t} {params}").trim_end(),
                format!("Creating target '{t}' for driver '{drv}'"),
            )?;
        }
        "rem_target" => {
            let (drv, t) = (inv.driver()?, inv.value()?);
            act(
                a,
                &format!("targets/{drv}/mgmt"),
                &format!("del_target {t}"),
                format!("Removing virtual target '{t}' from driver '{drv}'"),
            )?;
        }
        "enable_target" | "disable_target" => {
            let (drv, t) = (inv.driver()?, inv.value()?);
            let (on, verb) = if cmd == "enable_target" {
                ("1", "Enabling")
            } else {
                ("0", "Disabling")
            };
            act(
                a,
                &format!("targets/{drv}/{t}/enabled"),
                on,
                format!("{verb} driver/target '{drv}/{t}'"),
            )?;
        }
        "add_lun" | "replace_lun" | "rem_lun" | "clear_luns" => {
            let whose = lun_owner(inv)?;
            let mgmt = inv.luns_mgmt()?;
            let params = mgmt_params(inv.options.get("attributes"))?;
            match cmd {
                "add_lun" => {
                    let (n, dev) = (inv.value()?, inv.opt("device")?);
                    act(
                        a,
                        &mgmt,
                        format!("add {dev} {n} {params}").trim_end(),
                        format!("Adding device '{dev}' at LUN {n} to {whose}"),
                    )?;
                }
                "replace_lun" => {
                    let (n, dev) = (inv.value()?, inv.opt("device")?);
                    act(
                        a,
                        &mgmt,
                        format!("replace {dev} {n} {params}").trim_end(),
                        format!("Replacing device at LUN {n} with device '{dev}' in {whose}"),
                    )?;
                }
                "rem_lun" => {
                    let n = inv.value()?;
                    act(
                        a,
                        &mgmt,
                        &format!("del {n}"),
                        format!("Removing LUN {n} from {whose}"),
                    )?;
                }
                _ => act(a, &mgmt, "clear", format!("Removing all LUNs from {whose}"))?,
            }
        }
        "add_group" | "rem_group" => {
            let (drv, t, g) = (inv.driver()?, inv.opt("target")?, inv.value()?);
            let mgmt = format!("{}/ini_groups/mgmt", inv.target_dir()?);
            if cmd == "add_group" {
                let report = format!("Adding new group '{g}' to driver/target '{drv}/{t}'");
                act(a, &mgmt, &format!("create {g}"), report)?;
            } else {
                let report = format!("Removing group '{g}' from driver/target '{drv}/{t}'");
                act(a, &mgmt, &format!("del {g}"), report)?;
            }
        }
        "add_init" | "rem_init" | "move_init" | "clear_inits" => {
            let g = inv.opt("group")?;
            let whose = format!(
                "driver/target/group '{}/{}/{g}'",
                inv.driver()?,
                inv.opt("target")?
            );
            let mgmt = format!("{}/ini_groups/{g}/initiators/mgmt", inv.target_dir()?);
            let (value, report) = match cmd {
                "add_init" => {
                    let i = inv.value()?;
                    (
                        format!("add {i}"),
                        format!("Adding new initiator '{i}' to {whose}"),
                    )
                }
                "rem_init" => {
                    let i = inv.value()?;
                    (
                        format!("del {i}"),
                        format!("Removing initiator '{i}' from {whose}"),
                    )
                }
                "move_init" => {
                    let (i, to) = (inv.value()?, inv.opt("to")?);
                    (
                        format!("move {i} {to}"),
                        format!("Moving initiator '{i}' from group '{g}' to group '{to}'"),
                    )
                }
                _ => (
                    "clear".to_string(),
                    format!("Removing all initiators {whose}"),
                ),
            };
            act(a, &mgmt, &value, report)?;
        }
        "add_drv_attr" | "rem_drv_attr" => {
            let d = inv.value()?;
            for (k, v) in inv.attr_pairs()? {
                if cmd == "add_drv_attr" {
                    let report =
                        format!("Adding driver attribute '{k}' with value '{v}' for driver '{d}'");
                    act(
                        a,
                        &format!("targets/{d}/mgmt"),
                        &format!("add_attribute {k} {v}"),
                        report,
                    )?;
                } else {
                    let report = format!(
                        "Removing dynamic attribute '{k}' with value '{v}' for driver '{d}'"
                    );
                    act(
                        a,
                        &format!("targets/{d}/mgmt"),
                        &format!("del_attribute {k} {v}"),
                        report,
                    )?;
                }
            }
        }
        "add_tgt_attr" | "rem_tgt_attr" => {
            let (drv, t) = (inv.driver()?, inv.value()?);
            let mgmt = format!("targets/{drv}/mgmt");
            for (k, v) in inv.attr_pairs()? {
                if cmd == "add_tgt_attr" {
                    let report = format!(
                        "Adding target attribute '{k}' with value '{v}' for driver/target '{drv}/{t}'"
                    );
                    act(
                        a,
                        &mgmt,
                        &format!("add_target_attribute {t} {k} {v}"),
                        report,
                    )?;
                } else {
                    let report = format!(
                        "Removing dynamic attribute '{k}' with value '{v}' for driver/target '{drv}/{t}'"
                    );
                    act(
                        a,
                        &mgmt,
                        &format!("del_target_attribute {t} {k} {v}"),
                        report,
                    )?;
                }
            }
        }
        "add_dgrp" => {
            let dg = inv.value()?;
            let report = format!("Adding new device group '{dg}'");
            act(a, "device_groups/mgmt", &format!("create {dg}"), report)?;
        }
        "rem_dgrp" => {
            let dg = inv.value()?;
            let report = format!("Removing device group '{dg}'");
            act(a, "device_groups/mgmt", &format!("del {dg}"), report)?;
        }
        "add_dgrp_dev" | "rem_dgrp_dev" => {
            let (dg, d) = (inv.opt("dev_group")?, inv.value()?);
            let mgmt = format!("{}/devices/mgmt", inv.dg_dir()?);
            if cmd == "add_dgrp_dev" {
                let report = format!("Adding new device group/device '{dg}/{d}'");
                act(a, &mgmt, &format!("add {d}"), report)?;
            } else {
                let report = format!("Removing device '{d}' from device group '{dg}'");
                act(a, &mgmt, &format!("del {d}"), report)?;
            }
        }
        "add_tgrp" | "rem_tgrp" => {
            let (dg, tg) = (inv.opt("dev_group")?, inv.value()?);
            let mgmt = format!("{}/target_groups/mgmt", inv.dg_dir()?);
            if cmd == "add_tgrp" {
                let report = format!("Adding new target group '{tg}' to device group '{dg}'");
                act(a, &mgmt, &format!("create {tg}"), report)?;
            } else {
                let report = format!("Removing target group '{tg}' from device group '{dg}'");
                act(a, &mgmt, &format!("del {tg}"), report)?;
            }
        }
        "add_tgrp_tgt" | "rem_tgrp_tgt" => {
            let (dg, tg, t) = (inv.opt("dev_group")?, inv.opt("tgt_group")?, inv.value()?);
            let mgmt = format!("{}/mgmt", inv.tg_dir()?);
            if cmd == "add_tgrp_tgt" {
                let report =
                    format!("Adding new target group/target '{tg}/{t}' to device group '{dg}'");
                act(a, &mgmt, &format!("add {t}"), report)?;
            } else {
                let report =
                    format!("Removing target group/target '{tg}/{t}' from device group '{dg}'");
                act(a, &mgmt, &format!("del {t}"), report)?;
            }
        }
        "set_scst_attr" => return set_attrs(a, "", &inv.attr_pairs()?, "", "SCST"),
        _ => {
            let v = inv.value()?;
            let (dir, owner, kind) = match cmd {
                "set_dev_attr" => (format!("devices/{v}"), format!("device '{v}'"), "device"),
                "set_hnd_attr" => (format!("handlers/{v}"), format!("handler '{v}'"), "handler"),
                "set_drv_attr" => (format!("targets/{v}"), format!("driver '{v}'"), "driver"),
                "set_tgt_attr" => {
                    let drv = inv.driver()?;
                    let dir = format!("targets/{drv}/{v}");
                    (dir, format!("driver/target '{drv}/{v}'"), "target")
                }
                "set_grp_attr" => (
                    format!("{}/ini_groups/{v}", inv.target_dir()?),
                    format!("group '{v}'"),
                    "group",
                ),
                "set_lun_attr" => {
                    let (drv, t) = (inv.driver()?, inv.opt("target")?);
                    let owner = match inv.options.get("group") {
                        Some(g) => format!("driver/target/group/LUN '{drv}/{t}/{g}/{v}'"),
                        None => format!("driver/target/LUN '{drv}/{t}/{v}'"),
                    };
                    (inv.lun_dir()?, owner, "LUN")
                }
                "set_init_attr" => (
                    format!(
                        "{}/ini_groups/{}/initiators/{v}",
                        inv.target_dir()?,
                        inv.opt("group")?
                    ),
                    format!("initiator '{v}'"),
                    "initiator",
                ),
                "set_dgrp_attr" => (
                    format!("device_groups/{v}"),
                    format!("device group '{v}'"),
                    "Device Group",
                ),
                "set_tgrp_attr" => (
                    format!("{}/target_groups/{v}", inv.dg_dir()?),
                    format!("target group '{}/{v}'", inv.opt("dev_group")?),
                    "Target Group",
                ),
                "set_ttgt_attr" => (
                    format!("{}/{v}", inv.tg_dir()?),
                    format!(
                        "target '{}/{}/{v}'",
                        inv.opt("dev_group")?,
                        inv.opt("tgt_group")?
                    ),
                    "target",
                ),
                other => anyhow::bail!("-{other}: not supported yet"),
            };
            return set_attrs(a, &dir, &inv.attr_pairs()?, &owner, kind);
        }
    }
    Ok(Outcome::Done)
}

/// "driver/target 'd/t'" or "driver/target/group 'd/t/g'": whose LUN set a command acts on.
fn lun_owner(inv: &Invocation) -> Result<String> {
    let (drv, t) = (inv.driver()?, inv.opt("target")?);
    Ok(match inv.options.get("group") {
        Some(g) => format!("driver/target/group '{drv}/{t}/{g}'"),
        None => format!("driver/target '{drv}/{t}'"),
    })
}

/// SCST's attribute setters: a value already in effect is skipped with a note, the
/// others written one by one; the count of changes is the outcome. Write-only
/// attributes (`resync_size`) are always written.
fn set_attrs(
    a: &mut Admin,
    dir: &str,
    pairs: &[(String, String)],
    owner: &str,
    kind: &str,
) -> Result<Outcome> {
    let mut changes = 0;
    for (k, v) in pairs {
        let path = if dir.is_empty() {
            k.clone()
        } else {
            format!("{dir}/{k}")
        };
        if let Ok(current) = a.client.read(&path) {
            if strip_key(&current).0 == v.as_str() {
                say!("\t-> Attribute '{k}' already set to value '{v}', ignoring.");
                continue;
            }
        }
        let report = if owner.is_empty() {
            format!("Setting {kind} attribute '{k}' to value '{v}'")
        } else {
            format!("Setting {kind} attribute '{k}' to value '{v}' for {owner}")
        };
        act(a, &path, v, report)?;
        changes += 1;
    }
    Ok(Outcome::Changes(changes))
}
