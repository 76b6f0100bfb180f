//! Persistent reservations across three nexuses (a golden, table-driven run), the
//! `pr_state` text format, APTPL files and `pr_dump_dir` dumps.

use std::path::Path;
use std::sync::Arc;

use scsi_wire::pr::{sa_out, IscsiTid};
use scsi_wire::{status, Sense};

use crate::cmd::{Cdb, Cmd, ExecMode, Response, TaskAttr};
use crate::device::{CmdCtx, Device};
use crate::pr::{PrRegistrant, PrReservation, PrState, PrType};
use crate::pr_persist::{format_text, parse_text};
use crate::registry::{DeviceEntry, Scst};
use crate::reservation::PR_NOT_DURABLE;
use crate::session::{Route, Session, SessionEvents, TransportId};
use crate::target::Target;

/// A disk that answers GOOD to everything, with a unit serial number.
struct Disk(&'static str);

impl Device for Disk {
    fn name(&self) -> &str {
        self.0
    }
    fn handler_name(&self) -> &'static str {
        "vdisk_nullio"
    }
    fn scsi_type(&self) -> u8 {
        0
    }
    fn execute(&self, _: &CmdCtx<'_>, _: &mut Cmd, _: ExecMode) -> Option<Response> {
        Some(Response::good())
    }
    fn attributes(&self) -> Vec<(String, String, bool)> {
        vec![("usn".into(), format!("SER-{}", self.0), true)]
    }
}

struct NoEvents;

impl SessionEvents for NoEvents {
    fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {}
    fn close(&self) {}
}

const ISID: [u8; 6] = [0x40, 0, 0, 0, 0, 1];
const WE: u8 = PrType::WriteExclusive as u8;
const EA: u8 = PrType::ExclusiveAccess as u8;
const WE_RO: u8 = PrType::WriteExclusiveRegistrantsOnly as u8;

struct Setup {
    scst: Arc<Scst>,
    dev: Arc<DeviceEntry>,
    targets: Vec<Arc<Target>>,
}

/// Device `name` exported as LUN 0 by two target ports (rel_tgt_id 1 and 2); the core
/// keeps state under `state_dir` when given.
fn setup(name: &'static str, state_dir: Option<&Path>) -> Setup {
    let scst = Scst::new(1);
    if let Some(d) = state_dir {
        scst.set_state_dir(d.to_path_buf());
    }
    let dev = scst.add_device(Arc::new(Disk(name))).unwrap();
    let targets = (1..=2u16)
        .map(|i| {
            let t = scst
                .add_target("iscsi", &format!("iqn.t:{i}"), Some(i))
                .unwrap();
            scst.add_lun(&t, None, 0, name, false).unwrap();
            t
        })
        .collect();
    Setup { scst, dev, targets }
}

impl Setup {
    /// A session of initiator `name` on port `port`, its POWER ON UA consumed.
    fn session(&self, port: u16, name: &str) -> Arc<Session> {
        let tid = TransportId::Iscsi {
            name: name.into(),
            isid: Some(ISID),
        };
        let s =
            self.scst
                .register_session(&self.targets[port as usize - 1], tid, Arc::new(NoEvents));
        s.luns().get(0).unwrap().take_ua();
        s
    }
}

fn cmd(cdb: &[u8], data: &[u8]) -> Cmd {
    Cmd {
        cdb: Cdb::new(cdb).unwrap(),
        lun: 0,
        tag: 1,
        attr: TaskAttr::Simple,
        data_out: data.to_vec(),
        expected_in: 0xFFFF,
    }
}

/// As a transport does: route, then Inline, and Blocking when Inline declines.
fn run(s: &Session, cdb: &[u8], data: &[u8]) -> Response {
    let mut c = cmd(cdb, data);
    match s.route(&c) {
        Route::Done(r) => r,
        Route::Device(td) => match s.execute(&td, &mut c, ExecMode::Inline) {
            Some(r) => r,
            None => s.execute(&td, &mut c, ExecMode::Blocking).unwrap(),
        },
    }
}

fn prout_cdb(sa: u8, pr_type: u8, len: u32) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x5F;
    c[1] = sa;
    c[2] = pr_type;
    c[5..9].copy_from_slice(&len.to_be_bytes());
    c
}

/// A PR OUT with the basic parameter list; `aptpl` sets byte 20 bit 0.
fn prout(s: &Session, sa: u8, pr_type: u8, key: u64, sark: u64, aptpl: bool) -> Response {
    let mut l = vec![0u8; 24];
    l[0..8].copy_from_slice(&key.to_be_bytes());
    l[8..16].copy_from_slice(&sark.to_be_bytes());
    l[20] = aptpl as u8;
    run(s, &prout_cdb(sa, pr_type, 24), &l)
}

/// REGISTER AND MOVE to `dest` on `port`.
fn register_and_move(s: &Session, key: u64, sark: u64, port: u16, dest: &str) -> Response {
    let tid = IscsiTid {
        name: dest.into(),
        isid: Some(ISID),
    }
    .encode();
    let mut l = vec![0u8; 24];
    l[0..8].copy_from_slice(&key.to_be_bytes());
    l[8..16].copy_from_slice(&sark.to_be_bytes());
    l[18..20].copy_from_slice(&port.to_be_bytes());
    l[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    l.extend(tid);
    run(
        s,
        &prout_cdb(sa_out::REGISTER_AND_MOVE, 0, l.len() as u32),
        &l,
    )
}

fn drain_uas(s: &Session) -> Vec<Sense> {
    let td = s.luns().get(0).unwrap().clone();
    std::iter::from_fn(|| td.take_ua()).collect()
}

/// One row of the golden run: who sends what, and what everybody sees afterwards.
struct Step {
    who: usize,
    action: Action,
    status: u8,
    generation: u32,
    /// (key, holder?) of every registration, in order.
    keys: &'static [(u64, bool)],
    reservation: Option<u8>,
    /// Unit attentions queued for nexus A, B, C by this step.
    uas: [&'static [Sense]; 3],
}

enum Action {
    Out {
        sa: u8,
        ty: u8,
        key: u64,
        sark: u64,
    },
    Move {
        key: u64,
        sark: u64,
        port: u16,
        dest: &'static str,
    },
}

use Action::{Move, Out};

const RELEASED: Sense = Sense::UA_RESERVATIONS_RELEASED;
const RES_PREEMPTED: Sense = Sense::UA_RESERVATIONS_PREEMPTED;
const REG_PREEMPTED: Sense = Sense::UA_REGISTRATIONS_PREEMPTED;
const GOOD: u8 = status::GOOD;
const CONFLICT: u8 = status::RESERVATION_CONFLICT;
const CHECK: u8 = status::CHECK_CONDITION;

/// Three nexuses: A (iqn.i:a, port 1), B (iqn.i:b, port 1), C (iqn.i:c, port 2).
const GOLDEN: &[Step] = &[
    // Everybody registers: each REGISTER bumps the generation.
    Step {
        who: 0,
        action: Out {
            sa: sa_out::REGISTER,
            ty: 0,
            key: 0,
            sark: 0xA,
        },
        status: GOOD,
        generation: 1,
        keys: &[(0xA, false)],
        reservation: None,
        uas: [&[], &[], &[]],
    },
    Step {
        who: 1,
        action: Out {
            sa: sa_out::REGISTER,
            ty: 0,
            key: 0,
            sark: 0xB,
        },
        status: GOOD,
        generation: 2,
        keys: &[(0xA, false), (0xB, false)],
        reservation: None,
        uas: [&[], &[], &[]],
    },
    Step {
        who: 2,
        action: Out {
            sa: sa_out::REGISTER,
            ty: 0,
            key: 0,
            sark: 0xC,
        },
        status: GOOD,
        generation: 3,
        keys: &[(0xA, false), (0xB, false), (0xC, false)],
        reservation: None,
        uas: [&[], &[], &[]],
    },
    // A registered nexus re-registering with the wrong key conflicts.
    Step {
        who: 2,
        action: Out {
            sa: sa_out::REGISTER,
            ty: 0,
            key: 0xA,
            sark: 0xCC,
        },
        status: CONFLICT,
        generation: 3,
        keys: &[(0xA, false), (0xB, false), (0xC, false)],
        reservation: None,
        uas: [&[], &[], &[]],
    },
    // B reserving with A's key conflicts; A reserves WE_RO (no generation change).
    Step {
        who: 1,
        action: Out {
            sa: sa_out::RESERVE,
            ty: WE_RO,
            key: 0xA,
            sark: 0,
        },
        status: CONFLICT,
        generation: 3,
        keys: &[(0xA, false), (0xB, false), (0xC, false)],
        reservation: None,
        uas: [&[], &[], &[]],
    },
    Step {
        who: 0,
        action: Out {
            sa: sa_out::RESERVE,
            ty: WE_RO,
            key: 0xA,
            sark: 0,
        },
        status: GOOD,
        generation: 3,
        keys: &[(0xA, true), (0xB, false), (0xC, false)],
        reservation: Some(WE_RO),
        uas: [&[], &[], &[]],
    },
    Step {
        who: 1,
        action: Out {
            sa: sa_out::RESERVE,
            ty: WE_RO,
            key: 0xB,
            sark: 0,
        },
        status: CONFLICT,
        generation: 3,
        keys: &[(0xA, true), (0xB, false), (0xC, false)],
        reservation: Some(WE_RO),
        uas: [&[], &[], &[]],
    },
    // A non-holder's RELEASE is a no-op; the holder's with the wrong type is invalid.
    Step {
        who: 2,
        action: Out {
            sa: sa_out::RELEASE,
            ty: WE_RO,
            key: 0xC,
            sark: 0,
        },
        status: GOOD,
        generation: 3,
        keys: &[(0xA, true), (0xB, false), (0xC, false)],
        reservation: Some(WE_RO),
        uas: [&[], &[], &[]],
    },
    Step {
        who: 0,
        action: Out {
            sa: sa_out::RELEASE,
            ty: WE,
            key: 0xA,
            sark: 0,
        },
        status: CHECK,
        generation: 3,
        keys: &[(0xA, true), (0xB, false), (0xC, false)],
        reservation: Some(WE_RO),
        uas: [&[], &[], &[]],
    },
    // Releasing a registrants-only reservation tells the other registrants.
    Step {
        who: 0,
        action: Out {
            sa: sa_out::RELEASE,
            ty: WE_RO,
            key: 0xA,
            sark: 0,
        },
        status: GOOD,
        generation: 3,
        keys: &[(0xA, false), (0xB, false), (0xC, false)],
        reservation: None,
        uas: [&[], &[RELEASED], &[RELEASED]],
    },
    // B takes Exclusive Access; C preempts B's key as Write Exclusive: B's registration
    // goes (REGISTRATIONS PREEMPTED), A loses access of the old type (RELEASED).
    Step {
        who: 1,
        action: Out {
            sa: sa_out::RESERVE,
            ty: EA,
            key: 0xB,
            sark: 0,
        },
        status: GOOD,
        generation: 3,
        keys: &[(0xA, false), (0xB, true), (0xC, false)],
        reservation: Some(EA),
        uas: [&[], &[], &[]],
    },
    Step {
        who: 2,
        action: Out {
            sa: sa_out::PREEMPT,
            ty: WE,
            key: 0xC,
            sark: 0xB,
        },
        status: GOOD,
        generation: 4,
        keys: &[(0xA, false), (0xC, true)],
        reservation: Some(WE),
        uas: [&[RELEASED], &[REG_PREEMPTED], &[]],
    },
    // B, no longer registered, cannot reserve; it registers again ignoring the key.
    Step {
        who: 1,
        action: Out {
            sa: sa_out::RESERVE,
            ty: WE,
            key: 0xB,
            sark: 0,
        },
        status: CONFLICT,
        generation: 4,
        keys: &[(0xA, false), (0xC, true)],
        reservation: Some(WE),
        uas: [&[], &[], &[]],
    },
    Step {
        who: 1,
        action: Out {
            sa: sa_out::REGISTER_AND_IGNORE,
            ty: 0,
            key: 0x99,
            sark: 0xB2,
        },
        status: GOOD,
        generation: 5,
        keys: &[(0xA, false), (0xC, true), (0xB2, false)],
        reservation: Some(WE),
        uas: [&[], &[], &[]],
    },
    // Preempting a key nobody has conflicts.
    Step {
        who: 0,
        action: Out {
            sa: sa_out::PREEMPT,
            ty: WE,
            key: 0xA,
            sark: 0x77,
        },
        status: CONFLICT,
        generation: 5,
        keys: &[(0xA, false), (0xC, true), (0xB2, false)],
        reservation: Some(WE),
        uas: [&[], &[], &[]],
    },
    // C moves the reservation to A on port 1 with a new key; C stays registered.
    Step {
        who: 2,
        action: Move {
            key: 0xC,
            sark: 0xA2,
            port: 1,
            dest: "iqn.i:a",
        },
        status: GOOD,
        generation: 6,
        keys: &[(0xA2, true), (0xC, false), (0xB2, false)],
        reservation: Some(WE),
        uas: [&[], &[], &[]],
    },
    // The old holder cannot move it again.
    Step {
        who: 2,
        action: Move {
            key: 0xC,
            sark: 0xB3,
            port: 1,
            dest: "iqn.i:b",
        },
        status: CONFLICT,
        generation: 6,
        keys: &[(0xA2, true), (0xC, false), (0xB2, false)],
        reservation: Some(WE),
        uas: [&[], &[], &[]],
    },
    // B unregisters (not the holder: nobody hears of it).
    Step {
        who: 1,
        action: Out {
            sa: sa_out::REGISTER,
            ty: 0,
            key: 0xB2,
            sark: 0,
        },
        status: GOOD,
        generation: 7,
        keys: &[(0xA2, true), (0xC, false)],
        reservation: Some(WE),
        uas: [&[], &[], &[]],
    },
    // CLEAR by A: everything goes, the other registrant is told.
    Step {
        who: 0,
        action: Out {
            sa: sa_out::CLEAR,
            ty: 0,
            key: 0xA2,
            sark: 0,
        },
        status: GOOD,
        generation: 8,
        keys: &[],
        reservation: None,
        uas: [&[], &[], &[RES_PREEMPTED]],
    },
];

#[rustfmt::skip]
#[test]
fn golden_three_nexus_run() {
    let f = setup("g0", None);
    let nexus = [f.session(1, "iqn.i:a"), f.session(1, "iqn.i:b"), f.session(2, "iqn.i:c")];
    for (i, step) in GOLDEN.iter().enumerate() {
        let s = &nexus[step.who];
        let r = match step.action {
            Out { sa, ty, key, sark } => prout(s, sa, ty, key, sark, false),
            Move { key, sark, port, dest } => register_and_move(s, key, sark, port, dest),
        };
        assert_eq!(r.status, step.status, "step {i}: status ({r:?})");
        let st = f.dev.pr_state();
        assert_eq!(st.generation, step.generation, "step {i}: generation");
        let keys: Vec<(u64, bool)> = st.registrants.iter().map(|r| (r.key, r.holder)).collect();
        assert_eq!(keys, step.keys, "step {i}: registrations");
        assert_eq!(st.reservation.map(|r| r.pr_type as u8), step.reservation, "step {i}: reservation");
        for (n, want) in nexus.iter().zip(step.uas) {
            assert_eq!(drain_uas(n), want, "step {i}: UAs of {}", n.initiator_name);
        }
        // The text format carries every step's state faithfully.
        assert_eq!(parse_text(&format_text(&st)).unwrap(), PrState { aptpl: false, ..st });
    }
}

fn sample_state() -> PrState {
    let tid = |name: &str, isid: Option<[u8; 6]>| TransportId::Iscsi {
        name: name.into(),
        isid,
    };
    PrState {
        generation: 4_000_000_000,
        aptpl: false,
        reservation: Some(PrReservation {
            pr_type: PrType::ExclusiveAccessRegistrantsOnly,
            scope: 0,
        }),
        registrants: vec![
            PrRegistrant {
                tid: tid("iqn.i:a", Some(ISID)),
                rel_tgt_id: 1,
                key: 0xA,
                holder: false,
            },
            PrRegistrant {
                tid: tid("iqn.i:b", None),
                rel_tgt_id: 65535,
                key: u64::MAX,
                holder: true,
            },
        ],
    }
}

#[test]
fn pr_state_text_round_trip() {
    let st = sample_state();
    let text = format_text(&st);
    assert!(
        text.starts_with(
            "version 1\ngeneration 4000000000\nreservation 06 00\nregistrant 1 000000000000000a 0 "
        ),
        "{text}"
    );
    assert_eq!(parse_text(&text).unwrap(), st);
    // Empty state: no reservation line.
    assert_eq!(
        format_text(&PrState::default()),
        "version 1\ngeneration 0\n"
    );
    assert_eq!(
        parse_text("version 1\ngeneration 0\n").unwrap(),
        PrState::default()
    );
}

#[test]
fn malformed_pr_state_is_rejected_naming_the_line() {
    let good = format_text(&sample_state());
    let lines: Vec<&str> = good.lines().collect();
    let reg = lines[3];
    let with_line = |n: usize, l: &str| {
        let mut v = lines.clone();
        v[n] = l;
        v.join("\n")
    };
    let hex_tid = reg.split(' ').nth(5).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "line 1:"),
        (
            "version 2\ngeneration 1\n".into(),
            "line 1: expected 'version 1'",
        ),
        ("version 1\n".into(), "no 'generation' line"),
        (with_line(1, "generation -1"), "line 2: generation '-1'"),
        (
            with_line(1, "generation 1 2"),
            "line 2: 'generation' takes 1 fields",
        ),
        (
            with_line(2, "reservation 02 00"),
            "line 3: reservation type '02'",
        ),
        (
            with_line(2, "reservation 06 01"),
            "line 3: reservation scope",
        ),
        (
            with_line(3, &reg.replacen("registrant 1 ", "registrant 0 ", 1)),
            "line 4: rel_tgt_id '0'",
        ),
        (
            with_line(3, &reg.replace("000000000000000a", "0")),
            "line 4: key '0'",
        ),
        (
            with_line(3, &reg.replace("000000000000000a", "1000000000000000a")),
            "line 4: key",
        ),
        (
            with_line(3, &reg.replace(" 0 ", " 2 ")),
            "line 4: holder '2'",
        ),
        (
            with_line(3, &format!("registrant 1 a 0 600 {hex_tid}")),
            "line 4: tid_len '600'",
        ),
        (
            with_line(3, &format!("registrant 1 a 0 28 {hex_tid}")),
            "line 4: TransportID has",
        ),
        (
            with_line(
                3,
                &format!("registrant 1 a 0 {} {}zz", hex_tid.len() / 2 + 1, hex_tid),
            ),
            "line 4: TransportID is not hex",
        ),
        (
            with_line(3, "registrant 1 a 0 4 01020304"),
            "line 4: not a valid TransportID",
        ),
        (with_line(3, "bogus 1"), "line 4: unknown keyword 'bogus'"),
        (
            format!("{good}{}\n", lines[4]),
            "line 6: duplicate registrant",
        ),
        // Holder rules: a WE_RO reservation needs exactly one holder.
        (
            with_line(4, &lines[4].replace(" 1 ", " 0 ")),
            "line 3: the reservation needs exactly one",
        ),
        (
            with_line(2, "generation 5"),
            "line 3: a second 'generation' line",
        ),
    ];
    for (text, want) in cases {
        let e = parse_text(&text).expect_err(&text).to_string();
        assert!(
            e.contains(want),
            "{text:?}: error {e:?} should contain {want:?}"
        );
    }
    // Binary junk does not panic either.
    for junk in [
        "\u{0}\u{1}",
        "version 1\ngeneration 1\nregistrant",
        "version 1\n\u{feff}generation 1",
    ] {
        assert!(parse_text(junk).is_err());
    }
}

#[test]
fn import_restores_state_and_is_refused_while_exported() {
    let f = setup("i0", None);
    let text = format_text(&sample_state());
    let e = f.dev.import_pr_state(&text).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    // A device with no LUN takes it.
    let scst = Scst::new(1);
    let d = scst.add_device(Arc::new(Disk("i1"))).unwrap();
    let e = d.import_pr_state("version 1\ngeneration x\n").unwrap_err();
    assert!(
        e.to_string().contains("device 'i1': pr_state: line 2"),
        "{e}"
    );
    assert_eq!(d.pr_state(), PrState::default());
    d.import_pr_state(&text).unwrap();
    assert_eq!(d.pr_state(), sample_state());
    assert!(d.resv.any(), "the fast-path flag follows an import");
    assert_eq!(d.pr_state_text(), text);
}

fn read_file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn aptpl_state_is_written_before_completion_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pr").join("p0");
    let f = setup("p0", Some(dir.path()));
    let a = f.session(1, "iqn.i:a");
    let b = f.session(2, "iqn.i:b");
    // Without APTPL nothing touches the disk and PR OUT runs inline.
    let c = cmd(&prout_cdb(sa_out::REGISTER, 0, 24), &{
        let mut l = vec![0u8; 24];
        l[8..16].copy_from_slice(&0xAu64.to_be_bytes());
        l
    });
    assert!(matches!(a.route(&c), Route::Done(ref r) if r.status == GOOD));
    assert!(!file.exists());
    // APTPL=1: the core declines on the network thread and writes on the I/O thread.
    let mut c = cmd(&prout_cdb(sa_out::REGISTER, 0, 24), &{
        let mut l = vec![0u8; 24];
        l[8..16].copy_from_slice(&0xBu64.to_be_bytes());
        l[20] = 1;
        l
    });
    let Route::Device(td) = b.route(&c) else {
        panic!("an APTPL PR OUT must go to an I/O thread")
    };
    assert!(b.execute(&td, &mut c, ExecMode::Inline).is_none());
    assert_eq!(
        b.execute(&td, &mut c, ExecMode::Blocking).unwrap().status,
        GOOD
    );
    assert_eq!(read_file(&file), format_text(&f.dev.pr_state()));
    // Now every state change is persisted, with or without the bit in the command.
    assert_eq!(prout(&b, sa_out::RESERVE, EA, 0xB, 0, false).status, GOOD);
    let before = f.dev.pr_state();
    assert!(before.aptpl);
    assert_eq!(
        parse_text(&read_file(&file)).unwrap(),
        PrState {
            aptpl: false,
            ..before.clone()
        }
    );
    assert!(!dir.path().join("pr").join("p0.tmp").exists());

    // A new core over the same state directory starts from the file.
    let g = setup("p0", Some(dir.path()));
    assert_eq!(g.dev.pr_state(), before);
    assert!(g.dev.resv.any());
    // A new session of B still holds the reservation; A conflicts on a write.
    let b2 = g.session(2, "iqn.i:b");
    let a2 = g.session(1, "iqn.i:a");
    assert_eq!(
        run(&b2, &[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0; 512]).status,
        GOOD
    );
    assert_eq!(
        run(&a2, &[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0; 512]).status,
        CONFLICT
    );
    // APTPL=0 on the next REGISTER: the file goes.
    assert_eq!(
        prout(&b2, sa_out::REGISTER, 0, 0xB, 0xB1, false).status,
        GOOD
    );
    assert!(!file.exists());
    assert!(!g.dev.pr_state().aptpl);
    // And with no file, a third core starts empty.
    drop((a2, b2));
    let h = setup("p0", Some(dir.path()));
    assert_eq!(h.dev.pr_state(), PrState::default());
}

#[test]
fn unwritable_state_fails_the_command_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    // `pr` is a file: the directory cannot be created.
    std::fs::write(dir.path().join("pr"), b"").unwrap();
    let f = setup("w0", Some(dir.path()));
    let a = f.session(1, "iqn.i:a");
    let r = prout(&a, sa_out::REGISTER, 0, 0, 0xA, true);
    assert_eq!((r.status, r.sense), (CHECK, Some(PR_NOT_DURABLE)));
    assert_eq!(f.dev.pr_state(), PrState::default());
    assert!(!f.dev.resv.any());
    // Without APTPL the same registration works (nothing to persist).
    assert_eq!(prout(&a, sa_out::REGISTER, 0, 0, 0xA, false).status, GOOD);
}

#[test]
fn corrupt_state_file_is_set_aside_and_the_device_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pr")).unwrap();
    let file = dir.path().join("pr").join("c0");
    std::fs::write(&file, b"version 1\ngeneration 3\nregistrant 1 a 0 4 0102").unwrap();
    let f = setup("c0", Some(dir.path()));
    assert_eq!(f.dev.pr_state(), PrState::default());
    assert!(!file.exists());
    assert!(dir.path().join("pr").join("c0.corrupt").exists());
    // The next APTPL registration writes a good file.
    let a = f.session(1, "iqn.i:a");
    assert_eq!(prout(&a, sa_out::REGISTER, 0, 0, 0xA, true).status, GOOD);
    assert!(parse_text(&read_file(&file)).is_ok());
}

#[test]
fn pr_dump_dir_dump_imports_on_another_device() {
    let dump = tempfile::tempdir().unwrap();
    let f = setup("d0", None);
    f.scst
        .set_pr_dump_dir("vdisk_nullio", Some(dump.path().to_path_buf()));
    let a = f.session(1, "iqn.i:a");
    let c = f.session(2, "iqn.i:c");
    assert_eq!(prout(&a, sa_out::REGISTER, 0, 0, 0xA, false).status, GOOD);
    assert_eq!(prout(&c, sa_out::REGISTER, 0, 0, 0xC, false).status, GOOD);
    assert_eq!(prout(&c, sa_out::RESERVE, WE, 0xC, 0, false).status, GOOD);
    let state = f.dev.pr_state();
    f.scst.detach_all();
    let file = dump.path().join("SER-d0");
    assert_eq!(read_file(&file), format_text(&state));

    // Another (unexported) device takes the dump and enforces it once exported.
    let g = setup_unexported("d1");
    g.0.import_pr_state(&read_file(&file)).unwrap();
    assert_eq!(g.0.pr_state(), state);
    let t = g.1.add_target("iscsi", "iqn.t:1", Some(1)).unwrap();
    g.1.add_lun(&t, None, 0, "d1", false).unwrap();
    let a2 = g.1.register_session(
        &t,
        TransportId::Iscsi {
            name: "iqn.i:a".into(),
            isid: Some(ISID),
        },
        Arc::new(NoEvents),
    );
    a2.luns().get(0).unwrap().take_ua();
    assert_eq!(
        run(&a2, &[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0; 512]).status,
        CONFLICT
    );
    // No dump dir: nothing written.
    f.scst.set_pr_dump_dir("vdisk_nullio", None);
    std::fs::remove_file(&file).unwrap();
    f.scst.detach_all();
    assert!(!file.exists());
}

fn setup_unexported(name: &'static str) -> (Arc<DeviceEntry>, Arc<Scst>) {
    let scst = Scst::new(1);
    (scst.add_device(Arc::new(Disk(name))).unwrap(), scst)
}
