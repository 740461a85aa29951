//! Learning-rate schedules, following Megatron-LM's `OptimizerParamScheduler` formulas.
//!
//! Linear warmup from `init_lr` to `peak_lr`, then a decay from `peak_lr` to `min_lr` over the
//! remaining steps: constant, cosine, linear, or warmup-stable-decay (WSD) whose final window
//! decays with one of four shapes. After `total_steps` the rate stays at `min_lr`.

use serde::{Deserialize, Serialize};

/// Shape of the final decay window of a WSD schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsdShape {
    Linear,
    Cosine,
    Exponential,
    /// 1 − √q: beats linear in Hägele et al. 2024.
    OneMinusSqrt,
}

impl WsdShape {
    /// Coefficient at fraction `q` ∈ [0, 1] into the decay window (1 at the start, 0 at the end).
    fn coefficient(self, q: f64) -> f64 {
        match self {
            Self::Linear => 1.0 - q,
            Self::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * q).cos()),
            Self::Exponential => 2.0 * 0.5f64.powf(q) - 1.0,
            Self::OneMinusSqrt => 1.0 - q.sqrt(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case")]
pub enum Decay {
    Constant,
    Cosine,
    Linear,
    /// Hold the peak, then decay over the last `decay_steps` steps.
    Wsd {
        decay_steps: u64,
        shape: WsdShape,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak_lr: f64,
    pub min_lr: f64,
    #[serde(default)]
    pub init_lr: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub decay: Decay,
}

impl LrSchedule {
    /// Learning rate at optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if self.warmup_steps > 0 && step <= self.warmup_steps {
            return self.init_lr + (self.peak_lr - self.init_lr) * step as f64 / self.warmup_steps as f64;
        }
        if matches!(self.decay, Decay::Constant) {
            return self.peak_lr;
        }
        if step > self.total_steps {
            return self.min_lr;
        }
        let coefficient = match self.decay {
            Decay::Constant => 1.0,
            Decay::Cosine | Decay::Linear => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let r = (step - self.warmup_steps.min(step)) as f64 / span as f64;
                if matches!(self.decay, Decay::Cosine) {
                    0.5 * (1.0 + (std::f64::consts::PI * r).cos())
                } else {
                    1.0 - r
                }
            }
            Decay::Wsd { decay_steps, shape } => {
                let anneal_start = self.total_steps.saturating_sub(decay_steps);
                if step <= anneal_start {
                    1.0
                } else {
                    shape.coefficient((step - anneal_start) as f64 / decay_steps.max(1) as f64)
                }
            }
        };
        self.min_lr + coefficient * (self.peak_lr - self.min_lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(decay: Decay) -> LrSchedule {
        LrSchedule { peak_lr: 1e-3, min_lr: 1e-4, init_lr: 0.0, warmup_steps: 10, total_steps: 110, decay }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn warmup_is_linear_from_init() {
        let s = schedule(Decay::Cosine);
        assert!(close(s.lr(0), 0.0));
        assert!(close(s.lr(5), 5e-4));
        assert!(close(s.lr(10), 1e-3));
    }

    #[test]
    fn cosine_and_linear_at_known_steps() {
        let cos = schedule(Decay::Cosine);
        assert!(close(cos.lr(60), 1e-4 + 0.5 * 9e-4)); // halfway: c = 1/2
        assert!(close(cos.lr(35), 1e-4 + 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()) * 9e-4));
        assert!(close(cos.lr(110), 1e-4));
        assert!(close(cos.lr(500), 1e-4));
        let lin = schedule(Decay::Linear);
        assert!(close(lin.lr(35), 1e-4 + 0.75 * 9e-4));
        assert!(close(lin.lr(110), 1e-4));
        assert!(close(schedule(Decay::Constant).lr(1000), 1e-3));
    }

    #[test]
    fn wsd_holds_then_decays_with_each_shape() {
        let q = 0.25; // step 80 is a quarter into the 40-step window that starts at 110 - 40 = 70
        for (shape, c) in [
            (WsdShape::Linear, 1.0 - q),
            (WsdShape::Cosine, 0.5 * (1.0 + (std::f64::consts::PI * q).cos())),
            (WsdShape::Exponential, 2.0 * 0.5f64.powf(q) - 1.0),
            (WsdShape::OneMinusSqrt, 0.5),
        ] {
            let s = schedule(Decay::Wsd { decay_steps: 40, shape });
            assert!(close(s.lr(50), 1e-3), "{shape:?} holds the peak");
            assert!(close(s.lr(70), 1e-3));
            assert!(close(s.lr(80), 1e-4 + c * 9e-4), "{shape:?} at q=0.25: {}", s.lr(80));
            assert!(close(s.lr(110), 1e-4), "{shape:?} ends at the floor");
        }
    }
}
