//! The hand-off between the engine's full-feature connection and the core: commands
//! whose data is in go to the [`Nexus`](scst_core::Nexus), task management functions
//! run against its task sets, and what the nexus has for the connection (responses,
//! commands that ended silently, TMF results) goes back into the engine.

use bytes::Bytes;
use iscsi_engine::full_feature::{
    Command, Event as EngineEvent, Failure, Task, TaskAttribute, TaskManagement, TmfOutcome,
};
use scsi_wire::Sense;
use scst_core::{Cdb, Cmd, Event, Response, TaskAttr, Tmf, TmfStatus};

use super::Conn;

impl Conn {
    /// Act on everything the engine has for the driver, in order.
    #[inline]
    pub(super) fn drain_engine(&mut self) {
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                EngineEvent::Command(cmd) => self.submit(cmd),
                EngineEvent::Failed { task, why } => {
                    let resp = match why {
                        Failure::InvalidFieldInCdb => {
                            Response::check(Sense::invalid_field_in_cdb(0, None))
                        }
                        Failure::DataPhase => Response::check(Sense::DATA_PHASE_ERROR),
                        Failure::Crc => Response::check(Sense::CRC_ERROR),
                        Failure::Busy => Response::status(scsi_wire::status::BUSY),
                        Failure::TaskSetFull => Response::status(scsi_wire::status::TASK_SET_FULL),
                    };
                    self.respond(task, resp);
                }
                EngineEvent::TaskManagement { tag, function } => {
                    self.task_management(tag, function)
                }
                EngineEvent::SendTargets(req) => {
                    // Full-feature sessions may ask SendTargets too; answer with what
                    // discovery would show this initiator.
                    let what = req.send_targets.as_deref().unwrap_or_default();
                    let keys = crate::discovery::send_targets(
                        &self.p.driver,
                        what,
                        &self.session.initiator_name,
                        self.p.local_addr,
                    );
                    self.engine.answer_text(&req, &keys);
                }
                EngineEvent::LoggedOut => {
                    // The nexus ends before the initiator hears so: one that logs
                    // straight back in must not meet this session's reservation or
                    // medium-removal prevention.
                    self.session.unregister();
                }
            }
        }
    }

    #[inline]
    pub(super) fn submit(&mut self, c: Command) {
        // The engine bounds the CDB to what the core takes, so this never fails.
        let (buffer, len) = c.cdb_buffer();
        let Some(cdb) = Cdb::from_buffer(buffer, len) else {
            let sense = Sense::invalid_field_in_cdb(0, None);
            return self.respond(c.task, Response::check(sense));
        };
        let attr = match c.attr {
            TaskAttribute::Simple => TaskAttr::Simple,
            TaskAttribute::Ordered => TaskAttr::Ordered,
            TaskAttribute::HeadOfQueue => TaskAttr::HeadOfQueue,
            TaskAttribute::Aca => TaskAttr::Aca,
        };
        let tag = c.task.itt() as u64;
        let cmd = Cmd {
            cdb,
            lun: c.lun,
            tag,
            attr,
            data_out: c.data_out,
            expected_in: c.expected_in,
        };
        self.nexus.submit(tag, cmd, c.task);
        self.drain_nexus();
    }

    fn task_management(&mut self, tag: u32, function: TaskManagement) {
        let tmf = match function {
            TaskManagement::AbortTask { lun, itt } => Tmf::AbortTask {
                lun,
                tag: itt as u64,
            },
            TaskManagement::AbortTaskSet { lun } => Tmf::AbortTaskSet { lun },
            TaskManagement::ClearTaskSet { lun } => Tmf::ClearTaskSet { lun },
            TaskManagement::LunReset { lun } => Tmf::LunReset { lun },
            TaskManagement::ClearAca { lun } => Tmf::ClearAca { lun },
            TaskManagement::TargetReset { .. } => Tmf::TargetReset,
        };
        // Task management is rare and worth a line: named by the LUN it acts on.
        let lun = match tmf {
            Tmf::AbortTask { lun, .. }
            | Tmf::AbortTaskSet { lun }
            | Tmf::ClearTaskSet { lun }
            | Tmf::LunReset { lun }
            | Tmf::ClearAca { lun } => Some(lun),
            Tmf::TargetReset
            | Tmf::ItNexusReset
            | Tmf::QueryTask { .. }
            | Tmf::QueryTaskSet { .. } => None,
        };
        let _lun = lun.map(|lun| tracing::error_span!("lun", lun).entered());
        let status = self.nexus.tmf(tag as u64, tmf);
        match status {
            Some(s) => log::info!("{function:?}: {s:?}"),
            None => log::info!("{function:?}: waiting for running commands"),
        }
        // Aborted commands end silently, and responses of commands that finished
        // before go out ahead of the TMF's; it answers now or when the last command
        // it waits for has finished (`Event::TmfDone`).
        self.drain_nexus();
        self.engine.tmf_acted(tag, status.map(outcome));
    }

    /// Act on what the core has for the connection: responses to send, commands that
    /// ended silently, task management results.
    pub(super) fn drain_nexus(&mut self) {
        while let Some(ev) = self.nexus.poll_event() {
            match ev {
                Event::Respond { ctx, resp, .. } => self.respond(ctx, resp),
                Event::Aborted { ctx, .. } => self.engine.release(ctx),
                Event::TmfDone { tag, status } => self.engine.tmf_done(tag as u32, outcome(status)),
            }
        }
    }

    /// Send a command's response, its data-in by reference (each Data-In takes a slice
    /// of the response's buffer into the vectored write), and forget the command.
    #[inline]
    fn respond(&mut self, task: Task, resp: Response) {
        let Response {
            status,
            sense,
            data,
            static_data,
            descriptor_sense,
            data_out_len,
            ..
        } = resp;
        let data = match static_data {
            Some(b) => Bytes::from_static(b),
            // A write's response carries no data: no buffer to convert.
            None if data.is_empty() => Bytes::new(),
            None => Bytes::from(data),
        };
        if status == scsi_wire::status::CHECK_CONDITION && log::log_enabled!(log::Level::Debug) {
            log_check_condition(&task, sense.as_ref());
        }
        let sense = sense.map(|s| s.encode(descriptor_sense));
        self.engine
            .respond(task, status, data, sense.as_deref(), data_out_len);
    }
}

/// A command that ended in CHECK CONDITION (a bad CDB, a missing LUN, a unit
/// attention), at debug: off the data path unless asked for, with its LUN.
#[cold]
fn log_check_condition(task: &Task, sense: Option<&Sense>) {
    let lun = scsi_wire::lun::decode_lun(task.lun_raw());
    let _lun = tracing::error_span!("lun", lun).entered();
    match sense {
        Some(s) => log::debug!(
            "ITT {:#x}: CHECK CONDITION, sense key {:#x} ASC/ASCQ {:#04x}/{:#04x}",
            task.itt(),
            s.key,
            s.asc,
            s.ascq
        ),
        None => log::debug!("ITT {:#x}: CHECK CONDITION", task.itt()),
    }
}

fn outcome(status: TmfStatus) -> TmfOutcome {
    match status {
        // iSCSI has no query functions, the only ones that succeed.
        TmfStatus::Complete | TmfStatus::Succeeded => TmfOutcome::Complete,
        TmfStatus::TaskNotExist => TmfOutcome::TaskNotExist,
        TmfStatus::LunNotExist => TmfOutcome::LunNotExist,
        TmfStatus::NotSupported => TmfOutcome::NotSupported,
        TmfStatus::Rejected => TmfOutcome::Rejected,
    }
}
