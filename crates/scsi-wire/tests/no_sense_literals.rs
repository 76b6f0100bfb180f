//! Every ASC/ASCQ the target reports is named once, in `scsi_wire::asc`. This test
//! scans the non-test Rust sources of every crate in the workspace and fails when an
//! additional sense code is written as a number anywhere else:
//!
//! - `Sense::new(key, 0x24, 0x00)`: raw codes in the raw constructor (any numeric
//!   literal in the ASC or ASCQ position, `Sense::new(0, 0, 0)` included);
//! - `Sense::copy_aborted(0x0D, 0x02, ..)`: the same for COPY ABORTED;
//! - `Asc { code: 0x24, .. }`, `asc: 0x24`, `ascq: 0x00`: a code or field set from a
//!   literal in a struct expression (`Sense { .. }`, `ForwardedSense { .. }`);
//! - `s.asc == 0x29`, `0x29 != s.ascq`: a code compared with a literal;
//! - `const X: (u8, u8) = (0x0D, 0x01)`: an (asc, ascq) pair kept as a tuple.
//!
//! Test code (`#[cfg(test)]` items and the files of `#[cfg(test)] mod x;`, `tests/`
//! directories) is not scanned: tests check the wire values with numbers on purpose.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The table itself.
const TABLE: &str = "scsi-wire/src/asc.rs";

/// Tuples of two bytes that are not sense codes: iSCSI login status class and detail
/// (RFC 7143 11.13.5). Exempt from the tuple rule only.
const NOT_SENSE_TUPLES: &[&str] = &["iscsi-wire/src/pdu.rs"];

#[test]
fn no_sense_code_is_written_as_a_number() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = sources(&crates);
    assert!(files.len() > 50, "only {} sources found", files.len());

    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &files {
        let rel = rel_path(&crates, path);
        if rel == TABLE {
            continue;
        }
        let text = fs::read_to_string(path).unwrap();
        let mut hits = literals(&text);
        if NOT_SENSE_TUPLES.contains(&rel.as_str()) {
            hits.retain(|h| !h.starts_with("tuple"));
        }
        if !hits.is_empty() {
            found.insert(rel, hits);
        }
    }

    let errors: Vec<String> = found
        .iter()
        .map(|(file, hits)| {
            format!(
                "{file}: ASC/ASCQ written as a number; name it in scsi_wire::asc: {}",
                hits.join("; ")
            )
        })
        .collect();
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

/// Every `.rs` file under `crates/*/src`, less `tests` directories and the files of
/// `#[cfg(test)] mod x;` declarations.
fn sources(crates: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in fs::read_dir(crates).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("Cargo.toml").is_file() {
            walk(&dir.join("src"), &mut all);
        }
    }
    let mut test_only = Vec::new();
    for path in &all {
        let text = fs::read_to_string(path).unwrap();
        for name in cfg_test_mods(&text) {
            let dir = module_dir(path);
            test_only.push(dir.join(format!("{name}.rs")));
            test_only.push(dir.join(&name).join("mod.rs"));
        }
    }
    all.retain(|p| !test_only.contains(p));
    all.sort();
    all
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Where the files of `path`'s child modules live.
fn module_dir(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap();
    match path.file_stem().and_then(|s| s.to_str()) {
        Some("lib" | "main" | "mod") => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
        None => parent.to_path_buf(),
    }
}

fn rel_path(crates: &Path, path: &Path) -> String {
    path.strip_prefix(crates)
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

/// The code of a source file with comments, string and char literal contents, the
/// whitespace that does not separate two words, and every `#[cfg(test)]` item removed: what is left is the token stream,
/// compact enough to match the patterns above as plain text.
fn code(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if raw_string_start(b, i).is_some() => {
                let (hashes, body) = raw_string_start(b, i).unwrap();
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                i = body;
                while i < b.len() && !b[i..].starts_with(&close) {
                    i += 1;
                }
                i += close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 1) == Some(&b'\\') || b.get(i + 2) == Some(&b'\'') => {
                // A char literal; `'a` without a closing quote is a lifetime.
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("''");
            }
            c if c.is_ascii_whitespace() => {
                // Whitespace matters only between two words (`if 0x3A`, `mod x`).
                let next = b[i..].iter().find(|c| !c.is_ascii_whitespace());
                if out.chars().next_back().is_some_and(is_word)
                    && next.is_some_and(|&c| is_word(c as char))
                {
                    out.push(' ');
                }
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    strip_cfg_test(&out)
}

/// `r"`, `r#"`, `br"`...: the number of `#` and where the body starts.
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') && b[i - 1] != b'b' {
        return None;
    }
    let mut j = i + 1;
    while b.get(j) == Some(&b'#') {
        j += 1;
    }
    (b.get(j) == Some(&b'"')).then_some((j - i - 1, j + 1))
}

/// Removes each `#[cfg(test)]` item: up to its `;` or through its balanced braces.
fn strip_cfg_test(code: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(ATTR) {
        out.push_str(&rest[..at]);
        let item = &rest[at + ATTR.len()..];
        let end = match item.find(['{', ';']) {
            Some(p) if item.as_bytes()[p] == b';' => p + 1,
            Some(p) => p + balanced_len(&item[p..]),
            None => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Length of the `{ .. }` block `s` starts with.
fn balanced_len(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// The names of `#[cfg(test)] mod name;` declarations.
fn cfg_test_mods(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let compact: String = strip_comments_keep_items(text);
    let mut rest = compact.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        rest = &rest[at + "#[cfg(test)]".len()..];
        let item = rest.trim_start();
        let item = item.strip_prefix("pub(crate)").unwrap_or(item).trim_start();
        if let Some(decl) = item.strip_prefix("mod ") {
            let name: String = decl
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if decl.trim_start()[name.len()..]
                .trim_start()
                .starts_with(';')
            {
                names.push(name);
            }
        }
    }
    names
}

/// Source text without line comments, whitespace kept (for reading declarations).
fn strip_comments_keep_items(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ASC/ASCQ literals in a file's non-test code.
fn literals(text: &str) -> Vec<String> {
    let code = code(text);
    let mut hits = Vec::new();
    for (call, positions) in [("Sense::new(", &[1, 2][..]), ("copy_aborted(", &[0, 1][..])] {
        for (at, _) in code.match_indices(call) {
            let args = call_args(&code[at + call.len()..]);
            if positions
                .iter()
                .any(|&p| args.get(p).is_some_and(|a| is_number(a)))
            {
                hits.push(format!("{call}{})", args.join(", ")));
            }
        }
    }
    for field in ["asc:", "ascq:", "code:", "qualifier:"] {
        for (at, _) in code.match_indices(field) {
            let before = code[..at].chars().next_back();
            // A field name, not the tail of a longer identifier or a path.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let value = leading_token(&code[at + field.len()..]);
            if is_number(value) && (field.starts_with("asc") || in_asc_struct(&code[..at])) {
                hits.push(format!("{field} {value}"));
            }
        }
    }
    for field in [".asc", ".ascq"] {
        for (at, _) in code.match_indices(field) {
            let after = &code[at + field.len()..];
            if let Some(rhs) = after.strip_prefix("==").or(after.strip_prefix("!=")) {
                if is_number(leading_token(rhs)) {
                    hits.push(format!("{field} compared with {}", leading_token(rhs)));
                }
            }
            // `0x3A != sense.asc`: past the path to the field, an operator and a number.
            let path = code[..at].trim_end_matches(|c: char| is_word(c) || c == '.' || c == ':');
            if let Some(lhs) = path.strip_suffix("==").or(path.strip_suffix("!=")) {
                let lhs = &lhs[lhs.trim_end_matches(is_word).len()..];
                if is_number(lhs) {
                    hits.push(format!("{lhs} compared with {field}"));
                }
            }
        }
    }
    for (at, _) in code.match_indices(":(u8,u8)=(") {
        let args = call_args(&code[at + ":(u8,u8)=(".len()..]);
        if args.len() == 2 && args.iter().all(|a| is_number(a)) {
            hits.push(format!("tuple ({}, {})", args[0], args[1]));
        }
    }
    hits
}

/// Whether the struct expression a field sits in is an `Asc`.
fn in_asc_struct(before: &str) -> bool {
    let open = before.rfind('{').unwrap_or(0);
    before[..open].ends_with("Asc")
}

/// The top-level, comma-separated arguments of a call whose `(` has been consumed.
fn call_args(s: &str) -> Vec<&str> {
    let mut args = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => {
                if i > start {
                    args.push(&s[start..i]);
                }
                return args;
            }
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                args.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    args
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn leading_token(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// A decimal or hexadecimal integer literal, with or without a suffix (`0x24`, `0`,
/// `36u8`).
fn is_number(token: &str) -> bool {
    let t = token.trim_end_matches("u8").trim_end_matches('_');
    if let Some(hex) = t.strip_prefix("0x").or(t.strip_prefix("0X")) {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit() || c == '_');
    }
    !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '_')
}

/// The scanner finds each form that used to be in the tree, and nothing in code that
/// only looks like it.
#[test]
fn scanner_catches_the_forms_in_use() {
    let flagged = [
        "const X: Sense = Sense::new(key::NOT_READY, 0x04, 0x0A);",
        "const X: Sense = Sense::new(\n    key::ILLEGAL_REQUEST,\n    0x26,\n    0x04,\n);",
        "let s = sense.unwrap_or(Sense::new(0, 0, 0));",
        "const S: Sense = Sense { progress: None, ..Sense::new(key::NOT_READY, 0x04, 0x04) };",
        "Err(Sense::copy_aborted(0, 0, seg_no))",
        "pub mod aborted { pub const TARGET_NOT_REACHABLE: (u8, u8) = (0x0D, 0x02); }",
        "let f = ForwardedSense { destination, status: 2, key: 5, asc: 0x21, ascq: 0 };",
        "const C: Asc = Asc { code: 0x3A, qualifier: 0 };",
        "if s.asc == 0x29 { }",
        "if 0x3A != sense.asc { }",
    ];
    for src in flagged {
        assert!(!literals(src).is_empty(), "not caught: {src}");
    }
    let clean = [
        "const X: Sense = Sense::named(key::NOT_READY, asc::MEDIUM_NOT_PRESENT);",
        "let s = Sense::new(b[2] & 0x0F, b[12], b[13]);",
        "Sense::copy_aborted(asc::THIRD_PARTY_DEVICE_FAILURE, segment)",
        "ForwardedSense { destination, status: r.status, key: t.key, asc: t.asc, ascq: t.ascq }",
        "// Sense::new(key::NOT_READY, 0x04, 0x0A) in a comment",
        "let m = \"Sense::new(5, 0x24, 0)\";",
        "let r = r#\"Sense::new(5, 0x24, 0)\"#;",
        "fn f<'a>(x: &'a u8) -> char { let q = '\"'; Sense::named(k, a) }",
        "#[cfg(test)]\nmod tests { fn t() { Sense::new(5, 0x24, 0); } }",
        "#[cfg(test)]\nfn helper() -> Sense { Sense::new(5, 0x24, 0) }",
        "struct Rx { code: u8 } const R: Rx = Rx { code: 0x10 };",
    ];
    for src in clean {
        assert!(
            literals(src).is_empty(),
            "false alarm: {src}: {:?}",
            literals(src)
        );
    }
    assert_eq!(
        cfg_test_mods("#[cfg(test)]\nmod sbc_tests;\nmod sbc;\n#[cfg(test)]\nmod t { }"),
        vec!["sbc_tests".to_string()]
    );
}
