//! A command's answer (RFC 7143 11.4, 11.7): Data-In PDUs cut to
//! MaxXmitDataSegmentLength, F closing each MaxBurstLength sequence, the status folded
//! into the last one when the command succeeded, else a SCSI Response carrying the
//! sense; residuals against the Expected Data Transfer Length. The engine writes the
//! headers; the data and sense stay with the driver (a [`ResponseSink`]), which
//! attaches them, so data-in goes by reference into the driver's vectored writes.

use iscsi_wire::pdu::{self, Residual};
use iscsi_wire::Bhs;

use super::FullFeature;

/// GOOD (SAM-5): the only status that may fold into a Data-In.
const GOOD: u8 = 0x00;

/// What the initiator asked of a command, as its response needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskInfo {
    pub itt: u32,
    pub lun: [u8; 8],
    /// Expected Data Transfer Length.
    pub edtl: u32,
    /// The R bit: the initiator takes data-in.
    pub read: bool,
}

/// How a command ended, as its response needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: u8,
    /// Data-in bytes the command produced.
    pub data_len: u32,
    /// For a write that was cut short: the data-out length it needed.
    pub data_out_len: Option<u32>,
    /// Length of the sense segment (SenseLength and the sense bytes); 0: no sense.
    pub sense_len: u32,
}

/// Where the answer's PDUs go: the driver, which attaches the data it holds.
pub trait ResponseSink {
    /// A Data-In header, to go with the next `len` bytes of the data-in (`last`: the
    /// rest of it).
    fn data_in(&mut self, bhs: Bhs, len: u32, last: bool);
    /// The SCSI Response header, with the sense segment when `sense`.
    fn response(&mut self, bhs: Bhs, sense: bool);
}

/// Data-in bytes the answer to `task` carries: at most what the initiator expects,
/// the rest being a residual. The driver cuts its buffer to this.
#[inline]
pub fn data_in_len(task: &TaskInfo, reply: &Reply) -> u32 {
    if task.read {
        reply.data_len.min(task.edtl)
    } else {
        0
    }
}

impl FullFeature {
    /// The PDUs answering `task` with `reply`, in order, into `sink`.
    // Forced inline, with the sink's methods: the hottest path of all, once per
    // command, and as a call it costs more than writing the headers.
    #[inline(always)]
    pub fn respond<S: ResponseSink>(
        &mut self,
        task: &TaskInfo,
        reply: &Reply,
        outstanding: usize,
        sink: &mut S,
    ) {
        let produced = reply.data_len;
        let send = data_in_len(task, reply);
        let residual = if task.read {
            Residual::compute(task.edtl, produced)
        } else if produced > 0 {
            Residual::Overflow(produced)
        } else if let Some(needed) = reply.data_out_len {
            Residual::compute(task.edtl, needed)
        } else {
            Residual::None
        };
        let good = reply.status == GOOD && reply.sense_len == 0;
        let mut data_sn = 0u32;
        if send > 0 {
            let seg = self.max_xmit_data_segment_length.max(512);
            let burst = self.data_out.max_burst_length.max(seg);
            let mut off = 0u32;
            while off < send {
                let n = (send - off).min(seg);
                let last = off + n == send;
                // F closes each MaxBurstLength sequence (RFC 7143 11.7.1).
                let burst_end = (off + n).is_multiple_of(burst);
                let with_status = last && good;
                let sn = if with_status {
                    self.sn_advance(outstanding)
                } else {
                    self.sn(outstanding)
                };
                let b = pdu::data_in(&pdu::DataIn {
                    lun: task.lun,
                    itt: task.itt,
                    data_sn,
                    buffer_offset: off,
                    data_len: n,
                    final_pdu: last || burst_end,
                    status: with_status.then_some(reply.status),
                    residual,
                    sn,
                });
                sink.data_in(b, n, last);
                data_sn += 1;
                off += n;
            }
            if good {
                return;
            }
        }
        let sn = self.sn_advance(outstanding);
        let b = pdu::scsi_response(
            task.itt,
            pdu::scsi_response::COMMAND_COMPLETED,
            reply.status,
            residual,
            data_sn,
            sn,
            reply.sense_len,
        );
        sink.response(b, reply.sense_len > 0);
    }

    /// A Task Management Function Response with `code`
    /// ([`tmf_response`](mod@iscsi_wire::pdu::tmf_response) codes).
    pub fn tmf_response(&mut self, itt: u32, code: u8, outstanding: usize) -> Bhs {
        let sn = self.sn_advance(outstanding);
        pdu::tmf_response(itt, code, sn)
    }

    /// A Reject for `reason` ([`reject_reason`](iscsi_wire::pdu::reject_reason)); its
    /// data segment, which the driver attaches, is the rejected PDU's header.
    pub fn reject(&mut self, reason: u8, outstanding: usize) -> Bhs {
        let sn = self.sn_advance(outstanding);
        pdu::reject(reason, 0, sn)
    }
}
