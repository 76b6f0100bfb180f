//! The frontend over a real vhost-user socket, against a small virtio-scsi device built
//! on rust-vmm's vhost-user-backend (the library a production backend builds on): the
//! negotiation, the shared memory and the ring addresses as a backend sees them.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::thread;

use vhost::vhost_user::{Listener, VhostUserProtocolFeatures};
use vhost_user_backend::{VhostUserBackendMut, VhostUserDaemon, VringRwLock, VringT};
use virtio_queue::QueueOwnedT;
use vm_memory::{Bytes, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::wire::{self, event, response, tmf};
use super::*;
use crate::scsi;

const T: Duration = Duration::from_secs(5);
const DISK: usize = 1 << 20;

/// A virtio-scsi device with one LUN in memory: INQUIRY, TEST UNIT READY, READ(10),
/// WRITE(10); task management answered FUNCTION SUCCEEDED; events handed out from a
/// list the test fills beforehand.
struct FakeScsi {
    mem: Option<GuestMemoryAtomic<GuestMemoryMmap>>,
    event_idx: bool,
    request_queues: u16,
    disk: Vec<u8>,
    events: Vec<Vec<u8>>,
    /// Task management requests seen: (subtype, lun field, tag).
    tmfs: Vec<(u32, [u8; 8], u64)>,
    /// (queue, tag) of each command seen.
    commands: Vec<(u16, u64)>,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl FakeScsi {
    fn command(&mut self, queue: u16, req: &[u8], data_in_cap: usize) -> (Vec<u8>, Vec<u8>) {
        let tag = u64::from_le_bytes(req[8..16].try_into().unwrap());
        self.commands.push((queue, tag));
        let cdb = &req[19..wire::CMD_REQ_LEN];
        let data_out = &req[wire::CMD_REQ_LEN..];
        let blocks = |c: &[u8]| {
            let lba = u32::from_be_bytes([c[2], c[3], c[4], c[5]]) as usize * 512;
            (lba, u16::from_be_bytes([c[7], c[8]]) as usize * 512)
        };
        let (status, sense, data) = match cdb[0] {
            0x00 => (0, vec![], vec![]),
            0x12 => {
                let mut d = vec![0, 0, 5, 2, 31, 0, 0, 0];
                d.extend_from_slice(b"FAKE    VHOST-FRONTEND  0001");
                (0, vec![], d)
            }
            0x28 => {
                let (off, len) = blocks(cdb);
                (0, vec![], self.disk[off..off + len].to_vec())
            }
            0x2a => {
                let (off, len) = blocks(cdb);
                self.disk[off..off + len].copy_from_slice(&data_out[..len]);
                (0, vec![], vec![])
            }
            _ => {
                let mut s = vec![0u8; 18];
                (s[0], s[2], s[7], s[12]) = (0x70, 5, 10, 0x20);
                (2, s, vec![])
            }
        };
        let mut resp = vec![0u8; wire::CMD_RESP_LEN];
        resp[0..4].copy_from_slice(&(sense.len() as u32).to_le_bytes());
        let resid = data_in_cap.saturating_sub(data.len()) as u32;
        resp[4..8].copy_from_slice(&resid.to_le_bytes());
        resp[10] = status;
        resp[11] = response::OK;
        resp[12..12 + sense.len()].copy_from_slice(&sense);
        (resp, data)
    }

    fn control(&mut self, req: &[u8]) -> Vec<u8> {
        let mut lun = [0u8; 8];
        match le32(req) {
            wire::T_TMF => {
                lun.copy_from_slice(&req[8..16]);
                let tag = u64::from_le_bytes(req[16..24].try_into().unwrap());
                self.tmfs.push((le32(&req[4..]), lun, tag));
                vec![response::FUNCTION_SUCCEEDED]
            }
            _ => vec![0, 0, 0, 0, response::OK],
        }
    }

    /// Serve every available chain of `queue`; chains on the event queue with no event
    /// to report are left with the device, as a real one keeps them.
    fn process(&mut self, queue: u16, vring: &VringRwLock) {
        let mem = self.mem.as_ref().unwrap().memory();
        let chains: Vec<_> = vring
            .get_mut()
            .get_queue_mut()
            .iter(mem.clone())
            .unwrap()
            .collect();
        for chain in chains {
            let head = chain.head_index();
            let descs: Vec<_> = chain.collect();
            let mut req = Vec::new();
            let mut writable = Vec::new();
            for d in &descs {
                if d.is_write_only() {
                    writable.push((d.addr(), d.len() as usize));
                } else {
                    let mut b = vec![0u8; d.len() as usize];
                    mem.read_slice(&mut b, d.addr()).unwrap();
                    req.extend_from_slice(&b);
                }
            }
            let cap: usize = writable.iter().map(|w| w.1).sum();
            let out = match queue {
                CONTROL_QUEUE => self.control(&req),
                EVENT_QUEUE => match self.events.pop() {
                    Some(e) => e,
                    None => continue,
                },
                q => {
                    let (mut resp, data) = self.command(q, &req, cap - wire::CMD_RESP_LEN);
                    resp.extend_from_slice(&data);
                    resp
                }
            };
            let mut at = 0;
            for (addr, len) in writable {
                let n = len.min(out.len() - at);
                mem.write_slice(&out[at..at + n], addr).unwrap();
                at += n;
            }
            vring.add_used(head, at as u32).unwrap();
        }
        vring.signal_used_queue().unwrap();
    }
}

impl VhostUserBackendMut for FakeScsi {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        2 + usize::from(self.request_queues)
    }

    fn max_queue_size(&self) -> usize {
        256
    }

    fn features(&self) -> u64 {
        [
            wire::feature::VERSION_1,
            wire::feature::RING_EVENT_IDX,
            wire::feature::PROTOCOL_FEATURES,
            wire::feature::SCSI_HOTPLUG,
            wire::feature::SCSI_CHANGE,
        ]
        .iter()
        .fold(0, |f, b| f | 1 << b)
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn set_event_idx(&mut self, enabled: bool) {
        self.event_idx = enabled;
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let mut c = Vec::new();
        for v in [u32::from(self.request_queues), 126, 0xffff, 128, 16, 96, 32] {
            c.extend_from_slice(&v.to_le_bytes());
        }
        c.extend_from_slice(&[0, 0, 255, 0]);
        c.extend_from_slice(&16383u32.to_le_bytes());
        c.into_iter()
            .skip(offset as usize)
            .take(size as usize)
            .collect()
    }

    /// Without an exit event, dropping a daemon waits forever for its ring worker.
    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn update_memory(&mut self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> std::io::Result<()> {
        self.mem = Some(mem);
        Ok(())
    }

    fn handle_event(
        &mut self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> std::io::Result<()> {
        let vring = &vrings[usize::from(device_event)];
        loop {
            if self.event_idx {
                vring.disable_notification().unwrap();
            }
            self.process(device_event, vring);
            if !self.event_idx || !vring.enable_notification().unwrap() {
                return Ok(());
            }
        }
    }
}

/// A backend on a fresh socket that serves `connections` connections in turn.
fn start_backend(
    request_queues: u16,
    events: Vec<Vec<u8>>,
    connections: usize,
) -> (tempfile::TempDir, PathBuf, Arc<RwLock<FakeScsi>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vhost.sock");
    let mut listener = Listener::new(&path, true).unwrap();
    let backend = Arc::new(RwLock::new(FakeScsi {
        mem: None,
        event_idx: false,
        request_queues,
        disk: vec![0; DISK],
        events,
        tmfs: Vec::new(),
        commands: Vec::new(),
    }));
    let shared = Arc::clone(&backend);
    // Detached: the last accept may wait for a connection that never comes. A daemon
    // serves one frontend (a second SET_OWNER is refused), so each gets a new one.
    thread::spawn(move || {
        for _ in 0..connections {
            let mut daemon = VhostUserDaemon::new(
                "fake-scsi".into(),
                Arc::clone(&shared),
                GuestMemoryAtomic::new(GuestMemoryMmap::new()),
            )
            .unwrap();
            daemon.start(&mut listener).unwrap();
            let _ = daemon.wait();
        }
    });
    (dir, path, backend)
}

#[test]
fn commands_tmfs_and_events_over_the_socket() {
    let mut ev = Vec::new();
    ev.extend_from_slice(&event::TRANSPORT_RESET.to_le_bytes());
    ev.extend_from_slice(&wire::lun_field(0, 3));
    ev.extend_from_slice(&event::REASON_RESCAN.to_le_bytes());
    let (_dir, path, backend) = start_backend(2, vec![ev], 1);
    let cfg = FrontendConfig {
        request_queues: 2,
        event_idx: true,
        ..FrontendConfig::default()
    };
    let mut f = VhostFrontend::connect_with(&path, &cfg).expect("connect");
    assert!(f
        .protocol_features()
        .contains(VhostUserProtocolFeatures::REPLY_ACK));
    assert_ne!(f.features() & 1 << wire::feature::RING_EVENT_IDX, 0);
    let c = f.config().expect("config space");
    assert_eq!((c.num_queues, c.cdb_size, c.max_target), (2, 32, 255));

    let r = f
        .command(REQUEST_QUEUE, 0, &scsi::inquiry(false, 0, 96), &[], 96, T)
        .unwrap()
        .expect("INQUIRY answered");
    assert!(r.is_good());
    assert_eq!(&r.data_in[8..16], b"FAKE    ");
    assert_eq!(r.resid, 96 - 36);

    // A write on one request queue, read back on the other.
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let w = f
        .submit(REQUEST_QUEUE, 0, 0x77, &scsi::write10(8, 8), &data, 0)
        .unwrap();
    assert!(f.wait(w, T).expect("WRITE answered").is_good());
    let r = f
        .command(REQUEST_QUEUE + 1, 0, &scsi::read10(8, 8), &[], 4096, T)
        .unwrap()
        .expect("READ answered");
    assert_eq!(r.data_in, data);
    assert_eq!(backend.read().unwrap().disk[8 * 512..9 * 512], data[..512]);

    let r = f
        .command(REQUEST_QUEUE, 0, &[0xff, 0, 0, 0, 0, 0], &[], 0, T)
        .unwrap()
        .expect("answered");
    assert_eq!((r.status, r.sense_key()), (2, Some((5, 0x20, 0))));

    let resp = f.tmf(tmf::ABORT_TASK, 0, 0x77, T).unwrap();
    assert_eq!(resp, Some(response::FUNCTION_SUCCEEDED));
    let an = f.submit_an(false, 0, 0).unwrap();
    assert!(matches!(f.wait_completion(an, T), Some(Completion::An(_))));

    f.post_event_buffers(2).unwrap();
    let e = f.next_event(T).expect("the queued event");
    assert_eq!(
        (e.event, e.reason),
        (event::TRANSPORT_RESET, event::REASON_RESCAN)
    );
    assert_eq!(e.target_lun(), Some((0, 3)));
    assert_eq!(f.next_event(Duration::from_millis(50)), None);

    let b = backend.read().unwrap();
    assert_eq!(b.tmfs, [(tmf::ABORT_TASK, wire::lun_field(0, 0), 0x77)]);
    assert!(b.commands.contains(&(REQUEST_QUEUE, 0x77)));
    assert!(b.commands.iter().any(|&(q, _)| q == REQUEST_QUEUE + 1));
    assert!(f.anomalies().is_empty());
}

#[test]
fn a_second_frontend_finds_what_the_first_wrote() {
    let (_dir, path, _backend) = start_backend(1, Vec::new(), 2);
    let mut f = VhostFrontend::connect(&path).expect("connect");
    let data = vec![0xa5; 512];
    let r = f
        .command(REQUEST_QUEUE, 0, &scsi::write10(3, 1), &data, 0, T)
        .unwrap()
        .expect("WRITE answered");
    assert!(r.is_good());
    f.disconnect();

    let mut g = VhostFrontend::connect(&path).expect("reconnect");
    let r = g
        .command(REQUEST_QUEUE, 0, &scsi::read10(3, 1), &[], 512, T)
        .unwrap()
        .expect("READ answered");
    assert_eq!(r.data_in, data);
    assert!(g.is_connected());
}
