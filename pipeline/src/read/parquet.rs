//! Parquet reader: one row group at a time, projected to the columns the domain needs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema};
use arrow::datatypes::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};

use crate::file_error::{FileError, FileFault};
use crate::render::Rendered;

use super::{Batch, BatchIter, ReadError, ReadOptions, RowSink, Value};

pub(super) fn open(path: &Path, source: Arc<str>, options: &ReadOptions) -> Result<BatchIter, ReadError> {
    let file = File::open(path).map_err(FileError::at(path))?;
    let metadata = match ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()) {
        Ok(m) => m,
        Err(e) if options.on_error == super::OnError::Skip => {
            // Nothing in the file can be located: record the whole file as one removal.
            let message = format!(
                "unreadable_file: parquet footer or schema: {e} (how many rows the file held {})",
                super::ROWS_UNKNOWN
            );
            let mut sink = RowSink::new(path, source, options);
            sink.bad_row(0, Some(super::fallback_id(path, 0)), message)?;
            return Ok(Box::new(std::iter::once(Ok(sink.take()))));
        }
        Err(source) => return Err(ReadError::Footer { path: path.to_path_buf(), source }),
    };
    let schema = metadata.schema().clone();
    let columns = match Columns::resolve(&schema, options) {
        Ok(c) => c,
        Err(problem) if options.on_error == super::OnError::Skip => {
            // The footer says how many rows the file holds: each is recorded as lost.
            let rows = metadata.metadata().file_metadata().num_rows().max(0) as u64;
            return Ok(Box::new(UnreadableRows {
                path: path.to_path_buf(),
                source,
                options: options.clone(),
                message: format!("unreadable_file: {problem}"),
                next: 0,
                end: rows,
            }));
        }
        Err(problem) => return Err(ReadError::Columns { path: path.to_path_buf(), problem }),
    };
    let roots: Vec<usize> = columns.all();
    let mask = ProjectionMask::roots(metadata.metadata().file_metadata().schema_descr(), roots.iter().copied());
    let row_group_rows: Vec<u64> =
        metadata.metadata().row_groups().iter().map(|rg| rg.num_rows().max(0) as u64).collect();
    Ok(Box::new(ParquetBatches {
        path: path.to_path_buf(),
        source,
        options: options.clone(),
        file,
        metadata,
        mask,
        columns,
        roots,
        row_group_rows,
        next_row_group: 0,
        current: None,
        next_row: 0,
        row_group_end: 0,
    }))
}

/// Every row of a file whose schema the domain cannot read (`on_error = "skip"`), as removals,
/// one batch at a time.
struct UnreadableRows {
    path: PathBuf,
    source: Arc<str>,
    options: ReadOptions,
    message: String,
    next: u64,
    end: u64,
}

impl Iterator for UnreadableRows {
    type Item = Result<Batch, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let stop = self.end.min(self.next + self.options.batch_size.max(1) as u64);
        let mut sink = RowSink::new(&self.path, self.source.clone(), &self.options);
        for row in self.next..stop {
            if let Err(e) = sink.bad_row(row, None, self.message.clone()) {
                return Some(Err(e));
            }
        }
        self.next = stop;
        Some(Ok(sink.take()))
    }
}

/// Utf8 / LargeUtf8 / Utf8View, or a dictionary of them (how pandas stores categoricals).
fn is_string_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_string_type(values),
        _ => false,
    }
}

/// A dictionary-encoded column as the plain column of its values, so that every later lookup
/// sees the same strings (or numbers) whatever the encoding.
fn decode_dictionary(array: ArrayRef) -> ArrayRef {
    match array.data_type() {
        DataType::Dictionary(_, values) => arrow::compute::cast(&array, values).unwrap_or(array),
        _ => array,
    }
}

/// Why a file's columns cannot serve the domain.
#[derive(Debug, thiserror::Error)]
pub enum ColumnProblem {
    #[error("no text column {column:?} (columns: {columns}); set text_column")]
    NoText { column: String, columns: String },
    #[error("text column {column:?} is {data_type}, not a string column")]
    NotString { column: String, data_type: DataType },
    #[error("where: no column {column:?} in this file (columns: {columns})")]
    NoWhereColumn { column: String, columns: String },
    #[error("the domain's template reads column {column:?}, which this file lacks (columns: {columns})")]
    NoTemplateColumn { column: String, columns: String },
}

/// Positions (in the file schema) of the columns the reader uses.
struct Columns {
    /// The text column; `None` when the domain renders its text from `template` columns.
    text: Option<usize>,
    template: Vec<(String, usize)>,
    /// `loss_spans` of midtrain's stage outputs (with provenance).
    loss_spans: Option<usize>,
    id: Option<usize>,
    url: Option<usize>,
    predicate: Vec<(String, usize)>,
    /// `source` (string) and `row` (uint64) of midtrain's stage outputs, when asked for.
    provenance: Option<(usize, usize)>,
}

impl Columns {
    fn resolve(schema: &Schema, options: &ReadOptions) -> Result<Self, ColumnProblem> {
        let names = || schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
        let mut template = Vec::new();
        let text = match options.render.as_deref() {
            Some(renderer) => {
                for column in renderer.columns() {
                    let i = schema
                        .index_of(&column)
                        .map_err(|_| ColumnProblem::NoTemplateColumn { column: column.clone(), columns: names() })?;
                    template.push((column, i));
                }
                None
            }
            None => {
                let text = schema
                    .index_of(&options.text_column)
                    .map_err(|_| ColumnProblem::NoText { column: options.text_column.clone(), columns: names() })?;
                let text_type = schema.field(text).data_type();
                if !is_string_type(text_type) {
                    return Err(ColumnProblem::NotString {
                        column: options.text_column.clone(),
                        data_type: text_type.clone(),
                    });
                }
                Some(text)
            }
        };
        let optional_string = |name: &Option<String>| {
            name.as_deref()
                .and_then(|n| schema.index_of(n).ok())
                .filter(|&i| is_string_type(schema.field(i).data_type()))
        };
        let id = optional_string(&options.id_column);
        let url = optional_string(&options.url_column);
        let mut predicate = Vec::new();
        if let Some(p) = &options.predicate {
            for column in p.columns() {
                let i = schema
                    .index_of(column)
                    .map_err(|_| ColumnProblem::NoWhereColumn { column: column.to_string(), columns: names() })?;
                predicate.push((column.to_string(), i));
            }
        }
        // Carried columns ride along with the predicate columns when the file has them.
        for column in &options.carry {
            let name = column.name();
            if let Ok(i) = schema.index_of(name)
                && !predicate.iter().any(|(n, _)| n == name)
            {
                predicate.push((name.to_string(), i));
            }
        }
        let provenance = options
            .keep_provenance
            .then(|| {
                let source = optional_string(&Some("source".to_string()))?;
                let row = schema.index_of("row").ok().filter(|&i| schema.field(i).data_type() == &DataType::UInt64)?;
                Some((source, row))
            })
            .flatten();
        let loss_spans = options.keep_provenance.then(|| schema.index_of(crate::output::LOSS_SPANS).ok()).flatten();
        Ok(Self { text, template, loss_spans, id, url, predicate, provenance })
    }

    /// Sorted, de-duplicated root indices to project.
    fn all(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.text.into_iter().collect();
        v.extend(self.template.iter().map(|(_, i)| *i));
        v.extend(self.loss_spans);
        v.extend(self.id);
        v.extend(self.url);
        v.extend(self.predicate.iter().map(|(_, i)| *i));
        if let Some((source, row)) = self.provenance {
            v.extend([source, row]);
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}

struct ParquetBatches {
    path: PathBuf,
    source: Arc<str>,
    options: ReadOptions,
    file: File,
    metadata: ArrowReaderMetadata,
    mask: ProjectionMask,
    columns: Columns,
    roots: Vec<usize>,
    row_group_rows: Vec<u64>,
    next_row_group: usize,
    current: Option<ParquetRecordBatchReader>,
    /// Row number (in the file) of the next row to be read.
    next_row: u64,
    row_group_end: u64,
}

impl ParquetBatches {
    fn open_row_group(&mut self, rg: usize) -> Result<ParquetRecordBatchReader, FileFault> {
        let file = self.file.try_clone()?;
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
            .with_projection(self.mask.clone())
            .with_row_groups(vec![rg])
            .with_batch_size(self.options.batch_size.max(1))
            .build()?)
    }

    /// Rows `next_row..row_group_end` could not be decoded: fail, or record them removed.
    fn skip_rest_of_row_group(&mut self, message: String) -> Result<Batch, ReadError> {
        let rg = self.next_row_group - 1;
        let message = format!("unreadable_row_group: row group {rg}: {message}");
        let mut sink = RowSink::new(&self.path, self.source.clone(), &self.options);
        for row in self.next_row..self.row_group_end {
            sink.bad_row(row, None, message.clone())?;
        }
        self.next_row = self.row_group_end;
        self.current = None;
        Ok(sink.take())
    }

    fn convert(&mut self, batch: &RecordBatch) -> Result<Batch, ReadError> {
        // The projected batch holds the roots in file order: map each root to its batch column.
        let col = |root: usize| -> ArrayRef {
            decode_dictionary(batch.column(self.roots.binary_search(&root).unwrap()).clone())
        };
        let text = self.columns.text.map(col);
        let template: Vec<(String, ArrayRef)> =
            self.columns.template.iter().map(|(name, root)| (name.clone(), col(*root))).collect();
        let loss_spans = self.columns.loss_spans.map(col);
        let id = self.columns.id.map(col);
        let url = self.columns.url.map(col);
        let predicate: Vec<(String, ArrayRef)> =
            self.columns.predicate.iter().map(|(name, root)| (name.clone(), col(*root))).collect();
        let provenance = self.columns.provenance.map(|(s, r)| (col(s), col(r)));
        let mut sink = RowSink::new(&self.path, self.source.clone(), &self.options);
        for i in 0..batch.num_rows() {
            let row = self.next_row + i as u64;
            let id = id.as_ref().and_then(|a| string_at(a, i)).map(str::to_string);
            let text = match (&text, self.options.render.as_deref()) {
                (_, Some(renderer)) => {
                    let fields = template.iter().map(|(name, a)| (name.clone(), json_at(a, i))).collect();
                    match renderer.render(&serde_json::Value::Object(fields)) {
                        Ok(rendered) => rendered,
                        Err(problem) => {
                            sink.bad_row(row, id, problem.to_string())?;
                            continue;
                        }
                    }
                }
                (Some(text), None) => {
                    let Some(text) = string_at(text, i) else {
                        sink.bad_row(row, id, format!("null_text: column {:?} is null", self.options.text_column))?;
                        continue;
                    };
                    Rendered {
                        text: text.to_string(),
                        loss_spans: loss_spans.as_ref().map(|a| spans_at(a, i)).unwrap_or_default(),
                    }
                }
                (None, None) => unreachable!("a text column is resolved when the domain does not render"),
            };
            let url = url.as_ref().and_then(|a| string_at(a, i)).map(str::to_string);
            let lookup = |name: &str| predicate.iter().find(|(n, _)| n == name).map(|(_, a)| value_at(a, i));
            let origin = provenance.as_ref().and_then(|(s, r)| {
                let source = string_at(s, i)?;
                (!r.is_null(i)).then(|| (Arc::from(source), r.as_primitive::<UInt64Type>().value(i)))
            });
            sink.row_from(row, origin, id, text, url, &lookup);
        }
        self.next_row += batch.num_rows() as u64;
        Ok(sink.take())
    }
}

impl Iterator for ParquetBatches {
    type Item = Result<Batch, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                if self.next_row_group >= self.row_group_rows.len() {
                    return None;
                }
                let rg = self.next_row_group;
                self.next_row_group += 1;
                self.row_group_end = self.next_row + self.row_group_rows[rg];
                match self.open_row_group(rg) {
                    Ok(reader) => self.current = Some(reader),
                    Err(e) => return Some(self.skip_rest_of_row_group(e.to_string())),
                }
            }
            match self.current.as_mut().and_then(|r| r.next()) {
                Some(Ok(batch)) => return Some(self.convert(&batch)),
                Some(Err(e)) => return Some(self.skip_rest_of_row_group(e.to_string())),
                None if self.next_row < self.row_group_end => {
                    let missing = self.row_group_end - self.next_row;
                    return Some(self.skip_rest_of_row_group(format!("{missing} rows missing from the data pages")));
                }
                None => self.current = None,
            }
        }
    }
}

/// The string at row `i` of a Utf8 / LargeUtf8 / Utf8View array (`None` when null or another type).
pub(crate) fn string_at(array: &ArrayRef, i: usize) -> Option<&str> {
    if array.is_null(i) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(array.as_string_view().value(i)),
        _ => None,
    }
}

/// Every row of a parquet file as a JSON object of all its columns (as [`json_at`] reads them).
pub(super) fn records(path: &Path) -> Result<Vec<super::Record>, ReadError> {
    let file = File::open(path).map_err(FileError::at(path))?;
    let footer = |source| ReadError::Footer { path: path.to_path_buf(), source };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(footer)?.build().map_err(footer)?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| ReadError::Record {
            path: path.to_path_buf(),
            row: out.len() as u64,
            message: format!("unreadable_row_group: {e}"),
        })?;
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            let row = schema.fields().iter().zip(batch.columns()).map(|(f, c)| (f.name().clone(), json_at(c, i)));
            out.push((out.len() as u64, row.collect()));
        }
    }
    Ok(out)
}

/// A predicate value from row `i` of any scalar column.
fn value_at(array: &ArrayRef, i: usize) -> Value {
    if array.is_null(i) {
        return Value::Null;
    }
    macro_rules! num {
        ($t:ty) => {
            Value::Number(array.as_primitive::<$t>().value(i) as f64)
        };
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(i)),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float32 => num!(Float32Type),
        DataType::Float64 => num!(Float64Type),
        _ => string_at(array, i).map_or(Value::Null, |s| Value::Str(s.to_string())),
    }
}

/// Row `i` of any column as JSON, as a template sees it (lists and structs nested, other types
/// as arrow prints them).
fn json_at(array: &ArrayRef, i: usize) -> serde_json::Value {
    use serde_json::Value as Json;
    if array.is_null(i) {
        return Json::Null;
    }
    match array.data_type() {
        DataType::List(_) => list_json(&array.as_list::<i32>().value(i)),
        DataType::LargeList(_) => list_json(&array.as_list::<i64>().value(i)),
        DataType::FixedSizeList(..) => list_json(&array.as_fixed_size_list().value(i)),
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Json::Object(fields.iter().zip(s.columns()).map(|(f, c)| (f.name().clone(), json_at(c, i))).collect())
        }
        DataType::Dictionary(..) => json_at(&decode_dictionary(array.slice(i, 1)), 0),
        DataType::Boolean => Json::Bool(array.as_boolean().value(i)),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => match value_at(array, i) {
            Value::Number(v) => serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number),
            _ => Json::Null,
        },
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Json::from(
            arrow::compute::cast(&array.slice(i, 1), &DataType::Int64)
                .map_or(0, |a| a.as_primitive::<Int64Type>().value(0)),
        ),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => Json::from(
            arrow::compute::cast(&array.slice(i, 1), &DataType::UInt64)
                .map_or(0, |a| a.as_primitive::<UInt64Type>().value(0)),
        ),
        _ => match string_at(array, i) {
            Some(s) => Json::String(s.to_string()),
            None => Json::String(arrow::util::display::array_value_to_string(array, i).unwrap_or_default()),
        },
    }
}

fn list_json(items: &ArrayRef) -> serde_json::Value {
    serde_json::Value::Array((0..items.len()).map(|j| json_at(items, j)).collect())
}

/// The `loss_spans` of row `i` of a stage output: `[start, end, start, end, …]` in bytes.
fn spans_at(array: &ArrayRef, i: usize) -> Vec<std::ops::Range<u32>> {
    if array.is_null(i) {
        return Vec::new();
    }
    let DataType::List(_) = array.data_type() else { return Vec::new() };
    let values = array.as_list::<i32>().value(i);
    let Some(ends) = values.as_primitive_opt::<UInt32Type>() else { return Vec::new() };
    ends.values().chunks_exact(2).map(|p| p[0]..p[1]).collect()
}
