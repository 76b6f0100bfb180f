//! virtio-scsi's structures on the wire (virtio 1.2, 5.6.6): the request and response
//! headers of the request queues, the control queue's task management and
//! asynchronous notification requests, and the event queue's events. Byte layouts
//! only, with no guest memory or queue in sight, so they are tested as plain bytes.
//! All fields are little-endian (VIRTIO_F_VERSION_1).

use virtio_bindings::virtio_scsi as vs;

/// CDB bytes in a request (virtio-scsi's default `cdb_size`, what QEMU configures).
pub const CDB_SIZE: usize = vs::VIRTIO_SCSI_CDB_DEFAULT_SIZE as usize;
/// Sense bytes in a response (the default `sense_size`).
pub const SENSE_SIZE: usize = vs::VIRTIO_SCSI_SENSE_DEFAULT_SIZE as usize;
/// `virtio_scsi_cmd_req`: `lun[8]`, tag, task_attr, prio, crn, cdb.
pub const CMD_REQ_LEN: usize = 8 + 8 + 3 + CDB_SIZE;
/// `virtio_scsi_cmd_resp`: sense_len, resid, status_qualifier, status, response, sense.
pub const CMD_RESP_LEN: usize = 4 + 4 + 2 + 1 + 1 + SENSE_SIZE;
/// `virtio_scsi_ctrl_tmf_req`: type, subtype, `lun[8]`, tag.
pub const TMF_REQ_LEN: usize = 4 + 4 + 8 + 8;
/// `virtio_scsi_ctrl_an_req`: type, `lun[8]`, event_requested.
pub const AN_REQ_LEN: usize = 4 + 8 + 4;
/// `virtio_scsi_ctrl_an_resp`: event_actual, response.
pub const AN_RESP_LEN: usize = 4 + 1;
/// `virtio_scsi_event`: event, `lun[8]`, reason.
pub const EVENT_LEN: usize = 4 + 8 + 4;

/// VIRTIO_SCSI_S_FUNCTION_COMPLETE: the TMF response code that shares VIRTIO_SCSI_S_OK's
/// value (the bindings name only the latter).
pub const S_FUNCTION_COMPLETE: u32 = vs::VIRTIO_SCSI_S_OK;

/// The highest LUN a virtio-scsi address carries (14 bits of SAM flat addressing).
pub const MAX_LUN: u64 = 0x3fff;

pub use vs::{
    VIRTIO_SCSI_EVT_RESET_REMOVED as RESET_REMOVED, VIRTIO_SCSI_EVT_RESET_RESCAN as RESET_RESCAN,
    VIRTIO_SCSI_S_ABORTED as S_ABORTED, VIRTIO_SCSI_S_BAD_TARGET as S_BAD_TARGET,
    VIRTIO_SCSI_S_FAILURE as S_FAILURE, VIRTIO_SCSI_S_FUNCTION_REJECTED as S_FUNCTION_REJECTED,
    VIRTIO_SCSI_S_FUNCTION_SUCCEEDED as S_FUNCTION_SUCCEEDED,
    VIRTIO_SCSI_S_INCORRECT_LUN as S_INCORRECT_LUN, VIRTIO_SCSI_S_OK as S_OK,
    VIRTIO_SCSI_S_OVERRUN as S_OVERRUN, VIRTIO_SCSI_T_AN_QUERY as T_AN_QUERY,
    VIRTIO_SCSI_T_AN_SUBSCRIBE as T_AN_SUBSCRIBE, VIRTIO_SCSI_T_EVENTS_MISSED as T_EVENTS_MISSED,
    VIRTIO_SCSI_T_PARAM_CHANGE as T_PARAM_CHANGE, VIRTIO_SCSI_T_TMF as T_TMF,
    VIRTIO_SCSI_T_TRANSPORT_RESET as T_TRANSPORT_RESET,
};

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Where a request is addressed: virtio-scsi's 8-byte LUN field is `1`, the target,
/// then the LUN in SAM single-level format (peripheral or flat), then zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// A LUN of target `target`.
    Lun { target: u8, lun: u64 },
    /// Anything else: a well-known LUN, a hierarchical address, garbage.
    Invalid,
}

impl Address {
    pub fn decode(b: &[u8; 8]) -> Address {
        let method = b[2] >> 6;
        if b[0] != 1 || method > 1 || b[4..].iter().any(|&x| x != 0) {
            return Address::Invalid;
        }
        Address::Lun {
            target: b[1],
            lun: (((b[2] & 0x3f) as u64) << 8) | b[3] as u64,
        }
    }
}

/// The LUN field of an event about `lun` of target 0, as QEMU writes it: peripheral
/// addressing below 256, flat above (Linux reads both bytes as the LUN).
pub fn event_lun(lun: u64) -> [u8; 8] {
    let hi = if lun >= 256 {
        ((lun >> 8) as u8 & 0x3f) | 0x40
    } else {
        0
    };
    [1, 0, hi, lun as u8, 0, 0, 0, 0]
}

/// `virtio_scsi_cmd_req`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdReq {
    pub address: Address,
    pub tag: u64,
    pub task_attr: u8,
    pub cdb: [u8; CDB_SIZE],
}

impl CmdReq {
    pub fn decode(b: &[u8; CMD_REQ_LEN]) -> CmdReq {
        let mut lun = [0u8; 8];
        lun.copy_from_slice(&b[..8]);
        let mut cdb = [0u8; CDB_SIZE];
        cdb.copy_from_slice(&b[19..]);
        CmdReq {
            address: Address::decode(&lun),
            tag: u64_at(b, 8),
            task_attr: b[16],
            cdb,
        }
    }

    /// How many of the CDB bytes are the command: what its group code says, or for
    /// variable-length and vendor CDBs, all that the request carries.
    pub fn cdb_len(&self) -> usize {
        match scsi_wire::cdb::cdb_len(self.cdb[0]) {
            0 => CDB_SIZE,
            n => n,
        }
    }
}

/// `virtio_scsi_cmd_resp`, with the sense (cut to [`SENSE_SIZE`]) in place.
pub fn encode_cmd_resp(response: u8, status: u8, resid: u32, sense: &[u8]) -> [u8; CMD_RESP_LEN] {
    let sense = &sense[..sense.len().min(SENSE_SIZE)];
    let mut b = [0u8; CMD_RESP_LEN];
    b[0..4].copy_from_slice(&(sense.len() as u32).to_le_bytes());
    b[4..8].copy_from_slice(&resid.to_le_bytes());
    b[10] = status;
    b[11] = response;
    b[12..12 + sense.len()].copy_from_slice(sense);
    b
}

/// A control queue request, by its leading `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlReq {
    Tmf {
        subtype: u32,
        address: Address,
        tag: u64,
    },
    /// An asynchronous notification query or subscription: `event_requested`.
    An { subscribe: bool, requested: u32 },
    /// A type this device does not know, or a request too short for its type.
    Unknown(u32),
}

impl CtrlReq {
    /// Decode from the device-readable bytes of a control request.
    pub fn decode(b: &[u8]) -> CtrlReq {
        if b.len() < 4 {
            return CtrlReq::Unknown(u32::MAX);
        }
        let ty = u32_at(b, 0);
        match ty {
            T_TMF if b.len() >= TMF_REQ_LEN => {
                let mut lun = [0u8; 8];
                lun.copy_from_slice(&b[8..16]);
                CtrlReq::Tmf {
                    subtype: u32_at(b, 4),
                    address: Address::decode(&lun),
                    tag: u64_at(b, 16),
                }
            }
            T_AN_QUERY | T_AN_SUBSCRIBE if b.len() >= AN_REQ_LEN => CtrlReq::An {
                subscribe: ty == T_AN_SUBSCRIBE,
                requested: u32_at(b, 12),
            },
            other => CtrlReq::Unknown(other),
        }
    }
}

/// `virtio_scsi_ctrl_an_resp`.
pub fn encode_an_resp(event_actual: u32, response: u8) -> [u8; AN_RESP_LEN] {
    let mut b = [0u8; AN_RESP_LEN];
    b[..4].copy_from_slice(&event_actual.to_le_bytes());
    b[4] = response;
    b
}

/// `virtio_scsi_event`.
pub fn encode_event(event: u32, lun: u64, reason: u32) -> [u8; EVENT_LEN] {
    let mut b = [0u8; EVENT_LEN];
    b[..4].copy_from_slice(&event.to_le_bytes());
    b[4..12].copy_from_slice(&event_lun(lun));
    b[12..].copy_from_slice(&reason.to_le_bytes());
    b
}

/// A parameter change event's reason: the unit attention's ASC and ASCQ.
pub fn param_change_reason(asc: u8, ascq: u8) -> u32 {
    asc as u32 | (ascq as u32) << 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::decode(&[1, 0, 0, 5, 0, 0, 0, 0]),
            Address::Lun { target: 0, lun: 5 }
        );
        assert_eq!(
            Address::decode(&[1, 3, 0x41, 0x02, 0, 0, 0, 0]),
            Address::Lun {
                target: 3,
                lun: 0x102
            }
        );
        // REPORT LUNS well-known LUN, hierarchical and stray bytes are not LUNs.
        assert_eq!(
            Address::decode(&[0xc1, 1, 0, 0, 0, 0, 0, 0]),
            Address::Invalid
        );
        assert_eq!(
            Address::decode(&[1, 0, 0x80, 0, 0, 0, 0, 0]),
            Address::Invalid
        );
        assert_eq!(Address::decode(&[1, 0, 0, 1, 0, 0, 0, 9]), Address::Invalid);
        for lun in [0, 1, 255, 256, MAX_LUN] {
            assert_eq!(
                Address::decode(&event_lun(lun)),
                Address::Lun { target: 0, lun }
            );
        }
    }

    #[test]
    fn command_request_and_response() {
        let mut b = [0u8; CMD_REQ_LEN];
        b[..8].copy_from_slice(&[1, 0, 0, 2, 0, 0, 0, 0]);
        b[8..16].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        b[16] = 1;
        b[19] = 0x28;
        let r = CmdReq::decode(&b);
        assert_eq!(r.address, Address::Lun { target: 0, lun: 2 });
        assert_eq!(r.tag, 0x1122_3344_5566_7788);
        assert_eq!(r.task_attr, 1);
        assert_eq!(r.cdb_len(), 10);
        b[19] = 0x7f;
        assert_eq!(CmdReq::decode(&b).cdb_len(), CDB_SIZE);

        let long_sense = [0x70u8; 200];
        let resp = encode_cmd_resp(S_OK as u8, 2, 512, &long_sense);
        assert_eq!(u32_at(&resp, 0), SENSE_SIZE as u32);
        assert_eq!(u32_at(&resp, 4), 512);
        assert_eq!((resp[10], resp[11]), (2, 0));
        assert_eq!(resp[12], 0x70);
    }

    #[test]
    fn control_requests() {
        let mut b = [0u8; TMF_REQ_LEN];
        b[..4].copy_from_slice(&T_TMF.to_le_bytes());
        b[4..8].copy_from_slice(&5u32.to_le_bytes());
        b[8..16].copy_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0]);
        b[16..].copy_from_slice(&77u64.to_le_bytes());
        assert_eq!(
            CtrlReq::decode(&b),
            CtrlReq::Tmf {
                subtype: 5,
                address: Address::Lun { target: 0, lun: 1 },
                tag: 77
            }
        );
        // Too short for a TMF, too short for anything, and an unknown type.
        assert_eq!(CtrlReq::decode(&b[..10]), CtrlReq::Unknown(T_TMF));
        assert_eq!(CtrlReq::decode(&b[..2]), CtrlReq::Unknown(u32::MAX));
        b[..4].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(CtrlReq::decode(&b), CtrlReq::Unknown(9));
        let mut an = [0u8; AN_REQ_LEN];
        an[..4].copy_from_slice(&T_AN_SUBSCRIBE.to_le_bytes());
        an[12..].copy_from_slice(&0x10u32.to_le_bytes());
        assert_eq!(
            CtrlReq::decode(&an),
            CtrlReq::An {
                subscribe: true,
                requested: 0x10
            }
        );
    }

    #[test]
    fn events() {
        let e = encode_event(T_PARAM_CHANGE, 3, param_change_reason(0x2a, 0x09));
        assert_eq!(u32_at(&e, 0), T_PARAM_CHANGE);
        assert_eq!(&e[4..12], &[1, 0, 0, 3, 0, 0, 0, 0]);
        assert_eq!(u32_at(&e, 12), 0x092a);
    }
}
