//! SCST initiator-name patterns (docs/scst-reference.md 2.8): `*` any run, `?` any one character,
//! a leading `!` negates; matching is case-insensitive.

pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('!') {
        Some(rest) => !glob(rest.as_bytes(), name.as_bytes()),
        None => glob(pattern.as_bytes(), name.as_bytes()),
    }
}

/// Why an initiator name or pattern was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PatternError {
    #[error("initiator name or pattern is empty")]
    Empty,
    #[error("initiator name or pattern '{0}' contains whitespace, a control character or '/'")]
    BadCharacter(String),
    #[error("initiator pattern '{0}' has more than one '!' negation")]
    DoubleNegation(String),
    #[error("initiator pattern '!' negates nothing")]
    NegatesNothing,
}

/// Check an initiator name or pattern given to `initiators/mgmt`: it becomes a file
/// name in the management tree, so it must be one non-empty token without `/`, and at
/// most one `!` (the negation) is meaningful.
pub fn validate(pattern: &str) -> Result<(), PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    if pattern
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(PatternError::BadCharacter(pattern.to_string()));
    }
    if pattern.matches('!').count() > 1 {
        return Err(PatternError::DoubleNegation(pattern.to_string()));
    }
    if pattern == "!" {
        return Err(PatternError::NegatesNothing);
    }
    Ok(())
}

/// Iterative wildcard match with single-star backtracking: linear in practice and no
/// recursion, so hostile patterns cannot blow the stack.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&s[si])) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::{matches, validate, PatternError};

    #[test]
    fn validation_names_what_is_wrong() {
        assert_eq!(validate("iqn.a*"), Ok(()));
        assert_eq!(validate("!iqn.a*"), Ok(()));
        assert_eq!(validate(""), Err(PatternError::Empty));
        assert_eq!(
            validate("iqn a"),
            Err(PatternError::BadCharacter("iqn a".into()))
        );
        assert_eq!(
            validate("!!a"),
            Err(PatternError::DoubleNegation("!!a".into()))
        );
        assert_eq!(validate("!"), Err(PatternError::NegatesNothing));
        assert_eq!(
            validate("a/b").unwrap_err().to_string(),
            "initiator name or pattern 'a/b' contains whitespace, a control character or '/'"
        );
    }

    #[test]
    fn wildcards_and_negation() {
        assert!(matches(
            "iqn.1998-01.com.vmware:esx0?-*",
            "iqn.1998-01.com.vmware:esx01-abc"
        ));
        assert!(!matches(
            "iqn.1998-01.com.vmware:esx0?-*",
            "iqn.1998-01.com.vmware:esx1-abc"
        ));
        assert!(matches("IQN.*", "iqn.x"));
        assert!(matches("!iqn.a*", "iqn.b"));
        assert!(!matches("!iqn.a*", "iqn.abc"));
        assert!(matches("*", ""));
        assert!(!matches("a", ""));
    }
}
