//! Responses (RFC 7143 11.4, 11.7): Data-In PDUs cut to MaxXmitDataSegmentLength, with
//! the status folded into the last one when the command succeeded, else a SCSI
//! Response carrying the sense; residuals against the Expected Data Transfer Length.

use bytes::Bytes;
use iscsi_wire::pdu::{self, Residual};
use scsi_wire::status;
use scst_core::Response;

use super::command::Task;
use super::Conn;

impl Conn {
    pub(super) fn send_response(&mut self, itt: u32, task: &Task, resp: Response) {
        let produced = resp.data_len() as u32;
        // Data-In carries at most what the initiator expects; the rest is a residual.
        let send = if task.read {
            produced.min(task.edtl)
        } else {
            0
        };
        let residual = if task.read {
            Residual::compute(task.edtl, produced)
        } else if produced > 0 {
            Residual::Overflow(produced)
        } else if let Some(needed) = resp.data_out_len {
            Residual::compute(task.edtl, needed)
        } else {
            Residual::None
        };
        let good = resp.status == status::GOOD && resp.sense.is_none();
        let mut data_sn = 0u32;
        if send > 0 {
            let mut data = match resp.static_data {
                Some(b) => Bytes::from_static(b),
                None => Bytes::from(resp.data),
            };
            data.truncate(send as usize);
            let seg = self.p.max_xmit_data_segment_length.max(512);
            let burst = self.p.max_burst_length.max(seg);
            let mut off = 0u32;
            while off < send {
                let n = (send - off).min(seg);
                let last = off + n == send;
                // F closes each MaxBurstLength sequence (RFC 7143 11.7.1).
                let burst_end = (off + n).is_multiple_of(burst);
                let with_status = last && good;
                let sn = if with_status {
                    self.sn_advance()
                } else {
                    self.sn()
                };
                let b = pdu::data_in(&pdu::DataIn {
                    lun: task.lun_raw,
                    itt,
                    data_sn,
                    buffer_offset: off,
                    data_len: n,
                    final_pdu: last || burst_end,
                    status: with_status.then_some(resp.status),
                    residual,
                    sn,
                });
                // The last piece takes the buffer itself: slicing a Bytes made from a
                // Vec allocates a shared header, which a one-PDU read (the 4 KiB
                // case) never needs.
                let piece = if last {
                    std::mem::take(&mut data)
                } else {
                    data.split_to(n as usize)
                };
                self.out.push(b, Some(piece));
                data_sn += 1;
                off += n;
            }
            if good {
                return;
            }
        }
        let sense = resp.sense.map(|s| s.encode(resp.descriptor_sense));
        let mut seg = Vec::new();
        if let Some(s) = &sense {
            pdu::encode_sense_segment(s, &mut seg);
        }
        let sn = self.sn_advance();
        let b = pdu::scsi_response(
            itt,
            pdu::scsi_response::COMMAND_COMPLETED,
            resp.status,
            residual,
            data_sn,
            sn,
            seg.len() as u32,
        );
        self.out
            .push(b, (!seg.is_empty()).then(|| Bytes::from(seg)));
    }
}
