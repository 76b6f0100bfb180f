//! Tests of parse / validate / write_config together.

use super::*;

const SPEC_EXAMPLE: &str = include_str!("../../tests/fixtures/spec-example.conf");

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected a parse error for {text:?}, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn invalid(text: &str) -> String {
    let conf = parse(text).expect("parses");
    match validate(&conf) {
        Ok(()) => panic!("expected a validation error for {text:?}"),
        Err(e) => e.to_string(),
    }
}

/// parse(write(c)) == canonical(c), ignoring lines, and writing is a fixed point.
fn assert_round_trip(conf: &ScstConf) {
    let text = write_config(conf);
    let back = parse(&text).unwrap_or_else(|e| panic!("re-parse failed: {e}\n{text}"));
    assert_eq!(
        back.without_lines(),
        conf.canonical().without_lines(),
        "round trip changed the tree:\n{text}"
    );
    assert_eq!(write_config(&back), text);
}

const DISKS: &str = "HANDLER vdisk_fileio {\n\tDEVICE disk1 {\n\t\tfilename /f\n\t}\n}\n";

#[test]
fn spec_example_parses_and_validates() {
    let c = parse(SPEC_EXAMPLE).expect("spec example parses");
    validate(&c).expect("spec example validates");

    assert_eq!(
        c.attrs,
        [Attr {
            name: "setup_id".into(),
            value: "0x0a01".into(),
            line: 2
        }]
    );
    let names: Vec<_> = c.handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["vdisk_nullio", "vdisk_blockio", "vdisk_fileio", "vcdrom"]
    );
    let fileio = &c.handlers[2];
    assert_eq!(fileio.devices.len(), 2);
    assert_eq!(fileio.devices[0].name, "db1");
    assert_eq!(fileio.devices[0].attrs[3].name, "async");

    let iscsi = &c.drivers[0];
    assert_eq!(iscsi.name, "iscsi");
    assert_eq!(iscsi.attrs[1].value, "discover 12charsecretA");
    assert_eq!(iscsi.attrs[2].value, "192.0.2.10 AccessControl");
    let t = &iscsi.targets[0];
    assert_eq!(t.name, "iqn.2024-01.com.example:storage.a");
    assert!(!t.hw_target);
    let incoming: Vec<_> = t
        .attrs
        .iter()
        .filter(|a| a.name == "IncomingUser")
        .collect();
    assert_eq!(incoming.len(), 2);
    assert_eq!(t.luns.len(), 1);
    assert_eq!((t.luns[0].lun, t.luns[0].device.as_str()), (0, "lun0dummy"));
    assert_eq!(t.groups.len(), 2);
    let esx = &t.groups[0];
    assert_eq!(esx.name, "esx_hosts");
    assert_eq!(esx.luns[1].attrs[0].name, "read_only");
    assert_eq!(esx.initiators[0].pattern, "iqn.1998-01.com.vmware:esx0?-*");

    let dg = &c.device_groups[0];
    assert_eq!(dg.devices[0].name, "vmstore1");
    assert_eq!(dg.target_groups.len(), 2);
    let remote = &dg.target_groups[1].targets[0];
    assert_eq!(remote.attrs[0].name, "rel_tgt_id");
    assert_eq!(remote.attrs[0].value, "2");

    // Line numbers point at the source.
    let line_of = |needle: &str| {
        SPEC_EXAMPLE
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    assert_eq!(fileio.line, line_of("HANDLER vdisk_fileio"));
    assert_eq!(esx.line, line_of("GROUP esx_hosts"));
    assert_eq!(remote.line, line_of("storage.b {"));
    assert_eq!(esx.initiators[1].line, line_of("esx1?"));
}

#[test]
fn spec_example_round_trips() {
    let c = parse(SPEC_EXAMPLE).unwrap();
    assert_round_trip(&c);
    let text = write_config(&c);
    assert!(text.starts_with("# Automatically generated"));
    // Handlers sorted by name, drivers after handlers, device groups last.
    let pos = |s: &str| text.find(s).unwrap();
    assert!(pos("HANDLER vcdrom") < pos("HANDLER vdisk_blockio"));
    assert!(pos("HANDLER vdisk_nullio") < pos("TARGET_DRIVER iscsi"));
    assert!(pos("TARGET_DRIVER iscsi") < pos("DEVICE_GROUP dg_vmstore1"));
    assert!(pos("setup_id") < pos("HANDLER"));
    // Multi-value attrs once per value, values with blanks quoted.
    assert!(text.contains("\t\tIncomingUser \"esx 12charsecretB\"\n"));
    assert!(text.contains("\t\tIncomingUser \"linux 12charsecretC\"\n"));
    assert!(text.contains("\t\t\tLUN 1 install {\n\t\t\t\tread_only 1\n\t\t\t}\n"));
}

#[test]
fn tricky_values_round_trip() {
    let text = r#"
cluster_name "a \"quoted\" #hash {brace} back\\slash"
comment_like \#notacomment
trace_level ""
HANDLER vdisk_nullio {
	DEVICE "odd name" {
		prod_id "  spaced  "
		t10_vend_id tab"	"x
	}
	DEVICE plain
}
TARGET_DRIVER scst_local {
	TARGET hw {
		HW_TARGET
		LUN 7 plain
		LUN 3 "odd name"
		GROUP zeta {
			INITIATOR "iqn.x\#10.0.0.2"
			INITIATOR b*
			INITIATOR a*
		}
		GROUP alpha
	}
	TARGET empty
}
DEVICE_GROUP dg {
	weird 1
	DEVICE plain
	TARGET_GROUP tg {
		TARGET remote {
			rel_tgt_id 9
		}
		TARGET local
	}
	TARGET_GROUP empty
}
DEVICE_GROUP bare
ALUA {
	x "y z"
}
HANDLER empty
"#;
    let c = parse(text).expect("parses");
    assert_eq!(c.attrs[0].value, "a \"quoted\" #hash {brace} back\\slash");
    assert_eq!(c.attrs[1].value, "#notacomment");
    assert_eq!(c.attrs[2].value, "");
    assert_eq!(c.handlers[0].devices[0].attrs[1].value, "tab\tx");
    let t = &c.drivers[0].targets[0];
    assert!(t.hw_target);
    assert_eq!(t.groups[0].initiators[0].pattern, "iqn.x#10.0.0.2");
    assert_round_trip(&c);

    // Security group and initiator order is semantic and kept; LUNs are sorted.
    let back = parse(&write_config(&c)).unwrap();
    assert_eq!(back.drivers[0].targets[0].name, "empty");
    let t = &back.drivers[0].targets[1];
    assert_eq!(t.groups[0].name, "zeta");
    assert_eq!(t.groups[0].initiators[1].pattern, "b*");
    assert_eq!(t.luns[0].lun, 3);
}

#[test]
fn tree_built_in_code_round_trips() {
    let mut c = ScstConf::default();
    c.attrs.push(Attr::new("setup_id", "7"));
    c.handlers.push(HandlerConf {
        name: "vdisk_fileio".into(),
        attrs: vec![],
        devices: vec![DeviceConf {
            name: "d".into(),
            attrs: vec![Attr::new("filename", "/x y/z")],
            line: 0,
        }],
        line: 0,
    });
    assert_round_trip(&c);
    assert_round_trip(&ScstConf::default());
}

#[test]
fn empty_and_comment_only_files() {
    assert_eq!(parse("").unwrap(), ScstConf::default());
    assert_eq!(parse("# nothing\n\n   \n").unwrap(), ScstConf::default());
}

#[test]
fn structure_errors() {
    // Unbalanced braces.
    assert_eq!(
        err("HANDLER a {\n\tDEVICE d {\n}\n"),
        "scst.conf line 1: unbalanced braces: '{' of HANDLER a is never closed"
    );
    assert_eq!(
        err("HANDLER a {\n}\n}\n"),
        "scst.conf line 3: unbalanced braces: '}' without a matching '{'"
    );
    assert!(err("TARGET_DRIVER iscsi {\nTARGET t {\nLUN 0 d {\n").contains("LUN 0 is never closed"));
    // Unexpected tokens.
    assert!(err("HANDLER a b {\n}").starts_with("scst.conf line 1: unexpected 'b' after HANDLER a"));
    assert!(err("threads 1 2").contains("too many values for 'threads'"));
    assert!(err("ALUA x {\n}").contains("unexpected 'x' after ALUA"));
    assert!(err("\"\" 1").contains("empty attribute name"));
    // Unknown section keyword.
    assert_eq!(
        err("\nFOO bar {\n}"),
        "scst.conf line 2: unknown section keyword 'FOO'"
    );
    assert!(err("HANDLER h {\n\tdevice d {\n\t}\n}").contains("unknown section keyword 'device'"));
    // Keywords in the wrong place.
    assert!(err("DEVICE d").contains("DEVICE is not allowed at top level"));
    assert!(err("HANDLER h {\nLUN 0 d\n}").contains("LUN is not allowed inside HANDLER h"));
    assert!(err("HANDLER h {\nDEVICE d {\nGROUP g\n}\n}")
        .contains("GROUP is not allowed inside DEVICE d"));
    assert!(err("TARGET_DRIVER x {\nHANDLER h {\n}\n}").contains("is a '}' missing above?"));
    assert!(err("TARGET_DRIVER x {\nTARGET t {\nINITIATOR i\n}\n}")
        .contains("INITIATOR is not allowed inside TARGET t"));
    assert!(
        err("TARGET_DRIVER x {\nTARGET t {\nGROUP g {\nHW_TARGET\n}\n}\n}")
            .contains("HW_TARGET is not allowed inside GROUP g")
    );
    assert!(err("DEVICE_GROUP g {\nLUN 0 x\n}").contains("not allowed inside DEVICE_GROUP g"));
    assert!(err("DEVICE_GROUP g {\nTARGET_GROUP t {\nDEVICE d\n}\n}")
        .contains("DEVICE is not allowed inside TARGET_GROUP t"));
    // Missing names.
    assert!(err("HANDLER {\n}").contains("HANDLER without a name"));
    assert!(err("HANDLER h {\nDEVICE \"\"\n}").contains("DEVICE without a name"));
    assert!(err("TARGET_DRIVER\n").contains("TARGET_DRIVER without a name"));
    // Blocks where none is allowed.
    assert!(err("TARGET_DRIVER x {\nTARGET t {\nHW_TARGET {\n}\n}\n}")
        .contains("HW_TARGET takes no '{' block"));
    assert!(err("TARGET_DRIVER x {\nTARGET t {\nHW_TARGET 1\n}\n}")
        .contains("unexpected '1' after HW_TARGET"));
    assert!(err("DEVICE_GROUP g {\nDEVICE d {\n}\n}").contains("DEVICE d takes no '{' block"));
    assert!(
        err("TARGET_DRIVER x {\nTARGET t {\nGROUP g {\nINITIATOR i {\n}\n}\n}\n}")
            .contains("INITIATOR i takes no '{' block")
    );
    // Lexical.
    assert_eq!(err("a \"b"), "scst.conf line 1: unterminated quoted string");
    assert!(err("[HANDLER vdisk]").contains("old procfs scst.conf format"));
}

fn in_target(body: &str) -> String {
    format!("TARGET_DRIVER iscsi {{\n\tTARGET t {{\n{body}\n\t}}\n}}\n")
}

#[test]
fn lun_errors() {
    assert_eq!(
        err(&in_target("LUN 0")),
        "scst.conf line 3: LUN 0 has no device"
    );
    assert!(err(&in_target("LUN")).contains("LUN without a number and device"));
    assert!(err(&in_target("LUN x d")).contains("LUN number 'x' is not a number"));
    assert!(err(&in_target("LUN +1 d")).contains("LUN number '+1' is not a number"));
    assert!(err(&in_target("LUN -1 d")).contains("is not a number"));
    assert!(err(&in_target("LUN 16384 d")).contains("LUN 16384 is out of range 0..16383"));
    assert!(err(&in_target("LUN 99999999999999999999999 d")).contains("out of range"));
    assert!(err(&in_target("LUN 1 d e")).contains("unexpected 'e' after LUN 1 d"));
    let ok = parse(&in_target("LUN 16383 d\nLUN 007 e")).unwrap();
    assert_eq!(ok.drivers[0].targets[0].luns[1].lun, 7);
}

#[test]
fn duplicate_errors() {
    assert_eq!(
        err("HANDLER a {\nDEVICE d\n}\nHANDLER b {\nDEVICE d\n}"),
        "scst.conf line 5: duplicate DEVICE d (first defined at line 2)"
    );
    assert!(err("HANDLER a\nHANDLER a").contains("duplicate HANDLER a (first defined at line 1)"));
    assert!(err("TARGET_DRIVER a\nTARGET_DRIVER a").contains("duplicate TARGET_DRIVER a"));
    assert!(err("TARGET_DRIVER a {\nTARGET t\nTARGET t\n}").contains("duplicate TARGET t"));
    assert!(err(&in_target("GROUP g\nGROUP g")).contains("duplicate GROUP g"));
    assert!(
        err(&in_target("LUN 0 a\nLUN 00 b")).contains("duplicate LUN 0 (first defined at line 3)")
    );
    assert!(err(&in_target("GROUP g {\nLUN 1 a\nLUN 1 b\n}")).contains("duplicate LUN 1"));
    assert!(
        err(&in_target("GROUP g {\nINITIATOR i\nINITIATOR i\n}")).contains("duplicate INITIATOR i")
    );
    // Same LUN in the target's default set and in a group is fine.
    parse(&in_target("LUN 0 a\nGROUP g {\nLUN 0 b\n}")).unwrap();
    assert!(err("DEVICE_GROUP g\nDEVICE_GROUP g").contains("duplicate DEVICE_GROUP g"));
    assert!(err("DEVICE_GROUP g {\nDEVICE d\nDEVICE d\n}").contains("duplicate DEVICE d"));
    assert!(err("DEVICE_GROUP g {\nTARGET_GROUP t\nTARGET_GROUP t\n}")
        .contains("duplicate TARGET_GROUP t"));
    assert!(
        err("DEVICE_GROUP g {\nTARGET_GROUP t {\nTARGET x\nTARGET x\n}\n}")
            .contains("duplicate TARGET x")
    );
    assert!(err("ALUA\nALUA {\n}").contains("duplicate ALUA section (first at line 1)"));
}

#[test]
fn validation_errors() {
    // The message format promised to users.
    let text = "HANDLER vdisk_fileio {\n\tDEVICE disk1 {\n\t\tblocksiz 4096\n\t}\n}\n";
    assert_eq!(
        invalid(text),
        "scst.conf line 3: DEVICE disk1 (vdisk_fileio): unknown attribute 'blocksiz'"
    );
    assert_eq!(
        invalid("thread 4"),
        "scst.conf line 1: top level: unknown attribute 'thread'"
    );
    // Read-only attributes are compared when the file is applied, never refused.
    validate(&parse("version 1").unwrap()).expect("read-only attributes load");
    assert!(invalid("HANDLER vdisk_fileio {\nbogus 1\n}")
        .contains("HANDLER vdisk_fileio: unknown attribute 'bogus'"));
    // Handlers.
    assert_eq!(
        invalid("HANDLER vdisk {\n}"),
        "scst.conf line 1: unknown HANDLER 'vdisk' (supported: vcdrom, vdisk_blockio, vdisk_fileio, vdisk_nullio)"
    );
    assert!(invalid("HANDLER dev_disk {\nDEVICE 1:0:0:0\n}")
        .contains("HANDLER dev_disk is not supported by scst-rs"));
    // Drivers.
    for drv in ["qla2x00t", "scst_local", "ib_srpt", "fcst"] {
        let msg = invalid(&format!("TARGET_DRIVER {drv} {{\n}}"));
        assert!(
            msg.contains(&format!("TARGET_DRIVER {drv} is not supported by scst-rs")),
            "{msg}"
        );
    }
    assert!(invalid("TARGET_DRIVER iscsi2")
        .contains("unknown TARGET_DRIVER 'iscsi2' (supported: copy_manager, iscsi, vhost)"));
    assert!(invalid("TARGET_DRIVER iscsi {\nenable 1\n}")
        .contains("TARGET_DRIVER iscsi: unknown attribute 'enable'"));
    // Device references.
    let msg = invalid(&format!("{DISKS}{}", in_target("LUN 0 disk2")));
    assert_eq!(
        msg,
        "scst.conf line 8: LUN 0 of TARGET t (iscsi): device disk2 is not defined in any HANDLER"
    );
    let msg = invalid(&format!(
        "{DISKS}{}",
        in_target("LUN 0 disk1\nGROUP g {\nLUN 0 nope\n}")
    ));
    assert!(
        msg.contains("LUN 0 of GROUP g of TARGET t (iscsi): device nope is not defined"),
        "{msg}"
    );
    assert!(invalid("DEVICE_GROUP dg {\nDEVICE x\n}")
        .contains("DEVICE_GROUP dg: DEVICE x is not defined in any HANDLER"));
    let two = format!(
        "{DISKS}DEVICE_GROUP a {{\nDEVICE disk1\n}}\nDEVICE_GROUP b {{\nDEVICE disk1\n}}\n"
    );
    assert!(invalid(&two).contains("DEVICE disk1 is already in DEVICE_GROUP a (line 7)"));
    // Values.
    let dev = |attr: &str| {
        invalid(&format!(
            "HANDLER vdisk_fileio {{\nDEVICE d {{\n{attr}\n}}\n}}"
        ))
    };
    assert!(dev("read_only yes")
        .contains("DEVICE d (vdisk_fileio): attribute 'read_only' value 'yes' must be 0 or 1"));
    assert!(dev("blocksize big").contains("must be a power of two in 512..65536"));
    assert!(invalid(&in_target("addr_method ANY")).contains("must be one of PERIPHERAL, FLAT, LUN"));
    assert!(dev("sync 1").contains("attribute 'sync' is an action, not a setting"));
    assert!(dev("filename /a\nfilename /b")
        .contains("attribute 'filename' given more than once (first at line 3)"));
    assert!(dev("dummy 1").contains("unknown attribute 'dummy'"));
    assert!(invalid(&in_target("QueuedCommands lots"))
        .contains("'QueuedCommands' value 'lots' must be a number in 1..2048"));
    assert!(invalid(&in_target("InitialR2T yes")).contains("must be one of Yes, No"));
    assert!(invalid(&in_target(
        "OutgoingUser \"a 123456789012\"\nOutgoingUser \"c 123456789012\""
    ))
    .contains("'OutgoingUser' given more than once"));
    let short = invalid(&in_target("IncomingUser \"joe s3cr3t\""));
    assert!(short.contains("'IncomingUser' for user 'joe' has a CHAP secret shorter than 12 bytes"));
    assert!(
        !short.contains("s3cr3t"),
        "the secret is never shown: {short}"
    );
    assert!(invalid(&in_target("HW_TARGET")).contains("TARGET t (iscsi): HW_TARGET is not valid"));
    assert!(invalid(&in_target("GROUP g {\nper_sess_dedicated_tgt_threads 2\n}"))
        .contains("GROUP g of TARGET t (iscsi): attribute 'per_sess_dedicated_tgt_threads' value '2' must be 0 or 1"));
    assert!(invalid(&format!(
        "{DISKS}{}",
        in_target("LUN 0 disk1 {\nread_only 2\n}")
    ))
    .contains("must be 0 or 1"));
    assert!(
        invalid(&format!("{DISKS}{}", in_target("LUN 0 disk1 {\nro 1\n}")))
            .contains("LUN 0 of TARGET t (iscsi): unknown attribute 'ro'")
    );
    // ALUA objects.
    let tg = |body: &str| {
        invalid(&format!(
            "DEVICE_GROUP dg {{\nTARGET_GROUP tg {{\n{body}\n}}\n}}"
        ))
    };
    assert!(tg("state up").contains(
        "TARGET_GROUP tg of DEVICE_GROUP dg: attribute 'state' value 'up' must be one of active"
    ));
    assert!(tg("group_id 70000").contains("must be a number in 0..65535"));
    assert!(tg("TARGET x {\nrel_tgt 1\n}")
        .contains("TARGET x of TARGET_GROUP tg of DEVICE_GROUP dg: unknown attribute 'rel_tgt'"));
    assert!(
        invalid("DEVICE_GROUP dg {\nfoo 1\n}").contains("DEVICE_GROUP dg: unknown attribute 'foo'")
    );
    assert!(invalid("ALUA {\nfoo 1\n}").contains("ALUA: unknown attribute 'foo'"));
    // rel_tgt_id clash between enabled targets.
    let clash = "TARGET_DRIVER iscsi {\nTARGET a {\nenabled 1\nrel_tgt_id 0x5\n}\nTARGET b {\nenabled 1\nrel_tgt_id 5\n}\n}";
    assert!(invalid(clash)
        .contains("TARGET b (iscsi): rel_tgt_id 5 is already used by TARGET a (line 2)"));
    let no_clash = "TARGET_DRIVER iscsi {\nTARGET a {\nrel_tgt_id 5\n}\nTARGET b {\nenabled 1\nrel_tgt_id 5\n}\n}";
    validate(&parse(no_clash).unwrap()).unwrap();
}

#[test]
fn valid_variants() {
    // Multi-value attributes, sysfs instance suffixes, hex numbers, case-insensitive enums.
    let text = format!(
        "setup_id 0xff\n{DISKS}{}",
        in_target(
            "IncomingUser \"a 123456789012\"\nIncomingUser1 \"b 123456789012\"\n\
             allowed_portal 10.0.0.*\nallowed_portal !10.0.0.9\naddr_method flat\n\
             LUN 0 disk1"
        )
    );
    validate(&parse(&text).unwrap()).unwrap();
}

#[test]
fn problems_reports_everything() {
    let text = "thread 1\nHANDLER nope\nHANDLER vdisk_nullio {\nDEVICE n {\nfilename /x\n}\n}";
    let all = problems(&parse(text).unwrap());
    let lines: Vec<_> = all.iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 2, 5], "{all:?}");
}

/// xorshift64*: a tiny deterministic PRNG so the no-panic test needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Whatever parses must validate without panicking and survive the round trip.
fn exercise(text: &str) {
    // The one-pass reading agrees with parse on whether the syntax is sound, and
    // reports at least one problem whenever it fails.
    match load(text) {
        Ok(_) => assert!(parse(text).is_ok()),
        Err(all) => assert!(!all.0.is_empty()),
    }
    if let Ok(conf) = parse(text) {
        let _ = problems(&conf);
        assert_round_trip(&conf);
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    const PIECES: &[&str] = &[
        "HANDLER",
        "DEVICE",
        "TARGET_DRIVER",
        "TARGET",
        "HW_TARGET",
        "LUN",
        "GROUP",
        "INITIATOR",
        "DEVICE_GROUP",
        "TARGET_GROUP",
        "ALUA",
        "{",
        "}",
        "\n",
        "\n",
        "\n",
        " ",
        " ",
        "\t",
        "\"",
        "\\",
        "#",
        "0",
        "16384",
        "x",
        "é",
        "\r",
        "[HANDLER",
        "enabled 1",
        "\u{0}",
        "\u{a0}",
        "\\\n",
        "\"\"",
    ];
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..rng.below(40) {
            s.push_str(PIECES[rng.below(PIECES.len())]);
            if rng.below(2) == 0 {
                s.push(' ');
            }
        }
        exercise(&s);
    }
    // Raw random bytes (lossily decoded).
    for _ in 0..5_000 {
        let bytes: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        exercise(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn mutated_spec_example_never_panics() {
    let mut rng = Rng(42);
    let base: Vec<char> = SPEC_EXAMPLE.chars().collect();
    const INSERT: &[char] = &['{', '}', '"', '\\', '#', '\n', ' ', 'x', '9'];
    let mut parsed_ok = 0;
    for _ in 0..3_000 {
        let mut s = base.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(s.len());
            match rng.below(3) {
                0 => {
                    s.remove(at);
                }
                1 => s.insert(at, INSERT[rng.below(INSERT.len())]),
                _ => s[at] = INSERT[rng.below(INSERT.len())],
            }
        }
        let text: String = s.into_iter().collect();
        if parse(&text).is_ok() {
            parsed_ok += 1;
        }
        exercise(&text);
    }
    // Make sure the round-trip half of `exercise` actually ran on many inputs.
    assert!(parsed_ok > 300, "only {parsed_ok} mutants parsed");
}

#[test]
fn every_problem_of_a_file_is_reported_with_its_own_line() {
    let text = "HANDLER vdisk_fileio {\n\tDEVICE d {\n\t\tfilename /f\n\t\tread_only 2\n\
                \t\tsize 100\n\t\tbogus 1\n\t}\n}\nTARGET_DRIVER iscsi {\n\tTARGET t {\n\
                \t\tLUN 0 nope\n\t\tcpu_mask zz\n\t}\n}\n";
    let all: Vec<String> = problems(&parse(text).unwrap())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        all,
        [
            "scst.conf line 4: DEVICE d (vdisk_fileio): attribute 'read_only' value '2' must be 0 or 1",
            "scst.conf line 6: DEVICE d (vdisk_fileio): unknown attribute 'bogus'",
            "scst.conf line 12: TARGET t (iscsi): attribute 'cpu_mask' value 'zz' must be a CPU mask \
             of comma-separated hex groups (e.g. ff or 0000ffff,ffffffff)",
            "scst.conf line 11: LUN 0 of TARGET t (iscsi): device nope is not defined in any HANDLER",
        ]
    );
}

#[test]
fn what_scst_writes_at_its_defaults_loads() {
    let text = format!(
        "max_tasklet_cmd 10\ncluster_name \"\"\n{DISKS}TARGET_DRIVER iscsi {{\n\tlink_local 1\n\
         \tTARGET t {{\n\t\trel_tgt_id 0\n\t\tRDMAExtensions No\n\t\taen_disabled 0\n\
         \t\tcpu_mask ffffffff,ffffffff,ffffffff,ffffffff\n\t\tforwarding 0\n\t}}\n}}\n"
    );
    validate(&parse(&text).unwrap()).expect("SCST's defaults load");
    assert!(invalid(&in_target("RDMAExtensions Yes")).contains("only its default, 'No'"));
    assert!(invalid(&in_target("cpu_mask 1,00000000"))
        .contains("'cpu_mask' is not supported by scst-rs (threads are not pinned"));
}

#[test]
fn the_copy_manager_takes_one_target_without_groups_or_read_only_luns() {
    let ok = format!(
        "{DISKS}TARGET_DRIVER copy_manager {{\n\tallow_not_connected_copy 1\n\
         \tTARGET copy_manager_tgt {{\n\t\trel_tgt_id 0\n\t\tLUN 0 disk1\n\t}}\n}}\n"
    );
    validate(&parse(&ok).unwrap()).expect("the copy manager loads");
    let bad = format!(
        "{DISKS}TARGET_DRIVER copy_manager {{\n\tTARGET other {{\n\t\tenabled 1\n\
         \t\tLUN 0 disk1 {{\n\t\t\tread_only 1\n\t\t}}\n\t\tGROUP g\n\t}}\n}}\n"
    );
    let all: Vec<String> = problems(&parse(&bad).unwrap())
        .iter()
        .map(ToString::to_string)
        .collect();
    let joined = all.join("\n");
    for want in [
        "line 7: TARGET other (copy_manager): the copy manager has one target, copy_manager_tgt",
        "line 12: TARGET other (copy_manager): GROUP g: the copy manager does not support security groups",
        "line 10: LUN 0 of TARGET other (copy_manager): the copy manager does not support read-only LUNs",
        "line 8: TARGET other (copy_manager): unknown attribute 'enabled'",
    ] {
        assert!(joined.contains(want), "{want}\n{joined}");
    }
}

#[test]
fn one_pass_reports_syntax_and_meaning_problems_in_line_order() {
    let text = "HANDLER vdisk_fileio {\n\tDEVICE d {\n\t\tfilename /f\n\t\tprod_id a b\n\
                \t\tbogus 1\n\t}\n\tDEVICE {\n\t\tx 1\n\t}\n}\nTARGET_DRIVER iscsi {\n\
                \tTARGET t {\n\t\tLUN x d\n\t\tLUN 0 d\n\t\tLUN 1 nope\n\t}\n}\n";
    let all: Vec<String> = load(text)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        all,
        [
            "scst.conf line 4: too many values for 'prod_id' (values with blanks must be in double quotes)",
            "scst.conf line 5: DEVICE d (vdisk_fileio): unknown attribute 'bogus'",
            "scst.conf line 7: DEVICE without a name",
            "scst.conf line 13: LUN number 'x' is not a number",
            "scst.conf line 15: LUN 1 of TARGET t (iscsi): device nope is not defined in any HANDLER",
        ]
    );
    // parse keeps answering with the first; unbalanced braces still end the pass.
    assert_eq!(parse(text).unwrap_err().line, 4);
    let e = load("HANDLER vdisk_fileio {\n\tbogus 1 2\n").unwrap_err().0;
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].message.contains("never closed"), "{e:?}");
    assert!(load(DISKS).is_ok());
}
