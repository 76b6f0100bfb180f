//! SCSI wire formats (SPC-4 / SBC-3 / SAM-5): sense data, status codes, CDB field
//! decoding and the encoders for the data a target returns. Pure functions over bytes:
//! no I/O and no state, so every piece is unit-testable and fuzzable.

#![forbid(unsafe_code)]

pub mod asc;
pub mod atomic;
pub mod cdb;
pub mod inquiry;
pub mod lun;
pub mod mode;
pub mod pr;
pub mod provisioning;
pub mod rsoc;
pub mod sbc;
pub mod sense;
pub mod status;
pub mod xcopy;

pub use asc::Asc;
pub use cdb::{opcode, PageControl};
pub use lun::{decode_lun, encode_lun, AddrMethod};
pub use sense::{CopyAborted, FieldPointer, ForwardedSense, Sense, SenseFormat};
