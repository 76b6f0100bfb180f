//! Tests of the device-facing hooks: events a device raises for every nexus
//! (`Device::attach_events`) and the nexus-loss notice (`Device::nexus_lost`).

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use scsi_wire::Sense;

use crate::cmd::{Cdb, Cmd, ExecMode, Response, TaskAttr};
use crate::device::{CmdCtx, Device, DeviceEvents};
use crate::registry::{DeviceEntry, Scst};
use crate::session::{Route, Session, SessionEvents, TransportId};

/// Records what the core tells it and keeps the event sink it was given.
#[derive(Default)]
struct HookDev {
    events: Mutex<Option<Weak<dyn DeviceEvents>>>,
    lost: Mutex<Vec<(String, String)>>,
}

impl Device for HookDev {
    fn name(&self) -> &str {
        "hook0"
    }
    fn handler_name(&self) -> &'static str {
        "test"
    }
    fn scsi_type(&self) -> u8 {
        5
    }
    fn execute(&self, _: &CmdCtx<'_>, _: &mut Cmd, _: ExecMode) -> Option<Response> {
        Some(Response::good())
    }
    fn attach_events(&self, events: Weak<dyn DeviceEvents>) {
        *self.events.lock() = Some(events);
    }
    fn nexus_lost(&self, initiator_name: &str, target_name: &str) {
        self.lost
            .lock()
            .push((initiator_name.to_string(), target_name.to_string()));
    }
}

struct NoEvents;

impl SessionEvents for NoEvents {
    fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {}
    fn close(&self) {}
}

fn tur() -> Cmd {
    Cmd {
        cdb: Cdb::new(&[0; 6]).unwrap(),
        lun: 0,
        tag: 1,
        attr: TaskAttr::Simple,
        data_out: Vec::new(),
        expected_in: 0,
    }
}

fn route_sense(s: &Session) -> Option<Sense> {
    match s.route(&tur()) {
        Route::Done(r) => r.sense,
        Route::Device(_) => None,
    }
}

fn setup() -> (Arc<Scst>, Arc<HookDev>, Arc<Session>, Arc<Session>) {
    let scst = Scst::new(1);
    let dev = Arc::new(HookDev::default());
    scst.add_device(dev.clone()).unwrap();
    let t = scst.add_target("iscsi", "iqn.t", Some(1)).unwrap();
    scst.add_lun(&t, None, 0, "hook0", false).unwrap();
    let session = |name: &str| {
        let s = scst.register_session(
            &t,
            TransportId::Iscsi {
                name: name.to_string(),
                isid: Some([0x40, 0, 0, 0, 0, 1]),
            },
            Arc::new(NoEvents),
        );
        assert_eq!(route_sense(&s), Some(Sense::UA_POWER_ON_RESET));
        s
    };
    let (a, b) = (session("iqn.a"), session("iqn.b"));
    (scst, dev, a, b)
}

#[test]
fn device_events_queue_a_ua_on_every_nexus_once() {
    let (_scst, dev, a, b) = setup();
    let events = dev.events.lock().clone().expect("attached at registration");
    let events = events.upgrade().expect("the entry is alive");
    events.queue_ua_all(Sense::UA_MEDIUM_MAY_HAVE_CHANGED);
    for s in [&a, &b] {
        assert_eq!(route_sense(s), Some(Sense::UA_MEDIUM_MAY_HAVE_CHANGED));
        assert_eq!(route_sense(s), None);
    }
}

#[test]
fn nexus_loss_is_reported_once_per_session() {
    let (_scst, dev, a, b) = setup();
    a.unregister();
    a.unregister();
    drop(a);
    assert_eq!(
        *dev.lost.lock(),
        vec![("iqn.a".to_string(), "iqn.t".to_string())]
    );
    // A session nobody unregistered is reported when it is dropped.
    drop(b);
    assert_eq!(dev.lost.lock().len(), 2);
}

#[test]
fn set_attribute_defaults_to_an_error_naming_the_attribute() {
    let d = HookDev::default();
    let e = d.set_attribute("filename", "/x").unwrap_err().to_string();
    assert!(e.contains("hook0") && e.contains("filename"), "{e}");
}
