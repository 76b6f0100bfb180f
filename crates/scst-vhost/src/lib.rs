//! The `vhost` target driver: SCST's targets for virtual machines on the same host,
//! over virtio-scsi and vhost-user (what SPDK's vhost target offers, under SCST's
//! management model). A QEMU guest (or any vhost-user-scsi frontend) attaches to a
//! target's Unix socket and sees the target's LUNs on a virtio-scsi controller, with
//! no network stack in between; the guest's memory is shared with scstd, which copies
//! data once between it and the command buffers.
//!
//! Layout:
//! - [`virtio`]: virtio-scsi's request, response, control and event layouts (bytes);
//! - `chain`: a descriptor chain's guest buffers, read and written bounds-checked;
//! - `worker`: the per-connection virtqueue worker that owns the session's nexus;
//! - `backend`: the connection as rust-vmm's `vhost-user-backend` drives it;
//! - `driver`: the `TargetDriver` (`targets/vhost/`), sockets and teardown.
//!
//! docs/vhost.md is the administrator's side: attaching a VM with QEMU or libvirt.

#![forbid(unsafe_code)]

mod backend;
mod chain;
mod driver;
pub mod virtio;
mod worker;

pub use driver::{VhostDriver, DRIVER};
