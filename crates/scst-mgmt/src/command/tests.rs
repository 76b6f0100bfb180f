//! Tests of the mgmt command grammar and its usage texts.

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
