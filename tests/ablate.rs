//! End-to-end test of `midtrain ablate` on the committed fixture datasets and tasks: two arms of
//! a few steps from a fresh tiny model.

mod common;

use std::path::Path;

use common::{midtrain_quiet as midtrain, ok, root};

const TWO_ARMS: &str = "[[arm]]\nname = \"baseline\"\n\
     [[arm]]\nname = \"more-math\"\nweights = { math = 0.6, web = 0.4 }\n[arm.train.eval]\nevery = 1\n";

fn write_plan(dir: &Path, arms: &str) -> std::path::PathBuf {
    let r = root();
    let recipe = format!(
        "name = \"ablate-test\"\nbudget_tokens = 20000\nseed = 3\nmin_overlap = 0.0\n[pretraining]\nweb = 1.0\n\
         [[domain]]\nname = \"web\"\ndatasets = [\"{web}\"]\nweight = 0.8\nmax_epochs = 4\n\
         [[domain]]\nname = \"math\"\ndatasets = [\"{math}\"]\nweight = 0.2\nmax_epochs = 4\n",
        web = r.join("fixtures/shards/web").display(),
        math = r.join("fixtures/shards/math").display(),
    );
    std::fs::write(dir.join("recipe.toml"), recipe).unwrap();
    let train = format!(
        "seed = 1\ncheckpoint_every = 2\n[model]\nconfig = \"{model}\"\nfinal_lr = 3e-3\n[data]\npath = \"unused\"\n\
         heldout_docs = 2\n[batch]\nmicro_batch_size = 2\nbatch_tokens = 256\n[[stage]]\nname = \"anneal\"\n\
         tokens = 768\nseq_len = 128\nschedule = {{ warmup_steps = 1, decay = {{ style = \"linear\" }} }}\n",
        model = r.join("trainer/configs/tiny-llama.json").display()
    );
    std::fs::write(dir.join("train.toml"), train).unwrap();
    let plan = format!(
        "train = \"train.toml\"\nrecipe = \"recipe.toml\"\ntokenizer = \"{tok}\"\nlimit = 4\nbootstrap = 200\n\
         tasks = [\"{mc}\", \"{ppl}\"]\n{arms}",
        tok = r.join("fixtures/tokenizer.json").display(),
        mc = r.join("fixtures/tasks/math_mc.toml").display(),
        ppl = r.join("fixtures/tasks/heldout_web.jsonl").display(),
    );
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan).unwrap();
    path
}

#[test]
fn ablate_runs_both_arms_reports_them_and_skips_finished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), TWO_ARMS);
    let out = dir.path().join("out");
    let args = ["ablate", plan.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
    let report: serde_json::Value = serde_json::from_str(&ok(midtrain(&args, &[]))).unwrap();
    let arms = report["arms"].as_array().unwrap();
    assert_eq!(arms.iter().map(|a| a["name"].as_str().unwrap()).collect::<Vec<_>>(), ["baseline", "more-math"]);
    assert_eq!(report["baseline"], "baseline");
    let mut ranks: Vec<u64> = arms.iter().map(|a| a["rank"].as_u64().unwrap()).collect();
    ranks.sort();
    assert_eq!(ranks, [1, 2]);
    for arm in arms {
        assert_eq!(arm["skipped"], false);
        let mc = &arm["tasks"]["math_mc"];
        assert_eq!((mc["metric"].as_str().unwrap(), mc["n"].as_u64().unwrap()), ("acc", 4));
        let s = &mc["score"];
        assert!(s["low"].as_f64().unwrap() <= s["value"].as_f64().unwrap());
        assert!(s["value"].as_f64().unwrap() <= s["high"].as_f64().unwrap());
        assert_eq!(arm["tasks"]["heldout_web"]["metric"], "loss");
        // Every other score of a task has its interval, and equals what `eval` reports for it.
        let eval: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("arms/{}/eval.json", arm["name"].as_str().unwrap()))).unwrap(),
        )
        .unwrap();
        for (task, metrics) in [("math_mc", &["acc_norm"][..]), ("heldout_web", &["perplexity", "bits_per_byte"][..])] {
            let more = arm["tasks"][task]["more"].as_array().unwrap();
            let names: Vec<&str> = more.iter().map(|m| m["metric"].as_str().unwrap()).collect();
            assert_eq!(names, metrics, "{task}");
            for m in more {
                let (s, metric) = (&m["score"], m["metric"].as_str().unwrap());
                let (low, value, high) =
                    (s["low"].as_f64().unwrap(), s["value"].as_f64().unwrap(), s["high"].as_f64().unwrap());
                assert!(low <= value && value <= high, "{task} {metric}: {s}");
                let reported = eval["scores"][task][metric].as_f64().unwrap();
                assert!(
                    (value - reported).abs() < 1e-9 * reported.abs().max(1.0),
                    "{task} {metric}: {value} vs {reported}"
                );
                assert_eq!(m["vs_baseline"].is_null(), arm["name"] == "baseline", "{task} {metric}");
            }
        }
    }
    // A difference is the arm's score minus the baseline's, metric by metric.
    for task in ["math_mc", "heldout_web"] {
        let (base, other) = (&arms[0]["tasks"][task]["more"], &arms[1]["tasks"][task]["more"]);
        for (b, o) in base.as_array().unwrap().iter().zip(other.as_array().unwrap()) {
            assert_eq!(b["metric"], o["metric"]);
            let value = |m: &serde_json::Value| m["score"]["value"].as_f64().unwrap();
            let diff = o["vs_baseline"]["value"].as_f64().unwrap();
            assert!((diff - (value(o) - value(b))).abs() < 1e-9, "{task} {}: {diff}", o["metric"]);
        }
    }
    assert!(arms[0]["tasks"]["math_mc"]["vs_baseline"].is_null(), "the baseline has no difference to itself");
    assert!(arms[1]["tasks"]["heldout_web"]["vs_baseline"]["value"].is_f64());
    // The realised mixes differ as the weights say.
    let math_share = |a: &serde_json::Value| {
        a["mix"].as_array().unwrap().iter().find(|d| d[0] == "math").unwrap()[1].as_f64().unwrap()
    };
    assert!(math_share(&arms[1]) > math_share(&arms[0]) + 0.2, "{} vs {}", math_share(&arms[1]), math_share(&arms[0]));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("baseline") && html.contains("more-math") && html.contains("<polyline"));
    assert!(out.join("report.json").is_file());
    // The second arm's train table was merged into its config.
    let snapshot = |arm: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(format!("arms/{arm}/run/train.json"))).unwrap()).unwrap()
    };
    assert_eq!(
        (snapshot("baseline")["eval"]["every"].as_u64(), snapshot("more-math")["eval"]["every"].as_u64()),
        (Some(0), Some(1))
    );

    // A rerun skips both arms (their eval.json stays as it was) and reports the same.
    let eval = out.join("arms/more-math/eval.json");
    let before = std::fs::metadata(&eval).unwrap().modified().unwrap();
    let again: serde_json::Value = serde_json::from_str(&ok(midtrain(&args, &[]))).unwrap();
    assert!(again["arms"].as_array().unwrap().iter().all(|a| a["skipped"] == true));
    assert_eq!(std::fs::metadata(&eval).unwrap().modified().unwrap(), before);
    assert_eq!(again["arms"][1]["tasks"], report["arms"][1]["tasks"]);

    // An arm finished with other settings is refused, not silently reused.
    let changed = std::fs::read_to_string(&plan).unwrap().replace("math = 0.6, web = 0.4", "math = 0.5, web = 0.5");
    std::fs::write(&plan, changed).unwrap();
    let refused = midtrain(&args, &[]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("more-math") && err.contains("other settings"), "{err}");
}

#[test]
fn an_arm_branches_from_an_earlier_arms_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let branch = "[[arm]]\nname = \"decay\"\nbranch_from = { arm = \"baseline\", step = 2 }\n\
                  train = { stage = [{ name = \"decay\", tokens = 256, seq_len = 128, \
                  schedule = { decay = { style = \"wsd\", decay_steps = 1, shape = \"one_minus_sqrt\" } } }] }\n";
    let out = dir.path().join("out");
    let run =
        |plan: &Path| midtrain(&["ablate", plan.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"], &[]);
    // Only an earlier arm can be branched from.
    let refused = run(&write_plan(dir.path(), &format!("{branch}[[arm]]\nname = \"baseline\"\n")));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("not an earlier arm"), "{err}");

    let report: serde_json::Value =
        serde_json::from_str(&ok(run(&write_plan(dir.path(), &format!("[[arm]]\nname = \"baseline\"\n{branch}")))))
            .unwrap();
    assert_eq!(report["arms"].as_array().unwrap().len(), 2);
    let trained = |k: usize| report["arms"][k]["trained_tokens"].as_u64().unwrap();
    assert_eq!((trained(0), trained(1)), (768, 256), "the branch counts the tokens after its branch point");
    let losses = |arm: &str| -> Vec<f64> {
        let text = std::fs::read_to_string(out.join(format!("arms/{arm}/run/metrics.jsonl"))).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r.get("eval").is_none())
            .map(|r| r["loss"].as_f64().unwrap())
            .collect()
    };
    let (base, decay) = (losses("baseline"), losses("decay"));
    assert_eq!((base.len(), decay.len()), (3, 1));
    assert_eq!(decay[0], base[2], "the branch continues the baseline's weights and data after step 2");

    // A step the earlier arm did not save is named, not silently replaced by the base model.
    let missing = run(&write_plan(
        dir.path(),
        &format!(
            "[[arm]]\nname = \"baseline\"\n{}",
            branch.replacen("decay", "late", 1).replace("step = 2", "step = 1")
        ),
    ));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("no checkpoint at step 1") && err.contains("[2, 3]"), "{err}");
}
