//! Per-step accounting of a text stage: documents and bytes in and out, and a histogram of
//! removal reasons. Merging is a sum, so the totals do not depend on how work was split.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    pub step: String,
    pub documents_in: u64,
    pub documents_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// reason → documents removed for it
    pub removed: BTreeMap<String, u64>,
    /// reason → documents kept but flagged for it (decontamination in `mark` mode)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub marked: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageStats {
    pub documents_read: u64,
    pub bytes_read: u64,
    pub documents_kept: u64,
    pub bytes_kept: u64,
    pub steps: Vec<StepStats>,
    /// Inputs (or ends of inputs) skipped under `on_error = "skip"` that could not be read far
    /// enough to count their rows: each stands in `removed` as one row, the true loss is unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows_lost_unknown: Vec<String>,
}

impl StageStats {
    /// Empty stats with one entry per step, in order.
    pub fn with_steps(steps: impl IntoIterator<Item = String>) -> Self {
        Self {
            steps: steps.into_iter().map(|step| StepStats { step, ..Default::default() }).collect(),
            ..Default::default()
        }
    }

    pub fn step_mut(&mut self, step: &str) -> &mut StepStats {
        if let Some(i) = self.steps.iter().position(|s| s.step == step) {
            return &mut self.steps[i];
        }
        self.steps.push(StepStats { step: step.to_string(), ..Default::default() });
        self.steps.last_mut().unwrap()
    }

    pub fn merge(&mut self, other: &StageStats) {
        self.documents_read += other.documents_read;
        self.bytes_read += other.bytes_read;
        self.documents_kept += other.documents_kept;
        self.bytes_kept += other.bytes_kept;
        self.rows_lost_unknown.extend(other.rows_lost_unknown.iter().cloned());
        for s in &other.steps {
            let mine = self.step_mut(&s.step);
            mine.documents_in += s.documents_in;
            mine.documents_out += s.documents_out;
            mine.bytes_in += s.bytes_in;
            mine.bytes_out += s.bytes_out;
            for (reason, n) in &s.removed {
                *mine.removed.entry(reason.clone()).or_default() += n;
            }
            for (reason, n) in &s.marked {
                *mine.marked.entry(reason.clone()).or_default() += n;
            }
        }
    }
}
