//! End-to-end tests of `midtrain filter` and `midtrain prepare` on the fixture dumps.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::Array;
use common::{all_files, ok};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn midtrain(args: &[&str], threads: usize) -> Output {
    Command::new(env!("CARGO_BIN_EXE_midtrain"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .expect("run midtrain")
}

/// Every file of a stage's output folder but its run identity (which names the task split).
fn outputs(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = all_files(dir);
    files.retain(|p, _| !p.ends_with("run.json"));
    files
}

fn read_parts(dir: &Path, column: &str) -> Vec<String> {
    common::strings(dir, column)
}

const HEURISTICS: &str = "gopher_repetition,gopher_quality,c4_quality,fineweb_quality";

#[test]
fn filter_splits_every_document_into_kept_or_removed_with_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("f");
    let web = fixtures().join("dumps/web.parquet");
    let args = ["filter", web.to_str().unwrap(), "--filters", HEURISTICS, "--out", out.to_str().unwrap(), "--json"];
    let stats: serde_json::Value = serde_json::from_str(ok(midtrain(&args, 2)).trim()).unwrap();

    let kept = read_parts(&out.join("kept"), "id");
    let removed = read_parts(&out.join("removed"), "id");
    let steps = read_parts(&out.join("removed"), "step");
    let reasons = read_parts(&out.join("removed"), "reason");
    assert_eq!(kept.len() + removed.len(), 400, "every fixture page is kept or removed");
    assert_eq!(stats["documents_read"], 400);
    assert_eq!(stats["documents_kept"], kept.len());
    let mut ids: Vec<_> = kept.iter().chain(&removed).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 400, "no document twice");
    // Per step: documents out of one step go into the next, removals match the reasons.
    let step_stats = stats["steps"].as_array().unwrap();
    for pair in step_stats.windows(2) {
        assert_eq!(pair[0]["documents_out"], pair[1]["documents_in"]);
    }
    for s in step_stats {
        let name = s["step"].as_str().unwrap();
        let from_file = steps.iter().filter(|x| *x == name).count() as u64;
        let counted: u64 = s["removed"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(from_file, counted, "{name}");
        assert_eq!(s["documents_in"].as_u64().unwrap() - s["documents_out"].as_u64().unwrap(), counted, "{name}");
    }
    // The synthetic spam and short pages are caught; reasons are the reference ones.
    assert!(reasons.iter().any(|r| r == "gopher_short_doc"));
    assert!(reasons.iter().all(|r| !r.is_empty()));
    assert_eq!(fs::read(out.join("stats.json")).map(|b| !b.is_empty()).ok(), Some(true));
}

#[test]
fn filter_output_is_identical_for_any_thread_count_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let web = fixtures().join("dumps/web.parquet");
    let run = |name: &str, threads: usize| {
        let out = tmp.path().join(name);
        let args = [
            "filter",
            web.to_str().unwrap(),
            "--filters",
            HEURISTICS,
            "--batch-size",
            "37",
            "--out",
            out.to_str().unwrap(),
        ];
        ok(midtrain(&args, threads));
        out
    };
    let one = all_files(&run("one", 1));
    let two = all_files(&run("two", 2));
    assert_eq!(one, two, "byte-identical outputs with 1 and 2 threads");

    // A rerun finds the finished parts and leaves the bytes alone.
    let again = all_files(&run("two", 2));
    assert_eq!(again, two);
    // A different run into the same folder is refused, then forced.
    let out = tmp.path().join("two");
    let other = ["filter", web.to_str().unwrap(), "--filters", "gopher_quality", "--out", out.to_str().unwrap()];
    let refused = midtrain(&other, 2);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("different run"));
    let mut forced = other.to_vec();
    forced.push("--force");
    ok(midtrain(&forced, 2));
}

#[test]
fn prepare_runs_every_domain_of_the_fixture_config() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("prepared");
    let path = common::fixture_prepare_config(tmp.path(), "prepare.toml", &output);
    let stdout = ok(midtrain(&["prepare", path.to_str().unwrap(), "--json"], 2));
    let stats: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(stats.len(), 15, "seven filtered domains, the dedup run, seven datasets");
    let datasets: Vec<&str> = stats[8..].iter().map(|s| s["domain"].as_str().unwrap()).collect();
    assert_eq!(datasets, ["web", "code", "math", "books", "instruct", "chat", "qa"]);
    for domain in ["web", "code", "math", "books", "instruct", "chat", "qa"] {
        assert!(output.join(domain).join("filtered/stats.json").is_file(), "{domain}");
    }
    // Web: the language filter removes the non-English pages and writes its columns.
    let languages = read_parts(&output.join("web/filtered/kept"), "language");
    assert!(!languages.is_empty() && languages.iter().all(|l| l == "en"));
    let web_reasons = read_parts(&output.join("web/filtered/removed"), "reason");
    assert!(web_reasons.iter().any(|r| r == "unwanted_language"), "{web_reasons:?}");
    // Code: the where predicate selected three languages; the text came from `content`.
    assert!(stats.iter().take(7).all(|s| s["stage"] == "filter" && s["domain"].is_string()), "lines name their domain");
    let code = &stats[1]["stats"];
    let where_step = code["steps"].as_array().unwrap().iter().find(|s| s["step"] == "where").unwrap();
    assert!(where_step["documents_out"].as_u64().unwrap() < where_step["documents_in"].as_u64().unwrap());
    // Dedup ran over web + books + instruct: every kept web page went in, duplicates came out,
    // and the filters' columns survived.
    assert_eq!(stats[7]["domains"], serde_json::json!(["web", "books", "instruct"]));
    let dedup = &stats[7]["dedup"];
    let kept_web = read_parts(&output.join("web/filtered/kept"), "id").len();
    let after = read_parts(&output.join("web/dedup/kept"), "id").len();
    let removed = read_parts(&output.join("web/dedup/removed"), "id").len();
    assert_eq!(after + removed, kept_web);
    assert!(removed > 0, "the fixture's exact and near copies survive the filters and are caught");
    assert!(dedup["removed_exact"].as_u64().unwrap() > 0);
    assert_eq!(read_parts(&output.join("web/dedup/kept"), "language").len(), after);
    assert!(output.join("books/dedup/stats").is_dir() && !output.join("code/dedup").exists());
    check_rendered_domains(&output);
}

/// Chat: messages rendered with ChatML, a loss mask that counts exactly the assistant turns. QA:
/// flat fields (one nested) in a plain template.
fn check_rendered_domains(output: &Path) {
    let chat = common::strings(&fixtures().join("dumps/chat.parquet"), "id");
    let texts = read_parts(&output.join("chat/filtered/kept"), "text");
    assert_eq!(texts.len(), chat.len(), "every conversation rendered and kept");
    assert!(texts.iter().all(|t| t.starts_with("<|im_start|>") && t.ends_with("<|im_end|>\n")), "{}", texts[0]);
    let manifest = shards::DatasetManifest::load(&output.join("chat")).unwrap();
    let tokenizer = pipeline::TextTokenizer::from_file(&fixtures().join("tokenizer.json"), None, None).unwrap();
    let mut checked = 0;
    for shard in &manifest.shards {
        assert_eq!(shard.loss_mask.as_deref(), Some(format!("{}.loss", shard.prefix).as_str()));
        let reader = shards::ShardReader::open(output.join("chat").join(&shard.prefix)).unwrap();
        for d in 0..reader.num_documents() {
            let ids = reader.document(d).unwrap().to_vec();
            let mask = reader.document_loss_mask(d).unwrap();
            let counted: Vec<u32> = ids.iter().zip(mask).filter(|(_, m)| **m == 1).map(|(id, _)| *id).collect();
            // The conversation ends with the assistant, so the final EOS counts too.
            assert_eq!(counted.last(), ids.last());
            let said = tokenizer.decode(&counted[..counted.len() - 1]).unwrap();
            let text = &texts[checked];
            let assistant: String = text
                .split("<|im_start|>assistant\n")
                .skip(1)
                .map(|turn| format!("{}<|im_end|>\n", turn.split("<|im_end|>\n").next().unwrap()))
                .collect();
            assert_eq!(said, assistant, "document {checked}");
            checked += 1;
        }
    }
    assert_eq!(checked, texts.len());
    let stats: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(output.join("chat/stats.json")).unwrap()).unwrap();
    let in_loss = stats["tokenize"]["loss_mask"]["tokens_in_loss"].as_u64().unwrap();
    assert!(in_loss > 0 && in_loss < manifest.tokens, "{stats}");
    ok(midtrain(&["verify", output.join("chat").to_str().unwrap()], 1));

    let qa = read_parts(&output.join("qa/filtered/kept"), "text");
    assert_eq!(qa.len(), 120);
    assert!(
        qa[0].starts_with("Problem: A teacher has 5 boxes") && qa[0].contains("\nSolution: There are 5 * 6"),
        "{}",
        qa[0]
    );
}

#[test]
fn dedup_runs_stage_by_stage_across_tasks_like_in_one_go() {
    let tmp = tempfile::tempdir().unwrap();
    let dupes = fixtures().join("dumps/dupes.parquet");
    let web = fixtures().join("dumps/web.parquet");
    let (d, w) = (dupes.to_str().unwrap(), web.to_str().unwrap());
    let whole = tmp.path().join("whole");
    let summary: serde_json::Value =
        serde_json::from_str(ok(midtrain(&["dedup", d, w, "--out", whole.to_str().unwrap(), "--json"], 2)).trim())
            .unwrap();
    assert!(summary["dedup"]["removed_near"].as_u64().unwrap() > 50);

    let split = tmp.path().join("split");
    let s = split.to_str().unwrap();
    for task in ["0", "1"] {
        ok(midtrain(&["dedup", d, w, "--out", s, "--tasks", "2", "--task", task, "--stage", "signatures"], 1));
    }
    ok(midtrain(&["dedup", d, w, "--out", s, "--tasks", "2", "--stage", "pairs"], 2));
    let text = ok(midtrain(&["dedup", d, w, "--out", s, "--tasks", "2", "--stage", "clusters"], 2));
    assert!(text.contains("clusters:") && !text.trim_start().starts_with('{'), "plain text without --json: {text}");
    for task in ["1", "0"] {
        ok(midtrain(&["dedup", d, w, "--out", s, "--tasks", "2", "--task", task, "--stage", "apply"], 2));
    }
    for sub in ["kept", "removed"] {
        assert_eq!(all_files(&whole.join(sub)), all_files(&split.join(sub)), "{sub}");
    }
    let removed = read_parts(&split.join("removed"), "reason");
    assert!(removed.iter().all(|r| r == "exact" || r == "near"));
    // A stage out of order is refused with a clear message.
    let early = tmp.path().join("early");
    let out = midtrain(&["dedup", d, "--out", early.to_str().unwrap(), "--stage", "pairs"], 1);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("task 0 of 1 is not finished"));
}

/// `DIR/mathbench.test.jsonl`: the first lines of math documents 0, 5 and 9 (one embedded in a
/// longer text) as items m0, m5, m9, and a question no document holds.
fn write_math_eval_set(dir: &Path) -> PathBuf {
    let texts = common::strings(&fixtures().join("dumps/math.parquet"), "text");
    let items: Vec<String> = [0, 5, 9]
        .iter()
        .map(|&i| {
            serde_json::json!({ "id": format!("m{i}"), "question": texts[i].lines().next().unwrap() }).to_string()
        })
        .chain([
            serde_json::json!({ "id": "none", "question": "a question that no fixture document asks anyone at all" })
                .to_string(),
        ])
        .collect();
    let path = dir.join("mathbench.test.jsonl");
    fs::write(&path, items.join("\n")).unwrap();
    path
}

#[test]
fn decontaminate_removes_documents_holding_an_eval_item_the_same_for_any_task_split() {
    let tmp = tempfile::tempdir().unwrap();
    let (math, books) = (fixtures().join("dumps/math.parquet"), fixtures().join("dumps/books.parquet"));
    let texts = common::strings(&math, "text");
    let ids = common::strings(&math, "id");
    let evals = write_math_eval_set(tmp.path());
    let run = |out: &Path, split: &[&str]| {
        let mut args = vec!["decontaminate", math.to_str().unwrap(), books.to_str().unwrap()];
        args.extend(["--against", evals.to_str().unwrap(), "--columns", "question", "--out", out.to_str().unwrap()]);
        args.extend(split);
        ok(midtrain(&args, 2))
    };
    let whole = tmp.path().join("whole");
    run(&whole, &["--json"]);
    let removed = read_parts(&whole.join("removed"), "id");
    let reasons = read_parts(&whole.join("removed"), "reason");
    for i in [0, 5, 9] {
        let at = removed.iter().position(|r| *r == ids[i]).unwrap_or_else(|| panic!("{} kept", ids[i]));
        assert!(reasons[at].starts_with(&format!("contaminated_mathbench: item m{i}: \"")), "{}", reasons[at]);
    }
    let stats: serde_json::Value = serde_json::from_slice(&fs::read(whole.join("stats.json")).unwrap()).unwrap();
    let step = stats["steps"].as_array().unwrap().iter().find(|s| s["step"] == "decontaminate").unwrap().clone();
    assert_eq!(step["removed"]["contaminated_mathbench"].as_u64(), Some(removed.len() as u64), "{step}");

    // The same command after the eval set changed in place is another run, not a resume.
    let before = fs::read_to_string(&evals).unwrap();
    fs::write(&evals, format!("{before}\n{{\"id\": \"new\", \"question\": \"one more question for the set\"}}"))
        .unwrap();
    let mut args = vec!["decontaminate", math.to_str().unwrap(), books.to_str().unwrap()];
    args.extend(["--against", evals.to_str().unwrap(), "--columns", "question", "--out", whole.to_str().unwrap()]);
    let changed = midtrain(&args, 2);
    assert!(String::from_utf8_lossy(&changed.stderr).contains("other inputs or settings"), "{changed:?}");
    fs::write(&evals, before).unwrap();

    let split = tmp.path().join("split");
    run(&split, &["--tasks", "2", "--task", "1"]);
    assert!(!split.join("stats.json").exists(), "no summary before every task is done");
    run(&split, &["--tasks", "2", "--task", "0"]);
    assert_eq!(outputs(&whole), outputs(&split));

    // Marked instead: every document stays, the contaminated ones labelled.
    let marked = tmp.path().join("marked");
    run(&marked, &["--mode", "mark"]);
    let kept = read_parts(&marked.join("kept"), "id");
    assert_eq!(kept.len(), texts.len() + common::strings(&books, "id").len());
    let batches: Vec<_> =
        fs::read_dir(marked.join("kept")).unwrap().map(|e| common::batches(&e.unwrap().path())).collect();
    let labelled: usize = batches
        .iter()
        .flatten()
        .map(|b| {
            b.column_by_name("contamination").unwrap().len() - b.column_by_name("contamination").unwrap().null_count()
        })
        .sum();
    assert_eq!(labelled, removed.len());
    let stats: serde_json::Value = serde_json::from_slice(&fs::read(marked.join("stats.json")).unwrap()).unwrap();
    let step = stats["steps"].as_array().unwrap().iter().find(|s| s["step"] == "decontaminate").unwrap().clone();
    assert_eq!(step["marked"]["contaminated_mathbench"].as_u64(), Some(labelled as u64), "{step}");
}

#[test]
fn boilerplate_is_learnt_from_every_input_so_a_task_split_decides_alike() {
    // An eval passage scraped with a site footer. The footer is in 10 documents of the first
    // input and 2 of the second: common in the whole corpus (more than 2 of 24 documents), not in
    // the second input alone, so a task that sampled only its own share would remove those two.
    let tmp = tempfile::tempdir().unwrap();
    let footer = "Your email address will not be published and required fields are marked with a star";
    let question = "How many distinct ways can seven identical marbles be placed into three labelled jars";
    let evals = tmp.path().join("passages.jsonl");
    fs::write(&evals, serde_json::json!({ "id": "p1", "text": format!("{question}? {footer}.") }).to_string()).unwrap();
    let write = |name: &str, footers: usize, with_item: bool| {
        let path = tmp.path().join(name);
        let mut lines: Vec<String> = (0..12)
            .map(|i| {
                let text = if i < footers {
                    format!("{name} post {i} about gardening and tomatoes. {footer}.")
                } else {
                    format!("{name} post {i} about cycling in the rain and mountains.")
                };
                serde_json::json!({ "id": format!("{name}-{i}"), "text": text }).to_string()
            })
            .collect();
        if with_item {
            lines[11] =
                serde_json::json!({ "id": format!("{name}-11"), "text": format!("Homework: {question}?") }).to_string();
        }
        fs::write(&path, lines.join("\n")).unwrap();
        path
    };
    let (a, b) = (write("a.jsonl", 10, false), write("b.jsonl", 2, true));
    let run = |out: &Path, split: &[&str]| {
        let mut args = vec!["decontaminate", a.to_str().unwrap(), b.to_str().unwrap(), "--against"];
        args.extend([evals.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        args.extend(split);
        midtrain(&args, 2)
    };
    let whole = tmp.path().join("whole");
    let output = run(&whole, &[]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("boilerplate in 24 sample documents"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    ok(output);
    assert_eq!(read_parts(&whole.join("removed"), "id"), ["b.jsonl-11"], "only the question, not the footer");
    let split = tmp.path().join("split");
    for task in ["1", "0"] {
        ok(run(&split, &["--tasks", "2", "--task", task]));
    }
    assert_eq!(outputs(&whole), outputs(&split));
    // Without the sample the footer flags all 12 of its documents.
    let plain = tmp.path().join("plain");
    ok(run(&plain, &["--boilerplate-documents", "0"]));
    assert_eq!(read_parts(&plain.join("removed"), "id").len(), 13);
}

#[test]
fn a_prepare_decontaminate_section_marks_the_domains_it_names_and_the_audit_counts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let evals = write_math_eval_set(tmp.path());
    let output = tmp.path().join("prepared");
    let config = tmp.path().join("prepare.toml");
    fs::write(
        &config,
        format!(
            "output = {output:?}\n\
             [[domain]]\nname = \"math\"\ninputs = [{math:?}]\n\
             [[domain]]\nname = \"books\"\ninputs = [{books:?}]\n\
             [decontaminate]\nagainst = [{evals:?}]\ncolumns = [\"question\"]\nmode = \"mark\"\ndomains = [\"math\"]\n\
             [tokenizer]\npath = {tokenizer:?}\neos = \"<|endoftext|>\"\n",
            math = fixtures().join("dumps/math.parquet"),
            books = fixtures().join("dumps/books.parquet"),
            tokenizer = fixtures().join("tokenizer.json"),
        ),
    )
    .unwrap();
    ok(midtrain(&["prepare", config.to_str().unwrap(), "-q"], 2));
    let stats = |domain: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(output.join(domain).join("filtered/stats.json")).unwrap()).unwrap()
    };
    let math = stats("math");
    let step = math["steps"].as_array().unwrap().iter().find(|s| s["step"] == "decontaminate").unwrap();
    let marked = step["marked"]["contaminated_mathbench"].as_u64().unwrap();
    assert!(marked >= 3, "the three items' documents at least: {step}");
    assert_eq!(step["documents_in"], step["documents_out"], "marking keeps every document");
    assert!(!stats("books")["steps"].as_array().unwrap().iter().any(|s| s["step"] == "decontaminate"));

    let audit: serde_json::Value =
        serde_json::from_str(&ok(midtrain(&["audit", output.join("math").to_str().unwrap(), "--json"], 2))).unwrap();
    assert_eq!(audit["domains"][0]["marked"]["contaminated_mathbench"].as_u64(), Some(marked), "{audit}");
    let text = ok(midtrain(&["audit", output.join("math").to_str().unwrap()], 2));
    assert!(text.contains(&format!("marked contaminated: contaminated_mathbench {marked}")), "{text}");
}

#[test]
fn dedup_explain_writes_the_review_page_and_only_where_clusters_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("d");
    let dupes = fixtures().join("dumps/dupes.parquet");
    ok(midtrain(&["dedup", dupes.to_str().unwrap(), "--out", out.to_str().unwrap(), "--explain", "3", "-q"], 2));
    let page = fs::read_to_string(out.join("explain.html")).unwrap();
    assert_eq!(page.matches("<h2>").count(), 3, "three clusters");
    assert!(page.contains("removed for") && page.contains("<td rowspan="), "removals beside their keeper");
    let wrong = midtrain(
        &["dedup", dupes.to_str().unwrap(), "--out", out.to_str().unwrap(), "--stage", "pairs", "--explain", "3"],
        2,
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("--stage all or clusters"));
}
