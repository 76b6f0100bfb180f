//! A SCSI command as the core sees it: no PDUs, no sockets, just the nexus-relative
//! LUN, the CDB, task attribute, data-out bytes and the transport's expected lengths.

use scsi_wire::{status, Sense};

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
    /// Encode sense in descriptor format (control mode page D_SENSE); set by the core.
    pub descriptor_sense: bool,
    /// Data-out bytes the CDB called for (see `Device::data_out_len`); set by the core.
    pub data_out_len: Option<u32>,
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
    /// On a network thread: the device must not block. It returns `None` when the
    /// command needs to block (a page-cache miss, a flush), and the transport re-runs it
    /// in `Blocking` mode on an I/O thread.
    Inline,
    /// On an I/O thread: blocking is fine.
    Blocking,
}
