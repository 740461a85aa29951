//! Text primitives shared by the filters and dedup: Python string semantics ([`python`]),
//! datatrove's punctuation sets ([`punctuation`]), spaCy-compatible English word splitting
//! ([`words`]) and sentence counting ([`sentences`]).

pub mod punctuation;
pub mod python;
pub mod sentences;
pub mod words;
