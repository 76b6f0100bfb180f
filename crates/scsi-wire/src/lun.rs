//! The 8-byte SAM LUN field (SAM-5 4.7) as SCST packs and unpacks it, and the REPORT
//! LUNS parameter data (SPC-4 6.33).
//!
//! SCST only uses the first level: the first two bytes are `(method << 14) + lun` and the
//! other six are zero; LUN 0 is always all zeros whatever the method.

/// Addressing method used when encoding LUNs (SCST's `addr_method` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddrMethod {
    /// Method 0: LUNs < 256 in byte 1 (bus 0).
    #[default]
    Peripheral,
    /// Method 1: 14-bit flat space.
    Flat,
    /// Method 2: logical unit addressing.
    Lun,
}

impl AddrMethod {
    pub const fn code(self) -> u16 {
        match self {
            AddrMethod::Peripheral => 0,
            AddrMethod::Flat => 1,
            AddrMethod::Lun => 2,
        }
    }

    /// SCST's attribute spelling.
    pub const fn name(self) -> &'static str {
        match self {
            AddrMethod::Peripheral => "PERIPHERAL",
            AddrMethod::Flat => "FLAT",
            AddrMethod::Lun => "LUN",
        }
    }

    pub fn from_name(s: &str) -> Option<AddrMethod> {
        match s.trim() {
            "PERIPHERAL" => Some(AddrMethod::Peripheral),
            "FLAT" => Some(AddrMethod::Flat),
            "LUN" => Some(AddrMethod::Lun),
            _ => None,
        }
    }
}

/// The value `decode_lun` returns for a LUN field it cannot map (SCST's NO_SUCH_LUN):
/// the core's LUN lookup then fails with LOGICAL UNIT NOT SUPPORTED.
pub const NO_SUCH_LUN: u64 = u64::MAX;

/// Largest LUN the 14-bit first level can carry.
pub const MAX_LUN: u64 = 0x3FFF;

/// Decode the 8-byte LUN field. Multi-level LUNs and extended addressing are not used by
/// SCST and decode to [`NO_SUCH_LUN`].
pub fn decode_lun(b: [u8; 8]) -> u64 {
    if b[2..].iter().any(|&x| x != 0) {
        return NO_SUCH_LUN;
    }
    match b[0] >> 6 {
        // Peripheral: SCST accepts a non-zero bus identifier and treats the 14 bits as a
        // flat number, like most initiators do.
        0 | 1 => (u16::from_be_bytes([b[0], b[1]]) & 0x3FFF) as u64,
        // Logical unit addressing: target 0, bus 0, 5-bit LUN.
        2 => {
            if b[0] & 0x3F != 0 || b[1] & 0xE0 != 0 {
                NO_SUCH_LUN
            } else {
                (b[1] & 0x1F) as u64
            }
        }
        _ => NO_SUCH_LUN,
    }
}

/// Encode `lun` (only its low 14 bits are representable) with `method`.
pub fn encode_lun(lun: u64, method: AddrMethod) -> [u8; 8] {
    let mut b = [0u8; 8];
    if lun != 0 {
        let first = (method.code() << 14) | (lun & MAX_LUN) as u16;
        b[..2].copy_from_slice(&first.to_be_bytes());
    }
    b
}

/// REPORT LUNS parameter data: the list length, 4 reserved bytes and one 8-byte entry
/// per LUN.
pub fn report_luns(luns: &[u64], method: AddrMethod) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 8 * luns.len());
    let list_len = (luns.len() as u64 * 8).min(u32::MAX as u64) as u32;
    out.extend_from_slice(&list_len.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    for &lun in luns {
        out.extend_from_slice(&encode_lun(lun, method));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scst_packing() {
        assert_eq!(encode_lun(0, AddrMethod::Flat), [0; 8]);
        assert_eq!(
            encode_lun(5, AddrMethod::Peripheral),
            [0, 5, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode_lun(300, AddrMethod::Flat),
            [0x41, 0x2C, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode_lun(3, AddrMethod::Lun),
            [0x80, 0x03, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn decode_round_trips() {
        for lun in [0u64, 1, 255, 256, 0x3FFF] {
            assert_eq!(decode_lun(encode_lun(lun, AddrMethod::Flat)), lun);
            assert_eq!(decode_lun(encode_lun(lun, AddrMethod::Peripheral)), lun);
        }
        assert_eq!(decode_lun(encode_lun(7, AddrMethod::Lun)), 7);
    }

    #[test]
    fn decode_rejects_what_scst_rejects() {
        assert_eq!(decode_lun([0, 1, 0, 1, 0, 0, 0, 0]), NO_SUCH_LUN);
        assert_eq!(decode_lun([0xC0, 1, 0, 0, 0, 0, 0, 0]), NO_SUCH_LUN);
        assert_eq!(decode_lun([0x81, 1, 0, 0, 0, 0, 0, 0]), NO_SUCH_LUN);
        assert_eq!(decode_lun([0x80, 0x21, 0, 0, 0, 0, 0, 0]), NO_SUCH_LUN);
    }

    #[test]
    fn report_luns_layout() {
        let d = report_luns(&[0, 1, 300], AddrMethod::Peripheral);
        assert_eq!(d.len(), 32);
        assert_eq!(&d[..4], &[0, 0, 0, 24]);
        assert_eq!(&d[16..18], &[0, 1]);
        assert_eq!(&d[24..26], &[0x01, 0x2C]);
        assert_eq!(AddrMethod::from_name("FLAT"), Some(AddrMethod::Flat));
        assert_eq!(AddrMethod::Lun.name(), "LUN");
    }
}
