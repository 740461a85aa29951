//! AdamW with decoupled weight decay (PyTorch's update, term for term), parameter groups
//! (no decay on embeddings and norm gains) and global gradient-norm clipping.
//!
//! candle's `AdamW` (candle-nn) decays every variable and cannot clip; this one keeps its moments on
//! the host as f32 so the state saves and reloads bit for bit.

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};
use candle_core::{Device, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 disables).
    #[serde(default = "default_clip")]
    pub clip_grad_norm: f64,
}

// OLMo 2's mid-training settings (docs/training-notes.md).
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_eps() -> f64 {
    1e-8
}
fn default_weight_decay() -> f64 {
    0.1
}
fn default_clip() -> f64 {
    1.0
}

impl AdamWConfig {
    /// Settings AdamW cannot run with.
    pub fn validate(&self) -> Result<()> {
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            ensure!((0.0..1.0).contains(&beta), "[optimizer] {name} {beta} must be in [0, 1)");
        }
        ensure!(self.eps.is_finite() && self.eps > 0.0, "[optimizer] eps {} must be a positive number", self.eps);
        ensure!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "[optimizer] weight_decay {} must be a non-negative number",
            self.weight_decay
        );
        ensure!(
            self.clip_grad_norm.is_finite() && self.clip_grad_norm >= 0.0,
            "[optimizer] clip_grad_norm {} must be a non-negative number (0 disables clipping)",
            self.clip_grad_norm
        );
        Ok(())
    }
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: default_weight_decay(),
            clip_grad_norm: default_clip(),
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    decay: bool,
    m: Vec<f32>,
    v: Vec<f32>,
}

pub struct AdamW {
    pub config: AdamWConfig,
    slots: Vec<Slot>,
    /// Updates taken so far (bias correction uses it).
    pub steps: u64,
}

/// What one update did.
#[derive(Clone, Copy, Debug)]
pub struct UpdateInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub clipped: bool,
    /// False when the gradient norm was not finite: nothing was changed.
    pub applied: bool,
}

impl AdamW {
    /// `params` are (name, variable, takes weight decay).
    pub fn new(config: AdamWConfig, params: impl IntoIterator<Item = (String, Var, bool)>) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, var, decay)| {
                let n = var.elem_count();
                Slot { name, var, decay, m: vec![0.0; n], v: vec![0.0; n] }
            })
            .collect();
        Self { config, slots, steps: 0 }
    }

    /// Apply one update with learning rate `lr` from gradients given in the slots' order.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<UpdateInfo> {
        /// Elements per parallel task.
        const CHUNK: usize = 1 << 16;
        ensure!(grads.len() == self.slots.len(), "{} gradients for {} parameters", grads.len(), self.slots.len());
        let grads: Vec<Vec<f32>> =
            grads.iter().map(|g| g.flatten_all()?.to_vec1::<f32>()).collect::<candle_core::Result<_>>()?;
        // Fixed chunks summed in order: the same norm whatever the thread count.
        let norm_sq: f64 = grads
            .iter()
            .map(|g| {
                let parts: Vec<f64> =
                    g.par_chunks(CHUNK).map(|c| c.iter().map(|&x| x as f64 * x as f64).sum::<f64>()).collect();
                parts.iter().sum::<f64>()
            })
            .sum();
        let grad_norm = norm_sq.sqrt();
        if !grad_norm.is_finite() {
            return Ok(UpdateInfo { grad_norm, clipped: false, applied: false });
        }
        let c = self.config;
        let clip = if c.clip_grad_norm > 0.0 && grad_norm > c.clip_grad_norm {
            // PyTorch's clip_grad_norm_: coefficient max_norm / (norm + 1e-6).
            (c.clip_grad_norm / (grad_norm + 1e-6)) as f32
        } else {
            1.0
        };
        self.steps += 1;
        let t = self.steps as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let step_size = (lr / bias1) as f32;
        let bias2_sqrt = bias2_sqrt as f32;
        for (slot, g) in self.slots.iter_mut().zip(&grads) {
            let t = slot.var.as_tensor();
            let mut p = t.flatten_all()?.to_vec1::<f32>()?;
            let decay = if slot.decay { (1.0 - lr * c.weight_decay) as f32 } else { 1.0 };
            let moments = slot.m.par_chunks_mut(CHUNK).zip(slot.v.par_chunks_mut(CHUNK));
            p.par_chunks_mut(CHUNK).zip(moments).zip(g.par_chunks(CHUNK)).for_each(|((p, (m, v)), g)| {
                for i in 0..p.len() {
                    let g = g[i] * clip;
                    m[i] = m[i] * b1 + (1.0 - b1) * g;
                    v[i] = v[i] * b2 + (1.0 - b2) * g * g;
                    let denom = v[i].sqrt() / bias2_sqrt + eps;
                    p[i] = p[i] * decay - step_size * m[i] / denom;
                }
            });
            slot.var.set(&Tensor::from_vec(p, t.shape(), t.device())?)?;
        }
        Ok(UpdateInfo { grad_norm, clipped: clip < 1.0, applied: true })
    }

    /// Moments as named tensors (`NAME.exp_avg`, `NAME.exp_avg_sq`) for the checkpoint.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for s in &self.slots {
            let shape = s.var.shape();
            out.push((format!("{}.exp_avg", s.name), Tensor::from_slice(&s.m, shape, &Device::Cpu)?));
            out.push((format!("{}.exp_avg_sq", s.name), Tensor::from_slice(&s.v, shape, &Device::Cpu)?));
        }
        Ok(out)
    }

    pub fn load_state(&mut self, mut tensors: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for s in &mut self.slots {
            for (suffix, dst) in [("exp_avg", &mut s.m), ("exp_avg_sq", &mut s.v)] {
                let key = format!("{}.{suffix}", s.name);
                let t = tensors.remove(&key).with_context(|| format!("optimizer state lacks {key:?}"))?;
                let values = t.flatten_all()?.to_vec1::<f32>()?;
                ensure!(
                    values.len() == dst.len(),
                    "optimizer state {key:?} has {} values, not {}",
                    values.len(),
                    dst.len()
                );
                *dst = values;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_step_equals_the_hand_computed_update() {
        let w = Var::from_vec(vec![1.0f32, -2.0], 2, &Device::Cpu).unwrap();
        let gain = Var::from_vec(vec![0.5f32], 1, &Device::Cpu).unwrap();
        let config = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, clip_grad_norm: 0.0 };
        let mut opt = AdamW::new(config, [("w".into(), w.clone(), true), ("g".into(), gain.clone(), false)]);
        let grads =
            [Tensor::new(&[0.3f32, -0.4], &Device::Cpu).unwrap(), Tensor::new(&[2.0f32], &Device::Cpu).unwrap()];
        let info = opt.step(&grads, 0.01).unwrap();
        assert!((info.grad_norm - (0.09f64 + 0.16 + 4.0).sqrt()).abs() < 1e-6);
        // Step 1: m̂ = g, v̂ = g², so the update is lr·g/(|g| + eps) = ±lr, after decay.
        let expect = |p: f64, g: f64, decay: bool| {
            let p = if decay { p * (1.0 - 0.01 * 0.1) } else { p };
            let m = 0.1 * g;
            let v = 0.05 * g * g;
            p - (0.01 / 0.1) * m / (v.sqrt() / 0.05f64.sqrt() + 1e-8)
        };
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        assert!((got[0] as f64 - expect(1.0, 0.3, true)).abs() < 1e-6, "{got:?}");
        assert!((got[1] as f64 - expect(-2.0, -0.4, true)).abs() < 1e-6);
        let g = gain.as_tensor().to_vec1::<f32>().unwrap();
        assert!((g[0] as f64 - expect(0.5, 2.0, false)).abs() < 1e-6, "no decay on the gain");
        // Step 2 uses the bias corrections of t = 2.
        let before = w.as_tensor().to_vec1::<f32>().unwrap()[0] as f64;
        opt.step(&grads, 0.01).unwrap();
        let (m, v): (f64, f64) = (0.9 * 0.03 + 0.1 * 0.3, 0.95 * 0.05 * 0.09 + 0.05 * 0.09);
        let want = before * (1.0 - 0.001) - (0.01 / (1.0 - 0.81)) * m / (v.sqrt() / (1.0 - 0.9025f64).sqrt() + 1e-8);
        assert!((w.as_tensor().to_vec1::<f32>().unwrap()[0] as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn a_non_finite_gradient_changes_nothing() {
        let w = Var::from_vec(vec![1.0f32, 2.0], 2, &Device::Cpu).unwrap();
        let mut opt = AdamW::new(AdamWConfig::default(), [("w".into(), w.clone(), true)]);
        let info = opt.step(&[Tensor::new(&[f32::NAN, 1.0], &Device::Cpu).unwrap()], 0.1).unwrap();
        assert!(!info.applied && info.grad_norm.is_nan());
        assert_eq!(opt.steps, 0);
        assert_eq!(w.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
        assert!(opt.state_tensors().unwrap()[0].1.to_vec1::<f32>().unwrap().iter().all(|&m| m == 0.0));
    }

    #[test]
    fn impossible_settings_are_refused() {
        assert!(AdamWConfig::default().validate().is_ok());
        for bad in [
            AdamWConfig { beta1: 1.5, ..Default::default() },
            AdamWConfig { beta2: 1.0, ..Default::default() },
            AdamWConfig { eps: 0.0, ..Default::default() },
            AdamWConfig { weight_decay: -0.1, ..Default::default() },
            AdamWConfig { clip_grad_norm: -1.0, ..Default::default() },
            AdamWConfig { eps: f64::NAN, ..Default::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let w = Var::from_vec(vec![0.0f32; 2], 2, &Device::Cpu).unwrap();
        let config = AdamWConfig { weight_decay: 0.0, clip_grad_norm: 1.0, ..AdamWConfig::default() };
        let mut opt = AdamW::new(config, [("w".into(), w.clone(), true)]);
        let info = opt.step(&[Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap()], 0.1).unwrap();
        assert!(info.clipped);
        assert!((info.grad_norm - 5.0).abs() < 1e-9);
        // m after clipping is 0.1·(0.6, 0.8): the first moment saw the clipped gradient.
        let state = opt.state_tensors().unwrap();
        let m = state[0].1.to_vec1::<f32>().unwrap();
        assert!((m[0] - 0.06).abs() < 1e-6 && (m[1] - 0.08).abs() < 1e-6, "{m:?}");
    }
}
