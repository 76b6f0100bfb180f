//! iSNSP framing and attributes (RFC 4171 5 and 6): the 12-byte PDU header, TLV
//! attributes, multi-PDU messages and the request/response layouts the client uses.
//! Decoding never trusts a length: malformed input is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// iSNSP version 1 (RFC 4171 5.1.1).
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 12;
/// The PDU length field is 16 bits; keep PDUs a multiple of 4 bytes below that.
pub const MAX_PDU_PAYLOAD: usize = 65532;
/// Cap on a reassembled message against a peer that never sets the last-PDU flag.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Cap on attributes in one message (each takes at least 8 bytes anyway).
const MAX_ATTRS: usize = MAX_MESSAGE / 8;

/// Function IDs (RFC 4171 6.1); a response is its request's ID with [`RESPONSE`](func::RESPONSE) set.
pub mod func {
    pub const DEV_ATTR_REG: u16 = 0x0001;
    pub const DEV_ATTR_QRY: u16 = 0x0002;
    pub const DEV_GET_NEXT: u16 = 0x0003;
    pub const DEV_DEREG: u16 = 0x0004;
    pub const SCN_REG: u16 = 0x0005;
    pub const SCN_DEREG: u16 = 0x0006;
    pub const SCN_EVENT: u16 = 0x0007;
    pub const SCN: u16 = 0x0008;
    pub const ESI: u16 = 0x000d;
    pub const HEARTBEAT: u16 = 0x000e;
    pub const RESPONSE: u16 = 0x8000;
}

/// PDU header flags (RFC 4171 5.1.4).
pub mod flags {
    pub const CLIENT: u16 = 0x8000;
    pub const SERVER: u16 = 0x4000;
    pub const AUTH: u16 = 0x2000;
    /// DevAttrReg: replace what the message key identifies instead of updating it.
    pub const REPLACE: u16 = 0x1000;
    pub const LAST_PDU: u16 = 0x0800;
    pub const FIRST_PDU: u16 = 0x0400;
}

/// Attribute tags (RFC 4171 6.1).
pub mod tag {
    pub const DELIMITER: u32 = 0;
    pub const ENTITY_ID: u32 = 1;
    pub const ENTITY_PROTOCOL: u32 = 2;
    pub const MGMT_IP: u32 = 3;
    pub const TIMESTAMP: u32 = 4;
    pub const REGISTRATION_PERIOD: u32 = 6;
    pub const ENTITY_INDEX: u32 = 7;
    pub const PORTAL_IP: u32 = 16;
    pub const PORTAL_PORT: u32 = 17;
    pub const PORTAL_SYMBOLIC_NAME: u32 = 18;
    pub const ESI_INTERVAL: u32 = 19;
    pub const ESI_PORT: u32 = 20;
    pub const PORTAL_INDEX: u32 = 22;
    pub const SCN_PORT: u32 = 23;
    pub const ISCSI_NAME: u32 = 32;
    pub const ISCSI_NODE_TYPE: u32 = 33;
    pub const ISCSI_ALIAS: u32 = 34;
    pub const ISCSI_SCN_BITMAP: u32 = 35;
    pub const ISCSI_NODE_INDEX: u32 = 36;
    pub const PG_ISCSI_NAME: u32 = 48;
    pub const PG_PORTAL_IP: u32 = 49;
    pub const PG_PORTAL_PORT: u32 = 50;
    pub const PG_TAG: u32 = 51;
    pub const DD_ID: u32 = 2065;
}

/// iSCSI Node Type bits (RFC 4171 6.4.2).
pub mod node_type {
    pub const TARGET: u32 = 0x1;
    pub const INITIATOR: u32 = 0x2;
    pub const CONTROL: u32 = 0x4;
}

/// Entity Protocol value for iSCSI (RFC 4171 6.2.2).
pub const ENTITY_PROTOCOL_ISCSI: u32 = 2;

/// Response status codes (RFC 4171 6.4.3 / table 7) the client acts on.
pub mod status {
    pub const SUCCESS: u32 = 0;
    pub const NO_SUCH_ENTRY: u32 = 9;
}

/// A short description of a response status code, for log messages.
pub fn status_text(code: u32) -> &'static str {
    match code {
        0 => "successful",
        1 => "unknown error",
        2 => "message format error",
        3 => "invalid registration",
        5 => "invalid query",
        6 => "source unknown",
        7 => "source absent",
        8 => "source unauthorized",
        9 => "no such entry",
        10 => "version not supported",
        11 => "internal error",
        12 => "busy",
        13 => "option not understood",
        14 => "invalid update",
        15 => "message not supported",
        16 => "SCN event rejected",
        17 => "SCN registration rejected",
        18 => "attribute not implemented",
        21 => "ESI not available",
        22 => "invalid deregistration",
        23 => "registration feature not supported",
        _ => "unknown status",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated iSNS data: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("unsupported iSNSP version {0}")]
    Version(u16),
    #[error("iSNS attribute {tag} claims {len} bytes, only {left} left")]
    AttrOverrun { tag: u32, len: u32, left: usize },
    #[error("too many iSNS attributes")]
    TooManyAttrs,
    #[error("iSNS message longer than {MAX_MESSAGE} bytes")]
    TooLong,
    #[error("iSNS PDU out of sequence: expected {expected}, got {got}")]
    Sequence { expected: u16, got: u16 },
}

/// The iSNSP PDU header (RFC 4171 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub function: u16,
    /// Length of the payload that follows the header.
    pub length: u16,
    pub flags: u16,
    pub xid: u16,
    pub seq: u16,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        for (i, v) in [
            self.version,
            self.function,
            self.length,
            self.flags,
            self.xid,
            self.seq,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 2..i * 2 + 2].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    /// Decode a header; only version 1 is accepted.
    pub fn decode(b: &[u8]) -> Result<Header, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated {
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        let w = |i: usize| u16::from_be_bytes([b[i * 2], b[i * 2 + 1]]);
        let h = Header {
            version: w(0),
            function: w(1),
            length: w(2),
            flags: w(3),
            xid: w(4),
            seq: w(5),
        };
        if h.version != VERSION {
            return Err(WireError::Version(h.version));
        }
        Ok(h)
    }
}

/// One TLV attribute; `value` is stored as on the wire (padded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub tag: u32,
    pub value: Vec<u8>,
}

impl Attr {
    /// A zero-length attribute: the delimiter, or "return this attribute" in queries.
    pub fn empty(tag: u32) -> Attr {
        Attr {
            tag,
            value: Vec::new(),
        }
    }

    pub fn delimiter() -> Attr {
        Attr::empty(tag::DELIMITER)
    }

    /// A NUL-terminated UTF-8 string padded to a multiple of 4 (RFC 4171 5.5).
    pub fn string(tag: u32, s: &str) -> Attr {
        let mut value = s.as_bytes().to_vec();
        value.push(0);
        while !value.len().is_multiple_of(4) {
            value.push(0);
        }
        Attr { tag, value }
    }

    pub fn u32(tag: u32, v: u32) -> Attr {
        Attr {
            tag,
            value: v.to_be_bytes().to_vec(),
        }
    }

    /// IP addresses are always 16 bytes; IPv4 as an IPv4-mapped IPv6 address.
    pub fn ip(tag: u32, ip: IpAddr) -> Attr {
        let v6 = match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        Attr {
            tag,
            value: v6.octets().to_vec(),
        }
    }

    /// A TCP port for Portal/PG port attributes (the UDP bit clear).
    pub fn tcp_port(tag: u32, port: u16) -> Attr {
        Attr::u32(tag, u32::from(port))
    }

    /// The string up to its first NUL; None when not UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        let end = self
            .value
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.value.len());
        std::str::from_utf8(&self.value[..end]).ok()
    }

    pub fn as_u32(&self) -> Option<u32> {
        let b: [u8; 4] = self.value.as_slice().try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    pub fn as_ip(&self) -> Option<IpAddr> {
        let b: [u8; 16] = self.value.as_slice().try_into().ok()?;
        let v6 = Ipv6Addr::from(b);
        Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        })
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag.to_be_bytes());
        out.extend_from_slice(&(self.value.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.value);
    }
}

pub fn encode_attrs(attrs: &[Attr]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in attrs {
        a.encode_into(&mut out);
    }
    out
}

/// Parse a run of TLV attributes that must exactly fill `b`.
pub fn decode_attrs(mut b: &[u8]) -> Result<Vec<Attr>, WireError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 8 {
            return Err(WireError::Truncated {
                need: 8,
                have: b.len(),
            });
        }
        if out.len() >= MAX_ATTRS {
            return Err(WireError::TooManyAttrs);
        }
        let tag = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let len = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let rest = &b[8..];
        if len as usize > rest.len() {
            return Err(WireError::AttrOverrun {
                tag,
                len,
                left: rest.len(),
            });
        }
        let (value, next) = rest.split_at(len as usize);
        out.push(Attr {
            tag,
            value: value.to_vec(),
        });
        b = next;
    }
    Ok(out)
}

/// A request payload: Source attribute, message key, delimiter, operating attributes
/// (RFC 4171 5.6.1).
pub fn request_payload(source: &Attr, key: &[Attr], operating: &[Attr]) -> Vec<u8> {
    let mut attrs = Vec::with_capacity(key.len() + operating.len() + 2);
    attrs.push(source.clone());
    attrs.extend_from_slice(key);
    attrs.push(Attr::delimiter());
    attrs.extend_from_slice(operating);
    encode_attrs(&attrs)
}

/// A decoded response message: the status code and the attributes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u32,
    pub attrs: Vec<Attr>,
}

impl Response {
    pub fn decode(payload: &[u8]) -> Result<Response, WireError> {
        if payload.len() < 4 {
            return Err(WireError::Truncated {
                need: 4,
                have: payload.len(),
            });
        }
        let status = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        // A failed request may come back with nothing after the status.
        let attrs = decode_attrs(&payload[4..])?;
        Ok(Response { status, attrs })
    }

    /// The operating attributes: those after the first delimiter, or all of them when
    /// the server sent no key section.
    pub fn operating(&self) -> &[Attr] {
        match self.attrs.iter().position(|a| a.tag == tag::DELIMITER) {
            Some(i) => &self.attrs[i + 1..],
            None => &self.attrs,
        }
    }

    pub fn find(&self, tag: u32) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.tag == tag)
    }
}

/// Split a message into PDUs (RFC 4171 5.3): sequence IDs from 0, the first and last
/// PDU flagged.
pub fn encode_message(function: u16, flags: u16, xid: u16, payload: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]]
    } else {
        payload.chunks(MAX_PDU_PAYLOAD).collect()
    };
    let n = chunks.len();
    let mut out = Vec::with_capacity(payload.len() + n * HEADER_LEN);
    for (i, c) in chunks.into_iter().enumerate() {
        let mut f = flags & !(flags::FIRST_PDU | flags::LAST_PDU);
        if i == 0 {
            f |= flags::FIRST_PDU;
        }
        if i + 1 == n {
            f |= flags::LAST_PDU;
        }
        let h = Header {
            version: VERSION,
            function,
            length: c.len() as u16,
            flags: f,
            xid,
            seq: i as u16,
        };
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(c);
    }
    out
}

/// Reassembles one message from its PDUs.
#[derive(Debug, Default)]
pub struct Reassembler {
    buf: Vec<u8>,
    next_seq: u16,
}

impl Reassembler {
    /// Add a PDU of the message; returns the whole payload after the last one.
    pub fn push(&mut self, h: &Header, payload: &[u8]) -> Result<Option<Vec<u8>>, WireError> {
        if h.seq != self.next_seq {
            return Err(WireError::Sequence {
                expected: self.next_seq,
                got: h.seq,
            });
        }
        if self.buf.len() + payload.len() > MAX_MESSAGE {
            return Err(WireError::TooLong);
        }
        self.buf.extend_from_slice(payload);
        self.next_seq = self.next_seq.wrapping_add(1);
        if h.flags & flags::LAST_PDU != 0 {
            self.next_seq = 0;
            return Ok(Some(std::mem::take(&mut self.buf)));
        }
        Ok(None)
    }
}

/// The IPv4 address when `ip` is IPv4 or IPv4-mapped, for display and comparison.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(IpAddr::V6(v6), |v4: Ipv4Addr| IpAddr::V4(v4)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            version: VERSION,
            function: func::DEV_ATTR_REG,
            length: 40,
            flags: flags::CLIENT | flags::FIRST_PDU | flags::LAST_PDU,
            xid: 7,
            seq: 0,
        };
        let b = h.encode();
        assert_eq!(&b[..4], &[0, 1, 0, 1]);
        assert_eq!(Header::decode(&b).unwrap(), h);
        let mut bad = b;
        bad[1] = 2;
        assert_eq!(Header::decode(&bad), Err(WireError::Version(2)));
        assert!(matches!(
            Header::decode(&b[..11]),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn attribute_encodings() {
        let s = Attr::string(tag::ISCSI_NAME, "iqn.x");
        assert_eq!(s.value, b"iqn.x\0\0\0");
        assert_eq!(s.as_str(), Some("iqn.x"));
        // Exactly 4 bytes long still gets its NUL, in a word of its own.
        assert_eq!(Attr::string(1, "abcd").value.len(), 8);
        let ip = Attr::ip(tag::PORTAL_IP, "192.0.2.1".parse().unwrap());
        assert_eq!(&ip.value[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(ip.as_ip(), Some("192.0.2.1".parse().unwrap()));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(Attr::ip(tag::PORTAL_IP, v6).as_ip(), Some(v6));
        assert_eq!(Attr::tcp_port(tag::PORTAL_PORT, 3260).as_u32(), Some(3260));
        assert_eq!(Attr::empty(5).as_u32(), None);
        assert_eq!(Attr::empty(5).as_ip(), None);
        assert_eq!(Attr::empty(5).as_str(), Some(""));
        let bad = Attr {
            tag: 1,
            value: vec![0xff, 0xfe, 0],
        };
        assert_eq!(bad.as_str(), None);
    }

    #[test]
    fn request_layout_and_attr_round_trip() {
        let p = request_payload(
            &Attr::string(tag::ISCSI_NAME, "iqn.t"),
            &[Attr::string(tag::ENTITY_ID, "host")],
            &[Attr::u32(tag::ISCSI_NODE_TYPE, node_type::TARGET)],
        );
        let attrs = decode_attrs(&p).unwrap();
        let tags: Vec<u32> = attrs.iter().map(|a| a.tag).collect();
        assert_eq!(
            tags,
            [
                tag::ISCSI_NAME,
                tag::ENTITY_ID,
                tag::DELIMITER,
                tag::ISCSI_NODE_TYPE
            ]
        );
        assert_eq!(attrs[2].value.len(), 0);
        assert_eq!(encode_attrs(&attrs), p);
    }

    #[test]
    fn response_decoding() {
        let mut p = 0u32.to_be_bytes().to_vec();
        p.extend(encode_attrs(&[
            Attr::string(tag::ENTITY_ID, "e"),
            Attr::delimiter(),
            Attr::u32(tag::REGISTRATION_PERIOD, 900),
        ]));
        let r = Response::decode(&p).unwrap();
        assert_eq!(r.status, 0);
        assert_eq!(r.operating().len(), 1);
        assert_eq!(
            r.find(tag::REGISTRATION_PERIOD).and_then(Attr::as_u32),
            Some(900)
        );
        // Status only.
        let r = Response::decode(&9u32.to_be_bytes()).unwrap();
        assert_eq!(r.status, status::NO_SUCH_ENTRY);
        assert!(r.operating().is_empty());
        assert_eq!(status_text(9), "no such entry");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(Response::decode(&[]).is_err());
        assert!(Response::decode(&[0, 0, 0]).is_err());
        // Attribute length past the end.
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(&32u32.to_be_bytes());
        p.extend_from_slice(&u32::MAX.to_be_bytes());
        p.extend_from_slice(b"abc");
        assert!(matches!(
            Response::decode(&p),
            Err(WireError::AttrOverrun { .. })
        ));
        // A partial TLV header.
        assert!(decode_attrs(&[0, 0, 0, 1, 0]).is_err());
        // Every prefix and every single-byte corruption of a valid message.
        let good = request_payload(
            &Attr::string(tag::ISCSI_NAME, "iqn.2026-11.rs.scst:t"),
            &[Attr::string(tag::ENTITY_ID, "host")],
            &[Attr::ip(tag::PORTAL_IP, "10.0.0.1".parse().unwrap())],
        );
        for n in 0..good.len() {
            let _ = decode_attrs(&good[..n]);
            let _ = Response::decode(&good[..n]);
            let _ = Header::decode(&good[..n.min(HEADER_LEN)]);
        }
        for i in 0..good.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                if let Ok(attrs) = decode_attrs(&b) {
                    for a in &attrs {
                        let _ = (a.as_str(), a.as_u32(), a.as_ip());
                    }
                }
            }
        }
        // Pseudo-random garbage.
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = Response::decode(&b);
            let _ = Header::decode(&b);
        }
    }

    #[test]
    fn multi_pdu_messages() {
        let payload: Vec<u8> = (0..(MAX_PDU_PAYLOAD + 100)).map(|i| i as u8).collect();
        let wire = encode_message(func::DEV_ATTR_QRY, flags::CLIENT, 3, &payload);
        let mut r = Reassembler::default();
        let mut rest = &wire[..];
        let mut got = None;
        let mut pdus = 0;
        while !rest.is_empty() {
            let h = Header::decode(rest).unwrap();
            assert_eq!(h.flags & flags::FIRST_PDU != 0, pdus == 0);
            let body = &rest[HEADER_LEN..HEADER_LEN + h.length as usize];
            got = r.push(&h, body).unwrap();
            rest = &rest[HEADER_LEN + h.length as usize..];
            pdus += 1;
        }
        assert_eq!(pdus, 2);
        assert_eq!(got.unwrap(), payload);

        // Out-of-order sequence numbers are refused.
        let mut r = Reassembler::default();
        let h = Header {
            version: VERSION,
            function: func::DEV_ATTR_QRY | func::RESPONSE,
            length: 0,
            flags: 0,
            xid: 1,
            seq: 1,
        };
        assert!(matches!(r.push(&h, &[]), Err(WireError::Sequence { .. })));

        // Empty payload: one PDU, first and last.
        let wire = encode_message(func::DEV_DEREG, flags::CLIENT, 1, &[]);
        let h = Header::decode(&wire).unwrap();
        assert_eq!(wire.len(), HEADER_LEN);
        assert_eq!(h.flags, flags::CLIENT | flags::FIRST_PDU | flags::LAST_PDU);
    }
}
