//! MinHash signatures over word n-gram shingles, bit-compatible with datatrove 0.10's
//! `MinhashDedupSignature` (64-bit precision, xxhash):
//!
//! - a shingle is n consecutive words joined by one space, hashed with xxh64 (seed 0);
//! - permutation k maps a shingle hash h to `(h·a_k + b_k mod 2^64) mod (2^61 − 1)` — numpy's
//!   wrapping uint64 arithmetic —, with `a` and `b` drawn like `numpy.random.RandomState(seed)
//!   .randint(...)` (MT19937, masked rejection sampling; all a before all b);
//! - the signature keeps each permutation's minimum; band i is values `[i·rows, (i+1)·rows)`.
//!
//! Documents with fewer than n words have no shingles; midtrain's recommended setting gives
//! them one shingle of all their words instead, so that short copies still match.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh64::xxh64;

use crate::text::python;
use crate::text::words::split_into_words;

const MERSENNE_61: u64 = (1 << 61) - 1;

/// How documents are cut into words before shingling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordSplit {
    /// Whitespace-separated words (fast; normalisation already removed punctuation).
    Whitespace,
    /// spaCy's English tokenizer, as datatrove's MinHash does.
    Spacy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinHashParams {
    pub ngram: usize,
    pub bands: usize,
    /// Values per band, at most [`MAX_ROWS`].
    pub rows: usize,
    pub seed: u32,
    pub words: WordSplit,
    /// Give documents shorter than `ngram` words one shingle of all their words.
    pub shingle_short_documents: bool,
}

/// Band records hold at most this many values.
pub const MAX_ROWS: usize = 8;

impl MinHashParams {
    pub fn num_hashes(&self) -> usize {
        self.bands * self.rows
    }

    /// Jaccard similarity at which a pair becomes a candidate with probability about 1/2.
    pub fn threshold(&self) -> f64 {
        (1.0 / self.bands as f64).powf(1.0 / self.rows as f64)
    }

    /// P(candidate | Jaccard j) = 1 − (1 − j^rows)^bands.
    pub fn candidate_probability(&self, j: f64) -> f64 {
        1.0 - (1.0 - j.powi(self.rows as i32)).powi(self.bands as i32)
    }

    pub fn validate(&self) -> Result<(), MinHashError> {
        if self.ngram == 0 || self.bands == 0 || self.rows == 0 {
            return Err(MinHashError::Zero);
        }
        if self.rows > MAX_ROWS {
            return Err(MinHashError::TooManyRows(self.rows));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MinHashError {
    #[error("ngram, bands and rows must be at least 1")]
    Zero,
    #[error("rows must be at most {MAX_ROWS} (got {0})")]
    TooManyRows(usize),
}

/// numpy's legacy `RandomState`: MT19937 seeded with `init_genrand`.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32.wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn next_u64(&mut self) -> u64 {
        let high = self.next_u32() as u64;
        (high << 32) | self.next_u32() as u64
    }

    /// `randint(low, high, dtype=uint64)`: uniform in [low, high) by masked rejection.
    fn randint(&mut self, low: u64, high: u64) -> u64 {
        let range = high - 1 - low;
        let mask = if range == 0 { 0 } else { u64::MAX >> range.leading_zeros() };
        loop {
            let v = self.next_u64() & mask;
            if v <= range {
                return low + v;
            }
        }
    }
}

pub struct MinHasher {
    params: MinHashParams,
    a: Vec<u64>,
    b: Vec<u64>,
}

impl MinHasher {
    pub fn new(params: MinHashParams) -> Self {
        let k = params.num_hashes();
        let mut rng = Mt19937::new(params.seed);
        let a = (0..k).map(|_| rng.randint(1, MERSENNE_61)).collect();
        let b = (0..k).map(|_| rng.randint(0, MERSENNE_61)).collect();
        Self { params, a, b }
    }

    pub fn params(&self) -> &MinHashParams {
        &self.params
    }

    /// Calls `each` with the hash of every shingle of already-normalised text, in text order
    /// (repeats included); false when the text has no shingles.
    fn for_each_shingle(&self, normalized: &str, mut each: impl FnMut(u64)) -> bool {
        let words: Vec<&str> = match self.params.words {
            WordSplit::Whitespace => python::split_whitespace(normalized).collect(),
            WordSplit::Spacy => split_into_words(normalized),
        };
        let n = if words.len() < self.params.ngram && self.params.shingle_short_documents {
            words.len()
        } else {
            self.params.ngram
        };
        if n == 0 || words.len() < n {
            return false;
        }
        let mut joined = String::new();
        for gram in words.windows(n) {
            joined.clear();
            for (i, w) in gram.iter().enumerate() {
                if i > 0 {
                    joined.push(' ');
                }
                joined.push_str(w);
            }
            each(xxh64(joined.as_bytes(), 0));
        }
        true
    }

    /// Signature of already-normalised text; `None` when it has no shingles.
    pub fn signature(&self, normalized: &str) -> Option<Vec<u64>> {
        let mut signature = vec![u64::MAX; self.params.num_hashes()];
        // About one shingle per six bytes of English text: few regrowths of the set.
        let mut seen = std::collections::HashSet::with_capacity(normalized.len() / 6 + 1);
        let any = self.for_each_shingle(normalized, |h| {
            if !seen.insert(h) {
                return; // a repeated shingle cannot lower any minimum
            }
            for ((slot, &a), &b) in signature.iter_mut().zip(&self.a).zip(&self.b) {
                let v = mod_mersenne_61(h.wrapping_mul(a).wrapping_add(b));
                if v < *slot {
                    *slot = v;
                }
            }
        });
        any.then_some(signature)
    }

    /// The distinct shingle hashes of already-normalised text, sorted: the set whose Jaccard
    /// similarity a signature estimates (empty when the text has no shingles).
    pub fn shingle_set(&self, normalized: &str) -> Vec<u64> {
        let mut set = Vec::new();
        self.for_each_shingle(normalized, |h| set.push(h));
        set.sort_unstable();
        set.dedup();
        set
    }

    /// The signature cut into bands, each padded to [`MAX_ROWS`] values.
    pub fn bands<'a>(&self, signature: &'a [u64]) -> impl Iterator<Item = [u64; MAX_ROWS]> + 'a {
        signature.chunks(self.params.rows).map(|rows| {
            let mut band = [0u64; MAX_ROWS];
            band[..rows.len()].copy_from_slice(rows);
            band
        })
    }
}

/// `x % (2^61 − 1)` without a division (the inner loop of every signature runs it once per
/// shingle and hash): x = hi·2^61 + lo ≡ hi + lo, and hi ≤ 7, so one subtraction finishes it.
#[inline]
fn mod_mersenne_61(x: u64) -> u64 {
    let r = (x & MERSENNE_61) + (x >> 61);
    if r >= MERSENNE_61 { r - MERSENNE_61 } else { r }
}

/// Share of equal positions between two signatures: an unbiased estimate of Jaccard similarity.
pub fn estimated_jaccard(a: &[u32], b: &[u32]) -> f64 {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / a.len().max(1) as f64
}

/// The low 32 bits of each minimum: what the verification step stores per document.
pub fn compact(signature: &[u64]) -> Vec<u32> {
    signature.iter().map(|&v| v as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(ngram: usize) -> MinHashParams {
        MinHashParams {
            ngram,
            bands: 14,
            rows: 8,
            seed: 1,
            words: WordSplit::Whitespace,
            shingle_short_documents: false,
        }
    }

    fn shingles(text: &str, n: usize) -> std::collections::HashSet<String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        words.windows(n).map(|w| w.join(" ")).collect()
    }

    #[test]
    fn the_division_free_modulus_equals_the_remainder() {
        let mut state = 3u64;
        let edge = [0, 1, MERSENNE_61 - 1, MERSENNE_61, MERSENNE_61 + 1, 2 * MERSENNE_61, u64::MAX, u64::MAX - 7];
        let random = (0..100_000).map(|_| util::rng::splitmix64(&mut state));
        for x in edge.into_iter().chain(random) {
            assert_eq!(mod_mersenne_61(x), x % MERSENNE_61, "{x}");
        }
    }

    #[test]
    fn permutation_parameters_match_numpy_random_state() {
        // numpy.random.RandomState(1).randint(1, 2**61 - 1, size=112, dtype=uint64), then b.
        let h = MinHasher::new(params(5));
        assert_eq!(&h.a[..3], &[775169054918279404, 1758426461858698313, 2109959069025162]);
        assert_eq!(h.a[111], 223865076026037746);
        assert_eq!(&h.b[..3], &[1062448801025099917, 1324811268927594100, 1217488311597731462]);
        assert_eq!(h.b[111], 1097409548522419201);
    }

    #[test]
    fn signature_matches_datatrove_on_a_worked_example() {
        // docs/dedup-reference.md §2 and §4, values taken from datatrove 0.10.1.
        let raw = "The Café opened in 1998, and I'm sure it's   still open — don't you think? It costs 3,50€.";
        let text = super::super::normalize::normalize(raw, super::super::Normalization::Fineweb);
        assert_eq!(text, "the cafe opened in 0 and i m sure it s still open don t you think it costs 0€");
        assert_eq!(xxh64(b"the cafe opened in 0", 0), 11755055373200452388);
        let h = MinHasher::new(MinHashParams { words: WordSplit::Spacy, ..params(5) });
        let sig = h.signature(&text).unwrap();
        assert_eq!(
            &sig[..8],
            &[
                85259638028941745,
                127256177050327261,
                25973821132397255,
                10665867717908947,
                281454865317465960,
                20217840436610324,
                157170591629952657,
                58406254675359695
            ]
        );
    }

    #[test]
    fn signatures_estimate_jaccard() {
        let h = MinHasher::new(MinHashParams { bands: 16, rows: 8, ..params(3) });
        let base: Vec<String> = (0..400).map(|i| format!("w{}", i % 397)).collect();
        let a = base.join(" ");
        let mut edited = base.clone();
        for i in (0..400).step_by(20) {
            edited[i] = format!("x{i}");
        }
        let b = edited.join(" ");
        let (sa, sb) = (shingles(&a, 3), shingles(&b, 3));
        let truth = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
        let est = estimated_jaccard(&compact(&h.signature(&a).unwrap()), &compact(&h.signature(&b).unwrap()));
        assert!((est - truth).abs() < 0.1, "estimate {est} vs true {truth}");
        assert_eq!(h.signature(&a), h.signature(&a), "deterministic");
    }

    #[test]
    fn shingle_sets_are_the_distinct_shingles() {
        let h = MinHasher::new(params(2));
        let set = h.shingle_set("a b a b c");
        let expected: std::collections::BTreeSet<u64> =
            ["a b", "b a", "b c"].iter().map(|s| xxh64(s.as_bytes(), 0)).collect();
        assert_eq!(set, expected.into_iter().collect::<Vec<_>>());
        assert!(h.shingle_set("one").is_empty());
        let lenient = MinHasher::new(MinHashParams { shingle_short_documents: true, ..params(5) });
        assert_eq!(lenient.shingle_set("only four words here"), [xxh64(b"only four words here", 0)]);
    }

    #[test]
    fn short_documents() {
        let strict = MinHasher::new(params(5));
        assert!(strict.signature("only four words here").is_none());
        assert!(strict.signature("").is_none());
        let lenient = MinHasher::new(MinHashParams { shingle_short_documents: true, ..params(5) });
        assert_eq!(lenient.signature("only four words here").unwrap().len(), 112);
        assert!(lenient.signature("").is_none());
    }

    #[test]
    fn fineweb_thresholds() {
        let p = params(5);
        assert!((p.threshold() - 0.719).abs() < 0.001);
        assert!((p.candidate_probability(0.8) - 0.924).abs() < 0.001);
        assert!(MinHashParams { rows: 9, ..p }.validate().is_err());
    }
}
