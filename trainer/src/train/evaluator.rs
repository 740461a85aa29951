//! The evaluations of one stage: held-out loss per domain at the stage's length; at its start
//! and end also the short-context check and loss by position; passkey retrieval at the run's
//! start and each stage's end, with the task scores of `[eval.tasks]`.

use std::collections::BTreeMap;

use anyhow::Result;

use super::config::{StageConfig, TrainConfig};
use super::records::{EvalRecord, PositionLosses, ShortChange, ShortContext, When, mean};
use super::state::TrainerState;
use std::sync::Arc;

use crate::data::{Corpus, eval_batches};
use crate::eval;
use crate::model::{Batch, Llama};
use crate::passkey::PasskeyPrompts;
use crate::tasks::{EvalOptions, Task, TaskScores, evaluate_task};

/// `[eval.tasks]` loaded: the tasks and the tokenizer their prompts are encoded with.
pub struct EvalTasks {
    tasks: Vec<Task>,
    tokenizer: tokenizers::Tokenizer,
}

impl EvalTasks {
    pub fn load(
        config: &super::config::TasksConfig,
        model: &super::config::ModelSource,
        vocab_size: usize,
    ) -> Result<Self> {
        let tokenizer_path = match (&config.tokenizer, model) {
            (Some(path), _) => path.clone(),
            (None, super::config::ModelSource::Checkpoint(dir)) => dir.join("tokenizer.json"),
            (None, super::config::ModelSource::Fresh(_)) => {
                anyhow::bail!(
                    "[eval.tasks] needs a tokenizer: the run starts from a config.json, not a checkpoint folder"
                )
            }
        };
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow::anyhow!("[eval.tasks] tokenizer {}: {e}", tokenizer_path.display()))?;
        let vocab = tokenizer.get_vocab_size(true);
        anyhow::ensure!(
            vocab <= vocab_size,
            "[eval.tasks] tokenizer {} has {vocab} ids, but the model's vocab_size is {vocab_size}: give the model's tokenizer",
            tokenizer_path.display()
        );
        let tasks = config.files.iter().map(|f| Task::load(f, config.limit)).collect::<Result<Vec<_>>>()?;
        let mut names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            anyhow::bail!("[eval.tasks] two files are named {:?}: task names are file stems and must differ", w[0]);
        }
        Ok(Self { tasks, tokenizer })
    }

    fn evaluate(&self, model: &mut Llama, seq_len: usize) -> Result<BTreeMap<String, TaskScores>> {
        let options = EvalOptions { max_length: Some(seq_len), ..EvalOptions::default() };
        let mut scores = BTreeMap::new();
        for task in &self.tasks {
            let (s, _) = evaluate_task(model, &self.tokenizer, task, &options, &mut |_, _| {})?;
            scores.insert(task.name.clone(), s);
        }
        Ok(scores)
    }
}

/// Held-out batches of each domain (domains without any are left out).
type DomainBatches = Vec<(String, Vec<Batch>)>;

pub struct Evaluator<'a> {
    config: &'a TrainConfig,
    stage: &'a StageConfig,
    passkey: Option<&'a PasskeyPrompts>,
    tasks: Option<&'a EvalTasks>,
    at_stage_length: DomainBatches,
    /// Empty when the stage runs at the short length itself.
    at_short_length: DomainBatches,
    short_seq_len: usize,
    bucket: usize,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        config: &'a TrainConfig,
        stage: &'a StageConfig,
        corpus: &Arc<Corpus>,
        passkey: Option<&'a PasskeyPrompts>,
        tasks: Option<&'a EvalTasks>,
    ) -> Self {
        let rows = config.batch.micro_batch_size;
        let heldout = |seq_len: usize| -> DomainBatches {
            corpus
                .domains
                .iter()
                .zip(&corpus.heldout)
                .map(|(d, docs)| (d.clone(), eval_batches(corpus, docs, seq_len, rows, config.eval.max_tokens)))
                .filter(|(_, b)| !b.is_empty())
                .collect()
        };
        let short_seq_len = config.short_seq_len();
        Self {
            config,
            stage,
            passkey,
            tasks,
            at_stage_length: heldout(stage.seq_len),
            at_short_length: if stage.seq_len == short_seq_len { Vec::new() } else { heldout(short_seq_len) },
            short_seq_len,
            bucket: config.eval.position_bucket.unwrap_or((stage.seq_len / 8).max(1)),
        }
    }

    /// Evaluate `model` at `when`; `None` when no domain has held-out documents. At a stage's
    /// start this records the short-context baseline in `state`.
    pub fn evaluate(&self, model: &mut Llama, state: &mut TrainerState, when: When) -> Result<Option<EvalRecord>> {
        if self.at_stage_length.is_empty() {
            return Ok(None);
        }
        let losses = domain_losses(model, &self.at_stage_length)?;
        let mut record = EvalRecord {
            eval: losses,
            loss_by_position: None,
            passkey: None,
            seq_len: self.stage.seq_len,
            short: None,
            stage: self.stage.name.clone(),
            step: state.step,
            tasks: None,
            when,
        };
        if when != When::Interval {
            record.short = Some(self.short_context(model, state, &record.eval, when)?);
            record.loss_by_position = Some(self.loss_by_position(model)?);
        }
        let run_start = when == When::Start && state.step == 0;
        if let (Some(prompts), Some(grid)) = (self.passkey, &self.config.eval.passkey)
            && (when == When::End || run_start)
        {
            record.passkey = Some(crate::passkey::evaluate(model, prompts, grid, self.config.seed)?);
            model.set_sequence_length(self.stage.seq_len as u64)?;
        }
        if let Some(tasks) = self.tasks
            && (when == When::End || run_start)
        {
            record.tasks = Some(tasks.evaluate(model, self.stage.seq_len)?);
            model.set_sequence_length(self.stage.seq_len as u64)?;
        }
        Ok(Some(record))
    }

    fn short_context(
        &self,
        model: &Llama,
        state: &mut TrainerState,
        at_stage_length: &BTreeMap<String, f64>,
        when: When,
    ) -> Result<ShortContext> {
        let loss = if self.at_short_length.is_empty() {
            at_stage_length.clone()
        } else {
            domain_losses(model, &self.at_short_length)?
        };
        let now = mean(loss.values().copied());
        let mut against_start = None;
        if when == When::Start {
            state.short_loss_at_start = now;
        } else if let (Some(before), Some(after)) = (state.short_loss_at_start, now) {
            let change = after / before - 1.0;
            against_start = Some(ShortChange { change, degraded: change > self.config.eval.degradation_tolerance });
        }
        Ok(ShortContext { against_start, loss, seq_len: self.short_seq_len })
    }

    fn loss_by_position(&self, model: &Llama) -> Result<PositionLosses> {
        let mut loss = BTreeMap::new();
        for (domain, batches) in &self.at_stage_length {
            loss.insert(domain.clone(), eval::loss_by_position(model, batches, self.bucket)?);
        }
        Ok(PositionLosses { bucket: self.bucket, loss })
    }
}

fn domain_losses(model: &Llama, evals: &DomainBatches) -> Result<BTreeMap<String, f64>> {
    let mut losses = BTreeMap::new();
    for (domain, batches) in evals {
        if let Some(l) = eval::mean_loss(model, batches)? {
            losses.insert(domain.clone(), l);
        }
    }
    Ok(losses)
}
