//! The CmdSN window (RFC 7143 4.2.2.1): which requests are taken in order, and the
//! StatSN/ExpCmdSN/MaxCmdSN every PDU to the initiator carries.

use iscsi_wire::pdu::TargetSn;
use iscsi_wire::Bhs;

use super::sn_gt;

/// What the window makes of a request's CmdSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// An immediate request: taken now, CmdSN unchanged.
    Immediate,
    /// The CmdSN the window expected: taken, the window moves on.
    InOrder,
    /// Not the CmdSN expected (a duplicate, or ahead of one not yet received; ERL 0
    /// keeps no reordering queue): ignored.
    OutOfOrder { cmd_sn: u32, expected: u32 },
    /// Beyond MaxCmdSN: ignored.
    BeyondMax { cmd_sn: u32, max: u32 },
}

impl Admit {
    /// The request is to be acted on.
    #[inline]
    pub fn accepted(self) -> bool {
        matches!(self, Admit::Immediate | Admit::InOrder)
    }
}

/// The target's sequence numbers for one connection.
#[derive(Debug, Clone)]
pub struct CmdWindow {
    stat_sn: u32,
    exp_cmd_sn: u32,
    queued_commands: u32,
}

impl CmdWindow {
    pub fn new(stat_sn: u32, exp_cmd_sn: u32, queued_commands: u32) -> CmdWindow {
        CmdWindow {
            stat_sn,
            exp_cmd_sn,
            queued_commands,
        }
    }

    pub fn exp_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
    }

    pub fn stat_sn(&self) -> u32 {
        self.stat_sn
    }

    /// The window's depth (QueuedCommands).
    pub fn depth(&self) -> u32 {
        self.queued_commands
    }

    /// Sequence numbers with `outstanding` commands held. The window shrinks by the
    /// commands held so that a fast initiator cannot make the target queue without
    /// bound.
    #[inline]
    pub fn sn(&self, outstanding: usize) -> TargetSn {
        let free = self.queued_commands.saturating_sub(outstanding as u32);
        TargetSn {
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.exp_cmd_sn.wrapping_add(free).wrapping_sub(1),
        }
    }

    /// Sequence numbers for a PDU that carries status: StatSN advances.
    #[inline]
    pub fn sn_advance(&mut self, outstanding: usize) -> TargetSn {
        let sn = self.sn(outstanding);
        self.stat_sn = self.stat_sn.wrapping_add(1);
        sn
    }

    /// A request's CmdSN against the window.
    #[inline]
    pub fn admit(&mut self, bhs: &Bhs, outstanding: usize) -> Admit {
        if bhs.immediate() {
            return Admit::Immediate;
        }
        let cmd_sn = bhs.cmd_sn();
        if cmd_sn != self.exp_cmd_sn {
            return Admit::OutOfOrder {
                cmd_sn,
                expected: self.exp_cmd_sn,
            };
        }
        let max = self.sn(outstanding).max_cmd_sn;
        if sn_gt(cmd_sn, max) {
            return Admit::BeyondMax { cmd_sn, max };
        }
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        Admit::InOrder
    }

    /// Only immediate commands get past a full window; beyond twice its depth they are
    /// refused too, so that one initiator cannot queue without bound.
    #[inline]
    pub fn overfull(&self, outstanding: usize) -> bool {
        outstanding as u32 >= self.queued_commands.saturating_mul(2)
    }

    /// A Logout Request takes its CmdSN whatever the window (it ends the connection).
    pub fn logout(&mut self, bhs: &Bhs) {
        if !bhs.immediate() && bhs.cmd_sn() == self.exp_cmd_sn {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        }
    }
}
