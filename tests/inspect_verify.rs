//! End-to-end tests of `midtrain inspect` and `midtrain verify` on the committed fixture shards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn midtrain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_midtrain")).args(args).output().expect("run midtrain")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "midtrain failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn parquet_texts(path: &Path, column: &str) -> Vec<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let mut texts = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name(column).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        texts.extend((0..col.len()).map(|i| col.value(i).to_string()));
    }
    texts
}

/// Copy a fixture dataset folder so a test may damage it.
fn copy_dataset(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixtures().join("shards").join(name)).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

#[test]
fn inspect_json_reports_counts_dtype_and_lengths() {
    let dir = fixtures().join("shards/web");
    let summary: serde_json::Value =
        serde_json::from_str(&stdout(&midtrain(&["inspect", dir.to_str().unwrap(), "--json"]))).unwrap();
    assert_eq!(summary["kind"], "dataset");
    assert_eq!(summary["documents"], 200);
    assert_eq!(summary["dtype"], "uint16");
    assert_eq!(summary["shards"], 2);
    assert_eq!(summary["domain"], "web");
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(summary["tokens"], manifest["tokens"]);
    let lengths = &summary["document_length"];
    assert_eq!(lengths["count"], 200);
    assert!(lengths["min"].as_u64() <= lengths["p50"].as_u64() && lengths["p50"].as_u64() <= lengths["max"].as_u64());

    // A single shard prefix, and the same shard named by its .idx file.
    let shard = dir.join("web_00001");
    let one: serde_json::Value =
        serde_json::from_str(&stdout(&midtrain(&["inspect", shard.to_str().unwrap(), "--json"]))).unwrap();
    assert_eq!((one["kind"].as_str(), one["documents"].as_u64()), (Some("shard"), Some(100)));
    let idx = dir.join("web_00001.idx");
    let same: serde_json::Value =
        serde_json::from_str(&stdout(&midtrain(&["inspect", idx.to_str().unwrap(), "--json"]))).unwrap();
    assert_eq!(same["tokens"], one["tokens"]);
}

#[test]
fn int32_shard_is_read_with_its_dtype() {
    let prefix = fixtures().join("shards/synthetic/int32_00000");
    let summary: serde_json::Value =
        serde_json::from_str(&stdout(&midtrain(&["inspect", prefix.to_str().unwrap(), "--json"]))).unwrap();
    assert_eq!((summary["dtype"].as_str(), summary["documents"].as_u64()), (Some("int32"), Some(50)));
    let dump = stdout(&midtrain(&["inspect", prefix.to_str().unwrap(), "--dump", "50"]));
    let ids: Vec<u64> = dump
        .lines()
        .flat_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["tokens"].as_array().unwrap().clone())
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, summary["tokens"].as_u64().unwrap());
    assert!(ids.iter().any(|&t| t >= 65_536), "ids above the uint16 range survive");
}

#[test]
fn dump_gives_the_tokens_of_the_source_text_with_eos() {
    let dir = fixtures().join("shards/web");
    let tokenizer = fixtures().join("tokenizer.json");
    let out = stdout(&midtrain(&[
        "inspect",
        dir.to_str().unwrap(),
        "--dump",
        "5",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
    ]));
    let texts = parquet_texts(&fixtures().join("dumps/web.parquet"), "text");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["doc"], i);
        let tokens = line["tokens"].as_array().unwrap();
        assert_eq!(tokens.last().unwrap(), 0, "EOS (id 0) ends every document");
        assert_eq!(line["text"].as_str().unwrap(), format!("{}<|endoftext|>", texts[i]));
    }
    // Without a tokenizer the lines carry only doc and tokens.
    let plain = stdout(&midtrain(&["inspect", dir.to_str().unwrap(), "--dump", "1"]));
    let first: serde_json::Value = serde_json::from_str(plain.trim()).unwrap();
    assert_eq!(first.as_object().unwrap().len(), 2);
    assert_eq!(first["tokens"], lines[0]["tokens"]);
}

#[test]
fn verify_passes_then_detects_a_changed_byte() {
    let tmp = copy_dataset("web");
    let path = tmp.path().to_str().unwrap();
    let ok = midtrain(&["verify", path]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));

    let bin = tmp.path().join("web_00001.bin");
    let mut bytes = fs::read(&bin).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&bin, bytes).unwrap();
    let bad = midtrain(&["verify", path]);
    assert_eq!(bad.status.code(), Some(1));
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(report.contains("MISMATCH") && report.contains("web_00001.bin"), "{report}");
    let mismatches: Vec<&str> = report.lines().filter(|l| l.starts_with("MISMATCH")).collect();
    assert_eq!(mismatches.len(), 1, "only the damaged file is flagged: {report}");

    // One shard can be verified alone against its folder's manifest.
    let single = midtrain(&["verify", tmp.path().join("web_00000").to_str().unwrap()]);
    assert!(single.status.success());
}

#[test]
fn truncated_index_is_rejected_naming_the_file() {
    let tmp = copy_dataset("math");
    let idx = tmp.path().join("math_00000.idx");
    let bytes = fs::read(&idx).unwrap();
    fs::write(&idx, &bytes[..bytes.len() - 5]).unwrap();
    let out = midtrain(&["inspect", tmp.path().join("math_00000").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "an error, not a finding");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("math_00000.idx") && err.contains("truncated"), "{err}");
}

#[test]
fn folder_without_manifest_is_reported_unfinished() {
    let tmp = copy_dataset("math");
    fs::remove_file(tmp.path().join("manifest.json")).unwrap();
    for cmd in ["inspect", "verify"] {
        let out = midtrain(&[cmd, tmp.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("unfinished"));
    }
}

#[test]
fn a_path_that_does_not_exist_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dataset");
    let out = midtrain(&["verify", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-dataset") && err.contains("neither a dataset folder nor a shard"), "{err}");
}

#[test]
fn an_error_names_its_cause_once() {
    // The cause is in the message and also its `source()`: printed once, not twice.
    let tmp = tempfile::tempdir().unwrap();
    let out = midtrain(&["prepare", tmp.path().join("missing.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    // Every subcommand `midtrain --help` lists, so a new one cannot be forgotten.
    let top = stdout(&midtrain(&["--help"]));
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 15, "{commands:?}");
    for cmd in commands {
        let help = stdout(&midtrain(&[cmd, "--help"]));
        assert!(help.contains("Example") && help.contains(&format!("midtrain {cmd} ")), "{cmd}: {help}");
    }
    for (cmd, sub) in [("quality", "train"), ("mix", "plan"), ("mix", "build")] {
        let help = stdout(&midtrain(&[cmd, sub, "--help"]));
        assert!(help.contains("Example") && help.contains(&format!("midtrain {cmd} {sub}")), "{cmd} {sub}: {help}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_output_cleanly() {
    // `midtrain inspect … | head -0`: stdout is a pipe nobody reads, so the first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_midtrain"))
        .args(["inspect", fixtures().join("shards/math").to_str().unwrap()])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{:?}: {err}", out.status);
}
