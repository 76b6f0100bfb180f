//! The dev handler interface: what the core asks of a device (a vdisk, a vcdrom, later
//! an scst_user device).

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
    /// LOGICAL UNIT RESET / target reset: restore mode pages to saved values, clear
    /// PREVENT MEDIUM REMOVAL (spec/scst.md 4.5).
    fn reset(&self) {}
    /// Attributes for the management tree, in SCST's names: (name, value, is_key).
    fn attributes(&self) -> Vec<(String, String, bool)> {
        Vec::new()
    }
    /// Flush what is volatile; called on detach and on daemon shutdown.
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}
