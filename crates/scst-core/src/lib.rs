//! The SCST target core (docs/scst-reference.md sections 4.1, 5.1, 5.2): devices, targets, LUN
//! tables and security groups, sessions and their tgt_devs, unit attentions, task sets
//! and task management. It never sees a PDU, a socket or a login key.
//!
//! A target driver opens a [`Session`] for each I_T nexus (`Scst::register_session`)
//! and drives its commands through a [`lifecycle::Nexus`]: it submits commands and
//! TMFs and polls for responses, and the core runs LUN lookup, task sets, the checks
//! at enable, execution and completion the same way for every transport.

// The PR code answers with a `Response` as its error (a CHECK CONDITION or
// RESERVATION CONFLICT is an answer, not a failure), and a `Response` is 128 bytes,
// at clippy's bound: moving one costs a few stores, cheaper than a boxed one's
// allocation.
#![allow(clippy::result_large_err)]
#![forbid(unsafe_code)]

pub mod alua;
#[cfg(test)]
mod alua_tests;
pub mod cmd;
pub mod cmd_mem;
mod copy;
mod copy_mgr;
#[cfg(test)]
mod copy_tests;
mod core_cmds;
pub mod device;
#[cfg(test)]
mod device_tests;
pub mod driver;
pub mod error;
pub mod iopool;
pub mod latency;
pub mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
pub mod pattern;
pub mod pr;
pub mod pr_persist;
#[cfg(test)]
mod pr_persist_tests;
pub mod pr_scst_import;
pub mod reconfig;
#[cfg(test)]
mod reconfig_tests;
pub mod registry;
pub mod reservation;
#[cfg(test)]
mod reservation_tests;
pub mod session;
pub mod stats;
pub mod target;
pub mod taskset;
pub mod transport_id;

pub use alua::{AluaState, DeviceGroupInfo, PortView, TargetGroupInfo};
pub use cmd::{Cdb, Cmd, ExecMode, Response, Resume, TaskAttr};
pub use cmd_mem::CmdMem;
pub use copy_mgr::{CopyManager, COPY_MANAGER, COPY_MANAGER_TGT};
pub use device::{AttrEffect, AttrError, CmdCtx, Device, DeviceEvents};
pub use driver::{AttrFile, DevHandler, TargetDriver};
pub use error::{IoError, IoErrorKind, IoOp, MgmtError};
pub use lifecycle::{CompletionQueue, Event, IntMap, Nexus, Tmf};
pub use pr::{PrRegistrant, PrReservation, PrState, PrType};
pub use registry::{DeviceEntry, Scst};
pub use reservation::Reservations;
pub use session::{Route, Session, SessionEvents, TgtDev, TmfStatus, TransportId};
pub use target::{Acl, IniGroup, LunEntry, LunSet, Target};
pub use taskset::TaskSet;
