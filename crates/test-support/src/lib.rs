//! Test fixtures for scst-rs end-to-end tests: an in-process iSCSI initiator, a
//! vhost-user virtio-scsi frontend ([`vhost_frontend`]) and a FUSE file whose I/O can be
//! stalled ([`stallfs`]).
//!
//! [`Initiator`] speaks RFC 7143 over a blocking `std::net::TcpStream` (a background
//! thread drains the socket so large pipelined transfers cannot deadlock):
//! - `Initiator::connect(addr)`, `login_discovery(name)`, `send_targets("All")`,
//!   `login(name, target, &LoginOptions)` (security -> operational -> full feature,
//!   AuthMethod=None); failures are `InitiatorError::LoginFailed { class, detail }`;
//!   results in `negotiated()`, `login_keys()`, `tsih()`. `set_chap(Some(Chap::new(user,
//!   secret)))` logs in with CHAP instead (`.algorithm(..)`, `.mutual(..)`).
//! - `scsi(lun, cdb, data_out, expected_in, attr) -> ScsiResult` (immediate data,
//!   unsolicited Data-Out, R2T, multi-PDU Data-In, status in Data-In or SCSI
//!   Response); pipelined `submit(...) -> itt` / `wait(itt)`; CDB helpers
//!   (`test_unit_ready`, `inquiry`, `read_capacity16`, `read10/16`, `write10/16`,
//!   `report_luns`, `sync_cache`).
//! - `nop()`, `tmf(function, lun, ref_itt)`, `logout()`.
//! - Raw access for robustness tests: `send_raw`, `send_pdu`, `recv_pdu(timeout)`,
//!   `wait_closed(timeout)`.
//! - Target NOP-In pings are answered and Async Messages recorded (`async_events()`)
//!   transparently; protocol oddities seen from the target (StatSN gaps, oversized
//!   PDUs, bad offsets) are collected in `anomalies()` for tests to assert on.

mod initiator;
pub mod scsi;
pub mod stallfs;
pub mod vhost_frontend;

pub use initiator::{
    Chap, Initiator, InitiatorError, LoginOptions, MutualChap, Negotiated, Pdu, Residual,
    ScsiResult,
};
pub use iscsi_wire;
