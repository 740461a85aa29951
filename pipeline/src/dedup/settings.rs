//! The dedup settings a user gives: `[dedup]` in prepare's TOML and `midtrain dedup`'s flags are
//! this one struct, so both can set the same things and default alike.

use serde::{Deserialize, Serialize};

use super::minhash::MinHashError;
use super::{DedupConfig, Keeper, Normalization};
use crate::config::DomainConfig;

/// A starting point that the other settings adjust.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// midtrain's recommendation: exact + 3-gram MinHash, 20×6 bands, Jaccard verification ≥ 0.5.
    #[default]
    Default,
    /// FineWeb's setting, bit-compatible with datatrove 0.10 (5-grams, 14×8 bands, no verification).
    Fineweb,
}

/// What near-dedup's normalisation does with numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Numbers {
    /// Every number becomes `0` (FineWeb): copies that differ in dates or counts match.
    Zero,
    /// Numbers stay: problems or programs that differ only in their numbers are different.
    Keep,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default, deny_unknown_fields)]
pub struct DedupSettings {
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = Preset::Default))]
    pub preset: Preset,
    /// The domains to deduplicate together (prepare only; default: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(skip))]
    pub domains: Option<Vec<String>>,
    /// Only exact duplicates (no MinHash).
    #[cfg_attr(feature = "cli", arg(long))]
    pub exact_only: bool,
    /// Words per shingle (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub ngram: Option<usize>,
    /// MinHash bands (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub bands: Option<usize>,
    /// Hashes per band, at most 8 (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub rows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub seed: Option<u32>,
    /// Keep candidate pairs whose exact Jaccard similarity reaches this; 0 disables.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub verify_threshold: Option<f64>,
    /// Text normalisation before exact hashing (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub exact_normalization: Option<Normalization>,
    /// Numbers in near-dedup's normalisation: zero (the presets') or keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub numbers: Option<Numbers>,
    /// Domains whose numbers are kept whatever `numbers` says (prepare only). Default, when
    /// neither this nor `numbers` is set under the default preset: the domains named `math` or
    /// `code` (or starting with `math_`, `code-`, ...), where numbers tell documents apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(skip))]
    pub keep_numbers_in: Option<Vec<String>>,
    /// Which document of a cluster to keep: first (input order), quality (highest `quality`
    /// column), root (datatrove's rule). Default: the preset's (root for fineweb, else first).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub keep: Option<Keeper>,
    /// Sort buffers before spilling to disk, in MiB (at least 16).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DedupSettings::default().memory_mb))]
    pub memory_mb: usize,
}

impl Default for DedupSettings {
    fn default() -> Self {
        Self {
            preset: Preset::Default,
            domains: None,
            exact_only: false,
            ngram: None,
            bands: None,
            rows: None,
            seed: None,
            verify_threshold: None,
            exact_normalization: None,
            numbers: None,
            keep_numbers_in: None,
            keep: None,
            memory_mb: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("dedup: ngram, bands, rows and numbers configure MinHash, which exact_only turns off")]
    MinHashWithoutNear,
    #[error("dedup: {0}")]
    MinHash(#[from] MinHashError),
    #[error("dedup: verify_threshold {0} must be a number in [0, 1]")]
    VerifyThreshold(f64),
}

impl DedupSettings {
    /// The dedup run these settings ask for.
    pub fn resolve(&self) -> Result<DedupConfig, SettingsError> {
        let mut config = match self.preset {
            Preset::Default => DedupConfig::recommended(),
            Preset::Fineweb => DedupConfig::fineweb(),
        };
        if self.exact_only {
            config.exact = true;
            config.near = None;
        }
        match &mut config.near {
            Some(near) => {
                let m = &mut near.minhash;
                m.ngram = self.ngram.unwrap_or(m.ngram);
                m.bands = self.bands.unwrap_or(m.bands);
                m.rows = self.rows.unwrap_or(m.rows);
                m.seed = self.seed.unwrap_or(m.seed);
                m.validate()?;
                if let Some(t) = self.verify_threshold {
                    if !(0.0..=1.0).contains(&t) {
                        return Err(SettingsError::VerifyThreshold(t));
                    }
                    near.verify_threshold = (t > 0.0).then_some(t);
                }
                near.normalization = match self.numbers {
                    Some(Numbers::Keep) => Normalization::FinewebKeepNumbers,
                    Some(Numbers::Zero) => Normalization::Fineweb,
                    None => near.normalization,
                };
            }
            None if self.ngram.is_some() || self.bands.is_some() || self.rows.is_some() || self.numbers.is_some() => {
                return Err(SettingsError::MinHashWithoutNear);
            }
            None => {}
        }
        config.exact_normalization = self.exact_normalization.unwrap_or(config.exact_normalization);
        config.keep = self.keep.unwrap_or(config.keep);
        config.memory_budget = self.memory_mb.max(16) << 20;
        Ok(config)
    }

    /// The near-dedup normalisation of a domain's documents.
    pub fn near_normalization(&self, config: &DedupConfig, domain: &str) -> Option<Normalization> {
        let near = config.near.as_ref()?;
        let keep = match &self.keep_numbers_in {
            Some(list) => list.iter().any(|d| d == domain),
            // FineWeb's preset maps every number to 0, as datatrove does.
            None => self.numbers.is_none() && self.preset == Preset::Default && is_math_or_code(domain),
        };
        Some(if keep { Normalization::FinewebKeepNumbers } else { near.normalization })
    }

    /// The domains taking part, in config order.
    pub fn domain_names<'a>(&'a self, all: &'a [DomainConfig]) -> Vec<&'a str> {
        all.iter()
            .map(|d| d.name.as_str())
            .filter(|n| self.domains.as_ref().is_none_or(|list| list.iter().any(|x| x == n)))
            .collect()
    }
}

/// A domain named `math` or `code`, alone or as the first word of its name (`math_web`,
/// `code-python`).
fn is_math_or_code(domain: &str) -> bool {
    let first = domain.split(['_', '-', '.', '/']).next().unwrap_or_default();
    first.eq_ignore_ascii_case("math") || first.eq_ignore_ascii_case("code")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toml_can_set_what_the_flags_can_and_the_preset_decides_the_rest() {
        let s: DedupSettings =
            toml::from_str("preset = \"fineweb\"\nngram = 4\nbands = 10\nrows = 5\nseed = 3").unwrap();
        let c = s.resolve().unwrap();
        let m = &c.near.as_ref().unwrap().minhash;
        assert_eq!((m.ngram, m.bands, m.rows, m.seed), (4, 10, 5, 3));
        assert_eq!(c.keep, Keeper::Root, "fineweb keeps datatrove's keeper unless told otherwise");
        let first: DedupSettings = toml::from_str("keep = \"first\"\nexact_normalization = \"none\"").unwrap();
        let c = first.resolve().unwrap();
        assert_eq!((c.keep, c.exact_normalization), (Keeper::First, Normalization::None));
        assert_eq!(c.memory_budget, 1024 << 20);
        for bad in ["keep = \"best\"", "preset = \"minhash\"", "ngrams = 3"] {
            assert!(toml::from_str::<DedupSettings>(bad).is_err(), "{bad}");
        }
        let exact: DedupSettings = toml::from_str("exact_only = true\nbands = 4").unwrap();
        assert!(matches!(exact.resolve(), Err(SettingsError::MinHashWithoutNear)));
        let numbers: DedupSettings = toml::from_str("numbers = \"keep\"\nkeep_numbers_in = [\"math\"]").unwrap();
        let c = numbers.resolve().unwrap();
        assert_eq!(c.near.as_ref().unwrap().normalization, Normalization::FinewebKeepNumbers);
        let zero: DedupSettings = toml::from_str("keep_numbers_in = [\"math\"]").unwrap();
        let c = zero.resolve().unwrap();
        assert_eq!(zero.near_normalization(&c, "web"), Some(Normalization::Fineweb));
        assert_eq!(zero.near_normalization(&c, "math"), Some(Normalization::FinewebKeepNumbers));
        // By default math and code keep their numbers, unless the config says otherwise.
        let default = DedupSettings::default();
        let c = default.resolve().unwrap();
        for (domain, keeps) in
            [("math", true), ("code-python", true), ("Math_web", true), ("web", false), ("mathematica", false)]
        {
            let wanted = if keeps { Normalization::FinewebKeepNumbers } else { Normalization::Fineweb };
            assert_eq!(default.near_normalization(&c, domain), Some(wanted), "{domain}");
        }
        for said in ["keep_numbers_in = []", "numbers = \"zero\"", "preset = \"fineweb\""] {
            let s: DedupSettings = toml::from_str(said).unwrap();
            let c = s.resolve().unwrap();
            assert_eq!(s.near_normalization(&c, "math"), Some(Normalization::Fineweb), "{said}");
        }
        let rows: DedupSettings = toml::from_str("rows = 9").unwrap();
        assert!(matches!(rows.resolve(), Err(SettingsError::MinHash(_))));
    }
}
