//! End-to-end tests of `midtrain train`, `report`, `compare`, `score`, `soup` and `rope` on the
//! committed fixture dataset.

mod common;

use std::path::{Path, PathBuf};

use common::{midtrain_quiet as midtrain, ok, root};

/// A run config on the committed web dataset: two stages, the second extends RoPE (ABF).
fn write_config(dir: &Path) -> PathBuf {
    let config = format!(
        r#"
seed = 3
checkpoint_every = 3
[model]
config = "{model}"
final_lr = 2e-3
[data]
path = "{data}"
heldout_docs = 2
[batch]
micro_batch_size = 2
batch_tokens = 256
[eval]
every = 2
position_bucket = 16
passkey = {{ tokenizer = "{tokenizer}", lengths = [48, 96], depths = [0.0, 1.0], trials = 2 }}
[[stage]]
name = "anneal"
tokens = 1280
seq_len = 64
schedule = {{ warmup_steps = 1, decay = {{ style = "wsd", decay_steps = 2, shape = "one_minus_sqrt" }} }}
[[stage]]
name = "extend"
tokens = 768
seq_len = 128
rope = {{ theta = 80000.0, max_position_embeddings = 512 }}
schedule = {{ peak_lr = 1e-3, decay = {{ style = "cosine" }} }}
"#,
        model = root().join("trainer/configs/tiny-llama.json").display(),
        data = root().join("fixtures/shards/web").display(),
        tokenizer = root().join("fixtures/tokenizer.json").display(),
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn metric_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("tokens_per_s");
            v
        })
        .collect()
}

#[test]
fn a_killed_training_run_resumes_exactly_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let config = config.to_str().unwrap();
    let whole = dir.path().join("whole");
    ok(midtrain(&["train", config, "--out", whole.to_str().unwrap(), "--report"], &[]));
    let lines = metric_lines(&whole);
    let steps: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 5 + 3);
    assert_eq!(steps[7]["stage"], "extend");
    assert_eq!(steps[7]["seq_len"], 128);
    assert!(whole.join("report.html").is_file());
    // Evaluations: passkey at the run's start and each stage's end, the short-context check
    // (at stage 1's 64 tokens) with its flag, loss by position at each stage's end.
    let evals: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("eval").is_some()).collect();
    let with_passkey: Vec<(u64, &str)> = evals
        .iter()
        .filter(|e| e.get("passkey").is_some())
        .map(|e| (e["step"].as_u64().unwrap(), e["when"].as_str().unwrap()))
        .collect();
    assert_eq!(with_passkey, [(0, "start"), (5, "end"), (8, "end")]);
    let grid = &evals.iter().find(|e| e.get("passkey").is_some()).unwrap()["passkey"];
    assert_eq!(grid["accuracy"].as_array().unwrap().len(), 2);
    let extend_end = evals.iter().find(|e| e["stage"] == "extend" && e["when"] == "end").unwrap();
    assert_eq!(extend_end["short"]["seq_len"], 64);
    assert!(extend_end["short"]["change"].is_f64() && extend_end["short"]["degraded"].is_boolean());
    assert_eq!(extend_end["loss_by_position"]["bucket"], 16);
    let by_position = extend_end["loss_by_position"]["loss"]["web"].as_array().unwrap();
    assert_eq!(by_position.len(), 128 / 16, "positions reach the stage's 128 tokens");
    let html = std::fs::read_to_string(whole.join("report.html")).unwrap();
    assert!(html.contains("passkey accuracy") && html.contains("Short-context loss") && html.contains("by position"));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("checkpoints/step-00000008/config.json")).unwrap())
            .unwrap();
    assert_eq!(saved["rope_parameters"]["rope_theta"], 80000.0);

    // Abort (like kill -9) at step 5, before its checkpoint; the rerun resumes from step 3.
    let split = dir.path().join("split");
    let killed = midtrain(
        &["train", config, "--out", split.to_str().unwrap()],
        &[("MIDTRAIN_FAILPOINT_ABORT_AFTER_BATCHES", "5")],
    );
    assert!(!killed.status.success());
    assert!(split.join("checkpoints/step-00000003").is_dir());
    assert!(!split.join("checkpoints/step-00000005").exists());
    ok(midtrain(&["train", config, "--out", split.to_str().unwrap()], &[]));
    assert_eq!(metric_lines(&split), lines, "the resumed run repeats the uninterrupted trajectory");
    let weights = |run: &Path| std::fs::read(run.join("checkpoints/step-00000008/model.safetensors")).unwrap();
    assert_eq!(weights(&split), weights(&whole));

    // Report, compare, score, soup, rope on the results.
    let report = dir.path().join("r.html");
    ok(midtrain(&["report", whole.to_str().unwrap(), "--out", report.to_str().unwrap()], &[]));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("held-out loss by domain") && html.contains("<polyline"));
    let compare = dir.path().join("c.html");
    ok(midtrain(
        &["compare", whole.to_str().unwrap(), split.to_str().unwrap(), "--out", compare.to_str().unwrap()],
        &[],
    ));
    assert!(std::fs::read_to_string(&compare).unwrap().matches("<polyline").count() >= 6);

    let ckpt = whole.join("checkpoints/step-00000008");
    let out = ok(midtrain(&["score", ckpt.to_str().unwrap(), "--tokens", "5 17 9 3", "--json"], &[]));
    let scores: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lps: Vec<f64> = scores["log_probs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(lps.len(), 3);
    let mean = -lps.iter().sum::<f64>() / 3.0;
    assert!((mean - scores["mean_loss"].as_f64().unwrap()).abs() < 1e-6);
    let tokenizer = root().join("fixtures/tokenizer.json");
    let score_text = |text: &str, extra: &[&str]| {
        let args =
            [&["score", ckpt.to_str().unwrap(), "--text", text, "--tokenizer", tokenizer.to_str().unwrap()], extra]
                .concat();
        ok(midtrain(&args, &[]))
    };
    assert!(score_text("The cat sat.", &[]).contains("mean loss"));
    // A special-token string typed in --text is the special token, as transformers reads it.
    let special = score_text("a <|endoftext|> b", &["--json"]);
    let special: serde_json::Value = serde_json::from_str(&special).unwrap();
    assert!(special["ids"].as_array().unwrap().contains(&serde_json::json!(0)), "{special}");
    // --text is encoded with the tokenizer's post-processor, as transformers' tokenizer(text)
    // is: a tokenizer whose template starts every sequence with <|pad|> (id 1) puts it first.
    let mut with_bos: serde_json::Value = serde_json::from_slice(&std::fs::read(&tokenizer).unwrap()).unwrap();
    with_bos["post_processor"] = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{ "SpecialToken": { "id": "<|pad|>", "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } }],
        "pair": [{ "Sequence": { "id": "A", "type_id": 0 } }, { "Sequence": { "id": "B", "type_id": 1 } }],
        "special_tokens": { "<|pad|>": { "id": "<|pad|>", "ids": [1], "tokens": ["<|pad|>"] } }
    });
    let bos_tokenizer = dir.path().join("bos-tokenizer.json");
    std::fs::write(&bos_tokenizer, with_bos.to_string()).unwrap();
    let ids = |extra: &[&str]| -> Vec<u64> {
        let args = [&["score", ckpt.to_str().unwrap(), "--text", "The cat sat.", "--json"], extra].concat();
        let v: serde_json::Value = serde_json::from_str(&ok(midtrain(&args, &[]))).unwrap();
        v["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap()).collect()
    };
    let plain = ids(&["--tokenizer", tokenizer.to_str().unwrap()]);
    let bos = ids(&["--tokenizer", bos_tokenizer.to_str().unwrap()]);
    assert_eq!((bos[0], &bos[1..]), (1, &plain[..]), "the post-processor's BOS first");
    assert_eq!(ids(&["--tokenizer", bos_tokenizer.to_str().unwrap(), "--no-special-tokens"]), plain);
    // Without --tokenizer: the checkpoint folder's own tokenizer.json, or an error saying so.
    let with_tokenizer = dir.path().join("ckpt-with-tokenizer");
    std::fs::create_dir(&with_tokenizer).unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(ckpt.join(name), with_tokenizer.join(name)).unwrap();
    }
    std::fs::copy(&bos_tokenizer, with_tokenizer.join("tokenizer.json")).unwrap();
    let args = ["score", with_tokenizer.to_str().unwrap(), "--text", "The cat sat.", "--json"];
    let v: serde_json::Value = serde_json::from_str(&ok(midtrain(&args, &[]))).unwrap();
    assert_eq!(v["ids"].as_array().unwrap()[0], 1);
    std::fs::remove_file(with_tokenizer.join("tokenizer.json")).unwrap();
    let none = midtrain(&args, &[]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("give --tokenizer FILE"), "{none:?}");
    let bad = midtrain(&["score", ckpt.to_str().unwrap(), "--tokens", "5 x"], &[]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"x\" is not a token id"));

    let soup = dir.path().join("soup");
    let a = whole.join("checkpoints/step-00000006");
    ok(midtrain(&["soup", a.to_str().unwrap(), ckpt.to_str().unwrap(), "--out", soup.to_str().unwrap()], &[]));
    assert!(soup.join("model.safetensors").is_file() && soup.join("config.json").is_file());

    let rope = ok(midtrain(&["rope", ckpt.join("config.json").to_str().unwrap(), "--json"], &[]));
    let rope: serde_json::Value = serde_json::from_str(&rope).unwrap();
    assert_eq!(rope["inv_freq"].as_array().unwrap().len(), 8);
    let second = rope["inv_freq"][1].as_f64().unwrap();
    assert!((second - 80000f64.powf(-2.0 / 16.0)).abs() < 1e-12);
}

#[test]
fn bad_train_configs_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    // A model whose vocabulary is smaller than the data's tokenizer.
    let model = std::fs::read_to_string(root().join("trainer/configs/tiny-llama.json")).unwrap();
    let small = dir.path().join("small-vocab.json");
    std::fs::write(&small, model.replace("\"vocab_size\": 4096", "\"vocab_size\": 100")).unwrap();
    let tiny = root().join("trainer/configs/tiny-llama.json").display().to_string();
    let small_model = text.replace(&tiny, &small.display().to_string());
    let no_passkey: String = small_model.lines().filter(|l| !l.starts_with("passkey")).collect::<Vec<_>>().join("\n");
    let cases = [
        (small_model.clone(), "has 4096 ids, but the model's vocab_size is 100"),
        (no_passkey, "vocab_size is 100; prepare the data with the model's tokenizer"),
        (text.replace("batch_tokens = 256", "batch_tokens = 300"), "not a multiple"),
        (text.replace("final_lr = 2e-3", ""), "no peak_lr"),
        (text.replace("seq_len = 64", "seq_len = 64\nbogus = 1"), "bogus"),
        (text.replace("fixtures/shards/web", "fixtures/shards/nope"), "nope"),
    ];
    for (i, (body, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, body).unwrap();
        let out = midtrain(
            &["train", path.to_str().unwrap(), "--out", dir.path().join(format!("run{i}")).to_str().unwrap()],
            &[],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "case {i}: {err}");
    }
}
