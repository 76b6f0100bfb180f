//! Tests of the copy manager: EXTENDED COPY between in-memory disks and RECEIVE COPY
//! RESULTS, driven through `Session::route` / `Session::execute` as a transport would.

use std::sync::Arc;

use parking_lot::Mutex;
use scsi_wire::sense::key;
use scsi_wire::{status, CopyAborted, ForwardedSense, Sense};

use crate::cmd::{Cdb, Cmd, ExecMode, Response, TaskAttr};
use crate::device::{CmdCtx, Device};
use crate::registry::{DeviceEntry, Scst};
use crate::session::{Route, Session, SessionEvents, TransportId};

const BS: u32 = 512;
const BLOCKS: u64 = 4096;

/// A RAM disk answering what the copy manager sends: INQUIRY VPD 83h (an NAA
/// designator for the logical unit, another for the target port), READ CAPACITY(16),
/// READ(16) and WRITE(16), refusing writes on a read-only LUN.
struct RamDisk {
    name: String,
    naa: [u8; 8],
    block_size: u32,
    data: Mutex<Vec<u8>>,
}

impl RamDisk {
    fn new(name: &str, naa_tail: u8, block_size: u32) -> RamDisk {
        RamDisk {
            name: name.to_string(),
            naa: [0x36, 0, 0x14, 0x05, 0, 0, 0, naa_tail],
            block_size,
            data: Mutex::new(vec![0; (BLOCKS * u64::from(block_size)) as usize]),
        }
    }

    fn range(&self, cdb: &[u8]) -> Option<std::ops::Range<usize>> {
        let lba = u64::from_be_bytes(cdb[2..10].try_into().unwrap());
        let n = u64::from(u32::from_be_bytes(cdb[10..14].try_into().unwrap()));
        let blocks = self.data.lock().len() as u64 / u64::from(self.block_size);
        (lba + n <= blocks).then(|| {
            let bs = self.block_size as usize;
            lba as usize * bs..(lba + n) as usize * bs
        })
    }
}

impl Device for RamDisk {
    fn name(&self) -> &str {
        &self.name
    }
    fn handler_name(&self) -> &'static str {
        "test"
    }
    fn scsi_type(&self) -> u8 {
        0
    }
    fn execute(&self, ctx: &CmdCtx<'_>, cmd: &mut Cmd, mode: ExecMode) -> Option<Response> {
        assert_eq!(
            mode,
            ExecMode::Blocking,
            "the copy manager runs on I/O threads"
        );
        let cdb = &cmd.cdb;
        Some(match cdb[0] {
            0x12 if cdb[1] & 1 == 1 && cdb[2] == 0x83 => {
                let mut page = vec![0, 0x83, 0, 24];
                // Target port NAA first: it must not be taken for the device's.
                page.extend_from_slice(&[0x01, 0x93, 0, 8]);
                page.extend_from_slice(&[0x36, 0, 0x14, 0x05, 0xFF, 0xFF, 0xFF, 0xFF]);
                page.extend_from_slice(&[0x01, 0x03, 0, 8]);
                page.extend_from_slice(&self.naa);
                Response::data(page)
            }
            0x9E => {
                let mut d = vec![0u8; 32];
                let blocks = self.data.lock().len() as u64 / u64::from(self.block_size);
                d[0..8].copy_from_slice(&(blocks - 1).to_be_bytes());
                d[8..12].copy_from_slice(&self.block_size.to_be_bytes());
                Response::data(d)
            }
            0x88 => match self.range(cdb) {
                Some(r) => Response::data(self.data.lock()[r].to_vec()),
                None => Response::check(Sense::LBA_OUT_OF_RANGE),
            },
            0x8A if ctx.lun_read_only => Response::check(Sense::WRITE_PROTECTED),
            0x8A => match self.range(cdb) {
                Some(r) if cmd.data_out.len() == r.len() => {
                    self.data.lock()[r].copy_from_slice(&cmd.data_out);
                    Response::good()
                }
                Some(_) => Response::check(Sense::PARAM_LIST_LENGTH_ERROR),
                None => Response::check(Sense::LBA_OUT_OF_RANGE),
            },
            0x00 | 0x16 => Response::good(),
            _ => Response::check(Sense::INVALID_OPCODE),
        })
    }
}

struct NoEvents;

impl SessionEvents for NoEvents {
    fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {}
    fn close(&self) {}
}

struct Fixture {
    scst: Arc<Scst>,
    disks: Vec<Arc<RamDisk>>,
}

impl Fixture {
    /// Target iqn.t:1 exports disk0 as LUN 0 and disk1 as LUN 1 (read-only if asked);
    /// disk2 is exported only by iqn.t:2.
    fn new(lun1_read_only: bool) -> Fixture {
        let scst = Scst::new(1);
        let disks: Vec<Arc<RamDisk>> = (0..3)
            .map(|i| Arc::new(RamDisk::new(&format!("disk{i}"), i as u8 + 1, BS)))
            .collect();
        for d in &disks {
            scst.add_device(d.clone()).unwrap();
        }
        let t1 = scst.add_target("iscsi", "iqn.t:1", Some(1)).unwrap();
        scst.add_lun(&t1, None, 0, "disk0", false).unwrap();
        scst.add_lun(&t1, None, 1, "disk1", lun1_read_only).unwrap();
        let t2 = scst.add_target("iscsi", "iqn.t:2", Some(2)).unwrap();
        scst.add_lun(&t2, None, 0, "disk2", false).unwrap();
        Fixture { scst, disks }
    }

    /// A session on iqn.t:1 with its POWER ON UAs consumed.
    fn session(&self, name: &str) -> Arc<Session> {
        let t = self.scst.target("iscsi", "iqn.t:1").unwrap();
        let tid = TransportId::Iscsi {
            name: name.to_string(),
            isid: Some([0x40, 0, 0, 0, 0, 1]),
        };
        let s = self.scst.register_session(&t, tid, Arc::new(NoEvents));
        for lun in 0..2 {
            run(&s, lun, &[0; 6], &[]);
        }
        s
    }
}

fn run(s: &Session, lun: u64, cdb: &[u8], data: &[u8]) -> Response {
    let mut cmd = Cmd {
        cdb: Cdb::new(cdb).unwrap(),
        lun,
        tag: 1,
        attr: TaskAttr::Simple,
        data_out: data.to_vec(),
        expected_in: 0xFFFF,
    };
    match s.route(&cmd) {
        Route::Done(r) => r,
        Route::Device(td) => {
            // As the transport does: Inline first, then Blocking on an I/O thread.
            match s.execute(&td, &mut cmd, ExecMode::Inline) {
                Some(r) => r,
                None => s.execute(&td, &mut cmd, ExecMode::Blocking).unwrap(),
            }
        }
    }
}

fn xcopy_cdb(len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x83;
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

fn xcopy(s: &Session, list: &[u8]) -> Response {
    run(s, 0, &xcopy_cdb(list.len() as u32), list)
}

fn rcr(s: &Session, sa: u8, list_id: u8) -> Response {
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = sa;
    c[2] = list_id;
    c[10..14].copy_from_slice(&1024u32.to_be_bytes());
    run(s, 0, &c, &[])
}

/// Identification descriptor naming disk `n` (1-based NAA tail) by its NAA designator.
fn target(naa_tail: u8, block_size: u32) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = 0xE4;
    d[4] = 0x01;
    d[5] = 0x03;
    d[7] = 8;
    d[8..16].copy_from_slice(&[0x36, 0, 0x14, 0x05, 0, 0, 0, naa_tail]);
    d[29..32].copy_from_slice(&block_size.to_be_bytes()[1..]);
    d
}

fn segment(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x02;
    d[3] = 0x18;
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[10..12].copy_from_slice(&blocks.to_be_bytes());
    d[12..20].copy_from_slice(&src_lba.to_be_bytes());
    d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
    d
}

/// A LID1 list: header (list id, LIST ID USAGE), target and segment descriptors.
fn list(list_id: u8, usage: u8, targets: &[Vec<u8>], segments: &[Vec<u8>]) -> Vec<u8> {
    let t: Vec<u8> = targets.concat();
    let s: Vec<u8> = segments.concat();
    let mut l = vec![0u8; 16];
    l[0] = list_id;
    l[1] = usage << 3;
    l[2..4].copy_from_slice(&(t.len() as u16).to_be_bytes());
    l[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
    l.extend_from_slice(&t);
    l.extend_from_slice(&s);
    l
}

fn good(r: &Response) {
    assert_eq!((r.status, r.sense), (status::GOOD, None), "{r:?}");
}

fn sense_of(r: &Response) -> Sense {
    assert_eq!(r.status, status::CHECK_CONDITION, "{r:?}");
    r.sense.unwrap()
}

fn asc(r: &Response) -> (u8, u8, u8) {
    let s = sense_of(r);
    (s.key, s.asc, s.ascq)
}

fn fill(d: &RamDisk, from_block: usize, blocks: usize, seed: u8) {
    let bs = d.block_size as usize;
    let mut data = d.data.lock();
    for (i, b) in data[from_block * bs..(from_block + blocks) * bs]
        .iter_mut()
        .enumerate()
    {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
}

fn blocks_of(d: &RamDisk, from_block: usize, blocks: usize) -> Vec<u8> {
    let bs = d.block_size as usize;
    d.data.lock()[from_block * bs..(from_block + blocks) * bs].to_vec()
}

#[test]
fn copy_between_luns_reaches_the_destination() {
    let f = Fixture::new(false);
    let s = f.session("iqn.i:a");
    // More than one 512 KiB internal I/O: 1100 blocks of 512 bytes.
    fill(&f.disks[0], 10, 1100, 7);
    let l = list(
        1,
        0,
        &[target(1, BS), target(2, BS)],
        &[segment(0, 1, 1100, 10, 100), segment(0, 1, 0, 0, 0)],
    );
    let r = xcopy(&s, &l);
    good(&r);
    assert_eq!(r.data_out_len, Some(l.len() as u32));
    assert_eq!(
        blocks_of(&f.disks[1], 100, 1100),
        blocks_of(&f.disks[0], 10, 1100)
    );
    assert!(blocks_of(&f.disks[1], 99, 1).iter().all(|&b| b == 0));
    assert!(blocks_of(&f.disks[1], 1200, 1).iter().all(|&b| b == 0));

    // COPY STATUS: done without errors, 2 segments, 550 KiB; then it is gone.
    let st = rcr(&s, 0, 1);
    good(&st);
    assert_eq!(st.data, [0, 0, 0, 8, 1, 0, 2, 1, 0, 0, 0x02, 0x26]);
    assert_eq!(asc(&rcr(&s, 0, 1)), (key::ILLEGAL_REQUEST, 0x24, 0));

    // The same LUN as source and destination (one descriptor).
    let l = list(2, 0, &[target(2, BS)], &[segment(0, 0, 4, 100, 3000)]);
    good(&xcopy(&s, &l));
    assert_eq!(
        blocks_of(&f.disks[1], 3000, 4),
        blocks_of(&f.disks[0], 10, 4)
    );
}

#[test]
fn extended_copy_asks_for_an_io_thread() {
    let f = Fixture::new(false);
    let s = f.session("iqn.i:a");
    let l = list(0, 3, &[target(1, BS)], &[segment(0, 0, 1, 0, 1)]);
    let mut cmd = Cmd {
        cdb: Cdb::new(&xcopy_cdb(l.len() as u32)).unwrap(),
        lun: 0,
        tag: 1,
        attr: TaskAttr::Simple,
        data_out: l,
        expected_in: 0,
    };
    let Route::Device(td) = s.route(&cmd) else {
        panic!("EXTENDED COPY is executed, not answered by route");
    };
    assert!(s.execute(&td, &mut cmd, ExecMode::Inline).is_none());
    good(&s.execute(&td, &mut cmd, ExecMode::Blocking).unwrap());
}

#[test]
fn parameter_list_errors() {
    let f = Fixture::new(false);
    let s = f.session("iqn.i:a");
    let ok = list(1, 0, &[target(1, BS)], &[segment(0, 0, 8, 0, 100)]);

    // Nothing to do.
    good(&run(&s, 0, &xcopy_cdb(0), &[]));
    // Shorter than a header.
    let r = run(&s, 0, &xcopy_cdb(8), &ok[..8]);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(10, None));
    // Truncated target and segment descriptors.
    for cut in [16 + 31, ok.len() - 1] {
        let r = run(&s, 0, &xcopy_cdb(cut as u32), &ok[..cut]);
        assert_eq!(sense_of(&r), Sense::PARAM_LIST_LENGTH_ERROR, "cut {cut}");
    }
    // The CDB asks for more than arrived.
    let r = run(&s, 0, &xcopy_cdb(ok.len() as u32 + 28), &ok);
    assert_eq!(sense_of(&r), Sense::PARAM_LIST_LENGTH_ERROR);
    // Inline data.
    let mut l = ok.clone();
    l[15] = 4;
    l.extend_from_slice(&[0; 4]);
    assert_eq!(asc(&xcopy(&s, &l)), (key::ILLEGAL_REQUEST, 0x26, 0x0B));
    // Target descriptor list not a multiple of 32; segments without targets.
    let mut l = list(1, 0, &[], &[segment(0, 0, 1, 0, 1)]);
    assert_eq!(
        sense_of(&xcopy(&s, &l)),
        Sense::invalid_field_in_param(2, None)
    );
    l[3] = 4;
    l.splice(16..16, [0u8; 4]);
    assert_eq!(
        sense_of(&xcopy(&s, &l)),
        Sense::invalid_field_in_param(2, None)
    );
    // LIST ID USAGE 01b (reserved); 11b with a list identifier.
    assert_eq!(
        sense_of(&xcopy(&s, &list(1, 1, &[target(1, BS)], &[]))),
        Sense::invalid_field_in_param(1, Some(4))
    );
    assert_eq!(
        sense_of(&xcopy(&s, &list(1, 3, &[target(1, BS)], &[]))),
        Sense::invalid_field_in_param(0, None)
    );

    // Too many target descriptors (5 at most) and segment descriptors (128).
    let six: Vec<Vec<u8>> = (0..6).map(|_| target(1, BS)).collect();
    let r = xcopy(&s, &list(1, 0, &six, &[segment(0, 0, 1, 0, 1)]));
    assert_eq!(asc(&r), (key::ILLEGAL_REQUEST, 0x26, 0x06));
    let many: Vec<Vec<u8>> = (0..129).map(|_| segment(0, 0, 1, 0, 1)).collect();
    let r = xcopy(&s, &list(1, 0, &[target(1, BS)], &many));
    assert_eq!(asc(&r), (key::ILLEGAL_REQUEST, 0x26, 0x08));
    // Both too many: longer than MAXIMUM DESCRIPTOR LIST LENGTH.
    let r = xcopy(&s, &list(1, 0, &six, &many));
    assert_eq!(sense_of(&r), Sense::PARAM_LIST_LENGTH_ERROR);

    // Unsupported descriptor types.
    let mut fc = target(1, BS);
    fc[0] = 0xE0;
    let r = xcopy(&s, &list(1, 0, &[fc], &[segment(0, 0, 1, 0, 1)]));
    assert_eq!(asc(&r), (key::ILLEGAL_REQUEST, 0x26, 0x07));
    let mut stream = segment(0, 0, 1, 0, 1);
    stream[0] = 0x03;
    stream.truncate(20);
    let r = xcopy(&s, &list(1, 0, &[target(1, BS)], &[stream]));
    assert_eq!(asc(&r), (key::ILLEGAL_REQUEST, 0x26, 0x09));

    // Identification descriptor fields, with pointers into the parameter list.
    let mut t = target(1, BS);
    t[1] = 0xC0; // LU ID TYPE 11b: ignored, the designator names the logical unit
    good(&xcopy(&s, &list(1, 0, &[target(1, BS), t], &[])));
    let mut t = target(1, BS);
    t[1] = 0x05; // a CD-ROM
    let r = xcopy(&s, &list(1, 0, &[t], &[]));
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param(17, Some(4)));
    let r = xcopy(&s, &list(1, 0, &[target(1, 4096)], &[]));
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param(16 + 29, None));

    // None of these left a copy to report.
    assert_eq!(asc(&rcr(&s, 0, 1)), (key::ILLEGAL_REQUEST, 0x24, 0));
    // And the well-formed list still works.
    good(&xcopy(&s, &ok));
}

fn copy_aborted(asc: u8, ascq: u8, segment: u16, field: Option<u16>) -> Sense {
    let code = scsi_wire::Asc {
        code: asc,
        qualifier: ascq,
    };
    let mut s = Sense::copy_aborted(code, segment);
    s.copy = Some(CopyAborted {
        segment,
        segment_field: field,
        forwarded: None,
    });
    s
}

#[test]
fn segment_errors_abort_the_copy() {
    let f = Fixture::new(false);
    let s = f.session("iqn.i:a");
    let mut nul = target(1, BS);
    nul[1] = 0x20;
    // A NUL descriptor cannot be copied from or to.
    let r = xcopy(
        &s,
        &list(1, 0, &[target(1, BS), nul], &[segment(0, 1, 1, 0, 1)]),
    );
    assert_eq!(sense_of(&r), copy_aborted(0x0D, 0x02, 0, Some(6)));
    // A descriptor index past the list, in the second segment.
    let segs = [segment(0, 0, 1, 0, 1), segment(0, 1, 1, 0, 1)];
    let r = xcopy(&s, &list(1, 0, &[target(1, BS)], &segs));
    assert_eq!(sense_of(&r), copy_aborted(0, 0, 1, Some(6)));
    // Validation precedes copying: the first segment did not run.
    assert!(blocks_of(&f.disks[0], 1, 1).iter().all(|&b| b == 0));
    // A wrong DESCRIPTOR LENGTH.
    let mut seg = segment(0, 0, 1, 0, 1);
    seg[3] = 0x14;
    let r = xcopy(&s, &list(1, 0, &[target(1, BS)], &[seg]));
    assert_eq!(sense_of(&r), copy_aborted(0, 0, 0, Some(2)));

    // Past the end of the destination: the destination's LBA OUT OF RANGE is
    // forwarded, and nothing is written.
    fill(&f.disks[0], 0, 8, 3);
    let r = xcopy(
        &s,
        &list(
            5,
            2,
            &[target(1, BS), target(2, BS)],
            &[segment(0, 1, 8, 0, BLOCKS - 4)],
        ),
    );
    let sense = sense_of(&r);
    assert_eq!(
        (sense.key, sense.asc, sense.ascq),
        (key::COPY_ABORTED, 0, 0)
    );
    assert_eq!(
        sense.copy.and_then(|c| c.forwarded),
        Some(ForwardedSense {
            destination: true,
            status: status::CHECK_CONDITION,
            key: key::ILLEGAL_REQUEST,
            asc: 0x21,
            ascq: 0,
        })
    );
    assert!(blocks_of(&f.disks[1], (BLOCKS - 4) as usize, 4)
        .iter()
        .all(|&b| b == 0));

    // The failure is kept for RECEIVE COPY RESULTS: FAILED SEGMENT DETAILS has the
    // status and the sense, COPY STATUS says "completed with errors".
    let d = rcr(&s, 4, 5);
    good(&d);
    assert_eq!(d.data[56], status::CHECK_CONDITION);
    let n = u16::from_be_bytes([d.data[58], d.data[59]]) as usize;
    assert_eq!(&d.data[60..], sense.encode(false).as_slice());
    assert_eq!(n, d.data.len() - 60);
    // FAILED SEGMENT DETAILS was read whole: the record is gone.
    assert_eq!(asc(&rcr(&s, 0, 5)), (key::ILLEGAL_REQUEST, 0x24, 0));

    let r = xcopy(
        &s,
        &list(
            6,
            0,
            &[target(1, BS), target(2, BS)],
            &[segment(0, 1, 8, 0, BLOCKS - 4)],
        ),
    );
    sense_of(&r);
    let st = rcr(&s, 0, 6);
    good(&st);
    assert_eq!(&st.data[4..7], &[2, 0, 1]);
}

#[test]
fn only_devices_the_session_reaches_are_copy_targets() {
    let f = Fixture::new(false);
    let s = f.session("iqn.i:a");
    // disk2 exists but only iqn.t:2 exports it.
    let r = xcopy(
        &s,
        &list(
            1,
            0,
            &[target(1, BS), target(3, BS)],
            &[segment(0, 1, 1, 0, 0)],
        ),
    );
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param(16 + 32, None));
    // A designator of no device at all, and the target port's NAA.
    let r = xcopy(&s, &list(1, 0, &[target(9, BS)], &[]));
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param(16, None));
    let mut port = target(1, BS);
    port[8..16].copy_from_slice(&[0x36, 0, 0x14, 0x05, 0xFF, 0xFF, 0xFF, 0xFF]);
    let r = xcopy(&s, &list(1, 0, &[port.clone()], &[]));
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param(16, None));
    port[5] = 0x13; // with the port association
    let r = xcopy(&s, &list(1, 0, &[port], &[]));
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param(16, None));
}

#[test]
fn destination_protection_surfaces_through_copy_aborted() {
    // A read-only LUN: the device's DATA PROTECT is forwarded.
    let f = Fixture::new(true);
    let s = f.session("iqn.i:a");
    let l = list(
        1,
        0,
        &[target(1, BS), target(2, BS)],
        &[segment(0, 1, 1, 0, 0)],
    );
    let sense = sense_of(&xcopy(&s, &l));
    assert_eq!(sense.key, key::COPY_ABORTED);
    let fwd = sense.copy.and_then(|c| c.forwarded).unwrap();
    assert_eq!(
        (fwd.destination, fwd.key, fwd.asc),
        (true, key::DATA_PROTECT, 0x27)
    );

    // Another initiator's SPC-2 reservation of the destination: the copy target
    // answers RESERVATION CONFLICT, a THIRD PARTY DEVICE FAILURE.
    let f = Fixture::new(false);
    let a = f.session("iqn.i:a");
    let b = f.session("iqn.i:b");
    good(&run(&b, 1, &[0x16, 0, 0, 0, 0, 0], &[]));
    let sense = sense_of(&xcopy(&a, &l));
    assert_eq!(
        (sense.key, sense.asc, sense.ascq),
        (key::COPY_ABORTED, 0x0D, 0x01)
    );
    assert_eq!(sense.copy.map(|c| c.segment), Some(0));
    // The holder itself copies into it.
    fill(&f.disks[0], 0, 1, 9);
    good(&xcopy(&b, &l));
    assert_eq!(blocks_of(&f.disks[1], 0, 1), blocks_of(&f.disks[0], 0, 1));
}

#[test]
fn receive_copy_results_operating_parameters_and_errors() {
    let f = Fixture::new(false);
    let s = f.session("iqn.i:a");
    let r = rcr(&s, 3, 0);
    good(&r);
    let d = &r.data;
    assert_eq!(d.len(), 46);
    assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()), 42);
    assert_eq!(d[4] & 1, 1, "SNLID");
    assert_eq!(u16::from_be_bytes([d[8], d[9]]), 5);
    assert_eq!(u16::from_be_bytes([d[10], d[11]]), 128);
    assert_eq!(
        u32::from_be_bytes(d[12..16].try_into().unwrap()),
        5 * 32 + 128 * 28
    );
    assert_eq!(u32::from_be_bytes(d[16..20].try_into().unwrap()), 256 << 20);
    assert_eq!(&d[20..32], &[0; 12], "no inline, held or stream data");
    assert_eq!((d[43], d[44], d[45]), (2, 0x02, 0xE4));

    // Allocation length cuts the data.
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = 3;
    c[13] = 10;
    assert_eq!(run(&s, 0, &c, &[]).data.len(), 10);

    // RECEIVE DATA and unknown service actions; unknown list identifiers.
    assert_eq!(
        sense_of(&rcr(&s, 1, 0)),
        Sense::invalid_field_in_cdb(1, Some(4))
    );
    assert_eq!(
        sense_of(&rcr(&s, 7, 0)),
        Sense::invalid_field_in_cdb(1, Some(4))
    );
    assert_eq!(
        sense_of(&rcr(&s, 0, 9)),
        Sense::invalid_field_in_cdb(2, None)
    );
    assert_eq!(
        sense_of(&rcr(&s, 4, 9)),
        Sense::invalid_field_in_cdb(2, None)
    );

    // List identifiers belong to the I_T nexus.
    good(&xcopy(
        &s,
        &list(4, 0, &[target(1, BS)], &[segment(0, 0, 1, 0, 1)]),
    ));
    let other = f.session("iqn.i:b");
    assert_eq!(
        sense_of(&rcr(&other, 0, 4)),
        Sense::invalid_field_in_cdb(2, None)
    );
    good(&rcr(&s, 0, 4));
}

#[test]
fn copy_status_reports_a_copy_in_progress() {
    let f = Fixture::new(false);
    let s = f.session("iqn.i:a");
    s.copy_lists.begin(7).unwrap();
    let r = rcr(&s, 0, 7);
    good(&r);
    assert_eq!(r.data[4], 0, "in progress");
    // Still there, and its list identifier is taken.
    good(&rcr(&s, 0, 7));
    let r = xcopy(&s, &list(7, 0, &[target(1, BS)], &[]));
    assert_eq!(asc(&r), (key::ILLEGAL_REQUEST, 0x00, 0x16));
    // FAILED SEGMENT DETAILS only for finished copies.
    assert_eq!(
        sense_of(&rcr(&s, 4, 7)),
        Sense::invalid_field_in_cdb(2, None)
    );
}

/// The copy manager registered over the fixture: every device is in its LUN list.
fn with_copy_manager(f: &Fixture) -> Arc<crate::CopyManager> {
    let cm = crate::CopyManager::register(&f.scst).unwrap();
    let t = f.scst.target("copy_manager", "copy_manager_tgt").unwrap();
    assert_eq!(
        t.acl.lock().default_luns.luns.len(),
        3,
        "devices registered"
    );
    assert_eq!(t.rel_tgt_id(), 0, "never enabled");
    cm
}

#[test]
fn the_copy_manager_lun_list_decides_which_devices_a_copy_may_use() {
    let f = Fixture::new(false);
    let _cm = with_copy_manager(&f);
    let s = f.session("iqn.i:a");
    fill(&f.disks[0], 0, 4, 7);
    let copy = list(
        1,
        0,
        &[target(1, BS), target(2, BS)],
        &[segment(0, 1, 4, 0, 8)],
    );
    good(&xcopy(&s, &copy));
    assert_eq!(blocks_of(&f.disks[1], 8, 4), blocks_of(&f.disks[0], 0, 4));
    // Out of copy_manager_tgt, disk1 is no copy target, though the session has a LUN
    // of it: the descriptor naming it is an invalid field.
    f.scst.copy_manager_remove_device("disk1").unwrap();
    assert_eq!(
        sense_of(&xcopy(&s, &copy)),
        Sense::invalid_field_in_param(16 + 32, None)
    );
    // Back in (at another LUN), it is one again.
    let t = f.scst.target("copy_manager", "copy_manager_tgt").unwrap();
    f.scst.copy_manager_place(&t, 7, "disk1", false).unwrap();
    good(&xcopy(&s, &copy));
    // Moving a device onto a LUN another holds keeps both registered.
    f.scst.copy_manager_place(&t, 0, "disk1", false).unwrap();
    let luns = t.acl.lock().default_luns.luns.clone();
    let names: Vec<(u64, &str)> = luns.iter().map(|(n, e)| (*n, e.device.name())).collect();
    assert_eq!(names, [(0, "disk1"), (1, "disk0"), (2, "disk2")]);
    assert!(f.scst.copy_manager_place(&t, 3, "disk0", true).is_err());
}

#[test]
fn allow_not_connected_copy_reaches_devices_the_session_has_no_lun_of() {
    let f = Fixture::new(false);
    let cm = with_copy_manager(&f);
    let s = f.session("iqn.i:a");
    fill(&f.disks[0], 0, 2, 3);
    // disk2 is exported only by iqn.t:2.
    let copy = list(
        1,
        0,
        &[target(1, BS), target(3, BS)],
        &[segment(0, 1, 2, 0, 5)],
    );
    assert_eq!(
        sense_of(&xcopy(&s, &copy)),
        Sense::invalid_field_in_param(16 + 32, None)
    );
    use crate::TargetDriver;
    cm.write_driver_file("allow_not_connected_copy", "1")
        .unwrap();
    assert_eq!(cm.driver_files()[0].value, "1");
    good(&xcopy(&s, &copy));
    assert_eq!(blocks_of(&f.disks[2], 5, 2), blocks_of(&f.disks[0], 0, 2));
    // The copy manager's nexus lived for the copy only.
    let t = f.scst.target("copy_manager", "copy_manager_tgt").unwrap();
    assert!(t.sessions().is_empty());
    // A device out of the LUN list stays out of reach.
    f.scst.copy_manager_remove_device("disk2").unwrap();
    assert_eq!(
        sense_of(&xcopy(&s, &copy)),
        Sense::invalid_field_in_param(16 + 32, None)
    );
    cm.write_driver_file("allow_not_connected_copy", "0")
        .unwrap();
    assert!(cm
        .write_driver_file("allow_not_connected_copy", "2")
        .is_err());
}
