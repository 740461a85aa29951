//! Decontamination throughput on texts already in memory, one thread (`make bench`):
//!
//!     cargo bench -p pipeline --bench decontaminate -- CORPUS.parquet MATH.parquet [ITEMS]
//!
//! The eval set is the first line of the first ITEMS (10,000) documents of MATH.parquet, as the
//! recall benchmark (`scripts/bench/decontamination.py`) builds it. Prints MB/s of the
//! normalisation into words alone and of the whole filter (normalise, then match against the index), and
//! how many corpus documents matched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pipeline::Document;
use pipeline::dedup::normalize::words_keeping_numbers;
use pipeline::filter::decontaminate::{DecontaminateConfig, DecontaminateFilter};
use pipeline::filter::{Filter, Verdict};

/// The texts of a dump, read as the pipeline reads them.
fn texts(path: &Path) -> Vec<String> {
    let batches = pipeline::read::open(path, &pipeline::read::ReadOptions::default()).expect("a readable dump");
    batches.flat_map(|b| b.expect("a readable batch").documents).map(|d| d.text).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let corpus = args.first().map(PathBuf::from).unwrap_or_else(|| root.join("fixtures/dumps/web.parquet"));
    let math = args.get(1).map(PathBuf::from).unwrap_or_else(|| root.join("fixtures/dumps/math.parquet"));
    let items: usize = args.get(2).map_or(10_000, |n| n.parse().expect("ITEMS is a number"));
    let texts = texts(&corpus);
    let megabytes = texts.iter().map(String::len).sum::<usize>() as f64 / 1e6;

    let dir = tempfile::tempdir().unwrap();
    let eval = dir.path().join("math_eval.jsonl");
    let lines: Vec<String> = self::texts(&math)
        .iter()
        .take(items)
        .enumerate()
        .map(|(i, t)| serde_json::json!({ "id": i, "question": t.lines().next().unwrap_or("") }).to_string())
        .collect();
    std::fs::write(&eval, lines.join("\n")).unwrap();
    let config = DecontaminateConfig::new(vec![eval], vec!["question".into()]);
    let start = Instant::now();
    let filter = DecontaminateFilter::new(&config).unwrap();
    let index_seconds = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let normalised: usize = texts.iter().map(|t| words_keeping_numbers(t).len()).sum();
    let normalise_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut matched = 0;
    for (i, t) in texts.iter().enumerate() {
        let mut doc = Document::new(i.to_string(), t.clone(), Arc::from("bench"), i as u64);
        matched += usize::from(matches!(filter.apply(&mut doc), Verdict::Drop(_)));
    }
    let filter_seconds = start.elapsed().as_secs_f64();
    println!(
        "{}: {} documents, {megabytes:.1} MB; index of {} items built in {index_seconds:.2} s",
        corpus.display(),
        texts.len(),
        lines.len()
    );
    println!("  normalise only   {:7.1} MB/s ({normalised} bytes out)", megabytes / normalise_seconds);
    println!("  filter           {:7.1} MB/s, {matched} documents matched", megabytes / filter_seconds);
}
