//! Plan, build and audit a large synthetic mixture (`make bench`):
//!
//!     cargo bench -p mixtures --features audit --bench audit -- [SHARDS] [DOCS_PER_SHARD]
//!
//! Writes SHARDS shards (default 1,000) of DOCS_PER_SHARD documents (default 100,000, so 100 M
//! in all) of 1–8 tokens each over four domains, with sidecars (tokens, bytes, quality,
//! language_score) written by polars, then times `plan`, `build` and `audit_mixture`.

use std::fs::File;
use std::time::Instant;

use mixtures::audit::{AuditOptions, audit_mixture};
use mixtures::recipe::Recipe;
use polars::prelude::*;
use shards::manifest::{DatasetManifest, ShardEntry, TokenizerIdentity};
use shards::shard::ShardWriter;

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let shards = args.first().copied().unwrap_or(1000) as usize;
    let per_shard = args.get(1).copied().unwrap_or(100_000) as usize;
    let dir = tempfile::tempdir_in(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().to_string_lossy().into()),
    )
    .unwrap();
    let domains = ["web", "code", "math", "books"];
    let start = Instant::now();
    let mut state = 42u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut recipe = format!(
        "name = \"bench\"\nbudget_tokens = {}\nseed = 1\nmin_overlap = 0.5\n[pretraining]\nweb = 0.7\ncode = 0.1\nmath = 0.1\nbooks = 0.1\n",
        (shards * per_shard) as u64 * 4 / 2
    );
    let ones = [1u32; 8];
    for (d, domain) in domains.iter().enumerate() {
        let dataset = dir.path().join(domain);
        std::fs::create_dir_all(&dataset).unwrap();
        let mut entries = Vec::new();
        for k in (0..shards).filter(|k| k % domains.len() == d) {
            let name = format!("{domain}_{k:05}");
            let mut w = ShardWriter::create(dataset.join(&name), 1000).unwrap();
            let mut tokens = Vec::with_capacity(per_shard);
            for _ in 0..per_shard {
                let len = 1 + (next() % 8) as usize;
                w.append(&ones[..len]).unwrap();
                tokens.push(len as u64);
            }
            let quality: Vec<f64> = (0..per_shard).map(|_| (next() % 1000) as f64 / 1000.0).collect();
            let language: Vec<f64> = (0..per_shard).map(|_| 0.5 + (next() % 500) as f64 / 1000.0).collect();
            let bytes: Vec<u64> = tokens.iter().map(|t| t * 4).collect();
            let mut df =
                df!("tokens" => tokens, "bytes" => bytes, "quality" => quality, "language_score" => language).unwrap();
            let sidecar = format!("{name}.docs.parquet");
            ParquetWriter::new(File::create(dataset.join(&sidecar)).unwrap()).finish(&mut df).unwrap();
            let mut entry = ShardEntry::from_summary(&dataset, &w.finish().unwrap()).unwrap();
            entry.sidecar = Some(sidecar);
            entries.push(entry);
        }
        let tok = TokenizerIdentity::new("bench", 1000, 0, None);
        DatasetManifest::new(*domain, tok, entries, serde_json::Value::Null).write(&dataset).unwrap();
        recipe.push_str(&format!(
            "[[domain]]\nname = \"{domain}\"\ndatasets = [{:?}]\nweight = 0.25\nmax_epochs = 10\n",
            dataset.to_string_lossy()
        ));
    }
    println!("generated {shards} shards × {per_shard} documents in {:.1} s", start.elapsed().as_secs_f64());

    let t = Instant::now();
    let plan = mixtures::plan::plan(&Recipe::parse(&recipe).unwrap()).unwrap();
    let plan_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = dir.path().join("mixture");
    let mixture = mixtures::build::build(&plan, &out).unwrap();
    let build_s = t.elapsed().as_secs_f64();
    let build_peak = peak_rss_mb();
    // Linux: reset the peak so the audit's own is measured.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t = Instant::now();
    let audit = audit_mixture(&out, &AuditOptions::default()).unwrap();
    let audit_s = t.elapsed().as_secs_f64();
    assert_eq!(audit.documents, mixture.documents);
    println!(
        "{} documents in the mixture ({} tokens): plan {plan_s:.2} s · build {build_s:.1} s · audit {audit_s:.1} s",
        mixture.documents, mixture.tokens
    );
    println!("peak RSS: up to the build {build_peak:.0} MB, during the audit {:.0} MB", peak_rss_mb());
}

/// VmHWM of this process in MB (0 where /proc is missing).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}
