//! Tokenize documents into a prepared dataset: Megatron shards (`.bin/.idx`), a per-document
//! sidecar parquet per shard, optionally datatrove's `.ds` files, and `manifest.json` last.
//!
//! Input file i (a part) becomes shards `NAME_{i:05}_{k:04}`, cut at the target size, so a
//! rerun redoes only unfinished parts and ends byte-identical to an uninterrupted run. A part
//! is finished when `parts/part-{i:05}.json` (its shard entries) exists; the manifest is
//! written when every part is. Documents are encoded in parallel per batch and written in
//! input order; memory is bounded by the batch (documents longer than 1 MiB are encoded in
//! pieces cut where the tokenizer splits anyway; see `tokenize`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shards::{DatasetManifest, ShardEntry, ShardWriter};
use util::fsutil::{durable_rename, temp_path, write_atomic};

use crate::document::{Document, OutputColumn};
use crate::file_error::FileError;
use crate::output::RemovedWriter;
use crate::read::{self, ReadError, ReadOptions};
use crate::render::LossMask;
use crate::run_folder::{Folder, Parts, Progress, RunFolderError, TaskSlice, part_name, run_parts};
use crate::tokenize::{DocumentEncoding, TextTokenizer, TokenizeError};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    #[error(transparent)]
    Shard(#[from] shards::ShardError),
    #[error(transparent)]
    Manifest(#[from] shards::manifest::ManifestError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Folder(#[from] RunFolderError),
    #[error("the megatron format is required: the manifest and sidecars describe its shards")]
    MegatronRequired,
    #[error("{path}, {row} (id {id:?}): {source}")]
    Document {
        path: PathBuf,
        row: String,
        id: String,
        #[source]
        source: Box<TokenizeError>,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |e| FileError::at(path)(e).into()
}

/// Output formats besides the sidecars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formats {
    pub megatron: bool,
    pub datatrove: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Self { megatron: true, datatrove: false }
    }
}

/// A format to write shards in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Megatron-LM's `.bin` + `.idx` (always: the manifest and sidecars describe these shards).
    Megatron,
    /// datatrove/nanotron's `.ds` + `.ds.index` + `.ds.metadata` as well.
    Datatrove,
}

impl Formats {
    pub fn from_list(list: &[OutputFormat]) -> Result<Self, DatasetError> {
        let f = Self {
            megatron: list.contains(&OutputFormat::Megatron),
            datatrove: list.contains(&OutputFormat::Datatrove),
        };
        if !f.megatron {
            return Err(DatasetError::MegatronRequired);
        }
        Ok(f)
    }
}

#[derive(Clone, Debug)]
pub struct DatasetOptions {
    pub domain: String,
    pub read: ReadOptions,
    /// Start a new shard once a shard's `.bin` reaches this many bytes.
    pub shard_bytes: u64,
    pub formats: Formats,
    /// Rendered chat documents (tokenized as transformers tokenizes a rendered chat: special-token
    /// strings are special tokens), and whether a loss mask is written beside each shard.
    pub chat: Option<LossMask>,
    /// The settings that produced the dataset, recorded in the manifest.
    pub config: serde_json::Value,
}

/// One shard being written: Megatron files, sidecar rows, optional datatrove files.
struct OpenShard {
    prefix: PathBuf,
    writer: ShardWriter,
    sidecar: Sidecar,
    ds: Option<DsWriter>,
    /// `PREFIX.loss` and, with the datatrove format, `NAME.ds.loss`.
    loss: Vec<ByteFile>,
}

/// A file of bytes that appears under its name only when complete.
struct ByteFile {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
}

impl ByteFile {
    fn create(path: PathBuf) -> Result<Self, DatasetError> {
        let tmp = temp_path(&path);
        let out = BufWriter::with_capacity(1 << 16, File::create(&tmp).map_err(io_err(&tmp))?);
        Ok(Self { path, tmp, out })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), DatasetError> {
        self.out.write_all(bytes).map_err(io_err(&self.tmp))
    }

    fn finish(self) -> Result<(), DatasetError> {
        let file = self.out.into_inner().map_err(FileError::at(&self.tmp))?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        durable_rename(&self.tmp, &self.path).map_err(io_err(&self.path))
    }
}

/// Per-document sidecar rows, written as one parquet file per shard.
struct Sidecar {
    path: PathBuf,
    domain: String,
    carry: Vec<OutputColumn>,
    ids: StringBuilder,
    sources: StringBuilder,
    rows: UInt64Builder,
    tokens: UInt64Builder,
    bytes: UInt64Builder,
    scores: Vec<Float64Builder>,
    labels: Vec<StringBuilder>,
    count: usize,
}

impl Sidecar {
    fn new(path: PathBuf, domain: &str, carry: &[OutputColumn]) -> Self {
        Self {
            path,
            domain: domain.to_string(),
            carry: carry.to_vec(),
            ids: StringBuilder::new(),
            sources: StringBuilder::new(),
            rows: UInt64Builder::new(),
            tokens: UInt64Builder::new(),
            bytes: UInt64Builder::new(),
            scores: carry
                .iter()
                .filter(|c| matches!(c, OutputColumn::Score(_)))
                .map(|_| Float64Builder::new())
                .collect(),
            labels: carry
                .iter()
                .filter(|c| matches!(c, OutputColumn::Label(_)))
                .map(|_| StringBuilder::new())
                .collect(),
            count: 0,
        }
    }

    fn push(&mut self, doc: &Document, tokens: usize) {
        self.ids.append_value(&doc.id);
        self.sources.append_value(&doc.source);
        self.rows.append_value(doc.row);
        self.tokens.append_value(tokens as u64);
        self.bytes.append_value(doc.text.len() as u64);
        let (mut s, mut l) = (0, 0);
        for c in &self.carry {
            match c {
                OutputColumn::Score(name) => {
                    self.scores[s].append_option(doc.score(name));
                    s += 1;
                }
                OutputColumn::Label(name) => {
                    self.labels[l].append_option(doc.label(name));
                    l += 1;
                }
            }
        }
        self.count += 1;
    }

    fn finish(mut self) -> Result<(), DatasetError> {
        let n = self.count;
        let mut domain = StringBuilder::new();
        (0..n).for_each(|_| domain.append_value(&self.domain));
        let mut fields = vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("row", DataType::UInt64, false),
            Field::new("domain", DataType::Utf8, false),
            Field::new("tokens", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ids.finish()),
            Arc::new(self.sources.finish()),
            Arc::new(self.rows.finish()),
            Arc::new(domain.finish()),
            Arc::new(self.tokens.finish()),
            Arc::new(self.bytes.finish()),
        ];
        let (mut s, mut l) = (0, 0);
        for c in &self.carry {
            match c {
                OutputColumn::Score(name) => {
                    fields.push(Field::new(*name, DataType::Float64, true));
                    columns.push(Arc::new(self.scores[s].finish()));
                    s += 1;
                }
                OutputColumn::Label(name) => {
                    fields.push(Field::new(*name, DataType::Utf8, true));
                    columns.push(Arc::new(self.labels[l].finish()));
                    l += 1;
                }
            }
        }
        let err = FileError::at(&self.path);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(FileError::at(&self.path))?;
        let tmp = temp_path(&self.path);
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = ArrowWriter::try_new(file, batch.schema(), None).map_err(FileError::at(&self.path))?;
        w.write(&batch).map_err(FileError::at(&self.path))?;
        let file = w.into_inner().map_err(err)?;
        file.sync_all().map_err(io_err(&tmp))?;
        durable_rename(&tmp, &self.path).map_err(io_err(&self.path))
    }
}

/// datatrove / nanotron token files: `.ds` (raw little-endian ids, 2 or 4 bytes), `.ds.index`
/// (u64 cumulative document ends, in tokens) and `.ds.metadata`.
struct DsWriter {
    path: PathBuf,
    tmp: PathBuf,
    tokens: BufWriter<File>,
    ends: Vec<u64>,
    total: u64,
    token_size: usize,
    tokenizer_name: String,
    buf: Vec<u8>,
}

impl DsWriter {
    fn create(path: PathBuf, vocab_size: usize, tokenizer_name: String) -> Result<Self, DatasetError> {
        let tmp = temp_path(&path);
        let tokens = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io_err(&tmp))?);
        let token_size = if vocab_size <= 1 << 16 { 2 } else { 4 };
        Ok(Self { path, tmp, tokens, ends: Vec::new(), total: 0, token_size, tokenizer_name, buf: Vec::new() })
    }

    fn append(&mut self, ids: &[u32]) -> Result<(), DatasetError> {
        self.buf.clear();
        for &t in ids {
            if self.token_size == 2 {
                self.buf.extend_from_slice(&(t as u16).to_le_bytes());
            } else {
                self.buf.extend_from_slice(&t.to_le_bytes());
            }
        }
        self.tokens.write_all(&self.buf).map_err(io_err(&self.tmp))?;
        self.total += ids.len() as u64;
        self.ends.push(self.total);
        Ok(())
    }

    fn finish(self) -> Result<(), DatasetError> {
        let tmp = self.tmp.clone();
        let file = self.tokens.into_inner().map_err(FileError::at(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        let index: Vec<u8> = self.ends.iter().flat_map(|e| e.to_le_bytes()).collect();
        let with = |suffix: &str| {
            let mut s = self.path.as_os_str().to_os_string();
            s.push(suffix);
            PathBuf::from(s)
        };
        write_atomic(&with(".index"), &index).map_err(io_err(&with(".index")))?;
        let metadata =
            format!("{}|{}\n{}\n{}", self.tokenizer_name, self.token_size, self.total, humanize_tokens(self.total));
        write_atomic(&with(".metadata"), metadata.as_bytes()).map_err(io_err(&with(".metadata")))?;
        durable_rename(&tmp, &self.path).map_err(io_err(&self.path))
    }
}

/// `humanize.metric(n, unit="T")` style: three significant digits and an SI prefix.
fn humanize_tokens(n: u64) -> String {
    let (value, prefix) = match n {
        0..1_000 => return format!("{n} T"),
        1_000..1_000_000 => (n as f64 / 1e3, "k"),
        1_000_000..1_000_000_000 => (n as f64 / 1e6, "M"),
        1_000_000_000..1_000_000_000_000 => (n as f64 / 1e9, "G"),
        _ => (n as f64 / 1e12, "T"),
    };
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {prefix}T")
}

/// What one finished part produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartDone {
    pub shards: Vec<ShardEntry>,
    pub documents: u64,
    pub tokens: u64,
    pub bytes: u64,
    /// Rows the reader removed (bad rows with `on_error = "skip"`), in `removed/part-*.parquet`.
    pub removed: u64,
    /// Literal special-token strings in the texts, and the documents that held any (what they
    /// became: the tokenizer identity's `special_tokens_in_text`).
    #[serde(default)]
    pub special_token_strings: u64,
    #[serde(default)]
    pub documents_with_special_token_strings: u64,
    /// Pieces of text that tokenizers 0.23 encoded because 1.x could not encode them alike.
    #[serde(default)]
    pub reference_encoded_pieces: u64,
    /// With a loss mask: tokens it counts, and documents where it counts none (a conversation
    /// without an assistant turn).
    #[serde(default)]
    pub loss_tokens: u64,
    #[serde(default)]
    pub documents_without_loss_tokens: u64,
}

fn part_marker(out: &Path, i: usize) -> PathBuf {
    out.join("parts").join(format!("{}.json", part_name(i)))
}

fn open_shard(
    out: &Path,
    options: &DatasetOptions,
    tokenizer: &TextTokenizer,
    part: usize,
    k: usize,
) -> Result<OpenShard, DatasetError> {
    let name = format!("{}_{part:05}_{k:04}", options.domain);
    let prefix = out.join(&name);
    let ds = if options.formats.datatrove {
        let tokenizer_name = tokenizer.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Some(DsWriter::create(out.join(format!("{name}.ds")), tokenizer.vocab_size(), tokenizer_name)?)
    } else {
        None
    };
    let mut loss = Vec::new();
    if options.chat == Some(LossMask::Assistant) {
        loss.push(ByteFile::create(out.join(format!("{name}.loss")))?);
        if options.formats.datatrove {
            loss.push(ByteFile::create(out.join(format!("{name}.ds.loss")))?);
        }
    }
    Ok(OpenShard {
        loss,
        writer: ShardWriter::create(&prefix, tokenizer.vocab_size())?,
        sidecar: Sidecar::new(out.join(format!("{name}.docs.parquet")), &options.domain, &options.read.carry),
        prefix,
        ds,
    })
}

fn close_shard(out: &Path, shard: OpenShard) -> Result<ShardEntry, DatasetError> {
    let OpenShard { prefix, writer, sidecar, ds, loss } = shard;
    let sidecar_name = sidecar.path.file_name().unwrap().to_string_lossy().into_owned();
    sidecar.finish()?;
    if let Some(ds) = ds {
        ds.finish()?;
    }
    let mask = loss.first().map(|f| f.path.clone());
    for f in loss {
        f.finish()?;
    }
    let summary = writer.finish()?;
    debug_assert_eq!(summary.prefix, prefix);
    let mut entry = ShardEntry::from_summary(out, &summary)?;
    entry.sidecar = Some(sidecar_name);
    if let Some(mask) = mask {
        entry.loss_mask_checksum = Some(util::fsutil::file_checksum(&mask).map_err(io_err(&mask))?);
        entry.loss_mask = Some(mask.file_name().unwrap().to_string_lossy().into_owned());
    }
    Ok(entry)
}

/// Tokenize input file `part` into its shards.
fn tokenize_part(
    input: &Path,
    part: usize,
    tokenizer: &TextTokenizer,
    options: &DatasetOptions,
    out: &Path,
    seen: &mut Progress,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<PartDone, DatasetError> {
    let mut done = PartDone::default();
    let mut shard: Option<OpenShard> = None;
    let mut k = 0;
    let removed_path = out.join("removed").join(format!("{}.parquet", part_name(part)));
    let mut removed = RemovedWriter::create(&removed_path)?;
    for batch in read::open(input, &options.read)? {
        let batch = batch?;
        removed.write(&batch.removed)?;
        done.removed += batch.removed.len() as u64;
        let encoded: Vec<(Vec<u32>, Vec<u8>, DocumentEncoding)> = batch
            .documents
            .par_iter()
            .map(|d| {
                let mut ids = Vec::with_capacity(d.text.len() / 3);
                let mut mask = Vec::new();
                let found = match options.chat {
                    None => tokenizer.encode_document(&d.text, &mut ids),
                    Some(m) => {
                        let spans = (m == LossMask::Assistant).then_some(&d.loss_spans[..]);
                        tokenizer.encode_chat_document(&d.text, spans, &mut ids, &mut mask)
                    }
                }
                .map_err(|source| DatasetError::Document {
                    path: input.to_path_buf(),
                    row: read::row_name(input, d.row),
                    id: d.id.clone(),
                    source: Box::new(source),
                })?;
                Ok((ids, mask, found))
            })
            .collect::<Result<_, DatasetError>>()?;
        for (doc, (ids, mask, found)) in batch.documents.iter().zip(&encoded) {
            done.special_token_strings += found.special_tokens_in_text;
            done.documents_with_special_token_strings += u64::from(found.special_tokens_in_text > 0);
            done.reference_encoded_pieces += found.reference_pieces;
            if shard.as_ref().is_some_and(|s| s.writer.bin_bytes() >= options.shard_bytes) {
                done.shards.push(close_shard(out, shard.take().unwrap())?);
                k += 1;
            }
            if shard.is_none() {
                shard = Some(open_shard(out, options, tokenizer, part, k)?);
            }
            let s = shard.as_mut().unwrap();
            s.writer.append(ids)?;
            s.sidecar.push(doc, ids.len());
            if let Some(ds) = &mut s.ds {
                ds.append(ids)?;
            }
            for f in &mut s.loss {
                f.append(mask)?;
            }
            if options.chat == Some(LossMask::Assistant) {
                let trained = mask.iter().map(|&b| u64::from(b)).sum::<u64>();
                done.loss_tokens += trained;
                done.documents_without_loss_tokens += u64::from(trained == 0);
            }
            done.documents += 1;
            done.tokens += ids.len() as u64;
            done.bytes += doc.text.len() as u64;
        }
        seen.documents += (batch.documents.len() + batch.removed.len()) as u64;
        seen.bytes += batch.bytes;
        seen.kept += batch.documents.len() as u64;
        progress(*seen);
    }
    if let Some(s) = shard {
        done.shards.push(close_shard(out, s)?);
    }
    removed.finish()?;
    Ok(done)
}

/// Files of a dataset folder that `--force` removes (the stage folders `filtered/` and
/// `dedup/` of prepare are left alone).
fn is_dataset_file(name: &str, domain: &str) -> bool {
    matches!(name, "manifest.json" | "parts" | "removed" | "removed.parquet" | "stats.json")
        || (name.starts_with(&format!("{domain}_"))
            && [".bin", ".idx", ".docs.parquet", ".ds", ".ds.index", ".ds.metadata", ".loss", ".tmp"]
                .iter()
                .any(|e| name.ends_with(e)))
}

/// Claim `out` for a dataset made by `identity`. Returns the manifest when that dataset is
/// already finished (nothing to do). A folder holding another dataset, or other files, is an
/// error unless `force`, which removes the dataset's files first. `allowed` names entries that
/// may already be there (prepare's `filtered`, `dedup`).
pub fn claim_dataset_folder(
    out: &Path,
    domain: &str,
    identity: &serde_json::Value,
    force: bool,
    allowed: &[&str],
) -> Result<Option<DatasetManifest>, DatasetError> {
    let is_output = |name: &str| is_dataset_file(name, domain);
    let folder =
        Folder { dir: out, identity_file: "parts/run.json", what: "another dataset", is_output: &is_output, allowed };
    folder.claim(identity, force)?;
    if out.join(shards::manifest::MANIFEST_FILE).is_file() {
        return Ok(Some(DatasetManifest::load(out)?));
    }
    Ok(None)
}

/// Tokenize the inputs `slice` owns into shards, skipping finished parts; each part's marker
/// (`parts/NNNNN.json`) is written after its shards.
pub fn tokenize_inputs(
    inputs: &[PathBuf],
    tokenizer: &TextTokenizer,
    options: &DatasetOptions,
    out: &Path,
    slice: TaskSlice,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(), DatasetError> {
    std::fs::create_dir_all(out.join("parts")).map_err(io_err(out))?;
    let mut seen = Progress::default();
    run_parts(
        inputs.len(),
        slice,
        |i| part_marker(out, i),
        |i| tokenize_part(&inputs[i], i, tokenizer, options, out, &mut seen, progress),
    )
}

/// One [`PartDone`] per input once every part's marker exists, else the missing markers.
pub fn finished_parts(inputs: usize, out: &Path) -> Parts<Vec<PartDone>> {
    crate::run_folder::finished_parts(inputs, |i| part_marker(out, i), |i| part_marker(out, i).display().to_string())
}

/// The tokenize stage's figures for `stats.json`.
pub fn tokenize_stats(parts: &[PartDone], tokenizer: &TextTokenizer, options: &DatasetOptions) -> serde_json::Value {
    let sum = |f: fn(&PartDone) -> u64| parts.iter().map(f).sum::<u64>();
    let mut stats = serde_json::json!({
        "documents": sum(|p| p.documents),
        "tokens": sum(|p| p.tokens),
        "bytes": sum(|p| p.bytes),
        "special_tokens_in_text": {
            "mode": tokenizer.identity().special_tokens_in_text,
            "strings": sum(|p| p.special_token_strings),
            "documents": sum(|p| p.documents_with_special_token_strings),
        },
        "encoder": tokenizer.identity().encoder,
        "pieces_encoded_by_tokenizers_0_23": sum(|p| p.reference_encoded_pieces),
    });
    if options.chat.is_some() {
        stats["special_tokens_in_text"]["mode"] =
            "keep (a rendered chat: its special-token strings are the template's)".into();
    }
    if options.chat == Some(LossMask::Assistant) {
        stats["loss_mask"] = serde_json::json!({
            "tokens_in_loss": sum(|p| p.loss_tokens),
            "documents_without_loss_tokens": sum(|p| p.documents_without_loss_tokens),
        });
    }
    stats
}

/// Concatenate parquet files of one schema (removed-document parts) into `out`, streaming.
pub fn merge_parquet(files: &[PathBuf], out: &Path) -> Result<u64, DatasetError> {
    let tmp = temp_path(out);
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut rows = 0u64;
    for f in files {
        let file = File::open(f).map_err(io_err(f))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(FileError::at(f))?;
        for batch in reader {
            let batch = batch.map_err(FileError::at(f))?;
            if writer.is_none() {
                let file = File::create(&tmp).map_err(io_err(&tmp))?;
                writer = Some(ArrowWriter::try_new(file, batch.schema(), None).map_err(FileError::at(out))?);
            }
            rows += batch.num_rows() as u64;
            writer.as_mut().unwrap().write(&batch).map_err(FileError::at(out))?;
        }
    }
    let writer = match writer {
        Some(w) => w,
        None => {
            // No rows at all: still write an empty file with the removed-documents schema.
            let schema = crate::output::removed_schema();
            ArrowWriter::try_new(File::create(&tmp).map_err(io_err(&tmp))?, schema, None).map_err(FileError::at(out))?
        }
    };
    let file = writer.into_inner().map_err(FileError::at(out))?;
    file.sync_all().map_err(io_err(&tmp))?;
    durable_rename(&tmp, out).map_err(io_err(out))?;
    Ok(rows)
}

/// Write `manifest.json`: call it last, when everything else in the folder is final.
pub fn write_manifest(
    parts: &[PartDone],
    tokenizer: &TextTokenizer,
    options: &DatasetOptions,
    out: &Path,
) -> Result<DatasetManifest, DatasetError> {
    let shards = parts.iter().flat_map(|p| p.shards.iter().cloned()).collect();
    let mut identity = tokenizer.identity().clone();
    if options.chat.is_some() {
        identity.special_tokens_in_text = Some(crate::tokenize::SpecialTokensInText::Keep.as_str().to_string());
    }
    let manifest = DatasetManifest::new(&options.domain, identity, shards, options.config.clone());
    manifest.write(out)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanized_counts() {
        assert_eq!(humanize_tokens(999), "999 T");
        assert_eq!(humanize_tokens(12_345), "12.3 kT");
        assert_eq!(humanize_tokens(4_560_000_000), "4.56 GT");
    }
}
