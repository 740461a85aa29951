//! The audit: what a mixture (or a single prepared dataset) really contains, against its targets.
//!
//! Shares over the whole stream and its first 1% and 10% come straight from the blended order;
//! per-domain document counts, tokens, long-document shares, length histograms and quality /
//! language-score distributions come from joining the order with the per-document sidecars in
//! polars (lazy parquet scans, group-bys); removals by step and reason from each dataset's
//! `removed.parquet`. It flags an overlap below the floor, a realised share more than one point
//! off target, and a long-document share outside a requested range.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::build::{BuildError, Mixture, OrderEntry};
use crate::plan::overlap;
use crate::select::{Band, CLUSTER_SIZE, SubsetSummary, parse_rehydrate};
use shards::manifest::{DatasetManifest, ManifestError};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {source}")]
    Query {
        path: PathBuf,
        #[source]
        source: PolarsError,
    },
    #[error("{path}: aggregating the sidecars (does each have one row per document?): {source}")]
    Aggregate {
        path: PathBuf,
        #[source]
        source: PolarsError,
    },
    #[error("{path}: the order names document {doc} of shard {shard}, which does not exist")]
    NoSuchDocument { path: PathBuf, shard: usize, doc: usize },
    #[error("{0}: neither a mixture (mixture.json) nor a dataset (manifest.json)")]
    Unknown(PathBuf),
}

#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Documents of at least this many tokens count as long.
    pub long_threshold: u64,
    /// Flag a long-token share outside this range (a context-extension stage's ask).
    pub long_range: Option<(f64, f64)>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self { long_threshold: 4096, long_range: None }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Distribution {
    pub count: u64,
    pub mean: Option<f64>,
    pub p10: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
}

impl DomainAudit {
    /// The shares a table row shows, in percent: target, realised, first 1%, first 10%,
    /// pre-training, long.
    pub fn share_percentages(&self) -> [f64; 6] {
        [
            self.target_share,
            self.share,
            self.share_first_1pct,
            self.share_first_10pct,
            self.pretraining_share,
            self.long_share,
        ]
        .map(|s| 100.0 * s)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DomainAudit {
    pub name: String,
    /// The recipe domain (a bucket `web/q07` belongs to `web`).
    pub group: String,
    /// What the recipe's document rules kept, as `mix build` recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<SubsetSummary>,
    /// The score the subset was selected or bucketed by, over the stream's draws.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_column: Option<String>,
    pub score: Distribution,
    /// With `rehydrate`: draws by cluster-size band (`1` for documents in no band).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub draws_by_cluster_size: BTreeMap<String, u64>,
    pub documents: u64,
    pub tokens: u64,
    pub target_share: f64,
    pub share: f64,
    pub share_first_1pct: f64,
    pub share_first_10pct: f64,
    pub pretraining_share: f64,
    /// Share of this domain's tokens in documents of at least `long_threshold` tokens.
    pub long_share: f64,
    /// Documents per length bin (`[lo, hi)` tokens).
    pub length_histogram: Vec<(String, u64)>,
    pub quality: Distribution,
    pub language_score: Distribution,
    /// `step: reason` → documents removed while preparing this domain's datasets.
    pub removed: BTreeMap<String, u64>,
    /// `contaminated_BENCHMARK` → draws of documents that decontamination in `mark` mode kept
    /// with a `contamination` label (a document drawn twice counts twice, as everywhere here).
    pub marked: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Audit {
    pub kind: String,
    pub name: String,
    pub documents: u64,
    pub tokens: u64,
    pub overlap: Option<f64>,
    pub min_overlap: Option<f64>,
    pub long_threshold: u64,
    pub long_share: f64,
    pub domains: Vec<DomainAudit>,
    pub flags: Vec<String>,
}

/// Length bins: [0, 64), [64, 128), ... [32768, 65536), [65536, ∞).
const BIN_EDGES: [u64; 11] = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

fn bin_labels() -> Vec<String> {
    let mut labels = Vec::new();
    let mut lo = 0;
    for &hi in &BIN_EDGES {
        labels.push(format!("{lo}-{hi}"));
        lo = hi;
    }
    labels.push(format!("{lo}+"));
    labels
}

/// The histogram bin of a document of `length` tokens.
fn bin_of(length: u64) -> usize {
    BIN_EDGES.iter().position(|&edge| length < edge).unwrap_or(BIN_EDGES.len())
}

fn query_err(path: &Path) -> impl FnOnce(PolarsError) -> AuditError + '_ {
    move |source| AuditError::Query { path: path.to_path_buf(), source }
}

/// A sidecar's score columns as f64 (a missing column reads as nulls); `by`, the column a
/// subset was selected by, as `score`.
fn scan_scores(path: &Path, by: Option<&str>) -> Result<LazyFrame, AuditError> {
    let p = path.to_string_lossy().into_owned();
    let mut lf =
        LazyFrame::scan_parquet(PlRefPath::new(p.as_str()), ScanArgsParquet::default()).map_err(query_err(path))?;
    let schema = lf.collect_schema().map_err(query_err(path))?;
    let column = |name: &str, dtype: DataType| {
        if schema.contains(name) { col(name).cast(dtype) } else { lit(NULL).cast(dtype).alias(name) }
    };
    let score = match by {
        Some(by) => column(by, DataType::Float64).alias("score"),
        None => lit(NULL).cast(DataType::Float64).alias("score"),
    };
    Ok(lf.select([
        column("quality", DataType::Float64),
        column("language_score", DataType::Float64),
        column("contamination", DataType::String),
        column(CLUSTER_SIZE, DataType::Float64),
        score,
    ]))
}

fn f64_at(df: &DataFrame, name: &str, i: usize) -> Option<f64> {
    df.column(name).ok()?.cast(&DataType::Float64).ok()?.f64().ok()?.get(i)
}

fn str_at(df: &DataFrame, name: &str, i: usize) -> Option<String> {
    df.column(name).ok()?.str().ok()?.get(i).map(str::to_string)
}

/// What one pass over the order counts for a domain.
#[derive(Default)]
struct StreamCounts {
    documents: u64,
    tokens: u64,
    long_tokens: u64,
    histogram: [u64; BIN_EDGES.len() + 1],
}

/// Per-domain aggregates over the stream's documents (every draw counts: a document in its
/// second epoch counts twice).
///
/// Counts, tokens, long share and the length histogram come from one pass over the order with
/// document lengths from the shard indexes. The score distributions come from the sidecars in
/// polars: each sidecar is scanned with a column of how often the stream draws each of its
/// documents, and a document drawn k times enters the group-by k times (one filtered copy of
/// the scan per draw level), so no join of the order with the sidecars is ever materialised.
/// Memory: 4 bytes per document of the shards for the draw counts, plus the drawn documents'
/// two scores in polars (16 bytes per draw).
fn aggregate(
    order: &[OrderEntry],
    shards: &[(String, PathBuf, Option<PathBuf>)],
    subsets: &BTreeMap<String, SubsetSummary>,
    options: &AuditOptions,
    dir: &Path,
) -> Result<BTreeMap<String, DomainAudit>, AuditError> {
    let mut names: Vec<&String> = shards.iter().map(|s| &s.0).collect();
    names.sort();
    names.dedup();
    let domain_of_shard: Vec<usize> = shards.iter().map(|s| names.binary_search(&&s.0).expect("listed")).collect();
    let readers = shards
        .iter()
        .map(|s| shards::shard::ShardReader::open(&s.1).map_err(ManifestError::from))
        .collect::<Result<Vec<_>, _>>()?;
    let mut draws: Vec<Vec<u32>> = readers.iter().map(|r| vec![0; r.num_documents()]).collect();
    let mut counts: Vec<StreamCounts> = names.iter().map(|_| StreamCounts::default()).collect();
    for o in order {
        let (shard, doc) = (o.shard as usize, o.doc as usize);
        if shard >= readers.len() || doc >= readers[shard].num_documents() {
            return Err(AuditError::NoSuchDocument { path: dir.to_path_buf(), shard, doc });
        }
        let length = readers[shard].document_len(doc) as u64;
        let c = &mut counts[domain_of_shard[shard]];
        c.documents += 1;
        c.tokens += o.take as u64;
        if length >= options.long_threshold {
            c.long_tokens += o.take as u64;
        }
        c.histogram[bin_of(length)] += 1;
        draws[shard][doc] += 1;
    }

    let mut frames = Vec::new();
    for (k, (domain, _, sidecar)) in shards.iter().enumerate() {
        let Some(path) = sidecar else { continue };
        let most = draws[k].iter().copied().max().unwrap_or(0);
        if most == 0 {
            continue;
        }
        let by = subsets.get(domain).and_then(|s| s.by.as_deref());
        let drawn = scan_scores(path, by)?
            .with_columns([
                lit(Series::new("draws".into(), std::mem::take(&mut draws[k]))),
                lit(domain_of_shard[k] as u32).alias("domain"),
            ])
            .filter(col("draws").gt(lit(0u32)))
            .cache();
        for level in 1..=most {
            frames.push(drawn.clone().filter(col("draws").gt_eq(lit(level))));
        }
    }
    let quantile = |c: &str, q: f64, name: &str| col(c).quantile(lit(q), QuantileMethod::Nearest).alias(name);
    let mut marked: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); names.len()];
    let mut cluster_draws: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); names.len()];
    let scores = if frames.is_empty() {
        None
    } else {
        let drawn = concat(frames, UnionArgs::default()).map_err(query_err(dir))?;
        let labels = drawn
            .clone()
            .filter(col("contamination").is_not_null())
            .group_by([col("domain"), col("contamination")])
            .agg([len().alias("draws")])
            .collect()
            .map_err(|source| AuditError::Aggregate { path: dir.to_path_buf(), source })?;
        for r in 0..labels.height() {
            let (Some(domain), Some(label), Some(n)) =
                (f64_at(&labels, "domain", r), str_at(&labels, "contamination", r), f64_at(&labels, "draws", r))
            else {
                continue;
            };
            // "BENCHMARK: item ID" counts under the key of decontamination's stats.
            let benchmark = label.split(':').next().unwrap_or_default();
            *marked[domain as usize].entry(format!("contaminated_{benchmark}")).or_default() += n as u64;
        }
        let sizes = drawn
            .clone()
            .filter(col(CLUSTER_SIZE).is_not_null())
            .group_by([col("domain"), col(CLUSTER_SIZE)])
            .agg([len().alias("draws")])
            .collect()
            .map_err(|source| AuditError::Aggregate { path: dir.to_path_buf(), source })?;
        for r in 0..sizes.height() {
            let (Some(domain), Some(size), Some(n)) =
                (f64_at(&sizes, "domain", r), f64_at(&sizes, CLUSTER_SIZE, r), f64_at(&sizes, "draws", r))
            else {
                continue;
            };
            let Some(bands) = subsets.get(names[domain as usize]).and_then(rehydrate_bands) else { continue };
            let label = bands.iter().find(|b| b.contains(size as u64)).map_or("1".to_string(), |b| b.label.clone());
            *cluster_draws[domain as usize].entry(label).or_default() += n as u64;
        }
        let df = drawn
            .group_by([col("domain")])
            .agg([
                col("score").count().alias("score_count"),
                col("score").mean().alias("score_mean"),
                quantile("score", 0.1, "score_p10"),
                quantile("score", 0.5, "score_p50"),
                quantile("score", 0.9, "score_p90"),
                col("quality").count().alias("quality_count"),
                col("quality").mean().alias("quality_mean"),
                quantile("quality", 0.1, "quality_p10"),
                quantile("quality", 0.5, "quality_p50"),
                quantile("quality", 0.9, "quality_p90"),
                col("language_score").count().alias("language_count"),
                col("language_score").mean().alias("language_mean"),
                quantile("language_score", 0.1, "language_p10"),
                quantile("language_score", 0.5, "language_p50"),
                quantile("language_score", 0.9, "language_p90"),
            ])
            .collect()
            .map_err(|source| AuditError::Aggregate { path: dir.to_path_buf(), source })?;
        Some(df)
    };

    let labels = bin_labels();
    let mut out = BTreeMap::new();
    for (i, (name, c)) in names.iter().zip(&counts).enumerate() {
        if c.documents == 0 {
            continue;
        }
        let row = scores.as_ref().and_then(|df| (0..df.height()).find(|&r| f64_at(df, "domain", r) == Some(i as f64)));
        let dist = |prefix: &str| match (&scores, row) {
            (Some(df), Some(r)) => Distribution {
                count: f64_at(df, &format!("{prefix}_count"), r).unwrap_or(0.0) as u64,
                mean: f64_at(df, &format!("{prefix}_mean"), r),
                p10: f64_at(df, &format!("{prefix}_p10"), r),
                p50: f64_at(df, &format!("{prefix}_p50"), r),
                p90: f64_at(df, &format!("{prefix}_p90"), r),
            },
            _ => Distribution::default(),
        };
        out.insert(
            (*name).clone(),
            DomainAudit {
                name: (*name).clone(),
                documents: c.documents,
                tokens: c.tokens,
                long_share: if c.tokens > 0 { c.long_tokens as f64 / c.tokens as f64 } else { 0.0 },
                length_histogram: labels.iter().cloned().zip(c.histogram).collect(),
                quality: dist("quality"),
                language_score: dist("language"),
                score_column: subsets.get(*name).and_then(|s| s.by.clone()),
                score: dist("score"),
                draws_by_cluster_size: std::mem::take(&mut cluster_draws[i]),
                marked: std::mem::take(&mut marked[i]),
                ..Default::default()
            },
        );
    }
    Ok(out)
}

/// The cluster-size bands a rehydrated subset was built with.
fn rehydrate_bands(subset: &SubsetSummary) -> Option<Vec<Band>> {
    if subset.rehydration.is_empty() {
        return None;
    }
    let table: BTreeMap<String, u32> = subset.rehydration.iter().map(|b| (b.band.clone(), b.copies)).collect();
    parse_rehydrate(&table).ok()
}

/// Removals by `step: reason` in a dataset's `removed.parquet` (none when it has no such file).
/// A reason counts up to its first `:`, as in `stats.json` (the rest names the row's details: a
/// JSON error, the benchmark item a document held).
fn removals(dataset: &Path) -> Result<BTreeMap<String, u64>, AuditError> {
    let path = dataset.join("removed.parquet");
    let mut out = BTreeMap::new();
    if !path.is_file() {
        return Ok(out);
    }
    let p = path.to_string_lossy().into_owned();
    let df = LazyFrame::scan_parquet(PlRefPath::new(p.as_str()), ScanArgsParquet::default())
        .map_err(query_err(&path))?
        .group_by([col("step"), col("reason")])
        .agg([len().alias("documents")])
        .collect()
        .map_err(query_err(&path))?;
    for i in 0..df.height() {
        let reason = str_at(&df, "reason", i).unwrap_or_default();
        let key = format!("{}: {}", str_at(&df, "step", i).unwrap_or_default(), reason.split(':').next().unwrap_or(""));
        *out.entry(key).or_default() += f64_at(&df, "documents", i).unwrap_or(0.0) as u64;
    }
    Ok(out)
}

/// Share of each domain's tokens within the first `fraction` of the stream's tokens.
fn window_shares(order: &[OrderEntry], shard_domain: &[String], fraction: f64) -> BTreeMap<String, f64> {
    let total: u64 = order.iter().map(|o| o.take as u64).sum();
    let limit = (total as f64 * fraction).ceil() as u64;
    let mut per: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen = 0u64;
    for o in order {
        if seen >= limit {
            break;
        }
        *per.entry(shard_domain[o.shard as usize].clone()).or_default() += o.take as u64;
        seen += o.take as u64;
    }
    per.into_iter().map(|(d, t)| (d, t as f64 / seen.max(1) as f64)).collect()
}

/// Audit a mixture folder (written by `midtrain mix build`).
pub fn audit_mixture(dir: &Path, options: &AuditOptions) -> Result<Audit, AuditError> {
    let mixture = Mixture::load(dir)?;
    mixture.verify_datasets()?;
    let order = mixture.order(dir)?;
    let shard_domain: Vec<String> = mixture.shards.iter().map(|s| s.domain.clone()).collect();
    let shards: Vec<(String, PathBuf, Option<PathBuf>)> =
        mixture.shards.iter().map(|s| (s.domain.clone(), s.prefix.clone(), s.sidecar.clone())).collect();
    let subsets: BTreeMap<String, SubsetSummary> =
        mixture.domains.iter().filter_map(|d| Some((d.name.clone(), d.subset.clone()?))).collect();
    let mut per = aggregate(&order, &shards, &subsets, options, dir)?;
    let (first1, first10, whole) = (
        window_shares(&order, &shard_domain, 0.01),
        window_shares(&order, &shard_domain, 0.10),
        window_shares(&order, &shard_domain, 1.0),
    );
    let mut domains = Vec::new();
    for md in &mixture.domains {
        let mut d = per.remove(&md.name).unwrap_or_else(|| DomainAudit { name: md.name.clone(), ..Default::default() });
        d.group = md.group.clone();
        d.subset = md.subset.clone();
        d.target_share = md.share;
        d.share = whole.get(&md.name).copied().unwrap_or(0.0);
        d.share_first_1pct = first1.get(&md.name).copied().unwrap_or(0.0);
        d.share_first_10pct = first10.get(&md.name).copied().unwrap_or(0.0);
        // A bucket's part of its domain's pre-training share is its part of the domain.
        let group_share: f64 = mixture.domains.iter().filter(|o| o.group == md.group).map(|o| o.share).sum();
        let within = if group_share > 0.0 { md.share / group_share } else { 0.0 };
        d.pretraining_share = mixture.pretraining.get(&md.group).copied().unwrap_or(0.0) * within;
        // Removals belong to the recipe domain: its first bucket shows them.
        let first_of_group = mixture.domains.iter().find(|o| o.group == md.group).is_some_and(|o| o.name == md.name);
        let mut datasets: Vec<&PathBuf> =
            mixture.shards.iter().filter(|s| s.domain == md.name && first_of_group).map(|s| &s.dataset).collect();
        datasets.dedup();
        for ds in datasets {
            for (k, v) in removals(ds)? {
                *d.removed.entry(k).or_default() += v;
            }
        }
        domains.push(d);
    }
    // Pre-training shares are per recipe domain: a domain's buckets count together.
    let mut realised: BTreeMap<String, f64> = BTreeMap::new();
    for d in &domains {
        *realised.entry(d.group.clone()).or_default() += d.share;
    }
    let overlap_value = overlap(&mixture.pretraining, &realised);
    let mut audit = Audit {
        kind: "mixture".into(),
        name: mixture.name.clone(),
        documents: order.len() as u64,
        tokens: order.iter().map(|o| o.take as u64).sum(),
        overlap: Some(overlap_value),
        min_overlap: Some(mixture.min_overlap),
        long_threshold: options.long_threshold,
        domains,
        ..Default::default()
    };
    finish(&mut audit, options);
    Ok(audit)
}

/// Audit one prepared dataset folder (its shards and sidecars, as one domain).
pub fn audit_dataset(dir: &Path, options: &AuditOptions) -> Result<Audit, AuditError> {
    let manifest = DatasetManifest::load(dir)?;
    manifest.verify_checksums(dir)?;
    let mut order = Vec::new();
    let mut shards = Vec::new();
    for (k, (entry, prefix)) in manifest.shards.iter().zip(manifest.shard_prefixes(dir)).enumerate() {
        let reader = shards::shard::ShardReader::open(&prefix).map_err(ManifestError::from)?;
        for i in 0..reader.num_documents() {
            order.push(OrderEntry { shard: k as u32, doc: i as u32, take: reader.document_len(i) as u32 });
        }
        shards.push((manifest.domain.clone(), prefix, entry.sidecar.as_ref().map(|s| dir.join(s))));
    }
    let mut per = aggregate(&order, &shards, &BTreeMap::new(), options, dir)?;
    let mut d = per
        .remove(&manifest.domain)
        .unwrap_or_else(|| DomainAudit { name: manifest.domain.clone(), ..Default::default() });
    (d.target_share, d.share, d.share_first_1pct, d.share_first_10pct) = (1.0, 1.0, 1.0, 1.0);
    d.group = manifest.domain.clone();
    d.removed = removals(dir)?;
    let mut audit = Audit {
        kind: "dataset".into(),
        name: manifest.domain.clone(),
        documents: manifest.documents,
        tokens: manifest.tokens,
        long_threshold: options.long_threshold,
        domains: vec![d],
        ..Default::default()
    };
    finish(&mut audit, options);
    Ok(audit)
}

/// A mixture folder or a dataset folder.
pub fn audit_path(path: &Path, options: &AuditOptions) -> Result<Audit, AuditError> {
    if path.join("mixture.json").is_file() {
        audit_mixture(path, options)
    } else if path.join(shards::manifest::MANIFEST_FILE).is_file() {
        audit_dataset(path, options)
    } else {
        Err(AuditError::Unknown(path.to_path_buf()))
    }
}

/// Overall long share and the flags.
fn finish(audit: &mut Audit, options: &AuditOptions) {
    let long_tokens: f64 = audit.domains.iter().map(|d| d.long_share * d.tokens as f64).sum();
    audit.long_share = if audit.tokens > 0 { long_tokens / audit.tokens as f64 } else { 0.0 };
    if let (Some(o), Some(floor)) = (audit.overlap, audit.min_overlap)
        && o + 1e-9 < floor
    {
        audit.flags.push(format!("overlap with pre-training {o:.3} is below the floor {floor:.3}"));
    }
    if audit.kind == "mixture" {
        for d in &audit.domains {
            if (d.share - d.target_share).abs() > 0.01 {
                audit.flags.push(format!(
                    "{}: realised share {:.2}% is more than 1 point off its target {:.2}%",
                    d.name,
                    100.0 * d.share,
                    100.0 * d.target_share
                ));
            }
        }
    }
    if let Some((lo, hi)) = options.long_range
        && !(lo..=hi).contains(&audit.long_share)
    {
        audit.flags.push(format!(
            "long-document share {:.1}% (documents ≥ {} tokens) is outside the asked range {:.1}%–{:.1}%",
            100.0 * audit.long_share,
            options.long_threshold,
            100.0 * lo,
            100.0 * hi
        ));
    }
}
