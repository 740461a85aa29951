//! Deduplication: exact (xxh3-128 of normalised text) and near (MinHash LSH with optional
//! Jaccard verification), union-find clustering, one deterministic keeper per cluster.
//!
//! Four stages exchange files in a work folder ([`layout`]), so they can run on different
//! machines (`--task i --tasks n` splits the inputs by file):
//!
//! 1. [`signatures`] (per task): hash every document; band keys, text hashes, compact
//!    signatures and ids go to sorted files, spilling runs beyond the memory budget;
//! 2. [`pairs`] (once): merge every task's band files, equal keys give candidate pairs;
//! 3. [`clusters`] (once): verify candidates on their exact shingle sets (read again from the
//!    inputs, see [`shingle_sets`]), pick keepers, list removals;
//! 4. [`apply`] (per task): re-read the task's inputs and write kept and removed parquet.
//!
//! Documents are numbered by input file and row, so the same documents are removed however
//! the files are split into tasks. The index never holds text: per document it keeps
//! `bands × 72` bytes of band records and 24 bytes of text-hash record in sort buffers (spilled
//! to disk as sorted runs beyond the memory budget); the doc record (40 bytes + the id) and
//! the compact signature (4 bytes per hash) go straight to disk. Clustering holds 8 + 8 bytes
//! per accepted pair and 24 per document in a candidate pair; with verification the shingle
//! sets of those documents go to a memory-mapped file (8 bytes per distinct shingle).

mod explain;
mod keepers;
pub mod layout;
pub mod minhash;
pub mod normalize;
pub mod records;
mod settings;
mod shingle_sets;
mod stages;
pub mod union_find;

use serde::{Deserialize, Serialize};

pub use explain::explain;
pub use minhash::{MinHashParams, WordSplit};
pub use normalize::Normalization;
pub use settings::{DedupSettings, Numbers, Preset, SettingsError};
pub use stages::{DedupError, DedupJob, DedupStats, apply, clusters, finish, pairs, run_all, signatures};

/// Which document of a cluster is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Keeper {
    /// The first in input order (file order, then row).
    #[default]
    First,
    /// The highest `quality` score (ties: the first in input order).
    Quality,
    /// datatrove's rule, for parity: the union-find root after uniting pairs band by band
    /// (union by size, ties to the pair's first document).
    Root,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NearConfig {
    pub minhash: MinHashParams,
    pub normalization: Normalization,
    /// Keep a candidate pair only when the exact Jaccard similarity of its shingle sets reaches
    /// this (and, unless the keeper rule is `Root`, remove a document only for a keeper at least
    /// this similar).
    pub verify_threshold: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DedupConfig {
    /// Remove exact duplicates (equal hashes of the normalised text) even where MinHash misses them.
    pub exact: bool,
    /// Normalisation of the text before exact hashing; also decides which removals count as
    /// `exact` (same hash as the kept document) rather than `near`.
    pub exact_normalization: Normalization,
    /// Near-dedup settings; `None` for exact only.
    pub near: Option<NearConfig>,
    pub keep: Keeper,
    /// Bytes of sort buffers before spilling sorted runs to disk.
    pub memory_budget: usize,
}

impl DedupConfig {
    /// midtrain's default: exact dedup, then 3-word shingles in 20 bands × 6 rows (candidates
    /// from Jaccard ≈ 0.6 down), each candidate verified at an exact Jaccard ≥ 0.5. Chosen
    /// on a labelled set for recall of edited copies and copies wrapped in boilerplate without
    /// merging documents that share only boilerplate (see docs/benchmarks.md).
    pub fn recommended() -> Self {
        Self {
            exact: true,
            exact_normalization: Normalization::Whitespace,
            near: Some(NearConfig {
                minhash: MinHashParams {
                    ngram: 3,
                    bands: 20,
                    rows: 6,
                    seed: 1,
                    words: WordSplit::Whitespace,
                    shingle_short_documents: true,
                },
                normalization: Normalization::Fineweb,
                verify_threshold: Some(0.5),
            }),
            keep: Keeper::First,
            memory_budget: 1 << 30,
        }
    }

    /// FineWeb's setting, bit-compatible with datatrove 0.10's MinHash stages: 5-word shingles
    /// over spaCy words of the normalised text, 14 bands × 8 rows, seed 1, no verification, no
    /// exact stage, datatrove's keeper rule.
    pub fn fineweb() -> Self {
        Self {
            exact: false,
            exact_normalization: Normalization::None,
            near: Some(NearConfig {
                minhash: MinHashParams {
                    ngram: 5,
                    bands: 14,
                    rows: 8,
                    seed: 1,
                    words: WordSplit::Spacy,
                    shingle_short_documents: false,
                },
                normalization: Normalization::Fineweb,
                verify_threshold: None,
            }),
            keep: Keeper::Root,
            memory_budget: 1 << 30,
        }
    }
}

#[cfg(test)]
mod tests;
