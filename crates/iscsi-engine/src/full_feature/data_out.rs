//! A write's data-out (RFC 7143 11.3, 11.7, 11.8): what may come as immediate and
//! unsolicited data, which Data-Out PDUs belong to the command and where their data
//! goes, and the R2Ts that solicit the rest within MaxBurstLength and
//! MaxOutstandingR2T. The data itself stays with the driver: the engine says where
//! each segment goes, the driver copies it once into the command's buffer.

use iscsi_wire::{Bhs, RESERVED_TAG};

/// The data-out parameters negotiated at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOutParams {
    pub first_burst_length: u32,
    pub max_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
}

/// Why a SCSI Command PDU cannot start a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandFault {
    /// Read and write at once: unsupported, answered with CHECK CONDITION (INVALID
    /// FIELD IN CDB).
    Bidirectional,
    /// Immediate data where none may be (a non-write, more than announced, more than
    /// FirstBurstLength, ImmediateData=No): a protocol error, rejected.
    Malformed,
}

/// Where the data of one write stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSequence {
    /// Data-out bytes received so far.
    received: u32,
    /// The initiator will send no more unsolicited data.
    unsolicited_done: bool,
    /// What unsolicited data may fill: the immediate data with InitialR2T=Yes, else up
    /// to FirstBurstLength.
    unsolicited_limit: u32,
    /// Next offset to request with an R2T.
    next_r2t_offset: u32,
    /// R2Ts outstanding: (TTT, DataSN expected next in that sequence).
    r2ts: Vec<(u32, u32)>,
    /// DataSN expected next in the unsolicited sequence.
    unsolicited_data_sn: u32,
    r2t_sn: u32,
}

/// What a Data-Out PDU is to its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOut {
    /// Its data belongs at `offset` in the command's buffer.
    Accept { offset: usize },
    /// Outside the buffer, unsolicited where none may be, or for an unknown TTT: a
    /// protocol error, rejected; the command waits on.
    Reject,
    /// A DataSN out of sequence: ERL 0 cannot recover it, but the damage is this
    /// command's alone: it fails with DATA PHASE ERROR.
    SequenceError { got: u32, expected: u32 },
}

/// An R2T to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2t {
    pub ttt: u32,
    pub r2t_sn: u32,
    pub offset: u32,
    pub len: u32,
}

impl DataOutParams {
    /// The data-out of a new SCSI command whose PDU carried `immediate` bytes:
    /// `Ok(None)` for a command without data-out.
    // Once per command, into a caller that is large: without `always` it stays a
    // call, and the sequence it returns is moved twice.
    #[inline(always)]
    pub fn command(
        &self,
        bhs: &Bhs,
        immediate: u32,
    ) -> Result<Option<WriteSequence>, CommandFault> {
        let (read, write) = (bhs.read_bit(), bhs.write_bit());
        let edtl = bhs.exp_data_transfer_len();
        if read && write {
            return Err(CommandFault::Bidirectional);
        }
        if (!write && immediate > 0)
            || immediate > edtl
            || (immediate > 0 && !self.immediate_data)
            || immediate > self.first_burst_length
        {
            return Err(CommandFault::Malformed);
        }
        if !write {
            return Ok(None);
        }
        let unsolicited_limit = if self.initial_r2t {
            immediate
        } else {
            edtl.min(self.first_burst_length)
        };
        // Unsolicited data ends with the command itself (F bit), or when InitialR2T=Yes.
        let unsolicited_done = bhs.final_bit() || self.initial_r2t;
        Ok(Some(WriteSequence {
            received: immediate,
            unsolicited_done,
            unsolicited_limit,
            next_r2t_offset: if unsolicited_done {
                immediate
            } else {
                unsolicited_limit
            },
            r2ts: Vec::new(),
            unsolicited_data_sn: 0,
            r2t_sn: 0,
        }))
    }
}

impl WriteSequence {
    /// Bytes received so far.
    #[inline]
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The part of the buffer unsolicited data may fill: what a command waiting for
    /// buffer budget needs before its R2Ts.
    #[inline]
    pub fn unsolicited_limit(&self) -> u32 {
        self.unsolicited_limit
    }

    /// R2Ts outstanding.
    pub fn r2ts_outstanding(&self) -> usize {
        self.r2ts.len()
    }

    /// A Data-Out PDU for this command with `len` bytes of data, the command's buffer
    /// being `buffer_len` bytes now.
    #[inline]
    pub fn data_out(
        &mut self,
        bhs: &Bhs,
        len: u32,
        buffer_len: usize,
        params: &DataOutParams,
    ) -> DataOut {
        let off = bhs.buffer_offset() as u64;
        let end = off + len as u64;
        let ttt = bhs.ttt();
        let in_range = end <= buffer_len as u64;
        let unsolicited_ok = ttt != RESERVED_TAG
            || (!self.unsolicited_done && end <= params.first_burst_length as u64);
        let r2t = if ttt == RESERVED_TAG {
            None
        } else {
            match self.r2ts.iter().position(|(t, _)| *t == ttt) {
                Some(i) => Some(i),
                None => return DataOut::Reject,
            }
        };
        if !in_range || !unsolicited_ok {
            return DataOut::Reject;
        }
        let expected = match r2t {
            Some(i) => &mut self.r2ts[i].1,
            None => &mut self.unsolicited_data_sn,
        };
        if bhs.data_sn() != *expected {
            return DataOut::SequenceError {
                got: bhs.data_sn(),
                expected: *expected,
            };
        }
        *expected += 1;
        self.received = self.received.saturating_add(len);
        if bhs.final_bit() {
            match r2t {
                Some(i) => {
                    self.r2ts.swap_remove(i);
                }
                None => {
                    // The initiator may stop short of FirstBurstLength; solicit the
                    // rest from where its unsolicited data ended.
                    self.unsolicited_done = true;
                    self.next_r2t_offset = self.received;
                }
            }
        }
        DataOut::Accept {
            offset: off as usize,
        }
    }

    /// All `edtl` bytes are in.
    #[inline]
    pub fn complete(&self, edtl: u32) -> bool {
        self.received >= edtl
    }

    /// The next R2T to send, if the unsolicited data is over and MaxOutstandingR2T
    /// allows one more; `ttt` hands out its Target Transfer Tag.
    #[inline]
    pub fn next_r2t(
        &mut self,
        edtl: u32,
        params: &DataOutParams,
        ttt: impl FnOnce() -> u32,
    ) -> Option<R2t> {
        if !self.unsolicited_done
            || self.r2ts.len() >= params.max_outstanding_r2t as usize
            || self.next_r2t_offset >= edtl
        {
            return None;
        }
        let offset = self.next_r2t_offset;
        let len = (edtl - offset).min(params.max_burst_length);
        let r2t = R2t {
            ttt: ttt(),
            r2t_sn: self.r2t_sn,
            offset,
            len,
        };
        self.r2ts.push((r2t.ttt, 0));
        self.next_r2t_offset += len;
        self.r2t_sn += 1;
        Some(r2t)
    }
}
