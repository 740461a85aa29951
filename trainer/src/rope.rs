//! RoPE frequency scalings as pure functions: each returns `inv_freq` (one per rotary pair) and
//! the attention factor that multiplies cos and sin, following transformers'
//! `ROPE_INIT_FUNCTIONS` (formulas in docs/training-notes.md).
//!
//! ABF ("adjusted base frequency") is not a scaling of its own: it is the default rotation with a
//! new `rope_theta`, which is how transformers' configs express it too.

use serde::{Deserialize, Serialize};

/// A RoPE scaling, tagged by transformers' `rope_type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    Default,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        factor: f64,
    },
    /// NTK-aware, static: the base grows by `factor^(d/(d−2))`. Not in transformers (which only
    /// has the dynamic form); midtrain writes it as `rope_type = "ntk"`.
    Ntk {
        factor: f64,
    },
    /// Dynamic NTK: the base grows with the sequence once it passes `max_position_embeddings`.
    Dynamic {
        factor: f64,
    },
    Yarn {
        factor: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        original_max_position_embeddings: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        beta_fast: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        beta_slow: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mscale: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mscale_all_dim: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        truncate: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attention_factor: Option<f64>,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: u64,
    },
    Longrope {
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        factor: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attention_factor: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        original_max_position_embeddings: Option<u64>,
    },
}

/// Everything that fixes a model's rotary embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    pub theta: f64,
    /// Size of each head (the rotary dimension is `head_dim × partial_rotary_factor`).
    pub head_dim: usize,
    pub partial_rotary_factor: f64,
    pub max_position_embeddings: u64,
    pub scaling: RopeScaling,
}

/// `inv_freq` per rotary pair and the attention factor (multiplies cos and sin).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RopeFrequencies {
    pub inv_freq: Vec<f64>,
    pub attention_factor: f64,
}

impl Rope {
    /// Rotary dimension d (even).
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim as f64 * self.partial_rotary_factor) as usize
    }

    /// The frequencies for sequences of `seq_len` tokens (only dynamic NTK and LongRoPE depend on
    /// it; `None` means "at most `max_position_embeddings`").
    pub fn frequencies(&self, seq_len: Option<u64>) -> Result<RopeFrequencies, RopeError> {
        let d = self.rotary_dim();
        if d < 4 || !d.is_multiple_of(2) {
            return Err(RopeError::RotaryDim(d));
        }
        let b = self.theta;
        if b <= 1.0 {
            return Err(RopeError::Theta(b));
        }
        let exponent = |i: usize| (2 * i) as f64 / d as f64;
        let default: Vec<f64> = (0..d / 2).map(|i| 1.0 / b.powf(exponent(i))).collect();
        let with_base = |base: f64| (0..d / 2).map(|i| 1.0 / base.powf(exponent(i))).collect::<Vec<_>>();
        let m = self.max_position_embeddings as f64;
        let positive = |name: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(v)
            } else {
                Err(RopeError::NotPositive { name: name.to_string(), value: v })
            }
        };
        let (inv_freq, attention_factor) = match &self.scaling {
            RopeScaling::Default => (default, 1.0),
            RopeScaling::Linear { factor } => {
                let s = positive("factor", *factor)?;
                (default.iter().map(|f| f / s).collect(), 1.0)
            }
            RopeScaling::Ntk { factor } => {
                let s = positive("factor", *factor)?;
                (with_base(b * s.powf(d as f64 / (d as f64 - 2.0))), 1.0)
            }
            RopeScaling::Dynamic { factor } => {
                let s = positive("factor", *factor)?;
                let seq = seq_len.map_or(m, |n| (n as f64).max(m));
                let base = b * ((s * seq / m) - (s - 1.0)).powf(d as f64 / (d as f64 - 2.0));
                (with_base(base), 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                truncate,
                attention_factor,
            } => {
                let s = positive("factor", *factor)?;
                let original = original_max_position_embeddings.map_or(m, |l0| l0 as f64);
                let get_mscale = |scale: f64, k: f64| if scale <= 1.0 { 1.0 } else { 0.1 * k * scale.ln() + 1.0 };
                let attention = match (attention_factor, mscale, mscale_all_dim) {
                    (Some(a), _, _) => *a,
                    (None, Some(ms), Some(msa)) if *ms != 0.0 && *msa != 0.0 => {
                        get_mscale(s, *ms) / get_mscale(s, *msa)
                    }
                    _ => get_mscale(s, 1.0),
                };
                let (fast, slow) = (beta_fast.unwrap_or(32.0), beta_slow.unwrap_or(1.0));
                let correction_dim = |rotations: f64| {
                    d as f64 * (original / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * b.ln())
                };
                let (mut low, mut high) = (correction_dim(fast), correction_dim(slow));
                if truncate.unwrap_or(true) {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let mut high = high.min(d as f64 - 1.0);
                if low == high {
                    high += 0.001;
                }
                let inv = (0..d / 2)
                    .map(|i| {
                        let extrapolation = 1.0 / b.powf(exponent(i));
                        let interpolation = extrapolation / s;
                        // Share of the extrapolated frequency: 1 for high frequencies (i < low).
                        let extrapolation_share = 1.0 - ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        interpolation * (1.0 - extrapolation_share) + extrapolation * extrapolation_share
                    })
                    .collect();
                (inv, attention)
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let s = positive("factor", *factor)?;
                let (lf, hf) = (*low_freq_factor, *high_freq_factor);
                if hf <= lf {
                    return Err(RopeError::FreqFactors { low: lf, high: hf });
                }
                let l0 = *original_max_position_embeddings as f64;
                let (low_wavelen, high_wavelen) = (l0 / lf, l0 / hf);
                let inv = default
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / s
                        } else {
                            let smooth = (l0 / wavelen - lf) / (hf - lf);
                            (1.0 - smooth) * f / s + smooth * f
                        }
                    })
                    .collect();
                (inv, 1.0)
            }
            RopeScaling::Longrope {
                short_factor,
                long_factor,
                factor,
                attention_factor,
                original_max_position_embeddings,
            } => {
                for (name, v) in [("short_factor", short_factor), ("long_factor", long_factor)] {
                    if v.len() != d / 2 {
                        return Err(RopeError::FactorLength { name, len: v.len(), rotary_dim: d });
                    }
                }
                // transformers 5: without a factor, the ratio of the two lengths.
                let original = original_max_position_embeddings.map_or(m, |l0| l0 as f64);
                let s = factor.unwrap_or(m / original);
                let attention = attention_factor
                    .unwrap_or_else(|| if s <= 1.0 { 1.0 } else { (1.0 + s.ln() / original.ln()).sqrt() });
                let long = seq_len.is_some_and(|n| n as f64 > original);
                let ext = if long { long_factor } else { short_factor };
                let inv = (0..d / 2).map(|i| 1.0 / (ext[i] * b.powf(exponent(i)))).collect();
                (inv, attention)
            }
        };
        Ok(RopeFrequencies { inv_freq, attention_factor })
    }
}

/// A RoPE configuration that yields no frequencies.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RopeError {
    #[error("rotary dimension {0} must be even and at least 4")]
    RotaryDim(usize),
    #[error("rope_theta {0} must be above 1")]
    Theta(f64),
    #[error("{name} must be positive, got {value}")]
    NotPositive { name: String, value: f64 },
    #[error("high_freq_factor {high} must exceed low_freq_factor {low}")]
    FreqFactors { low: f64, high: f64 },
    #[error("{name} has {len} values; the rotary dimension {rotary_dim} needs {}", rotary_dim / 2)]
    FactorLength { name: &'static str, len: usize, rotary_dim: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(scaling: RopeScaling) -> Rope {
        Rope { theta: 10_000.0, head_dim: 128, partial_rotary_factor: 1.0, max_position_embeddings: 4096, scaling }
    }

    fn close(a: f64, b: f64) -> bool {
        ((a - b) / b).abs() < 1e-12
    }

    fn yarn(factor: f64) -> RopeScaling {
        RopeScaling::Yarn {
            factor,
            original_max_position_embeddings: None,
            beta_fast: None,
            beta_slow: None,
            mscale: None,
            mscale_all_dim: None,
            truncate: None,
            attention_factor: None,
        }
    }

    #[test]
    fn default_frequencies_follow_the_base() {
        let f = rope(RopeScaling::Default).frequencies(None).unwrap();
        assert_eq!(f.inv_freq.len(), 64);
        assert_eq!(f.inv_freq[0], 1.0);
        assert!(close(f.inv_freq[32], 10_000f64.powf(-0.5)));
        assert_eq!(f.attention_factor, 1.0);
    }

    #[test]
    fn linear_divides_every_frequency() {
        let d = rope(RopeScaling::Default).frequencies(None).unwrap();
        let l = rope(RopeScaling::Linear { factor: 4.0 }).frequencies(None).unwrap();
        for (a, b) in d.inv_freq.iter().zip(&l.inv_freq) {
            assert!(close(*b, a / 4.0));
        }
    }

    #[test]
    fn ntk_raises_the_base() {
        // d = 128: base 10k · 4^(128/126).
        let f = rope(RopeScaling::Ntk { factor: 4.0 }).frequencies(None).unwrap();
        let base = 10_000.0 * 4f64.powf(128.0 / 126.0);
        assert!(close(f.inv_freq[1], base.powf(-2.0 / 128.0)));
        assert!(close(f.inv_freq[63], base.powf(-126.0 / 128.0)));
    }

    #[test]
    fn dynamic_ntk_is_default_up_to_the_trained_length() {
        let r = rope(RopeScaling::Dynamic { factor: 2.0 });
        // At seq ≤ M: base·(s − (s − 1))^… = base.
        let short = r.frequencies(Some(1000)).unwrap();
        let default = rope(RopeScaling::Default).frequencies(None).unwrap();
        for (a, b) in short.inv_freq.iter().zip(&default.inv_freq) {
            assert!(close(*a, *b));
        }
        // At 8192: base·(2·2 − 1)^(128/126).
        let long = r.frequencies(Some(8192)).unwrap();
        let base = 10_000.0 * 3f64.powf(128.0 / 126.0);
        assert!(close(long.inv_freq[10], base.powf(-20.0 / 128.0)));
    }

    #[test]
    fn yarn_matches_the_reference_case() {
        // docs/training-notes.md: d=128, b=1e4, s=4, L0=4096 → low 20, high 46, factor 1.1386294.
        let f = rope(yarn(4.0)).frequencies(None).unwrap();
        assert!((f.attention_factor - 1.138_629_436_1).abs() < 1e-9);
        let extrapolated = |i: usize| 10_000f64.powf(-((2 * i) as f64) / 128.0);
        for i in 0..=20 {
            assert!(close(f.inv_freq[i], extrapolated(i)), "pair {i} keeps its frequency");
        }
        for i in 46..64 {
            assert!(close(f.inv_freq[i], extrapolated(i) / 4.0), "pair {i} is interpolated");
        }
        // Pair 33 is half-way along the ramp (33 − 20)/(46 − 20) = 0.5.
        assert!(close(f.inv_freq[33], 0.5 * extrapolated(33) / 4.0 + 0.5 * extrapolated(33)));
    }

    #[test]
    fn yarn_attention_factor_variants() {
        let mut scaling = yarn(4.0);
        if let RopeScaling::Yarn { mscale, mscale_all_dim, .. } = &mut scaling {
            *mscale = Some(0.707);
            *mscale_all_dim = Some(0.707);
        }
        assert_eq!(rope(scaling).frequencies(None).unwrap().attention_factor, 1.0);
        let mut scaling = yarn(4.0);
        if let RopeScaling::Yarn { attention_factor, .. } = &mut scaling {
            *attention_factor = Some(0.5);
        }
        assert_eq!(rope(scaling).frequencies(None).unwrap().attention_factor, 0.5);
        // The ramp's bounds come from the original length (default: max_position_embeddings).
        let mut scaling = yarn(4.0);
        if let RopeScaling::Yarn { original_max_position_embeddings, .. } = &mut scaling {
            *original_max_position_embeddings = Some(1024);
        }
        let f = rope(scaling).frequencies(None).unwrap();
        let cd = |r: f64| 128.0 * (1024.0 / (r * 2.0 * std::f64::consts::PI)).ln() / (2.0 * 10_000f64.ln());
        let (low, high) = (cd(32.0).floor(), cd(1.0).ceil());
        let e = |i: usize| 10_000f64.powf(-((2 * i) as f64) / 128.0);
        assert!(close(f.inv_freq[low as usize], e(low as usize)));
        assert!(close(f.inv_freq[high as usize], e(high as usize) / 4.0));
        assert!(close(f.inv_freq[low as usize - 1], e(low as usize - 1)) && low < 20.0);
    }

    #[test]
    fn yarn_without_truncation_keeps_fractional_bounds() {
        let mut scaling = yarn(4.0);
        if let RopeScaling::Yarn { truncate, .. } = &mut scaling {
            *truncate = Some(false);
        }
        let f = rope(scaling).frequencies(None).unwrap();
        let cd = |r: f64| 128.0 * (4096.0 / (r * 2.0 * std::f64::consts::PI)).ln() / (2.0 * 10_000f64.ln());
        let (low, high) = (cd(32.0), cd(1.0));
        let i = 30usize;
        let ramp = (i as f64 - low) / (high - low);
        let e = 10_000f64.powf(-((2 * i) as f64) / 128.0);
        assert!(close(f.inv_freq[i], e / 4.0 * ramp + e * (1.0 - ramp)));
    }

    #[test]
    fn llama3_keeps_high_frequencies_and_divides_low_ones() {
        // Meta's defaults: s = 8, low 1, high 4, L0 = 8192, base 500k.
        let r = Rope {
            theta: 500_000.0,
            head_dim: 128,
            partial_rotary_factor: 1.0,
            max_position_embeddings: 131_072,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
        };
        let f = r.frequencies(None).unwrap();
        let base = |i: usize| 500_000f64.powf(-((2 * i) as f64) / 128.0);
        let wavelen = |i: usize| 2.0 * std::f64::consts::PI / base(i);
        let mut seen = [false; 3];
        for i in 0..64 {
            if wavelen(i) < 2048.0 {
                assert!(close(f.inv_freq[i], base(i)));
                seen[0] = true;
            } else if wavelen(i) > 8192.0 {
                assert!(close(f.inv_freq[i], base(i) / 8.0));
                seen[1] = true;
            } else {
                let smooth = (8192.0 / wavelen(i) - 1.0) / 3.0;
                assert!(close(f.inv_freq[i], (1.0 - smooth) * base(i) / 8.0 + smooth * base(i)));
                seen[2] = true;
            }
        }
        assert_eq!(seen, [true; 3], "the case covers all three bands");
    }

    #[test]
    fn longrope_switches_factors_past_the_original_length() {
        let short: Vec<f64> = (0..4).map(|i| 1.0 + i as f64 * 0.1).collect();
        let long: Vec<f64> = (0..4).map(|i| 2.0 + i as f64).collect();
        let r = Rope {
            theta: 10_000.0,
            head_dim: 8,
            partial_rotary_factor: 1.0,
            max_position_embeddings: 16_384,
            scaling: RopeScaling::Longrope {
                short_factor: short.clone(),
                long_factor: long.clone(),
                factor: None,
                attention_factor: None,
                original_max_position_embeddings: Some(4096),
            },
        };
        let at = |n| r.frequencies(Some(n)).unwrap();
        assert!(close(at(4096).inv_freq[1], 1.0 / (1.1 * 10_000f64.powf(0.25))));
        assert!(close(at(4097).inv_freq[1], 1.0 / (3.0 * 10_000f64.powf(0.25))));
        // s = 16384 / 4096 = 4 → sqrt(1 + ln 4 / ln 4096).
        assert!(close(at(100).attention_factor, (1.0 + 4f64.ln() / 4096f64.ln()).sqrt()));
        let bad = Rope { head_dim: 16, ..r };
        assert!(bad.frequencies(None).unwrap_err().to_string().contains("short_factor has 4 values"));
    }

    #[test]
    fn partial_rotary_factor_shrinks_the_rotary_dimension() {
        let r = Rope { partial_rotary_factor: 0.5, ..rope(RopeScaling::Default) };
        let f = r.frequencies(None).unwrap();
        assert_eq!(f.inv_freq.len(), 32);
        assert!(close(f.inv_freq[1], 10_000f64.powf(-2.0 / 64.0)));
    }
}
