//! Parquet outputs of the text stages: kept documents (id, text, source, row, url, every score
//! and label) and removed documents (id, source, row, step, reason, and for dedup the cluster
//! and the kept id). Each file is written under a temporary name and renamed when complete.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Builder, Float64Builder, ListBuilder, RecordBatch, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::document::{Document, Removal};
use crate::file_error::FileError;
use crate::filter::OutputColumn;
use crate::run_folder::Progress;
use crate::stats::StageStats;

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(16 * 1024))
        .build()
}

/// A parquet file that appears at its final path only when [`finish`](ParquetOut::finish) succeeds.
struct ParquetOut {
    path: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    schema: SchemaRef,
}

impl ParquetOut {
    fn create(path: &Path, schema: SchemaRef) -> Result<Self, FileError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(FileError::at(dir))?;
        }
        let tmp = util::fsutil::temp_path(path);
        let file = File::create(&tmp).map_err(FileError::at(&tmp))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties())).map_err(FileError::at(path))?;
        Ok(Self { path: path.to_path_buf(), tmp, writer, schema })
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), FileError> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(FileError::at(&self.path))?;
        self.writer.write(&batch).map_err(FileError::at(&self.path))
    }

    fn finish(self) -> Result<(), FileError> {
        let file = self.writer.into_inner().map_err(FileError::at(&self.path))?;
        file.sync_all().map_err(FileError::at(&self.tmp))?;
        util::fsutil::durable_rename(&self.tmp, &self.path).map_err(FileError::at(&self.path))
    }
}

/// The kept documents' column of loss spans: `[start, end, …]` byte offsets, null without a mask.
pub const LOSS_SPANS: &str = "loss_spans";

fn loss_spans_field() -> Field {
    Field::new(LOSS_SPANS, DataType::List(Arc::new(Field::new("item", DataType::UInt32, false))), true)
}

/// Writes kept documents with a fixed schema: id, text, source, row, url, loss_spans, then the
/// chain's outputs.
pub struct KeptWriter {
    out: ParquetOut,
    outputs: Vec<OutputColumn>,
}

impl KeptWriter {
    pub fn create(path: &Path, outputs: &[OutputColumn]) -> Result<Self, FileError> {
        let mut fields = vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("row", DataType::UInt64, false),
            Field::new("url", DataType::Utf8, true),
            loss_spans_field(),
        ];
        for o in outputs {
            fields.push(match o {
                OutputColumn::Score(name) => Field::new(*name, DataType::Float64, true),
                OutputColumn::Label(name) => Field::new(*name, DataType::Utf8, true),
            });
        }
        Ok(Self { out: ParquetOut::create(path, Arc::new(Schema::new(fields)))?, outputs: outputs.to_vec() })
    }

    pub fn write(&mut self, docs: &[&Document]) -> Result<(), FileError> {
        if docs.is_empty() {
            return Ok(());
        }
        let strings = |f: &dyn Fn(&Document) -> Option<&str>| string_column(docs.iter().copied(), f);
        let mut columns = vec![
            strings(&|d| Some(&d.id)),
            strings(&|d| Some(&d.text)),
            strings(&|d| Some(&d.source)),
            u64_column(docs.iter().copied(), |d| Some(d.row)),
            strings(&|d| d.url.as_deref()),
            loss_spans_column(docs),
        ];
        for o in &self.outputs {
            columns.push(match *o {
                OutputColumn::Score(name) => {
                    let mut b = Float64Builder::new();
                    docs.iter().for_each(|d| b.append_option(d.score(name)));
                    Arc::new(b.finish())
                }
                OutputColumn::Label(name) => strings(&|d| d.label(name)),
            });
        }
        self.out.write(columns)
    }

    pub fn finish(self) -> Result<(), FileError> {
        self.out.finish()
    }
}

fn loss_spans_column(docs: &[&Document]) -> ArrayRef {
    let mut b =
        ListBuilder::new(UInt32Builder::new()).with_field(Arc::new(Field::new("item", DataType::UInt32, false)));
    for d in docs {
        if d.loss_spans.is_empty() {
            b.append_null();
        } else {
            d.loss_spans.iter().for_each(|s| b.values().append_slice(&[s.start, s.end]));
            b.append(true);
        }
    }
    Arc::new(b.finish())
}

/// One string column: `value` of each item (null where `None`).
fn string_column<'a, T: 'a>(items: impl IntoIterator<Item = &'a T>, value: impl Fn(&T) -> Option<&str>) -> ArrayRef {
    let mut b = StringBuilder::new();
    items.into_iter().for_each(|item| b.append_option(value(item)));
    Arc::new(b.finish())
}

/// One uint64 column: `value` of each item (null where `None`).
fn u64_column<'a, T: 'a>(items: impl IntoIterator<Item = &'a T>, value: impl Fn(&T) -> Option<u64>) -> ArrayRef {
    let mut b = UInt64Builder::new();
    items.into_iter().for_each(|item| b.append_option(value(item)));
    Arc::new(b.finish())
}

fn similarity_column(removed: &[Removal]) -> ArrayRef {
    let mut b = Float32Builder::new();
    removed.iter().for_each(|r| b.append_option(r.similarity));
    Arc::new(b.finish())
}

/// Writes removed documents: id, source, row, step, reason, cluster_id, kept_id, similarity.
pub struct RemovedWriter {
    out: ParquetOut,
}

/// The schema of removed-document files.
pub fn removed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("step", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("cluster_id", DataType::UInt64, true),
        Field::new("kept_id", DataType::Utf8, true),
        Field::new("similarity", DataType::Float32, true),
    ]))
}

impl RemovedWriter {
    pub fn create(path: &Path) -> Result<Self, FileError> {
        Ok(Self { out: ParquetOut::create(path, removed_schema())? })
    }

    pub fn write(&mut self, removed: &[Removal]) -> Result<(), FileError> {
        if removed.is_empty() {
            return Ok(());
        }
        let strings = |f: &dyn Fn(&Removal) -> Option<&str>| string_column(removed, f);
        let u64s = |f: &dyn Fn(&Removal) -> Option<u64>| u64_column(removed, f);
        self.out.write(vec![
            strings(&|r| Some(&r.id)),
            strings(&|r| Some(&r.source)),
            u64s(&|r| Some(r.row)),
            strings(&|r| Some(&r.step)),
            strings(&|r| Some(&r.reason)),
            u64s(&|r| r.cluster_id),
            strings(&|r| r.kept_id.as_deref()),
            similarity_column(removed),
        ])
    }

    pub fn finish(self) -> Result<(), FileError> {
        self.out.finish()
    }
}

/// One part of a text stage's output: `DIR/kept/NAME.parquet` and `DIR/removed/NAME.parquet`,
/// written batch by batch in input order.
pub struct PartWriter {
    kept: KeptWriter,
    removed: RemovedWriter,
}

impl PartWriter {
    pub fn create(dir: &Path, name: &str, outputs: &[OutputColumn]) -> Result<Self, FileError> {
        Ok(Self {
            kept: KeptWriter::create(&dir.join("kept").join(format!("{name}.parquet")), outputs)?,
            removed: RemovedWriter::create(&dir.join("removed").join(format!("{name}.parquet")))?,
        })
    }

    /// One batch of `rows` input rows and `bytes` of text: its kept documents, and its removals
    /// in row order. The kept ones are counted in `stats` and `seen`.
    pub fn write_batch(
        &mut self,
        kept: &[&Document],
        mut removed: Vec<Removal>,
        (rows, bytes): (u64, u64),
        stats: &mut StageStats,
        seen: &mut Progress,
    ) -> Result<(), FileError> {
        removed.sort_by_key(|r| r.row);
        stats.documents_kept += kept.len() as u64;
        stats.bytes_kept += kept.iter().map(|d| d.text.len() as u64).sum::<u64>();
        self.kept.write(kept)?;
        self.removed.write(&removed)?;
        seen.documents += rows;
        seen.bytes += bytes;
        seen.kept += kept.len() as u64;
        Ok(())
    }

    pub fn finish(self) -> Result<(), FileError> {
        self.kept.finish()?;
        self.removed.finish()
    }
}
