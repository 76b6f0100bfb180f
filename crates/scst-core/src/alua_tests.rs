//! Tests of ALUA: the management model's checks, the per-state command filter through
//! `Session::route`, REPORT TARGET PORT GROUPS in both formats, the ASYMMETRIC ACCESS
//! STATE CHANGED unit attention, and what devices see in `CmdCtx`.

use std::sync::Arc;

use parking_lot::Mutex;
use scsi_wire::Sense;

use crate::alua::{AluaState, PortView};
use crate::cmd::{Cdb, Cmd, ExecMode, Response, TaskAttr};
use crate::device::{CmdCtx, Device};
use crate::error::MgmtError;
use crate::registry::{DeviceEntry, Scst};
use crate::session::{Route, Session, SessionEvents, TransportId};

/// Answers GOOD and remembers the ALUA view of the last command.
struct Dev {
    name: &'static str,
    last_alua: Mutex<Option<Option<PortView>>>,
}

impl Dev {
    fn new(name: &'static str) -> Arc<Dev> {
        Arc::new(Dev {
            name,
            last_alua: Mutex::new(None),
        })
    }
}

impl Device for Dev {
    fn name(&self) -> &str {
        self.name
    }
    fn handler_name(&self) -> &'static str {
        "test"
    }
    fn scsi_type(&self) -> u8 {
        0
    }
    fn execute(&self, ctx: &CmdCtx<'_>, _: &mut Cmd, _: ExecMode) -> Option<Response> {
        *self.last_alua.lock() = Some(ctx.alua);
        Some(Response::good())
    }
}

struct NoEvents;

impl SessionEvents for NoEvents {
    fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {}
    fn close(&self) {}
}

const READ_10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const WRITE_10: [u8; 10] = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const TUR: [u8; 6] = [0; 6];
const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 0x24, 0];
const MODE_SENSE_6: [u8; 6] = [0x1A, 0, 0x3F, 0, 0xFF, 0];
const READ_CAPACITY_10: [u8; 10] = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const RESERVE_6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
const PR_IN_READ_KEYS: [u8; 10] = [0x5E, 0, 0, 0, 0, 0, 0, 0x10, 0, 0];

fn rtpg(format: u8, alloc: u32) -> [u8; 12] {
    let a = alloc.to_be_bytes();
    [
        0xA3,
        (format << 5) | 0x0A,
        0,
        0,
        0,
        0,
        a[0],
        a[1],
        a[2],
        a[3],
        0,
        0,
    ]
}

/// Device `d0` behind targets `iqn.t:1` (rel 1) and `iqn.t:2` (rel 2), plus `d1`
/// behind `iqn.t:1` only, outside any device group. Device group `dg` holds `d0`
/// with target groups `a` (id 10, iqn.t:1, preferred) and `b` (id 20, iqn.t:2 and
/// the remote `iqn.peer` with rel_tgt_id 7).
struct Fx {
    scst: Arc<Scst>,
    d0: Arc<Dev>,
    s1: Arc<Session>,
    s2: Arc<Session>,
}

fn fixture() -> Fx {
    let scst = Scst::new(1);
    let d0 = Dev::new("d0");
    scst.add_device(d0.clone()).unwrap();
    scst.add_device(Dev::new("d1")).unwrap();
    let t1 = scst.add_target("iscsi", "iqn.t:1", Some(1)).unwrap();
    let t2 = scst.add_target("iscsi", "iqn.t:2", Some(2)).unwrap();
    scst.add_lun(&t1, None, 0, "d0", false).unwrap();
    scst.add_lun(&t1, None, 1, "d1", false).unwrap();
    scst.add_lun(&t2, None, 0, "d0", false).unwrap();
    scst.create_device_group("dg").unwrap();
    scst.device_group_add_device("dg", "d0").unwrap();
    scst.create_target_group("dg", "a", 10).unwrap();
    scst.create_target_group("dg", "b", 20).unwrap();
    scst.target_group_add_target("dg", "a", "iqn.t:1", None)
        .unwrap();
    scst.set_target_group_preferred("dg", "a", true).unwrap();
    scst.target_group_add_target("dg", "b", "iqn.t:2", None)
        .unwrap();
    scst.target_group_add_target("dg", "b", "iqn.peer", Some(7))
        .unwrap();
    let session = |t, isid: u8| {
        let tid = TransportId::Iscsi {
            name: "iqn.i".into(),
            isid: Some([0x40, 0, 0, 0, 0, isid]),
        };
        let s = scst.register_session(t, tid, Arc::new(NoEvents));
        // Consume the POWER ON UAs.
        for lun in [0, 1] {
            if s.luns().get(lun).is_some() {
                assert!(send(&s, lun, &TUR).sense.is_some());
            }
        }
        s
    };
    let s1 = session(&t1, 1);
    let s2 = session(&t2, 2);
    Fx { scst, d0, s1, s2 }
}

fn send(s: &Session, lun: u64, cdb: &[u8]) -> Response {
    let mut cmd = Cmd {
        cdb: Cdb::new(cdb).unwrap(),
        lun,
        tag: 1,
        attr: TaskAttr::Simple,
        data_out: Vec::new(),
        expected_in: 4096,
    };
    match s.route(&cmd) {
        Route::Done(r) => r,
        Route::Device(td) => s.execute(&td, &mut cmd, ExecMode::Blocking).unwrap(),
    }
}

fn sense_of(r: &Response) -> Option<(u8, u8, u8)> {
    r.sense.map(|s| (s.key, s.asc, s.ascq))
}

#[test]
fn management_checks_name_the_object() {
    let fx = fixture();
    let s = &fx.scst;
    assert_eq!(
        s.create_target_group("dg", "c", 10),
        Err(MgmtError::Invalid(
            "target group 'dg/c': group_id 10 is already used by target group 'a'".into()
        ))
    );
    assert!(s.create_target_group("dg", "c", 0).is_err());
    assert!(matches!(
        s.create_target_group("nodg", "c", 30),
        Err(MgmtError::NotFound {
            kind: "device group",
            ..
        })
    ));
    assert!(matches!(
        s.device_group_add_device("dg", "nodev"),
        Err(MgmtError::NotFound { kind: "device", .. })
    ));
    s.create_device_group("dg2").unwrap();
    let err = s.device_group_add_device("dg2", "d0").unwrap_err();
    assert_eq!(
        err.to_string(),
        "device 'd0' is in use: already in device group 'dg'"
    );
    // A target may be in one target group of a device group only.
    assert!(s
        .target_group_add_target("dg", "a", "iqn.t:2", None)
        .is_err());
    // A remote target needs its relative target port id.
    let err = s
        .target_group_add_target("dg", "a", "iqn.elsewhere", None)
        .unwrap_err();
    assert!(err.to_string().contains("needs rel_tgt_id"), "{err}");
    assert!(AluaState::from_name("optimized")
        .unwrap_err()
        .to_string()
        .contains("'optimized' is not an ALUA state"));
    assert_eq!(AluaState::from_name("standby"), Ok(AluaState::Standby));
    // Changing a group id to one in use is refused, to a free one accepted.
    assert!(s.set_target_group_id("dg", "b", 10).is_err());
    s.set_target_group_id("dg", "b", 21).unwrap();
}

#[test]
fn filters_follow_the_state_of_the_ports_target_group() {
    let fx = fixture();
    let standby = Some((0x02, 0x04, 0x0B));
    let unavailable = Some((0x02, 0x04, 0x0C));
    let transitioning = Some((0x02, 0x04, 0x0A));
    fx.scst
        .set_target_group_state("dg", "b", AluaState::Standby)
        .unwrap();
    // The UA of the change comes first on both paths.
    for s in [&fx.s1, &fx.s2] {
        assert_eq!(
            sense_of(&send(s, 0, &TUR)),
            Some((0x06, 0x2A, 0x06)),
            "ASYMMETRIC ACCESS STATE CHANGED"
        );
    }
    // The active path is unaffected.
    for cdb in [&READ_10[..], &WRITE_10, &TUR] {
        assert_eq!(sense_of(&send(&fx.s1, 0, cdb)), None);
    }
    // Standby: media access refused, management commands allowed.
    for cdb in [&READ_10[..], &WRITE_10, &TUR] {
        assert_eq!(sense_of(&send(&fx.s2, 0, cdb)), standby, "{cdb:02x?}");
    }
    for cdb in [
        &INQUIRY[..],
        &MODE_SENSE_6,
        &READ_CAPACITY_10,
        &RESERVE_6,
        &PR_IN_READ_KEYS,
        &rtpg(0, 512),
    ] {
        assert_eq!(sense_of(&send(&fx.s2, 0, cdb)), None, "{cdb:02x?}");
    }
    // Release the SPC-2 reservation taken above so later commands do not conflict.
    assert_eq!(sense_of(&send(&fx.s2, 0, &[0x17, 0, 0, 0, 0, 0])), None);

    for (state, sense) in [
        (AluaState::Unavailable, unavailable),
        (AluaState::Offline, unavailable),
        (AluaState::Transitioning, transitioning),
    ] {
        fx.scst.set_target_group_state("dg", "b", state).unwrap();
        assert_eq!(sense_of(&send(&fx.s2, 0, &TUR)), Some((0x06, 0x2A, 0x06)));
        for cdb in [&READ_10[..], &MODE_SENSE_6, &RESERVE_6, &PR_IN_READ_KEYS] {
            assert_eq!(
                sense_of(&send(&fx.s2, 0, cdb)),
                sense,
                "{state:?} {cdb:02x?}"
            );
        }
        for cdb in [&INQUIRY[..], &READ_CAPACITY_10, &rtpg(1, 512)] {
            assert_eq!(
                sense_of(&send(&fx.s2, 0, cdb)),
                None,
                "{state:?} {cdb:02x?}"
            );
        }
    }
    // The device outside any group never filters.
    fx.scst
        .set_target_group_state("dg", "a", AluaState::Offline)
        .unwrap();
    assert_eq!(sense_of(&send(&fx.s1, 1, &READ_10)), None);
}

#[test]
fn state_change_ua_reaches_the_device_groups_nexuses_only() {
    let fx = fixture();
    fx.scst
        .set_target_group_state("dg", "a", AluaState::Nonoptimized)
        .unwrap();
    // Both nexuses of d0 (through either group's port) get it; d1's does not.
    assert_eq!(sense_of(&send(&fx.s1, 0, &TUR)), Some((0x06, 0x2A, 0x06)));
    assert_eq!(sense_of(&send(&fx.s2, 0, &TUR)), Some((0x06, 0x2A, 0x06)));
    assert_eq!(sense_of(&send(&fx.s1, 1, &TUR)), None);
    // Setting the same state again is no change.
    fx.scst
        .set_target_group_state("dg", "a", AluaState::Nonoptimized)
        .unwrap();
    assert_eq!(sense_of(&send(&fx.s1, 0, &TUR)), None);
    assert_eq!(
        Sense::UA_ASYMMETRIC_ACCESS_STATE_CHANGED,
        Sense::new(0x06, 0x2A, 0x06)
    );
}

#[test]
fn rtpg_reports_every_target_group_in_both_formats() {
    let fx = fixture();
    fx.scst
        .set_target_group_state("dg", "b", AluaState::Standby)
        .unwrap();
    // The state change UAs.
    let _ = send(&fx.s1, 0, &TUR);
    let _ = send(&fx.s2, 0, &TUR);
    let group_a = [0x80, 0xCF, 0, 10, 0, 0x02, 0, 1, 0, 0, 0, 1];
    let group_b = [0x02, 0xCF, 0, 20, 0, 0x02, 0, 2, 0, 0, 0, 2, 0, 0, 0, 7];
    let mut body = group_a.to_vec();
    body.extend_from_slice(&group_b);

    let r = send(&fx.s1, 0, &rtpg(0, 4096));
    assert_eq!(r.sense, None);
    let mut want = (body.len() as u32).to_be_bytes().to_vec();
    want.extend_from_slice(&body);
    assert_eq!(r.data, want, "format 0");

    let r = send(&fx.s2, 0, &rtpg(1, 4096));
    let mut want = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    want.extend_from_slice(&[0x10, 0, 0, 0]);
    want.extend_from_slice(&body);
    assert_eq!(r.data, want, "format 1, through the other port");

    // The allocation length cuts the data; the length field stays whole.
    let r = send(&fx.s1, 0, &rtpg(0, 6));
    assert_eq!(r.data, want_prefix(&body, 6));

    // Unknown format: invalid field in CDB.
    let r = send(&fx.s1, 0, &rtpg(2, 4096));
    assert_eq!(sense_of(&r), Some((0x05, 0x24, 0x00)));

    // A device outside any group: an empty list.
    let r = send(&fx.s1, 1, &rtpg(0, 4096));
    assert_eq!(r.data, vec![0, 0, 0, 0]);

    // A local target's live rel_tgt_id is reported.
    let t1 = fx.scst.target("iscsi", "iqn.t:1").unwrap();
    fx.scst.set_rel_tgt_id(&t1, 5).unwrap();
    let r = send(&fx.s1, 0, &rtpg(0, 4096));
    assert_eq!(&r.data[4 + 8..4 + 12], &[0, 0, 0, 5]);
}

fn want_prefix(body: &[u8], n: usize) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v.truncate(n);
    v
}

#[test]
fn devices_see_the_ports_group_and_state() {
    let fx = fixture();
    send(&fx.s1, 0, &INQUIRY);
    assert_eq!(
        *fx.d0.last_alua.lock(),
        Some(Some(PortView {
            tpg_id: Some(10),
            state: AluaState::Active
        }))
    );
    fx.scst
        .set_target_group_state("dg", "b", AluaState::Unavailable)
        .unwrap();
    let _ = send(&fx.s2, 0, &TUR);
    send(&fx.s2, 0, &INQUIRY);
    assert_eq!(
        *fx.d0.last_alua.lock(),
        Some(Some(PortView {
            tpg_id: Some(20),
            state: AluaState::Unavailable
        }))
    );
    // Out of the device group: no ALUA at all.
    fx.scst.device_group_remove_device("dg", "d0").unwrap();
    send(&fx.s2, 0, &READ_10);
    assert_eq!(*fx.d0.last_alua.lock(), Some(None));
}

/// Reports sense in descriptor format (control mode page D_SENSE).
struct DSenseDev;

impl Device for DSenseDev {
    fn name(&self) -> &str {
        "dd"
    }
    fn handler_name(&self) -> &'static str {
        "test"
    }
    fn scsi_type(&self) -> u8 {
        0
    }
    fn execute(&self, _: &CmdCtx<'_>, _: &mut Cmd, _: ExecMode) -> Option<Response> {
        Some(Response::good())
    }
    fn descriptor_sense(&self) -> bool {
        true
    }
}

#[test]
fn rtpg_errors_follow_the_device_sense_format() {
    let scst = Scst::new(1);
    scst.add_device(Arc::new(DSenseDev)).unwrap();
    let t = scst.add_target("iscsi", "iqn.t:d", Some(1)).unwrap();
    scst.add_lun(&t, None, 0, "dd", false).unwrap();
    let tid = TransportId::Iscsi {
        name: "iqn.i".into(),
        isid: Some([0x40, 0, 0, 0, 0, 1]),
    };
    let s = scst.register_session(&t, tid, Arc::new(NoEvents));
    assert!(send(&s, 0, &TUR).sense.is_some(), "the POWER ON UA");
    // PARAMETER DATA FORMAT 2 is reserved.
    let r = send(&s, 0, &rtpg(2, 64));
    assert_eq!(r.sense, Some(Sense::invalid_field_in_cdb(1, Some(7))));
    assert_eq!(r.sense_bytes()[0], 0x72);
}
