//! The dev handler interface: what the core asks of a device (a vdisk, a vcdrom, later
//! an scst_user device).

use std::sync::Weak;

use scsi_wire::Sense;

use crate::cmd::{Cmd, ExecMode, Response};

/// What a device needs to know about the nexus a command came in on, for INQUIRY
/// designators and access checks.
#[derive(Debug, Clone, Copy)]
pub struct CmdCtx<'a> {
    pub target_name: &'a str,
    /// Relative target port identifier of the receiving target (VPD 0x83).
    pub rel_tgt_id: u16,
    pub initiator_name: &'a str,
    /// The LUN was exported read-only (per-LUN `read_only`).
    pub lun_read_only: bool,
    /// ALUA through this target port: None when the device is in no device group
    /// (INQUIRY then reports TPGS 0); else the port's target port group id (VPD 0x83;
    /// None when the port is in none of the group's target groups) and its state
    /// (INQUIRY reports PQ=1 when unavailable or offline).
    pub alua: Option<crate::alua::PortView>,
}

/// One device instance of a dev handler (SCST's `struct scst_device` + handler ops).
pub trait Device: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// The dev handler this device belongs to (`vdisk_fileio`, ...).
    fn handler_name(&self) -> &'static str;
    /// SCSI peripheral device type (0 disk, 5 CD/DVD).
    fn scsi_type(&self) -> u8;
    /// Execute one command that passed the core's checks. See [`ExecMode`].
    fn execute(&self, ctx: &CmdCtx<'_>, cmd: &mut Cmd, mode: ExecMode) -> Option<Response>;
    /// How many data-out bytes this CDB transfers (e.g. blocks x block size for a
    /// WRITE, the parameter list length for MODE SELECT), or None when the command has
    /// no data-out. The transport reports the difference from its expected length as a
    /// residual (RFC 7143 11.4.5); `Cmd::data_out` holds what the initiator really sent,
    /// which may be less or more.
    fn data_out_len(&self, _cdb: &[u8]) -> Option<u32> {
        None
    }
    /// Control mode page D_SENSE: report sense in descriptor format.
    fn descriptor_sense(&self) -> bool {
        false
    }
    /// Control mode page TST = 000b (the `tst 0` attribute): one task set shared by
    /// every I_T nexus, so CLEAR TASK SET reaches all of them. SCST's default `tst 1`
    /// gives each nexus its own task set.
    fn shared_task_set(&self) -> bool {
        false
    }
    /// Sense describing the logical unit's current state, which REQUEST SENSE returns
    /// when no unit attention is pending (SPC-4 6.39): e.g. NOT READY / FORMAT IN
    /// PROGRESS or SANITIZE IN PROGRESS with the progress indication set. `None`: the
    /// core answers NO SENSE.
    fn pending_sense(&self) -> Option<Sense> {
        None
    }
    /// A running command of this device is being aborted by a task management function
    /// (ABORT TASK, ABORT TASK SET, CLEAR TASK SET, a reset). A command that waits for
    /// work meant to outlive it (a SANITIZE without IMMED: the sanitize continues across
    /// aborts and resets) stops waiting, so that the abort completes. Most devices have
    /// nothing to do: their commands end on their own.
    fn abort_running(&self) {}
    /// LOGICAL UNIT RESET / target reset: restore mode pages to saved values, clear
    /// PREVENT MEDIUM REMOVAL (docs/scst-reference.md 4.5).
    fn reset(&self) {}
    /// Attributes for the management tree, in SCST's names: (name, value, is_key).
    fn attributes(&self) -> Vec<(String, String, bool)> {
        Vec::new()
    }
    /// Flush what is volatile; called on detach and on daemon shutdown.
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    /// Change a runtime-writable attribute (the management tree's write of
    /// `devices/<dev>/<name>`), e.g. vcdrom's `filename` to insert or eject media.
    /// A refused write changes nothing. By default nothing is writable.
    fn set_attribute(&self, name: &str, _value: &str) -> Result<(), AttrError> {
        Err(AttrError::NotWritable {
            device: self.name().to_string(),
            attr: name.to_string(),
        })
    }
    /// Apply an attribute write and say what initiators must be told (the core queues
    /// the matching unit attention on every nexus of the device, scst-reference 5.1). The default
    /// delegates to [`Device::set_attribute`] and classifies by SCST's attribute names;
    /// a handler overrides it when it knows better (e.g. a size write that changed
    /// nothing).
    fn apply_attribute(&self, name: &str, value: &str) -> Result<AttrEffect, AttrError> {
        self.set_attribute(name, value)?;
        Ok(AttrEffect::of_attribute(name))
    }
    /// Called once when the core registers the device: where to report events that
    /// reach every I_T_L nexus of the device (a medium change). A device that keeps it
    /// must hold it weakly: the core's entry owns the device.
    fn attach_events(&self, _events: Weak<dyn DeviceEvents>) {}
    /// An I_T nexus of this device is gone (logout, connection loss, reinstatement):
    /// drop per-nexus state such as PREVENT MEDIUM REMOVAL (SPC-4 6.13). The nexus is
    /// named by initiator and target name, as in [`CmdCtx`]. Called once per session.
    fn nexus_lost(&self, _initiator_name: &str, _target_name: &str) {}
}

/// Why a device refused an attribute write (a refused write changed nothing): one line
/// naming the device and the attribute. The kind tells the management layer how to
/// report it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// The device has no such attribute, or none that can be written.
    #[error("device {device}: attribute {attr} is unknown or read-only")]
    NotWritable { device: String, attr: String },
    /// Given when the device is created; re-creating the device changes it.
    #[error("device {device}: attribute {attr}: read-only (set at creation)")]
    CreationOnly { device: String, attr: String },
    /// Not a value the attribute takes, or not one it can take now (`reason` says why).
    #[error("device {device}: attribute {attr}: {reason}")]
    Invalid {
        device: String,
        attr: String,
        reason: String,
    },
    /// The device's state forbids the change until an initiator lifts it (e.g. PREVENT
    /// MEDIUM REMOVAL).
    #[error("device {device}: {reason}")]
    Busy { device: String, reason: String },
    /// The backend could not carry it out (opening a file, a flush, reading a size).
    #[error("device {device}: attribute {attr}: {reason}")]
    Backend {
        device: String,
        attr: String,
        reason: String,
    },
}

/// What an attribute write changed that initiators can observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrEffect {
    /// Nothing an initiator sees (or the device queued its own UA, as vcdrom does for
    /// a medium change).
    Nothing,
    /// The capacity changed: CAPACITY DATA HAS CHANGED (2A/09).
    CapacityChanged,
    /// INQUIRY or VPD data changed: INQUIRY DATA HAS CHANGED (3F/03).
    InquiryDataChanged,
}

impl AttrEffect {
    /// SCST's effect of writing a vdisk attribute of this name (scst-reference 2.5, 5.1).
    pub fn of_attribute(name: &str) -> AttrEffect {
        match name {
            "size" | "size_mb" | "resync_size" => AttrEffect::CapacityChanged,
            "t10_vend_id" | "prod_id" | "prod_rev_lvl" | "t10_dev_id" | "vend_specific_id"
            | "usn" | "eui64_id" | "naa_id" | "scsi_device_name" | "inq_vend_specific" => {
                AttrEffect::InquiryDataChanged
            }
            _ => AttrEffect::Nothing,
        }
    }
}

/// What the core offers a device for events it cannot report through a command's own
/// response (see [`Device::attach_events`]).
pub trait DeviceEvents: Send + Sync {
    /// Queue a unit attention on every nexus of the device (SCST's
    /// scst_dev_check_set_UA for all tgt_devs), e.g. MEDIUM MAY HAVE CHANGED.
    fn queue_ua_all(&self, sense: Sense);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{Cdb, TaskAttr};
    use crate::registry::{DeviceEntry, Scst};
    use crate::session::{Route, SessionEvents, TransportId};
    use scsi_wire::sense::key;
    use std::sync::Arc;

    /// Reports a format in progress at 50% through `pending_sense`.
    struct Formatting;

    const FORMAT_IN_PROGRESS: Sense = Sense {
        progress: Some(0x8000),
        ..Sense::new(key::NOT_READY, 0x04, 0x04)
    };

    impl Device for Formatting {
        fn name(&self) -> &str {
            "fmt0"
        }
        fn handler_name(&self) -> &'static str {
            "test"
        }
        fn scsi_type(&self) -> u8 {
            0
        }
        fn execute(&self, _: &CmdCtx<'_>, _: &mut Cmd, _: ExecMode) -> Option<Response> {
            Some(Response::good())
        }
        fn pending_sense(&self) -> Option<Sense> {
            Some(FORMAT_IN_PROGRESS)
        }
    }

    struct NoEvents;

    impl SessionEvents for NoEvents {
        fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {}
        fn close(&self) {}
    }

    #[test]
    fn request_sense_reports_ua_first_then_the_device_state() {
        let scst = Scst::new(1);
        scst.add_device(Arc::new(Formatting)).unwrap();
        let t = scst.add_target("iscsi", "iqn.t:1", Some(1)).unwrap();
        scst.add_lun(&t, None, 0, "fmt0", false).unwrap();
        let tid = TransportId::Iscsi {
            name: "iqn.i".into(),
            isid: Some([0x40, 0, 0, 0, 0, 1]),
        };
        let s = scst.register_session(&t, tid, Arc::new(NoEvents));
        let request_sense = |desc: u8| {
            let cmd = Cmd {
                cdb: Cdb::new(&[0x03, desc, 0, 0, 252, 0]).unwrap(),
                lun: 0,
                tag: 1,
                attr: TaskAttr::Simple,
                data_out: Vec::new(),
                expected_in: 252,
            };
            match s.route(&cmd) {
                Route::Done(r) => Sense::parse(&r.data).unwrap(),
                Route::Device(_) => panic!("REQUEST SENSE is answered by the core"),
            }
        };
        // The session's POWER ON UA comes first and is cleared by being reported.
        assert_eq!(request_sense(0), Sense::UA_POWER_ON_RESET);
        // Then the device's state, with the progress indication, in either format.
        assert_eq!(request_sense(0), FORMAT_IN_PROGRESS);
        assert_eq!(request_sense(1), FORMAT_IN_PROGRESS);
    }
}
