//! The one way configuration changes: whatever asks for a change (start-up, `scstadmin
//! -config`, a write to the management tree), the same checks decide whether scst-rs can
//! put it into effect.

mod support;

pub use support::{check_write, WriteCheck};
