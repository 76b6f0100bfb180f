//! Giving memory back after a burst. Command buffers stay on the heap and freed heap
//! memory stays mapped (see `tune_allocator`), which keeps large transfers free of page
//! faults; but after a flood that filled a good part of `scst_max_cmd_mem`, the
//! process would keep that much resident for good. Once such a burst is over (the
//! budget's use back under a sixteenth of it), the allocator is told to return its free
//! memory to the system, once per burst.

use std::sync::Arc;
use std::time::Duration;

use scst_core::Scst;

/// How often the budget is looked at.
const PERIOD: Duration = Duration::from_secs(1);

/// Start the thread that trims the heap after bursts; it runs until the process exits.
pub(crate) fn start(scst: &Arc<Scst>) -> std::io::Result<()> {
    let scst = Arc::downgrade(scst);
    std::thread::Builder::new()
        .name("scstd-trim".into())
        .spawn(move || {
            let mut after_burst = false;
            loop {
                std::thread::sleep(PERIOD);
                let Some(scst) = scst.upgrade() else { return };
                let mem = &scst.cmd_mem;
                if mem.take_burst() {
                    after_burst = true;
                } else if after_burst && mem.used() <= mem.limit() / 16 {
                    after_burst = false;
                    // SAFETY: malloc_trim only returns free memory to the system; it
                    // takes the allocator's own locks.
                    let released = unsafe { libc::malloc_trim(0) };
                    log::debug!("buffer burst over: heap trimmed ({released})");
                }
            }
        })
        .map(drop)
}
