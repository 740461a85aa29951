//! `shards`: token data on disk. Shards in Megatron-LM's MMIDIDX v1 format ([`shard`]), the
//! dataset manifest that lists and checks them ([`manifest`]), opening a dataset folder or one
//! shard for reading ([`source`]), and document-length statistics ([`lengths`]).

pub mod lengths;
pub mod manifest;
pub mod shard;
pub mod source;

pub use manifest::{DatasetManifest, ShardEntry, TokenizerIdentity};
pub use shard::{ShardError, ShardReader, ShardWriter, TokenDtype, Tokens};
pub use source::TokenSource;

/// The version of midtrain that wrote an artefact, recorded in manifests.
pub const MIDTRAIN_VERSION: &str = env!("CARGO_PKG_VERSION");
