//! Building a mixture from a plan: a deterministic blended document order at token granularity,
//! written as `order.bin`, plus `mixture.json` and exports for Megatron-LM and OLMo.
//!
//! Within a domain, documents come in a seeded shuffle per epoch (all shards of the domain
//! together), so no document repeats before the domain is exhausted. Domains are interleaved
//! like Megatron's BlendedDataset but by tokens: the next document comes from the domain with
//! the largest deficit `share_d · max(emitted, 1) − emitted_d` (first on ties), until every
//! domain has its planned tokens; a domain's last document is cut to land on its plan exactly.
//! Early in the stream a share can only be as exact as the documents are short relative to the
//! stream so far.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::select::SubsetSummary;
use shards::manifest::{DatasetManifest, ManifestError, ShardEntry};
use shards::shard::ShardReader;
use util::fsutil::write_atomic;
use util::rng::splitmix64;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid mixture: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: format {found:?} is not {MIXTURE_FORMAT:?}")]
    Format { path: PathBuf, found: String },
    #[error("{path}: order file does not match mixture.json (corrupted?); rebuild the mixture")]
    OrderChanged { path: PathBuf },
    #[error("domain {domain:?} has no documents to draw from")]
    Empty { domain: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io { path: path.to_path_buf(), source }
}

/// One shard of the mixture and the domain it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MixtureShard {
    pub domain: String,
    /// Absolute shard prefix (`.bin` / `.idx`).
    pub prefix: PathBuf,
    /// The dataset folder it belongs to, and its per-document sidecar.
    pub dataset: PathBuf,
    pub sidecar: Option<PathBuf>,
    pub documents: u64,
    pub tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MixtureDomain {
    pub name: String,
    /// The recipe domain it belongs to (a bucket `web/q07` belongs to `web`).
    pub group: String,
    pub share: f64,
    pub planned_tokens: u64,
    pub tokens: u64,
    pub documents: u64,
    /// Passes over the domain's documents (rehydrated copies included).
    pub epochs: f64,
    /// What the recipe's document rules kept (where, select, buckets, rehydrate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<SubsetSummary>,
}

/// A shard that the Megatron and OLMo exports name: one of the datasets' own, or, for a domain
/// that is a document subset, one that `mix build` wrote with just those documents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportShard {
    pub domain: String,
    /// Absolute shard prefix.
    pub prefix: PathBuf,
    pub documents: u64,
    pub tokens: u64,
    /// Written by `mix build` (under `subsets/`), holding a subset of the domain's documents.
    pub subset: bool,
}

/// `mixture.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    pub format: String,
    pub name: String,
    pub seed: u64,
    pub budget_tokens: u64,
    pub tokens: u64,
    pub documents: u64,
    pub overlap: f64,
    pub min_overlap: f64,
    /// The base model's pre-training distribution, normalised.
    pub pretraining: std::collections::BTreeMap<String, f64>,
    pub domains: Vec<MixtureDomain>,
    pub shards: Vec<MixtureShard>,
    /// The shards `megatron_data_path.txt` and `olmo_data.yaml` name.
    pub exports: Vec<ExportShard>,
    /// The blended order: `order.bin`, little-endian u32 triples (shard index, document index,
    /// tokens taken from the start of the document — all of it but for a domain's last one).
    pub order_file: String,
    pub order_checksum: String,
}

pub const MIXTURE_FORMAT: &str = "midtrain-mixture/2";

/// One entry of the blended order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderEntry {
    pub shard: u32,
    pub doc: u32,
    /// Tokens taken from the start of the document.
    pub take: u32,
}

impl Mixture {
    /// Read `DIR/mixture.json`.
    pub fn load(dir: &Path) -> Result<Self, BuildError> {
        let path = dir.join("mixture.json");
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let mixture: Self =
            serde_json::from_slice(&bytes).map_err(|source| BuildError::Json { path: path.clone(), source })?;
        if mixture.format != MIXTURE_FORMAT {
            return Err(BuildError::Format { path, found: mixture.format });
        }
        Ok(mixture)
    }

    /// Check every shard of the datasets the mixture draws from against their manifests'
    /// checksums (the error names the first file that changed since the mixture was built).
    pub fn verify_datasets(&self) -> Result<(), BuildError> {
        let mut datasets: Vec<&PathBuf> = self.shards.iter().map(|s| &s.dataset).collect();
        datasets.sort();
        datasets.dedup();
        for dataset in datasets {
            DatasetManifest::load(dataset)?.verify_checksums(dataset)?;
        }
        Ok(())
    }

    /// The blended order, checked against the checksum in `mixture.json`.
    pub fn order(&self, dir: &Path) -> Result<Vec<OrderEntry>, BuildError> {
        let path = dir.join(&self.order_file);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let checksum = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
        if bytes.len() % 12 != 0 || checksum != self.order_checksum {
            return Err(BuildError::OrderChanged { path });
        }
        let u32_at = |c: &[u8], i: usize| u32::from_le_bytes(c[i..i + 4].try_into().unwrap());
        Ok(bytes
            .chunks(12)
            .map(|c| OrderEntry { shard: u32_at(c, 0), doc: u32_at(c, 4), take: u32_at(c, 8) })
            .collect())
    }
}

/// A domain's documents as (shard index, document index, tokens), drawn epoch by epoch.
struct DomainStream {
    docs: Vec<(u32, u32, u32)>,
    order: Vec<u32>,
    next: usize,
    epoch: u64,
    seed: u64,
}

impl DomainStream {
    fn reshuffle(&mut self) {
        let mut state = self.seed ^ self.epoch.wrapping_mul(0xD1B5_4A32_D192_ED03);
        self.order = (0..self.docs.len() as u32).collect();
        for i in (1..self.order.len()).rev() {
            let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
            self.order.swap(i, j);
        }
        self.next = 0;
    }

    fn draw(&mut self) -> (u32, u32, u32) {
        if self.next == self.order.len() {
            self.epoch += 1;
            self.reshuffle();
        }
        let d = self.docs[self.order[self.next] as usize];
        self.next += 1;
        d
    }
}

/// Build the mixture of `plan` into `out` (order.bin, mixture.json, exports).
pub fn build(plan: &Plan, out: &Path) -> Result<Mixture, BuildError> {
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let old_subsets = out.join("subsets");
    if old_subsets.is_dir() {
        std::fs::remove_dir_all(&old_subsets).map_err(io_err(&old_subsets))?;
    }
    let mut shards = Vec::new();
    let mut streams = Vec::new();
    // OLMo-core reads token files as one unsigned dtype; Megatron's int32 files are uint32 there.
    let mut wide_tokens = false;
    let mut exports = Vec::new();
    let mut subsets = Vec::new();
    for (d_index, d) in plan.domains.iter().enumerate() {
        let mut docs = Vec::new();
        // Mixture shard index of each (dataset, shard) of the domain.
        let mut shard_of: Vec<Vec<u32>> = Vec::new();
        let mut manifest_of_domain = None;
        for dataset in &d.datasets {
            let manifest = DatasetManifest::load(dataset)?;
            manifest.verify_checksums(dataset)?;
            wide_tokens |= manifest.dtype != shards::shard::TokenDtype::Uint16;
            shard_of.push(Vec::new());
            for (entry, prefix) in manifest.shards.iter().zip(manifest.shard_prefixes(dataset)) {
                let reader = ShardReader::open(&prefix).map_err(ManifestError::from)?;
                let shard_index = shards.len() as u32;
                shard_of.last_mut().expect("pushed").push(shard_index);
                if d.picks.is_none() {
                    for i in 0..reader.num_documents() {
                        docs.push((shard_index, i as u32, reader.document_len(i) as u32));
                    }
                }
                shards.push(MixtureShard {
                    domain: d.name.clone(),
                    prefix: std::fs::canonicalize(shards::shard::shard_paths(&prefix).1)
                        .map(|idx| shards::shard::strip_shard_extension(&idx))
                        .unwrap_or(prefix.clone()),
                    dataset: std::fs::canonicalize(dataset).unwrap_or(dataset.clone()),
                    sidecar: entry.sidecar.as_ref().map(|s| {
                        let path = dataset.join(s);
                        std::fs::canonicalize(&path).unwrap_or(path)
                    }),
                    documents: reader.num_documents() as u64,
                    tokens: reader.num_tokens(),
                });
            }
            manifest_of_domain.get_or_insert(manifest);
        }
        if let Some(picks) = &d.picks {
            for p in picks.iter() {
                let shard = shard_of[p.dataset as usize][p.shard as usize];
                docs.extend(std::iter::repeat_n((shard, p.doc, p.tokens), p.copies as usize));
            }
            if d.tokens > 0 {
                subsets.push((d_index, shard_of, manifest_of_domain));
            }
        } else if d.tokens > 0 {
            for s in shards.iter().filter(|s| s.domain == d.name) {
                exports.push(ExportShard {
                    domain: d.name.clone(),
                    prefix: s.prefix.clone(),
                    documents: s.documents,
                    tokens: s.tokens,
                    subset: false,
                });
            }
        }
        if docs.is_empty() && d.tokens > 0 {
            return Err(BuildError::Empty { domain: d.name.clone() });
        }
        let seed = plan.seed ^ (d_index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut stream = DomainStream { docs, order: Vec::new(), next: 0, epoch: 0, seed };
        stream.reshuffle();
        streams.push(stream);
    }

    let n = plan.domains.len();
    let mut emitted = vec![0u64; n];
    let mut documents = vec![0u64; n];
    let mut total = 0u64;
    let order_path = out.join("order.bin");
    let tmp = util::fsutil::temp_path(&order_path);
    let mut order = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io_err(&tmp))?);
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    loop {
        // Largest deficit among domains that still need tokens.
        let mut best: Option<(usize, f64)> = None;
        for (i, d) in plan.domains.iter().enumerate() {
            if emitted[i] >= d.tokens || streams[i].docs.is_empty() {
                continue;
            }
            let deficit = d.share * (total.max(1) as f64) - emitted[i] as f64;
            if best.is_none_or(|(_, b)| deficit > b) {
                best = Some((i, deficit));
            }
        }
        let Some((i, _)) = best else { break };
        let (shard, doc, len) = streams[i].draw();
        let len = len.min((plan.domains[i].tokens - emitted[i]).min(u32::MAX as u64) as u32);
        let mut record = [0u8; 12];
        record[..4].copy_from_slice(&shard.to_le_bytes());
        record[4..8].copy_from_slice(&doc.to_le_bytes());
        record[8..].copy_from_slice(&len.to_le_bytes());
        order.write_all(&record).map_err(io_err(&tmp))?;
        hasher.update(&record);
        emitted[i] += len as u64;
        documents[i] += 1;
        total += len as u64;
    }
    let file = order.into_inner().map_err(|e| BuildError::Io { path: tmp.clone(), source: e.into_error() })?;
    file.sync_all().map_err(io_err(&tmp))?;
    util::fsutil::durable_rename(&tmp, &order_path).map_err(io_err(&order_path))?;
    for (d_index, shard_of, manifest) in subsets {
        let d = &plan.domains[d_index];
        let manifest = manifest.expect("a domain with documents has a dataset");
        exports.push(write_subset(d, &shard_of, &shards, &manifest, out)?);
    }
    exports.sort_by_key(|e| plan.domains.iter().position(|d| d.name == e.domain));

    let mixture = Mixture {
        format: MIXTURE_FORMAT.into(),
        name: plan.name.clone(),
        seed: plan.seed,
        budget_tokens: plan.budget_tokens,
        tokens: total,
        documents: documents.iter().sum(),
        overlap: plan.overlap,
        min_overlap: plan.min_overlap,
        pretraining: plan.pretraining.clone(),
        domains: plan
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| MixtureDomain {
                name: d.name.clone(),
                group: d.group.clone(),
                share: d.share,
                planned_tokens: d.tokens,
                tokens: emitted[i],
                documents: documents[i],
                epochs: if d.available_tokens == 0 { 0.0 } else { emitted[i] as f64 / d.available_tokens as f64 },
                subset: d.subset.clone(),
            })
            .collect(),
        shards,
        exports,
        order_file: "order.bin".into(),
        order_checksum: format!("{:032x}", hasher.digest128()),
    };
    // A subset shard holds each document as often as one pass does, so OLMo-core may repeat it
    // max_epochs / (most copies) times.
    let max_epochs: Vec<f64> = plan.domains.iter().map(|d| d.max_epochs / d.most_copies as f64).collect();
    write_exports(&mixture, &max_epochs, if wide_tokens { "uint32" } else { "uint16" }, out)?;
    let mut json = serde_json::to_vec_pretty(&mixture).expect("serialisable");
    json.push(b'\n');
    write_atomic(&out.join("mixture.json"), &json).map_err(io_err(&out.join("mixture.json")))?;
    Ok(mixture)
}

/// Where `mix build` writes a subset domain's own dataset (`web/q07` → `subsets/web_q07`).
pub fn subset_folder(out: &Path, domain: &str) -> PathBuf {
    out.join("subsets").join(domain.replace('/', "_"))
}

/// Write the documents of one pass over a subset domain (each as many times as the pass holds
/// it, in the datasets' order) as a dataset of its own: one shard, its loss mask when the
/// source shards have one, and a manifest, so the exports name exactly the subset.
fn write_subset(
    d: &crate::plan::DomainPlan,
    shard_of: &[Vec<u32>],
    shards: &[MixtureShard],
    source: &DatasetManifest,
    out: &Path,
) -> Result<ExportShard, BuildError> {
    let folder = subset_folder(out, &d.name);
    std::fs::create_dir_all(&folder).map_err(io_err(&folder))?;
    let name = d.name.replace('/', "_");
    let prefix = folder.join(format!("{name}_00000"));
    let picks = d.picks.as_ref().expect("a subset domain");
    let shard_err = |e: shards::shard::ShardError| BuildError::Manifest(ManifestError::from(e));
    let mut readers = std::collections::BTreeMap::new();
    for p in picks.iter() {
        let index = shard_of[p.dataset as usize][p.shard as usize] as usize;
        if let std::collections::btree_map::Entry::Vacant(slot) = readers.entry(index) {
            slot.insert(ShardReader::open(&shards[index].prefix).map_err(shard_err)?);
        }
    }
    let with_mask = readers.values().all(|r| r.has_loss_mask());
    let mut writer = shards::shard::ShardWriter::create(&prefix, source.tokenizer.vocab_size).map_err(shard_err)?;
    let mask_path = shards::shard::loss_mask_path(&prefix);
    let mask_tmp = util::fsutil::temp_path(&mask_path);
    let mut mask = match with_mask {
        true => Some(std::io::BufWriter::new(std::fs::File::create(&mask_tmp).map_err(io_err(&mask_tmp))?)),
        false => None,
    };
    for p in picks.iter() {
        let reader = &readers[&(shard_of[p.dataset as usize][p.shard as usize] as usize)];
        let tokens = reader.document(p.doc as usize).map_err(shard_err)?.to_vec();
        for _ in 0..p.copies {
            writer.append(&tokens).map_err(shard_err)?;
            if let (Some(mask), Some(bytes)) = (&mut mask, reader.document_loss_mask(p.doc as usize)) {
                mask.write_all(bytes).map_err(io_err(&mask_tmp))?;
            }
        }
    }
    let summary = writer.finish().map_err(shard_err)?;
    let mut entry = ShardEntry::from_summary(&folder, &summary)?;
    if let Some(mask) = mask {
        let file = mask.into_inner().map_err(|e| BuildError::Io { path: mask_tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io_err(&mask_tmp))?;
        util::fsutil::durable_rename(&mask_tmp, &mask_path).map_err(io_err(&mask_path))?;
        entry.loss_mask = Some(format!("{name}_00000.loss"));
        entry.loss_mask_checksum = Some(util::fsutil::file_checksum(&mask_path).map_err(io_err(&mask_path))?);
    }
    let config = serde_json::json!({
        "subset_of": d.group,
        "datasets": d.datasets,
        "rule": d.subset.as_ref().map(|s| s.rule.clone()),
    });
    let manifest = DatasetManifest::new(d.name.clone(), source.tokenizer.clone(), vec![entry.clone()], config);
    manifest.write(&folder)?;
    Ok(ExportShard {
        domain: d.name.clone(),
        prefix: std::fs::canonicalize(shards::shard::shard_paths(&prefix).1)
            .map(|idx| shards::shard::strip_shard_extension(&idx))
            .unwrap_or(prefix),
        documents: entry.documents,
        tokens: entry.tokens,
        subset: true,
    })
}

/// `megatron_data_path.txt`: `--data-path` weights and prefixes (a shard's weight is its
/// domain's share split by the shard's tokens); `olmo_data.yaml`: OLMo-core's
/// `SourceMixtureList` (each domain's token files, target ratio and most repetitions), with the
/// token dtype OLMo-core must read them as.
fn write_exports(mixture: &Mixture, max_epochs: &[f64], olmo_dtype: &str, out: &Path) -> Result<(), BuildError> {
    let mut blend = String::new();
    for d in &mixture.domains {
        let shards: Vec<&ExportShard> = mixture.exports.iter().filter(|s| s.domain == d.name).collect();
        let tokens: u64 = shards.iter().map(|s| s.tokens).sum();
        for s in shards {
            let weight = if tokens == 0 { 0.0 } else { d.share * s.tokens as f64 / tokens as f64 };
            blend.push_str(&format!("{weight:.10} {}\n", s.prefix.display()));
        }
    }
    write_atomic(&out.join("megatron_data_path.txt"), blend.as_bytes()).map_err(io_err(out))?;
    let quoted = |s: &str| serde_json::to_string(s).expect("a string");
    let mut yaml = format!(
        "# OLMo-core sources of mixture {name}, for olmo_core.data.source_mixture.SourceMixtureList.from_yaml.\n\
         # Token files: dtype {olmo_dtype} (NumpyDatasetDType.{olmo_dtype} in NumpyFSLDatasetConfig), EOS after\n\
         # every document. The mixture holds {tokens} tokens: pass requested_tokens = {tokens} to\n\
         # SourceMixtureDatasetConfig; max_repetition_ratio is the recipe's max_epochs.\n\
         sources:\n",
        name = quoted(&mixture.name),
        tokens = mixture.tokens,
    );
    for (d, max_epochs) in mixture.domains.iter().zip(max_epochs) {
        if !mixture.exports.iter().any(|s| s.domain == d.name) {
            continue;
        }
        yaml.push_str(&format!(
            "- source_name: {}\n  target_ratio: {:.10}\n  max_repetition_ratio: {max_epochs}\n  paths:\n",
            quoted(&d.name),
            d.share
        ));
        for s in mixture.exports.iter().filter(|s| s.domain == d.name) {
            yaml.push_str(&format!("  - {}\n", quoted(&format!("{}.bin", s.prefix.display()))));
        }
    }
    write_atomic(&out.join("olmo_data.yaml"), yaml.as_bytes()).map_err(io_err(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Recipe;
    use shards::manifest::{ShardEntry, TokenizerIdentity};
    use shards::shard::ShardWriter;

    /// A dataset of `docs` documents with lengths from a small generator.
    fn dataset(dir: &Path, name: &str, docs: usize, mean: usize) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        let mut w = ShardWriter::create(path.join(format!("{name}_0")), 1000).unwrap();
        let mut state = name.len() as u64;
        for _ in 0..docs {
            let len = 1 + (splitmix64(&mut state) % (2 * mean as u64)) as usize;
            w.append(&vec![7u32; len]).unwrap();
        }
        let summary = w.finish().unwrap();
        let entry = ShardEntry::from_summary(&path, &summary).unwrap();
        let tok = TokenizerIdentity::new("h", 1000, 0, None);
        DatasetManifest::new(name, tok, vec![entry], serde_json::Value::Null).write(&path).unwrap();
        path
    }

    fn recipe(dir: &Path, seed: u64) -> Recipe {
        let text = format!(
            r#"
            name = "t"
            budget_tokens = 400000
            seed = {seed}
            min_overlap = 0.0
            [pretraining]
            web = 1
            [[domain]]
            name = "web"
            datasets = [{:?}]
            weight = 0.6
            [[domain]]
            name = "math"
            datasets = [{:?}]
            weight = 0.3
            max_epochs = 5
            [[domain]]
            name = "books"
            datasets = [{:?}]
            weight = 0.1
            max_epochs = 2
            "#,
            dataset(dir, "web", 20000, 20),
            dataset(dir, "math", 5000, 10),
            dataset(dir, "books", 500, 100),
        );
        Recipe::parse(&text).unwrap()
    }

    fn order(out: &Path) -> Vec<(u32, u32, u32)> {
        let u32_at = |c: &[u8], i: usize| u32::from_le_bytes(c[i..i + 4].try_into().unwrap());
        std::fs::read(out.join("order.bin"))
            .unwrap()
            .chunks(12)
            .map(|c| (u32_at(c, 0), u32_at(c, 4), u32_at(c, 8)))
            .collect()
    }

    #[test]
    fn blend_is_deterministic_on_target_and_exhausts_before_repeating() {
        let dir = tempfile::tempdir().unwrap();
        let plan = crate::plan::plan(&recipe(dir.path(), 3)).unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let mixture = build(&plan, &a).unwrap();
        build(&plan, &b).unwrap();
        assert_eq!(std::fs::read(a.join("order.bin")).unwrap(), std::fs::read(b.join("order.bin")).unwrap());
        assert_eq!(std::fs::read(a.join("mixture.json")).unwrap(), std::fs::read(b.join("mixture.json")).unwrap());

        // Realised shares: within 0.5 points overall and 1 point over the first 1% of tokens.
        let lengths: Vec<Vec<u32>> = mixture
            .shards
            .iter()
            .map(|s| {
                let r = ShardReader::open(&s.prefix).unwrap();
                (0..r.num_documents()).map(|i| r.document_len(i) as u32).collect()
            })
            .collect();
        let o = order(&a);
        let total: u64 = o.iter().map(|&(_, _, take)| take as u64).sum();
        assert_eq!(total, mixture.tokens);
        assert_eq!(total, plan.budget_tokens, "every domain lands on its plan");
        let cut = o.iter().filter(|&&(s, d, take)| take != lengths[s as usize][d as usize]).count();
        assert!(cut <= 3, "at most each domain's last document is cut");
        for (share_of_stream, tolerance) in [(1.0, 0.005), (0.01, 0.01), (0.1, 0.01)] {
            let limit = (total as f64 * share_of_stream) as u64;
            let mut per = [0u64; 3];
            let mut seen = 0;
            for &(s, _, take) in &o {
                if seen >= limit {
                    break;
                }
                per[s as usize] += take as u64;
                seen += take as u64;
            }
            for (i, d) in plan.domains.iter().enumerate() {
                let realised = per[i] as f64 / seen as f64;
                assert!(
                    (realised - d.share).abs() <= tolerance,
                    "{} over {share_of_stream}: {realised} vs {}",
                    d.name,
                    d.share
                );
            }
        }
        // Within a domain, no document repeats before all of its documents were drawn.
        for shard in 0..3u32 {
            let docs: Vec<u32> = o.iter().filter(|(s, _, _)| *s == shard).map(|(_, d, _)| *d).collect();
            let n = lengths[shard as usize].len();
            for epoch in docs.chunks(n) {
                let mut sorted = epoch.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), epoch.len(), "shard {shard}: a repeat inside an epoch");
            }
        }
        // Another seed gives another order with the same per-domain totals' tolerance.
        let c = dir.path().join("c");
        build(&crate::plan::plan(&recipe(dir.path(), 4)).unwrap(), &c).unwrap();
        assert_ne!(order(&a), order(&c));
    }

    #[test]
    fn exports_list_every_shard_with_weights_summing_to_one() {
        let dir = tempfile::tempdir().unwrap();
        let plan = crate::plan::plan(&recipe(dir.path(), 1)).unwrap();
        let out = dir.path().join("m");
        let mixture = build(&plan, &out).unwrap();
        let blend = std::fs::read_to_string(out.join("megatron_data_path.txt")).unwrap();
        let mut sum = 0.0;
        for line in blend.lines() {
            let (w, prefix) = line.split_once(' ').unwrap();
            sum += w.parse::<f64>().unwrap();
            assert!(ShardReader::open(prefix).is_ok(), "{prefix} is a readable shard prefix");
        }
        assert!((sum - 1.0).abs() < 1e-6);
        let yaml = std::fs::read_to_string(out.join("olmo_data.yaml")).unwrap();
        assert_eq!(yaml.matches(".bin\"\n").count(), 3, "{yaml}");
        assert!(yaml.contains("dtype uint16"), "{yaml}");
        assert_eq!(yaml.matches("- source_name: ").count(), mixture.domains.len(), "{yaml}");
    }
}
