//! TransportIDs (SPC-4 7.6.4): how an initiator port is named whatever the transport.
//! A target driver opens each session with the TransportID of its initiator port; the
//! core matches ACLs by its name, and persistent reservations keep, compare, report and
//! persist it in the SPC-4 encoding.

use scsi_wire::pr::IscsiTid;

/// Protocol identifiers (SPC-4 7.6.1, table 362).
pub mod protocol {
    pub const FC: u8 = 0x0;
    pub const SRP: u8 = 0x4;
    pub const ISCSI: u8 = 0x5;
    pub const SAS: u8 = 0x6;
}

/// Length of the fixed-size TransportIDs (FC, SRP, SAS).
const FIXED_LEN: usize = 24;

/// The initiator port of an I_T nexus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransportId {
    /// Fibre Channel (SPC-4 7.6.4.2): the initiator's N_Port_Name.
    Fc { n_port_name: [u8; 8] },
    /// SCSI RDMA Protocol (SPC-4 7.6.4.4): the 16-byte initiator port identifier.
    Srp { port_id: [u8; 16] },
    /// iSCSI (SPC-4 7.6.4.6): the initiator name and, for one port of it, the ISID of
    /// its session. Without an ISID it names every port of the initiator.
    Iscsi { name: String, isid: Option<[u8; 6]> },
    /// SAS (SPC-4 7.6.4.7): the initiator port's SAS address.
    Sas { address: [u8; 8] },
}

impl TransportId {
    pub fn iscsi(name: impl Into<String>, isid: Option<[u8; 6]>) -> TransportId {
        TransportId::Iscsi {
            name: name.into(),
            isid,
        }
    }

    /// The protocol identifier of the transport.
    pub fn protocol(&self) -> u8 {
        match self {
            TransportId::Fc { .. } => protocol::FC,
            TransportId::Srp { .. } => protocol::SRP,
            TransportId::Iscsi { .. } => protocol::ISCSI,
            TransportId::Sas { .. } => protocol::SAS,
        }
    }

    /// The initiator name as SCST shows it and ACLs match it: the iSCSI name, or the
    /// port's identifier in hex (colon-separated for an FC WWN, `0x` for SAS and
    /// SRP, as SCST's target drivers write them).
    pub fn name(&self) -> String {
        match self {
            TransportId::Iscsi { name, .. } => name.clone(),
            TransportId::Fc { n_port_name } => n_port_name
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            TransportId::Srp { port_id } => hex0x(port_id),
            TransportId::Sas { address } => hex0x(address),
        }
    }

    /// The initiator port's name: for iSCSI `<name>,i,0x<isid>` (RFC 7143 4.4.3),
    /// otherwise the same as [`TransportId::name`].
    pub fn port_name(&self) -> String {
        match self {
            TransportId::Iscsi {
                name,
                isid: Some(i),
            } => format!(
                "{name},i,0x{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                i[0], i[1], i[2], i[3], i[4], i[5]
            ),
            _ => self.name(),
        }
    }

    /// Whether `self` and `other` name the same initiator port for reservations: iSCSI
    /// names compare without regard to case, and a TransportID without an ISID matches
    /// every ISID (scst-reference 5.3.3); other transports compare their identifiers.
    pub fn matches(&self, other: &TransportId) -> bool {
        match (self, other) {
            (
                TransportId::Iscsi { name: a, isid: ia },
                TransportId::Iscsi { name: b, isid: ib },
            ) => {
                a.eq_ignore_ascii_case(b)
                    && match (ia, ib) {
                        (Some(x), Some(y)) => x == y,
                        _ => true,
                    }
            }
            _ => self == other,
        }
    }

    /// The SPC-4 encoding (as PERSISTENT RESERVE IN READ FULL STATUS reports it).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; FIXED_LEN];
        b[0] = self.protocol();
        match self {
            TransportId::Iscsi { name, isid } => {
                return IscsiTid {
                    name: name.clone(),
                    isid: *isid,
                }
                .encode()
            }
            TransportId::Fc { n_port_name } => b[8..16].copy_from_slice(n_port_name),
            TransportId::Srp { port_id } => b[8..24].copy_from_slice(port_id),
            TransportId::Sas { address } => b[4..12].copy_from_slice(address),
        }
        b
    }

    /// Decode one TransportID at the start of `b`: it and the bytes it occupies, or the
    /// offset (within `b`) of the field that is wrong. Untrusted bytes: never panics.
    pub fn decode(b: &[u8]) -> Result<(TransportId, usize), usize> {
        let Some(&b0) = b.first() else { return Err(0) };
        let proto = b0 & 0x0F;
        if proto == protocol::ISCSI {
            return IscsiTid::decode(b).map(|(t, n)| (TransportId::iscsi(t.name, t.isid), n));
        }
        // The fixed-size formats have format code 00b only.
        if b0 & 0xF0 != 0 {
            return Err(0);
        }
        let body = b.get(..FIXED_LEN).ok_or(b.len())?;
        let arr8 = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&body[at..at + 8]);
            a
        };
        let tid = match proto {
            protocol::FC => TransportId::Fc {
                n_port_name: arr8(8),
            },
            protocol::SAS => TransportId::Sas { address: arr8(4) },
            protocol::SRP => {
                let mut port_id = [0u8; 16];
                port_id.copy_from_slice(&body[8..24]);
                TransportId::Srp { port_id }
            }
            _ => return Err(0),
        };
        Ok((tid, FIXED_LEN))
    }
}

fn hex0x(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("0x");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_round_trips() {
        let tids = [
            TransportId::iscsi("iqn.1993-08.org.debian:01:a", Some([0x40, 0, 1, 2, 3, 4])),
            TransportId::iscsi("iqn.1993-08.org.debian:01:a", None),
            TransportId::Fc {
                n_port_name: [0x21, 0, 0, 0x24, 0xff, 0x31, 0x4c, 0x2e],
            },
            TransportId::Sas {
                address: [0x50, 0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6],
            },
            TransportId::Srp { port_id: [7; 16] },
        ];
        for t in tids {
            let b = t.encode();
            assert_eq!(b[0] & 0x0F, t.protocol());
            assert_eq!(TransportId::decode(&b), Ok((t.clone(), b.len())), "{t:?}");
        }
    }

    #[test]
    fn fixed_formats_sit_where_spc4_puts_them() {
        let fc = TransportId::Fc {
            n_port_name: [1, 2, 3, 4, 5, 6, 7, 8],
        }
        .encode();
        assert_eq!(
            (fc.len(), fc[0], &fc[8..16]),
            (24, 0, &[1, 2, 3, 4, 5, 6, 7, 8][..])
        );
        let sas = TransportId::Sas { address: [9; 8] }.encode();
        assert_eq!((sas[0], &sas[4..12]), (protocol::SAS, &[9; 8][..]));
    }

    #[test]
    fn bad_bytes_are_refused_with_the_offset() {
        assert_eq!(TransportId::decode(&[]), Err(0));
        // Unknown protocol, a format code the fixed formats do not have, short input.
        assert_eq!(TransportId::decode(&[0x0F; 24]), Err(0));
        assert_eq!(TransportId::decode(&[0x40; 24]), Err(0));
        assert_eq!(TransportId::decode(&[protocol::SAS; 10]), Err(10));
    }

    #[test]
    fn random_bytes_never_panic_and_decode_consistently() {
        // xorshift64: a fixed sequence of inputs, every protocol nibble included.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let b: Vec<u8> = (0..len)
                .map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8)
                .collect();
            if let Ok((t, used)) = TransportId::decode(&b) {
                assert!(used <= b.len());
                // What was accepted encodes to what decodes to the same port.
                let again = TransportId::decode(&t.encode()).expect("own encoding");
                assert_eq!(again.0, t);
            }
        }
    }

    #[test]
    fn names_and_matching() {
        let port = TransportId::iscsi("iqn.A", Some([0x40, 0, 0, 0, 0, 1]));
        assert_eq!(port.port_name(), "iqn.A,i,0x400000000001");
        assert!(port.matches(&TransportId::iscsi("IQN.a", None)));
        assert!(!port.matches(&TransportId::iscsi("iqn.a", Some([0x40, 0, 0, 0, 0, 2]))));
        let fc = TransportId::Fc {
            n_port_name: [0x21, 0, 0, 0x24, 0xff, 0x31, 0x4c, 0x2e],
        };
        assert_eq!(fc.name(), "21:00:00:24:ff:31:4c:2e");
        assert_eq!(fc.port_name(), fc.name());
        assert!(!fc.matches(&port));
        assert_eq!(
            TransportId::Sas { address: [0xab; 8] }.name(),
            "0xabababababababab"
        );
    }
}
