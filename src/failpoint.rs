//! Crash testing: the one place the binary can be made to die on purpose.

/// Crash testing: with `MIDTRAIN_FAILPOINT_ABORT_AFTER_BATCHES=N` the process aborts (like a
/// `kill -9`: no cleanup, no unwinding) after its Nth batch of any stage, or for `train` its
/// Nth step. The kill-and-resume tests use it to stop a run at exact points; each command calls
/// it where the library reports a finished batch or step.
pub fn after_batch() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static BATCHES: AtomicU64 = AtomicU64::new(0);
    if let Some(limit) =
        std::env::var("MIDTRAIN_FAILPOINT_ABORT_AFTER_BATCHES").ok().and_then(|v| v.parse::<u64>().ok())
        && BATCHES.fetch_add(1, Ordering::SeqCst) + 1 >= limit
    {
        std::process::abort();
    }
}
