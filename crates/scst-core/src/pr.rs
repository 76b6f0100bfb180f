//! Persistent reservations (SPC-4 5.13, 6.16, 6.17; docs/scst-reference.md 5.3.2): the per-device
//! registration and reservation state, PERSISTENT RESERVE IN/OUT execution and the
//! access rule the core applies to every command while a reservation exists.
//!
//! Everything here runs under the device's reservation lock and only computes: unit
//! attentions and task aborts for other nexuses are returned as `Effects` and
//! delivered by the caller after the lock is dropped, so the lock never nests inside
//! a tgt_dev or session lock.

use scsi_wire::asc;
use scsi_wire::pr::{sa_in, sa_out, IscsiTid, PrOutParams, RegisterMoveParams};
use scsi_wire::sense::key;
use scsi_wire::{status, Sense};

use crate::cmd::Response;
use crate::session::TransportId;

/// INVALID RELEASE OF PERSISTENT RESERVATION (SPC-4: RELEASE with the wrong type/scope).
pub const INVALID_RELEASE: Sense = Sense::named(
    key::ILLEGAL_REQUEST,
    asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
);

/// Largest PR OUT parameter list accepted; SPEC_I_PT lists of a few hundred
/// TransportIDs fit many times over.
const MAX_PARAM_LIST: u32 = 1 << 20;

/// Persistent reservation types (SPC-4 table 211).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PrType {
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WriteExclusiveRegistrantsOnly = 5,
    ExclusiveAccessRegistrantsOnly = 6,
    WriteExclusiveAllRegistrants = 7,
    ExclusiveAccessAllRegistrants = 8,
}

impl PrType {
    pub fn from_u8(t: u8) -> Option<PrType> {
        Some(match t {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WriteExclusiveRegistrantsOnly,
            6 => PrType::ExclusiveAccessRegistrantsOnly,
            7 => PrType::WriteExclusiveAllRegistrants,
            8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// Every registrant is a reservation holder.
    pub fn all_registrants(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants
        )
    }

    /// Registrants only or all registrants: registration alone grants access.
    pub fn registrants_type(self) -> bool {
        !matches!(self, PrType::WriteExclusive | PrType::ExclusiveAccess)
    }

    /// Exclusive access types also keep non-holders from reading.
    pub fn exclusive_access(self) -> bool {
        matches!(
            self,
            PrType::ExclusiveAccess
                | PrType::ExclusiveAccessRegistrantsOnly
                | PrType::ExclusiveAccessAllRegistrants
        )
    }
}

/// The reservation itself: its type and scope (always 0, LU scope, today).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrReservation {
    pub pr_type: PrType,
    pub scope: u8,
}

/// One registered I_T nexus. `tid` may be name-only (registered through SPEC_I_PT with a
/// format 00b TransportID): it then stands for every ISID of that initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrRegistrant {
    pub tid: TransportId,
    pub rel_tgt_id: u16,
    pub key: u64,
    /// Holds the reservation (meaningful for non all-registrants types; all-registrants
    /// reservations are held by every registrant). Mirrors SCST's APTPL file layout.
    pub holder: bool,
}

/// A device's persistent reservation state. Plain data, in SCST's `pr_state` /
/// APTPL-file terms, so it can be exported and re-imported later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrState {
    pub generation: u32,
    /// Activate Persist Through Power Loss, as last set by a REGISTER-type action.
    pub aptpl: bool,
    pub reservation: Option<PrReservation>,
    /// In registration order (READ KEYS / READ FULL STATUS report them so).
    pub registrants: Vec<PrRegistrant>,
}

/// The nexus a command came in on, borrowed from its session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NexusRef<'a> {
    pub session_id: u64,
    pub tid: &'a TransportId,
    pub rel_tgt_id: u16,
}

/// Name compare ignores case; a name-only TransportID matches any ISID (scst-reference 5.3.3).
pub(crate) fn tid_matches(a: &TransportId, b: &TransportId) -> bool {
    a.matches(b)
}

/// What a PR OUT does to other nexuses, applied once the reservation lock is released.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Unit attentions for the nexuses (TransportID, relative target port) matching.
    pub uas: Vec<(TransportId, u16, Sense)>,
    /// Nexuses whose tasks on the device PREEMPT AND ABORT aborts.
    pub aborts: Vec<(TransportId, u16)>,
}

impl Effects {
    fn ua(&mut self, r: &PrRegistrant, sense: Sense) {
        self.uas.push((r.tid.clone(), r.rel_tgt_id, sense));
    }
}

impl PrRegistrant {
    fn is(&self, n: &NexusRef<'_>) -> bool {
        self.rel_tgt_id == n.rel_tgt_id && tid_matches(&self.tid, n.tid)
    }
}

impl PrState {
    /// The registration of a nexus.
    pub(crate) fn find(&self, n: &NexusRef<'_>) -> Option<usize> {
        self.registrants.iter().position(|r| r.is(n))
    }

    fn is_holder(&self, i: usize) -> bool {
        match self.reservation {
            Some(res) if res.pr_type.all_registrants() => true,
            Some(_) => self.registrants.get(i).is_some_and(|r| r.holder),
            None => false,
        }
    }

    /// SPC-4 5.13.1 (table "commands allowed in the presence of various reservations"):
    /// holders, and registrants under the registrants-only / all-registrants types, may
    /// do anything; everyone else only what the opcode's flags allow for the type.
    pub(crate) fn access_allowed(&self, n: &NexusRef<'_>, we_ok: bool, ea_ok: bool) -> bool {
        let Some(res) = self.reservation else {
            return true;
        };
        if let Some(i) = self.find(n) {
            if self.is_holder(i) || res.pr_type.registrants_type() {
                return true;
            }
        }
        if res.pr_type.exclusive_access() {
            ea_ok
        } else {
            we_ok
        }
    }

    /// SPC-4 5.13.3 Compatible Reservation Handling (CRH=1): with registrants present
    /// RESERVE/RELEASE are no-ops for the nexuses PR would let through (the holder for
    /// WE/EA, any registrant for the other types) and conflicts for everyone else.
    pub(crate) fn crh_allows(&self, n: &NexusRef<'_>) -> bool {
        let Some(res) = self.reservation else {
            return false;
        };
        match self.find(n) {
            Some(i) => res.pr_type.registrants_type() || self.is_holder(i),
            None => false,
        }
    }

    /// Remove the registrations `pred` selects, never the sender's own; returns them.
    /// Releases the reservation when its holder goes (or, for all-registrants types,
    /// when the last registrant goes).
    fn remove_where(
        &mut self,
        sender: &NexusRef<'_>,
        pred: impl Fn(&PrRegistrant) -> bool,
    ) -> Vec<PrRegistrant> {
        let (removed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.registrants)
            .into_iter()
            .partition(|r| !r.is(sender) && pred(r));
        self.registrants = kept;
        self.drop_orphan_reservation();
        removed
    }

    /// A reservation whose holder is gone no longer exists.
    fn drop_orphan_reservation(&mut self) {
        if let Some(res) = self.reservation {
            let held = if res.pr_type.all_registrants() {
                !self.registrants.is_empty()
            } else {
                self.registrants.iter().any(|r| r.holder)
            };
            if !held {
                self.reservation = None;
            }
        }
    }

    /// Make the sender's registration hold a new reservation.
    fn reserve_for(&mut self, i: usize, res: PrReservation) {
        for r in &mut self.registrants {
            r.holder = false;
        }
        if !res.pr_type.all_registrants() {
            if let Some(r) = self.registrants.get_mut(i) {
                r.holder = true;
            }
        }
        self.reservation = Some(res);
    }

    fn release(&mut self) {
        self.reservation = None;
        for r in &mut self.registrants {
            r.holder = false;
        }
    }

    fn bump_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }
}

fn conflict() -> Response {
    Response::status(status::RESERVATION_CONFLICT)
}

fn check(sense: Sense) -> Response {
    Response::check(sense)
}

fn tid_from_wire(t: IscsiTid) -> TransportId {
    TransportId::iscsi(t.name, t.isid)
}

/// The PR OUT parameter list length (CDB bytes 5..9), or the error for a bad CDB.
pub(crate) fn pr_out_param_len(cdb: &[u8]) -> Result<u32, Sense> {
    let len = scsi_wire::cdb::be32(cdb, 5)?;
    if len > MAX_PARAM_LIST {
        return Err(Sense::invalid_field_in_cdb(5, None));
    }
    Ok(len)
}

/// Whether executing this PR OUT needs the list of target ports exporting the device
/// (ALL_TG_PT registration, REGISTER AND MOVE's destination port check).
pub(crate) fn pr_out_needs_ports(cdb: &[u8], list: &[u8]) -> bool {
    let sa = cdb.get(1).map_or(0, |b| b & 0x1F);
    sa == sa_out::REGISTER_AND_MOVE || list.get(20).is_some_and(|f| f & 0x04 != 0)
}

/// Whether a PR OUT's parameter list sets APTPL (byte 20 bit 0; REGISTER AND MOVE has
/// it in byte 17). Only a hint for where to run the command: parsing decides.
pub(crate) fn pr_out_aptpl(cdb: &[u8], list: &[u8]) -> bool {
    let sa = cdb.get(1).map_or(0, |b| b & 0x1F);
    let at = if sa == sa_out::REGISTER_AND_MOVE {
        17
    } else {
        20
    };
    list.get(at).is_some_and(|f| f & 0x01 != 0)
}

/// Validate the CDB's scope and type for the actions that carry them.
fn scope_type(cdb: &[u8]) -> Result<PrReservation, Response> {
    let b = cdb[2];
    if b >> 4 != 0 {
        return Err(check(Sense::invalid_field_in_cdb(2, Some(7))));
    }
    let pr_type =
        PrType::from_u8(b & 0x0F).ok_or_else(|| check(Sense::invalid_field_in_cdb(2, Some(3))))?;
    Ok(PrReservation { pr_type, scope: 0 })
}

/// PERSISTENT RESERVE OUT (SPC-4 6.17). `list` is the parameter list, already sized to
/// the CDB's parameter list length. `ports` are the relative target port ids that
/// export the device (only consulted when [`pr_out_needs_ports`] said so).
pub(crate) fn pr_out(
    st: &mut PrState,
    n: &NexusRef<'_>,
    cdb: &[u8],
    list: &[u8],
    ports: &[u16],
    fx: &mut Effects,
) -> Result<(), Response> {
    if cdb.len() < 10 {
        return Err(check(Sense::invalid_field_in_cdb(cdb.len() as u16, None)));
    }
    let sa = cdb[1] & 0x1F;
    match sa {
        sa_out::REGISTER | sa_out::REGISTER_AND_IGNORE => register(st, n, sa, list, ports, fx),
        sa_out::RESERVE => {
            let want = scope_type(cdb)?;
            let p = PrOutParams::parse(sa, list).map_err(check)?;
            let i = registered_with_key(st, n, p.key)?;
            match st.reservation {
                // Re-reserving what one already holds is a no-op; anything else conflicts.
                Some(res) if res == want && st.is_holder(i) => Ok(()),
                Some(_) => Err(conflict()),
                None => {
                    st.reserve_for(i, want);
                    Ok(())
                }
            }
        }
        sa_out::RELEASE => {
            let p = PrOutParams::parse(sa, list).map_err(check)?;
            let i = registered_with_key(st, n, p.key)?;
            let Some(res) = st.reservation else {
                return Ok(());
            };
            if !st.is_holder(i) {
                return Ok(());
            }
            let b = cdb[2];
            if b >> 4 != res.scope || b & 0x0F != res.pr_type as u8 {
                return Err(check(INVALID_RELEASE));
            }
            st.release();
            // Others only learn of it for types where they had access through it.
            if res.pr_type.registrants_type() {
                for r in st.registrants.iter().filter(|r| !r.is(n)) {
                    fx.ua(r, Sense::UA_RESERVATIONS_RELEASED);
                }
            }
            Ok(())
        }
        sa_out::CLEAR => {
            let p = PrOutParams::parse(sa, list).map_err(check)?;
            registered_with_key(st, n, p.key)?;
            for r in st.registrants.iter().filter(|r| !r.is(n)) {
                fx.ua(r, Sense::UA_RESERVATIONS_PREEMPTED);
            }
            st.registrants.clear();
            st.reservation = None;
            st.bump_generation();
            Ok(())
        }
        sa_out::PREEMPT | sa_out::PREEMPT_AND_ABORT => {
            let want = scope_type(cdb)?;
            let p = PrOutParams::parse(sa, list).map_err(check)?;
            registered_with_key(st, n, p.key)?;
            let removed = preempt(st, n, want, p.sa_key, fx)?;
            if sa == sa_out::PREEMPT_AND_ABORT {
                fx.aborts
                    .extend(removed.iter().map(|r| (r.tid.clone(), r.rel_tgt_id)));
            }
            st.bump_generation();
            Ok(())
        }
        sa_out::REGISTER_AND_MOVE => register_and_move(st, n, list, ports),
        _ => Err(check(Sense::invalid_field_in_cdb(1, Some(4)))),
    }
}

/// The sender's registration, which must exist and carry `key` (SPC-4 5.13.2 table
/// "PR OUT service actions and valid RESERVATION KEY field values").
fn registered_with_key(st: &PrState, n: &NexusRef<'_>, key: u64) -> Result<usize, Response> {
    match st.find(n) {
        Some(i) if st.registrants[i].key == key => Ok(i),
        _ => Err(conflict()),
    }
}

/// REGISTER and REGISTER AND IGNORE EXISTING KEY (SPC-4 5.13.7).
fn register(
    st: &mut PrState,
    n: &NexusRef<'_>,
    sa: u8,
    list: &[u8],
    ports: &[u16],
    fx: &mut Effects,
) -> Result<(), Response> {
    let p = PrOutParams::parse(sa, list).map_err(check)?;
    let ignore = sa == sa_out::REGISTER_AND_IGNORE;
    match st.find(n) {
        None => {
            if !ignore && p.key != 0 {
                return Err(conflict());
            }
            if p.sa_key == 0 {
                // Unregistering what is not registered: nothing to do.
                return Ok(());
            }
            let mut my_ports = vec![n.rel_tgt_id];
            if p.all_tg_pt {
                my_ports.extend(ports.iter().copied().filter(|&id| id != n.rel_tgt_id));
            }
            let mut new = Vec::new();
            let registered = |st: &PrState, tid: &TransportId, port: u16| {
                st.registrants
                    .iter()
                    .any(|r| r.rel_tgt_id == port && tid_matches(&r.tid, tid))
            };
            for &port in &my_ports {
                // On other ports this initiator may have registered already: keep those.
                if !registered(st, n.tid, port) {
                    new.push(PrRegistrant {
                        tid: n.tid.clone(),
                        rel_tgt_id: port,
                        key: p.sa_key,
                        holder: false,
                    });
                }
            }
            for t in p.tids {
                let tid = tid_from_wire(t);
                for &port in &my_ports {
                    if tid_matches(&tid, n.tid) {
                        continue; // the sender itself, registered above
                    }
                    let dup = new
                        .iter()
                        .any(|r: &PrRegistrant| r.rel_tgt_id == port && tid_matches(&r.tid, &tid));
                    if registered(st, &tid, port) || dup {
                        // SPC-4 5.13.7: no change at all if any of them is registered.
                        return Err(conflict());
                    }
                    new.push(PrRegistrant {
                        tid: tid.clone(),
                        rel_tgt_id: port,
                        key: p.sa_key,
                        holder: false,
                    });
                }
            }
            st.registrants.extend(new);
        }
        Some(i) => {
            if !ignore && p.key != st.registrants[i].key {
                return Err(conflict());
            }
            if p.spec_i_pt {
                return Err(check(Sense::invalid_field_in_param(20, Some(3))));
            }
            if p.sa_key == 0 {
                unregister(st, i, n, fx);
                if st.registrants.is_empty() {
                    st.aptpl = false; // nothing left to persist
                }
                st.bump_generation();
                return Ok(());
            }
            st.registrants[i].key = p.sa_key;
        }
    }
    st.aptpl = p.aptpl;
    st.bump_generation();
    Ok(())
}

/// Drop registration `i`. A holder leaving releases a non all-registrants reservation;
/// with a registrants-only type the remaining registrants are told (SPC-4 5.13.11.2.2).
fn unregister(st: &mut PrState, i: usize, n: &NexusRef<'_>, fx: &mut Effects) {
    let old = st.reservation;
    let was_holder = st.is_holder(i);
    st.registrants.remove(i);
    st.drop_orphan_reservation();
    if let Some(res) = old {
        if was_holder && st.reservation.is_none() && res.pr_type.registrants_type() {
            for r in st.registrants.iter().filter(|r| !r.is(n)) {
                fx.ua(r, Sense::UA_RESERVATIONS_RELEASED);
            }
        }
    }
}

/// PREEMPT / PREEMPT AND ABORT (SPC-4 5.13.11.2.4). Returns the removed registrations.
fn preempt(
    st: &mut PrState,
    n: &NexusRef<'_>,
    want: PrReservation,
    sa_key: u64,
    fx: &mut Effects,
) -> Result<Vec<PrRegistrant>, Response> {
    let all_reg = st.reservation.is_some_and(|r| r.pr_type.all_registrants());
    if sa_key == 0 && !all_reg {
        // Zero names no registration; only an all-registrants reservation gives it a
        // meaning (preempt everybody).
        return Err(check(Sense::invalid_field_in_param(8, None)));
    }
    let holder_key = st.registrants.iter().find(|r| r.holder).map(|r| r.key);
    let old = st.reservation;
    let removed;
    let takes_reservation = match old {
        None => false,
        Some(_) if all_reg => sa_key == 0,
        Some(_) => holder_key == Some(sa_key),
    };
    if takes_reservation {
        removed = if all_reg {
            st.remove_where(n, |_| true)
        } else {
            st.remove_where(n, |r| r.key == sa_key)
        };
        let i = st.find(n).ok_or_else(conflict)?;
        st.reserve_for(i, want);
        // Survivors lose access they had through the old type or scope.
        if old != Some(want) {
            for r in st.registrants.iter().filter(|r| !r.is(n)) {
                fx.ua(r, Sense::UA_RESERVATIONS_RELEASED);
            }
        }
    } else {
        removed = st.remove_where(n, |r| r.key == sa_key);
        if removed.is_empty() {
            return Err(conflict());
        }
    }
    for r in &removed {
        fx.ua(r, Sense::UA_REGISTRATIONS_PREEMPTED);
    }
    Ok(removed)
}

/// REGISTER AND MOVE (SPC-4 5.13.8): hand the reservation to another nexus.
fn register_and_move(
    st: &mut PrState,
    n: &NexusRef<'_>,
    list: &[u8],
    ports: &[u16],
) -> Result<(), Response> {
    let p = RegisterMoveParams::parse(list).map_err(check)?;
    let i = registered_with_key(st, n, p.key)?;
    match st.reservation {
        Some(res) if !res.pr_type.all_registrants() && st.is_holder(i) => {}
        _ => return Err(conflict()),
    }
    if p.sa_key == 0 {
        return Err(check(Sense::invalid_field_in_param(8, None)));
    }
    if p.rel_tgt_id != n.rel_tgt_id && !ports.contains(&p.rel_tgt_id) {
        return Err(check(Sense::invalid_field_in_param(18, None)));
    }
    let dest_tid = tid_from_wire(p.tid);
    if p.rel_tgt_id == n.rel_tgt_id && tid_matches(&dest_tid, n.tid) {
        return Err(check(Sense::invalid_field_in_param(24, None)));
    }
    let dest = NexusRef {
        session_id: 0,
        tid: &dest_tid,
        rel_tgt_id: p.rel_tgt_id,
    };
    let d = match st.find(&dest) {
        Some(d) => {
            st.registrants[d].key = p.sa_key;
            d
        }
        None => {
            st.registrants.push(PrRegistrant {
                tid: dest_tid.clone(),
                rel_tgt_id: p.rel_tgt_id,
                key: p.sa_key,
                holder: false,
            });
            st.registrants.len() - 1
        }
    };
    st.registrants[i].holder = false;
    st.registrants[d].holder = true;
    if p.unreg {
        st.registrants.remove(i);
    }
    st.aptpl = p.aptpl;
    st.bump_generation();
    Ok(())
}

/// Run a PR OUT: the response, and the effects on other nexuses (empty on failure).
pub(crate) fn execute_pr_out(
    st: &mut PrState,
    n: &NexusRef<'_>,
    cdb: &[u8],
    list: &[u8],
    ports: &[u16],
) -> (Response, Effects) {
    let mut fx = Effects::default();
    match pr_out(st, n, cdb, list, ports, &mut fx) {
        Ok(()) => (Response::good(), fx),
        Err(r) => (r, Effects::default()),
    }
}

/// PERSISTENT RESERVE IN (SPC-4 6.16).
pub(crate) fn pr_in(st: &PrState, cdb: &[u8]) -> Response {
    if cdb.len() < 10 {
        return check(Sense::invalid_field_in_cdb(cdb.len() as u16, None));
    }
    let alloc = u16::from_be_bytes([cdb[7], cdb[8]]) as usize;
    let mut d = Vec::new();
    d.extend_from_slice(&st.generation.to_be_bytes());
    match cdb[1] & 0x1F {
        sa_in::READ_KEYS => {
            d.extend_from_slice(&((st.registrants.len() * 8) as u32).to_be_bytes());
            for r in &st.registrants {
                d.extend_from_slice(&r.key.to_be_bytes());
            }
        }
        sa_in::READ_RESERVATION => match st.reservation {
            Some(res) => {
                d.extend_from_slice(&16u32.to_be_bytes());
                // All-registrants reservations report key 0 (SPC-4 6.16.3.2).
                let key = if res.pr_type.all_registrants() {
                    0
                } else {
                    st.registrants
                        .iter()
                        .find(|r| r.holder)
                        .map_or(0, |r| r.key)
                };
                d.extend_from_slice(&key.to_be_bytes());
                d.extend_from_slice(&[0; 4]); // obsolete
                d.push(0);
                d.push(res.scope << 4 | res.pr_type as u8);
                d.extend_from_slice(&[0; 2]); // obsolete
            }
            None => d.extend_from_slice(&0u32.to_be_bytes()),
        },
        sa_in::REPORT_CAPABILITIES => {
            d.clear();
            d.extend_from_slice(&8u16.to_be_bytes());
            // CRH, SIP_C, ATP_C, PTPL_C.
            d.push(0x10 | 0x08 | 0x04 | 0x01);
            // TMV, ALLOW COMMANDS 100b, PTPL_A.
            d.push(0x80 | 0x40 | st.aptpl as u8);
            // Type mask: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX | EX_AC_AR.
            d.extend_from_slice(&[0xEA, 0x01, 0, 0]);
        }
        sa_in::READ_FULL_STATUS => {
            d.extend_from_slice(&[0; 4]); // additional length, set below
            for (i, r) in st.registrants.iter().enumerate() {
                let tid = r.tid.encode();
                d.extend_from_slice(&r.key.to_be_bytes());
                d.extend_from_slice(&[0; 4]);
                let holder = st.is_holder(i);
                d.push(holder as u8); // ALL_TG_PT 0: registrations are per port
                d.push(match (holder, st.reservation) {
                    (true, Some(res)) => res.scope << 4 | res.pr_type as u8,
                    _ => 0,
                });
                d.extend_from_slice(&[0; 4]);
                d.extend_from_slice(&r.rel_tgt_id.to_be_bytes());
                d.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                d.extend_from_slice(&tid);
            }
            let addl = (d.len() - 8) as u32;
            d[4..8].copy_from_slice(&addl.to_be_bytes());
        }
        _ => return check(Sense::invalid_field_in_cdb(1, Some(4))),
    }
    Response::data_alloc(d, alloc)
}
