//! Open what a user points at — a dataset folder or one shard — as an ordered list of shards.

use std::path::{Path, PathBuf};

use crate::manifest::{DatasetManifest, ManifestError};
use crate::shard::{ShardReader, TokenDtype, Tokens};

/// A dataset folder (with its manifest) or a single shard, opened and validated.
#[derive(Debug)]
pub struct TokenSource {
    pub path: PathBuf,
    pub manifest: Option<DatasetManifest>,
    pub shards: Vec<ShardReader>,
}

impl TokenSource {
    /// `path` is a dataset folder holding `manifest.json`, or a shard prefix (or its `.bin`/`.idx`).
    pub fn open(path: &Path) -> Result<Self, ManifestError> {
        if path.is_dir() {
            let manifest = DatasetManifest::load(path)?;
            let shards = manifest.shard_prefixes(path).iter().map(ShardReader::open).collect::<Result<Vec<_>, _>>()?;
            return Ok(Self { path: path.to_path_buf(), manifest: Some(manifest), shards });
        }
        Ok(Self { path: path.to_path_buf(), manifest: None, shards: vec![ShardReader::open(path)?] })
    }

    /// [`TokenSource::open`], and for a dataset every shard checked against the manifest's
    /// checksums first: what a run that reads the data uses, so a corrupted shard is named
    /// before it is trained on or mixed.
    pub fn open_verified(path: &Path) -> Result<Self, ManifestError> {
        if path.is_dir() {
            DatasetManifest::load(path)?.verify_checksums(path)?;
        }
        Self::open(path)
    }

    pub fn is_dataset(&self) -> bool {
        self.manifest.is_some()
    }

    pub fn documents(&self) -> u64 {
        self.shards.iter().map(|s| s.num_documents() as u64).sum()
    }

    pub fn tokens(&self) -> u64 {
        self.shards.iter().map(|s| s.num_tokens()).sum()
    }

    /// The dtype of the shards (`None` for a dataset with no shards).
    pub fn dtype(&self) -> Option<TokenDtype> {
        self.shards.first().map(|s| s.dtype())
    }

    /// Every document in order, across shards.
    pub fn documents_iter(&self) -> impl Iterator<Item = Tokens<'_>> + '_ {
        self.shards.iter().flat_map(|s| s.iter())
    }
}
