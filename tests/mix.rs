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
    prepared_for(dir, "fixtures-anneal.toml")
}

/// Prepare the fixture dumps into `dir` and return mixtures/recipes/RECIPE pointing at them.
fn prepared_for(dir: &Path, recipe: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = dir.join("prepared");
    let config_path = common::fixture_prepare_config(dir, "prepare.toml", &output);
    ok(midtrain(&["prepare", config_path.to_str().unwrap()]));
    let recipe = fs::read_to_string(root.join("mixtures/recipes").join(recipe))
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

/// A sidecar column as f64 (nulls as `None`).
fn sidecar_column(path: &Path, column: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for batch in common::batches(path) {
        let array =
            arrow::compute::cast(batch.column_by_name(column).unwrap(), &arrow::datatypes::DataType::Float64).unwrap();
        let array = array.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap();
        out.extend((0..array.len()).map(|i| arrow::array::Array::is_valid(array, i).then(|| array.value(i))));
    }
    out
}

fn sidecar_of(dataset: &Path) -> PathBuf {
    fs::read_dir(dataset)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".docs.parquet"))
        .unwrap()
}

/// mixtures/recipes/fixtures-select.toml: web filtered by `where`, its top 80% of tokens by
/// quality in four token-weighted buckets (q00 left out), instruct rehydrated by dedup cluster
/// size. The plan, the build, the exports and the audit agree with a recount from the sidecars.
#[test]
fn selection_buckets_and_rehydration_shape_the_mix_and_the_exports_name_exactly_the_subsets() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = prepared_for(tmp.path(), "fixtures-select.toml");
    let r = recipe.to_str().unwrap();
    let plan: serde_json::Value = serde_json::from_str(ok(midtrain(&["mix", "plan", r, "--json"])).trim()).unwrap();
    let domain = |name: &str| plan["domains"].as_array().unwrap().iter().find(|d| d["name"] == name).unwrap().clone();
    let names: Vec<&str> = plan["domains"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web/q00", "web/q01", "web/q02", "web/q03", "books", "instruct", "chat", "qa", "math"]);

    // The recount: where, then the top 80% of tokens by quality (highest first, ties in
    // order), then buckets by the start of each run of equal scores.
    let prepared = tmp.path().join("prepared");
    let web = sidecar_of(&prepared.join("web"));
    let (tokens, quality, language) =
        (sidecar_column(&web, "tokens"), sidecar_column(&web, "quality"), sidecar_column(&web, "language_score"));
    let mut rows: Vec<(usize, u64, f64)> = (0..tokens.len())
        .filter(|&i| language[i].is_some_and(|l| l >= 0.99))
        .filter_map(|i| Some((i, tokens[i].unwrap() as u64, quality[i]?)))
        .collect();
    let total: u64 = rows.iter().map(|r| r.1).sum();
    let target = (0.8 * total as f64).ceil() as u64;
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut taken = 0;
    rows.retain(|r| {
        let keep = taken < target;
        taken += r.1;
        keep
    });
    rows.sort_by_key(|r| r.0);
    rows.sort_by(|a, b| a.2.total_cmp(&b.2));
    let selected: u64 = rows.iter().map(|r| r.1).sum();
    let mut buckets = [(0u64, 0u64); 4];
    let mut bucket_of = std::collections::BTreeMap::new();
    let (mut before, mut run) = (0u64, (0usize, f64::NAN));
    for &(i, t, q) in &rows {
        if q != run.1 {
            run = ((before * 4 / selected) as usize, q);
        }
        before += t;
        buckets[run.0].0 += 1;
        buckets[run.0].1 += t;
        bucket_of.insert(i, run.0);
    }
    for (k, (documents, tokens)) in buckets.iter().enumerate() {
        let d = domain(&format!("web/q{k:02}"));
        assert_eq!(
            (d["available_documents"].as_u64().unwrap(), d["available_tokens"].as_u64().unwrap()),
            (*documents, *tokens),
            "{d}"
        );
        assert_eq!(d["group"], "web");
    }
    assert_eq!(domain("web/q00")["tokens"], 0, "q00 has no weight");
    // "q02-q03" = 0.8 of web's 40%, split by the buckets' tokens; "q01" = 0.2.
    let share = |name: &str| domain(name)["share"].as_f64().unwrap();
    assert!((share("web/q01") - 0.08).abs() < 1e-12);
    let q23 = (buckets[2].1 + buckets[3].1) as f64;
    assert!((share("web/q02") - 0.32 * buckets[2].1 as f64 / q23).abs() < 1e-12);

    // Rehydration: 2-4 → 2 copies, 5-9 → 3, 10+ → 4; one pass holds them all.
    let instruct = sidecar_of(&prepared.join("instruct"));
    let (tokens, sizes) = (sidecar_column(&instruct, "tokens"), sidecar_column(&instruct, "cluster_size"));
    let copies: Vec<u64> = sizes
        .iter()
        .map(|s| match s.unwrap() as u64 {
            0..=1 => 1,
            2..=4 => 2,
            5..=9 => 3,
            _ => 4,
        })
        .collect();
    assert!(copies.contains(&4) && copies.contains(&3), "the fixture has large clusters");
    let pool: u64 = tokens.iter().zip(&copies).map(|(t, c)| t.unwrap() as u64 * c).sum();
    let d = domain("instruct");
    assert_eq!(d["available_tokens"].as_u64().unwrap(), pool);
    assert_eq!(d["most_copies"], 4);
    assert_eq!(d["allowed_tokens"].as_u64().unwrap(), pool * 8 / 4, "max_epochs 8 over 4 copies");
    let bands: Vec<u64> =
        d["subset"]["rehydration"].as_array().unwrap().iter().map(|b| b["documents"].as_u64().unwrap()).collect();
    assert_eq!(bands, [2, 3, 4].map(|c| copies.iter().filter(|&&x| x == c).count() as u64));

    // The build draws web documents of their bucket only, and exports the subsets as shards of
    // their own (instruct's with every copy).
    let out = tmp.path().join("mixture");
    let built = ok(midtrain(&["mix", "build", r, "--out", out.to_str().unwrap()]));
    let mixture: serde_json::Value = serde_json::from_slice(&fs::read(out.join("mixture.json")).unwrap()).unwrap();
    let shards = mixture["shards"].as_array().unwrap();
    for c in fs::read(out.join("order.bin")).unwrap().chunks(12) {
        let u = |i: usize| u32::from_le_bytes(c[i..i + 4].try_into().unwrap()) as usize;
        let name = shards[u(0)]["domain"].as_str().unwrap();
        if let Some(bucket) = name.strip_prefix("web/q") {
            assert_eq!(bucket_of.get(&u(4)), Some(&bucket.parse::<usize>().unwrap()), "{name} drew document {}", u(4));
        }
    }
    let blend = fs::read_to_string(out.join("megatron_data_path.txt")).unwrap();
    let subset_lines: Vec<&str> = blend.lines().filter(|l| l.contains("/subsets/")).collect();
    assert_eq!(subset_lines.len(), 4, "web/q01..q03 and instruct:\n{blend}");
    assert!(!blend.contains("web_q00") && !blend.contains("prepared/web/"), "{blend}");
    ok(midtrain(&["verify", out.join("subsets/instruct").to_str().unwrap()]));
    let inspected: serde_json::Value = serde_json::from_str(
        ok(midtrain(&["inspect", out.join("subsets/instruct").to_str().unwrap(), "--json"])).trim(),
    )
    .unwrap();
    assert_eq!(inspected["documents"].as_u64().unwrap(), copies.iter().sum::<u64>());
    assert_eq!(inspected["tokens"].as_u64().unwrap(), pool);
    assert!(built.contains("instruct: a document subset"), "mix build says so: {built}");

    // The audit: buckets as domains, the quality they were cut by, draws by cluster size.
    let html = tmp.path().join("audit.html");
    let audit: serde_json::Value = serde_json::from_slice(
        &midtrain(&["audit", out.to_str().unwrap(), "--json", "--html", html.to_str().unwrap()]).stdout,
    )
    .unwrap();
    let audited = |name: &str| audit["domains"].as_array().unwrap().iter().find(|d| d["name"] == name).unwrap().clone();
    assert!((audit["overlap"].as_f64().unwrap() - plan["overlap"].as_f64().unwrap()).abs() < 0.005, "by recipe domain");
    for k in 1..4 {
        let d = audited(&format!("web/q{k:02}"));
        assert_eq!(d["score_column"], "quality");
        assert_eq!(d["score"]["count"], d["documents"], "{d}");
        let lo = d["subset"]["score_min"].as_f64().unwrap();
        assert!(d["score"]["p10"].as_f64().unwrap() >= lo, "{d}");
    }
    let drawn: u64 =
        audited("instruct")["draws_by_cluster_size"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(drawn, audited("instruct")["documents"].as_u64().unwrap());
    let page = fs::read_to_string(&html).unwrap();
    assert!(page.contains("Selected subsets and buckets") && page.contains("Rehydration"), "the page shows both");

    // Rules that keep nothing, or columns a sidecar lacks, are errors that say so.
    let text = fs::read_to_string(&recipe).unwrap();
    fs::write(&recipe, text.replace("language_score >= 0.99", "language_score >= 2")).unwrap();
    let err = String::from_utf8_lossy(&midtrain(&["mix", "plan", r]).stderr).into_owned();
    assert!(err.contains("\"web\"") && err.contains("keep no documents"), "{err}");
    fs::write(&recipe, text.replace("name = \"chat\"\n", "name = \"chat\"\nrehydrate = { \"2+\" = 2 }\n")).unwrap();
    let err = String::from_utf8_lossy(&midtrain(&["mix", "plan", r]).stderr).into_owned();
    assert!(err.contains("cluster_size") && err.contains("chat"), "{err}");
}
