//! The SCST target core (spec/scst.md sections 4.1, 5.1, 5.2): devices, targets, LUN
//! tables and security groups, sessions and their tgt_devs, unit attentions, task sets
//! and task management. It never sees a PDU, a socket or a login key.

pub mod alua;
#[cfg(test)]
mod alua_tests;
pub mod cmd;
mod copy;
#[cfg(test)]
mod copy_tests;
pub mod device;
#[cfg(test)]
mod device_tests;
pub mod error;
pub mod iopool;
pub mod pattern;
pub mod pr;
pub mod pr_persist;
#[cfg(test)]
mod pr_persist_tests;
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

pub use alua::{AluaState, DeviceGroupInfo, PortView, TargetGroupInfo};
pub use cmd::{Cdb, Cmd, ExecMode, Response, TaskAttr};
pub use device::{AttrEffect, AttrError, CmdCtx, Device, DeviceEvents};
pub use error::MgmtError;
pub use pr::{PrRegistrant, PrReservation, PrState, PrType};
pub use registry::{DeviceEntry, Scst};
pub use reservation::Reservations;
pub use session::{Route, Session, SessionEvents, TgtDev, TmfStatus, TransportId};
pub use target::{Acl, IniGroup, LunEntry, LunSet, Target};
pub use taskset::TaskSet;
