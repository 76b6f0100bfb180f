//! scstd's log carries the connection's and session's context, and SCST's trace_level
//! knobs change its levels while the daemon runs: a debug line appears after
//! `trace_level` asks for it and not before.

mod common;

use std::time::{Duration, Instant};

use common::{admin_ok, fileio_fixture, Daemon, IQN};
use test_support::iscsi_wire::bhs::task_attr;
use test_support::{Initiator, LoginOptions};

const INITIATOR: &str = "iqn.2026-12.rs.scst:logger";
/// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
const BAD_CDB: [u8; 6] = [0xF3, 0, 0, 0, 0, 0];
const LUN_RESET: u8 = 5;

/// Lines the daemon logged so far, collected across calls.
struct Log<'a> {
    d: &'a Daemon,
    lines: Vec<String>,
}

impl Log<'_> {
    /// Read until a line satisfies `want`; every line read so far, up to it, stays
    /// in `lines`. The daemon writes each line before it answers the request that
    /// caused it, so waiting bounds only the pipe's delivery.
    fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.lines.iter().find(|l| want(l)) {
                return l.clone();
            }
            let more = self.d.log();
            if !more.is_empty() {
                self.lines.extend(more.lines().map(String::from));
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "no log line {what}; the log:\n{}",
                self.lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn bad_cdb(i: &mut Initiator) {
    let r = i
        .scsi(0, &BAD_CDB, &[], 0, task_attr::SIMPLE)
        .expect("transport");
    assert_eq!(r.sense_key_asc_ascq(), Some((0x05, 0x20, 0x00)), "{r:?}");
}

/// A logged-in session of INITIATOR on the daemon's target (`isid` its last byte).
fn session(d: &Daemon, isid: u8) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    let opts = LoginOptions {
        isid: [0x40, 0, 0, 0, 0, isid],
        ..Default::default()
    };
    i.login(INITIATOR, IQN, &opts).expect("login");
    i
}

#[test]
fn lines_name_their_session_and_trace_level_changes_the_level_at_once() {
    let fx = fileio_fixture(1 << 20, "");
    let d = Daemon::start(&fx.conf);
    let mut log = Log {
        d: &d,
        lines: Vec::new(),
    };
    let mut i = session(&d, 7);
    // A real login: logged inside the connection's span, naming the peer.
    let login = log.until("for the login", |l| l.contains("session TSIH"));
    assert!(login.contains("conn{peer=127.0.0.1:"), "{login}");
    // Clear the POWER ON unit attention.
    let _ = i.test_unit_ready(0).expect("TUR");

    // At the start level (info) a bad CDB is not logged.
    bad_cdb(&mut i);
    admin_ok(
        &d,
        &[
            "-set_drv_attr",
            "iscsi",
            "-attributes",
            "trace_level=add debug",
        ],
    );
    log.until("for the trace_level change", |l| {
        l.contains("changed trace level for \"iscsi\"")
    });
    log.until("for the new filter", |l| {
        l.contains("log filter now") && l.contains("scst_iscsi=debug")
    });
    assert!(
        !log.lines.iter().any(|l| l.contains("CHECK CONDITION")),
        "debug line before trace_level asked for it:\n{}",
        log.lines.join("\n")
    );
    // Reading shows the token, in SCST's format.
    let shown = admin_ok(&d, &["-list_drv_attr", "iscsi"]);
    assert!(shown.contains("debug"), "{shown}");

    // Now it is, with the target, the initiator and the LUN.
    bad_cdb(&mut i);
    let line = log.until("for the bad CDB", |l| l.contains("CHECK CONDITION"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains(&format!("target={IQN}")), "{line}");
    assert!(line.contains(&format!("initiator={INITIATOR}")), "{line}");
    assert!(line.contains("lun{lun=0}"), "{line}");
    assert!(line.contains("ASC/ASCQ 0x20/0x00"), "{line}");

    // A LUN reset names its LUN and session.
    assert_eq!(i.tmf(LUN_RESET, 0, 0).expect("LUN RESET"), 0);
    let line = log.until("for the LUN reset", |l| l.contains("LunReset"));
    assert!(
        line.contains(&format!("target={IQN}")) && line.contains("lun{lun=0}"),
        "{line}"
    );
    // The reset's unit attention.
    let _ = i.test_unit_ready(0).expect("TUR");

    // Back to SCST's default: debug lines stop.
    admin_ok(
        &d,
        &[
            "-set_drv_attr",
            "iscsi",
            "-attributes",
            "trace_level=default",
        ],
    );
    log.until("for the second change", |l| {
        l.contains("changed trace level") && l.contains("new 0x00002508")
    });
    let before = log.lines.len();
    bad_cdb(&mut i);
    // The session's close comes after the bad CDB: when it is in, so would be the CDB's.
    drop(i);
    let close = log.until("for the close", |l| l.contains("connection ended"));
    assert!(close.contains(&format!("initiator={INITIATOR}")), "{close}");
    assert!(
        !log.lines[before..]
            .iter()
            .any(|l| l.contains("CHECK CONDITION")),
        "debug line after trace_level default:\n{}",
        log.lines[before..].join("\n")
    );
    d.stop();
}

#[test]
fn a_backing_store_error_names_the_session_whose_command_met_it() {
    let fx = fileio_fixture(1 << 20, "");
    let d = Daemon::start(&fx.conf);
    let mut log = Log {
        d: &d,
        lines: Vec::new(),
    };
    let mut i = session(&d, 8);
    let _ = i.test_unit_ready(0).expect("TUR");
    // The file shrinks under the device: the device still reports 1 MiB, and a read of
    // its last block finds nothing there. The read may finish on an I/O thread; the
    // device's error line names the session either way.
    std::fs::File::options()
        .write(true)
        .open(&fx.disk)
        .and_then(|f| f.set_len(0))
        .expect("truncate");
    let last = (1u32 << 20) / 512 - 1;
    let r = i
        .scsi(
            0,
            &test_support::scsi::read10(last, 1),
            &[],
            512,
            task_attr::SIMPLE,
        )
        .expect("transport");
    assert_eq!(r.status, 0x02, "{r:?}");
    let line = log.until("for the backing store error", |l| {
        l.contains("the backing store ends before it")
    });
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&format!("target={IQN}")), "{line}");
    assert!(line.contains(&format!("initiator={INITIATOR}")), "{line}");
    d.stop();
}

#[test]
fn root_trace_level_reads_as_scst_and_refuses_unknown_tokens() {
    let fx = fileio_fixture(1 << 20, "");
    let d = Daemon::start(&fx.conf);
    let out = admin_ok(&d, &["-list_scst_attr"]);
    assert!(out.contains("trace_level"), "{out}");
    let bad = common::admin(
        &d,
        &["-set_scst_attr", "-attributes", "trace_level=add nosuch"],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("unknown token 'nosuch'"), "{err}");
    admin_ok(&d, &["-set_scst_attr", "-attributes", "trace_level=add pr"]);
    let out = admin_ok(&d, &["-list_scst_attr"]);
    assert!(out.contains("pr"), "{out}");
    d.stop();
}

#[test]
fn log_level_is_the_start_value_until_the_root_mask_changes() {
    let fx = fileio_fixture(1 << 20, "");
    let d = Daemon::start_with(
        &fx.conf,
        &[
            std::ffi::OsStr::new("--log-level"),
            "info,scst_mgmt=warn".as_ref(),
        ],
    );
    // The device of the configuration was added without a line from scst_mgmt.
    assert!(
        !d.startup_log
            .iter()
            .any(|l| l.contains("device disk1 added")),
        "{:#?}",
        d.startup_log
    );
    let mut log = Log {
        d: &d,
        lines: Vec::new(),
    };
    admin_ok(&d, &["-open_dev", "n1", "-handler", "vdisk_nullio"]);
    // `mgmt_dbg` on the root raises the management crate over the start value.
    admin_ok(
        &d,
        &["-set_scst_attr", "-attributes", "trace_level=add mgmt_dbg"],
    );
    log.until("for the root's new filter", |l| {
        l.contains("log filter now") && l.contains("scst_mgmt=debug")
    });
    assert!(!log.lines.iter().any(|l| l.contains("device n1 added")));
    admin_ok(&d, &["-open_dev", "n2", "-handler", "vdisk_nullio"]);
    let added = log.until("for the second device", |l| l.contains("device n2 added"));
    assert!(added.contains("scst_mgmt"), "{added}");
    d.stop();
}
