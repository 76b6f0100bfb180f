//! CHAP for iSCSI (RFC 1994, RFC 7143 12.1.3): algorithms, responses, the binary value
//! encodings CHAP keys use (RFC 7143 6.1: `0x` hex, `0b` base64), challenges and
//! constant-time verification. Pure functions: the login state machine that exchanges
//! the keys lives with the target driver (and, for tests, the test initiator).

use std::fmt;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sha3::Sha3_256;

/// The CHAP_A values iSCSI defines (RFC 7143 12.1.3, RFC 9316 IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChapAlgorithm {
    Md5,
    Sha1,
    Sha256,
    Sha3_256,
}

impl ChapAlgorithm {
    /// Every algorithm, in the order this implementation prefers them when it offers.
    pub const ALL: [ChapAlgorithm; 4] = [
        ChapAlgorithm::Sha3_256,
        ChapAlgorithm::Sha256,
        ChapAlgorithm::Sha1,
        ChapAlgorithm::Md5,
    ];

    /// The CHAP_A code.
    pub fn code(self) -> u32 {
        match self {
            ChapAlgorithm::Md5 => 5,
            ChapAlgorithm::Sha1 => 6,
            ChapAlgorithm::Sha256 => 7,
            ChapAlgorithm::Sha3_256 => 8,
        }
    }

    pub fn from_code(code: u32) -> Option<ChapAlgorithm> {
        match code {
            5 => Some(ChapAlgorithm::Md5),
            6 => Some(ChapAlgorithm::Sha1),
            7 => Some(ChapAlgorithm::Sha256),
            8 => Some(ChapAlgorithm::Sha3_256),
            _ => None,
        }
    }

    /// Length of a response (the digest) in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChapAlgorithm::Md5 => 16,
            ChapAlgorithm::Sha1 => 20,
            ChapAlgorithm::Sha256 | ChapAlgorithm::Sha3_256 => 32,
        }
    }

    /// The CHAP response: H(identifier || secret || challenge) (RFC 1994 4.1).
    pub fn response(self, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut h = D::new();
            h.update([id]);
            h.update(secret);
            h.update(challenge);
            h.finalize().to_vec()
        }
        match self {
            ChapAlgorithm::Md5 => run::<Md5>(id, secret, challenge),
            ChapAlgorithm::Sha1 => run::<Sha1>(id, secret, challenge),
            ChapAlgorithm::Sha256 => run::<Sha256>(id, secret, challenge),
            ChapAlgorithm::Sha3_256 => run::<Sha3_256>(id, secret, challenge),
        }
    }

    /// Whether `response` answers `challenge` for `secret`; the comparison takes the
    /// same time wherever the first differing byte is.
    pub fn verify(self, id: u8, secret: &[u8], challenge: &[u8], response: &[u8]) -> bool {
        constant_time_eq(&self.response(id, secret, challenge), response)
    }

    /// A fresh random challenge. RFC 7143 12.1.3 wants it at least as long as the
    /// digest; SCST draws its length from 25..49 bytes, which we keep so that the
    /// length itself tells an observer nothing fixed.
    pub fn new_challenge(self) -> Vec<u8> {
        let min = self.digest_len().max(25);
        let max = 49.max(min);
        let span = (max - min + 1) as u8;
        let len = min + (random_bytes(1)[0] % span) as usize;
        random_bytes(len)
    }
}

impl fmt::Display for ChapAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChapAlgorithm::Md5 => "MD5",
            ChapAlgorithm::Sha1 => "SHA-1",
            ChapAlgorithm::Sha256 => "SHA-256",
            ChapAlgorithm::Sha3_256 => "SHA3-256",
        })
    }
}

/// The target's choice from an initiator's `CHAP_A` list: the first value in the
/// initiator's order that is in `supported`.
pub fn select_algorithm(offer: &str, supported: &[ChapAlgorithm]) -> Option<ChapAlgorithm> {
    offer
        .split(',')
        .filter_map(|v| decode_number(v.trim()).ok())
        .filter_map(|n| u32::try_from(n).ok().and_then(ChapAlgorithm::from_code))
        .find(|a| supported.contains(a))
}

/// Why a CHAP value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChapError {
    #[error("binary value without a 0x or 0b prefix")]
    NoPrefix,
    #[error("invalid hex digit")]
    BadHex,
    #[error("invalid base64")]
    BadBase64,
    #[error("empty value")]
    Empty,
    #[error("invalid number")]
    BadNumber,
}

/// A binary value as a hex-constant (`0x` + lowercase digits).
pub fn encode_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A binary value as a base64-constant (`0b` + RFC 4648 base64 with padding).
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len().div_ceil(3) * 4);
    s.push_str("0b");
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn hex_digit(c: u8) -> Result<u8, ChapError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ChapError::BadHex),
    }
}

fn decode_hex(digits: &[u8]) -> Result<Vec<u8>, ChapError> {
    if digits.is_empty() {
        return Err(ChapError::Empty);
    }
    // An odd number of digits has an implied leading zero nibble (RFC 7143 6.1: n
    // digits make (n+1)/2 bytes).
    let mut out = Vec::with_capacity(digits.len().div_ceil(2));
    let (head, rest) = digits.split_at(digits.len() % 2);
    if let [d] = head {
        out.push(hex_digit(*d)?);
    }
    for pair in rest.chunks_exact(2) {
        out.push(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?);
    }
    Ok(out)
}

fn decode_base64(text: &[u8]) -> Result<Vec<u8>, ChapError> {
    if text.is_empty() {
        return Err(ChapError::Empty);
    }
    if !text.len().is_multiple_of(4) {
        return Err(ChapError::BadBase64);
    }
    let pad = text.iter().rev().take_while(|c| **c == b'=').count();
    if pad > 2 {
        return Err(ChapError::BadBase64);
    }
    let body = &text[..text.len() - pad];
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in body {
        let v = B64
            .iter()
            .position(|b| b == c)
            .ok_or(ChapError::BadBase64)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits of a padded quantum must be zero (canonical encoding).
    if acc != 0 {
        return Err(ChapError::BadBase64);
    }
    Ok(out)
}

/// A CHAP binary value (CHAP_C, CHAP_R): `0x`/`0X` hex (either case) or `0b`/`0B`
/// base64.
pub fn decode_binary(value: &str) -> Result<Vec<u8>, ChapError> {
    let b = value.as_bytes();
    match b {
        [b'0', b'x' | b'X', rest @ ..] => decode_hex(rest),
        [b'0', b'b' | b'B', rest @ ..] => decode_base64(rest),
        _ => Err(ChapError::NoPrefix),
    }
}

/// A numerical value (CHAP_A, CHAP_I): decimal or a hex-constant.
pub fn decode_number(value: &str) -> Result<u64, ChapError> {
    match value.as_bytes() {
        [b'0', b'x' | b'X', ..] => {
            let bytes = decode_binary(value)?;
            if bytes.len() > 8 {
                return Err(ChapError::BadNumber);
            }
            Ok(bytes.iter().fold(0u64, |n, b| n << 8 | *b as u64))
        }
        _ if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
            value.parse().map_err(|_| ChapError::BadNumber)
        }
        _ => Err(ChapError::BadNumber),
    }
}

/// CHAP_I: an identifier 0..255.
pub fn decode_identifier(value: &str) -> Result<u8, ChapError> {
    u8::try_from(decode_number(value)?).map_err(|_| ChapError::BadNumber)
}

/// Equality whose running time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Bytes from the operating system's CSPRNG. Failure to get randomness is not
/// something a login may paper over with weak values.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    getrandom::fill(&mut v).expect("the operating system's random source failed");
    v
}

/// A CHAP account as SCST configures it: `"<name> <secret>"`.
pub fn parse_account(value: &str) -> Option<(&str, &str)> {
    let mut it = value.split_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some(name), Some(secret), None) => Some((name, secret)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Challenge 0x10..0x2f, identifier 0x2a, secret "secret123456"; expected values
    /// computed with Python's hashlib over the same bytes.
    const CHALLENGE: std::ops::Range<u8> = 0x10..0x30;
    const KAT: [(ChapAlgorithm, &str); 4] = [
        (ChapAlgorithm::Md5, "b84cc202e143ed5238a8370094d39823"),
        (
            ChapAlgorithm::Sha1,
            "01ad08002dfd79d41f015286ccad9085792328e3",
        ),
        (
            ChapAlgorithm::Sha256,
            "90e0b6930a05bec7d088fa1888652df75b2827087b429df9a5c66e02ae095cb9",
        ),
        (
            ChapAlgorithm::Sha3_256,
            "51b2a2d1b4bf287197318e46761e013a237abef01900879d7384a84377316808",
        ),
    ];

    #[test]
    fn known_answers() {
        let challenge: Vec<u8> = CHALLENGE.collect();
        for (alg, want) in KAT {
            let r = alg.response(0x2a, b"secret123456", &challenge);
            assert_eq!(encode_hex(&r), format!("0x{want}"), "{alg}");
            assert_eq!(r.len(), alg.digest_len());
            assert!(alg.verify(0x2a, b"secret123456", &challenge, &r));
            assert!(!alg.verify(0x2b, b"secret123456", &challenge, &r));
            assert!(!alg.verify(0x2a, b"secret123457", &challenge, &r));
            assert!(!alg.verify(0x2a, b"secret123456", &challenge, &r[1..]));
        }
        // A second MD5 vector (RFC 1994 layout, different identifier and secret).
        let c = decode_binary("0x00112233445566778899AABBCCDDEEFF").unwrap();
        assert_eq!(
            encode_hex(&ChapAlgorithm::Md5.response(1, b"0123456789abcdef", &c)),
            "0xba59f1d85479df05d093d48254edfc21"
        );
    }

    #[test]
    fn codes_and_selection() {
        for a in ChapAlgorithm::ALL {
            assert_eq!(ChapAlgorithm::from_code(a.code()), Some(a));
        }
        assert_eq!(ChapAlgorithm::from_code(4), None);
        let all = &ChapAlgorithm::ALL;
        assert_eq!(select_algorithm("7,5", all), Some(ChapAlgorithm::Sha256));
        assert_eq!(select_algorithm("5,7", all), Some(ChapAlgorithm::Md5));
        assert_eq!(select_algorithm("1, 8", all), Some(ChapAlgorithm::Sha3_256));
        assert_eq!(select_algorithm("0x6", all), Some(ChapAlgorithm::Sha1));
        assert_eq!(
            select_algorithm("7,6", &[ChapAlgorithm::Md5, ChapAlgorithm::Sha1]),
            Some(ChapAlgorithm::Sha1)
        );
        assert_eq!(select_algorithm("1,2,x", all), None);
        assert_eq!(select_algorithm("", all), None);
    }

    #[test]
    fn hex_values() {
        let bytes: Vec<u8> = CHALLENGE.collect();
        let hex = "0x101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";
        assert_eq!(encode_hex(&bytes), hex);
        assert_eq!(decode_binary(hex).unwrap(), bytes);
        assert_eq!(decode_binary(&hex.to_uppercase()).unwrap(), bytes);
        assert_eq!(decode_binary("0xAbCd").unwrap(), [0xab, 0xcd]);
        assert_eq!(decode_binary("0xabc").unwrap(), [0x0a, 0xbc]);
        assert_eq!(decode_binary("0x"), Err(ChapError::Empty));
        assert_eq!(decode_binary("0xzz"), Err(ChapError::BadHex));
        assert_eq!(decode_binary("abcd"), Err(ChapError::NoPrefix));
        assert_eq!(decode_binary(""), Err(ChapError::NoPrefix));
    }

    #[test]
    fn base64_values() {
        // Expected strings from Python's base64.b64encode.
        let bytes: Vec<u8> = CHALLENGE.collect();
        let b = "0bEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8=";
        assert_eq!(encode_base64(&bytes), b);
        assert_eq!(decode_binary(b).unwrap(), bytes);
        assert_eq!(decode_binary("0B//4B").unwrap(), [0xff, 0xfe, 0x01]);
        assert_eq!(encode_base64(&[0xff, 0xfe, 0x01]), "0b//4B");
        assert_eq!(decode_binary("0bYWI=").unwrap(), b"ab");
        assert_eq!(encode_base64(b"ab"), "0bYWI=");
        assert_eq!(decode_binary("0bYQ==").unwrap(), b"a");
        assert_eq!(decode_binary("0bYWI"), Err(ChapError::BadBase64));
        assert_eq!(decode_binary("0bY==="), Err(ChapError::BadBase64));
        assert_eq!(decode_binary("0bYWJ="), Err(ChapError::BadBase64));
        assert_eq!(decode_binary("0bYW*="), Err(ChapError::BadBase64));
        for n in 0..20u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            if !v.is_empty() {
                assert_eq!(decode_binary(&encode_base64(&v)).unwrap(), v);
                assert_eq!(decode_binary(&encode_hex(&v)).unwrap(), v);
            }
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(decode_identifier("0"), Ok(0));
        assert_eq!(decode_identifier("255"), Ok(255));
        assert_eq!(decode_identifier("0xfF"), Ok(255));
        assert_eq!(decode_identifier("256"), Err(ChapError::BadNumber));
        assert_eq!(decode_identifier("-1"), Err(ChapError::BadNumber));
        assert_eq!(decode_identifier(""), Err(ChapError::BadNumber));
    }

    #[test]
    fn challenges_are_fresh_and_long_enough() {
        for a in ChapAlgorithm::ALL {
            let c1 = a.new_challenge();
            let c2 = a.new_challenge();
            assert!(c1.len() >= a.digest_len() && c1.len() >= 25 && c1.len() <= 49);
            assert_ne!(c1, c2);
        }
    }

    #[test]
    fn accounts_and_eq() {
        assert_eq!(
            parse_account(" joe  secret123456 "),
            Some(("joe", "secret123456"))
        );
        assert_eq!(parse_account("joe"), None);
        assert_eq!(parse_account("a b c"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
