//! Refusing, at write, the attributes scst-rs does not implement ([`AttrSupport`]), with
//! the same words as a configuration load: the tree's write path asks here first, so an
//! attribute is never stored and then ignored.

use crate::attrs::{self, AttrInfo, AttrSupport};
use crate::command::{parse_command, MgmtCommand, MgmtFile};

/// What the tree does with a write, as far as attribute support goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCheck {
    /// Not about an attribute scst-rs lacks: the tree's own write path decides.
    Proceed,
    /// The value is the default of an attribute scst-rs does not implement, which is
    /// how scst-rs behaves already: nothing to do, and the write succeeds.
    AlreadyInEffect,
    /// Refused; the text names the attribute and says it is not supported.
    Refused(String),
}

/// Check a write of `value` to the tree path `parts` (`handlers/<h>/<dev>/...` already
/// resolved to `devices/<dev>/...`), including the `k=v` parameters of `add_device` and
/// `add_target` and the values of `add_attribute`/`add_target_attribute`.
/// `handler_of` names the dev handler of an existing device.
pub fn check_write(
    parts: &[&str],
    value: &str,
    handler_of: impl Fn(&str) -> Option<&'static str>,
) -> WriteCheck {
    let value = value.trim_end_matches('\n');
    let one = |info: Option<AttrInfo>, name: &str| attr_check(info, name, value.trim());
    match parts {
        [name] => one(attrs::root_attr(name), name),
        ["handlers", h, "mgmt"] => match parse_command(MgmtFile::Handler, value) {
            Ok(MgmtCommand::AddDevice { params, .. }) => {
                params_check(&params, |n| attrs::device_attr(h, n))
            }
            _ => WriteCheck::Proceed,
        },
        ["handlers", h, name] => one(attrs::handler_attr(h, name), name),
        ["devices", d, name] => match handler_of(d) {
            Some(h) => one(attrs::device_attr(h, name), name),
            None => WriteCheck::Proceed,
        },
        ["targets", drv, "mgmt"] => match parse_command(MgmtFile::TargetDriver, value) {
            Ok(MgmtCommand::AddTarget { params, .. }) => {
                params_check(&params, |n| attrs::target_attr(drv, n))
            }
            Ok(MgmtCommand::AddAttribute { attr, value }) => {
                attr_check(attrs::driver_attr(drv, &attr), &attr, &value)
            }
            Ok(MgmtCommand::AddTargetAttribute { attr, value, .. }) => {
                attr_check(attrs::target_attr(drv, &attr), &attr, &value)
            }
            _ => WriteCheck::Proceed,
        },
        ["targets", drv, name] => one(attrs::driver_attr(drv, name), name),
        ["targets", drv, _, name] => one(attrs::target_attr(drv, name), name),
        ["targets", drv, _, "ini_groups", _, name] => one(attrs::group_attr(drv, name), name),
        ["device_groups", _, "target_groups", _, name] => one(attrs::target_group_attr(name), name),
        ["device_groups", _, "target_groups", _, _, name] => one(attrs::tg_target_attr(name), name),
        _ => WriteCheck::Proceed,
    }
}

fn attr_check(info: Option<AttrInfo>, name: &str, value: &str) -> WriteCheck {
    let Some(info) = info else {
        return WriteCheck::Proceed;
    };
    match (info.support, info.check_supported(value)) {
        (AttrSupport::Implemented, _) => WriteCheck::Proceed,
        (_, Ok(())) => WriteCheck::AlreadyInEffect,
        (_, Err(why)) => WriteCheck::Refused(format!("attribute '{name}' {why}")),
    }
}

/// Creation parameters: the object is still created when every parameter scst-rs lacks
/// has its default value (the creation code accepts those).
fn params_check(
    params: &[(String, String)],
    lookup: impl Fn(&str) -> Option<AttrInfo>,
) -> WriteCheck {
    for (k, v) in params {
        if let WriteCheck::Refused(why) = attr_check(lookup(k), k, v) {
            return WriteCheck::Refused(why);
        }
    }
    WriteCheck::Proceed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fileio(_: &str) -> Option<&'static str> {
        Some("vdisk_fileio")
    }

    fn check(path: &str, value: &str) -> WriteCheck {
        let parts: Vec<&str> = path.split('/').collect();
        check_write(&parts, value, fileio)
    }

    #[test]
    fn not_supported_attributes_are_refused_with_their_name() {
        for (path, value) in [
            ("targets/iscsi/t1/black_hole", "1"),
            ("targets/iscsi/t1/cpu_mask", "1,00000000"),
            ("targets/iscsi/t1/ini_groups/g/io_grouping_type", "never"),
            ("devices/disk01/expl_alua", "1"),
            ("devices/disk01/dif_static_app_tag", "7"),
            ("poll_us", "1"),
            ("cluster_name", "c1"),
            ("targets/iscsi/mgmt", "add_target t2 forward_src=1"),
            (
                "targets/iscsi/mgmt",
                "add_target_attribute t2 cpu_mask 1,00000000",
            ),
            (
                "handlers/vdisk_fileio/mgmt",
                "add_device d filename=/f; dif_filename=/x",
            ),
            ("device_groups/dg/target_groups/tg/comment", "x"),
        ] {
            match check(path, value) {
                WriteCheck::Refused(why) => {
                    assert!(why.contains("is not supported by scst-rs"), "{path}: {why}");
                }
                other => panic!("{path} <- {value}: {other:?}"),
            }
        }
    }

    #[test]
    fn defaults_of_missing_features_are_in_effect_and_the_rest_proceeds() {
        assert_eq!(
            check("targets/iscsi/t1/black_hole", "0"),
            WriteCheck::AlreadyInEffect
        );
        assert_eq!(
            check("targets/iscsi/t1/io_grouping_type", "AUTO"),
            WriteCheck::AlreadyInEffect
        );
        assert_eq!(
            check("devices/d/cluster_mode", "0\n"),
            WriteCheck::AlreadyInEffect
        );
        assert_eq!(check("devices/d/prod_id", "X"), WriteCheck::Proceed);
        assert_eq!(check("targets/iscsi/t1/enabled", "1"), WriteCheck::Proceed);
        assert_eq!(
            check(
                "handlers/vdisk_fileio/mgmt",
                "add_device d filename=/f; cluster_mode=0"
            ),
            WriteCheck::Proceed
        );
        assert_eq!(
            check("targets/iscsi/t1/luns/mgmt", "add d 0"),
            WriteCheck::Proceed
        );
        // An unknown device or attribute is the tree's to report.
        let parts = ["devices", "nope", "expl_alua"];
        assert_eq!(check_write(&parts, "1", |_| None), WriteCheck::Proceed);
        assert_eq!(check("targets/iscsi/t1/bogus", "1"), WriteCheck::Proceed);
    }
}
