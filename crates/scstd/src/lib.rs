//! The scstd daemon: argument parsing, logging, signals and the runtime around the
//! core, the dev handlers and the iSCSI target driver. `main` is a thin wrapper over
//! [`run`] so that tests can start the daemon in-process as well as as a binary.

mod config;
pub mod logging;
pub mod metrics;
pub mod mgmt_server;
pub mod notify;
mod privs;
pub mod reload;
mod trim;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use scst_core::Scst;

pub use config::{apply_config, Started};

pub const USAGE: &str = "usage: scstd [--config FILE] [--listen ADDR:PORT]... [--mgmt-socket PATH]
                    [--state-dir DIR] [--io-threads N] [--io-engine ENGINE]
                    [--user NAME] [--group NAME] [--log-level FILTER]
                    [--metrics-listen ADDR:PORT]
       scstd --version

  --config FILE       scst.conf to load (SCST's grammar; default /etc/scst.conf);
                      SIGHUP applies it again, as scstadmin -config does
  --listen ADDR:PORT  iSCSI portal to listen on (repeatable; default 0.0.0.0:3260)
  --io-threads N      threads for blocking storage I/O (default: the config's
                      'threads' attribute, else 8)
  --io-engine ENGINE  how fileio transfers that would block run: 'threads' (on the
                      I/O threads, the default) or 'io_uring' (submitted to a ring,
                      no thread waits; falls back to threads where io_uring is
                      unavailable). Default: $SCSTD_IO_ENGINE, else threads
  --state-dir DIR     persistent state: APTPL files in DIR/pr/<device> (default
                      /var/lib/scst)
  --mgmt-socket PATH  management socket, mode 0600 (default /run/scstd.sock);
                      protocol in docs/management.md, client: scstadmin
  --user NAME         after binding the portals and the management socket and
                      opening the devices, switch to this user (and its primary
                      group); refuses to run if that fails. The state directory
                      must be writable by NAME for APTPL files
  --group NAME        switch to this group (with --user: instead of its primary
                      group)
  --log-level FILTER  the log's start level: error, warn, info, debug, trace, or
                      per-crate directives such as 'info,scst_iscsi=debug'
                      (default: $RUST_LOG, else info). The trace_level attributes
                      change it at run time (docs/management.md, Logging)
  --metrics-listen ADDR:PORT
                      serve Prometheus metrics at http://ADDR:PORT/metrics
                      (command, byte and error counters; latency histograms
                      while measure_latency is 1). Off by default

Runs in the foreground and logs to stderr (RUST_LOG=debug for more). SIGHUP reloads
the config file; SIGTERM/SIGINT drain and stop. Under systemd (Type=notify) it reports
readiness, reloads and shutdown to $NOTIFY_SOCKET.";

/// The git commit of the build, empty when it was not built from a checkout.
const COMMIT: &str = env!("SCST_RS_COMMIT");

/// `scstd --version`'s line: the workspace version, and the commit when known.
pub fn version_line(program: &str) -> String {
    version_text(program, env!("CARGO_PKG_VERSION"), COMMIT)
}

fn version_text(program: &str, version: &str, commit: &str) -> String {
    if commit.is_empty() {
        format!("{program} (scst-rs) {version}")
    } else {
        format!("{program} (scst-rs) {version} (git {commit})")
    }
}

/// SCST's configuration file, read when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/scst.conf";

#[derive(Debug, Clone)]
pub struct Args {
    pub config: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub io_threads: Option<usize>,
    /// `--io-engine`; None: `SCSTD_IO_ENGINE`, else the I/O threads.
    pub io_engine: Option<scst_vdisk::IoEngine>,
    /// `--state-dir`; None: [`DEFAULT_STATE_DIR`].
    pub state_dir: Option<PathBuf>,
    /// `--mgmt-socket`; None: [`scst_mgmt::client::DEFAULT_SOCKET`], where failing to
    /// bind is only a warning (like the default state directory).
    pub mgmt_socket: Option<PathBuf>,
    /// `--user` / `--group`: drop privileges to these once set up.
    pub user: Option<String>,
    pub group: Option<String>,
    /// `--log-level`: the log filter at start (wins over RUST_LOG).
    pub log_level: Option<String>,
    /// `--metrics-listen`: where to serve `GET /metrics`, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// Where SCST keeps its persistent reservation files (scst-reference 2.5 `pr_file_name`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/scst";

impl Args {
    pub fn parse(mut it: impl Iterator<Item = String>) -> anyhow::Result<Args> {
        let mut config = None;
        let mut listen = Vec::new();
        let mut io_threads = None;
        let mut io_engine = None;
        let mut state_dir = None;
        let mut mgmt_socket = None;
        let mut user = None;
        let mut group = None;
        let mut log_level = None;
        let mut metrics_listen = None;
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match a.as_str() {
                "--config" | "-c" => config = Some(PathBuf::from(value("--config")?)),
                "--listen" | "-l" => {
                    let v = value("--listen")?;
                    listen.push(v.parse().with_context(|| {
                        format!("--listen '{v}': expected ADDR:PORT, e.g. 127.0.0.1:3260")
                    })?);
                }
                "--io-threads" => {
                    let v = value("--io-threads")?;
                    io_threads = Some(v.parse().ok().filter(|n| *n > 0).with_context(|| {
                        format!("--io-threads '{v}': expected a positive number")
                    })?);
                }
                "--io-engine" => {
                    let v = value("--io-engine")?;
                    io_engine = Some(scst_vdisk::IoEngine::from_name(&v).with_context(|| {
                        format!("--io-engine '{v}': expected threads or io_uring")
                    })?);
                }
                "--state-dir" => {
                    let v = value("--state-dir")?;
                    if v.is_empty() {
                        bail!("--state-dir needs a directory");
                    }
                    state_dir = Some(PathBuf::from(v));
                }
                "--mgmt-socket" => {
                    let v = value("--mgmt-socket")?;
                    if v.is_empty() {
                        bail!("--mgmt-socket needs a path");
                    }
                    mgmt_socket = Some(PathBuf::from(v));
                }
                "--user" | "-u" => user = Some(value("--user")?).filter(|v| !v.is_empty()),
                "--group" | "-g" => group = Some(value("--group")?).filter(|v| !v.is_empty()),
                "--log-level" => {
                    let v = value("--log-level")?;
                    if v.trim().is_empty() {
                        bail!("--log-level needs a level or filter directives");
                    }
                    log_level = Some(v);
                }
                "--metrics-listen" => {
                    let v = value("--metrics-listen")?;
                    metrics_listen = Some(v.parse().with_context(|| {
                        format!("--metrics-listen '{v}': expected ADDR:PORT, e.g. 127.0.0.1:9464")
                    })?);
                }
                "-h" | "--help" => bail!("help requested"),
                other => bail!("unknown argument '{other}'"),
            }
        }
        let config = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        if listen.is_empty() {
            listen.push("0.0.0.0:3260".parse().expect("valid default portal"));
        }
        Ok(Args {
            config,
            listen,
            io_threads,
            io_engine,
            state_dir,
            mgmt_socket,
            user,
            group,
            log_level,
            metrics_listen,
        })
    }
}

/// Load the configuration, serve until SIGTERM/SIGINT (reloading it on SIGHUP), then
/// drain and flush.
pub fn run(args: Args) -> anyhow::Result<()> {
    tune_allocator();
    // SIGHUP's default action ends the process; until the reload handler is installed
    // (once serving) a SIGHUP is ignored instead: the file is being read anyway.
    ignore_sighup();
    // Names are resolved first, while single-threaded, so that a typo fails early.
    let identity = privs::resolve(args.user.as_deref(), args.group.as_deref())?;
    let logging = logging::init(args.log_level.as_deref())?;
    raise_open_file_limit();
    let text = std::fs::read_to_string(&args.config).with_context(|| {
        if args.config == std::path::Path::new(DEFAULT_CONFIG) {
            format!(
                "cannot read config {DEFAULT_CONFIG} (the default; give another with --config FILE)"
            )
        } else {
            format!("cannot read config {}", args.config.display())
        }
    })?;
    // Every problem of the file at once, each with its line; nothing starts.
    let conf = scst_mgmt::conf::load(&text)
        .with_context(|| format!("config {}", args.config.display()))?;
    let chosen_threads = args.io_threads.or_else(|| config::io_threads(&conf));
    let threads = chosen_threads.unwrap_or(config::DEFAULT_IO_THREADS);
    let scst = Scst::new(threads);
    trim::start(&scst).context("cannot start the heap trimmer")?;
    // Before any device is opened: each fileio device takes the engine at open.
    if let Some(e) = args.io_engine {
        scst_vdisk::set_io_engine(e);
    }
    // The ring is set up here, not at the first device, so that a kernel without
    // io_uring is reported at start (uring_unavailable logs why).
    let engine = match scst_vdisk::io_engine() {
        scst_vdisk::IoEngine::Uring if scst_vdisk::uring_unavailable().is_some() => "threads",
        e => e.name(),
    };
    log::info!("fileio backing-file I/O engine: {engine}");
    scst.set_state_dir(prepare_state_dir(args.state_dir.as_deref())?);
    scst_vdisk::handler::register_all(&scst).context("cannot register the dev handlers")?;
    let config::Started { iscsi, vhost, tree } = apply_config(&scst, &conf, args.io_threads)
        .with_context(|| format!("config {}", args.config.display()))?;
    // From here on the trace_level attributes (set by the file or later) steer the log.
    logging.observe(tree.trace_levels());

    // Bound before the runtime's threads exist: binding narrows the umask (see
    // bind_socket). A socket asked for must work; the default one may not (not root, or
    // another daemon owns it): then the daemon serves without management.
    let socket_path = args
        .mgmt_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(scst_mgmt::client::DEFAULT_SOCKET));
    let mgmt_listener = match mgmt_server::bind_socket(&socket_path) {
        Ok(l) => Some(l),
        Err(e) if args.mgmt_socket.is_none() => {
            log::warn!("{e:#}; running without a management socket (use --mgmt-socket)");
            None
        }
        Err(e) => return Err(e),
    };
    let _socket_guard = mgmt_listener
        .is_some()
        .then(|| mgmt_server::SocketGuard(socket_path.clone()));

    // Connections run on their own threads, one per core (net_threads explains why);
    // the runtime below accepts them and serves management and iSNS.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    iscsi.use_net_threads(
        scst_iscsi::net_threads::NetThreads::start(cores)
            .context("cannot start the network threads")?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("scstd-rt")
        .build()
        .context("cannot start the runtime")?;
    // One lock for management writes: the socket's clients and SIGHUP's reload.
    let write_lock = Arc::new(tokio::sync::Mutex::new(()));
    let reloader = reload::Reloader {
        config: args.config.clone(),
        tree: tree.clone(),
        write_lock: write_lock.clone(),
    };
    let notifier = notify::Notifier::from_env();
    rt.block_on(async {
        if let Some(l) = mgmt_listener {
            let listener = tokio::net::UnixListener::from_std(l).context("management socket")?;
            log::info!("management socket listening on {}", socket_path.display());
            tokio::spawn(mgmt_server::serve(listener, tree, write_lock));
        }
        if let Some(addr) = args.metrics_listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?;
            log::info!(
                "metrics endpoint listening on http://{}/metrics",
                l.local_addr()?
            );
            tokio::spawn(metrics::serve(l, scst.clone()));
        }
        serve(
            scst.clone(),
            iscsi,
            args.listen,
            identity,
            &reloader,
            notifier.as_ref(),
        )
        .await
    })?;
    // Virtual machines are disconnected; commands a stalled backend still holds are
    // not waited for.
    vhost.shutdown();
    detach_bounded(&scst);
    log::info!("scstd stopped");
    Ok(())
}

/// How long stopping waits for the devices' last flush and PR dumps.
const DETACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Detach the devices (flush, PR dumps) at shutdown, but give up waiting after
/// [`DETACH_TIMEOUT`]: a backend stalled in I/O must not keep the daemon from
/// stopping. What it did not flush is named in the log.
fn detach_bounded(scst: &Arc<Scst>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let s = scst.clone();
    let spawned = std::thread::Builder::new()
        .name("detach".into())
        .spawn(move || {
            s.detach_all();
            let _ = tx.send(());
        });
    match spawned {
        Ok(_) => {
            if rx.recv_timeout(DETACH_TIMEOUT).is_err() {
                log::error!(
                    "shutdown: devices still flushing after {}s (a backend stalled in I/O): stopping without them",
                    DETACH_TIMEOUT.as_secs()
                );
            }
        }
        Err(_) => scst.detach_all(),
    }
}

/// Create `<dir>/pr` for the APTPL files. A directory given with --state-dir must be
/// usable; the default one may not be (not running as root): then only APTPL writes
/// fail, each with an error naming the path, and the daemon still serves.
fn prepare_state_dir(given: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    let dir = given.map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from);
    let pr = dir.join("pr");
    if let Err(e) = std::fs::create_dir_all(&pr) {
        if given.is_some() {
            bail!("--state-dir: cannot create {}: {e}", pr.display());
        }
        log::warn!(
            "cannot create {}: {e}; persistent reservations with APTPL will fail \
             (use --state-dir)",
            pr.display()
        );
    }
    Ok(dir)
}

fn ignore_sighup() {
    // SAFETY: signal(2) with SIG_IGN installs no handler code; nothing else changes
    // signal dispositions concurrently (the runtime installs its handlers later).
    if unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) } == libc::SIG_ERR {
        log::warn!(
            "cannot ignore SIGHUP during start-up: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Keep command data buffers (up to a few MiB each) on the heap and keep freed heap
/// memory mapped. glibc's defaults serve them with mmap/munmap, or trim the heap top
/// after a burst of frees, and either way every large read then pays page faults and
/// TLB shootdowns; which of the two happens depends on allocation order, so
/// throughput would swing by a factor of three between otherwise identical runs.
fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator tunables; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit: every connection and every fileio
/// device holds a descriptor, and the default soft limit (1024) is smaller than the
/// connections allowed. The iSCSI accept loop keeps a reserve below whatever limit
/// results (scst_iscsi::admission).
fn raise_open_file_limit() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        log::warn!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    // An unlimited hard limit still stops at the kernel's nr_open.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(libc::rlim_t::MAX);
    let target = rl.rlim_max.min(nr_open);
    if rl.rlim_cur >= target {
        log::info!("open-file limit: {}", rl.rlim_cur);
        return;
    }
    let soft = rl.rlim_cur;
    rl.rlim_cur = target;
    // SAFETY: setrlimit reads only the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
        log::warn!(
            "cannot raise the open-file limit from {soft} to {target}: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    log::info!("open-file limit raised from {soft} to {target}");
}

async fn serve(
    scst: Arc<Scst>,
    iscsi: Arc<scst_iscsi::IscsiDriver>,
    portals: Vec<SocketAddr>,
    identity: Option<privs::Identity>,
    reloader: &reload::Reloader,
    notifier: Option<&notify::Notifier>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before the portals open, so that no signal sent once the daemon is
    // reachable ends it without the shutdown path (which removes the socket file).
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut listeners = Vec::new();
    for p in &portals {
        let l = tokio::net::TcpListener::bind(p)
            .await
            .with_context(|| format!("cannot listen on {p}"))?;
        log::info!("iSCSI portal listening on {}", l.local_addr()?);
        listeners.push(l);
    }
    // Everything that needs privileges is open now: the portals, the management
    // socket and the devices (apply_config).
    if let Some(id) = identity {
        privs::drop_to(id).context("cannot drop privileges (--user/--group)")?;
    }
    // The iSNS client announces the bound addresses (ephemeral ports resolved).
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    scst_iscsi::isns::start(&iscsi, &bound);
    for l in listeners {
        tokio::spawn(iscsi.clone().serve(l));
    }
    if let Some(n) = notifier {
        n.ready();
    }
    loop {
        tokio::select! {
            _ = term.recv() => {
                log::info!("SIGTERM: shutting down");
                break;
            }
            _ = int.recv() => {
                log::info!("SIGINT: shutting down");
                break;
            }
            _ = hup.recv() => {
                if let Some(n) = notifier {
                    n.reloading();
                }
                reloader.reload().await;
                if let Some(n) = notifier {
                    n.reloaded();
                }
            }
        }
    }
    if let Some(n) = notifier {
        n.stopping();
    }
    iscsi.shutdown().await;
    drop(scst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn config_defaults_to_etc_scst_conf() {
        assert_eq!(parse(&[]).unwrap().config, PathBuf::from("/etc/scst.conf"));
        assert_eq!(
            parse(&["-c", "x.conf"]).unwrap().config,
            PathBuf::from("x.conf")
        );
    }

    #[test]
    fn version_names_the_commit_when_known() {
        assert_eq!(version_text("scstd", "0.1.0", ""), "scstd (scst-rs) 0.1.0");
        assert_eq!(
            version_text("scstd", "0.1.0", "0123456789ab"),
            "scstd (scst-rs) 0.1.0 (git 0123456789ab)"
        );
        assert!(version_line("scstd")
            .starts_with(concat!("scstd (scst-rs) ", env!("CARGO_PKG_VERSION"))));
    }

    #[test]
    fn io_engine_takes_threads_or_io_uring_and_names_a_bad_value() {
        let a = parse(&["--config", "c"]).unwrap();
        assert_eq!(a.io_engine, None);
        let a = parse(&["--config", "c", "--io-engine", "io_uring"]).unwrap();
        assert_eq!(a.io_engine, Some(scst_vdisk::IoEngine::Uring));
        let a = parse(&["--config", "c", "--io-engine", "threads"]).unwrap();
        assert_eq!(a.io_engine, Some(scst_vdisk::IoEngine::Threads));
        let e = parse(&["--config", "c", "--io-engine", "aio"]).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "--io-engine 'aio': expected threads or io_uring"
        );
    }
}
