//! Command-level tests of SANITIZE and FORMAT UNIT and of the medium state they drive
//! (sanitize.rs, format.rs, longop.rs): field pointers, the data really on the medium,
//! space really freed, NOT READY and progress while an IMMED operation runs, and the
//! sanitize failure mode.

use crate::backend::{Backend, FileBackend, IoOutcome};
use crate::config::{Handler, VdiskConfig};
use crate::fsalloc::Extent;
use crate::sbc::Vdisk;
use crate::test_util::{
    attrs, cmd, fileio_on, good, nullio, read_with, rw16, sense, temp_file, write_with, CTX,
};
use scsi_wire::sense::key;
use scsi_wire::Sense;
use scst_core::{CmdCtx, Device, ExecMode, Response};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BS: usize = 512;
const BLOCKS: u64 = 2048;

const OVERWRITE: u8 = 0x01;
const BLOCK_ERASE: u8 = 0x02;
const CRYPTO_ERASE: u8 = 0x03;
const EXIT_FAILURE_MODE: u8 = 0x1F;
const IMMED: u8 = 0x80;
const AUSE: u8 = 0x20;

const TUR: [u8; 6] = [0; 6];
const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 36, 0];
const SANITIZE_IN_PROGRESS: (u8, u8, u8) = (key::NOT_READY, 0x04, 0x1B);
const FORMAT_IN_PROGRESS: (u8, u8, u8) = (key::NOT_READY, 0x04, 0x04);
const SANITIZE_FAILED: Sense = Sense::new(key::MEDIUM_ERROR, 0x31, 0x03);

fn exec(d: &dyn Device, ctx: &CmdCtx<'_>, cdb: &[u8], data_out: Vec<u8>) -> Response {
    let mut c = cmd(cdb, data_out);
    // Inline first, as a network thread would (waiting for a transfer it started on
    // the asynchronous engine); then on an "I/O thread".
    if let Some(mut r) = d.execute(ctx, &mut c, ExecMode::Inline) {
        if let Some(rest) = r.resume.take() {
            return rest.run(&mut c);
        }
        return match r.deferred.take() {
            Some(deferred) => crate::test_util::settle(deferred),
            None => r,
        };
    }
    d.execute(ctx, &mut c, ExecMode::Blocking)
        .expect("Blocking mode always completes")
}

fn run(d: &dyn Device, cdb: &[u8], data_out: Vec<u8>) -> Response {
    exec(d, &CTX, cdb, data_out)
}

#[track_caller]
fn kcq(r: &Response) -> (u8, u8, u8) {
    let s = sense(r);
    (s.key, s.asc, s.ascq)
}

fn cdb_pointer(byte: u16, bit: Option<u8>) -> Sense {
    Sense::invalid_field_in_cdb(byte, bit)
}

fn sanitize_cdb(flags_sa: u8, param_len: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x48;
    c[1] = flags_sa;
    c[7..9].copy_from_slice(&param_len.to_be_bytes());
    c
}

/// An OVERWRITE parameter list: INVERT + count in byte 0, then the pattern.
fn overwrite_list(b0: u8, pattern: &[u8]) -> Vec<u8> {
    let mut l = vec![b0, 0];
    l.extend_from_slice(&(pattern.len() as u16).to_be_bytes());
    l.extend_from_slice(pattern);
    l
}

fn overwrite(d: &dyn Device, flags: u8, b0: u8, pattern: &[u8]) -> Response {
    let l = overwrite_list(b0, pattern);
    run(d, &sanitize_cdb(flags | OVERWRITE, l.len() as u16), l)
}

fn read(d: &dyn Device, lba: u64, blocks: u32) -> Vec<u8> {
    read_with(run, d, lba, blocks)
}

fn write(d: &dyn Device, lba: u64, data: Vec<u8>) {
    write_with(run, d, lba, data, BS)
}

/// A fileio device through the public constructor.
fn fileio(extra: &[(&str, &str)]) -> (tempfile::NamedTempFile, Arc<dyn Device>) {
    let f = temp_file(BLOCKS * BS as u64);
    let d = fileio_on(&f, "san1", None, extra);
    (f, d)
}

/// A backend that can be told to fail its writes and deallocations with EIO, and
/// whose operations can be held up, to see an operation fail or run.
struct Flaky {
    inner: FileBackend,
    fail: AtomicBool,
}

impl Flaky {
    fn failing(&self) -> bool {
        self.fail.load(Ordering::SeqCst)
    }
}

fn eio() -> IoOutcome {
    Some(Err(io::Error::from_raw_os_error(libc::EIO)))
}

impl Backend for Flaky {
    fn read(&self, buf: &mut [u8], off: u64, mode: ExecMode) -> IoOutcome {
        self.inner.read(buf, off, mode)
    }
    fn write(&self, buf: &[u8], off: u64, stable: bool, mode: ExecMode) -> IoOutcome {
        if self.failing() {
            return eio();
        }
        self.inner.write(buf, off, stable, mode)
    }
    fn flush(&self, mode: ExecMode) -> IoOutcome {
        self.inner.flush(mode)
    }
    fn deallocate(&self, off: u64, len: u64, stable: bool, mode: ExecMode) -> IoOutcome {
        if self.failing() {
            return eio();
        }
        self.inner.deallocate(off, len, stable, mode)
    }
    fn extent(&self, off: u64, limit: u64, mode: ExecMode) -> Option<io::Result<Extent>> {
        self.inner.extent(off, limit, mode)
    }
}

/// A fileio device built by hand, so that the test can reach its range lock and
/// backend.
fn flaky_fileio(extra: &[(&str, &str)]) -> (tempfile::NamedTempFile, Arc<Vdisk<Flaky>>) {
    let f = temp_file(BLOCKS * BS as u64);
    let path = f.path().to_str().unwrap().to_string();
    let mut a = attrs(&[("filename", &path)]);
    a.extend(attrs(extra));
    let cfg = VdiskConfig::parse(Handler::Fileio, "flaky1", &a, 0).unwrap();
    let (inner, size) = FileBackend::open(&path, false, false, true).unwrap();
    let b = Flaky {
        inner,
        fail: AtomicBool::new(false),
    };
    (f, Arc::new(Vdisk::new(cfg, b, size)))
}

/// Poll until the device has no operation in progress.
fn wait_ready(d: &dyn Device) {
    wait_for(|| d.pending_sense().is_none());
}

#[test]
fn sanitize_cdb_fields_point_at_the_error() {
    let (_f, d) = fileio(&[]);
    let d = &*d;
    let full = overwrite_list(0x01, &[0xAA; BS]);
    let with = |cdb: [u8; 10]| sense(&run(d, &cdb, full.clone()));
    // ZNR (reserved for a non-zoned device) and reserved bytes 2-6.
    assert_eq!(
        with(sanitize_cdb(0x40 | OVERWRITE, 516)),
        cdb_pointer(1, Some(6))
    );
    for i in 2..=6 {
        let mut c = sanitize_cdb(OVERWRITE, 516);
        c[i] = 1;
        assert_eq!(with(c), cdb_pointer(i as u16, None), "byte {i}");
    }
    // Unsupported service actions: BLOCK ERASE and CRYPTO ERASE on a fully
    // provisioned LU (nothing can be deallocated), the reserved ones.
    for action in [0x00, BLOCK_ERASE, CRYPTO_ERASE, 0x04, 0x10, 0x1E] {
        assert_eq!(
            sense(&run(d, &sanitize_cdb(action, 0), vec![])),
            cdb_pointer(1, Some(4)),
            "service action {action:#x}"
        );
    }
    // OVERWRITE: 5 ..= block size + 4 parameter bytes; the others: none.
    for len in [0u16, 1, 4, BS as u16 + 5] {
        assert_eq!(
            sense(&run(d, &sanitize_cdb(OVERWRITE, len), vec![0; BS + 8])),
            cdb_pointer(7, None),
            "parameter list length {len}"
        );
    }
    assert_eq!(
        sense(&run(d, &sanitize_cdb(EXIT_FAILURE_MODE, 8), vec![0; 8])),
        cdb_pointer(7, None)
    );
    // The parameter list: OVERWRITE COUNT 0, pattern length 0 and beyond a block.
    let param = |b0: u8, ipl: u16| {
        let mut l = vec![b0, 0];
        l.extend_from_slice(&ipl.to_be_bytes());
        l.extend_from_slice(&[0xAA; BS]);
        sense(&run(d, &sanitize_cdb(OVERWRITE, BS as u16 + 4), l))
    };
    assert_eq!(
        param(0x00, BS as u16),
        Sense::invalid_field_in_param(0, Some(4))
    );
    assert_eq!(param(0x01, 0), Sense::invalid_field_in_param(2, None));
    assert_eq!(
        param(0x01, BS as u16 + 4),
        Sense::invalid_field_in_param(2, None)
    );
    // EXIT FAILURE MODE outside failure mode: nothing to do.
    good(&run(d, &sanitize_cdb(EXIT_FAILURE_MODE, 0), vec![]));
    // Nothing was overwritten by the refused commands.
    assert!(read(d, 0, 1).iter().all(|&b| b == 0));
}

#[test]
fn overwrite_pattern_lands_on_every_block() {
    let (_f, d) = fileio(&[]);
    let d = &*d;
    write(d, 0, vec![b'a'; 4 * BS]);
    write(d, BLOCKS - 4, vec![b'a'; 4 * BS]);
    // A 3-byte pattern restarts at every block boundary.
    good(&overwrite(d, 0, 0x01, &[1, 2, 3]));
    let block: Vec<u8> = [1u8, 2, 3].iter().copied().cycle().take(BS).collect();
    let all = read(d, 0, BLOCKS as u32);
    for (i, b) in all.chunks(BS).enumerate() {
        assert_eq!(b, &block[..], "block {i}");
    }
    // INVERT with two passes ends with the plain pattern; one pass is plain anyway.
    good(&overwrite(d, 0, 0x80 | 0x02, &[0x0F]));
    assert!(read(d, 7, 3).iter().all(|&b| b == 0x0F));
    good(&overwrite(d, 0, 0x80 | 0x01, &[0x3C; BS]));
    assert!(read(d, BLOCKS - 1, 1).iter().all(|&b| b == 0x3C));
}

#[test]
fn sanitize_is_refused_on_read_only_luns_and_nullio() {
    let (_f, d) = fileio(&[]);
    let ro = CmdCtx {
        lun_read_only: true,
        ..CTX
    };
    let l = overwrite_list(0x01, &[0xAA]);
    let r = exec(&*d, &ro, &sanitize_cdb(OVERWRITE, 5), l.clone());
    assert_eq!(sense(&r).key, key::DATA_PROTECT);
    let (_g, thin_ro) = fileio(&[("thin_provisioned", "1"), ("read_only", "1")]);
    let r = run(&*thin_ro, &sanitize_cdb(BLOCK_ERASE, 0), vec![]);
    assert_eq!(sense(&r).key, key::DATA_PROTECT);
    let null = nullio(&[]);
    let r = run(&*null, &sanitize_cdb(OVERWRITE, 5), l);
    assert_eq!(sense(&r), Sense::INVALID_OPCODE);
}

#[test]
fn block_erase_frees_the_space_and_reads_zeros() {
    let (f, d) = fileio(&[("thin_provisioned", "1")]);
    let d = &*d;
    write(d, 0, vec![b'a'; BLOCKS as usize * BS]);
    f.as_file().sync_all().unwrap();
    let before = f.as_file().metadata().unwrap().blocks();
    assert!(before > 0);
    // Parameter data is an error for BLOCK ERASE.
    assert_eq!(
        sense(&run(d, &sanitize_cdb(BLOCK_ERASE, 8), vec![0; 8])),
        cdb_pointer(7, None)
    );
    good(&run(d, &sanitize_cdb(BLOCK_ERASE, 0), vec![]));
    let after = f.as_file().metadata().unwrap().blocks();
    assert!(after < before, "st_blocks {before} -> {after}");
    assert!(read(d, 0, BLOCKS as u32).iter().all(|&b| b == 0));
    // GET LBA STATUS: one deallocated extent covering the LU.
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x12;
    c[10..14].copy_from_slice(&64u32.to_be_bytes());
    let r = run(d, &c, vec![]);
    good(&r);
    assert_eq!(u32::from_be_bytes(r.data[0..4].try_into().unwrap()), 20);
    assert_eq!(
        u32::from_be_bytes(r.data[16..20].try_into().unwrap()),
        BLOCKS as u32
    );
    assert_eq!(r.data[20] & 0x0F, 1, "deallocated");
    // WABEREQ 01b in VPD B1 advertises that reads succeed afterwards.
    let r = run(d, &[0x12, 1, 0xB1, 0, 64, 0], vec![]);
    assert_eq!(r.data[7] >> 6, 1);
}

#[test]
fn crypto_erase_destroys_the_data_on_a_thin_lu() {
    let (f, d) = fileio(&[("thin_provisioned", "1")]);
    let d = &*d;
    write(d, 0, vec![b'a'; BLOCKS as usize * BS]);
    f.as_file().sync_all().unwrap();
    let before = f.as_file().metadata().unwrap().blocks();
    // No parameter list for CRYPTO ERASE.
    assert_eq!(
        sense(&run(d, &sanitize_cdb(CRYPTO_ERASE, 8), vec![0; 8])),
        cdb_pointer(7, None)
    );
    good(&run(d, &sanitize_cdb(CRYPTO_ERASE, 0), vec![]));
    let after = f.as_file().metadata().unwrap().blocks();
    assert!(after < before, "st_blocks {before} -> {after}");
    assert!(read(d, 0, BLOCKS as u32).iter().all(|&b| b == 0));
    // WACEREQ 01b: reads succeed after a crypto erase.
    let r = run(d, &[0x12, 1, 0xB1, 0, 64, 0], vec![]);
    assert_eq!((r.data[7] >> 4) & 0x03, 1);
}

#[test]
fn an_abort_ends_the_wait_not_the_sanitize() {
    let (_f, v) = flaky_fileio(&[]);
    let d: Arc<dyn Device> = v.clone();
    write(&*d, 0, vec![b'a'; BS]);
    // Hold part of the medium so that the sanitize cannot finish yet.
    let in_flight = v.ranges.shared(0, 1, true).unwrap();
    let waiter = {
        let d = d.clone();
        std::thread::spawn(move || overwrite(&*d, 0, 0x01, &[0x5A]))
    };
    wait_for(|| d.pending_sense().is_some());
    // The SANITIZE command (IMMED=0) is still waiting; an abort releases it at once.
    assert!(!waiter.is_finished());
    d.abort_running();
    let r = waiter.join().unwrap();
    assert_eq!(sense(&r).key, key::ABORTED_COMMAND);
    // The sanitize itself goes on, and finishes once the medium is free.
    assert_eq!(kcq(&run(&*d, &TUR, vec![])), SANITIZE_IN_PROGRESS);
    drop(in_flight);
    wait_ready(&*d);
    good(&run(&*d, &TUR, vec![]));
    assert!(read(&*d, 0, BLOCKS as u32).iter().all(|&b| b == 0x5A));
}

#[test]
fn immed_sanitize_reports_not_ready_and_progress_until_done() {
    let (_f, v) = flaky_fileio(&[]);
    let d: &dyn Device = &*v;
    write(d, 0, vec![b'a'; BS]);
    // An in-flight command holds part of the medium: the sanitize waits for it, and
    // stays visibly in progress meanwhile.
    let in_flight = v.ranges.shared(0, 1, true).unwrap();
    good(&overwrite(d, IMMED, 0x01, &[0x5A]));
    let busy = run(d, &TUR, vec![]);
    assert_eq!(kcq(&busy), SANITIZE_IN_PROGRESS);
    assert_eq!(sense(&busy).progress, Some(0));
    assert_eq!(
        kcq(&run(d, &rw16(0x88, 0, 1, 0), vec![])),
        SANITIZE_IN_PROGRESS
    );
    // Another sanitize, a format: refused while it runs.
    assert_eq!(kcq(&overwrite(d, 0, 0x01, &[1])), SANITIZE_IN_PROGRESS);
    assert_eq!(
        kcq(&run(d, &[0x04, 0, 0, 0, 0, 0], vec![])),
        SANITIZE_IN_PROGRESS
    );
    // INQUIRY still works; REQUEST SENSE (through the core's hook) has the progress.
    good(&run(d, &INQUIRY, vec![]));
    let pending = d.pending_sense().unwrap();
    assert_eq!(
        (pending.key, pending.asc, pending.ascq),
        SANITIZE_IN_PROGRESS
    );
    assert_eq!(pending.progress, Some(0));
    // A LOGICAL UNIT RESET does not stop it: a sanitize outlives resets (SBC-4 4.11).
    d.reset();
    assert_eq!(kcq(&run(d, &TUR, vec![])), SANITIZE_IN_PROGRESS);
    drop(in_flight);
    wait_ready(d);
    good(&run(d, &TUR, vec![]));
    assert!(read(d, 0, BLOCKS as u32).iter().all(|&b| b == 0x5A));
}

#[test]
fn failed_sanitize_holds_the_lu_in_failure_mode() {
    let (_f, v) = flaky_fileio(&[]);
    let d: &dyn Device = &*v;
    let efm = sanitize_cdb(EXIT_FAILURE_MODE, 0);
    // Unrestricted (AUSE=1): EXIT FAILURE MODE ends it.
    v.backend.fail.store(true, Ordering::SeqCst);
    assert_eq!(sense(&overwrite(d, AUSE, 0x01, &[1])), SANITIZE_FAILED);
    assert_eq!(
        sense(&run(d, &rw16(0x88, 0, 1, 0), vec![])),
        SANITIZE_FAILED
    );
    assert_eq!(
        sense(&run(d, &rw16(0x8A, 0, 1, 0), vec![0; BS])),
        SANITIZE_FAILED
    );
    assert_eq!(d.pending_sense(), Some(SANITIZE_FAILED));
    // Commands that do not touch user data go on; FORMAT UNIT does not.
    good(&run(d, &TUR, vec![]));
    assert_eq!(
        sense(&run(d, &[0x04, 0, 0, 0, 0, 0], vec![])),
        SANITIZE_FAILED
    );
    good(&run(d, &efm, vec![]));
    assert_eq!(d.pending_sense(), None);
    read(d, 0, 1);
    // Restricted (AUSE=0): only a sanitize that succeeds ends it, and it must be
    // restricted too.
    // IMMED: GOOD at once, the failure shows afterwards.
    good(&overwrite(d, IMMED, 0x01, &[2]));
    wait_for(|| d.pending_sense() == Some(SANITIZE_FAILED));
    assert_eq!(sense(&run(d, &efm, vec![])), cdb_pointer(1, Some(4)));
    assert_eq!(
        sense(&overwrite(d, AUSE, 0x01, &[3])),
        cdb_pointer(1, Some(5))
    );
    assert_eq!(
        sense(&run(d, &rw16(0x88, 0, 1, 0), vec![])),
        SANITIZE_FAILED
    );
    v.backend.fail.store(false, Ordering::SeqCst);
    good(&overwrite(d, 0, 0x01, &[4]));
    assert_eq!(d.pending_sense(), None);
    assert!(read(d, 0, BLOCKS as u32).iter().all(|&b| b == 4));
}

#[test]
fn format_unit_fields_and_thin_deallocation() {
    let (f, d) = fileio(&[("thin_provisioned", "1")]);
    let d = &*d;
    // No protection information, no fast format.
    assert_eq!(
        sense(&run(d, &[0x04, 0x80, 0, 0, 0, 0], vec![])),
        cdb_pointer(1, Some(7))
    );
    assert_eq!(
        sense(&run(d, &[0x04, 0x40, 0, 0, 0, 0], vec![])),
        cdb_pointer(1, Some(6))
    );
    assert_eq!(
        sense(&run(d, &[0x04, 0, 0, 0, 0x01, 0], vec![])),
        cdb_pointer(4, Some(1))
    );
    // FMTDATA: a short header with an initialization pattern, or cut short.
    let fmtdata = [0x04, 0x10, 0, 0, 0, 0];
    assert_eq!(
        sense(&run(d, &fmtdata, vec![0, 0x80 | 0x08, 0, 4, 0, 1, 0, 0])),
        Sense::invalid_field_in_param(1, Some(3))
    );
    assert_eq!(
        sense(&run(d, &fmtdata, vec![0, 0])),
        Sense::PARAM_LIST_LENGTH_ERROR
    );
    // A long header with PROTECTION FIELD USAGE set.
    assert_eq!(
        sense(&run(
            d,
            &[0x04, 0x30, 0, 0, 0, 0],
            vec![0x01, 0, 0, 0, 0, 0, 0, 0]
        )),
        Sense::invalid_field_in_param(0, Some(0))
    );
    // A read-only LU.
    let ro = CmdCtx {
        lun_read_only: true,
        ..CTX
    };
    let r = exec(d, &ro, &[0x04, 0, 0, 0, 0, 0], vec![]);
    assert_eq!(sense(&r).key, key::DATA_PROTECT);
    // FMTDATA=0 on a thin LU: everything deallocated.
    write(d, 0, vec![b'a'; BLOCKS as usize * BS]);
    f.as_file().sync_all().unwrap();
    let before = f.as_file().metadata().unwrap().blocks();
    good(&run(d, &[0x04, 0, 0, 0, 0, 0], vec![]));
    let after = f.as_file().metadata().unwrap().blocks();
    assert!(after < before, "st_blocks {before} -> {after}");
    assert!(read(d, 0, BLOCKS as u32).iter().all(|&b| b == 0));
    // FOV with DCRT (nothing to certify) is accepted.
    good(&run(d, &fmtdata, vec![0, 0x80 | 0x20, 0, 0]));
}

#[test]
fn format_on_a_thick_lu_keeps_the_data() {
    let (_f, d) = fileio(&[]);
    let d = &*d;
    write(d, 3, vec![b'z'; BS]);
    good(&run(d, &[0x04, 0, 0, 0, 0, 0], vec![]));
    assert!(read(d, 3, 1).iter().all(|&b| b == b'z'));
    let null = nullio(&[]);
    good(&run(&*null, &[0x04, 0, 0, 0, 0, 0], vec![]));
}

#[test]
fn immed_format_reports_format_in_progress() {
    let (_f, v) = flaky_fileio(&[("thin_provisioned", "1")]);
    let d: &dyn Device = &*v;
    let in_flight = v.ranges.shared(5, 1, true).unwrap();
    // Short header, IMMED.
    good(&run(d, &[0x04, 0x10, 0, 0, 0, 0], vec![0, 0x02, 0, 0]));
    assert_eq!(kcq(&run(d, &TUR, vec![])), FORMAT_IN_PROGRESS);
    let pending = d.pending_sense().unwrap();
    assert_eq!((pending.key, pending.asc, pending.ascq), FORMAT_IN_PROGRESS);
    assert!(pending.progress.is_some());
    good(&run(d, &INQUIRY, vec![]));
    drop(in_flight);
    wait_ready(d);
    good(&run(d, &TUR, vec![]));
}

/// Poll `cond` until it holds.
fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "condition never held");
        std::thread::sleep(Duration::from_millis(5));
    }
}
