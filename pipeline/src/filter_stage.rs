//! The filter stage: read every input, run the filter chain, write kept and removed documents
//! and stats. `midtrain filter` runs it alone; `midtrain prepare` runs it per domain.
//!
//! Layout of the output folder (one part per input file, in sorted input order):
//!
//! ```text
//! run.json                   what produced this folder (a rerun with other settings is refused)
//! kept/part-00000.parquet    id, text, source, row, url, scores, labels
//! removed/part-00000.parquet id, source, row, step, reason, cluster_id, kept_id, similarity
//! stats/part-00000.json      written last for the part: the part is finished
//! stats.json                 all parts summed, written last: the stage is finished
//! ```
//!
//! Batches are processed in parallel (rayon) and written in input order, so outputs are
//! byte-identical whatever the thread count. Memory is bounded by the batch size. A rerun skips
//! finished parts and redoes unfinished ones (file granularity).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::document::Removal;
use crate::file_error::FileError;
use crate::filter::{ChainOutcome, FilterChain};
use crate::output::PartWriter;
use crate::read::{self, ReadError, ReadOptions};
use crate::run_folder::{Parts, Progress, RunFolderError, TaskSlice, finished_parts, part_name, run_parts};
use crate::stats::StageStats;
use util::fsutil::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Folder(#[from] RunFolderError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |e| FileError::at(path)(e).into()
}

/// Filter the inputs `slice` owns into `out` (claimed beforehand with
/// [`Folder::stage`](crate::run_folder::Folder::stage)), skipping parts already finished. Each
/// part's `stats/part-NNNNN.json` is its done-marker, written after its outputs.
pub fn run_filter_stage(
    inputs: &[PathBuf],
    read_options: &ReadOptions,
    chain: &FilterChain,
    out: &Path,
    slice: TaskSlice,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(), StageError> {
    let mut seen = Progress::default();
    run_parts(
        inputs.len(),
        slice,
        |i| part_stats_path(out, i),
        |i| filter_file(&inputs[i], i, read_options, chain, out, &mut seen, progress),
    )
}

/// The stage's summary: once every one of the `inputs` parts has its done-marker, their stats
/// summed into `stats.json` (which marks the stage finished); else the parts still missing.
pub fn finish_filter_stage(inputs: usize, chain: &FilterChain, out: &Path) -> Result<Parts<StageStats>, StageError> {
    let parts: Vec<StageStats> = match finished_parts(inputs, |i| part_stats_path(out, i), part_name) {
        Parts::Complete(parts) => parts,
        Parts::Missing(missing) => return Ok(Parts::Missing(missing)),
    };
    let mut total = StageStats::with_steps(step_names(chain));
    parts.iter().for_each(|part| total.merge(part));
    let stats_path = out.join("stats.json");
    let bytes = serde_json::to_vec_pretty(&total).expect("serialisable");
    write_atomic(&stats_path, &bytes).map_err(io(&stats_path))?;
    Ok(Parts::Complete(total))
}

fn part_stats_path(out: &Path, index: usize) -> PathBuf {
    out.join("stats").join(format!("{}.json", part_name(index)))
}

fn step_names(chain: &FilterChain) -> Vec<String> {
    let mut steps = vec!["read".to_string(), "where".to_string()];
    steps.extend(chain.names());
    steps
}

fn filter_file(
    input: &Path,
    index: usize,
    read_options: &ReadOptions,
    chain: &FilterChain,
    out: &Path,
    seen: &mut Progress,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<StageStats, StageError> {
    std::fs::create_dir_all(out.join("stats")).map_err(io(out))?;
    let name = part_name(index);
    let mut part = PartWriter::create(out, &name, &chain.outputs())?;
    let names = step_names(chain);
    let mut stats = StageStats::with_steps(names.clone());
    for batch in read::open(input, read_options)? {
        let mut batch = batch?;
        let rows = count_read_and_where(&mut stats, &batch);

        let outcomes: Vec<(ChainOutcome, Vec<u64>)> = batch
            .documents
            .par_iter_mut()
            .map_init(Vec::new, |bytes_in, doc| {
                let outcome = chain.apply(doc, bytes_in);
                (outcome, bytes_in.clone())
            })
            .collect();

        let mut kept = Vec::with_capacity(batch.documents.len());
        let mut removed = std::mem::take(&mut batch.removed);
        for (doc, (outcome, bytes_in)) in batch.documents.iter().zip(&outcomes) {
            let reached = match outcome {
                ChainOutcome::Kept { .. } => bytes_in.len(),
                ChainOutcome::Dropped { step, .. } => step + 1,
            };
            for (s, &bytes) in bytes_in.iter().enumerate().take(reached) {
                let step = &mut stats.steps[s + 2];
                step.documents_in += 1;
                step.bytes_in += bytes;
                let passed = !matches!(outcome, ChainOutcome::Dropped { step, .. } if *step == s);
                if passed {
                    step.documents_out += 1;
                    step.bytes_out += bytes_in.get(s + 1).copied().unwrap_or(doc.text.len() as u64);
                }
            }
            match outcome {
                ChainOutcome::Kept { marks } => {
                    for (step, reason) in marks {
                        *stats.steps[step + 2].marked.entry(reason_key(reason)).or_default() += 1;
                    }
                    kept.push(doc);
                }
                ChainOutcome::Dropped { step, reason } => {
                    *stats.steps[step + 2].removed.entry(reason_key(reason)).or_default() += 1;
                    removed.push(Removal::of(doc, names[step + 2].clone(), reason.to_string()));
                }
            }
        }
        part.write_batch(&kept, removed, (rows, batch.bytes), &mut stats, seen)?;
        progress(*seen);
    }
    part.finish()?;
    Ok(stats)
}

/// What stats count a removal under: its reason up to the first `:` (the rest names the row's
/// details: a JSON error, a benchmark item). Marks count the same way.
/// Count a batch in the `read` and `where` steps (rows unreadable, rows the predicate dropped)
/// and in the stage's totals; returns the batch's rows.
pub(crate) fn count_read_and_where(stats: &mut StageStats, batch: &read::Batch) -> u64 {
    let read_bad = batch.removed.iter().filter(|r| r.step == "read").count() as u64;
    let where_out = batch.documents.len() as u64;
    let rows = where_out + batch.removed.len() as u64;
    stats.documents_read += rows;
    stats.bytes_read += batch.bytes;
    let read_step = stats.step_mut("read");
    read_step.documents_in += rows;
    read_step.documents_out += rows - read_bad;
    read_step.bytes_in += batch.bytes;
    read_step.bytes_out += batch.bytes;
    let passed_where_bytes: u64 = batch.documents.iter().map(|d| d.text.len() as u64).sum();
    let where_step = stats.step_mut("where");
    where_step.documents_in += rows - read_bad;
    where_step.documents_out += where_out;
    where_step.bytes_in += batch.bytes;
    where_step.bytes_out += passed_where_bytes;
    for r in &batch.removed {
        let key = reason_key(&r.reason);
        if r.step == "read" && r.reason.contains(read::ROWS_UNKNOWN) {
            stats.rows_lost_unknown.push(format!("{}: {key}", r.source));
        }
        *stats.step_mut(&r.step).removed.entry(key).or_default() += 1;
    }
    rows
}

fn reason_key(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).to_string()
}
