//! Helpers shared by the end-to-end tests.
#![allow(dead_code)] // each test crate uses a different subset

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::{Array, AsArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The checkout's root (where `fixtures/` lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary run quietly (`-q`) with `args` and extra environment variables.
pub fn midtrain_quiet(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_midtrain"))
        .args(args)
        .arg("-q")
        .envs(env.iter().copied())
        .output()
        .expect("run midtrain")
}

/// The stdout of a run that must have succeeded (its stderr in the failure message).
pub fn ok(out: Output) -> String {
    assert!(out.status.success(), "midtrain failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir` (recursively), by relative path, with its bytes; the run locks
/// (`.midtrain.lock*`, which name the process that held them) are not outputs and are left out.
pub fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with(".midtrain.lock") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The record batches of one parquet file.
pub fn batches(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// A string column of one parquet file, or of every part file of a folder in name order.
pub fn strings(path: &Path, column: &str) -> Vec<String> {
    let files = if path.is_dir() {
        let mut f: Vec<_> = fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        f.sort();
        f
    } else {
        vec![path.to_path_buf()]
    };
    let mut values = Vec::new();
    for f in files {
        for b in batches(&f) {
            let c = b.column_by_name(column).unwrap().as_string::<i32>().clone();
            values.extend((0..c.len()).map(|i| c.value(i).to_string()));
        }
    }
    values
}

/// `fixtures/prepare.toml` writing to `output`, saved as `dir/NAME` with its relative paths made
/// absolute, so that tests never write into the checkout.
pub fn fixture_prepare_config(dir: &Path, name: &str, output: &Path) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let at = |rel: &str| format!("\"{}/{rel}", fixtures.display());
    let text = fs::read_to_string(fixtures.join("prepare.toml"))
        .unwrap()
        .replace("output = \"../out/prepared\"", &format!("output = {:?}", output.to_str().unwrap()))
        .replace("\"dumps/", &at("dumps/"))
        .replace("\"models/", &at("models/"))
        .replace("\"tokenizer.json\"", &format!("{}\"", at("tokenizer.json")));
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}
