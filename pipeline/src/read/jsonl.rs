//! JSON-lines reader (plain, gzip, zstd): one JSON object per line, Dolma-style
//! (`id`, `text`, optional `metadata` object). Blank lines are skipped; row numbers are line
//! numbers (0-based).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::file_error::FileError;
use crate::render::Rendered;

use super::{Batch, BatchIter, Format, OnError, ReadError, ReadOptions, RowSink, Value};

pub(super) fn open(
    path: &Path,
    source: Arc<str>,
    format: Format,
    options: &ReadOptions,
) -> Result<BatchIter, ReadError> {
    Ok(Box::new(JsonlBatches {
        path: path.to_path_buf(),
        source,
        options: options.clone(),
        reader: decompressed(path, format)?,
        line: 0,
        done: false,
        buf: Vec::new(),
    }))
}

/// The file's lines, through gzip or zstd by its format.
fn decompressed(path: &Path, format: Format) -> Result<BufReader<Box<dyn Read + Send>>, FileError> {
    let file = File::open(path).map_err(FileError::at(path))?;
    let inner: Box<dyn Read + Send> = match format {
        Format::Jsonl => Box::new(file),
        Format::JsonlGz => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        Format::JsonlZst => Box::new(zstd::stream::read::Decoder::new(file).map_err(FileError::at(path))?),
        Format::Parquet => unreachable!("parquet has its own reader"),
    };
    Ok(BufReader::with_capacity(1 << 20, inner))
}

/// Every line of a JSON-lines file as a JSON object (blank lines skipped), with its row number.
pub(super) fn records(path: &Path, format: Format) -> Result<Vec<super::Record>, ReadError> {
    let mut reader = decompressed(path, format)?;
    let (mut out, mut buf, mut line) = (Vec::new(), Vec::new(), 0u64);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(FileError::at(path))? == 0 {
            return Ok(out);
        }
        let row = line;
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |message: String| ReadError::Record { path: path.to_path_buf(), row, message };
        match serde_json::from_slice::<Json>(&buf) {
            Ok(Json::Object(map)) => out.push((row, map)),
            Ok(_) => return Err(bad("bad_json: not an object".into())),
            Err(e) => return Err(bad(format!("bad_json: {e}"))),
        }
    }
}

struct JsonlBatches {
    path: PathBuf,
    source: Arc<str>,
    options: ReadOptions,
    reader: BufReader<Box<dyn Read + Send>>,
    line: u64,
    done: bool,
    buf: Vec<u8>,
}

/// Look up `a.b.c` in a JSON object; a plain name also tries `metadata.<name>` (Dolma).
fn field<'a>(object: &'a Json, name: &str) -> Option<&'a Json> {
    let direct = name.split('.').try_fold(object, |v, key| v.get(key));
    direct.or_else(|| (!name.contains('.')).then(|| object.get("metadata").and_then(|m| m.get(name))).flatten())
}

fn to_value(json: Option<&Json>) -> Option<Value> {
    Some(match json? {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Value::Str(s.clone()),
        other => Value::Str(other.to_string()),
    })
}

fn id_of(json: Option<&Json>) -> Option<String> {
    match json? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl JsonlBatches {
    fn parse_line(&self, sink: &mut RowSink<'_>, row: u64) -> Result<(), ReadError> {
        let mut bytes = &self.buf[..];
        while let [rest @ .., b'\n' | b'\r'] = bytes {
            bytes = rest;
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let line = match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => return sink.bad_row(row, None, format!("invalid_utf8: at byte {}", e.valid_up_to())),
        };
        let object: Json = match serde_json::from_str(line) {
            Ok(v @ Json::Object(_)) => v,
            Ok(_) => return sink.bad_row(row, None, "bad_json: not an object".into()),
            Err(e) => return sink.bad_row(row, None, format!("bad_json: {e}")),
        };
        let id = self.options.id_column.as_deref().and_then(|c| id_of(field(&object, c)));
        let text = if let Some(renderer) = self.options.render.as_deref() {
            match renderer.render(&object) {
                Ok(rendered) => rendered,
                Err(problem) => return sink.bad_row(row, id, problem.to_string()),
            }
        } else {
            let text = match field(&object, &self.options.text_column) {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Null) | None => {
                    return sink.bad_row(row, id, format!("no_text: no field {:?}", self.options.text_column));
                }
                Some(other) => {
                    let kind = match other {
                        Json::Number(_) => "a number",
                        Json::Bool(_) => "a boolean",
                        Json::Array(_) => "an array",
                        _ => "an object",
                    };
                    return sink.bad_row(
                        row,
                        id,
                        format!("text_not_string: field {:?} is {kind}", self.options.text_column),
                    );
                }
            };
            Rendered { text, loss_spans: Vec::new() }
        };
        let url = self.options.url_column.as_deref().and_then(|c| match field(&object, c) {
            Some(Json::String(s)) => Some(s.clone()),
            _ => None,
        });
        let lookup = |name: &str| to_value(field(&object, name));
        sink.row(row, id, text, url, &lookup);
        Ok(())
    }
}

impl Iterator for JsonlBatches {
    type Item = Result<Batch, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let source = self.source.clone();
        let path = self.path.clone();
        let options = self.options.clone();
        let mut sink = RowSink::new(&path, source, &options);
        while sink.batch.documents.len() + sink.batch.removed.len() < self.options.batch_size.max(1) {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(_) => {
                    let row = self.line;
                    self.line += 1;
                    if let Err(e) = self.parse_line(&mut sink, row) {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                Err(e) => {
                    // A broken compressed stream: the rest of the file cannot be located.
                    self.done = true;
                    let message = format!(
                        "unreadable_stream: the rest of the file cannot be decoded: {e} (how many rows the rest \
                         held {})",
                        super::ROWS_UNKNOWN
                    );
                    if self.options.on_error == OnError::Fail {
                        return Some(Err(ReadError::Row { path: self.path.clone(), row: self.line, message }));
                    }
                    if let Err(e) = sink.bad_row(self.line, None, message) {
                        return Some(Err(e));
                    }
                    break;
                }
            }
        }
        let batch = sink.take();
        if self.done && batch.documents.is_empty() && batch.removed.is_empty() && batch.bytes == 0 {
            return None;
        }
        Some(Ok(batch))
    }
}
