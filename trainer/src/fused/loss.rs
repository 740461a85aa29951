//! The log-probability of each target under `hidden · weightᵀ`, computed in chunks of rows, so
//! the `[tokens, vocab]` logits are never held more than once (composed ops hold the logits,
//! their log-softmax and their gradient). Forward keeps one log-sum-exp per row and, while they
//! fit in `KEEP_BYTES`, the softmax, which backward turns into the logits' gradient in place;
//! above that it keeps nothing more and backward recomputes the logits one chunk at a time.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{Op, Timed, cpu_tensor, f32_data, matmul, with_data};

/// Rows whose logits are held at once: 256 × 49,152 × 4 B = 48 MiB for SmolLM2's vocabulary.
const CHUNK_ROWS: usize = 256;
/// The largest softmax forward keeps for backward (SmolLM2 at 2 × 512 tokens: 192 MiB); larger
/// ones cost backward one more logits matmul instead (about 1/3 of the head's compute).
const KEEP_BYTES: usize = 256 << 20;

pub struct TargetLogProbs {
    pub targets: Arc<Vec<u32>>,
    lse: Mutex<Vec<f32>>,
    softmax: Mutex<Option<Vec<f32>>>,
    keep_bytes: usize,
}

impl TargetLogProbs {
    pub fn new(targets: Arc<Vec<u32>>) -> Self {
        Self { targets, lse: Mutex::new(Vec::new()), softmax: Mutex::new(None), keep_bytes: KEEP_BYTES }
    }

    /// The same with another limit on the softmax kept for backward (0: always recompute).
    #[cfg(test)]
    pub fn keeping_at_most(mut self, bytes: usize) -> Self {
        self.keep_bytes = bytes;
        self
    }

    /// `[tokens]` log-probabilities of `hidden [tokens, d]` against `weight [vocab, d]`.
    pub fn apply(self, hidden: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
        hidden.contiguous()?.apply_op2(&weight.contiguous()?, self)
    }

    fn dims(&self, hidden: &[usize], weight: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
        match (hidden, weight) {
            ([n, d], [vocab, d2]) if d == d2 && *n == self.targets.len() => {
                if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= *vocab) {
                    candle_core::bail!("target log-probs: target {t} is outside the vocabulary of {vocab}")
                }
                Ok((*n, *d, *vocab))
            }
            _ => candle_core::bail!(
                "target log-probs: hidden {hidden:?}, weight {weight:?} and {} targets do not match",
                self.targets.len()
            ),
        }
    }

    /// The logits of rows `start..start + rows`.
    fn logits(hidden: &[f32], weight: &[f32], (start, rows, d, vocab): (usize, usize, usize, usize), out: &mut [f32]) {
        let h = &hidden[start * d..(start + rows) * d];
        matmul((rows, vocab, d), out, vocab, false, h, (d, 1), weight, (1, d), 1.0, true);
    }
}

/// The log-sum-exp of `row`, which becomes its softmax when `into_softmax` and scratch
/// otherwise (the exponentials are taken in place, in one vectorized pass, then summed).
fn log_sum_exp(row: &mut [f32], into_softmax: bool) -> f32 {
    let max = super::lanes_max(row);
    row.iter_mut().for_each(|x| *x = super::exp(*x - max));
    let sum = super::lanes_sum(row);
    if into_softmax {
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|x| *x *= inv);
    }
    max + sum.ln()
}

impl CustomOp2 for TargetLogProbs {
    fn name(&self) -> &'static str {
        "target-log-probs"
    }

    fn cpu_fwd(
        &self,
        hs: &CpuStorage,
        hl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _timed = Timed::forward(Op::Loss);
        let (n, d, vocab) = self.dims(hl.dims(), wl.dims())?;
        let (hidden, weight) = (f32_data(hs, hl, self.name())?, f32_data(ws, wl, self.name())?);
        let mut log_probs = vec![0f32; n];
        let mut lse = vec![0f32; n];
        let keep = n * vocab * 4 <= self.keep_bytes;
        let mut logits = vec![0f32; if keep { n } else { CHUNK_ROWS.min(n) } * vocab];
        for start in (0..n).step_by(CHUNK_ROWS) {
            let rows = CHUNK_ROWS.min(n - start);
            let chunk =
                if keep { &mut logits[start * vocab..(start + rows) * vocab] } else { &mut logits[..rows * vocab] };
            Self::logits(hidden, weight, (start, rows, d, vocab), chunk);
            let rows_out: Vec<(f32, f32)> = chunk
                .par_chunks_mut(vocab)
                .enumerate()
                .map(|(a, row)| {
                    let target_logit = row[self.targets[start + a] as usize];
                    let z = log_sum_exp(row, keep);
                    (z, target_logit - z)
                })
                .collect();
            for (a, (z, log_prob)) in rows_out.into_iter().enumerate() {
                lse[start + a] = z;
                log_probs[start + a] = log_prob;
            }
        }
        *self.lse.lock().expect("not poisoned") = lse;
        *self.softmax.lock().expect("not poisoned") = keep.then_some(logits);
        Ok((CpuStorage::F32(log_probs), Shape::from(n)))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        _out: &Tensor,
        d_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let _timed = Timed::backward(Op::Loss);
        let lse = std::mem::take(&mut *self.lse.lock().expect("not poisoned"));
        let (n, d, vocab) = self.dims(hidden.dims(), weight.dims())?;
        if lse.len() != n {
            candle_core::bail!("target log-probs: backward ran without (or twice after) its forward")
        }
        let name = self.name();
        let (d_hidden, d_weight) = with_data(hidden, name, |h| {
            with_data(weight, name, |w| {
                with_data(d_out, name, |g| {
                    let mut d_hidden = vec![0f32; n * d];
                    let mut d_weight = vec![0f32; vocab * d];
                    let kept = self.softmax.lock().expect("not poisoned").take();
                    let keep = kept.is_some();
                    let mut logits = kept.unwrap_or_else(|| vec![0f32; CHUNK_ROWS.min(n) * vocab]);
                    for start in (0..n).step_by(CHUNK_ROWS) {
                        let rows = CHUNK_ROWS.min(n - start);
                        if g[start..start + rows].iter().all(|&x| x == 0.0) {
                            continue;
                        }
                        let chunk = if keep {
                            &mut logits[start * vocab..(start + rows) * vocab]
                        } else {
                            &mut logits[..rows * vocab]
                        };
                        if !keep {
                            Self::logits(h, w, (start, rows, d, vocab), chunk);
                        }
                        // d logits = g · (onehot(target) − softmax)
                        chunk.par_chunks_mut(vocab).enumerate().for_each(|(a, row)| {
                            let i = start + a;
                            for x in row.iter_mut() {
                                let p = if keep { *x } else { super::exp(*x - lse[i]) };
                                *x = -g[i] * p;
                            }
                            row[self.targets[i] as usize] += g[i];
                        });
                        let d_logits = &*chunk;
                        let dh = &mut d_hidden[start * d..(start + rows) * d];
                        matmul((rows, d, vocab), dh, d, false, d_logits, (vocab, 1), w, (d, 1), 1.0, true);
                        let hc = &h[start * d..(start + rows) * d];
                        matmul((vocab, d, rows), &mut d_weight, d, true, d_logits, (1, vocab), hc, (d, 1), 1.0, true);
                    }
                    Ok((d_hidden, d_weight))
                })
            })
        })?;
        Ok((Some(cpu_tensor(d_hidden, hidden.dims())?), Some(cpu_tensor(d_weight, weight.dims())?)))
    }
}
