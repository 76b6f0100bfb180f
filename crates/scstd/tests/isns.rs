//! The iSNS client against a real iSNS server (open-isns `isnsd`, Debian package
//! open-isns-server; `isnsadm` from open-isns-utils reads the server's database):
//! enabled targets and our portal are registered, and follow enable/disable/removal
//! through the management socket; with AccessControl the server's discovery domains
//! decide who may discover and log in.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use scst_mgmt::Client;
use test_support::{Initiator, LoginOptions};

const TA: &str = "iqn.2026-11.rs.scst:isns-a";
const TB: &str = "iqn.2026-11.rs.scst:isns-b";
const TC: &str = "iqn.2026-11.rs.scst:isns-c";
const EID: &str = "scstd-isns-test";
const DEADLINE: Duration = Duration::from_secs(30);
const PERIOD: u32 = 4;

/// Find an open-isns tool; a missing one fails the test, saying what to install.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: install it with 'apt-get install {package}' (scripts/test does)"
            )
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port()
}

/// A registered storage node: iSCSI name, node type, alias.
type Node = (String, String, String);

/// An isnsd on loopback with its own configuration, database and sockets.
struct Isnsd {
    child: Child,
    port: u16,
    client_conf: PathBuf,
    dir: tempfile::TempDir,
}

impl Isnsd {
    /// `default_dd`: put nodes that are in no discovery domain into a default one
    /// (everybody sees everybody), or not (nobody sees anybody until a DD says so).
    /// `period`: registrations not refreshed within this many seconds expire.
    fn start(default_dd: bool, period: u32) -> Isnsd {
        Isnsd::start_on(free_port(), default_dd, period)
    }

    fn start_on(port: u16, default_dd: bool, period: u32) -> Isnsd {
        let isnsd = tool("isnsd", "open-isns-server");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).expect("db dir");
        let conf = d.join("isnsd.conf");
        std::fs::write(
            &conf,
            format!(
                "SourceName = isns.test.server\nDatabase = {db}\nBindAddress = 127.0.0.1:{port}\n\
                 PIDFile = {pid}\nControlSocket = {ctl}\nSecurity = 0\nSLPRegister = 0\n\
                 DefaultDiscoveryDomain = {dd}\nRegistrationPeriod = {period}\n",
                db = d.join("db").display(),
                pid = d.join("isnsd.pid").display(),
                ctl = d.join("control").display(),
                dd = u8::from(default_dd),
            ),
        )
        .expect("isnsd config");
        let client_conf = d.join("isnsadm.conf");
        std::fs::write(
            &client_conf,
            format!(
                "SourceName = isns.test.admin\nServerAddress = 127.0.0.1:{port}\n\
                 ControlSocket = {ctl}\nSecurity = 0\n",
                ctl = d.join("control").display(),
            ),
        )
        .expect("isnsadm config");
        let log = std::fs::File::create(d.join("isnsd.log")).expect("log");
        let child = Command::new(isnsd)
            .arg("-c")
            .arg(&conf)
            .args(["-f", "-4"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn isnsd");
        let mut s = Isnsd {
            child,
            port,
            client_conf,
            dir,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("isnsd exited ({st}):\n{}", s.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "isnsd did not listen on {port}:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("isnsd.log")).unwrap_or_default()
    }

    /// Run isnsadm against this server; its output.
    fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(tool("isnsadm", "open-isns-utils"))
            .arg("-c")
            .arg(&self.client_conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run isnsadm");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Registered storage nodes.
    fn nodes(&self) -> Vec<Node> {
        let mut v: Vec<Node> = Vec::new();
        for line in self.admin(&["--list", "nodes"]).lines() {
            let Some((_, rhs)) = line.split_once(" : ") else {
                continue;
            };
            let Some((k, val)) = rhs.split_once(" = ") else {
                continue;
            };
            let val = val.trim().trim_matches('"').to_string();
            match k.trim() {
                "iSCSI name" => v.push((val, String::new(), String::new())),
                "iSCSI node type" => {
                    if let Some(n) = v.last_mut() {
                        n.1 = val;
                    }
                }
                "iSCSI alias" => {
                    if let Some(n) = v.last_mut() {
                        n.2 = val;
                    }
                }
                _ => {}
            }
        }
        v
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.nodes().into_iter().map(|n| n.0).collect();
        v.sort();
        v
    }

    /// Poll until `cond` holds for the node names, or fail with what was seen.
    fn wait_names(&self, what: &str, cond: impl Fn(&[String]) -> bool, d: &Daemon) {
        self.wait_nodes(
            what,
            |nodes| {
                let mut names: Vec<String> = nodes.iter().map(|n| n.0.clone()).collect();
                names.sort();
                cond(&names)
            },
            d,
        )
    }

    /// Poll until `cond` holds for the registered nodes, or fail with what was seen.
    fn wait_nodes(&self, what: &str, cond: impl Fn(&[Node]) -> bool, d: &Daemon) {
        let start = Instant::now();
        loop {
            let nodes = self.nodes();
            if cond(&nodes) {
                return;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "iSNS server never got to '{what}'; nodes: {nodes:?}\n--- scstd log:\n{}\n\
                     --- isnsd log (tail):\n{}",
                    d.log(),
                    tail(&self.log(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Isnsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn write_conf(dir: &Path, text: &str) -> PathBuf {
    let conf = dir.join("scst.conf");
    std::fs::write(&conf, text).expect("config");
    conf
}

fn has(names: &[String], n: &str) -> bool {
    names.iter().any(|x| x == n)
}

#[test]
fn targets_follow_enable_disable_and_removal() {
    // A short registration period: the registration must be kept alive.
    let isns = Isnsd::start(true, PERIOD);
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_conf(
        dir.path(),
        &format!(
            "TARGET_DRIVER iscsi {{\n\tenabled 1\n\tiSNSServer 127.0.0.1:{port}\n\
             \tisns_entity_name {EID}\n\
             \tTARGET {TA} {{\n\t\talias \"array-a\"\n\t\tenabled 1\n\t}}\n\
             \tTARGET {TB} {{\n\t\tenabled 0\n\t}}\n}}\n",
            port = isns.port
        ),
    );
    let mut d = Daemon::start(&conf);

    // The enabled target is registered, as a target, with its alias; the disabled one
    // is not.
    isns.wait_names("target A registered", |n| has(n, TA), &d);
    let nodes = isns.nodes();
    assert!(
        !has(&isns.names(), TB),
        "disabled target registered: {nodes:?}"
    );
    let a = nodes.iter().find(|n| n.0 == TA).unwrap();
    assert_eq!(a.1, "Target", "{nodes:?}");
    assert_eq!(a.2, "array-a", "{nodes:?}");
    // The entity under our name, with our portal (the ephemeral loopback port).
    let entities = isns.admin(&["--list", "entities"]);
    assert!(entities.contains(&format!("\"{EID}\"")), "{entities}");
    // Still there after three registration periods: scstd refreshes it in time.
    std::thread::sleep(Duration::from_secs(3 * u64::from(PERIOD)));
    assert!(has(&isns.names(), TA), "registration expired:\n{}", d.log());
    let portals = isns.admin(&["--list", "portals"]);
    assert!(
        portals.contains("127.0.0.1") && portals.contains(&format!("{}/tcp", d.addr.port())),
        "portal {} not registered:\n{portals}",
        d.addr
    );

    let mut c = Client::connect(&d.mgmt_socket).expect("mgmt connect");
    c.write(&format!("targets/iscsi/{TB}/enabled"), "1")
        .expect("enable B");
    isns.wait_names("target B registered", |n| has(n, TA) && has(n, TB), &d);

    // Alias changes are re-registered, including an alias removed.
    c.write(&format!("targets/iscsi/{TB}/alias"), "array-b")
        .expect("alias B");
    c.write(&format!("targets/iscsi/{TA}/alias"), "")
        .expect("clear alias A");
    let alias = |nodes: &[Node], t: &str| {
        nodes
            .iter()
            .find(|n| n.0 == t)
            .map(|n| n.2.clone())
            .unwrap_or_else(|| "(absent)".into())
    };
    isns.wait_nodes(
        "aliases updated",
        |n| alias(n, TA).is_empty() && alias(n, TB) == "array-b",
        &d,
    );

    c.write(&format!("targets/iscsi/{TA}/enabled"), "0")
        .expect("disable A");
    isns.wait_names("target A deregistered", |n| !has(n, TA) && has(n, TB), &d);

    c.write("targets/iscsi/mgmt", &format!("del_target {TB}"))
        .expect("del_target B");
    isns.wait_names("no targets", |n| n.is_empty(), &d);
    // With nothing to announce, the entity itself is gone too.
    let entities = isns.admin(&["--list", "entities"]);
    assert!(!entities.contains(&format!("\"{EID}\"")), "{entities}");

    // A target added and enabled at run time is registered anew.
    c.write("targets/iscsi/mgmt", &format!("add_target {TC}"))
        .expect("add_target C");
    c.write(&format!("targets/iscsi/{TC}/enabled"), "1")
        .expect("enable C");
    isns.wait_names("target C registered", |n| n == [TC.to_string()], &d);

    // Shutting down takes the registration off the server.
    assert!(d.is_running());
    let log_before_stop = d.log();
    assert_eq!(d.stop(), Some(0), "{log_before_stop}");
    let start = Instant::now();
    while !isns.names().is_empty() {
        assert!(
            start.elapsed() < DEADLINE,
            "still registered after shutdown: {:?}",
            isns.names()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn access_control_uses_discovery_domains() {
    const INI_OK: &str = "iqn.2026-11.rs.scst:isns-ini-ok";
    const INI_NO: &str = "iqn.2026-11.rs.scst:isns-ini-no";
    // No default discovery domain: nodes see each other only through a DD.
    let isns = Isnsd::start(false, 3600);
    for ini in [INI_OK, INI_NO] {
        let out = isns.admin(&["--register", &format!("initiator={ini}")]);
        assert!(out.contains("Success"), "registering {ini}: {out}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_conf(
        dir.path(),
        &format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE null1 {{\n\t\tsize_mb 16\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\
             \tiSNSServer \"127.0.0.1:{port} AccessControl\"\n\
             \tTARGET {TA} {{\n\t\tLUN 0 null1\n\t\tenabled 1\n\t}}\n}}\n",
            port = isns.port
        ),
    );
    let d = Daemon::start(&conf);
    // Outside every discovery domain, the target is invisible to isnsadm's queries as
    // well: scstd's log says when it has registered.
    let start = Instant::now();
    let mut log = String::new();
    while !log.contains("iSNS: registered entity") {
        assert!(start.elapsed() < DEADLINE, "no iSNS registration:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
        log.push_str(&d.log());
        log.push('\n');
    }

    let discover = |ini: &str| -> Vec<String> {
        let mut i = Initiator::connect(d.addr).expect("connect");
        i.set_timeout(Duration::from_secs(10));
        i.login_discovery(ini).expect("discovery login");
        let t = i.send_targets("All").expect("SendTargets");
        t.into_iter().map(|(n, _)| n).collect()
    };
    let login = |ini: &str| -> Result<(), (u8, u8)> {
        let mut i = Initiator::connect(d.addr).expect("connect");
        i.set_timeout(Duration::from_secs(10));
        match i.login(ini, TA, &LoginOptions::default()) {
            Ok(()) => Ok(()),
            Err(e) => Err(i
                .login_status()
                .unwrap_or_else(|| panic!("login failed without a status: {e}"))),
        }
    };

    // In no discovery domain with the target: hidden, and refused as "not found".
    assert!(discover(INI_OK).is_empty());
    assert_eq!(login(INI_OK), Err((2, 3)));

    let out = isns.admin(&[
        "--dd-register",
        "dd-name=isns-test",
        &format!("dd-member-name={TA}"),
        &format!("dd-member-name={INI_OK}"),
    ]);
    assert!(out.contains("Registered DD"), "dd-register: {out}");
    // The server tells the target of its new domain through the SCN port.
    let start = Instant::now();
    while !log.contains(&format!("iSNS: state change notification for {TA}")) {
        assert!(
            start.elapsed() < DEADLINE,
            "no SCN for {TA}:\n{log}\n--- isnsd log (tail):\n{}",
            tail(&isns.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
        log.push_str(&d.log());
        log.push('\n');
    }

    assert_eq!(discover(INI_OK), vec![TA.to_string()]);
    assert_eq!(login(INI_OK), Ok(()));
    // The other initiator is still outside the domain.
    assert!(discover(INI_NO).is_empty());
    assert_eq!(login(INI_NO), Err((2, 3)));
    // An initiator the server has never heard of is refused too.
    assert_eq!(login("iqn.2026-11.rs.scst:stranger"), Err((2, 3)));
}

#[test]
fn an_unreachable_server_delays_nothing() {
    // Nothing listens on this port until the server is started below.
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_conf(
        dir.path(),
        &format!(
            "HANDLER vdisk_nullio {{\n\tDEVICE null1 {{\n\t\tsize_mb 16\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tiSNSServer 127.0.0.1:{port}\n\
             \tTARGET {TA} {{\n\t\tLUN 0 null1\n\t\tenabled 1\n\t}}\n}}\n"
        ),
    );
    let d = Daemon::start(&conf);
    let start = Instant::now();
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    i.login("iqn.2026-11.rs.scst:isns-ini", TA, &LoginOptions::default())
        .expect("login while the iSNS server is down");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let mut log = String::new();
    while !log.contains("iSNS: cannot reach server") {
        assert!(start.elapsed() < DEADLINE, "no warning:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
        log.push_str(&d.log());
        log.push('\n');
    }
    // The server comes up: the retries find it.
    let isns = Isnsd::start_on(port, true, 3600);
    isns.wait_names("registered after the server came up", |n| has(n, TA), &d);
}

#[test]
fn a_restart_replaces_what_a_crashed_daemon_left() {
    let isns = Isnsd::start(true, 3600);
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = |b_enabled: u8| {
        write_conf(
            dir.path(),
            &format!(
                "TARGET_DRIVER iscsi {{\n\tenabled 1\n\tiSNSServer 127.0.0.1:{port}\n\
                 \tisns_entity_name {EID}\n\
                 \tTARGET {TA} {{\n\t\tenabled 1\n\t}}\n\
                 \tTARGET {TB} {{\n\t\tenabled {b_enabled}\n\t}}\n}}\n",
                port = isns.port
            ),
        )
    };
    let d = Daemon::start(&conf(1));
    isns.wait_names("both registered", |n| n == [TA, TB], &d);
    // No shutdown path runs: the registration stays behind.
    d.kill();
    assert_eq!(isns.names(), [TA, TB]);
    // Same entity, B now disabled: the first registration replaces the stale one.
    let d = Daemon::start(&conf(0));
    isns.wait_names("only A registered", |n| n == [TA], &d);
}
