//! Exact verification: the shingle sets of the documents in candidate pairs, read again from the
//! inputs once the pairs are known, so that a near removal is decided on the true Jaccard
//! similarity, not on the MinHash estimate (whose error, about √(J(1−J)/hashes), is 0.046 at
//! J = 0.5 over 120 hashes: enough to remove one document in fifty just below the threshold).
//!
//! The sets go to one file of sorted 64-bit shingle hashes, memory-mapped: clustering holds 24
//! bytes per document in a candidate pair; the file takes 8 bytes per distinct shingle of those
//! documents and is removed when the clusters are written.

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::layout::{doc_number, file_of};
use super::minhash::MinHasher;
use super::normalize::normalize;
use super::stages::{DedupError, DedupJob};
use crate::file_error::FileError;
use crate::read;
use crate::run_folder::Progress;

pub(super) struct ShingleSets {
    /// (document, first hash, hashes), sorted by document.
    index: Vec<(u64, u64, u32)>,
    map: Option<memmap2::Mmap>,
    path: PathBuf,
}

impl ShingleSets {
    /// Read the inputs that hold any of `docs` (sorted, distinct) and write their shingle sets
    /// to `path`. Fails when a document is no longer in its input (the inputs changed after the
    /// signatures stage).
    pub fn build(
        job: &DedupJob,
        docs: &[u64],
        path: &Path,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Self, DedupError> {
        let near = job.config.near.as_ref().expect("verification needs near-dedup settings");
        let hasher = MinHasher::new(near.minhash.clone());
        let file = std::fs::File::create(path).map_err(FileError::at(path))?;
        let mut out = std::io::BufWriter::new(file);
        let mut index = Vec::with_capacity(docs.len());
        let mut written = 0u64;
        let mut seen = Progress::default();
        for (file_index, input) in job.inputs.iter().enumerate() {
            let start = docs.partition_point(|&d| file_of(d) < file_index);
            let end = docs.partition_point(|&d| file_of(d) <= file_index);
            let wanted = &docs[start..end];
            if wanted.is_empty() {
                continue;
            }
            let normalization = job.near_normalization.get(file_index).copied().unwrap_or(near.normalization);
            let mut found = 0usize;
            for batch in read::open(input, &job.read)? {
                let batch = batch?;
                let sets: Vec<(u64, Vec<u64>)> = batch
                    .documents
                    .par_iter()
                    .filter_map(|d| {
                        let doc = doc_number(file_index, d.row);
                        wanted.binary_search(&doc).ok()?;
                        Some((doc, hasher.shingle_set(&normalize(&d.text, normalization))))
                    })
                    .collect();
                for (doc, set) in sets {
                    for h in &set {
                        out.write_all(&h.to_le_bytes()).map_err(FileError::at(path))?;
                    }
                    index.push((doc, written, set.len() as u32));
                    written += set.len() as u64;
                    found += 1;
                }
                seen.documents += (batch.documents.len() + batch.removed.len()) as u64;
                seen.bytes += batch.bytes;
                seen.kept += batch.documents.len() as u64;
                progress(seen);
            }
            if found != wanted.len() {
                return Err(DedupError::InputChanged { input: input.clone(), expected: wanted.len(), found });
            }
        }
        out.flush().map_err(FileError::at(path))?;
        drop(out);
        let map = if written == 0 {
            None
        } else {
            let file = std::fs::File::open(path).map_err(FileError::at(path))?;
            // SAFETY: written just now by this process and only read from here on.
            Some(unsafe { memmap2::Mmap::map(&file) }.map_err(FileError::at(path))?)
        };
        Ok(Self { index, map, path: path.to_path_buf() })
    }

    fn set(&self, doc: u64) -> Option<&[u8]> {
        let i = self.index.binary_search_by_key(&doc, |&(d, _, _)| d).ok()?;
        let (_, first, len) = self.index[i];
        let map = self.map.as_deref().unwrap_or(&[]);
        map.get(first as usize * 8..(first as usize + len as usize) * 8)
    }

    /// Exact Jaccard similarity of two documents' shingle sets; `None` where either has none.
    pub fn jaccard(&self, a: u64, b: u64) -> Option<f64> {
        let (a, b) = (self.set(a)?, self.set(b)?);
        if a.is_empty() || b.is_empty() {
            return None;
        }
        let value = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        let (mut x, mut y) = (a.chunks_exact(8).map(value).peekable(), b.chunks_exact(8).map(value).peekable());
        let mut both = 0usize;
        while let (Some(&p), Some(&q)) = (x.peek(), y.peek()) {
            match p.cmp(&q) {
                std::cmp::Ordering::Less => _ = x.next(),
                std::cmp::Ordering::Greater => _ = y.next(),
                std::cmp::Ordering::Equal => {
                    both += 1;
                    x.next();
                    y.next();
                }
            }
        }
        let union = a.len() / 8 + b.len() / 8 - both;
        Some(both as f64 / union as f64)
    }

    /// Remove the file (the clusters hold what was decided with it).
    pub fn remove(self) -> Result<(), DedupError> {
        drop(self.map);
        std::fs::remove_file(&self.path).map_err(|e| FileError::at(&self.path)(e).into())
    }
}
