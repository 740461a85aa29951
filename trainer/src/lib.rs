//! `trainer`: mid-training on candle.
//!
//! A Llama decoder built from differentiable ops ([`model`]) in transformers' checkpoint layout
//! ([`hf_config`]), RoPE scalings and learning-rate schedules as pure functions ([`rope`],
//! `schedule`), AdamW with parameter groups and clipping ([`optim`]), a packed, resumable data
//! loader over mixtures (`data`), and the training run ([`train`]: config, loop, evaluator,
//! checkpointer, records) with its training statistics (`metrics`), evaluation (`eval`),
//! HTML reports (`report`) and weight averaging (`soup`); evaluation on lm-eval-style tasks
//! ([`tasks`]) and ablations of candidate mixes ranked on them ([`ablate`]).

// Modules whose types make up the public API stay public; the rest is private behind the
// `pub use` below, so the compiler reports what nothing uses.
pub mod ablate;
mod data;
mod eval;
mod fused;
pub mod hf_config;
mod jsonfloat;
mod metrics;
pub mod model;
pub mod optim;
mod passkey;
mod report;
pub mod rope;
mod schedule;
mod soup;
pub mod tasks;
pub mod train;

pub use eval::score;
pub use fused::{OpTime, op_times};
pub use report::{compare_report, run_report};
pub use schedule::{Decay, LrSchedule, WsdShape};
pub use soup::soup;

/// Keep freed memory in the process instead of returning it to the kernel.
///
/// A training step allocates and frees the same large tensors (activations, logits, gradients)
/// every step; glibc serves blocks over 32 MiB with `mmap` and unmaps them on free, so each step
/// paid page faults, page zeroing and TLB shootdowns again: 45% of the step in the kernel on the
/// 12.7 M-parameter benchmark (905 → 1,611 tokens/s with this). The resident size then stays at
/// the step's peak, which a training process holds anyway. No-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before the allocations it affects.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
