//! The guest's virtio-scsi driver: guest memory, the virtqueues in it, requests
//! submitted and completions harvested. It knows nothing of the vhost-user socket, so
//! that it can be tested against a simulated device as well as a real backend.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    MemoryRegionAddress,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::vring::{self, Allocator, Buf, DriverQueue};
use super::wire::{self, task_attr, CmdResult, Event};
use super::{
    Completion, FrontendConfig, FrontendError, Token, CONTROL_QUEUE, EVENT_QUEUE, REQUEST_QUEUE,
};

enum Kind {
    Cmd { data_in_len: u32 },
    Tmf,
    An,
    Event,
}

/// A chain the device holds: what it is for and the guest memory it uses.
struct Pending {
    id: u64,
    kind: Kind,
    /// (address, length) of each buffer, in chain order.
    bufs: Vec<(u64, u64)>,
}

pub(super) struct Queue {
    pub(super) ring: DriverQueue,
    pub(super) kick: EventFd,
    pub(super) call: EventFd,
    pending: HashMap<u16, Pending>,
}

/// Guest memory: a memfd mapped here and shared with the backend.
pub(super) struct GuestMem {
    pub(super) mem: GuestMemoryMmap,
    /// The host address the memory is mapped at (vring addresses are given in it).
    pub(super) host_base: u64,
    alloc: Allocator,
    _file: File,
}

fn memfd(len: u64) -> io::Result<File> {
    let name = c"scst-test-guest";
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len)?;
    Ok(file)
}

/// The driver's state: guest memory, queues, completions not yet collected.
pub struct Driver {
    pub(super) mem: GuestMem,
    pub(super) queues: Vec<Queue>,
    done: HashMap<u64, Completion>,
    events: VecDeque<Event>,
    next_id: u64,
    target: u8,
    anomalies: Vec<String>,
}

impl Driver {
    /// Guest memory with `2 + cfg.request_queues` queues laid out at its start.
    pub(super) fn new(cfg: &FrontendConfig, event_idx: bool) -> Result<Driver, FrontendError> {
        cfg.check()?;
        let nq = 2 + cfg.request_queues;
        let mem = Self::guest_memory(cfg, nq)?;
        let ring_len = vring::ring_bytes(cfg.queue_size);
        let mut queues = Vec::new();
        for i in 0..nq {
            let eventfd = || EventFd::new(EFD_NONBLOCK).map_err(FrontendError::Memory);
            queues.push(Queue {
                ring: DriverQueue::new(u64::from(i) * ring_len, cfg.queue_size, event_idx),
                kick: eventfd()?,
                call: eventfd()?,
                pending: HashMap::new(),
            });
        }
        Ok(Driver {
            mem,
            queues,
            done: HashMap::new(),
            events: VecDeque::new(),
            next_id: 1,
            target: cfg.target,
            anomalies: Vec::new(),
        })
    }

    fn guest_memory(cfg: &FrontendConfig, nq: u16) -> Result<GuestMem, FrontendError> {
        let size = cfg.memory_mib << 20;
        let file = memfd(size as u64).map_err(FrontendError::Memory)?;
        let shared = file.try_clone().map_err(FrontendError::Memory)?;
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            size,
            Some(FileOffset::new(shared, 0)),
        )])
        .map_err(|e| FrontendError::Memory(io::Error::other(e)))?;
        let host_base = mem
            .iter()
            .next()
            .and_then(|r| r.get_host_address(MemoryRegionAddress(0)).ok())
            .ok_or(FrontendError::Config("no guest memory region"))? as u64;
        let rings = u64::from(nq) * vring::ring_bytes(cfg.queue_size);
        if rings >= size as u64 / 2 {
            return Err(FrontendError::Config("queues take half the guest memory"));
        }
        Ok(GuestMem {
            mem,
            host_base,
            alloc: Allocator::new(rings, size as u64 - rings),
            _file: file,
        })
    }

    /// Things the device did that it should not have (a used head never made
    /// available), in the order seen.
    pub fn anomalies(&self) -> &[String] {
        &self.anomalies
    }

    /// Chains the device holds on `queue`.
    pub fn in_flight(&self, queue: u16) -> usize {
        self.queues
            .get(usize::from(queue))
            .map_or(0, |q| q.ring.in_flight())
    }

    /// Put a chain of (bytes to write, device-readable) and (length, device-writable)
    /// buffers on `queue` and kick it.
    fn add_chain(
        &mut self,
        queue: u16,
        readable: &[&[u8]],
        writable: &[u32],
        kind: Kind,
    ) -> Result<Token, FrontendError> {
        let q = self
            .queues
            .get_mut(usize::from(queue))
            .ok_or(FrontendError::NoQueue(queue))?;
        let parts = readable.iter().filter(|r| !r.is_empty()).count()
            + writable.iter().filter(|&&w| w > 0).count();
        if q.ring.free_descriptors() < parts {
            return Err(FrontendError::QueueFull(queue));
        }
        let mut bufs = Vec::new();
        let mut chain = Vec::new();
        let mut fail = false;
        let lens = readable
            .iter()
            .map(|r| (r.len() as u64, Some(*r)))
            .chain(writable.iter().map(|&w| (u64::from(w), None)));
        for (len, bytes) in lens {
            if len == 0 {
                continue;
            }
            let Some(addr) = self.mem.alloc.alloc(len) else {
                fail = true;
                break;
            };
            bufs.push((addr, len));
            match bytes {
                Some(b) => {
                    if self.mem.mem.write_slice(b, GuestAddress(addr)).is_err() {
                        fail = true;
                        break;
                    }
                }
                None => {
                    // Stale bytes from an earlier request must not pass for data-in.
                    let zero = vec![0u8; len as usize];
                    if self.mem.mem.write_slice(&zero, GuestAddress(addr)).is_err() {
                        fail = true;
                        break;
                    }
                }
            }
            chain.push(Buf {
                addr,
                len: len as u32,
                writable: bytes.is_none(),
            });
        }
        let head = if fail {
            None
        } else {
            q.ring.add(&self.mem.mem, &chain)
        };
        let Some(head) = head else {
            for (a, l) in bufs {
                self.mem.alloc.free(a, l);
            }
            return Err(if fail {
                FrontendError::OutOfMemory
            } else {
                FrontendError::QueueFull(queue)
            });
        };
        let id = self.next_id;
        self.next_id += 1;
        q.pending.insert(head, Pending { id, kind, bufs });
        // A failed kick (backend gone) shows as a request that never completes.
        let _ = q.kick.write(1);
        Ok(Token { queue, id })
    }

    /// Submit a SCSI command on request queue `queue` (an absolute queue index, 2 or
    /// more) to `lun` of the configured target, with `tag` as its id.
    pub fn submit(
        &mut self,
        queue: u16,
        lun: u16,
        tag: u64,
        cdb: &[u8],
        data_out: &[u8],
        data_in_len: u32,
    ) -> Result<Token, FrontendError> {
        self.submit_with(
            queue,
            lun,
            tag,
            task_attr::SIMPLE,
            cdb,
            data_out,
            data_in_len,
        )
    }

    /// [`Driver::submit`] with a task attribute ([`task_attr`]).
    #[allow(clippy::too_many_arguments)]
    pub fn submit_with(
        &mut self,
        queue: u16,
        lun: u16,
        tag: u64,
        attr: u8,
        cdb: &[u8],
        data_out: &[u8],
        data_in_len: u32,
    ) -> Result<Token, FrontendError> {
        if queue < REQUEST_QUEUE {
            return Err(FrontendError::NoQueue(queue));
        }
        if cdb.len() > wire::CDB_SIZE {
            return Err(FrontendError::CdbTooLong(cdb.len()));
        }
        let req = wire::cmd_req(wire::lun_field(self.target, lun), tag, attr, 0, 0, cdb);
        self.add_chain(
            queue,
            &[&req, data_out],
            &[wire::CMD_RESP_LEN as u32, data_in_len],
            Kind::Cmd { data_in_len },
        )
    }

    /// Submit a task management function on the control queue.
    pub fn submit_tmf(&mut self, subtype: u32, lun: u16, tag: u64) -> Result<Token, FrontendError> {
        let req = wire::tmf_req(subtype, wire::lun_field(self.target, lun), tag);
        self.add_chain(
            CONTROL_QUEUE,
            &[&req],
            &[wire::TMF_RESP_LEN as u32],
            Kind::Tmf,
        )
    }

    /// Submit an asynchronous notification query (`subscribe` false) or subscription.
    pub fn submit_an(
        &mut self,
        subscribe: bool,
        lun: u16,
        events: u32,
    ) -> Result<Token, FrontendError> {
        let kind = if subscribe {
            wire::T_AN_SUBSCRIBE
        } else {
            wire::T_AN_QUERY
        };
        let req = wire::an_req(kind, wire::lun_field(self.target, lun), events);
        self.add_chain(
            CONTROL_QUEUE,
            &[&req],
            &[wire::AN_RESP_LEN as u32],
            Kind::An,
        )
    }

    /// Give the device `n` event buffers. Events it reports are read by
    /// [`Driver::next_event`]; the buffers are not reposted by themselves.
    pub fn post_event_buffers(&mut self, n: usize) -> Result<(), FrontendError> {
        for _ in 0..n {
            self.add_chain(EVENT_QUEUE, &[], &[wire::EVENT_LEN as u32], Kind::Event)?;
        }
        Ok(())
    }

    /// Harvest every used ring; the number of requests and events completed.
    pub fn poll_completions(&mut self) -> usize {
        let mut n = 0;
        for (qi, q) in self.queues.iter_mut().enumerate() {
            while let Some((head, len)) = q.ring.pop_used(&self.mem.mem) {
                n += 1;
                let Some(p) = q.pending.remove(&head) else {
                    self.anomalies
                        .push(format!("queue {qi}: used head {head} was not available"));
                    continue;
                };
                let read = |i: usize| -> Vec<u8> {
                    let (addr, len) = p.bufs.get(i).copied().unwrap_or((0, 0));
                    let mut v = vec![0u8; len as usize];
                    if self.mem.mem.read_slice(&mut v, GuestAddress(addr)).is_err() {
                        v.clear();
                    }
                    v
                };
                // The writable buffers follow the readable ones in `bufs`.
                let writable_at = p.bufs.len()
                    - match p.kind {
                        Kind::Cmd { data_in_len } => 1 + usize::from(data_in_len > 0),
                        _ => 1,
                    };
                match p.kind {
                    Kind::Cmd { data_in_len } => {
                        let resp = read(writable_at);
                        let data_in = if data_in_len > 0 {
                            read(writable_at + 1)
                        } else {
                            Vec::new()
                        };
                        let r = wire::parse_cmd_resp(&resp, data_in, len);
                        self.done.insert(p.id, Completion::Cmd(r));
                    }
                    Kind::Tmf => {
                        let r = read(writable_at).first().copied().unwrap_or(0xff);
                        self.done.insert(p.id, Completion::Tmf(r));
                    }
                    Kind::An => {
                        let r = wire::parse_an_resp(&read(writable_at));
                        self.done.insert(p.id, Completion::An(r));
                    }
                    Kind::Event => self.events.push_back(wire::parse_event(&read(writable_at))),
                }
                for &(addr, len) in &p.bufs {
                    self.mem.alloc.free(addr, len);
                }
            }
        }
        n
    }

    /// Wait until any call eventfd fires or `limit` passes (short: rings are polled
    /// anyway, so a missed interrupt costs at most this).
    fn wait_call(&self, limit: Duration) {
        let mut fds: Vec<libc::pollfd> = self
            .queues
            .iter()
            .map(|q| libc::pollfd {
                fd: q.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = limit.as_millis().clamp(1, 10) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        for q in &self.queues {
            // Clear the counter; EAGAIN when it was not signalled.
            let _ = q.call.read();
        }
    }

    /// Wait for `token`'s completion, at most `timeout`.
    pub fn wait_completion(&mut self, token: Token, timeout: Duration) -> Option<Completion> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll_completions();
            if let Some(c) = self.done.remove(&token.id) {
                return Some(c);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.wait_call(left);
        }
    }

    /// Wait for a command's result, at most `timeout`. None on timeout (or if the token
    /// was not a command's).
    pub fn wait(&mut self, token: Token, timeout: Duration) -> Option<CmdResult> {
        match self.wait_completion(token, timeout)? {
            Completion::Cmd(r) => Some(r),
            _ => None,
        }
    }

    /// A completion that has arrived, without waiting.
    pub fn take(&mut self, token: Token) -> Option<Completion> {
        self.poll_completions();
        self.done.remove(&token.id)
    }

    /// Submit a command and wait for it; the tag is chosen here.
    pub fn command(
        &mut self,
        queue: u16,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        data_in_len: u32,
        timeout: Duration,
    ) -> Result<Option<CmdResult>, FrontendError> {
        let tag = self.next_id;
        let t = self.submit(queue, lun, tag, cdb, data_out, data_in_len)?;
        Ok(self.wait(t, timeout))
    }

    /// Send a task management function and wait for its `response` byte ([`super::response`]).
    pub fn tmf(
        &mut self,
        subtype: u32,
        lun: u16,
        tag: u64,
        timeout: Duration,
    ) -> Result<Option<u8>, FrontendError> {
        let t = self.submit_tmf(subtype, lun, tag)?;
        Ok(match self.wait_completion(t, timeout) {
            Some(Completion::Tmf(r)) => Some(r),
            _ => None,
        })
    }

    /// The next event the device reported, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll_completions();
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.wait_call(left);
        }
    }

    /// Guest memory free for buffers, in bytes (to check nothing leaks).
    pub fn free_memory(&self) -> u64 {
        self.mem.alloc.available()
    }
}
