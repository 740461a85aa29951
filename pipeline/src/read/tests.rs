//! Reader tests: every bad-input case either stops with an error naming the file and row, or,
//! with `on_error = "skip"`, becomes a removal with its reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::parquet::arrow::ArrowWriter;
use ::parquet::file::properties::WriterProperties;
use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::*;

fn write_parquet(path: &Path, texts: Vec<Option<&str>>, scores: Vec<f64>, row_group: usize) {
    let n = texts.len();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, true),
        Field::new("score", DataType::Float64, false),
        Field::new("n", DataType::Int64, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from((0..n).map(|i| format!("doc-{i}")).collect::<Vec<_>>())) as ArrayRef,
            Arc::new(StringArray::from(texts)),
            Arc::new(Float64Array::from(scores)),
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(row_group)).build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn read_all(path: &Path, options: &ReadOptions) -> Result<Batch, ReadError> {
    let mut all = Batch::default();
    for batch in open(path, options)? {
        let batch = batch?;
        assert!(batch.documents.len() + batch.removed.len() <= options.batch_size.max(1) || batch.documents.is_empty());
        all.documents.extend(batch.documents);
        all.removed.extend(batch.removed);
        all.bytes += batch.bytes;
    }
    Ok(all)
}

fn skip() -> ReadOptions {
    ReadOptions { on_error: OnError::Skip, ..ReadOptions::default() }
}

#[test]
fn parquet_reads_in_order_with_ids_and_predicate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parquet");
    write_parquet(&path, vec![Some("one"), Some("two"), Some("three"), Some("four")], vec![0.1, 0.9, 0.95, 0.5], 2);
    let options = ReadOptions {
        predicate: Some(Predicate::parse("score > 0.8 or n = 0").unwrap()),
        batch_size: 1,
        ..ReadOptions::default()
    };
    let all = read_all(&path, &options).unwrap();
    let kept: Vec<_> = all.documents.iter().map(|d| (d.id.as_str(), d.text.as_str(), d.row)).collect();
    assert_eq!(kept, [("doc-0", "one", 0), ("doc-1", "two", 1), ("doc-2", "three", 2)]);
    assert_eq!(all.removed.len(), 1);
    assert_eq!((all.removed[0].id.as_str(), all.removed[0].step.as_str()), ("doc-3", "where"));
    assert_eq!(all.bytes, 15);

    let no_id = ReadOptions { id_column: Some("missing".into()), ..ReadOptions::default() };
    let all = read_all(&path, &no_id).unwrap();
    assert_eq!(all.documents[3].id, "a.parquet#3");
}

#[test]
fn parquet_schema_problems_name_the_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parquet");
    write_parquet(&path, vec![Some("x")], vec![1.0], 10);
    let err = open(&path, &ReadOptions { text_column: "content".into(), ..ReadOptions::default() }).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("a.parquet") && msg.contains("\"content\"") && msg.contains("id, text, score, n"), "{msg}");
    let err = open(&path, &ReadOptions { text_column: "score".into(), ..ReadOptions::default() }).err().unwrap();
    assert!(err.to_string().contains("Float64, not a string column"), "{err}");
    let bad_where = ReadOptions { predicate: Some(Predicate::parse("lang = 'en'").unwrap()), ..ReadOptions::default() };
    assert!(open(&path, &bad_where).err().unwrap().to_string().contains("where: no column \"lang\""));
}

#[test]
fn null_text_fails_or_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parquet");
    write_parquet(&path, vec![Some("x"), None, Some("z")], vec![1.0; 3], 10);
    let msg = read_all(&path, &ReadOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("a.parquet") && msg.contains("row index 1") && msg.contains("null_text"), "{msg}");
    assert!(msg.contains("--on-error skip") && msg.contains("on_error = \"skip\""), "both spellings: {msg}");
    let all = read_all(&path, &skip()).unwrap();
    assert_eq!(all.documents.len(), 2);
    assert_eq!((all.removed[0].id.as_str(), all.removed[0].row, all.removed[0].step.as_str()), ("doc-1", 1, "read"));
}

#[test]
fn corrupted_parquet_fails_or_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parquet");
    let texts: Vec<String> = (0..400).map(|i| format!("document number {i} with some text to compress")).collect();
    write_parquet(&path, texts.iter().map(|t| Some(t.as_str())).collect(), vec![0.5; 400], 100);
    let bytes = std::fs::read(&path).unwrap();

    // A broken footer: nothing can be located.
    let truncated = dir.path().join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() - 20]).unwrap();
    let msg = open(&truncated, &ReadOptions::default()).err().unwrap().to_string();
    assert!(msg.contains("truncated.parquet") && msg.contains("unreadable_file"), "{msg}");
    let all = read_all(&truncated, &skip()).unwrap();
    assert_eq!((all.documents.len(), all.removed[0].reason.starts_with("unreadable_file")), (0, true));
    assert!(all.removed[0].reason.contains(ROWS_UNKNOWN), "the loss is said to be unknown: {}", all.removed[0].reason);

    // A readable file whose schema the domain cannot use: every row its footer counts is lost.
    let options = ReadOptions { text_column: "content".into(), batch_size: 64, ..skip() };
    let all = read_all(&path, &options).unwrap();
    assert_eq!((all.documents.len(), all.removed.len()), (0, 400));
    assert!(all.removed.iter().enumerate().all(|(i, r)| r.row == i as u64 && r.reason.contains("\"content\"")));

    // Damaged data pages in the first row group: its rows fail or are recorded, the rest is read.
    let damaged = dir.path().join("damaged.parquet");
    let mut b = bytes.clone();
    for byte in &mut b[200..1200] {
        *byte = 0xAB;
    }
    std::fs::write(&damaged, &b).unwrap();
    let msg = read_all(&damaged, &ReadOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("damaged.parquet") && msg.contains("unreadable_row_group"), "{msg}");
    let all = read_all(&damaged, &skip()).unwrap();
    assert_eq!(all.documents.len() + all.removed.len(), 400, "every row is accounted for");
    assert!(!all.removed.is_empty() && all.removed.iter().all(|r| r.reason.starts_with("unreadable_row_group")));
    assert_eq!(all.documents.last().unwrap().row, 399);
}

/// A pandas categorical (how `lang` / `language` columns are often stored): dictionary-encoded
/// strings, for a predicate column, a carried label and the text itself.
#[test]
fn dictionary_encoded_columns_read_like_their_strings() {
    use arrow::array::{DictionaryArray, Int32Array};
    use arrow::datatypes::Int32Type;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("categorical.parquet");
    let dict = |keys: Vec<i32>, values: Vec<&str>| -> ArrayRef {
        Arc::new(
            DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), Arc::new(StringArray::from(values))).unwrap(),
        )
    };
    let dict_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let schema = Schema::new(vec![
        Field::new("text", dict_type.clone(), false),
        Field::new("lang", dict_type.clone(), false),
        Field::new("language", dict_type, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            dict(vec![0, 1, 2, 0], vec!["fn main() {}", "def f(): pass", "SELECT 1"]),
            dict(vec![0, 1, 2, 0], vec!["Rust", "Python", "SQL"]),
            dict(vec![0, 0, 0, 0], vec!["en"]),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let options = ReadOptions {
        predicate: Some(Predicate::parse("lang in ['Python', 'Rust']").unwrap()),
        carry: vec![OutputColumn::Label("language")],
        ..skip()
    };
    let all = read_all(&path, &options).unwrap();
    let texts: Vec<&str> = all.documents.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(texts, ["fn main() {}", "def f(): pass", "fn main() {}"]);
    assert_eq!(all.removed.len(), 1);
    assert_eq!((all.removed[0].row, all.removed[0].step.as_str()), (2, "where"));
    assert!(all.documents.iter().all(|d| d.label("language") == Some("en")));
}

fn jsonl_lines() -> Vec<u8> {
    let mut data = Vec::new();
    data.extend(b"{\"id\": \"a\", \"text\": \"first\", \"metadata\": {\"int_score\": 4, \"lang\": \"en\"}}\n");
    data.extend(b"\n");
    data.extend(b"{\"id\": 7, \"text\": \"second\", \"metadata\": {\"int_score\": 2}}\r\n");
    data.extend(b"{\"id\": \"c\", \"text\": \"bad \xff utf8\"}\n");
    data.extend(b"{\"id\": \"d\", \"text\": \"unterminated\n");
    data.extend(b"{\"id\": \"e\", \"text\": 42}\n");
    data.extend(b"{\"id\": \"f\"}\n");
    data.extend(b"{\"text\": \"last\"}");
    data
}

fn write_compressed(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let data = jsonl_lines();
    if name.ends_with(".gz") {
        let mut e =
            flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default());
        e.write_all(&data).unwrap();
        e.finish().unwrap();
    } else if name.ends_with(".zst") {
        std::fs::write(&path, zstd::encode_all(&data[..], 3).unwrap()).unwrap();
    } else {
        std::fs::write(&path, &data).unwrap();
    }
    path
}

#[test]
fn jsonl_in_every_compression_gives_the_same_documents_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for name in ["d.jsonl", "d.jsonl.gz", "d.jsonl.zst"] {
        let path = write_compressed(dir.path(), name);
        let err = read_all(&path, &ReadOptions::default()).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains("line 4:") && err.contains("invalid_utf8"),
            "lines count from 1: {err}"
        );
        let all = read_all(&path, &ReadOptions { batch_size: 2, ..skip() }).unwrap();
        let docs: Vec<_> = all.documents.iter().map(|d| (d.id.clone(), d.text.clone(), d.row)).collect();
        let removed: Vec<_> =
            all.removed.iter().map(|r| (r.row, r.reason.split(':').next().unwrap().to_string())).collect();
        results.push((docs, removed));
    }
    let (docs, removed) = &results[0];
    assert_eq!(
        docs,
        &[("a".into(), "first".into(), 0), ("7".into(), "second".into(), 2), ("d.jsonl#7".into(), "last".into(), 7)]
    );
    assert_eq!(
        removed,
        &[(3, "invalid_utf8".into()), (4, "bad_json".into()), (5, "text_not_string".into()), (6, "no_text".into())]
    );
    assert!(results.iter().all(|r| r.0.len() == 3 && &r.1 == removed));
}

#[test]
fn jsonl_predicates_see_dolma_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_compressed(dir.path(), "m.jsonl");
    let options =
        ReadOptions { predicate: Some(Predicate::parse("int_score >= 3 and metadata.lang = 'en'").unwrap()), ..skip() };
    let all = read_all(&path, &options).unwrap();
    assert_eq!(all.documents.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a"]);
    assert_eq!(all.removed.iter().filter(|r| r.step == "where").count(), 2);
}

#[test]
fn inputs_expand_sorted_and_unknown_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["b.jsonl", "a.parquet", "c.txt"] {
        std::fs::write(dir.path().join(name), "").unwrap();
    }
    let pattern = dir.path().join("*.parquet").to_string_lossy().into_owned();
    let jsonl = dir.path().join("b.jsonl").to_string_lossy().into_owned();
    let files = expand_inputs(&[pattern.clone(), jsonl, pattern]).unwrap();
    assert_eq!(
        files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(),
        ["a.parquet", "b.jsonl"]
    );
    let txt = dir.path().join("*.txt").to_string_lossy().into_owned();
    assert!(expand_inputs(&[txt]).unwrap_err().to_string().contains("unknown input format"));
    let none = dir.path().join("*.zst").to_string_lossy().into_owned();
    assert!(expand_inputs(&[none]).unwrap_err().to_string().contains("matches no file"));
}

#[test]
fn records_read_every_column_of_parquet_and_every_line_of_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("r.parquet");
    write_parquet(&parquet, vec![Some("one"), None, Some("three")], vec![0.5, 1.0, 2.0], 2);
    let rows = read_records(&parquet).unwrap();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2], "row numbers across row groups");
    assert_eq!(
        serde_json::Value::Object(rows[0].1.clone()),
        serde_json::json!({"id": "doc-0", "text": "one", "score": 0.5, "n": 0})
    );
    assert_eq!(rows[1].1["text"], serde_json::Value::Null);

    let jsonl = dir.path().join("r.jsonl.gz");
    std::fs::rename(write_compressed(dir.path(), "r.jsonl.gz"), &jsonl).unwrap();
    let err = read_records(&jsonl).unwrap_err().to_string();
    // Line 4 holds invalid UTF-8; blank line 2 is skipped; rows are lines.
    assert!(err.contains("r.jsonl.gz") && err.contains("line 4") && err.contains("bad_json"), "{err}");
    let good = dir.path().join("g.jsonl");
    std::fs::write(&good, "{\"a\": 1}\n\n{\"a\": {\"b\": [1, 2]}}\n").unwrap();
    let rows = read_records(&good).unwrap();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 2]);
    assert_eq!(rows[1].1["a"]["b"][1], 2);
    std::fs::write(&good, "[1, 2]\n").unwrap();
    assert!(read_records(&good).unwrap_err().to_string().contains("line 1: bad_json: not an object"));
}
