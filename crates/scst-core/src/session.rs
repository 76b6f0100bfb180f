//! Sessions (I_T nexuses) and tgt_devs (I_T_L nexuses): LUN translation, unit
//! attentions, the commands the core answers itself, and task management effects that
//! reach across sessions (docs/scst-reference.md 4.1, 4.2, 5.1, 5.2).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use scsi_wire::lun::encode_lun;
use scsi_wire::Sense;

use crate::cmd::{Cmd, ExecMode, Response};
use crate::core_cmds::{self, Owner};
use crate::device::CmdCtx;
use crate::registry::DeviceEntry;
use crate::target::{LunEntry, LunSet, Target};

/// How the core reaches a session's transport for effects that originate elsewhere
/// (another initiator's LUN RESET, a management force_close).
pub trait SessionEvents: Send + Sync {
    /// Abort this session's tasks on `device` without responding to them: another nexus
    /// reset or cleared the task set.
    fn abort_device_tasks(&self, device: &Arc<DeviceEntry>);
    /// Drop the session's connections (force_close, reinstatement, target removal).
    fn close(&self);
    /// The session's LUN table changed (a LUN added, removed or replaced): transports
    /// that can tell their initiator at once (virtio-scsi's hotplug events) do so; the
    /// REPORTED LUNS DATA HAS CHANGED unit attention is queued either way.
    fn luns_changed(&self) {}
    /// A unit attention about the device itself was queued on `lun` (capacity, inquiry
    /// data, medium changed): transports with an asynchronous event for it (virtio-scsi's
    /// parameter change) report it at once; the UA itself is queued either way.
    fn unit_attention(&self, _lun: u64, _sense: Sense) {}
}

/// One session's view of one LUN (SCST's `struct scst_tgt_dev`).
pub struct TgtDev {
    pub lun: u64,
    /// The session's id, kept so a retired nexus can still release what its session
    /// held on the device after the session itself is gone.
    pub(crate) session_id: u64,
    pub device: Arc<DeviceEntry>,
    pub read_only: bool,
    session: Weak<Session>,
    /// Commands of this nexus executing on the device now (`lun<N>/active_commands`).
    active: AtomicUsize,
    /// Pending unit attentions, oldest first. `ua_pending` mirrors non-emptiness so the
    /// per-command check is one atomic load.
    ua: Mutex<VecDeque<Sense>>,
    ua_pending: AtomicBool,
    /// Commands, bytes, errors and latency of this nexus (the nexus's thread writes them).
    pub stats: crate::stats::LunStats,
}

/// Upper bound on queued UAs per nexus; beyond it the oldest are dropped (SCST caps too).
const MAX_QUEUED_UAS: usize = 16;

/// Sessions and tgt_devs alive in this process, registered or only still referenced:
/// the management tree shows them so that leaks are visible. Relaxed, being statistics.
static LIVE_SESSIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE_TGT_DEVS: AtomicUsize = AtomicUsize::new(0);

/// (sessions, tgt_devs) alive now.
pub fn live_counts() -> (usize, usize) {
    (
        LIVE_SESSIONS.load(Ordering::Relaxed),
        LIVE_TGT_DEVS.load(Ordering::Relaxed),
    )
}

impl Drop for TgtDev {
    fn drop(&mut self) {
        LIVE_TGT_DEVS.fetch_sub(1, Ordering::Relaxed);
        // Device and session totals keep what this nexus counted; a session being
        // dropped has taken its LUNs' counts already (`Session::drop`).
        self.device.retired.absorb(&self.stats);
        if let Some(s) = self.session.upgrade() {
            s.retired.absorb(&self.stats);
        }
    }
}

impl TgtDev {
    /// A new I_T_L nexus of `session` for `entry`, starting with `uas` pending, and
    /// known to its device (device-wide UAs and resets reach it).
    pub(crate) fn attach(
        session: &Weak<Session>,
        session_id: u64,
        lun: u64,
        entry: &LunEntry,
        uas: VecDeque<Sense>,
    ) -> Arc<TgtDev> {
        let pending = !uas.is_empty();
        LIVE_TGT_DEVS.fetch_add(1, Ordering::Relaxed);
        let td = Arc::new(TgtDev {
            lun,
            session_id,
            device: entry.device.clone(),
            read_only: entry.read_only,
            session: session.clone(),
            active: AtomicUsize::new(0),
            ua: Mutex::new(uas),
            ua_pending: AtomicBool::new(pending),
            stats: Default::default(),
        });
        entry.device.tgt_devs.lock().push(Arc::downgrade(&td));
        td
    }

    /// The nexus left its session's LUN table: device-wide UAs and resets no longer
    /// reach it (commands still holding it finish normally).
    pub(crate) fn detach_from_device(self: &Arc<Self>) {
        let me = Arc::as_ptr(self);
        self.device
            .tgt_devs
            .lock()
            .retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), me));
    }

    /// Commands of this nexus executing on its device now.
    pub fn active_commands(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// The unit attentions queued on this nexus, oldest first (management, tests).
    pub fn pending_uas(&self) -> Vec<Sense> {
        self.ua.lock().iter().copied().collect()
    }

    /// Pending UAs, handed on to the nexus replacing this one.
    pub(crate) fn take_all_uas(&self) -> VecDeque<Sense> {
        let mut q = self.ua.lock();
        self.ua_pending.store(false, Ordering::Release);
        std::mem::take(&mut *q)
    }

    pub fn queue_ua(&self, sense: Sense) {
        let mut q = self.ua.lock();
        if q.contains(&sense) {
            return;
        }
        if q.len() >= MAX_QUEUED_UAS {
            q.pop_front();
        }
        q.push_back(sense);
        self.ua_pending.store(true, Ordering::Release);
    }

    /// Queue a UA ahead of the others (I_T NEXUS LOSS OCCURRED is reported first).
    pub fn queue_ua_first(&self, sense: Sense) {
        let mut q = self.ua.lock();
        q.retain(|s| *s != sense);
        q.push_front(sense);
        self.ua_pending.store(true, Ordering::Release);
    }

    pub fn take_ua(&self) -> Option<Sense> {
        if !self.ua_pending.load(Ordering::Acquire) {
            return None;
        }
        let mut q = self.ua.lock();
        let s = q.pop_front();
        self.ua_pending.store(!q.is_empty(), Ordering::Release);
        s
    }

    pub fn clear_ua(&self, sense: Sense) {
        let mut q = self.ua.lock();
        q.retain(|s| *s != sense);
        self.ua_pending.store(!q.is_empty(), Ordering::Release);
    }

    pub fn has_ua(&self) -> bool {
        self.ua_pending.load(Ordering::Acquire)
    }

    pub fn session(&self) -> Option<Arc<Session>> {
        self.session.upgrade()
    }
}

/// The LUNs a session sees, sorted by LUN number.
#[derive(Default)]
pub struct LunTable {
    pub entries: Vec<Arc<TgtDev>>,
}

impl LunTable {
    pub fn get(&self, lun: u64) -> Option<&Arc<TgtDev>> {
        self.entries
            .binary_search_by_key(&lun, |t| t.lun)
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Where a command goes after the core's checks.
pub enum Route {
    /// The core answered (unknown LUN, pending UA, REPORT LUNS, REQUEST SENSE).
    Done(Response),
    /// Execute on this nexus's device.
    Device(Arc<TgtDev>),
}

/// Task management outcomes (SAM-5 7.x, iSCSI TMF response codes map onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfStatus {
    Complete,
    /// FUNCTION SUCCEEDED: a query found what it asked about (QUERY TASK, QUERY TASK SET).
    Succeeded,
    TaskNotExist,
    LunNotExist,
    NotSupported,
    Rejected,
}

pub use crate::transport_id::TransportId;

pub struct Session {
    pub id: u64,
    pub target: Arc<Target>,
    /// The name the session was registered and ACL-matched under: the initiator's name,
    /// or `<name>#<portal>` with iSCSI's `per_portal_acl`.
    pub initiator_name: String,
    pub transport_id: TransportId,
    /// Name of the initiator group the session was bound to, if any.
    pub group: Option<String>,
    luns: ArcSwap<LunTable>,
    events: Arc<dyn SessionEvents>,
    /// `unregister` has told the devices of the nexus loss.
    gone: AtomicBool,
    /// EXTENDED COPY list identifiers, for RECEIVE COPY RESULTS.
    pub(crate) copy_lists: crate::copy::CopyLists,
    /// I/O statistics and the transport's outstanding-command count.
    pub stats: crate::stats::SessionStats,
    /// What the nexuses that left this session's LUN table had counted.
    pub(crate) retired: crate::stats::LunStats,
    /// Read-only attributes the transport shows in the session's directory (iSCSI:
    /// negotiated keys, `sid`, and `<conn>/<attr>` for each connection).
    transport_attrs: Mutex<Vec<(String, String)>>,
}

impl Session {
    /// A session bound to `set` (resolved by the caller under the target's ACL lock, so
    /// that no LUN set change can slip between the lookup and the session becoming
    /// visible to reconfiguration). `group`: the initiator group of `set`, None for the
    /// target's default set.
    pub(crate) fn new(
        id: u64,
        target: Arc<Target>,
        transport_id: TransportId,
        initiator_name: String,
        events: Arc<dyn SessionEvents>,
        set: &LunSet,
        group: Option<String>,
    ) -> Arc<Session> {
        LIVE_SESSIONS.fetch_add(1, Ordering::Relaxed);
        Arc::new_cyclic(|me: &Weak<Session>| {
            let entries = set
                .luns
                .iter()
                .map(|(&lun, e)| {
                    TgtDev::attach(me, id, lun, e, VecDeque::from([Sense::UA_POWER_ON_RESET]))
                })
                .collect();
            Session {
                id,
                target,
                initiator_name,
                group,
                transport_id,
                luns: ArcSwap::from_pointee(LunTable { entries }),
                events,
                gone: AtomicBool::new(false),
                copy_lists: Default::default(),
                stats: Default::default(),
                retired: Default::default(),
                transport_attrs: Mutex::new(Vec::new()),
            }
        })
    }

    /// Install a new LUN table (live reconfiguration). Callers serialize through the
    /// target's ACL lock; commands keep whichever table they loaded.
    pub(crate) fn store_luns(&self, table: LunTable) {
        self.luns.store(Arc::new(table));
        self.events.luns_changed();
    }

    pub fn set_transport_attrs(&self, attrs: Vec<(String, String)>) {
        *self.transport_attrs.lock() = attrs;
    }

    pub fn transport_attrs(&self) -> Vec<(String, String)> {
        self.transport_attrs.lock().clone()
    }

    pub fn luns(&self) -> arc_swap::Guard<Arc<LunTable>> {
        self.luns.load()
    }

    pub fn events(&self) -> &Arc<dyn SessionEvents> {
        &self.events
    }

    /// LUN translation and the checks made when a task becomes enabled (scst-reference 4.1
    /// steps 1-3): unit attention, ALUA state, SPC-2 and persistent reservations. The
    /// commands the core answers itself (the `core_cmds` table) are answered here,
    /// except those that block, which [`Session::execute`] runs. Target drivers do not
    /// call it: [`crate::lifecycle::Nexus`] does, when the task becomes enabled.
    pub fn route(&self, cmd: &Cmd) -> Route {
        self.stats.count(cmd);
        let table = self.luns.load();
        let Some(td) = table.get(cmd.lun) else {
            return Route::Done(self.unknown_lun(cmd, &table));
        };
        let core = core_cmds::lookup(&cmd.cdb);
        match core.owner {
            Owner::ReportLuns => {
                // The LUN inventory is reported once for the whole session, so the
                // REPORTED LUNS DATA HAS CHANGED queued on each of its LUNs goes.
                for t in &table.entries {
                    t.clear_ua(Sense::UA_REPORTED_LUNS_DATA_CHANGED);
                }
                return Route::Done(self.report_luns(cmd, &table));
            }
            Owner::RequestSense => {
                // A pending UA first; else the device's own state (a format or sanitize
                // in progress with its progress indication), else NO SENSE.
                let sense = td.take_ua().or_else(|| td.device.dev.pending_sense());
                return Route::Done(request_sense(cmd, sense));
            }
            _ if core.reports_ua => {
                if let Some(ua) = td.take_ua() {
                    return Route::Done(Self::device_check(td, ua));
                }
            }
            _ => {}
        }
        // ALUA state filter (scst-reference 5.4). It comes after the reservation checks
        // (scst-reference 4.1), except for the commands the reservation gate executes
        // itself, which must not run through a port whose state forbids them.
        let alua_reject = td
            .device
            .alua
            .view(&self.target)
            .and_then(|v| crate::alua::filter(v.state, &cmd.cdb));
        if let Some(sense) = alua_reject {
            if core.owner == Owner::Reservation {
                return Route::Done(Self::device_check(td, sense));
            }
        }
        // SPC-2 and PR conflicts; RESERVE/RELEASE/PR IN/PR OUT are answered here.
        if let Some(r) = crate::reservation::route(self, td, cmd) {
            return Route::Done(r);
        }
        if let Some(sense) = alua_reject {
            return Route::Done(Self::device_check(td, sense));
        }
        match core.owner {
            Owner::ReportTargetPortGroups => {
                Route::Done(crate::alua::report_target_port_groups(&td.device, cmd))
            }
            Owner::ReceiveCopyResults => {
                Route::Done(crate::copy::receive_copy_results(self, td, cmd))
            }
            _ => Route::Device(td.clone()),
        }
    }

    /// CHECK CONDITION in the device's sense format.
    fn device_check(td: &TgtDev, sense: Sense) -> Response {
        crate::error::in_device_format(&*td.device.dev, Response::check(sense))
    }

    /// Run a routed command on its device. `None`: the device would block in Inline mode.
    pub fn execute(&self, td: &TgtDev, cmd: &mut Cmd, mode: ExecMode) -> Option<Response> {
        match core_cmds::lookup(&cmd.cdb).owner {
            Owner::ExtendedCopy => return crate::copy::extended_copy(self, td, cmd, mode),
            // Only a PR OUT whose state goes to the APTPL file gets here (the
            // reservation gate answers the others in `route`): it runs blocking.
            Owner::Reservation => return crate::reservation::execute_durable(self, td, cmd, mode),
            _ => {}
        }
        // What the CDB transfers, for the transport's residual. The data-out buffer
        // stays as the initiator sent it: a device writes only what it received (SBC
        // lets a short transfer write the whole blocks that arrived) and can tell a
        // wrong parameter-list size apart from a right one.
        let data_out_len = td.device.dev.data_out_len(&cmd.cdb);
        let ctx = CmdCtx {
            target_name: &self.target.name,
            rel_tgt_id: self.target.rel_tgt_id(),
            initiator_name: &self.initiator_name,
            lun_read_only: td.read_only,
            alua: td.device.alua.view(&self.target),
        };
        td.active.fetch_add(1, Ordering::Relaxed);
        let r = td.device.dev.execute(&ctx, cmd, mode);
        td.active.fetch_sub(1, Ordering::Relaxed);
        let mut r = r?;
        r.data_out_len = data_out_len;
        if r.resume.is_none() {
            self.finish_response(td, &mut r);
        }
        Some(r)
    }

    /// Run the rest of a command that stopped in Inline mode ([`Response::resume`]),
    /// on an I/O thread. `placeholder` is the response that carried it.
    pub fn resume(&self, td: &TgtDev, cmd: &mut Cmd, placeholder: Response) -> Response {
        let Some(rest) = placeholder.resume else {
            return placeholder;
        };
        td.active.fetch_add(1, Ordering::Relaxed);
        let mut r = rest.run(cmd);
        td.active.fetch_sub(1, Ordering::Relaxed);
        r.data_out_len = placeholder.data_out_len;
        self.finish_response(td, &mut r);
        r
    }

    /// What the core adds to every device response: statistics, the sense format.
    fn finish_response(&self, td: &TgtDev, r: &mut Response) {
        self.stats.count_result(r);
        crate::error::set_format(crate::error::sense_format(&*td.device.dev), r);
    }

    /// Commands to a LUN this session does not have (scst-reference 4.1 step 1).
    fn unknown_lun(&self, cmd: &Cmd, table: &LunTable) -> Response {
        let cdb = &cmd.cdb;
        match core_cmds::lookup(cdb).owner {
            // Standard INQUIRY data of a LUN nobody is at; VPD pages fail below.
            Owner::Device
                if cdb.opcode() == scsi_wire::opcode::INQUIRY
                    && cdb.len() >= 5
                    && cdb[1] & 0x03 == 0 =>
            {
                let alloc = u16::from_be_bytes([cdb[3], cdb[4]]) as usize;
                let mut d = vec![0u8; 36];
                d[0] = 0x7F; // peripheral qualifier 3: no LU at this LUN; type 1Fh
                d[2] = 0x06; // SPC-4
                d[3] = 0x12; // NormACA=0, HiSup=1, response data format 2
                d[4] = 31;
                d[8..16].copy_from_slice(b"SCST_FIO");
                d[16..32].copy_from_slice(b"Virtual LUN     ");
                Response::data_alloc(d, alloc)
            }
            Owner::ReportLuns => self.report_luns(cmd, table),
            Owner::RequestSense => {
                let desc = cdb.len() > 1 && cdb[1] & 1 != 0;
                let alloc = cdb.get(4).copied().unwrap_or(0) as usize;
                Response::data_alloc(Sense::LUN_NOT_SUPPORTED.encode(desc), alloc)
            }
            _ => Response::check(Sense::LUN_NOT_SUPPORTED),
        }
    }

    /// REPORT LUNS (SPC-4 6.33) over the session's real LUN set.
    fn report_luns(&self, cmd: &Cmd, table: &LunTable) -> Response {
        let cdb = &cmd.cdb;
        if cdb.len() < 12 {
            return Response::check(Sense::invalid_field_in_cdb(0, None));
        }
        let alloc = u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]) as usize;
        if alloc < 16 {
            return Response::check(Sense::invalid_field_in_cdb(6, None));
        }
        let luns: Vec<u64> = match cdb[2] {
            0x00 | 0x02 => table.entries.iter().map(|t| t.lun).collect(),
            // Well-known LUNs only: we have none.
            0x01 => Vec::new(),
            _ => return Response::check(Sense::invalid_field_in_cdb(2, None)),
        };
        let method = *self.target.addr_method.lock();
        let mut d = Vec::with_capacity(8 + 8 * luns.len());
        d.extend_from_slice(&((luns.len() * 8) as u32).to_be_bytes());
        d.extend_from_slice(&[0; 4]);
        for lun in luns {
            d.extend_from_slice(&encode_lun(lun, method));
        }
        Response::data_alloc(d, alloc)
    }

    /// LOGICAL UNIT RESET (scst-reference 5.2): the device restores its defaults, every nexus of
    /// the device gets POWER ON/RESET, and other sessions abort their tasks on it. The
    /// caller aborts this session's own tasks on the LUN.
    pub fn lun_reset(&self, lun: u64) -> Result<Arc<DeviceEntry>, TmfStatus> {
        let table = self.luns.load();
        let td = table.get(lun).ok_or(TmfStatus::LunNotExist)?;
        let dev = td.device.clone();
        dev.dev.reset();
        dev.resv.clear_spc2();
        for other in dev.tgt_devs() {
            other.queue_ua(Sense::UA_POWER_ON_RESET);
            if let Some(s) = other.session() {
                if s.id != self.id {
                    s.events.abort_device_tasks(&dev);
                }
            }
        }
        Ok(dev)
    }

    /// CLEAR TASK SET (SAM-5 7.4): abort every task in the task set the command came
    /// through. With a task set per I_T nexus (TST 001b, the default) that is the
    /// caller's own, which it aborts itself; with one shared task set (TST 000b) the
    /// other sessions' tasks on the LUN go too, and they are told with COMMANDS
    /// CLEARED BY ANOTHER INITIATOR.
    pub fn clear_task_set(&self, lun: u64) -> Result<Arc<DeviceEntry>, TmfStatus> {
        let table = self.luns.load();
        let td = table.get(lun).ok_or(TmfStatus::LunNotExist)?;
        let dev = td.device.clone();
        if !dev.dev.shared_task_set() {
            return Ok(dev);
        }
        for other in dev.tgt_devs() {
            if let Some(s) = other.session() {
                if s.id != self.id {
                    other.queue_ua(Sense::UA_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
                    s.events.abort_device_tasks(&dev);
                }
            }
        }
        Ok(dev)
    }

    /// I_T NEXUS RESET (SAM-5 7.6): the nexus is lost and made again, as if the transport
    /// had dropped it: SPC-2 reservations it held go, devices hear of the loss (PREVENT
    /// MEDIUM REMOVAL ends), and each of its LUNs reports I_T NEXUS LOSS OCCURRED.
    /// PR registrations stay. The caller ends the nexus's tasks.
    pub fn it_nexus_reset(&self) {
        crate::reservation::session_gone(self);
        for td in &self.luns.load().entries {
            td.device
                .dev
                .nexus_lost(&self.initiator_name, &self.target.name);
            td.queue_ua_first(Sense::UA_I_T_NEXUS_LOSS);
        }
    }

    /// TARGET WARM RESET: a LUN RESET on every LUN of the session's set.
    pub fn target_reset(&self) -> Vec<Arc<DeviceEntry>> {
        let luns: Vec<u64> = self.luns.load().entries.iter().map(|t| t.lun).collect();
        luns.into_iter()
            .filter_map(|l| self.lun_reset(l).ok())
            .collect()
    }

    /// The session (I_T nexus) is going away: drop the SPC-2 reservations it holds
    /// (scst-reference 5.3.1). The transport must call this when the session ends for any reason
    /// (logout, connection loss, reinstatement of its ISID, force_close) so another
    /// initiator can reserve at once; `Drop` calls it too, as a safety net for
    /// references that outlive the connection. Idempotent. PR registrations survive.
    /// Devices hear of the nexus loss once (PREVENT MEDIUM REMOVAL ends with it): a
    /// late `Drop` must not undo what a newer session of the same initiator set.
    pub fn unregister(&self) {
        crate::reservation::session_gone(self);
        if !self.gone.swap(true, Ordering::AcqRel) {
            for td in &self.luns.load().entries {
                td.device
                    .dev
                    .nexus_lost(&self.initiator_name, &self.target.name);
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        LIVE_SESSIONS.fetch_sub(1, Ordering::Relaxed);
        self.unregister();
        crate::stats::fold_into_target(self);
    }
}

/// REQUEST SENSE (SPC-4 6.39): `sense` (a pending UA, which the caller has cleared, or
/// the device's pending sense) is returned as data; otherwise NO SENSE.
fn request_sense(cmd: &Cmd, sense: Option<Sense>) -> Response {
    let cdb = &cmd.cdb;
    if cdb.len() < 6 {
        return Response::check(Sense::invalid_field_in_cdb(0, None));
    }
    let desc = cdb[1] & 1 != 0;
    let alloc = cdb[4] as usize;
    let sense = sense.unwrap_or(Sense::NO_SENSE);
    Response::data_alloc(sense.encode(desc), alloc)
}
