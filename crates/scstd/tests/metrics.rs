//! The metrics endpoint end to end: scstd with `--metrics-listen`, a known workload from
//! the in-tree initiator, then Debian's Prometheus server scraping the endpoint; the
//! values its query API returns must be the workload's. Prometheus is installed with
//! apt-get when missing (as root); if it cannot be, the test fails.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fileio_fixture, Daemon, INITIATOR, IQN};
use test_support::{Initiator, LoginOptions};

const BS: u32 = 512;
/// The workload: READS reads and WRITES writes of BLOCKS blocks each, after the two
/// TEST UNIT READYs that clear the power-on unit attention (the first one fails).
const READS: u64 = 10;
const WRITES: u64 = 5;
const BLOCKS: u16 = 8;

/// scstd serving the fixture, measuring latency, with its metrics endpoint on an
/// ephemeral loopback port; returns the daemon and the endpoint's address.
fn start() -> (common::Fixture, Daemon, SocketAddr) {
    let fx = fileio_fixture(8 << 20, "");
    let conf = std::fs::read_to_string(&fx.conf).unwrap();
    std::fs::write(&fx.conf, format!("measure_latency 1\n{conf}")).unwrap();
    let d = Daemon::start_with(
        &fx.conf,
        &["--metrics-listen".as_ref(), "127.0.0.1:0".as_ref()],
    );
    let addr = d
        .startup_log
        .iter()
        .find_map(|l| l.split("metrics endpoint listening on http://").nth(1))
        .and_then(|a| a.trim().strip_suffix("/metrics")?.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {:?}", d.startup_log));
    (fx, d, addr)
}

/// Runs the workload and returns the initiator still logged in: per-LUN series exist
/// while the session does.
fn workload(d: &Daemon) -> Initiator {
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(10));
    i.login(INITIATOR, IQN, &LoginOptions::default())
        .expect("login");
    assert!(!i.test_unit_ready(0).unwrap().is_good(), "power-on UA");
    assert!(i.test_unit_ready(0).unwrap().is_good());
    let data = vec![0x5a; BLOCKS as usize * BS as usize];
    for n in 0..WRITES {
        assert!(i.write10(0, n as u32 * 64, &data, BS).unwrap().is_good());
    }
    for n in 0..READS {
        assert!(i.read10(0, n as u32 * 64, BLOCKS, BS).unwrap().is_good());
    }
    i
}

/// One HTTP/1.0 request; (status code, body).
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
}

#[test]
fn the_endpoint_answers_metrics_404_and_400() {
    let (_fx, d, addr) = start();
    let mut i = workload(&d);
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    let line = format!(
        "scst_lun_commands_total{{target=\"{IQN}\",session=\"{INITIATOR}\",\
         initiator=\"{INITIATOR}\",lun=\"0\",device=\"disk1\",direction=\"read\"}} {READS}"
    );
    assert!(body.lines().any(|l| l == line), "{line} not in\n{body}");
    assert!(body.contains(&format!(
        "scst_device_latency_seconds_count{{device=\"disk1\",direction=\"write\"}} {WRITES}\n"
    )));
    // The same counts in the management tree, which -list_sessions shows (without
    // the latency tables, as SCST's).
    let listed = common::admin_ok(&d, &["-list_sessions"]);
    assert!(
        listed.contains(&format!("lun0/read_cmd_count: {READS}")),
        "{listed}"
    );
    assert!(!listed.contains("latency"), "{listed}");
    assert_eq!(get(addr, "/").0, 404);
    assert_eq!(http(addr, b"POST /metrics HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(http(addr, b"\x16\x03\x01 hello\r\n\r\n").0, 400);
    // A head longer than the endpoint takes is refused, and the daemon goes on.
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10_000));
    assert_eq!(http(addr, long.as_bytes()).0, 400);
    // Once the session is gone its LUN series go, and the device and the target
    // keep its counts.
    i.logout().expect("logout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = get(addr, "/metrics").1;
        if !body.contains("scst_lun_commands_total{") || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!body.contains("scst_lun_commands_total{"), "{body}");
    for kept in [
        format!("scst_device_commands_total{{device=\"disk1\",direction=\"read\"}} {READS}\n"),
        format!("scst_target_commands_total{{target=\"{IQN}\",direction=\"write\"}} {WRITES}\n"),
        format!(
            "scst_device_latency_seconds_count{{device=\"disk1\",direction=\"read\"}} {READS}\n"
        ),
    ] {
        assert!(body.contains(&kept), "{kept} not in\n{body}");
    }
}

/// Install Debian's prometheus when missing (root only); fail if it is not there.
fn ensure_prometheus() {
    let present = || {
        Command::new("sh")
            .args(["-c", "command -v prometheus"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let _ = Command::new("sh")
            .args([
                "-c",
                "export DEBIAN_FRONTEND=noninteractive; \
                 apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 || \
                 { apt-get update >/dev/null 2>&1 && \
                   apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1; }",
            ])
            .status();
    }
    assert!(
        present(),
        "prometheus is missing and could not be installed: run 'apt-get install prometheus' as root"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: scstd\n    static_configs:\n\
                 \x20     - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus");
        Prometheus { child, addr }
    }

    /// The value of an instant query that selects one series, once Prometheus has it.
    fn query(&mut self, q: &str, deadline: Instant, log: &Path) -> f64 {
        let encoded: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        loop {
            if let Ok(None) = self.child.try_wait() {
            } else {
                panic!(
                    "prometheus exited: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if let Ok(mut s) = TcpStream::connect(self.addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let req = format!("GET /api/v1/query?query={encoded} HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                if s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut out).is_ok() {
                    if let Some(v) = single_value(&out) {
                        return v;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus has no value for {q}; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The sample value of a query answer with exactly one series:
/// `..."result":[{"metric":{...},"value":[<time>,"<value>"]}]...`.
fn single_value(answer: &str) -> Option<f64> {
    let body = answer.split_once("\r\n\r\n")?.1;
    if !body.contains("\"status\":\"success\"") || body.matches("\"value\":[").count() != 1 {
        return None;
    }
    let after = body.split("\"value\":[").nth(1)?;
    let v = after.split_once(",\"")?.1.split('"').next()?;
    v.parse().ok()
}

#[test]
fn prometheus_scrapes_the_workload() {
    ensure_prometheus();
    let (_fx, d, addr) = start();
    let _session = workload(&d);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("prometheus.log");
    let mut p = Prometheus::start(dir.path(), addr);
    let deadline = Instant::now() + Duration::from_secs(90);
    let bytes = (BLOCKS as u64 * BS as u64) as f64;
    let dev = "device=\"disk1\"";
    for (q, want) in [
        (
            format!("scst_lun_commands_total{{{dev},direction=\"read\"}}"),
            READS as f64,
        ),
        (
            format!("scst_lun_bytes_total{{{dev},direction=\"read\"}}"),
            READS as f64 * bytes,
        ),
        (
            format!("scst_lun_commands_total{{{dev},direction=\"write\"}}"),
            WRITES as f64,
        ),
        (
            format!("scst_lun_bytes_total{{{dev},direction=\"write\"}}"),
            WRITES as f64 * bytes,
        ),
        (
            format!("scst_lun_commands_total{{{dev},direction=\"none\"}}"),
            2.0,
        ),
        (format!("scst_lun_errors_total{{{dev}}}"), 1.0),
        (
            format!("scst_device_commands_total{{{dev},direction=\"read\"}}"),
            READS as f64,
        ),
        (
            format!("scst_target_bytes_total{{target=\"{IQN}\",direction=\"write\"}}"),
            WRITES as f64 * bytes,
        ),
        (
            format!("scst_device_latency_seconds_count{{{dev},direction=\"read\"}}"),
            READS as f64,
        ),
        (
            format!("scst_device_latency_seconds_count{{{dev},direction=\"write\"}}"),
            WRITES as f64,
        ),
        (
            format!("scst_device_latency_seconds_bucket{{{dev},direction=\"other\",le=\"+Inf\"}}"),
            2.0,
        ),
        ("scst_measure_latency".to_string(), 1.0),
    ] {
        assert_eq!(p.query(&q, deadline, &log), want, "{q}");
    }
    // Latency was measured: the reads took some time in all.
    let sum = p.query(
        &format!("scst_device_latency_seconds_sum{{{dev},direction=\"read\"}}"),
        deadline,
        &log,
    );
    assert!(sum > 0.0, "read latency sum {sum}");
    drop(d);
}
