//! One module per subcommand: argument definitions and output formatting.

pub mod inspect;
pub mod verify;
