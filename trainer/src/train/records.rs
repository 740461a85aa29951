//! `metrics.jsonl`: one [`StepRecord`] per optimizer step and one [`EvalRecord`] per evaluation,
//! a JSON object per line, appended as the run goes and cut back to the checkpoint on resume.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::passkey::PasskeyGrid;

pub const METRICS_FILE: &str = "metrics.jsonl";

/// One optimizer step.
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

/// When in a stage an evaluation ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Before the stage's first step (and before its RoPE change).
    Start,
    /// Every `[eval] every` steps.
    Interval,
    /// After the stage's last step.
    End,
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Interval => "interval",
            Self::End => "end",
        }
    }
}

/// One evaluation. At a stage's start and end it also holds the short-context check and loss
/// by position, and at the run's start and each stage's end passkey retrieval and task scores.
///
/// Fields are in alphabetical order: the order these lines have always had.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Held-out loss per domain.
    #[serde(with = "crate::jsonfloat::map")]
    pub eval: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_by_position: Option<PositionLosses>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passkey: Option<PasskeyGrid>,
    pub seq_len: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short: Option<ShortContext>,
    pub stage: String,
    pub step: u64,
    /// Task scores (`[eval.tasks]`), by task name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<BTreeMap<String, crate::tasks::TaskScores>>,
    pub when: When,
}

impl EvalRecord {
    /// The mean held-out loss over domains.
    pub fn mean_loss(&self) -> Option<f64> {
        mean(self.eval.values().copied())
    }
}

/// The mean of `values` (`None` for none).
pub(crate) fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Held-out loss at the "short context" (the first stage's length), to see whether extending
/// the context cost the model its short-context skill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShortContext {
    /// At a stage's end: the change against its start.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub against_start: Option<ShortChange>,
    #[serde(with = "crate::jsonfloat::map")]
    pub loss: BTreeMap<String, f64>,
    pub seq_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShortChange {
    /// Relative change of the mean short-context loss since the stage's start.
    pub change: f64,
    /// The change is above `[eval] degradation_tolerance`.
    pub degraded: bool,
}

/// Held-out loss per domain in buckets of `bucket` positions within the document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PositionLosses {
    pub bucket: usize,
    /// `None` for a bucket no target fell in.
    pub loss: BTreeMap<String, Vec<Option<f64>>>,
}

/// A run's `metrics.jsonl`, open for appending.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

/// Where a line stands in the run: enough of either record to cut the log at a checkpoint.
#[derive(Deserialize)]
struct LinePosition {
    #[serde(default)]
    step: u64,
    when: Option<When>,
}

impl MetricsLog {
    /// Open the log of `run`. Resuming from the checkpoint of `step`, keep what was written up to
    /// it (the step lines and the evaluations done before the checkpoint; a new stage's "start"
    /// evaluation comes after it and is redone); a fresh start keeps nothing.
    pub fn open(run: &Path, resumed_at: Option<u64>) -> Result<Self> {
        let path = run.join(METRICS_FILE);
        let mut kept = String::new();
        if let (Some(step), true) = (resumed_at, path.exists()) {
            let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            for line in text.lines() {
                // A line cut by a kill ends what can be trusted.
                let Ok(at) = serde_json::from_str::<LinePosition>(line) else { break };
                if at.step > step || (at.step == step && at.when == Some(When::Start)) {
                    break;
                }
                kept.push_str(line);
                kept.push('\n');
            }
        }
        util::fsutil::write_atomic(&path, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        Ok(Self { path, file })
    }

    pub fn append(&mut self, record: &impl Serialize) -> Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(record)?)
            .with_context(|| format!("{}: cannot append", self.path.display()))
    }

    /// Make what was appended durable (before a checkpoint that counts on it).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().with_context(|| format!("{}: cannot sync", self.path.display()))
    }
}

/// A run's records, read back.
#[derive(Debug, Default)]
pub struct Metrics {
    pub steps: Vec<StepRecord>,
    pub evals: Vec<EvalRecord>,
}

/// Read a run's `metrics.jsonl`.
pub fn read_metrics(run: &Path) -> Result<Metrics> {
    let path = run.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read (is this a run folder?)", path.display()))?;
    let mut metrics = Metrics::default();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{}: line {}", path.display(), i + 1);
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{} is not JSON", at()))?;
        if v.get("eval").is_some() {
            metrics.evals.push(serde_json::from_value(v).with_context(at)?);
        } else {
            metrics.steps.push(serde_json::from_value(v).with_context(at)?);
        }
    }
    Ok(metrics)
}
