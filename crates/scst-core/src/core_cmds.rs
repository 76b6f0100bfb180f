//! Which commands the core answers itself, and which go to the dev handler: one table,
//! consulted when a task is enabled (`Session::route`) and when it executes
//! (`Session::execute`), so that the two can never disagree.

use scsi_wire::opcode as op;

use crate::cmd::Cdb;

/// Who executes a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The dev handler.
    Device,
    /// REPORT LUNS: from the session's LUN table, for a LUN it has or not.
    ReportLuns,
    /// REQUEST SENSE: a pending UA, else the device's pending sense, else NO SENSE.
    RequestSense,
    /// RESERVE, RELEASE, PERSISTENT RESERVE IN/OUT: the reservation gate; a PR OUT
    /// whose state must reach the APTPL file runs blocking, at execution.
    Reservation,
    /// MAINTENANCE IN / REPORT TARGET PORT GROUPS: from the ALUA groups.
    ReportTargetPortGroups,
    /// RECEIVE COPY RESULTS: the copy manager's records, never blocking.
    ReceiveCopyResults,
    /// EXTENDED COPY: the copy manager, on an I/O thread (it blocks on the copy
    /// targets).
    ExtendedCopy,
}

/// What the core knows of an opcode before any device sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CoreCmd {
    pub owner: Owner,
    /// A pending unit attention is reported instead of running the command (SPC-4
    /// 5.14: all but INQUIRY, REPORT LUNS and REQUEST SENSE).
    pub reports_ua: bool,
}

const DEVICE: CoreCmd = CoreCmd {
    owner: Owner::Device,
    reports_ua: true,
};

const fn core(owner: Owner, reports_ua: bool) -> CoreCmd {
    CoreCmd { owner, reports_ua }
}

/// The table, by opcode. MAINTENANCE IN is the core's only for one service action,
/// which [`lookup`] checks.
static TABLE: [CoreCmd; 256] = {
    let mut t = [DEVICE; 256];
    t[op::INQUIRY as usize] = core(Owner::Device, false);
    t[op::REPORT_LUNS as usize] = core(Owner::ReportLuns, false);
    t[op::REQUEST_SENSE as usize] = core(Owner::RequestSense, false);
    t[op::RESERVE_6 as usize] = core(Owner::Reservation, true);
    t[op::RESERVE_10 as usize] = core(Owner::Reservation, true);
    t[op::RELEASE_6 as usize] = core(Owner::Reservation, true);
    t[op::RELEASE_10 as usize] = core(Owner::Reservation, true);
    t[op::PERSISTENT_RESERVE_IN as usize] = core(Owner::Reservation, true);
    t[op::PERSISTENT_RESERVE_OUT as usize] = core(Owner::Reservation, true);
    t[op::MAINTENANCE_IN as usize] = core(Owner::ReportTargetPortGroups, true);
    t[op::RECEIVE_COPY_RESULTS as usize] = core(Owner::ReceiveCopyResults, true);
    t[op::EXTENDED_COPY as usize] = core(Owner::ExtendedCopy, true);
    t
};

/// Who executes `cdb`, and whether a pending UA stops it.
pub(crate) fn lookup(cdb: &Cdb) -> CoreCmd {
    let c = TABLE[cdb.opcode() as usize];
    if c.owner == Owner::ReportTargetPortGroups
        && cdb.get(1).map(|b| b & 0x1F) != Some(crate::alua::SA_REPORT_TARGET_PORT_GROUPS)
    {
        // Other MAINTENANCE IN service actions are the device's.
        return DEVICE;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(bytes: &[u8]) -> CoreCmd {
        lookup(&Cdb::new(bytes).unwrap())
    }

    #[test]
    fn the_table_names_the_core_commands_and_nothing_else() {
        assert_eq!(of(&[op::READ_10; 10]).owner, Owner::Device);
        assert!(of(&[op::READ_10; 10]).reports_ua);
        assert_eq!(
            of(&[op::INQUIRY, 0, 0, 0, 36, 0]),
            core(Owner::Device, false)
        );
        assert_eq!(of(&[op::REPORT_LUNS; 12]).owner, Owner::ReportLuns);
        assert!(!of(&[op::REQUEST_SENSE; 6]).reports_ua);
        assert_eq!(
            of(&[op::PERSISTENT_RESERVE_OUT; 10]).owner,
            Owner::Reservation
        );
        assert_eq!(of(&[op::EXTENDED_COPY; 16]).owner, Owner::ExtendedCopy);
        let mut rtpg = [0u8; 12];
        rtpg[0] = op::MAINTENANCE_IN;
        rtpg[1] = crate::alua::SA_REPORT_TARGET_PORT_GROUPS;
        assert_eq!(of(&rtpg).owner, Owner::ReportTargetPortGroups);
        rtpg[1] = 0x0C; // REPORT SUPPORTED OPERATION CODES
        assert_eq!(of(&rtpg), DEVICE);
        assert_eq!(of(&[op::MAINTENANCE_IN]), DEVICE);
        let core_ops = TABLE.iter().filter(|c| c.owner != Owner::Device).count();
        assert_eq!(core_ops, 11);
    }
}
