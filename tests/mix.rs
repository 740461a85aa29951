//! End-to-end tests of `midtrain mix plan` and `midtrain mix build` on prepared fixture datasets.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::ok;

fn midtrain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_midtrain")).args(args).arg("-q").output().expect("run midtrain")
}

/// Prepare the fixture dumps into `dir` and return the recipe of mixtures/recipes/fixtures-anneal
/// rewritten to point at them.
fn prepared(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = dir.join("prepared");
    let config_path = common::fixture_prepare_config(dir, "prepare.toml", &output);
    ok(midtrain(&["prepare", config_path.to_str().unwrap()]));
    let recipe = fs::read_to_string(root.join("mixtures/recipes/fixtures-anneal.toml"))
        .unwrap()
        .replace("../../out/prepared", output.to_str().unwrap());
    let path = dir.join("recipe.toml");
    fs::write(&path, recipe).unwrap();
    path
}

#[test]
fn plan_enforces_the_floor_and_build_realises_the_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = prepared(tmp.path());
    let r = recipe.to_str().unwrap();
    let plan: serde_json::Value = serde_json::from_str(ok(midtrain(&["mix", "plan", r, "--json"])).trim()).unwrap();
    assert!((plan["target_overlap"].as_f64().unwrap() - 0.7).abs() < 1e-9);
    assert!((plan["overlap"].as_f64().unwrap() - 0.8).abs() < 1e-9, "moved exactly to the floor");
    let tokens: u64 = plan["domains"].as_array().unwrap().iter().map(|d| d["tokens"].as_u64().unwrap()).sum();
    assert_eq!(tokens, 150_000);

    let out = tmp.path().join("mixture");
    let mixture: serde_json::Value =
        serde_json::from_str(ok(midtrain(&["mix", "build", r, "--out", out.to_str().unwrap(), "--json"])).trim())
            .unwrap();
    let total = mixture["tokens"].as_f64().unwrap();
    for d in mixture["domains"].as_array().unwrap() {
        let realised = d["tokens"].as_f64().unwrap() / total;
        assert!((realised - d["share"].as_f64().unwrap()).abs() <= 0.005, "{d}");
    }
    // The Megatron blend file parses: weights sum to 1 and every prefix is a readable shard.
    let blend = fs::read_to_string(out.join("megatron_data_path.txt")).unwrap();
    let mut sum = 0.0;
    for line in blend.lines() {
        let (weight, prefix) = line.split_once(' ').unwrap();
        sum += weight.parse::<f64>().unwrap();
        ok(midtrain(&["inspect", prefix, "--json"]));
    }
    assert!((sum - 1.0).abs() < 1e-6);
    // Same recipe, same bytes.
    let again = tmp.path().join("again");
    ok(midtrain(&["mix", "build", r, "--out", again.to_str().unwrap()]));
    assert_eq!(common::all_files(&out), common::all_files(&again));

    // Megatron knows nothing of max_epochs: a run of more samples than the blend holds within
    // them is refused, exactly at the boundary.
    let capacity = plan["domains"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["share"].as_f64().unwrap() > 0.0)
        .map(|d| {
            let (available, epochs) = (d["available_tokens"].as_f64().unwrap(), d["max_epochs"].as_f64().unwrap());
            (available * epochs / d["share"].as_f64().unwrap()).floor() as u64
        })
        .min()
        .unwrap();
    let samples = (capacity - 1) / 512;
    let megatron = |n: u64| {
        let out = tmp.path().join(format!("megatron-{n}"));
        let n = n.to_string();
        midtrain(&["mix", "build", r, "--out", out.to_str().unwrap(), "--megatron-samples", &n, "--seq-length", "512"])
    };
    ok(megatron(samples));
    let refused = megatron(samples + 1);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("exceeds its max_epochs"), "{stderr}");
    assert!(stderr.contains(&format!("the blend holds {capacity}")), "{stderr}");

    // The audit agrees with an independent count from order.bin, the shards and the sidecars.
    let html = tmp.path().join("audit.html");
    let audit = midtrain(&[
        "audit",
        out.to_str().unwrap(),
        "--json",
        "--long-threshold",
        "1000",
        "--html",
        html.to_str().unwrap(),
    ]);
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let order: Vec<(usize, usize, u64)> = fs::read(out.join("order.bin"))
        .unwrap()
        .chunks(12)
        .map(|c| {
            let u = |i: usize| u32::from_le_bytes(c[i..i + 4].try_into().unwrap());
            (u(0) as usize, u(4) as usize, u(8) as u64)
        })
        .collect();
    let shards = mixture["shards"].as_array().unwrap();
    for d in audit["domains"].as_array().unwrap() {
        let name = d["name"].as_str().unwrap();
        let mine: Vec<&(usize, usize, u64)> = order.iter().filter(|(s, _, _)| shards[*s]["domain"] == name).collect();
        assert_eq!(d["documents"].as_u64().unwrap(), mine.len() as u64, "{name}");
        assert_eq!(d["tokens"].as_u64().unwrap(), mine.iter().map(|o| o.2).sum::<u64>(), "{name}");
        // Quality mean over the drawn documents, from the sidecars read with arrow.
        let mut qualities = Vec::new();
        let mut long_tokens = 0u64;
        let mut histogram_total = 0u64;
        for &&(s, doc, take) in &mine {
            let sidecar = shards[s]["sidecar"].as_str().unwrap();
            let batch = &common::batches(Path::new(sidecar))[0];
            let tokens = batch
                .column_by_name("tokens")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::UInt64Array>()
                .unwrap()
                .value(doc);
            if tokens >= 1000 {
                long_tokens += take;
            }
            histogram_total += 1;
            let q =
                batch.column_by_name("quality").unwrap().as_any().downcast_ref::<arrow::array::Float64Array>().unwrap();
            if arrow::array::Array::is_valid(q, doc) {
                qualities.push(q.value(doc));
            }
        }
        let counted: u64 = d["length_histogram"].as_array().unwrap().iter().map(|b| b[1].as_u64().unwrap()).sum();
        assert_eq!(counted, histogram_total, "{name}");
        let tokens = d["tokens"].as_f64().unwrap();
        assert!((d["long_share"].as_f64().unwrap() - long_tokens as f64 / tokens).abs() < 1e-9, "{name}");
        assert_eq!(d["quality"]["count"].as_u64().unwrap(), qualities.len() as u64, "{name}");
        if !qualities.is_empty() {
            let mean = qualities.iter().sum::<f64>() / qualities.len() as f64;
            assert!((d["quality"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{name}");
        }
    }
    assert!((audit["overlap"].as_f64().unwrap() - 0.8).abs() < 0.005);
    let web = &audit["domains"][0];
    assert!(web["removed"].as_object().unwrap().keys().any(|k| k.starts_with("dedup")), "{web}");
    let page = fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("Domain shares") && !page.contains("<script"));
    // A stage that asks for a long share this mixture does not have is flagged (exit 1).
    let flagged = midtrain(&["audit", out.to_str().unwrap(), "--long-threshold", "1000", "--long-range", "0.9,1.0"]);
    assert_eq!(flagged.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&flagged.stdout).contains("FLAG long-document share"));

    // Too little data for a domain: an error naming it and the shortfall.
    let greedy = fs::read_to_string(&recipe).unwrap().replace("budget_tokens = 150_000", "budget_tokens = 1_500_000");
    fs::write(&recipe, greedy).unwrap();
    let failed = midtrain(&["mix", "plan", r]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("runs out of data") && err.contains("short by"), "{err}");
}
