//! Persistent reservation wire formats (SPC-4 6.16 PERSISTENT RESERVE IN, 6.17
//! PERSISTENT RESERVE OUT, 7.6.4 TransportIDs): iSCSI TransportIDs and the PR OUT
//! parameter lists. Parameter lists are untrusted bytes: every error becomes the sense
//! data SPC-4 asks for (PARAMETER LIST LENGTH ERROR or INVALID FIELD IN PARAMETER LIST
//! with a field pointer), never a panic.

use crate::sense::Sense;

/// PERSISTENT RESERVE IN service actions.
pub mod sa_in {
    pub const READ_KEYS: u8 = 0x00;
    pub const READ_RESERVATION: u8 = 0x01;
    pub const REPORT_CAPABILITIES: u8 = 0x02;
    pub const READ_FULL_STATUS: u8 = 0x03;
}

/// PERSISTENT RESERVE OUT service actions.
pub mod sa_out {
    pub const REGISTER: u8 = 0x00;
    pub const RESERVE: u8 = 0x01;
    pub const RELEASE: u8 = 0x02;
    pub const CLEAR: u8 = 0x03;
    pub const PREEMPT: u8 = 0x04;
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_IGNORE: u8 = 0x06;
    pub const REGISTER_AND_MOVE: u8 = 0x07;
}

/// Protocol identifier of iSCSI in a TransportID (SPC-4 table 362).
pub const PROTOCOL_ISCSI: u8 = 0x5;

/// Length of the basic PR OUT parameter list (SPC-4 6.17.3).
pub const BASIC_LIST_LEN: usize = 24;

/// An iSCSI TransportID (SPC-4 7.6.4.6): format 00b carries the initiator name only,
/// format 01b the initiator port name `<name>,i,0x<ISID>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscsiTid {
    pub name: String,
    pub isid: Option<[u8; 6]>,
}

/// SPC-4 requires the iSCSI TransportID's additional length to be at least 20.
const MIN_TID_ADDITIONAL_LEN: usize = 20;

impl IscsiTid {
    /// Encode: format 01b when the ISID is known, else 00b; the name string is
    /// NUL-terminated and padded to a multiple of 4 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let text = match self.isid {
            Some(i) => format!(
                "{},i,0x{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                self.name, i[0], i[1], i[2], i[3], i[4], i[5]
            ),
            None => self.name.clone(),
        };
        let mut addl = (text.len() + 1)
            .next_multiple_of(4)
            .max(MIN_TID_ADDITIONAL_LEN);
        // The additional length is a 16-bit field; names are far shorter (RFC 7143
        // caps them at 223 bytes), but never emit a length that lies.
        addl = addl.min(u16::MAX as usize & !3);
        let format = if self.isid.is_some() { 0x40 } else { 0x00 };
        let mut b = Vec::with_capacity(4 + addl);
        b.push(format | PROTOCOL_ISCSI);
        b.push(0);
        b.extend_from_slice(&(addl as u16).to_be_bytes());
        let body = text.as_bytes();
        b.extend_from_slice(&body[..body.len().min(addl - 1)]);
        b.resize(4 + addl, 0);
        b
    }

    /// Decode one TransportID at the start of `b`. Returns it and the number of bytes
    /// it occupies, or the offset (within `b`) of the field that is wrong.
    pub fn decode(b: &[u8]) -> Result<(IscsiTid, usize), usize> {
        let Some(&b0) = b.first() else { return Err(0) };
        if b0 & 0x0F != PROTOCOL_ISCSI {
            return Err(0);
        }
        let format = b0 >> 6;
        if format > 1 || b0 & 0x30 != 0 {
            return Err(0);
        }
        let addl = match b.get(2..4) {
            Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
            None => return Err(2),
        };
        if addl < 4 || addl % 4 != 0 {
            return Err(2);
        }
        let body = b.get(4..4 + addl).ok_or(2usize)?;
        // The name ends at the first NUL; one must be there.
        let end = body.iter().position(|&c| c == 0).ok_or(4usize)?;
        let text = std::str::from_utf8(&body[..end]).map_err(|_| 4usize)?;
        let tid = if format == 0 {
            if text.is_empty() || text.contains(",i,0x") {
                return Err(4);
            }
            IscsiTid {
                name: text.to_string(),
                isid: None,
            }
        } else {
            let sep = find_ignore_case(text, ",i,0x").ok_or(4usize)?;
            let name = &text[..sep];
            let hex = &text[sep + 5..];
            let isid = parse_isid(hex).ok_or(4 + sep + 5)?;
            if name.is_empty() {
                return Err(4);
            }
            IscsiTid {
                name: name.to_string(),
                isid: Some(isid),
            }
        };
        Ok((tid, 4 + addl))
    }

    /// Initiator names compare case-insensitively (RFC 3722 normalises them to lower
    /// case); a name-only TransportID matches every ISID of that initiator (scst-reference 5.3.3).
    pub fn matches(&self, other: &IscsiTid) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && match (self.isid, other.isid) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

fn find_ignore_case(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    (0..=h.len().checked_sub(n.len())?).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// The ISID in hex: the standard 12 digits, or SCST's legacy `%llx` of ISID<<16|TSIH
/// (13 to 16 digits, TSIH zero) which this also accepts.
fn parse_isid(hex: &str) -> Option<[u8; 6]> {
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut v = u64::from_str_radix(hex, 16).ok()?;
    if hex.len() > 12 {
        v >>= 16;
    }
    let b = v.to_be_bytes();
    Some([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// The basic PR OUT parameter list (SPC-4 6.17.3), plus the TransportIDs when SPEC_I_PT
/// is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrOutParams {
    pub key: u64,
    pub sa_key: u64,
    pub spec_i_pt: bool,
    pub all_tg_pt: bool,
    pub aptpl: bool,
    pub tids: Vec<IscsiTid>,
}

fn be64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn be32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn offset16(off: usize) -> u16 {
    off.min(u16::MAX as usize) as u16
}

impl PrOutParams {
    /// Parse the parameter list of every service action but REGISTER AND MOVE.
    /// `sa` decides which flags are allowed: SPEC_I_PT only with REGISTER, ALL_TG_PT
    /// only with REGISTER and REGISTER AND IGNORE EXISTING KEY.
    pub fn parse(sa: u8, list: &[u8]) -> Result<PrOutParams, Sense> {
        if list.len() < BASIC_LIST_LEN {
            return Err(Sense::PARAM_LIST_LENGTH_ERROR);
        }
        let flags = list[20];
        let spec_i_pt = flags & 0x08 != 0;
        let all_tg_pt = flags & 0x04 != 0;
        let aptpl = flags & 0x01 != 0;
        if spec_i_pt && sa != sa_out::REGISTER {
            return Err(Sense::invalid_field_in_param(20, Some(3)));
        }
        if all_tg_pt && sa != sa_out::REGISTER && sa != sa_out::REGISTER_AND_IGNORE {
            return Err(Sense::invalid_field_in_param(20, Some(2)));
        }
        let mut p = PrOutParams {
            key: be64_at(list, 0),
            sa_key: be64_at(list, 8),
            spec_i_pt,
            all_tg_pt,
            aptpl,
            tids: Vec::new(),
        };
        if !spec_i_pt {
            if list.len() != BASIC_LIST_LEN {
                return Err(Sense::PARAM_LIST_LENGTH_ERROR);
            }
            return Ok(p);
        }
        // SPEC_I_PT: a 4-byte TransportID parameter data length, then the TransportIDs.
        if list.len() < BASIC_LIST_LEN + 4 {
            return Err(Sense::PARAM_LIST_LENGTH_ERROR);
        }
        let tid_len = be32_at(list, 24) as usize;
        let start = BASIC_LIST_LEN + 4;
        let end = start
            .checked_add(tid_len)
            .ok_or(Sense::PARAM_LIST_LENGTH_ERROR)?;
        if end > list.len() {
            return Err(Sense::PARAM_LIST_LENGTH_ERROR);
        }
        let mut off = start;
        while off < end {
            let (tid, n) = IscsiTid::decode(&list[off..end])
                .map_err(|e| Sense::invalid_field_in_param(offset16(off + e), None))?;
            p.tids.push(tid);
            off += n;
        }
        Ok(p)
    }
}

/// The REGISTER AND MOVE parameter list (SPC-4 6.17.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterMoveParams {
    pub key: u64,
    pub sa_key: u64,
    pub unreg: bool,
    pub aptpl: bool,
    pub rel_tgt_id: u16,
    pub tid: IscsiTid,
}

impl RegisterMoveParams {
    pub fn parse(list: &[u8]) -> Result<RegisterMoveParams, Sense> {
        if list.len() < BASIC_LIST_LEN {
            return Err(Sense::PARAM_LIST_LENGTH_ERROR);
        }
        let tid_len = be32_at(list, 20) as usize;
        let end = BASIC_LIST_LEN
            .checked_add(tid_len)
            .ok_or(Sense::PARAM_LIST_LENGTH_ERROR)?;
        if end > list.len() {
            return Err(Sense::PARAM_LIST_LENGTH_ERROR);
        }
        let (tid, n) = IscsiTid::decode(&list[BASIC_LIST_LEN..end])
            .map_err(|e| Sense::invalid_field_in_param(offset16(BASIC_LIST_LEN + e), None))?;
        // Exactly one TransportID: anything after it is a malformed list.
        if n != tid_len {
            return Err(Sense::invalid_field_in_param(20, None));
        }
        Ok(RegisterMoveParams {
            key: be64_at(list, 0),
            sa_key: be64_at(list, 8),
            unreg: list[17] & 0x02 != 0,
            aptpl: list[17] & 0x01 != 0,
            rel_tgt_id: u16::from_be_bytes([list[18], list[19]]),
            tid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(name: &str, isid: Option<[u8; 6]>) -> IscsiTid {
        IscsiTid {
            name: name.to_string(),
            isid,
        }
    }

    #[test]
    fn tid_round_trip_both_formats() {
        for t in [
            tid("iqn.2024-01.x:a", None),
            tid("iqn.x:b", Some([0x40, 0, 1, 0x37, 0, 2])),
        ] {
            let b = t.encode();
            assert_eq!(b.len() % 4, 0);
            assert!(b.len() >= 24);
            assert_eq!(IscsiTid::decode(&b), Ok((t.clone(), b.len())));
        }
        let b = tid("iqn.x:b", Some([0x40, 0, 1, 0x37, 0, 2])).encode();
        assert_eq!(b[0], 0x45);
        assert_eq!(&b[4..30], b"iqn.x:b,i,0x400001370002\0\0");
    }

    #[test]
    fn tid_decode_rejects_garbage() {
        assert_eq!(IscsiTid::decode(&[]), Err(0));
        assert_eq!(IscsiTid::decode(&[0x01, 0, 0, 4, b'a', 0, 0, 0]), Err(0)); // FC
        assert_eq!(IscsiTid::decode(&[0x05, 0, 0, 8, b'a', 0, 0, 0]), Err(2)); // short
        assert_eq!(
            IscsiTid::decode(&[0x05, 0, 0, 4, b'a', b'b', b'c', b'd']),
            Err(4)
        ); // no NUL
        assert_eq!(IscsiTid::decode(&[0x45, 0, 0, 4, b'a', 0, 0, 0]), Err(4)); // no ISID
    }

    #[test]
    fn tid_accepts_scst_legacy_isid_and_matches_by_name() {
        let mut b = vec![0x45, 0, 0, 0];
        b.extend_from_slice(b"IQN.X:B,i,0x4000013700020000\0\0\0\0");
        b[3] = (b.len() - 4) as u8;
        let (t, _) = IscsiTid::decode(&b).unwrap();
        assert_eq!(t.isid, Some([0x40, 0, 1, 0x37, 0, 2]));
        assert!(t.matches(&tid("iqn.x:b", None)));
        assert!(!t.matches(&tid("iqn.x:b", Some([0; 6]))));
    }

    #[test]
    fn basic_list_length_and_flag_checks() {
        let mut l = vec![0u8; 24];
        l[7] = 1;
        l[15] = 2;
        let p = PrOutParams::parse(sa_out::REGISTER, &l).unwrap();
        assert_eq!((p.key, p.sa_key), (1, 2));
        assert_eq!(
            PrOutParams::parse(0, &l[..23]),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
        assert_eq!(
            PrOutParams::parse(0, &[0u8; 25]),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
        l[20] = 0x08;
        assert_eq!(
            PrOutParams::parse(sa_out::RESERVE, &l),
            Err(Sense::invalid_field_in_param(20, Some(3)))
        );
        l[20] = 0x04;
        assert_eq!(
            PrOutParams::parse(sa_out::CLEAR, &l),
            Err(Sense::invalid_field_in_param(20, Some(2)))
        );
    }

    #[test]
    fn spec_i_pt_list() {
        let t = tid("iqn.x:c", None).encode();
        let mut l = vec![0u8; 24];
        l[20] = 0x08;
        l.extend_from_slice(&(t.len() as u32).to_be_bytes());
        l.extend_from_slice(&t);
        let p = PrOutParams::parse(sa_out::REGISTER, &l).unwrap();
        assert_eq!(p.tids, vec![tid("iqn.x:c", None)]);
        // The TransportID length runs past the list.
        l[27] += 4;
        assert_eq!(
            PrOutParams::parse(0, &l),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
        l[27] -= 4;
        l[28] = 0x01;
        assert_eq!(
            PrOutParams::parse(0, &l),
            Err(Sense::invalid_field_in_param(28, None))
        );
    }

    #[test]
    fn register_move_list() {
        let t = tid("iqn.x:d", Some([1, 2, 3, 4, 5, 6])).encode();
        let mut l = vec![0u8; 24];
        l[17] = 0x03;
        l[18..20].copy_from_slice(&7u16.to_be_bytes());
        l[20..24].copy_from_slice(&(t.len() as u32).to_be_bytes());
        l.extend_from_slice(&t);
        let p = RegisterMoveParams::parse(&l).unwrap();
        assert!(p.unreg && p.aptpl);
        assert_eq!(p.rel_tgt_id, 7);
        assert_eq!(p.tid.name, "iqn.x:d");
        assert_eq!(
            RegisterMoveParams::parse(&l[..30]),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
    }
}
