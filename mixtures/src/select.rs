//! Document subsets of a recipe domain, decided from the per-document sidecars of its
//! datasets, in this order:
//!
//! 1. `where = "quality >= 0.8 and language_score > 0.6"`: documents meeting every condition
//!    (a null score meets none);
//! 2. `select = { by = "quality", top = 0.1 }`: the highest-scoring documents until they hold
//!    `top` of the remaining tokens (ties: the earlier document first; unscored documents out);
//! 3. `buckets = { by = "quality", count = 20 }`: token-weighted quantiles of the score,
//!    lowest first (`q00` … `q19`); documents with equal scores share a bucket. `weights =
//!    { "q15-q19" = 0.7, "q10-q14" = 0.3 }` gives each range of buckets its share of the domain
//!    (split inside the range by tokens); buckets left out get none. Without `weights` every
//!    bucket keeps its share of the tokens;
//! 4. `rehydrate = { "2-4" = 2, "5-9" = 3, "10+" = 4 }`: a document whose dedup cluster
//!    (`cluster_size`) falls in a band appears that many times in each pass over the domain.
//!    `max_epochs` still caps how often any one document is drawn, so a domain's passes are at
//!    most `max_epochs / (most copies)`.
//!
//! Memory: while the rules run, about 44 bytes per document of the domain plus 16 per score
//! column read; the plan then keeps 20 bytes per selected document.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, Float64Array};
use arrow::datatypes::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

/// `select`: the top fraction of a domain's tokens by a score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    pub by: String,
    pub top: f64,
}

/// `buckets`: token-weighted quantile sub-domains by a score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buckets {
    pub by: String,
    pub count: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

/// One `COLUMN OP NUMBER` of a `where`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    column: String,
    op: Op,
    value: f64,
}

impl Condition {
    fn holds(&self, score: Option<f64>) -> bool {
        let Some(s) = score else { return false };
        match self.op {
            Op::Ge => s >= self.value,
            Op::Gt => s > self.value,
            Op::Le => s <= self.value,
            Op::Lt => s < self.value,
            Op::Eq => s == self.value,
            Op::Ne => s != self.value,
        }
    }
}

/// Parse `quality >= 0.8 and language_score > 0.6`.
pub fn parse_where(text: &str) -> Result<Vec<Condition>, String> {
    let mut out = Vec::new();
    for part in text.split(" and ") {
        let part = part.trim();
        let ops = [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), ("!=", Op::Ne), (">", Op::Gt), ("<", Op::Lt)];
        let Some((at, symbol, op)) = ops.iter().find_map(|(s, op)| part.find(s).map(|at| (at, *s, *op))) else {
            return Err(format!("where {text:?}: {part:?} is not COLUMN OP NUMBER (OP one of >= > <= < == !=)"));
        };
        let column = part[..at].trim();
        let number = part[at + symbol.len()..].trim();
        let valid_name = !column.is_empty() && column.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let value = number.parse::<f64>().ok().filter(|v| v.is_finite());
        match (valid_name, value) {
            (true, Some(value)) => out.push(Condition { column: column.to_string(), op, value }),
            _ => return Err(format!("where {text:?}: {part:?} is not COLUMN OP NUMBER (a sidecar column, a number)")),
        }
    }
    Ok(out)
}

/// A `rehydrate` band: cluster sizes `lo..=hi` (`hi` none: and above) appear `copies` times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub label: String,
    pub lo: u64,
    pub hi: Option<u64>,
    pub copies: u32,
}

impl Band {
    pub fn contains(&self, size: u64) -> bool {
        size >= self.lo && self.hi.is_none_or(|hi| size <= hi)
    }
}

/// Parse `{ "2-4" = 2, "5-9" = 3, "10+" = 4 }` (also a single size, `"3" = 2`); bands must not
/// overlap; sizes in no band appear once.
pub fn parse_rehydrate(table: &BTreeMap<String, u32>) -> Result<Vec<Band>, String> {
    let mut bands = Vec::new();
    for (key, &copies) in table {
        let bad = || format!("rehydrate key {key:?} is not a cluster-size band (\"2-4\", \"10+\" or \"3\")");
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
        let (lo, hi) = if let Some(lo) = key.strip_suffix('+') {
            (number(lo)?, None)
        } else if let Some((lo, hi)) = key.split_once('-') {
            (number(lo)?, Some(number(hi)?))
        } else {
            let n = number(key)?;
            (n, Some(n))
        };
        if lo == 0 || hi.is_some_and(|hi| hi < lo) {
            return Err(bad());
        }
        if copies == 0 {
            return Err(format!("rehydrate {key:?} = 0: a band repeats its documents at least once"));
        }
        bands.push(Band { label: key.clone(), lo, hi, copies });
    }
    bands.sort_by_key(|b| b.lo);
    for pair in bands.windows(2) {
        if pair[0].hi.is_none_or(|hi| hi >= pair[1].lo) {
            return Err(format!("rehydrate bands {:?} and {:?} overlap", pair[0].label, pair[1].label));
        }
    }
    Ok(bands)
}

/// A bucket's name: `q00` … `q19` (as many digits as the largest index needs, at least two).
pub fn bucket_name(index: usize, count: usize) -> String {
    let width = (count.saturating_sub(1).to_string().len()).max(2);
    format!("q{index:0width$}")
}

/// Each bucket's range key in `weights` (`"q15-q19"` or `"q07"`), checked: every key names
/// buckets that exist, no bucket is named twice.
fn bucket_ranges(weights: &BTreeMap<String, f64>, count: usize) -> Result<Vec<Option<(String, f64)>>, String> {
    let mut of_bucket: Vec<Option<(String, f64)>> = vec![None; count];
    for (key, &weight) in weights {
        let bad = || format!("weights key {key:?} is not a bucket or a range of buckets (\"q07\", \"q15-q19\")");
        let index = |s: &str| s.trim().strip_prefix('q').and_then(|n| n.parse::<usize>().ok()).ok_or_else(bad);
        let (lo, hi) = match key.split_once('-') {
            Some((lo, hi)) => (index(lo)?, index(hi)?),
            None => (index(key)?, index(key)?),
        };
        if hi < lo || hi >= count {
            return Err(format!("weights key {key:?}: the buckets are q00 to {}", bucket_name(count - 1, count)));
        }
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(format!("weights {key:?} = {weight}: must be a non-negative number"));
        }
        for slot in &mut of_bucket[lo..=hi] {
            if let Some((other, _)) = slot {
                return Err(format!("weights {key:?} and {other:?} both name {}", bucket_name(lo, count)));
            }
            *slot = Some((key.clone(), weight));
        }
    }
    Ok(of_bucket)
}

/// What a recipe domain asks of its documents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubsetRules {
    pub conditions: Vec<Condition>,
    pub select: Option<Select>,
    pub buckets: Option<Buckets>,
    pub weights: Option<BTreeMap<String, f64>>,
    pub rehydrate: Vec<Band>,
}

impl SubsetRules {
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty() && self.select.is_none() && self.buckets.is_none() && self.rehydrate.is_empty()
    }

    /// The sidecar columns the rules read.
    fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = self.conditions.iter().map(|c| c.column.clone()).collect();
        out.extend(self.select.iter().map(|s| s.by.clone()));
        out.extend(self.buckets.iter().map(|b| b.by.clone()));
        if !self.rehydrate.is_empty() {
            out.push(CLUSTER_SIZE.into());
        }
        out.sort();
        out.dedup();
        out
    }

    fn describe(&self, bucket: Option<(usize, usize)>) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.conditions.is_empty() {
            let symbols = |op: Op| match op {
                Op::Ge => ">=",
                Op::Gt => ">",
                Op::Le => "<=",
                Op::Lt => "<",
                Op::Eq => "==",
                Op::Ne => "!=",
            };
            let text: Vec<String> =
                self.conditions.iter().map(|c| format!("{} {} {}", c.column, symbols(c.op), c.value)).collect();
            parts.push(format!("where {}", text.join(" and ")));
        }
        if let Some(s) = &self.select {
            parts.push(format!("top {}% of tokens by {}", 100.0 * s.top, s.by));
        }
        if let (Some(b), Some((i, count))) = (&self.buckets, bucket) {
            parts.push(format!("bucket {} of {count} by {} (token-weighted quantiles)", bucket_name(i, count), b.by));
        }
        if !self.rehydrate.is_empty() {
            let bands: Vec<String> = self.rehydrate.iter().map(|b| format!("{} ×{}", b.label, b.copies)).collect();
            parts.push(format!("rehydrated by cluster size {}", bands.join(", ")));
        }
        parts.join("; ")
    }
}

/// The dedup column `rehydrate` reads.
pub const CLUSTER_SIZE: &str = "cluster_size";

/// A document of a domain's pool: dataset and shard (in the recipe's order), document index,
/// tokens, and how many times one pass over the domain holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub dataset: u32,
    pub shard: u32,
    pub doc: u32,
    pub tokens: u32,
    pub copies: u32,
}

/// How many documents and tokens a rehydrate band holds (distinct documents).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandCount {
    pub band: String,
    pub copies: u32,
    pub documents: u64,
    pub tokens: u64,
}

/// What a subset holds, for the plan, `mixture.json` and the audit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubsetSummary {
    /// The rules, in words.
    pub rule: String,
    /// The score column `select` / `buckets` ranked by, and the range of it in the subset.
    pub by: Option<String>,
    pub score_min: Option<f64>,
    pub score_max: Option<f64>,
    /// The domain's documents and tokens before any rule.
    pub domain_documents: u64,
    pub domain_tokens: u64,
    /// Documents a rule needed a score of but had none (null in the sidecar): left out.
    pub unscored_documents: u64,
    /// Distinct documents and tokens in the subset.
    pub documents: u64,
    pub tokens: u64,
    /// With `rehydrate`: the subset's documents by band (documents in no band appear once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rehydration: Vec<BandCount>,
}

impl SubsetSummary {
    /// The summary in words: what the rules kept of the domain, the score range, the bands.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{}: {} of {} documents, {} of {} tokens",
            self.rule, self.documents, self.domain_documents, self.tokens, self.domain_tokens
        );
        if let (Some(by), Some(lo), Some(hi)) = (&self.by, self.score_min, self.score_max) {
            text.push_str(&format!(", {by} {lo:.4}–{hi:.4}"));
        }
        if self.unscored_documents > 0 {
            text.push_str(&format!(", {} documents without a score left out", self.unscored_documents));
        }
        for b in &self.rehydration {
            text.push_str(&format!(
                "; cluster size {} ×{}: {} documents, {} tokens",
                b.band, b.copies, b.documents, b.tokens
            ));
        }
        text
    }
}

/// One part of a domain: the whole domain, or one bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    /// `None`, or the bucket's name (`q07`).
    pub bucket: Option<String>,
    /// This part's share of its domain (sums to one over the parts).
    pub share: f64,
    pub picks: Arc<Vec<Pick>>,
    pub summary: SubsetSummary,
}

#[derive(Debug, thiserror::Error)]
pub enum SubsetError {
    #[error("{path}: reading the sidecar: {message}")]
    Sidecar { path: PathBuf, message: String },
    #[error(
        "{path}: the sidecar has no column {column:?}, which the recipe's domain {domain:?} reads ({why}); \
         the sidecar's columns: {found}"
    )]
    NoColumn { path: PathBuf, column: String, domain: String, why: String, found: String },
    #[error("{path}: the sidecar has {rows} rows, its shard {documents} documents (rebuild the dataset)")]
    Rows { path: PathBuf, rows: usize, documents: usize },
    #[error(
        "shard {prefix} of domain {domain:?} has no sidecar, which the recipe's where/select/buckets/rehydrate read"
    )]
    NoSidecar { prefix: PathBuf, domain: String },
    #[error("domain {domain:?}: {message}")]
    Rule { domain: String, message: String },
}

/// One shard of a domain's datasets, as the subset rules see it.
pub struct ShardInput {
    pub dataset: u32,
    pub shard: u32,
    pub prefix: PathBuf,
    pub sidecar: Option<PathBuf>,
    /// Token count of each document (from the shard index).
    pub lengths: Vec<u32>,
}

/// The named columns of a sidecar as f64 (`None` for nulls).
fn read_columns(path: &Path, columns: &[String], domain: &str) -> Result<Vec<Vec<Option<f64>>>, SubsetError> {
    let err = |message: String| SubsetError::Sidecar { path: path.to_path_buf(), message };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(e.to_string()))?;
    let schema = builder.schema().clone();
    let mut roots = Vec::new();
    for c in columns {
        match schema.index_of(c) {
            Ok(i) => roots.push(i),
            Err(_) => {
                let why = if c == CLUSTER_SIZE {
                    "rehydrate: dedup writes it; prepare the domain with dedup".to_string()
                } else {
                    "a score named in where/select/buckets".to_string()
                };
                let found: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(SubsetError::NoColumn {
                    path: path.to_path_buf(),
                    column: c.clone(),
                    domain: domain.to_string(),
                    why,
                    found: found.join(", "),
                });
            }
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder.with_projection(mask).build().map_err(|e| err(e.to_string()))?;
    let mut out: Vec<Vec<Option<f64>>> = vec![Vec::new(); columns.len()];
    for batch in reader {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        for (k, c) in columns.iter().enumerate() {
            let array = batch.column_by_name(c).expect("projected");
            let floats = arrow::compute::cast(array, &DataType::Float64)
                .map_err(|e| err(format!("column {c:?} is not numeric: {e}")))?;
            let floats = floats.as_any().downcast_ref::<Float64Array>().expect("cast to f64");
            out[k].extend((0..floats.len()).map(|i| floats.is_valid(i).then(|| floats.value(i))));
        }
    }
    Ok(out)
}

/// A document with the scores the rules read (in [`SubsetRules::columns`] order).
struct Row {
    pick: Pick,
    scores: Vec<Option<f64>>,
}

/// Apply a domain's rules to its shards: the parts it splits into, each with its documents.
pub fn subset(domain: &str, rules: &SubsetRules, shards: &[ShardInput]) -> Result<Vec<Part>, SubsetError> {
    let columns = rules.columns();
    let column = |name: &str| columns.iter().position(|c| c == name).expect("listed");
    let mut rows = Vec::new();
    for s in shards {
        let path = s
            .sidecar
            .as_ref()
            .ok_or_else(|| SubsetError::NoSidecar { prefix: s.prefix.clone(), domain: domain.to_string() })?;
        let values = read_columns(path, &columns, domain)?;
        let n = values.first().map_or(0, Vec::len);
        if n != s.lengths.len() {
            return Err(SubsetError::Rows { path: path.clone(), rows: n, documents: s.lengths.len() });
        }
        for (doc, &tokens) in s.lengths.iter().enumerate() {
            rows.push(Row {
                pick: Pick { dataset: s.dataset, shard: s.shard, doc: doc as u32, tokens, copies: 1 },
                scores: values.iter().map(|v| v[doc]).collect(),
            });
        }
    }
    if !rules.rehydrate.is_empty() && !rows.is_empty() && rows.iter().all(|r| r.scores[column(CLUSTER_SIZE)].is_none())
    {
        return Err(SubsetError::Rule {
            domain: domain.to_string(),
            message: "rehydrate: no document of its sidecars has a cluster_size, so it was not deduplicated \
                      (dedup writes it: list the domain in prepare's [dedup] domains)"
                .into(),
        });
    }
    let domain_documents = rows.len() as u64;
    let domain_tokens: u64 = rows.iter().map(|r| r.pick.tokens as u64).sum();
    let mut unscored = 0u64;
    rows.retain(|r| rules.conditions.iter().all(|c| c.holds(r.scores[column(&c.column)])));

    if let Some(select) = &rules.select {
        let k = column(&select.by);
        let before = rows.len();
        rows.retain(|r| r.scores[k].is_some());
        unscored += (before - rows.len()) as u64;
        let total: u64 = rows.iter().map(|r| r.pick.tokens as u64).sum();
        let target = (select.top * total as f64).ceil() as u64;
        // Highest first; the sort is stable, so ties keep the domain's order.
        rows.sort_by(|a, b| b.scores[k].unwrap().total_cmp(&a.scores[k].unwrap()));
        let mut taken = 0u64;
        let keep = rows
            .iter()
            .take_while(|r| {
                let take = taken < target;
                taken += r.pick.tokens as u64;
                take
            })
            .count();
        rows.truncate(keep);
        restore_order(&mut rows);
    }

    let summary = |rows: &[Row], bucket: Option<(usize, usize)>, unscored: u64| {
        let by = rules.buckets.as_ref().map(|b| b.by.clone()).or_else(|| rules.select.as_ref().map(|s| s.by.clone()));
        let scores: Vec<f64> = match &by {
            Some(by) => rows.iter().filter_map(|r| r.scores[column(by)]).collect(),
            None => Vec::new(),
        };
        let mut rehydration = Vec::new();
        if !rules.rehydrate.is_empty() {
            for band in &rules.rehydrate {
                let inside = rows.iter().filter(|r| in_band(r, band, column(CLUSTER_SIZE)));
                let (documents, tokens) = inside.fold((0, 0), |(d, t), r| (d + 1, t + r.pick.tokens as u64));
                rehydration.push(BandCount { band: band.label.clone(), copies: band.copies, documents, tokens });
            }
        }
        SubsetSummary {
            rule: rules.describe(bucket),
            by,
            score_min: scores.iter().copied().reduce(f64::min),
            score_max: scores.iter().copied().reduce(f64::max),
            domain_documents,
            domain_tokens,
            unscored_documents: unscored,
            documents: rows.len() as u64,
            tokens: rows.iter().map(|r| r.pick.tokens as u64).sum(),
            rehydration,
        }
    };

    if !rules.rehydrate.is_empty() {
        let k = column(CLUSTER_SIZE);
        for r in &mut rows {
            let size = r.scores[k].map_or(1, |s| s.max(1.0) as u64);
            r.pick.copies = rules.rehydrate.iter().find(|b| b.contains(size)).map_or(1, |b| b.copies);
        }
    }

    let Some(buckets) = &rules.buckets else {
        let summary = summary(&rows, None, unscored);
        let picks = rows.into_iter().map(|r| r.pick).collect();
        return Ok(vec![Part { bucket: None, share: 1.0, picks: Arc::new(picks), summary }]);
    };
    let k = column(&buckets.by);
    let before = rows.len();
    rows.retain(|r| r.scores[k].is_some());
    unscored += (before - rows.len()) as u64;
    rows.sort_by(|a, b| a.scores[k].unwrap().total_cmp(&b.scores[k].unwrap()));
    let count = buckets.count;
    let total: u64 = rows.iter().map(|r| r.pick.tokens as u64).sum();
    let mut members: Vec<Vec<Row>> = (0..count).map(|_| Vec::new()).collect();
    let (mut before_tokens, mut run_bucket, mut run_score) = (0u64, 0usize, None);
    for r in rows {
        let score = r.scores[k];
        if score != run_score {
            // A run of equal scores goes where its first document's tokens start.
            run_bucket = ((before_tokens as u128 * count as u128) / total.max(1) as u128) as usize;
            run_score = score;
        }
        before_tokens += r.pick.tokens as u64;
        members[run_bucket.min(count - 1)].push(r);
    }
    let ranges = match &rules.weights {
        Some(w) => {
            Some(bucket_ranges(w, count).map_err(|message| SubsetError::Rule { domain: domain.into(), message })?)
        }
        None => None,
    };
    let bucket_tokens: Vec<u64> = members.iter().map(|m| m.iter().map(|r| r.pick.tokens as u64).sum()).collect();
    let shares: Vec<f64> = match &ranges {
        None => bucket_tokens.iter().map(|&t| t as f64 / total.max(1) as f64).collect(),
        Some(ranges) => {
            let weight_sum: f64 = {
                let mut seen: Vec<&String> = ranges.iter().flatten().map(|(k, _)| k).collect();
                seen.dedup();
                rules.weights.as_ref().unwrap().iter().filter(|(k, _)| seen.contains(k)).map(|(_, w)| w).sum()
            };
            if weight_sum <= 0.0 {
                return Err(SubsetError::Rule {
                    domain: domain.into(),
                    message: "the bucket weights sum to zero".into(),
                });
            }
            (0..count)
                .map(|i| match &ranges[i] {
                    None => 0.0,
                    Some((key, w)) => {
                        let range_tokens: u64 = (0..count)
                            .filter(|&j| ranges[j].as_ref().is_some_and(|(k2, _)| k2 == key))
                            .map(|j| bucket_tokens[j])
                            .sum();
                        if range_tokens == 0 {
                            0.0
                        } else {
                            w / weight_sum * bucket_tokens[i] as f64 / range_tokens as f64
                        }
                    }
                })
                .collect()
        }
    };
    let mut parts = Vec::new();
    for (i, mut rows) in members.into_iter().enumerate() {
        restore_order(&mut rows);
        let summary = summary(&rows, Some((i, count)), unscored);
        let picks = rows.into_iter().map(|r| r.pick).collect();
        parts.push(Part { bucket: Some(bucket_name(i, count)), share: shares[i], picks: Arc::new(picks), summary });
    }
    Ok(parts)
}

fn in_band(row: &Row, band: &Band, cluster_size: usize) -> bool {
    band.contains(row.scores[cluster_size].map_or(1, |s| s.max(1.0) as u64))
}

/// Back to the datasets' order (dataset, shard, document).
fn restore_order(rows: &mut [Row]) {
    rows.sort_by_key(|r| (r.pick.dataset, r.pick.shard, r.pick.doc));
}

#[cfg(test)]
mod tests;
