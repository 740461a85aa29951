//! Scoring a task: prompts to token requests (lm-eval's context/continuation split), requests
//! packed into document-masked rows, one forward pass per row, and the task's metrics.

use anyhow::{Result, bail, ensure};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Target, Task, TaskKind};
use crate::model::{Batch, Llama};

/// How requests are built and batched.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Longest sequence scored at once, in tokens; longer contexts lose their start, longer
    /// texts are scored in windows (default: the model's `max_position_embeddings`).
    pub max_length: Option<usize>,
    /// Tokens per forward pass: requests are packed into rows of this many, each attending only
    /// to itself (a longer request gets a row of its own).
    pub row_tokens: usize,
    /// Put the tokens the tokenizer's post-processor adds in front of a text (the BOS of models
    /// trained with one) before every request, as `score --text` does.
    pub special_tokens: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { max_length: None, row_tokens: 2048, special_tokens: true }
    }
}

/// A task's metrics. Multiple choice: `acc`, `acc_norm` and their standard errors; loglikelihood:
/// `acc` (greedy decoding reproduces the continuation) and the loss figures; perplexity: the
/// loss figures. `loss` is the mean negative log-probability per scored token (nats),
/// `perplexity` its exponential, `bits_per_byte` the summed loss over the scored text's UTF-8
/// bytes, in bits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskScores {
    pub kind: TaskKind,
    /// Items scored.
    pub n: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_norm: Option<f64>,
    /// Standard error of `acc` (sample standard deviation over √n, as lm-eval reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_norm_stderr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_byte: Option<f64>,
    /// Tokens scored (all choices of all items).
    pub tokens: u64,
    /// Requests whose context lost its start to `max_length`.
    pub truncated: usize,
}

/// One item's scores (a line of `--samples`): per choice (or the one continuation or text) its
/// summed log-probability, token count and whether every token is the greedy one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ItemResult {
    pub row: u64,
    /// The full context: description, few-shot examples, the item's context.
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold: Option<usize>,
    pub log_probs: Vec<f64>,
    pub tokens: Vec<usize>,
    pub greedy: Vec<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pred: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pred_norm: Option<usize>,
    /// The UTF-8 bytes the loss covers (a continuation with its delimiter, or the text): what
    /// bits per byte divides by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// A token sequence whose tokens from `score_from` on are scored.
struct Request {
    item: usize,
    ids: Vec<u32>,
    score_from: usize,
    truncated: bool,
}

/// A request's result.
#[derive(Clone, Copy, Default)]
struct Scored {
    log_prob: f64,
    tokens: usize,
    greedy: bool,
}

/// Score every item of `task`; `progress(done, total)` counts requests.
pub fn evaluate_task(
    model: &mut Llama,
    tokenizer: &tokenizers::Tokenizer,
    task: &Task,
    options: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(TaskScores, Vec<ItemResult>)> {
    let max_length = options.max_length.unwrap_or(model.config.max_position_embeddings as usize).max(1);
    let encoder = Encoder::new(tokenizer, options.special_tokens, model.config.eos_token_id)?;
    let per_item: Vec<Vec<Request>> = (0..task.items.len())
        .into_par_iter()
        .map(|i| requests(&encoder, task, i, max_length))
        .collect::<Result<_>>()?;
    let requests: Vec<Request> = per_item.into_iter().flatten().collect();
    let vocab = model.config.vocab_size as u32;
    if let Some(bad) = requests.iter().flat_map(|r| &r.ids).find(|&&id| id >= vocab) {
        bail!(
            "the tokenizer gives token id {bad}, outside the model's vocabulary of {vocab}: is it the model's tokenizer?"
        );
    }
    let scored = score_requests(model, &requests, options.row_tokens.max(1), progress)?;
    Ok(aggregate(task, &requests, &scored))
}

/// Text to ids as lm-eval's HF model does it, with the post-processor's leading tokens (if
/// asked) as a prefix.
struct Encoder<'a> {
    tokenizer: &'a tokenizers::Tokenizer,
    prefix: Vec<u32>,
    /// What an empty context becomes: the prefix, or else the end-of-text token (lm-eval's
    /// `prefix_token_id`).
    empty_context: Vec<u32>,
}

impl<'a> Encoder<'a> {
    fn new(tokenizer: &'a tokenizers::Tokenizer, special_tokens: bool, eos: Option<u32>) -> Result<Self> {
        let mut encoder = Self { tokenizer, prefix: Vec::new(), empty_context: Vec::new() };
        if special_tokens {
            // What the post-processor puts before a text: compare a text with and without it.
            let plain = encoder.encode_with("a", false)?;
            let with = encoder.encode_with("a", true)?;
            if let Some(at) = (0..=with.len().saturating_sub(plain.len())).find(|&i| with[i..].starts_with(&plain)) {
                encoder.prefix = with[..at].to_vec();
            }
        }
        encoder.empty_context =
            if encoder.prefix.is_empty() { eos.into_iter().collect() } else { encoder.prefix.clone() };
        ensure!(
            !encoder.empty_context.is_empty(),
            "an item with an empty context needs a token to start from: the model's config.json has no eos_token_id \
             and the tokenizer adds no BOS"
        );
        Ok(encoder)
    }

    fn encode_with(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let encoding =
            self.tokenizer.encode(text, special).map_err(|e| anyhow::anyhow!("cannot encode {text:?}: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.prefix.clone();
        ids.extend(self.encode_with(text, false)?);
        Ok(ids)
    }

    /// `(ids, score_from)`: the continuation's tokens are those of
    /// context + continuation after the context's; trailing whitespace of the context moves to
    /// the continuation (lm-eval's `_encode_pair`).
    fn pair(&self, context: &str, continuation: &str) -> Result<(Vec<u32>, usize)> {
        let kept = context.trim_end_matches(is_python_space);
        let continuation = format!("{}{continuation}", &context[kept.len()..]);
        let (context_ids, whole) = if kept.is_empty() {
            let mut whole = self.empty_context.clone();
            whole.extend(self.encode_with(&continuation, false)?);
            (self.empty_context.clone(), whole)
        } else {
            (self.encode(kept)?, self.encode(&format!("{kept}{continuation}"))?)
        };
        ensure!(whole.len() > context_ids.len(), "the continuation {continuation:?} adds no token to its context's");
        Ok((whole, context_ids.len()))
    }
}

/// Python's `str.isspace`, which `rstrip()` strips: Unicode whitespace and U+001C–U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The requests of item `i`: one per choice, one continuation, or the text's windows.
fn requests(encoder: &Encoder, task: &Task, i: usize, max_length: usize) -> Result<Vec<Request>> {
    let item = &task.items[i];
    let prompt = &task.prompts[i];
    let delimiter = &task.spec.target_delimiter;
    let pair = |continuation: &str| -> Result<Request> {
        let (ids, score_from) = encoder.pair(prompt, &format!("{delimiter}{continuation}"))?;
        Ok(truncate(Request { item: i, ids, score_from, truncated: false }, max_length))
    };
    match &item.target {
        Target::Choices { choices, .. } => choices.iter().map(|c| pair(c)).collect(),
        Target::Continuation(c) => Ok(vec![pair(c)?]),
        Target::Text(text) => {
            let mut ids = encoder.empty_context.clone();
            let start = ids.len();
            ids.extend(encoder.encode_with(text, false)?);
            ensure!(ids.len() > start, "row {}: the text encodes to no token", item.row);
            Ok(windows(&ids, start, max_length)
                .map(|(range, score_from)| Request { item: i, ids: ids[range].to_vec(), score_from, truncated: false })
                .collect())
        }
    }
}

/// Keep the last `max_length + 1` tokens (`max_length` inputs), scoring at least the last.
fn truncate(mut r: Request, max_length: usize) -> Request {
    if r.ids.len() > max_length + 1 {
        let cut = r.ids.len() - (max_length + 1);
        r.ids.drain(..cut);
        r.score_from = r.score_from.saturating_sub(cut).max(1);
        r.truncated = true;
    }
    r
}

/// Disjoint windows over `ids` predicting every token from `first` on, each of at most
/// `max_length` inputs and conditioned on the one token before it (lm-eval's rolling
/// loglikelihood): `(range of ids, score_from within it)`.
fn windows(ids: &[u32], first: usize, max_length: usize) -> impl Iterator<Item = (std::ops::Range<usize>, usize)> {
    let n = ids.len();
    let mut start = 0;
    std::iter::from_fn(move || {
        if start + 1 >= n {
            return None;
        }
        let end = (start + max_length + 1).min(n);
        let score_from = first.saturating_sub(start).max(1);
        let window = (start..end, score_from);
        start = end - 1;
        Some(window)
    })
}

/// Pack requests into rows (in order, a new row when the next does not fit), run each row and
/// sum each request's scored log-probabilities.
fn score_requests(
    model: &mut Llama,
    requests: &[Request],
    row_tokens: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Scored>> {
    let mut scored = vec![Scored::default(); requests.len()];
    let mut row: Vec<usize> = Vec::new();
    let mut row_len = 0;
    let mut done = 0;
    for (r, request) in requests.iter().enumerate() {
        let len = request.ids.len() - 1;
        if !row.is_empty() && row_len + len > row_tokens {
            score_row(model, requests, &row, &mut scored)?;
            done += row.len();
            progress(done, requests.len());
            row.clear();
            row_len = 0;
        }
        row.push(r);
        row_len += len;
    }
    if !row.is_empty() {
        score_row(model, requests, &row, &mut scored)?;
        progress(requests.len(), requests.len());
    }
    Ok(scored)
}

fn score_row(model: &mut Llama, requests: &[Request], row: &[usize], scored: &mut [Scored]) -> Result<()> {
    let mut batch = Batch {
        batch: 1,
        seq: 0,
        ids: vec![],
        targets: vec![],
        positions: vec![],
        segments: vec![],
        loss_mask: vec![],
    };
    let mut longest = 0;
    for (segment, &r) in row.iter().enumerate() {
        let ids = &requests[r].ids;
        let len = ids.len() - 1;
        batch.ids.extend_from_slice(&ids[..len]);
        batch.targets.extend_from_slice(&ids[1..]);
        batch.positions.extend(0..len as u32);
        batch.segments.extend(std::iter::repeat_n(segment as u32, len));
        longest = longest.max(len);
    }
    batch.seq = batch.ids.len();
    batch.loss_mask = vec![1.0; batch.seq];
    // Dynamic NTK and LongRoPE depend on the length: the longest request, as it would be alone.
    model.set_sequence_length(longest as u64)?;
    let logits = model.forward(&batch)?.flatten_all()?.to_vec1::<f32>()?;
    let vocab = logits.len() / batch.seq;
    let per_position: Vec<(f64, bool)> = logits
        .par_chunks(vocab)
        .zip(batch.targets.par_iter())
        .map(|(logits, &target)| target_log_prob(logits, target as usize))
        .collect();
    let mut offset = 0;
    for &r in row {
        let request = &requests[r];
        let len = request.ids.len() - 1;
        // Input position p predicts ids[p + 1]: the scored targets are inputs score_from - 1 ...
        let positions = &per_position[offset + request.score_from - 1..offset + len];
        scored[r] = Scored {
            log_prob: positions.iter().map(|p| p.0).sum(),
            tokens: positions.len(),
            greedy: positions.iter().all(|p| p.1),
        };
        offset += len;
    }
    Ok(())
}

/// `(log p(target), target is the argmax)` from one position's logits.
fn target_log_prob(logits: &[f32], target: usize) -> (f64, bool) {
    let (mut argmax, mut max) = (0, f32::NEG_INFINITY);
    for (i, &v) in logits.iter().enumerate() {
        if v > max {
            (argmax, max) = (i, v);
        }
    }
    let sum: f64 = logits.iter().map(|&v| ((v - max) as f64).exp()).sum();
    ((logits[target] - max) as f64 - sum.ln(), argmax == target)
}

fn aggregate(task: &Task, requests: &[Request], scored: &[Scored]) -> (TaskScores, Vec<ItemResult>) {
    let mut by_item: Vec<Vec<Scored>> = vec![Vec::new(); task.items.len()];
    for (request, s) in requests.iter().zip(scored) {
        by_item[request.item].push(*s);
    }
    let mut results = Vec::with_capacity(task.items.len());
    let (mut correct, mut correct_norm) = (Vec::new(), Vec::new());
    let (mut loss_sum, mut tokens) = (0.0, 0u64);
    for ((item, prompt), scores) in task.items.iter().zip(&task.prompts).zip(&by_item) {
        let mut result = ItemResult {
            row: item.row,
            prompt: prompt.clone(),
            choices: None,
            continuation: None,
            gold: None,
            log_probs: scores.iter().map(|s| s.log_prob).collect(),
            tokens: scores.iter().map(|s| s.tokens).collect(),
            greedy: scores.iter().map(|s| s.greedy).collect(),
            pred: None,
            pred_norm: None,
            bytes: None,
        };
        tokens += scores.iter().map(|s| s.tokens as u64).sum::<u64>();
        match &item.target {
            Target::Choices { choices, gold } => {
                let pred = first_argmax(scores.iter().map(|s| s.log_prob));
                // lm-eval's acc_norm: log-probability per character of the choice's text.
                let pred_norm =
                    first_argmax(scores.iter().zip(choices).map(|(s, c)| s.log_prob / c.chars().count().max(1) as f64));
                correct.push(f64::from(u8::from(pred == *gold)));
                correct_norm.push(f64::from(u8::from(pred_norm == *gold)));
                (result.pred, result.pred_norm, result.gold) = (Some(pred), Some(pred_norm), Some(*gold));
                result.choices = Some(choices.clone());
            }
            Target::Continuation(c) => {
                let whole = scores[0];
                correct.push(f64::from(u8::from(whole.greedy)));
                loss_sum -= whole.log_prob;
                result.continuation = Some(c.clone());
                result.bytes = Some((task.spec.target_delimiter.len() + c.len()) as u64);
            }
            Target::Text(text) => {
                loss_sum -= scores.iter().map(|s| s.log_prob).sum::<f64>();
                result.bytes = Some(text.len() as u64);
                result.log_probs = vec![scores.iter().map(|s| s.log_prob).sum()];
                result.tokens = vec![scores.iter().map(|s| s.tokens).sum()];
                result.greedy = vec![scores.iter().all(|s| s.greedy)];
            }
        }
        results.push(result);
    }
    let truncated = requests.iter().filter(|r| r.truncated).count();
    let mut out = TaskScores {
        kind: task.kind,
        n: task.items.len(),
        acc: None,
        acc_norm: None,
        stderr: None,
        acc_norm_stderr: None,
        loss: None,
        perplexity: None,
        bits_per_byte: None,
        tokens,
        truncated,
    };
    if !correct.is_empty() {
        (out.acc, out.stderr) = (Some(mean(&correct)), mean_stderr(&correct));
    }
    if !correct_norm.is_empty() {
        (out.acc_norm, out.acc_norm_stderr) = (Some(mean(&correct_norm)), mean_stderr(&correct_norm));
    }
    if task.kind != TaskKind::MultipleChoice && tokens > 0 {
        let loss = loss_sum / tokens as f64;
        out.loss = Some(loss);
        out.perplexity = Some(loss.exp());
        let bytes: u64 = results.iter().filter_map(|r| r.bytes).sum();
        out.bits_per_byte = Some(loss_sum / std::f64::consts::LN_2 / bytes.max(1) as f64);
    }
    (out, results)
}

/// The index of the first maximum (numpy's argmax).
fn first_argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (n − 1) over √n; `None` below two items.
fn mean_stderr(xs: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    (xs.len() >= 2).then(|| {
        let m = mean(xs);
        (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() / n.sqrt()
    })
}

#[cfg(test)]
pub(super) mod test_access {
    //! The request builder, for tests of the token split.
    pub(in crate::tasks) fn pair(
        tokenizer: &tokenizers::Tokenizer,
        special: bool,
        eos: Option<u32>,
        context: &str,
        continuation: &str,
    ) -> anyhow::Result<(Vec<u32>, usize)> {
        super::Encoder::new(tokenizer, special, eos)?.pair(context, continuation)
    }

    pub(in crate::tasks) fn windows(n: usize, first: usize, max_length: usize) -> Vec<(std::ops::Range<usize>, usize)> {
        super::windows(&vec![0; n], first, max_length).collect()
    }
}
