//! Readers: parquet (arrow record batches, projected) and jsonl / jsonl.gz / jsonl.zst
//! (Dolma-style `id`, `text`, `metadata`), each yielding batches of documents in file order.
//!
//! Memory is bounded by the batch size (plus one parquet page per projected column), whatever
//! the file size. Rows that the `where` predicate rejects, and bad rows when `on_error = "skip"`,
//! come back as [`Removal`]s so that nothing disappears unexplained.

mod jsonl;
mod parquet;
pub mod predicate;

pub use self::parquet::ColumnProblem;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::document::{Document, OutputColumn, Removal};
use crate::file_error::FileError;
use crate::render::Rendered;
pub use predicate::{Predicate, PredicateError, Value};

/// What to do with a bad row (bad JSON, invalid UTF-8, null or non-string text, unreadable part of a file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop with an error naming the file and row.
    #[default]
    Fail,
    /// Record the row as removed (step `read`) with the reason, and go on.
    Skip,
}

/// How to read the inputs of one domain.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    pub text_column: String,
    /// When `None` (or the column is absent), ids are `FILE_NAME#ROW`.
    pub id_column: Option<String>,
    /// Column holding the URL, when present (default `url`).
    pub url_column: Option<String>,
    pub predicate: Option<Predicate>,
    /// Score and label columns read into each document when the input has them (so later
    /// stages keep what the filters computed; dedup's quality keeper reads `quality`).
    pub carry: Vec<OutputColumn>,
    /// Take each document's `source` and `row` from the input's own `source` / `row` columns
    /// when it has them (midtrain's stage outputs), so that sidecars and removal lists name the
    /// original dump and row, not the intermediate file.
    pub keep_provenance: bool,
    /// Render each row's text from its columns (chat messages, a flat template) instead of
    /// reading `text_column`.
    pub render: Option<Arc<crate::render::Renderer>>,
    pub batch_size: usize,
    pub on_error: OnError,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            text_column: "text".into(),
            id_column: Some("id".into()),
            url_column: Some("url".into()),
            predicate: None,
            carry: Vec::new(),
            keep_provenance: false,
            render: None,
            batch_size: 1024,
            on_error: OnError::Fail,
        }
    }
}

impl ReadOptions {
    /// How a stage reads an earlier stage's kept parquet parts: every known column carried
    /// through, each document's source file and row kept.
    pub fn stage_output() -> Self {
        Self { carry: crate::document::KNOWN_COLUMNS.to_vec(), keep_provenance: true, ..Self::default() }
    }
}

/// One batch from a reader: documents to process, and rows removed while reading.
#[derive(Debug, Default)]
pub struct Batch {
    pub documents: Vec<Document>,
    pub removed: Vec<Removal>,
    /// Bytes of text read (kept and removed rows), for throughput.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "{path}: unreadable_file: parquet footer or schema: {source} (to record the file as removed and go \
         on: on_error = \"skip\" in a prepare config, --on-error skip on the command line)"
    )]
    Footer {
        path: PathBuf,
        #[source]
        source: ::parquet::errors::ParquetError,
    },
    /// The file's columns do not serve the domain (no text column, a `where` column missing).
    #[error("{path}: {problem}")]
    Columns { path: PathBuf, problem: ColumnProblem },
    #[error("{path}: unknown input format (expected .parquet, .jsonl, .json, .ndjson, .jsonl.gz or .jsonl.zst)")]
    UnknownFormat { path: PathBuf },
    #[error(
        "{path}: {}: {message} (to record such rows as removed and go on: on_error = \"skip\" in a prepare \
         config, --on-error skip on the command line)",
        row_name(path, *row)
    )]
    Row { path: PathBuf, row: u64, message: String },
    /// A row of a file read whole ([`read_records`]), which has no skipping policy.
    #[error("{path}: {}: {message}", row_name(path, *row))]
    Record { path: PathBuf, row: u64, message: String },
    #[error("input pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
    #[error("input pattern {pattern:?} matches no file")]
    NoMatch { pattern: String },
}

/// Ends the reason of a removal that stands for an unknown number of rows (an unreadable footer
/// or compressed stream), so the stage's stats can list it as a loss of unknown size.
pub const ROWS_UNKNOWN: &str = "is unknown: it stands here as one removal";

/// How people find a row: "line N" (from 1) in a text file, "row index N" (from 0, as parquet
/// tools count) in a parquet file. Stage outputs record the 0-based index in their `row` column.
pub fn row_name(path: &Path, row: u64) -> String {
    match Format::of(path) {
        Some(Format::Parquet) | None => format!("row index {row}"),
        Some(_) => format!("line {}", row + 1),
    }
}

/// Input formats, from the file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Jsonl,
    JsonlGz,
    JsonlZst,
}

impl Format {
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".parquet") {
            Some(Self::Parquet)
        } else if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson") {
            Some(Self::Jsonl)
        } else if name.ends_with(".jsonl.gz") || name.ends_with(".json.gz") {
            Some(Self::JsonlGz)
        } else if name.ends_with(".jsonl.zst") || name.ends_with(".json.zst") || name.ends_with(".jsonl.zstd") {
            Some(Self::JsonlZst)
        } else {
            None
        }
    }
}

/// Expand files and glob patterns into a sorted, de-duplicated list of input files.
pub fn expand_inputs(patterns: &[impl AsRef<str>]) -> Result<Vec<PathBuf>, ReadError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let pattern = pattern.as_ref();
        let before = files.len();
        if Path::new(pattern).is_file() {
            files.push(PathBuf::from(pattern));
        } else {
            let entries =
                glob::glob(pattern).map_err(|source| ReadError::Pattern { pattern: pattern.to_string(), source })?;
            for entry in entries {
                let path = entry.map_err(|e| {
                    let path = e.path().to_path_buf();
                    FileError { path, source: std::io::Error::from(e).into() }
                })?;
                if path.is_file() {
                    files.push(path);
                }
            }
        }
        if files.len() == before {
            return Err(ReadError::NoMatch { pattern: pattern.to_string() });
        }
        files[before..].sort();
    }
    for f in &files {
        if Format::of(f).is_none() {
            return Err(ReadError::UnknownFormat { path: f.clone() });
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    Ok(files)
}

/// A reader over one input file, yielding batches in file order.
pub type BatchIter = Box<dyn Iterator<Item = Result<Batch, ReadError>> + Send>;

/// Open one input file with the reader for its format.
pub fn open(path: &Path, options: &ReadOptions) -> Result<BatchIter, ReadError> {
    let source: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
    match Format::of(path) {
        Some(Format::Parquet) => parquet::open(path, source, options),
        Some(format) => jsonl::open(path, source, format, options),
        None => Err(ReadError::UnknownFormat { path: path.to_path_buf() }),
    }
}

/// A JSON object per row of a (small) file, all columns, with its row number: for task files
/// and other inputs read whole rather than streamed as documents.
pub type Record = (u64, serde_json::Map<String, serde_json::Value>);

pub fn read_records(path: &Path) -> Result<Vec<Record>, ReadError> {
    match Format::of(path) {
        Some(Format::Parquet) => parquet::records(path),
        Some(format) => jsonl::records(path, format),
        None => Err(ReadError::UnknownFormat { path: path.to_path_buf() }),
    }
}

/// Id for a row without one: the file name and the row number.
fn fallback_id(path: &Path, row: u64) -> String {
    format!("{}#{row}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
}

/// Shared per-row logic of the readers: apply the predicate, or turn a bad row into an error
/// or a removal.
struct RowSink<'a> {
    path: &'a Path,
    source: Arc<str>,
    options: &'a ReadOptions,
    batch: Batch,
}

impl<'a> RowSink<'a> {
    fn new(path: &'a Path, source: Arc<str>, options: &'a ReadOptions) -> Self {
        Self { path, source, options, batch: Batch::default() }
    }

    fn bad_row(&mut self, row: u64, id: Option<String>, message: String) -> Result<(), ReadError> {
        match self.options.on_error {
            OnError::Fail => Err(ReadError::Row { path: self.path.to_path_buf(), row, message }),
            OnError::Skip => {
                self.batch.removed.push(Removal {
                    id: id.unwrap_or_else(|| fallback_id(self.path, row)),
                    source: self.source.clone(),
                    row,
                    step: "read".into(),
                    reason: message,
                    cluster_id: None,
                    kept_id: None,
                    similarity: None,
                });
                Ok(())
            }
        }
    }

    fn row(
        &mut self,
        row: u64,
        id: Option<String>,
        text: Rendered,
        url: Option<String>,
        lookup: &dyn Fn(&str) -> Option<Value>,
    ) {
        self.row_from(row, None, id, text, url, lookup)
    }

    /// A row whose provenance (original file and row) may differ from where it was read.
    fn row_from(
        &mut self,
        row: u64,
        origin: Option<(Arc<str>, u64)>,
        id: Option<String>,
        text: Rendered,
        url: Option<String>,
        lookup: &dyn Fn(&str) -> Option<Value>,
    ) {
        let Rendered { text, loss_spans } = text;
        let (source, row) = origin.unwrap_or_else(|| (self.source.clone(), row));
        let id = id.unwrap_or_else(|| fallback_id(self.path, row));
        self.batch.bytes += text.len() as u64;
        if let Some(p) = &self.options.predicate
            && !p.eval(lookup)
        {
            self.batch.removed.push(Removal {
                id,
                source: source.clone(),
                row,
                step: "where".into(),
                reason: "predicate_false".into(),
                cluster_id: None,
                kept_id: None,
                similarity: None,
            });
            return;
        }
        let mut doc = Document::new(id, text, source, row);
        doc.url = url;
        doc.loss_spans = loss_spans;
        for column in &self.options.carry {
            match (column, lookup(column.name())) {
                (OutputColumn::Score(name), Some(Value::Number(v))) => doc.set_score(name, v),
                (OutputColumn::Label(name), Some(Value::Str(v))) => doc.set_label(name, v),
                _ => {}
            }
        }
        self.batch.documents.push(doc);
    }

    fn take(&mut self) -> Batch {
        std::mem::take(&mut self.batch)
    }
}

#[cfg(test)]
mod tests;
