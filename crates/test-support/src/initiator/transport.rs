//! The socket: the reader thread that cuts the stream into PDUs, raw sends and
//! receives for robustness tests, and the receive path that keeps the sequence numbers,
//! answers target NOP-Ins and routes each PDU to its task or to whoever waits for it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use iscsi_wire::bhs::{Bhs, Opcode, Stage, RESERVED_TAG};
use iscsi_wire::frame::{encode_header_with_ahs, parse_frame, Digests};
use iscsi_wire::pdu::{self, TargetSn};

use super::{sn_gt, Initiator, InitiatorError, Pdu, Result};

/// How the reader thread decodes the stream. Digests switch on right after the final
/// login response, whose keys the caller's thread must see first: the reader pauses
/// after passing that response on (the next PDU may already be in the same read)
/// until [`Initiator::resume_rx`] hands it the negotiated digests.
#[derive(Debug, Default)]
pub(super) struct RxConfig {
    digests: Digests,
    paused: bool,
}

pub(super) type RxShared = Arc<(Mutex<RxConfig>, Condvar)>;

pub(super) enum RxEvent {
    Pdu(Pdu),
    Closed,
    Error(InitiatorError),
}

/// The reader accepts any PDU size the wire format allows; limits the target must
/// respect are checked separately and reported as anomalies.
const RX_MAX_DATA: u32 = (1 << 24) - 1;

impl Initiator {
    /// Writes raw bytes to the socket.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// A second handle on the socket, for writing from another thread (e.g. while this
    /// one does not read).
    pub fn raw_writer(&self) -> Result<TcpStream> {
        Ok(self.stream.try_clone()?)
    }

    /// Stop taking bytes off the socket (at most one read already under way still
    /// completes), as a client that no longer reads would, until
    /// [`Initiator::resume_reading`].
    pub fn pause_reading(&self) {
        let (m, _) = &*self.rx_config;
        m.lock().unwrap_or_else(|e| e.into_inner()).paused = true;
    }

    pub fn resume_reading(&self) {
        self.resume_rx(self.digests);
    }

    /// Sends a PDU with the connection's digests; DataSegmentLength is set from `data`.
    pub fn send_pdu(&mut self, bhs: &Bhs, data: &[u8]) -> Result<()> {
        let wire = iscsi_wire::frame::encode_pdu(bhs, data, self.digests);
        self.send_raw(&wire)
    }

    /// Like [`Initiator::send_pdu`] with an AHS area (TotalAHSLength must match).
    pub fn send_pdu_with_ahs(&mut self, bhs: &Bhs, ahs: &[u8], data: &[u8]) -> Result<()> {
        let mut bhs = *bhs;
        bhs.set_data_segment_len(data.len() as u32);
        let mut wire = encode_header_with_ahs(&bhs, ahs, self.digests.header);
        wire.extend_from_slice(data);
        let (t, tl) = iscsi_wire::frame::data_trailer(data, self.digests.data);
        wire.extend_from_slice(&t[..tl]);
        self.send_raw(&wire)
    }

    /// The next PDU from the target, not handled as part of any task (no R2T served,
    /// no ping answered); only sequence numbers are tracked. PDUs stashed by earlier
    /// waits come first.
    pub fn recv_pdu(&mut self, timeout: Duration) -> Result<Pdu> {
        if let Some(p) = self.stash.pop_front() {
            return Ok(p);
        }
        self.recv_until(Instant::now() + timeout)
    }

    /// True if the target closes the connection within `timeout` (PDUs received in
    /// the meantime are discarded).
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_until(deadline) {
                Ok(_) => continue,
                Err(InitiatorError::Timeout) => return false,
                Err(_) => return true,
            }
        }
    }

    /// Lets the reader continue after the final login response, with `digests`.
    pub(super) fn resume_rx(&self, digests: Digests) {
        let (m, cv) = &*self.rx_config;
        let mut c = m.lock().unwrap_or_else(|e| e.into_inner());
        c.digests = digests;
        c.paused = false;
        cv.notify_all();
    }

    pub(super) fn recv_until(&mut self, deadline: Instant) -> Result<Pdu> {
        if self.closed {
            return Err(InitiatorError::ConnectionClosed);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(RxEvent::Pdu(p)) => {
                self.observe(&p);
                Ok(p)
            }
            Ok(RxEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Err(InitiatorError::ConnectionClosed)
            }
            Ok(RxEvent::Error(e)) => {
                self.closed = true;
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => Err(InitiatorError::Timeout),
        }
    }

    /// Waits for a PDU matching `pred`, handling everything else on the way.
    pub(super) fn wait_pdu(&mut self, pred: impl Fn(&Pdu) -> bool) -> Result<Pdu> {
        if let Some(i) = self.stash.iter().position(&pred) {
            if let Some(p) = self.stash.remove(i) {
                return Ok(p);
            }
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let p = self.recv_until(deadline)?;
            if pred(&p) {
                return Ok(p);
            }
            self.dispatch(p)?;
        }
    }

    /// Sequence number bookkeeping common to every target PDU.
    fn observe(&mut self, p: &Pdu) {
        let b = &p.bhs;
        let Some(op) = b.opcode() else {
            self.anomalies
                .push(format!("unknown opcode {:#04x}", b.opcode_raw()));
            return;
        };
        if op.is_initiator() {
            self.anomalies
                .push(format!("initiator opcode {op:?} from target"));
            return;
        }
        if p.data.len() > self.negotiated.max_recv_data_segment_length as usize && self.full_feature
        {
            self.anomalies.push(format!(
                "{op:?} data segment of {} bytes exceeds our MaxRecvDataSegmentLength {}",
                p.data.len(),
                self.negotiated.max_recv_data_segment_length
            ));
        }
        if !p.data_digest_ok {
            self.anomalies
                .push(format!("{op:?} with a bad data digest"));
        }
        let sn = TargetSn {
            stat_sn: b.stat_sn(),
            exp_cmd_sn: b.exp_cmd_sn(),
            max_cmd_sn: b.max_cmd_sn(),
        };
        // MaxCmdSN = ExpCmdSN - 1 (closed window) is valid; anything further behind
        // is stale or garbage and is ignored (RFC 7143 4.2.2.1).
        if !sn_gt(sn.exp_cmd_sn, sn.max_cmd_sn.wrapping_add(1)) {
            if sn_gt(sn.exp_cmd_sn, self.exp_cmd_sn) {
                self.exp_cmd_sn = sn.exp_cmd_sn;
            }
            if sn_gt(sn.max_cmd_sn, self.max_cmd_sn) || op == Opcode::LoginResponse {
                self.max_cmd_sn = sn.max_cmd_sn;
            }
        }
        let carries_status = match op {
            Opcode::ScsiResponse
            | Opcode::TaskMgmtResponse
            | Opcode::LogoutResponse
            | Opcode::TextResponse
            | Opcode::LoginResponse => true,
            Opcode::DataIn => b.status_bit(),
            Opcode::NopIn => b.itt() != RESERVED_TAG,
            Opcode::Reject | Opcode::AsyncMessage => {
                self.stat_sn_resync = true;
                false
            }
            _ => false,
        };
        if carries_status {
            if sn.stat_sn != self.exp_stat_sn && !self.stat_sn_resync {
                self.anomalies.push(format!(
                    "{op:?} StatSN {} but expected {}",
                    sn.stat_sn, self.exp_stat_sn
                ));
            }
            self.stat_sn_resync = false;
            self.exp_stat_sn = sn.stat_sn.wrapping_add(1);
        }
    }

    /// Handles a PDU nobody is specifically waiting for.
    pub(super) fn dispatch(&mut self, p: Pdu) -> Result<()> {
        match p.opcode() {
            Some(Opcode::DataIn) => self.on_data_in(p)?,
            Some(Opcode::ScsiResponse) => self.on_scsi_response(p)?,
            Some(Opcode::R2t) => {
                let b = p.bhs;
                if !self.tasks.contains_key(&b.itt()) {
                    self.anomalies
                        .push(format!("R2T for unknown ITT {:#x}", b.itt()));
                    return Ok(());
                }
                self.send_data_out(
                    b.itt(),
                    b.ttt(),
                    b.buffer_offset() as usize,
                    b.desired_data_transfer_len() as usize,
                )?;
            }
            Some(Opcode::NopIn) if p.bhs.itt() == RESERVED_TAG => {
                // Target ping: answer only if it asks for an answer.
                if p.bhs.ttt() != RESERVED_TAG {
                    let bhs = pdu::nop_out(
                        true,
                        p.bhs.lun(),
                        RESERVED_TAG,
                        p.bhs.ttt(),
                        self.cmd_sn,
                        self.exp_stat_sn,
                        p.data.len() as u32,
                    );
                    self.send_pdu(&bhs, &p.data)?;
                }
            }
            Some(Opcode::AsyncMessage) => self.async_events.push(p),
            Some(Opcode::Reject) => {
                let rejected = Bhs::from_slice(&p.data);
                match rejected.map(|r| r.itt()) {
                    Some(itt) if self.tasks.contains_key(&itt) => {
                        self.tasks.remove(&itt);
                        self.done.insert(
                            itt,
                            Err(InitiatorError::Rejected {
                                reason: p.bhs.reject_reason(),
                            }),
                        );
                    }
                    _ => self.stash.push_back(p),
                }
            }
            _ => self.stash.push_back(p),
        }
        Ok(())
    }
}

/// The reader thread: bytes -> PDUs -> channel, until EOF, error or shutdown.
pub(super) fn reader(mut s: TcpStream, cfg: RxShared, tx: mpsc::Sender<RxEvent>) {
    let (m, cv) = &*cfg;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        // Parse everything complete in the buffer.
        let mut consumed = 0;
        loop {
            let digests = {
                let mut c = m.lock().unwrap_or_else(|e| e.into_inner());
                while c.paused {
                    c = cv.wait(c).unwrap_or_else(|e| e.into_inner());
                }
                c.digests
            };
            match parse_frame(&buf[consumed..], digests, RX_MAX_DATA) {
                Ok(Some(f)) => {
                    let base = consumed;
                    let pdu = Pdu {
                        bhs: f.bhs,
                        ahs: buf[base + f.ahs.start..base + f.ahs.end].to_vec(),
                        data: buf[base + f.data.start..base + f.data.end].to_vec(),
                        data_digest_ok: f.data_digest_ok,
                    };
                    consumed += f.total_len;
                    let b = &pdu.bhs;
                    if b.opcode() == Some(Opcode::LoginResponse)
                        && b.transit()
                        && b.nsg() == Stage::FullFeature
                        && b.status_class() == 0
                    {
                        // Set before the PDU is passed on, so that resume_rx cannot
                        // come first.
                        m.lock().unwrap_or_else(|e| e.into_inner()).paused = true;
                    }
                    if tx.send(RxEvent::Pdu(pdu)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(RxEvent::Error(e.into()));
                    return;
                }
            }
        }
        buf.drain(..consumed);
        match s.read(&mut chunk) {
            Ok(0) => {
                let _ = tx.send(RxEvent::Closed);
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(RxEvent::Error(e.into()));
                return;
            }
        }
    }
}
