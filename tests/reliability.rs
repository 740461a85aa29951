//! End-to-end regressions of what a hostile user broke: runs racing into one folder, debris of a
//! killed run, config paths spelled differently, corrupted or edited outputs, settings that
//! cannot work. Each test names the problem it guards against.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ok, root};

fn midtrain_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_midtrain")).current_dir(cwd).args(args).arg("-q").output().expect("run midtrain")
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "midtrain succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

/// A small project laid out as a user would: `cfg/prepare.toml` naming `../data/*` and writing to
/// `out/` (relative to the config), over the fixture math dump.
fn project(dir: &Path, extra: &str) -> PathBuf {
    fs::create_dir_all(dir.join("cfg")).unwrap();
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::copy(root().join("fixtures/dumps/math.parquet"), dir.join("data/math.parquet")).unwrap();
    fs::copy(root().join("fixtures/tokenizer.json"), dir.join("data/tokenizer.json")).unwrap();
    let config = format!(
        r#"output = "out"
batch_size = 64
[[domain]]
name = "math"
inputs = ["../data/math.parquet"]
[[domain.filters]]
type = "length"
min_words = 10
[tokenizer]
path = "../data/tokenizer.json"
eos = "<|endoftext|>"
formats = ["megatron", "datatrove"]
{extra}"#
    );
    let path = dir.join("cfg/prepare.toml");
    fs::write(&path, config).unwrap();
    path
}

/// Issue 19 item 9: resume identity is the resolved config, not how its path was typed.
#[test]
fn a_config_reached_by_any_spelling_is_the_same_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = project(dir, "");
    ok(midtrain_in(dir, &["prepare", "cfg/prepare.toml"]));
    let first = common::all_files(&dir.join("cfg/out"));
    for (cwd, spelled) in [
        (dir.to_path_buf(), "./cfg/prepare.toml".to_string()),
        (dir.to_path_buf(), config.to_string_lossy().into_owned()),
        (dir.join("cfg"), "prepare.toml".to_string()),
        (dir.join("data"), "../cfg/./prepare.toml".to_string()),
    ] {
        let out = ok(midtrain_in(&cwd, &["prepare", &spelled]));
        assert!(out.contains("already prepared"), "{spelled} from {}: {out}", cwd.display());
    }
    assert_eq!(common::all_files(&dir.join("cfg/out")), first, "nothing was redone or rewritten");
}

/// Issue 18: a domain's resume identity holds only what changes its bytes, so editing one
/// domain leaves every other finished domain finished.
#[test]
fn editing_one_domain_leaves_the_other_domains_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let second = |min_words: u32| {
        format!(
            "[[domain]]\nname = \"math2\"\ninputs = [\"../data/math.parquet\"]\n[[domain.filters]]\ntype = \"length\"\nmin_words = {min_words}\n"
        )
    };
    project(dir, "");
    let config = dir.join("cfg/prepare.toml");
    let base = fs::read_to_string(&config).unwrap();
    // The second domain goes before [tokenizer] so it is a [[domain]] table of the root.
    let with = |extra: String| base.replace("[tokenizer]", &format!("{extra}[tokenizer]"));
    fs::write(&config, with(second(10))).unwrap();
    ok(midtrain_in(dir, &["prepare", "cfg/prepare.toml"]));
    let math = common::all_files(&dir.join("cfg/out/math"));
    fs::write(&config, with(second(30))).unwrap();
    let refused = fails(midtrain_in(dir, &["prepare", "cfg/prepare.toml"]));
    assert!(refused.contains("math2") && refused.contains("--force"), "the edited domain must be redone: {refused}");
    ok(midtrain_in(dir, &["prepare", "cfg/prepare.toml", "--domain", "math2", "--force"]));
    let again = ok(midtrain_in(dir, &["prepare", "cfg/prepare.toml"]));
    assert!(again.contains("== math: already prepared") && again.contains("== math2: already prepared"), "{again}");
    assert_eq!(common::all_files(&dir.join("cfg/out/math")), math, "the untouched domain was not rewritten");
}

/// Issue 19 items 3 and 8: a second run into a held folder is refused naming the holder; what a
/// killed run left half-written never blocks a rerun.
#[test]
fn a_held_folder_is_refused_and_stale_temporaries_never_block() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    project(dir, "");
    let out = dir.join("cfg/out");
    let lock = util::fsutil::FolderLock::exclusive(&out).unwrap();
    let err = fails(midtrain_in(dir, &["prepare", "cfg/prepare.toml"]));
    assert!(err.contains("another midtrain run") && err.contains(&format!("pid {}", std::process::id())), "{err}");
    assert!(!out.join("math").exists(), "the refused run wrote nothing");
    drop(lock);

    // A kill in the first milliseconds of each stage leaves its run.json temporary.
    for stale in ["math/filtered/run.json.tmp", "math/parts/run.json.tmp", "math/parts/run.json.77-0.tmp"] {
        fs::create_dir_all(out.join(stale).parent().unwrap()).unwrap();
        fs::write(out.join(stale), b"{\"stage\":").unwrap();
    }
    ok(midtrain_in(dir, &["prepare", "cfg/prepare.toml"]));
    let leftovers: Vec<_> =
        common::all_files(&out).into_keys().filter(|p| p.to_string_lossy().ends_with(".tmp")).collect();
    let expected: Vec<PathBuf> = ["math/filtered/run.json.tmp", "math/parts/run.json.tmp"].map(PathBuf::from).to_vec();
    assert_eq!(leftovers, expected, "midtrain's own stale temporaries are cleared, other names only ignored");

    // The single-stage commands, with and without --force.
    let data = dir.join("data/math.parquet");
    for force in [false, true] {
        let filtered = dir.join(format!("filtered-{force}"));
        fs::create_dir_all(&filtered).unwrap();
        fs::write(filtered.join("run.json.tmp"), b"{").unwrap();
        let mut args = vec!["filter", data.to_str().unwrap(), "--filters", "gopher_quality", "--out"];
        args.push(filtered.to_str().unwrap());
        if force {
            args.push("--force");
        }
        ok(midtrain_in(dir, &args));
        let tokenized = dir.join(format!("tokenized-{force}"));
        fs::create_dir_all(tokenized.join("parts")).unwrap();
        fs::write(tokenized.join("parts/run.json.tmp"), b"{").unwrap();
        let tokenizer = dir.join("data/tokenizer.json");
        let mut args = vec!["tokenize", data.to_str().unwrap(), "--tokenizer", tokenizer.to_str().unwrap(), "--out"];
        args.push(tokenized.to_str().unwrap());
        if force {
            args.push("--force");
        }
        ok(midtrain_in(dir, &args));
        assert!(tokenized.join("manifest.json").is_file());
    }
}

/// Issue 19 "weak validation": everything a config names is checked before the first stage.
#[test]
fn config_mistakes_are_found_before_any_stage_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = project(dir, "");
    let text = fs::read_to_string(&config).unwrap();
    let cases = [
        (text.replace("../data/tokenizer.json", "../data/no-such-tokenizer.json"), "no-such-tokenizer.json"),
        (text.replace("min_words = 10", "min_chars = 500\nmax_chars = 100"), "min_chars 500 is above max_chars 100"),
        (
            text.replace(
                "type = \"length\"\nmin_words = 10",
                "type = \"quality\"\nmodel = \"../data/q.bin\"\nthreshold = 5.0",
            ),
            "not a probability",
        ),
        (format!("{text}\n[dedup]\ndomains = []\n"), "dedup.domains is empty"),
    ];
    for (bad, needle) in cases {
        fs::write(&config, bad).unwrap();
        let err = fails(midtrain_in(dir, &["prepare", "cfg/prepare.toml"]));
        assert!(err.contains(needle), "expected {needle:?}: {err}");
        assert!(!dir.join("cfg/out/math").exists(), "nothing ran before the mistake was found ({needle})");
    }
}

/// Issue 19 "weak validation": every `prepare --json` line says which domain it belongs to, a
/// finished dataset too.
#[test]
fn prepare_json_lines_name_their_domain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    project(dir, "");
    for _ in 0..2 {
        let out = ok(midtrain_in(dir, &["prepare", "cfg/prepare.toml", "--json"]));
        assert!(!out.trim().is_empty());
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(v["domain"], "math", "{line}");
        }
    }
}

/// Issue 19 items 4 and 6: `verify` finds truncated sidecars, corrupted datatrove files, edited
/// manifests and duplicate shards; `mix build` refuses to replace a mixture and, like `audit`
/// and `train`, refuses a shard whose checksum changed.
#[test]
fn corrupted_or_edited_outputs_are_found_and_mixtures_are_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    project(dir, "");
    ok(midtrain_in(dir, &["prepare", "cfg/prepare.toml"]));
    let dataset = dir.join("cfg/out/math");
    ok(midtrain_in(dir, &["verify", dataset.to_str().unwrap()]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dataset.join("manifest.json")).unwrap()).unwrap();
    let prefix = manifest["shards"][0]["prefix"].as_str().unwrap().to_string();

    let damage = |name: &str, what: &dyn Fn(&mut Vec<u8>)| -> (PathBuf, String) {
        let copy = dir.join(format!("copy-{name}"));
        fs::create_dir_all(&copy).unwrap();
        for (path, bytes) in common::all_files(&dataset) {
            if path.components().count() == 1 {
                fs::write(copy.join(&path), bytes).unwrap();
            }
        }
        let target = copy.join(name.replace("PREFIX", &prefix));
        let mut bytes = fs::read(&target).unwrap();
        what(&mut bytes);
        fs::write(&target, bytes).unwrap();
        let out = midtrain_in(dir, &["verify", copy.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", String::from_utf8_lossy(&out.stdout));
        (copy, String::from_utf8(out.stdout).unwrap())
    };
    let (_, report) = damage("PREFIX.docs.parquet", &|b| b.truncate(b.len() / 2));
    assert!(report.contains("MISMATCH") && report.contains(".docs.parquet"), "{report}");
    let (_, report) = damage("PREFIX.ds", &|b| b[10] ^= 0x5A);
    assert!(report.contains("MISMATCH") && report.contains(".ds"), "{report}");
    let edit = |field: &'static str, value: serde_json::Value| {
        move |b: &mut Vec<u8>| {
            let mut m: serde_json::Value = serde_json::from_slice(b).unwrap();
            m[field] = value.clone();
            *b = serde_json::to_vec_pretty(&m).unwrap();
        }
    };
    let (_, report) = damage("manifest.json", &edit("tokens", serde_json::json!(1)));
    assert!(report.contains("totals"), "{report}");
    let twice = serde_json::json!([manifest["shards"][0], manifest["shards"][0]]);
    let (_, report) = damage("manifest.json", &edit("shards", twice));
    assert!(report.contains("listed twice"), "{report}");

    // Mixtures: a recipe over the dataset.
    let recipe = dir.join("recipe.toml");
    let write_recipe = |dataset: &Path| {
        let text = format!(
            "name = \"m\"\nbudget_tokens = 20000\nseed = 3\nmin_overlap = 0.0\n[pretraining]\nmath = 1.0\n\
             [[domain]]\nname = \"math\"\ndatasets = [{:?}]\nweight = 1.0\nmax_epochs = 4\n",
            dataset.to_str().unwrap()
        );
        fs::write(&recipe, text).unwrap();
    };
    write_recipe(&dataset);
    let mixture = dir.join("mixture");
    let build = |extra: &[&str]| {
        let mut args = vec!["mix", "build", recipe.to_str().unwrap(), "--out", mixture.to_str().unwrap()];
        args.extend(extra);
        midtrain_in(dir, &args)
    };
    ok(build(&[]));
    let order = fs::read(mixture.join("order.bin")).unwrap();
    let err = fails(build(&[]));
    assert!(err.contains("holds a mixture already") && err.contains("--force"), "{err}");
    assert_eq!(fs::read(mixture.join("order.bin")).unwrap(), order);
    ok(build(&["--force"]));

    let (corrupt, _) = damage("PREFIX.bin", &|b| b[4] ^= 1);
    write_recipe(&corrupt);
    let err = fails(build(&["--force"]));
    assert!(err.contains(&format!("{prefix}.bin")) && err.contains("checksum"), "{err}");
    let err = fails(midtrain_in(dir, &["audit", corrupt.to_str().unwrap()]));
    assert!(err.contains(&format!("{prefix}.bin")) && err.contains("checksum"), "{err}");
}

/// Issue 19 "weak validation": with `--on-error skip` an unreadable file counts what was lost:
/// every row its footer lists, or, when even the footer is gone, a loss marked unknown.
#[test]
fn skipped_unreadable_files_count_what_was_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let math = root().join("fixtures/dumps/math.parquet");
    let rows = common::strings(&math, "text").len() as u64;
    let bytes = fs::read(&math).unwrap();
    let truncated = dir.join("truncated.parquet");
    fs::write(&truncated, &bytes[..bytes.len() - 20]).unwrap();
    let stats = |out: &Path| -> serde_json::Value {
        serde_json::from_slice(&fs::read(out.join("stats.json")).unwrap()).unwrap()
    };
    let filter = |input: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec!["filter", input.to_str().unwrap(), "--filters", "gopher_quality", "--on-error", "skip"];
        args.extend(extra);
        args.extend(["--out", out.to_str().unwrap()]);
        ok(midtrain_in(dir, &args));
    };
    let out = dir.join("a");
    filter(&truncated, &out, &[]);
    let s = stats(&out);
    assert_eq!(s["documents_read"], 1);
    let unknown = s["rows_lost_unknown"].as_array().unwrap();
    assert!(unknown.len() == 1 && unknown[0].as_str().unwrap().contains("truncated.parquet"), "{unknown:?}");
    let out = dir.join("b");
    filter(&math, &out, &["--text-column", "no_such_column"]);
    let s = stats(&out);
    assert_eq!((s["documents_read"].as_u64(), s["documents_kept"].as_u64()), (Some(rows), Some(0)));
    assert!(s.get("rows_lost_unknown").is_none());
}
