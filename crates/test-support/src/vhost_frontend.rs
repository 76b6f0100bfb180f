//! A vhost-user frontend playing QEMU and the guest's virtio-scsi driver, for tests of
//! a vhost-user-scsi backend without a VM.
//!
//! [`VhostFrontend::connect`] connects to the backend's Unix socket, shares a memfd as
//! the guest's memory (SET_MEM_TABLE), negotiates features (VERSION_1, HOTPLUG, CHANGE,
//! PROTOCOL_FEATURES, optionally EVENT_IDX; protocol features MQ, CONFIG and REPLY_ACK
//! where offered), lays out split virtqueues in guest memory (0 control, 1 event, 2..
//! request queues), gives each a kick and a call eventfd and enables them.
//!
//! The driver is synchronous and polling: [`Driver::submit`] puts a command on a
//! request queue and kicks; [`Driver::wait`] harvests used rings until that
//! command completes or a timeout passes. Chains are laid out as Linux lays them out:
//! request (device-readable), data-out (readable), response (writable), data-in
//! (writable). Task management ([`Driver::tmf`]) goes on the control queue,
//! events ([`Driver::post_event_buffers`], [`Driver::next_event`]) on the
//! event queue. Dropping the frontend, or [`VhostFrontend::disconnect`], closes the
//! socket as a killed QEMU would; a new frontend can connect to the same path.

mod driver;
mod vring;
pub mod wire;

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserHeaderFlag};
use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserProtocolFeatures};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::GuestMemoryBackend;

pub use driver::Driver;
pub use wire::{event, response, task_attr, tmf, AnResult, CmdResult, Event, ScsiConfig};

/// The control queue's index.
pub const CONTROL_QUEUE: u16 = 0;
/// The event queue's index.
pub const EVENT_QUEUE: u16 = 1;
/// The first request queue's index.
pub const REQUEST_QUEUE: u16 = 2;

/// How the frontend sets the device up.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// Guest memory, in MiB.
    pub memory_mib: usize,
    /// Request queues (queues 2..2+n).
    pub request_queues: u16,
    /// Entries per queue (a power of two).
    pub queue_size: u16,
    /// Negotiate VIRTIO_RING_F_EVENT_IDX if the backend offers it.
    pub event_idx: bool,
    /// The target byte of the LUN field every request carries.
    pub target: u8,
    /// How long a vhost-user request may go unanswered before connect (or another
    /// message) fails, so that a backend that stops answering fails a test instead of
    /// hanging it.
    pub reply_timeout: Duration,
}

impl FrontendConfig {
    pub(super) fn check(&self) -> Result<(), FrontendError> {
        if self.request_queues == 0 || !self.queue_size.is_power_of_two() || self.memory_mib < 2 {
            return Err(FrontendError::Config(
                "at least one request queue, a power-of-two queue size and 2 MiB",
            ));
        }
        Ok(())
    }
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            memory_mib: 32,
            request_queues: 1,
            queue_size: 128,
            event_idx: false,
            target: 0,
            reply_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    #[error("vhost-user: {0}")]
    Protocol(#[from] vhost::Error),
    #[error("guest memory: {0}")]
    Memory(#[source] io::Error),
    #[error("the backend does not offer {0}")]
    MissingFeature(&'static str),
    #[error("the backend has {offered} queues, {wanted} are needed")]
    TooFewQueues { offered: u64, wanted: u64 },
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    #[error("no such queue: {0}")]
    NoQueue(u16),
    #[error("CDB of {0} bytes is longer than 32")]
    CdbTooLong(usize),
    #[error("queue {0} has no free descriptors")]
    QueueFull(u16),
    #[error("guest memory is exhausted")]
    OutOfMemory,
    #[error("the backend did not answer within {0:?}; the connection is closed")]
    NoReply(Duration),
}

/// A request in flight, returned by the submit calls and passed to the wait calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    pub queue: u16,
    id: u64,
}

/// What a completed request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Cmd(CmdResult),
    /// A task management response: its `response` byte.
    Tmf(u8),
    An(AnResult),
}

/// A vhost-user virtio-scsi frontend; see the module documentation. The driver's
/// calls (`submit`, `wait`, `tmf`, `post_event_buffers`, `next_event`, ...) are
/// [`Driver`]'s, reached through `Deref`.
pub struct VhostFrontend {
    frontend: Frontend,
    /// The socket, kept to notice a hang-up and to close the connection at once.
    stream: UnixStream,
    driver: Driver,
    features: u64,
    protocol_features: VhostUserProtocolFeatures,
    reply_timeout: Duration,
}

/// Run `f`, which talks to the backend over `stream`; if it has not returned after
/// `timeout`, shut the socket down so that its wait for a reply ends (the vhost crate
/// retries a timed-out receive forever, so a socket timeout would not do).
fn with_deadline<T>(
    stream: &UnixStream,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, FrontendError>,
) -> Result<T, FrontendError> {
    let watch = stream.try_clone().map_err(FrontendError::Connect)?;
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let fired = wait.recv_timeout(timeout) == Err(RecvTimeoutError::Timeout);
        if fired {
            let _ = watch.shutdown(std::net::Shutdown::Both);
        }
        fired
    });
    let r = f();
    drop(done);
    match watchdog.join() {
        Ok(true) => Err(FrontendError::NoReply(timeout)),
        _ => r,
    }
}

impl VhostFrontend {
    /// Connect with the default configuration (32 MiB, one request queue of 128).
    pub fn connect(path: impl AsRef<Path>) -> Result<VhostFrontend, FrontendError> {
        Self::connect_with(path, &FrontendConfig::default())
    }

    /// Connect, negotiate and set up the queues as QEMU does before the guest runs.
    pub fn connect_with(
        path: impl AsRef<Path>,
        cfg: &FrontendConfig,
    ) -> Result<VhostFrontend, FrontendError> {
        cfg.check()?;
        let stream = UnixStream::connect(path).map_err(FrontendError::Connect)?;
        let watch = stream.try_clone().map_err(FrontendError::Connect)?;
        with_deadline(&watch, cfg.reply_timeout, || Self::set_up(stream, cfg))
    }

    fn set_up(stream: UnixStream, cfg: &FrontendConfig) -> Result<VhostFrontend, FrontendError> {
        let nq = 2 + cfg.request_queues;
        let mut frontend = Frontend::from_stream(
            stream.try_clone().map_err(FrontendError::Connect)?,
            u64::from(nq),
        );
        frontend.set_owner()?;
        let offered = frontend.get_features()?;
        let bit = |b: u32| 1u64 << b;
        for (b, name) in [
            (wire::feature::VERSION_1, "VIRTIO_F_VERSION_1"),
            (
                wire::feature::PROTOCOL_FEATURES,
                "VHOST_USER_F_PROTOCOL_FEATURES",
            ),
        ] {
            if offered & bit(b) == 0 {
                return Err(FrontendError::MissingFeature(name));
            }
        }
        let mut wanted = bit(wire::feature::VERSION_1)
            | bit(wire::feature::PROTOCOL_FEATURES)
            | bit(wire::feature::SCSI_HOTPLUG)
            | bit(wire::feature::SCSI_CHANGE);
        if cfg.event_idx {
            wanted |= bit(wire::feature::RING_EVENT_IDX);
        }
        let features = offered & wanted;
        let protocol_features = frontend.get_protocol_features()?
            & (VhostUserProtocolFeatures::MQ
                | VhostUserProtocolFeatures::CONFIG
                | VhostUserProtocolFeatures::REPLY_ACK);
        frontend.set_protocol_features(protocol_features)?;
        if protocol_features.contains(VhostUserProtocolFeatures::MQ) {
            let offered = frontend.get_queue_num()?;
            if offered < u64::from(nq) {
                return Err(FrontendError::TooFewQueues {
                    offered,
                    wanted: u64::from(nq),
                });
            }
        }
        frontend.set_features(features)?;
        // From here on only set-type messages are sent: with REPLY_ACK each is
        // acknowledged, so a backend that refuses one fails the connect here.
        if protocol_features.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }

        let event_idx = features & bit(wire::feature::RING_EVENT_IDX) != 0;
        let driver = Driver::new(cfg, event_idx)?;
        let mem = &driver.mem;
        let region = mem
            .mem
            .iter()
            .next()
            .ok_or(FrontendError::Config("no guest memory region"))?;
        let info = VhostUserMemoryRegionInfo::from_guest_region(region)?;
        frontend.set_mem_table(&[info])?;

        for (i, queue) in driver.queues.iter().enumerate() {
            let ring = &queue.ring;
            frontend.set_vring_num(i, ring.size)?;
            frontend.set_vring_base(i, 0)?;
            frontend.set_vring_addr(
                i,
                &VringConfigData {
                    queue_max_size: ring.size,
                    queue_size: ring.size,
                    flags: 0,
                    desc_table_addr: mem.host_base + ring.desc,
                    used_ring_addr: mem.host_base + ring.used,
                    avail_ring_addr: mem.host_base + ring.avail,
                    log_addr: None,
                },
            )?;
            frontend.set_vring_call(i, &queue.call)?;
            frontend.set_vring_kick(i, &queue.kick)?;
        }
        for q in 0..usize::from(nq) {
            frontend.set_vring_enable(q, true)?;
        }
        // Without REPLY_ACK nothing above was answered, and a backend that has not yet
        // enabled a ring drops a kick on it. A request that must be answered, handled
        // in order after the others, tells that the whole setup has been applied.
        frontend.set_hdr_flags(VhostUserHeaderFlag::empty());
        frontend.get_features()?;
        Ok(VhostFrontend {
            frontend,
            stream,
            driver,
            features,
            protocol_features,
            reply_timeout: cfg.reply_timeout,
        })
    }

    /// The virtio feature bits negotiated.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The vhost-user protocol features negotiated.
    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.protocol_features
    }

    /// Whether the backend still has the connection open (it has not hung up).
    pub fn is_connected(&self) -> bool {
        !self.hung_up(Duration::ZERO)
    }

    /// Wait at most `timeout` for the backend to close the connection; true if it did.
    pub fn wait_disconnected(&self, timeout: Duration) -> bool {
        self.hung_up(timeout)
    }

    fn hung_up(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let mut fd = libc::pollfd {
                fd: self.stream.as_raw_fd(),
                events: libc::POLLRDHUP,
                revents: 0,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().min(100) as libc::c_int;
            // SAFETY: `fd` is one valid pollfd structure.
            let n = unsafe { libc::poll(&mut fd, 1, ms) };
            if n > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                return true;
            }
            if left.is_zero() {
                return false;
            }
        }
    }

    /// Close the connection, as a QEMU that was killed.
    pub fn disconnect(self) {}

    /// The device configuration (GET_CONFIG), where the backend offers
    /// VHOST_USER_PROTOCOL_F_CONFIG.
    pub fn config(&mut self) -> Result<wire::ScsiConfig, FrontendError> {
        let buf = [0u8; wire::CONFIG_LEN];
        let frontend = &mut self.frontend;
        let (_, payload) = with_deadline(&self.stream, self.reply_timeout, || {
            Ok(frontend.get_config(
                0,
                wire::CONFIG_LEN as u32,
                VhostUserConfigFlags::WRITABLE,
                &buf,
            )?)
        })?;
        Ok(wire::parse_config(&payload))
    }

    /// The vhost-user connection, for messages this driver does not send itself.
    pub fn vhost(&mut self) -> &mut Frontend {
        &mut self.frontend
    }
}

impl std::ops::Deref for VhostFrontend {
    type Target = Driver;

    fn deref(&self) -> &Driver {
        &self.driver
    }
}

impl std::ops::DerefMut for VhostFrontend {
    fn deref_mut(&mut self) -> &mut Driver {
        &mut self.driver
    }
}

impl Drop for VhostFrontend {
    fn drop(&mut self) {
        // Both ends of the socket (ours and the vhost crate's clone) go at once.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod backend_tests;
#[cfg(test)]
mod tests;
