//! One module per subcommand: argument definitions and output formatting.

pub mod dedup;
pub mod filter;
pub mod inspect;
pub mod prepare;
pub mod quality;
pub mod tokenize;
pub mod verify;
