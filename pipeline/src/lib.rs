//! `pipeline`: everything `midtrain prepare` does to text before it becomes token shards —
//! reading dumps ([`read`]), filtering, deduplication, quality scoring — and the tokenizer that
//! turns kept documents into token ids ([`tokenize`]).

// Modules a caller drives stay public; the rest is private behind the `pub use` below, so the
// compiler reports what nothing uses.
pub mod config;
pub mod dataset;
pub mod dedup;
mod document;
mod file_error;
pub mod filter;
mod filter_stage;
pub(crate) mod output;
pub mod prepare;
mod quality_train;
pub mod read;
pub mod render;
pub mod run_folder;
mod stats;
mod text;
pub mod tokenize;
mod verify;

pub use document::{Document, KNOWN_COLUMNS, Removal};
pub use file_error::{FileError, FileFault};
pub use filter_stage::{StageError, finish_filter_stage, run_filter_stage};
pub use quality_train::{QualitySettings, QualityTrainError, QualityTrainOptions, train_quality_classifier};
pub use stats::StageStats;
pub use tokenize::{EosSpec, SpecialTokensInText, TextTokenizer, TokenizeError};
pub use verify::verify_companions;
