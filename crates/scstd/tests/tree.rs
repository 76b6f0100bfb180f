//! The management tree over the real dev handlers and iSCSI driver, in-process: paths,
//! values and messages as administrators and scstadmin see them.

use std::sync::Arc;

use scst_core::Scst;
use scst_iscsi::IscsiDriver;
use scst_mgmt::{MgmtPath, MgmtTree, ScstTree, TreeError};

#[test]
fn dynamic_attributes_and_parameters() {
    let (t, iscsi) = tree();
    let drv = p("targets/iscsi/mgmt");
    t.write(&drv, "add_attribute IncomingUser joe 12charsecret")
        .unwrap();
    t.write(&drv, "add_attribute IncomingUser ann 12charsecre2")
        .unwrap();
    assert!(t
        .write(&drv, "add_attribute IncomingUser joe 12charsecret")
        .unwrap_err()
        .message
        .contains("already exists"));
    // The driver's own validator refuses short secrets.
    assert!(t
        .write(&drv, "add_attribute IncomingUser bob short")
        .is_err());
    assert!(t.write(&drv, "add_attribute tid 3").is_err());
    let l = t.list(&p("targets/iscsi")).unwrap();
    assert!(
        l.contains(&"IncomingUser".into()) && l.contains(&"IncomingUser1".into()),
        "{l:?}"
    );
    assert_eq!(
        t.read(&p("targets/iscsi/IncomingUser1")).unwrap(),
        "ann 12charsecre2\n[key]"
    );
    assert_eq!(
        iscsi.driver_attrs(),
        vec![
            ("IncomingUser".to_string(), "joe 12charsecret".to_string()),
            ("IncomingUser".to_string(), "ann 12charsecre2".to_string())
        ]
    );
    t.write(&drv, "del_attribute IncomingUser joe 12charsecret")
        .unwrap();
    assert!(t
        .write(&drv, "del_attribute IncomingUser joe 12charsecret")
        .is_err());
    t.write(&p("targets/iscsi/iSNSServer"), "192.0.2.1")
        .unwrap();
    assert_eq!(
        t.read(&p("targets/iscsi/iSNSServer")).unwrap(),
        "192.0.2.1\n[key]"
    );
    t.write(&p("targets/iscsi/iSNSServer"), "").unwrap();
    assert!(t.read(&p("targets/iscsi/iSNSServer")).is_err());

    t.write(
        &drv,
        "add_target iqn.x:t QueuedCommands=16; addr_method=LUN",
    )
    .unwrap();
    let tgt = t.scst().target("iscsi", "iqn.x:t").unwrap();
    assert_eq!(
        t.read(&p("targets/iscsi/iqn.x:t/QueuedCommands")).unwrap(),
        "16\n[key]"
    );
    assert_eq!(
        t.read(&p("targets/iscsi/iqn.x:t/addr_method")).unwrap(),
        "LUN\n[key]"
    );
    t.write(&drv, "add_target_attribute iqn.x:t allowed_portal 10.0.0.*")
        .unwrap();
    t.write(&drv, "add_target_attribute iqn.x:t allowed_portal !*")
        .unwrap();
    t.write(
        &drv,
        "add_target_attribute iqn.x:t OutgoingUser tgt 12charsecret",
    )
    .unwrap();
    t.write(
        &drv,
        "add_target_attribute iqn.x:t OutgoingUser tgt2 12charsecret",
    )
    .unwrap();
    assert_eq!(
        tgt.attr_values("allowed_portal"),
        vec!["10.0.0.*".to_string(), "!*".to_string()]
    );
    assert_eq!(
        tgt.attr_values("OutgoingUser"),
        vec!["tgt2 12charsecret".to_string()]
    );
    assert_eq!(
        t.read(&p("targets/iscsi/iqn.x:t/allowed_portal1")).unwrap(),
        "!*\n[key]"
    );
    t.write(&drv, "del_target_attribute iqn.x:t allowed_portal !*")
        .unwrap();
    assert!(t
        .write(&drv, "add_target_attribute iqn.x:nope allowed_portal x")
        .unwrap_err()
        .message
        .contains("does not exist"));
    assert!(t
        .write(&p("targets/iscsi/iqn.x:t/allowed_portal"), "x")
        .unwrap_err()
        .message
        .contains("add_target_attribute"));

    // Parameters: defaults, validated writes, :default:.
    let mrdsl = p("targets/iscsi/iqn.x:t/MaxRecvDataSegmentLength");
    assert_eq!(t.read(&mrdsl).unwrap(), "1048576");
    t.write(&mrdsl, "65536").unwrap();
    assert_eq!(t.read(&mrdsl).unwrap(), "65536\n[key]");
    assert_eq!(
        tgt.attr("MaxRecvDataSegmentLength").as_deref(),
        Some("65536")
    );
    assert!(t.write(&mrdsl, "100").is_err());
    assert_eq!(t.read(&mrdsl).unwrap(), "65536\n[key]");
    t.write(&mrdsl, ":default:").unwrap();
    assert_eq!(t.read(&mrdsl).unwrap(), "1048576");
    assert!(t
        .write(&p("targets/iscsi/iqn.x:t/HeaderDigest"), "MD5")
        .is_err());
}

#[test]
fn device_groups_through_the_tree() {
    let (t, _iscsi) = tree();
    t.write(&p("handlers/vdisk_nullio/mgmt"), "add_device d1")
        .unwrap();
    t.write(&p("targets/iscsi/mgmt"), "add_target iqn.x:a")
        .unwrap();
    t.write(&p("device_groups/mgmt"), "create dg").unwrap();
    t.write(&p("device_groups/dg/devices/mgmt"), "add d1")
        .unwrap();
    let tgs = p("device_groups/dg/target_groups/mgmt");
    t.write(&tgs, "create local").unwrap();
    t.write(&tgs, "create remote").unwrap();
    t.write(&p("device_groups/dg/target_groups/remote/group_id"), "7")
        .unwrap();
    t.write(
        &p("device_groups/dg/target_groups/local/mgmt"),
        "add iqn.x:a",
    )
    .unwrap();
    // A remote target needs its rel_tgt_id before it can be a member.
    assert!(t
        .write(
            &p("device_groups/dg/target_groups/remote/mgmt"),
            "add iqn.x:b"
        )
        .is_err());
    t.write(
        &p("device_groups/dg/target_groups/remote/mgmt"),
        "add iqn.x:b rel_tgt_id=9",
    )
    .unwrap();
    t.write(
        &p("device_groups/dg/target_groups/remote/iqn.x:b/rel_tgt_id"),
        "10",
    )
    .unwrap();
    assert_eq!(
        t.read(&p(
            "device_groups/dg/target_groups/remote/iqn.x:b/rel_tgt_id"
        ))
        .unwrap(),
        "10\n[key]"
    );
    t.write(&p("device_groups/dg/target_groups/local/state"), "standby")
        .unwrap();
    t.write(&p("device_groups/dg/target_groups/local/preferred"), "1")
        .unwrap();
    assert!(t
        .write(&p("device_groups/dg/target_groups/local/state"), "sleepy")
        .is_err());
    assert_eq!(t.list(&p("device_groups")).unwrap(), vec!["mgmt", "dg/"]);
    assert_eq!(
        t.list(&p("device_groups/dg/devices")).unwrap(),
        vec!["mgmt", "d1"]
    );
    assert_eq!(
        t.list(&p("device_groups/dg/target_groups/local")).unwrap(),
        vec!["mgmt", "group_id", "preferred", "state", "iqn.x:a/"]
    );
    let rd = |s: &str| t.read(&p(s)).unwrap();
    assert_eq!(
        rd("device_groups/dg/target_groups/local/group_id"),
        "1\n[key]"
    );
    assert_eq!(
        rd("device_groups/dg/target_groups/remote/group_id"),
        "7\n[key]"
    );
    assert_eq!(
        rd("device_groups/dg/target_groups/local/state"),
        "standby\n[key]"
    );
    assert_eq!(
        rd("device_groups/dg/target_groups/local/preferred"),
        "1\n[key]"
    );
    let rel = rd("device_groups/dg/target_groups/local/iqn.x:a/rel_tgt_id");
    assert_eq!(rel, "1", "a local member's id is its live one, not saved");
    t.write(
        &p("device_groups/dg/target_groups/local/mgmt"),
        "del iqn.x:a",
    )
    .unwrap();
    t.write(&tgs, "del remote").unwrap();
    t.write(&p("device_groups/dg/devices/mgmt"), "del d1")
        .unwrap();
    t.write(&p("device_groups/mgmt"), "del dg").unwrap();
    assert_eq!(t.list(&p("device_groups")).unwrap(), vec!["mgmt"]);
}

/// The tree as scstd builds it; the driver is returned because the core holds
/// registered drivers weakly.
fn tree() -> (ScstTree, Arc<IscsiDriver>) {
    let scst = Scst::new(1);
    scst_vdisk::handler::register_all(&scst).unwrap();
    let iscsi = IscsiDriver::new(scst.clone());
    scst.register_target_driver(&iscsi).unwrap();
    (ScstTree::new(scst, 0), iscsi)
}

fn p(s: &str) -> MgmtPath {
    MgmtPath::parse(s).unwrap()
}

#[test]
fn device_target_lun_through_the_tree() {
    let (t, _iscsi) = tree();
    t.write(
        &p("handlers/vdisk_nullio/mgmt"),
        "add_device null1 size_mb=16",
    )
    .unwrap();
    assert_eq!(t.read(&p("devices/null1/handler")).unwrap(), "vdisk_nullio");
    assert_eq!(
        t.read(&p("handlers/vdisk_nullio/null1/handler")).unwrap(),
        "vdisk_nullio"
    );
    assert!(t
        .list(&p("devices"))
        .unwrap()
        .contains(&"null1/".to_string()));
    t.write(&p("targets/iscsi/mgmt"), "add_target iqn.x:t1")
        .unwrap();
    t.write(&p("targets/iscsi/iqn.x:t1/luns/mgmt"), "add null1 0")
        .unwrap();
    let e = t
        .write(&p("targets/iscsi/iqn.x:t1/luns/mgmt"), "add null1 0")
        .unwrap_err();
    assert!(
        e.message.contains("targets/iscsi/iqn.x:t1/luns/mgmt") && e.message.contains("LUN '0'"),
        "{e}"
    );
    assert_eq!(
        t.list(&p("targets/iscsi/iqn.x:t1/luns")).unwrap(),
        vec!["mgmt", "0/"]
    );
    assert_eq!(
        t.read(&p("targets/iscsi/iqn.x:t1/luns/0/device")).unwrap(),
        "null1"
    );
    t.write(&p("targets/iscsi/iqn.x:t1/enabled"), "1").unwrap();
    assert_eq!(
        t.read(&p("targets/iscsi/iqn.x:t1/enabled")).unwrap(),
        "1\n[key]"
    );
    assert!(t
        .write(&p("targets/iscsi/iqn.x:t1/enabled"), "yes")
        .is_err());
}

#[test]
fn unsupported_and_missing_are_errors() {
    let (t, _iscsi) = tree();
    t.write(&p("targets/iscsi/mgmt"), "add_target t").unwrap();
    assert_eq!(
        t.write(&p("handlers/vdisk_nullio/mgmt"), "add_attribute a b")
            .unwrap_err()
            .message,
        "handlers/vdisk_nullio/mgmt: add_attribute: vdisk_nullio declares no optional attributes"
    );
    assert_eq!(t.read(&p("last_sysfs_mgmt_res")).unwrap(), "-22");
    assert!(t
        .write(
            &p("handlers/vdisk_fileio/mgmt"),
            "add_device_attribute d t10_dev_id x"
        )
        .unwrap_err()
        .message
        .ends_with("add_device_attribute: vdisk_fileio declares no optional attributes"));
    // An attribute the tree does not take writes to (here a read-only one).
    assert_eq!(
        t.write(&p("version"), "9").unwrap_err().message,
        "version: not supported yet"
    );
    assert_eq!(t.read(&p("last_sysfs_mgmt_res")).unwrap(), "-38");
    assert_eq!(
        t.write(&p("targets/iscsi/t/rel_tgt_id"), "")
            .unwrap_err()
            .message,
        "targets/iscsi/t/rel_tgt_id: '' is not 1..65535"
    );
    assert!(t
        .write(&p("targets/iscsi/t/addr_method"), "SIDEWAYS")
        .unwrap_err()
        .message
        .contains("PERIPHERAL, FLAT or LUN"));
    assert_eq!(t.read(&p("last_sysfs_mgmt_res")).unwrap(), "-22");
    t.write(&p("targets/iscsi/t/addr_method"), "flat").unwrap();
    assert_eq!(t.read(&p("last_sysfs_mgmt_res")).unwrap(), "0");
    assert_eq!(
        t.read(&p("targets/iscsi/t/addr_method")).unwrap(),
        "FLAT\n[key]"
    );
    assert!(t.read(&p("nope")).unwrap_err().message.contains("no such"));
    assert!(t
        .write(&p("handlers/vdisk_nullio/mgmt"), "bogus")
        .unwrap_err()
        .message
        .starts_with("handlers/vdisk_nullio/mgmt: unknown command 'bogus'"));
    assert!(t
        .read(&p("handlers/vdisk_fileio/mgmt"))
        .unwrap()
        .contains("filename"));
    assert_eq!(t.read(&p("targets/iscsi/enabled")).unwrap(), "0");
}

#[test]
fn reconfiguration_through_the_tree() {
    let (t, _iscsi) = tree();
    let lerr = |r: Result<(), TreeError>| r.unwrap_err().message;
    for d in ["d1", "d2"] {
        t.write(&p("handlers/vdisk_nullio/mgmt"), &format!("add_device {d}"))
            .unwrap();
    }
    t.write(&p("targets/iscsi/mgmt"), "add_target t").unwrap();
    let luns = p("targets/iscsi/t/luns/mgmt");
    t.write(&luns, "add d1 0").unwrap();
    t.write(&luns, "add d2 1").unwrap();
    t.write(&luns, "replace d2 0").unwrap();
    assert_eq!(t.read(&p("targets/iscsi/t/luns/0/device")).unwrap(), "d2");
    t.write(&luns, "replace_no_ua d1 0 read_only=1").unwrap();
    assert_eq!(t.read(&p("targets/iscsi/t/luns/0/read_only")).unwrap(), "1");
    t.write(&luns, "del 1").unwrap();
    let e = lerr(t.write(&luns, "del 1"));
    assert!(
        e.starts_with("targets/iscsi/t/luns/mgmt: ") && e.contains("'1'"),
        "{e}"
    );
    t.write(&luns, "clear").unwrap();
    assert_eq!(t.list(&p("targets/iscsi/t/luns")).unwrap(), vec!["mgmt"]);

    // Groups and initiators.
    let groups = p("targets/iscsi/t/ini_groups/mgmt");
    t.write(&groups, "create g1").unwrap();
    t.write(&groups, "create g2").unwrap();
    assert!(lerr(t.write(&groups, "create g1")).contains("ini_groups/g1' already exists"));
    let inits = p("targets/iscsi/t/ini_groups/g1/initiators/mgmt");
    t.write(&inits, "add iqn.a:*").unwrap();
    t.write(&inits, "add iqn.b").unwrap();
    t.write(&inits, "move iqn.b g2").unwrap();
    assert_eq!(
        t.list(&p("targets/iscsi/t/ini_groups/g2/initiators"))
            .unwrap(),
        vec!["mgmt", "iqn.b"]
    );
    t.write(&inits, "del iqn.a:*").unwrap();
    t.write(&p("targets/iscsi/t/ini_groups/g2/initiators/mgmt"), "clear")
        .unwrap();
    t.write(&p("targets/iscsi/t/ini_groups/g1/luns/mgmt"), "add d1 0")
        .unwrap();
    let e = lerr(t.write(&p("handlers/vdisk_nullio/mgmt"), "del_device d1"));
    assert!(
        e.starts_with("handlers/vdisk_nullio/mgmt: device 'd1' is in use"),
        "{e}"
    );
    let e = lerr(t.write(&p("handlers/vdisk_fileio/mgmt"), "del_device d2"));
    assert!(e.contains("vdisk_nullio"), "{e}");
    t.write(&groups, "del g1").unwrap();
    t.write(&groups, "del g2").unwrap();
    t.write(&p("handlers/vdisk_nullio/mgmt"), "del_device d1")
        .unwrap();
    assert_eq!(t.list(&p("devices")).unwrap(), vec!["d2/"]);

    // Device attributes go through the core (Scst::set_device_attr): identity
    // attributes change live; creation-only ones are refused, naming both.
    t.write(&p("devices/d2/prod_id"), "NEWPROD").unwrap();
    assert!(t
        .read(&p("devices/d2/prod_id"))
        .unwrap()
        .starts_with("NEWPROD"));
    assert_eq!(
        lerr(t.write(&p("devices/d2/blocksize"), "4096")),
        "devices/d2/blocksize: device d2: attribute blocksize: read-only (set at creation)"
    );
    assert!(lerr(t.write(&p("devices/d2/handler"), "x")).contains("no such writable"));

    // Root attribute.
    assert_eq!(t.read(&p("threads")).unwrap(), "8");
    assert!(t.write(&p("threads"), "4").is_err());
    assert_eq!(t.read(&p("async_lun_replace")).unwrap(), "0");
    t.write(&p("async_lun_replace"), "1").unwrap();
    assert_eq!(t.read(&p("async_lun_replace")).unwrap(), "1\n[key]");
    assert!(lerr(t.write(&p("async_lun_replace"), "2")).contains("must be 0 or 1"));
    t.write(&p("async_lun_replace"), "0").unwrap();

    t.write(&p("targets/iscsi/mgmt"), "del_target t").unwrap();
    assert!(lerr(t.write(&p("targets/iscsi/mgmt"), "del_target t"))
        .contains("target 'iscsi/t' does not exist"));
    assert!(!t
        .list(&p("targets/iscsi"))
        .unwrap()
        .iter()
        .any(|e| e.ends_with('/')));
}
