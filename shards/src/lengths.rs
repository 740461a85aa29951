//! Exact length distributions in memory bounded by the number of distinct lengths.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts of each observed length; percentiles are exact (nearest rank).
#[derive(Clone, Debug, Default)]
pub struct LengthHistogram {
    counts: BTreeMap<u64, u64>,
    total: u64,
    sum: u128,
}

/// Summary of a length distribution, as printed by `inspect`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LengthSummary {
    pub count: u64,
    pub mean: f64,
    pub min: u64,
    pub p10: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl LengthHistogram {
    pub fn add(&mut self, len: u64) {
        *self.counts.entry(len).or_default() += 1;
        self.total += 1;
        self.sum += len as u128;
    }

    /// Nearest-rank percentile: the smallest length with at least `q`·count values at or below it.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (&len, &n) in &self.counts {
            seen += n;
            if seen >= rank {
                return Some(len);
            }
        }
        self.counts.keys().next_back().copied()
    }

    pub fn summary(&self) -> Option<LengthSummary> {
        let p = |q| self.percentile(q).unwrap_or(0);
        (self.total > 0).then(|| LengthSummary {
            count: self.total,
            mean: self.sum as f64 / self.total as f64,
            min: p(0.0),
            p10: p(0.10),
            p50: p(0.50),
            p90: p(0.90),
            p99: p(0.99),
            max: p(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut h = LengthHistogram::default();
        for len in 1..=100 {
            h.add(len);
        }
        let s = h.summary().unwrap();
        assert_eq!((s.min, s.p10, s.p50, s.p90, s.p99, s.max), (1, 10, 50, 90, 99, 100));
        assert_eq!(s.mean, 50.5);
        assert!(LengthHistogram::default().summary().is_none());
    }
}
