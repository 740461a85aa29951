//! Dedup tests on the fixture generator's labelled near-duplicate set (`fixtures/dumps/dupes.parquet`):
//! precision and recall over duplicate groups, determinism across thread counts, task splits
//! and memory budgets, duplicates across tasks, and corrupted intermediate files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::read::ReadOptions;
use crate::run_folder::Parts;

fn dupes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dumps/dupes.parquet")
}

fn batches(path: &Path) -> Vec<RecordBatch> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    reader.map(|b| b.unwrap()).collect()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let col = batch.column_by_name(column).unwrap().as_string::<i32>().clone();
    (0..col.len()).map(|i| col.is_valid(i).then(|| col.value(i).to_string())).collect()
}

/// Labels: id → (dup_group, kind).
fn labels() -> HashMap<String, (i64, String)> {
    let mut out = HashMap::new();
    for b in batches(&dupes()) {
        let groups = b.column_by_name("dup_group").unwrap().as_primitive::<Int64Type>().clone();
        for (i, (id, kind)) in strings(&b, "id").into_iter().zip(strings(&b, "kind")).enumerate() {
            out.insert(id.unwrap(), (groups.value(i), kind.unwrap()));
        }
    }
    out
}

/// Split the fixture into `n` parquet files (row i goes to file i mod n... in blocks, keeping order).
fn split_inputs(dir: &Path, n: usize) -> Vec<PathBuf> {
    let all = batches(&dupes());
    let batch = arrow::compute::concat_batches(&all[0].schema(), &all).unwrap();
    let rows = batch.num_rows();
    (0..n)
        .map(|i| {
            let (start, end) = (i * rows / n, (i + 1) * rows / n);
            let path = dir.join(format!("in-{i}.parquet"));
            let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
            w.write(&batch.slice(start, end - start)).unwrap();
            w.close().unwrap();
            path
        })
        .collect()
}

fn job(inputs: Vec<PathBuf>, out: &Path, config: DedupConfig, tasks: usize) -> DedupJob {
    DedupJob {
        inputs,
        read: ReadOptions { carry: crate::document::KNOWN_COLUMNS.to_vec(), ..ReadOptions::default() },
        config,
        out: out.to_path_buf(),
        work: out.join("work"),
        tasks,
        parts: Vec::new(),
        near_normalization: Vec::new(),
    }
}

fn run(job: &DedupJob) -> DedupStats {
    run_all(job, &|_| {}).unwrap().1
}

/// (id, reason, kept_id) of every removed row, in output order.
fn removed(out: &Path) -> Vec<(String, String, Option<String>)> {
    let mut files: Vec<_> = std::fs::read_dir(out.join("removed")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut rows = Vec::new();
    for f in files {
        for b in batches(&f) {
            let (ids, reasons, kept) = (strings(&b, "id"), strings(&b, "reason"), strings(&b, "kept_id"));
            for ((id, reason), kept) in ids.into_iter().zip(reasons).zip(kept) {
                rows.push((id.unwrap(), reason.unwrap(), kept));
            }
        }
    }
    rows
}

fn all_output_files(out: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["kept", "removed", "stats"] {
        for e in std::fs::read_dir(out.join(sub)).unwrap() {
            let p = e.unwrap().path();
            files.insert(p.strip_prefix(out).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
        }
    }
    files.insert("stats.json".into(), std::fs::read(out.join("stats.json")).unwrap());
    files
}

struct Score {
    precision: f64,
    recall_exact: f64,
    recall_near: f64,
    emptied: usize,
}

fn score(out: &Path) -> Score {
    let labels = labels();
    let removed = removed(out);
    let removed_ids: std::collections::HashSet<&str> = removed.iter().map(|r| r.0.as_str()).collect();
    let mut members: HashMap<i64, Vec<&str>> = HashMap::new();
    for (id, (group, _)) in &labels {
        members.entry(*group).or_default().push(id);
    }
    // A removal is right when its kept document is a member of its own group.
    let correct = removed
        .iter()
        .filter(|(id, _, kept)| {
            kept.as_ref().is_some_and(|k| labels[k].0 == labels[id].0 && !removed_ids.contains(k.as_str()))
        })
        .count();
    let mut redundant = HashMap::<&str, (usize, usize)>::new(); // kind → (removed redundant copies, copies)
    let mut emptied = 0;
    for ids in members.values() {
        let kind = labels[ids[0]].1.as_str();
        let gone = ids.iter().filter(|id| removed_ids.contains(**id)).count();
        if gone == ids.len() {
            emptied += 1;
        }
        let e = redundant.entry(kind).or_default();
        e.0 += gone.min(ids.len() - 1);
        e.1 += ids.len() - 1;
    }
    let ratio = |(a, b): (usize, usize)| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Score {
        precision: correct as f64 / removed.len().max(1) as f64,
        recall_exact: ratio(redundant["exact"]),
        recall_near: ratio(redundant["near"]),
        emptied,
    }
}

#[test]
fn recommended_setting_meets_precision_and_recall_on_the_labelled_set() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let stats = run(&job(vec![dupes()], &out, DedupConfig::recommended(), 1));
    let s = score(&out);
    assert!(s.precision >= 0.99, "precision {}", s.precision);
    assert!(s.recall_exact >= 0.99, "exact recall {}", s.recall_exact);
    assert!(s.recall_near >= 0.95, "near recall {}", s.recall_near);
    assert_eq!(s.emptied, 0, "no duplicate group loses every member");
    assert!(stats.removed_exact > 0 && stats.removed_near > 0);
    assert_eq!(
        stats.cluster_sizes.iter().map(|(size, n)| (size - 1) * n).sum::<u64>(),
        stats.removed_exact + stats.removed_near
    );
    // Exact removals are byte-identical (after whitespace folding) to their kept document.
    let labels = labels();
    for (id, reason, kept) in removed(&out) {
        if reason == "exact" {
            assert_eq!(labels[&id].0, labels[kept.as_ref().unwrap()].0);
        }
    }
    // FineWeb's setting finds fewer of the edited copies (the reason for midtrain's default).
    let fineweb_out = tmp.path().join("fineweb");
    run(&job(vec![dupes()], &fineweb_out, DedupConfig::fineweb(), 1));
    assert!(score(&fineweb_out).recall_near < s.recall_near);
}

#[test]
fn same_removals_for_any_task_split_thread_count_and_memory_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = split_inputs(tmp.path(), 3);
    let one = tmp.path().join("one");
    run(&job(inputs.clone(), &one, DedupConfig::recommended(), 1));
    let reference = all_output_files(&one);

    let three = tmp.path().join("three");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| run(&job(inputs.clone(), &three, DedupConfig::recommended(), 3)));
    assert_eq!(all_output_files(&three), reference, "3 tasks on 1 thread = 1 task on all threads");

    let small = tmp.path().join("small");
    let mut config = DedupConfig::recommended();
    config.memory_budget = 64 << 10; // forces spilled runs
    run(&job(inputs.clone(), &small, config, 2));
    assert_eq!(all_output_files(&small), reference, "spilling changes nothing");
    let done: serde_json::Value =
        serde_json::from_slice(&std::fs::read(small.join("work/signatures/task-00000/done.json")).unwrap()).unwrap();
    assert!(done["spilled_runs"].as_u64().unwrap() > 20, "the small budget spilled: {done}");

    // Some clusters span files owned by different tasks, and are found.
    let ids_by_file: Vec<Vec<String>> =
        inputs.iter().map(|p| batches(p).iter().flat_map(|b| strings(b, "id")).map(Option::unwrap).collect()).collect();
    let file_of = |id: &str| ids_by_file.iter().position(|ids| ids.iter().any(|x| x == id)).unwrap();
    let across =
        removed(&three).iter().filter(|(id, _, kept)| file_of(id) % 3 != file_of(kept.as_ref().unwrap()) % 3).count();
    assert!(across > 10, "{across} removals whose kept document belongs to another task");
}

#[test]
fn tasks_run_stage_by_stage_and_refuse_to_go_ahead_early() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = split_inputs(tmp.path(), 2);
    let out = tmp.path().join("out");
    let j = job(inputs, &out, DedupConfig::recommended(), 2);
    signatures(&j, 0, &|_| {}).unwrap();
    let err = pairs(&j).unwrap_err().to_string();
    assert!(err.contains("task 1 of 2 is not finished"), "{err}");
    signatures(&j, 1, &|_| {}).unwrap();
    pairs(&j).unwrap();
    clusters(&j, &|_| {}).unwrap();
    apply(&j, 1, &|_| {}).unwrap();
    let Parts::Missing(missing) = finish(&j).unwrap() else { panic!("input 0 is not applied yet") };
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(!out.join("stats.json").exists());
    apply(&j, 0, &|_| {}).unwrap();
    let Parts::Complete((stage, stats)) = finish(&j).unwrap() else { panic!("every part is applied") };
    assert_eq!(stage.documents_read, stats.documents);
    let read = stage.steps.iter().find(|s| s.step == "read").unwrap();
    assert_eq!((read.documents_in, read.documents_out), (stats.documents, stats.documents), "the read step counts");
}

#[test]
fn corrupted_intermediate_files_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let j = job(vec![dupes()], &out, DedupConfig::recommended(), 1);
    signatures(&j, 0, &|_| {}).unwrap();
    let band = out.join("work/signatures/task-00000/band-003.bin");
    let mut bytes = std::fs::read(&band).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&band, bytes).unwrap();
    let err = pairs(&j).unwrap_err().to_string();
    assert!(err.contains("band-003.bin") && err.contains("corrupted"), "{err}");

    // A damaged ids file is caught when clustering reads it (pairs must have run first, on a
    // clean run).
    let clean = tmp.path().join("clean");
    let j = job(vec![dupes()], &clean, DedupConfig::recommended(), 1);
    signatures(&j, 0, &|_| {}).unwrap();
    pairs(&j).unwrap();
    let ids = clean.join("work/signatures/task-00000/ids.txt");
    let mut text = std::fs::read(&ids).unwrap();
    text[0] ^= 1;
    std::fs::write(&ids, text).unwrap();
    let err = clusters(&j, &|_| {}).unwrap_err().to_string();
    assert!(err.contains("ids.txt") && err.contains("corrupted"), "{err}");
}

#[test]
fn quality_keeper_keeps_the_best_copy() {
    // Three exact copies with qualities 0.2, 0.9, 0.5: the 0.9 one stays.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("q.parquet");
    let text = "the same page about gardening in the spring with many words in it";
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("text", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("quality", arrow::datatypes::DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::StringArray::from(vec!["a", "b", "c", "d"])) as ArrayRef,
            Arc::new(arrow::array::StringArray::from(vec![text, text, text, "something else entirely"])),
            Arc::new(arrow::array::Float64Array::from(vec![0.2, 0.9, 0.5, 0.1])),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let mut config = DedupConfig::recommended();
    config.keep = Keeper::Quality;
    let out = tmp.path().join("out");
    run(&job(vec![path.clone()], &out, config, 1));
    let mut got = removed(&out);
    got.sort();
    assert_eq!(got, [("a".into(), "exact".into(), Some("b".into())), ("c".into(), "exact".into(), Some("b".into()))]);
    let first = tmp.path().join("first");
    run(&job(vec![path], &first, DedupConfig::recommended(), 1));
    assert!(removed(&first).iter().all(|(_, _, kept)| kept.as_deref() == Some("a")));
}

/// A distinct lowercase word per index (digits would all normalise to `0`).
fn word(mut i: usize) -> String {
    let mut w = String::new();
    loop {
        w.push((b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return w + "x";
        }
    }
}

#[test]
fn a_chain_of_near_copies_removes_only_what_is_like_its_keeper() {
    // A, B, C: 80 words each, shifted by 20. Word 3-grams: J(A,B) = J(B,C) = 58/98 ≈ 0.59,
    // J(A,C) = 38/118 ≈ 0.32. Rows 2 make every pair a candidate.
    let tmp = tempfile::tempdir().unwrap();
    let text = |start: usize| (start..start + 80).map(word).collect::<Vec<_>>().join(" ");
    let input = tmp.path().join("chain.jsonl");
    let lines: Vec<String> = ["a", "b", "c"]
        .iter()
        .zip([0, 20, 40])
        .map(|(id, s)| format!(r#"{{"id":"{id}","text":"{}"}}"#, text(s)))
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let mut config = DedupConfig::recommended();
    config.near.as_mut().unwrap().minhash.rows = 2;

    let out = tmp.path().join("verified");
    let verified = job(vec![input.clone()], &out, config.clone(), 1);
    let stats = run(&verified);
    assert_eq!(removed(&out), [("b".to_string(), "near".to_string(), Some("a".to_string()))]);
    assert_eq!((stats.kept_unlike_keeper, stats.clusters), (1, 1));
    let part = std::fs::read_dir(out.join("removed")).unwrap().next().unwrap().unwrap().path();
    let similarity = batches(&part)[0]
        .column_by_name("similarity")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float32Type>()
        .value(0);
    assert!((similarity - 58.0 / 98.0).abs() < 1e-6, "exact, not estimated: {similarity}");
    // The review page shows the removal beside its keeper, with the similarity.
    let html = explain(&verified, 10).unwrap();
    assert!(html.contains("1 removed for a") && html.contains(&format!("{similarity:.3}")), "{html}");
    assert!(html.contains(&text(0)[..60]) && html.contains(&text(20)[..60]) && !html.contains("<b>c</b>"));

    // Without verification the cluster closes transitively, and C goes for A too.
    config.near.as_mut().unwrap().verify_threshold = None;
    let out = tmp.path().join("transitive");
    run(&job(vec![input], &out, config, 1));
    let kept_for: Vec<_> = removed(&out).into_iter().map(|(id, _, kept)| (id, kept.unwrap())).collect();
    assert_eq!(kept_for, [("b".to_string(), "a".to_string()), ("c".to_string(), "a".to_string())]);
}

#[test]
fn problems_that_differ_only_in_their_numbers_stay_when_numbers_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let problem = |a: u32, b: u32, m: u32, choices: [u32; 4]| {
        format!(
            "Find the remainder when {a} to the power {b} is divided by {m}. Show each step of the work and \
             give the final answer. Choices: A. {} B. {} C. {} D. {}",
            choices[0], choices[1], choices[2], choices[3]
        )
    };
    let input = tmp.path().join("math.jsonl");
    let docs = [("p1", problem(3, 65, 7, [12, 4, 69, 32])), ("p2", problem(93, 46, 11, [5, 9, 1, 3]))];
    let lines: Vec<String> = docs.iter().map(|(id, text)| format!(r#"{{"id":"{id}","text":"{text}"}}"#)).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();

    let zero = tmp.path().join("zero");
    run(&job(vec![input.clone()], &zero, DedupConfig::recommended(), 1));
    assert_eq!(removed(&zero), [("p2".to_string(), "near".to_string(), Some("p1".to_string()))]);

    let settings: DedupSettings = toml::from_str("numbers = \"keep\"").unwrap();
    let keep = tmp.path().join("keep");
    run(&job(vec![input], &keep, settings.resolve().unwrap(), 1));
    assert!(removed(&keep).is_empty());
}

#[test]
fn a_near_removal_needs_the_exact_similarity_to_reach_the_threshold() {
    // Pairs of 60-word documents, the second a copy with 4 to 10 words replaced: true Jaccard of
    // word 3-grams from about 0.35 to 0.65. One row per band makes every pair a candidate (P = 1 − (1 − J)^40); its 40
    // hashes estimate J to ±0.08, so deciding on the estimate would remove some pairs below 0.5
    // and keep some above.
    let tmp = tempfile::tempdir().unwrap();
    let shingles =
        |words: &[String]| -> std::collections::HashSet<String> { words.windows(3).map(|w| w.join(" ")).collect() };
    let mut state = 7u64;
    let (mut lines, mut expected, mut below) = (Vec::new(), Vec::new(), 0);
    for k in 0..60usize {
        let a: Vec<String> = (k * 1000..k * 1000 + 60).map(word).collect();
        let mut b = a.clone();
        for r in 0..4 + k % 7 {
            let at = (util::rng::splitmix64(&mut state) % 60) as usize;
            b[at] = word(k * 1000 + 500 + r);
        }
        let (sa, sb) = (shingles(&a), shingles(&b));
        let j = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
        lines.push(format!(r#"{{"id":"a{k}","text":"{}"}}"#, a.join(" ")));
        lines.push(format!(r#"{{"id":"b{k}","text":"{}"}}"#, b.join(" ")));
        if j >= 0.5 {
            expected.push((format!("b{k}"), j));
        } else {
            below += 1;
        }
    }
    assert!(below >= 10 && expected.len() >= 10, "{below} below, {} above", expected.len());
    let input = tmp.path().join("pairs.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let mut config = DedupConfig::recommended();
    let near = config.near.as_mut().unwrap();
    (near.minhash.bands, near.minhash.rows) = (40, 1);
    let out = tmp.path().join("out");
    let stats = run(&job(vec![input], &out, config, 1));
    assert_eq!(stats.verified_pairs, expected.len() as u64, "distinct pairs at J >= 0.5");
    assert!(!out.join("work/clusters/shingles.bin").exists(), "the sets are removed after clustering");

    let part = std::fs::read_dir(out.join("removed")).unwrap().next().unwrap().unwrap().path();
    let batch = &batches(&part)[0];
    let similarity = batch.column_by_name("similarity").unwrap().as_primitive::<arrow::datatypes::Float32Type>();
    let got: Vec<(String, f64)> =
        strings(batch, "id").into_iter().enumerate().map(|(i, id)| (id.unwrap(), similarity.value(i) as f64)).collect();
    let key = |v: &Vec<(String, f64)>| v.iter().map(|(id, _)| id.clone()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(key(&got), key(&expected), "removed exactly the pairs at J >= 0.5");
    for ((id, got), (_, want)) in got.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-6, "{id}: similarity {got}, exact {want}");
    }
}
