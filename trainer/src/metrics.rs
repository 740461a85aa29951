//! Per-step training signals that need state across steps: the gradient noise scale and the
//! loss-spike flag. Their moving averages are part of the trainer state, so a resumed run
//! reports exactly what an uninterrupted one would.

use serde::{Deserialize, Serialize};

/// B_simple (McCandlish et al. 2018) from micro-batch vs accumulated gradient norms: separate
/// exponential moving averages of |G|² and tr(Σ), divided after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NoiseScale {
    ema_g2: f64,
    ema_trace: f64,
    /// Sum of the EMA weights so far (bias correction for the first steps).
    weight: f64,
}

const NOISE_DECAY: f64 = 0.95;

impl NoiseScale {
    /// `small_sq`: mean squared norm of the micro-batch (mean) gradients over `b_small` tokens
    /// each; `big_sq`: squared norm of the accumulated gradient over `b_big` tokens. Returns the
    /// current B_simple (in tokens), `None` until it is defined.
    pub fn update(&mut self, small_sq: f64, b_small: f64, big_sq: f64, b_big: f64) -> Option<f64> {
        if b_big <= b_small {
            return None;
        }
        let g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small);
        let trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big);
        self.ema_g2 = NOISE_DECAY * self.ema_g2 + (1.0 - NOISE_DECAY) * g2;
        self.ema_trace = NOISE_DECAY * self.ema_trace + (1.0 - NOISE_DECAY) * trace;
        self.weight = NOISE_DECAY * self.weight + (1.0 - NOISE_DECAY);
        (self.ema_g2 > 0.0).then(|| self.ema_trace / self.ema_g2)
    }
}

/// Flags a loss more than `SPIKE_SIGMAS` standard deviations above its moving average.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpikeDetector {
    mean: f64,
    var: f64,
    seen: u64,
}

const SPIKE_DECAY: f64 = 0.9;
const SPIKE_SIGMAS: f64 = 3.0;
const SPIKE_WARMUP: u64 = 10;

impl SpikeDetector {
    pub fn update(&mut self, loss: f64) -> bool {
        self.seen += 1;
        if self.seen == 1 {
            self.mean = loss;
            return false;
        }
        let deviation = loss - self.mean;
        let spike = self.seen > SPIKE_WARMUP && deviation > SPIKE_SIGMAS * self.var.sqrt();
        // A spike does not move the baseline it is judged against.
        if !spike {
            self.mean += (1.0 - SPIKE_DECAY) * deviation;
            self.var = SPIKE_DECAY * (self.var + (1.0 - SPIKE_DECAY) * deviation * deviation);
        }
        spike
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_scale_recovers_a_known_noise_level() {
        // Gradient noise with per-token covariance trace S around a true gradient of norm² G:
        // E|g_B|² = G + S/B. With G = 2, S = 800 → B_simple = 400.
        let (g, s) = (2.0, 800.0);
        let mut n = NoiseScale::default();
        let mut last = None;
        for _ in 0..50 {
            last = n.update(g + s / 100.0, 100.0, g + s / 800.0, 800.0);
        }
        assert!((last.unwrap() - 400.0).abs() < 1e-6);
        assert_eq!(NoiseScale::default().update(1.0, 100.0, 1.0, 100.0), None);
    }

    #[test]
    fn a_jump_is_flagged_and_noise_is_not() {
        let mut d = SpikeDetector::default();
        let flags: Vec<bool> = (0..40).map(|i| d.update(3.0 - 0.01 * i as f64 + 0.02 * ((i % 3) as f64))).collect();
        assert!(!flags.iter().any(|&f| f));
        assert!(d.update(4.0));
        assert!(!d.update(2.62));
    }
}
