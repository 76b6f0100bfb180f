//! What the apply engine needs of a management tree: reading, listing and writing by
//! path. scstadmin passes its socket [`Client`]; scstd at start-up passes the tree
//! itself ([`InProcess`]), so that both run the same writes through the same checks.

use crate::client::{Client, ClientError};
use crate::protocol::{ErrorKind, MgmtPath, MgmtTree, TreeError};

pub trait TreeAccess {
    /// An attribute's value (a key attribute's ends with a line `[key]`).
    fn read(&mut self, path: &str) -> Result<String, TreeError>;
    /// A directory's entries; subdirectories end with `/`.
    fn list(&mut self, path: &str) -> Result<Vec<String>, TreeError>;
    /// Write an attribute or run a mgmt command line.
    fn write(&mut self, path: &str, value: &str) -> Result<(), TreeError>;
}

/// A failure seen through the socket. The daemon keeps the kind of what it refused (its
/// `last_sysfs_mgmt_res` reports it); the client has the message, and its own failures
/// (connecting, the protocol) are internal.
fn remote(e: ClientError) -> TreeError {
    let kind = match e {
        ClientError::Remote(_) | ClientError::BadPath(_) => ErrorKind::Invalid,
        ClientError::Connect { .. } | ClientError::Io(_) | ClientError::Protocol(_) => {
            ErrorKind::Internal
        }
    };
    TreeError::new(kind, e.to_string())
}

impl TreeAccess for Client {
    fn read(&mut self, path: &str) -> Result<String, TreeError> {
        Client::read(self, path).map_err(remote)
    }
    fn list(&mut self, path: &str) -> Result<Vec<String>, TreeError> {
        Client::list(self, path).map_err(remote)
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), TreeError> {
        Client::write(self, path, value).map_err(remote)
    }
}

/// The daemon's own tree, used directly (start-up).
pub struct InProcess<'a>(pub &'a dyn MgmtTree);

fn parse(path: &str) -> Result<MgmtPath, TreeError> {
    MgmtPath::parse(path).map_err(|e| TreeError::new(ErrorKind::Invalid, e.to_string()))
}

impl TreeAccess for InProcess<'_> {
    fn read(&mut self, path: &str) -> Result<String, TreeError> {
        self.0.read(&parse(path)?)
    }
    fn list(&mut self, path: &str) -> Result<Vec<String>, TreeError> {
        self.0.list(&parse(path)?)
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), TreeError> {
        self.0.write(&parse(path)?, value)
    }
}
