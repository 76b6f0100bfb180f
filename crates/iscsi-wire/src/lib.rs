//! iSCSI (RFC 7143) bytes <-> types. No I/O, no state, no panics on untrusted input.
//!
//! API summary:
//! - [`bhs`]: [`Bhs`] (48-byte header, `pub [u8; 48]`) with getters/setters for every
//!   field of every PDU (`opcode()`, `immediate()`, `final_bit()`, `itt()`, `ttt()`,
//!   `cmd_sn()`/`stat_sn()`, `exp_stat_sn()`/`exp_cmd_sn()`, `max_cmd_sn()`,
//!   `data_sn()`, `buffer_offset()`, `exp_data_transfer_len()`, `cdb()`, `csg()`/`nsg()`,
//!   `isid()`, `tsih()`, `cid()`, `status_class()`, ...), [`Opcode`], [`Stage`],
//!   flag and task attribute constants, [`RESERVED_TAG`].
//! - [`pdu`]: header constructors. Target side: `scsi_response`, `data_in`, `r2t`,
//!   `login_response`, `text_response`, `nop_in`, `logout_response`, `tmf_response`,
//!   `reject`, `async_message`. Initiator side: `scsi_command`, `data_out`,
//!   `login_request`, `text_request`, `nop_out`, `tmf_request`, `logout_request`,
//!   `snack`. Sequence numbers come in [`pdu::TargetSn`]; residuals as
//!   [`pdu::Residual`]. Code tables: `login_status`, `tmf_function`, `tmf_response`,
//!   `reject_reason`, `logout_reason`, `logout_response`, `async_event`. Sense data
//!   segment helpers: `encode_sense_segment`, `decode_sense_segment`.
//! - [`frame`]: `frame_len`, `parse_header` (header only, so data can be read into a
//!   caller's buffer), `parse_frame` (whole PDU; `Ok(None)` = need more bytes),
//!   `check_data_digest`, AHS iteration and `extended_cdb`, and for sending:
//!   `encode_header` (BHS + header digest in a `[u8; 52]`), `data_trailer` /
//!   `data_trailer_with` (padding + data digest in a `[u8; 8]`) for vectored writes
//!   `[header, data, trailer]`, and `encode_pdu` (one buffer, for the slow path).
//! - [`digest`]: CRC32C (`crc32c`, streaming [`digest::DataDigest`]); digests go on the
//!   wire little-endian.
//! - [`text`]: `parse_text`, `encode_text`, key name/value limits.
//! - [`negotiate`]: sans-I/O operational key negotiation for the target:
//!   [`negotiate::LocalParams`] (SCST defaults), [`negotiate::Negotiator`],
//!   [`negotiate::SessionParams`], [`negotiate::is_login_key`].
//! - [`chap`]: CHAP algorithms (CHAP_A 5..8), responses, `0x`/`0b` binary values,
//!   challenges, constant-time verification.

#![forbid(unsafe_code)]

pub mod bhs;
pub mod chap;
pub mod digest;
pub mod frame;
pub mod negotiate;
pub mod pdu;
pub mod text;

pub use bhs::{Bhs, Opcode, Stage, BHS_LEN, RESERVED_TAG};
pub use frame::{
    data_trailer, encode_header, frame_len, parse_frame, parse_header, Digests, Frame, Header,
};
pub use negotiate::{LocalParams, Negotiator, SessionParams};
pub use pdu::{Residual, TargetSn};
pub use text::{encode_text, parse_text};

/// Errors decoding bytes received from the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The header digest does not match: the stream cannot be trusted any more and
    /// the connection must be closed.
    #[error("header digest mismatch")]
    HeaderDigest,
    /// DataSegmentLength exceeds what we declared we can receive.
    #[error("data segment of {len} bytes exceeds the limit of {max}")]
    DataTooLong { len: u32, max: u32 },
    /// The AHS area is not a well-formed sequence of AHS entries.
    #[error("malformed additional header segment")]
    BadAhs,
    /// Malformed text key=value data.
    #[error("malformed text data: {0}")]
    Text(&'static str),
}
