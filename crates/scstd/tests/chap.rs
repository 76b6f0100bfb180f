//! Login security against a real scstd (docs/scst-reference.md 6.4-6.6): CHAP with target and
//! driver accounts, mutual CHAP, secret length checks, `allowed_portal`,
//! `per_portal_acl` and `redirect` on IPv4 and IPv6 portals, MaxSessions under
//! concurrent logins, and `--user`/`--group` privilege dropping.

mod common;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{admin_ok, Daemon, INITIATOR, IQN};
use test_support::iscsi_wire::chap::ChapAlgorithm;
use test_support::{Chap, Initiator, InitiatorError, LoginOptions};

/// A target with CHAP but no OutgoingUser.
const IQN_ONEWAY: &str = "iqn.2026-11.rs.scst:oneway";
/// A target without accounts.
const IQN_OPEN: &str = "iqn.2026-11.rs.scst:open";

const JOE: (&str, &str) = ("joe", "secret123456");
const ANN: (&str, &str) = ("ann", "ann-secret-0987654");
const TGT: (&str, &str) = ("tgtuser", "target-secret-42");
const DISCO: (&str, &str) = ("disco", "discovery-secret-1");

const AUTH_FAILURE: (u8, u8) = (2, 1);

fn write_conf(dir: &Path, targets: &str, driver_attrs: &str) -> std::path::PathBuf {
    let conf = dir.join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE null1 {{\n\t\tsize_mb 8\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n{driver_attrs}{targets}}}\n"
        ),
    )
    .expect("config");
    conf
}

fn target(name: &str, attrs: &str) -> String {
    format!("\tTARGET {name} {{\n{attrs}\t\tLUN 0 null1\n\t\tenabled 1\n\t}}\n")
}

/// The daemon for the CHAP tests: IQN with two accounts and an OutgoingUser,
/// IQN_ONEWAY with one account, IQN_OPEN without, and a driver-level account for
/// discovery.
fn chap_daemon() -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let targets = [
        target(
            IQN,
            &format!(
                "\t\tIncomingUser \"{} {}\"\n\t\tIncomingUser \"{} {}\"\n\t\tOutgoingUser \"{} {}\"\n",
                JOE.0, JOE.1, ANN.0, ANN.1, TGT.0, TGT.1
            ),
        ),
        target(
            IQN_ONEWAY,
            &format!("\t\tIncomingUser \"{} {}\"\n", JOE.0, JOE.1),
        ),
        target(IQN_OPEN, ""),
    ]
    .concat();
    let driver = format!("\tIncomingUser \"{} {}\"\n", DISCO.0, DISCO.1);
    let conf = write_conf(dir.path(), &targets, &driver);
    let d = Daemon::start(&conf);
    (dir, d)
}

fn login(addr: SocketAddr, target: &str, chap: Option<Chap>) -> Result<Initiator, InitiatorError> {
    let mut ini = Initiator::connect(addr)?;
    ini.set_chap(chap);
    ini.login(INITIATOR, target, &LoginOptions::default())?;
    Ok(ini)
}

/// TEST UNIT READY until good: a new session first reports POWER ON (29/00).
fn ready(ini: &mut Initiator) {
    for _ in 0..3 {
        if ini.test_unit_ready(0).unwrap().is_good() {
            return;
        }
    }
    panic!("LUN 0 never became ready");
}

fn assert_status(r: Result<Initiator, InitiatorError>, want: (u8, u8), what: &str) {
    match r {
        Err(InitiatorError::LoginFailed { class, detail }) => {
            assert_eq!((class, detail), want, "{what}")
        }
        Err(e) => panic!("{what}: expected login status {want:?}, got {e}"),
        Ok(_) => panic!("{what}: login succeeded"),
    }
}

/// Every algorithm: the right secret gets a working session, a wrong one is refused
/// with Authentication failure, and the target picks the initiator's first choice.
#[test]
fn one_way_chap_each_algorithm() {
    let (_dir, d) = chap_daemon();
    for alg in ChapAlgorithm::ALL {
        let mut ini = login(d.addr, IQN, Some(Chap::new(JOE.0, JOE.1).algorithm(alg)))
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        let chosen = ini
            .login_keys()
            .iter()
            .find(|(k, _)| k == "CHAP_A")
            .map(|(_, v)| v.clone());
        assert_eq!(chosen, Some(alg.code().to_string()));
        ready(&mut ini);
        ini.logout().unwrap();

        let wrong = Chap::new(JOE.0, "secret123457").algorithm(alg);
        assert_status(
            login(d.addr, IQN, Some(wrong)),
            AUTH_FAILURE,
            "wrong secret",
        );
    }
    // Both accounts are valid; the offer order decides the algorithm.
    let mut c = Chap::new(ANN.0, ANN.1);
    c.algorithms = vec![ChapAlgorithm::Sha1, ChapAlgorithm::Sha3_256];
    let ini = login(d.addr, IQN, Some(c)).unwrap();
    assert!(ini.login_keys().contains(&("CHAP_A".into(), "6".into())));
    // Another account's secret does not do.
    assert_status(
        login(d.addr, IQN, Some(Chap::new(ANN.0, JOE.1))),
        AUTH_FAILURE,
        "ann with joe's secret",
    );
}

#[test]
fn wrong_user_and_no_chap_are_refused() {
    let (_dir, d) = chap_daemon();
    assert_status(
        login(d.addr, IQN, Some(Chap::new("bob", JOE.1))),
        AUTH_FAILURE,
        "unknown user",
    );
    assert_status(login(d.addr, IQN, None), AUTH_FAILURE, "AuthMethod=None");
    // An account of another target is not valid here.
    assert_status(
        login(d.addr, IQN_ONEWAY, Some(Chap::new(ANN.0, ANN.1))),
        AUTH_FAILURE,
        "ann on the one-way target",
    );
    // Skipping the security stage is not a way around CHAP.
    use test_support::iscsi_wire::{encode_text, pdu, Stage};
    let mut ini = Initiator::connect(d.addr).unwrap();
    let text = encode_text(&[
        ("InitiatorName".to_string(), INITIATOR.to_string()),
        ("TargetName".to_string(), IQN.to_string()),
    ]);
    let b = pdu::login_request(&pdu::LoginRequest {
        transit: true,
        cont: false,
        csg: Stage::LoginOperational,
        nsg: Stage::FullFeature,
        isid: [0x80, 0, 0, 0, 0, 9],
        tsih: 0,
        itt: 1,
        cid: 1,
        cmd_sn: 1,
        exp_stat_sn: 0,
        data_len: text.len() as u32,
    });
    ini.send_pdu(&b, &text).unwrap();
    let resp = ini.recv_pdu(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (resp.bhs.status_class(), resp.bhs.status_detail()),
        AUTH_FAILURE
    );
    // Failed logins are logged with the initiator and its address, never the secret.
    std::thread::sleep(Duration::from_millis(200));
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains(INITIATOR)
            && l.contains("127.0.0.1:")
            && l.contains("bob")),
        "{log}"
    );
    assert!(!log.contains(JOE.1) && !log.contains(ANN.1), "{log}");
}

#[test]
fn target_without_accounts_answers_none() {
    let (_dir, d) = chap_daemon();
    let mut ini = login(d.addr, IQN_OPEN, None).unwrap();
    ready(&mut ini);
    // An initiator offering only CHAP is told None and gets in.
    let mut c = Chap::new(JOE.0, JOE.1);
    c.auth_method = "CHAP".into();
    let ini = login(d.addr, IQN_OPEN, Some(c)).unwrap();
    assert!(ini
        .login_keys()
        .contains(&("AuthMethod".into(), "None".into())));
}

#[test]
fn mutual_chap() {
    let (_dir, d) = chap_daemon();
    for alg in ChapAlgorithm::ALL {
        let c = Chap::new(JOE.0, JOE.1).algorithm(alg).mutual(TGT.0, TGT.1);
        let mut ini = login(d.addr, IQN, Some(c)).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert!(ini.login_keys().contains(&("CHAP_N".into(), TGT.0.into())));
        ready(&mut ini);
    }
    // The initiator really checks the target's answer: expecting another secret fails.
    let c = Chap::new(JOE.0, JOE.1).mutual(TGT.0, "not-the-target-secret");
    match login(d.addr, IQN, Some(c)) {
        Err(InitiatorError::Protocol(m)) => assert!(m.contains("mutual CHAP"), "{m}"),
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("a wrong target secret was accepted"),
    }
    // No OutgoingUser on the target: mutual CHAP cannot be answered.
    let c = Chap::new(JOE.0, JOE.1).mutual(TGT.0, TGT.1);
    assert_status(
        login(d.addr, IQN_ONEWAY, Some(c)),
        AUTH_FAILURE,
        "no OutgoingUser",
    );
    // Reflection: our own challenge sent back is refused.
    let c = Chap::new(JOE.0, JOE.1).mutual(TGT.0, TGT.1).reflecting();
    assert_status(
        login(d.addr, IQN, Some(c)),
        AUTH_FAILURE,
        "reflected challenge",
    );
}

#[test]
fn discovery_chap_uses_driver_accounts() {
    let (_dir, d) = chap_daemon();
    let disco = |chap: Option<Chap>| -> Result<Initiator, InitiatorError> {
        let mut ini = Initiator::connect(d.addr)?;
        ini.set_chap(chap);
        ini.login_discovery(INITIATOR)?;
        Ok(ini)
    };
    assert_status(disco(None), AUTH_FAILURE, "discovery without CHAP");
    assert_status(
        disco(Some(Chap::new(JOE.0, JOE.1))),
        AUTH_FAILURE,
        "a target account on discovery",
    );
    let mut ini = disco(Some(Chap::new(DISCO.0, DISCO.1))).unwrap();
    let names: Vec<String> = ini
        .send_targets("All")
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for t in [IQN, IQN_ONEWAY, IQN_OPEN] {
        assert!(names.iter().any(|n| n == t), "{t} missing from {names:?}");
    }
    // The driver account is not a target account.
    assert_status(
        login(d.addr, IQN_ONEWAY, Some(Chap::new(DISCO.0, DISCO.1))),
        AUTH_FAILURE,
        "discovery account on a target",
    );
}

/// Runs scstd on `conf` expecting it to refuse to start; returns its stderr.
fn refused(conf: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_scstd"))
        .arg("--config")
        .arg(conf)
        .args(["--listen", "127.0.0.1:0", "--mgmt-socket"])
        .arg(conf.with_file_name("scstd.sock"))
        .args(extra)
        .output()
        .expect("run scstd");
    assert!(!out.status.success(), "scstd accepted {}", conf.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn short_secrets_are_refused_in_config() {
    let dir = tempfile::tempdir().unwrap();
    // Target level: line 9 of the file.
    let conf = write_conf(
        dir.path(),
        &target(IQN, "\t\tIncomingUser \"joe short\"\n"),
        "",
    );
    let err = refused(&conf, &[]);
    assert!(
        err.contains("line 9") && err.contains("IncomingUser") && err.contains("12"),
        "{err}"
    );
    // Driver level, OutgoingUser.
    let conf = write_conf(
        dir.path(),
        &target(IQN, ""),
        "\tOutgoingUser \"tgt 12345678901\"\n",
    );
    let err = refused(&conf, &[]);
    assert!(
        err.contains("line 8") && err.contains("OutgoingUser") && err.contains("12"),
        "{err}"
    );
}

/// Reads the daemon's log until a line with `needle` shows up.
fn wait_log(d: &Daemon, acc: &mut String, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        acc.push_str(&d.log());
        acc.push('\n');
        if acc.contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// `allowed_portal` restricts where a target is shown and where it can be logged in
/// to; SendTargets gives IPv6 portals as `[addr]:port,1`.
#[test]
fn allowed_portal_on_ipv4_and_ipv6_portals() {
    assert!(
        ipv6_loopback(),
        "this machine has no IPv6 loopback (::1): the portal test needs it"
    );
    const V4: &str = "iqn.2026-11.rs.scst:v4only";
    const V6: &str = "iqn.2026-11.rs.scst:v6only";
    const HIDDEN: &str = "iqn.2026-11.rs.scst:hidden";
    let dir = tempfile::tempdir().unwrap();
    let targets = [
        target(V4, "\t\tallowed_portal 127.0.0.*\n"),
        target(V6, "\t\tallowed_portal ::1\n"),
        target(HIDDEN, "\t\tallowed_portal !*\n"),
        // Negation alone: everywhere but IPv4 loopback.
        target(IQN_OPEN, "\t\tallowed_portal !127.*\n"),
        target(IQN, ""),
    ]
    .concat();
    let conf = write_conf(dir.path(), &targets, "");
    let d = Daemon::start_with(&conf, &[OsStr::new("--listen"), OsStr::new("[::1]:0")]);
    let (v4, v6) = (d.addr, v6_portal(&d));

    let discover = |addr: SocketAddr| {
        let mut ini = Initiator::connect(addr).unwrap();
        ini.login_discovery(INITIATOR).unwrap();
        let mut st = ini.send_targets("All").unwrap();
        st.sort();
        st
    };
    let a4 = format!("127.0.0.1:{},1", v4.port());
    let a6 = format!("[::1]:{},1", v6.port());
    assert_eq!(
        discover(v4),
        vec![
            (IQN.to_string(), vec![a4.clone()]),
            (V4.to_string(), vec![a4])
        ]
    );
    assert_eq!(
        discover(v6),
        vec![
            (IQN_OPEN.to_string(), vec![a6.clone()]),
            (IQN.to_string(), vec![a6.clone()]),
            (V6.to_string(), vec![a6]),
        ]
    );

    for (addr, t, ok) in [
        (v4, V4, true),
        (v6, V4, false),
        (v6, V6, true),
        (v4, V6, false),
        (v4, HIDDEN, false),
        (v6, HIDDEN, false),
        (v4, IQN_OPEN, false),
        (v6, IQN_OPEN, true),
        (v6, IQN, true),
    ] {
        let r = login(addr, t, None);
        if ok {
            let mut ini = r.unwrap_or_else(|e| panic!("{t} via {addr}: {e}"));
            ready(&mut ini);
        } else {
            assert_status(r, (2, 3), &format!("{t} via {addr}"));
        }
    }
}

/// The IPv6 portal a daemon started with `--listen [::1]:0` listens on.
fn v6_portal(d: &Daemon) -> SocketAddr {
    let mut log = String::new();
    assert!(wait_log(d, &mut log, "portal listening on [::1]:"), "{log}");
    log.split("portal listening on ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next())
        .find(|s| s.starts_with('['))
        .unwrap()
        .parse()
        .unwrap()
}

/// `per_portal_acl 1`: the ACL sees `<iqn>#<portal>`, so the same initiator gets one
/// LUN set through the IPv4 portal, another through the IPv6 one, and none (target
/// hidden, login refused) where no group names the portal.
#[test]
fn per_portal_acl_binds_each_portal_to_its_group() {
    assert!(
        ipv6_loopback(),
        "this machine has no IPv6 loopback (::1): the portal test needs it"
    );
    const PPA: &str = "iqn.2026-11.rs.scst:perportal";
    const OTHER: &str = "iqn.2026-11.rs.scst:someone-else";
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("scst.conf");
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE null1 {{\n\t}}\n\tDEVICE null2 {{\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {PPA} {{\n\t\tper_portal_acl 1\n\
             \t\tGROUP v4 {{\n\t\t\tLUN 0 null1\n\t\t\tINITIATOR \"{INITIATOR}#127.0.0.1\"\n\t\t}}\n\
             \t\tGROUP v6 {{\n\t\t\tLUN 0 null1\n\t\t\tLUN 1 null2\n\t\t\tINITIATOR \"*#::1\"\n\t\t}}\n\
             \t\tenabled 1\n\t}}\n}}\n"
        ),
    )
    .unwrap();
    let d = Daemon::start_with(&conf, &[OsStr::new("--listen"), OsStr::new("[::1]:0")]);
    let (v4, v6) = (d.addr, v6_portal(&d));

    let discover = |addr: SocketAddr, who: &str| {
        let mut ini = Initiator::connect(addr).unwrap();
        ini.login_discovery(who).unwrap();
        ini.send_targets("All").unwrap()
    };
    assert_eq!(discover(v4, INITIATOR).len(), 1);
    assert_eq!(discover(v6, INITIATOR).len(), 1);
    assert_eq!(discover(v6, OTHER).len(), 1, "*#::1 admits anyone on ::1");
    assert!(
        discover(v4, OTHER).is_empty(),
        "no group names OTHER on 127.0.0.1"
    );

    let luns = |addr: SocketAddr, who: &str| {
        let mut ini = Initiator::connect(addr).unwrap();
        ini.login(who, PPA, &LoginOptions::default()).unwrap();
        ready(&mut ini);
        let r = ini.report_luns().unwrap();
        let data = r.good().unwrap().data;
        let n = u32::from_be_bytes(data[..4].try_into().unwrap()) / 8;
        (ini, n)
    };
    let (_a, n4) = luns(v4, INITIATOR);
    let (_b, n6) = luns(v6, INITIATOR);
    assert_eq!((n4, n6), (1, 2));
    let mut ini = Initiator::connect(v4).unwrap();
    assert_status(
        ini.login(OTHER, PPA, &LoginOptions::default()).map(|_| ini),
        (2, 3),
        "OTHER via 127.0.0.1",
    );

    // The sessions are registered (and shown) under the per-portal names.
    let sessions = admin_ok(&d, &["-list_sessions"]);
    assert!(
        sessions.contains(&format!("{INITIATOR}#127.0.0.1")),
        "{sessions}"
    );
    assert!(sessions.contains(&format!("{INITIATOR}#::1")), "{sessions}");
}

/// `redirect`: logins are answered "target moved" with the new address; libiscsi
/// follows it to the other daemon, and an empty value ends the redirection.
#[test]
fn redirect_sends_logins_to_the_other_portal() {
    const MOVED: &str = "iqn.2026-11.rs.scst:moved";
    let dir_b = tempfile::tempdir().unwrap();
    let conf_b = dir_b.path().join("scst.conf");
    std::fs::write(
        &conf_b,
        format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE there {{\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {MOVED} {{\n\
             \t\tLUN 0 there\n\t\tenabled 1\n\t}}\n}}\n"
        ),
    )
    .unwrap();
    let b = Daemon::start(&conf_b);
    let dir_a = tempfile::tempdir().unwrap();
    let conf_a = dir_a.path().join("scst.conf");
    std::fs::write(
        &conf_a,
        format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE here {{\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {MOVED} {{\n\
             \t\tredirect \"127.0.0.1:{} temp\"\n\t\tLUN 0 here\n\t\tenabled 1\n\t}}\n}}\n",
            b.addr.port()
        ),
    )
    .unwrap();
    let a = Daemon::start(&conf_a);

    let mut ini = Initiator::connect(a.addr).unwrap();
    assert_status(
        ini.login(INITIATOR, MOVED, &LoginOptions::default())
            .map(|_| ini),
        (1, 1),
        "login to the redirected target",
    );
    let product = |d: &Daemon| {
        let url = format!("iscsi://127.0.0.1:{}/{MOVED}/0", d.addr.port());
        let out = Command::new("iscsi-inq")
            .args(["-i", INITIATOR, &url])
            .output()
            .expect("iscsi-inq (libiscsi-bin) must be installed; scripts/test installs it");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "iscsi-inq {url}: {text}");
        text.lines()
            .find_map(|l| l.trim().strip_prefix("Product:"))
            .unwrap_or_else(|| panic!("no product in {text}"))
            .trim()
            .to_string()
    };
    assert_eq!(product(&a), "there", "libiscsi follows the redirection");

    admin_ok(
        &a,
        &[
            "-set_tgt_attr",
            MOVED,
            "-driver",
            "iscsi",
            "-attributes",
            "redirect=",
            "-noprompt",
        ],
    );
    assert_eq!(product(&a), "here");
    // Malformed values are refused, naming the attribute.
    let out = common::admin(
        &a,
        &[
            "-set_tgt_attr",
            MOVED,
            "-driver",
            "iscsi",
            "-attributes",
            "redirect=somewhere",
            "-noprompt",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("redirect"));
}

/// MaxSessions holds under concurrent logins: a slot is taken at the first login
/// request, so of many simultaneous logins exactly MaxSessions succeed.
#[test]
fn max_sessions_holds_under_concurrent_logins() {
    const LIMITED: &str = "iqn.2026-11.rs.scst:limited";
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(dir.path(), &target(LIMITED, "\t\tMaxSessions 2\n"), "");
    let d = Daemon::start(&conf);
    let addr = d.addr;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let results: Vec<Result<Initiator, InitiatorError>> = (0..8)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut ini = Initiator::connect(addr)?;
                barrier.wait();
                ini.login(
                    &format!("{INITIATOR}-{i}"),
                    LIMITED,
                    &LoginOptions::default(),
                )?;
                Ok(ini)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 2, "exactly MaxSessions logins succeed");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    InitiatorError::LoginFailed {
                        class: 3,
                        detail: 2
                    }
                ),
                "{e}"
            );
        }
    }
    // Ending a session frees its slot.
    drop(results);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match login(addr, LIMITED, None) {
            Ok(mut ini) => {
                ready(&mut ini);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for a free slot: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("no slot freed: {e}"),
        }
    }
}

fn status_ids(pid: u32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// `--user nobody`: the daemon serves (portals, devices opened before) as nobody.
/// The tests run as root; as another user the switch itself would fail.
#[test]
fn drops_privileges_with_user_option() {
    // SAFETY: getuid has no preconditions.
    assert_eq!(unsafe { libc::getuid() }, 0, "this test must run as root");
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(dir.path(), &target(IQN_OPEN, ""), "");
    let d = Daemon::start_with(&conf, &[OsStr::new("--user"), OsStr::new("nobody")]);
    let mut log = String::new();
    assert!(wait_log(&d, &mut log, "running as uid"), "{log}");
    let pid = d.pid().unwrap();
    // nobody's uid and primary group from the passwd database.
    let pw = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = pw.lines().find(|l| l.starts_with("nobody:")).unwrap();
    let f: Vec<&str> = line.split(':').collect();
    let (uid, gid): (u32, u32) = (f[2].parse().unwrap(), f[3].parse().unwrap());
    assert_eq!(status_ids(pid, "Uid:"), [uid; 4]);
    assert_eq!(status_ids(pid, "Gid:"), [gid; 4]);
    assert_eq!(status_ids(pid, "Groups:"), [gid]);
    let mut ini = login(d.addr, IQN_OPEN, None).unwrap();
    ready(&mut ini);
    ini.read10(0, 0, 1, 512).unwrap().good().unwrap();

    // Unknown names fail before anything is bound.
    let err = refused(&conf, &["--user", "no-such-user-xyz"]);
    assert!(
        err.contains("--user no-such-user-xyz: no such user"),
        "{err}"
    );
    let err = refused(&conf, &["--group", "no-such-group-xyz"]);
    assert!(err.contains("no such group"), "{err}");
}

/// Accounts added through the management tree go through the same checks and apply
/// to the next login.
#[test]
fn accounts_from_the_management_tree() {
    let (_dir, d) = chap_daemon();
    let mut c = scst_mgmt::Client::connect(&d.mgmt_socket).unwrap();
    let mgmt = "targets/iscsi/mgmt";
    let e = c
        .write(
            mgmt,
            &format!("add_target_attribute {IQN_ONEWAY} IncomingUser bob short"),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("IncomingUser") && e.contains("12"), "{e}");
    assert!(!e.contains("short"), "the secret is echoed: {e}");
    let e = c
        .write(mgmt, "add_attribute OutgoingUser tgt 12345678901")
        .unwrap_err()
        .to_string();
    assert!(e.contains("OutgoingUser") && e.contains("12"), "{e}");

    let bob = Chap::new("bob", "bob-secret-4711");
    assert_status(
        login(d.addr, IQN_ONEWAY, Some(bob.clone())),
        AUTH_FAILURE,
        "bob before",
    );
    c.write(
        mgmt,
        &format!("add_target_attribute {IQN_ONEWAY} IncomingUser bob bob-secret-4711"),
    )
    .unwrap();
    let mut ini = login(d.addr, IQN_ONEWAY, Some(bob)).unwrap();
    ready(&mut ini);
    // The target that had no accounts starts requiring CHAP once it has one.
    c.write(
        mgmt,
        &format!("add_target_attribute {IQN_OPEN} IncomingUser bob bob-secret-4711"),
    )
    .unwrap();
    assert_status(
        login(d.addr, IQN_OPEN, None),
        AUTH_FAILURE,
        "open target with an account",
    );
}
