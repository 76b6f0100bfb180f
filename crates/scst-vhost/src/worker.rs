//! The virtqueue worker of one vhost-user connection: it owns the connection's
//! [`Nexus`] and is the only thread that touches its queues. It pops requests from the
//! request queues and submits them, answers the control queue's task management
//! through the core, writes responses and completions back into guest memory, and
//! reports LUN and parameter changes on the event queue.
//!
//! Everything that happens elsewhere reaches it through [`Wake`]: completions from the
//! I/O pool, aborts and closes from other sessions and from management, LUN table
//! changes. Each is recorded under a short lock and the worker is woken by an eventfd
//! that the vhost-user event loop polls beside the queues' kick fds; none of them ever
//! waits for the worker.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use scsi_wire::{status, Sense};
use scst_core::{
    Cdb, Cmd, CompletionQueue, DeviceEntry, Event, IntMap, Nexus, Response, Scst, Session,
    SessionEvents, TaskAttr, Tmf, TmfStatus,
};
use vhost_user_backend::{VringRwLock, VringT};
use virtio_bindings::virtio_scsi::{VIRTIO_SCSI_F_CHANGE, VIRTIO_SCSI_F_HOTPLUG};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::event::{EventConsumer, EventNotifier};

use crate::chain::Chain;
use crate::virtio::{self, Address, CmdReq, CtrlReq};

pub type GuestMem = GuestMemoryAtomic<GuestMemoryMmap<()>>;

/// virtio-scsi's queues: control, event, then the request queues.
pub const CONTROL_QUEUE: u16 = 0;
pub const EVENT_QUEUE: u16 = 1;
pub const FIRST_REQUEST_QUEUE: u16 = 2;
/// Request queues offered (QEMU's `num_queues` may ask for up to this many).
pub const MAX_REQUEST_QUEUES: u16 = 16;
pub const NUM_QUEUES: u16 = FIRST_REQUEST_QUEUE + MAX_REQUEST_QUEUES;
/// The event id of [`Wake`]'s eventfd in the vhost-user event loop (ids up to
/// `NUM_QUEUES` are the queues' and the loop's own).
pub const WAKE_EVENT: u16 = NUM_QUEUES + 1;

/// The most data one command may move either way: Linux's virtio-scsi asks for at most
/// `max_sectors` (0xFFFF sectors, QEMU's default), just under 32 MiB.
pub const MAX_TRANSFER: usize = 32 << 20;
/// Events kept for a guest that posts no event buffers; past this the guest is told
/// that it missed some and rescans.
const MAX_PENDING_EVENTS: usize = 64;

/// What other threads hand the worker, and the eventfd that wakes it.
pub struct Wake {
    done: Mutex<Vec<(u64, Response)>>,
    aborts: Mutex<Vec<Arc<DeviceEntry>>>,
    unit_attentions: Mutex<Vec<(u64, Sense)>>,
    luns_changed: AtomicBool,
    /// Ends the vhost-user connection (set once the connection is accepted).
    close: Mutex<Option<Box<dyn Fn() + Send>>>,
    closed: AtomicBool,
    notifier: EventNotifier,
    /// What the driver's counters show, published by the worker once per turn (and by
    /// the reaper): connected, commands not yet answered, data buffer bytes held.
    pub connected: AtomicBool,
    pub commands: AtomicUsize,
    pub buffer_bytes: AtomicUsize,
}

impl Wake {
    pub fn new(notifier: EventNotifier) -> Wake {
        Wake {
            done: Mutex::new(Vec::new()),
            aborts: Mutex::new(Vec::new()),
            unit_attentions: Mutex::new(Vec::new()),
            luns_changed: AtomicBool::new(false),
            close: Mutex::new(None),
            closed: AtomicBool::new(false),
            notifier,
            connected: AtomicBool::new(true),
            commands: AtomicUsize::new(0),
            buffer_bytes: AtomicUsize::new(0),
        }
    }

    /// What ends the connection when the core closes the session.
    pub fn on_close(&self, close: Box<dyn Fn() + Send>) {
        let mut c = self.close.lock();
        if self.closed.load(Ordering::Acquire) {
            close();
        }
        *c = Some(close);
    }

    fn notify(&self) {
        // Fails only if the counter would overflow, when a wake-up is pending anyway.
        let _ = self.notifier.notify();
    }
}

impl CompletionQueue for Wake {
    fn push(&self, tag: u64, resp: Response) {
        let mut done = self.done.lock();
        done.push((tag, resp));
        // The worker takes the whole list after reading the eventfd: only the push that
        // finds it empty needs to wake it.
        if done.len() == 1 {
            drop(done);
            self.notify();
        }
    }
}

impl SessionEvents for Wake {
    fn abort_device_tasks(&self, device: &Arc<DeviceEntry>) {
        self.aborts.lock().push(device.clone());
        self.notify();
    }

    fn close(&self) {
        let c = self.close.lock();
        self.closed.store(true, Ordering::Release);
        if let Some(close) = c.as_ref() {
            close();
        }
    }

    fn luns_changed(&self) {
        self.luns_changed.store(true, Ordering::Release);
        self.notify();
    }

    fn unit_attention(&self, lun: u64, sense: Sense) {
        self.unit_attentions.lock().push((lun, sense));
        self.notify();
    }
}

/// A response header's fields.
struct Head<'a> {
    response: u8,
    status: u8,
    resid: u32,
    sense: &'a [u8],
}

impl Head<'_> {
    /// A response code alone.
    fn only(response: u8) -> Head<'static> {
        Head {
            response,
            status: 0,
            resid: 0,
            sense: &[],
        }
    }
}

/// What a submitted command keeps until its response: where to write it.
pub struct Ctx {
    queue: u16,
    chain: Chain,
    /// Data-out bytes the guest sent (for the residual of a write).
    out_len: u32,
    /// Bytes charged to `scst_max_cmd_mem`.
    charge: usize,
}

/// The worker's state (see the module docs).
pub struct Worker {
    scst: Arc<Scst>,
    nexus: Nexus<Ctx>,
    wake: Arc<Wake>,
    consumer: EventConsumer,
    mem: Option<GuestMem>,
    features: u64,
    event_idx: bool,
    /// The LUNs the guest knows of, with the device each is: a replaced LUN is
    /// reported removed and added again.
    known: Vec<(u64, usize)>,
    events: VecDeque<[u8; virtio::EVENT_LEN]>,
    events_missed: bool,
    /// TMFs waiting for the commands they abort: their control queue chains.
    tmfs: IntMap<u64, Chain>,
    next_tmf: u64,
    /// Bytes this connection holds in `scst_max_cmd_mem`.
    charged: usize,
    /// Queues with used buffers the guest has not been told of yet (bit per queue).
    to_signal: u32,
}

fn lun_identity(session: &Session) -> Vec<(u64, usize)> {
    session
        .luns()
        .entries
        .iter()
        .map(|t| (t.lun, Arc::as_ptr(&t.device) as usize))
        .collect()
}

impl Worker {
    pub fn new(
        scst: Arc<Scst>,
        session: Arc<Session>,
        wake: Arc<Wake>,
        consumer: EventConsumer,
    ) -> Worker {
        let known = lun_identity(&session);
        scst.cmd_mem.join();
        Worker {
            nexus: Nexus::new(scst.clone(), session, wake.clone()),
            scst,
            wake,
            consumer,
            mem: None,
            features: 0,
            event_idx: false,
            known,
            events: VecDeque::new(),
            events_missed: false,
            tmfs: IntMap::default(),
            next_tmf: 0,
            charged: 0,
            to_signal: 0,
        }
    }

    pub fn set_memory(&mut self, mem: GuestMem) {
        self.mem = Some(mem);
    }

    pub fn set_features(&mut self, features: u64) {
        self.features = features;
    }

    pub fn set_event_idx(&mut self, on: bool) {
        self.event_idx = on;
    }

    /// Commands submitted and not answered.
    pub fn in_flight(&self) -> usize {
        self.nexus.len()
    }

    /// One event of the vhost-user event loop: a queue's kick, or [`WAKE_EVENT`].
    pub fn handle(&mut self, event: u16, vrings: &[VringRwLock<GuestMem>]) {
        let Some(mem) = self.mem.clone() else {
            return;
        };
        let mem = mem.memory();
        match event {
            CONTROL_QUEUE => {
                if let Some(v) = vrings.get(CONTROL_QUEUE as usize) {
                    while let Some(chain) = pop(v, &mem) {
                        self.control(chain, vrings, &mem);
                    }
                }
            }
            EVENT_QUEUE => {}
            q if (FIRST_REQUEST_QUEUE..NUM_QUEUES).contains(&q) => {
                if let Some(v) = vrings.get(q as usize) {
                    self.request_queue(q, v, vrings, &mem);
                }
            }
            WAKE_EVENT => self.woken(vrings, &mem),
            _ => {}
        }
        self.drain(vrings, &mem);
        self.post_events(vrings, &mem);
        self.signal(vrings);
        self.nexus.end_turn();
        self.publish();
    }

    /// Make this turn's counts visible to management.
    fn publish(&self) {
        self.wake
            .commands
            .store(self.nexus.len(), Ordering::Relaxed);
        self.wake
            .buffer_bytes
            .store(self.charged, Ordering::Relaxed);
    }

    fn request_queue(
        &mut self,
        q: u16,
        v: &VringRwLock<GuestMem>,
        vrings: &[VringRwLock<GuestMem>],
        mem: &GuestMemoryMmap<()>,
    ) {
        loop {
            if self.event_idx {
                // Fails only for a queue whose rings are outside guest memory.
                let _ = v.disable_notification();
            }
            while let Some(chain) = pop(v, mem) {
                self.request(q, chain, vrings, mem);
                // Responses of commands answered inline go back as they come, so a
                // long batch does not hold the first ones back.
                self.drain(vrings, mem);
            }
            if !self.event_idx || !v.enable_notification().unwrap_or(false) {
                break;
            }
        }
    }

    /// One request-queue chain: checked, read and submitted, or answered at once.
    fn request(
        &mut self,
        queue: u16,
        chain: Result<Chain, u16>,
        vrings: &[VringRwLock<GuestMem>],
        mem: &GuestMemoryMmap<()>,
    ) {
        let chain = match chain {
            Ok(c) => c,
            Err(head) => return self.used(vrings, queue, head, mem),
        };
        if chain.readable_len() < virtio::CMD_REQ_LEN || chain.writable_len() < virtio::CMD_RESP_LEN
        {
            // The guest's own mistake: at debug, so that it cannot flood the log.
            log::debug!("virtio-scsi request too short for its headers: returned unused");
            return self.used(vrings, queue, chain.head, mem);
        }
        let mut hdr = [0u8; virtio::CMD_REQ_LEN];
        if chain.read(mem, 0, &mut hdr).is_err() {
            return self.fail(vrings, queue, chain, virtio::S_FAILURE as u8, mem);
        }
        let req = CmdReq::decode(&hdr);
        let lun = match req.address {
            Address::Lun { target: 0, lun } => lun,
            // One target per controller: the guest's scan of the others ends here.
            _ => return self.fail(vrings, queue, chain, virtio::S_BAD_TARGET as u8, mem),
        };
        let out_len = chain.readable_len() - virtio::CMD_REQ_LEN;
        let in_cap = (chain.writable_len() - virtio::CMD_RESP_LEN).min(MAX_TRANSFER);
        if out_len > MAX_TRANSFER || self.nexus.contains(req.tag) {
            return self.fail(vrings, queue, chain, virtio::S_FAILURE as u8, mem);
        }
        let charge = out_len + in_cap;
        if !self.scst.cmd_mem.try_charge(self.charged, charge) {
            let st = if self.nexus.is_empty() {
                status::BUSY
            } else {
                status::TASK_SET_FULL
            };
            let head = Head {
                status: st,
                resid: in_cap as u32,
                ..Head::only(virtio::S_OK as u8)
            };
            return self.answer(vrings, queue, chain, head, mem);
        }
        self.charged += charge;
        let mut data_out = Vec::new();
        if out_len > 0 {
            data_out.resize(out_len, 0);
            if chain.read(mem, virtio::CMD_REQ_LEN, &mut data_out).is_err() {
                self.release(charge);
                return self.fail(vrings, queue, chain, virtio::S_FAILURE as u8, mem);
            }
        }
        let Some(cdb) = Cdb::from_buffer(req.cdb, req.cdb_len() as u8) else {
            self.release(charge);
            return self.fail(vrings, queue, chain, virtio::S_FAILURE as u8, mem);
        };
        let attr = match req.task_attr {
            1 => TaskAttr::Ordered,
            2 => TaskAttr::HeadOfQueue,
            3 => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        };
        let cmd = Cmd {
            cdb,
            lun,
            tag: req.tag,
            attr,
            data_out,
            expected_in: in_cap as u32,
        };
        let ctx = Ctx {
            queue,
            chain,
            out_len: out_len as u32,
            charge,
        };
        self.nexus.submit(req.tag, cmd, ctx);
    }

    /// One control-queue chain: a task management function or an asynchronous
    /// notification request.
    fn control(
        &mut self,
        chain: Result<Chain, u16>,
        vrings: &[VringRwLock<GuestMem>],
        mem: &GuestMemoryMmap<()>,
    ) {
        let chain = match chain {
            Ok(c) => c,
            Err(head) => return self.used(vrings, CONTROL_QUEUE, head, mem),
        };
        let mut b = [0u8; virtio::TMF_REQ_LEN];
        let n = chain.readable_len().min(b.len());
        if chain.read(mem, 0, &mut b[..n]).is_err() {
            return self.used(vrings, CONTROL_QUEUE, chain.head, mem);
        }
        match CtrlReq::decode(&b[..n]) {
            CtrlReq::Tmf {
                subtype,
                address,
                tag,
            } => {
                let Address::Lun { target: 0, lun } = address else {
                    return self.tmf_answer(vrings, chain, virtio::S_BAD_TARGET as u8, mem);
                };
                let Some(tmf) = tmf_of(subtype, lun, tag) else {
                    return self.tmf_answer(vrings, chain, virtio::S_FUNCTION_REJECTED as u8, mem);
                };
                let _lun = tracing::error_span!("lun", lun).entered();
                self.next_tmf += 1;
                let id = self.next_tmf;
                let status = self.nexus.tmf(id, tmf);
                log::info!("{tmf:?}: {status:?}");
                // Aborted commands are answered ABORTED before the TMF's own answer.
                self.drain(vrings, mem);
                match status {
                    Some(s) => self.tmf_answer(vrings, chain, tmf_response(s), mem),
                    None => {
                        self.tmfs.insert(id, chain);
                    }
                }
            }
            // No asynchronous notifications are offered: none is granted.
            CtrlReq::An { .. } => {
                let resp = virtio::encode_an_resp(0, virtio::S_OK as u8);
                self.deliver(vrings, CONTROL_QUEUE, chain.head, mem, || {
                    chain.write(mem, 0, &resp).unwrap_or(0) as u32
                });
            }
            CtrlReq::Unknown(ty) => {
                log::debug!("virtio-scsi control request of unknown type {ty}: returned unused");
                self.used(vrings, CONTROL_QUEUE, chain.head, mem);
            }
        }
    }

    fn tmf_answer(
        &mut self,
        vrings: &[VringRwLock<GuestMem>],
        chain: Chain,
        response: u8,
        mem: &GuestMemoryMmap<()>,
    ) {
        self.deliver(vrings, CONTROL_QUEUE, chain.head, mem, || {
            chain.write(mem, 0, &[response]).unwrap_or(0) as u32
        });
    }

    /// The wake eventfd fired: completions, aborts, LUN and parameter changes.
    fn woken(&mut self, vrings: &[VringRwLock<GuestMem>], mem: &GuestMemoryMmap<()>) {
        // Read first: whatever is recorded after this read wakes the worker again.
        let _ = self.consumer.consume();
        let done = std::mem::take(&mut *self.wake.done.lock());
        for (tag, resp) in done {
            self.nexus.complete(tag, resp);
            self.drain(vrings, mem);
        }
        let aborts = std::mem::take(&mut *self.wake.aborts.lock());
        for dev in aborts {
            self.nexus.abort_device(&dev);
        }
        if self.wake.luns_changed.swap(false, Ordering::AcqRel) {
            self.report_lun_changes();
        }
        let uas = std::mem::take(&mut *self.wake.unit_attentions.lock());
        if self.features & (1 << VIRTIO_SCSI_F_CHANGE) != 0 {
            for (lun, sense) in uas {
                let reason = virtio::param_change_reason(sense.asc, sense.ascq);
                self.event(virtio::encode_event(virtio::T_PARAM_CHANGE, lun, reason));
            }
        }
    }

    /// Compare the session's LUN table with what the guest knows and tell it of each
    /// LUN removed and added (virtio-scsi hotplug), so it needs no manual rescan.
    fn report_lun_changes(&mut self) {
        let now = lun_identity(self.nexus.session());
        if self.features & (1 << VIRTIO_SCSI_F_HOTPLUG) != 0 {
            let known = std::mem::take(&mut self.known);
            for &(lun, dev) in &known {
                if !now.contains(&(lun, dev)) {
                    self.event(virtio::encode_event(
                        virtio::T_TRANSPORT_RESET,
                        lun,
                        virtio::RESET_REMOVED,
                    ));
                }
            }
            for &(lun, dev) in &now {
                if !known.contains(&(lun, dev)) {
                    self.event(virtio::encode_event(
                        virtio::T_TRANSPORT_RESET,
                        lun,
                        virtio::RESET_RESCAN,
                    ));
                }
            }
        }
        self.known = now;
    }

    fn event(&mut self, ev: [u8; virtio::EVENT_LEN]) {
        if self.events.len() >= MAX_PENDING_EVENTS {
            self.events.clear();
            self.events_missed = true;
        } else {
            self.events.push_back(ev);
        }
    }

    /// Fill the guest's event buffers with pending events, oldest first.
    fn post_events(&mut self, vrings: &[VringRwLock<GuestMem>], mem: &GuestMemoryMmap<()>) {
        if self.events.is_empty() && !self.events_missed {
            return;
        }
        let Some(v) = vrings.get(EVENT_QUEUE as usize) else {
            return;
        };
        loop {
            let ev = if self.events_missed {
                virtio::encode_event(virtio::T_EVENTS_MISSED, 0, 0)
            } else {
                match self.events.front() {
                    Some(ev) => *ev,
                    None => break,
                }
            };
            let Some(chain) = pop(v, mem) else {
                break;
            };
            let mut n = 0;
            match chain {
                Ok(c) => self.deliver(vrings, EVENT_QUEUE, c.head, mem, || {
                    n = c.write(mem, 0, &ev).unwrap_or(0);
                    n as u32
                }),
                Err(head) => self.used(vrings, EVENT_QUEUE, head, mem),
            }
            if n == ev.len() {
                if self.events_missed {
                    self.events_missed = false;
                } else {
                    self.events.pop_front();
                }
            }
        }
    }

    /// Act on what the nexus has: responses to write, aborted commands, TMF results.
    fn drain(&mut self, vrings: &[VringRwLock<GuestMem>], mem: &GuestMemoryMmap<()>) {
        while let Some(ev) = self.nexus.poll_event() {
            match ev {
                Event::Respond { ctx, resp, .. } => self.respond(vrings, ctx, resp, mem),
                Event::Aborted { ctx, .. } => {
                    self.release(ctx.charge);
                    let Ctx { queue, chain, .. } = ctx;
                    self.fail(vrings, queue, chain, virtio::S_ABORTED as u8, mem);
                }
                Event::TmfDone { tag, status } => {
                    if let Some(chain) = self.tmfs.remove(&tag) {
                        self.tmf_answer(vrings, chain, tmf_response(status), mem);
                    }
                }
            }
        }
    }

    /// Write a command's data-in and response into guest memory and return its chain.
    fn respond(
        &mut self,
        vrings: &[VringRwLock<GuestMem>],
        ctx: Ctx,
        resp: Response,
        mem: &GuestMemoryMmap<()>,
    ) {
        self.release(ctx.charge);
        let Response {
            status,
            sense,
            data,
            static_data,
            descriptor_sense,
            data_out_len,
            ..
        } = resp;
        let data: &[u8] = static_data.unwrap_or(&data);
        let chain = &ctx.chain;
        let in_cap = chain.writable_len() - virtio::CMD_RESP_LEN;
        let sent = &data[..data.len().min(in_cap)];
        let sense = sense.map(|s| s.encode(descriptor_sense));
        let sense = sense.as_deref().unwrap_or_default();
        let out_len = ctx.out_len;
        self.deliver(vrings, ctx.queue, chain.head, mem, || {
            let (written, response) = match chain.write(mem, virtio::CMD_RESP_LEN, sent) {
                Ok(n) => (n, virtio::S_OK as u8),
                Err(_) => (0, virtio::S_FAILURE as u8),
            };
            let resid = match data_out_len {
                Some(n) if out_len > 0 => out_len.saturating_sub(n),
                _ => (in_cap - written) as u32,
            };
            let hdr = virtio::encode_cmd_resp(response, status, resid, sense);
            match chain.write(mem, 0, &hdr) {
                Ok(n) => (n + written) as u32,
                Err(_) => 0,
            }
        });
    }

    /// A request ended by the transport: only the response code.
    fn fail(
        &mut self,
        vrings: &[VringRwLock<GuestMem>],
        queue: u16,
        chain: Chain,
        response: u8,
        mem: &GuestMemoryMmap<()>,
    ) {
        self.answer(vrings, queue, chain, Head::only(response), mem);
    }

    /// Answer a request with a response header and no data-in.
    fn answer(
        &mut self,
        vrings: &[VringRwLock<GuestMem>],
        queue: u16,
        chain: Chain,
        head: Head<'_>,
        mem: &GuestMemoryMmap<()>,
    ) {
        let hdr = virtio::encode_cmd_resp(head.response, head.status, head.resid, head.sense);
        self.deliver(vrings, queue, chain.head, mem, || {
            chain.write(mem, 0, &hdr).unwrap_or(0) as u32
        });
    }

    /// Return a chain with nothing written to it.
    fn used(
        &mut self,
        vrings: &[VringRwLock<GuestMem>],
        queue: u16,
        head: u16,
        mem: &GuestMemoryMmap<()>,
    ) {
        self.deliver(vrings, queue, head, mem, || 0);
    }

    /// Write into a chain's buffers (`write` returns the bytes written) and return it to
    /// its queue, all under the queue's lock and only while the queue runs: once the
    /// guest has stopped it (a device reset: VHOST_USER_GET_VRING_BASE), a late
    /// completion writes nothing, not even into the chain's buffers, which the guest may
    /// already use again.
    fn deliver(
        &mut self,
        vrings: &[VringRwLock<GuestMem>],
        queue: u16,
        head: u16,
        mem: &GuestMemoryMmap<()>,
        write: impl FnOnce() -> u32,
    ) {
        use virtio_queue::QueueT;
        let Some(v) = vrings.get(queue as usize) else {
            return;
        };
        let mut state = v.get_mut();
        let q = state.get_queue_mut();
        if !q.ready() {
            return;
        }
        let len = write();
        // Fails only for a used ring outside guest memory: the guest's own doing.
        if q.add_used(mem, head, len).is_ok() {
            self.to_signal |= 1 << queue;
        }
    }

    /// Tell the guest of used buffers, once per queue per turn (and, with
    /// VIRTIO_RING_F_EVENT_IDX, only where it asked to be told).
    fn signal(&mut self, vrings: &[VringRwLock<GuestMem>]) {
        let mut pending = std::mem::take(&mut self.to_signal);
        while pending != 0 {
            let q = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            if let Some(v) = vrings.get(q) {
                if !self.event_idx || v.needs_notification().unwrap_or(true) {
                    let _ = v.signal_used_queue();
                }
            }
        }
        self.nexus.sent();
    }

    fn release(&mut self, charge: usize) {
        self.charged -= charge;
        self.scst.cmd_mem.release(charge);
    }

    /// The connection ended: nothing more is answered. Commands still running end
    /// without a response when they complete; [`Worker::reap`] waits for them.
    pub fn close(&mut self) {
        // The nexus is lost now, not when the last stalled command returns: its SPC-2
        // reservations go and its devices hear of it at once.
        self.nexus.session().unregister();
        self.nexus.close();
        self.discard();
        self.wake.connected.store(false, Ordering::Release);
        self.publish();
    }

    /// Wait (on this thread) for the commands still running elsewhere, then let go of
    /// the session. Called off every thread others wait for: a stalled backend holds
    /// only this.
    pub fn reap(mut self) {
        while self.nexus.running() > 0 {
            let done = std::mem::take(&mut *self.wake.done.lock());
            if done.is_empty() {
                // A blocking read of the eventfd: the next completion writes it.
                let _ = self.consumer.consume();
                continue;
            }
            for (tag, resp) in done {
                self.nexus.complete(tag, resp);
            }
            self.discard();
            self.publish();
        }
    }

    fn discard(&mut self) {
        while let Some(ev) = self.nexus.poll_event() {
            match ev {
                Event::Respond { ctx, .. } | Event::Aborted { ctx, .. } => self.release(ctx.charge),
                Event::TmfDone { .. } => {}
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.wake.commands.store(0, Ordering::Relaxed);
        self.wake.buffer_bytes.store(0, Ordering::Relaxed);
        self.scst.cmd_mem.release(self.charged);
        self.scst.cmd_mem.leave();
        self.nexus.session().unregister();
    }
}

/// Pop the next available chain of a queue.
fn pop(v: &VringRwLock<GuestMem>, mem: &GuestMemoryMmap<()>) -> Option<Result<Chain, u16>> {
    use virtio_queue::QueueT;
    let mut state = v.get_mut();
    let q = state.get_queue_mut();
    if !q.ready() {
        return None;
    }
    q.pop_descriptor_chain(mem).map(Chain::collect)
}

/// virtio-scsi's TMF subtypes (virtio 1.2, 5.6.6.2) as the core's functions.
fn tmf_of(subtype: u32, lun: u64, tag: u64) -> Option<Tmf> {
    use virtio_bindings::virtio_scsi as vs;
    Some(match subtype {
        vs::VIRTIO_SCSI_T_TMF_ABORT_TASK => Tmf::AbortTask { lun, tag },
        vs::VIRTIO_SCSI_T_TMF_ABORT_TASK_SET => Tmf::AbortTaskSet { lun },
        vs::VIRTIO_SCSI_T_TMF_CLEAR_ACA => Tmf::ClearAca { lun },
        vs::VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET => Tmf::ClearTaskSet { lun },
        vs::VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET => Tmf::ItNexusReset,
        vs::VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET => Tmf::LunReset { lun },
        vs::VIRTIO_SCSI_T_TMF_QUERY_TASK => Tmf::QueryTask { lun, tag },
        vs::VIRTIO_SCSI_T_TMF_QUERY_TASK_SET => Tmf::QueryTaskSet { lun },
        _ => return None,
    })
}

fn tmf_response(s: TmfStatus) -> u8 {
    (match s {
        // SAM: aborting a task that is not there is a completed function.
        TmfStatus::Complete | TmfStatus::TaskNotExist => virtio::S_FUNCTION_COMPLETE,
        TmfStatus::Succeeded => virtio::S_FUNCTION_SUCCEEDED,
        TmfStatus::LunNotExist => virtio::S_INCORRECT_LUN,
        TmfStatus::NotSupported | TmfStatus::Rejected => virtio::S_FUNCTION_REJECTED,
    }) as u8
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
