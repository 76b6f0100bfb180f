//! The core's reservation gate (docs/scst-reference.md 4.1 step 3, 5.3): SPC-2 RESERVE/RELEASE,
//! the per-command SPC-2 and persistent reservation conflict checks, and execution of
//! RESERVE, RELEASE, PERSISTENT RESERVE IN and PERSISTENT RESERVE OUT, which the core
//! answers itself without the device.
//!
//! Every command passes through `route`; while a device has neither an SPC-2
//! reservation nor a PR registration, that costs one atomic load.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use scsi_wire::opcode as op;
use scsi_wire::{status, Sense};

use crate::cmd::{Cmd, ExecMode, Response};
use crate::pr::{self, Effects, NexusRef, PrState};
use crate::pr_persist;
use crate::registry::DeviceEntry;
use crate::session::{Session, TgtDev};

/// What the reservation lock protects.
#[derive(Debug, Default)]
struct ResvState {
    /// Id of the session holding the SPC-2 reservation.
    spc2_holder: Option<u64>,
    pr: PrState,
    /// Where the APTPL file lives (`pr_file_name`); None: no persistence (a core
    /// without a state directory, as in unit tests).
    pr_file: Option<PathBuf>,
    /// The APTPL file may exist on disk: it must be rewritten or removed when the
    /// state changes, even once APTPL is 0 in memory.
    file_present: bool,
}

impl ResvState {
    fn any(&self) -> bool {
        self.spc2_holder.is_some() || !self.pr.registrants.is_empty()
    }

    /// A PR OUT may change what the APTPL file must hold, so it has to run where file
    /// I/O is allowed. `list_aptpl`: the command itself sets APTPL.
    fn needs_durable(&self, list_aptpl: bool) -> bool {
        self.pr_file.is_some() && (self.file_present || self.pr.aptpl || list_aptpl)
    }
}

/// Sense for a PR OUT whose new state could not be made durable (APTPL file write
/// failed). SCST only logs such failures; here the command fails and the state is
/// rolled back, so that a GOOD status always means "survives a power loss".
pub const PR_NOT_DURABLE: Sense = Sense::HARDWARE_INTERNAL_FAILURE;

/// A device's reservations: SPC-2 and persistent.
#[derive(Debug, Default)]
pub struct Reservations {
    /// Mirrors `ResvState::any` so that commands skip the lock when nothing is reserved
    /// or registered (a reservation cannot exist without a registration).
    active: AtomicBool,
    state: Mutex<ResvState>,
    /// Serialises the PR OUTs and imports that write the APTPL file, so that files land
    /// in the order the states were made. Taken before `state`, never inside it; the
    /// file I/O runs with only this lock held.
    persist: Mutex<()>,
}

impl Reservations {
    /// Reservations persisted in `pr_file` (None: not persisted), starting from `pr`
    /// (what the file held at registration). `file_present`: the file exists.
    pub(crate) fn with_state(pr: PrState, pr_file: Option<PathBuf>, file_present: bool) -> Self {
        let st = ResvState {
            spc2_holder: None,
            pr,
            pr_file,
            file_present,
        };
        let r = Reservations {
            active: AtomicBool::new(false),
            state: Mutex::new(st),
            persist: Mutex::new(()),
        };
        r.publish(&r.state.lock());
        r
    }

    /// The APTPL file path, if the device's PR state is persisted.
    pub fn pr_file(&self) -> Option<PathBuf> {
        self.state.lock().pr_file.clone()
    }

    fn publish(&self, st: &ResvState) {
        self.active.store(st.any(), Ordering::Release);
    }

    /// Whether any SPC-2 reservation or PR registration exists (the fast-path flag).
    pub fn any(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Snapshot of the persistent reservation state (for `pr_state`, APTPL, tests).
    pub fn pr_state(&self) -> PrState {
        self.state.lock().pr.clone()
    }

    /// The session holding the SPC-2 reservation, if any.
    pub fn spc2_holder(&self) -> Option<u64> {
        self.state.lock().spc2_holder
    }

    /// LOGICAL UNIT RESET / target reset: SPC-2 reservations go, PRs stay (scst-reference 5.2).
    pub(crate) fn clear_spc2(&self) {
        let mut st = self.state.lock();
        st.spc2_holder = None;
        self.publish(&st);
    }

    /// I_T nexus loss: the session's SPC-2 reservation goes. PR registrations survive
    /// nexus loss by design (SPC-4 5.13.1).
    pub(crate) fn session_gone(&self, session_id: u64) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let mut st = self.state.lock();
        if st.spc2_holder == Some(session_id) {
            st.spc2_holder = None;
            self.publish(&st);
        }
    }
}

/// Drop the SPC-2 reservations a session holds (see `Session::unregister`).
pub(crate) fn session_gone(sess: &Session) {
    for td in &sess.luns().entries {
        td.device.resv.session_gone(sess.id);
    }
}

/// Which reservations let a non-holder run an opcode. SCST's op-table flags
/// SCST_REG_RESERVE_ALLOWED, SCST_WRITE_EXCL_ALLOWED and SCST_EXCL_ACCESS_ALLOWED
/// (SPC-2 5.5.1; SPC-4 table "SPC commands that are allowed in the presence of various
/// reservations"; SBC-3 table for the block commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpAccess {
    spc2: bool,
    we: bool,
    ea: bool,
}

const NONE: OpAccess = OpAccess {
    spc2: false,
    we: false,
    ea: false,
};
/// Harmless under any reservation: status and identification commands.
const ANY: OpAccess = OpAccess {
    spc2: true,
    we: true,
    ea: true,
};
/// Allowed under PR exclusive access but not SPC-2 (the PR and SPC-2 management
/// commands themselves, which then apply their own rules).
const PR_ANY: OpAccess = OpAccess {
    spc2: false,
    we: true,
    ea: true,
};
/// Reads: allowed under Write Exclusive only.
const READ: OpAccess = OpAccess {
    spc2: false,
    we: true,
    ea: false,
};

fn op_access(cdb: &[u8]) -> OpAccess {
    let sa8 = |i: usize| cdb.get(i).map_or(0xFF, |b| b & 0x1F);
    match cdb[0] {
        op::TEST_UNIT_READY | op::REQUEST_SENSE | op::INQUIRY | op::READ_CAPACITY_10 => ANY,
        0x05 /* READ BLOCK LIMITS */ | op::LOG_SENSE | op::REPORT_LUNS => ANY,
        0x86 | 0x87 /* ACCESS CONTROL IN/OUT */ => ANY,
        op::RELEASE_6 | op::RELEASE_10 => ANY,
        op::RESERVE_6 | op::RESERVE_10 => PR_ANY,
        op::PERSISTENT_RESERVE_IN | op::PERSISTENT_RESERVE_OUT => PR_ANY,
        op::RECEIVE_COPY_RESULTS => PR_ANY,
        op::SERVICE_ACTION_IN_16 => match sa8(1) {
            0x10 /* READ CAPACITY(16) */ => ANY,
            0x12 /* GET LBA STATUS */ => READ,
            _ => NONE,
        },
        op::MAINTENANCE_IN => match sa8(1) {
            // REPORT IDENTIFYING INFORMATION, REPORT TARGET PORT GROUPS, REPORT
            // SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS, REPORT TIMESTAMP.
            0x05 | 0x0A | 0x0C | 0x0D | 0x0F => ANY,
            _ => NONE,
        },
        0xA2 /* SECURITY PROTOCOL IN */ => OpAccess { spc2: true, we: true, ea: false },
        op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16 => READ,
        0x13 /* VERIFY(6) */ | op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => READ,
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => READ,
        0x1C /* RECEIVE DIAGNOSTIC RESULTS */ | 0x3C /* READ BUFFER */ => READ,
        0x34 /* PRE-FETCH(10) */ | 0x90 /* PRE-FETCH(16) */ | 0x36 /* LOCK UNLOCK CACHE */ => READ,
        0x37 | 0xB7 /* READ DEFECT DATA */ | 0x8C /* READ ATTRIBUTE */ => READ,
        op::VARIABLE_LENGTH => {
            let sa = cdb.get(8..10).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            match sa {
                0x0009 /* READ(32) */ | 0x000A /* VERIFY(32) */ => READ,
                _ => NONE,
            }
        }
        _ => NONE,
    }
}

fn conflicts(st: &ResvState, n: &NexusRef<'_>, access: OpAccess) -> bool {
    if let Some(h) = st.spc2_holder {
        if h != n.session_id && !access.spc2 {
            return true;
        }
    }
    !st.pr.access_allowed(n, access.we, access.ea)
}

fn is_core_command(opcode: u8) -> bool {
    matches!(
        opcode,
        op::RESERVE_6
            | op::RESERVE_10
            | op::RELEASE_6
            | op::RELEASE_10
            | op::PERSISTENT_RESERVE_IN
            | op::PERSISTENT_RESERVE_OUT
    )
}

/// scst-reference 4.1 step 3 (SPC-2 then PR conflict) and step 4 for the reservation commands.
/// `None`: the command goes on to the device.
pub(crate) fn route(sess: &Session, td: &TgtDev, cmd: &Cmd) -> Option<Response> {
    let opcode = cmd.cdb.opcode();
    let core = is_core_command(opcode);
    let resv = &td.device.resv;
    if !core && !resv.active.load(Ordering::Acquire) {
        return None;
    }
    let n = NexusRef {
        session_id: sess.id,
        tid: &sess.transport_id,
        rel_tgt_id: sess.target.rel_tgt_id(),
    };
    let cdb: &[u8] = &cmd.cdb;
    let access = op_access(cdb);
    if !core {
        let st = resv.state.lock();
        return conflicts(&st, &n, access).then(|| Response::status(status::RESERVATION_CONFLICT));
    }

    // PR OUT: the parameter list is what arrived, cut to the CDB's length (a short
    // transfer then fails the list length checks), and the target ports when the action
    // needs them, gathered before the reservation lock since that walks the registry.
    let mut data_out_len = None;
    let mut list = Vec::new();
    let mut ports = Vec::new();
    if opcode == op::PERSISTENT_RESERVE_OUT {
        let len = match pr::pr_out_param_len(cdb) {
            Ok(len) => len as usize,
            Err(s) => return Some(finish(td, Response::check(s))),
        };
        data_out_len = Some(len as u32);
        list = cmd.data_out[..len.min(cmd.data_out.len())].to_vec();
        if pr::pr_out_needs_ports(cdb, &list) {
            ports = td.device.target_ports();
        }
    }

    let (mut resp, fx) = {
        let mut st = resv.state.lock();
        if opcode == op::PERSISTENT_RESERVE_OUT && st.needs_durable(pr::pr_out_aptpl(cdb, &list)) {
            // The new state must be on disk before the command completes: not on a
            // network thread. `Session::execute` runs it through `execute_durable`.
            return None;
        }
        let out = if conflicts(&st, &n, access) {
            (
                Response::status(status::RESERVATION_CONFLICT),
                Effects::default(),
            )
        } else {
            match opcode {
                op::RESERVE_6 | op::RESERVE_10 => (reserve(&mut st, &n, cdb), Effects::default()),
                op::RELEASE_6 | op::RELEASE_10 => (release(&mut st, &n, cdb), Effects::default()),
                op::PERSISTENT_RESERVE_IN => (pr::pr_in(&st.pr, cdb), Effects::default()),
                _ if st.spc2_holder.is_some() => {
                    // PR and SPC-2 reservations do not mix (scst-reference 5.3.2).
                    (
                        Response::status(status::RESERVATION_CONFLICT),
                        Effects::default(),
                    )
                }
                _ => pr::execute_pr_out(&mut st.pr, &n, cdb, &list, &ports),
            }
        };
        resv.publish(&st);
        out
    };
    deliver(&td.device, sess.id, fx);
    resp.data_out_len = data_out_len;
    Some(finish(td, resp))
}

fn finish(td: &TgtDev, r: Response) -> Response {
    crate::error::in_device_format(td.device.dev.as_ref(), r)
}

/// SPC-2 RESERVE(6)/(10): third-party and extent reservations are not supported.
fn reserve(st: &mut ResvState, n: &NexusRef<'_>, cdb: &[u8]) -> Response {
    if let Err(s) = check_spc2_cdb(cdb) {
        return Response::check(s);
    }
    if !st.pr.registrants.is_empty() {
        return crh(st, n);
    }
    match st.spc2_holder {
        Some(h) if h != n.session_id => Response::status(status::RESERVATION_CONFLICT),
        _ => {
            st.spc2_holder = Some(n.session_id);
            Response::good()
        }
    }
}

/// SPC-2 RELEASE(6)/(10): a non-holder's RELEASE succeeds without effect.
fn release(st: &mut ResvState, n: &NexusRef<'_>, cdb: &[u8]) -> Response {
    if let Err(s) = check_spc2_cdb(cdb) {
        return Response::check(s);
    }
    if !st.pr.registrants.is_empty() {
        return crh(st, n);
    }
    if st.spc2_holder == Some(n.session_id) {
        st.spc2_holder = None;
    }
    Response::good()
}

/// With PR registrants present RESERVE/RELEASE follow Compatible Reservation Handling.
fn crh(st: &ResvState, n: &NexusRef<'_>) -> Response {
    if st.pr.crh_allows(n) {
        Response::good()
    } else {
        Response::status(status::RESERVATION_CONFLICT)
    }
}

/// RESERVE(6)/RELEASE(6) byte 1 bit 0 is the obsolete extent bit; RESERVE(10)/RELEASE(10)
/// byte 1 has 3RDPTY (bit 4) and LONGID (bit 1). SCST rejects all of them.
fn check_spc2_cdb(cdb: &[u8]) -> Result<(), Sense> {
    let b1 = scsi_wire::cdb::u8_at(cdb, 1)?;
    match cdb[0] {
        op::RESERVE_6 | op::RELEASE_6 if b1 & 0x01 != 0 => {
            Err(Sense::invalid_field_in_cdb(1, Some(0)))
        }
        op::RESERVE_10 | op::RELEASE_10 if b1 & 0x10 != 0 => {
            Err(Sense::invalid_field_in_cdb(1, Some(4)))
        }
        op::RESERVE_10 | op::RELEASE_10 if b1 & 0x02 != 0 => {
            Err(Sense::invalid_field_in_cdb(1, Some(1)))
        }
        _ => Ok(()),
    }
}

/// Queue the unit attentions and abort the tasks a PR OUT caused on other nexuses.
fn deliver(dev: &Arc<DeviceEntry>, sender: u64, fx: Effects) {
    if fx.uas.is_empty() && fx.aborts.is_empty() {
        return;
    }
    let mut aborted: Vec<u64> = Vec::new();
    for td in dev.tgt_devs() {
        let Some(s) = td.session() else { continue };
        if s.id == sender {
            continue;
        }
        let port = s.target.rel_tgt_id();
        let hits = |tid: &crate::session::TransportId, rel: u16| {
            rel == port && pr::tid_matches(tid, &s.transport_id)
        };
        for (tid, rel, sense) in &fx.uas {
            if hits(tid, *rel) {
                td.queue_ua(*sense);
            }
        }
        if !aborted.contains(&s.id) && fx.aborts.iter().any(|(tid, rel)| hits(tid, *rel)) {
            aborted.push(s.id);
            td.queue_ua(Sense::UA_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
            s.events().abort_device_tasks(dev);
        }
    }
}

/// PERSISTENT RESERVE OUT whose state goes to the APTPL file (see `route`): in Inline
/// mode `None` (the transport re-runs it on an I/O thread); in Blocking mode execute it,
/// write or remove the file before answering and deliver the effects only once the state
/// is durable. A failed write rolls the state back and fails the command.
pub(crate) fn execute_durable(
    sess: &Session,
    td: &TgtDev,
    cmd: &Cmd,
    mode: ExecMode,
) -> Option<Response> {
    if mode == ExecMode::Inline {
        return None;
    }
    let cdb: &[u8] = &cmd.cdb;
    let len = match pr::pr_out_param_len(cdb) {
        Ok(len) => len as usize,
        Err(s) => return Some(finish(td, Response::check(s))),
    };
    let list = &cmd.data_out[..len.min(cmd.data_out.len())];
    let ports = if pr::pr_out_needs_ports(cdb, list) {
        td.device.target_ports()
    } else {
        Vec::new()
    };
    let n = NexusRef {
        session_id: sess.id,
        tid: &sess.transport_id,
        rel_tgt_id: sess.target.rel_tgt_id(),
    };
    let resv = &td.device.resv;
    let _order = resv.persist.lock();
    let (mut resp, mut fx, old, plan) = {
        let mut st = resv.state.lock();
        let old = st.pr.clone();
        let (resp, fx) = if conflicts(&st, &n, op_access(cdb)) || st.spc2_holder.is_some() {
            (
                Response::status(status::RESERVATION_CONFLICT),
                Effects::default(),
            )
        } else {
            pr::execute_pr_out(&mut st.pr, &n, cdb, list, &ports)
        };
        resv.publish(&st);
        // The file holds the state while APTPL=1 and registrants exist; else it goes.
        let plan = match &st.pr_file {
            Some(path) if st.pr != old && (old.aptpl || st.pr.aptpl || st.file_present) => {
                let keep = st.pr.aptpl && !st.pr.registrants.is_empty();
                Some((path.clone(), keep.then(|| pr_persist::format_text(&st.pr))))
            }
            _ => None,
        };
        (resp, fx, old, plan)
    };
    if let Some((path, text)) = plan {
        let res = match &text {
            Some(t) => pr_persist::write_atomic(&path, t.as_bytes()),
            None => pr_persist::remove_durable(&path),
        };
        let mut st = resv.state.lock();
        match res {
            Ok(()) => st.file_present = text.is_some(),
            Err(e) => {
                log::error!(
                    "device {}: persistent reservation state not made durable ({e}); \
                     PR OUT failed, state rolled back",
                    td.device.name()
                );
                st.pr = old;
                // The rename may have happened before a failed directory fsync: then
                // the file must be rewritten (or removed) with the next change.
                st.file_present = st.file_present || path.exists();
                resv.publish(&st);
                resp = Response::check(PR_NOT_DURABLE);
                fx = Effects::default();
            }
        }
    }
    deliver(&td.device, sess.id, fx);
    resp.data_out_len = Some(len as u32);
    Some(finish(td, resp))
}

impl DeviceEntry {
    /// The `pr_state` attribute (scst-reference 5.3.5): the persistent reservation state as text.
    pub fn pr_state_text(&self) -> String {
        pr_persist::format_text(&self.resv.pr_state())
    }

    /// Write of the `pr_state` attribute: replace the PR state with `text` (scst-reference 5.3.5).
    /// Refused while any LUN exports the device. The imported state has APTPL=0 (the
    /// format carries no APTPL bit), so an existing APTPL file is removed; the next
    /// REGISTER with APTPL=1 makes it persistent again.
    pub fn import_pr_state(&self, text: &str) -> Result<(), crate::MgmtError> {
        if !self.target_ports().is_empty() {
            return Err(crate::MgmtError::Busy {
                kind: "device",
                name: self.name().to_string(),
                why: "pr_state can only be imported while no LUN exports the device".into(),
            });
        }
        let new = pr_persist::parse_text(text).map_err(|e| {
            crate::MgmtError::Invalid(format!("device '{}': pr_state: {e}", self.name()))
        })?;
        let resv = &self.resv;
        let _order = resv.persist.lock();
        let stale = {
            let mut st = resv.state.lock();
            st.pr = new;
            resv.publish(&st);
            st.pr_file.clone().filter(|_| st.file_present)
        };
        if let Some(path) = stale {
            match pr_persist::remove_durable(&path) {
                Ok(()) => resv.state.lock().file_present = false,
                Err(e) => log::error!(
                    "device {}: stale APTPL file not removed after pr_state import: {e}",
                    self.name()
                ),
            }
        }
        Ok(())
    }

    /// Snapshot of the device's persistent reservation state.
    pub fn pr_state(&self) -> PrState {
        self.resv.pr_state()
    }
}
