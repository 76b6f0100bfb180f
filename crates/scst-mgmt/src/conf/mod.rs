//! scst.conf: parser, writer and validation (scst-reference section 3).
//!
//! [`parse`] turns text into a typed tree ([`ScstConf`]) checking only syntax and structure;
//! [`validate`] checks it against what scst-rs knows (handlers, drivers, attributes, device
//! references); [`write_config`] prints a tree in scstadmin's `-write_config` layout.

mod ast;
mod lexer;
mod parse;
mod validate;
mod write;

pub use ast::*;
pub use parse::{parse, parse_all, MAX_LUN};

/// Parse and check a whole file ([`parse_all`], then [`problems`] of what parsed):
/// every problem, of syntax or of meaning, in one pass, in line order.
pub fn load(text: &str) -> Result<ScstConf, ConfErrors> {
    let (conf, mut errors) = parse::parse_partial(text);
    if let Some(c) = &conf {
        errors.extend(problems(c));
    }
    errors.sort_by_key(|e| e.line);
    match conf {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(ConfErrors(errors)),
    }
}
pub use validate::{problems, validate};
pub use write::write_config;

/// An error in an scst.conf, tied to the line it is about (0 for trees built in code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scst.conf line {line}: {message}")]
pub struct ConfError {
    pub line: usize,
    pub message: String,
}

/// Every problem of a file, in file order (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s):\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
pub struct ConfErrors(pub Vec<ConfError>);

impl ConfError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        ConfError {
            line,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
