//! `mixtures`: the shared vocabulary of token data.
//!
//! Token shards in Megatron-LM's MMIDIDX v1 format ([`shard`]), the dataset manifest that lists
//! them ([`manifest`]), opening a dataset or shard ([`dataset`]), length statistics ([`stats`]),
//! and the atomic-write and checksum helpers every writer uses ([`fsutil`]).

#[cfg(feature = "audit")]
pub mod audit;
pub mod build;
pub mod dataset;
pub mod fsutil;
pub mod html;
pub mod manifest;
pub mod plan;
pub mod recipe;
#[cfg(feature = "audit")]
pub mod report;
pub mod rng;
pub mod shard;
pub mod stats;

pub use dataset::TokenSource;
pub use manifest::{DatasetManifest, ShardEntry, TokenizerIdentity};
pub use shard::{ShardError, ShardReader, ShardWriter, TokenDtype, Tokens};

/// The version of midtrain that wrote an artefact, recorded in manifests.
pub const MIDTRAIN_VERSION: &str = env!("CARGO_PKG_VERSION");
