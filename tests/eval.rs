//! End-to-end tests of `midtrain eval` on a small checkpoint the test writes and the committed
//! fixture tasks.

mod common;

use std::path::Path;

use candle_core::Device;
use common::{midtrain_quiet as midtrain, ok, root};
use trainer::hf_config::LlamaConfig;
use trainer::model::Llama;

fn checkpoint(dir: &Path) -> std::path::PathBuf {
    let ckpt = dir.join("ckpt");
    std::fs::create_dir_all(&ckpt).unwrap();
    let model = Llama::init(&LlamaConfig::tiny(4096), 11, &Device::Cpu).unwrap();
    model.config.save(&ckpt).unwrap();
    model.save_weights(&ckpt).unwrap();
    std::fs::copy(root().join("fixtures/tokenizer.json"), ckpt.join("tokenizer.json")).unwrap();
    ckpt
}

#[test]
fn eval_scores_the_fixture_tasks_and_writes_samples() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let tasks = root().join("fixtures/tasks");
    let samples = dir.path().join("samples.jsonl");
    let (mc_task, code_task) = (tasks.join("math_mc.toml"), tasks.join("heldout_code.jsonl"));
    let args = [
        "eval",
        ckpt.to_str().unwrap(),
        "--tasks",
        mc_task.to_str().unwrap(),
        code_task.to_str().unwrap(),
        "--limit",
        "6",
        "--json",
        "--samples",
        samples.to_str().unwrap(),
    ];
    let out: serde_json::Value = serde_json::from_str(&ok(midtrain(&args, &[]))).unwrap();
    let mc = &out["tasks"]["math_mc"];
    assert_eq!(mc["kind"], "multiple_choice");
    assert_eq!(mc["n"], 6);
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&samples).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 12, "6 items of each task");
    let mc_lines: Vec<&serde_json::Value> = lines.iter().filter(|l| l["task"] == "math_mc").collect();
    let correct = mc_lines.iter().filter(|l| l["pred"] == l["gold"]).count();
    assert_eq!(mc["acc"].as_f64().unwrap(), correct as f64 / 6.0, "acc is the share of samples right");
    let first = mc_lines[0];
    assert!(
        first["prompt"].as_str().unwrap().starts_with("Question: ")
            && first["prompt"].as_str().unwrap().ends_with("\nAnswer:")
    );
    assert_eq!(first["log_probs"].as_array().unwrap().len(), first["choices"].as_array().unwrap().len());
    let code = &out["tasks"]["heldout_code"];
    assert_eq!(code["kind"], "perplexity");
    let tokens: u64 =
        lines.iter().filter(|l| l["task"] == "heldout_code").map(|l| l["tokens"][0].as_u64().unwrap()).sum();
    assert_eq!(code["tokens"].as_u64().unwrap(), tokens);
    assert!(code["perplexity"].as_f64().unwrap() > 1.0 && code.get("acc").is_none());

    // Deterministic, whatever the thread count.
    let again = midtrain(&args, &[("RAYON_NUM_THREADS", "1")]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&ok(again)).unwrap(), out);

    // The table names each task.
    let table = ok(midtrain(&args[..7], &[]));
    assert!(table.contains("math_mc") && table.contains("heldout_code") && table.contains(" ± "), "{table}");
}

#[test]
fn bad_task_files_name_the_file_row_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 0}\n{\"context\": \"b\", \"choices\": [\"x\"], \"gold\": 0}\n").unwrap();
    let err = |args: &[&str]| String::from_utf8_lossy(&midtrain(args, &[]).stderr).into_owned();
    let e = err(&["eval", ckpt.to_str().unwrap(), "--tasks", bad.to_str().unwrap()]);
    assert!(e.contains("bad.jsonl") && e.contains("line 2") && e.contains("needs two"), "{e}");
    std::fs::write(&bad, "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 0}\nnot json\n").unwrap();
    let e = err(&["eval", ckpt.to_str().unwrap(), "--tasks", bad.to_str().unwrap()]);
    assert!(e.contains("line 2") && e.contains("bad_json"), "{e}");
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, "{\"text\": \"a b c\"}\n").unwrap();
    let twice = err(&["eval", ckpt.to_str().unwrap(), "--tasks", good.to_str().unwrap(), good.to_str().unwrap()]);
    assert!(twice.contains("two task files are named \"good\""), "{twice}");
    let unknown = dir.path().join("t.csv");
    std::fs::write(&unknown, "x").unwrap();
    let e = err(&["eval", ckpt.to_str().unwrap(), "--tasks", unknown.to_str().unwrap()]);
    assert!(e.contains("unknown input format"), "{e}");
}

#[test]
fn a_parquet_task_scores_as_the_same_items_in_jsonl() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder};
    use parquet::arrow::ArrowWriter;

    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let items: [(&str, &[&str], i64); 3] = [
        ("Question: 2 + 2 =\nAnswer:", &[" 3", " 4"], 1),
        ("Question: the sky is\nAnswer:", &[" blue", " green", " loud"], 0),
        ("Question: a cat has how many legs?\nAnswer:", &[" two", " four", " six", " none"], 1),
    ];
    let jsonl = dir.path().join("mc_jsonl.jsonl");
    let lines: Vec<String> = items
        .iter()
        .map(|(context, choices, gold)| {
            serde_json::json!({"context": context, "choices": choices, "gold": gold}).to_string()
        })
        .collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    // The same items as parquet, choices a list<string> column, as lm-eval's datasets ship them.
    let mut choices = ListBuilder::new(StringBuilder::new());
    for (_, item_choices, _) in &items {
        for c in *item_choices {
            choices.values().append_value(c);
        }
        choices.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        ("context", Arc::new(StringArray::from_iter_values(items.iter().map(|i| i.0))) as ArrayRef),
        ("choices", Arc::new(choices.finish()) as ArrayRef),
        ("gold", Arc::new(Int64Array::from_iter_values(items.iter().map(|i| i.2))) as ArrayRef),
    ])
    .unwrap();
    let parquet = dir.path().join("mc_parquet.parquet");
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let args =
        ["eval", ckpt.to_str().unwrap(), "--tasks", jsonl.to_str().unwrap(), parquet.to_str().unwrap(), "--json"];
    let out: serde_json::Value = serde_json::from_str(&ok(midtrain(&args, &[]))).unwrap();
    let (from_jsonl, from_parquet) = (&out["tasks"]["mc_jsonl"], &out["tasks"]["mc_parquet"]);
    assert_eq!(from_parquet["kind"], "multiple_choice");
    assert_eq!(from_parquet["n"], 3);
    assert_eq!(from_parquet, from_jsonl, "the same items score the same from either format");
}
