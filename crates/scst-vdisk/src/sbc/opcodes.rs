//! The commands a vdisk LUN supports, as one table, and the MAINTENANCE IN service
//! actions that report it: REPORT SUPPORTED OPERATION CODES (SPC-4 6.35) and REPORT
//! SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 6.36) (docs/scst-reference.md 4.2).
//!
//! The table lists what the vdisk dispatch executes *and* what the core answers on the
//! device's behalf (REPORT LUNS, REQUEST SENSE, reservations), since the initiator
//! sees one logical unit. Each entry's CDB usage map has a 1 exactly where the
//! emulation evaluates the CDB bit (SPC-4 6.35.3): fields we ignore (GROUP NUMBER, the
//! CONTROL byte, obsolete bits) are 0, so the map tells an initiator what we honour.
//! A test sends every opcode to the dispatch and checks it against this table.

use super::{CmdResult, Vdisk};
use crate::backend::Backend;
use scsi_wire::cdb::{self, opcode as op};
use scsi_wire::rsoc::{
    self, decode_rsoc, decode_rstmf, service_action as mi, CommandDesc, CommandTimeouts,
    ReportingOptions, TmfSupport,
};
use scsi_wire::Sense;
use scst_core::Response;

/// Which devices offer a command (or this form of its usage map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Always,
    /// Only with `thin_provisioned` (UNMAP; WRITE SAME's UNMAP bit).
    Thin,
    /// Only without `thin_provisioned` (the WRITE SAME map without the UNMAP bit).
    NotThin,
    /// Only with a medium behind the device: fileio and blockio, not nullio (SANITIZE).
    Medium,
}

/// Who executes the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Executor {
    /// The vdisk dispatch.
    Device,
    /// The core, before the device sees it (it never reaches the dispatch).
    Core,
}

/// Recommended timeouts: ordinary commands, and those that may flush a whole write
/// cache or walk the whole medium.
const FAST: CommandTimeouts = CommandTimeouts {
    nominal_secs: 1,
    recommended_secs: 30,
};
const SLOW: CommandTimeouts = CommandTimeouts {
    nominal_secs: 10,
    recommended_secs: 120,
};

pub(crate) struct CommandInfo {
    /// For people and test failure messages.
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    pub opcode: u8,
    pub service_action: Option<u8>,
    /// CDB usage map; its length is the CDB length.
    pub usage: &'static [u8],
    pub timeouts: CommandTimeouts,
    pub gate: Gate,
    /// Documents who answers; the dispatch consistency test relies on it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub executor: Executor,
}

pub(crate) const fn cmd(name: &'static str, opcode: u8, usage: &'static [u8]) -> CommandInfo {
    CommandInfo {
        name,
        opcode,
        service_action: None,
        usage,
        timeouts: FAST,
        gate: Gate::Always,
        executor: Executor::Device,
    }
}

pub(crate) const fn sa_cmd(
    name: &'static str,
    opcode: u8,
    sa: u8,
    usage: &'static [u8],
) -> CommandInfo {
    CommandInfo {
        service_action: Some(sa),
        ..cmd(name, opcode, usage)
    }
}

impl CommandInfo {
    pub(crate) const fn slow(self) -> CommandInfo {
        CommandInfo {
            timeouts: SLOW,
            ..self
        }
    }

    const fn gated(self, gate: Gate) -> CommandInfo {
        CommandInfo { gate, ..self }
    }

    pub(crate) const fn by_core(self) -> CommandInfo {
        CommandInfo {
            executor: Executor::Core,
            ..self
        }
    }
}

/// Operation codes without a constant in scsi-wire's `opcode` list.
mod extra {
    pub const ORWRITE_16: u8 = scsi_wire::atomic::opcode::ORWRITE_16;
    pub const WRITE_ATOMIC_16: u8 = scsi_wire::atomic::opcode::WRITE_ATOMIC_16;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;
    pub const SANITIZE: u8 = crate::sanitize::SANITIZE;
}

/// FF x 4 / x 8: a 32-bit / 64-bit field that is evaluated.
const F: u8 = 0xFF;

// Byte 1 of the READ/WRITE family: RDPROTECT/WRPROTECT (checked: must be 0), DPO, FUA.
// WRITE AND VERIFY / VERIFY: the protect field, DPO and BYTCHK (no FUA there).
const RW_FLAGS: u8 = 0xF8;
const VERIFY_FLAGS: u8 = 0xF6;

/// The rows of commands that the vdisk and vcdrom tables share because the same code
/// answers them for both: the core (reservations, REPORT LUNS) or [`maintenance_in`].
pub(crate) mod rows {
    use super::{cmd, sa_cmd, CommandInfo, F};
    use scsi_wire::cdb::opcode as op;
    use scsi_wire::rsoc::service_action as mi;

    pub(crate) const RESERVE_6: CommandInfo =
        cmd("RESERVE(6)", op::RESERVE_6, &[0x16, 0, 0, 0, 0, 0]).by_core();
    pub(crate) const RELEASE_6: CommandInfo =
        cmd("RELEASE(6)", op::RELEASE_6, &[0x17, 0, 0, 0, 0, 0]).by_core();
    pub(crate) const RESERVE_10: CommandInfo = cmd(
        "RESERVE(10)",
        op::RESERVE_10,
        &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .by_core();
    pub(crate) const RELEASE_10: CommandInfo = cmd(
        "RELEASE(10)",
        op::RELEASE_10,
        &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .by_core();
    pub(crate) const REPORT_LUNS: CommandInfo = cmd(
        "REPORT LUNS",
        op::REPORT_LUNS,
        &[0xA0, 0, F, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .by_core();
    // PARAMETER DATA FORMAT, ALLOCATION LENGTH. The core answers it for every device
    // (an empty list outside ALUA device groups, as SCST does), so it is always listed.
    pub(crate) const REPORT_TARGET_PORT_GROUPS: CommandInfo = sa_cmd(
        "REPORT TARGET PORT GROUPS",
        op::MAINTENANCE_IN,
        mi::REPORT_TARGET_PORT_GROUPS,
        &[0xA3, 0xEA, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .by_core();
    pub(crate) const REPORT_SUPPORTED_OPCODES: CommandInfo = sa_cmd(
        "REPORT SUPPORTED OPERATION CODES",
        op::MAINTENANCE_IN,
        mi::REPORT_SUPPORTED_OPCODES,
        &[0xA3, 0x0C, 0x87, F, F, F, F, F, F, F, 0, 0],
    );
    pub(crate) const REPORT_SUPPORTED_TMFS: CommandInfo = sa_cmd(
        "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
        op::MAINTENANCE_IN,
        mi::REPORT_SUPPORTED_TMFS,
        &[0xA3, 0x0D, 0x80, 0, 0, 0, F, F, F, F, 0, 0],
    );
}

/// Every supported command, ordered by opcode then service action (the order REPORT
/// SUPPORTED OPERATION CODES lists them in).
pub(crate) static COMMANDS: &[CommandInfo] = &[
    cmd(
        "TEST UNIT READY",
        op::TEST_UNIT_READY,
        &[0x00, 0, 0, 0, 0, 0],
    ),
    // DESC, ALLOCATION LENGTH. The core answers it when it has sense to report.
    cmd(
        "REQUEST SENSE",
        op::REQUEST_SENSE,
        &[0x03, 0x01, 0, 0, F, 0],
    ),
    // FMTPINFO and RTO_REQ (checked: no protection information), LONGLIST, FMTDATA
    // (CMPLST and DEFECT LIST FORMAT only qualify defect lists, which are refused),
    // FFMT (checked: no fast format).
    cmd("FORMAT UNIT", op::FORMAT_UNIT, &[0x04, 0xF0, 0, 0, 0x03, 0]).slow(),
    cmd("READ(6)", op::READ_6, &[0x08, 0x1F, F, F, F, 0]),
    cmd("WRITE(6)", op::WRITE_6, &[0x0A, 0x1F, F, F, F, 0]),
    // EVPD, PAGE CODE, ALLOCATION LENGTH (CMDDT is obsolete: rejected, not honoured).
    cmd("INQUIRY", op::INQUIRY, &[0x12, 0x01, F, F, F, 0]),
    // PF (must be 1); SP is rejected (saving unsupported).
    cmd(
        "MODE SELECT(6)",
        op::MODE_SELECT_6,
        &[0x15, 0x10, 0, 0, F, 0],
    ),
    rows::RESERVE_6,
    rows::RELEASE_6,
    // DBD, PC + PAGE CODE, SUBPAGE CODE, ALLOCATION LENGTH.
    cmd("MODE SENSE(6)", op::MODE_SENSE_6, &[0x1A, 0x08, F, F, F, 0]),
    // POWER CONDITION, LOEJ, START: LOEJ loads or ejects a removable medium (else
    // invalid); otherwise the cache is flushed.
    cmd(
        "START STOP UNIT",
        op::START_STOP_UNIT,
        &[0x1B, 0, 0, 0, 0xF3, 0],
    )
    .slow(),
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
    // LOGICAL BLOCK ADDRESS (must be 0 without PMI), PMI.
    cmd(
        "READ CAPACITY(10)",
        op::READ_CAPACITY_10,
        &[0x25, 0, F, F, F, F, 0, 0, 0x01, 0],
    ),
    cmd(
        "READ(10)",
        op::READ_10,
        &[0x28, RW_FLAGS, F, F, F, F, 0, F, F, 0],
    ),
    cmd(
        "WRITE(10)",
        op::WRITE_10,
        &[0x2A, RW_FLAGS, F, F, F, F, 0, F, F, 0],
    ),
    cmd(
        "WRITE AND VERIFY(10)",
        op::WRITE_AND_VERIFY_10,
        &[0x2E, VERIFY_FLAGS, F, F, F, F, 0, F, F, 0],
    ),
    cmd(
        "VERIFY(10)",
        op::VERIFY_10,
        &[0x2F, VERIFY_FLAGS, F, F, F, F, 0, F, F, 0],
    )
    .slow(),
    // IMMED.
    cmd(
        "PRE-FETCH(10)",
        extra::PRE_FETCH_10,
        &[0x34, 0x02, F, F, F, F, 0, F, F, 0],
    ),
    // The range is checked, then the whole cache is flushed (IMMED ignored).
    cmd(
        "SYNCHRONIZE CACHE(10)",
        op::SYNCHRONIZE_CACHE_10,
        &[0x35, 0, F, F, F, F, 0, F, F, 0],
    )
    .slow(),
    // REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT, ALLOCATION LENGTH.
    cmd(
        "READ DEFECT DATA(10)",
        extra::READ_DEFECT_DATA_10,
        &[0x37, 0, 0x1F, 0, 0, 0, 0, F, F, 0],
    ),
    // WRPROTECT, UNMAP only with thin provisioning (ANCHOR is rejected, so 0).
    cmd(
        "WRITE SAME(10)",
        op::WRITE_SAME_10,
        &[0x41, 0xE8, F, F, F, F, 0, F, F, 0],
    )
    .gated(Gate::Thin)
    .slow(),
    cmd(
        "WRITE SAME(10)",
        op::WRITE_SAME_10,
        &[0x41, 0xE0, F, F, F, F, 0, F, F, 0],
    )
    .gated(Gate::NotThin)
    .slow(),
    // PARAMETER LIST LENGTH (ANCHOR is rejected).
    cmd("UNMAP", op::UNMAP, &[0x42, 0, 0, 0, 0, 0, 0, F, F, 0])
        .gated(Gate::Thin)
        .slow(),
    // IMMED, AUSE, PARAMETER LIST LENGTH (ZNR and bytes 2-6 are reserved for us).
    // BLOCK ERASE and CRYPTOGRAPHIC ERASE only where deallocated blocks read back as
    // zeros (thin provisioning); sanitize.rs says why a crypto erase deallocates.
    sa_cmd(
        "SANITIZE / OVERWRITE",
        extra::SANITIZE,
        crate::sanitize::sa::OVERWRITE,
        &[0x48, 0xA1, 0, 0, 0, 0, 0, F, F, 0],
    )
    .gated(Gate::Medium)
    .slow(),
    sa_cmd(
        "SANITIZE / BLOCK ERASE",
        extra::SANITIZE,
        crate::sanitize::sa::BLOCK_ERASE,
        &[0x48, 0xA2, 0, 0, 0, 0, 0, F, F, 0],
    )
    .gated(Gate::Thin)
    .slow(),
    sa_cmd(
        "SANITIZE / CRYPTOGRAPHIC ERASE",
        extra::SANITIZE,
        crate::sanitize::sa::CRYPTO_ERASE,
        &[0x48, 0xA3, 0, 0, 0, 0, 0, F, F, 0],
    )
    .gated(Gate::Thin)
    .slow(),
    // PARAMETER LIST LENGTH (must be 0); IMMED and AUSE have no meaning here.
    sa_cmd(
        "SANITIZE / EXIT FAILURE MODE",
        extra::SANITIZE,
        crate::sanitize::sa::EXIT_FAILURE_MODE,
        &[0x48, 0x1F, 0, 0, 0, 0, 0, F, F, 0],
    )
    .gated(Gate::Medium),
    cmd(
        "MODE SELECT(10)",
        op::MODE_SELECT_10,
        &[0x55, 0x10, 0, 0, 0, 0, 0, F, F, 0],
    ),
    rows::RESERVE_10,
    rows::RELEASE_10,
    // LLBAA, DBD, PC + PAGE CODE, SUBPAGE CODE, ALLOCATION LENGTH.
    cmd(
        "MODE SENSE(10)",
        op::MODE_SENSE_10,
        &[0x5A, 0x18, F, F, 0, 0, 0, F, F, 0],
    ),
    // SERVICE ACTION, ALLOCATION LENGTH.
    sa_cmd(
        "PERSISTENT RESERVE IN / READ KEYS",
        op::PERSISTENT_RESERVE_IN,
        0x00,
        &[0x5E, 0x00, 0, 0, 0, 0, 0, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE IN / READ RESERVATION",
        op::PERSISTENT_RESERVE_IN,
        0x01,
        &[0x5E, 0x01, 0, 0, 0, 0, 0, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE IN / REPORT CAPABILITIES",
        op::PERSISTENT_RESERVE_IN,
        0x02,
        &[0x5E, 0x02, 0, 0, 0, 0, 0, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE IN / READ FULL STATUS",
        op::PERSISTENT_RESERVE_IN,
        0x03,
        &[0x5E, 0x03, 0, 0, 0, 0, 0, F, F, 0],
    )
    .by_core(),
    // SERVICE ACTION, SCOPE + TYPE, PARAMETER LIST LENGTH.
    sa_cmd(
        "PERSISTENT RESERVE OUT / REGISTER",
        op::PERSISTENT_RESERVE_OUT,
        0x00,
        &[0x5F, 0x00, F, 0, 0, F, F, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE OUT / RESERVE",
        op::PERSISTENT_RESERVE_OUT,
        0x01,
        &[0x5F, 0x01, F, 0, 0, F, F, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE OUT / RELEASE",
        op::PERSISTENT_RESERVE_OUT,
        0x02,
        &[0x5F, 0x02, F, 0, 0, F, F, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE OUT / CLEAR",
        op::PERSISTENT_RESERVE_OUT,
        0x03,
        &[0x5F, 0x03, F, 0, 0, F, F, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE OUT / PREEMPT",
        op::PERSISTENT_RESERVE_OUT,
        0x04,
        &[0x5F, 0x04, F, 0, 0, F, F, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE OUT / PREEMPT AND ABORT",
        op::PERSISTENT_RESERVE_OUT,
        0x05,
        &[0x5F, 0x05, F, 0, 0, F, F, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE OUT / REGISTER AND IGNORE EXISTING KEY",
        op::PERSISTENT_RESERVE_OUT,
        0x06,
        &[0x5F, 0x06, F, 0, 0, F, F, F, F, 0],
    )
    .by_core(),
    sa_cmd(
        "PERSISTENT RESERVE OUT / REGISTER AND MOVE",
        op::PERSISTENT_RESERVE_OUT,
        0x07,
        &[0x5F, 0x07, F, 0, 0, F, F, F, F, 0],
    )
    .by_core(),
    // The copy manager (scst-reference 4.2). EXTENDED COPY(LID1): PARAMETER LIST LENGTH.
    sa_cmd(
        "EXTENDED COPY(LID1)",
        op::EXTENDED_COPY,
        0x00,
        &[0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .by_core()
    .slow(),
    // RECEIVE COPY RESULTS: LIST IDENTIFIER (except for OPERATING PARAMETERS),
    // ALLOCATION LENGTH.
    sa_cmd(
        "RECEIVE COPY RESULTS / COPY STATUS",
        op::RECEIVE_COPY_RESULTS,
        0x00,
        &[0x84, 0x00, F, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .by_core(),
    sa_cmd(
        "RECEIVE COPY RESULTS / OPERATING PARAMETERS",
        op::RECEIVE_COPY_RESULTS,
        0x03,
        &[0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .by_core(),
    sa_cmd(
        "RECEIVE COPY RESULTS / FAILED SEGMENT DETAILS",
        op::RECEIVE_COPY_RESULTS,
        0x04,
        &[0x84, 0x04, F, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .by_core(),
    cmd(
        "READ(16)",
        op::READ_16,
        &[0x88, RW_FLAGS, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    // WRPROTECT, DPO, FUA, LBA, NUMBER OF LOGICAL BLOCKS.
    cmd(
        "COMPARE AND WRITE",
        op::COMPARE_AND_WRITE,
        &[0x89, RW_FLAGS, F, F, F, F, F, F, F, F, 0, 0, 0, F, 0, 0],
    ),
    cmd(
        "WRITE(16)",
        op::WRITE_16,
        &[0x8A, RW_FLAGS, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    // ORPROTECT, DPO, FUA, LBA, TRANSFER LENGTH.
    cmd(
        "ORWRITE(16)",
        extra::ORWRITE_16,
        &[0x8B, RW_FLAGS, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        "WRITE AND VERIFY(16)",
        op::WRITE_AND_VERIFY_16,
        &[0x8E, VERIFY_FLAGS, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        "VERIFY(16)",
        op::VERIFY_16,
        &[0x8F, VERIFY_FLAGS, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    )
    .slow(),
    cmd(
        "PRE-FETCH(16)",
        extra::PRE_FETCH_16,
        &[0x90, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        "SYNCHRONIZE CACHE(16)",
        op::SYNCHRONIZE_CACHE_16,
        &[0x91, 0, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    )
    .slow(),
    cmd(
        "WRITE SAME(16)",
        op::WRITE_SAME_16,
        &[0x93, 0xE9, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    )
    .gated(Gate::Thin)
    .slow(),
    // WRPROTECT, NDOB (ANCHOR is rejected).
    cmd(
        "WRITE SAME(16)",
        op::WRITE_SAME_16,
        &[0x93, 0xE1, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    )
    .gated(Gate::NotThin)
    .slow(),
    // WRPROTECT, DPO, FUA, LBA, ATOMIC BOUNDARY, TRANSFER LENGTH.
    cmd(
        "WRITE ATOMIC(16)",
        extra::WRITE_ATOMIC_16,
        &[0x9C, RW_FLAGS, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    // LBA (must be 0 without PMI), ALLOCATION LENGTH, PMI.
    sa_cmd(
        "READ CAPACITY(16)",
        op::SERVICE_ACTION_IN_16,
        0x10,
        &[0x9E, 0x10, F, F, F, F, F, F, F, F, F, F, F, F, 0x01, 0],
    ),
    // STARTING LBA, ALLOCATION LENGTH.
    sa_cmd(
        "GET LBA STATUS",
        op::SERVICE_ACTION_IN_16,
        0x12,
        &[0x9E, 0x12, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    // SELECT REPORT, ALLOCATION LENGTH.
    rows::REPORT_LUNS,
    rows::REPORT_TARGET_PORT_GROUPS,
    // RCTD, REPORTING OPTIONS, REQUESTED OPERATION CODE / SERVICE ACTION, ALLOCATION
    // LENGTH.
    rows::REPORT_SUPPORTED_OPCODES,
    // REPD, ALLOCATION LENGTH.
    rows::REPORT_SUPPORTED_TMFS,
    cmd(
        "READ(12)",
        op::READ_12,
        &[0xA8, RW_FLAGS, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        "WRITE(12)",
        op::WRITE_12,
        &[0xAA, RW_FLAGS, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        "WRITE AND VERIFY(12)",
        op::WRITE_AND_VERIFY_12,
        &[0xAE, VERIFY_FLAGS, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        "VERIFY(12)",
        op::VERIFY_12,
        &[0xAF, VERIFY_FLAGS, F, F, F, F, F, F, F, F, 0, 0],
    )
    .slow(),
    cmd(
        "READ DEFECT DATA(12)",
        extra::READ_DEFECT_DATA_12,
        &[0xB7, 0x1F, 0, 0, 0, 0, F, F, F, F, 0, 0],
    ),
];

/// The task management functions the iSCSI target and the core implement (scst-reference 4.2):
/// ABORT TASK, ABORT TASK SET, CLEAR ACA, CLEAR TASK SET, LOGICAL UNIT RESET. QUERY
/// TASK / QUERY TASK SET / I_T NEXUS RESET / QUERY ASYNC EVENT are answered "not
/// supported" by the target, so they are not reported.
const TMFS: TmfSupport = TmfSupport {
    abort_task: true,
    abort_task_set: true,
    clear_aca: true,
    clear_task_set: true,
    lu_reset: true,
    query_task: false,
    target_reset: false,
    query_async_event: false,
    query_task_set: false,
    i_t_nexus_reset: false,
    // 30 s and 15 s, in units of 100 ms; ABORT TASK and CLEAR ACA are quick.
    long_timeout: 300,
    short_timeout: 150,
    abort_task_short: true,
    clear_aca_short: true,
};

fn desc(c: &CommandInfo) -> CommandDesc<'static> {
    CommandDesc {
        opcode: c.opcode,
        service_action: c.service_action.map(u16::from),
        usage: c.usage,
        timeouts: c.timeouts,
    }
}

impl<B: Backend> Vdisk<B> {
    /// The table entries that apply to this device.
    pub(crate) fn supported_commands(&self) -> impl Iterator<Item = &'static CommandInfo> {
        let thin = self.cfg.thin_provisioned;
        let medium = self.has_medium();
        COMMANDS.iter().filter(move |c| match c.gate {
            Gate::Always => true,
            Gate::Thin => thin,
            Gate::NotThin => !thin,
            Gate::Medium => medium,
        })
    }

    /// MAINTENANCE IN (0xA3): the service actions a vdisk answers itself.
    pub(super) fn maintenance_in(&self, cdb: &[u8]) -> CmdResult {
        let commands: Vec<&'static CommandInfo> = self.supported_commands().collect();
        maintenance_in(cdb, &commands)
    }
}

/// MAINTENANCE IN (0xA3) of a device whose supported commands are `commands` (in
/// table order): REPORT SUPPORTED OPERATION CODES and TASK MANAGEMENT FUNCTIONS.
pub(crate) fn maintenance_in(cdb: &[u8], commands: &[&'static CommandInfo]) -> CmdResult {
    match cdb::u8_at(cdb, 1)? & 0x1F {
        mi::REPORT_SUPPORTED_OPCODES => report_supported_opcodes(cdb, commands),
        mi::REPORT_SUPPORTED_TMFS => report_supported_tmfs(cdb),
        _ => Err(Sense::invalid_field_in_cdb(1, Some(4))),
    }
}

fn report_supported_opcodes(cdb: &[u8], commands: &[&'static CommandInfo]) -> CmdResult {
    let c = decode_rsoc(cdb)?;
    let (byte, bit) = rsoc::REPORTING_OPTIONS_FIELD;
    let inconsistent = Sense::invalid_field_in_cdb(byte, Some(bit));
    let entries = || commands.iter().copied().filter(|e| e.opcode == c.opcode);
    // Whether the requested opcode has service actions; None: not supported at
    // all, which the one_command format reports as SUPPORT 001b, not an error.
    let has_sa = entries().next().map(|e| e.service_action.is_some());
    let found = match (c.options, has_sa) {
        (ReportingOptions::All, _) => {
            let all: Vec<CommandDesc<'_>> = commands.iter().copied().map(desc).collect();
            return alloc(rsoc::all_commands(&all, c.rctd), c.alloc_len);
        }
        (_, None) => None,
        // SPC-4: 001b for an opcode with service actions, or 010b for one without,
        // is an invalid field.
        (ReportingOptions::Opcode, Some(true))
        | (ReportingOptions::OpcodeServiceAction, Some(false)) => return Err(inconsistent),
        (ReportingOptions::Opcode, Some(false))
        | (ReportingOptions::OpcodeMaybeServiceAction, Some(false)) => {
            // 011b on an opcode without service actions: only service action 0
            // names it.
            let sa_ok = c.options == ReportingOptions::Opcode || c.service_action == 0;
            entries().next().filter(|_| sa_ok)
        }
        (_, Some(true)) => {
            entries().find(|e| e.service_action.map(u16::from) == Some(c.service_action))
        }
    };
    let d = found.map(desc);
    alloc(rsoc::one_command(d.as_ref(), c.rctd), c.alloc_len)
}

fn alloc(mut data: Vec<u8>, alloc_len: u32) -> CmdResult {
    data.truncate(usize::try_from(alloc_len).unwrap_or(usize::MAX));
    Ok(Some(Response::data(data)))
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS. SPC-4 requires an allocation length of
/// at least 4 (the basic parameter data).
fn report_supported_tmfs(cdb: &[u8]) -> CmdResult {
    let c = decode_rstmf(cdb)?;
    if c.alloc_len < 4 {
        return Err(Sense::invalid_field_in_cdb(6, None));
    }
    alloc(rsoc::supported_tmfs(&TMFS, c.repd), c.alloc_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_consistent() {
        for w in COMMANDS.windows(2) {
            let key = |c: &CommandInfo| (c.opcode, c.service_action);
            assert!(
                key(&w[0]) <= key(&w[1]),
                "{} before {}",
                w[0].name,
                w[1].name
            );
        }
        for c in COMMANDS {
            assert_eq!(c.usage[0], c.opcode, "{}", c.name);
            if let Some(sa) = c.service_action {
                assert_eq!(c.usage[1] & 0x1F, sa, "{}", c.name);
            }
            // The CDB length follows the group code where it tells one.
            let by_group = cdb::cdb_len(c.opcode);
            assert!(by_group == 0 || by_group == c.usage.len(), "{}", c.name);
        }
        // An opcode either always or never has service actions.
        for c in COMMANDS {
            assert!(COMMANDS
                .iter()
                .filter(|o| o.opcode == c.opcode)
                .all(|o| o.service_action.is_some() == c.service_action.is_some()));
        }
    }
}
