//! Helpers shared by the command-level test modules (`*_tests.rs`): building and
//! executing commands through the `Device` interface, checking their status,
//! creating devices over temp files, and building CDBs.

use crate::create_device;
use scsi_wire::{status, Sense};
use scst_core::{Cdb, Cmd, CmdCtx, Device, ExecMode, Response, TaskAttr};
use std::sync::Arc;

/// The nexus most tests send their commands on.
pub(crate) const CTX: CmdCtx<'static> = CmdCtx {
    target_name: "iqn.t",
    rel_tgt_id: 1,
    initiator_name: "iqn.i",
    lun_read_only: false,
    alua: None,
};

/// [`CTX`] through a read-only LUN.
pub(crate) const RO_CTX: CmdCtx<'static> = CmdCtx {
    lun_read_only: true,
    ..CTX
};

/// What the helpers accept as a device: `&dyn Device` or `&Arc<dyn Device>` (the
/// latter does not coerce to `&dyn Device` by itself).
pub(crate) trait AsDevice {
    fn device(&self) -> &dyn Device;
}

impl AsDevice for dyn Device {
    fn device(&self) -> &dyn Device {
        self
    }
}

impl AsDevice for Arc<dyn Device> {
    fn device(&self) -> &dyn Device {
        &**self
    }
}

/// A SIMPLE command on LUN 0 with room for 1 MiB of data-in.
pub(crate) fn cmd(cdb: &[u8], data_out: Vec<u8>) -> Cmd {
    Cmd {
        cdb: Cdb::new(cdb).unwrap(),
        lun: 0,
        tag: 1,
        attr: TaskAttr::Simple,
        data_out,
        expected_in: 1 << 20,
    }
}

/// Executes `cdb` in `mode`; `None` when an inline execution did not complete right
/// there: deferred to an I/O thread, stopped to resume on one (the rest is run), or
/// started on the asynchronous engine (then it is waited for), so that the test goes
/// on with the transfer over. Data held in
/// `static_data` is moved to `data`, where the tests look.
pub(crate) fn exec(
    d: &(impl AsDevice + ?Sized),
    ctx: &CmdCtx<'_>,
    cdb: &[u8],
    data_out: Vec<u8>,
    mode: ExecMode,
) -> Option<Response> {
    let mut c = cmd(cdb, data_out);
    let mut r = d.device().execute(ctx, &mut c, mode)?;
    if let Some(rest) = r.resume.take() {
        // Stopped to block: the rest runs as it would on an I/O thread.
        assert_eq!(mode, ExecMode::Inline, "only inline execution stops");
        let final_response = rest.run(&mut c);
        assert_eq!(
            final_response.status,
            status::GOOD,
            "{:?}",
            final_response.sense
        );
        return None;
    }
    if let Some(deferred) = r.deferred.take() {
        let final_response = settle(deferred);
        assert_eq!(
            final_response.status,
            status::GOOD,
            "{:?}",
            final_response.sense
        );
        return None;
    }
    if let Some(b) = r.static_data.take() {
        r.data = b.to_vec();
    }
    Some(r)
}

/// The final response of an asynchronously completing command.
pub(crate) fn settle(d: scst_core::cmd::Deferred) -> Response {
    let (tx, rx) = std::sync::mpsc::channel();
    d.on_complete(move |r| tx.send(r).expect("receiver alive"));
    rx.recv().expect("every deferred command completes")
}

/// Executes `cdb` on `ctx` in blocking mode.
pub(crate) fn run_ctx(
    d: &(impl AsDevice + ?Sized),
    ctx: &CmdCtx<'_>,
    cdb: &[u8],
    data_out: Vec<u8>,
) -> Response {
    exec(d, ctx, cdb, data_out, ExecMode::Blocking).expect("Blocking mode always completes")
}

/// Executes `cdb` on [`CTX`] in blocking mode.
pub(crate) fn run(d: &(impl AsDevice + ?Sized), cdb: &[u8], data_out: Vec<u8>) -> Response {
    run_ctx(d, &CTX, cdb, data_out)
}

/// How a test module executes a command: [`run`] or a module's own variant.
pub(crate) type Runner = fn(&dyn Device, &[u8], Vec<u8>) -> Response;

#[track_caller]
pub(crate) fn good(r: &Response) {
    assert_eq!((r.status, r.sense), (status::GOOD, None));
}

#[track_caller]
pub(crate) fn sense(r: &Response) -> Sense {
    assert_eq!(r.status, status::CHECK_CONDITION, "{:?}", r.sense);
    r.sense.expect("CHECK CONDITION carries sense")
}

pub(crate) fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A zeroed temp file of `len` bytes.
pub(crate) fn temp_file(len: u64) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(len).unwrap();
    f
}

/// A fileio device `name` over `f`: `filename`, then `blocksize` when `bs` is given
/// (otherwise the default, 512), then `extra`.
pub(crate) fn fileio_on(
    f: &tempfile::NamedTempFile,
    name: &str,
    bs: Option<u32>,
    extra: &[(&str, &str)],
) -> Arc<dyn Device> {
    let mut a = attrs(&[("filename", f.path().to_str().unwrap())]);
    if let Some(bs) = bs {
        a.extend(attrs(&[("blocksize", &bs.to_string())]));
    }
    a.extend(attrs(extra));
    create_device("vdisk_fileio", name, &a, 0).unwrap()
}

/// A fileio device "disk1" over a zeroed temp file of `blocks` blocks of `bs` bytes
/// (`None`: the default block size, 512, left unset).
pub(crate) fn fileio(
    blocks: u64,
    bs: Option<u32>,
    extra: &[(&str, &str)],
) -> (tempfile::NamedTempFile, Arc<dyn Device>) {
    let f = temp_file(blocks * bs.unwrap_or(512) as u64);
    let d = fileio_on(&f, "disk1", bs, extra);
    (f, d)
}

pub(crate) fn nullio(extra: &[(&str, &str)]) -> Arc<dyn Device> {
    create_device("vdisk_nullio", "null1", &attrs(extra), 0).unwrap()
}

/// A 10-byte CDB: flags in byte 1, LBA in bytes 2-5, `blocks` in bytes 7-8.
pub(crate) fn rw10(op: u8, lba: u32, blocks: u16, flags: u8) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[1] = flags;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// A 16-byte CDB: flags in byte 1, LBA in bytes 2-9, `blocks` in bytes 10-13.
pub(crate) fn rw16(op: u8, lba: u64, blocks: u32, flags: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub(crate) const READ_16: u8 = 0x88;
pub(crate) const WRITE_16: u8 = 0x8A;

/// READ(16) of `blocks` blocks at `lba` through `run`, which must succeed.
pub(crate) fn read_with(
    run: Runner,
    d: &(impl AsDevice + ?Sized),
    lba: u64,
    blocks: u32,
) -> Vec<u8> {
    let r = run(d.device(), &rw16(READ_16, lba, blocks, 0), vec![]);
    good(&r);
    r.data
}

/// WRITE(16) of `data` (whole blocks of `bs` bytes) at `lba` through `run`, which
/// must succeed.
pub(crate) fn write_with(
    run: Runner,
    d: &(impl AsDevice + ?Sized),
    lba: u64,
    data: Vec<u8>,
    bs: usize,
) {
    let blocks = (data.len() / bs) as u32;
    good(&run(d.device(), &rw16(WRITE_16, lba, blocks, 0), data));
}

/// [`read_with`] in blocking mode.
pub(crate) fn read(d: &(impl AsDevice + ?Sized), lba: u64, blocks: u32) -> Vec<u8> {
    read_with(run, d, lba, blocks)
}

/// [`write_with`] in blocking mode.
pub(crate) fn write(d: &(impl AsDevice + ?Sized), lba: u64, data: Vec<u8>, bs: usize) {
    write_with(run, d, lba, data, bs)
}

/// `len` bytes of a pattern that differs for each `seed`.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The big-endian u32 at `off`.
pub(crate) fn be32_at(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}
