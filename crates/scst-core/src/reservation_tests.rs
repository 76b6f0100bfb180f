//! Tests of the reservation gate: SPC-2 RESERVE/RELEASE and persistent reservations,
//! driven through `Session::route` as a transport would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use scsi_wire::pr::{sa_in, sa_out, IscsiTid};
use scsi_wire::{status, FieldPointer, Sense};

use crate::cmd::{Cdb, Cmd, ExecMode, Response, TaskAttr};
use crate::device::{CmdCtx, Device};
use crate::pr::PrType;
use crate::registry::{DeviceEntry, Scst};
use crate::session::{Route, Session, SessionEvents, TransportId};
use crate::target::Target;

/// A device that answers GOOD to everything that reaches it.
struct NullDev;

impl Device for NullDev {
    fn name(&self) -> &str {
        "null0"
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
}

/// Counts the aborts the core asks of the session's transport.
#[derive(Default)]
struct Events {
    aborts: AtomicUsize,
}

impl SessionEvents for Events {
    fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {
        self.aborts.fetch_add(1, Ordering::SeqCst);
    }
    fn close(&self) {}
}

struct Fixture {
    scst: Arc<Scst>,
    dev: Arc<DeviceEntry>,
    targets: Vec<Arc<Target>>,
}

const READ_10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const WRITE_10: [u8; 10] = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const TUR: [u8; 6] = [0; 6];
const MODE_SENSE_6: [u8; 6] = [0x1A, 0, 0x3F, 0, 0xFF, 0];
const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 0x24, 0];

const ISID_A: [u8; 6] = [0x40, 0, 0, 0, 0, 1];
const ISID_B: [u8; 6] = [0x40, 0, 0, 0, 0, 2];

impl Fixture {
    /// One device exported as LUN 0 by `ports` targets (rel_tgt_ids 1..=ports).
    fn new(ports: u16) -> Fixture {
        let scst = Scst::new(1);
        let dev = scst.add_device(Arc::new(NullDev)).unwrap();
        let targets = (1..=ports)
            .map(|i| {
                let t = scst
                    .add_target("iscsi", &format!("iqn.t:{i}"), Some(i))
                    .unwrap();
                scst.add_lun(&t, None, 0, "null0", false).unwrap();
                t
            })
            .collect();
        Fixture { scst, dev, targets }
    }

    /// A session on target port `port` (1-based), its POWER ON UA already consumed.
    fn session(&self, port: usize, name: &str, isid: [u8; 6]) -> (Arc<Session>, Arc<Events>) {
        let ev = Arc::new(Events::default());
        let tid = TransportId::Iscsi {
            name: name.to_string(),
            isid: Some(isid),
        };
        let s = self
            .scst
            .register_session(&self.targets[port - 1], tid, ev.clone());
        assert_eq!(run(&s, &TUR, &[]).status, status::CHECK_CONDITION);
        (s, ev)
    }
}

fn run(s: &Session, cdb: &[u8], data: &[u8]) -> Response {
    let mut cmd = Cmd {
        cdb: Cdb::new(cdb).unwrap(),
        lun: 0,
        tag: 1,
        attr: TaskAttr::Simple,
        data_out: data.to_vec(),
        expected_in: 0xFFFF,
    };
    match s.route(&cmd) {
        Route::Done(r) => r,
        Route::Device(td) => s.execute(&td, &mut cmd, ExecMode::Blocking).unwrap(),
    }
}

fn st(r: &Response) -> u8 {
    r.status
}

const GOOD: u8 = status::GOOD;
const CONFLICT: u8 = status::RESERVATION_CONFLICT;

fn good(r: Response) -> Response {
    assert_eq!((r.status, r.sense), (GOOD, None));
    r
}

fn sense_of(r: &Response) -> Sense {
    assert_eq!(r.status, status::CHECK_CONDITION, "{r:?}");
    r.sense.unwrap()
}

fn prout_cdb(sa: u8, pr_type: u8, len: u32) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x5F;
    c[1] = sa;
    c[2] = pr_type;
    c[5..9].copy_from_slice(&len.to_be_bytes());
    c
}

fn basic_list(key: u64, sark: u64, flags: u8) -> Vec<u8> {
    let mut l = vec![0u8; 24];
    l[0..8].copy_from_slice(&key.to_be_bytes());
    l[8..16].copy_from_slice(&sark.to_be_bytes());
    l[20] = flags;
    l
}

/// PR OUT with a basic 24-byte parameter list.
fn prout(s: &Session, sa: u8, pr_type: u8, key: u64, sark: u64) -> Response {
    run(s, &prout_cdb(sa, pr_type, 24), &basic_list(key, sark, 0))
}

fn prin(s: &Session, sa: u8) -> Vec<u8> {
    let cdb = [0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0];
    good(run(s, &cdb, &[])).data
}

fn read_keys(s: &Session) -> (u32, Vec<u64>) {
    let d = prin(s, sa_in::READ_KEYS);
    let gen = u32::from_be_bytes(d[0..4].try_into().unwrap());
    let n = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize / 8;
    let keys = (0..n).map(|i| u64::from_be_bytes(d[8 + 8 * i..16 + 8 * i].try_into().unwrap()));
    (gen, keys.collect())
}

/// (key, type) of the reservation, if any.
fn read_reservation(s: &Session) -> Option<(u64, u8)> {
    let d = prin(s, sa_in::READ_RESERVATION);
    (d[7] == 16).then(|| (u64::from_be_bytes(d[8..16].try_into().unwrap()), d[21]))
}

fn take_ua(s: &Session) -> Option<Sense> {
    s.luns().get(0).unwrap().take_ua()
}

#[test]
fn spc2_reserve_release_between_two_initiators() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    good(run(&a, &[0x16, 0, 0, 0, 0, 0], &[]));
    good(run(&a, &[0x16, 0, 0, 0, 0, 0], &[])); // the holder may reserve again
    assert_eq!(st(&run(&b, &[0x16, 0, 0, 0, 0, 0], &[])), CONFLICT);
    assert_eq!(
        st(&run(&b, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[])),
        CONFLICT
    );
    // RELEASE from a non-holder: GOOD, and the reservation stays.
    good(run(&b, &[0x17, 0, 0, 0, 0, 0], &[]));
    assert_eq!(f.dev.resv.spc2_holder(), Some(a.id));
    // Others: status and identification pass, media access and MODE SENSE conflict.
    for cdb in [
        &TUR[..],
        &INQUIRY[..],
        &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
    ] {
        good(run(&b, cdb, &[]));
    }
    for cdb in [&MODE_SENSE_6[..], &READ_10[..], &WRITE_10[..]] {
        assert_eq!(st(&run(&b, cdb, &[])), CONFLICT);
    }
    // PR commands conflict with another nexus's SPC-2 reservation, and PR OUT does even
    // for the holder.
    assert_eq!(
        st(&run(&b, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[])),
        CONFLICT
    );
    assert_eq!(st(&prout(&a, sa_out::REGISTER, 0, 0, 1)), CONFLICT);
    good(run(&a, &READ_10, &[]));
    good(run(&a, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]));
    good(run(&b, &[0x16, 0, 0, 0, 0, 0], &[]));
    good(run(&b, &WRITE_10, &[]));
    assert_eq!(st(&run(&a, &WRITE_10, &[])), CONFLICT);
}

#[test]
fn spc2_reservation_cleared_by_reset_and_nexus_loss() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, b_ev) = f.session(1, "iqn.i:b", ISID_B);
    good(run(&a, &[0x16, 0, 0, 0, 0, 0], &[]));
    a.lun_reset(0).unwrap();
    assert_eq!(f.dev.resv.spc2_holder(), None);
    assert_eq!(b_ev.aborts.load(Ordering::SeqCst), 1);
    assert_eq!(take_ua(&b), Some(Sense::UA_POWER_ON_RESET));
    good(run(&b, &[0x16, 0, 0, 0, 0, 0], &[]));
    b.unregister();
    assert_eq!(f.dev.resv.spc2_holder(), None);
    let _ = take_ua(&a);
    good(run(&a, &[0x16, 0, 0, 0, 0, 0], &[]));
    drop(a); // dropping the session is nexus loss too
    assert_eq!(f.dev.resv.spc2_holder(), None);
    assert!(!f.dev.resv.any());
}

#[test]
fn spc2_third_party_and_extent_reservations_are_rejected() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let s = sense_of(&run(&a, &[0x56, 0x10, 0, 5, 0, 0, 0, 0, 0, 0], &[]));
    assert_eq!(
        (s.asc, s.field),
        (
            0x24,
            Some(FieldPointer {
                in_cdb: true,
                byte: 1,
                bit: Some(4)
            })
        )
    );
    let s = sense_of(&run(&a, &[0x56, 0x02, 0, 0, 0, 0, 0, 0, 8, 0], &[]));
    assert_eq!(s.field.unwrap().bit, Some(1));
    let s = sense_of(&run(&a, &[0x16, 0x01, 0, 0, 0, 0], &[]));
    assert_eq!(s.field.unwrap().bit, Some(0));
    assert_eq!(f.dev.resv.spc2_holder(), None);
}

#[test]
fn spc2_with_registrants_follows_crh() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    // Registrants but no reservation: nobody may RESERVE or RELEASE.
    assert_eq!(st(&run(&a, &[0x16, 0, 0, 0, 0, 0], &[])), CONFLICT);
    good(prout(
        &a,
        sa_out::RESERVE,
        PrType::WriteExclusive as u8,
        0xA,
        0,
    ));
    // The PR holder's RESERVE/RELEASE are no-ops; nobody else's pass.
    good(run(&a, &[0x16, 0, 0, 0, 0, 0], &[]));
    good(run(&a, &[0x17, 0, 0, 0, 0, 0], &[]));
    assert_eq!(f.dev.resv.spc2_holder(), None);
    assert_eq!(read_reservation(&a), Some((0xA, 1)));
    assert_eq!(st(&run(&b, &[0x16, 0, 0, 0, 0, 0], &[])), CONFLICT);
    assert_eq!(st(&run(&b, &[0x17, 0, 0, 0, 0, 0], &[])), CONFLICT);
}

#[test]
fn register_read_keys_and_generation() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    assert_eq!(read_keys(&a), (0, vec![]));
    // An unregistered nexus with a non-zero reservation key conflicts.
    assert_eq!(st(&prout(&a, sa_out::REGISTER, 0, 5, 0xA)), CONFLICT);
    // SARK 0 from an unregistered nexus: nothing happens, no generation bump.
    good(prout(&a, sa_out::REGISTER, 0, 0, 0));
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    good(prout(&b, sa_out::REGISTER, 0, 0, 0xB));
    assert_eq!(read_keys(&b), (2, vec![0xA, 0xB]));
    // Wrong key from a registered nexus conflicts; REGISTER AND IGNORE does not care.
    assert_eq!(st(&prout(&a, sa_out::REGISTER, 0, 0xB, 0xC)), CONFLICT);
    good(prout(&a, sa_out::REGISTER, 0, 0xA, 0xAA));
    good(prout(&b, sa_out::REGISTER_AND_IGNORE, 0, 0x1234, 0xBB));
    assert_eq!(read_keys(&a), (4, vec![0xAA, 0xBB]));
    good(prout(&b, sa_out::REGISTER, 0, 0xBB, 0));
    assert_eq!(read_keys(&a), (5, vec![0xAA]));
    // Non-registrants may not use the other service actions.
    for sa in [
        sa_out::RESERVE,
        sa_out::RELEASE,
        sa_out::CLEAR,
        sa_out::PREEMPT,
    ] {
        assert_eq!(st(&prout(&b, sa, 1, 0, 0xAA)), CONFLICT, "sa {sa}");
    }
    // RESERVE and RELEASE do not bump the generation.
    good(prout(&a, sa_out::RESERVE, 1, 0xAA, 0));
    good(prout(&a, sa_out::RELEASE, 1, 0xAA, 0));
    assert_eq!(read_keys(&a).0, 5);
}

/// Mirrors libiscsi's PR access tests: (registered B read, write, unregistered B read,
/// write) for each type, A being the reserver.
#[test]
fn conflict_matrix_for_every_type() {
    let cases = [
        (PrType::WriteExclusive, [1, 0, 1, 0]),
        (PrType::ExclusiveAccess, [0, 0, 0, 0]),
        (PrType::WriteExclusiveRegistrantsOnly, [1, 1, 1, 0]),
        (PrType::ExclusiveAccessRegistrantsOnly, [1, 1, 0, 0]),
        (PrType::WriteExclusiveAllRegistrants, [1, 1, 1, 0]),
        (PrType::ExclusiveAccessAllRegistrants, [1, 1, 0, 0]),
    ];
    for (ty, expect) in cases {
        let f = Fixture::new(1);
        let (a, _) = f.session(1, "iqn.i:a", ISID_A);
        let (b, _) = f.session(1, "iqn.i:b", ISID_B);
        // Same key on both, as libiscsi's rand_key() usually gives.
        good(prout(&a, sa_out::REGISTER_AND_IGNORE, 0, 0, 0x77));
        good(prout(&b, sa_out::REGISTER_AND_IGNORE, 0, 0, 0x77));
        good(prout(&a, sa_out::RESERVE, ty as u8, 0x77, 0));
        let key = if ty.all_registrants() { 0 } else { 0x77 };
        assert_eq!(read_reservation(&b), Some((key, ty as u8)));
        good(run(&a, &READ_10, &[]));
        good(run(&a, &WRITE_10, &[]));
        let ok = |r: Response| (r.status == GOOD) as i32;
        let got_reg = [ok(run(&b, &READ_10, &[])), ok(run(&b, &WRITE_10, &[]))];
        good(prout(&b, sa_out::REGISTER, 0, 0x77, 0));
        let got_unreg = [ok(run(&b, &READ_10, &[])), ok(run(&b, &WRITE_10, &[]))];
        let got = [got_reg[0], got_reg[1], got_unreg[0], got_unreg[1]];
        assert_eq!(got, expect, "{ty:?}");
        // Allowed under every type: status, identification, PR IN, READ CAPACITY.
        good(run(&b, &TUR, &[]));
        good(run(&b, &INQUIRY, &[]));
        good(run(&b, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]));
        let ms = run(&b, &MODE_SENSE_6, &[]).status;
        assert_eq!(ms == GOOD, !ty.exclusive_access(), "{ty:?} MODE SENSE");
        good(prout(&a, sa_out::RELEASE, ty as u8, 0x77, 0));
        good(prout(&a, sa_out::REGISTER, 0, 0x77, 0));
        assert!(!f.dev.resv.any());
    }
}

#[test]
fn reserve_and_release_rules() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    good(prout(&b, sa_out::REGISTER, 0, 0, 0xB));
    // Wrong reservation key conflicts.
    assert_eq!(st(&prout(&a, sa_out::RESERVE, 5, 0xB, 0)), CONFLICT);
    good(prout(&a, sa_out::RESERVE, 5, 0xA, 0));
    good(prout(&a, sa_out::RESERVE, 5, 0xA, 0)); // same type again: no-op
    assert_eq!(st(&prout(&a, sa_out::RESERVE, 1, 0xA, 0)), CONFLICT); // other type
    assert_eq!(st(&prout(&b, sa_out::RESERVE, 5, 0xB, 0)), CONFLICT);
    // A non-holder's RELEASE does nothing.
    good(prout(&b, sa_out::RELEASE, 5, 0xB, 0));
    assert_eq!(read_reservation(&b), Some((0xA, 5)));
    // The holder releasing with the wrong type: INVALID RELEASE OF PERSISTENT RESERVATION.
    let s = sense_of(&prout(&a, sa_out::RELEASE, 1, 0xA, 0));
    assert_eq!((s.key, s.asc, s.ascq), (5, 0x26, 0x04));
    assert_eq!(take_ua(&b), None);
    good(prout(&a, sa_out::RELEASE, 5, 0xA, 0));
    // Registrants-only release: the other registrants are told.
    assert_eq!(take_ua(&b), Some(Sense::UA_RESERVATIONS_RELEASED));
    assert_eq!(read_reservation(&b), None);
    assert_eq!(take_ua(&a), None);
    // A Write Exclusive release is silent.
    good(prout(&a, sa_out::RESERVE, 1, 0xA, 0));
    good(prout(&a, sa_out::RELEASE, 1, 0xA, 0));
    assert_eq!(take_ua(&b), None);
}

#[test]
fn holder_unregistering_releases_registrants_only_reservation() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    good(prout(&b, sa_out::REGISTER, 0, 0, 0xB));
    good(prout(&a, sa_out::RESERVE, 6, 0xA, 0));
    good(prout(&a, sa_out::REGISTER, 0, 0xA, 0));
    assert_eq!(take_ua(&b), Some(Sense::UA_RESERVATIONS_RELEASED));
    assert_eq!(read_reservation(&b), None);
    // All registrants: the reservation lives while anyone is registered.
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    good(prout(&b, sa_out::RESERVE, 8, 0xB, 0));
    good(prout(&b, sa_out::REGISTER, 0, 0xB, 0));
    assert_eq!(read_reservation(&a), Some((0, 8)));
    good(prout(&a, sa_out::REGISTER, 0, 0xA, 0));
    assert_eq!(read_reservation(&a), None);
    assert!(!f.dev.resv.any());
}

#[test]
fn clear_removes_everything_and_tells_the_others() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    good(prout(&b, sa_out::REGISTER, 0, 0, 0xB));
    good(prout(&a, sa_out::RESERVE, 3, 0xA, 0));
    assert_eq!(st(&prout(&b, sa_out::CLEAR, 0, 0xA, 0)), CONFLICT); // wrong key
    good(prout(&b, sa_out::CLEAR, 0, 0xB, 0));
    assert_eq!(read_keys(&b), (3, vec![]));
    assert_eq!(read_reservation(&b), None);
    assert_eq!(take_ua(&a), Some(Sense::UA_RESERVATIONS_PREEMPTED));
    assert_eq!(take_ua(&b), None);
    good(run(&b, &WRITE_10, &[]));
}

#[test]
fn preempt_without_reservation_removes_registrations() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    // libiscsi's preempt test: both often register the same key; B preempts it.
    good(prout(&a, sa_out::REGISTER_AND_IGNORE, 0, 0, 0x5));
    good(prout(&b, sa_out::REGISTER_AND_IGNORE, 0, 0, 0x5));
    let gen = read_keys(&a).0;
    good(prout(&b, sa_out::PREEMPT, 3, 0x5, 0x5));
    assert_eq!(read_keys(&b), (gen + 1, vec![0x5]));
    assert_eq!(take_ua(&a), Some(Sense::UA_REGISTRATIONS_PREEMPTED));
    assert_eq!(take_ua(&b), None);
    // Preempting a key nobody has conflicts; SARK 0 is an invalid field.
    assert_eq!(st(&prout(&b, sa_out::PREEMPT, 3, 0x5, 0x99)), CONFLICT);
    let s = sense_of(&prout(&b, sa_out::PREEMPT, 3, 0x5, 0));
    assert_eq!(s, Sense::invalid_field_in_param(8, None));
}

#[test]
fn preempt_and_abort_takes_the_reservation() {
    let f = Fixture::new(1);
    let (a, a_ev) = f.session(1, "iqn.i:a", ISID_A);
    let (b, b_ev) = f.session(1, "iqn.i:b", ISID_B);
    let (c, c_ev) = f.session(1, "iqn.i:c", ISID_A);
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    good(prout(&b, sa_out::REGISTER, 0, 0, 0xB));
    good(prout(&c, sa_out::REGISTER, 0, 0, 0xC));
    good(prout(&a, sa_out::RESERVE, 1, 0xA, 0));
    good(prout(&b, sa_out::PREEMPT_AND_ABORT, 3, 0xB, 0xA));
    assert_eq!(read_reservation(&b), Some((0xB, 3)));
    assert_eq!(read_keys(&b).1, vec![0xB, 0xC]);
    assert_eq!(a_ev.aborts.load(Ordering::SeqCst), 1);
    assert_eq!(b_ev.aborts.load(Ordering::SeqCst), 0);
    assert_eq!(c_ev.aborts.load(Ordering::SeqCst), 0);
    assert_eq!(take_ua(&a), Some(Sense::UA_REGISTRATIONS_PREEMPTED));
    assert_eq!(
        take_ua(&a),
        Some(Sense::UA_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR)
    );
    // C kept its registration but the type changed under it.
    assert_eq!(take_ua(&c), Some(Sense::UA_RESERVATIONS_RELEASED));
    assert_eq!(st(&run(&a, &READ_10, &[])), CONFLICT);
    // Plain PREEMPT of a non-holder's key leaves the reservation alone.
    good(prout(&b, sa_out::PREEMPT, 3, 0xB, 0xC));
    assert_eq!(read_reservation(&b), Some((0xB, 3)));
    assert_eq!(take_ua(&c), Some(Sense::UA_REGISTRATIONS_PREEMPTED));
    assert_eq!(c_ev.aborts.load(Ordering::SeqCst), 0);
}

#[test]
fn preempt_all_registrants_with_zero_key() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    good(prout(&b, sa_out::REGISTER, 0, 0, 0xB));
    good(prout(&a, sa_out::RESERVE, 7, 0xA, 0));
    good(prout(&b, sa_out::PREEMPT, 1, 0xB, 0));
    assert_eq!(read_keys(&b).1, vec![0xB]);
    assert_eq!(read_reservation(&b), Some((0xB, 1)));
}

fn tid_list(tids: &[IscsiTid]) -> Vec<u8> {
    let body: Vec<u8> = tids.iter().flat_map(|t| t.encode()).collect();
    let mut l = (body.len() as u32).to_be_bytes().to_vec();
    l.extend_from_slice(&body);
    l
}

#[test]
fn register_with_spec_i_pt_and_all_tg_pt() {
    let f = Fixture::new(2);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    let (b2, _) = f.session(2, "iqn.i:b", ISID_B);
    // A registers itself and, by name only, initiator B, on all target ports.
    let mut l = basic_list(0, 0xA, 0x08 | 0x04);
    l.extend(tid_list(&[IscsiTid {
        name: "IQN.I:B".into(),
        isid: None,
    }]));
    good(run(&a, &prout_cdb(sa_out::REGISTER, 0, l.len() as u32), &l));
    let regs = f.dev.pr_state().registrants;
    let mut who: Vec<(String, u16)> = regs.iter().map(|r| (r.tid.name(), r.rel_tgt_id)).collect();
    who.sort();
    assert_eq!(
        who,
        [
            ("IQN.I:B".into(), 1),
            ("IQN.I:B".into(), 2),
            ("iqn.i:a".into(), 1),
            ("iqn.i:a".into(), 2)
        ]
    );
    // B is registered on both ports with A's key and may reserve.
    good(prout(&b2, sa_out::RESERVE, 6, 0xA, 0));
    good(run(&b, &WRITE_10, &[]));
    // Registering an already registered nexus again through SPEC_I_PT conflicts.
    let (c, _) = f.session(1, "iqn.i:c", ISID_A);
    let mut l = basic_list(0, 0xC, 0x08);
    l.extend(tid_list(&[IscsiTid {
        name: "iqn.i:b".into(),
        isid: Some(ISID_B),
    }]));
    assert_eq!(st(&run(&c, &prout_cdb(0, 0, l.len() as u32), &l)), CONFLICT);
    assert_eq!(f.dev.pr_state().registrants.len(), 4);
    // SPEC_I_PT from a registered nexus is an invalid field.
    let mut l = basic_list(0xA, 0xA, 0x08);
    l.extend(tid_list(&[IscsiTid {
        name: "iqn.i:z".into(),
        isid: None,
    }]));
    let s = sense_of(&run(&a, &prout_cdb(0, 0, l.len() as u32), &l));
    assert_eq!(s, Sense::invalid_field_in_param(20, Some(3)));
}

#[test]
fn register_and_move_hands_over_the_reservation() {
    let f = Fixture::new(2);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(2, "iqn.i:b", ISID_B);
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    good(prout(&a, sa_out::RESERVE, 3, 0xA, 0));
    let list = |key: u64, sark: u64, flags: u8, port: u16, t: &IscsiTid| {
        let tid = t.encode();
        let mut l = vec![0u8; 24];
        l[0..8].copy_from_slice(&key.to_be_bytes());
        l[8..16].copy_from_slice(&sark.to_be_bytes());
        l[17] = flags;
        l[18..20].copy_from_slice(&port.to_be_bytes());
        l[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        l.extend(tid);
        l
    };
    let tb = IscsiTid {
        name: "iqn.i:b".into(),
        isid: Some(ISID_B),
    };
    let mv = |s: &Session, l: Vec<u8>| run(s, &prout_cdb(7, 0, l.len() as u32), &l);
    // Unknown port, zero key, moving to oneself: invalid fields.
    assert_eq!(
        sense_of(&mv(&a, list(0xA, 0xB, 0, 9, &tb))),
        Sense::invalid_field_in_param(18, None)
    );
    assert_eq!(
        sense_of(&mv(&a, list(0xA, 0, 0, 2, &tb))),
        Sense::invalid_field_in_param(8, None)
    );
    let ta = IscsiTid {
        name: "iqn.i:a".into(),
        isid: Some(ISID_A),
    };
    assert_eq!(
        sense_of(&mv(&a, list(0xA, 0xB, 0, 1, &ta))),
        Sense::invalid_field_in_param(24, None)
    );
    let gen = read_keys(&a).0;
    // UNREG + APTPL.
    let r = good(mv(&a, list(0xA, 0xB, 0x03, 2, &tb)));
    assert_eq!(r.data_out_len, Some(24 + tb.encode().len() as u32));
    let ps = f.dev.pr_state();
    assert!(ps.aptpl);
    assert_eq!(ps.generation, gen + 1);
    assert_eq!(read_reservation(&b), Some((0xB, 3)));
    assert_eq!(read_keys(&b).1, vec![0xB]);
    good(run(&b, &WRITE_10, &[]));
    assert_eq!(st(&run(&a, &READ_10, &[])), CONFLICT);
    // Not the holder any more (not even registered): conflict.
    assert_eq!(st(&mv(&a, list(0xA, 0xB, 0, 2, &tb))), CONFLICT);
}

#[test]
fn read_full_status_and_report_capabilities() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    let aptpl = {
        let mut l = basic_list(0, 0xA, 0x01);
        l.truncate(24);
        l
    };
    good(run(&a, &prout_cdb(0, 0, 24), &aptpl));
    // CRH, SIP_C, ATP_C, PTPL_C; TMV, ALLOW COMMANDS 100b, PTPL_A; all six types.
    let caps = prin(&a, sa_in::REPORT_CAPABILITIES);
    assert_eq!(caps, [0, 8, 0x1D, 0xC1, 0xEA, 0x01, 0, 0]);
    // APTPL is device-wide: the last REGISTER sets it.
    good(prout(&b, sa_out::REGISTER, 0, 0, 0xB));
    assert_eq!(prin(&a, sa_in::REPORT_CAPABILITIES)[3], 0xC0);
    good(prout(&b, sa_out::RESERVE, 5, 0xB, 0));

    let d = prin(&a, sa_in::READ_FULL_STATUS);
    assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()), 2);
    assert_eq!(
        u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize,
        d.len() - 8
    );
    let mut p = 8;
    let mut seen = Vec::new();
    while p < d.len() {
        let desc = &d[p..];
        let key = u64::from_be_bytes(desc[0..8].try_into().unwrap());
        let tid_len = u32::from_be_bytes(desc[20..24].try_into().unwrap()) as usize;
        let (tid, n) = IscsiTid::decode(&desc[24..24 + tid_len]).unwrap();
        assert_eq!(n, tid_len);
        assert_eq!(u16::from_be_bytes([desc[18], desc[19]]), 1);
        seen.push((key, desc[12], desc[13], tid));
        p += 24 + tid_len;
    }
    assert_eq!(
        seen,
        vec![
            (
                0xA,
                0,
                0,
                IscsiTid {
                    name: "iqn.i:a".into(),
                    isid: Some(ISID_A)
                }
            ),
            (
                0xB,
                1,
                5,
                IscsiTid {
                    name: "iqn.i:b".into(),
                    isid: Some(ISID_B)
                }
            ),
        ]
    );
    // Allocation length truncates; the header still tells the full length.
    let r = good(run(&a, &[0x5E, 3, 0, 0, 0, 0, 0, 0, 10, 0], &[]));
    assert_eq!(r.data.len(), 10);
}

#[test]
fn parameter_and_cdb_validation() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let list = basic_list(0, 0xA, 0);
    // Parameter list length must be 24 without SPEC_I_PT.
    for len in [0u32, 23, 25] {
        let mut l = list.clone();
        l.resize(len as usize, 0);
        let r = run(&a, &prout_cdb(0, 0, len), &l);
        assert_eq!(sense_of(&r), Sense::PARAM_LIST_LENGTH_ERROR, "len {len}");
        assert_eq!(r.data_out_len, Some(len));
    }
    // Unknown service actions, in and out.
    assert_eq!(
        sense_of(&run(&a, &prout_cdb(0x08, 0, 24), &list)),
        Sense::invalid_field_in_cdb(1, Some(4))
    );
    for sa in [4u8, 0x1F] {
        let r = run(&a, &[0x5E, sa, 0, 0, 0, 0, 0, 0, 8, 0], &[]);
        assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(1, Some(4)));
    }
    good(run(&a, &prout_cdb(0, 0, 24), &list));
    // Scope other than LU, reserved types.
    let r = run(
        &a,
        &prout_cdb(sa_out::RESERVE, 0x11, 24),
        &basic_list(0xA, 0, 0),
    );
    assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(2, Some(7)));
    for ty in [0u8, 2, 4, 9, 0xF] {
        let r = run(
            &a,
            &prout_cdb(sa_out::RESERVE, ty, 24),
            &basic_list(0xA, 0, 0),
        );
        assert_eq!(
            sense_of(&r),
            Sense::invalid_field_in_cdb(2, Some(3)),
            "type {ty}"
        );
    }
    // SPEC_I_PT only with REGISTER, ALL_TG_PT only with the REGISTER actions.
    let r = run(
        &a,
        &prout_cdb(sa_out::REGISTER_AND_IGNORE, 0, 24),
        &basic_list(0, 1, 0x08),
    );
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param(20, Some(3)));
    let r = run(
        &a,
        &prout_cdb(sa_out::CLEAR, 0, 24),
        &basic_list(0xA, 0, 0x04),
    );
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param(20, Some(2)));
    // A malformed TransportID points at it.
    let mut l = basic_list(0, 0xB, 0x08);
    l.extend_from_slice(&8u32.to_be_bytes());
    l.extend_from_slice(&[0x01, 0, 0, 4, b'x', 0, 0, 0]);
    let r = run(&a, &prout_cdb(0, 0, l.len() as u32), &l);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param(28, None));
    // Less data-out than the CDB announced: the list is too short; more: cut to size.
    let r = run(&a, &prout_cdb(sa_out::REGISTER, 0, 24), &[0u8; 3]);
    assert_eq!(sense_of(&r), Sense::PARAM_LIST_LENGTH_ERROR);
    let mut long = basic_list(0xA, 0xAB, 0);
    long.resize(40, 0xFF);
    good(run(&a, &prout_cdb(sa_out::REGISTER, 0, 24), &long));
    assert_eq!(read_keys(&a).1, vec![0xAB]);
}

#[test]
fn unit_attention_comes_before_conflict() {
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(1, "iqn.i:b", ISID_B);
    good(prout(&a, sa_out::REGISTER, 0, 0, 0xA));
    good(prout(&a, sa_out::RESERVE, 3, 0xA, 0));
    b.luns()
        .get(0)
        .unwrap()
        .queue_ua(Sense::UA_CAPACITY_DATA_CHANGED);
    assert_eq!(
        sense_of(&run(&b, &READ_10, &[])),
        Sense::UA_CAPACITY_DATA_CHANGED
    );
    assert_eq!(st(&run(&b, &READ_10, &[])), CONFLICT);
    // LUN reset leaves the persistent reservation alone.
    b.lun_reset(0).unwrap();
    assert_eq!(take_ua(&a), Some(Sense::UA_POWER_ON_RESET));
    assert_eq!(read_reservation(&a).map(|r| r.1), Some(3));
}

/// Garbage CDBs and parameter lists never panic the core.
#[test]
fn fuzzed_pr_commands_do_not_panic() {
    let f = Fixture::new(2);
    let (a, _) = f.session(1, "iqn.i:a", ISID_A);
    let (b, _) = f.session(2, "iqn.i:b", ISID_B);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000 {
        let s = if i % 2 == 0 { &a } else { &b };
        let r = next();
        let op = [0x5E, 0x5F, 0x16, 0x17, 0x56, 0x57][(r % 6) as usize];
        let cdb_len = 6 + (r >> 8) as usize % 5;
        let mut cdb: Vec<u8> = (0..cdb_len).map(|_| next() as u8).collect();
        cdb[0] = op;
        cdb[1] &= 0x0F; // mostly valid service actions
        let plen = (next() % 80) as u32;
        if op == 0x5F && cdb.len() >= 10 {
            cdb[5..9].copy_from_slice(&plen.to_be_bytes());
        }
        let mut data: Vec<u8> = (0..plen).map(|_| next() as u8).collect();
        if next() % 2 == 0 && data.len() > 20 {
            data[0..8].copy_from_slice(&[0; 8]);
            data[20] &= 0x0D;
        }
        let _ = run(s, &cdb, &data);
        let _ = run(s, &READ_10, &[]);
    }
}

/// A device whose control mode page says TST 000b: one task set for all nexuses.
struct SharedTaskSetDev;

impl Device for SharedTaskSetDev {
    fn name(&self) -> &str {
        "shared0"
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
    fn shared_task_set(&self) -> bool {
        true
    }
}

#[test]
fn clear_task_set_reaches_other_nexuses_only_with_a_shared_task_set() {
    // TST 001b (per-nexus task sets): the other session is untouched.
    let f = Fixture::new(1);
    let (a, _) = f.session(1, "iqn.a", ISID_A);
    let (b, ev_b) = f.session(1, "iqn.b", ISID_B);
    a.clear_task_set(0).unwrap();
    assert_eq!(ev_b.aborts.load(Ordering::SeqCst), 0);
    good(run(&b, &TUR, &[]));

    // TST 000b: the other session's tasks are aborted and it is told so.
    let scst = Scst::new(1);
    scst.add_device(Arc::new(SharedTaskSetDev)).unwrap();
    let t = scst.add_target("iscsi", "iqn.t:shared", Some(1)).unwrap();
    scst.add_lun(&t, None, 0, "shared0", false).unwrap();
    let f = Fixture {
        dev: scst.device("shared0").unwrap(),
        scst,
        targets: vec![t],
    };
    let (a, ev_a) = f.session(1, "iqn.a", ISID_A);
    let (b, ev_b) = f.session(1, "iqn.b", ISID_B);
    a.clear_task_set(0).unwrap();
    assert_eq!(
        ev_a.aborts.load(Ordering::SeqCst),
        0,
        "the caller aborts its own"
    );
    assert_eq!(ev_b.aborts.load(Ordering::SeqCst), 1);
    let r = run(&b, &TUR, &[]);
    assert_eq!(
        r.sense,
        Some(Sense::UA_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR)
    );
}
