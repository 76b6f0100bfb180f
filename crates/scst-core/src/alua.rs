//! Implicit ALUA (docs/scst-reference.md 2.9, 5.4): device groups, target port groups and their
//! asymmetric access states, the per-command state filter, REPORT TARGET PORT GROUPS
//! and the ASYMMETRIC ACCESS STATE CHANGED unit attention.
//!
//! Management changes go through one mutex (`Scst::alua`); after each change the
//! device group's devices get a fresh immutable snapshot ([`DgSnapshot`]) that the data
//! path reads without locks. A device in no device group pays one atomic load per
//! command ([`DeviceAlua::view`]).
//!
//! Not implemented: explicit ALUA (SET TARGET PORT GROUPS, `expl_alua`), and the
//! re-queue of commands in the transitioning state: SCST retries them once after 0.5 s
//! before failing with 02/04/0A; we fail them at once, which initiators retry anyway.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use scsi_wire::asc;
use scsi_wire::opcode as op;
use scsi_wire::sense::key;
use scsi_wire::Sense;

use crate::cmd::{Cmd, Response};
use crate::error::MgmtError;
use crate::registry::{DeviceEntry, Scst};
use crate::target::Target;

/// MAINTENANCE IN service action REPORT TARGET PORT GROUPS (SPC-4 6.37).
pub const SA_REPORT_TARGET_PORT_GROUPS: u8 = 0x0A;
/// MAINTENANCE OUT service action SET TARGET PORT GROUPS (SPC-4 6.45).
const SA_SET_TARGET_PORT_GROUPS: u8 = 0x0A;
const SERVICE_ACTION_IN_16_READ_CAPACITY: u8 = 0x10;
/// Opcodes of the allow-lists without a constant in scsi-wire.
const RECEIVE_DIAGNOSTIC: u8 = 0x1C;
const WRITE_BUFFER: u8 = 0x3B;
const READ_BUFFER: u8 = 0x3C;

pub const SENSE_ALUA_TRANSITIONING: Sense = Sense::named(
    key::NOT_READY,
    asc::LOGICAL_UNIT_NOT_ACCESSIBLE_TRANSITIONING,
);
pub const SENSE_ALUA_STANDBY: Sense =
    Sense::named(key::NOT_READY, asc::LOGICAL_UNIT_NOT_ACCESSIBLE_STANDBY);
pub const SENSE_ALUA_UNAVAILABLE: Sense =
    Sense::named(key::NOT_READY, asc::LOGICAL_UNIT_NOT_ACCESSIBLE_UNAVAILABLE);

/// Asymmetric access states (SPC-4 6.37 table 287), with SCST's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AluaState {
    Active,
    Nonoptimized,
    Standby,
    Unavailable,
    Offline,
    Transitioning,
}

impl AluaState {
    /// The ASYMMETRIC ACCESS STATE code reported by RTPG.
    pub fn code(self) -> u8 {
        match self {
            AluaState::Active => 0x0,
            AluaState::Nonoptimized => 0x1,
            AluaState::Standby => 0x2,
            AluaState::Unavailable => 0x3,
            AluaState::Offline => 0xE,
            AluaState::Transitioning => 0xF,
        }
    }

    /// SCST's name (the `state` attribute of a target group).
    pub fn name(self) -> &'static str {
        match self {
            AluaState::Active => "active",
            AluaState::Nonoptimized => "nonoptimized",
            AluaState::Standby => "standby",
            AluaState::Unavailable => "unavailable",
            AluaState::Offline => "offline",
            AluaState::Transitioning => "transitioning",
        }
    }

    pub fn from_name(name: &str) -> Result<AluaState, MgmtError> {
        [
            AluaState::Active,
            AluaState::Nonoptimized,
            AluaState::Standby,
            AluaState::Unavailable,
            AluaState::Offline,
            AluaState::Transitioning,
        ]
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            MgmtError::Invalid(format!(
                "'{name}' is not an ALUA state (active, nonoptimized, standby, \
                 unavailable, offline, transitioning)"
            ))
        })
    }

    /// INQUIRY reports peripheral qualifier 1 ("not connected") through such a port.
    pub fn lu_not_accessible(self) -> bool {
        matches!(self, AluaState::Unavailable | AluaState::Offline)
    }
}

/// The state filter (scst-reference 5.4): `None` when `cdb` may run through a port in `state`,
/// else the NOT READY sense to fail it with.
pub fn filter(state: AluaState, cdb: &[u8]) -> Option<Sense> {
    let opcode = cdb.first().copied().unwrap_or(0);
    let sa = cdb.get(1).copied().unwrap_or(0) & 0x1F;
    // Allowed in every state that is not active/nonoptimized.
    let always = match opcode {
        op::INQUIRY | op::READ_CAPACITY_10 | op::REPORT_LUNS | op::REQUEST_SENSE => true,
        READ_BUFFER | WRITE_BUFFER => true,
        op::SERVICE_ACTION_IN_16 => sa == SERVICE_ACTION_IN_16_READ_CAPACITY,
        op::MAINTENANCE_IN => sa == SA_REPORT_TARGET_PORT_GROUPS,
        _ => false,
    };
    let stpg = opcode == op::MAINTENANCE_OUT && sa == SA_SET_TARGET_PORT_GROUPS;
    match state {
        AluaState::Active | AluaState::Nonoptimized => None,
        AluaState::Standby => {
            let standby_only = matches!(
                opcode,
                op::MODE_SENSE_6
                    | op::MODE_SENSE_10
                    | op::MODE_SELECT_6
                    | op::MODE_SELECT_10
                    | op::LOG_SENSE
                    | op::LOG_SELECT
                    | op::RESERVE_6
                    | op::RESERVE_10
                    | op::RELEASE_6
                    | op::RELEASE_10
                    | RECEIVE_DIAGNOSTIC
                    | op::SEND_DIAGNOSTIC
                    | op::PERSISTENT_RESERVE_IN
                    | op::PERSISTENT_RESERVE_OUT
            );
            (!(always || stpg || standby_only)).then_some(SENSE_ALUA_STANDBY)
        }
        AluaState::Unavailable | AluaState::Offline => {
            (!(always || stpg)).then_some(SENSE_ALUA_UNAVAILABLE)
        }
        AluaState::Transitioning => (!always).then_some(SENSE_ALUA_TRANSITIONING),
    }
}

/// One member of a target port group as the data path sees it.
#[derive(Debug)]
struct PortSnapshot {
    name: String,
    /// A target of this daemon: its live `rel_tgt_id` is reported.
    local: Option<Weak<Target>>,
    /// The configured id of a target on another node.
    rel_tgt_id: u16,
}

impl PortSnapshot {
    fn rel_tgt_id(&self) -> u16 {
        self.local
            .as_ref()
            .and_then(Weak::upgrade)
            .map_or(self.rel_tgt_id, |t| t.rel_tgt_id())
    }
}

#[derive(Debug)]
struct TgSnapshot {
    group_id: u16,
    preferred: bool,
    state: AluaState,
    ports: Vec<PortSnapshot>,
}

/// An immutable copy of one device group's target groups, shared by its devices.
#[derive(Debug)]
pub struct DgSnapshot {
    groups: Vec<TgSnapshot>,
}

/// What a command sees of ALUA through its target port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortView {
    /// The target port group containing the port; None when the port is in none of the
    /// device group's target groups (then no state filter applies, as in SCST).
    pub tpg_id: Option<u16>,
    pub state: AluaState,
}

impl DgSnapshot {
    fn view(&self, target: &Target) -> PortView {
        self.groups
            .iter()
            .find(|g| g.ports.iter().any(|p| p.name == target.name))
            .map_or(
                PortView {
                    tpg_id: None,
                    state: AluaState::Active,
                },
                |g| PortView {
                    tpg_id: Some(g.group_id),
                    state: g.state,
                },
            )
    }

    /// REPORT TARGET PORT GROUPS parameter data (SPC-4 6.37), `extended`: format 1.
    fn encode(&self, extended: bool) -> Vec<u8> {
        let mut d = vec![0u8; 4];
        if extended {
            // FORMAT TYPE 001b, IMPLICIT TRANSITION TIME 0 (unspecified).
            d.extend_from_slice(&[0x10, 0, 0, 0]);
        }
        for g in &self.groups {
            d.push(u8::from(g.preferred) << 7 | g.state.code());
            d.push(SUPPORTED_STATES);
            d.extend_from_slice(&g.group_id.to_be_bytes());
            d.push(0);
            d.push(STATUS_IMPLICIT_CHANGE);
            d.push(0);
            // The count is one byte; SCST never reaches 256 members either.
            d.push(g.ports.len().min(255) as u8);
            for p in g.ports.iter().take(255) {
                d.extend_from_slice(&[0, 0]);
                d.extend_from_slice(&p.rel_tgt_id().to_be_bytes());
            }
        }
        let len = (d.len() - 4) as u32;
        d[..4].copy_from_slice(&len.to_be_bytes());
        d
    }
}

/// T_SUP, O_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP (no LBD_SUP).
const SUPPORTED_STATES: u8 = 0xCF;
/// STATUS CODE 02h: the state was altered by implicit asymmetric access behaviour.
const STATUS_IMPLICIT_CHANGE: u8 = 0x02;

/// What a device keeps for the data path.
#[derive(Default)]
pub struct DeviceAlua {
    /// Whether the device is in a device group; checked first so that devices without
    /// ALUA pay one atomic load per command.
    configured: AtomicBool,
    snapshot: ArcSwapOption<DgSnapshot>,
}

impl DeviceAlua {
    fn publish(&self, snap: Option<Arc<DgSnapshot>>) {
        self.configured.store(snap.is_some(), Ordering::Release);
        self.snapshot.store(snap);
    }

    /// The device's ALUA view through `target`; None when the device is in no group.
    pub fn view(&self, target: &Target) -> Option<PortView> {
        if !self.configured.load(Ordering::Acquire) {
            return None;
        }
        self.snapshot.load().as_ref().map(|s| s.view(target))
    }

    fn snapshot(&self) -> Option<Arc<DgSnapshot>> {
        self.snapshot.load_full()
    }
}

/// REPORT TARGET PORT GROUPS, answered by the core. A device in no device group gets
/// an empty list, as in SCST (scst_tg_get_group_info), so RSOC may list the command for
/// every device.
pub(crate) fn report_target_port_groups(dev: &DeviceEntry, cmd: &Cmd) -> Response {
    crate::error::in_device_format(dev.dev.as_ref(), rtpg(dev, cmd))
}

fn rtpg(dev: &DeviceEntry, cmd: &Cmd) -> Response {
    let cdb = &cmd.cdb;
    if cdb.len() < 12 {
        return Response::check(Sense::invalid_field_in_cdb(0, None));
    }
    let extended = match cdb[1] >> 5 {
        0 => false,
        1 => true,
        _ => return Response::check(Sense::invalid_field_in_cdb(1, Some(7))),
    };
    let alloc = u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]) as usize;
    let empty = DgSnapshot { groups: Vec::new() };
    let data = match dev.alua.snapshot() {
        Some(s) => s.encode(extended),
        None => empty.encode(extended),
    };
    Response::data_alloc(data, alloc)
}

/// A member of a target group in the management model.
#[derive(Debug, Clone)]
struct TgMember {
    name: String,
    local: Option<Weak<Target>>,
    rel_tgt_id: u16,
}

#[derive(Debug, Clone)]
struct TargetGroup {
    name: String,
    group_id: u16,
    preferred: bool,
    state: AluaState,
    members: Vec<TgMember>,
}

struct DeviceGroup {
    name: String,
    devices: Vec<Arc<DeviceEntry>>,
    target_groups: Vec<TargetGroup>,
}

impl DeviceGroup {
    fn snapshot(&self) -> Arc<DgSnapshot> {
        Arc::new(DgSnapshot {
            groups: self
                .target_groups
                .iter()
                .map(|g| TgSnapshot {
                    group_id: g.group_id,
                    preferred: g.preferred,
                    state: g.state,
                    ports: g
                        .members
                        .iter()
                        .map(|m| PortSnapshot {
                            name: m.name.clone(),
                            local: m.local.clone(),
                            rel_tgt_id: m.rel_tgt_id,
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    /// Give every member device the group's current state.
    fn publish(&self) {
        let snap = self.snapshot();
        for d in &self.devices {
            d.alua.publish(Some(snap.clone()));
        }
    }

    fn tg_mut(&mut self, tg: &str) -> Result<&mut TargetGroup, MgmtError> {
        let dg = self.name.clone();
        self.target_groups
            .iter_mut()
            .find(|g| g.name == tg)
            .ok_or_else(|| MgmtError::NotFound {
                kind: "target group",
                name: format!("{dg}/{tg}"),
            })
    }
}

/// The `device_groups/` tree.
#[derive(Default)]
pub struct AluaGroups {
    groups: Mutex<Vec<DeviceGroup>>,
}

fn dg_mut<'a>(groups: &'a mut [DeviceGroup], name: &str) -> Result<&'a mut DeviceGroup, MgmtError> {
    groups
        .iter_mut()
        .find(|g| g.name == name)
        .ok_or_else(|| MgmtError::NotFound {
            kind: "device group",
            name: name.to_string(),
        })
}

/// Management of device groups and target groups (scst-reference 2.9).
impl Scst {
    /// A deleted device leaves its device group (SCST removes it on unregister).
    pub(crate) fn alua_forget_device(&self, dev: &Arc<DeviceEntry>) {
        for g in self.alua.groups.lock().iter_mut() {
            if let Some(i) = g.devices.iter().position(|d| Arc::ptr_eq(d, dev)) {
                g.devices.remove(i).alua.publish(None);
            }
        }
    }

    pub fn create_device_group(&self, name: &str) -> Result<(), MgmtError> {
        let mut groups = self.alua.groups.lock();
        if groups.iter().any(|g| g.name == name) {
            return Err(MgmtError::Exists {
                kind: "device group",
                name: name.to_string(),
            });
        }
        groups.push(DeviceGroup {
            name: name.to_string(),
            devices: Vec::new(),
            target_groups: Vec::new(),
        });
        Ok(())
    }

    /// Remove a device group; its devices stop reporting ALUA.
    pub fn delete_device_group(&self, name: &str) -> Result<(), MgmtError> {
        let mut groups = self.alua.groups.lock();
        let i = groups
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| MgmtError::NotFound {
                kind: "device group",
                name: name.to_string(),
            })?;
        for d in &groups[i].devices {
            d.alua.publish(None);
        }
        groups.remove(i);
        Ok(())
    }

    /// Add a device; a device may be in at most one device group.
    pub fn device_group_add_device(&self, dg: &str, device: &str) -> Result<(), MgmtError> {
        let entry = self.device(device)?;
        let mut groups = self.alua.groups.lock();
        if let Some(other) = groups
            .iter()
            .find(|g| g.devices.iter().any(|d| Arc::ptr_eq(d, &entry)))
        {
            return Err(MgmtError::Busy {
                kind: "device",
                name: device.to_string(),
                why: format!("already in device group '{}'", other.name),
            });
        }
        let g = dg_mut(&mut groups, dg)?;
        g.devices.push(entry);
        g.publish();
        Ok(())
    }

    pub fn device_group_remove_device(&self, dg: &str, device: &str) -> Result<(), MgmtError> {
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        let i = g
            .devices
            .iter()
            .position(|d| d.name() == device)
            .ok_or_else(|| {
                MgmtError::Invalid(format!("device '{device}' is not in device group '{dg}'"))
            })?;
        g.devices.remove(i).alua.publish(None);
        Ok(())
    }

    /// Create a target group with its TARGET PORT GROUP id (1..65535, unique within
    /// the device group), in state active and not preferred.
    pub fn create_target_group(&self, dg: &str, tg: &str, group_id: u16) -> Result<(), MgmtError> {
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        if g.target_groups.iter().any(|t| t.name == tg) {
            return Err(MgmtError::Exists {
                kind: "target group",
                name: format!("{dg}/{tg}"),
            });
        }
        check_group_id(g, tg, group_id)?;
        g.target_groups.push(TargetGroup {
            name: tg.to_string(),
            group_id,
            preferred: false,
            state: AluaState::Active,
            members: Vec::new(),
        });
        g.publish();
        Ok(())
    }

    pub fn set_target_group_id(&self, dg: &str, tg: &str, group_id: u16) -> Result<(), MgmtError> {
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        check_group_id(g, tg, group_id)?;
        g.tg_mut(tg)?.group_id = group_id;
        g.publish();
        Ok(())
    }

    /// Add a target port. A target of this daemon is found by name and reports its own
    /// `rel_tgt_id`; any other name is a target on a peer node and needs `rel_tgt_id`.
    pub fn target_group_add_target(
        &self,
        dg: &str,
        tg: &str,
        target: &str,
        rel_tgt_id: Option<u16>,
    ) -> Result<(), MgmtError> {
        let local = self.find_target_by_name(target);
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        if let Some(other) = g
            .target_groups
            .iter()
            .find(|t| t.members.iter().any(|m| m.name == target))
        {
            return Err(MgmtError::Busy {
                kind: "target",
                name: target.to_string(),
                why: format!("already in target group '{dg}/{}'", other.name),
            });
        }
        let rel = match (&local, rel_tgt_id) {
            (_, Some(0)) => {
                return Err(MgmtError::Invalid(format!(
                    "target '{target}' in '{dg}/{tg}': rel_tgt_id must be 1..65535"
                )))
            }
            (Some(t), _) => rel_tgt_id.unwrap_or_else(|| t.rel_tgt_id()),
            (None, Some(id)) => id,
            (None, None) => {
                return Err(MgmtError::Invalid(format!(
                    "target '{target}' in '{dg}/{tg}' is not a local target: \
                     a remote target needs rel_tgt_id"
                )))
            }
        };
        g.tg_mut(tg)?.members.push(TgMember {
            name: target.to_string(),
            local: local.as_ref().map(Arc::downgrade),
            rel_tgt_id: rel,
        });
        g.publish();
        Ok(())
    }

    pub fn target_group_remove_target(
        &self,
        dg: &str,
        tg: &str,
        target: &str,
    ) -> Result<(), MgmtError> {
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        let t = g.tg_mut(tg)?;
        let i = t
            .members
            .iter()
            .position(|m| m.name == target)
            .ok_or_else(|| {
                MgmtError::Invalid(format!(
                    "target '{target}' is not in target group '{dg}/{tg}'"
                ))
            })?;
        t.members.remove(i);
        g.publish();
        Ok(())
    }

    pub fn set_target_group_preferred(
        &self,
        dg: &str,
        tg: &str,
        preferred: bool,
    ) -> Result<(), MgmtError> {
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        g.tg_mut(tg)?.preferred = preferred;
        g.publish();
        Ok(())
    }

    /// Change a target group's state. Every nexus of the device group's devices gets
    /// ASYMMETRIC ACCESS STATE CHANGED: the RTPG data changed for all of them, not
    /// only for initiators logged in through the group's ports (SPC-4 5.15.2.3).
    pub fn set_target_group_state(
        &self,
        dg: &str,
        tg: &str,
        state: AluaState,
    ) -> Result<(), MgmtError> {
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        let t = g.tg_mut(tg)?;
        if t.state == state {
            return Ok(());
        }
        t.state = state;
        g.publish();
        log::info!("ALUA: target group {dg}/{tg} is now {}", state.name());
        for d in &g.devices {
            d.queue_ua_all(Sense::UA_ASYMMETRIC_ACCESS_STATE_CHANGED);
        }
        Ok(())
    }

    /// State of a target group (for the management tree and tests).
    pub fn target_group_state(&self, dg: &str, tg: &str) -> Result<AluaState, MgmtError> {
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        Ok(g.tg_mut(tg)?.state)
    }
}

fn check_group_id(g: &DeviceGroup, tg: &str, group_id: u16) -> Result<(), MgmtError> {
    if group_id == 0 {
        return Err(MgmtError::Invalid(format!(
            "target group '{}/{tg}': group_id must be 1..65535",
            g.name
        )));
    }
    if let Some(other) = g
        .target_groups
        .iter()
        .find(|t| t.group_id == group_id && t.name != tg)
    {
        return Err(MgmtError::Invalid(format!(
            "target group '{}/{tg}': group_id {group_id} is already used by target group '{}'",
            g.name, other.name
        )));
    }
    Ok(())
}

/// A device group as the management tree shows it (`device_groups/<dg>/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGroupInfo {
    pub name: String,
    pub devices: Vec<String>,
    pub target_groups: Vec<TargetGroupInfo>,
}

/// `device_groups/<dg>/target_groups/<tg>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupInfo {
    pub name: String,
    pub group_id: u16,
    pub preferred: bool,
    pub state: AluaState,
    /// Member target names with the relative port id RTPG reports for them (a local
    /// target's live `rel_tgt_id`, the configured one for a remote target).
    pub targets: Vec<(String, u16)>,
}

impl Scst {
    /// Every device group, in creation order.
    pub fn device_groups(&self) -> Vec<DeviceGroupInfo> {
        self.alua
            .groups
            .lock()
            .iter()
            .map(|g| DeviceGroupInfo {
                name: g.name.clone(),
                devices: g.devices.iter().map(|d| d.name().to_string()).collect(),
                target_groups: g
                    .target_groups
                    .iter()
                    .map(|t| TargetGroupInfo {
                        name: t.name.clone(),
                        group_id: t.group_id,
                        preferred: t.preferred,
                        state: t.state,
                        targets: t
                            .members
                            .iter()
                            .map(|m| {
                                let live = m.local.as_ref().and_then(Weak::upgrade);
                                (
                                    m.name.clone(),
                                    live.map_or(m.rel_tgt_id, |t| t.rel_tgt_id()),
                                )
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The lowest group id no target group of `dg` uses (SCST's `create` takes none;
    /// the management tree assigns one that `group_id` can then change).
    pub fn free_target_group_id(&self, dg: &str) -> Result<u16, MgmtError> {
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        (1..=u16::MAX)
            .find(|id| g.target_groups.iter().all(|t| t.group_id != *id))
            .ok_or_else(|| MgmtError::Invalid(format!("device group '{dg}': no free group id")))
    }

    /// Remove a target group (`device_groups/<dg>/target_groups/mgmt del`).
    pub fn delete_target_group(&self, dg: &str, tg: &str) -> Result<(), MgmtError> {
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        let i = g
            .target_groups
            .iter()
            .position(|t| t.name == tg)
            .ok_or_else(|| MgmtError::NotFound {
                kind: "target group",
                name: format!("{dg}/{tg}"),
            })?;
        g.target_groups.remove(i);
        g.publish();
        Ok(())
    }

    /// `device_groups/<dg>/target_groups/<tg>/<target>/rel_tgt_id`: the id reported for
    /// a remote member (a local member always reports its live id).
    pub fn set_target_group_member_rel_tgt_id(
        &self,
        dg: &str,
        tg: &str,
        target: &str,
        rel_tgt_id: u16,
    ) -> Result<(), MgmtError> {
        if rel_tgt_id == 0 {
            return Err(MgmtError::Invalid(format!(
                "target '{target}' in '{dg}/{tg}': rel_tgt_id must be 1..65535"
            )));
        }
        let mut groups = self.alua.groups.lock();
        let g = dg_mut(&mut groups, dg)?;
        let m = g
            .tg_mut(tg)?
            .members
            .iter_mut()
            .find(|m| m.name == target)
            .ok_or_else(|| {
                MgmtError::Invalid(format!(
                    "target '{target}' is not in target group '{dg}/{tg}'"
                ))
            })?;
        m.rel_tgt_id = rel_tgt_id;
        g.publish();
        Ok(())
    }
}
