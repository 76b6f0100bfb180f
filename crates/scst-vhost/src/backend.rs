//! One vhost-user connection as rust-vmm's `vhost-user-backend` sees it: the device's
//! features and queues, guest memory updates, and the event loop's callbacks, all
//! handed to the connection's [`Worker`]. The event loop runs one thread for every
//! queue of the device, so the worker, its nexus and its queues are touched by that
//! thread only (the lock below is taken by the protocol thread only for memory and
//! feature updates, and at teardown).

use std::io;

use parking_lot::Mutex;
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_bindings::virtio_scsi::{VIRTIO_SCSI_F_CHANGE, VIRTIO_SCSI_F_HOTPLUG};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::worker::{GuestMem, Worker, NUM_QUEUES};

/// The largest virtqueue a guest may set up (QEMU's `virtqueue_size` goes to 1024).
const MAX_QUEUE_SIZE: usize = 1024;

pub struct Conn {
    state: Mutex<State>,
    /// Stops the event loop's thread when the connection ends.
    exit: (EventConsumer, EventNotifier),
    /// The connection's log context (target, session), entered for each event.
    span: tracing::Span,
}

/// What the frontend set, kept for a worker installed after it did.
#[derive(Default)]
struct State {
    worker: Option<Worker>,
    mem: Option<GuestMem>,
    features: u64,
    event_idx: bool,
}

impl Conn {
    pub fn new(span: tracing::Span) -> io::Result<Conn> {
        Ok(Conn {
            state: Mutex::new(State::default()),
            exit: new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC)?,
            span,
        })
    }

    /// The connection's session is registered: its worker takes over, with whatever
    /// the frontend has set up meanwhile.
    pub fn install(&self, mut worker: Worker) {
        let mut st = self.state.lock();
        if let Some(mem) = st.mem.clone() {
            worker.set_memory(mem);
        }
        worker.set_features(st.features);
        worker.set_event_idx(st.event_idx);
        st.worker = Some(worker);
    }

    /// Take the worker away from the event loop (the connection has ended).
    pub fn take(&self) -> Option<Worker> {
        self.state.lock().worker.take()
    }
}

impl VhostUserBackend for Conn {
    type Bitmap = ();
    type Vring = VringRwLock<GuestMem>;

    fn num_queues(&self) -> usize {
        NUM_QUEUES as usize
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_SCSI_F_HOTPLUG)
            | (1 << VIRTIO_SCSI_F_CHANGE)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        let mut st = self.state.lock();
        st.features = features;
        if let Some(w) = st.worker.as_mut() {
            w.set_features(features);
        }
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
    }

    fn set_event_idx(&self, enabled: bool) {
        let mut st = self.state.lock();
        st.event_idx = enabled;
        if let Some(w) = st.worker.as_mut() {
            w.set_event_idx(enabled);
        }
    }

    fn update_memory(&self, mem: GuestMem) -> io::Result<()> {
        let mut st = self.state.lock();
        if let Some(w) = st.worker.as_mut() {
            w.set_memory(mem.clone());
        }
        st.mem = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        Some((self.exit.0.try_clone().ok()?, self.exit.1.try_clone().ok()?))
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Self::Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        let _span = self.span.enter();
        if let Some(w) = self.state.lock().worker.as_mut() {
            w.handle(device_event, vrings);
        }
        // Nothing the guest does stops the event loop: bad requests are answered.
        Ok(())
    }
}

impl Conn {
    /// Stop the event loop's thread.
    pub fn stop(&self) {
        let _ = self.exit.1.notify();
    }
}
