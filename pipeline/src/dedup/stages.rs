//! The four dedup stages and the job that ties them to an input list and a work folder.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::layout::*;
use super::minhash::{MinHasher, compact, estimated_jaccard};
use super::normalize::{Normalization, normalize};
use super::records::{Record, RecordError, RecordFile, RecordWriter, SortedRuns, merge_sorted};
use super::shingle_sets::ShingleSets;
use super::{DedupConfig, Keeper, keepers};
use crate::document::{CLUSTER_SIZE, Removal};
use crate::file_error::FileError;
use crate::output::PartWriter;
use crate::read::{self, ReadError, ReadOptions};
use crate::run_folder::{Parts, Progress, part_name};
use crate::stats::StageStats;
use util::fsutil::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    File(#[from] FileError),
    /// A stage ran before the one it needs finished (the stages run in order).
    #[error("{marker}: {missing} is not finished; run it first")]
    NotReady { marker: PathBuf, missing: String },
    /// Verification re-reads the inputs; they must hold the documents the signatures saw.
    #[error(
        "{input}: {found} of the {expected} documents of its candidate pairs are still there: the \
         input changed after the signatures stage; rerun dedup with --force"
    )]
    InputChanged { input: PathBuf, expected: usize, found: usize },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DedupError + '_ {
    move |e| FileError::at(path)(e).into()
}

/// One dedup run: its inputs (in order), how to read them, the settings and the folders.
pub struct DedupJob {
    pub inputs: Vec<PathBuf>,
    pub read: ReadOptions,
    pub config: DedupConfig,
    /// `stats.json` goes here, and the kept and removed parts unless `parts` says otherwise.
    pub out: PathBuf,
    /// Intermediate files; shared by all tasks.
    pub work: PathBuf,
    pub tasks: usize,
    /// Where input i's outputs go: `DIR/kept/NAME.parquet`, `DIR/removed/NAME.parquet`,
    /// `DIR/stats/NAME.json`. Empty: `out` and `part-{i:05}` (prepare files each domain's
    /// inputs under its own folder).
    pub parts: Vec<(PathBuf, String)>,
    /// Input i's near-dedup normalisation where it differs by domain (`keep_numbers_in`);
    /// empty: the config's for every input.
    pub near_normalization: Vec<Normalization>,
}

impl DedupJob {
    /// Folder and file stem of input `i`'s outputs.
    pub fn part(&self, i: usize) -> (PathBuf, String) {
        self.parts.get(i).cloned().unwrap_or_else(|| (self.out.clone(), part_name(i)))
    }

    fn files_of(&self, task: usize) -> impl Iterator<Item = (usize, &PathBuf)> {
        self.inputs.iter().enumerate().filter(move |(i, _)| task_of_file(*i, self.tasks) == task)
    }

    fn bands(&self) -> usize {
        self.config.near.as_ref().map_or(0, |n| n.minhash.bands)
    }
}

/// Summary of what the clustering found; also written to `work/clusters/done.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DedupStats {
    pub documents: u64,
    pub candidate_pairs: u64,
    pub verified_pairs: u64,
    pub exact_pairs: u64,
    pub clusters: u64,
    pub removed_exact: u64,
    pub removed_near: u64,
    /// cluster size → number of clusters
    pub cluster_sizes: BTreeMap<u64, u64>,
    /// Documents linked to a cluster but kept because they are unlike its keeper (with
    /// verification; a transitive cluster would have removed them).
    #[serde(default)]
    pub kept_unlike_keeper: u64,
}

/// What a finished signature task recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct TaskDone {
    documents: u64,
    /// Sorted runs written to disk because the memory budget was reached.
    spilled_runs: usize,
    ids_bytes: u64,
    ids_checksum: String,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), DedupError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    write_atomic(path, &serde_json::to_vec_pretty(value).expect("serialisable")).map_err(io_err(path))
}

/// Per-document hashing output, computed in parallel.
struct Hashed {
    doc: u64,
    exact: u128,
    signature: Option<Vec<u64>>,
    quality: f32,
}

/// Stage 1, for one task: hash its documents into sorted band, exact, signature and id files.
pub fn signatures(job: &DedupJob, task: usize, progress: &(dyn Fn(Progress) + Sync)) -> Result<(), DedupError> {
    let dir = task_dir(&job.work, task);
    if read_json::<TaskDone>(&dir.join("done.json")).is_some() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let hasher = job.config.near.as_ref().map(|n| MinHasher::new(n.minhash.clone()));
    let bands = job.bands();
    let budget = job.config.memory_budget / (bands + 2).max(1);
    let mut band_runs: Vec<SortedRuns<BandRecord>> =
        (0..bands).map(|b| SortedRuns::new(&dir, &format!("band-{b:03}"), budget)).collect();
    let mut exact_runs = SortedRuns::<ExactRecord>::new(&dir, "exact", budget);
    let mut sigs = RecordWriter::<SigRecord>::create(&dir.join("sig.bin"))?;
    let mut docs = RecordWriter::<DocRecord>::create(&dir.join("docs.bin"))?;
    let ids_path = dir.join("ids.txt");
    let mut ids = std::io::BufWriter::new(std::fs::File::create(&ids_path).map_err(io_err(&ids_path))?);
    let (mut ids_bytes, mut ids_hash) = (0u64, xxhash_rust::xxh3::Xxh3::new());
    let mut seen = Progress::default();
    let mut count = 0u64;
    for (file_index, path) in job.files_of(task) {
        let near_normalization = job
            .config
            .near
            .as_ref()
            .map(|near| job.near_normalization.get(file_index).copied().unwrap_or(near.normalization));
        for batch in read::open(path, &job.read)? {
            let batch = batch?;
            let hashed: Vec<Hashed> = batch
                .documents
                .par_iter()
                .map(|d| Hashed {
                    doc: doc_number(file_index, d.row),
                    exact: xxh3_128(normalize(&d.text, job.config.exact_normalization).as_bytes()),
                    signature: near_normalization
                        .and_then(|n| hasher.as_ref().and_then(|h| h.signature(&normalize(&d.text, n)))),
                    quality: d.score("quality").map_or(f32::NAN, |q| q as f32),
                })
                .collect();
            for (h, d) in hashed.iter().zip(&batch.documents) {
                if job.config.exact {
                    exact_runs.push(ExactRecord { hash: h.exact, doc: h.doc })?;
                }
                if let (Some(sig), Some(hasher)) = (&h.signature, &hasher) {
                    for (band, values) in hasher.bands(sig).enumerate() {
                        band_runs[band].push(BandRecord { values, doc: h.doc })?;
                    }
                    for (part, chunk) in compact(sig).chunks(SIG_CHUNK).enumerate() {
                        let mut values = [0u32; SIG_CHUNK];
                        values[..chunk.len()].copy_from_slice(chunk);
                        sigs.push(&SigRecord { doc: h.doc, part: part as u32, values })?;
                    }
                }
                ids.write_all(d.id.as_bytes()).map_err(io_err(&ids_path))?;
                ids_hash.update(d.id.as_bytes());
                docs.push(&DocRecord {
                    doc: h.doc,
                    id_offset: ids_bytes,
                    id_len: d.id.len() as u32,
                    quality: h.quality,
                    text_hash: h.exact,
                })?;
                ids_bytes += d.id.len() as u64;
                count += 1;
            }
            seen.documents += (batch.documents.len() + batch.removed.len()) as u64;
            seen.bytes += batch.bytes;
            seen.kept += batch.documents.len() as u64;
            progress(seen);
        }
    }
    let spilled_runs = band_runs.iter().map(SortedRuns::spilled).sum::<usize>() + exact_runs.spilled();
    for (band, runs) in band_runs.into_iter().enumerate() {
        runs.finish(&band_file(&dir, band))?;
    }
    exact_runs.finish(&dir.join("exact.bin"))?;
    sigs.finish()?;
    docs.finish()?;
    let file = ids.into_inner().map_err(FileError::at(&ids_path))?;
    file.sync_all().map_err(io_err(&ids_path))?;
    let done =
        TaskDone { documents: count, spilled_runs, ids_bytes, ids_checksum: format!("{:032x}", ids_hash.digest128()) };
    write_json(&dir.join("done.json"), &done)
}

/// Pairs of neighbours in sorted order among records with equal keys (k equal records give
/// k − 1 chained pairs, as datatrove writes them); union-find connects the whole group.
fn chained_pairs<R: Record, K: PartialEq>(
    files: &[RecordFile<R>],
    key: impl Fn(&R) -> K,
    doc: impl Fn(&R) -> u64,
    out: &mut RecordWriter<PairRecord>,
) -> Result<(), RecordError> {
    let mut previous: Option<R> = None;
    for r in merge_sorted(files) {
        if let Some(p) = previous
            && key(&p) == key(&r)
        {
            out.push(&PairRecord { a: doc(&p), b: doc(&r) })?;
        }
        previous = Some(r);
    }
    Ok(())
}

fn check_tasks_done(job: &DedupJob) -> Result<(), DedupError> {
    for task in 0..job.tasks {
        let done = task_dir(&job.work, task).join("done.json");
        if !done.is_file() {
            return Err(DedupError::NotReady {
                marker: done,
                missing: format!("the signatures stage of task {task} of {}", job.tasks),
            });
        }
    }
    Ok(())
}

/// Stage 2: candidate pairs from equal band values (one file per band) and equal text hashes.
pub fn pairs(job: &DedupJob) -> Result<(), DedupError> {
    let dir = job.work.join("pairs");
    if dir.join("done.json").is_file() {
        return Ok(());
    }
    check_tasks_done(job)?;
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut sources: Vec<Option<usize>> = (0..job.bands()).map(Some).collect();
    if job.config.exact {
        sources.push(None);
    }
    let counts: Vec<u64> = sources
        .par_iter()
        .map(|band| -> Result<u64, DedupError> {
            let name = band.map_or("exact".to_string(), |b| format!("band-{b:03}"));
            let mut out = RecordWriter::<PairRecord>::create(&dir.join(format!("{name}.bin")))?;
            let task_file = |t: usize| {
                let d = task_dir(&job.work, t);
                band.map_or(d.join("exact.bin"), |b| band_file(&d, b))
            };
            match band {
                Some(_) => {
                    let files = (0..job.tasks)
                        .map(|t| RecordFile::<BandRecord>::open(&task_file(t)))
                        .collect::<Result<Vec<_>, _>>()?;
                    chained_pairs(&files, |r| r.values, |r| r.doc, &mut out)?;
                }
                None => {
                    let files = (0..job.tasks)
                        .map(|t| RecordFile::<ExactRecord>::open(&task_file(t)))
                        .collect::<Result<Vec<_>, _>>()?;
                    chained_pairs(&files, |r| r.hash, |r| r.doc, &mut out)?;
                }
            }
            Ok(out.finish()?)
        })
        .collect::<Result<_, _>>()?;
    write_json(&dir.join("done.json"), &serde_json::json!({ "pairs": counts }))
}

/// Read access to every task's doc records and signatures.
struct DocLookup {
    tasks: usize,
    docs: Vec<RecordFile<DocRecord>>,
    sigs: Vec<RecordFile<SigRecord>>,
    ids: Vec<memmap2::Mmap>,
    /// Hashes per signature (the last stored chunk is padded to `SIG_CHUNK`).
    hashes: usize,
}

impl DocLookup {
    fn open(job: &DedupJob) -> Result<Self, DedupError> {
        let (mut docs, mut sigs, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for t in 0..job.tasks {
            let dir = task_dir(&job.work, t);
            let done: TaskDone = read_json(&dir.join("done.json")).ok_or_else(|| DedupError::NotReady {
                marker: dir.join("done.json"),
                missing: format!("the signatures stage of task {t} of {}", job.tasks),
            })?;
            docs.push(RecordFile::open(&dir.join("docs.bin"))?);
            sigs.push(RecordFile::open(&dir.join("sig.bin"))?);
            let path = dir.join("ids.txt");
            let file = std::fs::File::open(&path).map_err(io_err(&path))?;
            // SAFETY: written once by stage 1 and never modified.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(&path))?;
            let checksum = format!("{:032x}", xxh3_128(&map));
            if map.len() as u64 != done.ids_bytes || checksum != done.ids_checksum {
                return Err(RecordError::Corrupt { path, check: "checksum mismatch".into() }.into());
            }
            ids.push(map);
        }
        let hashes = job.config.near.as_ref().map_or(0, |n| n.minhash.bands * n.minhash.rows);
        Ok(Self { tasks: job.tasks, docs, sigs, ids, hashes })
    }

    fn record(&self, doc: u64) -> Option<DocRecord> {
        let file = &self.docs[task_of_file(file_of(doc), self.tasks)];
        let probe = DocRecord { doc, id_offset: 0, id_len: 0, quality: 0.0, text_hash: 0 };
        let i = file.lower_bound(&probe);
        (i < file.len()).then(|| file.get(i)).filter(|r| r.doc == doc)
    }

    fn id(&self, doc: u64) -> Option<String> {
        let r = self.record(doc)?;
        let map = &self.ids[task_of_file(file_of(doc), self.tasks)];
        let bytes = map.get(r.id_offset as usize..(r.id_offset + r.id_len as u64) as usize)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    fn signature(&self, doc: u64) -> Vec<u32> {
        let file = &self.sigs[task_of_file(file_of(doc), self.tasks)];
        let mut i = file.lower_bound(&SigRecord { doc, part: 0, values: [0; SIG_CHUNK] });
        let mut out = Vec::new();
        while i < file.len() && file.get(i).doc == doc {
            out.extend_from_slice(&file.get(i).values);
            i += 1;
        }
        // The padding is equal in every signature: comparing it would inflate the estimate.
        out.truncate(self.hashes);
        out
    }
}

impl keepers::Documents for DocLookup {
    fn quality(&self, doc: u64) -> f32 {
        self.record(doc).map(|r| r.quality).filter(|q| !q.is_nan()).unwrap_or(f32::NEG_INFINITY)
    }
    fn same_text(&self, a: u64, b: u64) -> bool {
        self.record(a).zip(self.record(b)).is_some_and(|(a, b)| a.text_hash == b.text_hash)
    }
    fn similarity(&self, a: u64, b: u64) -> Option<f64> {
        let (a, b) = (self.signature(a), self.signature(b));
        (!a.is_empty() && !b.is_empty()).then(|| estimated_jaccard(&a, &b))
    }
}

/// The documents with their exact shingle sets: what verification compares.
struct Verified<'a> {
    lookup: &'a DocLookup,
    sets: &'a ShingleSets,
}

impl keepers::Documents for Verified<'_> {
    fn quality(&self, doc: u64) -> f32 {
        self.lookup.quality(doc)
    }
    fn same_text(&self, a: u64, b: u64) -> bool {
        self.lookup.same_text(a, b)
    }
    fn similarity(&self, a: u64, b: u64) -> Option<f64> {
        self.sets.jaccard(a, b)
    }
}

/// Every document of the exact pairs and the near candidate pairs, sorted.
fn paired_documents(sources: &[(RecordFile<PairRecord>, bool)]) -> Vec<u64> {
    let mut docs: Vec<u64> = sources.iter().flat_map(|(file, _)| file.iter().flat_map(|p| [p.a, p.b])).collect();
    docs.sort_unstable();
    docs.dedup();
    docs
}

/// Stage 3: verify candidates (exactly, on the shingle sets read again from the inputs), choose
/// keepers (see [`keepers`]), list removals.
pub fn clusters(job: &DedupJob, progress: &(dyn Fn(Progress) + Sync)) -> Result<DedupStats, DedupError> {
    let dir = job.work.join("clusters");
    if let Some(stats) = read_json::<DedupStats>(&dir.join("done.json")) {
        return Ok(stats);
    }
    if !job.work.join("pairs/done.json").is_file() {
        return Err(DedupError::NotReady {
            marker: job.work.join("pairs/done.json"),
            missing: "the pairs stage".into(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let lookup = DocLookup::open(job)?;
    let mut stats = DedupStats { documents: lookup.docs.iter().map(|f| f.len() as u64).sum(), ..Default::default() };

    // Union order: exact pairs, then bands 0, 1, ... each in its sort order (datatrove's order,
    // which decides the root that `Keeper::Root` keeps).
    let mut sources = Vec::new();
    if job.config.exact {
        let exact = RecordFile::<PairRecord>::open(&job.work.join("pairs/exact.bin"))?;
        stats.exact_pairs = exact.len() as u64;
        sources.push((exact, false));
    }
    for b in 0..job.bands() {
        let band = RecordFile::<PairRecord>::open(&job.work.join(format!("pairs/band-{b:03}.bin")))?;
        stats.candidate_pairs += band.len() as u64;
        sources.push((band, true));
    }
    // With verification, each distinct near pair is checked once (pairs repeat across bands).
    let threshold = job.config.near.as_ref().and_then(|n| n.verify_threshold);
    let sets = match threshold {
        Some(_) => Some(ShingleSets::build(job, &paired_documents(&sources), &dir.join("shingles.bin"), progress)?),
        None => None,
    };
    let mut verdicts: std::collections::HashMap<PairRecord, bool> = std::collections::HashMap::new();
    let mut accepted: Vec<PairRecord> = Vec::new();
    for (file, near) in &sources {
        let pairs: Vec<PairRecord> = file.iter().collect();
        if let (Some(t), Some(sets), true) = (threshold, &sets, *near) {
            let mut new: Vec<PairRecord> = pairs.iter().filter(|p| !verdicts.contains_key(p)).copied().collect();
            new.sort_unstable();
            new.dedup();
            let checked: Vec<bool> = new.par_iter().map(|p| sets.jaccard(p.a, p.b).is_some_and(|j| j >= t)).collect();
            stats.verified_pairs += checked.iter().filter(|&&k| k).count() as u64;
            verdicts.extend(new.into_iter().zip(checked));
            accepted.extend(pairs.into_iter().filter(|p| verdicts[p]));
        } else {
            accepted.extend(pairs);
        }
    }
    if threshold.is_none() {
        stats.verified_pairs = stats.candidate_pairs;
    }
    drop(verdicts);

    let grouping = match (&sets, threshold) {
        (Some(sets), Some(t)) => {
            let docs = Verified { lookup: &lookup, sets };
            match job.config.keep {
                Keeper::Root => keepers::by_component(&accepted, job.config.keep, &docs),
                keep => keepers::verified(&accepted, keep, t, &docs),
            }
        }
        _ => keepers::by_component(&accepted, job.config.keep, &lookup),
    };
    drop(accepted);
    if let Some(sets) = sets {
        sets.remove()?;
    }
    stats.clusters = grouping.sizes.len() as u64;
    for &size in grouping.sizes.values() {
        *stats.cluster_sizes.entry(size).or_default() += 1;
    }
    stats.kept_unlike_keeper = grouping.kept_unlike;
    let mut removals = RecordWriter::<RemovalRecord>::create(&dir.join("removals.bin"))?;
    for removal in &grouping.removals {
        match removal.reason {
            RemovalReason::Exact => stats.removed_exact += 1,
            RemovalReason::Near => stats.removed_near += 1,
        }
        removals.push(removal)?;
    }
    removals.finish()?;
    let mut keepers = RecordWriter::<KeeperRecord>::create(&dir.join("keepers.bin"))?;
    for (&doc, &size) in &grouping.sizes {
        keepers.push(&KeeperRecord { doc, size })?;
    }
    keepers.finish()?;
    write_json(&dir.join("done.json"), &stats)?;
    Ok(stats)
}

/// Stage 4, for one task: re-read its inputs and write kept and removed parts.
pub fn apply(job: &DedupJob, task: usize, progress: &(dyn Fn(Progress) + Sync)) -> Result<(), DedupError> {
    let removals = RecordFile::<RemovalRecord>::open(&job.work.join("clusters/removals.bin"))?;
    let keepers = RecordFile::<KeeperRecord>::open(&job.work.join("clusters/keepers.bin"))?;
    let lookup = DocLookup::open(job)?;
    let mut outputs = job.read.carry.clone();
    if !outputs.contains(&CLUSTER_SIZE) {
        outputs.push(CLUSTER_SIZE);
    }
    let mut seen = Progress::default();
    for (file_index, path) in job.files_of(task) {
        let (dir, name) = job.part(file_index);
        let stats_path = dir.join("stats").join(format!("{name}.json"));
        if stats_path.is_file() {
            continue;
        }
        let mut part = PartWriter::create(&dir, &name, &outputs)?;
        let mut stats = StageStats::with_steps(["read".to_string(), "where".to_string(), "dedup".to_string()]);
        let mut next = removals.lower_bound(&RemovalRecord {
            doc: doc_number(file_index, 0),
            keeper: 0,
            reason: RemovalReason::Exact,
            similarity: f32::NEG_INFINITY,
        });
        let mut next_keeper = keepers.lower_bound(&KeeperRecord { doc: doc_number(file_index, 0), size: 0 });
        for batch in read::open(path, &job.read)? {
            let mut batch = batch?;
            let rows = crate::filter_stage::count_read_and_where(&mut stats, &batch);
            let mut removed: Vec<Removal> = std::mem::take(&mut batch.removed);
            let mut kept = Vec::with_capacity(batch.documents.len());
            for doc in &mut batch.documents {
                let number = doc_number(file_index, doc.row);
                while next < removals.len() && removals.get(next).doc < number {
                    next += 1;
                }
                while next_keeper < keepers.len() && keepers.get(next_keeper).doc < number {
                    next_keeper += 1;
                }
                let size = (next_keeper < keepers.len())
                    .then(|| keepers.get(next_keeper))
                    .filter(|k| k.doc == number)
                    .map_or(1, |k| k.size);
                let step = stats.step_mut("dedup");
                step.documents_in += 1;
                step.bytes_in += doc.text.len() as u64;
                match (next < removals.len()).then(|| removals.get(next)).filter(|r| r.doc == number) {
                    Some(r) => {
                        *step.removed.entry(r.reason.as_str().to_string()).or_default() += 1;
                        let mut removal = Removal::of(doc, "dedup", r.reason.as_str());
                        removal.cluster_id = Some(r.keeper);
                        removal.kept_id = lookup.id(r.keeper);
                        removal.similarity = (!r.similarity.is_nan()).then_some(r.similarity);
                        removed.push(removal);
                    }
                    None => {
                        step.documents_out += 1;
                        step.bytes_out += doc.text.len() as u64;
                        doc.set_score(CLUSTER_SIZE.name(), size as f64);
                        kept.push(&*doc);
                    }
                }
            }
            part.write_batch(&kept, removed, (rows, batch.bytes), &mut stats, &mut seen)?;
            progress(seen);
        }
        part.finish()?;
        write_json(&stats_path, &stats)?;
    }
    Ok(())
}

/// Sum the parts' stats and the cluster stats into `OUT/stats.json` once every part is applied
/// (else the parts not applied yet, as `FOLDER/NAME`).
pub fn finish(job: &DedupJob) -> Result<Parts<(StageStats, DedupStats)>, DedupError> {
    let mut total = StageStats::with_steps(["read".to_string(), "where".to_string(), "dedup".to_string()]);
    let mut missing = Vec::new();
    for i in 0..job.inputs.len() {
        let (dir, name) = job.part(i);
        match read_json::<StageStats>(&dir.join("stats").join(format!("{name}.json"))) {
            Some(part) => total.merge(&part),
            None => missing.push(dir.join(name).display().to_string()),
        }
    }
    if !missing.is_empty() {
        return Ok(Parts::Missing(missing));
    }
    let clusters = read_stats(job)?;
    write_json(&job.out.join("stats.json"), &serde_json::json!({ "stage": total, "dedup": clusters }))?;
    Ok(Parts::Complete((total, clusters)))
}

/// The clusters stage's summary (`NotReady` before that stage has run).
pub(super) fn read_stats(job: &DedupJob) -> Result<DedupStats, DedupError> {
    let marker = job.work.join("clusters/done.json");
    read_json(&marker).ok_or(DedupError::NotReady { marker, missing: "the clusters stage".into() })
}

/// Every stage for every task, in order, on this machine.
pub fn run_all(job: &DedupJob, progress: &(dyn Fn(Progress) + Sync)) -> Result<(StageStats, DedupStats), DedupError> {
    for task in 0..job.tasks {
        signatures(job, task, progress)?;
    }
    pairs(job)?;
    clusters(job, progress)?;
    for task in 0..job.tasks {
        apply(job, task, progress)?;
    }
    // Every part was applied just now, so only an unreadable part summary ends here.
    match finish(job)? {
        Parts::Complete(done) => Ok(done),
        Parts::Missing(_) => {
            Err(DedupError::NotReady { marker: job.out.clone(), missing: "the apply stage of every part".into() })
        }
    }
}
