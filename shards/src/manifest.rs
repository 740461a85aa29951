//! The dataset manifest (`manifest.json`): what a prepared dataset holds and how to check it.
//!
//! It is written last and atomically: a folder without one is an unfinished dataset. It carries
//! no timestamps, so the same input and config give a byte-identical manifest.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::shard::{ShardReader, ShardSummary, TokenDtype, shard_paths};
use util::fsutil::{CHECKSUM_ALGORITHM, file_checksum, write_atomic};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_FORMAT: &str = "midtrain-dataset/1";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: no {MANIFEST_FILE}: not a dataset, or an unfinished one (rerun the command that writes it)")]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid manifest: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: manifest format {found:?} is not {MANIFEST_FORMAT:?}")]
    Format { path: PathBuf, found: String },
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
    #[error(
        "{path}: checksum {actual} differs from the manifest's {expected}: the file changed after it was \
         written (corrupted or replaced); run `midtrain verify` on the dataset and prepare it again"
    )]
    Checksum { path: PathBuf, actual: String, expected: String },
}

/// Which tokenizer produced the ids, so shards made with different tokenizers are never mixed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerIdentity {
    /// xxh3-128 of the `tokenizer.json` bytes.
    pub content_hash: String,
    pub vocab_size: usize,
    pub eos_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_id: Option<u32>,
    /// The encoder and its exact version (`tokenizers 1.0.0-rc.3`); informative only: every
    /// encoder midtrain uses gives the same ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// What a special token's literal string inside a document became (`split`, `keep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_tokens_in_text: Option<String>,
}

impl TokenizerIdentity {
    /// A tokenizer by its content and ids; the encoder fields are filled in when it is chosen.
    pub fn new(content_hash: impl Into<String>, vocab_size: usize, eos_id: u32, bos_id: Option<u32>) -> Self {
        Self {
            content_hash: content_hash.into(),
            vocab_size,
            eos_id,
            bos_id,
            encoder: None,
            special_tokens_in_text: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Shard prefix relative to the dataset folder (`web_00000` for `web_00000.bin/.idx`).
    pub prefix: String,
    pub documents: u64,
    pub tokens: u64,
    pub bin_checksum: String,
    pub idx_checksum: String,
    /// Per-document sidecar parquet, relative to the dataset folder, when one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<String>,
    /// The loss mask (`PREFIX.loss`: one byte per token of the `.bin`, 1 = the loss counts it,
    /// datatrove's `.loss` layout) and its checksum, for chat domains with `loss_mask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_mask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_mask_checksum: Option<String>,
}

impl ShardEntry {
    /// Describe a finished shard that lies in `dataset_dir`, checksumming both files.
    pub fn from_summary(dataset_dir: &Path, summary: &ShardSummary) -> Result<Self, ManifestError> {
        let (bin, idx) = shard_paths(&summary.prefix);
        let checksum =
            |p: &Path| file_checksum(p).map_err(|source| ManifestError::Io { path: p.to_path_buf(), source });
        let prefix = summary.prefix.strip_prefix(dataset_dir).unwrap_or(&summary.prefix);
        Ok(Self {
            prefix: prefix.to_string_lossy().into_owned(),
            documents: summary.documents,
            tokens: summary.tokens,
            bin_checksum: checksum(&bin)?,
            idx_checksum: checksum(&idx)?,
            sidecar: None,
            loss_mask: None,
            loss_mask_checksum: None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    pub format: String,
    pub midtrain_version: String,
    pub domain: String,
    pub tokenizer: TokenizerIdentity,
    pub dtype: TokenDtype,
    pub documents: u64,
    pub tokens: u64,
    pub checksum_algorithm: String,
    pub shards: Vec<ShardEntry>,
    /// The resolved configuration that produced the dataset.
    pub config: serde_json::Value,
}

impl DatasetManifest {
    pub fn new(
        domain: impl Into<String>,
        tokenizer: TokenizerIdentity,
        shards: Vec<ShardEntry>,
        config: serde_json::Value,
    ) -> Self {
        Self {
            format: MANIFEST_FORMAT.to_string(),
            midtrain_version: crate::MIDTRAIN_VERSION.to_string(),
            domain: domain.into(),
            dtype: TokenDtype::for_vocab(tokenizer.vocab_size),
            tokenizer,
            documents: shards.iter().map(|s| s.documents).sum(),
            tokens: shards.iter().map(|s| s.tokens).sum(),
            checksum_algorithm: CHECKSUM_ALGORITHM.to_string(),
            shards,
            config,
        }
    }

    /// Read `DIR/manifest.json`.
    pub fn load(dataset_dir: &Path) -> Result<Self, ManifestError> {
        let path = dataset_dir.join(MANIFEST_FILE);
        if !path.is_file() {
            return Err(ManifestError::Missing { path: dataset_dir.to_path_buf() });
        }
        let bytes = fs::read(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        let manifest: Self =
            serde_json::from_slice(&bytes).map_err(|source| ManifestError::Parse { path: path.clone(), source })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format { path, found: manifest.format });
        }
        Ok(manifest)
    }

    /// Write `DIR/manifest.json` atomically. Call it after every shard is finished.
    pub fn write(&self, dataset_dir: &Path) -> Result<(), ManifestError> {
        let path = dataset_dir.join(MANIFEST_FILE);
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest serialises");
        bytes.push(b'\n');
        write_atomic(&path, &bytes).map_err(|source| ManifestError::Io { path, source })
    }

    /// Absolute shard prefixes, in order.
    pub fn shard_prefixes(&self, dataset_dir: &Path) -> Vec<PathBuf> {
        self.shards.iter().map(|s| dataset_dir.join(&s.prefix)).collect()
    }

    /// Check both files of every shard against their checksums (the shards a run is about to
    /// read: xxh3 streams at memory speed, so this costs one read of the data). The error names
    /// the first file that differs.
    pub fn verify_checksums(&self, dataset_dir: &Path) -> Result<(), ManifestError> {
        for shard in &self.shards {
            let (bin, idx) = shard_paths(&dataset_dir.join(&shard.prefix));
            for (path, expected) in [(idx, &shard.idx_checksum), (bin, &shard.bin_checksum)] {
                let actual = file_checksum(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
                if &actual != expected {
                    return Err(ManifestError::Checksum { path, actual, expected: expected.clone() });
                }
            }
        }
        Ok(())
    }

    /// Recompute every checksum and count, and check the manifest against itself and the
    /// shards (totals, dtype, every id within the vocabulary, every document ending in EOS, no
    /// shard listed twice); one result per check made.
    pub fn verify(&self, dataset_dir: &Path) -> Vec<VerifyFinding> {
        self.verify_shards(dataset_dir, None)
    }

    /// [`DatasetManifest::verify`] with the shard checks limited to the shard `only` (a prefix
    /// as listed); the manifest's own checks always run.
    pub fn verify_shards(&self, dataset_dir: &Path, only: Option<&str>) -> Vec<VerifyFinding> {
        let manifest_path = dataset_dir.join(MANIFEST_FILE);
        let mut findings = vec![VerifyFinding { path: manifest_path, problem: self.self_check() }];
        for shard in self.shards.iter().filter(|s| only.is_none_or(|o| o == s.prefix)) {
            let prefix = dataset_dir.join(&shard.prefix);
            let (bin, idx) = shard_paths(&prefix);
            let mask = shard.loss_mask.as_ref().zip(shard.loss_mask_checksum.as_ref());
            let mask = mask.map(|(name, sum)| (dataset_dir.join(name), sum));
            if let Some((path, _)) = &mask {
                let size = std::fs::metadata(path).map(|m| m.len()).ok();
                if size.is_some_and(|size| size != shard.tokens) {
                    let problem =
                        Some(format!("{} bytes for {} tokens: one byte per token", size.unwrap(), shard.tokens));
                    findings.push(VerifyFinding { path: path.clone(), problem });
                }
            }
            for (path, expected) in [(bin, &shard.bin_checksum), (idx, &shard.idx_checksum)]
                .into_iter()
                .chain(mask.as_ref().map(|(p, s)| (p.clone(), *s)))
            {
                let problem = match file_checksum(&path) {
                    Ok(actual) if &actual == expected => None,
                    Ok(actual) => Some(format!("checksum {actual} != manifest {expected}")),
                    Err(e) => Some(e.to_string()),
                };
                findings.push(VerifyFinding { path, problem });
            }
            let problem = match ShardReader::open(&prefix) {
                Ok(r) if (r.num_documents() as u64, r.num_tokens()) != (shard.documents, shard.tokens) => {
                    Some(format!(
                        "holds {} documents / {} tokens, manifest says {} / {}",
                        r.num_documents(),
                        r.num_tokens(),
                        shard.documents,
                        shard.tokens
                    ))
                }
                Ok(r) if r.dtype() != self.dtype => {
                    Some(format!("dtype {} but the manifest says {}", r.dtype().name(), self.dtype.name()))
                }
                Ok(r) => self.content_problem(&r),
                Err(e) => Some(e.to_string()),
            };
            findings.push(VerifyFinding { path: prefix, problem });
        }
        findings
    }

    /// What the manifest says about itself that cannot be true.
    fn self_check(&self) -> Option<String> {
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = self.shards.iter().find(|s| !seen.insert(s.prefix.as_str())) {
            return Some(format!("shard {:?} is listed twice", twice.prefix));
        }
        let (documents, tokens) = self.shards.iter().fold((0, 0), |(d, t), s| (d + s.documents, t + s.tokens));
        if (documents, tokens) != (self.documents, self.tokens) {
            return Some(format!(
                "totals say {} documents / {} tokens, its shards add up to {documents} / {tokens}",
                self.documents, self.tokens
            ));
        }
        if self.checksum_algorithm != CHECKSUM_ALGORITHM {
            return Some(format!("checksum algorithm {:?} is not {CHECKSUM_ALGORITHM:?}", self.checksum_algorithm));
        }
        if self.tokenizer.vocab_size as u64 > self.dtype.max_id() as u64 + 1 {
            return Some(format!(
                "a vocabulary of {} ids does not fit dtype {}",
                self.tokenizer.vocab_size,
                self.dtype.name()
            ));
        }
        None
    }

    /// A token id outside the tokenizer's vocabulary, or a document not ending in its EOS.
    fn content_problem(&self, reader: &ShardReader) -> Option<String> {
        let vocab = self.tokenizer.vocab_size as u32;
        if let Some((doc, token)) = reader.first_token_at_or_above(vocab) {
            return Some(format!("document {doc} holds token {token}, outside the vocabulary of {vocab} ids"));
        }
        let eos = self.tokenizer.eos_id;
        for d in 0..reader.num_documents() {
            let last = reader.document(d).ok().and_then(|t| (!t.is_empty()).then(|| t.get(t.len() - 1)));
            if last != Some(eos) {
                return Some(format!("document {d} does not end with the tokenizer's EOS id {eos}"));
            }
        }
        None
    }
}

/// One check made by [`DatasetManifest::verify`]: `problem` is `None` when it passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFinding {
    pub path: PathBuf,
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ShardWriter;

    fn dataset(dir: &Path) -> DatasetManifest {
        let mut w = ShardWriter::create(dir.join("web_00000"), 500).unwrap();
        w.append(&[1, 2, 3, 0]).unwrap();
        w.append(&[4, 0]).unwrap();
        let summary = w.finish().unwrap();
        let entry = ShardEntry::from_summary(dir, &summary).unwrap();
        let tokenizer = TokenizerIdentity::new("ab", 500, 0, None);
        DatasetManifest::new("web", tokenizer, vec![entry], serde_json::json!({"k": 1}))
    }

    #[test]
    fn manifest_round_trips_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let m = dataset(dir.path());
        assert_eq!((m.documents, m.tokens, m.shards[0].prefix.as_str()), (2, 6, "web_00000"));
        m.write(dir.path()).unwrap();
        let loaded = DatasetManifest::load(dir.path()).unwrap();
        assert_eq!(loaded, m);
        assert!(loaded.verify(dir.path()).iter().all(|f| f.problem.is_none()));
    }

    #[test]
    fn verify_detects_a_changed_token() {
        let dir = tempfile::tempdir().unwrap();
        let m = dataset(dir.path());
        let bin = dir.path().join("web_00000.bin");
        let mut bytes = fs::read(&bin).unwrap();
        bytes[0] ^= 1;
        fs::write(&bin, bytes).unwrap();
        let bad: Vec<_> = m.verify(dir.path()).into_iter().filter(|f| f.problem.is_some()).collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].path.ends_with("web_00000.bin"));
        assert!(bad[0].problem.as_ref().unwrap().contains("checksum"));
    }

    #[test]
    fn verify_finds_edited_fields_and_duplicate_shards() {
        let dir = tempfile::tempdir().unwrap();
        let good = dataset(dir.path());
        let problems = |m: &DatasetManifest| -> Vec<String> {
            m.verify(dir.path()).into_iter().filter_map(|f| f.problem).collect()
        };
        assert!(problems(&good).is_empty());
        let mut m = good.clone();
        m.tokens += 1;
        assert!(problems(&m)[0].contains("totals"), "{:?}", problems(&m));
        let mut m = good.clone();
        m.shards.push(m.shards[0].clone());
        m.documents *= 2;
        m.tokens *= 2;
        assert!(problems(&m)[0].contains("listed twice"));
        let mut m = good.clone();
        m.tokenizer.eos_id = 7;
        assert!(problems(&m)[0].contains("EOS"), "{:?}", problems(&m));
        let mut m = good.clone();
        m.tokenizer.vocab_size = 4;
        assert!(problems(&m)[0].contains("outside the vocabulary"), "{:?}", problems(&m));
        let mut m = good.clone();
        m.dtype = TokenDtype::Int32;
        assert!(problems(&m)[0].contains("dtype"), "{:?}", problems(&m));
    }

    #[test]
    fn checksums_are_checked_when_a_dataset_is_opened_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        let m = dataset(dir.path());
        m.verify_checksums(dir.path()).unwrap();
        let bin = dir.path().join("web_00000.bin");
        let mut bytes = fs::read(&bin).unwrap();
        bytes[2] ^= 1;
        fs::write(&bin, bytes).unwrap();
        let err = m.verify_checksums(dir.path()).unwrap_err().to_string();
        assert!(err.contains("web_00000.bin") && err.contains("checksum"), "{err}");
    }

    #[test]
    fn missing_manifest_says_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let err = DatasetManifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unfinished"), "{err}");
    }
}
