//! Tokenize-and-write throughput against the raw `tokenizers` batch encoder, on the same texts
//! and threads (`make bench`):
//!
//!     cargo bench -p pipeline --bench tokenize -- CORPUS.parquet [TOKENIZER.json]
//!
//! "raw" is `Tokenizer::encode_batch_fast` over texts already in memory (no reading, no
//! writing); "midtrain" is the whole tokenize stage: parquet read, encoding, Megatron shard,
//! sidecar and manifest writes. RAYON_NUM_THREADS sets the threads of both.

use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::{Array, AsArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline::dataset::{DatasetOptions, Formats, tokenize_inputs};
use pipeline::read::ReadOptions;
use pipeline::stage::TaskSlice;
use pipeline::{EosSpec, TextTokenizer};

fn texts(path: &Path) -> Vec<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name("text").expect("a text column").as_string::<i32>().clone();
        out.extend((0..col.len()).filter(|&i| col.is_valid(i)).map(|i| col.value(i).to_string()));
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let corpus = args.first().map(PathBuf::from).unwrap_or_else(|| root.join("fixtures/dumps/web.parquet"));
    let tokenizer_path = args.get(1).map(PathBuf::from).unwrap_or_else(|| root.join("fixtures/tokenizer.json"));
    let threads = rayon::current_num_threads();
    let texts = texts(&corpus);
    let mb = texts.iter().map(|t| t.len()).sum::<usize>() as f64 / 1e6;
    let tok = TextTokenizer::from_file(&tokenizer_path, None, None::<&EosSpec>).unwrap();

    let mut raw_best = f64::MAX;
    let mut tokens = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let encoded =
            tok.inner().encode_batch_fast(texts.iter().map(String::as_str).collect::<Vec<_>>(), false).unwrap();
        raw_best = raw_best.min(start.elapsed().as_secs_f64());
        tokens = encoded.iter().map(|e| e.get_ids().len()).sum::<usize>();
    }

    let mut ours_best = f64::MAX;
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let options = DatasetOptions {
            domain: "bench".into(),
            read: ReadOptions::default(),
            shard_bytes: 1 << 30,
            formats: Formats::default(),
            config: serde_json::Value::Null,
        };
        let start = Instant::now();
        let parts = tokenize_inputs(std::slice::from_ref(&corpus), &tok, &options, dir.path(), TaskSlice::ALL, &|_| {})
            .unwrap()
            .unwrap();
        pipeline::dataset::write_manifest(&parts, &tok, &options, dir.path()).unwrap();
        ours_best = ours_best.min(start.elapsed().as_secs_f64());
        assert_eq!(parts[0].tokens as usize, tokens + texts.len(), "same ids plus one EOS per document");
    }
    println!(
        "{}: {} documents, {mb:.1} MB, {tokens} tokens, {threads} threads\n  raw encode_batch_fast   {:.2} s  {:.2} MB/s  {:.0} tok/s\n  midtrain tokenize stage {:.2} s  {:.2} MB/s  (read + encode + write)\n  ratio midtrain/raw      {:.2}",
        corpus.display(),
        texts.len(),
        raw_best,
        mb / raw_best,
        tokens as f64 / raw_best,
        ours_best,
        mb / ours_best,
        raw_best / ours_best
    );
}
