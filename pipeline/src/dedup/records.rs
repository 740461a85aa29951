//! Fixed-size binary record files that the dedup stages exchange, and sorted runs that spill
//! to disk beyond a memory budget.
//!
//! File layout: magic `MTDEDUP1`, record kind (u8), record size (u32), the records
//! (little-endian), then a trailer of the record count (u64) and the xxh3-128 of everything
//! before the trailer. Readers verify size, kind and checksum before handing out a record, so a
//! truncated or corrupted intermediate file is an error that names it, never a wrong result.
//! Files are written under a temporary name and renamed when complete.

use crate::file_error::FileError;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use xxhash_rust::xxh3::Xxh3;

const MAGIC: &[u8; 8] = b"MTDEDUP1";
const HEADER: usize = 8 + 1 + 4;
const TRAILER: usize = 8 + 16;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: corrupted intermediate file: {check} (rerun the stage that writes it)")]
    Corrupt { path: PathBuf, check: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |e| FileError::at(path)(e).into()
}

/// A fixed-size record with a total order (the sort key of its files).
pub trait Record: Ord + Copy + Send + Sync {
    const KIND: u8;
    const SIZE: usize;
    fn encode(&self, out: &mut [u8]);
    fn decode(bytes: &[u8]) -> Self;
}

/// Streams records to a new file; it appears at `path` only after [`finish`](Self::finish).
pub struct RecordWriter<R: Record> {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    hasher: Xxh3,
    count: u64,
    buf: Vec<u8>,
    _r: PhantomData<R>,
}

impl<R: Record> RecordWriter<R> {
    pub fn create(path: &Path) -> Result<Self, RecordError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let tmp = util::fsutil::temp_path(path);
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io(&tmp))?);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.push(R::KIND);
        header.extend_from_slice(&(R::SIZE as u32).to_le_bytes());
        out.write_all(&header).map_err(io(&tmp))?;
        let mut hasher = Xxh3::new();
        hasher.update(&header);
        Ok(Self { path: path.to_path_buf(), tmp, out, hasher, count: 0, buf: vec![0; R::SIZE], _r: PhantomData })
    }

    pub fn push(&mut self, record: &R) -> Result<(), RecordError> {
        record.encode(&mut self.buf);
        self.hasher.update(&self.buf);
        self.out.write_all(&self.buf).map_err(io(&self.tmp))?;
        self.count += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<u64, RecordError> {
        let mut trailer = Vec::with_capacity(TRAILER);
        trailer.extend_from_slice(&self.count.to_le_bytes());
        trailer.extend_from_slice(&self.hasher.digest128().to_le_bytes());
        self.out.write_all(&trailer).map_err(io(&self.tmp))?;
        let file = self.out.into_inner().map_err(FileError::at(&self.tmp))?;
        file.sync_all().map_err(io(&self.tmp))?;
        util::fsutil::durable_rename(&self.tmp, &self.path).map_err(io(&self.path))?;
        Ok(self.count)
    }
}

/// A verified, memory-mapped record file.
pub struct RecordFile<R: Record> {
    path: PathBuf,
    map: Option<Mmap>,
    count: usize,
    _r: PhantomData<R>,
}

impl<R: Record> RecordFile<R> {
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        let corrupt = |check: String| RecordError::Corrupt { path: path.to_path_buf(), check };
        let file = File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len() as usize;
        if len < HEADER + TRAILER {
            return Err(corrupt(format!("{len} bytes is shorter than header and trailer")));
        }
        // SAFETY: intermediate files are written once, renamed into place and never modified.
        let map = unsafe { Mmap::map(&file) }.map_err(io(path))?;
        if &map[..8] != MAGIC || map[8] != R::KIND || map[9..13] != (R::SIZE as u32).to_le_bytes() {
            return Err(corrupt("header does not match the expected record kind".into()));
        }
        let body = len - TRAILER;
        let count = u64::from_le_bytes(map[body..body + 8].try_into().unwrap()) as usize;
        if HEADER + count * R::SIZE != body {
            return Err(corrupt(format!("{count} records do not fill {} bytes", body - HEADER)));
        }
        let stored = u128::from_le_bytes(map[body + 8..].try_into().unwrap());
        if xxhash_rust::xxh3::xxh3_128(&map[..body]) != stored {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok(Self { path: path.to_path_buf(), map: Some(map), count, _r: PhantomData })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn get(&self, i: usize) -> R {
        let map = self.map.as_ref().expect("mapped");
        R::decode(&map[HEADER + i * R::SIZE..HEADER + (i + 1) * R::SIZE])
    }

    pub fn iter(&self) -> impl Iterator<Item = R> + '_ {
        (0..self.count).map(move |i| self.get(i))
    }

    /// Index of the first record not less than `probe` (the file must be sorted).
    pub fn lower_bound(&self, probe: &R) -> usize {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid) < *probe { lo = mid + 1 } else { hi = mid }
        }
        lo
    }
}

/// Collects records, sorting and spilling runs to `dir` whenever `budget_bytes` is reached;
/// [`finish`](Self::finish) merges everything into one sorted file.
pub struct SortedRuns<R: Record> {
    dir: PathBuf,
    name: String,
    buffer: Vec<R>,
    capacity: usize,
    runs: Vec<PathBuf>,
}

impl<R: Record> SortedRuns<R> {
    pub fn new(dir: &Path, name: &str, budget_bytes: usize) -> Self {
        let capacity = (budget_bytes / std::mem::size_of::<R>().max(1)).max(16);
        Self { dir: dir.to_path_buf(), name: name.to_string(), buffer: Vec::new(), capacity, runs: Vec::new() }
    }

    pub fn push(&mut self, record: R) -> Result<(), RecordError> {
        self.buffer.push(record);
        if self.buffer.len() >= self.capacity {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), RecordError> {
        self.buffer.sort_unstable();
        let path = self.dir.join(format!("{}.run{:04}", self.name, self.runs.len()));
        let mut w = RecordWriter::<R>::create(&path)?;
        for r in &self.buffer {
            w.push(r)?;
        }
        w.finish()?;
        self.buffer.clear();
        self.runs.push(path);
        Ok(())
    }

    /// Runs spilled to disk so far.
    pub fn spilled(&self) -> usize {
        self.runs.len()
    }

    /// Write all records, sorted, to `path`; spilled runs are merged and removed.
    pub fn finish(mut self, path: &Path) -> Result<u64, RecordError> {
        self.buffer.sort_unstable();
        if self.runs.is_empty() {
            let mut w = RecordWriter::<R>::create(path)?;
            for r in &self.buffer {
                w.push(r)?;
            }
            return w.finish();
        }
        self.spill()?;
        let files = self.runs.iter().map(|p| RecordFile::<R>::open(p)).collect::<Result<Vec<_>, _>>()?;
        let mut w = RecordWriter::<R>::create(path)?;
        for r in merge_sorted(&files) {
            w.push(&r)?;
        }
        let n = w.finish()?;
        for p in &self.runs {
            std::fs::remove_file(p).map_err(io(p))?;
        }
        Ok(n)
    }
}

/// K-way merge of sorted files; equal records come out in file order.
pub fn merge_sorted<'a, R: Record + 'a>(files: &'a [RecordFile<R>]) -> impl Iterator<Item = R> + 'a {
    let mut heap = BinaryHeap::new();
    let mut next = vec![0usize; files.len()];
    for (f, file) in files.iter().enumerate() {
        if !file.is_empty() {
            heap.push(Reverse((file.get(0), f)));
            next[f] = 1;
        }
    }
    std::iter::from_fn(move || {
        let Reverse((record, f)) = heap.pop()?;
        if next[f] < files[f].len() {
            heap.push(Reverse((files[f].get(next[f]), f)));
            next[f] += 1;
        }
        Some(record)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Pair(u64, u64);

    impl Record for Pair {
        const KIND: u8 = 250;
        const SIZE: usize = 16;
        fn encode(&self, out: &mut [u8]) {
            out[..8].copy_from_slice(&self.0.to_le_bytes());
            out[8..].copy_from_slice(&self.1.to_le_bytes());
        }
        fn decode(b: &[u8]) -> Self {
            Pair(u64::from_le_bytes(b[..8].try_into().unwrap()), u64::from_le_bytes(b[8..].try_into().unwrap()))
        }
    }

    #[test]
    fn spilled_runs_merge_into_one_sorted_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = SortedRuns::<Pair>::new(dir.path(), "p", 16 * 1024); // 1024 records per run
        let mut expected = Vec::new();
        let mut x = 12345u64;
        for i in 0..5000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let p = Pair(x >> 54, i);
            runs.push(p).unwrap();
            expected.push(p);
        }
        assert_eq!(runs.spilled(), 4);
        let out = dir.path().join("sorted.bin");
        assert_eq!(runs.finish(&out).unwrap(), 5000);
        expected.sort();
        let file = RecordFile::<Pair>::open(&out).unwrap();
        assert_eq!(file.iter().collect::<Vec<_>>(), expected);
        assert_eq!(file.lower_bound(&Pair(3, 0)), expected.iter().position(|p| p.0 >= 3).unwrap());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, ["sorted.bin"], "runs removed after the merge");
    }

    #[test]
    fn corruption_and_truncation_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.bin");
        let mut w = RecordWriter::<Pair>::create(&path).unwrap();
        for i in 0..10 {
            w.push(&Pair(i, i)).unwrap();
        }
        w.finish().unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[HEADER + 5] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let err = RecordFile::<Pair>::open(&path).err().unwrap().to_string();
        assert!(err.contains("r.bin") && err.contains("checksum"), "{err}");
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(RecordFile::<Pair>::open(&path).err().unwrap().to_string().contains("corrupted"));
    }
}
