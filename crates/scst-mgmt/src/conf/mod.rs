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
pub use parse::{parse, MAX_LUN};
pub use validate::{problems, validate};
pub use write::write_config;

/// An error in an scst.conf, tied to the line it is about (0 for trees built in code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scst.conf line {line}: {message}")]
pub struct ConfError {
    pub line: usize,
    pub message: String,
}

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
