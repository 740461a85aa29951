use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use shards::ShardWriter;

use super::*;
use crate::data::LongMix;
use crate::hf_config::LlamaConfig;
use crate::model::Llama;
use crate::optim::AdamWConfig;
use crate::rope::RopeScaling;
use crate::schedule::Decay;

/// A dataset of documents that follow a simple rule (next = current + 3 mod 64).
fn dataset(dir: &Path) -> PathBuf {
    let prefix = dir.join("data").join("docs");
    std::fs::create_dir_all(prefix.parent().unwrap()).unwrap();
    let mut w = ShardWriter::create(&prefix, 64).unwrap();
    for k in 0..60u32 {
        let len = 20 + (k * 7) % 50;
        let doc: Vec<u32> = (0..len).map(|i| (k + 3 * i) % 63 + 1).chain([0]).collect();
        w.append(&doc).unwrap();
    }
    w.finish().unwrap();
    prefix
}

fn config(dir: &Path, stages: Vec<StageConfig>) -> TrainConfig {
    let model_config = LlamaConfig { max_position_embeddings: 64, ..LlamaConfig::tiny(64) };
    model_config.save(dir).unwrap();
    TrainConfig {
        seed: 5,
        model: ModelConfig {
            source: ModelSource::Fresh(dir.join("config.json")),
            final_lr: Some(3e-3),
            save_dtype: None,
            max_shard_bytes: 5_000_000_000,
        },
        data: DataConfig {
            path: dataset(dir),
            document_masking: true,
            mask_loss_across_documents: true,
            heldout_docs: 2,
        },
        optimizer: AdamWConfig::default(),
        batch: BatchConfig { micro_batch_size: 2, batch_tokens: 128 },
        eval: EvalConfig { every: 3, max_tokens: 256, position_bucket: Some(8), ..Default::default() },
        checkpoint_every: 2,
        train: LoopConfig::default(),
        stages,
    }
}

fn stage(name: &str, tokens: u64, seq_len: usize) -> StageConfig {
    StageConfig {
        name: name.into(),
        tokens,
        seq_len,
        data: None,
        schedule: ScheduleConfig { peak_lr: None, min_lr: 0.0, init_lr: 0.0, warmup_steps: 2, decay: Decay::Linear },
        rope: None,
        long_mix: None,
        reset_optimizer: false,
    }
}

fn losses(run: &Path) -> Vec<f64> {
    read_metrics(run).unwrap().steps.iter().map(|r| r.loss).collect()
}

#[test]
fn loss_decreases_on_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), vec![stage("anneal", 128 * 30, 32)]);
    let run = dir.path().join("run");
    train(&config, &run, &TrainOptions::default(), &mut |_| {}).unwrap();
    let l = losses(&run);
    assert_eq!(l.len(), 30);
    let (first, last) = (l[..3].iter().sum::<f64>() / 3.0, l[27..].iter().sum::<f64>() / 3.0);
    assert!(last < first - 1.0, "loss went from {first} to {last}");
    let evals = read_metrics(&run).unwrap().evals;
    let held = |e: &EvalRecord| e.eval["docs"];
    assert!(held(evals.last().unwrap()) < held(&evals[0]) - 0.5, "held-out loss falls too");
    // The last checkpoint is an HF folder.
    let (step, dir) = checkpointer::list(&run).unwrap().pop().unwrap();
    assert_eq!(step, 30);
    assert!(dir.join("config.json").is_file() && dir.join("model.safetensors").is_file());
}

#[test]
fn a_killed_run_resumes_to_the_same_trajectory() {
    let dir = tempfile::tempdir().unwrap();
    let mut long = stage("extend", 128 * 4, 64);
    long.rope = Some(RopeChange { theta: Some(40_000.0), scaling: None, max_position_embeddings: Some(128) });
    long.long_mix = Some(LongMix { fraction: 0.5, min_tokens: 40 });
    long.schedule.decay = Decay::Cosine;
    let config = config(dir.path(), vec![stage("anneal", 128 * 5, 32), long]);
    let whole = dir.path().join("whole");
    train(&config, &whole, &TrainOptions::default(), &mut |_| {}).unwrap();
    let split = dir.path().join("split");
    // Killed after step 7: checkpoints at 2, 4, 5 (stage end) and 6; steps 7 is redone.
    train(&config, &split, &TrainOptions { stop_after: Some(7), ..Default::default() }, &mut |_| {}).unwrap();
    std::fs::remove_dir_all(split.join("checkpoints/step-00000007")).ok();
    let partial = split.join("checkpoints/.step-00000008.partial");
    std::fs::create_dir_all(&partial).unwrap();
    train(&config, &split, &TrainOptions::default(), &mut |_| {}).unwrap();
    assert!(!partial.exists(), "an interrupted checkpoint is cleared");
    assert_eq!(losses(&split), losses(&whole));
    assert_eq!(losses(&whole).len(), 9);
    let a = std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap();
    let b = std::fs::read_to_string(split.join("metrics.jsonl")).unwrap();
    let strip = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("tokens_per_s");
                v
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b), "every metric and evaluation line matches");
    let weights = |run: &Path| std::fs::read(run.join("checkpoints/step-00000009/model.safetensors")).unwrap();
    assert_eq!(weights(&whole), weights(&split));
    let saved = LlamaConfig::load(&whole.join("checkpoints/step-00000009/config.json")).unwrap();
    assert_eq!(saved.rope_theta, 40_000.0);
    let last: StepRecord = read_metrics(&whole).unwrap().steps.pop().unwrap();
    assert!((last.long_share.unwrap() - 0.5).abs() <= 0.01 + 1.0 / 8.0);
    // A branch from the (mid-stage) checkpoint at step 4 continues its data stream: its first
    // step sees the batch the uninterrupted run saw at step 5, with the same weights.
    let mut branch_config = config.clone();
    branch_config.stages.truncate(1);
    branch_config.stages[0].name = "decay".into();
    branch_config.stages[0].schedule.decay = Decay::Wsd { decay_steps: 2, shape: crate::WsdShape::OneMinusSqrt };
    let branch = dir.path().join("branch");
    let options = TrainOptions { branch_from: Some(whole.join("checkpoints/step-00000004")), ..Default::default() };
    train(&branch_config, &branch, &options, &mut |_| {}).unwrap();
    assert_eq!(losses(&branch)[0], losses(&whole)[4], "the branch resumes the data and the weights");
    assert_ne!(losses(&branch)[1], losses(&whole)[5]);
    // Another config in the same folder is refused.
    let mut other = config.clone();
    other.seed = 6;
    assert!(train(&other, &whole, &TrainOptions::default(), &mut |_| {}).is_err());
}

fn expect_refused(config: &TrainConfig, run: &Path, needle: &str) {
    let err = format!("{:#}", train(config, run, &TrainOptions::default(), &mut |_| {}).unwrap_err());
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!run.exists(), "a refused config leaves no run folder ({err})");
}

#[test]
fn settings_that_cannot_train_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path(), vec![stage("anneal", 128 * 4, 32)]);
    let run = dir.path().join("run");
    let with = |f: &dyn Fn(&mut TrainConfig)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let cases: Vec<(TrainConfig, &str)> = vec![
        (with(&|c| c.stages[0].schedule.peak_lr = Some(f64::NAN)), "peak_lr NaN"),
        (with(&|c| c.stages[0].schedule.peak_lr = Some(f64::INFINITY)), "peak_lr inf"),
        (with(&|c| c.stages[0].schedule.peak_lr = Some(-1e-3)), "peak_lr -0.001"),
        (with(&|c| c.stages[0].schedule.min_lr = 1.0), "above the peak"),
        (with(&|c| c.stages[0].schedule.warmup_steps = 5), "longer than the stage"),
        (with(&|c| c.optimizer.beta1 = 1.5), "beta1 1.5"),
        (with(&|c| c.optimizer.eps = 0.0), "eps 0"),
        (with(&|c| c.optimizer.weight_decay = -0.1), "weight_decay"),
        (with(&|c| c.optimizer.clip_grad_norm = -1.0), "clip_grad_norm"),
        (with(&|c| c.checkpoint_every = 0), "checkpoint_every"),
        (with(&|c| c.eval.position_bucket = Some(0)), "position_bucket"),
        (with(&|c| c.eval.short_seq_len = Some(0)), "short_seq_len"),
        (with(&|c| c.model.final_lr = Some(f64::NAN)), "final_lr"),
        (
            with(&|c| {
                c.stages[0].seq_len = 128;
                c.batch.batch_tokens = 256;
                c.stages[0].tokens = 1024;
            }),
            "max_position_embeddings",
        ),
        (
            with(&|c| {
                c.stages[0].rope = Some(RopeChange {
                    theta: None,
                    scaling: Some(RopeScaling::Linear { factor: -2.0 }),
                    max_position_embeddings: None,
                })
            }),
            "factor must be positive",
        ),
        (
            with(&|c| {
                c.stages[0].long_mix = Some(LongMix { fraction: 1.5, min_tokens: 40 });
            }),
            "long_fraction 1.5",
        ),
        (with(&|c| c.data.heldout_docs = 1000), "no documents to train on"),
    ];
    for (config, needle) in &cases {
        expect_refused(config, &run, needle);
    }
    // The corrected config then runs in the same place.
    train(&good, &run, &TrainOptions::default(), &mut |_| {}).unwrap();
}

#[test]
fn a_non_finite_loss_stops_the_run_or_skips_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut exploding = stage("anneal", 128 * 14, 32);
    exploding.schedule.peak_lr = Some(1e20);
    exploding.schedule.warmup_steps = 0;
    let mut config = config(dir.path(), vec![exploding]);
    let stopped = dir.path().join("stopped");
    let err = train(&config, &stopped, &TrainOptions::default(), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("stopped before the update") && err.contains("skip_step"), "{err}");
    let steps = read_metrics(&stopped).unwrap().steps;
    assert!(!steps.is_empty() && steps.iter().all(|r| r.loss.is_finite() && !r.skipped));

    config.train.on_nonfinite = OnNonFinite::SkipStep;
    let skipped = dir.path().join("skipped");
    let err = train(&config, &skipped, &TrainOptions::default(), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("in a row"), "a broken model does not skip forever: {err}");
    // Skipped steps are written so that they read back.
    let steps = read_metrics(&skipped).unwrap().steps;
    let skips: Vec<&StepRecord> = steps.iter().filter(|r| r.skipped).collect();
    assert_eq!(skips.len() as u64, MAX_SKIPPED_IN_A_ROW);
    assert!(skips.iter().all(|r| !r.loss.is_finite() || !r.grad_norm.is_finite()));
    assert!(!skips.iter().any(|r| r.spike), "a skipped step is no spike");
}

/// A two-step run's config in `dir`, the folder `dir/base` holding its model's config.json (the
/// weights are the test's to write), and that model.
fn continued_run(dir: &Path) -> (TrainConfig, PathBuf, Llama) {
    let config = config(dir, vec![stage("anneal", 128 * 2, 32)]);
    let base = dir.join("base");
    let model = Llama::init(&LlamaConfig::load(&dir.join("config.json")).unwrap(), 1, &Device::Cpu).unwrap();
    std::fs::create_dir_all(&base).unwrap();
    model.config.save(&base).unwrap();
    (config, base, model)
}

#[test]
fn nan_weights_in_the_checkpoint_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, base, model) = continued_run(dir.path());
    let mut tensors: Vec<(String, Tensor)> =
        model.params().iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
    let (name, t) = &mut tensors[3];
    let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values[1] = f32::NAN;
    *t = Tensor::from_vec(values, t.shape(), &Device::Cpu).unwrap();
    let broken = name.clone();
    crate::model::save_safetensors(&base.join("model.safetensors"), tensors).unwrap();
    config.model.source = ModelSource::Checkpoint(base);
    config.model.final_lr = Some(1e-3);
    let err = train(&config, &dir.path().join("run"), &TrainOptions::default(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains(&broken) && err.to_string().contains("NaN"), "{err}");
}

#[test]
fn checkpoints_carry_the_base_models_tokenizer_generation_config_and_chat_template() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, base, model) = continued_run(dir.path());
    model.save_weights(&base).unwrap();
    let files = [
        ("tokenizer.json", "{\"version\": \"1.0\"}"),
        ("tokenizer_config.json", "{\"bos_token\": \"<s>\"}"),
        ("generation_config.json", "{\"eos_token_id\": 2}"),
        ("chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}"),
    ];
    for (name, text) in files {
        std::fs::write(base.join(name), text).unwrap();
    }
    std::fs::write(base.join("notes.txt"), "not the model's").unwrap();
    config.model.source = ModelSource::Checkpoint(base);
    config.model.final_lr = Some(1e-3);
    let run = dir.path().join("run");
    train(&config, &run, &TrainOptions::default(), &mut |_| {}).unwrap();
    let (_, last) = checkpointer::list(&run).unwrap().pop().unwrap();
    for (name, text) in files {
        assert_eq!(std::fs::read_to_string(last.join(name)).unwrap(), text, "{name}");
    }
    assert!(!last.join("notes.txt").exists(), "only the model's files");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A bf16 base gives bf16 checkpoints (sharded above max_shard_size, with an index) whose f32
/// master weights make a resume continue exactly: the run stopped and resumed ends with the
/// weights of the run that went through.
#[test]
fn a_bf16_base_gives_sharded_bf16_checkpoints_and_an_exact_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, base, model) = continued_run(dir.path());
    model.save_weights_as(&base, crate::model::WeightDtype::Bfloat16, u64::MAX).unwrap();
    config.model.source = ModelSource::Checkpoint(base);
    config.model.final_lr = Some(1e-3);
    config.model.max_shard_bytes = 60_000;
    config.stages = vec![stage("anneal", 128 * 4, 32)];
    let full = dir.path().join("full");
    train(&config, &full, &TrainOptions::default(), &mut |_| {}).unwrap();
    let (_, last) = checkpointer::list(&full).unwrap().pop().unwrap();
    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(last.join("config.json")).unwrap()).unwrap();
    assert_eq!(config_json["torch_dtype"], "bfloat16");
    assert!(!last.join("model.safetensors").exists());
    let shards: Vec<Tensor> = crate::model::load_weights(&last, &Device::Cpu).unwrap().into_values().collect();
    assert!(shards.iter().all(|t| t.dtype() == candle_core::DType::BF16));
    let index = std::fs::read_to_string(last.join("model.safetensors.index.json")).unwrap();
    assert!(index.contains("model-00001-of-0000") && index.contains("total_size"), "{index}");
    let master = candle_core::safetensors::load(last.join(checkpointer::MASTER_WEIGHTS_FILE), &Device::Cpu).unwrap();
    assert!(master.values().all(|t| t.dtype() == candle_core::DType::F32));

    // As if killed after the checkpoint of step 2: the run without its last checkpoint, resumed.
    let resumed = dir.path().join("resumed");
    copy_tree(&full, &resumed);
    let (last_step, _) = checkpointer::list(&resumed).unwrap().pop().unwrap();
    std::fs::remove_dir_all(resumed.join(checkpointer::CHECKPOINTS_DIR).join(format!("step-{last_step:08}"))).unwrap();
    assert!(!checkpointer::list(&resumed).unwrap().is_empty(), "an earlier checkpoint to resume from");
    train(&config, &resumed, &TrainOptions::default(), &mut |_| {}).unwrap();
    let (_, resumed_last) = checkpointer::list(&resumed).unwrap().pop().unwrap();
    let read = |dir: &Path| {
        let mut t: Vec<(String, Vec<f32>)> =
            candle_core::safetensors::load(dir.join(checkpointer::MASTER_WEIGHTS_FILE), &Device::Cpu)
                .unwrap()
                .into_iter()
                .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
                .collect();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    assert_eq!(read(&last), read(&resumed_last), "the resumed run ends at the same f32 weights");
}

#[test]
fn token_ids_past_the_model_vocabulary_are_named_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), vec![stage("anneal", 128 * 2, 32)]);
    LlamaConfig { max_position_embeddings: 64, ..LlamaConfig::tiny(40) }.save(dir.path()).unwrap();
    let run = dir.path().join("run");
    let err = format!("{:#}", train(&config, &run, &TrainOptions::default(), &mut |_| {}).unwrap_err());
    assert!(err.contains("docs") && err.contains("document") && err.contains("vocab_size is 40"), "{err}");
    assert!(!run.exists());
}

#[test]
fn a_resume_refuses_data_that_changed_and_a_second_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), vec![stage("anneal", 128 * 6, 32)]);
    let run = dir.path().join("run");
    let lock = util::fsutil::FolderLock::exclusive(&run).unwrap();
    let err = train(&config, &run, &TrainOptions::default(), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("another midtrain run"), "{err}");
    drop(lock);
    train(&config, &run, &TrainOptions { stop_after: Some(3), ..Default::default() }, &mut |_| {}).unwrap();
    // The same documents in another order: same sizes, another stream.
    let prefix = config.data.path.clone();
    let mut w = ShardWriter::create(&prefix, 64).unwrap();
    for k in (0..60u32).rev() {
        let len = 20 + (k * 7) % 50;
        let doc: Vec<u32> = (0..len).map(|i| (k + 3 * i) % 63 + 1).chain([0]).collect();
        w.append(&doc).unwrap();
    }
    w.finish().unwrap();
    let err = train(&config, &run, &TrainOptions::default(), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("changed since") && err.contains("step-00000002"), "{err}");
}

#[test]
fn trainer_state_floats_round_trip_bit_for_bit() {
    let mut state = 7u64;
    for _ in 0..20_000 {
        // Finite doubles of every exponent from about 1e-77 to 1e77, full mantissas.
        let x = f64::from_bits(util::rng::splitmix64(&mut state) >> 2 | 0x3000_0000_0000_0000);
        let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        assert_eq!(back.to_bits(), x.to_bits(), "{x:e}");
    }
}

#[test]
fn the_config_snapshot_keeps_the_shape_of_the_toml() {
    // train.json of earlier runs must still compare equal, so the typed model source and long
    // mix serialise as the TOML's keys.
    let dir = tempfile::tempdir().unwrap();
    let mut long = stage("extend", 128 * 4, 32);
    long.long_mix = Some(LongMix { fraction: 0.25, min_tokens: 40 });
    let config = config(dir.path(), vec![long]);
    let json = serde_json::to_value(&config).unwrap();
    let model = json["model"].as_object().unwrap();
    assert_eq!(model.keys().collect::<Vec<_>>(), ["checkpoint", "config", "final_lr"]);
    assert!(model["checkpoint"].is_null() && model["config"].is_string());
    assert_eq!(json["stage"][0]["long_fraction"], 0.25);
    assert_eq!(json["stage"][0]["long_min_tokens"], 40);
    let back: TrainConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, config);
    let both = "[model]\ncheckpoint = \"a\"\nconfig = \"b\"\n";
    let err = toml::from_str::<toml::Table>(both).map(|t| t["model"].clone().try_into::<ModelConfig>());
    assert!(err.unwrap().unwrap_err().to_string().contains("exactly one"));
    let half =
        "name = \"s\"\ntokens = 1\nseq_len = 1\nlong_fraction = 0.5\n[schedule]\ndecay = { style = \"linear\" }\n";
    let err = toml::from_str::<StageConfig>(half).unwrap_err().to_string();
    assert!(err.contains("go together"), "{err}");
}

/// A word-level tokenizer over `words` (id 0 is `<unk>`), small enough for the tiny models.
fn word_tokenizer(dir: &Path, words: &[&str]) -> PathBuf {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), 0.into());
    for (i, w) in words.iter().enumerate() {
        vocab.insert((*w).into(), (i + 1).into());
    }
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": { "type": "Whitespace" }, "post_processor": null, "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": "<unk>" }
    });
    let path = dir.join("words.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[test]
fn eval_tasks_are_scored_at_the_run_start_and_each_stage_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), vec![stage("one", 128 * 4, 32), stage("two", 128 * 2, 32)]);
    let tokenizer = word_tokenizer(dir.path(), &["red", "green", "blue", "sky", "grass", "is", "the"]);
    let mc = dir.path().join("colours.jsonl");
    std::fs::write(
        &mc,
        "{\"context\": \"the sky is\", \"choices\": [\"blue\", \"green\"], \"gold\": 0}\n\
         {\"context\": \"the grass is\", \"choices\": [\"red\", \"green\"], \"gold\": 1}\n",
    )
    .unwrap();
    let ppl = dir.path().join("held.jsonl");
    std::fs::write(&ppl, "{\"text\": \"the sky is blue the grass is green\"}\n").unwrap();
    config.eval.tasks = Some(TasksConfig { files: vec![mc.clone(), ppl], tokenizer: None, limit: None });
    let run = dir.path().join("run");
    let err = train(&config, &run, &TrainOptions::default(), &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("[eval.tasks] needs a tokenizer"), "{err:#}");
    assert!(!run.exists(), "refused before anything is written");

    config.eval.tasks.as_mut().unwrap().tokenizer = Some(tokenizer);
    train(&config, &run, &TrainOptions::default(), &mut |_| {}).unwrap();
    let evals = read_metrics(&run).unwrap().evals;
    let with_tasks: Vec<(&str, When, u64)> =
        evals.iter().filter(|e| e.tasks.is_some()).map(|e| (e.stage.as_str(), e.when, e.step)).collect();
    assert_eq!(with_tasks, [("one", When::Start, 0), ("one", When::End, 4), ("two", When::End, 6)]);
    let last = evals.iter().rev().find_map(|e| e.tasks.as_ref()).unwrap();
    assert_eq!(last["colours"].n, 2);
    assert!(last["colours"].acc.is_some() && last["held"].perplexity.is_some());
    let html = crate::run_report(&run).unwrap();
    assert!(html.contains("Task scores") && html.contains("colours") && html.contains("ppl "), "report draws them");
}
