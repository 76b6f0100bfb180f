//! virtio-scsi structures (virtio 1.x, section 5.6) as the driver writes and reads
//! them, packed and little-endian, written from the specification rather than taken
//! from the target's code so that a mistake there is not mirrored here.

/// Feature bits the frontend may negotiate.
pub mod feature {
    /// virtio-scsi: a command may carry both data-out and data-in.
    pub const SCSI_INOUT: u32 = 0;
    /// virtio-scsi: the device reports LUN hot plug and unplug on the event queue.
    pub const SCSI_HOTPLUG: u32 = 1;
    /// virtio-scsi: the device reports parameter changes (unit attentions).
    pub const SCSI_CHANGE: u32 = 2;
    /// Indirect descriptors (never used by this driver).
    pub const RING_INDIRECT_DESC: u32 = 28;
    /// used_event / avail_event notification suppression.
    pub const RING_EVENT_IDX: u32 = 29;
    /// vhost-user: the protocol feature negotiation and SET_VRING_ENABLE.
    pub const PROTOCOL_FEATURES: u32 = 30;
    /// A virtio 1.x (not legacy) device.
    pub const VERSION_1: u32 = 32;
}

/// `response` codes of command and task-management responses.
pub mod response {
    pub const OK: u8 = 0;
    pub const OVERRUN: u8 = 1;
    pub const ABORTED: u8 = 2;
    pub const BAD_TARGET: u8 = 3;
    pub const RESET: u8 = 4;
    pub const BUSY: u8 = 5;
    pub const TRANSPORT_FAILURE: u8 = 6;
    pub const TARGET_FAILURE: u8 = 7;
    pub const NEXUS_FAILURE: u8 = 8;
    pub const FAILURE: u8 = 9;
    pub const FUNCTION_SUCCEEDED: u8 = 10;
    pub const FUNCTION_REJECTED: u8 = 11;
    pub const INCORRECT_LUN: u8 = 12;
}

/// Task management function subtypes (`VIRTIO_SCSI_T_TMF_*`).
pub mod tmf {
    pub const ABORT_TASK: u32 = 0;
    pub const ABORT_TASK_SET: u32 = 1;
    pub const CLEAR_ACA: u32 = 2;
    pub const CLEAR_TASK_SET: u32 = 3;
    pub const I_T_NEXUS_RESET: u32 = 4;
    pub const LOGICAL_UNIT_RESET: u32 = 5;
    pub const QUERY_TASK: u32 = 6;
    pub const QUERY_TASK_SET: u32 = 7;
}

/// Event queue `event` and `reason` values.
pub mod event {
    pub const NO_EVENT: u32 = 0;
    pub const TRANSPORT_RESET: u32 = 1;
    pub const ASYNC_NOTIFY: u32 = 2;
    pub const PARAM_CHANGE: u32 = 3;
    /// Or'ed into `event` when the device dropped events for want of buffers.
    pub const EVENTS_MISSED: u32 = 0x8000_0000;
    /// TRANSPORT_RESET reasons.
    pub const REASON_RESET: u32 = 0;
    pub const REASON_RESCAN: u32 = 1;
    pub const REASON_REMOVED: u32 = 2;
}

/// `task_attr` values of a command request.
pub mod task_attr {
    pub const SIMPLE: u8 = 0;
    pub const ORDERED: u8 = 1;
    pub const HEAD: u8 = 2;
    pub const ACA: u8 = 3;
}

/// Control queue request types.
pub const T_TMF: u32 = 0;
pub const T_AN_QUERY: u32 = 1;
pub const T_AN_SUBSCRIBE: u32 = 2;

/// The default CDB and sense sizes of the device configuration.
pub const CDB_SIZE: usize = 32;
pub const SENSE_SIZE: usize = 96;

/// `virtio_scsi_cmd_req`: `lun[8]`, id, task_attr, prio, crn, `cdb[32]`.
pub const CMD_REQ_LEN: usize = 8 + 8 + 3 + CDB_SIZE;
/// `virtio_scsi_cmd_resp`: sense_len, resid, status_qualifier, status, response, sense.
pub const CMD_RESP_LEN: usize = 4 + 4 + 2 + 1 + 1 + SENSE_SIZE;
/// `virtio_scsi_ctrl_tmf_req`: type, subtype, `lun[8]`, id.
pub const TMF_REQ_LEN: usize = 4 + 4 + 8 + 8;
/// `virtio_scsi_ctrl_tmf_resp`: response.
pub const TMF_RESP_LEN: usize = 1;
/// `virtio_scsi_ctrl_an_req`: type, `lun[8]`, event_requested.
pub const AN_REQ_LEN: usize = 4 + 8 + 4;
/// `virtio_scsi_ctrl_an_resp`: event_actual, response.
pub const AN_RESP_LEN: usize = 4 + 1;
/// `virtio_scsi_event`: event, `lun[8]`, reason.
pub const EVENT_LEN: usize = 4 + 8 + 4;

/// The 8-byte LUN field: single-level, flat addressing (`0x40 | lun >> 8`) as Linux's
/// virtio_scsi driver writes it.
pub fn lun_field(target: u8, lun: u16) -> [u8; 8] {
    [1, target, 0x40 | (lun >> 8) as u8, lun as u8, 0, 0, 0, 0]
}

/// The (target, lun) of a LUN field in the format [`lun_field`] writes, if it is one.
pub fn parse_lun_field(field: &[u8; 8]) -> Option<(u8, u16)> {
    (field[0] == 1).then(|| {
        let lun = u16::from_be_bytes([field[2], field[3]]) & 0x3fff;
        (field[1], lun)
    })
}

/// A command request (`cdb` at most [`CDB_SIZE`] bytes; the caller checks).
pub fn cmd_req(lun: [u8; 8], tag: u64, attr: u8, prio: u8, crn: u8, cdb: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(CMD_REQ_LEN);
    b.extend_from_slice(&lun);
    b.extend_from_slice(&tag.to_le_bytes());
    b.extend_from_slice(&[attr, prio, crn]);
    b.extend_from_slice(cdb);
    b.resize(CMD_REQ_LEN, 0);
    b
}

/// A task management request.
pub fn tmf_req(subtype: u32, lun: [u8; 8], tag: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(TMF_REQ_LEN);
    b.extend_from_slice(&T_TMF.to_le_bytes());
    b.extend_from_slice(&subtype.to_le_bytes());
    b.extend_from_slice(&lun);
    b.extend_from_slice(&tag.to_le_bytes());
    b
}

/// An asynchronous notification query or subscription.
pub fn an_req(kind: u32, lun: [u8; 8], events: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(AN_REQ_LEN);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&lun);
    b.extend_from_slice(&events.to_le_bytes());
    b
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The completion of a SCSI command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdResult {
    /// virtio-scsi `response` ([`response`]).
    pub response: u8,
    /// SCSI status.
    pub status: u8,
    pub status_qualifier: u16,
    /// Sense data (`sense_len` bytes, at most [`SENSE_SIZE`]).
    pub sense: Vec<u8>,
    /// Residual count as the device reported it.
    pub resid: u32,
    /// Data-in: the buffer's first `data_in_len - resid` bytes.
    pub data_in: Vec<u8>,
    /// The length the device put in the used ring (bytes it wrote).
    pub used_len: u32,
}

impl CmdResult {
    /// Response OK and status GOOD.
    pub fn is_good(&self) -> bool {
        self.response == response::OK && self.status == 0
    }

    /// (sense key, ASC, ASCQ) of fixed or descriptor format sense, if any.
    pub fn sense_key(&self) -> Option<(u8, u8, u8)> {
        let s = &self.sense;
        match s.first()? & 0x7f {
            0x70 | 0x71 if s.len() >= 14 => Some((s[2] & 0x0f, s[12], s[13])),
            0x72 | 0x73 if s.len() >= 4 => Some((s[1] & 0x0f, s[2], s[3])),
            _ => None,
        }
    }
}

/// Decode a command response; `data_in` is the whole data-in buffer.
pub fn parse_cmd_resp(resp: &[u8], mut data_in: Vec<u8>, used_len: u32) -> CmdResult {
    let sense_len = (le32(&resp[0..4]) as usize).min(SENSE_SIZE);
    let resid = le32(&resp[4..8]);
    let keep = data_in.len().saturating_sub(resid as usize);
    data_in.truncate(keep);
    CmdResult {
        response: resp[11],
        status: resp[10],
        status_qualifier: u16::from_le_bytes([resp[8], resp[9]]),
        sense: resp[12..12 + sense_len].to_vec(),
        resid,
        data_in,
        used_len,
    }
}

/// An event from the event queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// [`event`] value, with [`event::EVENTS_MISSED`] possibly set.
    pub event: u32,
    pub lun: [u8; 8],
    pub reason: u32,
}

impl Event {
    /// The (target, lun) the event names, if in single-level format.
    pub fn target_lun(&self) -> Option<(u8, u16)> {
        parse_lun_field(&self.lun)
    }
}

pub fn parse_event(b: &[u8]) -> Event {
    let mut lun = [0u8; 8];
    lun.copy_from_slice(&b[4..12]);
    Event {
        event: le32(&b[0..4]),
        lun,
        reason: le32(&b[12..16]),
    }
}

/// An asynchronous notification response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnResult {
    pub event_actual: u32,
    pub response: u8,
}

pub fn parse_an_resp(b: &[u8]) -> AnResult {
    AnResult {
        event_actual: le32(&b[0..4]),
        response: b[4],
    }
}

/// `virtio_scsi_config`: seven le32 fields, max_channel and max_target (le16), max_lun.
pub const CONFIG_LEN: usize = 7 * 4 + 2 * 2 + 4;

/// The device configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiConfig {
    pub num_queues: u32,
    pub seg_max: u32,
    pub max_sectors: u32,
    pub cmd_per_lun: u32,
    pub event_info_size: u32,
    pub sense_size: u32,
    pub cdb_size: u32,
    pub max_channel: u16,
    pub max_target: u16,
    pub max_lun: u32,
}

/// Decode the configuration space (short input reads as zeros).
pub fn parse_config(b: &[u8]) -> ScsiConfig {
    let mut c = [0u8; CONFIG_LEN];
    let n = b.len().min(CONFIG_LEN);
    c[..n].copy_from_slice(&b[..n]);
    let f = |i: usize| le32(&c[4 * i..4 * i + 4]);
    ScsiConfig {
        num_queues: f(0),
        seg_max: f(1),
        max_sectors: f(2),
        cmd_per_lun: f(3),
        event_info_size: f(4),
        sense_size: f(5),
        cdb_size: f(6),
        max_channel: u16::from_le_bytes([c[28], c[29]]),
        max_target: u16::from_le_bytes([c[30], c[31]]),
        max_lun: le32(&c[32..36]),
    }
}
