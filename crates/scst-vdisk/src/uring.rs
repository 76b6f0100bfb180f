//! The io_uring engine: backing-file reads and writes that would block (page-cache
//! misses, stable writes) are submitted to one process-wide ring from the network
//! thread and complete on the ring's reaper thread, instead of occupying an I/O pool
//! thread each for the whole transfer. Any number of them can be in flight at once,
//! so a queue depth of 32 reaches the disk as 32 requests, not as the pool's thread
//! count.
//!
//! The engine is chosen per process ([`set_io_engine`]); when the ring cannot be set
//! up (an old kernel, a seccomp filter, `io_uring_disabled`), devices fall back to the
//! I/O pool, with one warning.

use io_uring::{opcode, squeue, types, IoUring};
use parking_lot::Mutex;
use std::any::Any;
use std::io;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

/// How backing-file I/O that would block is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoEngine {
    /// A thread of the core's I/O pool runs the whole command, blocking.
    Threads,
    /// The transfer goes to io_uring; no thread waits for it.
    Uring,
}

impl IoEngine {
    pub fn from_name(s: &str) -> Option<IoEngine> {
        match s {
            "threads" | "pool" => Some(IoEngine::Threads),
            "io_uring" | "uring" => Some(IoEngine::Uring),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IoEngine::Threads => "threads",
            IoEngine::Uring => "io_uring",
        }
    }
}

/// The process-wide engine for devices opened from now on: 0 not chosen yet, else
/// 1 + the engine.
static ENGINE: AtomicU8 = AtomicU8::new(0);
/// What measurements favour (docs/performance.md): on a fileio LUN over a disk file
/// with a cold cache the I/O pool serves 4 KiB random reads 5-9% faster than the ring
/// (whose completions take one more thread hop, through the reaper).
const DEFAULT_ENGINE: IoEngine = IoEngine::Threads;
/// The daemon's environment may choose the engine (`threads` or `io_uring`) when
/// nothing called [`set_io_engine`].
pub const ENGINE_ENV: &str = "SCSTD_IO_ENGINE";

/// Choose the engine for fileio devices opened after this call.
pub fn set_io_engine(e: IoEngine) {
    ENGINE.store(1 + e as u8, Ordering::Relaxed);
}

/// The engine devices opened now get.
pub fn io_engine() -> IoEngine {
    match ENGINE.load(Ordering::Relaxed) {
        0 => {
            let e = match std::env::var(ENGINE_ENV) {
                Ok(v) => IoEngine::from_name(&v).unwrap_or_else(|| {
                    log::warn!("{ENGINE_ENV}={v}: not threads or io_uring, using the default");
                    DEFAULT_ENGINE
                }),
                Err(_) => DEFAULT_ENGINE,
            };
            set_io_engine(e);
            e
        }
        1 => IoEngine::Threads,
        _ => IoEngine::Uring,
    }
}

/// What to do with a finished transfer: the buffer (read data, or the written data
/// handed back) or the error.
pub(crate) type Done = Box<dyn FnOnce(io::Result<Vec<u8>>) + Send>;

/// One transfer in flight. Boxed and owned by the kernel between submission and
/// completion: its address is the SQE's user_data.
struct Op {
    /// Keeps the file (and so `fd`) open until the transfer is over.
    _keep: Arc<dyn Any + Send + Sync>,
    fd: RawFd,
    write: bool,
    rw_flags: i32,
    /// Read: `len` bytes of capacity, `done` of them filled so far (the Vec's length).
    /// Write: the data, `done` bytes of it written.
    buf: Vec<u8>,
    len: usize,
    done: usize,
    off: u64,
    then: Done,
}

impl Op {
    fn sqe(&mut self) -> squeue::Entry {
        let n = (self.len - self.done).min(u32::MAX as usize) as u32;
        let off = self.off + self.done as u64;
        let fd = types::Fd(self.fd);
        let e = if self.write {
            opcode::Write::new(fd, self.buf[self.done..].as_ptr(), n)
                .offset(off)
                .rw_flags(self.rw_flags)
                .build()
        } else {
            // The spare capacity after the filled part: the kernel writes into it, and
            // the Vec's length grows only by what the completion reports.
            let spare = self.buf.spare_capacity_mut();
            opcode::Read::new(fd, spare.as_mut_ptr().cast::<u8>(), n)
                .offset(off)
                .rw_flags(self.rw_flags)
                .build()
        };
        e.user_data(self as *mut Op as u64)
            .flags(squeue::Flags::ASYNC)
    }
}

pub(crate) struct Ring {
    ring: IoUring,
    /// Serialises producers of submission queue entries (network threads and the
    /// reaper's resubmissions): the queue has one producer index.
    sq: Mutex<()>,
}

/// Kernel workers the ring may use for blocking file I/O.
const IOWQ_WORKERS: u32 = 64;

/// The process's ring, set up on first use, or why that failed.
static RING: OnceLock<io::Result<Arc<Ring>>> = OnceLock::new();

fn ring_state() -> &'static io::Result<Arc<Ring>> {
    RING.get_or_init(|| {
        Ring::setup().inspect_err(|e| {
            log::warn!("io_uring unavailable ({e}): backing-file I/O uses the I/O pool");
        })
    })
}

/// The ring, when io_uring works here.
pub(crate) fn ring() -> Option<&'static Arc<Ring>> {
    ring_state().as_ref().ok()
}

/// Why io_uring cannot be used here, or None when it can.
pub fn uring_unavailable() -> Option<&'static io::Error> {
    ring_state().as_ref().err()
}

impl Ring {
    fn setup() -> io::Result<Arc<Ring>> {
        let ring = IoUring::builder().setup_cqsize(1024).build(256)?;
        // Transfers are queued to the kernel's workers (IOSQE_ASYNC: the inline
        // non-blocking attempt already failed in the caller). Regular-file I/O counts
        // against the "bounded" workers, 4 per CPU by default: allow as many as
        // transfers a few initiators keep in flight.
        let mut workers = [IOWQ_WORKERS, 0];
        if let Err(e) = ring.submitter().register_iowq_max_workers(&mut workers) {
            log::debug!("io_uring worker limit unchanged: {e}");
        }
        let ring = Arc::new(Ring {
            ring,
            sq: Mutex::new(()),
        });
        let r = ring.clone();
        std::thread::Builder::new()
            .name("scst-uring".into())
            .spawn(move || r.reap())?;
        Ok(ring)
    }

    /// Start a transfer. `keep` holds the file open until it completes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn submit(
        &self,
        keep: Arc<dyn Any + Send + Sync>,
        fd: RawFd,
        write: bool,
        rw_flags: i32,
        buf: Vec<u8>,
        len: usize,
        off: u64,
        then: Done,
    ) {
        let op = Box::new(Op {
            _keep: keep,
            fd,
            write,
            rw_flags,
            buf,
            len,
            done: 0,
            off,
            then,
        });
        self.push(op);
    }

    fn push(&self, op: Box<Op>) {
        let op = Box::into_raw(op);
        // SAFETY: `op` came from Box::into_raw just above and is not freed until its
        // completion is reaped (`reap` turns the user_data back into the Box, once).
        let sqe = unsafe { (*op).sqe() };
        let guard = self.sq.lock();
        loop {
            // SAFETY: the `sq` mutex is held, so this is the only submission queue
            // handle in existence; the entry's buffer lives in the boxed Op, which the
            // kernel owns until the completion hands it back.
            let pushed = unsafe { self.ring.submission_shared().push(&sqe).is_ok() };
            if pushed {
                break;
            }
            // Full: hand what is queued to the kernel and retry.
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EBUSY) {
                    drop(guard);
                    // SAFETY: the entry was never queued, so the Op is still ours.
                    let op = unsafe { Box::from_raw(op) };
                    (op.then)(Err(e));
                    return;
                }
            }
        }
        drop(guard);
        // Another thread's submit (or the reaper's wait) may take ours along: fine.
        let _ = self.ring.submit();
    }

    /// The reaper: waits for completions and finishes (or continues) their transfers.
    fn reap(&self) {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => {}
                Err(e) => {
                    log::error!("io_uring wait failed: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            // SAFETY: this thread is the only one that ever touches the completion
            // queue.
            let done: Vec<(u64, i32)> = unsafe { self.ring.completion_shared() }
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (ud, res) in done {
                // SAFETY: every user_data is an Op pointer from `push`, completed once.
                let op = unsafe { Box::from_raw(ud as *mut Op) };
                self.complete(op, res);
            }
        }
    }

    fn complete(&self, mut op: Box<Op>, res: i32) {
        if res < 0 {
            if res == -libc::EINTR {
                return self.push(op);
            }
            let then = op.then;
            return then(Err(io::Error::from_raw_os_error(-res)));
        }
        let n = res as usize;
        if n == 0 {
            let then = op.then;
            return then(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        if !op.write {
            // SAFETY: the kernel reported `n` more bytes written into the spare
            // capacity right after the filled part; they are initialised now.
            unsafe { op.buf.set_len(op.done + n) };
        }
        op.done += n;
        if op.done < op.len {
            // Short transfer: continue where it stopped.
            return self.push(op);
        }
        let buf = std::mem::take(&mut op.buf);
        let then = op.then;
        then(Ok(buf))
    }
}
