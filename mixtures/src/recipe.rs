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
//! ```
//!
//! Relative dataset paths are resolved against the recipe's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
