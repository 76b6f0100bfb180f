//! The worker against virtio-queue's mock split queues: the test plays the guest's
//! driver, writing descriptor chains into guest memory and reading the used rings and
//! the responses back, while a small RAM disk whose reads can be held plays the device.

use std::sync::atomic::AtomicBool;

use scst_core::cmd::{Completer, Deferred};
use scst_core::{CmdCtx, Device, ExecMode, Target, TransportId};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::event::{new_event_consumer_and_notifier, EventFlag};

use super::*;

const QUEUE_SIZE: u16 = 16;
const REQUEST_QUEUE: u16 = FIRST_REQUEST_QUEUE;
const BLOCK: usize = 512;
const F_NEXT: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
const F_WRITE: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;

/// 64 KiB of RAM; a READ(10) while `hold` is set waits for the test to release it.
struct RamDisk {
    data: Mutex<Vec<u8>>,
    hold: AtomicBool,
    held: Mutex<Vec<(Completer, Vec<u8>)>>,
}

impl Device for RamDisk {
    fn name(&self) -> &str {
        "ram0"
    }
    fn handler_name(&self) -> &'static str {
        "test"
    }
    fn scsi_type(&self) -> u8 {
        0
    }
    fn execute(&self, _: &CmdCtx<'_>, cmd: &mut Cmd, _: ExecMode) -> Option<Response> {
        let op = cmd.cdb.opcode();
        if op != 0x28 && op != 0x2a {
            return Some(Response::good());
        }
        let lba = u32::from_be_bytes([cmd.cdb[2], cmd.cdb[3], cmd.cdb[4], cmd.cdb[5]]) as usize;
        let n = u16::from_be_bytes([cmd.cdb[7], cmd.cdb[8]]) as usize;
        let range = lba * BLOCK..(lba + n) * BLOCK;
        if range.end > self.data.lock().len() {
            return Some(Response::check(Sense::LBA_OUT_OF_RANGE));
        }
        Some(if op == 0x2a {
            let Some(data) = cmd.data_out.get(..n * BLOCK) else {
                return Some(Response::check(Sense::invalid_field_in_cdb(7, None)));
            };
            self.data.lock()[range].copy_from_slice(data);
            Response::good()
        } else {
            let data = self.data.lock()[range].to_vec();
            if self.hold.load(Ordering::Acquire) {
                let (d, c) = Deferred::new();
                self.held.lock().push((c, data));
                return Some(Response::deferred(d));
            }
            Response::data(data)
        })
    }
}

struct Rig {
    scst: Arc<Scst>,
    target: Arc<Target>,
    disk: Arc<RamDisk>,
    mem: GuestMem,
    vrings: Vec<VringRwLock<GuestMem>>,
    /// The guest driver's view of each queue (creating one resets its rings).
    mocks: Vec<MockSplitQueue<'static, GuestMemoryMmap<()>>>,
    worker: Worker,
    wake: Arc<Wake>,
    /// Next free descriptor index, per queue.
    next_desc: [u16; 3],
    /// Next free data address.
    next_buf: u64,
}

fn queue_base(q: u16) -> GuestAddress {
    GuestAddress(0x4000 * q as u64)
}

fn rig() -> Rig {
    let gm = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    // The mocks borrow the memory for the whole test: a clone of it (the same
    // mappings) is leaked for them.
    let leaked: &'static GuestMemoryMmap<()> = Box::leak(Box::new(gm.clone()));
    let mem = GuestMemoryAtomic::new(gm);
    let mut vrings = Vec::new();
    let mut mocks = Vec::new();
    for q in 0..=REQUEST_QUEUE {
        let mock = MockSplitQueue::create(leaked, queue_base(q), QUEUE_SIZE);
        let v = VringRwLock::new(mem.clone(), QUEUE_SIZE).unwrap();
        v.set_queue_size(QUEUE_SIZE);
        v.set_queue_info(
            mock.desc_table_addr().0,
            mock.avail_addr().0,
            mock.used_addr().0,
        )
        .unwrap();
        v.set_queue_ready(true);
        v.set_enabled(true);
        vrings.push(v);
        mocks.push(mock);
    }
    let scst = Scst::new(1);
    let disk = Arc::new(RamDisk {
        data: Mutex::new(vec![0; 64 << 10]),
        hold: AtomicBool::new(false),
        held: Mutex::new(Vec::new()),
    });
    scst.add_device(disk.clone()).unwrap();
    let target = scst.add_target("vhost", "vm1", None).unwrap();
    scst.add_lun(&target, None, 0, "ram0", false).unwrap();
    target.set_enabled(true);
    let (consumer, notifier) = new_event_consumer_and_notifier(EventFlag::NONBLOCK).unwrap();
    let wake = Arc::new(Wake::new(notifier));
    let session = scst.register_session_as(
        &target,
        TransportId::Sas { address: [0x50; 8] },
        "vm1".into(),
        wake.clone(),
    );
    let mut worker = Worker::new(scst.clone(), session, wake.clone(), consumer);
    worker.set_memory(mem.clone());
    worker.set_features((1 << VIRTIO_SCSI_F_HOTPLUG) | (1 << VIRTIO_SCSI_F_CHANGE));
    Rig {
        scst,
        target,
        disk,
        mem,
        vrings,
        mocks,
        worker,
        wake,
        next_desc: [0; 3],
        next_buf: 0x10_0000,
    }
}

/// One buffer of a chain: its bytes (readable) or its size (writable).
enum Buf<'a> {
    Out(&'a [u8]),
    In(u32),
}

impl Rig {
    /// Put a chain on queue `q` and return the guest addresses of its buffers.
    fn post(&mut self, q: u16, bufs: &[Buf<'_>]) -> Vec<GuestAddress> {
        let m = self.mem.memory();
        let first = self.next_desc[q as usize];
        let mut descs = Vec::new();
        let mut addrs = Vec::new();
        for (i, b) in bufs.iter().enumerate() {
            let addr = GuestAddress(self.next_buf);
            let (len, flags) = match b {
                Buf::Out(bytes) => {
                    m.write_slice(bytes, addr).unwrap();
                    (bytes.len() as u32, 0)
                }
                Buf::In(n) => (*n, F_WRITE),
            };
            self.next_buf += len.max(1) as u64 + 64;
            let last = i + 1 == bufs.len();
            let flags = if last { flags } else { flags | F_NEXT };
            let next = first + i as u16 + 1;
            descs.push(RawDescriptor::from(SplitDescriptor::new(
                addr.0, len, flags, next,
            )));
            addrs.push(addr);
        }
        self.mocks[q as usize]
            .add_desc_chains(&descs, first)
            .unwrap();
        self.next_desc[q as usize] = first + bufs.len() as u16;
        addrs
    }

    /// The used ring of queue `q`: (head, len) of each returned chain.
    fn used(&self, q: u16) -> Vec<(u32, u32)> {
        let mock = &self.mocks[q as usize];
        let n = mock.used().idx().load();
        (0..n)
            .map(|i| {
                let e = mock.used().ring().ref_at(i as usize).unwrap().load();
                (e.id(), e.len())
            })
            .collect()
    }

    fn read(&self, addr: GuestAddress, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.memory().read_slice(&mut v, addr).unwrap();
        v
    }

    /// Clear the power-on unit attention, then leave READ(10) `tag` of `blocks` at `lba`
    /// held in the device; returns the read's buffers (header, response, data-in).
    fn held_read(&mut self, tag: u64, lba: u32, blocks: u16) -> Vec<GuestAddress> {
        self.disk.hold.store(true, Ordering::Release);
        let resp = virtio::CMD_RESP_LEN as u32;
        self.post(
            REQUEST_QUEUE,
            &[Buf::Out(&cmd_req(0, 0, 1, &[0; 6])), Buf::In(resp)],
        );
        let read = self.post(
            REQUEST_QUEUE,
            &[
                Buf::Out(&cmd_req(0, 0, tag, &rw10(0x28, lba, blocks))),
                Buf::In(resp),
                Buf::In(blocks as u32 * BLOCK as u32),
            ],
        );
        self.kick(REQUEST_QUEUE);
        read
    }

    fn kick(&mut self, q: u16) {
        self.worker.handle(q, &self.vrings);
    }

    /// Wait for something from another thread, then run the worker's wake-up.
    fn wake_up(&mut self) {
        for _ in 0..500 {
            if !self.wake.done.lock().is_empty()
                || self.wake.luns_changed.load(Ordering::Acquire)
                || !self.wake.unit_attentions.lock().is_empty()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.kick(WAKE_EVENT);
    }
}

fn cmd_req(target: u8, lun: u16, tag: u64, cdb: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; virtio::CMD_REQ_LEN];
    b[..4].copy_from_slice(&[1, target, (lun >> 8) as u8, lun as u8]);
    b[8..16].copy_from_slice(&tag.to_le_bytes());
    b[19..19 + cdb.len()].copy_from_slice(cdb);
    b
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [op, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

/// (response, status, resid, sense_len) of a response header.
fn resp_of(b: &[u8]) -> (u8, u8, u32, u32) {
    let u = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    (b[11], b[10], u(4), u(0))
}

#[test]
fn write_then_read_across_segments() {
    let mut r = rig();
    let data: Vec<u8> = (0..2 * BLOCK).map(|i| (i * 7) as u8).collect();
    let req = cmd_req(0, 0, 1, &rw10(0x2a, 4, 2));
    // Header, then the data-out split unevenly over two buffers.
    let a = r.post(
        REQUEST_QUEUE,
        &[
            Buf::Out(&req),
            Buf::Out(&data[..100]),
            Buf::Out(&data[100..]),
            Buf::In(virtio::CMD_RESP_LEN as u32),
        ],
    );
    r.kick(REQUEST_QUEUE);
    // The fresh nexus reports its power-on unit attention first.
    let (response, status, _, sense_len) = resp_of(&r.read(a[3], virtio::CMD_RESP_LEN));
    assert_eq!(
        (response, status),
        (virtio::S_OK as u8, status::CHECK_CONDITION)
    );
    assert!(sense_len >= 18);
    let a = r.post(
        REQUEST_QUEUE,
        &[
            Buf::Out(&cmd_req(0, 0, 2, &rw10(0x2a, 4, 2))),
            Buf::Out(&data),
            Buf::In(virtio::CMD_RESP_LEN as u32),
        ],
    );
    r.kick(REQUEST_QUEUE);
    assert_eq!(resp_of(&r.read(a[2], virtio::CMD_RESP_LEN)), (0, 0, 0, 0));
    assert_eq!(r.disk.data.lock()[4 * BLOCK..6 * BLOCK], data[..]);

    let a = r.post(
        REQUEST_QUEUE,
        &[
            Buf::Out(&cmd_req(0, 0, 3, &rw10(0x28, 4, 2))),
            Buf::In(virtio::CMD_RESP_LEN as u32),
            Buf::In(300),
            Buf::In(2 * BLOCK as u32 - 300),
        ],
    );
    r.kick(REQUEST_QUEUE);
    assert_eq!(resp_of(&r.read(a[1], virtio::CMD_RESP_LEN)), (0, 0, 0, 0));
    let mut back = r.read(a[2], 300);
    back.extend(r.read(a[3], 2 * BLOCK - 300));
    assert_eq!(back, data);
    let used = r.used(REQUEST_QUEUE);
    assert_eq!(used.len(), 3);
    // A read's used length is its response header and its data.
    assert_eq!(used[2].1 as usize, virtio::CMD_RESP_LEN + 2 * BLOCK);
    // Short of the whole buffer: the residual says how much was not filled.
    let a = r.post(
        REQUEST_QUEUE,
        &[
            Buf::Out(&cmd_req(0, 0, 4, &rw10(0x28, 0, 1))),
            Buf::In(virtio::CMD_RESP_LEN as u32),
            Buf::In(4096),
        ],
    );
    r.kick(REQUEST_QUEUE);
    assert_eq!(
        resp_of(&r.read(a[1], virtio::CMD_RESP_LEN)),
        (0, 0, 4096 - BLOCK as u32, 0)
    );
    assert_eq!(r.scst.cmd_mem.used(), 0, "every buffer charged is released");
}

#[test]
fn malformed_and_misaddressed_requests_are_answered_not_fatal() {
    let mut r = rig();
    let resp = virtio::CMD_RESP_LEN as u32;
    // Another target: the guest's scan of targets 1..255 ends with BAD_TARGET.
    let a = r.post(
        REQUEST_QUEUE,
        &[Buf::Out(&cmd_req(1, 0, 1, &[0x00; 6])), Buf::In(resp)],
    );
    r.kick(REQUEST_QUEUE);
    assert_eq!(
        resp_of(&r.read(a[1], resp as usize)).0,
        virtio::S_BAD_TARGET as u8
    );
    // A header cut short, and a readable buffer after a writable one: returned unused.
    r.post(REQUEST_QUEUE, &[Buf::Out(&[1, 0, 0]), Buf::In(resp)]);
    r.post(
        REQUEST_QUEUE,
        &[
            Buf::Out(&cmd_req(0, 0, 2, &[0; 6])),
            Buf::In(resp),
            Buf::Out(&[0; 8]),
        ],
    );
    r.kick(REQUEST_QUEUE);
    let used = r.used(REQUEST_QUEUE);
    assert_eq!(used.len(), 3);
    assert_eq!((used[1].1, used[2].1), (0, 0));
    // Data-out beyond the transfer limit: refused without allocating it.
    let m = r.mem.memory();
    let first = r.next_desc[REQUEST_QUEUE as usize];
    let hdr = GuestAddress(0x20_0000);
    m.write_slice(&cmd_req(0, 0, 3, &rw10(0x2a, 0, 1)), hdr)
        .unwrap();
    let descs = [
        SplitDescriptor::new(hdr.0, virtio::CMD_REQ_LEN as u32, F_NEXT, first + 1),
        SplitDescriptor::new(0x21_0000, MAX_TRANSFER as u32 + 1, F_NEXT, first + 2),
        SplitDescriptor::new(0x30_0000, resp, F_WRITE, 0),
    ];
    let raw: Vec<RawDescriptor> = descs.into_iter().map(RawDescriptor::from).collect();
    r.mocks[REQUEST_QUEUE as usize]
        .add_desc_chains(&raw, first)
        .unwrap();
    r.next_desc[REQUEST_QUEUE as usize] += 3;
    drop(m);
    r.kick(REQUEST_QUEUE);
    assert_eq!(
        resp_of(&r.read(GuestAddress(0x30_0000), resp as usize)).0,
        virtio::S_FAILURE as u8
    );
    assert_eq!(r.scst.cmd_mem.used(), 0);
}

fn tmf_req(subtype: u32, lun: u16, tag: u64) -> Vec<u8> {
    let mut b = vec![0u8; virtio::TMF_REQ_LEN];
    b[4..8].copy_from_slice(&subtype.to_le_bytes());
    b[8..12].copy_from_slice(&[1, 0, (lun >> 8) as u8, lun as u8]);
    b[16..].copy_from_slice(&tag.to_le_bytes());
    b
}

#[test]
fn task_management_on_the_control_queue() {
    use virtio_bindings::virtio_scsi as vs;
    let mut r = rig();
    let resp = virtio::CMD_RESP_LEN as u32;
    // A read left running in the device.
    let read = r.held_read(7, 0, 1);
    assert_eq!(r.worker.in_flight(), 1);

    // QUERY TASK finds it; on a LUN that does not exist, INCORRECT LUN.
    let q = r.post(
        CONTROL_QUEUE,
        &[
            Buf::Out(&tmf_req(vs::VIRTIO_SCSI_T_TMF_QUERY_TASK, 0, 7)),
            Buf::In(1),
        ],
    );
    let bad = r.post(
        CONTROL_QUEUE,
        &[
            Buf::Out(&tmf_req(vs::VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, 9, 0)),
            Buf::In(1),
        ],
    );
    r.kick(CONTROL_QUEUE);
    assert_eq!(r.read(q[1], 1)[0], virtio::S_FUNCTION_SUCCEEDED as u8);
    assert_eq!(r.read(bad[1], 1)[0], virtio::S_INCORRECT_LUN as u8);

    // ABORT TASK waits for the running read: no answer until it completes.
    let abort = r.post(
        CONTROL_QUEUE,
        &[
            Buf::Out(&tmf_req(vs::VIRTIO_SCSI_T_TMF_ABORT_TASK, 0, 7)),
            Buf::In(1),
        ],
    );
    r.read(abort[1], 1);
    r.kick(CONTROL_QUEUE);
    assert_eq!(r.used(CONTROL_QUEUE).len(), 2);
    let (c, data) = r.disk.held.lock().pop().unwrap();
    c.complete(Response::data(data));
    r.wake_up();
    // The read ends ABORTED, then the TMF answers FUNCTION COMPLETE.
    assert_eq!(
        resp_of(&r.read(read[1], resp as usize)).0,
        virtio::S_ABORTED as u8
    );
    assert_eq!(r.used(CONTROL_QUEUE).len(), 3);
    assert_eq!(r.read(abort[1], 1)[0], virtio::S_FUNCTION_COMPLETE as u8);
    // Asking again finds nothing.
    let q = r.post(
        CONTROL_QUEUE,
        &[
            Buf::Out(&tmf_req(vs::VIRTIO_SCSI_T_TMF_QUERY_TASK, 0, 7)),
            Buf::In(1),
        ],
    );
    r.kick(CONTROL_QUEUE);
    assert_eq!(r.read(q[1], 1)[0], virtio::S_FUNCTION_COMPLETE as u8);
    assert_eq!(r.scst.cmd_mem.used(), 0);
}

/// (event, lun, reason) of an event buffer.
fn event_of(b: &[u8]) -> (u32, u16, u32) {
    let u = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    (u(0), ((b[6] as u16 & 0x3f) << 8) | b[7] as u16, u(12))
}

#[test]
fn lun_changes_and_capacity_reach_the_event_queue() {
    let mut r = rig();
    let ev = virtio::EVENT_LEN as u32;
    let bufs: Vec<GuestAddress> = (0..4)
        .map(|_| r.post(EVENT_QUEUE, &[Buf::In(ev)])[0])
        .collect();
    r.kick(EVENT_QUEUE);
    assert!(r.used(EVENT_QUEUE).is_empty(), "nothing to report yet");

    r.scst.add_lun(&r.target, None, 3, "ram0", false).unwrap();
    r.wake_up();
    assert_eq!(
        event_of(&r.read(bufs[0], ev as usize)),
        (virtio::T_TRANSPORT_RESET, 3, virtio::RESET_RESCAN)
    );
    r.scst
        .device("ram0")
        .unwrap()
        .queue_ua_all(Sense::UA_CAPACITY_DATA_CHANGED);
    r.wake_up();
    // LUNs 0 and 3 are both the device: each reports the capacity change.
    assert_eq!(
        event_of(&r.read(bufs[1], ev as usize)),
        (virtio::T_PARAM_CHANGE, 0, 0x092a)
    );
    assert_eq!(
        event_of(&r.read(bufs[2], ev as usize)),
        (virtio::T_PARAM_CHANGE, 3, 0x092a)
    );
    r.scst.lun_del(&r.target, None, 3).unwrap();
    r.wake_up();
    assert_eq!(
        event_of(&r.read(bufs[3], ev as usize)),
        (virtio::T_TRANSPORT_RESET, 3, virtio::RESET_REMOVED)
    );

    // With no buffer posted, events wait; past the limit the guest is told it
    // missed some (and rescans) when it posts the next one.
    for lun in 10..(10 + MAX_PENDING_EVENTS as u64 + 5) {
        r.scst.add_lun(&r.target, None, lun, "ram0", false).unwrap();
        r.wake_up();
    }
    let b = r.post(EVENT_QUEUE, &[Buf::In(ev)])[0];
    r.kick(EVENT_QUEUE);
    assert_eq!(event_of(&r.read(b, ev as usize)).0, virtio::T_EVENTS_MISSED);
}

#[test]
fn a_closed_connection_lets_go_of_its_session_when_the_backend_completes() {
    let mut r = rig();
    let read = r.held_read(2, 0, 8);
    assert!(r.scst.cmd_mem.used() > 0);
    let Rig {
        scst,
        target,
        disk,
        mut worker,
        ..
    } = r;
    worker.close();
    assert_eq!(target.sessions().len(), 1, "held by its running command");
    let reaper = std::thread::spawn(move || worker.reap());
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!reaper.is_finished(), "the reaper waits for the device");
    let (c, data) = disk.held.lock().pop().unwrap();
    c.complete(Response::data(data));
    reaper.join().unwrap();
    assert!(target.sessions().is_empty());
    assert_eq!(scst.cmd_mem.used(), 0);
    let _ = read;
}

#[test]
fn a_completion_after_the_guest_stopped_its_queue_writes_nothing() {
    let mut r = rig();
    r.disk.data.lock()[..BLOCK].fill(0xa5);
    let read = r.held_read(2, 0, 1);
    assert_eq!(r.used(REQUEST_QUEUE).len(), 1);
    // A device reset: the guest stops the queue (GET_VRING_BASE) and may reuse the
    // read's buffers while the device still holds the read.
    r.vrings[REQUEST_QUEUE as usize].set_queue_ready(false);
    let (c, data) = r.disk.held.lock().pop().unwrap();
    c.complete(Response::data(data));
    r.wake_up();
    assert_eq!(r.read(read[2], BLOCK), vec![0; BLOCK], "no data-in written");
    assert_eq!(
        r.read(read[1], 12),
        vec![0; 12],
        "no response header written"
    );
    assert_eq!(r.used(REQUEST_QUEUE).len(), 1, "nothing returned");
    assert_eq!(
        r.scst.cmd_mem.used(),
        0,
        "its buffer is released all the same"
    );
}

/// A guest writing anything at all into its descriptors and requests: addresses
/// outside its memory, lengths up to 4 GiB, indirect tables, readable after writable,
/// headers of random bytes or of random commands to random targets. The worker never
/// panics and returns every chain it is given.
#[test]
fn arbitrary_descriptor_chains_are_all_returned_and_nothing_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let opcodes = [
        0x00, 0x12, 0x25, 0x28, 0x2a, 0x35, 0x5e, 0x5f, 0xa0, 0x88, 0x8a, 0xff,
    ];
    let mut answered = 0;
    for _round in 0..200 {
        let mut r = rig();
        let m = r.mem.memory();
        let mut posted = 0;
        let mut used_descs = 0u16;
        while used_descs < QUEUE_SIZE {
            let n = (1 + next() % 5).min((QUEUE_SIZE - used_descs) as u64) as u16;
            let first = used_descs;
            // Half the chains have the shape of a request (header, data-out, response,
            // data-in) with random contents; the rest are random throughout.
            let shaped = next() % 2 == 0 && n >= 2;
            let mut descs = Vec::new();
            for i in 0..n {
                let mut addr = 0x10_0000 + (next() % (3 << 20));
                let (mut len, mut write) = match (shaped, i) {
                    (true, 0) => (virtio::CMD_REQ_LEN as u32, false),
                    (true, i) if i + 1 == n => ((next() % 8192) as u32, true),
                    (true, i) if i == n - 2 => (virtio::CMD_RESP_LEN as u32, true),
                    (true, _) => ((next() % 8192) as u32, false),
                    (false, _) => (
                        match next() % 4 {
                            0 => 0,
                            1 => u32::MAX - (next() % 4096) as u32,
                            _ => (next() % 8192) as u32,
                        },
                        next() % 2 == 0,
                    ),
                };
                if !shaped && next() % 4 == 0 {
                    addr = next();
                }
                if shaped && next() % 10 == 0 {
                    // One field of an otherwise good chain goes bad.
                    match next() % 3 {
                        0 => addr = next(),
                        1 => len = u32::MAX,
                        _ => write = !write,
                    }
                }
                if !write && addr < (4 << 20) && len <= 8192 {
                    let mut bytes = vec![0u8; len as usize];
                    bytes.iter_mut().for_each(|b| *b = next() as u8);
                    if i == 0 && bytes.len() >= virtio::CMD_REQ_LEN && next() % 4 != 0 {
                        let op = opcodes[(next() % opcodes.len() as u64) as usize];
                        let target = if next() % 4 == 0 { next() as u8 } else { 0 };
                        let mut cdb = [0u8; 16];
                        cdb.iter_mut().for_each(|b| *b = next() as u8);
                        cdb[0] = op;
                        let hdr = cmd_req(target, (next() % 3) as u16, next(), &cdb);
                        bytes[..virtio::CMD_REQ_LEN].copy_from_slice(&hdr);
                    }
                    let _ = m.write_slice(&bytes, GuestAddress(addr));
                }
                let mut flags = if write { F_WRITE } else { 0 };
                if next() % 50 == 0 {
                    flags |= 0x4; // VRING_DESC_F_INDIRECT, pointing anywhere
                }
                if i + 1 < n {
                    flags |= F_NEXT;
                }
                descs.push(RawDescriptor::from(SplitDescriptor::new(
                    addr,
                    len,
                    flags,
                    first + i + 1,
                )));
            }
            r.mocks[REQUEST_QUEUE as usize]
                .add_desc_chains(&descs, first)
                .unwrap();
            used_descs += n;
            posted += 1;
        }
        drop(m);
        r.kick(REQUEST_QUEUE);
        let used = r.used(REQUEST_QUEUE);
        assert_eq!(used.len(), posted, "every chain is returned");
        answered += used.iter().filter(|u| u.1 > 0).count();
        assert_eq!(r.scst.cmd_mem.used(), 0);
    }
    // Enough of them were requests for the command path to have been run.
    assert!(answered > 100, "{answered} chains answered");
}
