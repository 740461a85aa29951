//! Causal, document-masked attention by FlashAttention-2's algorithm on the CPU: tiles of
//! queries × keys, an online softmax, the log-sum-exp of each row saved for backward, the scores
//! recomputed there. Memory is linear in the sequence: no seq × seq tensor exists at any time.
//! Grouped-query heads read their key/value head in place.
//!
//! Layout: q `[batch, seq, heads, head_dim]`, k and v `[batch, seq, kv_heads, head_dim]` (what the
//! projections give without a transpose); the output has q's layout.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{DisjointRows, Op, Timed, cpu_tensor, f32_data, matmul, with_data};

const QUERY_TILE: usize = 64;
const KEY_TILE: usize = 64;

/// For each token of `[batch, seq]` segments, the position in its row where its segment starts
/// (the first key it may attend to).
pub fn segment_starts(segments: &[u32], seq: usize) -> Vec<u32> {
    let mut starts = Vec::with_capacity(segments.len());
    for row in segments.chunks(seq) {
        let mut start = 0;
        for (i, &s) in row.iter().enumerate() {
            if i > 0 && s != row[i - 1] {
                start = i as u32;
            }
            starts.push(start);
        }
    }
    starts
}

pub struct FlashAttention {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// `segment_starts` of the batch: query i sees keys `starts[i]..=i` of its row.
    pub starts: Arc<Vec<u32>>,
    /// Multiplies q·k (1/√head_dim).
    pub scale: f32,
    /// Log-sum-exp of each (batch, head, query) row, from forward.
    lse: Mutex<Vec<f32>>,
}

/// What backward reads: q, k, v, the output and its gradient.
type Saved<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32], &'a [f32]);

/// The strides and offsets of one (batch row, query head) pair.
#[derive(Clone, Copy)]
struct Head {
    q: usize,
    kv: usize,
    q_row: usize,
    kv_row: usize,
}

impl FlashAttention {
    pub fn new(
        (batch, seq, heads, kv_heads, head_dim): (usize, usize, usize, usize, usize),
        starts: Arc<Vec<u32>>,
        scale: f32,
    ) -> Self {
        Self { batch, seq, heads, kv_heads, head_dim, starts, scale, lse: Mutex::new(Vec::new()) }
    }

    pub fn apply(self, q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
        q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, self)
    }

    fn head(&self, r: usize, hq: usize) -> Head {
        let (t, h, kvh, hd) = (self.seq, self.heads, self.kv_heads, self.head_dim);
        let g = hq / (h / kvh);
        Head { q: r * t * h * hd + hq * hd, kv: r * t * kvh * hd + g * hd, q_row: h * hd, kv_row: kvh * hd }
    }

    /// `out[a][j] = scale · q_tile[a] · k[j0 + j]` for an m × n tile (rows KEY_TILE apart): the
    /// scores forward computes and backward recomputes.
    fn scores(&self, at: &Head, (q_tile, k): (&[f32], &[f32]), j0: usize, (m, n): (usize, usize), out: &mut [f32]) {
        let k_tile = &k[at.kv + j0 * at.kv_row..];
        matmul(
            (m, n, self.head_dim),
            out,
            KEY_TILE,
            false,
            q_tile,
            (at.q_row, 1),
            k_tile,
            (1, at.kv_row),
            self.scale,
            false,
        );
    }

    /// Keys `lo..hi` that query `i` of row `r` sees, clipped to `j0..j1`.
    fn visible(&self, r: usize, i: usize, j0: usize, j1: usize) -> (usize, usize) {
        let lo = (self.starts[r * self.seq + i] as usize).max(j0);
        let hi = (i + 1).min(j1);
        (lo, hi.max(lo))
    }

    fn check(&self, q: &Layout, k: &Layout, v: &Layout) -> candle_core::Result<()> {
        let (b, t, h, kvh, hd) = (self.batch, self.seq, self.heads, self.kv_heads, self.head_dim);
        if q.dims() != [b, t, h, hd] || k.dims() != [b, t, kvh, hd] || v.dims() != [b, t, kvh, hd] {
            candle_core::bail!(
                "flash attention: q {:?}, k {:?}, v {:?} do not match batch {b}, seq {t}, heads {h}/{kvh}, head_dim {hd}",
                q.dims(),
                k.dims(),
                v.dims()
            )
        }
        if kvh == 0 || h % kvh != 0 || self.starts.len() != b * t {
            candle_core::bail!(
                "flash attention: {h} heads cannot share {kvh} key/value heads, or the segments do not match"
            )
        }
        Ok(())
    }

    /// One (row, head, query tile) of forward: writes the tile's output rows and log-sum-exps.
    #[allow(clippy::too_many_arguments)]
    fn forward_tile(
        &self,
        (q, k, v): (&[f32], &[f32], &[f32]),
        r: usize,
        hq: usize,
        i0: usize,
        out: DisjointRows,
        lse: DisjointRows,
        (scores, acc): (&mut [f32], &mut [f32]),
    ) {
        let (t, hd) = (self.seq, self.head_dim);
        let at = self.head(r, hq);
        let i1 = (i0 + QUERY_TILE).min(t);
        let m = i1 - i0;
        let mut row_max = [f32::NEG_INFINITY; QUERY_TILE];
        let mut row_sum = [0f32; QUERY_TILE];
        acc[..m * hd].fill(0.0);
        let first_key = self.starts[r * t + i0] as usize;
        let q_tile = &q[at.q + i0 * at.q_row..];
        for j0 in (first_key..i1).step_by(KEY_TILE) {
            let j1 = (j0 + KEY_TILE).min(i1);
            let n = j1 - j0;
            self.scores(&at, (q_tile, k), j0, (m, n), scores);
            for a in 0..m {
                let row = &mut scores[a * KEY_TILE..a * KEY_TILE + n];
                let (lo, hi) = self.visible(r, i0 + a, j0, j1);
                if lo == hi {
                    row.fill(0.0);
                    continue;
                }
                let (lo, hi) = (lo - j0, hi - j0);
                let tile_max = super::lanes_max(&row[lo..hi]);
                let new_max = row_max[a].max(tile_max);
                let correction = super::exp(row_max[a] - new_max);
                for (j, s) in row.iter_mut().enumerate() {
                    *s = if (lo..hi).contains(&j) { super::exp(*s - new_max) } else { 0.0 };
                }
                let sum = super::lanes_sum(row);
                row_sum[a] = row_sum[a] * correction + sum;
                row_max[a] = new_max;
                if correction != 1.0 {
                    acc[a * hd..(a + 1) * hd].iter_mut().for_each(|x| *x *= correction);
                }
            }
            // acc += p · v_tile
            let v_tile = &v[at.kv + j0 * at.kv_row..];
            matmul((m, hd, n), acc, hd, true, scores, (KEY_TILE, 1), v_tile, (at.kv_row, 1), 1.0, false);
        }
        for a in 0..m {
            let i = i0 + a;
            // SAFETY: row (r, i, hq) of the output and (r, hq, i) of the lse belong to this tile only.
            let dst = unsafe { out.slice(at.q + i * at.q_row, hd) };
            let inv = 1.0 / row_sum[a];
            for (d, x) in dst.iter_mut().zip(&acc[a * hd..(a + 1) * hd]) {
                *d = x * inv;
            }
            unsafe { lse.slice((r * self.heads + hq) * t + i, 1)[0] = row_max[a] + row_sum[a].ln() };
        }
    }

    /// One (row, query head) of backward: dq of the head (written in place) and the head's
    /// contribution to dk and dv of its key/value head (returned, `[seq, head_dim]` each).
    #[allow(clippy::too_many_arguments)]
    fn backward_head(
        &self,
        (q, k, v, out, d_out): Saved,
        lse: &[f32],
        r: usize,
        hq: usize,
        d_q: DisjointRows,
    ) -> (Vec<f32>, Vec<f32>) {
        let (t, hd) = (self.seq, self.head_dim);
        let at = self.head(r, hq);
        let mut d_k = vec![0f32; t * hd];
        let mut d_v = vec![0f32; t * hd];
        let mut probs = vec![0f32; QUERY_TILE * KEY_TILE];
        let mut d_scores = vec![0f32; QUERY_TILE * KEY_TILE];
        let mut d_q_tile = vec![0f32; QUERY_TILE * hd];
        let lse = &lse[(r * self.heads + hq) * t..];
        for i0 in (0..t).step_by(QUERY_TILE) {
            let i1 = (i0 + QUERY_TILE).min(t);
            let m = i1 - i0;
            // delta_i = d_out_i · out_i
            let mut delta = [0f32; QUERY_TILE];
            for (a, dl) in delta.iter_mut().enumerate().take(m) {
                let row = at.q + (i0 + a) * at.q_row;
                *dl = out[row..row + hd].iter().zip(&d_out[row..row + hd]).map(|(x, y)| x * y).sum();
            }
            d_q_tile[..m * hd].fill(0.0);
            let q_tile = &q[at.q + i0 * at.q_row..];
            let d_out_tile = &d_out[at.q + i0 * at.q_row..];
            let first_key = self.starts[r * t + i0] as usize;
            for j0 in (first_key..i1).step_by(KEY_TILE) {
                let j1 = (j0 + KEY_TILE).min(i1);
                let n = j1 - j0;
                let k_tile = &k[at.kv + j0 * at.kv_row..];
                let v_tile = &v[at.kv + j0 * at.kv_row..];
                self.scores(&at, (q_tile, k), j0, (m, n), &mut probs);
                for a in 0..m {
                    let (lo, hi) = self.visible(r, i0 + a, j0, j1);
                    let row = &mut probs[a * KEY_TILE..a * KEY_TILE + n];
                    for (j, p) in row.iter_mut().enumerate() {
                        *p = if (lo..hi).contains(&(j + j0)) { super::exp(*p - lse[i0 + a]) } else { 0.0 };
                    }
                }
                // d_v += pᵀ · d_out_tile
                matmul(
                    (n, hd, m),
                    &mut d_v[j0 * hd..],
                    hd,
                    true,
                    &probs,
                    (1, KEY_TILE),
                    d_out_tile,
                    (at.q_row, 1),
                    1.0,
                    false,
                );
                // d_p = d_out_tile · v_tileᵀ, then d_s = p ∘ (d_p − delta)
                matmul(
                    (m, n, hd),
                    &mut d_scores,
                    KEY_TILE,
                    false,
                    d_out_tile,
                    (at.q_row, 1),
                    v_tile,
                    (1, at.kv_row),
                    1.0,
                    false,
                );
                for (a, &dl) in delta.iter().enumerate().take(m) {
                    let base = a * KEY_TILE;
                    for j in 0..n {
                        d_scores[base + j] = probs[base + j] * (d_scores[base + j] - dl);
                    }
                }
                // d_q += scale · d_s · k_tile ; d_k += scale · d_sᵀ · q_tile
                matmul(
                    (m, hd, n),
                    &mut d_q_tile,
                    hd,
                    true,
                    &d_scores,
                    (KEY_TILE, 1),
                    k_tile,
                    (at.kv_row, 1),
                    self.scale,
                    false,
                );
                matmul(
                    (n, hd, m),
                    &mut d_k[j0 * hd..],
                    hd,
                    true,
                    &d_scores,
                    (1, KEY_TILE),
                    q_tile,
                    (at.q_row, 1),
                    self.scale,
                    false,
                );
            }
            for a in 0..m {
                // SAFETY: row (r, i, hq) of dq belongs to this (row, head) task only.
                let dst = unsafe { d_q.slice(at.q + (i0 + a) * at.q_row, hd) };
                dst.copy_from_slice(&d_q_tile[a * hd..(a + 1) * hd]);
            }
        }
        (d_k, d_v)
    }
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "flash-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _timed = Timed::forward(Op::Attention);
        self.check(ql, kl, vl)?;
        let name = self.name();
        let (q, k, v) = (f32_data(qs, ql, name)?, f32_data(ks, kl, name)?, f32_data(vs, vl, name)?);
        let (b, t, h) = (self.batch, self.seq, self.heads);
        let mut out = vec![0f32; q.len()];
        let mut lse = vec![0f32; b * h * t];
        let (out_rows, lse_rows) = (DisjointRows(out.as_mut_ptr()), DisjointRows(lse.as_mut_ptr()));
        let tiles = t.div_ceil(QUERY_TILE);
        (0..b * h * tiles).into_par_iter().for_each_init(
            || (vec![0f32; QUERY_TILE * KEY_TILE], vec![0f32; QUERY_TILE * self.head_dim]),
            |(scores, acc), item| {
                let (r, hq, tile) = (item / (h * tiles), item / tiles % h, item % tiles);
                self.forward_tile((q, k, v), r, hq, tile * QUERY_TILE, out_rows, lse_rows, (scores, acc));
            },
        );
        *self.lse.lock().expect("not poisoned") = lse;
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        d_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _timed = Timed::backward(Op::Attention);
        let lse = std::mem::take(&mut *self.lse.lock().expect("not poisoned"));
        if lse.len() != self.batch * self.heads * self.seq {
            candle_core::bail!("flash attention: backward ran without (or twice after) its forward")
        }
        let name = self.name();
        let (b, t, h, kvh, hd) = (self.batch, self.seq, self.heads, self.kv_heads, self.head_dim);
        let group = h / kvh;
        let (d_q, d_k, d_v) = with_data(q, name, |q| {
            with_data(k, name, |k| {
                with_data(v, name, |v| {
                    with_data(out, name, |o| {
                        with_data(d_out, name, |d_o| {
                            let mut d_q = vec![0f32; q.len()];
                            let rows = DisjointRows(d_q.as_mut_ptr());
                            let parts: Vec<(Vec<f32>, Vec<f32>)> = (0..b * h)
                                .into_par_iter()
                                .map(|item| self.backward_head((q, k, v, o, d_o), &lse, item / h, item % h, rows))
                                .collect();
                            // Sum each key/value head's query heads in head order (deterministic).
                            let mut d_k = vec![0f32; k.len()];
                            let mut d_v = vec![0f32; v.len()];
                            for (item, (pk, pv)) in parts.iter().enumerate() {
                                let (r, g) = (item / h, item % h / group);
                                for j in 0..t {
                                    let dst = (r * t + j) * kvh * hd + g * hd;
                                    let src = j * hd..(j + 1) * hd;
                                    d_k[dst..dst + hd].iter_mut().zip(&pk[src.clone()]).for_each(|(x, y)| *x += y);
                                    d_v[dst..dst + hd].iter_mut().zip(&pv[src]).for_each(|(x, y)| *x += y);
                                }
                            }
                            Ok((d_q, d_k, d_v))
                        })
                    })
                })
            })
        })?;
        Ok((Some(cpu_tensor(d_q, q.dims())?), Some(cpu_tensor(d_k, k.dims())?), Some(cpu_tensor(d_v, v.dims())?)))
    }
}
