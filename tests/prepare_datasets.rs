//! End-to-end tests of `midtrain prepare` (through tokenization) and `midtrain tokenize`:
//! token ids, sidecars and manifests; kill-and-resume; determinism; bad inputs.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use common::{all_files, batches, midtrain_quiet as midtrain, ok, root};
use parquet::arrow::ArrowWriter;

fn column(path: &Path, name: &str) -> Vec<String> {
    common::strings(path, name)
}

/// The fixture prepare config, writing to `output` with `batch_size`, saved beside `output`.
fn config_for(output: &Path, batch_size: usize, tag: &str) -> PathBuf {
    let dir = output.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    let path = common::fixture_prepare_config(dir, &format!("prepare-{tag}.toml"), output);
    let text = fs::read_to_string(&path).unwrap().replace("batch_size = 256", &format!("batch_size = {batch_size}"));
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn prepared_datasets_hold_the_tokenizer_ids_of_the_kept_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("prepared");
    let config = config_for(&output, 256, "ids");
    let result = midtrain(&["prepare", config.to_str().unwrap()], &[]);
    fs::remove_file(&config).unwrap();
    ok(result);
    let tokenizer = tokenizers::Tokenizer::from_file(root().join("fixtures/tokenizer.json")).unwrap();
    for domain in ["web", "code", "math", "books", "instruct"] {
        let dir = output.join(domain);
        ok(midtrain(&["verify", dir.to_str().unwrap()], &[]));
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let stage = if ["web", "books", "instruct"].contains(&domain) { "dedup" } else { "filtered" };
        let kept = dir.join(stage).join("kept/part-00000.parquet");
        let (ids, texts) = (column(&kept, "id"), column(&kept, "text"));
        assert!(!ids.is_empty(), "{domain} keeps documents");
        let mut doc = 0;
        for shard in manifest["shards"].as_array().unwrap() {
            let prefix = dir.join(shard["prefix"].as_str().unwrap());
            let sidecar = dir.join(shard["sidecar"].as_str().unwrap());
            let dump = ok(midtrain(&["inspect", prefix.to_str().unwrap(), "--dump", "100000"], &[]));
            let sidecar_ids = column(&sidecar, "id");
            let token_counts: Vec<u64> = batches(&sidecar)
                .iter()
                .flat_map(|b| b.column_by_name("tokens").unwrap().as_primitive::<UInt64Type>().values().to_vec())
                .collect();
            for (i, line) in dump.lines().enumerate() {
                let line: serde_json::Value = serde_json::from_str(line).unwrap();
                let got: Vec<u32> =
                    line["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
                let mut want = tokenizer.encode(texts[doc].as_str(), false).unwrap().get_ids().to_vec();
                want.push(0);
                assert_eq!(got, want, "{domain} document {}", ids[doc]);
                assert_eq!(sidecar_ids[i], ids[doc]);
                assert_eq!(token_counts[i], want.len() as u64);
                doc += 1;
            }
        }
        assert_eq!(doc, ids.len(), "{domain}: every kept document is in a shard, once");
        assert_eq!(manifest["documents"], doc);
        // Nothing vanished: read rows = documents + removed.
        let stats: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("stats.json")).unwrap()).unwrap();
        let removed = column(&dir.join("removed.parquet"), "id").len() as u64;
        assert_eq!(stats["filter"]["documents_read"].as_u64().unwrap(), doc as u64 + removed, "{domain}");
        // datatrove's .ds files hold the same tokens.
        let ds = fs::read(dir.join(format!("{}.ds", manifest["shards"][0]["prefix"].as_str().unwrap()))).unwrap();
        let bin = fs::read(dir.join(format!("{}.bin", manifest["shards"][0]["prefix"].as_str().unwrap()))).unwrap();
        assert_eq!(ds, bin, "uint16 .ds equals the .bin");
    }
    // The sidecar carries the filters' scores.
    let web = output.join("web");
    let m: serde_json::Value = serde_json::from_slice(&fs::read(web.join("manifest.json")).unwrap()).unwrap();
    let sidecar = web.join(m["shards"][0]["sidecar"].as_str().unwrap());
    assert!(column(&sidecar, "language").iter().all(|l| l == "en"));
    assert!(batches(&sidecar)[0].column_by_name("quality").is_some());
}

#[test]
fn a_killed_prepare_resumes_to_the_same_bytes_for_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("prepared");
    let config = config_for(&output, 40, "resume");
    let c = config.to_str().unwrap();
    ok(midtrain(&["prepare", c], &[("RAYON_NUM_THREADS", "2")]));
    let reference = all_files(&output);
    for abort_after in ["1", "4", "9", "14", "19", "24"] {
        fs::remove_dir_all(&output).unwrap();
        let killed = midtrain(&["prepare", c], &[("MIDTRAIN_FAILPOINT_ABORT_AFTER_BATCHES", abort_after)]);
        assert!(!killed.status.success(), "the failpoint stopped the run after {abort_after} batches");
        assert!(!output.join("instruct/manifest.json").is_file(), "the run stopped before its end");
        ok(midtrain(&["prepare", c], &[("RAYON_NUM_THREADS", "1")]));
        assert_eq!(all_files(&output), reference, "killed after {abort_after} batches, then resumed");
    }
    // A finished run is left alone, --force redoes it to the same bytes.
    ok(midtrain(&["prepare", c], &[]));
    assert_eq!(all_files(&output), reference);
    ok(midtrain(&["prepare", c, "--force"], &[]));
    fs::remove_file(&config).unwrap();
    assert_eq!(all_files(&output), reference);
}

#[test]
fn stages_as_separate_tasks_give_the_same_datasets_and_slurm_chains_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    let (cw, cs) = (config_for(&whole, 64, "whole"), config_for(&split, 64, "split"));
    ok(midtrain(&["prepare", cw.to_str().unwrap()], &[]));
    let c = cs.to_str().unwrap();
    for stage in ["filter", "dedup-signatures", "dedup-pairs", "dedup-clusters", "dedup-apply", "tokenize"] {
        let per_task = !matches!(stage, "dedup-pairs" | "dedup-clusters");
        for task in if per_task { vec!["1", "0"] } else { vec!["0"] } {
            let mut args = vec!["prepare", c, "--stage", stage, "--tasks", "2"];
            if per_task {
                args.extend(["--task", task]);
            }
            ok(midtrain(&args, &[]));
        }
        if matches!(stage, "filter" | "dedup-apply" | "tokenize") {
            ok(midtrain(&["prepare", c, "--stage", stage, "--tasks", "2", "--finalize"], &[]));
        }
    }
    let script = ok(midtrain(&["prepare", c, "--emit-slurm", "8"], &[]));
    let cut = ok(midtrain(
        &["prepare", c, "--emit-slurm", "2500", "--slurm-max-array-size", "1001", "--slurm-throttle", "50"],
        &[],
    ));
    fs::remove_file(&cw).unwrap();
    fs::remove_file(&cs).unwrap();
    for domain in ["web", "code", "math", "books", "instruct", "chat", "qa"] {
        // Shards, sidecars and removed documents are byte-identical; the manifests differ only
        // in the output path recorded in their config.
        let files = |root: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
            all_files(&root.join(domain))
                .into_iter()
                .filter(|(p, _)| p.components().count() == 1 && !p.to_string_lossy().ends_with(".json"))
                .collect()
        };
        let (a, b) = (files(&whole), files(&split));
        let differing: Vec<_> = a.keys().filter(|k| a.get(*k) != b.get(*k)).collect();
        assert!(differing.is_empty() && a.len() == b.len(), "{domain}: {differing:?}");
        let shards = |root: &Path| -> serde_json::Value {
            serde_json::from_slice::<serde_json::Value>(&fs::read(root.join(domain).join("manifest.json")).unwrap())
                .unwrap()["shards"]
                .clone()
        };
        assert_eq!(shards(&whole), shards(&split), "{domain}");
    }
    // filter and dedup-apply: an array and a finalize job; signatures an array; pairs and
    // clusters one job; a tokenize array and finalize per domain (7); verify: 22 submissions.
    assert_eq!(script.matches("$(submit ").count(), 22, "{script}");
    assert!(!script.contains("dedup-signatures --finalize"), "no summary to write there");
    assert!(script.contains("0-7)") && script.contains("--dependency=afterok:$dep"), "{script}");
    assert!(script.contains("--stage dedup-clusters -q") && script.contains("--domain web --finalize -q"));
    // A domain without dedup tokenizes as soon as its filter is finalized.
    assert!(script.contains("dep=$filtered\nids=\"\"\nids=\"${ids:+$ids:}$(submit tokenize-code "), "{script}");
    assert!(script.contains("dep=$deduplicated\nids=\"\"\nids=\"${ids:+$ids:}$(submit tokenize-web "), "{script}");
    assert!(script.contains("--cpus-per-task=2 --mem=4G") && script.contains("--open-mode=append"), "{script}");
    assert!(script.contains(" verify "), "a last job verifies the datasets");
    // 2,500 tasks under MaxArraySize 1001: arrays 0-999, 0-999, 0-499 with offsets, throttled.
    assert!(cut.contains("0-999%50)") && cut.contains("0-499%50)") && cut.contains("$((2000 + SLURM_ARRAY_TASK_ID))"));
    for text in [&script, &cut] {
        let check = Command::new("bash").arg("-n").stdin(std::process::Stdio::piped()).arg("/dev/stdin").spawn();
        if let Ok(mut child) = check {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            assert!(child.wait().unwrap().success(), "the script parses");
        }
    }
}

fn write_texts(path: &Path, texts: &[String]) {
    let schema =
        Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false), Field::new("text", DataType::Utf8, false)]));
    let ids: Vec<String> = (0..texts.len()).map(|i| format!("d{i}")).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(ids)) as ArrayRef, Arc::new(StringArray::from(texts.to_vec()))],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn tokenize_handles_bad_inputs_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = root().join("fixtures/tokenizer.json");
    let (t, math) = (tok.to_str().unwrap(), root().join("fixtures/dumps/math.parquet"));
    let m = math.to_str().unwrap();
    let out = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();
    let fails = |args: &[&str], expected: &str| {
        let o = midtrain(args, &[]);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err}");
    };
    fails(&["tokenize", m, "--tokenizer", "missing.json", "--out", &out("a")], "missing.json");
    let bad = tmp.path().join("bad.json");
    fs::write(&bad, "{\"not\": \"a tokenizer\"}").unwrap();
    fails(&["tokenize", m, "--tokenizer", bad.to_str().unwrap(), "--out", &out("b")], "cannot read tokenizer");
    fails(
        &["tokenize", m, "--tokenizer", t, "--eos", "<|no-such-token|>", "--out", &out("c")],
        "not in the vocabulary",
    );
    assert!(!tmp.path().join("a").exists() && !tmp.path().join("c").exists(), "nothing half-written");

    // Another dataset in the output folder is refused; an empty input gives an empty dataset.
    let d = out("d");
    ok(midtrain(&["tokenize", m, "--tokenizer", t, "--out", &d], &[]));
    let again: serde_json::Value =
        serde_json::from_str(ok(midtrain(&["tokenize", m, "--tokenizer", t, "--out", &d, "--json"], &[])).trim())
            .unwrap();
    assert_eq!(again["already_prepared"], true, "a finished dataset answers --json in JSON: {again}");
    let web = root().join("fixtures/dumps/instruct.parquet");
    fails(&["tokenize", web.to_str().unwrap(), "--tokenizer", t, "--out", &d], "holds another dataset");
    let empty = tmp.path().join("empty.parquet");
    write_texts(&empty, &[]);
    ok(midtrain(&["tokenize", empty.to_str().unwrap(), "--tokenizer", t, "--out", &out("e")], &[]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(tmp.path().join("e/manifest.json")).unwrap()).unwrap();
    assert_eq!((manifest["documents"].as_u64(), manifest["shards"].as_array().unwrap().len()), (Some(0), 0));

    // A 3 MB document (encoded in 1 MiB pieces) gives the ids of the whole text.
    let paragraph = "The garden path wound past the old stone wall, and the rain kept falling on the roses. ";
    let big: String = (0..3_000_000 / paragraph.len()).map(|i| format!("{i} {paragraph}")).collect();
    let small = "A short one.".to_string();
    let big_path = tmp.path().join("big.parquet");
    write_texts(&big_path, &[small.clone(), big.clone()]);
    let f = out("f");
    ok(midtrain(&["tokenize", big_path.to_str().unwrap(), "--tokenizer", t, "--out", &f], &[]));
    let tokenizer = tokenizers::Tokenizer::from_file(&tok).unwrap();
    let dump = ok(midtrain(&["inspect", &f, "--dump", "2"], &[]));
    let lines: Vec<serde_json::Value> = dump.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut want = tokenizer.encode(big.as_str(), false).unwrap().get_ids().to_vec();
    want.push(0);
    let got: Vec<u32> = lines[1]["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the pieces encode like the whole document");
}

#[test]
fn special_token_strings_in_documents_are_counted_and_never_become_an_eos_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let t = root().join("fixtures/tokenizer.json");
    let t = t.to_str().unwrap();
    let input = tmp.path().join("pages.parquet");
    let texts = [
        "A page about tokenizers: <|endoftext|> marks the end of a document.".to_string(),
        "A clean page.".to_string(),
        "Twice: <|endoftext|> and <|endoftext|>.".to_string(),
    ];
    write_texts(&input, &texts);
    let input = input.to_str().unwrap();
    let tokens_of = |dir: &Path| -> Vec<Vec<u64>> {
        let dump = ok(midtrain(&["inspect", dir.to_str().unwrap(), "--dump", "3"], &[]));
        dump.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["tokens"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap())
                    .collect()
            })
            .collect()
    };
    let json = |path: PathBuf| -> serde_json::Value { serde_json::from_slice(&fs::read(path).unwrap()).unwrap() };

    let split = tmp.path().join("split");
    ok(midtrain(&["tokenize", input, "--tokenizer", t, "--out", split.to_str().unwrap()], &[]));
    let stats = json(split.join("stats.json"));
    assert_eq!(stats["special_tokens_in_text"]["strings"], 3, "{stats}");
    assert_eq!(stats["special_tokens_in_text"]["documents"], 2);
    assert_eq!(stats["encoder"], "tokenizers 1.0.0-rc.3");
    let manifest = json(split.join("manifest.json"));
    assert_eq!(manifest["tokenizer"]["special_tokens_in_text"], "split");
    for doc in tokens_of(&split) {
        assert_eq!(doc.iter().filter(|&&id| id == 0).count(), 1, "EOS only at the end: {doc:?}");
        assert_eq!(doc.last(), Some(&0));
    }

    let keep = tmp.path().join("keep");
    let keep_args =
        ["tokenize", input, "--tokenizer", t, "--out", keep.to_str().unwrap(), "--special-tokens-in-text", "keep"];
    ok(midtrain(&keep_args, &[]));
    let eos_counts: Vec<usize> = tokens_of(&keep).iter().map(|d| d.iter().filter(|&&id| id == 0).count()).collect();
    assert_eq!(eos_counts, [2, 1, 3]);

    let refuse = tmp.path().join("refuse");
    let out = midtrain(
        &["tokenize", input, "--tokenizer", t, "--out", refuse.to_str().unwrap(), "--special-tokens-in-text", "error"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("row index 0") && err.contains("<|endoftext|>") && err.contains("pages.parquet"), "{err}");
    assert!(!refuse.join("manifest.json").exists());
}

/// A prepare config over `inputs` (six parquet parts of the fixture web dump) with dedup and a
/// tokenizer, writing to `output`.
fn split_web_config(dir: &Path, inputs: &Path, output: &Path) -> PathBuf {
    let path = dir.join(format!("{}.toml", output.file_name().unwrap().to_string_lossy()));
    let text = format!(
        "output = {output:?}\nbatch_size = 16\n[[domain]]\nname = \"web\"\ninputs = [{glob:?}]\n\
         [[domain.filters]]\ntype = \"length\"\nmin_words = 5\n[dedup]\n\
         [tokenizer]\npath = {tokenizer:?}\neos = \"<|endoftext|>\"\n",
        glob = inputs.join("*.parquet"),
        tokenizer = root().join("fixtures/tokenizer.json"),
    );
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn array_tasks_started_at_the_same_moment_finish_every_stage_in_one_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("in");
    fs::create_dir_all(&inputs).unwrap();
    let texts = column(&root().join("fixtures/dumps/web.parquet"), "text");
    for (i, chunk) in texts.chunks(texts.len().div_ceil(6)).enumerate() {
        write_texts(&inputs.join(format!("web-{i}.parquet")), chunk);
    }
    let whole = tmp.path().join("whole");
    ok(midtrain(&["prepare", split_web_config(tmp.path(), &inputs, &whole).to_str().unwrap()], &[]));
    // What a dataset's bytes are: everything but the json files that record the output path.
    let outputs = |out: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = all_files(&out.join("web"));
        files.retain(|p, _| p.components().count() == 1 && !p.to_string_lossy().ends_with(".json"));
        files
    };
    let reference = outputs(&whole);
    assert!(reference.keys().any(|p| p.to_string_lossy().ends_with(".bin")), "{:?}", reference.keys());

    let binary = env!("CARGO_BIN_EXE_midtrain");
    for trial in 0..4 {
        let out = tmp.path().join(format!("trial{trial}"));
        let config = split_web_config(tmp.path(), &inputs, &out);
        let c = config.to_str().unwrap();
        for stage in ["filter", "dedup-signatures", "dedup-pairs", "dedup-clusters", "dedup-apply", "tokenize"] {
            let split = !matches!(stage, "dedup-pairs" | "dedup-clusters");
            // Every task of the array at once, as Slurm starts them.
            let children: Vec<_> = (0..if split { 3 } else { 1 })
                .map(|task| {
                    let mut cmd = Command::new(binary);
                    cmd.args(["prepare", c, "--stage", stage, "--tasks", "3", "-q"]);
                    if split {
                        cmd.args(["--task", &task.to_string()]);
                    }
                    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap()
                })
                .collect();
            for child in children {
                let done = child.wait_with_output().unwrap();
                assert!(done.status.success(), "trial {trial}, {stage}: {}", String::from_utf8_lossy(&done.stderr));
            }
            if matches!(stage, "filter" | "dedup-apply" | "tokenize") {
                ok(midtrain(&["prepare", c, "--stage", stage, "--tasks", "3", "--finalize"], &[]));
            }
        }
        assert_eq!(outputs(&out), reference, "trial {trial}: the same bytes as one process");
    }

    // A finalize before every task is done names the missing parts and fails; a later stage
    // that finds its input unfinished exits non-zero too.
    let early = tmp.path().join("early");
    let c = split_web_config(tmp.path(), &inputs, &early);
    let c = c.to_str().unwrap();
    ok(midtrain(&["prepare", c, "--stage", "filter", "--tasks", "3", "--task", "1"], &[]));
    let finalize = midtrain(&["prepare", c, "--stage", "filter", "--tasks", "3", "--finalize"], &[]);
    let stderr = String::from_utf8_lossy(&finalize.stderr);
    assert!(
        !finalize.status.success() && stderr.contains("part-00000, part-00002, part-00003, part-00005"),
        "{stderr}"
    );
    let tokenize = midtrain(&["prepare", c, "--stage", "tokenize", "--tasks", "3", "--task", "0"], &[]);
    assert_eq!(tokenize.status.code(), Some(3), "{}", String::from_utf8_lossy(&tokenize.stderr));
    let whole_stage = midtrain(&["prepare", c, "--tasks", "3", "--task", "0"], &[]);
    assert!(String::from_utf8_lossy(&whole_stage.stderr).contains("name it with --stage"), "{whole_stage:?}");
}

#[test]
fn tokenize_renders_chats_and_flat_fields_and_explains_rows_it_cannot_render() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = root().join("fixtures/tokenizer.json");
    let t = tok.to_str().unwrap();
    let chats = tmp.path().join("chats.jsonl");
    let conversation = |user: &str, answer: &str| serde_json::json!({ "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}] });
    let rows = [conversation("Hi", "Hello there."), serde_json::json!({ "id": "broken" }), conversation("2+2?", "4")];
    fs::write(&chats, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let template = tmp.path().join("t.jinja");
    fs::write(
        &template,
        "{% for m in messages %}[{{ m.role }}] {% generation %}{{ m.content }}{% endgeneration %}\n{% endfor %}",
    )
    .unwrap();
    let args = |on_error: &str| {
        let out = tmp.path().join(format!("chat-{on_error}"));
        let v = [
            "tokenize",
            chats.to_str().unwrap(),
            "--tokenizer",
            t,
            "--out",
            out.to_str().unwrap(),
            "--messages-column",
            "messages",
            "--chat-template",
            template.to_str().unwrap(),
            "--loss-mask",
            "assistant",
            "--on-error",
            on_error,
        ];
        v.map(str::to_string).to_vec()
    };
    let run = |a: Vec<String>| midtrain(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let failed = run(args("fail"));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success() && err.contains("chats.jsonl: line 2: template_missing_field"), "{err}");
    ok(run(args("skip")));
    let out = tmp.path().join("chat-skip");
    let removed = common::strings(&out.join("removed.parquet"), "reason");
    assert_eq!(removed, ["template_missing_field: no field \"messages\""]);
    let manifest = shards::DatasetManifest::load(&out).unwrap();
    assert_eq!(manifest.documents, 2);
    assert_eq!(manifest.tokenizer.special_tokens_in_text.as_deref(), Some("keep"));
    let reader = shards::ShardReader::open(out.join(&manifest.shards[0].prefix)).unwrap();
    let tokenizer = pipeline::TextTokenizer::from_file(&tok, None, None).unwrap();
    let ids = reader.document(0).unwrap().to_vec();
    let mask = reader.document_loss_mask(0).unwrap();
    let pick = |want: u8| {
        let picked: Vec<u32> = ids.iter().zip(mask).filter(|(_, m)| **m == want).map(|(id, _)| *id).collect();
        tokenizer.decode(&picked).unwrap()
    };
    // A generation block around every message: both turns count, and so does the final EOS (the
    // text ends in a span: trim_blocks ate the newline after each block). A token that straddles
    // a span's start (" Hi": the space is the template's) counts; the role tags do not.
    assert_eq!(pick(1), " Hi Hello there.<|endoftext|>");
    assert_eq!(pick(0), "[user][assistant]");

    let qa = tmp.path().join("qa.jsonl");
    fs::write(&qa, "{\"q\": \"Why?\", \"a\": {\"text\": \"Because.\"}}\n{\"q\": \"How?\", \"a\": {\"text\": null}}\n")
        .unwrap();
    let flat = |on_error: &str, name: &str| {
        let out = tmp.path().join(name);
        let a = [
            "tokenize",
            qa.to_str().unwrap(),
            "--tokenizer",
            t,
            "--out",
            out.to_str().unwrap(),
            "--template",
            "Q: {q}\nA: {a.text}",
            "--on-error",
            on_error,
        ];
        (midtrain(&a, &[]), out)
    };
    let (failed, _) = flat("fail", "qa-fail");
    assert!(String::from_utf8_lossy(&failed.stderr).contains("line 2: template_null_field: field \"a.text\" is null"));
    let (done, out) = flat("skip", "qa");
    ok(done);
    let manifest = shards::DatasetManifest::load(&out).unwrap();
    let reader = shards::ShardReader::open(out.join(&manifest.shards[0].prefix)).unwrap();
    assert_eq!(tokenizer.decode(&reader.document(0).unwrap().to_vec()).unwrap(), "Q: Why?\nA: Because.<|endoftext|>");
    assert!(manifest.shards[0].loss_mask.is_none(), "no mask without loss_mask = \"assistant\"");
}
