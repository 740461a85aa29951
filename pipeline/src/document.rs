//! The unit of work: one document as read from a dump, with what the steps learned about it.

use std::sync::Arc;

/// A per-document column beyond id and text: what a filter adds, and what outputs carry along.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum OutputColumn {
    /// A float written with [`Document::set_score`].
    Score(&'static str),
    /// A string written with [`Document::set_label`].
    Label(&'static str),
}

impl OutputColumn {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Score(n) | Self::Label(n) => n,
        }
    }
}

/// The scores and labels midtrain's own filters write, carried through later stages (into the
/// dataset's per-document sidecar).
pub const KNOWN_COLUMNS: &[OutputColumn] = &[
    OutputColumn::Label("language"),
    OutputColumn::Score("language_score"),
    OutputColumn::Score("quality"),
    OutputColumn::Label("contamination"),
    CLUSTER_SIZE,
];

/// How many documents dedup found in a kept document's cluster (1: no duplicates), written by
/// dedup's apply stage; a recipe's `rehydrate` repeats documents by it.
pub const CLUSTER_SIZE: OutputColumn = OutputColumn::Score("cluster_size");

/// A document flowing through `prepare`.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub id: String,
    pub text: String,
    /// The input file it came from.
    pub source: Arc<str>,
    /// Row (parquet) or line (jsonl) in that file, 0-based.
    pub row: u64,
    /// The page URL when the input has one (used by `url_blocklist`).
    pub url: Option<String>,
    /// Scores the steps computed, in the order they were added (`language_score`, `quality`, ...).
    pub scores: Vec<(&'static str, f64)>,
    /// Labels the steps computed (`language`).
    pub labels: Vec<(&'static str, String)>,
    /// Byte ranges of the text that the loss is computed on (a chat's assistant turns, with
    /// `loss_mask = "assistant"`); empty: no mask.
    pub loss_spans: Vec<std::ops::Range<u32>>,
}

impl Document {
    pub fn new(id: String, text: String, source: Arc<str>, row: u64) -> Self {
        Self { id, text, source, row, url: None, scores: Vec::new(), labels: Vec::new(), loss_spans: Vec::new() }
    }

    /// Record (or overwrite) a score.
    pub fn set_score(&mut self, name: &'static str, value: f64) {
        match self.scores.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.scores.push((name, value)),
        }
    }

    pub fn score(&self, name: &str) -> Option<f64> {
        self.scores.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    pub fn set_label(&mut self, name: &'static str, value: String) {
        match self.labels.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.labels.push((name, value)),
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// A document that a step removed, and why. Nothing is dropped without one of these.
#[derive(Clone, Debug, PartialEq)]
pub struct Removal {
    pub id: String,
    pub source: Arc<str>,
    pub row: u64,
    /// The step that removed it: `read`, `where`, a filter name, `exact_dedup`, `near_dedup`, ...
    pub step: String,
    /// Why, in the step's words (`gopher_short_doc`, `bad_json: ...`).
    pub reason: String,
    /// Dedup only: the duplicate cluster, the id of the document kept for it, and the
    /// Jaccard similarity of the two (exact with verification, the MinHash estimate without; 1
    /// for an exact copy).
    pub cluster_id: Option<u64>,
    pub kept_id: Option<String>,
    pub similarity: Option<f32>,
}

impl Removal {
    pub fn of(doc: &Document, step: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            id: doc.id.clone(),
            source: doc.source.clone(),
            row: doc.row,
            step: step.into(),
            reason: reason.into(),
            cluster_id: None,
            kept_id: None,
            similarity: None,
        }
    }
}
