//! Record types and file names of the dedup work folder.
//!
//! ```text
//! work/signatures/task-00003/band-000.bin   (band values, doc) sorted     one per band
//! work/signatures/task-00003/exact.bin      (text hash, doc) sorted
//! work/signatures/task-00003/sig.bin        (doc, part, 8 × u32) by doc   for verification
//! work/signatures/task-00003/docs.bin       (doc, id offset/length, quality, text hash) by doc
//! work/signatures/task-00003/ids.txt        the ids, concatenated
//! work/signatures/task-00003/done.json      counts + checksum of ids.txt: the task is finished
//! work/pairs/band-000.bin, exact.bin        candidate pairs (a < b), chained neighbours in
//!                                           sort order (datatrove's union order)
//! work/clusters/removals.bin                (doc, keeper, reason) sorted by doc
//! work/clusters/keepers.bin                 (keeper, documents in its cluster) sorted by doc,
//!                                           for clusters of two or more
//! work/clusters/done.json                   cluster statistics: the stage is finished
//! ```
//!
//! A document is numbered `file_index << 40 | row`, so numbers follow input order across
//! files and do not depend on how files are split into tasks (file i belongs to task i mod n).

use std::path::{Path, PathBuf};

use super::minhash::MAX_ROWS;
use super::records::Record;

pub const ROW_BITS: u32 = 40;

pub fn doc_number(file_index: usize, row: u64) -> u64 {
    ((file_index as u64) << ROW_BITS) | row
}

pub fn file_of(doc: u64) -> usize {
    (doc >> ROW_BITS) as usize
}

pub fn task_of_file(file_index: usize, tasks: usize) -> usize {
    file_index % tasks
}

pub fn task_dir(work: &Path, task: usize) -> PathBuf {
    work.join("signatures").join(format!("task-{task:05}"))
}

pub fn band_file(dir: &Path, band: usize) -> PathBuf {
    dir.join(format!("band-{band:03}.bin"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// One band of a document's signature (padded to [`MAX_ROWS`] values) and the document.
/// Sorted by values then document, as datatrove sorts its bucket files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BandRecord {
    pub values: [u64; MAX_ROWS],
    pub doc: u64,
}

impl Record for BandRecord {
    const KIND: u8 = 1;
    const SIZE: usize = 8 * MAX_ROWS + 8;
    fn encode(&self, out: &mut [u8]) {
        for (i, v) in self.values.iter().enumerate() {
            out[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
        }
        out[8 * MAX_ROWS..].copy_from_slice(&self.doc.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut values = [0u64; MAX_ROWS];
        for (i, v) in values.iter_mut().enumerate() {
            *v = u64_at(b, 8 * i);
        }
        Self { values, doc: u64_at(b, 8 * MAX_ROWS) }
    }
}

/// (hash of the normalised text, doc): equal hashes are exact duplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExactRecord {
    pub hash: u128,
    pub doc: u64,
}

impl Record for ExactRecord {
    const KIND: u8 = 2;
    const SIZE: usize = 24;
    fn encode(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.hash.to_le_bytes());
        out[16..24].copy_from_slice(&self.doc.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self { hash: u128::from_le_bytes(b[..16].try_into().unwrap()), doc: u64_at(b, 16) }
    }
}

/// Values per signature record; a signature of K hashes takes K / 8 records.
pub const SIG_CHUNK: usize = 8;

/// Part of a compact (u32) signature, for verifying candidate pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SigRecord {
    pub doc: u64,
    pub part: u32,
    pub values: [u32; SIG_CHUNK],
}

impl Record for SigRecord {
    const KIND: u8 = 3;
    const SIZE: usize = 12 + 4 * SIG_CHUNK;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.doc.to_le_bytes());
        out[8..12].copy_from_slice(&self.part.to_le_bytes());
        for (i, v) in self.values.iter().enumerate() {
            out[12 + 4 * i..16 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
    }
    fn decode(b: &[u8]) -> Self {
        let mut values = [0u32; SIG_CHUNK];
        for (i, v) in values.iter_mut().enumerate() {
            *v = u32::from_le_bytes(b[12 + 4 * i..16 + 4 * i].try_into().unwrap());
        }
        Self { doc: u64_at(b, 0), part: u32::from_le_bytes(b[8..12].try_into().unwrap()), values }
    }
}

/// Where a document's id lies in `ids.txt`, its quality score (NaN when none) and the hash of
/// its text (after the exact normalisation), which tells exact from near duplicates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DocRecord {
    pub doc: u64,
    pub id_offset: u64,
    pub id_len: u32,
    pub quality: f32,
    pub text_hash: u128,
}

impl Eq for DocRecord {}

impl PartialOrd for DocRecord {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DocRecord {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.doc.cmp(&other.doc)
    }
}

impl Record for DocRecord {
    const KIND: u8 = 4;
    const SIZE: usize = 40;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.doc.to_le_bytes());
        out[8..16].copy_from_slice(&self.id_offset.to_le_bytes());
        out[16..20].copy_from_slice(&self.id_len.to_le_bytes());
        out[20..24].copy_from_slice(&self.quality.to_le_bytes());
        out[24..40].copy_from_slice(&self.text_hash.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            doc: u64_at(b, 0),
            id_offset: u64_at(b, 8),
            id_len: u32::from_le_bytes(b[16..20].try_into().unwrap()),
            quality: f32::from_le_bytes(b[20..24].try_into().unwrap()),
            text_hash: u128::from_le_bytes(b[24..40].try_into().unwrap()),
        }
    }
}

/// A candidate pair, `a < b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PairRecord {
    pub a: u64,
    pub b: u64,
}

impl Record for PairRecord {
    const KIND: u8 = 5;
    const SIZE: usize = 16;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.a.to_le_bytes());
        out[8..16].copy_from_slice(&self.b.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self { a: u64_at(b, 0), b: u64_at(b, 8) }
    }
}

/// A kept document whose cluster holds `size` documents (itself included, two or more); the
/// sidecar's `cluster_size` that a recipe's `rehydrate` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeeperRecord {
    pub doc: u64,
    pub size: u64,
}

impl Record for KeeperRecord {
    const KIND: u8 = 8;
    const SIZE: usize = 16;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.doc.to_le_bytes());
        out[8..16].copy_from_slice(&self.size.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self { doc: u64_at(b, 0), size: u64_at(b, 8) }
    }
}

/// Why a document is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RemovalReason {
    Exact = 1,
    Near = 2,
}

impl RemovalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Near => "near",
        }
    }
}

/// A removed document, the document it is removed for (its keeper), why, and its
/// similarity to the keeper (exact with verification, else the MinHash estimate; NaN where
/// there are no shingles; 1 for an exact copy).
#[derive(Clone, Copy, Debug)]
pub struct RemovalRecord {
    pub doc: u64,
    pub keeper: u64,
    pub reason: RemovalReason,
    pub similarity: f32,
}

impl RemovalRecord {
    fn key(&self) -> (u64, u64, RemovalReason, u32) {
        (self.doc, self.keeper, self.reason, self.similarity.to_bits())
    }
}

impl PartialEq for RemovalRecord {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for RemovalRecord {}

impl PartialOrd for RemovalRecord {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RemovalRecord {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl Record for RemovalRecord {
    const KIND: u8 = 7;
    const SIZE: usize = 21;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.doc.to_le_bytes());
        out[8..16].copy_from_slice(&self.keeper.to_le_bytes());
        out[16] = self.reason as u8;
        out[17..21].copy_from_slice(&self.similarity.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let reason = if b[16] == 1 { RemovalReason::Exact } else { RemovalReason::Near };
        let similarity = f32::from_le_bytes(b[17..21].try_into().expect("4 bytes"));
        Self { doc: u64_at(b, 0), keeper: u64_at(b, 8), reason, similarity }
    }
}
