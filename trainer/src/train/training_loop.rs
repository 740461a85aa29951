//! The loop: open everything a run needs (refusing what cannot train before anything is
//! written), claim the run folder, then run each stage's steps with their evaluations and
//! checkpoints. Rerunning resumes from the newest checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use candle_core::{Device, Tensor, Var};

use super::checkpointer;
use super::config::{MAX_SKIPPED_IN_A_ROW, ModelSource, OnNonFinite, StageConfig, TrainConfig};
use super::evaluator::{EvalTasks, Evaluator};
use super::records::{EvalRecord, MetricsLog, StepRecord, When};
use super::state::TrainerState;
use crate::data::{Corpus, Cursor, Packer, Prefetcher};
use crate::hf_config::LlamaConfig;
use crate::model::{Batch, Llama};
use crate::optim::{AdamW, UpdateInfo};
use crate::passkey::PasskeyPrompts;
use crate::schedule::LrSchedule;

#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Start from this checkpoint's weights, optimizer moments and data cursor instead of the
    /// config's model (branch a decay from a stable-phase checkpoint).
    pub branch_from: Option<PathBuf>,
    /// Stop (as if killed) after this many steps in total: tests of resume.
    pub stop_after: Option<u64>,
    /// Where to train.
    pub device: TrainDevice,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrainDevice {
    /// f32 on the CPU.
    #[default]
    Cpu,
    /// The first CUDA device (needs the `cuda` cargo feature).
    Cuda,
}

/// Called after every step and evaluation.
pub enum Event<'a> {
    Stage { index: usize, name: &'a str, steps: u64, tokens: u64 },
    Step(&'a StepRecord),
    Eval(&'a EvalRecord),
    Checkpoint(&'a Path),
}

/// The resolved config the run was started with: a rerun with another config is refused.
const CONFIG_SNAPSHOT: &str = "train.json";

/// Run `config` in the folder `run`, from its newest checkpoint if it has one.
pub fn train(config: &TrainConfig, run: &Path, options: &TrainOptions, on_event: &mut dyn FnMut(Event)) -> Result<()> {
    config.validate()?;
    let device = match options.device {
        TrainDevice::Cpu => Device::Cpu,
        TrainDevice::Cuda => {
            Device::new_cuda(0).context("no CUDA device (build with `--features cuda` on a machine with one)")?
        }
    };
    // Everything that can be wrong with the config, the model or the data is found before the
    // run folder is created, so a corrected config is never refused for a folder it left.
    let inputs = Inputs::open(config, options)?;
    let _lock = claim_run_folder(run, config)?;
    let mut trainer = Trainer::start(config, run, options, &device, inputs.identities())?;
    while trainer.state.stage < config.stages.len() {
        let stage = &config.stages[trainer.state.stage];
        let corpus = inputs.corpora[config.stage_data(stage)].clone();
        if trainer.run_stage(corpus, inputs.passkey.as_ref(), inputs.tasks.as_ref(), on_event)? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// What the run reads, opened and checked.
struct Inputs {
    /// Every data path of the run (shards checked against their checksums, token ids against
    /// the model's vocabulary).
    corpora: BTreeMap<PathBuf, Arc<Corpus>>,
    passkey: Option<PasskeyPrompts>,
    tasks: Option<EvalTasks>,
}

impl Inputs {
    fn open(config: &TrainConfig, options: &TrainOptions) -> Result<Self> {
        // The config of the model the run starts from (before any stage's RoPE change).
        let base_config = match &options.branch_from {
            Some(dir) => dir.join("config.json"),
            None => config.model.source.config_json(),
        };
        let base = LlamaConfig::load(&base_config)?;
        config.validate_against_model(&base)?;
        let passkey = passkey_prompts(config, base.vocab_size)?;
        let tasks = match &config.eval.tasks {
            Some(t) => Some(EvalTasks::load(t, &config.model.source, base.vocab_size)?),
            None => None,
        };
        let mut corpora: BTreeMap<PathBuf, Arc<Corpus>> = BTreeMap::new();
        for stage in &config.stages {
            let path = config.stage_data(stage);
            let corpus = match corpora.get(path) {
                Some(corpus) => corpus.clone(),
                None => Arc::new(open_corpus(config, stage, base.vocab_size)?),
            };
            // Each stage's packing (held-out documents, long/short mix) must be possible.
            Packer::check(&corpus, &config.pack_options(stage)).with_context(|| format!("stage {:?}", stage.name))?;
            corpora.insert(path.to_path_buf(), corpus);
        }
        Ok(Self { corpora, passkey, tasks })
    }

    fn identities(&self) -> BTreeMap<String, String> {
        self.corpora.iter().map(|(path, c)| (path.display().to_string(), c.identity.clone())).collect()
    }
}

fn open_corpus(config: &TrainConfig, stage: &StageConfig, vocab_size: usize) -> Result<Corpus> {
    let path = config.stage_data(stage);
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
    Ok(corpus)
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

/// Lock the run folder for this process and check it holds a run of this config (or none).
fn claim_run_folder(run: &Path, config: &TrainConfig) -> Result<util::fsutil::FolderLock> {
    let lock = util::fsutil::FolderLock::for_run(run, None, 1)?;
    let snapshot = serde_json::to_string_pretty(config)?;
    let snapshot_path = run.join(CONFIG_SNAPSHOT);
    if snapshot_path.exists() {
        let old = std::fs::read_to_string(&snapshot_path)
            .with_context(|| format!("{}: cannot read", snapshot_path.display()))?;
        if old != snapshot {
            bail!("{} holds a run of another config; use another --out or delete the folder", run.display());
        }
    } else {
        util::fsutil::write_atomic(&snapshot_path, snapshot.as_bytes())?;
    }
    Ok(lock)
}

#[derive(PartialEq)]
enum Flow {
    Continue,
    /// `stop_after` was reached.
    Stop,
}

/// A run in progress: the model, its optimizer, where the run stands, and its log.
struct Trainer<'a> {
    config: &'a TrainConfig,
    run: &'a Path,
    options: &'a TrainOptions,
    model: Llama,
    /// (name, variable, takes weight decay) of every trained tensor.
    params: Vec<(String, Var, bool)>,
    optimizer: AdamW,
    state: TrainerState,
    metrics: MetricsLog,
    /// Tokenizer files, generation config and chat template of the base (or branched-from)
    /// checkpoint, copied into every checkpoint.
    companions: Vec<PathBuf>,
}

/// The summed gradients of one optimizer step's micro-batches.
struct Accumulated {
    grads: Vec<Tensor>,
    loss_sum: f64,
    /// Loss tokens over all micro-batches.
    total: f64,
    /// Σ over micro-batches of their own mean gradient's squared norm, and of their loss
    /// tokens: the "small batch" of the noise scale (with accumulation only).
    small_sq: f64,
    small_tokens: f64,
}

impl<'a> Trainer<'a> {
    /// From the newest checkpoint of `run`, else from `--branch-from`, else from the config's model.
    fn start(
        config: &'a TrainConfig,
        run: &'a Path,
        options: &'a TrainOptions,
        device: &Device,
        identities: BTreeMap<String, String>,
    ) -> Result<Self> {
        let resume_from = checkpointer::list(run)?.pop().map(|(_, dir)| dir);
        let start_dir = resume_from.as_ref().or(options.branch_from.as_ref());
        let (mut model, mut state) = match (start_dir, &config.model.source) {
            (Some(dir), _) => checkpointer::load(dir, device)?,
            (None, ModelSource::Checkpoint(dir)) => (Llama::load(dir, device)?, TrainerState::new(config.seed)),
            (None, ModelSource::Fresh(path)) => {
                (Llama::init(&LlamaConfig::load(path)?, config.seed, device)?, TrainerState::new(config.seed))
            }
        };
        let weights_from = match (start_dir, &config.model.source) {
            (Some(dir), _) | (None, ModelSource::Checkpoint(dir)) => Some(dir.as_path()),
            (None, ModelSource::Fresh(_)) => None,
        };
        check_finite_weights(&model, weights_from)?;
        model.set_recompute(config.train.recompute);
        state.adopt_data_identities(identities, resume_from.as_deref())?;
        if resume_from.is_none() && options.branch_from.is_some() {
            state.restart_counters_for_branch();
        }
        let params: Vec<(String, Var, bool)> =
            model.params().iter().map(|(n, v)| (n.clone(), v.clone(), Llama::decays(n))).collect();
        let mut optimizer = AdamW::new(config.optimizer, params.clone());
        if let Some(dir) = start_dir {
            checkpointer::load_optimizer(dir, &mut optimizer, state.optimizer_steps)?;
        }
        let metrics = MetricsLog::open(run, resume_from.as_ref().map(|_| state.step))?;
        let companions = match (&config.model.source, &options.branch_from) {
            (ModelSource::Checkpoint(dir), _) | (ModelSource::Fresh(_), Some(dir)) => {
                checkpointer::companion_files(dir)
            }
            (ModelSource::Fresh(_), None) => Vec::new(),
        };
        Ok(Self { config, run, options, model, params, optimizer, state, metrics, companions })
    }

    /// The rest of the current stage: its steps, evaluations and checkpoints.
    fn run_stage(
        &mut self,
        corpus: Arc<Corpus>,
        passkey: Option<&PasskeyPrompts>,
        tasks: Option<&EvalTasks>,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<Flow> {
        let config = self.config;
        let stage = &config.stages[self.state.stage];
        let steps = config.stage_steps()[self.state.stage];
        self.model.set_sequence_length(stage.seq_len as u64)?;
        if self.state.step_in_stage == 0 && stage.reset_optimizer {
            self.optimizer = AdamW::new(config.optimizer, self.params.clone());
            self.state.optimizer_steps = 0;
        }
        on_event(Event::Stage { index: self.state.stage, name: &stage.name, steps, tokens: stage.tokens });
        let evaluator = Evaluator::new(config, stage, &corpus, passkey, tasks);
        if self.state.step_in_stage == 0 {
            // "start" measures the model as it enters the stage, before its RoPE change: the
            // short-context baseline and the zero-shot loss by position at the new length.
            self.evaluate(&evaluator, When::Start, on_event)?;
            if let Some(change) = &stage.rope {
                let mut c = self.model.config.clone();
                change.apply(&mut c);
                self.model.set_rope(c, stage.seq_len as u64)?;
            }
        }
        let rows = config.batch.micro_batch_size;
        let accumulation = (config.batch.batch_tokens / (rows * stage.seq_len) as u64) as usize;
        let packer = Packer::new(corpus, config.pack_options(stage))?;
        let prefetch = Prefetcher::spawn(packer, self.state.cursor, rows, 2 * accumulation.max(1));
        let schedule = config.schedule(self.state.stage);
        while self.state.step_in_stage < steps {
            let micro: Vec<(Batch, Cursor)> = (0..accumulation).map(|_| prefetch.next()).collect();
            let record = self.step(stage, micro, &schedule)?;
            self.metrics.append(&record)?;
            on_event(Event::Step(&record));
            let stage_done = self.state.step_in_stage == steps;
            let every = config.eval.every;
            if every > 0 && self.state.step_in_stage.is_multiple_of(every) && !stage_done {
                self.evaluate(&evaluator, When::Interval, on_event)?;
            }
            if stage_done {
                self.evaluate(&evaluator, When::End, on_event)?;
                self.state.stage += 1;
                self.state.step_in_stage = 0;
                self.state.cursor = Cursor::default();
            }
            if stage_done || self.state.step.is_multiple_of(config.checkpoint_every) {
                self.metrics.sync()?;
                let format = checkpointer::WeightsFormat {
                    dtype: self.config.model.save_dtype.unwrap_or(self.model.base_dtype),
                    max_shard_bytes: self.config.model.max_shard_bytes,
                };
                let dir =
                    checkpointer::save(self.run, &self.model, &self.optimizer, &self.state, &self.companions, format)?;
                on_event(Event::Checkpoint(&dir));
            }
            if self.options.stop_after.is_some_and(|n| self.state.step >= n) {
                return Ok(Flow::Stop);
            }
            if stage_done {
                break;
            }
        }
        Ok(Flow::Continue)
    }

    fn evaluate(&mut self, evaluator: &Evaluator, when: When, on_event: &mut dyn FnMut(Event)) -> Result<()> {
        if let Some(record) = evaluator.evaluate(&mut self.model, &mut self.state, when)? {
            self.metrics.append(&record)?;
            on_event(Event::Eval(&record));
        }
        Ok(())
    }

    /// One optimizer step over `micro`'s batches (the last one's cursor is where the data stands after).
    fn step(&mut self, stage: &StageConfig, micro: Vec<(Batch, Cursor)>, schedule: &LrSchedule) -> Result<StepRecord> {
        let started = Instant::now();
        let acc = self.accumulate(&micro)?;
        let lr = schedule.lr(self.state.step_in_stage);
        let loss = acc.loss_sum / acc.total;
        let update = if loss.is_finite() {
            self.optimizer.step(&acc.grads, lr)?
        } else {
            UpdateInfo { grad_norm: f64::NAN, clipped: false, applied: false }
        };
        if update.applied {
            self.state.skipped_in_a_row = 0;
        } else {
            let what = if loss.is_finite() {
                format!("the gradient norm is {}", update.grad_norm)
            } else {
                format!("the loss is {loss}")
            };
            skip_or_stop(self.config.train.on_nonfinite, &mut self.state, stage, lr, &what)?;
        }
        let state = &mut self.state;
        let micro_batches = micro.len() as f64;
        let gns = if micro.len() > 1 && update.applied {
            let (small_sq, small_tokens) = (acc.small_sq / micro_batches, acc.small_tokens / micro_batches);
            state.noise.update(small_sq, small_tokens, update.grad_norm.powi(2), acc.total)
        } else {
            None
        };
        let spike = update.applied && state.spikes.update(loss);
        state.cursor = micro.last().expect("at least one micro-batch").1;
        state.step += 1;
        state.step_in_stage += 1;
        state.tokens += self.config.batch.batch_tokens;
        state.optimizer_steps = self.optimizer.steps;
        Ok(StepRecord {
            step: state.step,
            stage: stage.name.clone(),
            tokens: state.tokens,
            loss,
            lr,
            grad_norm: update.grad_norm,
            clipped: update.clipped,
            tokens_per_s: self.config.batch.batch_tokens as f64 / started.elapsed().as_secs_f64(),
            gns,
            spike,
            long_share: stage.long_mix.map(|_| state.cursor.long_tokens as f64 / state.cursor.tokens.max(1) as f64),
            seq_len: stage.seq_len,
            skipped: !update.applied,
        })
    }

    /// Forward and backward over each micro-batch; the gradients are of the step's mean loss.
    fn accumulate(&self, micro: &[(Batch, Cursor)]) -> Result<Accumulated> {
        let total: f64 = micro.iter().map(|(b, _)| b.loss_tokens()).sum();
        ensure!(total > 0.0, "a batch of step {} has no token to learn from", self.state.step + 1);
        let mut acc = Accumulated { grads: Vec::new(), loss_sum: 0.0, total, small_sq: 0.0, small_tokens: 0.0 };
        for (batch, _) in micro {
            let loss = self.model.loss_sum(batch)?;
            acc.loss_sum += loss.to_scalar::<f32>()? as f64;
            let grads = self.model.backward(&(loss / total)?)?;
            let grads: Vec<Tensor> = self
                .params
                .iter()
                .map(|(name, var, _)| {
                    grads.get(var.as_tensor()).cloned().with_context(|| format!("no gradient reached {name}"))
                })
                .collect::<Result<_>>()?;
            let count = batch.loss_tokens();
            // The noise scale needs each micro-batch's own gradient norm (with accumulation).
            if micro.len() > 1 && count > 0.0 {
                let mut sq = 0.0;
                for g in &grads {
                    sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                }
                // The micro-batch's own mean gradient is total/count times its share.
                acc.small_sq += sq * (total / count).powi(2);
                acc.small_tokens += count;
            }
            acc.grads = if acc.grads.is_empty() {
                grads
            } else {
                acc.grads.iter().zip(&grads).map(|(a, g)| a + g).collect::<candle_core::Result<_>>()?
            };
        }
        Ok(acc)
    }
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
