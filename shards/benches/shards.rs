//! Shard write and read throughput (`make bench`). Run with `cargo bench -p mixtures --bench shards`.
//!
//! Writes 2^25 tokens (64 MiB as uint16, 128 MiB as int32) in documents of 1–4,095 tokens to a
//! temporary folder, then reads every document back through the memory map and sums the ids.

use std::time::Instant;

use shards::{ShardReader, ShardWriter};

fn main() {
    let dir = std::env::temp_dir().join(format!("midtrain-bench-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let total_tokens: usize = 1 << 25;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut lengths = Vec::new();
    let mut sum = 0;
    while sum < total_tokens {
        let len = (next() % 4095 + 1) as usize;
        lengths.push(len);
        sum += len;
    }
    let doc: Vec<u32> = (0..4096).map(|i| (i * 7919 % 50_000) as u32).collect();
    for (name, vocab) in [("uint16", 50_000usize), ("int32", 200_000)] {
        let prefix = dir.join(name);
        let start = Instant::now();
        let mut w = ShardWriter::create(&prefix, vocab).unwrap();
        for &len in &lengths {
            w.append(&doc[..len]).unwrap();
        }
        let bytes = w.bin_bytes();
        w.finish().unwrap();
        let write_s = start.elapsed().as_secs_f64();

        let start = Instant::now();
        let r = ShardReader::open(&prefix).unwrap();
        let open_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let checksum: u64 = r.iter().map(|t| t.iter().map(u64::from).sum::<u64>()).sum();
        let read_s = start.elapsed().as_secs_f64();
        std::hint::black_box(checksum);
        let mib = bytes as f64 / (1 << 20) as f64;
        println!(
            "{name:>6}: {} docs, {} tokens ({mib:.0} MiB) · write {:.0} MiB/s (with fsync) · open+validate {:.1} ms · read {:.0} Mtok/s",
            lengths.len(),
            r.num_tokens(),
            mib / write_s,
            open_s * 1e3,
            r.num_tokens() as f64 / read_s / 1e6
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
