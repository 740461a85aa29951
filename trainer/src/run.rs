//! The training run: a TOML config of stages, run in order, each with its token budget,
//! sequence length, RoPE, LR schedule, data and long/short mix; checkpoints and exact resume;
//! `metrics.jsonl`.
//!
//! A run folder holds `train.json` (the resolved config it was started with: a rerun with another
//! config is refused), `metrics.jsonl` (one line per step, plus `eval` lines) and
//! `checkpoints/step-N/`. Rerunning resumes from the newest checkpoint and truncates the
//! metrics to it, so the trajectory equals an uninterrupted run's.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::checkpoint;
use crate::config::LlamaConfig;
use crate::data::{Corpus, Cursor, LongMix, PackOptions, Packer, Prefetcher, eval_batches};
use crate::eval;
use crate::metrics::{NoiseScale, SpikeDetector};
use crate::model::{Batch, Llama};
use crate::optim::{AdamW, AdamWConfig, UpdateInfo};
use crate::passkey::{PasskeyConfig, PasskeyPrompts};
use crate::rope::RopeScaling;
use crate::schedule::{Decay, LrSchedule};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub seed: u64,
    pub model: ModelSource,
    pub data: DataConfig,
    #[serde(default)]
    pub optimizer: AdamWConfig,
    pub batch: BatchConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    /// Save a checkpoint every this many steps (and at the end of every stage).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    #[serde(default)]
    pub train: LoopConfig,
    #[serde(rename = "stage")]
    pub stages: Vec<StageConfig>,
}

/// `[train]`: how the loop treats what goes wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    #[serde(default)]
    pub on_nonfinite: OnNonFinite,
}

/// A step whose loss or gradient norm is NaN or infinite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNonFinite {
    /// Stop with an error before the weights are touched; the last checkpoint is intact.
    #[default]
    Stop,
    /// Leave the weights and optimizer as they are, record the step as skipped and go on
    /// (its data is consumed); more than [`MAX_SKIPPED_IN_A_ROW`] in a row stop the run.
    SkipStep,
}

/// Consecutive skipped steps after which `skip_step` gives up: the model or the settings are broken.
pub const MAX_SKIPPED_IN_A_ROW: u64 = 10;

fn default_checkpoint_every() -> u64 {
    100
}

/// Where the weights come from: a checkpoint (HF folder) to continue, or a config to start from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    pub checkpoint: Option<PathBuf>,
    /// An HF `config.json` for a fresh model (tests, demos).
    pub config: Option<PathBuf>,
    /// The learning rate the base run ended at: the default peak of every stage's schedule.
    pub final_lr: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A mixture folder (`midtrain mix build`) or a prepared dataset.
    pub path: PathBuf,
    #[serde(default = "yes")]
    pub document_masking: bool,
    #[serde(default = "yes")]
    pub mask_loss_across_documents: bool,
    /// Documents per domain held out for the evaluation loss.
    #[serde(default = "default_heldout")]
    pub heldout_docs: usize,
}

fn yes() -> bool {
    true
}
fn default_heldout() -> usize {
    4
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Sequences per forward/backward pass.
    pub micro_batch_size: usize,
    /// Tokens per optimizer step: micro-batches accumulate up to it (a multiple of
    /// micro_batch_size × seq_len).
    pub batch_tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Held-out loss every this many steps (0: only at the start and end of each stage).
    #[serde(default)]
    pub every: u64,
    /// At most this many tokens per domain.
    #[serde(default = "default_eval_tokens")]
    pub max_tokens: u64,
    /// At the start and end of each stage, the held-out loss at the first stage's sequence
    /// length too ("short context"); a stage whose short loss rises by more than this fraction
    /// is flagged `degraded`.
    #[serde(default = "default_degradation")]
    pub degradation_tolerance: f64,
    /// The "short context" of that check (default: the first stage's seq_len).
    pub short_seq_len: Option<usize>,
    /// At the start and end of each stage, held-out loss by position within the document, in buckets of
    /// this many positions (default: seq_len / 8).
    pub position_bucket: Option<usize>,
    /// Passkey retrieval over lengths × depths at the start of the run and the end of each stage.
    pub passkey: Option<PasskeyConfig>,
}

fn default_eval_tokens() -> u64 {
    8192
}
fn default_degradation() -> f64 {
    0.02
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 0,
            max_tokens: default_eval_tokens(),
            degradation_tolerance: default_degradation(),
            short_seq_len: None,
            position_bucket: None,
            passkey: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub name: String,
    pub tokens: u64,
    pub seq_len: usize,
    /// This stage's data (default: `[data] path`).
    pub data: Option<PathBuf>,
    pub schedule: ScheduleConfig,
    /// RoPE for this stage and after (default: unchanged).
    pub rope: Option<RopeChange>,
    /// Share of tokens from documents of at least `long_min_tokens` (default: no long/short mix).
    pub long_fraction: Option<f64>,
    pub long_min_tokens: Option<u32>,
    /// Start this stage with fresh optimizer moments (default: carry them over).
    #[serde(default)]
    pub reset_optimizer: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Default: the model's `final_lr`.
    pub peak_lr: Option<f64>,
    #[serde(default)]
    pub min_lr: f64,
    /// Re-warmup starts here.
    #[serde(default)]
    pub init_lr: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    pub decay: Decay,
}

/// A new RoPE: ABF is a new `theta` alone; the others set `scaling` (transformers' forms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeChange {
    pub theta: Option<f64>,
    pub scaling: Option<RopeScaling>,
    pub max_position_embeddings: Option<u64>,
}

impl RopeChange {
    /// `config` with this change applied.
    pub fn apply(&self, config: &mut LlamaConfig) {
        if let Some(theta) = self.theta {
            config.rope_theta = theta;
        }
        if let Some(scaling) = &self.scaling {
            config.rope_scaling = scaling.clone();
        }
        if let Some(m) = self.max_position_embeddings {
            config.max_position_embeddings = m;
        }
    }
}

impl TrainConfig {
    /// Read a TOML config; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut config: Self =
            toml::from_str(&text).with_context(|| format!("{}: invalid train config", path.display()))?;
        let base = mixtures::fsutil::config_folder(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let resolve = |p: &mut PathBuf| *p = mixtures::fsutil::resolve_against(&base, p);
        config.model.checkpoint.as_mut().map(resolve);
        config.model.config.as_mut().map(resolve);
        resolve(&mut config.data.path);
        for s in &mut config.stages {
            s.data.as_mut().map(resolve);
        }
        if let Some(p) = &mut config.eval.passkey {
            resolve(&mut p.tokenizer);
        }
        config.validate().with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    /// Every setting on its own (what needs the model or the data is checked when the run opens
    /// them, still before anything is written).
    pub fn validate(&self) -> Result<()> {
        match (&self.model.checkpoint, &self.model.config) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => bail!("[model] needs exactly one of `checkpoint` (continue a model) or `config` (start fresh)"),
        }
        ensure!(!self.stages.is_empty(), "no [[stage]]: a run needs at least one");
        ensure!(self.batch.micro_batch_size > 0, "[batch] micro_batch_size must be positive");
        ensure!(self.checkpoint_every > 0, "checkpoint_every must be at least 1 (it counts steps)");
        if let Some(lr) = self.model.final_lr {
            ensure!(lr.is_finite() && lr > 0.0, "[model] final_lr {lr} must be a positive number");
        }
        self.optimizer.validate()?;
        self.validate_eval()?;
        for s in &self.stages {
            self.validate_stage(s).with_context(|| format!("stage {:?}", s.name))?;
        }
        Ok(())
    }

    fn validate_eval(&self) -> Result<()> {
        let e = &self.eval;
        ensure!(e.short_seq_len != Some(0), "[eval] short_seq_len must be at least 1");
        ensure!(e.position_bucket != Some(0), "[eval] position_bucket must be at least 1");
        ensure!(e.max_tokens > 0, "[eval] max_tokens must be at least 1");
        ensure!(
            e.degradation_tolerance.is_finite() && e.degradation_tolerance >= 0.0,
            "[eval] degradation_tolerance {} must be a non-negative number",
            e.degradation_tolerance
        );
        Ok(())
    }

    fn validate_stage(&self, s: &StageConfig) -> Result<()> {
        ensure!(s.seq_len > 0, "seq_len must be at least 1");
        let rows = (self.batch.micro_batch_size * s.seq_len) as u64;
        let batch = self.batch.batch_tokens;
        ensure!(
            batch >= rows && batch.is_multiple_of(rows),
            "batch_tokens {batch} is not a multiple of micro_batch_size × seq_len = {rows}"
        );
        ensure!(s.tokens >= batch, "tokens {} is less than one batch", s.tokens);
        let steps = s.tokens.div_ceil(batch);
        let sc = &s.schedule;
        let peak = sc.peak_lr.or(self.model.final_lr);
        ensure!(peak.is_some(), "no peak_lr and no [model] final_lr to default to");
        ensure!(
            s.long_fraction.is_some() == s.long_min_tokens.is_some(),
            "long_fraction and long_min_tokens go together"
        );
        for (name, lr) in [("peak_lr", peak), ("min_lr", Some(sc.min_lr)), ("init_lr", Some(sc.init_lr))] {
            if let Some(lr) = lr {
                ensure!(lr.is_finite() && lr >= 0.0, "{name} {lr} must be a non-negative number");
            }
        }
        if let Some(peak) = peak {
            ensure!(sc.min_lr <= peak, "min_lr {} is above the peak LR {peak}", sc.min_lr);
        }
        ensure!(sc.warmup_steps <= steps, "warmup_steps {} is longer than the stage ({steps} steps)", sc.warmup_steps);
        if let Some(f) = s.long_fraction {
            ensure!((0.0..=1.0).contains(&f), "long_fraction {f} must be between 0 and 1");
        }
        ensure!(s.long_min_tokens != Some(0), "long_min_tokens must be at least 1");
        Ok(())
    }

    /// What needs the model's config: each stage's RoPE yields frequencies, and no stage runs
    /// past `max_position_embeddings` without a RoPE change.
    pub fn validate_against_model(&self, base: &LlamaConfig) -> Result<()> {
        let mut config = base.clone();
        let mut rope_changed = false;
        for s in &self.stages {
            if let Some(change) = &s.rope {
                change.apply(&mut config);
                rope_changed = true;
            }
            config
                .rope()
                .frequencies(Some(s.seq_len as u64))
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("stage {:?}: its RoPE", s.name))?;
            ensure!(
                rope_changed || s.seq_len as u64 <= config.max_position_embeddings,
                "stage {:?}: seq_len {} is above the model's max_position_embeddings {} and no stage changes \
                 the RoPE: positions past it were never trained. Extend the context (rope = {{ theta = ... }} \
                 or a scaling), lower seq_len, or, to train past it as it is, say so with rope = \
                 {{ max_position_embeddings = ... }}",
                s.name,
                s.seq_len,
                config.max_position_embeddings
            );
        }
        Ok(())
    }

    /// Optimizer steps of each stage.
    pub fn stage_steps(&self) -> Vec<u64> {
        self.stages.iter().map(|s| s.tokens.div_ceil(self.batch.batch_tokens)).collect()
    }

    fn schedule(&self, stage: usize) -> LrSchedule {
        let s = &self.stages[stage].schedule;
        LrSchedule {
            peak_lr: s.peak_lr.or(self.model.final_lr).expect("validated"),
            min_lr: s.min_lr,
            init_lr: s.init_lr,
            warmup_steps: s.warmup_steps,
            total_steps: self.stage_steps()[stage],
            decay: s.decay,
        }
    }
}

/// What the loop saves beside each checkpoint to resume exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done in the whole run.
    pub step: u64,
    pub stage: usize,
    pub step_in_stage: u64,
    pub tokens: u64,
    pub cursor: Cursor,
    pub optimizer_steps: u64,
    pub noise: NoiseScale,
    pub spikes: SpikeDetector,
    /// Mean short-context held-out loss at the start of the current stage.
    #[serde(default)]
    pub short_loss_at_start: Option<f64>,
    /// Steps skipped in a row for a non-finite loss or gradient (`on_nonfinite = "skip_step"`).
    #[serde(default)]
    pub skipped_in_a_row: u64,
    /// Each data path of the run → its identity (a mixture's order checksum, a dataset's
    /// manifest checksum): a resume refuses data that changed underneath it.
    #[serde(default)]
    pub data_identities: std::collections::BTreeMap<String, String>,
    /// No randomness beyond the seed: data order and initialisation derive from it.
    pub seed: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u64,
    pub stage: String,
    pub tokens: u64,
    /// NaN and infinities (a skipped step) are written as the strings "NaN", "inf", "-inf".
    #[serde(with = "crate::jsonfloat")]
    pub loss: f64,
    pub lr: f64,
    #[serde(with = "crate::jsonfloat")]
    pub grad_norm: f64,
    pub clipped: bool,
    pub tokens_per_s: f64,
    pub gns: Option<f64>,
    pub spike: bool,
    pub long_share: Option<f64>,
    pub seq_len: usize,
    /// The step's loss or gradient was not finite and the update was skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Start from this checkpoint's weights, optimizer moments and data cursor instead of the
    /// config's model (branch a decay from a stable-phase checkpoint).
    pub branch_from: Option<PathBuf>,
    /// Stop (as if killed) after this many steps in total: tests of resume.
    pub stop_after: Option<u64>,
    /// Train on the first CUDA device (needs the `cuda` cargo feature).
    pub cuda: bool,
}

/// Called after every step and evaluation.
pub enum Event<'a> {
    Stage { index: usize, name: &'a str, steps: u64, tokens: u64 },
    Step(&'a StepRecord),
    Eval(&'a serde_json::Value),
    Checkpoint(&'a Path),
}

const METRICS_FILE: &str = "metrics.jsonl";
const CONFIG_SNAPSHOT: &str = "train.json";

pub fn train(config: &TrainConfig, run: &Path, options: &TrainOptions, on_event: &mut dyn FnMut(Event)) -> Result<()> {
    config.validate()?;
    let device = if options.cuda {
        Device::new_cuda(0).context("no CUDA device (build with `--features cuda` on a machine with one)")?
    } else {
        Device::Cpu
    };
    // Everything that can be wrong with the config, the model or the data is found before the
    // run folder is created, so a corrected config is never refused for a folder it left.
    let base = base_model_config(config, options)?;
    config.validate_against_model(&base)?;
    let passkey = passkey_prompts(config, base.vocab_size)?;
    let corpora = open_corpora(config, base.vocab_size)?;
    let identities: BTreeMap<String, String> =
        corpora.iter().map(|(path, c)| (path.display().to_string(), c.identity.clone())).collect();

    let _lock = mixtures::fsutil::FolderLock::exclusive(run)?;
    mixtures::fsutil::remove_stale_temps(run)
        .with_context(|| format!("{}: cannot clear temporaries", run.display()))?;
    let snapshot = serde_json::to_string_pretty(config)?;
    let snapshot_path = run.join(CONFIG_SNAPSHOT);
    if snapshot_path.exists() {
        let old = std::fs::read_to_string(&snapshot_path)?;
        if old != snapshot {
            bail!("{} holds a run of another config; use another --out or delete the folder", run.display());
        }
    } else {
        mixtures::fsutil::write_atomic(&snapshot_path, snapshot.as_bytes())?;
    }

    let checkpoints = checkpoint::list(run)?;
    let resume_from = checkpoints.last().map(|(_, p)| p.clone());
    let start_dir = resume_from.clone().or(options.branch_from.clone());
    let (mut model, mut state) = match &start_dir {
        Some(dir) => {
            let model = Llama::load(dir, &device)?;
            let state: TrainerState = serde_json::from_value(checkpoint::load_state(dir)?)
                .with_context(|| format!("{}: invalid trainer state", dir.display()))?;
            (model, state)
        }
        None => {
            let model = match (&config.model.checkpoint, &config.model.config) {
                (Some(ckpt), _) => Llama::load(ckpt, &device)?,
                (None, Some(cfg)) => Llama::init(&LlamaConfig::load(cfg)?, config.seed, &device)?,
                (None, None) => unreachable!("validated"),
            };
            let state = TrainerState {
                step: 0,
                stage: 0,
                step_in_stage: 0,
                tokens: 0,
                cursor: Cursor::default(),
                optimizer_steps: 0,
                noise: NoiseScale::default(),
                spikes: SpikeDetector::default(),
                short_loss_at_start: None,
                skipped_in_a_row: 0,
                data_identities: BTreeMap::new(),
                seed: config.seed,
            };
            (model, state)
        }
    };
    let weights_from = start_dir.as_ref().or(config.model.checkpoint.as_ref());
    check_finite_weights(&model, weights_from.map(PathBuf::as_path))?;
    if let Some(dir) = &resume_from {
        check_same_data(&state.data_identities, &identities, dir)?;
    }
    state.data_identities = identities;
    if resume_from.is_none() && options.branch_from.is_some() {
        // A branch starts this config's first stage from the checkpoint's weights, moments and
        // data position.
        state.stage = 0;
        state.step_in_stage = 0;
        state.step = 0;
        state.tokens = 0;
    }
    let params: Vec<(String, candle_core::Var, bool)> =
        model.params().iter().map(|(n, v)| (n.clone(), v.clone(), Llama::decays(n))).collect();
    let mut optimizer = AdamW::new(config.optimizer, params.clone());
    if let Some(dir) = &start_dir {
        checkpoint::load_optimizer(dir, &mut optimizer, state.optimizer_steps)?;
    }
    let mut metrics = open_metrics(run, resume_from.as_ref().map(|_| state.step))?;
    let short_seq_len = config.eval.short_seq_len.unwrap_or(config.stages[0].seq_len);
    let stage_steps = config.stage_steps();

    while state.stage < config.stages.len() {
        let stage = &config.stages[state.stage];
        let steps = stage_steps[state.stage];
        model.set_sequence_length(stage.seq_len as u64)?;
        if state.step_in_stage == 0 && stage.reset_optimizer {
            optimizer = AdamW::new(config.optimizer, params.clone());
            state.optimizer_steps = 0;
        }
        on_event(Event::Stage { index: state.stage, name: &stage.name, steps, tokens: stage.tokens });
        let data_path = stage.data.as_ref().unwrap_or(&config.data.path);
        let corpus = corpora[data_path].clone();
        let pack = pack_options(config, stage);
        let rows = config.batch.micro_batch_size;
        let accumulation = (config.batch.batch_tokens / (rows * stage.seq_len) as u64) as usize;
        let heldout = |seq_len: usize| -> Vec<(String, Vec<Batch>)> {
            corpus
                .domains
                .iter()
                .zip(&corpus.heldout)
                .map(|(d, docs)| (d.clone(), eval_batches(&corpus, docs, seq_len, rows, config.eval.max_tokens)))
                .filter(|(_, b)| !b.is_empty())
                .collect()
        };
        let evals = heldout(stage.seq_len);
        let short_evals = if stage.seq_len == short_seq_len { Vec::new() } else { heldout(short_seq_len) };
        let bucket = config.eval.position_bucket.unwrap_or((stage.seq_len / 8).max(1));
        // Held-out losses; at a stage's start and end also the short-context losses (and the
        // degradation flag) and loss by position, and at its end passkey retrieval.
        let evaluate = |model: &mut Llama,
                        state: &mut TrainerState,
                        when: &str,
                        metrics: &mut std::fs::File|
         -> Result<Option<serde_json::Value>> {
            if evals.is_empty() {
                return Ok(None);
            }
            let losses = domain_losses(model, &evals)?;
            let mut record = json!({"eval": losses, "step": state.step, "stage": stage.name, "when": when, "seq_len": stage.seq_len});
            if when != "interval" {
                let short = if short_evals.is_empty() { losses.clone() } else { domain_losses(model, &short_evals)? };
                let mean = mean_of(&short);
                record["short"] = json!({"seq_len": short_seq_len, "loss": short});
                if when == "start" {
                    state.short_loss_at_start = mean;
                } else if let (Some(before), Some(after)) = (state.short_loss_at_start, mean) {
                    let change = after / before - 1.0;
                    record["short"]["change"] = json!(change);
                    record["short"]["degraded"] = json!(change > config.eval.degradation_tolerance);
                }
            }
            if when != "interval" {
                let mut by_position = serde_json::Map::new();
                for (domain, batches) in &evals {
                    by_position.insert(domain.clone(), json!(eval::loss_by_position(model, batches, bucket)?));
                }
                record["loss_by_position"] = json!({"bucket": bucket, "loss": by_position});
            }
            let first_start = when == "start" && state.step == 0;
            if let (Some(prompts), Some(grid)) = (&passkey, &config.eval.passkey)
                && (when == "end" || first_start)
            {
                let result = crate::passkey::evaluate(model, prompts, grid, config.seed)?;
                model.set_sequence_length(stage.seq_len as u64)?;
                record["passkey"] = json!(result);
            }
            writeln!(metrics, "{record}")?;
            Ok(Some(record))
        };
        if state.step_in_stage == 0 {
            // "start" measures the model as it enters the stage, before its RoPE change: the
            // short-context baseline and the zero-shot loss by position at the new length.
            if let Some(r) = evaluate(&mut model, &mut state, "start", &mut metrics)? {
                on_event(Event::Eval(&r));
            }
            if let Some(change) = &stage.rope {
                let mut c = model.config.clone();
                change.apply(&mut c);
                model.set_rope(c, stage.seq_len as u64)?;
            }
        }
        let packer = Packer::new(corpus, pack)?;
        let prefetch = Prefetcher::spawn(packer, state.cursor, rows, 2 * accumulation.max(1));
        let schedule = config.schedule(state.stage);
        while state.step_in_stage < steps {
            let started = Instant::now();
            let micro: Vec<(Batch, Cursor)> = (0..accumulation).map(|_| prefetch.next()).collect();
            let total: f64 = micro.iter().map(|(b, _)| b.loss_tokens()).sum();
            ensure!(total > 0.0, "a batch of step {} has no token to learn from", state.step + 1);
            let mut summed: Option<Vec<Tensor>> = None;
            let (mut loss_sum, mut small_sq, mut small_tokens) = (0.0, 0.0, 0.0);
            for (batch, _) in &micro {
                let loss = model.loss_sum(batch)?;
                loss_sum += loss.to_scalar::<f32>()? as f64;
                let grads = (loss / total)?.backward()?;
                let grads: Vec<Tensor> = params
                    .iter()
                    .map(|(name, var, _)| {
                        grads.get(var.as_tensor()).cloned().with_context(|| format!("no gradient reached {name}"))
                    })
                    .collect::<Result<_>>()?;
                let count = batch.loss_tokens();
                // The noise scale needs each micro-batch's own gradient norm (with accumulation).
                if accumulation > 1 && count > 0.0 {
                    let mut sq = 0.0;
                    for g in &grads {
                        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                    }
                    // The micro-batch's own mean gradient is total/count times its share.
                    small_sq += sq * (total / count).powi(2);
                    small_tokens += count;
                }
                summed = Some(match summed {
                    None => grads,
                    Some(acc) => acc.iter().zip(&grads).map(|(a, g)| a + g).collect::<candle_core::Result<_>>()?,
                });
            }
            let grads = summed.expect("at least one micro-batch");
            let lr = schedule.lr(state.step_in_stage);
            let loss = loss_sum / total;
            let update = if loss.is_finite() {
                optimizer.step(&grads, lr)?
            } else {
                UpdateInfo { grad_norm: f64::NAN, clipped: false, applied: false }
            };
            if update.applied {
                state.skipped_in_a_row = 0;
            } else {
                let what = if loss.is_finite() {
                    format!("the gradient norm is {}", update.grad_norm)
                } else {
                    format!("the loss is {loss}")
                };
                skip_or_stop(config.train.on_nonfinite, &mut state, stage, lr, &what)?;
            }
            let gns = if accumulation > 1 && update.applied {
                let n = accumulation as f64;
                state.noise.update(small_sq / n, small_tokens / n, update.grad_norm.powi(2), total)
            } else {
                None
            };
            let spike = update.applied && state.spikes.update(loss);
            state.cursor = micro.last().expect("at least one micro-batch").1;
            state.step += 1;
            state.step_in_stage += 1;
            state.tokens += config.batch.batch_tokens;
            state.optimizer_steps = optimizer.steps;
            let record = StepRecord {
                step: state.step,
                stage: stage.name.clone(),
                tokens: state.tokens,
                loss,
                lr,
                grad_norm: update.grad_norm,
                clipped: update.clipped,
                tokens_per_s: config.batch.batch_tokens as f64 / started.elapsed().as_secs_f64(),
                gns,
                spike,
                long_share: stage
                    .long_fraction
                    .map(|_| state.cursor.long_tokens as f64 / state.cursor.tokens.max(1) as f64),
                seq_len: stage.seq_len,
                skipped: !update.applied,
            };
            writeln!(metrics, "{}", serde_json::to_string(&record)?)?;
            on_event(Event::Step(&record));
            let stage_done = state.step_in_stage == steps;
            if config.eval.every > 0
                && state.step_in_stage.is_multiple_of(config.eval.every)
                && !stage_done
                && let Some(r) = evaluate(&mut model, &mut state, "interval", &mut metrics)?
            {
                on_event(Event::Eval(&r));
            }
            if stage_done {
                if let Some(r) = evaluate(&mut model, &mut state, "end", &mut metrics)? {
                    on_event(Event::Eval(&r));
                }
                state.stage += 1;
                state.step_in_stage = 0;
                state.cursor = Cursor::default();
            }
            if stage_done || state.step % config.checkpoint_every == 0 {
                metrics.sync_data()?;
                let dir = checkpoint::save(run, state.step, &model, &optimizer, &serde_json::to_value(&state)?)?;
                on_event(Event::Checkpoint(&dir));
            }
            if options.stop_after.is_some_and(|n| state.step >= n) {
                return Ok(());
            }
            if stage_done {
                break;
            }
        }
    }
    Ok(())
}

fn pack_options(config: &TrainConfig, stage: &StageConfig) -> PackOptions {
    PackOptions {
        seq_len: stage.seq_len,
        document_masking: config.data.document_masking,
        mask_loss_across_documents: config.data.mask_loss_across_documents,
        long_mix: stage
            .long_fraction
            .map(|fraction| LongMix { fraction, min_tokens: stage.long_min_tokens.expect("validated") }),
    }
}

/// The config of the model the run starts from (before any stage's RoPE change).
fn base_model_config(config: &TrainConfig, options: &TrainOptions) -> Result<LlamaConfig> {
    let path = match (&options.branch_from, &config.model.checkpoint, &config.model.config) {
        (Some(dir), _, _) | (None, Some(dir), _) => dir.join("config.json"),
        (None, None, Some(path)) => path.clone(),
        (None, None, None) => unreachable!("validated"),
    };
    Ok(LlamaConfig::load(&path)?)
}

/// Every data path of the run, opened (shards checked against their checksums, every token id
/// checked against the model's vocabulary).
fn open_corpora(config: &TrainConfig, vocab_size: usize) -> Result<BTreeMap<PathBuf, Arc<Corpus>>> {
    let mut corpora: BTreeMap<PathBuf, Arc<Corpus>> = BTreeMap::new();
    for stage in &config.stages {
        let path = stage.data.as_ref().unwrap_or(&config.data.path);
        if let Some(corpus) = corpora.get(path) {
            // Each stage's packing (held-out documents, long/short mix) must be possible.
            Packer::check(corpus, &pack_options(config, stage)).with_context(|| format!("stage {:?}", stage.name))?;
            continue;
        }
        let corpus = Corpus::open(path, config.data.heldout_docs)
            .with_context(|| format!("stage {:?}: data {}", stage.name, path.display()))?;
        if let Some(vocab) = corpus.vocab_size
            && vocab > vocab_size
        {
            bail!(
                "{}: its tokens come from a tokenizer of {vocab} ids, but the model's vocab_size is {vocab_size}; \
                 prepare the data with the model's tokenizer",
                path.display()
            );
        }
        corpus.check_token_ids(vocab_size)?;
        Packer::check(&corpus, &pack_options(config, stage)).with_context(|| format!("stage {:?}", stage.name))?;
        corpora.insert(path.clone(), Arc::new(corpus));
    }
    Ok(corpora)
}

fn passkey_prompts(config: &TrainConfig, vocab_size: usize) -> Result<Option<PasskeyPrompts>> {
    let Some(p) = &config.eval.passkey else { return Ok(None) };
    let tokenizer = tokenizers::Tokenizer::from_file(&p.tokenizer)
        .map_err(|e| anyhow::anyhow!("{}: cannot load the passkey tokenizer: {e}", p.tokenizer.display()))?;
    let vocab = tokenizer.get_vocab_size(true);
    ensure!(
        vocab <= vocab_size,
        "[eval.passkey] tokenizer {} has {vocab} ids, but the model's vocab_size is {vocab_size}: give the model's tokenizer",
        p.tokenizer.display(),
    );
    Ok(Some(PasskeyPrompts::new(move |text| {
        Ok(tokenizer.encode(text, false).map_err(|e| anyhow::anyhow!("passkey text: {e}"))?.get_ids().to_vec())
    })?))
}

/// NaN or infinite weights (a broken checkpoint) would train to NaN: refuse them by name.
fn check_finite_weights(model: &Llama, source: Option<&Path>) -> Result<()> {
    for (name, var) in model.params() {
        let t = var.as_tensor();
        // 0·x is 0 for every finite x and NaN otherwise.
        let probe = t.affine(0.0, 0.0)?.sum_all()?.to_scalar::<f32>()?;
        if !probe.is_finite() {
            let from = source.map_or("the initial weights".to_string(), |p| p.display().to_string());
            bail!("{from}: tensor {name} holds NaN or infinite values; start from a healthy checkpoint");
        }
    }
    Ok(())
}

/// A resumed run must read the data it was trained on so far.
fn check_same_data(saved: &BTreeMap<String, String>, now: &BTreeMap<String, String>, checkpoint: &Path) -> Result<()> {
    for (path, identity) in saved {
        if let Some(current) = now.get(path)
            && current != identity
        {
            bail!(
                "{path}: changed since {} was saved (identity {identity}, now {current}: rebuilt or edited); \
                 resuming on it would train on another stream. Restore the data, or start a new run folder",
                checkpoint.display()
            );
        }
    }
    Ok(())
}

/// A non-finite step under `policy`: an error, or a skipped step (counted; too many in a row stop).
fn skip_or_stop(policy: OnNonFinite, state: &mut TrainerState, stage: &StageConfig, lr: f64, what: &str) -> Result<()> {
    let step = state.step + 1;
    match policy {
        OnNonFinite::Stop => bail!(
            "step {step} (stage {:?}, lr {lr:e}): {what}; stopped before the update, so the weights and the \
             newest checkpoint are intact. Lower the learning rate or check the data; [train] on_nonfinite = \
             \"skip_step\" skips such steps instead",
            stage.name
        ),
        OnNonFinite::SkipStep => {
            state.skipped_in_a_row += 1;
            ensure!(
                state.skipped_in_a_row <= MAX_SKIPPED_IN_A_ROW,
                "step {step} (stage {:?}): {what}, and {} steps in a row were skipped for it: the model or the \
                 settings are broken",
                stage.name,
                state.skipped_in_a_row
            );
            Ok(())
        }
    }
}

fn domain_losses(model: &Llama, evals: &[(String, Vec<Batch>)]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut losses = serde_json::Map::new();
    for (domain, batches) in evals {
        if let Some(l) = eval::mean_loss(model, batches)? {
            losses.insert(domain.clone(), json!(l));
        }
    }
    Ok(losses)
}

fn mean_of(losses: &serde_json::Map<String, serde_json::Value>) -> Option<f64> {
    let values: Vec<f64> = losses.values().filter_map(|v| v.as_f64()).collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Open `metrics.jsonl` for appending. Resuming from the checkpoint of `step`, keep what was
/// written up to it (the step lines and the evaluations done before the checkpoint; a new
/// stage's "start" evaluation comes after it and is redone); a fresh start keeps nothing.
fn open_metrics(run: &Path, resumed_at: Option<u64>) -> Result<std::fs::File> {
    let path = run.join(METRICS_FILE);
    let mut kept = String::new();
    if let (Some(step), true) = (resumed_at, path.exists()) {
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        for line in text.lines() {
            // A line cut by a kill ends what can be trusted.
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { break };
            let line_step = v.get("step").and_then(|s| s.as_u64()).unwrap_or(0);
            let after_checkpoint = v.get("when").and_then(|w| w.as_str()) == Some("start");
            if line_step > step || (line_step == step && after_checkpoint) {
                break;
            }
            kept.push_str(line);
            kept.push('\n');
        }
    }
    mixtures::fsutil::write_atomic(&path, kept.as_bytes())?;
    std::fs::OpenOptions::new().append(true).open(&path).with_context(|| format!("{}: cannot open", path.display()))
}

/// Read a run's `metrics.jsonl`: step records and evaluation lines.
pub fn read_metrics(run: &Path) -> Result<(Vec<StepRecord>, Vec<serde_json::Value>)> {
    let path = run.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read (is this a run folder?)", path.display()))?;
    let (mut steps, mut evals) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))?;
        if v.get("eval").is_some() {
            evals.push(v);
        } else {
            steps.push(serde_json::from_value(v).with_context(|| format!("{}: line {}", path.display(), i + 1))?);
        }
    }
    Ok((steps, evals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mixtures::ShardWriter;

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
            model: ModelSource { checkpoint: None, config: Some(dir.join("config.json")), final_lr: Some(3e-3) },
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
            schedule: ScheduleConfig {
                peak_lr: None,
                min_lr: 0.0,
                init_lr: 0.0,
                warmup_steps: 2,
                decay: Decay::Linear,
            },
            rope: None,
            long_fraction: None,
            long_min_tokens: None,
            reset_optimizer: false,
        }
    }

    fn losses(run: &Path) -> Vec<f64> {
        read_metrics(run).unwrap().0.iter().map(|r| r.loss).collect()
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
        let (_, evals) = read_metrics(&run).unwrap();
        let held = |e: &serde_json::Value| e["eval"]["docs"].as_f64().unwrap();
        assert!(held(evals.last().unwrap()) < held(&evals[0]) - 0.5, "held-out loss falls too");
        // The last checkpoint is an HF folder.
        let (step, dir) = checkpoint::list(&run).unwrap().pop().unwrap();
        assert_eq!(step, 30);
        assert!(dir.join("config.json").is_file() && dir.join("model.safetensors").is_file());
    }

    #[test]
    fn a_killed_run_resumes_to_the_same_trajectory() {
        let dir = tempfile::tempdir().unwrap();
        let mut long = stage("extend", 128 * 4, 64);
        long.rope = Some(RopeChange { theta: Some(40_000.0), scaling: None, max_position_embeddings: Some(128) });
        long.long_fraction = Some(0.5);
        long.long_min_tokens = Some(40);
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
        let last: StepRecord = read_metrics(&whole).unwrap().0.pop().unwrap();
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
                    c.stages[0].long_fraction = Some(1.5);
                    c.stages[0].long_min_tokens = Some(40);
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
        let (steps, _) = read_metrics(&stopped).unwrap();
        assert!(!steps.is_empty() && steps.iter().all(|r| r.loss.is_finite() && !r.skipped));

        config.train.on_nonfinite = OnNonFinite::SkipStep;
        let skipped = dir.path().join("skipped");
        let err = train(&config, &skipped, &TrainOptions::default(), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("in a row"), "a broken model does not skip forever: {err}");
        // Skipped steps are written so that they read back.
        let (steps, _) = read_metrics(&skipped).unwrap();
        let skips: Vec<&StepRecord> = steps.iter().filter(|r| r.skipped).collect();
        assert_eq!(skips.len() as u64, MAX_SKIPPED_IN_A_ROW);
        assert!(skips.iter().all(|r| !r.loss.is_finite() || !r.grad_norm.is_finite()));
        assert!(!skips.iter().any(|r| r.spike), "a skipped step is no spike");
    }

    #[test]
    fn nan_weights_in_the_checkpoint_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), vec![stage("anneal", 128 * 2, 32)]);
        let base = dir.path().join("base");
        let model = Llama::init(&LlamaConfig::load(&dir.path().join("config.json")).unwrap(), 1, &Device::Cpu).unwrap();
        std::fs::create_dir_all(&base).unwrap();
        model.config.save(&base).unwrap();
        let mut tensors: Vec<(String, Tensor)> =
            model.params().iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
        let (name, t) = &mut tensors[3];
        let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values[1] = f32::NAN;
        *t = Tensor::from_vec(values, t.shape(), &Device::Cpu).unwrap();
        let broken = name.clone();
        crate::model::save_safetensors(&base.join("model.safetensors"), tensors).unwrap();
        config.model = ModelSource { checkpoint: Some(base), config: None, final_lr: Some(1e-3) };
        let err = train(&config, &dir.path().join("run"), &TrainOptions::default(), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains(&broken) && err.to_string().contains("NaN"), "{err}");
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
        let lock = mixtures::fsutil::FolderLock::exclusive(&run).unwrap();
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
            let x = f64::from_bits(mixtures::rng::splitmix64(&mut state) >> 2 | 0x3000_0000_0000_0000);
            let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x:e}");
        }
    }
}
