//! The usage texts SCST's `mgmt` files return when read (docs/scst-reference.md 2.4, 2.6,
//! 2.7, 2.9).

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
