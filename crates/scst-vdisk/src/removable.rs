//! Removable-medium state shared by vcdrom and `removable 1` vdisks: whether the
//! medium is loaded, and PREVENT ALLOW MEDIUM REMOVAL (SPC-4 6.13, SBC-3 5.13,
//! MMC-6 6.32), with the START STOP UNIT LoEj rules that depend on it.
//!
//! Prevention is per I_T nexus: it lasts while any nexus that asked for it has not
//! allowed removal again, and ends for a nexus with that nexus (I_T nexus loss) and
//! for all on a logical unit reset. `CmdCtx` names a nexus by initiator and target
//! name (it carries no ISID), so two sessions of one initiator to one target share it.

use parking_lot::Mutex;
use scsi_wire::asc;
use scsi_wire::sense::key;
use scsi_wire::Sense;
use scst_core::CmdCtx;
use std::sync::atomic::{AtomicBool, Ordering};

/// A medium change refused while PREVENT ALLOW MEDIUM REMOVAL holds it.
pub const MEDIUM_REMOVAL_PREVENTED: Sense =
    Sense::named(key::ILLEGAL_REQUEST, asc::MEDIUM_REMOVAL_PREVENTED);

/// START STOP UNIT (0x1B) fields (SBC-3 5.25, MMC-6 6.39).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartStop {
    pub power_condition: u8,
    pub load_eject: bool,
    pub start: bool,
}

impl StartStop {
    pub fn decode(cdb: &[u8]) -> Result<StartStop, Sense> {
        let b4 = scsi_wire::cdb::u8_at(cdb, 4)?;
        Ok(StartStop {
            power_condition: b4 >> 4,
            load_eject: b4 & 0x02 != 0,
            start: b4 & 0x01 != 0,
        })
    }

    /// The command asks to load or eject the medium: with a power condition other
    /// than 0 the START and LOEJ bits are ignored (SBC-3 5.25).
    pub fn moves_medium(&self) -> bool {
        self.power_condition == 0 && self.load_eject
    }
}

/// PREVENT ALLOW MEDIUM REMOVAL's PREVENT field asks for prevention (SBC-3: 01b; the
/// obsolete 1xb values and MMC's persistent prevent are treated alike).
pub fn prevent_requested(cdb: &[u8]) -> Result<bool, Sense> {
    Ok(scsi_wire::cdb::u8_at(cdb, 4)? & 0x03 != 0)
}

pub struct Removable {
    /// START STOP UNIT ejected the medium: it is gone until loaded again.
    ejected: AtomicBool,
    /// (initiator, target) of the nexuses with prevention in effect.
    preventing: Mutex<Vec<(String, String)>>,
}

impl Removable {
    pub fn new() -> Removable {
        Removable {
            ejected: AtomicBool::new(false),
            preventing: Mutex::new(Vec::new()),
        }
    }

    /// The medium is in the drive (not ejected by START STOP UNIT). Checked on every
    /// command, hence one atomic load.
    pub fn loaded(&self) -> bool {
        !self.ejected.load(Ordering::Acquire)
    }

    pub fn prevented(&self) -> bool {
        !self.preventing.lock().is_empty()
    }

    /// PREVENT ALLOW MEDIUM REMOVAL from the nexus of `ctx`.
    pub fn set_prevent(&self, ctx: &CmdCtx<'_>, prevent: bool) {
        let mut p = self.preventing.lock();
        let mine = |(i, t): &(String, String)| i == ctx.initiator_name && t == ctx.target_name;
        match (prevent, p.iter().any(mine)) {
            (true, false) => p.push((ctx.initiator_name.into(), ctx.target_name.into())),
            (false, true) => p.retain(|n| !mine(n)),
            _ => {}
        }
    }

    /// START STOP UNIT with LOEJ: eject (`load` false) or load the medium. Either is
    /// refused while removal is prevented (libiscsi's PreventAllow tests expect the
    /// load refused too: a locked tray does not move).
    pub fn load_eject(&self, load: bool) -> Result<(), Sense> {
        if self.prevented() {
            return Err(MEDIUM_REMOVAL_PREVENTED);
        }
        self.ejected.store(!load, Ordering::Release);
        Ok(())
    }

    /// A new medium was inserted (vcdrom `filename`): the tray is closed.
    pub fn close_tray(&self) {
        self.ejected.store(false, Ordering::Release);
    }

    /// The nexus is gone: its prevention ends with it.
    pub fn nexus_lost(&self, initiator_name: &str, target_name: &str) {
        self.preventing
            .lock()
            .retain(|(i, t)| !(i == initiator_name && t == target_name));
    }

    /// LOGICAL UNIT RESET / hard reset: every prevention ends (scst-reference 4.5).
    pub fn reset(&self) {
        self.preventing.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(initiator: &'static str) -> CmdCtx<'static> {
        CmdCtx {
            target_name: "iqn.t",
            rel_tgt_id: 1,
            initiator_name: initiator,
            lun_read_only: false,
            alua: None,
        }
    }

    #[test]
    fn prevention_is_per_nexus() {
        let m = Removable::new();
        m.set_prevent(&ctx("a"), true);
        m.set_prevent(&ctx("b"), true);
        m.set_prevent(&ctx("a"), true);
        assert_eq!(m.load_eject(false), Err(MEDIUM_REMOVAL_PREVENTED));
        // Allowing from one nexus leaves the other's prevention in place.
        m.set_prevent(&ctx("a"), false);
        assert!(m.prevented());
        m.nexus_lost("b", "iqn.t");
        assert!(!m.prevented());
        assert_eq!(m.load_eject(false), Ok(()));
        assert!(!m.loaded());
        m.set_prevent(&ctx("a"), true);
        assert_eq!(m.load_eject(true), Err(MEDIUM_REMOVAL_PREVENTED));
        m.reset();
        assert_eq!(m.load_eject(true), Ok(()));
        assert!(m.loaded());
    }

    #[test]
    fn start_stop_fields() {
        let s = StartStop::decode(&[0x1B, 1, 0, 0, 0x03, 0]).unwrap();
        assert!(s.moves_medium() && s.start);
        // A power condition makes START and LOEJ ignored.
        assert!(!StartStop::decode(&[0x1B, 0, 0, 0, 0x12, 0])
            .unwrap()
            .moves_medium());
        assert!(StartStop::decode(&[0x1B, 0, 0]).is_err());
    }
}
