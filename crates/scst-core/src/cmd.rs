//! A SCSI command as the core sees it: no PDUs, no sockets, just the nexus-relative
//! LUN, the CDB, task attribute, data-out bytes and the transport's expected lengths.

use parking_lot::Mutex;
use scsi_wire::{status, Sense};
use std::sync::Arc;

/// SAM task attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAttr {
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// A CDB of up to 32 bytes kept inline (READ(32) and friends are the longest we accept),
/// so that building a command never allocates for it.
#[derive(Clone, Copy)]
pub struct Cdb {
    bytes: [u8; Cdb::MAX],
    len: u8,
}

impl Cdb {
    pub const MAX: usize = 32;

    /// None when the CDB is empty or longer than we support.
    pub fn new(b: &[u8]) -> Option<Cdb> {
        if b.is_empty() || b.len() > Cdb::MAX {
            return None;
        }
        let mut bytes = [0u8; Cdb::MAX];
        bytes[..b.len()].copy_from_slice(b);
        Some(Cdb {
            bytes,
            len: b.len() as u8,
        })
    }

    /// A CDB already held in a buffer of [`Cdb::MAX`] bytes, its first `len` bytes;
    /// None when `len` is 0 or over the buffer. Takes the buffer as it is: no copy.
    #[inline]
    pub fn from_buffer(bytes: [u8; Cdb::MAX], len: u8) -> Option<Cdb> {
        (len > 0 && len as usize <= Cdb::MAX).then_some(Cdb { bytes, len })
    }

    pub fn opcode(&self) -> u8 {
        self.bytes[0]
    }
}

impl std::ops::Deref for Cdb {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.iter() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct Cmd {
    pub cdb: Cdb,
    /// LUN number as decoded from the transport's 8-byte LUN field.
    pub lun: u64,
    /// Transport tag (iSCSI ITT), for TMF ABORT TASK and logs.
    pub tag: u64,
    pub attr: TaskAttr,
    /// Data-out bytes as the initiator sent them. Commands that need more than was sent
    /// fail; extra bytes are ignored (the transport reports the residual).
    pub data_out: Vec<u8>,
    /// The transport's expected data-in length: the most data-in it can carry back.
    pub expected_in: u32,
}

/// The outcome of a command: SCSI status, sense when CHECK CONDITION, and data-in.
/// `data` may be longer than the initiator expects: the transport sends what fits and
/// reports the overflow as a residual.
#[derive(Debug, Default)]
pub struct Response {
    pub status: u8,
    pub sense: Option<Sense>,
    pub data: Vec<u8>,
    /// Data-in in static, immutable memory instead of `data` (a nullio read's zeros):
    /// the transport sends it as it is, with no allocation or copy. Devices set it only
    /// in responses to `ExecMode::Inline`, whose caller is the transport; `data` is
    /// then empty.
    pub static_data: Option<&'static [u8]>,
    /// Encode sense in descriptor format (control mode page D_SENSE); set by the core.
    pub descriptor_sense: bool,
    /// Data-out bytes the CDB called for (see `Device::data_out_len`); set by the core.
    pub data_out_len: Option<u32>,
    /// The command was started and will complete later (see [`Deferred`]); the rest of
    /// this response is a placeholder. Only in responses to `ExecMode::Inline`.
    pub deferred: Option<Deferred>,
    /// The command stopped where it would block (see [`Resume`]); the rest of this
    /// response is a placeholder. Only in responses to `ExecMode::Inline`.
    pub resume: Option<Resume>,
}

impl Response {
    pub fn good() -> Response {
        Response::default()
    }

    pub fn data(data: Vec<u8>) -> Response {
        Response {
            data,
            ..Response::default()
        }
    }

    /// Data with the SCSI allocation-length rule applied: never more than `alloc_len`.
    pub fn data_alloc(mut data: Vec<u8>, alloc_len: usize) -> Response {
        data.truncate(alloc_len);
        Response::data(data)
    }

    /// A command that will complete through `d`.
    pub fn deferred(d: Deferred) -> Response {
        Response {
            deferred: Some(d),
            ..Response::default()
        }
    }

    /// A command that continues on an I/O thread through `r`.
    pub fn resume(r: Resume) -> Response {
        Response {
            resume: Some(r),
            ..Response::default()
        }
    }

    /// Data-in bytes the response carries, wherever they are held.
    pub fn data_len(&self) -> usize {
        self.static_data.map_or(self.data.len(), <[u8]>::len)
    }

    pub fn check(sense: Sense) -> Response {
        Response {
            status: status::CHECK_CONDITION,
            sense: Some(sense),
            ..Response::default()
        }
    }

    pub fn status(status: u8) -> Response {
        Response {
            status,
            ..Response::default()
        }
    }

    /// Sense bytes in the format the device asked for, or empty.
    pub fn sense_bytes(&self) -> Vec<u8> {
        self.sense
            .map(|s| s.encode(self.descriptor_sense))
            .unwrap_or_default()
    }
}

/// Where a device is asked to run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// On a network thread: the device must not block. When the command needs to
    /// block (a page-cache miss, a flush) the device either returns
    /// [`Response::resume`] with the rest of the command, which the core runs on an
    /// I/O thread from where it stopped (its CDB decoded, its checks made, its LBA
    /// range held), or `None`, and the core runs the whole command again in
    /// `Blocking` mode on an I/O thread. A device with an asynchronous I/O engine may
    /// instead start the I/O and return [`Response::deferred`]: the command then
    /// completes through the [`Deferred`], from another thread.
    Inline,
    /// On an I/O thread: blocking is fine.
    Blocking,
}

/// The rest of a command that stopped in `ExecMode::Inline` because it has to block:
/// the core runs it once, on an I/O thread, with the same command (its data-out still
/// there), and the response it returns is the command's.
pub struct Resume(Box<dyn FnOnce(&mut Cmd) -> Response + Send>);

impl Resume {
    pub fn new(rest: impl FnOnce(&mut Cmd) -> Response + Send + 'static) -> Resume {
        Resume(Box::new(rest))
    }

    /// Run the rest of the command (on an I/O thread: it may block).
    pub fn run(self, cmd: &mut Cmd) -> Response {
        (self.0)(cmd)
    }
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resume")
    }
}

/// The far end of a command that completes asynchronously: the device keeps the
/// [`Completer`], the transport gets the `Deferred` in the placeholder response and
/// says with [`Deferred::on_complete`] what to do with the final one. Either may come
/// first: whichever is second runs the callback.
pub struct Deferred(Arc<Mutex<DeferredState>>);

/// The device's half of a [`Deferred`]. Dropping it without completing answers the
/// command with INTERNAL FAILURE, so that no command is ever left without a response.
pub struct Completer(Option<Arc<Mutex<DeferredState>>>);

type Callback = Box<dyn FnOnce(Response) + Send>;

enum DeferredState {
    Pending,
    Done(Response),
    Waiting(Callback),
    Finished,
}

impl Deferred {
    pub fn new() -> (Deferred, Completer) {
        let s = Arc::new(Mutex::new(DeferredState::Pending));
        (Deferred(s.clone()), Completer(Some(s)))
    }

    /// Run `f` with the final response: now if it is already there, else on the
    /// thread that completes the command.
    pub fn on_complete(self, f: impl FnOnce(Response) + Send + 'static) {
        let mut st = self.0.lock();
        match std::mem::replace(&mut *st, DeferredState::Finished) {
            DeferredState::Done(r) => {
                drop(st);
                f(r);
            }
            DeferredState::Pending => *st = DeferredState::Waiting(Box::new(f)),
            // Only `on_complete` installs a callback and it consumes the Deferred.
            DeferredState::Waiting(_) | DeferredState::Finished => {}
        }
    }
}

impl Completer {
    pub fn complete(mut self, r: Response) {
        if let Some(s) = self.0.take() {
            Self::deliver(&s, r);
        }
    }

    fn deliver(s: &Mutex<DeferredState>, r: Response) {
        let mut st = s.lock();
        match std::mem::replace(&mut *st, DeferredState::Finished) {
            DeferredState::Waiting(f) => {
                drop(st);
                f(r);
            }
            DeferredState::Pending => *st = DeferredState::Done(r),
            DeferredState::Done(_) | DeferredState::Finished => {}
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            Self::deliver(&s, Response::check(Sense::INTERNAL_FAILURE));
        }
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

impl std::fmt::Debug for Completer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn deferred_delivers_once_whichever_side_comes_first() {
        // Completed before anyone listens.
        let (d, c) = Deferred::new();
        c.complete(Response::status(status::BUSY));
        let (tx, rx) = mpsc::channel();
        d.on_complete(move |r| tx.send(r.status).unwrap());
        assert_eq!(rx.try_recv(), Ok(status::BUSY));
        // Listening before completion, completed from another thread.
        let (d, c) = Deferred::new();
        let (tx, rx) = mpsc::channel();
        d.on_complete(move |r| tx.send(r.status).unwrap());
        assert!(rx.try_recv().is_err());
        std::thread::spawn(move || c.complete(Response::good()))
            .join()
            .unwrap();
        assert_eq!(rx.recv(), Ok(status::GOOD));
        // A completer dropped unused still answers.
        let (d, c) = Deferred::new();
        drop(c);
        let (tx, rx) = mpsc::channel();
        d.on_complete(move |r| tx.send(r.sense).unwrap());
        assert_eq!(rx.try_recv(), Ok(Some(Sense::INTERNAL_FAILURE)));
    }
}
