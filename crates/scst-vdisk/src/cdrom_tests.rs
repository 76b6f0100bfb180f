//! Command-level tests of vcdrom and of `removable` disks through the `Device`
//! interface, and of media changes through the core (unit attentions, nexus loss).

use crate::create_device;
use crate::removable::MEDIUM_REMOVAL_PREVENTED;
use crate::test_util::{self, attrs, cmd, good, run_ctx, rw10, sense, CTX};
use scsi_wire::Sense;
use scst_core::{
    AttrError, CmdCtx, Device, DeviceEntry, ExecMode, Response, Route, Scst, Session,
    SessionEvents, TransportId,
};
use std::io::Write;
use std::sync::Arc;

const OTHER: CmdCtx<'static> = CmdCtx {
    initiator_name: "iqn.other",
    ..CTX
};

const TUR: [u8; 6] = [0; 6];
const PREVENT: [u8; 6] = [0x1E, 0, 0, 0, 1, 0];
const ALLOW: [u8; 6] = [0x1E, 0, 0, 0, 0, 0];
const EJECT: [u8; 6] = [0x1B, 0, 0, 0, 0x02, 0];
const LOAD: [u8; 6] = [0x1B, 0, 0, 0, 0x03, 0];

/// [`test_util::run`] of a command without data-out.
fn run(d: &dyn Device, cdb: &[u8]) -> Response {
    test_util::run(d, cdb, Vec::new())
}

/// An "ISO" of `blocks` 2048-byte blocks, block i filled with byte i, plus a partial
/// trailing block that is not addressable.
fn iso(blocks: u64) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for i in 0..blocks {
        f.write_all(&[i as u8; 2048]).unwrap();
    }
    f.write_all(&[0xEE; 100]).unwrap();
    f.flush().unwrap();
    f
}

fn path(f: &tempfile::NamedTempFile) -> &str {
    f.path().to_str().unwrap()
}

fn vcdrom(file: Option<&tempfile::NamedTempFile>) -> Arc<dyn Device> {
    let a = match file {
        Some(f) => attrs(&[("filename", path(f))]),
        None => attrs(&[("tst", "1")]),
    };
    create_device("vcdrom", "cd0", &a, 0).unwrap()
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(0x28, lba, blocks, 0)
}

#[test]
fn identity_capacity_and_reads() {
    let f = iso(40);
    let d = vcdrom(Some(&f));
    assert_eq!((d.handler_name(), d.scsi_type()), ("vcdrom", 5));
    let inq = run(&*d, &[0x12, 0, 0, 0, 96, 0]);
    good(&inq);
    assert_eq!((inq.data[0], inq.data[1]), (0x05, 0x80));
    assert_eq!(&inq.data[8..16], b"SCST_FIO");
    let vpd = run(&*d, &[0x12, 1, 0, 0, 255, 0]).data;
    assert_eq!(&vpd[..7], &[0x05, 0, 0, 3, 0, 0x80, 0x83]);
    assert_eq!(
        sense(&run(&*d, &[0x12, 1, 0xB0, 0, 255, 0])),
        Sense::invalid_field_in_cdb(2, None)
    );
    let cap = run(&*d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]).data;
    assert_eq!(cap, vec![0, 0, 0, 39, 0, 0, 8, 0]);
    let r = run(&*d, &read10(5, 2));
    good(&r);
    assert!(r.data[..2048].iter().all(|b| *b == 5) && r.data[2048..].iter().all(|b| *b == 6));
    // READ(12) and READ(16) too; READ(6) is not an MMC command.
    assert_eq!(
        run(&*d, &[0xA8, 0, 0, 0, 0, 39, 0, 0, 0, 1, 0, 0]).data[0],
        39
    );
    let r16 = run(&*d, &[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0]);
    assert_eq!(r16.data[0], 1);
    assert_eq!(
        sense(&run(&*d, &[0x08, 0, 0, 0, 1, 0])),
        Sense::INVALID_OPCODE
    );
    assert_eq!(sense(&run(&*d, &read10(39, 2))), Sense::LBA_OUT_OF_RANGE);
    assert_eq!(
        sense(&run(&*d, &[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0])),
        Sense::invalid_field_in_cdb(1, Some(7))
    );
    // Always read-only.
    let w = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let mut c = cmd(&w, vec![0; 2048]);
    let r = d.execute(&CTX, &mut c, ExecMode::Blocking).unwrap();
    assert_eq!(sense(&r), Sense::WRITE_PROTECTED);
    good(&run(&*d, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    let attrs = d.attributes();
    let get = |k: &str| attrs.iter().find(|a| a.0 == k).map(|a| a.1.clone());
    assert_eq!(get("filename").as_deref(), Some(path(&f)));
    assert_eq!(get("size"), Some((40 * 2048 + 100).to_string()));
}

#[test]
fn no_medium() {
    let d = vcdrom(None);
    assert_eq!(d.pending_sense(), Some(Sense::MEDIUM_NOT_PRESENT));
    for cdb in [
        &TUR[..],
        &read10(0, 1),
        &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0],
        &[0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0],
        &[0x2A, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        assert_eq!(
            sense(&run(&*d, cdb)),
            Sense::MEDIUM_NOT_PRESENT,
            "{cdb:02x?}"
        );
    }
    // Identification, configuration, events and tray control work without a medium.
    good(&run(&*d, &[0x12, 0, 0, 0, 36, 0]));
    let gc = run(&*d, &[0x46, 0, 0, 0, 0, 0, 0, 0, 255, 0]);
    good(&gc);
    assert_eq!(&gc.data[6..8], &[0, 0]);
    let ev = run(&*d, &[0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8, 0]);
    assert_eq!(ev.data[5], 0); // no medium, tray closed
    good(&run(&*d, &[0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0]));
    good(&run(&*d, &[0x1A, 0, 0x3F, 0, 255, 0]));
    good(&run(&*d, &PREVENT));
    good(&run(&*d, &ALLOW));
    // Unknown opcodes stay unknown.
    assert_eq!(
        sense(&run(&*d, &[0x04, 0, 0, 0, 0, 0])),
        Sense::INVALID_OPCODE
    );
    assert_eq!(d.attributes()[0], ("filename".into(), String::new(), true));
}

#[test]
fn mmc_field_pointers() {
    let f = iso(40);
    let d = vcdrom(Some(&f));
    let cases: [(&[u8], Sense); 8] = [
        (
            &[0x43, 0, 3, 0, 0, 0, 0, 0, 12, 0],
            Sense::invalid_field_in_cdb(2, Some(3)),
        ),
        (
            &[0x43, 0, 0, 0, 0, 0, 5, 0, 12, 0],
            Sense::invalid_field_in_cdb(6, None),
        ),
        (
            &[0x46, 3, 0, 0, 0, 0, 0, 0, 12, 0],
            Sense::invalid_field_in_cdb(1, Some(1)),
        ),
        (
            &[0x4A, 0, 0, 0, 0x10, 0, 0, 0, 8, 0],
            Sense::invalid_field_in_cdb(1, Some(0)),
        ),
        (
            &[0x51, 2, 0, 0, 0, 0, 0, 0, 34, 0],
            Sense::invalid_field_in_cdb(1, Some(2)),
        ),
        // No caching page on a CD; no log pages.
        (
            &[0x1A, 0, 0x08, 0, 255, 0],
            Sense::invalid_field_in_cdb(2, Some(5)),
        ),
        (
            &[0x4D, 0, 0, 0, 0, 0, 0, 0, 255, 0],
            Sense::invalid_field_in_cdb(2, None),
        ),
        (
            &[0x12, 2, 0, 0, 255, 0],
            Sense::invalid_field_in_cdb(1, Some(1)),
        ),
    ];
    for (cdb, want) in cases {
        assert_eq!(sense(&run(&*d, cdb)), want, "{cdb:02x?}");
    }
    // Mode pages: 01h, 0Ah, 1Ch, 2Ah; WP but no DPOFUA.
    let ms = run(&*d, &[0x1A, 0x08, 0x3F, 0, 255, 0]).data;
    let mut codes = Vec::new();
    let mut p = 4;
    while p < ms.len() {
        codes.push(ms[p] & 0x3F);
        p += 2 + ms[p + 1] as usize;
    }
    assert_eq!((ms[2], codes), (0x80, vec![0x01, 0x0A, 0x1C, 0x2A]));
    // MODE SELECT of the caching page is refused, of the control page accepted.
    let mut c = cmd(&[0x15, 0x10, 0, 0, 24, 0], {
        let mut d = vec![0, 0, 0, 0];
        d.extend_from_slice(
            &scsi_wire::mode::CachingPage::default().encode(scsi_wire::PageControl::Current),
        );
        d
    });
    let r = d.execute(&CTX, &mut c, ExecMode::Blocking).unwrap();
    assert_eq!(sense(&r), Sense::invalid_field_in_param(4, Some(5)));
    // TOC of the 40-block disc.
    let toc = run(&*d, &[0x43, 0, 0, 0, 0, 0, 0, 0, 255, 0]).data;
    assert_eq!(&toc[12..20], &[0, 0x14, 0xAA, 0, 0, 0, 0, 40]);
}

/// Every opcode the table reports reaches a handler on a loaded drive, and every other
/// one is INVALID OPERATION CODE (writes excepted: refused as write-protected).
#[test]
fn dispatch_matches_the_opcode_table() {
    use crate::cdrom::opcodes::{supported, COMMANDS};
    let f = iso(40);
    let d = vcdrom(Some(&f));
    for op in 0..=255u8 {
        let len = match scsi_wire::cdb::cdb_len(op) {
            0 => 16,
            n => n,
        };
        let mut cdb = vec![0u8; len];
        cdb[0] = op;
        let r = d
            .execute(&CTX, &mut cmd(&cdb, vec![0; 4096]), ExecMode::Blocking)
            .unwrap();
        let by_device = COMMANDS
            .iter()
            .any(|c| c.opcode == op && c.executor == crate::sbc::opcodes::Executor::Device);
        let invalid = r.sense == Some(Sense::INVALID_OPCODE);
        if by_device {
            assert!(
                !invalid,
                "opcode {op:02x} is in the table but not dispatched"
            );
        } else if r.sense != Some(Sense::WRITE_PROTECTED) && !matches!(op, 0x4C | 0x4D) {
            // (LOG SELECT/SENSE: no log pages, always an invalid field, as on disks.)
            assert!(
                invalid,
                "opcode {op:02x} is dispatched but not in the table"
            );
        }
        assert_eq!(supported(op), COMMANDS.iter().any(|c| c.opcode == op));
    }
    // REPORT SUPPORTED OPERATION CODES lists the table.
    let r = run(&*d, &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]);
    let len = u32::from_be_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]) as usize;
    assert_eq!(len / 8, COMMANDS.len());
}

#[test]
fn tray_and_prevention() {
    let f = iso(40);
    let d = vcdrom(Some(&f));
    good(&run(&*d, &PREVENT));
    assert_eq!(sense(&run(&*d, &EJECT)), MEDIUM_REMOVAL_PREVENTED);
    // Another nexus cannot eject either, nor change the medium through the attribute.
    assert_eq!(
        sense(&run_ctx(&*d, &OTHER, &EJECT, Vec::new())),
        MEDIUM_REMOVAL_PREVENTED
    );
    let e = d.set_attribute("filename", "").unwrap_err();
    assert!(matches!(e, AttrError::Busy { .. }), "{e:?}");
    assert!(e.to_string().contains("prevented"), "{e}");
    // MM capabilities page reports the lock.
    assert_eq!(
        run(&*d, &[0x1A, 0x08, 0x2A, 0, 255, 0]).data[4 + 6] & 0x02,
        0x02
    );
    // The nexus loss ends its prevention.
    d.nexus_lost("iqn.i", "iqn.t");
    good(&run(&*d, &EJECT));
    assert_eq!(sense(&run(&*d, &TUR)), Sense::MEDIUM_NOT_PRESENT);
    let ev = run(&*d, &[0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8, 0]).data;
    assert_eq!(&ev[4..6], &[3, 0x01]); // media removal, tray open
    let mech = run(&*d, &[0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0]).data;
    assert_eq!(mech[1], 0x10);
    good(&run(&*d, &LOAD));
    good(&run(&*d, &TUR));
    // LUN reset clears prevention; a power condition makes LoEj ignored.
    good(&run(&*d, &PREVENT));
    d.reset();
    good(&run(&*d, &[0x1B, 0, 0, 0, 0x12, 0]));
    good(&run(&*d, &TUR));
    good(&run(&*d, &EJECT));
    good(&run(&*d, &LOAD));
}

struct NoEvents;

impl SessionEvents for NoEvents {
    fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {}
    fn close(&self) {}
}

fn route(s: &Session, cdb: &[u8]) -> Result<Response, Sense> {
    match s.route(&cmd(cdb, Vec::new())) {
        Route::Done(r) => r.sense.map_or(Ok(r), Err),
        Route::Device(td) => {
            let r = s.execute(&td, &mut cmd(cdb, Vec::new()), ExecMode::Blocking);
            let r = r.unwrap();
            r.sense.map_or(Ok(r), Err)
        }
    }
}

/// Inserting a medium through `filename` gives every nexus one MEDIUM MAY HAVE
/// CHANGED; ejecting it makes commands NOT READY; logout ends a nexus's prevention.
#[test]
fn media_change_through_the_core() {
    let scst = Scst::new(1);
    scst.add_device(vcdrom(None)).unwrap();
    let t = scst.add_target("iscsi", "iqn.t", Some(1)).unwrap();
    scst.add_lun(&t, None, 0, "cd0", false).unwrap();
    let session = |name: &str| {
        let tid = TransportId::Iscsi {
            name: name.into(),
            isid: Some([0x40, 0, 0, 0, 0, 1]),
        };
        let s = scst.register_session(&t, tid, Arc::new(NoEvents));
        assert_eq!(route(&s, &TUR).err(), Some(Sense::UA_POWER_ON_RESET));
        s
    };
    let (a, b) = (session("iqn.a"), session("iqn.b"));
    assert_eq!(route(&a, &TUR).err(), Some(Sense::MEDIUM_NOT_PRESENT));
    let dev = scst.device("cd0").unwrap();
    let f = iso(20);
    dev.dev.set_attribute("filename", path(&f)).unwrap();
    for s in [&a, &b] {
        assert_eq!(
            route(s, &TUR).err(),
            Some(Sense::UA_MEDIUM_MAY_HAVE_CHANGED)
        );
        assert!(route(s, &TUR).is_ok());
    }
    let cap = route(&a, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(&cap.data[..4], &[0, 0, 0, 19]);
    // b prevents removal until its session ends.
    route(&b, &PREVENT).unwrap();
    assert!(dev.dev.set_attribute("filename", "").is_err());
    b.unregister();
    dev.dev.set_attribute("filename", "").unwrap();
    assert_eq!(route(&a, &TUR).err(), Some(Sense::MEDIUM_NOT_PRESENT));
    // Each refusal keeps its kind: a relative path is an invalid value, a file that
    // will not open the backend's failure, an attribute vcdrom does not change
    // not writable.
    let refusal = |attr: &str, value: &str| dev.dev.set_attribute(attr, value).unwrap_err();
    let e = refusal("filename", "relative.iso");
    assert!(matches!(e, AttrError::Invalid { .. }), "{e:?}");
    let e = refusal("filename", "/nonexistent.iso");
    assert!(matches!(e, AttrError::Backend { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent.iso"), "{e}");
    let e = refusal("size", "1");
    assert!(matches!(e, AttrError::NotWritable { .. }), "{e:?}");
}

fn fileio(extra: &[(&str, &str)]) -> (tempfile::NamedTempFile, Arc<dyn Device>) {
    test_util::fileio(2048, None, extra)
}

#[test]
fn removable_disk_load_eject() {
    let (_f, d) = fileio(&[("removable", "1")]);
    assert_eq!(run(&*d, &[0x12, 0, 0, 0, 36, 0]).data[1], 0x80);
    good(&run(&*d, &PREVENT));
    assert_eq!(sense(&run(&*d, &EJECT)), MEDIUM_REMOVAL_PREVENTED);
    good(&run(&*d, &TUR));
    good(&run(&*d, &ALLOW));
    good(&run(&*d, &EJECT));
    for cdb in [&TUR[..], &read10(0, 1), &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]] {
        assert_eq!(sense(&run(&*d, cdb)), Sense::MEDIUM_NOT_PRESENT);
    }
    assert_eq!(d.pending_sense(), Some(Sense::MEDIUM_NOT_PRESENT));
    good(&run(&*d, &[0x12, 0, 0, 0, 36, 0]));
    // Loading is refused while prevented, like ejecting.
    good(&run(&*d, &PREVENT));
    assert_eq!(sense(&run(&*d, &LOAD)), MEDIUM_REMOVAL_PREVENTED);
    good(&run(&*d, &ALLOW));
    good(&run(&*d, &LOAD));
    good(&run(&*d, &TUR));
    assert_eq!(d.pending_sense(), None);
    // LoEj is ignored with a power condition; without LoEj nothing moves.
    for b4 in [0x12, 0x00, 0x01] {
        good(&run(&*d, &[0x1B, 1, 0, 0, b4, 0]));
        good(&run(&*d, &TUR));
    }
}

#[test]
fn fixed_disk_refuses_load_eject() {
    let (_f, d) = fileio(&[]);
    assert_eq!(run(&*d, &[0x12, 0, 0, 0, 36, 0]).data[1], 0);
    assert_eq!(
        sense(&run(&*d, &EJECT)),
        Sense::invalid_field_in_cdb(4, Some(1))
    );
    good(&run(&*d, &[0x1B, 0, 0, 0, 0x01, 0]));
    good(&run(&*d, &TUR));
}
