//! The driver against a simulated device that reads the rings from guest memory as a
//! backend would: descriptor layouts, completion order, full queues. The socket side
//! is in backend_tests.rs, and examples/vhost_scsi_check.rs drives an external backend.

use std::sync::atomic::Ordering;
use std::thread;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::driver::Driver;
use super::vring::{Allocator, DESC_F_NEXT, DESC_F_WRITE};
use super::wire::{self, event, response, tmf};
use super::*;

const T: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    writable: bool,
}

/// The device side of one queue, working on a copy of the guest memory mapping.
struct SimQueue {
    mem: GuestMemoryMmap,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    call: EventFd,
    last_avail: u16,
    used_idx: u16,
}

impl SimQueue {
    fn new(drv: &Driver, queue: u16) -> SimQueue {
        let q = &drv.queues[usize::from(queue)];
        SimQueue {
            mem: drv.mem.mem.clone(),
            size: q.ring.size,
            desc: q.ring.desc,
            avail: q.ring.avail,
            used: q.ring.used,
            call: q.call.try_clone().unwrap(),
            last_avail: 0,
            used_idx: 0,
        }
    }

    /// The next available chain: its head and descriptors.
    fn pop(&mut self) -> Option<(u16, Vec<Desc>)> {
        let idx: u16 = self
            .mem
            .load(GuestAddress(self.avail + 2), Ordering::Acquire)
            .unwrap();
        if idx == self.last_avail {
            return None;
        }
        let slot = self.avail + 4 + 2 * u64::from(self.last_avail % self.size);
        let head: u16 = self.mem.read_obj(GuestAddress(slot)).unwrap();
        self.last_avail = self.last_avail.wrapping_add(1);
        let mut chain = Vec::new();
        let mut i = head;
        loop {
            let at = self.desc + 16 * u64::from(i);
            let addr: u64 = self.mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(at + 8)).unwrap();
            let flags: u16 = self.mem.read_obj(GuestAddress(at + 12)).unwrap();
            let next: u16 = self.mem.read_obj(GuestAddress(at + 14)).unwrap();
            chain.push(Desc {
                addr,
                len,
                writable: flags & DESC_F_WRITE != 0,
            });
            if flags & DESC_F_NEXT == 0 {
                break;
            }
            assert!(chain.len() <= usize::from(self.size), "descriptor loop");
            i = next;
        }
        Some((head, chain))
    }

    fn read(&self, d: &Desc) -> Vec<u8> {
        let mut v = vec![0u8; d.len as usize];
        self.mem.read_slice(&mut v, GuestAddress(d.addr)).unwrap();
        v
    }

    fn write(&self, d: &Desc, bytes: &[u8]) {
        assert!(bytes.len() <= d.len as usize && d.writable);
        self.mem.write_slice(bytes, GuestAddress(d.addr)).unwrap();
    }

    /// Return a chain to the driver and interrupt it.
    fn push(&mut self, head: u16, len: u32) {
        let elem = self.used + 4 + 8 * u64::from(self.used_idx % self.size);
        self.mem
            .write_obj(u32::from(head), GuestAddress(elem))
            .unwrap();
        self.mem.write_obj(len, GuestAddress(elem + 4)).unwrap();
        self.used_idx = self.used_idx.wrapping_add(1);
        self.mem
            .store(
                self.used_idx,
                GuestAddress(self.used + 2),
                Ordering::Release,
            )
            .unwrap();
        self.call.write(1).unwrap();
    }

    /// The driver's used_event (EVENT_IDX).
    fn used_event(&self) -> u16 {
        let at = self.avail + 4 + 2 * u64::from(self.size);
        self.mem.read_obj(GuestAddress(at)).unwrap()
    }
}

/// A command response with status, sense and residual.
fn cmd_resp(status: u8, sense: &[u8], resid: u32) -> Vec<u8> {
    let mut r = vec![0u8; wire::CMD_RESP_LEN];
    r[0..4].copy_from_slice(&(sense.len() as u32).to_le_bytes());
    r[4..8].copy_from_slice(&resid.to_le_bytes());
    r[10] = status;
    r[11] = response::OK;
    r[12..12 + sense.len()].copy_from_slice(sense);
    r
}

fn driver(cfg: &FrontendConfig) -> Driver {
    Driver::new(cfg, cfg.event_idx).expect("guest memory and queues")
}

#[test]
fn layouts_follow_the_virtio_scsi_spec() {
    assert_eq!(wire::CMD_REQ_LEN, 51);
    assert_eq!(wire::CMD_RESP_LEN, 108);
    assert_eq!(wire::TMF_REQ_LEN, 24);
    assert_eq!(wire::EVENT_LEN, 16);
    assert_eq!(wire::lun_field(0, 0), [1, 0, 0x40, 0, 0, 0, 0, 0]);
    assert_eq!(wire::lun_field(3, 0x123), [1, 3, 0x41, 0x23, 0, 0, 0, 0]);
    assert_eq!(
        wire::parse_lun_field(&wire::lun_field(3, 0x123)),
        Some((3, 0x123))
    );
    assert_eq!(wire::parse_lun_field(&[0; 8]), None);

    let req = wire::cmd_req(wire::lun_field(0, 1), 0x1122, 1, 2, 3, &[0x28, 9]);
    assert_eq!(req.len(), 51);
    assert_eq!(req[8..16], 0x1122u64.to_le_bytes());
    assert_eq!(req[16..19], [1, 2, 3]);
    assert_eq!(req[19..21], [0x28, 9]);
    assert!(req[21..].iter().all(|&b| b == 0));

    let t = wire::tmf_req(tmf::ABORT_TASK, wire::lun_field(0, 2), 77);
    assert_eq!(t[0..4], [0; 4], "VIRTIO_SCSI_T_TMF");
    assert_eq!(t[4..8], 0u32.to_le_bytes());
    assert_eq!(t[8..16], wire::lun_field(0, 2));
    assert_eq!(t[16..24], 77u64.to_le_bytes());

    let sense = [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0];
    let r = wire::parse_cmd_resp(&cmd_resp(2, &sense, 3), vec![9; 8], 108);
    assert_eq!((r.status, r.response, r.resid), (2, 0, 3));
    assert_eq!(r.sense, sense);
    assert_eq!(r.sense_key(), Some((5, 0x24, 0)));
    assert_eq!(r.data_in, [9; 5], "data-in less the residual");
}

#[test]
fn the_allocator_reuses_and_merges_what_is_freed() {
    let mut a = Allocator::new(4096, 1 << 20);
    let x = a.alloc(100).unwrap();
    let y = a.alloc(5000).unwrap();
    let z = a.alloc(1).unwrap();
    assert!(x < y && y < z);
    a.free(y, 5000);
    assert_eq!(a.alloc(4000), Some(y), "first fit reuses the hole");
    a.free(y, 4000);
    a.free(x, 100);
    a.free(z, 1);
    assert_eq!(a.available(), 1 << 20);
    assert_eq!(
        a.alloc(1 << 20),
        Some(4096),
        "all merged back into one range"
    );
    assert_eq!(a.alloc(1), None);
}

#[test]
fn a_command_is_laid_out_and_completed_as_linux_does_it() {
    let mut drv = driver(&FrontendConfig {
        target: 2,
        ..FrontendConfig::default()
    });
    let mut dev = SimQueue::new(&drv, REQUEST_QUEUE);
    let free = drv.free_memory();
    let cdb = [0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0];
    let t = drv
        .submit(REQUEST_QUEUE, 5, 0xabc, &cdb, &[0x5a; 512], 64)
        .unwrap();
    assert_eq!(drv.in_flight(REQUEST_QUEUE), 1);
    let (head, chain) = dev.pop().expect("the chain is available");
    let shape: Vec<_> = chain.iter().map(|d| (d.len, d.writable)).collect();
    assert_eq!(shape, [(51, false), (512, false), (108, true), (64, true)]);
    let req = dev.read(&chain[0]);
    assert_eq!(req[0..8], wire::lun_field(2, 5));
    assert_eq!(req[8..16], 0xabcu64.to_le_bytes());
    assert_eq!(req[19..35], cdb);
    assert_eq!(dev.read(&chain[1]), [0x5a; 512]);
    dev.write(&chain[2], &cmd_resp(0, &[], 32));
    dev.write(&chain[3], &[7; 32]);
    dev.push(head, 108 + 32);

    let r = drv.wait(t, T).expect("completed");
    assert!(r.is_good());
    assert_eq!(r.data_in, [7; 32]);
    assert_eq!((r.resid, r.used_len), (32, 140));
    assert_eq!(drv.in_flight(REQUEST_QUEUE), 0);
    assert_eq!(drv.free_memory(), free, "buffers returned");
    assert!(drv.anomalies().is_empty());
}

#[test]
fn completions_out_of_order_reach_their_own_waiters() {
    let mut drv = driver(&FrontendConfig::default());
    let mut dev = SimQueue::new(&drv, REQUEST_QUEUE);
    let tokens: Vec<_> = (0..4u64)
        .map(|i| {
            drv.submit(REQUEST_QUEUE, 0, i, &[0x12, 0, 0, 0, 8, 0], &[], 8)
                .unwrap()
        })
        .collect();
    let mut chains: Vec<_> = (0..4).map(|_| dev.pop().unwrap()).collect();
    assert!(dev.pop().is_none());
    chains.reverse();
    for (head, chain) in &chains {
        let tag = dev.read(&chain[0])[8];
        dev.write(&chain[1], &cmd_resp(0, &[], 0));
        dev.write(&chain[2], &[tag; 8]);
        dev.push(*head, 116);
    }
    for (i, t) in tokens.into_iter().enumerate().rev() {
        assert_eq!(drv.wait(t, T).unwrap().data_in, [i as u8; 8]);
    }
    assert!(drv
        .wait(Token { queue: 2, id: 999 }, Duration::from_millis(20))
        .is_none());
}

#[test]
fn a_full_queue_is_refused_until_a_chain_comes_back() {
    let mut drv = driver(&FrontendConfig {
        queue_size: 8,
        ..FrontendConfig::default()
    });
    let mut dev = SimQueue::new(&drv, REQUEST_QUEUE);
    let write = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let t = drv
        .submit(REQUEST_QUEUE, 0, 1, &write, &[1; 512], 0)
        .unwrap();
    let t2 = drv
        .submit(REQUEST_QUEUE, 0, 2, &write, &[1; 512], 0)
        .unwrap();
    assert!(matches!(
        drv.submit(REQUEST_QUEUE, 0, 3, &write, &[1; 512], 0),
        Err(FrontendError::QueueFull(2))
    ));
    let (head, chain) = dev.pop().unwrap();
    assert_eq!(chain.len(), 3, "no data-in descriptor for a write");
    dev.write(&chain[2], &cmd_resp(0, &[], 0));
    dev.push(head, 108);
    assert!(drv.wait(t, T).unwrap().is_good());
    drv.submit(REQUEST_QUEUE, 0, 3, &write, &[1; 512], 0)
        .unwrap();
    assert!(drv.take(t2).is_none());
    assert!(matches!(
        drv.submit(REQUEST_QUEUE, 0, 4, &[0; 33], &[], 0),
        Err(FrontendError::CdbTooLong(33))
    ));
    assert!(matches!(
        drv.submit(EVENT_QUEUE, 0, 4, &[0; 6], &[], 0),
        Err(FrontendError::NoQueue(1))
    ));
}

#[test]
fn task_management_goes_on_the_control_queue() {
    let mut drv = driver(&FrontendConfig::default());
    let mut ctl = SimQueue::new(&drv, CONTROL_QUEUE);
    // The device answers on its own thread, while tmf() waits.
    let dev = thread::spawn(move || {
        let deadline = Instant::now() + T;
        let (head, chain) = loop {
            if let Some(c) = ctl.pop() {
                break c;
            }
            assert!(Instant::now() < deadline, "no TMF arrived");
            thread::sleep(Duration::from_millis(1));
        };
        let shape: Vec<_> = chain.iter().map(|d| (d.len, d.writable)).collect();
        assert_eq!(shape, [(24, false), (1, true)]);
        let req = ctl.read(&chain[0]);
        ctl.write(&chain[1], &[response::FUNCTION_SUCCEEDED]);
        ctl.push(head, 1);
        req
    });
    let r = drv.tmf(tmf::ABORT_TASK, 3, 0x55, T).unwrap();
    assert_eq!(r, Some(response::FUNCTION_SUCCEEDED));
    let req = dev.join().unwrap();
    assert_eq!(
        req,
        wire::tmf_req(tmf::ABORT_TASK, wire::lun_field(0, 3), 0x55)
    );
    // Nobody answers this one: the call returns after the timeout.
    let start = Instant::now();
    assert_eq!(
        drv.tmf(tmf::LOGICAL_UNIT_RESET, 0, 0, Duration::from_millis(50))
            .unwrap(),
        None
    );
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn events_fill_the_posted_buffers() {
    let mut drv = driver(&FrontendConfig {
        event_idx: true,
        ..FrontendConfig::default()
    });
    let mut evq = SimQueue::new(&drv, EVENT_QUEUE);
    assert_eq!(drv.next_event(Duration::from_millis(20)), None);
    drv.post_event_buffers(2).unwrap();
    let (head, chain) = evq.pop().unwrap();
    assert_eq!(
        (chain.len(), chain[0].len, chain[0].writable),
        (1, 16, true)
    );
    let mut e = Vec::new();
    e.extend_from_slice(&event::TRANSPORT_RESET.to_le_bytes());
    e.extend_from_slice(&wire::lun_field(0, 7));
    e.extend_from_slice(&event::REASON_RESCAN.to_le_bytes());
    evq.write(&chain[0], &e);
    evq.push(head, 16);
    let got = drv.next_event(T).expect("an event");
    assert_eq!(got.event, event::TRANSPORT_RESET);
    assert_eq!(got.reason, event::REASON_RESCAN);
    assert_eq!(got.target_lun(), Some((0, 7)));
    assert_eq!(
        evq.used_event(),
        1,
        "EVENT_IDX: interrupt on the next used entry"
    );
    assert_eq!(drv.in_flight(EVENT_QUEUE), 1, "one buffer still posted");
}

#[test]
fn a_used_head_never_made_available_is_an_anomaly() {
    let mut drv = driver(&FrontendConfig::default());
    let mut dev = SimQueue::new(&drv, REQUEST_QUEUE);
    dev.push(17, 0);
    assert_eq!(drv.poll_completions(), 1);
    assert_eq!(drv.anomalies().len(), 1, "{:?}", drv.anomalies());
}

#[test]
fn connecting_to_nothing_fails() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        VhostFrontend::connect(dir.path().join("none.sock")),
        Err(FrontendError::Connect(_))
    ));
    assert!(matches!(
        VhostFrontend::connect_with(
            dir.path().join("none.sock"),
            &FrontendConfig {
                queue_size: 100,
                ..FrontendConfig::default()
            }
        ),
        Err(FrontendError::Config(_))
    ));
}

#[test]
fn a_frontend_can_move_to_another_thread() {
    fn movable<T: Send>() {}
    movable::<VhostFrontend>();
}

#[test]
fn the_config_space_decodes_field_by_field() {
    let mut b = Vec::new();
    for v in [4u32, 126, 0xffff, 128, 16, 96, 32] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&255u16.to_le_bytes());
    b.extend_from_slice(&16383u32.to_le_bytes());
    let c = wire::parse_config(&b);
    assert_eq!((c.num_queues, c.seg_max, c.max_sectors), (4, 126, 0xffff));
    assert_eq!((c.event_info_size, c.sense_size, c.cdb_size), (16, 96, 32));
    assert_eq!((c.max_channel, c.max_target, c.max_lun), (0, 255, 16383));
}

/// A "backend" that accepts one connection and runs `then` on it.
fn fake_backend(
    then: impl FnOnce(std::os::unix::net::UnixStream) + Send + 'static,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    thread::JoinHandle<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vhost.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let h = thread::spawn(move || then(l.accept().unwrap().0));
    (dir, path, h)
}

#[test]
fn a_backend_that_never_answers_fails_the_connect_in_bounded_time() {
    let (_dir, path, h) = fake_backend(|mut s| {
        // Read what comes, answer nothing, until the frontend gives up.
        let mut buf = [0u8; 256];
        while matches!(std::io::Read::read(&mut s, &mut buf), Ok(n) if n > 0) {}
    });
    let start = Instant::now();
    let cfg = FrontendConfig {
        reply_timeout: Duration::from_millis(200),
        ..FrontendConfig::default()
    };
    let r = VhostFrontend::connect_with(&path, &cfg);
    assert!(matches!(r, Err(FrontendError::NoReply(_))), "{:?}", r.err());
    assert!(start.elapsed() < Duration::from_secs(2));
    h.join().unwrap();
}

#[test]
fn a_backend_that_hangs_up_fails_the_connect() {
    let (_dir, path, h) = fake_backend(drop);
    assert!(matches!(
        VhostFrontend::connect(&path),
        Err(FrontendError::Protocol(_))
    ));
    h.join().unwrap();
}
