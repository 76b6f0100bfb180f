//! The copy manager (docs/scst-reference.md 1.1 `scst_copy_mgr`, 4.2): EXTENDED COPY (LID1) and
//! RECEIVE COPY RESULTS, executed by the core for any device.
//!
//! Like SCST's copy manager, an EXTENDED COPY names its copy targets with
//! identification descriptors (0xE4) holding a VPD 83h logical-unit designator, and
//! copies block ranges between them (segment descriptor 0x02) with internal READ(16)
//! and WRITE(16) commands of at most 512 KiB. With the copy manager registered
//! (copy_mgr.rs), a designator resolves only to a device in `copy_manager_tgt`'s LUN
//! list; of those, to a LUN of the initiator's own session, or, with
//! `allow_not_connected_copy=1`, to the device through the copy manager's own nexus.
//! (SCST with `allow_not_connected_copy=0` takes any device some target grants the
//! initiator; scst-rs asks for a LUN of the issuing session, which is stricter.) The
//! internal commands go through the normal device path of that nexus, so reservations,
//! read-only LUNs and range checks apply as they would to the initiator's own READ and
//! WRITE; a copy target's failure aborts the copy with COPY ABORTED and the target's
//! sense forwarded (SPC-4 6.4.5.1).
//!
//! Each EXTENDED COPY whose list identifier is to be kept leaves a record per I_T nexus
//! for RECEIVE COPY RESULTS. As in SCST, a finished record lives 5 s, or until COPY
//! STATUS has reported it.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use scsi_wire::cdb::opcode as op;
use scsi_wire::xcopy::{
    self, desc_type, rcr_sa, seg_field, B2bSegment, CopyState, IdTargetDesc, ListHeader,
    ListIdUsage, OperatingParams, RcrCdb,
};
use scsi_wire::{asc, status, Asc, ForwardedSense, Sense};

use crate::cmd::{Cdb, Cmd, ExecMode, Response, TaskAttr};
use crate::copy_mgr::{CopyGate, CopyMgrSession};
use crate::error::{in_device_format, sense_format};
use crate::session::{Session, TgtDev};

/// SCST's limit: more makes the blocking machinery costly (scst-reference 4.2).
const MAX_TARGET_DESCRIPTORS: usize = 5;
/// Segment descriptors per EXTENDED COPY. SCST's bound comes from its two-page
/// per-command buffer; 128 is of the same order.
const MAX_SEGMENT_DESCRIPTORS: usize = 128;
/// The longest target plus segment descriptor lists we accept.
const MAX_DESC_LIST_LEN: usize = MAX_TARGET_DESCRIPTORS * xcopy::TARGET_DESC_LEN
    + MAX_SEGMENT_DESCRIPTORS * xcopy::B2B_SEG_DESC_LEN;
/// The size of each internal READ(16)/WRITE(16).
const MAX_IO_BYTES: u64 = 512 * 1024;
/// How long a finished list identifier stays available to RECEIVE COPY RESULTS.
const KEEP_FINISHED: Duration = Duration::from_secs(5);

/// The copy manager's limits (RECEIVE COPY RESULTS / OPERATING PARAMETERS).
fn operating_params() -> OperatingParams {
    OperatingParams {
        supports_no_list_id: true,
        max_target_desc_count: MAX_TARGET_DESCRIPTORS as u16,
        max_segment_desc_count: MAX_SEGMENT_DESCRIPTORS as u16,
        max_desc_list_len: MAX_DESC_LIST_LEN as u32,
        // As SCST: 256 MiB (a 16-bit block count of 4 KiB blocks stays below it).
        max_segment_len: 256 << 20,
        // No inline data, no held data, no stream devices.
        max_inline_data_len: 0,
        held_data_limit: 0,
        max_stream_transfer_size: 0,
        total_concurrent_copies: 0xFFFF,
        max_concurrent_copies: 0xFF,
        // Whole blocks; the smallest block is 512 bytes.
        data_segment_granularity_log2: 9,
        inline_data_granularity_log2: 0,
        held_data_granularity_log2: 0,
        implemented_descriptors: vec![desc_type::BLOCK_TO_BLOCK, desc_type::IDENTIFICATION],
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ListState {
    Active,
    Finished {
        at: Instant,
        status: u8,
        sense: Vec<u8>,
    },
}

#[derive(Debug)]
struct ListRecord {
    list_id: u8,
    state: ListState,
    segments_processed: u16,
    bytes_written: u64,
}

/// A session's EXTENDED COPY list identifiers (SCST's `sess_cm_list_id_list`).
#[derive(Debug, Default)]
pub(crate) struct CopyLists {
    records: Mutex<Vec<ListRecord>>,
}

impl CopyLists {
    fn expire(records: &mut Vec<ListRecord>) {
        records.retain(|r| match &r.state {
            ListState::Active => true,
            ListState::Finished { at, .. } => at.elapsed() < KEEP_FINISHED,
        });
    }

    /// Start tracking `list_id`; a finished record of the same id is replaced, an
    /// active one is OPERATION IN PROGRESS.
    pub(crate) fn begin(&self, list_id: u8) -> Result<(), Sense> {
        let mut v = self.records.lock();
        CopyLists::expire(&mut v);
        if let Some(i) = v.iter().position(|r| r.list_id == list_id) {
            if v[i].state == ListState::Active {
                return Err(xcopy::OPERATION_IN_PROGRESS);
            }
            v.remove(i);
        }
        v.push(ListRecord {
            list_id,
            state: ListState::Active,
            segments_processed: 0,
            bytes_written: 0,
        });
        Ok(())
    }

    fn update(&self, list_id: u8, f: impl FnOnce(&mut ListRecord)) {
        let mut v = self.records.lock();
        if let Some(r) = v
            .iter_mut()
            .find(|r| r.list_id == list_id && r.state == ListState::Active)
        {
            f(r);
        }
    }

    /// The command failed before any segment was looked at: nothing to report.
    fn forget(&self, list_id: u8) {
        self.records
            .lock()
            .retain(|r| !(r.list_id == list_id && r.state == ListState::Active));
    }

    fn finish(&self, list_id: u8, status: u8, sense: Vec<u8>) {
        self.update(list_id, |r| {
            r.state = ListState::Finished {
                at: Instant::now(),
                status,
                sense,
            }
        });
    }

    /// COPY STATUS data; a finished record is reported once.
    fn copy_status(&self, list_id: u8) -> Option<Vec<u8>> {
        let mut v = self.records.lock();
        CopyLists::expire(&mut v);
        let i = v.iter().position(|r| r.list_id == list_id)?;
        let r = &v[i];
        let state = match &r.state {
            ListState::Active => CopyState::InProgress,
            ListState::Finished { status: 0, .. } => CopyState::Good,
            ListState::Finished { .. } => CopyState::Failed,
        };
        let data = xcopy::copy_status(state, r.segments_processed, r.bytes_written);
        if state != CopyState::InProgress {
            v.remove(i);
        }
        Some(data)
    }

    /// FAILED SEGMENT DETAILS data of a finished copy; dropped once fully reported.
    fn failed_segment_details(&self, list_id: u8, alloc_len: usize) -> Option<Vec<u8>> {
        let mut v = self.records.lock();
        CopyLists::expire(&mut v);
        let i = v.iter().position(|r| r.list_id == list_id)?;
        let ListState::Finished { status, sense, .. } = &v[i].state else {
            return None;
        };
        let data = xcopy::failed_segment_details(*status, sense);
        if alloc_len >= data.len() {
            v.remove(i);
        }
        Some(data)
    }
}

/// RECEIVE COPY RESULTS (LID1): answered by the core after the UA and reservation
/// checks, without the device.
pub(crate) fn receive_copy_results(sess: &Session, td: &TgtDev, cmd: &Cmd) -> Response {
    let r = match rcr(sess, cmd) {
        Ok(r) => r,
        Err(s) => Response::check(s),
    };
    in_device_format(td.device.dev.as_ref(), r)
}

fn rcr(sess: &Session, cmd: &Cmd) -> Result<Response, Sense> {
    let c = RcrCdb::decode(&cmd.cdb)?;
    let alloc = usize::try_from(c.alloc_len).unwrap_or(usize::MAX);
    let unknown_list = Sense::invalid_field_in_cdb(2, None);
    let data = match c.service_action {
        rcr_sa::COPY_STATUS => sess.copy_lists.copy_status(c.list_id).ok_or(unknown_list)?,
        rcr_sa::OPERATING_PARAMETERS => xcopy::operating_parameters(&operating_params()),
        rcr_sa::FAILED_SEGMENT_DETAILS => sess
            .copy_lists
            .failed_segment_details(c.list_id, alloc)
            .ok_or(unknown_list)?,
        // RECEIVE DATA needs held data, which we never keep.
        _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
    };
    Ok(Response::data_alloc(data, alloc))
}

/// EXTENDED COPY. It blocks on the copy targets' I/O, so in Inline mode it asks to be
/// re-run on an I/O thread.
pub(crate) fn extended_copy(
    sess: &Session,
    td: &TgtDev,
    cmd: &Cmd,
    mode: ExecMode,
) -> Option<Response> {
    if mode == ExecMode::Inline {
        return None;
    }
    let param_len = scsi_wire::cdb::be32(&cmd.cdb, 10).ok();
    let mut r = match param_len {
        Some(len) => {
            // The list is what arrived, cut to the CDB's length: a short transfer then
            // fails the length checks.
            let n = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(cmd.data_out.len());
            run_list(sess, td, &cmd.data_out[..n], len)
        }
        None => Response::check(Sense::invalid_field_in_cdb(0, None)),
    };
    r.data_out_len = param_len;
    Some(in_device_format(td.device.dev.as_ref(), r))
}

/// How a parameter list failed: before its segments were looked at (no copy status
/// is kept) or while processing them (the list identifier reports it).
enum Failure {
    Early(Sense),
    Copy(Sense),
}

fn run_list(sess: &Session, td: &TgtDev, list: &[u8], param_len: u32) -> Response {
    if param_len == 0 {
        return Response::good();
    }
    if param_len < xcopy::HEADER_LEN as u32 {
        return Response::check(Sense::invalid_field_in_cdb(10, None));
    }
    // A transfer shorter than the CDB's parameter list length leaves the list cut.
    let Some(h) = ListHeader::decode(list).filter(|_| list.len() as u64 >= u64::from(param_len))
    else {
        return Response::check(Sense::PARAM_LIST_LENGTH_ERROR);
    };
    let tracked = match h.list_id_usage {
        ListIdUsage::Hold | ListIdUsage::Discard => {
            if let Err(s) = sess.copy_lists.begin(h.list_id) {
                return Response::check(s);
            }
            Some(h.list_id)
        }
        ListIdUsage::NoList if h.list_id != 0 => {
            return Response::check(Sense::invalid_field_in_param(0, None));
        }
        ListIdUsage::NoList => None,
        ListIdUsage::Reserved => return Response::check(Sense::invalid_field_in_param(1, Some(4))),
    };
    let mut progress = Progress {
        sess,
        list_id: tracked,
        segments: 0,
        bytes: 0,
    };
    let outcome = copy_list(sess, td, list, &h, &mut progress);
    let format = sense_format(td.device.dev.as_ref());
    match outcome {
        Ok(()) => {
            if let Some(id) = tracked {
                sess.copy_lists.finish(id, status::GOOD, Vec::new());
            }
            Response::good()
        }
        Err(Failure::Early(s)) => {
            if let Some(id) = tracked {
                sess.copy_lists.forget(id);
            }
            Response::check(s)
        }
        Err(Failure::Copy(s)) => {
            if let Some(id) = tracked {
                sess.copy_lists
                    .finish(id, status::CHECK_CONDITION, s.encode_as(format));
            }
            Response::check(s)
        }
    }
}

/// Segments processed and bytes written, mirrored into the list identifier's record so
/// that COPY STATUS can report a copy in progress.
struct Progress<'a> {
    sess: &'a Session,
    list_id: Option<u8>,
    segments: u16,
    bytes: u64,
}

impl Progress<'_> {
    fn publish(&self) {
        if let Some(id) = self.list_id {
            let (segments, bytes) = (self.segments, self.bytes);
            self.sess.copy_lists.update(id, |r| {
                r.segments_processed = segments;
                r.bytes_written = bytes;
            });
        }
    }
}

/// A resolved copy target: a LUN of the session or of the copy manager's nexus
/// (`via`), or the NUL placeholder.
#[derive(Clone)]
struct CopyTarget {
    td: Option<std::sync::Arc<TgtDev>>,
    via: Option<std::sync::Arc<Session>>,
    block_size: u32,
    blocks: u64,
}

fn copy_list(
    sess: &Session,
    issuing: &TgtDev,
    list: &[u8],
    h: &ListHeader,
    progress: &mut Progress<'_>,
) -> Result<(), Failure> {
    use Failure::Early;
    if h.inline_data_len != 0 {
        return Err(Early(xcopy::INLINE_DATA_LENGTH_EXCEEDED));
    }
    let tgt_len = h.target_desc_len as usize;
    let seg_len = usize::try_from(h.segment_desc_len).unwrap_or(usize::MAX);
    if tgt_len == 0 {
        return if seg_len == 0 {
            Ok(())
        } else {
            Err(Early(Sense::invalid_field_in_param(2, None)))
        };
    }
    let desc_len = tgt_len.saturating_add(seg_len);
    if desc_len > MAX_DESC_LIST_LEN {
        return Err(Early(Sense::PARAM_LIST_LENGTH_ERROR));
    }
    let total = desc_len + xcopy::HEADER_LEN;
    if total > list.len() {
        return Err(Early(Sense::PARAM_LIST_LENGTH_ERROR));
    }
    if total < list.len() {
        // Bytes beyond the descriptors would be inline data, which we never take.
        return Err(Early(xcopy::INLINE_DATA_LENGTH_EXCEEDED));
    }
    if !tgt_len.is_multiple_of(xcopy::TARGET_DESC_LEN) {
        return Err(Early(Sense::invalid_field_in_param(2, None)));
    }
    if tgt_len / xcopy::TARGET_DESC_LEN > MAX_TARGET_DESCRIPTORS {
        return Err(Early(xcopy::TOO_MANY_TARGET_DESCRIPTORS));
    }

    let mut resolver = Resolver::new(sess, issuing);
    let mut targets = Vec::new();
    let tgt_end = xcopy::HEADER_LEN + tgt_len;
    for off in (xcopy::HEADER_LEN..tgt_end).step_by(xcopy::TARGET_DESC_LEN) {
        targets.push(resolver.target(&list[off..off + xcopy::TARGET_DESC_LEN], off)?);
    }

    // Count and type-check the segment descriptors before processing any (SCST too).
    let segs = &list[tgt_end..];
    let mut offs = Vec::new();
    let mut off = 0;
    while off < segs.len() {
        if offs.len() == MAX_SEGMENT_DESCRIPTORS {
            return Err(Early(xcopy::TOO_MANY_SEGMENT_DESCRIPTORS));
        }
        if segs[off] != desc_type::BLOCK_TO_BLOCK {
            return Err(Early(xcopy::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE));
        }
        if segs.len() - off < xcopy::B2B_SEG_DESC_LEN {
            // The list ends inside a descriptor: the SEGMENT DESCRIPTOR LIST LENGTH is off.
            return Err(Early(Sense::invalid_field_in_param(8, None)));
        }
        offs.push(off);
        off += xcopy::B2B_SEG_DESC_LEN;
    }

    // Validate every segment, then copy them in order.
    let mut plan = Vec::with_capacity(offs.len());
    for (i, &off) in offs.iter().enumerate() {
        let seg_no = i as u16;
        let s = B2bSegment::decode(&segs[off..]).ok_or(Failure::Copy(Sense::copy_aborted(
            asc::NO_ADDITIONAL_SENSE_INFORMATION,
            seg_no,
        )))?;
        plan.push(plan_segment(&s, &targets, seg_no).map_err(Failure::Copy)?);
    }
    for (i, p) in plan.iter().enumerate() {
        progress.segments = i as u16 + 1;
        progress.publish();
        copy_segment(sess, p, i as u16, progress).map_err(Failure::Copy)?;
    }
    Ok(())
}

/// One segment, ready to copy.
struct SegmentPlan {
    src: CopyTarget,
    dst: CopyTarget,
    src_lba: u64,
    dst_lba: u64,
    bytes: u64,
}

fn seg_error(code: Asc, segment: u16, field: u16) -> Sense {
    let mut s = Sense::copy_aborted(code, segment);
    if let Some(c) = s.copy.as_mut() {
        c.segment_field = Some(field);
    }
    s
}

fn plan_segment(s: &B2bSegment, targets: &[CopyTarget], seg: u16) -> Result<SegmentPlan, Sense> {
    if s.descriptor_length != xcopy::B2B_DESCRIPTOR_LENGTH {
        return Err(seg_error(
            asc::NO_ADDITIONAL_SENSE_INFORMATION,
            seg,
            seg_field::DESCRIPTOR_LENGTH,
        ));
    }
    let pick = |index: u16, field: u16| -> Result<CopyTarget, Sense> {
        let t = targets.get(index as usize).ok_or(seg_error(
            asc::NO_ADDITIONAL_SENSE_INFORMATION,
            seg,
            field,
        ))?;
        if t.td.is_none() {
            // A NUL descriptor names no device to read or write.
            return Err(seg_error(asc::COPY_TARGET_DEVICE_NOT_REACHABLE, seg, field));
        }
        Ok(t.clone())
    };
    let src = pick(s.source_index, seg_field::SOURCE_INDEX)?;
    let dst = pick(s.destination_index, seg_field::DESTINATION_INDEX)?;
    let unit = if s.dc { dst.block_size } else { src.block_size };
    let bytes = u64::from(s.blocks) * u64::from(unit);
    if !bytes.is_multiple_of(u64::from(src.block_size))
        || !bytes.is_multiple_of(u64::from(dst.block_size))
    {
        return Err(seg_error(
            asc::NO_ADDITIONAL_SENSE_INFORMATION,
            seg,
            seg_field::BLOCKS,
        ));
    }
    Ok(SegmentPlan {
        src,
        dst,
        src_lba: s.source_lba,
        dst_lba: s.destination_lba,
        bytes,
    })
}

/// COPY ABORTED carrying what a copy target answered.
fn target_failure(r: &Response, destination: bool, segment: u16) -> Sense {
    match r.sense {
        Some(t) if r.status == status::CHECK_CONDITION => {
            let mut s = Sense::copy_aborted(asc::NO_ADDITIONAL_SENSE_INFORMATION, segment);
            if let Some(c) = s.copy.as_mut() {
                c.forwarded = Some(ForwardedSense {
                    destination,
                    status: r.status,
                    key: t.key,
                    asc: t.asc,
                    ascq: t.ascq,
                });
            }
            s
        }
        // RESERVATION CONFLICT, BUSY...: the target refused without sense.
        _ => Sense::copy_aborted(asc::THIRD_PARTY_DEVICE_FAILURE, segment),
    }
}

fn copy_segment(
    sess: &Session,
    p: &SegmentPlan,
    seg: u16,
    progress: &mut Progress<'_>,
) -> Result<(), Sense> {
    let (Some(src), Some(dst)) = (p.src.td.as_deref(), p.dst.td.as_deref()) else {
        return Err(seg_error(
            asc::COPY_TARGET_DEVICE_NOT_REACHABLE,
            seg,
            seg_field::SOURCE_INDEX,
        ));
    };
    if p.bytes == 0 {
        return Ok(());
    }
    let (sbs, dbs) = (u64::from(p.src.block_size), u64::from(p.dst.block_size));
    let (src_sess, dst_sess) = (
        p.src.via.as_deref().unwrap_or(sess),
        p.dst.via.as_deref().unwrap_or(sess),
    );
    // A range past either end fails before anything is written, as the copy target
    // itself would refuse the first command past its capacity.
    let out_of_range = |lba: u64, bs: u64, blocks: u64| {
        lba.checked_add(p.bytes / bs).is_none_or(|end| end > blocks)
    };
    let lba_error = Response::check(Sense::LBA_OUT_OF_RANGE);
    if out_of_range(p.src_lba, sbs, p.src.blocks) {
        return Err(target_failure(&lba_error, false, seg));
    }
    if out_of_range(p.dst_lba, dbs, p.dst.blocks) {
        return Err(target_failure(&lba_error, true, seg));
    }
    // Chunks of whole blocks on both sides, at most 512 KiB unless a block is larger.
    let unit = lcm(sbs, dbs);
    let chunk = (MAX_IO_BYTES / unit).max(1) * unit;
    let mut done = 0u64;
    while done < p.bytes {
        let n = chunk.min(p.bytes - done);
        let read = io16(
            src_sess,
            src,
            op::READ_16,
            p.src_lba + done / sbs,
            n / sbs,
            n,
            Vec::new(),
        );
        if read.status != status::GOOD || read.data.len() as u64 != n {
            return Err(target_failure(&read, false, seg));
        }
        let write = io16(
            dst_sess,
            dst,
            op::WRITE_16,
            p.dst_lba + done / dbs,
            n / dbs,
            0,
            read.data,
        );
        if write.status != status::GOOD {
            return Err(target_failure(&write, true, seg));
        }
        done += n;
        progress.bytes += n;
        progress.publish();
    }
    Ok(())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b).max(1) * b
}

/// Run one internal command on a nexus of the session, through the reservation gate
/// and the device, as the initiator's own command would go.
fn internal(
    sess: &Session,
    td: &TgtDev,
    cdb: &[u8],
    data_out: Vec<u8>,
    expected_in: u32,
) -> Response {
    let Some(cdb) = Cdb::new(cdb) else {
        return Response::check(Sense::INTERNAL_FAILURE);
    };
    let mut cmd = Cmd {
        cdb,
        lun: td.lun,
        tag: 0,
        attr: TaskAttr::Simple,
        data_out,
        expected_in,
    };
    if let Some(r) = crate::reservation::route(sess, td, &cmd) {
        return r;
    }
    sess.execute(td, &mut cmd, ExecMode::Blocking)
        .unwrap_or_else(|| Response::check(Sense::INTERNAL_FAILURE))
}

/// READ(16) or WRITE(16) of `blocks` blocks at `lba`.
fn io16(
    sess: &Session,
    td: &TgtDev,
    opcode: u8,
    lba: u64,
    blocks: u64,
    expected_in: u64,
    data: Vec<u8>,
) -> Response {
    let mut cdb = [0u8; 16];
    cdb[0] = opcode;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    let Ok(n) = u32::try_from(blocks) else {
        return Response::check(Sense::INTERNAL_FAILURE);
    };
    cdb[10..14].copy_from_slice(&n.to_be_bytes());
    internal(
        sess,
        td,
        &cdb,
        data,
        u32::try_from(expected_in).unwrap_or(u32::MAX),
    )
}

/// Resolves identification descriptors to LUNs, reading each LUN's designators (VPD
/// 83h) and capacity at most once per EXTENDED COPY: the identity of a device can be
/// changed by management, so nothing is cached across commands.
struct Resolver<'a> {
    sess: &'a Session,
    /// The copy manager's gate and the core, when one is registered.
    gate: Option<(CopyGate, std::sync::Arc<crate::Scst>)>,
    /// Candidates in search order: the session's LUNs (of registered devices), then,
    /// with `allow_not_connected_copy`, the copy manager nexus's.
    candidates: Vec<Candidate>,
    /// Whether the copy manager's nexus was looked at (it is opened at most once).
    cm_searched: bool,
    /// Held while the copy runs, unregistered when the resolver goes.
    cm_session: Option<CopyMgrSession>,
}

struct Candidate {
    td: std::sync::Arc<TgtDev>,
    via: Option<std::sync::Arc<Session>>,
    vpd83: Option<Vec<u8>>,
}

impl<'a> Resolver<'a> {
    fn new(sess: &'a Session, issuing: &TgtDev) -> Resolver<'a> {
        let gate = issuing
            .device
            .scst()
            .and_then(|scst| Some((scst.copy_gate()?, scst)));
        let candidates = sess
            .luns()
            .entries
            .iter()
            .filter(|td| {
                gate.as_ref()
                    .is_none_or(|(g, _)| g.registered(td.device.name()))
            })
            .map(|td| Candidate {
                td: td.clone(),
                via: None,
                vpd83: None,
            })
            .collect();
        Resolver {
            sess,
            gate,
            candidates,
            cm_searched: false,
            cm_session: None,
        }
    }

    fn target(&mut self, desc: &[u8], off: usize) -> Result<CopyTarget, Failure> {
        use Failure::Early;
        let field = |rel: usize, bit| Sense::invalid_field_in_param((off + rel) as u16, bit);
        if desc[0] != desc_type::IDENTIFICATION {
            return Err(Early(xcopy::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE));
        }
        let d = IdTargetDesc::decode(desc).ok_or(Early(field(7, None)))?;
        // LU ID TYPE is not looked at: in an identification descriptor the designator
        // names the logical unit, and SPC-4 leaves the field without meaning there
        // (libiscsi expects a reserved value to be ignored by an SPC-4 target).
        if d.nul {
            return Ok(CopyTarget {
                td: None,
                via: None,
                block_size: 0,
                blocks: 0,
            });
        }
        if d.peripheral_type != 0 {
            // Only block devices (segment descriptor 0x02).
            return Err(Early(field(1, Some(4))));
        }
        // Only logical-unit designators name a device; port ones vary by path.
        let found = if d.association == 0 {
            self.find(&d)
        } else {
            None
        };
        let Some((td, via)) = found else {
            // SCST: a designator of no device the initiator can reach (or one the copy
            // manager does not list) is an invalid field, pointing at the descriptor.
            return Err(Early(field(0, None)));
        };
        let on = via.as_deref().unwrap_or(self.sess);
        let (blocks, block_size) = capacity(on, &td).ok_or(Early(field(0, None)))?;
        if d.disk_block_len != block_size {
            return Err(Early(field(29, None)));
        }
        Ok(CopyTarget {
            td: Some(td),
            via,
            block_size,
            blocks,
        })
    }

    fn find(
        &mut self,
        d: &IdTargetDesc<'_>,
    ) -> Option<(std::sync::Arc<TgtDev>, Option<std::sync::Arc<Session>>)> {
        if let Some(hit) = self.search(d) {
            return Some(hit);
        }
        if !self.open_copy_manager_nexus() {
            return None;
        }
        self.search(d)
    }

    fn search(
        &mut self,
        d: &IdTargetDesc<'_>,
    ) -> Option<(std::sync::Arc<TgtDev>, Option<std::sync::Arc<Session>>)> {
        let sess = self.sess;
        for c in &mut self.candidates {
            if c.td.device.dev.scsi_type() != 0 {
                continue;
            }
            let on = c.via.as_deref().unwrap_or(sess);
            let page = c.vpd83.get_or_insert_with(|| inquiry_83(on, &c.td));
            if lu_designators(page).any(|(code_set, ty, value)| {
                code_set == d.code_set && ty == d.designator_type && value == d.designator
            }) {
                return Some((c.td.clone(), c.via.clone()));
            }
        }
        None
    }

    /// With `allow_not_connected_copy`, add the copy manager nexus's LUNs of devices the
    /// session has none of. False when there is nothing new to search.
    fn open_copy_manager_nexus(&mut self) -> bool {
        if self.cm_searched {
            return false;
        }
        self.cm_searched = true;
        let Some((gate, scst)) = self.gate.as_ref().filter(|(g, _)| g.allow_not_connected) else {
            return false;
        };
        let cm = gate.session(scst);
        let mine: Vec<String> = self
            .sess
            .luns()
            .entries
            .iter()
            .map(|td| td.device.name().to_string())
            .collect();
        let before = self.candidates.len();
        for td in &cm.0.luns().entries {
            if !mine.iter().any(|n| n == td.device.name()) {
                self.candidates.push(Candidate {
                    td: td.clone(),
                    via: Some(cm.0.clone()),
                    vpd83: None,
                });
            }
        }
        self.cm_session = Some(cm);
        self.candidates.len() > before
    }
}

fn inquiry_83(sess: &Session, td: &TgtDev) -> Vec<u8> {
    let r = internal(
        sess,
        td,
        &[op::INQUIRY, 0x01, 0x83, 0x04, 0x00, 0],
        Vec::new(),
        1024,
    );
    if r.status == status::GOOD {
        r.data
    } else {
        Vec::new()
    }
}

/// (number of blocks, block length) from READ CAPACITY(16).
fn capacity(sess: &Session, td: &TgtDev) -> Option<(u64, u32)> {
    let mut cdb = [0u8; 16];
    cdb[0] = op::SERVICE_ACTION_IN_16;
    cdb[1] = 0x10;
    cdb[13] = 32;
    let r = internal(sess, td, &cdb, Vec::new(), 32);
    if r.status != status::GOOD {
        return None;
    }
    let last = u64::from_be_bytes(r.data.get(0..8)?.try_into().ok()?);
    let bs = u32::from_be_bytes(r.data.get(8..12)?.try_into().ok()?);
    (bs != 0).then_some((last.checked_add(1)?, bs))
}

/// The logical-unit designators of a VPD 83h page: (code set, designator type, value).
fn lu_designators(page: &[u8]) -> impl Iterator<Item = (u8, u8, &[u8])> {
    let len = page
        .get(2..4)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize);
    let body = page.get(4..).unwrap_or_default();
    let body = &body[..len.min(body.len())];
    let mut off = 0;
    std::iter::from_fn(move || loop {
        let hdr = body.get(off..off + 4)?;
        let n = hdr[3] as usize;
        let value = body.get(off + 4..off + 4 + n)?;
        off += 4 + n;
        let association = (hdr[1] >> 4) & 0x03;
        if association == 0 {
            return Some((hdr[0] & 0x0F, hdr[1] & 0x0F, value));
        }
    })
}
