//! End-to-end tests of `midtrain mix plan` and `midtrain mix build` on prepared fixture datasets.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn midtrain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_midtrain")).args(args).arg("-q").output().expect("run midtrain")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "midtrain failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Prepare the fixture dumps into `dir` and return the recipe of mixtures/recipes/fixtures-anneal
/// rewritten to point at them.
fn prepared(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = dir.join("prepared");
    let config = fs::read_to_string(root.join("fixtures/prepare.toml"))
        .unwrap()
        .replace("output = \"../out/prepared\"", &format!("output = {:?}", output.to_str().unwrap()));
    let config_path = root.join(format!("fixtures/.prepare-{}-mix.toml", std::process::id()));
    fs::write(&config_path, config).unwrap();
    let result = midtrain(&["prepare", config_path.to_str().unwrap()]);
    fs::remove_file(&config_path).unwrap();
    ok(result);
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

    // Too little data for a domain: an error naming it and the shortfall.
    let greedy = fs::read_to_string(&recipe).unwrap().replace("budget_tokens = 150_000", "budget_tokens = 1_500_000");
    fs::write(&recipe, greedy).unwrap();
    let failed = midtrain(&["mix", "plan", r]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("runs out of data") && err.contains("short by"), "{err}");
}
