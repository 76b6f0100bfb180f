//! Management errors: one line naming the object and the reason. A failed management
//! operation changes nothing.

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MgmtError {
    #[error("{kind} '{name}' does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    Exists { kind: &'static str, name: String },
    #[error("{kind} '{name}' is in use: {why}")]
    Busy {
        kind: &'static str,
        name: String,
        why: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// A device refused an attribute write.
    #[error(transparent)]
    Attribute(#[from] crate::device::AttrError),
}
