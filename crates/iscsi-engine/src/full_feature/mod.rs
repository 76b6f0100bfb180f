//! A normal session's full-feature phase, the parts that need neither the core nor
//! the socket: the CmdSN window ([`CmdWindow`]), a write's immediate, unsolicited and
//! solicited data with its R2Ts ([`WriteSequence`]), the target's NOP-In pings and
//! their timeout ([`Keepalive`]), Target Transfer Tags, NOP-Out answers, text requests
//! and logout, Data-In and SCSI Response headers ([`FullFeature::respond`]), Task
//! Management requests ([`TmfRequest`]) and responses, and Rejects. The driver hands
//! each received PDU's header here and sends the headers it gets back with the data
//! segments it already holds (a NOP-Out's echoed data and a read's data-in are never
//! copied).
//!
//! PDUs are framed here too ([`Framer`]): the driver reads the socket into the
//! framer's buffer and gets each PDU back with its data segment as a slice of it.
//!
//! [`FullFeatureConnection`] puts it all behind one surface: the framing, these rules,
//! the commands still collecting data and the connection's data budget, task
//! management against the commands it holds, and the transmit queue ([`Transmit`]).
//! Commands leave it as events for the core, and their responses come back in.

mod commands;
mod connection;
mod data_out;
mod framing;
mod keepalive;
mod response;
mod tmf;
mod transmit;
mod window;

use std::time::{Duration, Instant};

use iscsi_wire::pdu::{self, TargetSn};
use iscsi_wire::{Bhs, RESERVED_TAG};

pub use commands::{
    live_tasks, Command, Failure, NoSharedLimit, SharedBudget, Task, TaskAttribute, DATA_BUDGET,
    MAX_CDB, MAX_COMMAND_BUFFER,
};
pub use connection::{Ending, Event, FullFeatureConnection, Next, TaskManagement, TmfOutcome};
pub use data_out::{CommandFault, DataOut, DataOutParams, R2t, WriteSequence};
pub use framing::{Framer, Pdu};
pub use keepalive::{Keepalive, Wake};
pub use response::{data_in_len, Reply, ResponseSink, TaskInfo};
pub use tmf::TmfRequest;
pub use transmit::Transmit;
pub use window::{Admit, CmdWindow};

/// What the full-feature phase starts from, once the login completed.
#[derive(Debug, Clone, Copy)]
pub struct FullFeatureConfig {
    /// StatSN of the first response (after the final Login Response's).
    pub stat_sn: u32,
    /// The CmdSN the initiator sends next.
    pub exp_cmd_sn: u32,
    /// The window's depth (SCST's QueuedCommands).
    pub queued_commands: u32,
    /// How long the connection may be silent before a NOP-In ping; `None`: never.
    pub nop_in_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is given up.
    pub nop_in_timeout: Duration,
    pub data_out: DataOutParams,
    /// What one data segment to the initiator may hold (its MaxRecvDataSegmentLength).
    pub max_xmit_data_segment_length: u32,
}

/// A text request admitted to the window, waiting for the driver's answer
/// ([`FullFeature::answer_text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    pub itt: u32,
    pub lun: [u8; 8],
    /// The value of `SendTargets`, when asked: the driver answers with what discovery
    /// would show this initiator.
    pub send_targets: Option<String>,
}

/// What the timers ask of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// Nothing is due.
    Idle,
    /// Send this NOP-In ping.
    Ping(Bhs),
    /// The last ping went unanswered for NopInTimeout: close the connection.
    Dead,
}

/// The full-feature state of one connection (one connection per session: ERL 0, no
/// MC/S).
#[derive(Debug)]
pub struct FullFeature {
    window: CmdWindow,
    keepalive: Keepalive,
    data_out: DataOutParams,
    max_xmit_data_segment_length: u32,
    /// The next Target Transfer Tag, shared by R2Ts and pings so that an answer can
    /// never be taken for the other.
    next_ttt: u32,
}

impl FullFeature {
    pub fn new(config: FullFeatureConfig, now: Instant) -> FullFeature {
        FullFeature {
            window: CmdWindow::new(config.stat_sn, config.exp_cmd_sn, config.queued_commands),
            keepalive: Keepalive::new(config.nop_in_interval, config.nop_in_timeout, now),
            data_out: config.data_out,
            max_xmit_data_segment_length: config.max_xmit_data_segment_length,
            next_ttt: 1,
        }
    }

    pub fn window(&self) -> &CmdWindow {
        &self.window
    }

    /// The data-out parameters negotiated at login.
    #[inline]
    pub fn data_out_params(&self) -> &DataOutParams {
        &self.data_out
    }

    /// The data-out of a new SCSI command whose PDU carried `immediate` bytes (see
    /// [`DataOutParams::command`]).
    #[inline(always)]
    pub fn command(
        &self,
        bhs: &Bhs,
        immediate: u32,
    ) -> Result<Option<WriteSequence>, CommandFault> {
        self.data_out.command(bhs, immediate)
    }

    /// A Data-Out PDU of `write`, whose buffer is `buffer_len` bytes now.
    #[inline]
    pub fn data_out(
        &self,
        write: &mut WriteSequence,
        bhs: &Bhs,
        len: u32,
        buffer_len: usize,
    ) -> DataOut {
        write.data_out(bhs, len, buffer_len, &self.data_out)
    }

    /// The next R2T of `write` (command `itt` on `lun`, `edtl` bytes), if one is due.
    #[inline]
    pub fn r2t(
        &mut self,
        write: &mut WriteSequence,
        lun: [u8; 8],
        itt: u32,
        edtl: u32,
        outstanding: usize,
    ) -> Option<Bhs> {
        let params = self.data_out;
        let r = write.next_r2t(edtl, &params, || self.r2t_ttt())?;
        Some(pdu::r2t(
            lun,
            itt,
            r.ttt,
            r.r2t_sn,
            r.offset,
            r.len,
            self.sn(outstanding),
        ))
    }

    /// Sequence numbers for a PDU that carries no status, with `outstanding` commands
    /// held by the connection.
    #[inline]
    pub fn sn(&self, outstanding: usize) -> TargetSn {
        self.window.sn(outstanding)
    }

    /// Sequence numbers for a PDU that carries status: StatSN advances.
    #[inline]
    pub fn sn_advance(&mut self, outstanding: usize) -> TargetSn {
        self.window.sn_advance(outstanding)
    }

    /// A command, TMF, text or NOP-Out request arrived: its CmdSN against the window.
    #[inline]
    pub fn admit(&mut self, bhs: &Bhs, outstanding: usize) -> Admit {
        self.window.admit(bhs, outstanding)
    }

    /// A PDU arrived: the connection is not idle, no ping is due this interval.
    #[inline]
    pub fn received(&mut self) {
        self.keepalive.received();
    }

    /// The Target Transfer Tag for a new R2T.
    #[inline]
    pub fn r2t_ttt(&mut self) -> u32 {
        let ttt = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 0;
        }
        ttt
    }

    /// A NOP-Out: the answer to our ping, a ping of the initiator's (the NOP-In to
    /// send back, to carry the NOP-Out's data), or one that wants no answer.
    /// `data_len` is the length of its data segment, which the driver sends back.
    pub fn nop_out(&mut self, bhs: &Bhs, data_len: u32, outstanding: usize) -> Option<Bhs> {
        if bhs.ttt() != RESERVED_TAG {
            self.keepalive.answered(bhs.ttt());
            return None;
        }
        if !self.admit(bhs, outstanding).accepted() || bhs.itt() == RESERVED_TAG {
            return None;
        }
        let sn = self.sn_advance(outstanding);
        Some(pdu::nop_in(
            bhs.lun(),
            bhs.itt(),
            RESERVED_TAG,
            sn,
            data_len,
        ))
    }

    /// A Logout Request: the response to send once the session is gone. Every reason
    /// closes the one connection of the session (MC/S unsupported), so the connection
    /// ends after it.
    pub fn logout(&mut self, bhs: &Bhs, outstanding: usize) -> Bhs {
        self.window.logout(bhs);
        let sn = self.sn_advance(outstanding);
        pdu::logout_response(bhs.itt(), pdu::logout_response::SUCCESS, 0, 0, sn)
    }

    /// A Text Request with its data: what it asks, if the window admits it.
    pub fn text(&mut self, bhs: &Bhs, data: &[u8], outstanding: usize) -> Option<TextRequest> {
        if !self.admit(bhs, outstanding).accepted() {
            return None;
        }
        let keys = iscsi_wire::parse_text(data).unwrap_or_default();
        let send_targets = keys
            .into_iter()
            .find(|(k, _)| k == "SendTargets")
            .map(|(_, v)| v);
        Some(TextRequest {
            itt: bhs.itt(),
            lun: bhs.lun(),
            send_targets,
        })
    }

    /// The Text Response to `req`: its header and data segment.
    pub fn answer_text(
        &mut self,
        req: &TextRequest,
        keys: &[(String, String)],
        outstanding: usize,
    ) -> (Bhs, Vec<u8>) {
        let data = iscsi_wire::encode_text(keys);
        let sn = self.sn_advance(outstanding);
        let b = pdu::text_response(
            true,
            false,
            req.lun,
            req.itt,
            RESERVED_TAG,
            sn,
            data.len() as u32,
        );
        (b, data)
    }

    /// When [`FullFeature::handle_timeout`] is to be called next, if ever.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.keepalive.poll_timeout()
    }

    /// A deadline from [`FullFeature::poll_timeout`] passed (or may have).
    pub fn handle_timeout(&mut self, now: Instant, outstanding: usize) -> Timer {
        match self.keepalive.handle_timeout(now) {
            Wake::Nothing => Timer::Idle,
            Wake::Dead => Timer::Dead,
            Wake::Ping => {
                let ttt = self.next_ttt;
                self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
                self.keepalive.pinged(ttt, now);
                Timer::Ping(pdu::nop_in(
                    [0; 8],
                    RESERVED_TAG,
                    ttt,
                    self.sn(outstanding),
                    0,
                ))
            }
        }
    }
}

/// Serial number arithmetic (RFC 1982) for 32-bit sequence numbers: `a` before `b`.
#[inline]
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

/// `a` after `b` (RFC 1982).
#[inline]
pub fn sn_gt(a: u32, b: u32) -> bool {
    sn_lt(b, a)
}

#[cfg(test)]
mod tests;
