//! The Prometheus endpoint (`--metrics-listen ADDR:PORT`): `GET /metrics` answers the
//! core's counters in the text exposition format 0.0.4, summed when scraped from what
//! each I_T_L nexus recorded (docs/management.md, "Counters and latency").
//!
//! A small HTTP/1.1 responder, one request per connection: a scrape costs the data
//! path nothing but the reads of its counters. A hostile or slow client cannot hold
//! more than [`MAX_CONNECTIONS`] connections, [`MAX_REQUEST`] bytes or
//! [`REQUEST_TIMEOUT`] of the daemon's time.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use scst_core::latency::{self, LatencySnapshot};
use scst_core::stats::{Direction, IoSnapshot};
use scst_core::Scst;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 8;
/// The request head (request line and headers) may not be longer.
pub const MAX_REQUEST: usize = 8192;
/// Time a client has to send its request, and then to take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve scrapes on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, scst: Arc<Scst>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, mostly: wait rather than spin.
                log::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::debug!("metrics endpoint: {peer} refused, {MAX_CONNECTIONS} connections open");
            continue;
        };
        let scst = scst.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = answer(stream, &scst).await {
                log::debug!("metrics endpoint: {peer}: {e}");
            }
        });
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics,
    /// A well-formed request for something else.
    Other,
    /// Not an HTTP/1.x request head.
    Bad,
}

async fn answer(mut stream: TcpStream, scst: &Scst) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await;
    let request = match head {
        Ok(Ok(Some(head))) => parse_request(&head),
        Ok(Ok(None)) => Request::Bad,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    };
    let response = match request {
        Request::Metrics => response(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &render(scst),
        ),
        Request::Other => response("404 Not Found", "text/plain", "only /metrics is here\n"),
        Request::Bad => response("400 Bad Request", "text/plain", "bad request\n"),
    };
    tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(response.as_bytes()))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.shutdown().await
}

/// The request head, up to the blank line; None when it is longer than
/// [`MAX_REQUEST`] or the client closed before finishing it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Ok(None);
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        len += n;
        if let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Some(buf));
        }
    }
}

fn parse_request(head: &[u8]) -> Request {
    let Ok(head) = std::str::from_utf8(head) else {
        return Request::Bad;
    };
    let line = head.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") || method.is_empty() || target.is_empty() {
        return Request::Bad;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if method == "GET" && path == "/metrics" {
        Request::Metrics
    } else {
        Request::Other
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A label value in the exposition format: backslash, double quote and line feed
/// escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The text of a scrape, built family by family (each family's samples together,
/// after its HELP and TYPE lines).
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// The three families of an [`IoSnapshot`] for each `(labels, snapshot)`.
    fn io(&mut self, prefix: &str, what: &str, rows: &[(Vec<(&str, &str)>, IoSnapshot)]) {
        let cmds = format!("{prefix}_commands_total");
        self.family(
            &cmds,
            "counter",
            &format!("Commands completed {what}, by data direction."),
        );
        for (labels, io) in rows {
            for d in Direction::ALL {
                self.sample(
                    &cmds,
                    &with(labels, "direction", d.name()),
                    io.cmds[d.index()],
                );
            }
        }
        let bytes = format!("{prefix}_bytes_total");
        self.family(
            &bytes,
            "counter",
            &format!(
                "Data bytes of the commands completed {what} (their expected transfer \
                 lengths), by data direction."
            ),
        );
        for (labels, io) in rows {
            for d in Direction::ALL {
                if d != Direction::None {
                    self.sample(
                        &bytes,
                        &with(labels, "direction", d.name()),
                        io.bytes[d.index()],
                    );
                }
            }
        }
        let errors = format!("{prefix}_errors_total");
        self.family(
            &errors,
            "counter",
            &format!("Commands completed {what} with a status other than GOOD."),
        );
        for (labels, io) in rows {
            self.sample(&errors, labels, io.errors);
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], l: &LatencySnapshot) {
        for (h, dir) in latency::HIST_DIRECTIONS.iter().enumerate() {
            let labels = with(labels, "direction", dir);
            let bucket = format!("{name}_bucket");
            let mut cumulative = 0;
            for k in 0..latency::BUCKETS {
                cumulative += l.hist[h][k];
                let le = latency::bucket_bound_seconds(k).to_string();
                self.sample(&bucket, &with(&labels, "le", &le), cumulative);
            }
            cumulative += l.hist[h][latency::BUCKETS];
            self.sample(&bucket, &with(&labels, "le", "+Inf"), cumulative);
            self.sample(
                &format!("{name}_sum"),
                &labels,
                l.hist_sum_ns[h] as f64 / 1e9,
            );
            self.sample(&format!("{name}_count"), &labels, cumulative);
        }
    }
}

fn with<'a>(labels: &[(&'a str, &'a str)], k: &'a str, v: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut v2 = labels.to_vec();
    v2.push((k, v));
    v2
}

/// One I_T_L nexus as scraped.
struct LunRow {
    target: String,
    session: String,
    initiator: String,
    lun: String,
    device: String,
    io: IoSnapshot,
    active: usize,
}

impl LunRow {
    fn labels(&self) -> Vec<(&str, &str)> {
        vec![
            ("target", &self.target),
            ("session", &self.session),
            ("initiator", &self.initiator),
            ("lun", &self.lun),
            ("device", &self.device),
        ]
    }
}

/// The scrape: targets, sessions, their LUNs, devices and the devices' latency.
pub fn render(scst: &Scst) -> String {
    let mut e = Exposition::default();
    e.family(
        "scst_measure_latency",
        "gauge",
        "Whether command latency is measured (root attribute measure_latency).",
    );
    e.sample(
        "scst_measure_latency",
        &[],
        u8::from(scst.measure_latency()),
    );

    let targets = scst.all_targets();
    let mut sessions = Vec::new();
    let mut luns = Vec::new();
    for t in &targets {
        for (name, s) in scst_mgmt::tree::session::names(t) {
            for td in &s.luns().entries {
                luns.push(LunRow {
                    target: t.name.clone(),
                    session: name.clone(),
                    initiator: s.initiator_name.clone(),
                    lun: td.lun.to_string(),
                    device: td.device.name().to_string(),
                    io: td.stats.io.snapshot(),
                    active: td.active_commands(),
                });
            }
            sessions.push((t.name.clone(), name, s));
        }
    }

    let rows: Vec<_> = targets
        .iter()
        .map(|t| (vec![("target", t.name.as_str())], t.io_totals()))
        .collect();
    e.io(
        "scst_target",
        "through the target (gone sessions included)",
        &rows,
    );

    e.family(
        "scst_session_commands",
        "gauge",
        "Commands the transport holds for the session now (SCST's commands).",
    );
    for (t, name, s) in &sessions {
        let labels = [
            ("target", t.as_str()),
            ("session", name.as_str()),
            ("initiator", s.initiator_name.as_str()),
        ];
        e.sample("scst_session_commands", &labels, s.stats.outstanding());
    }

    let rows: Vec<_> = luns.iter().map(|r| (r.labels(), r.io)).collect();
    e.io("scst_lun", "through the session's LUN", &rows);
    e.family(
        "scst_lun_active_commands",
        "gauge",
        "Commands of the session's LUN executing on its device now.",
    );
    for ((l, _), r) in rows.iter().zip(&luns) {
        e.sample("scst_lun_active_commands", l, r.active);
    }

    let devices = scst.devices();
    let rows: Vec<_> = devices
        .iter()
        .map(|d| (vec![("device", d.name())], d.io_totals()))
        .collect();
    e.io(
        "scst_device",
        "on the device (gone sessions included)",
        &rows,
    );

    let name = "scst_device_latency_seconds";
    e.family(
        name,
        "histogram",
        "Time from a command's receipt to its response, while measure_latency is 1.",
    );
    for d in &devices {
        e.histogram(name, &[("device", d.name())], &d.latency());
    }
    e.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_sorted_into_metrics_other_and_bad() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Request::Metrics
        );
        assert_eq!(
            parse_request(b"GET /metrics?x=1 HTTP/1.0"),
            Request::Metrics
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1"), Request::Other);
        assert_eq!(parse_request(b"POST /metrics HTTP/1.1"), Request::Other);
        assert_eq!(parse_request(b"GET /metrics"), Request::Bad);
        assert_eq!(parse_request(b"GET /metrics SPDY/3"), Request::Bad);
        assert_eq!(parse_request(b"GET  /metrics HTTP/1.1"), Request::Bad);
        assert_eq!(parse_request(&[0xff, 0xfe]), Request::Bad);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.family("m", "counter", "A test.");
        e.sample("m", &[("a", "x\"y\\z\nw"), ("b", "plain")], 3);
        assert_eq!(
            e.0,
            "# HELP m A test.\n# TYPE m counter\nm{a=\"x\\\"y\\\\z\\nw\",b=\"plain\"} 3\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let t = latency::LatencyTable::default();
        t.record(Direction::Read, 4096, Duration::from_micros(10));
        t.record(Direction::Read, 4096, Duration::from_micros(20));
        t.record(Direction::Read, 4096, Duration::from_secs(5));
        let mut e = Exposition::default();
        e.histogram("h", &[("device", "d")], &t.snapshot());
        let read: Vec<&str> =
            e.0.lines()
                .filter(|l| l.contains("direction=\"read\""))
                .collect();
        assert_eq!(
            read[0],
            "h_bucket{device=\"d\",direction=\"read\",le=\"0.000016\"} 1"
        );
        assert_eq!(
            read[1],
            "h_bucket{device=\"d\",direction=\"read\",le=\"0.000032\"} 2"
        );
        assert_eq!(
            read[latency::BUCKETS],
            "h_bucket{device=\"d\",direction=\"read\",le=\"+Inf\"} 3"
        );
        assert_eq!(
            read[latency::BUCKETS + 1],
            "h_sum{device=\"d\",direction=\"read\"} 5.00003"
        );
        assert_eq!(
            read[latency::BUCKETS + 2],
            "h_count{device=\"d\",direction=\"read\"} 3"
        );
    }

    #[test]
    fn a_scrape_of_an_idle_core_names_each_family_once() {
        let scst = Scst::new(1);
        let text = render(&scst);
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(types.len(), unique.len(), "{text}");
        assert!(text.contains("# TYPE scst_device_latency_seconds histogram"));
        assert!(text.contains("\nscst_measure_latency 0\n"));
    }
}
