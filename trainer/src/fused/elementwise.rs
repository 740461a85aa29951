//! Row-wise fused ops: RMSNorm, half-split RoPE and SwiGLU. Each keeps only its inputs for
//! backward (the composed versions keep every intermediate), runs over fixed chunks of rows in
//! parallel, and sums across rows in chunk order.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{Op, Timed, cpu_tensor, f32_data, with_data};

/// Rows per parallel task (and per partial sum of a gain's gradient).
const ROWS: usize = 64;

/// `x · gain / √(mean(x²) + eps)` over the last dimension.
pub struct RmsNorm {
    pub eps: f64,
}

impl RmsNorm {
    pub fn apply(self, x: &Tensor, gain: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op2(gain, self)
    }

    fn inverse_rms(&self, row: &[f32]) -> f32 {
        let mean = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / row.len() as f64;
        (1.0 / (mean + self.eps).sqrt()) as f32
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _timed = Timed::forward(Op::RmsNorm);
        let (x, gain) = (f32_data(xs, xl, self.name())?, f32_data(gs, gl, self.name())?);
        let d = gain.len();
        if xl.dims().last() != Some(&d) {
            candle_core::bail!("rms-norm: input {:?} does not end in the gain's {d}", xl.dims())
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(ROWS * d).zip(x.par_chunks(ROWS * d)).for_each(|(out, x)| {
            for (o, row) in out.chunks_mut(d).zip(x.chunks(d)) {
                let r = self.inverse_rms(row);
                for ((o, &v), &g) in o.iter_mut().zip(row).zip(gain) {
                    *o = v * r * g;
                }
            }
        });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _out: &Tensor,
        d_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let _timed = Timed::backward(Op::RmsNorm);
        let name = self.name();
        let (d_x, d_gain) = with_data(x, name, |x| {
            with_data(gain, name, |gain| {
                with_data(d_out, name, |dy| {
                    let d = gain.len();
                    let mut d_x = vec![0f32; x.len()];
                    // dx = r·(g∘dy) − x·r³/d·Σ(g∘dy∘x);  dgain = Σ_rows dy∘x·r
                    let partials: Vec<Vec<f32>> = d_x
                        .par_chunks_mut(ROWS * d)
                        .zip(x.par_chunks(ROWS * d).zip(dy.par_chunks(ROWS * d)))
                        .map(|(d_x, (x, dy))| {
                            let mut d_gain = vec![0f32; d];
                            for ((dx, row), dy) in d_x.chunks_mut(d).zip(x.chunks(d)).zip(dy.chunks(d)) {
                                let r = self.inverse_rms(row);
                                let dot: f32 = row.iter().zip(dy).zip(gain).map(|((x, dy), g)| x * dy * g).sum();
                                let c = dot * r * r * r / d as f32;
                                for j in 0..d {
                                    dx[j] = r * gain[j] * dy[j] - row[j] * c;
                                    d_gain[j] += dy[j] * row[j] * r;
                                }
                            }
                            d_gain
                        })
                        .collect();
                    let mut d_gain = vec![0f32; d];
                    for p in &partials {
                        d_gain.iter_mut().zip(p).for_each(|(a, b)| *a += b);
                    }
                    Ok((d_x, d_gain))
                })
            })
        })?;
        Ok((Some(cpu_tensor(d_x, x.dims())?), Some(cpu_tensor(d_gain, gain.dims())?)))
    }
}

/// Cos and sin of each token's rotation angles, `[tokens, head_dim / 2]`, times the attention
/// factor (YaRN / LongRoPE), shared by q and k of every layer.
pub struct RotaryTable {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub half: usize,
}

impl RotaryTable {
    pub fn new(positions: &[u32], inv_freq: &[f32], attention_factor: f32) -> Self {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos() * attention_factor);
                sin.push(angle.sin() * attention_factor);
            }
        }
        Self { cos, sin, half }
    }

    /// Rotates `[tokens, heads, 2·half]` in place; `inverse` applies the transpose (backward).
    fn rotate(&self, x: &mut [f32], heads: usize, inverse: bool) {
        let (half, width) = (self.half, 2 * self.half * heads);
        x.par_chunks_mut(width * ROWS).enumerate().for_each(|(chunk, rows)| {
            for (n, row) in rows.chunks_mut(width).enumerate() {
                let token = chunk * ROWS + n;
                let cos = &self.cos[token * half..(token + 1) * half];
                let sin = &self.sin[token * half..(token + 1) * half];
                for head in row.chunks_mut(2 * half) {
                    let (x1, x2) = head.split_at_mut(half);
                    for d in 0..half {
                        let (a, b, c, s) = (x1[d], x2[d], cos[d], if inverse { -sin[d] } else { sin[d] });
                        x1[d] = a * c - b * s;
                        x2[d] = b * c + a * s;
                    }
                }
            }
        });
    }
}

/// Half-split rotary embedding of `[batch, seq, heads, head_dim]` (transformers' `rotate_half`).
pub struct Rotary {
    pub table: Arc<RotaryTable>,
}

impl Rotary {
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op1(self)
    }

    fn heads(&self, dims: &[usize]) -> candle_core::Result<usize> {
        match dims {
            [b, t, h, hd] if *hd == 2 * self.table.half && b * t * self.table.half == self.table.cos.len() => Ok(*h),
            _ => candle_core::bail!("rotary: input {dims:?} does not match the table of the batch"),
        }
    }
}

impl CustomOp1 for Rotary {
    fn name(&self) -> &'static str {
        "rotary"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _timed = Timed::forward(Op::Rotary);
        let heads = self.heads(l.dims())?;
        let mut out = f32_data(s, l, self.name())?.to_vec();
        self.table.rotate(&mut out, heads, false);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _out: &Tensor, d_out: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let _timed = Timed::backward(Op::Rotary);
        let heads = self.heads(x.dims())?;
        let mut d_x = with_data(d_out, self.name(), |dy| Ok(dy.to_vec()))?;
        self.table.rotate(&mut d_x, heads, true);
        Ok(Some(cpu_tensor(d_x, x.dims())?))
    }
}

/// `silu(gate) · up`.
pub struct SwiGlu;

impl SwiGlu {
    pub fn apply(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
        gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + super::exp(-x))
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _timed = Timed::forward(Op::SwiGlu);
        let (gate, up) = (f32_data(gs, gl, self.name())?, f32_data(us, ul, self.name())?);
        if gl.dims() != ul.dims() {
            candle_core::bail!("swiglu: gate {:?} and up {:?} differ", gl.dims(), ul.dims())
        }
        let mut out = vec![0f32; gate.len()];
        out.par_chunks_mut(1 << 14).zip(gate.par_chunks(1 << 14).zip(up.par_chunks(1 << 14))).for_each(
            |(o, (g, u))| {
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = g * sigmoid(g) * u;
                }
            },
        );
        Ok((CpuStorage::F32(out), gl.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _out: &Tensor,
        d_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let _timed = Timed::backward(Op::SwiGlu);
        let name = self.name();
        let (d_gate, d_up) = with_data(gate, name, |g| {
            with_data(up, name, |u| {
                with_data(d_out, name, |dy| {
                    let mut d_gate = vec![0f32; g.len()];
                    let mut d_up = vec![0f32; g.len()];
                    const CHUNK: usize = 1 << 14;
                    d_gate.par_chunks_mut(CHUNK).zip(d_up.par_chunks_mut(CHUNK)).enumerate().for_each(
                        |(c, (dg, du))| {
                            let range = c * CHUNK..(c * CHUNK + dg.len());
                            for (((dg, du), (&g, &u)), &dy) in dg
                                .iter_mut()
                                .zip(du)
                                .zip(g[range.clone()].iter().zip(&u[range.clone()]))
                                .zip(&dy[range])
                            {
                                let s = sigmoid(g);
                                *du = dy * g * s;
                                *dg = dy * u * s * (1.0 + g * (1.0 - s));
                            }
                        },
                    );
                    Ok((d_gate, d_up))
                })
            })
        })?;
        Ok((Some(cpu_tensor(d_gate, gate.dims())?), Some(cpu_tensor(d_up, up.dims())?)))
    }
}
