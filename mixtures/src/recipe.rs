//! Mixture recipes (TOML): what a mid-training mix should contain.
//!
//! ```toml
//! name = "dolmino-anneal"
//! budget_tokens = 50_000_000_000
//! seed = 1234
//! min_overlap = 0.8            # floor on the overlap with the pre-training distribution
//!
//! [pretraining]                # the base model's pre-training mix, domain → share
//! web = 0.80
//! code = 0.10
//! math = 0.05
//! books = 0.05
//!
//! [[domain]]
//! name = "web"
//! datasets = ["../out/prepared/web"]   # prepared dataset folders (manifest.json)
//! weight = 0.5                          # target share; normalised over the domains
//! max_epochs = 1.0                      # at most this many passes over the data
//!
//! [[domain]]                            # a subset of a domain's documents, by sidecar columns
//! name = "web_hq"                       # (see `select`): where, select, buckets + weights, rehydrate
//! datasets = ["../out/prepared/web"]
//! weight = 0.2
//! max_epochs = 4
//! where = "language_score >= 0.65"
//! select = { by = "quality", top = 0.1 }          # top 10% of the tokens by quality
//! buckets = { by = "quality", count = 20 }        # sub-domains web_hq/q00 … web_hq/q19
//! weights = { "q15-q19" = 0.7, "q10-q14" = 0.3 }  # the buckets' shares of the domain
//! rehydrate = { "2-4" = 2, "5-9" = 3, "10+" = 4 } # copies by dedup cluster size
//! ```
//!
//! Relative dataset paths are resolved against the recipe's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::select::{Buckets, Select, SubsetRules, parse_rehydrate, parse_where};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct RecipeError {
    pub path: PathBuf,
    #[source]
    pub source: RecipeProblem,
}

/// What is wrong with a recipe's text.
#[derive(Debug, thiserror::Error)]
pub enum RecipeProblem {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// A setting out of its range, named with the rule it breaks.
    #[error("{0}")]
    Setting(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    pub budget_tokens: u64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_min_overlap")]
    pub min_overlap: f64,
    /// The base model's pre-training distribution over domains (normalised on load).
    pub pretraining: BTreeMap<String, f64>,
    #[serde(rename = "domain")]
    pub domains: Vec<RecipeDomain>,
}

fn default_min_overlap() -> f64 {
    0.8
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeDomain {
    pub name: String,
    pub datasets: Vec<PathBuf>,
    pub weight: f64,
    #[serde(default = "default_max_epochs")]
    pub max_epochs: f64,
    /// Conditions on sidecar columns (`quality >= 0.8 and language_score > 0.6`).
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<Select>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Buckets>,
    /// Shares of the buckets (`"q15-q19" = 0.7`); needs `buckets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<BTreeMap<String, f64>>,
    /// Copies by dedup cluster size (`"2-4" = 2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehydrate: Option<BTreeMap<String, u32>>,
}

impl RecipeDomain {
    /// The document rules of the domain, parsed and checked.
    pub fn rules(&self) -> Result<SubsetRules, RecipeProblem> {
        let setting = |message: String| RecipeProblem::Setting(format!("domain {:?}: {message}", self.name));
        let conditions = match &self.where_ {
            Some(text) => parse_where(text).map_err(setting)?,
            None => Vec::new(),
        };
        if let Some(s) = &self.select
            && !(s.top > 0.0 && s.top <= 1.0)
        {
            return Err(setting(format!("select.top {} must be a fraction of the tokens in (0, 1]", s.top)));
        }
        if let Some(b) = &self.buckets
            && !(1..=1000).contains(&b.count)
        {
            return Err(setting(format!("buckets.count {} must be within 1..=1000", b.count)));
        }
        if self.weights.is_some() && self.buckets.is_none() {
            return Err(setting("weights share a domain among its buckets: it needs buckets = { by, count }".into()));
        }
        let rehydrate = match &self.rehydrate {
            Some(table) => parse_rehydrate(table).map_err(setting)?,
            None => Vec::new(),
        };
        if let Some(b) = rehydrate.iter().find(|b| b.copies as f64 > self.max_epochs) {
            return Err(setting(format!(
                "rehydrate {:?} = {} repeats a document more often than max_epochs = {} allows (raise max_epochs)",
                b.label, b.copies, self.max_epochs
            )));
        }
        Ok(SubsetRules {
            conditions,
            select: self.select.clone(),
            buckets: self.buckets.clone(),
            weights: self.weights.clone(),
            rehydrate,
        })
    }
}

fn default_max_epochs() -> f64 {
    1.0
}

impl Recipe {
    pub fn load(path: &Path) -> Result<Self, RecipeError> {
        let err = |e: RecipeProblem| RecipeError { path: path.to_path_buf(), source: e };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.into()))?;
        let mut recipe = Self::parse(&text).map_err(err)?;
        let base = util::fsutil::config_folder(path).map_err(|e| err(e.into()))?;
        for d in &mut recipe.domains {
            for ds in &mut d.datasets {
                *ds = util::fsutil::resolve_against(&base, ds);
            }
        }
        Ok(recipe)
    }

    /// Parse and check a recipe (paths as written).
    pub fn parse(text: &str) -> Result<Self, RecipeProblem> {
        let recipe: Self = toml::from_str(text)?;
        recipe.validate()?;
        Ok(recipe)
    }

    fn validate(&self) -> Result<(), RecipeProblem> {
        if self.budget_tokens == 0 {
            return Err(RecipeProblem::Setting("budget_tokens must be positive".into()));
        }
        if !(0.0..=1.0).contains(&self.min_overlap) {
            return Err(RecipeProblem::Setting(format!("min_overlap {} must be within [0, 1]", self.min_overlap)));
        }
        if self.domains.is_empty() {
            return Err(RecipeProblem::Setting("no [[domain]]".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.domains {
            if !seen.insert(&d.name) {
                return Err(RecipeProblem::Setting(format!("domain {:?} appears twice", d.name)));
            }
            if !(d.weight.is_finite() && d.weight >= 0.0) {
                return Err(RecipeProblem::Setting(format!(
                    "domain {:?}: weight must be a non-negative number",
                    d.name
                )));
            }
            if !(d.max_epochs.is_finite() && d.max_epochs > 0.0) {
                return Err(RecipeProblem::Setting(format!("domain {:?}: max_epochs must be positive", d.name)));
            }
            d.rules()?;
            if d.datasets.is_empty() && d.weight > 0.0 {
                return Err(RecipeProblem::Setting(format!("domain {:?} has a weight but no datasets", d.name)));
            }
        }
        if self.domains.iter().map(|d| d.weight).sum::<f64>() <= 0.0 {
            return Err(RecipeProblem::Setting("the domain weights sum to zero".into()));
        }
        if let Some((d, v)) = self.pretraining.iter().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
            return Err(RecipeProblem::Setting(format!(
                "pretraining share of {d:?} ({v}) must be a non-negative number"
            )));
        }
        if self.pretraining.values().sum::<f64>() <= 0.0 {
            return Err(RecipeProblem::Setting("[pretraining] shares sum to zero".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = r#"
        name = "t"
        budget_tokens = 1000
        [pretraining]
        web = 8
        code = 2
        [[domain]]
        name = "web"
        datasets = ["w"]
        weight = 1
        [[domain]]
        name = "code"
        datasets = ["c"]
        weight = 1
        max_epochs = 4
    "#;

    #[test]
    fn parses_with_defaults_and_rejects_bad_values() {
        let r = Recipe::parse(RECIPE).unwrap();
        assert_eq!((r.min_overlap, r.seed, r.domains[0].max_epochs, r.domains[1].max_epochs), (0.8, 0, 1.0, 4.0));
        for (bad, fragment) in [
            (RECIPE.replace("budget_tokens = 1000", "budget_tokens = 0"), "budget_tokens"),
            (RECIPE.replace("weight = 1\n        max_epochs = 4", "weight = -1"), "non-negative"),
            (RECIPE.replace("max_epochs = 4", "max_epochs = 0"), "max_epochs"),
            (RECIPE.replace("name = \"code\"", "name = \"web\""), "twice"),
            (RECIPE.replace("web = 8\n        code = 2", "web = 0"), "sum to zero"),
            (RECIPE.replace("weight = 1", "wieght = 1"), "wieght"),
        ] {
            let err = Recipe::parse(&bad).unwrap_err().to_string();
            assert!(err.contains(fragment), "{fragment}: {err}");
        }
    }
}
