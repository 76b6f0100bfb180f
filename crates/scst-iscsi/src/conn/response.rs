//! Responses (RFC 7143 11.4, 11.7): the core's [`Response`] turned into what the
//! engine's [`FullFeature::respond`](iscsi_engine::FullFeature::respond) needs, and
//! the headers it writes sent with the data-in by reference (no copy: each Data-In
//! takes a slice of the response's buffer into the vectored write) and the sense.

use bytes::Bytes;
use iscsi_engine::full_feature::{data_in_len, Reply, ResponseSink, TaskInfo};
use iscsi_wire::{pdu, Bhs};
use scst_core::Response;

use super::command::Task;
use super::Conn;
use crate::io::PduWriter;

impl Conn {
    pub(super) fn send_response(&mut self, itt: u32, task: &Task, resp: Response) {
        let Response {
            status,
            sense,
            data: vec,
            static_data,
            descriptor_sense,
            data_out_len,
            ..
        } = resp;
        let data_len = static_data.map_or(vec.len(), <[u8]>::len) as u32;
        let mut sense_seg = Vec::new();
        if let Some(s) = sense {
            pdu::encode_sense_segment(&s.encode(descriptor_sense), &mut sense_seg);
        }
        let info = TaskInfo {
            itt,
            lun: task.lun_raw,
            edtl: task.edtl,
            read: task.read,
        };
        let reply = Reply {
            status,
            data_len,
            data_out_len,
            sense_len: sense_seg.len() as u32,
        };
        let held = self.outstanding();
        let send = data_in_len(&info, &reply);
        let data = (send > 0).then(|| {
            let mut d = match static_data {
                Some(b) => Bytes::from_static(b),
                None => Bytes::from(vec),
            };
            d.truncate(send as usize);
            d
        });
        let mut sink = Sink {
            out: &mut self.out,
            data,
            sense: sense_seg,
        };
        self.ff.respond(&info, &reply, held, &mut sink);
    }
}

/// The connection's end of an answer: the PDU writer, the data-in and the sense.
struct Sink<'a> {
    out: &'a mut PduWriter,
    /// The data-in not yet attached; `None` when there is none.
    data: Option<Bytes>,
    sense: Vec<u8>,
}

impl ResponseSink for Sink<'_> {
    #[inline(always)]
    fn data_in(&mut self, bhs: Bhs, len: u32, last: bool) {
        // The last piece takes the buffer itself: slicing a Bytes made from a Vec
        // allocates a shared header, which a one-PDU read (the 4 KiB case) never needs;
        // and taking it out of the Option leaves nothing to drop.
        let piece = if last {
            self.data.take().unwrap_or_default()
        } else {
            match &mut self.data {
                Some(d) => d.split_to(len as usize),
                None => Bytes::new(),
            }
        };
        self.out.push(bhs, Some(piece));
    }

    #[inline(always)]
    fn response(&mut self, bhs: Bhs, sense: bool) {
        let seg = sense.then(|| Bytes::from(std::mem::take(&mut self.sense)));
        self.out.push(bhs, seg);
    }
}
