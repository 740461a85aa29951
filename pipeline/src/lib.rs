//! `pipeline`: everything `midtrain prepare` does to text before it becomes token shards —
//! reading dumps ([`read`]), filtering, deduplication, quality scoring — and the tokenizer that
//! turns kept documents into token ids ([`tokenize`]).

pub mod config;
pub mod dataset;
pub mod dedup;
pub mod document;
pub mod file_error;
pub mod filter;
pub mod filter_stage;
pub mod output;
pub mod prepare;
pub mod quality_train;
pub mod read;
pub mod run_folder;
pub mod stats;
pub mod text;
pub mod tokenize;
pub mod verify;

pub use document::{Document, Removal};
pub use tokenize::{EosSpec, SpecialTokensInText, TextTokenizer, TokenizeError};
