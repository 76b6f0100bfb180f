//! The core's error types and where each is told.
//!
//! - [`MgmtError`]: management errors, one line naming the object and the reason. A
//!   failed management operation changes nothing.
//! - [`IoError`]: a dev handler's backend operation that failed. Its [`IoErrorKind`]
//!   decides the sense the initiator gets, here and nowhere else (docs/scst-reference.md 4.3:
//!   I/O -> MEDIUM ERROR, read-only -> DATA PROTECT, no space -> SPACE ALLOCATION
//!   FAILED).
//! - [`in_device_format`]: the one place a response's sense format (fixed or
//!   descriptor) is decided, from the device's control mode page.
//!
//! Command errors are [`Sense`] values themselves: each is built from the named codes
//! of `scsi_wire::asc` where the check fails.

use std::fmt;
use std::io;

use scsi_wire::{Sense, SenseFormat};

use crate::cmd::Response;
use crate::device::Device;

/// A management operation that failed, by reason.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MgmtError {
    #[error("{kind} '{name}' does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    Exists { kind: &'static str, name: String },
    #[error("{kind} '{name}' is in use: {why}")]
    Busy {
        kind: &'static str,
        name: String,
        why: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// A device refused an attribute write: the typed reason (read-only, invalid value,
    /// busy, backend failure) that decides the socket's errno.
    #[error(transparent)]
    Attribute(#[from] crate::device::AttrError),
    /// Something SCST offers that this driver or handler does not: refused, never
    /// accepted and ignored.
    #[error("{0}")]
    NotSupported(String),
}

/// A backend operation of a dev handler, as far as the sense of its failure goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Reading user data (READ, VERIFY, COMPARE AND WRITE's read, the allocation map).
    Read,
    /// Writing user data (WRITE, WRITE SAME, ORWRITE...).
    Write,
    /// Making written data durable (SYNCHRONIZE CACHE, FUA, write-through).
    Flush,
    /// Releasing blocks (UNMAP, WRITE SAME with UNMAP).
    Deallocate,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Flush => "flush",
            IoOp::Deallocate => "deallocate",
        })
    }
}

/// How a backend operation failed, as the initiator is told (DESIGN: backend errors
/// map by kind). Callers match on the kind; the OS error stays in [`IoError`] for the
/// log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoErrorKind {
    /// The medium failed: MEDIUM ERROR, UNRECOVERED READ ERROR for reads, WRITE ERROR
    /// (PERIPHERAL DEVICE WRITE FAULT, as SCST reports it) for the rest.
    Medium,
    /// The backing store cannot hold that offset (EFBIG): ILLEGAL REQUEST, LOGICAL
    /// BLOCK ADDRESS OUT OF RANGE.
    OutOfRange,
    /// The backing store is read-only (EROFS): DATA PROTECT, WRITE PROTECTED.
    ReadOnly,
    /// The backing store is full or over quota (ENOSPC, EDQUOT): DATA PROTECT, SPACE
    /// ALLOCATION FAILED WRITE PROTECT (SBC-3 4.7.3.6, a thin LU out of space).
    NoSpace,
}

impl IoErrorKind {
    /// The kind of an OS error.
    pub fn of(e: &io::Error) -> IoErrorKind {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => IoErrorKind::NoSpace,
            io::ErrorKind::ReadOnlyFilesystem => IoErrorKind::ReadOnly,
            io::ErrorKind::FileTooLarge => IoErrorKind::OutOfRange,
            _ => IoErrorKind::Medium,
        }
    }
}

/// A failed backend operation: which, where, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op} at byte {offset} failed")]
pub struct IoError {
    pub op: IoOp,
    /// Byte offset on the backing store (0 for a flush).
    pub offset: u64,
    #[source]
    pub source: io::Error,
}

impl IoError {
    pub fn new(op: IoOp, offset: u64, source: io::Error) -> IoError {
        IoError { op, offset, source }
    }

    pub fn kind(&self) -> IoErrorKind {
        IoErrorKind::of(&self.source)
    }

    /// The sense the initiator gets for this failure: the one mapping from backend
    /// errors to sense.
    pub fn sense(&self) -> Sense {
        match (self.kind(), self.op) {
            (IoErrorKind::Medium, IoOp::Read) => Sense::READ_ERROR,
            (IoErrorKind::Medium, _) => Sense::WRITE_ERROR,
            (IoErrorKind::OutOfRange, _) => Sense::LBA_OUT_OF_RANGE,
            (IoErrorKind::ReadOnly, _) => Sense::WRITE_PROTECTED,
            (IoErrorKind::NoSpace, _) => Sense::SPACE_ALLOCATION_FAILED,
        }
    }
}

impl From<&IoError> for Sense {
    fn from(e: &IoError) -> Sense {
        e.sense()
    }
}

impl From<IoError> for Sense {
    fn from(e: IoError) -> Sense {
        e.sense()
    }
}

/// The sense format `dev` reports in: descriptor when its control mode page has
/// D_SENSE set (SPC-4 7.5.8).
pub fn sense_format(dev: &dyn Device) -> SenseFormat {
    SenseFormat::from_d_sense(dev.descriptor_sense())
}

/// `r` with its sense, if any, set to be encoded in `dev`'s format. Every response a
/// device's LUN returns goes through here once before it is sent; REQUEST SENSE data
/// is the exception, its DESC bit chooses.
pub fn in_device_format(dev: &dyn Device, mut r: Response) -> Response {
    set_format(sense_format(dev), &mut r);
    r
}

/// Mark `r`'s sense, if any, to be encoded in `format`: what [`in_device_format`] does,
/// for a format read from the device earlier (a completion from another thread).
pub fn set_format(format: SenseFormat, r: &mut Response) {
    if r.sense.is_some() {
        r.descriptor_sense = format.is_descriptor();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi_wire::asc;

    fn sense_of(op: IoOp, e: io::Error) -> Sense {
        IoError::new(op, 4096, e).sense()
    }

    #[test]
    fn backend_errors_map_by_kind() {
        let eio = || io::Error::from_raw_os_error(5);
        assert_eq!(sense_of(IoOp::Read, eio()), Sense::READ_ERROR);
        assert_eq!(sense_of(IoOp::Write, eio()), Sense::WRITE_ERROR);
        assert_eq!(sense_of(IoOp::Flush, eio()), Sense::WRITE_ERROR);
        assert_eq!(sense_of(IoOp::Deallocate, eio()), Sense::WRITE_ERROR);
        // ENOSPC, EDQUOT, EROFS, EFBIG as the OS reports them.
        for errno in [28, 122] {
            let s = sense_of(IoOp::Write, io::Error::from_raw_os_error(errno));
            assert_eq!(s.code(), asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT);
            assert_eq!(s.key, scsi_wire::sense::key::DATA_PROTECT);
        }
        let s = sense_of(IoOp::Flush, io::Error::from_raw_os_error(30));
        assert_eq!(s, Sense::WRITE_PROTECTED);
        let s = sense_of(IoOp::Write, io::Error::from_raw_os_error(27));
        assert_eq!(s, Sense::LBA_OUT_OF_RANGE);
        // A short read the backend cannot explain is a medium error (vdisk answers a
        // read past the end of a file that shrank under it with LBA OUT OF RANGE
        // before it gets here).
        let s = sense_of(IoOp::Read, io::ErrorKind::UnexpectedEof.into());
        assert_eq!(s.code(), asc::UNRECOVERED_READ_ERROR);
    }

    #[test]
    fn io_error_names_the_step_and_keeps_the_cause() {
        let e = IoError::new(IoOp::Write, 512, io::Error::from_raw_os_error(5));
        assert_eq!(e.to_string(), "write at byte 512 failed");
        let cause = std::error::Error::source(&e).unwrap();
        assert_eq!(
            cause.to_string(),
            io::Error::from_raw_os_error(5).to_string()
        );
        assert_eq!(Sense::from(&e), Sense::WRITE_ERROR);
    }

    struct DSense(bool);

    impl Device for DSense {
        fn name(&self) -> &str {
            "d0"
        }
        fn handler_name(&self) -> &'static str {
            "test"
        }
        fn scsi_type(&self) -> u8 {
            0
        }
        fn execute(
            &self,
            _: &crate::device::CmdCtx<'_>,
            _: &mut crate::cmd::Cmd,
            _: crate::cmd::ExecMode,
        ) -> Option<Response> {
            None
        }
        fn descriptor_sense(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn the_device_decides_the_sense_format() {
        let r = in_device_format(&DSense(true), Response::check(Sense::INVALID_OPCODE));
        assert!(r.descriptor_sense);
        assert_eq!(r.sense_bytes()[0], 0x72);
        let r = in_device_format(&DSense(false), Response::check(Sense::INVALID_OPCODE));
        assert_eq!(r.sense_bytes()[0], 0x70);
        // No sense, nothing to format.
        assert!(!in_device_format(&DSense(true), Response::good()).descriptor_sense);
        assert_eq!(sense_format(&DSense(true)), SenseFormat::Descriptor);
    }
}
