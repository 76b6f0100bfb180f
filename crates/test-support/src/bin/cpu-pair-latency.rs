//! Cache-line round trip between two CPUs, sampled at an interval, for
//! scripts/bench-report.
//!
//! On a virtual machine the hypervisor decides which physical cores run the vCPUs,
//! and it may move them while a benchmark runs. When it places two vCPUs on core
//! complexes that do not share a last-level cache, every cache line one of them
//! writes and the other reads costs several times more. A loopback benchmark whose
//! client and target run on those two vCPUs then slows down for as long as that
//! placement lasts, whichever target it measures. This probe lets the report label
//! each second with the placement it ran on.
//!
//! usage: `cpu-pair-latency [--cpus A,B] [--window-ms N] [--interval-ms N] [--count N]`
//!
//! Every interval (default 1000 ms) it bounces one cache line between CPU A and CPU
//! B (default 0 and 1) for a window (default 5 ms) and prints one line,
//! `UNIX_SECONDS ROUND_TRIP_NS`: the fastest batch of 100 round trips in the window.
//! The minimum, because a batch that the scheduler interrupted (both CPUs are busy
//! with the benchmark) measures the interruption, not the caches. Between windows
//! both threads sleep. It runs `--count` samples, or until killed.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BATCH: u32 = 100;

/// The bounced line, alone in its cache lines so nothing else shares its traffic.
#[repr(align(128))]
struct Line(AtomicU64);

struct Shared {
    line: Line,
    /// Set while a window lasts; the responder spins only then.
    active: AtomicBool,
    stop: AtomicBool,
}

fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it, and
    // sched_setaffinity reads size_of::<cpu_set_t>() bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Answers every odd value with the next even one while a window is active.
fn respond(shared: &Shared) {
    while !shared.stop.load(Ordering::Acquire) {
        if !shared.active.load(Ordering::Acquire) {
            std::thread::park();
            continue;
        }
        let v = shared.line.0.load(Ordering::Acquire);
        if v & 1 == 1 {
            shared.line.0.store(v + 1, Ordering::Release);
        }
    }
}

/// The fastest batch's round trip, in nanoseconds, over one window.
fn sample(shared: &Shared, window: Duration) -> f64 {
    let start = Instant::now();
    let mut best = f64::MAX;
    while start.elapsed() < window {
        let t = Instant::now();
        for _ in 0..BATCH {
            let v = shared.line.0.load(Ordering::Acquire);
            shared.line.0.store(v + 1, Ordering::Release);
            while shared.line.0.load(Ordering::Acquire) == v + 1 {
                std::hint::spin_loop();
            }
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    best
}

struct Options {
    cpus: (usize, usize),
    window: Duration,
    interval: Duration,
    count: Option<u64>,
}

fn parse(args: &[String]) -> Option<Options> {
    let mut o = Options {
        cpus: (0, 1),
        window: Duration::from_millis(5),
        interval: Duration::from_millis(1000),
        count: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next()?;
        match flag.as_str() {
            "--cpus" => {
                let (a, b) = value.split_once(',')?;
                o.cpus = (a.parse().ok()?, b.parse().ok()?);
            }
            "--window-ms" => o.window = Duration::from_millis(value.parse().ok()?),
            "--interval-ms" => o.interval = Duration::from_millis(value.parse().ok()?),
            "--count" => o.count = Some(value.parse().ok()?),
            _ => return None,
        }
    }
    (o.cpus.0 != o.cpus.1 && !o.window.is_zero() && o.window < o.interval).then_some(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(o) = parse(&args) else {
        eprintln!(
            "usage: cpu-pair-latency [--cpus A,B] [--window-ms N] [--interval-ms N] [--count N]\n\
             (two different CPUs; the window shorter than the interval)"
        );
        return ExitCode::from(2);
    };
    let shared = Arc::new(Shared {
        line: Line(AtomicU64::new(0)),
        active: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let (a, b) = o.cpus;
    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
    let responder = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let pinned = pin(b);
            let ok = pinned.is_ok();
            let _ = pinned_tx.send(pinned);
            if ok {
                respond(&shared);
            }
        })
    };
    // The sampler spins until the responder answers: both must be in place first.
    for (cpu, pinned) in [
        (
            b,
            pinned_rx
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("its thread ended"))),
        ),
        (a, pin(a)),
    ] {
        if let Err(e) = pinned {
            eprintln!("cpu-pair-latency: cannot run on CPU {cpu}: {e}");
            shared.stop.store(true, Ordering::Release);
            responder.thread().unpark();
            return ExitCode::from(2);
        }
    }
    let mut out = std::io::stdout().lock();
    let mut n = 0;
    while o.count.is_none_or(|c| n < c) {
        let next = Instant::now() + o.interval;
        shared.active.store(true, Ordering::Release);
        responder.thread().unpark();
        let ns = sample(&shared, o.window);
        shared.active.store(false, Ordering::Release);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if writeln!(out, "{:.3} {ns:.1}", now.as_secs_f64())
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
        n += 1;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    shared.stop.store(true, Ordering::Release);
    responder.thread().unpark();
    let _ = responder.join();
    ExitCode::SUCCESS
}
