//! Text key=value data segments (RFC 7143 section 6.1), used by Login and Text PDUs.
//!
//! Each pair is `key=value` followed by a NUL. A long text may span several PDUs (C
//! bit); a pair may then be split across PDUs, so callers concatenate the data
//! segments of a sequence before calling [`parse_text`].

use crate::WireError;

/// Longest key name RFC 7143 allows.
pub const MAX_KEY_LEN: usize = 63;
/// Longest value we accept. RFC 7143 caps simple values at 255 bytes but allows long
/// binary values (CHAP challenges); every implementation must accept 8192 bytes of
/// key=value data per negotiation sequence, so no single value can usefully be longer.
pub const MAX_VALUE_LEN: usize = 8192;

/// True if `key` is a syntactically valid key name: 1..=63 characters out of letters,
/// digits, `.`, `-`, `+`, `@`, `_`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_'))
}

/// Parses a text data segment into (key, value) pairs, in order. Trailing NULs (the
/// terminator of the last pair and any padding) are ignored, and a missing final
/// terminator is tolerated. Empty pairs in the middle, pairs without `=`, invalid key
/// names, over-long values and non-UTF-8 text are errors.
pub fn parse_text(data: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let mut pairs = Vec::new();
    if end == 0 {
        return Ok(pairs);
    }
    for item in data[..end].split(|&b| b == 0) {
        let eq = item
            .iter()
            .position(|&b| b == b'=')
            .ok_or(WireError::Text("key without '='"))?;
        let (k, v) = (&item[..eq], &item[eq + 1..]);
        let key = std::str::from_utf8(k).map_err(|_| WireError::Text("key is not UTF-8"))?;
        if !valid_key(key) {
            return Err(WireError::Text("invalid key name"));
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(WireError::Text("value too long"));
        }
        let value = std::str::from_utf8(v).map_err(|_| WireError::Text("value is not UTF-8"))?;
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// Appends `key=value\0` for each pair to `out`.
pub fn encode_text_into<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)], out: &mut Vec<u8>) {
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_ref().as_bytes());
        out.push(0);
    }
}

/// Encodes pairs as a text data segment.
pub fn encode_text<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_text_into(pairs, &mut out);
    out
}

/// First value for `key` in a parsed pair list.
pub fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let pairs = vec![
            ("InitiatorName".to_string(), "iqn.2024-01.x:y".to_string()),
            ("SessionType".to_string(), "Normal".to_string()),
            ("X-com.example_a+b@c".to_string(), String::new()),
        ];
        let enc = encode_text(&pairs);
        assert_eq!(parse_text(&enc).unwrap(), pairs);
        // Padding after the last terminator.
        let mut padded = enc.clone();
        padded.extend_from_slice(&[0, 0, 0]);
        assert_eq!(parse_text(&padded).unwrap(), pairs);
        // Missing final terminator.
        assert_eq!(parse_text(&enc[..enc.len() - 1]).unwrap(), pairs);
        assert_eq!(find(&pairs, "SessionType"), Some("Normal"));
    }

    #[test]
    fn values_may_contain_equals() {
        let p = parse_text(b"TargetAddress=1.2.3.4:3260,1\0A=b=c\0").unwrap();
        assert_eq!(p[1], ("A".into(), "b=c".into()));
    }

    #[test]
    fn empty() {
        assert!(parse_text(b"").unwrap().is_empty());
        assert!(parse_text(b"\0\0\0\0").unwrap().is_empty());
    }

    #[test]
    fn malformed() {
        assert!(parse_text(b"NoEquals\0").is_err());
        assert!(parse_text(b"=value\0").is_err());
        assert!(parse_text(b"A=1\0\0B=2\0").is_err());
        assert!(parse_text(b"Bad Key=1\0").is_err());
        assert!(parse_text(b"A=\xff\0").is_err());
        let long_key = format!("{}=1", "k".repeat(64));
        assert!(parse_text(long_key.as_bytes()).is_err());
        let ok_key = format!("{}=1", "k".repeat(63));
        assert!(parse_text(ok_key.as_bytes()).is_ok());
        let long_val = format!("A={}", "v".repeat(MAX_VALUE_LEN + 1));
        assert!(parse_text(long_val.as_bytes()).is_err());
    }
}
