//! `trainer`: mid-training on candle.
//!
//! A Llama decoder built from differentiable ops ([`model`]) in transformers' checkpoint layout
//! ([`hf_config`]), RoPE scalings and learning-rate schedules as pure functions ([`rope`],
//! [`schedule`]), AdamW with parameter groups and clipping ([`optim`]), a packed, resumable data
//! loader over mixtures ([`data`]), and the training run ([`train`]: config, loop, evaluator,
//! checkpointer, records) with its training statistics ([`metrics`]), evaluation ([`eval`]),
//! HTML reports ([`report`]) and weight averaging ([`soup`]).

pub mod data;
pub mod eval;
pub mod hf_config;
pub mod jsonfloat;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod passkey;
pub mod report;
pub mod rope;
pub mod schedule;
pub mod soup;
pub mod train;

pub use schedule::{Decay, LrSchedule, WsdShape};

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
