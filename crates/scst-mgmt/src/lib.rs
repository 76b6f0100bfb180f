//! SCST management for scst-rs: the scst.conf parser/writer ([`conf`]), the attribute
//! knowledge ([`attrs`]), the one apply engine that start-up, `scstadmin -config` and tree
//! writes share ([`apply`]), the grammar of the management tree's `mgmt` files
//! ([`command`]), the management tree itself over the core ([`tree`]), and the management
//! socket's protocol ([`protocol`]) with a blocking client ([`client`]).

#![forbid(unsafe_code)]

pub mod apply;
pub mod attrs;
pub mod client;
pub mod command;
pub mod conf;
pub mod protocol;
pub mod trace_level;
pub mod tree;

pub use client::{Client, ClientError};
pub use command::{parse_command, CmdError, MgmtCommand, MgmtFile};
pub use conf::{parse, validate, write_config, ConfError, ScstConf};
pub use protocol::{ErrorKind, MgmtPath, MgmtTree, PathError, Request, Response, TreeError};
pub use tree::ScstTree;
