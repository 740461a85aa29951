//! The train TOML: the model to start from, the data, optimizer, batch, evaluation, and the
//! `[[stage]]`s run in order. Relative paths resolve against the file's folder; every setting
//! is checked before a run folder is created.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use crate::data::{LongMix, PackOptions};
use crate::hf_config::LlamaConfig;
use crate::model::WeightDtype;
use crate::optim::AdamWConfig;
use crate::passkey::PasskeyConfig;
use crate::rope::RopeScaling;
use crate::schedule::{Decay, LrSchedule};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub seed: u64,
    pub model: ModelConfig,
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
    /// "layers": keep only each decoder layer's input for backward and recompute the layer
    /// there (long sequences: activation memory of one layer, ~1/3 more compute).
    #[serde(default)]
    pub recompute: crate::model::Recompute,
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

/// `[model]`: the weights the run starts from, and the learning rate the base run ended at (the
/// default peak of every stage's schedule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelToml", into = "ModelToml")]
pub struct ModelConfig {
    pub source: ModelSource,
    pub final_lr: Option<f64>,
    /// The dtype checkpoints are written in; by default the base checkpoint's.
    pub save_dtype: Option<WeightDtype>,
    /// Checkpoints above this size are written as shards with an index (transformers' layout).
    pub max_shard_bytes: u64,
}

/// transformers' `max_shard_size` default ("5GB").
const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// "5GB", "100MB", "512KiB", or bytes.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = (t[..split].parse::<f64>().ok()?, t[split..].trim().to_ascii_uppercase());
    let scale = match unit.as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes >= 1.0).then_some(bytes as u64)
}

#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// An HF folder to continue.
    Checkpoint(PathBuf),
    /// An HF `config.json` to initialise a fresh model from (tests, demos).
    Fresh(PathBuf),
}

impl ModelSource {
    /// The `config.json` of the model the run starts from.
    pub fn config_json(&self) -> PathBuf {
        match self {
            Self::Checkpoint(dir) => dir.join("config.json"),
            Self::Fresh(path) => path.clone(),
        }
    }
}

/// `[model]` as written: exactly one of `checkpoint` and `config`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelToml {
    checkpoint: Option<PathBuf>,
    config: Option<PathBuf>,
    final_lr: Option<f64>,
    // Absent unless set, so snapshots of earlier runs keep their shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    save_dtype: Option<WeightDtype>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_shard_size: Option<String>,
}

impl TryFrom<ModelToml> for ModelConfig {
    type Error = String;
    fn try_from(m: ModelToml) -> Result<Self, Self::Error> {
        let source = match (m.checkpoint, m.config) {
            (Some(dir), None) => ModelSource::Checkpoint(dir),
            (None, Some(path)) => ModelSource::Fresh(path),
            _ => {
                return Err(
                    "[model] needs exactly one of `checkpoint` (continue a model) or `config` (start fresh)".into()
                );
            }
        };
        let max_shard_bytes = match &m.max_shard_size {
            None => DEFAULT_MAX_SHARD_BYTES,
            Some(text) => parse_size(text).ok_or_else(|| {
                format!("[model] max_shard_size = {text:?}: write a size such as \"5GB\", \"500MB\" or \"2GiB\"")
            })?,
        };
        Ok(Self { source, final_lr: m.final_lr, save_dtype: m.save_dtype, max_shard_bytes })
    }
}

impl From<ModelConfig> for ModelToml {
    fn from(m: ModelConfig) -> Self {
        let (checkpoint, config) = match m.source {
            ModelSource::Checkpoint(dir) => (Some(dir), None),
            ModelSource::Fresh(path) => (None, Some(path)),
        };
        let max_shard_size = (m.max_shard_bytes != DEFAULT_MAX_SHARD_BYTES).then(|| m.max_shard_bytes.to_string());
        Self { checkpoint, config, final_lr: m.final_lr, save_dtype: m.save_dtype, max_shard_size }
    }
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
    /// Tasks (as `midtrain eval` reads them) at the start of the run and the end of each stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<TasksConfig>,
}

/// `[eval.tasks]`: lm-eval-style task files scored at the run's start and each stage's end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksConfig {
    /// Task files: `.jsonl` / `.parquet` items or `.toml` task specs.
    pub files: Vec<PathBuf>,
    /// The model's tokenizer.json (default: the base checkpoint's).
    pub tokenizer: Option<PathBuf>,
    /// The first this many items of each task.
    pub limit: Option<usize>,
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
            tasks: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StageToml", into = "StageToml")]
pub struct StageConfig {
    pub name: String,
    pub tokens: u64,
    pub seq_len: usize,
    /// This stage's data (default: `[data] path`).
    pub data: Option<PathBuf>,
    pub schedule: ScheduleConfig,
    /// RoPE for this stage and after (default: unchanged).
    pub rope: Option<RopeChange>,
    /// A share of tokens from long documents (default: no long/short mix).
    pub long_mix: Option<LongMix>,
    /// Start this stage with fresh optimizer moments (default: carry them over).
    pub reset_optimizer: bool,
}

/// `[[stage]]` as written: the long/short mix is two keys that go together.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageToml {
    name: String,
    tokens: u64,
    seq_len: usize,
    data: Option<PathBuf>,
    schedule: ScheduleConfig,
    rope: Option<RopeChange>,
    /// Share of tokens from documents of at least `long_min_tokens`.
    long_fraction: Option<f64>,
    long_min_tokens: Option<u32>,
    #[serde(default)]
    reset_optimizer: bool,
}

impl TryFrom<StageToml> for StageConfig {
    type Error = String;
    fn try_from(s: StageToml) -> Result<Self, Self::Error> {
        let long_mix = match (s.long_fraction, s.long_min_tokens) {
            (Some(fraction), Some(min_tokens)) => Some(LongMix { fraction, min_tokens }),
            (None, None) => None,
            _ => return Err(format!("stage {:?}: long_fraction and long_min_tokens go together", s.name)),
        };
        Ok(Self {
            name: s.name,
            tokens: s.tokens,
            seq_len: s.seq_len,
            data: s.data,
            schedule: s.schedule,
            rope: s.rope,
            long_mix,
            reset_optimizer: s.reset_optimizer,
        })
    }
}

impl From<StageConfig> for StageToml {
    fn from(s: StageConfig) -> Self {
        Self {
            name: s.name,
            tokens: s.tokens,
            seq_len: s.seq_len,
            data: s.data,
            schedule: s.schedule,
            rope: s.rope,
            long_fraction: s.long_mix.map(|m| m.fraction),
            long_min_tokens: s.long_mix.map(|m| m.min_tokens),
            reset_optimizer: s.reset_optimizer,
        }
    }
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
        Self::load_with(path, &toml::Table::new())
    }

    /// [`load`](Self::load) with `overrides` merged into the TOML first: tables key by key,
    /// anything else (arrays of `[[stage]]` too) replaced whole. Paths in the overrides are
    /// relative to the config's folder as well.
    pub fn load_with(path: &Path, overrides: &toml::Table) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: invalid train config", path.display()))?;
        merge_toml(&mut table, overrides);
        let mut config: Self = toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("{}: invalid train config", path.display()))?;
        let base = util::fsutil::config_folder(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let resolve = |p: &mut PathBuf| *p = util::fsutil::resolve_against(&base, p);
        match &mut config.model.source {
            ModelSource::Checkpoint(p) | ModelSource::Fresh(p) => resolve(p),
        }
        resolve(&mut config.data.path);
        for s in &mut config.stages {
            s.data.as_mut().map(resolve);
        }
        if let Some(p) = &mut config.eval.passkey {
            resolve(&mut p.tokenizer);
        }
        if let Some(t) = &mut config.eval.tasks {
            t.files.iter_mut().for_each(resolve);
            t.tokenizer.as_mut().map(resolve);
        }
        config.validate().with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    /// Every setting on its own (what needs the model or the data is checked when the run opens
    /// them, still before anything is written).
    pub fn validate(&self) -> Result<()> {
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
        if let Some(t) = &e.tasks {
            ensure!(!t.files.is_empty(), "[eval.tasks] files is empty: name task files, or drop the section");
            ensure!(t.limit != Some(0), "[eval.tasks] limit must be at least 1");
        }
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
        for (name, lr) in [("peak_lr", peak), ("min_lr", Some(sc.min_lr)), ("init_lr", Some(sc.init_lr))] {
            if let Some(lr) = lr {
                ensure!(lr.is_finite() && lr >= 0.0, "{name} {lr} must be a non-negative number");
            }
        }
        if let Some(peak) = peak {
            ensure!(sc.min_lr <= peak, "min_lr {} is above the peak LR {peak}", sc.min_lr);
        }
        ensure!(sc.warmup_steps <= steps, "warmup_steps {} is longer than the stage ({steps} steps)", sc.warmup_steps);
        if let Some(mix) = s.long_mix {
            ensure!((0.0..=1.0).contains(&mix.fraction), "long_fraction {} must be between 0 and 1", mix.fraction);
            ensure!(mix.min_tokens > 0, "long_min_tokens must be at least 1");
        }
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

    /// The "short context" of the degradation check.
    pub fn short_seq_len(&self) -> usize {
        self.eval.short_seq_len.unwrap_or(self.stages[0].seq_len)
    }

    /// Optimizer steps of each stage.
    pub fn stage_steps(&self) -> Vec<u64> {
        self.stages.iter().map(|s| s.tokens.div_ceil(self.batch.batch_tokens)).collect()
    }

    /// How `stage` packs its sequences.
    pub fn pack_options(&self, stage: &StageConfig) -> PackOptions {
        PackOptions {
            seq_len: stage.seq_len,
            document_masking: self.data.document_masking,
            mask_loss_across_documents: self.data.mask_loss_across_documents,
            long_mix: stage.long_mix,
        }
    }

    /// The data path of `stage`.
    pub fn stage_data<'a>(&'a self, stage: &'a StageConfig) -> &'a Path {
        stage.data.as_deref().unwrap_or(&self.data.path)
    }

    /// The learning-rate schedule of the stage at `index`.
    pub fn schedule(&self, stage: usize) -> LrSchedule {
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

/// Merge `overrides` into `table`: nested tables key by key, other values replaced.
fn merge_toml(table: &mut toml::Table, overrides: &toml::Table) {
    for (key, value) in overrides {
        match (table.get_mut(key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => merge_toml(inner, over),
            _ => {
                table.insert(key.clone(), value.clone());
            }
        }
    }
}
