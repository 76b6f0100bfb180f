//! SCST management for scst-rs: the scst.conf parser/writer ([`conf`]) and the attribute
//! knowledge ([`attrs`]) that the layer applying a configuration validates against.

pub mod attrs;
pub mod conf;

pub use conf::{parse, validate, write_config, ConfError, ScstConf};
