//! The one way configuration changes. Whatever asks for a change (scstd's start-up,
//! `scstadmin -config`, a write to the management tree), it becomes the same mgmt writes
//! through the tree's write path, so the same checks decide what is accepted:
//! [`plan`] compares a configuration with the running one (read through the tree as
//! [`read_config`]) and lists the writes in SCST's order, each with its undo;
//! [`execute`] runs them all or, on a failure, none. [`check_write`] is where the tree
//! refuses attributes scst-rs does not implement.

mod live;
mod plan;
mod support;
mod tree;

#[cfg(test)]
mod tests;

use std::fmt;

pub use live::{dirs, files, read_config, saved_attrs};
pub use plan::{execute, plan, Op, Plan};
pub use support::{check_write, WriteCheck};
pub use tree::{InProcess, TreeAccess};

use crate::protocol::TreeError;

/// Why a configuration could not be applied; every message names the object (and the
/// file's line, when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// Reading the running configuration failed.
    Read(TreeError),
    /// The file asks for what the running configuration cannot become (e.g. a
    /// creation parameter of an open device without -force); nothing was changed.
    Plan(String),
    /// A write failed (`what`: its object, `error`: why), and with it the devices'
    /// creations in `also`, tried after it for their errors. The `applied` writes that
    /// succeeded were undone, except those in `undo_failures`.
    Write {
        what: String,
        error: TreeError,
        also: Vec<String>,
        applied: usize,
        undo_failures: Vec<String>,
    },
}

impl From<TreeError> for ApplyError {
    fn from(e: TreeError) -> Self {
        ApplyError::Read(e)
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Read(e) => write!(f, "reading the running configuration: {e}"),
            ApplyError::Plan(m) => f.write_str(m),
            ApplyError::Write {
                what,
                error,
                also,
                applied,
                undo_failures,
            } => {
                write!(f, "{what}: {error}")?;
                for a in also {
                    write!(f, "\n{a}")?;
                }
                if undo_failures.is_empty() {
                    write!(
                        f,
                        "\nthe {applied} change(s) applied were undone; nothing was changed"
                    )
                } else {
                    write!(
                        f,
                        "\nundoing the {applied} change(s) applied failed in part:\n  {}",
                        undo_failures.join("\n  ")
                    )
                }
            }
        }
    }
}

impl std::error::Error for ApplyError {}
