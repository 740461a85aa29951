//! The planner: from a recipe and the prepared datasets' manifests to per-domain token counts,
//! epochs and the overlap with the pre-training distribution.
//!
//! Overlap is Σ_d min(p_d, q_d) = 1 − TV(p, q). When the target q falls below the floor, it is
//! moved along the straight path q' = αq + (1 − α)p, whose overlap is 1 − α·TV(p, q), by the least
//! amount that meets the floor: α = min(1, (1 − floor) / TV(p, q)).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::recipe::{Recipe, RecipeDomain, RecipeProblem};
use crate::select::{self, Part, Pick, ShardInput, SubsetError, SubsetSummary};
use shards::manifest::{DatasetManifest, ManifestError};
use shards::shard::ShardReader;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Subset(#[from] SubsetError),
    #[error(transparent)]
    Recipe(#[from] RecipeProblem),
    #[error(
        "domain {domain:?} has a weight, but its document rules keep no documents ({summary}); check the \
         sidecar columns they read (`midtrain audit DATASET`), or change the rules"
    )]
    EmptySubset { domain: String, summary: String },
    #[error(
        "domain {domain:?} runs out of data: the plan needs {needed} tokens, {available} are available and max_epochs = \
         {max_epochs} allows {allowed} (fewer when rehydrated copies repeat a document within a pass); short by {shortfall} tokens (add data, raise max_epochs or lower its weight)"
    )]
    Shortfall { domain: String, needed: u64, available: u64, max_epochs: f64, allowed: u64, shortfall: u64 },
    #[error(
        "meeting min_overlap {floor} needs pre-training domains that the recipe has no datasets for: {domains:?} \
         (add them as domains, or lower min_overlap)"
    )]
    MissingPretrainingData { floor: f64, domains: Vec<String> },
    #[error("{first} and {second} were tokenized with different tokenizers ({a} vs {b}); a mixture needs one")]
    TokenizerMismatch { first: PathBuf, second: PathBuf, a: String, b: String },
}

/// What the plan draws from a recipe domain, or from one of its buckets (`web/q07`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DomainPlan {
    pub name: String,
    /// The recipe domain (the name, or the name before `/` of a bucket).
    pub group: String,
    /// The recipe's weight, normalised (a bucket's: its part of it).
    pub target_share: f64,
    /// The share after enforcing the overlap floor.
    pub share: f64,
    pub pretraining_share: f64,
    pub tokens: u64,
    /// Tokens in one pass over the domain (rehydrated copies included).
    pub available_tokens: u64,
    /// Distinct documents in one pass.
    pub available_documents: u64,
    /// Tokens of the distinct documents.
    pub unique_tokens: u64,
    /// The most copies of a document in one pass (1 unless rehydrated).
    pub most_copies: u32,
    /// The most tokens max_epochs allows: available × max_epochs / most_copies.
    pub allowed_tokens: u64,
    /// Passes over the domain.
    pub epochs: f64,
    pub max_epochs: f64,
    pub datasets: Vec<PathBuf>,
    /// What the document rules kept, when the domain has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<SubsetSummary>,
    /// The documents of one pass, when the domain has document rules (else all of them).
    #[serde(skip)]
    pub picks: Option<Arc<Vec<Pick>>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub name: String,
    pub budget_tokens: u64,
    pub seed: u64,
    pub min_overlap: f64,
    /// Overlap of the recipe's own weights with pre-training.
    pub target_overlap: f64,
    /// Overlap of the planned shares.
    pub overlap: f64,
    /// Weight kept on the recipe's target (1 = unchanged).
    pub alpha: f64,
    pub domains: Vec<DomainPlan>,
    /// Pre-training domains the recipe does not mix (they lower the overlap).
    pub unmixed_pretraining: Vec<String>,
    /// The pre-training distribution, normalised.
    pub pretraining: BTreeMap<String, f64>,
}

/// Σ_d min(p_d, q_d) over the union of both supports.
pub fn overlap(p: &BTreeMap<String, f64>, q: &BTreeMap<String, f64>) -> f64 {
    p.iter().map(|(d, pv)| pv.min(q.get(d).copied().unwrap_or(0.0))).sum()
}

fn normalised(values: impl IntoIterator<Item = (String, f64)>) -> BTreeMap<String, f64> {
    let map: BTreeMap<String, f64> = values.into_iter().collect();
    let total: f64 = map.values().sum();
    map.into_iter().map(|(k, v)| (k, v / total)).collect()
}

/// Split `total` by `shares` into integers that sum to `total` (largest remainder, ties by order).
fn apportion(total: u64, shares: &[f64]) -> Vec<u64> {
    let exact: Vec<f64> = shares.iter().map(|s| s * total as f64).collect();
    let mut out: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = total - out.iter().sum::<u64>().min(total);
    let mut order: Vec<usize> = (0..shares.len()).filter(|&i| shares[i] > 0.0).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    for &i in order.iter().cycle().take(order.len().max(1) * 2) {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

/// A recipe domain's datasets: totals, and the parts its document rules split it into.
struct DomainData {
    tokens: u64,
    documents: u64,
    parts: Option<Vec<Part>>,
}

/// Read a domain's manifests (checking that every dataset shares one tokenizer) and, when the
/// domain has document rules, apply them to its shards.
fn domain_data(d: &RecipeDomain, tokenizer: &mut Option<(PathBuf, String)>) -> Result<DomainData, PlanError> {
    let rules = d.rules()?;
    let (mut tokens, mut documents, mut inputs) = (0u64, 0u64, Vec::new());
    for (dataset_index, path) in d.datasets.iter().enumerate() {
        let m = DatasetManifest::load(path)?;
        match tokenizer {
            Some((first, hash)) if hash != &m.tokenizer.content_hash => {
                return Err(PlanError::TokenizerMismatch {
                    first: first.clone(),
                    second: path.clone(),
                    a: hash.clone(),
                    b: m.tokenizer.content_hash.clone(),
                });
            }
            Some(_) => {}
            None => *tokenizer = Some((path.clone(), m.tokenizer.content_hash.clone())),
        }
        tokens += m.tokens;
        documents += m.documents;
        if rules.is_empty() {
            continue;
        }
        for (shard_index, (entry, prefix)) in m.shards.iter().zip(m.shard_prefixes(path)).enumerate() {
            let reader = ShardReader::open(&prefix).map_err(ManifestError::from)?;
            inputs.push(ShardInput {
                dataset: dataset_index as u32,
                shard: shard_index as u32,
                sidecar: entry.sidecar.as_ref().map(|s| path.join(s)),
                lengths: (0..reader.num_documents()).map(|i| reader.document_len(i) as u32).collect(),
                prefix,
            });
        }
    }
    let parts = if rules.is_empty() { None } else { Some(select::subset(&d.name, &rules, &inputs)?) };
    Ok(DomainData { tokens, documents, parts })
}

/// Plan a recipe against its datasets (reads each dataset's manifest; the sidecars of domains
/// with document rules).
pub fn plan(recipe: &Recipe) -> Result<Plan, PlanError> {
    let mut data = Vec::new();
    let mut tokenizer: Option<(PathBuf, String)> = None;
    for d in &recipe.domains {
        data.push(domain_data(d, &mut tokenizer)?);
    }
    let q = normalised(recipe.domains.iter().map(|d| (d.name.clone(), d.weight)));
    let p = normalised(recipe.pretraining.iter().map(|(k, v)| (k.clone(), *v)));
    let target_overlap = overlap(&p, &q);
    let tv = 1.0 - target_overlap;
    let alpha = if target_overlap >= recipe.min_overlap || tv <= 0.0 {
        1.0
    } else {
        ((1.0 - recipe.min_overlap) / tv).min(1.0)
    };
    let mut shares: BTreeMap<String, f64> = BTreeMap::new();
    for name in p.keys().chain(q.keys()) {
        let s = alpha * q.get(name).copied().unwrap_or(0.0) + (1.0 - alpha) * p.get(name).copied().unwrap_or(0.0);
        shares.insert(name.clone(), s);
    }
    let missing: Vec<String> =
        shares.iter().filter(|(n, s)| **s > 0.0 && !q.contains_key(*n)).map(|(n, _)| n.clone()).collect();
    if !missing.is_empty() {
        return Err(PlanError::MissingPretrainingData { floor: recipe.min_overlap, domains: missing });
    }
    // The units the budget is split over: whole domains, or their buckets.
    let mut units: Vec<(&RecipeDomain, &DomainData, Option<&Part>, f64)> = Vec::new();
    for (d, data) in recipe.domains.iter().zip(&data) {
        match &data.parts {
            None => units.push((d, data, None, 1.0)),
            Some(parts) => units.extend(parts.iter().map(|part| (d, data, Some(part), part.share))),
        }
    }
    for (d, data) in recipe.domains.iter().zip(&data) {
        if let Some(parts) = &data.parts
            && shares[&d.name] > 0.0
            && parts.iter().all(|p| p.picks.is_empty() || p.share <= 0.0)
        {
            let summary = parts.first().map(|p| p.summary.describe()).unwrap_or_default();
            return Err(PlanError::EmptySubset { domain: d.name.clone(), summary });
        }
    }
    let ordered: Vec<f64> = units.iter().map(|(d, _, _, within)| shares[&d.name] * within).collect();
    let tokens = apportion(recipe.budget_tokens, &ordered);
    let mut domains = Vec::new();
    for ((&(d, data, part, within), &share), &t) in units.iter().zip(&ordered).zip(&tokens) {
        let name = match part.and_then(|p| p.bucket.as_ref()) {
            Some(bucket) => format!("{}/{bucket}", d.name),
            None => d.name.clone(),
        };
        let (avail, docs, unique, most_copies) = match part {
            None => (data.tokens, data.documents, data.tokens, 1),
            Some(part) => (
                part.picks.iter().map(|p| p.tokens as u64 * p.copies as u64).sum(),
                part.picks.len() as u64,
                part.summary.tokens,
                part.picks.iter().map(|p| p.copies).max().unwrap_or(1),
            ),
        };
        let allowed = (avail as f64 * d.max_epochs / most_copies as f64).floor() as u64;
        if let Some(part) = part.filter(|p| p.picks.is_empty() && t > 0) {
            return Err(PlanError::EmptySubset { domain: name, summary: part.summary.describe() });
        }
        if t > allowed {
            return Err(PlanError::Shortfall {
                domain: name,
                needed: t,
                available: avail,
                max_epochs: d.max_epochs,
                allowed,
                shortfall: t - allowed,
            });
        }
        domains.push(DomainPlan {
            group: d.name.clone(),
            target_share: q[&d.name] * within,
            share,
            pretraining_share: p.get(&d.name).copied().unwrap_or(0.0) * within,
            tokens: t,
            available_tokens: avail,
            available_documents: docs,
            unique_tokens: unique,
            most_copies,
            allowed_tokens: allowed,
            epochs: if avail == 0 { 0.0 } else { t as f64 / avail as f64 },
            max_epochs: d.max_epochs,
            datasets: d.datasets.clone(),
            subset: part.map(|p| p.summary.clone()),
            picks: part.map(|p| p.picks.clone()),
            name,
        });
    }
    let planned: BTreeMap<String, f64> = recipe.domains.iter().map(|d| (d.name.clone(), shares[&d.name])).collect();
    Ok(Plan {
        name: recipe.name.clone(),
        budget_tokens: recipe.budget_tokens,
        seed: recipe.seed,
        min_overlap: recipe.min_overlap,
        target_overlap,
        overlap: overlap(&p, &planned),
        alpha,
        unmixed_pretraining: p.keys().filter(|k| !q.contains_key(*k)).cloned().collect(),
        pretraining: p,
        domains,
    })
}

/// What a weighted blend of the plan's domains (Megatron's `--data-path`, which knows nothing
/// of `max_epochs`) can draw before some domain repeats more often than its recipe allows:
/// domain i gives `share_i` of every token, so the blend holds
/// `min_i(allowed_i / share_i)` tokens (`allowed_i`: available × max_epochs, divided by the most
/// copies a rehydrated document has in one pass). Returns those tokens and the domain
/// that binds.
pub fn blend_capacity(plan: &Plan) -> Option<(u64, &str)> {
    plan.domains
        .iter()
        .filter(|d| d.share > 0.0)
        .map(|d| ((d.allowed_tokens as f64 / d.share).floor() as u64, d.name.as_str()))
        .min_by_key(|&(tokens, _)| tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::manifest::{ShardEntry, TokenizerIdentity};

    fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn overlap_is_one_minus_total_variation() {
        let p = map(&[("web", 0.8), ("code", 0.1), ("math", 0.1)]);
        let q = map(&[("web", 0.3), ("code", 0.3), ("math", 0.4)]);
        assert!((overlap(&p, &q) - 0.5).abs() < 1e-12);
        assert!((overlap(&p, &p) - 1.0).abs() < 1e-12);
        assert_eq!(overlap(&map(&[("a", 1.0)]), &map(&[("b", 1.0)])), 0.0);
    }

    #[test]
    fn apportion_sums_exactly() {
        assert_eq!(apportion(10, &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]), [4, 3, 3]);
        assert_eq!(apportion(7, &[0.5, 0.0, 0.5]), [4, 0, 3]);
        assert_eq!(apportion(1_000_000_007, &[0.123, 0.877]).iter().sum::<u64>(), 1_000_000_007);
    }

    /// A dataset folder with a manifest that claims `tokens` tokens.
    fn dataset(dir: &std::path::Path, name: &str, tokens: u64, hash: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        let shard = ShardEntry {
            prefix: format!("{name}_0"),
            documents: tokens / 100,
            tokens,
            bin_checksum: String::new(),
            idx_checksum: String::new(),
            sidecar: None,
            loss_mask: None,
            loss_mask_checksum: None,
        };
        let tok = TokenizerIdentity::new(hash, 100, 0, None);
        DatasetManifest::new(name, tok, vec![shard], serde_json::Value::Null).write(&path).unwrap();
        path
    }

    fn recipe(dir: &std::path::Path, floor: f64, code_epochs: f64) -> Recipe {
        let text = format!(
            r#"
            name = "t"
            budget_tokens = 1000
            min_overlap = {floor}
            [pretraining]
            web = 0.8
            code = 0.1
            math = 0.1
            [[domain]]
            name = "web"
            datasets = [{web:?}]
            weight = 0.3
            [[domain]]
            name = "code"
            datasets = [{code:?}]
            weight = 0.3
            max_epochs = {code_epochs}
            [[domain]]
            name = "math"
            datasets = [{math:?}]
            weight = 0.4
            max_epochs = 10
            "#,
            web = dataset(dir, "web", 10_000, "h"),
            code = dataset(dir, "code", 100, "h"),
            math = dataset(dir, "math", 100, "h"),
        );
        Recipe::parse(&text).unwrap()
    }

    #[test]
    fn the_floor_moves_the_target_by_the_least_amount() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(&recipe(dir.path(), 0.8, 10.0)).unwrap();
        assert!((plan.target_overlap - 0.5).abs() < 1e-12);
        assert!((plan.overlap - 0.8).abs() < 1e-9, "exactly the floor: {}", plan.overlap);
        assert!((plan.alpha - 0.4).abs() < 1e-12, "(1 - 0.8) / TV 0.5");
        let web = &plan.domains[0];
        assert!((web.share - (0.4 * 0.3 + 0.6 * 0.8)).abs() < 1e-12);
        assert_eq!(plan.domains.iter().map(|d| d.tokens).sum::<u64>(), 1000);
        assert!((web.epochs - web.tokens as f64 / 10_000.0).abs() < 1e-12);

        let relaxed = super::plan(&recipe(dir.path(), 0.5, 10.0)).unwrap();
        assert_eq!(relaxed.alpha, 1.0, "already at the floor: unchanged");
        assert_eq!(relaxed.domains.iter().map(|d| d.tokens).collect::<Vec<_>>(), [300, 300, 400]);
    }

    #[test]
    fn running_out_of_data_names_the_domain_and_the_shortfall() {
        let dir = tempfile::tempdir().unwrap();
        // code gets 300 tokens at floor 0.5 but has 100 tokens × 2 epochs = 200.
        let err = plan(&recipe(dir.path(), 0.5, 2.0)).unwrap_err().to_string();
        assert!(err.contains("\"code\"") && err.contains("short by 100 tokens"), "{err}");
    }

    #[test]
    fn floor_needing_unmixed_pretraining_domains_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "name = \"t\"\nbudget_tokens = 10\n[pretraining]\nweb = 0.9\nbooks = 0.1\n[[domain]]\nname = \"math\"\ndatasets = [{:?}]\nweight = 1\n",
            dataset(dir.path(), "math", 100, "h")
        );
        let err = plan(&Recipe::parse(&text).unwrap()).unwrap_err().to_string();
        assert!(err.contains("books") && err.contains("web"), "{err}");
    }
}
