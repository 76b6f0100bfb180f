//! The commands a vcdrom supports, for REPORT SUPPORTED OPERATION CODES: the same
//! table shape as the vdisk one (sbc/opcodes.rs), with the CDB usage maps of what the
//! vcdrom dispatch evaluates. A test sends every opcode to the dispatch and checks it
//! against this table.

use crate::mmc::opcode as mmc;
use crate::sbc::opcodes::{cmd, maintenance_in as report, rows, CommandInfo};
use crate::sbc::CmdResult;
use scsi_wire::cdb::opcode as op;

const F: u8 = 0xFF;
/// READ(10/12/16) byte 1: the (SBC RDPROTECT) bits checked to be 0; DPO and FUA are
/// accepted but mean nothing on read-only media.
const READ_FLAGS: u8 = 0xE0;

/// Ordered by opcode then service action.
pub(crate) static COMMANDS: &[CommandInfo] = &[
    cmd(
        "TEST UNIT READY",
        op::TEST_UNIT_READY,
        &[0x00, 0, 0, 0, 0, 0],
    ),
    cmd(
        "REQUEST SENSE",
        op::REQUEST_SENSE,
        &[0x03, 0x01, 0, 0, F, 0],
    )
    .by_core(),
    cmd("INQUIRY", op::INQUIRY, &[0x12, 0x01, F, F, F, 0]),
    cmd(
        "MODE SELECT(6)",
        op::MODE_SELECT_6,
        &[0x15, 0x10, 0, 0, F, 0],
    ),
    rows::RESERVE_6,
    rows::RELEASE_6,
    cmd("MODE SENSE(6)", op::MODE_SENSE_6, &[0x1A, 0x08, F, F, F, 0]),
    // POWER CONDITION, LOEJ, START.
    cmd(
        "START STOP UNIT",
        op::START_STOP_UNIT,
        &[0x1B, 0, 0, 0, 0xF3, 0],
    ),
    cmd(
        "SEND DIAGNOSTIC",
        op::SEND_DIAGNOSTIC,
        &[0x1D, 0, 0, 0, 0, 0],
    ),
    cmd(
        "PREVENT ALLOW MEDIUM REMOVAL",
        op::PREVENT_ALLOW_MEDIUM_REMOVAL,
        &[0x1E, 0, 0, 0, 0x03, 0],
    ),
    cmd(
        "READ CAPACITY(10)",
        op::READ_CAPACITY_10,
        &[0x25, 0, F, F, F, F, 0, 0, 0x01, 0],
    ),
    cmd(
        "READ(10)",
        op::READ_10,
        &[0x28, READ_FLAGS, F, F, F, F, 0, F, F, 0],
    ),
    cmd(
        "SYNCHRONIZE CACHE(10)",
        op::SYNCHRONIZE_CACHE_10,
        &[0x35, 0, F, F, F, F, 0, F, F, 0],
    ),
    // MSF, FORMAT, TRACK/SESSION NUMBER, ALLOCATION LENGTH, SFF-8020 format bits.
    cmd(
        "READ TOC/PMA/ATIP",
        op::READ_TOC,
        &[0x43, 0x02, 0x0F, 0, 0, 0, F, F, F, 0xC0],
    ),
    // RT, STARTING FEATURE NUMBER, ALLOCATION LENGTH.
    cmd(
        "GET CONFIGURATION",
        mmc::GET_CONFIGURATION,
        &[0x46, 0x03, F, F, 0, 0, 0, F, F, 0],
    ),
    // POLLED, NOTIFICATION CLASS REQUEST, ALLOCATION LENGTH.
    cmd(
        "GET EVENT STATUS NOTIFICATION",
        mmc::GET_EVENT_STATUS_NOTIFICATION,
        &[0x4A, 0x01, 0, 0, F, 0, 0, F, F, 0],
    ),
    // DATA TYPE, ALLOCATION LENGTH.
    cmd(
        "READ DISC INFORMATION",
        mmc::READ_DISC_INFORMATION,
        &[0x51, 0x07, 0, 0, 0, 0, 0, F, F, 0],
    ),
    cmd(
        "MODE SELECT(10)",
        op::MODE_SELECT_10,
        &[0x55, 0x10, 0, 0, 0, 0, 0, F, F, 0],
    ),
    rows::RESERVE_10,
    rows::RELEASE_10,
    cmd(
        "MODE SENSE(10)",
        op::MODE_SENSE_10,
        &[0x5A, 0x18, F, F, 0, 0, 0, F, F, 0],
    ),
    cmd(
        "READ(16)",
        op::READ_16,
        &[0x88, READ_FLAGS, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    rows::REPORT_LUNS,
    rows::REPORT_TARGET_PORT_GROUPS,
    rows::REPORT_SUPPORTED_OPCODES,
    rows::REPORT_SUPPORTED_TMFS,
    cmd(
        "READ(12)",
        op::READ_12,
        &[0xA8, READ_FLAGS, F, F, F, F, F, F, F, F, 0, 0],
    ),
    // ALLOCATION LENGTH.
    cmd(
        "MECHANISM STATUS",
        mmc::MECHANISM_STATUS,
        &[0xBD, 0, 0, 0, 0, 0, 0, 0, F, F, 0, 0],
    ),
];

/// The vcdrom supports `opcode` (with some service action).
pub(crate) fn supported(opcode: u8) -> bool {
    COMMANDS.iter().any(|c| c.opcode == opcode)
}

/// MAINTENANCE IN (0xA3) on a vcdrom.
pub(crate) fn maintenance_in(cdb: &[u8]) -> CmdResult {
    let all: Vec<&'static CommandInfo> = COMMANDS.iter().collect();
    report(cdb, &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_consistent() {
        for w in COMMANDS.windows(2) {
            let key = |c: &CommandInfo| (c.opcode, c.service_action);
            assert!(
                key(&w[0]) < key(&w[1]),
                "{} before {}",
                w[0].name,
                w[1].name
            );
        }
        for c in COMMANDS {
            assert_eq!(c.usage[0], c.opcode, "{}", c.name);
            let by_group = scsi_wire::cdb::cdb_len(c.opcode);
            assert!(by_group == 0 || by_group == c.usage.len(), "{}", c.name);
        }
    }
}
