//! Line-level lexing of scst.conf (scst-reference section 3.1).
//!
//! The format is line based: every non-blank line is either a lone `}` closing a section or
//! a list of words, optionally ending in `{` which opens a section. Rules:
//! - an unescaped, unquoted `#` starts a comment running to the end of the line;
//! - `\x` stands for the character `x` anywhere, including inside quotes (`\#`, `\"`, `\\`);
//!   a lone `\` at the very end of a line is kept literally, as scstadmin does;
//! - `"..."` groups blanks into one word; a quoted run may be glued to unquoted text;
//! - unquoted, unescaped `{` is only allowed as the last thing on a line and `}` only alone.
//!
//! Deviation from scstadmin: it drops the character before a trailing `#` together with the
//! comment (a regex artefact, harmless after a blank); we drop only the comment.

use super::ConfError;

/// One meaningful (non-blank, non-comment) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// 1-based line number in the file.
    pub line: usize,
    pub kind: LineKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// A line containing only `}`.
    Close,
    /// `word...` with `opens` set when the line ended in `{`. `words` is never empty.
    Words { words: Vec<String>, opens: bool },
}

/// Pieces of a line before its shape is checked.
enum Piece {
    Word(String),
    Open,
    Close,
}

/// Section headers of the procfs-era format that scstadmin used to convert.
const OLD_FORMAT_MARKERS: [&str; 3] = ["[HANDLER", "[GROUP", "[ASSIGNMENT"];

/// Split `text` into meaningful lines.
pub(crate) fn lex(text: &str) -> Result<Vec<Line>, ConfError> {
    // The old format is checked over the whole file first: its lines would otherwise trip
    // over some generic syntax error that hides the real problem.
    for (idx, raw) in text.split('\n').enumerate() {
        let t = raw.trim_start();
        if OLD_FORMAT_MARKERS.iter().any(|m| t.starts_with(m)) {
            return Err(ConfError::new(
                idx + 1,
                "this file is in the old procfs scst.conf format ([HANDLER ...], [GROUP ...], \
                 [ASSIGNMENT ...] sections); convert it to the sysfs format first",
            ));
        }
    }

    let mut lines = Vec::new();
    for (idx, raw) in text.split('\n').enumerate() {
        let line = idx + 1;
        let pieces = split_line(raw, line)?;
        if let Some(kind) = classify(pieces, line)? {
            lines.push(Line { line, kind });
        }
    }
    Ok(lines)
}

fn split_line(raw: &str, line: usize) -> Result<Vec<Piece>, ConfError> {
    let mut pieces = Vec::new();
    // The word being built; `Some("")` is a real (empty) word, e.g. from `""`.
    let mut word: Option<String> = None;
    let mut chars = raw.chars();

    fn flush(word: &mut Option<String>, pieces: &mut Vec<Piece>) {
        if let Some(w) = word.take() {
            pieces.push(Piece::Word(w));
        }
    }

    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars.next().unwrap_or('\\');
                word.get_or_insert_with(String::new).push(escaped);
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err(ConfError::new(line, "unterminated quoted string")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => w.push(escaped),
                            None => return Err(ConfError::new(line, "unterminated quoted string")),
                        },
                        Some(other) => w.push(other),
                    }
                }
            }
            '#' => break,
            '{' => {
                flush(&mut word, &mut pieces);
                pieces.push(Piece::Open);
            }
            '}' => {
                flush(&mut word, &mut pieces);
                pieces.push(Piece::Close);
            }
            c if c.is_whitespace() => flush(&mut word, &mut pieces),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    flush(&mut word, &mut pieces);
    Ok(pieces)
}

fn classify(mut pieces: Vec<Piece>, line: usize) -> Result<Option<LineKind>, ConfError> {
    if pieces.is_empty() {
        return Ok(None);
    }
    if pieces.len() == 1 && matches!(pieces[0], Piece::Close) {
        return Ok(Some(LineKind::Close));
    }
    let opens = matches!(pieces.last(), Some(Piece::Open));
    if opens {
        pieces.pop();
    }
    let mut words = Vec::with_capacity(pieces.len());
    for p in pieces {
        match p {
            Piece::Word(w) => words.push(w),
            Piece::Close => {
                return Err(ConfError::new(
                    line,
                    "'}' must be on a line of its own (escape it as \\} inside a value)",
                ))
            }
            Piece::Open => return Err(ConfError::new(
                line,
                "'{' may only end a line that opens a section (escape it as \\{ inside a value)",
            )),
        }
    }
    if words.is_empty() {
        return Err(ConfError::new(
            line,
            "'{' without a section keyword and name",
        ));
    }
    Ok(Some(LineKind::Words { words, opens }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        match lex(text).expect("lexes").remove(0).kind {
            LineKind::Words { words, .. } => words,
            LineKind::Close => panic!("expected words"),
        }
    }

    #[test]
    fn comments_and_blank_lines_are_dropped() {
        let l = lex("# c\n\n   \t\n  # indented comment\nfoo bar # trailing\n").unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].line, 5);
        assert_eq!(
            l[0].kind,
            LineKind::Words {
                words: vec!["foo".into(), "bar".into()],
                opens: false
            }
        );
    }

    #[test]
    fn escapes_and_quotes() {
        assert_eq!(words(r"a \#b"), ["a", "#b"]);
        assert_eq!(words(r#"a "b c""#), ["a", "b c"]);
        assert_eq!(words(r#"a "b \" # c""#), ["a", "b \" # c"]);
        assert_eq!(words(r#"a x"b c"y"#), ["a", "xb cy"]);
        assert_eq!(words(r#"a """#), ["a", ""]);
        assert_eq!(words(r"a b\"), ["a", "b\\"]);
        assert_eq!(words(r"a \{\}"), ["a", "{}"]);
    }

    #[test]
    fn braces() {
        let l = lex("DEVICE d{\n}\nLUN 0 d {  # c\n").unwrap();
        assert!(matches!(&l[0].kind, LineKind::Words { opens: true, words } if words.len() == 2));
        assert_eq!(l[1].kind, LineKind::Close);
        assert!(matches!(&l[2].kind, LineKind::Words { opens: true, words } if words.len() == 3));
    }

    #[test]
    fn crlf_line_endings() {
        let l = lex("a b\r\n}\r\n").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].kind, LineKind::Close);
    }

    #[test]
    fn errors() {
        let e = |t: &str| lex(t).unwrap_err().to_string();
        assert_eq!(
            e("a b\nc \"d"),
            "scst.conf line 2: unterminated quoted string"
        );
        assert!(e("a \"b\\").contains("unterminated quoted string"));
        assert!(e("a } b").contains("'}' must be on a line of its own"));
        assert!(e("}}").contains("'}' must be on a line of its own"));
        assert!(e("a { b").contains("'{' may only end a line"));
        assert!(e("  {").contains("without a section keyword"));
    }

    #[test]
    fn old_format_is_recognised() {
        let err = lex("# old\n[HANDLER vdisk]\nDEVICE x,/f\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("old procfs scst.conf format"));
        assert!(lex("[GROUP Default]").is_err());
        assert!(lex("  [ASSIGNMENT Default]").is_err());
    }
}
