//! SCST management for scst-rs: the scst.conf parser/writer ([`conf`]), the attribute
//! knowledge ([`attrs`]), the one apply engine that start-up, `scstadmin -config` and tree
//! writes share ([`apply`]), the grammar of the management tree's `mgmt` files
//! ([`command`]), and the management socket's protocol ([`protocol`]) with a blocking
//! client ([`client`]).

pub mod apply;
pub mod attrs;
pub mod client;
pub mod command;
pub mod conf;
pub mod protocol;

pub use client::{Client, ClientError};
pub use command::{parse_command, CmdError, MgmtCommand, MgmtFile};
pub use conf::{parse, validate, write_config, ConfError, ScstConf};
pub use protocol::{MgmtPath, MgmtTree, Request, Response, TreeError};
