//! Fused CPU ops that carry their own backward (candle `CustomOp`s), so a training step keeps
//! only what backward needs: attention keeps its output and one log-sum-exp per row (never a
//! seq × seq tensor), RMSNorm, RoPE and SwiGLU keep their inputs, and the loss keeps one
//! log-sum-exp per row (the logits are recomputed in chunks of rows in backward).
//!
//! The composed versions in `model` stay as the reference these are tested against, and run
//! where these have no kernel (CUDA). Every reduction runs in a fixed order over fixed-size
//! chunks, so results do not depend on the thread count.

mod attention;
mod elementwise;
mod linear;
mod loss;
#[cfg(test)]
mod tests;

pub use attention::{FlashAttention, segment_starts};
pub use elementwise::{RmsNorm, Rotary, RotaryTable, SwiGlu};
pub use linear::Linear;
pub use loss::TargetLogProbs;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candle_core::{CpuStorage, Layout, Storage, Tensor};

/// `e^x` in f32 within 5e-7 relative (tested against f64), 0 below -86.6 (e^-86.6 < 2.5e-38,
/// nothing beside the 1 of a softmax's maximum), +inf above ln(f32::MAX), NaN for NaN. Only
/// arithmetic and selects, so loops over slices vectorize; libm's `expf` is a scalar call per
/// element (this was 2–3× faster over a 4 M-element slice on this machine).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const MIN: f32 = -86.6; // n ≥ -125 below, so 2^(n-1) is a normal float
    const MAX: f32 = 88.722_83; // ln f32::MAX
    // Cody–Waite: x = n·ln 2 + g with |g| ≤ ln 2 / 2, ln 2 split so that n·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let c = x.clamp(MIN, MAX);
    let shifted = c * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let g = (c - n * LN2_HI) - n * LN2_LO;
    // e^g by its Taylor series to g⁷ (error below 6e-9 for |g| ≤ 0.35), Horner form.
    let p = 1.0
        + g * (1.0
            + g * (0.5
                + g * (1.0 / 6.0 + g * (1.0 / 24.0 + g * (1.0 / 120.0 + g * (1.0 / 720.0 + g * (1.0 / 5040.0)))))));
    // 2^n as 2^(n-1)·2, so that n = 128 (x near ln f32::MAX) still has a finite half.
    // n sits in the low mantissa bits of `shifted` (1.5·2²³ + n): no float-to-int conversion.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let half = f32::from_bits(n_bits.wrapping_add(126) << 23);
    let y = p * half * 2.0;
    if x < MIN {
        0.0
    } else if x > MAX {
        f32::INFINITY
    } else {
        y
    }
}

/// The sum of `xs` in 8 interleaved partial sums added in a fixed order: vectorizable (one
/// running sum is a chain of dependent adds) and the same for the same input on any thread.
pub(crate) fn lanes_sum(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail
}

/// The maximum of `xs` in 8 interleaved lanes, so that it vectorizes (max is exact in any order).
pub(crate) fn lanes_max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(x);
        }
    }
    lanes.iter().fold(tail, |a, &b| a.max(b))
}

/// The fused ops, for their time counters.
#[derive(Clone, Copy)]
enum Op {
    Linear,
    Attention,
    RmsNorm,
    Rotary,
    SwiGlu,
    Loss,
}

const OP_NAMES: [&str; 6] = ["linear", "attention", "rms-norm", "rotary", "swiglu", "loss"];

/// Nanoseconds spent in each op's forward and backward since the process started.
static NANOS: [[AtomicU64; 2]; 6] = [const { [const { AtomicU64::new(0) }; 2] }; 6];

/// Adds the time until it is dropped to an op's counter (forward: 0, backward: 1).
struct Timed(Op, usize, Instant);

impl Timed {
    fn forward(op: Op) -> Self {
        Self(op, 0, Instant::now())
    }

    fn backward(op: Op) -> Self {
        Self(op, 1, Instant::now())
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        NANOS[self.0 as usize][self.1].fetch_add(self.2.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Time spent in one fused op so far (both directions summed over all calls).
#[derive(Clone, Debug)]
pub struct OpTime {
    pub op: &'static str,
    pub forward: Duration,
    pub backward: Duration,
}

/// The time each fused op has taken in this process so far (benchmarks take differences).
pub fn op_times() -> Vec<OpTime> {
    OP_NAMES
        .iter()
        .zip(&NANOS)
        .map(|(op, [f, b])| OpTime {
            op,
            forward: Duration::from_nanos(f.load(Ordering::Relaxed)),
            backward: Duration::from_nanos(b.load(Ordering::Relaxed)),
        })
        .collect()
}

/// The contiguous f32 data of an op's input.
fn f32_data<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op}: the fused ops run in f32") };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: needs a contiguous input"),
    }
}

/// Runs `f` on a tensor's f32 data (in backward, where ops see tensors, not storages).
fn with_data<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> candle_core::Result<R>) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(f32_data(cpu, layout, op)?),
        _ => candle_core::bail!("{op}: the fused ops have CPU kernels only"),
    }
}

fn cpu_tensor(data: Vec<f32>, dims: &[usize]) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, dims, &candle_core::Device::Cpu)
}

/// A pointer that parallel workers write through, each to rows no other worker touches.
#[derive(Clone, Copy)]
struct DisjointRows(*mut f32);

// SAFETY: every user writes only rows that no other task of the same parallel loop writes, and
// the buffer outlives the loop.
unsafe impl Send for DisjointRows {}
unsafe impl Sync for DisjointRows {}

impl DisjointRows {
    /// # Safety
    /// `start..start + len` is inside the buffer and written by this task only.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// `dst (m × n) := [dst +] beta · lhs (m × k) · rhs (k × n)`, each given by its element strides
/// (row, column), single-threaded (callers parallelise over tiles).
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_row: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_row, lhs_col): (usize, usize),
    rhs: &[f32],
    (rhs_row, rhs_col): (usize, usize),
    beta: f32,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The farthest element each operand is read or written at must lie inside its slice.
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, n, dst_row, 1) < dst.len(), "matmul: dst too short");
    if k > 0 {
        assert!(last(m, k, lhs_row, lhs_col) < lhs.len(), "matmul: lhs too short");
        assert!(last(k, n, rhs_row, rhs_col) < rhs.len(), "matmul: rhs too short");
    }
    let parallelism =
        if parallel { gemm::Parallelism::Rayon(rayon::current_num_threads()) } else { gemm::Parallelism::None };
    // SAFETY: the asserts above keep every access inside the slices; dst does not alias lhs/rhs
    // (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_col as isize,
            lhs_row as isize,
            rhs.as_ptr(),
            rhs_col as isize,
            rhs_row as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}
