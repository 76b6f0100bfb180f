//! The network threads. Each runs its own single-threaded runtime (its own epoll), and
//! a connection lives on one of them from login to close, the least loaded at accept.
//!
//! One thread owning its connections outright is what makes lingering possible: a
//! connection that just answered a burst of commands, and is the only busy one on its
//! thread, naps a few microseconds at a time waiting for the next burst instead of
//! sleeping in `epoll_wait` (see `conn::run`). A thread asleep in `epoll_wait` is woken
//! by the initiator's own `send` (on a VM an IPI that costs it ~10 us); a napping one
//! is not, and it gathers the commands that arrive meanwhile into one read and one
//! write. With a work-stealing runtime the other worker would sit in `epoll_wait`
//! and be woken instead, which is why the threads do not share a scheduler.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;

thread_local! {
    /// Set on a network thread: its connections may linger.
    static ON_NET_THREAD: Cell<bool> = const { Cell::new(false) };
    /// Connections on this thread that did work in their last turn.
    static BUSY_HERE: Cell<u32> = const { Cell::new(0) };
}

struct NetThread {
    handle: Handle,
    connections: Arc<AtomicUsize>,
}

pub struct NetThreads {
    threads: Vec<NetThread>,
}

impl NetThreads {
    /// Start `n` (at least one) network threads; they run until the process exits.
    pub fn start(n: usize) -> io::Result<NetThreads> {
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name(format!("scstd-net{i}"))
                .spawn(move || {
                    ON_NET_THREAD.with(|c| c.set(true));
                    // Naps of a few microseconds must not be rounded up to the default
                    // 50 us timer slack.
                    // SAFETY: PR_SET_TIMERSLACK takes plain integers and affects only
                    // the calling thread.
                    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000, 0, 0, 0) };
                    rt.block_on(std::future::pending::<()>())
                })?;
            threads.push(NetThread {
                handle,
                connections: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(NetThreads { threads })
    }

    /// Run a connection's future on the thread with the fewest connections. The
    /// stream moves as a std socket: a tokio one belongs to the runtime that made it.
    pub(crate) fn spawn<F, Fut>(&self, stream: std::net::TcpStream, serve: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let t = self
            .threads
            .iter()
            .min_by_key(|t| t.connections.load(Ordering::Relaxed))
            .expect("at least one network thread");
        let count = t.connections.clone();
        count.fetch_add(1, Ordering::Relaxed);
        t.handle.spawn(async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(s) => serve(s).await,
                Err(e) => log::warn!("cannot move a connection to its network thread: {e}"),
            }
            count.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// True on a network thread, where a connection may linger.
pub(crate) fn on_net_thread() -> bool {
    ON_NET_THREAD.with(|c| c.get())
}

/// Connections of this thread that did work in their last turn; `Busy` counts one
/// while it lives.
pub(crate) fn busy_here() -> u32 {
    BUSY_HERE.with(|c| c.get())
}

/// A connection's membership of its thread's busy count.
#[derive(Default)]
pub(crate) struct Busy(bool);

impl Busy {
    pub(crate) fn set(&mut self, busy: bool) {
        if busy != self.0 {
            self.0 = busy;
            BUSY_HERE.with(|c| c.set(if busy { c.get() + 1 } else { c.get() - 1 }));
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.set(false);
    }
}
