//! SCST initiator-name patterns (spec/scst.md 2.8): `*` any run, `?` any one character,
//! a leading `!` negates; matching is case-insensitive.

pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('!') {
        Some(rest) => !glob(rest.as_bytes(), name.as_bytes()),
        None => glob(pattern.as_bytes(), name.as_bytes()),
    }
}

/// Check an initiator name or pattern given to `initiators/mgmt`: it becomes a file
/// name in the management tree, so it must be one non-empty token without `/`, and at
/// most one `!` (the negation) is meaningful.
pub fn validate(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("initiator name or pattern is empty".into());
    }
    if pattern
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(format!(
            "initiator name or pattern '{pattern}' contains whitespace, a control character or '/'"
        ));
    }
    if pattern.matches('!').count() > 1 {
        return Err(format!(
            "initiator pattern '{pattern}' has more than one '!' negation"
        ));
    }
    if pattern == "!" {
        return Err("initiator pattern '!' negates nothing".into());
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
    use super::matches;

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
