//! The command lifecycle through the transport-facing interface, driven by a fake
//! transport: task set ordering, the checks when a task becomes enabled, completion
//! from the I/O pool and from a device's own engine, and task management.

use std::sync::mpsc;
use std::sync::Arc;

use parking_lot::Mutex;
use scsi_wire::{status, Sense};

use crate::cmd::{Cdb, Cmd, Completer, Deferred, ExecMode, Response, Resume, TaskAttr};
use crate::device::{CmdCtx, Device};
use crate::lifecycle::{CompletionQueue, Event, Nexus, Tmf};
use crate::registry::{DeviceEntry, Scst};
use crate::session::{Session, SessionEvents, TmfStatus, TransportId};

/// Opcodes the fake device treats specially.
const TEST_UNIT_READY: u8 = 0x00;
/// Completes later, through a `Completer` the test holds (an asynchronous engine).
const ASYNC_OP: u8 = 0xC0;
/// Would block: runs again, blocking, on the I/O pool.
const BLOCKING_OP: u8 = 0xC1;
/// Would block: stops, and the rest runs on the I/O pool.
const RESUMING_OP: u8 = 0xC2;

/// Records the order in which commands reached it, by tag.
#[derive(Default)]
struct FakeDev {
    executed: Mutex<Vec<u64>>,
    /// Commands run in Blocking mode from the top.
    reruns: Arc<Mutex<u32>>,
    /// Commands whose rest ran after they stopped.
    resumed: Arc<Mutex<Vec<u64>>>,
    pending: Mutex<Vec<(u64, Completer)>>,
    aborts: Mutex<u32>,
}

impl FakeDev {
    /// Complete the asynchronous command `tag`.
    fn finish(&self, tag: u64) {
        let mut p = self.pending.lock();
        let i = p.iter().position(|(t, _)| *t == tag).expect("pending");
        let (_, c) = p.remove(i);
        drop(p);
        c.complete(Response::good());
    }
}

impl Device for FakeDev {
    fn name(&self) -> &str {
        "fake0"
    }
    fn handler_name(&self) -> &'static str {
        "test"
    }
    fn scsi_type(&self) -> u8 {
        0
    }
    fn execute(&self, _: &CmdCtx<'_>, cmd: &mut Cmd, mode: ExecMode) -> Option<Response> {
        if mode == ExecMode::Blocking {
            *self.reruns.lock() += 1;
        }
        match (cmd.cdb.opcode(), mode) {
            (BLOCKING_OP, ExecMode::Inline) => return None,
            (RESUMING_OP, ExecMode::Inline) => {
                let resumed = self.resumed.clone();
                return Some(Response::resume(Resume::new(move |cmd| {
                    resumed.lock().push(cmd.tag);
                    Response::data(cmd.data_out.clone())
                })));
            }
            (ASYNC_OP, _) => {
                self.executed.lock().push(cmd.tag);
                let (d, c) = Deferred::new();
                self.pending.lock().push((cmd.tag, c));
                return Some(Response::deferred(d));
            }
            _ => {}
        }
        self.executed.lock().push(cmd.tag);
        Some(Response::good())
    }
    fn abort_running(&self) {
        *self.aborts.lock() += 1;
    }
}

struct NoEvents;

impl SessionEvents for NoEvents {
    fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {}
    fn close(&self) {}
}

/// The fake transport's completion queue: what finished elsewhere, in order.
struct Queue(Mutex<mpsc::Sender<(u64, Response)>>);

impl CompletionQueue for Queue {
    fn push(&self, tag: u64, resp: Response) {
        let _ = self.0.lock().send((tag, resp));
    }
}

struct Harness {
    scst: Arc<Scst>,
    dev: Arc<FakeDev>,
    nexus: Nexus<&'static str>,
    done: mpsc::Receiver<(u64, Response)>,
}

fn cmd(tag: u64, lun: u64, op: u8, attr: TaskAttr) -> Cmd {
    Cmd {
        cdb: Cdb::new(&[op, 0, 0, 0, 0, 0]).unwrap(),
        lun,
        tag,
        attr,
        data_out: Vec::new(),
        expected_in: 0,
    }
}

fn session(scst: &Arc<Scst>, name: &str) -> Arc<Session> {
    let t = scst.target("iscsi", "iqn.t").expect("target");
    scst.register_session(
        &t,
        TransportId::Iscsi {
            name: name.to_string(),
            isid: Some([0x40, 0, 0, 0, 0, 1]),
        },
        Arc::new(NoEvents),
    )
}

impl Harness {
    fn new() -> Harness {
        let scst = Scst::new(1);
        let dev = Arc::new(FakeDev::default());
        scst.add_device(dev.clone()).unwrap();
        let t = scst.add_target("iscsi", "iqn.t", Some(1)).unwrap();
        scst.add_lun(&t, None, 0, "fake0", false).unwrap();
        let s = session(&scst, "iqn.a");
        let (tx, done) = mpsc::channel();
        let nexus = Nexus::new(scst.clone(), s, Arc::new(Queue(Mutex::new(tx))));
        let mut h = Harness {
            scst,
            dev,
            nexus,
            done,
        };
        // The power-on UA goes to the first command.
        h.nexus
            .submit(99, cmd(99, 0, TEST_UNIT_READY, TaskAttr::Simple), "ua");
        assert_eq!(h.responses(), vec![(99, Some(Sense::UA_POWER_ON_RESET))]);
        h.dev.executed.lock().clear();
        h
    }

    /// Responses since the last call, with their sense; other events are refused.
    fn responses(&mut self) -> Vec<(u64, Option<Sense>)> {
        let mut v = Vec::new();
        while let Some(ev) = self.nexus.poll_event() {
            match ev {
                Event::Respond { tag, resp, .. } => v.push((tag, resp.sense)),
                other => panic!("unexpected {other:?}"),
            }
        }
        v
    }

    /// What the nexus asks the transport to do; the responses are then "sent", and
    /// the turn ends, as a transport does before it waits for more input.
    fn events(&mut self) -> Vec<Event<&'static str>> {
        let ev = std::iter::from_fn(|| self.nexus.poll_event()).collect();
        self.nexus.end_turn();
        ev
    }

    fn executed(&self) -> Vec<u64> {
        self.dev.executed.lock().clone()
    }

    /// Complete the asynchronous command `tag` and hand its completion to the nexus,
    /// as a transport does on its own thread.
    fn finish(&mut self, tag: u64) {
        self.dev.finish(tag);
        let (t, r) = self.done.try_recv().expect("completion queued");
        assert_eq!(t, tag);
        self.nexus.complete(t, r);
    }
}

#[test]
fn inline_commands_complete_within_submit() {
    let mut h = Harness::new();
    h.nexus
        .submit(1, cmd(1, 0, TEST_UNIT_READY, TaskAttr::Simple), "ctx");
    match h.events().as_slice() {
        [Event::Respond { tag: 1, ctx, resp }] => {
            assert_eq!(*ctx, "ctx");
            assert_eq!(resp.status, status::GOOD);
        }
        other => panic!("{other:?}"),
    }
    assert!(h.nexus.is_empty());
}

#[test]
fn a_command_that_would_block_completes_from_the_io_pool() {
    let mut h = Harness::new();
    h.nexus
        .submit(1, cmd(1, 0, BLOCKING_OP, TaskAttr::Simple), "");
    assert!(h.responses().is_empty());
    assert_eq!(h.nexus.running(), 1);
    let (tag, resp) = h
        .done
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the I/O pool completes it");
    assert_eq!(tag, 1);
    h.nexus.complete(tag, resp);
    assert_eq!(h.responses(), vec![(1, None)]);
    assert_eq!(h.executed(), vec![1]);
}

#[test]
fn a_command_that_stops_to_block_resumes_on_the_io_pool_without_a_rerun() {
    let mut h = Harness::new();
    let mut c = cmd(1, 0, RESUMING_OP, TaskAttr::Simple);
    c.data_out = vec![5; 8];
    h.nexus.submit(1, c, "");
    assert!(h.responses().is_empty());
    let (tag, resp) = h
        .done
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the I/O pool runs the rest");
    h.nexus.complete(tag, resp);
    match h.events().as_slice() {
        [Event::Respond { tag: 1, resp, .. }] => assert_eq!(resp.data, vec![5; 8]),
        other => panic!("{other:?}"),
    }
    assert_eq!(*h.dev.resumed.lock(), vec![1]);
    assert_eq!(*h.dev.reruns.lock(), 0, "the command was not run again");
    assert_eq!(
        h.nexus.session().luns().get(0).unwrap().active_commands(),
        0
    );
}

#[test]
fn task_set_order_simple_ordered_head_of_queue() {
    let mut h = Harness::new();
    h.nexus.submit(1, cmd(1, 0, ASYNC_OP, TaskAttr::Simple), "");
    h.nexus
        .submit(2, cmd(2, 0, ASYNC_OP, TaskAttr::Ordered), "");
    h.nexus.submit(3, cmd(3, 0, ASYNC_OP, TaskAttr::Simple), "");
    // HEAD OF QUEUE passes the held tasks.
    h.nexus
        .submit(4, cmd(4, 0, TEST_UNIT_READY, TaskAttr::HeadOfQueue), "");
    assert_eq!(h.responses(), vec![(4, None)]);
    assert_eq!(h.executed(), vec![1, 4]);
    // The ORDERED task starts when everything before it is done, alone.
    h.finish(1);
    assert_eq!(h.responses(), vec![(1, None)]);
    assert_eq!(h.executed(), vec![1, 4, 2]);
    h.finish(2);
    assert_eq!(h.executed(), vec![1, 4, 2, 3]);
    h.finish(3);
    assert_eq!(h.responses(), vec![(2, None), (3, None)]);
    assert!(h.nexus.is_empty());
}

#[test]
fn checks_run_when_a_task_becomes_enabled_not_when_it_arrives() {
    let mut h = Harness::new();
    h.nexus
        .submit(1, cmd(1, 0, ASYNC_OP, TaskAttr::Ordered), "");
    h.nexus
        .submit(2, cmd(2, 0, TEST_UNIT_READY, TaskAttr::Simple), "");
    // A unit attention raised while task 2 waits is reported to it when it is enabled.
    let s = h.nexus.session().clone();
    s.luns()
        .get(0)
        .unwrap()
        .queue_ua(Sense::UA_MODE_PARAMETERS_CHANGED);
    h.finish(1);
    assert_eq!(
        h.responses(),
        vec![(1, None), (2, Some(Sense::UA_MODE_PARAMETERS_CHANGED))]
    );
    assert_eq!(h.executed(), vec![1], "task 2 never reached the device");
}

#[test]
fn unknown_lun_is_answered_by_the_core() {
    let mut h = Harness::new();
    h.nexus
        .submit(1, cmd(1, 7, TEST_UNIT_READY, TaskAttr::Simple), "");
    assert_eq!(h.responses(), vec![(1, Some(Sense::LUN_NOT_SUPPORTED))]);
    assert!(h.executed().is_empty());
}

#[test]
fn abort_task_of_a_running_command_answers_after_it_ends() {
    let mut h = Harness::new();
    h.nexus.submit(1, cmd(1, 0, ASYNC_OP, TaskAttr::Simple), "");
    assert_eq!(h.nexus.tmf(50, Tmf::AbortTask { lun: 0, tag: 1 }), None);
    assert_eq!(*h.dev.aborts.lock(), 1, "the device heard of the abort");
    assert!(h.events().is_empty());
    h.finish(1);
    match h.events().as_slice() {
        [Event::Aborted { tag: 1, .. }, Event::TmfDone {
            tag: 50,
            status: TmfStatus::Complete,
        }] => {}
        other => panic!("{other:?}"),
    }
    // A task that is not there, or on another LUN.
    assert_eq!(
        h.nexus.tmf(51, Tmf::AbortTask { lun: 0, tag: 1 }),
        Some(TmfStatus::TaskNotExist)
    );
}

#[test]
fn aborting_a_held_task_releases_those_behind_it() {
    let mut h = Harness::new();
    h.nexus.submit(1, cmd(1, 0, ASYNC_OP, TaskAttr::Simple), "");
    h.nexus
        .submit(2, cmd(2, 0, ASYNC_OP, TaskAttr::Ordered), "");
    h.nexus
        .submit(3, cmd(3, 0, TEST_UNIT_READY, TaskAttr::Simple), "");
    assert_eq!(
        h.nexus.tmf(50, Tmf::AbortTask { lun: 0, tag: 2 }),
        Some(TmfStatus::Complete)
    );
    // Task 2 goes silently, and task 3 no longer waits behind it.
    match h.events().as_slice() {
        [Event::Aborted { tag: 2, .. }, Event::Respond { tag: 3, .. }] => {}
        other => panic!("{other:?}"),
    }
    h.finish(1);
    assert_eq!(h.responses(), vec![(1, None)]);
    assert_eq!(h.executed(), vec![1, 3]);
}

#[test]
fn lun_reset_aborts_the_task_set_and_queues_a_ua() {
    let mut h = Harness::new();
    h.nexus.submit(1, cmd(1, 0, ASYNC_OP, TaskAttr::Simple), "");
    h.nexus
        .submit(2, cmd(2, 0, TEST_UNIT_READY, TaskAttr::Ordered), "");
    assert_eq!(h.nexus.tmf(50, Tmf::LunReset { lun: 0 }), None);
    match h.events().as_slice() {
        [Event::Aborted { tag: 2, .. }] => {}
        other => panic!("{other:?}"),
    }
    h.finish(1);
    match h.events().as_slice() {
        [Event::Aborted { tag: 1, .. }, Event::TmfDone { tag: 50, .. }] => {}
        other => panic!("{other:?}"),
    }
    h.nexus
        .submit(3, cmd(3, 0, TEST_UNIT_READY, TaskAttr::Simple), "");
    assert_eq!(h.responses(), vec![(3, Some(Sense::UA_POWER_ON_RESET))]);
    assert_eq!(
        h.nexus.tmf(51, Tmf::LunReset { lun: 9 }),
        Some(TmfStatus::LunNotExist)
    );
}

#[test]
fn queries_find_running_tasks_and_an_i_t_nexus_reset_ends_them() {
    let mut h = Harness::new();
    h.nexus.submit(1, cmd(1, 0, ASYNC_OP, TaskAttr::Simple), "");
    assert_eq!(
        h.nexus.tmf(50, Tmf::QueryTask { lun: 0, tag: 1 }),
        Some(TmfStatus::Succeeded)
    );
    assert_eq!(
        h.nexus.tmf(51, Tmf::QueryTask { lun: 0, tag: 2 }),
        Some(TmfStatus::Complete)
    );
    assert_eq!(
        h.nexus.tmf(52, Tmf::QueryTaskSet { lun: 0 }),
        Some(TmfStatus::Succeeded)
    );
    assert_eq!(
        h.nexus.tmf(53, Tmf::QueryTaskSet { lun: 9 }),
        Some(TmfStatus::LunNotExist)
    );
    // The reset waits for the running task, which ends without a response; the
    // nexus's next command hears of the nexus loss.
    assert_eq!(h.nexus.tmf(54, Tmf::ItNexusReset), None);
    assert_eq!(
        h.nexus.tmf(55, Tmf::QueryTaskSet { lun: 0 }),
        Some(TmfStatus::Complete),
        "an aborted task is no longer in the task set"
    );
    h.finish(1);
    match h.events().as_slice() {
        [Event::Aborted { tag: 1, .. }, Event::TmfDone {
            tag: 54,
            status: TmfStatus::Complete,
        }] => {}
        other => panic!("{other:?}"),
    }
    h.nexus
        .submit(2, cmd(2, 0, TEST_UNIT_READY, TaskAttr::Simple), "");
    assert_eq!(h.responses(), vec![(2, Some(Sense::UA_I_T_NEXUS_LOSS))]);
}

#[test]
fn a_reset_from_another_nexus_ends_running_and_held_tasks() {
    let mut h = Harness::new();
    h.nexus
        .submit(1, cmd(1, 0, ASYNC_OP, TaskAttr::Ordered), "");
    h.nexus
        .submit(2, cmd(2, 0, TEST_UNIT_READY, TaskAttr::Simple), "");
    let other = session(&h.scst, "iqn.b");
    let dev = other.lun_reset(0).expect("LUN 0 exists");
    // The other nexus's transport was told (SessionEvents); ours acts on it.
    h.nexus.abort_device(&dev);
    match h.events().as_slice() {
        [Event::Aborted { tag: 2, .. }] => {}
        other => panic!("{other:?}"),
    }
    h.finish(1);
    match h.events().as_slice() {
        [Event::Aborted { tag: 1, .. }] => {}
        other => panic!("{other:?}"),
    }
    assert!(h.nexus.is_empty());
}

#[test]
fn closing_ends_held_tasks_and_silences_running_ones() {
    let mut h = Harness::new();
    h.nexus
        .submit(1, cmd(1, 0, ASYNC_OP, TaskAttr::Ordered), "");
    h.nexus
        .submit(2, cmd(2, 0, TEST_UNIT_READY, TaskAttr::Simple), "");
    h.nexus.close();
    match h.events().as_slice() {
        [Event::Aborted { tag: 2, .. }] => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(h.nexus.running(), 1);
    h.finish(1);
    match h.events().as_slice() {
        [Event::Aborted { tag: 1, .. }] => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(h.executed(), vec![1]);
}

#[test]
fn latency_runs_from_the_turn_a_command_arrived_in_to_its_response_sent() {
    use crate::latency::{size_class, table_dir};
    use crate::stats::Direction;
    let mut h = Harness::new();
    h.events(); // the harness's first command
    h.scst.set_measure_latency(true);
    let pause = std::time::Duration::from_millis(20);
    let units = pause.as_nanos() as u64 / 100;
    // Two commands of one turn, the second read a while after the first: both arrived
    // at the turn's time. Both are answered inline, and sent only after a while.
    let mut a = cmd(1, 0, TEST_UNIT_READY, TaskAttr::Simple);
    a.expected_in = 512;
    h.nexus.submit(1, a, "a");
    std::thread::sleep(pause);
    let mut b = cmd(2, 0, TEST_UNIT_READY, TaskAttr::Simple);
    b.expected_in = 512;
    h.nexus.submit(2, b, "b");
    let s = h.nexus.session().clone();
    let cell = |s: &Session| s.latency().cells[size_class(512)][table_dir(Direction::Read)];
    assert_eq!(cell(&s).count, 0, "answered, not yet sent: no sample");
    std::thread::sleep(pause);
    assert_eq!(h.events().len(), 2);
    let c = cell(&s);
    assert_eq!(c.count, 2);
    // Lower bounds only: the clock is monotonic, the pauses are at least as long.
    assert!(c.min >= units, "b waited from the turn's start: {c:?}");
    assert!(c.max >= 2 * units, "a waited for both pauses: {c:?}");
}

#[test]
fn completions_are_counted_per_lun_and_kept_when_the_session_goes() {
    use crate::latency::{size_class, table_dir};
    use crate::stats::Direction;
    let mut h = Harness::new();
    h.scst.set_measure_latency(true);
    let mut read = cmd(1, 0, TEST_UNIT_READY, TaskAttr::Simple);
    read.expected_in = 4096;
    h.nexus.submit(1, read, "r");
    let mut write = cmd(2, 0, ASYNC_OP, TaskAttr::Simple);
    write.data_out = vec![0; 8192];
    h.nexus.submit(2, write, "w");
    h.finish(2);
    // A LUN the session lacks: counted on the session's answer only, not on a LUN.
    h.nexus
        .submit(3, cmd(3, 7, TEST_UNIT_READY, TaskAttr::Simple), "x");
    assert_eq!(h.events().len(), 3);

    let s = h.nexus.session().clone();
    let io = s.io_totals();
    assert_eq!(io.cmds[Direction::Read.index()], 1);
    assert_eq!(io.bytes[Direction::Read.index()], 4096);
    assert_eq!(io.cmds[Direction::Write.index()], 1);
    assert_eq!(io.bytes[Direction::Write.index()], 8192);
    // The power-on UA answered in the harness's first command.
    assert_eq!(io.cmds[Direction::None.index()], 1);
    assert_eq!(io.errors, 1);
    let lat = s.latency();
    let w = lat.cells[size_class(8192)][table_dir(Direction::Write)];
    assert_eq!(w.count, 1);
    assert_eq!(lat.hist[0].iter().sum::<u64>(), 1, "one read measured");
    assert_eq!(
        lat.cells[0][table_dir(Direction::None)].count,
        0,
        "UA before"
    );

    // Latency off: tables cleared, and no more samples; counters go on.
    h.scst.set_measure_latency(false);
    let mut read = cmd(4, 0, TEST_UNIT_READY, TaskAttr::Simple);
    read.expected_in = 512;
    h.nexus.submit(4, read, "r");
    h.events();
    assert_eq!(s.latency().cells[size_class(8192)][1].count, 0);
    assert_eq!(s.latency().cells[0][table_dir(Direction::Read)].count, 0);
    assert_eq!(s.io_totals().cmds[Direction::Read.index()], 2);

    let target = s.target.clone();
    let device = h.scst.device("fake0").unwrap();
    let before = (target.io_totals(), device.io_totals());
    assert_eq!(before.0, before.1);
    drop(s);
    drop(h);
    assert_eq!(
        target.io_totals(),
        before.0,
        "target keeps a gone session's counts"
    );
    assert_eq!(
        device.io_totals(),
        before.1,
        "device keeps a gone nexus's counts"
    );
}
