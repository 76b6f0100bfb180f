//! Tests of live reconfiguration (reconfig.rs): LUN set changes reaching live
//! sessions, initiator groups, device and target deletion, `async_lun_replace`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use scsi_wire::lun::decode_lun;
use scsi_wire::Sense;

use crate::cmd::{Cdb, Cmd, ExecMode, Response, TaskAttr};
use crate::device::{AttrEffect, AttrError, CmdCtx, Device};
use crate::error::MgmtError;
use crate::registry::{DeviceEntry, Scst};
use crate::session::{Route, Session, SessionEvents, TransportId};
use crate::target::Target;

/// Answers every command with its own name as data, so a test sees which device a
/// LUN reaches; `size` and `prod_id` are writable.
struct NamedDev(String);

impl Device for NamedDev {
    fn name(&self) -> &str {
        &self.0
    }
    fn handler_name(&self) -> &'static str {
        "test"
    }
    fn scsi_type(&self) -> u8 {
        0
    }
    fn execute(&self, _: &CmdCtx<'_>, _: &mut Cmd, _: ExecMode) -> Option<Response> {
        Some(Response::data_alloc(self.0.as_bytes().to_vec(), 64))
    }
    fn set_attribute(&self, name: &str, _value: &str) -> Result<(), AttrError> {
        match name {
            "size" | "prod_id" | "comment" => Ok(()),
            _ => Err(AttrError::CreationOnly {
                device: self.0.clone(),
                attr: name.to_string(),
            }),
        }
    }
}

#[derive(Default)]
struct Events {
    closes: AtomicUsize,
}

impl SessionEvents for Events {
    fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {}
    fn close(&self) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

const TUR: [u8; 6] = [0; 6];
const READ_10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const RESERVE_6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
const REPORT_LUNS: [u8; 12] = [0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];

fn cmd(cdb: &[u8], lun: u64) -> Cmd {
    Cmd {
        cdb: Cdb::new(cdb).expect("valid CDB"),
        lun,
        tag: 1,
        attr: TaskAttr::Simple,
        data_out: Vec::new(),
        expected_in: 256,
    }
}

/// The core's answer to a command, or the device's after executing it.
fn run(s: &Session, cdb: &[u8], lun: u64) -> Response {
    let mut c = cmd(cdb, lun);
    match s.route(&c) {
        Route::Done(r) => r,
        Route::Device(td) => s
            .execute(&td, &mut c, ExecMode::Blocking)
            .expect("answered"),
    }
}

/// The sense of a CHECK CONDITION, None for GOOD.
fn sense_of(s: &Session, cdb: &[u8], lun: u64) -> Option<Sense> {
    run(s, cdb, lun).sense
}

fn report_luns(s: &Session, via: u64) -> Vec<u64> {
    let r = run(s, &REPORT_LUNS, via);
    assert!(r.sense.is_none(), "REPORT LUNS failed: {:?}", r.sense);
    r.data[8..]
        .chunks_exact(8)
        .map(|c| decode_lun(c.try_into().expect("8 bytes")))
        .collect()
}

/// Consume every pending UA on a LUN.
fn drain_uas(s: &Session, lun: u64) {
    for _ in 0..32 {
        if sense_of(s, &TUR, lun).is_none() {
            return;
        }
    }
    panic!("UAs never drained on LUN {lun}");
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Fixture {
    scst: Arc<Scst>,
    target: Arc<Target>,
}

impl Fixture {
    /// Devices `a`, `b`, `c`; a target exporting `a` as LUN 0.
    fn new(io_threads: usize) -> Fixture {
        let scst = Scst::new(io_threads);
        for n in ["a", "b", "c"] {
            scst.add_device(Arc::new(NamedDev(n.into()))).unwrap();
        }
        let target = scst.add_target("iscsi", "iqn.t:1", Some(1)).unwrap();
        scst.lun_add(&target, None, 0, "a", false).unwrap();
        Fixture { scst, target }
    }

    fn login(&self, initiator: &str, events: Arc<Events>) -> Arc<Session> {
        let tid = TransportId::Iscsi {
            name: initiator.into(),
            isid: Some([0x40, 0, 0, 0, 0, 1]),
        };
        let s = self.scst.register_session(&self.target, tid, events);
        for td in &s.luns().entries {
            drain_uas(&s, td.lun);
        }
        s
    }
}

#[test]
fn adding_a_lun_reaches_live_sessions_of_that_set_only() {
    let f = Fixture::new(1);
    f.scst.ini_group_create(&f.target, "g").unwrap();
    f.scst.initiator_add(&f.target, "g", "iqn.grouped").unwrap();
    f.scst.lun_add(&f.target, Some("g"), 0, "c", false).unwrap();
    let s = f.login("iqn.i", Arc::default());
    let grouped = f.login("iqn.grouped", Arc::default());

    f.scst.lun_add(&f.target, None, 1, "b", true).unwrap();
    // The old LUN reports the inventory change; REPORT LUNS answers through it and
    // clears the UA for the whole session.
    assert_eq!(
        sense_of(&s, &TUR, 0),
        Some(Sense::UA_REPORTED_LUNS_DATA_CHANGED)
    );
    f.scst.lun_add(&f.target, None, 2, "c", false).unwrap();
    assert_eq!(report_luns(&s, 0), vec![0, 1, 2]);
    assert_eq!(sense_of(&s, &TUR, 0), None);
    // The added LUNs are new I_T_L nexuses: POWER ON/RESET first, then the device.
    assert_eq!(sense_of(&s, &TUR, 1), Some(Sense::UA_POWER_ON_RESET));
    assert_eq!(sense_of(&s, &TUR, 1), None);
    assert_eq!(run(&s, &READ_10, 1).data, b"b");
    assert!(s.luns().get(1).unwrap().read_only);
    // The session bound to the group saw nothing.
    assert_eq!(sense_of(&grouped, &TUR, 0), None);
    assert_eq!(report_luns(&grouped, 0), vec![0]);

    // A used LUN number is refused, naming the LUN; nothing changes.
    let e = f.scst.lun_add(&f.target, None, 1, "c", false).unwrap_err();
    assert_eq!(
        e,
        MgmtError::Exists {
            kind: "LUN",
            name: "1".into()
        }
    );
    assert!(matches!(
        f.scst.lun_add(&f.target, None, 5, "nope", false),
        Err(MgmtError::NotFound { kind: "device", .. })
    ));
    assert!(f.scst.lun_add(&f.target, None, 16384, "c", false).is_err());
    assert_eq!(report_luns(&s, 0), vec![0, 1, 2]);
    let sessions = f.scst.session_list(&f.target);
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].luns, vec![0, 1, 2]);
    assert_eq!(sessions[1].group.as_deref(), Some("g"));
}

#[test]
fn deleting_a_lun_lets_in_flight_commands_finish_then_cleans_up() {
    let f = Fixture::new(1);
    f.scst.lun_add(&f.target, None, 1, "b", false).unwrap();
    let s = f.login("iqn.i", Arc::default());
    let dev_b = f.scst.device("b").unwrap();
    assert_eq!(sense_of(&s, &RESERVE_6, 1), None);
    assert_eq!(dev_b.resv.spc2_holder(), Some(s.id));

    // A command routed before the delete holds its nexus.
    let mut read = cmd(&READ_10, 1);
    let Route::Device(in_flight) = s.route(&read) else {
        panic!("READ goes to the device");
    };
    f.scst.lun_del(&f.target, None, 1).unwrap();
    assert_eq!(report_luns(&s, 0), vec![0]);
    assert_eq!(sense_of(&s, &TUR, 1), Some(Sense::LUN_NOT_SUPPORTED));
    assert!(dev_b.tgt_devs().is_empty());
    // The in-flight command completes normally on the removed nexus ...
    let r = s
        .execute(&in_flight, &mut read, ExecMode::Blocking)
        .expect("answered");
    assert_eq!(r.data, b"b");
    // ... and the cleanup waits for it before releasing the reservation.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(f.scst.running_cleanups(), 1);
    assert_eq!(dev_b.resv.spc2_holder(), Some(s.id));
    drop(in_flight);
    wait_for("cleanup", || f.scst.running_cleanups() == 0);
    assert_eq!(dev_b.resv.spc2_holder(), None);

    assert!(matches!(
        f.scst.lun_del(&f.target, None, 1),
        Err(MgmtError::NotFound { kind: "LUN", .. })
    ));
    f.scst.lun_clear(&f.target, None).unwrap();
    assert!(s.luns().entries.is_empty());
    assert_eq!(report_luns(&s, 0), Vec::<u64>::new());
}

#[test]
fn replace_swaps_the_device_with_inquiry_data_changed() {
    let f = Fixture::new(1);
    f.scst.lun_add(&f.target, None, 1, "c", false).unwrap();
    let s = f.login("iqn.i", Arc::default());

    f.scst
        .lun_replace(&f.target, None, 0, "b", false, true)
        .unwrap();
    assert_eq!(sense_of(&s, &TUR, 0), Some(Sense::UA_INQUIRY_DATA_CHANGED));
    assert_eq!(sense_of(&s, &TUR, 0), None);
    assert_eq!(run(&s, &READ_10, 0).data, b"b");
    // The other LUN is untouched: the inventory did not change.
    assert_eq!(sense_of(&s, &TUR, 1), None);
    assert_eq!(f.scst.lun_set(&f.target, None).unwrap()[0].device, "b");

    // replace_no_ua: silent.
    f.scst
        .lun_replace(&f.target, None, 0, "a", false, false)
        .unwrap();
    assert_eq!(sense_of(&s, &TUR, 0), None);
    assert_eq!(run(&s, &READ_10, 0).data, b"a");

    // On an unused LUN it is an add.
    f.scst
        .lun_replace(&f.target, None, 3, "b", false, true)
        .unwrap();
    assert_eq!(
        sense_of(&s, &TUR, 0),
        Some(Sense::UA_REPORTED_LUNS_DATA_CHANGED)
    );
    assert_eq!(sense_of(&s, &TUR, 3), Some(Sense::UA_POWER_ON_RESET));
    assert_eq!(report_luns(&s, 0), vec![0, 1, 3]);
    wait_for("cleanups", || f.scst.running_cleanups() == 0);
}

#[test]
fn groups_bind_at_login_and_cannot_be_deleted_while_bound() {
    let f = Fixture::new(1);
    let t = &f.target;
    f.scst.ini_group_create(t, "g1").unwrap();
    f.scst.ini_group_create(t, "g2").unwrap();
    assert!(matches!(
        f.scst.ini_group_create(t, "g1"),
        Err(MgmtError::Exists { .. })
    ));
    assert!(f.scst.ini_group_create(t, "bad name").is_err());
    f.scst.lun_add(t, Some("g1"), 0, "b", false).unwrap();
    f.scst.lun_add(t, Some("g2"), 0, "c", false).unwrap();
    f.scst.initiator_add(t, "g1", "iqn.host*").unwrap();
    assert!(matches!(
        f.scst.initiator_add(t, "g1", "IQN.HOST*"),
        Err(MgmtError::Exists { .. })
    ));
    assert!(matches!(
        f.scst.initiator_add(t, "g1", "iqn a"),
        Err(MgmtError::Invalid(_))
    ));
    assert!(f.scst.initiator_add(t, "nope", "x").is_err());

    let s1 = f.login("iqn.host1", Arc::default());
    assert_eq!(s1.group.as_deref(), Some("g1"));
    assert_eq!(run(&s1, &READ_10, 0).data, b"b");
    let e = f.scst.ini_group_del(t, "g1").unwrap_err();
    assert!(e.to_string().contains("iqn.host1"), "{e}");

    // Moving the entry binds later sessions to g2; the live one stays on g1.
    f.scst.initiator_move(t, "g1", "iqn.host*", "g2").unwrap();
    assert!(matches!(
        f.scst.initiator_move(t, "g1", "iqn.host*", "g2"),
        Err(MgmtError::NotFound {
            kind: "initiator",
            ..
        })
    ));
    let groups = f.scst.ini_groups(t);
    assert!(groups[0].initiators.is_empty());
    assert_eq!(groups[1].initiators, vec!["iqn.host*".to_string()]);
    let s2 = f.login("iqn.host2", Arc::default());
    assert_eq!(s2.group.as_deref(), Some("g2"));
    assert_eq!(run(&s2, &READ_10, 0).data, b"c");
    assert_eq!(s1.group.as_deref(), Some("g1"));
    assert_eq!(run(&s1, &READ_10, 0).data, b"b");

    // g1's LUN changes still reach the session bound to it.
    f.scst.lun_add(t, Some("g1"), 1, "a", false).unwrap();
    assert_eq!(report_luns(&s1, 0), vec![0, 1]);
    assert_eq!(report_luns(&s2, 0), vec![0]);

    drop(s1);
    f.scst.ini_group_del(t, "g1").unwrap();
    f.scst.initiator_clear(t, "g2").unwrap();
    f.scst.initiator_del(t, "g2", "x").unwrap_err();
    let sets = f.scst.lun_sets(t);
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[1].group.as_deref(), Some("g2"));
}

#[test]
fn devices_cannot_be_deleted_while_exported() {
    let f = Fixture::new(1);
    f.scst.ini_group_create(&f.target, "g").unwrap();
    f.scst.lun_add(&f.target, Some("g"), 7, "a", false).unwrap();
    let e = f.scst.del_device("a").unwrap_err();
    assert_eq!(
        e.to_string(),
        "device 'a' is in use: exported as iscsi/iqn.t:1/luns/0, \
         iscsi/iqn.t:1/ini_groups/g/luns/7"
    );
    assert_eq!(f.scst.device_exports("a").unwrap().len(), 2);
    f.scst.lun_del(&f.target, None, 0).unwrap();
    f.scst.lun_clear(&f.target, Some("g")).unwrap();
    f.scst.del_device("a").unwrap();
    assert!(f.scst.device("a").is_err());
    assert!(matches!(
        f.scst.del_device("a"),
        Err(MgmtError::NotFound { .. })
    ));
    let names: Vec<String> = f.scst.device_list().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["b", "c"]);
}

#[test]
fn device_attributes_queue_the_matching_unit_attention() {
    let f = Fixture::new(1);
    let s = f.login("iqn.i", Arc::default());
    assert_eq!(
        f.scst.set_device_attr("a", "size", "4096").unwrap(),
        AttrEffect::CapacityChanged
    );
    assert_eq!(sense_of(&s, &TUR, 0), Some(Sense::UA_CAPACITY_DATA_CHANGED));
    assert_eq!(
        f.scst.set_device_attr("a", "prod_id", "x").unwrap(),
        AttrEffect::InquiryDataChanged
    );
    assert_eq!(sense_of(&s, &TUR, 0), Some(Sense::UA_INQUIRY_DATA_CHANGED));
    assert_eq!(
        f.scst.set_device_attr("a", "comment", "x").unwrap(),
        AttrEffect::Nothing
    );
    assert!(matches!(
        f.scst.set_device_attr("a", "blocksize", "4096"),
        Err(MgmtError::Attribute(AttrError::CreationOnly { .. }))
    ));
    assert_eq!(sense_of(&s, &TUR, 0), None);
}

#[test]
fn deleting_a_target_closes_its_sessions() {
    let f = Fixture::new(1);
    f.target.set_enabled(true);
    let ev = Arc::new(Events::default());
    let _s = f.login("iqn.i", ev.clone());
    f.scst.del_target("iscsi", "iqn.t:1").unwrap();
    assert_eq!(ev.closes.load(Ordering::SeqCst), 1);
    assert!(!f.target.enabled());
    assert!(f.scst.target("iscsi", "iqn.t:1").is_none());
    assert!(f.scst.del_target("iscsi", "iqn.t:1").is_err());
    // The device is no longer exported by a registered target.
    f.scst.del_device("a").unwrap();
}

/// A cleanup hook that blocks until the test opens its gate, like a DLM round-trip to
/// a dead peer.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    entered: AtomicUsize,
    done: AtomicUsize,
}

impl Gate {
    fn pass(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
        self.done.fetch_add(1, Ordering::SeqCst);
    }
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

#[test]
fn async_lun_replace_parks_cleanups_and_admin_never_waits_for_them() {
    let f = Fixture::new(1);
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    f.scst
        .set_tgt_dev_cleanup_hook(Some(Arc::new(move |_td: &crate::TgtDev| g.pass())));
    let s = f.login("iqn.i", Arc::default());
    let prompt = Duration::from_secs(2);

    f.scst.set_async_lun_replace(true);
    assert!(f.scst.async_lun_replace());
    for dev in ["b", "c"] {
        let t = timed(|| {
            f.scst
                .lun_replace(&f.target, None, 0, dev, false, true)
                .unwrap()
        });
        assert!(t < prompt, "replace took {t:?}");
    }
    // The new device serves at once; the old nexuses' cleanups are parked.
    assert_eq!(sense_of(&s, &TUR, 0), Some(Sense::UA_INQUIRY_DATA_CHANGED));
    assert_eq!(run(&s, &READ_10, 0).data, b"c");
    assert_eq!(f.scst.parked_cleanups(), 2);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(gate.entered.load(Ordering::SeqCst), 0);

    // Releasing the batch does not wait for it; the first cleanup gets stuck.
    let t = timed(|| f.scst.set_async_lun_replace(false));
    assert!(t < prompt, "releasing took {t:?}");
    assert_eq!(f.scst.parked_cleanups(), 0);
    wait_for("a cleanup to block", || {
        gate.entered.load(Ordering::SeqCst) == 1
    });
    // With a cleanup stuck on the backend, replace still returns at once.
    let t = timed(|| {
        f.scst
            .lun_replace(&f.target, None, 0, "a", false, true)
            .unwrap()
    });
    assert!(t < prompt, "replace behind a stuck cleanup took {t:?}");
    drain_uas(&s, 0);
    assert_eq!(run(&s, &READ_10, 0).data, b"a");
    assert_eq!(f.scst.running_cleanups(), 3);

    gate.release();
    wait_for("all cleanups", || f.scst.running_cleanups() == 0);
    assert_eq!(gate.done.load(Ordering::SeqCst), 3);
}

#[test]
fn shutdown_releases_parked_cleanups() {
    let f = Fixture::new(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    f.scst
        .set_tgt_dev_cleanup_hook(Some(Arc::new(move |_td: &crate::TgtDev| {
            r.fetch_add(1, Ordering::SeqCst);
        })));
    let _s = f.login("iqn.i", Arc::default());
    f.scst.set_async_lun_replace(true);
    f.scst
        .lun_replace(&f.target, None, 0, "b", false, false)
        .unwrap();
    assert_eq!(f.scst.parked_cleanups(), 1);
    f.scst.detach_all();
    wait_for("the parked cleanup", || ran.load(Ordering::SeqCst) == 1);
    assert!(!f.scst.async_lun_replace());
}
