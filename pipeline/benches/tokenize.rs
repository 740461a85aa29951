//! Tokenize-and-write throughput against the raw `tokenizers` batch encoder, on the same texts
//! and threads (`make bench`):
//!
//!     cargo bench -p pipeline --bench tokenize -- CORPUS.parquet [TOKENIZER.json [EOS]]
//!
//! "raw 0.23" is tokenizers 0.23's `encode_batch_fast` over texts already in memory (no
//! reading, no writing): the baseline. "encoder" is midtrain's encoder (`TextTokenizer`, 1.x
//! where it accepts the tokenizer) over the same texts in memory; "midtrain" is the whole
//! tokenize stage: parquet read, encoding, Megatron shard, sidecar and manifest writes.
//! RAYON_NUM_THREADS sets the threads of all three. Every run checks that the ids are the same.

use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::{Array, AsArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline::dataset::{DatasetOptions, Formats, tokenize_inputs};
use pipeline::read::ReadOptions;
use pipeline::run_folder::TaskSlice;
use pipeline::{EosSpec, SpecialTokensInText, TextTokenizer};
use rayon::prelude::*;

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
    // Keep: what encode_batch_fast does with special-token strings, so the ids are comparable.
    let eos = args.get(2).map(|e| EosSpec::parse(e));
    let tok = TextTokenizer::from_file(&tokenizer_path, eos.as_ref(), None::<&EosSpec>)
        .unwrap()
        .with_special_tokens_in_text(SpecialTokensInText::Keep);
    eprintln!("{}", tok.describe());

    let mut raw_best = f64::MAX;
    let mut tokens = 0;
    let mut raw_ids = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let encoded =
            tok.reference().encode_batch_fast(texts.iter().map(String::as_str).collect::<Vec<_>>(), false).unwrap();
        raw_best = raw_best.min(start.elapsed().as_secs_f64());
        tokens = encoded.iter().map(|e| e.get_ids().len()).sum::<usize>();
        raw_ids = encoded.iter().map(|e| e.get_ids().to_vec()).collect::<Vec<_>>();
    }

    let mut encoder_best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let ids: Vec<Vec<u32>> = texts.par_iter().map(|t| tok.encode_text(t).unwrap()).collect();
        encoder_best = encoder_best.min(start.elapsed().as_secs_f64());
        assert!(ids == raw_ids, "the encoder gives the ids of 0.23");
    }

    // Reading alone: parquet decode into documents, what the stage does before encoding.
    let mut read_best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0;
        for batch in pipeline::read::open(&corpus, &ReadOptions::default()).unwrap() {
            n += batch.unwrap().documents.len();
        }
        read_best = read_best.min(start.elapsed().as_secs_f64());
        assert_eq!(n, texts.len());
    }

    let mut ours_best = f64::MAX;
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let options = DatasetOptions {
            domain: "bench".into(),
            read: ReadOptions::default(),
            shard_bytes: 1 << 30,
            formats: Formats::default(),
            chat: None,
            config: serde_json::Value::Null,
        };
        let start = Instant::now();
        tokenize_inputs(std::slice::from_ref(&corpus), &tok, &options, dir.path(), TaskSlice::ALL, &|_| {}).unwrap();
        let pipeline::run_folder::Parts::Complete(parts) = pipeline::dataset::finished_parts(1, dir.path()) else {
            panic!("the one part is finished")
        };
        pipeline::dataset::write_manifest(&parts, &tok, &options, dir.path()).unwrap();
        ours_best = ours_best.min(start.elapsed().as_secs_f64());
        assert_eq!(parts[0].tokens as usize, tokens + texts.len(), "same ids plus one EOS per document");
    }
    println!(
        "{}: {} documents, {mb:.1} MB, {tokens} tokens, {threads} threads\n  raw encode_batch_fast   {:.2} s  {:.2} MB/s  {:.0} tok/s\n  midtrain tokenize stage {:.2} s  {:.2} MB/s  (read + encode + write)\n  midtrain encoder        {:.2} s  {:.2} MB/s  ({})\n  reading alone           {:.2} s  {:.2} MB/s\n  ratio midtrain/raw      {:.2}  (encoder alone {:.2})",
        corpus.display(),
        texts.len(),
        raw_best,
        mb / raw_best,
        tokens as f64 / raw_best,
        ours_best,
        mb / ours_best,
        encoder_best,
        mb / encoder_best,
        tok.identity().encoder.as_deref().unwrap_or("?"),
        read_best,
        mb / read_best,
        raw_best / ours_best,
        raw_best / encoder_best,
    );
}
