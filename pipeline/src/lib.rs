//! `pipeline`: everything `midtrain prepare` does to text before it becomes token shards —
//! reading dumps ([`read`]), filtering, deduplication, quality scoring — and the tokenizer that
//! turns kept documents into token ids ([`tokenize`]).

pub mod document;
pub mod read;
pub mod tokenize;

pub use document::{Document, Removal};
pub use tokenize::{EosSpec, TextTokenizer, TokenizeError};
