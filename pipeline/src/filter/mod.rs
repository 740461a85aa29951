//! Filters: one shape for every rule — a document in, a verdict with a reason out (scores and
//! labels are written onto the document). A [`FilterChain`] runs them in config order and stops
//! at the first drop.
//!
//! The heuristic filters (`gopher_quality`, `gopher_repetition`, `c4_quality`,
//! `fineweb_quality`) follow datatrove 0.10's semantics, reasons and defaults (see
//! `docs/filters-reference.md`); `make parity` measures the agreement.

pub mod c4;
pub mod config;
pub mod decontaminate;
pub mod fineweb;
pub mod gopher_quality;
pub mod gopher_repetition;
pub mod language;
pub mod length;
pub mod quality;
pub mod url_blocklist;

use std::borrow::Cow;

use crate::document::Document;
pub use config::{FilterConfig, FilterError, add_file_checksums};

/// What a filter decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop(Cow<'static, str>),
    /// Kept, and counted in the step's `marked` stats under this reason (the filter labels the
    /// document itself).
    Mark(Cow<'static, str>),
}

impl Verdict {
    pub fn drop(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Drop(reason.into())
    }
}

pub use crate::document::OutputColumn;

pub trait Filter: Send + Sync {
    /// The step name recorded in removals and stats.
    fn name(&self) -> &str;

    /// Decide on one document. A filter may edit `doc.text` (C4 does) and add scores or labels.
    fn apply(&self, doc: &mut Document) -> Verdict;

    /// Scores and labels this filter writes, so outputs have a fixed schema.
    fn outputs(&self) -> Vec<OutputColumn> {
        Vec::new()
    }

    /// A line for the user about what the filter learnt while it was built, if anything.
    fn note(&self) -> Option<String> {
        None
    }
}

/// Filters in order; the first drop decides.
pub struct FilterChain {
    filters: Vec<Box<dyn Filter>>,
}

/// The outcome of a document through the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainOutcome {
    /// Kept; `marks` holds the steps that flagged it, with their reasons.
    Kept { marks: Vec<(usize, Cow<'static, str>)> },
    /// Dropped by the filter at `step` (index into the chain) for `reason`.
    Dropped { step: usize, reason: Cow<'static, str> },
}

impl FilterChain {
    pub fn new(filters: Vec<Box<dyn Filter>>) -> Self {
        Self { filters }
    }

    pub fn filters(&self) -> &[Box<dyn Filter>] {
        &self.filters
    }

    /// The filters' notes (see [`Filter::note`]), in chain order.
    pub fn notes(&self) -> Vec<String> {
        self.filters.iter().filter_map(|f| f.note()).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.filters.iter().map(|f| f.name().to_string()).collect()
    }

    /// Every score and label column the chain can write, in chain order, without repeats.
    pub fn outputs(&self) -> Vec<OutputColumn> {
        let mut out: Vec<OutputColumn> = Vec::new();
        for column in self.filters.iter().flat_map(|f| f.outputs()) {
            if !out.contains(&column) {
                out.push(column);
            }
        }
        out
    }

    /// Run the chain; `bytes_in[i]` receives the text length entering step `i` (for stats).
    pub fn apply(&self, doc: &mut Document, bytes_in: &mut Vec<u64>) -> ChainOutcome {
        bytes_in.clear();
        let mut marks = Vec::new();
        for (step, filter) in self.filters.iter().enumerate() {
            bytes_in.push(doc.text.len() as u64);
            match filter.apply(doc) {
                Verdict::Keep => {}
                Verdict::Drop(reason) => return ChainOutcome::Dropped { step, reason },
                Verdict::Mark(reason) => marks.push((step, reason)),
            }
        }
        ChainOutcome::Kept { marks }
    }
}
