//! Checks of a dataset's per-shard companions against the shards themselves, for `midtrain
//! verify`: each sidecar must hold one row per document with that document's token count, and
//! datatrove's `.ds` / `.ds.index` / `.ds.metadata` must hold the same tokens and boundaries as
//! the `.bin` / `.idx`. (The manifest checksums only the Megatron files.)

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use shards::ShardReader;
use shards::manifest::{DatasetManifest, ShardEntry, VerifyFinding};

/// One finding per sidecar and per set of datatrove files of the shards checked (`only`: one
/// shard prefix).
pub fn verify_companions(manifest: &DatasetManifest, dir: &Path, only: Option<&str>) -> Vec<VerifyFinding> {
    let mut findings = Vec::new();
    for entry in manifest.shards.iter().filter(|s| only.is_none_or(|o| o == s.prefix)) {
        let prefix = dir.join(&entry.prefix);
        let Ok(reader) = ShardReader::open(&prefix) else { continue }; // the shard's own check names it
        if let Some(sidecar) = &entry.sidecar {
            let path = dir.join(sidecar);
            let problem = check_sidecar(&path, &reader).err().map(|p| p.to_string());
            findings.push(VerifyFinding { problem, path });
        }
        let ds = with_suffix(&prefix, ".ds");
        let parts = [".ds", ".ds.index", ".ds.metadata"].map(|s| with_suffix(&prefix, s));
        if parts.iter().any(|p| p.exists()) {
            let problem = check_datatrove(&prefix, entry, &reader).err().map(|p| p.to_string());
            findings.push(VerifyFinding { problem, path: ds });
        }
    }
    findings
}

/// How a companion file disagrees with its shard (or cannot be read).
#[derive(Debug, thiserror::Error)]
enum CompanionProblem {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unreadable parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("unreadable parquet: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("no uint64 `tokens` column")]
    NoTokensColumn,
    #[error("more rows than the shard's {0} documents")]
    ExtraRows(usize),
    #[error("row {row} says {says} tokens, the shard's document has {has}")]
    RowTokens { row: usize, says: u64, has: u64 },
    #[error("{rows} rows for the shard's {documents} documents (truncated?)")]
    MissingRows { rows: usize, documents: usize },
    #[error("{suffix}: {source}")]
    Part { suffix: &'static str, source: std::io::Error },
    #[error(".ds.metadata is not text")]
    MetadataNotText,
    #[error(".ds.metadata: no token size (2 or 4) on its first line")]
    NoTokenSize,
    #[error("{bytes} bytes for {tokens} tokens of {token_size} bytes")]
    TokenBytes { bytes: usize, tokens: u64, token_size: usize },
    #[error(".ds.index holds {bytes} bytes for {documents} documents")]
    IndexBytes { bytes: usize, documents: usize },
    #[error(".ds.index: document {doc} ends at {recorded}, the shard says {end}")]
    DocumentEnd { doc: usize, recorded: u64, end: u64 },
    #[error("token {i} of document {doc} is {got}, the shard holds {id}")]
    Token { i: usize, doc: usize, got: u32, id: u32 },
    #[error(transparent)]
    Shard(#[from] shards::ShardError),
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn check_sidecar(path: &Path, reader: &ShardReader) -> Result<(), CompanionProblem> {
    let file = File::open(path)?;
    let batches = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let documents = reader.num_documents();
    let mut row = 0usize;
    for batch in batches {
        let batch = batch?;
        let tokens = batch
            .column_by_name("tokens")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or(CompanionProblem::NoTokensColumn)?;
        for i in 0..tokens.len() {
            if row >= documents {
                return Err(CompanionProblem::ExtraRows(documents));
            }
            let has = reader.document_len(row) as u64;
            if tokens.is_null(i) || tokens.value(i) != has {
                return Err(CompanionProblem::RowTokens { row, says: tokens.value(i), has });
            }
            row += 1;
        }
    }
    if row != documents {
        return Err(CompanionProblem::MissingRows { rows: row, documents });
    }
    Ok(())
}

fn check_datatrove(prefix: &Path, entry: &ShardEntry, reader: &ShardReader) -> Result<(), CompanionProblem> {
    let read = |suffix: &'static str| {
        std::fs::read(with_suffix(prefix, suffix)).map_err(|source| CompanionProblem::Part { suffix, source })
    };
    let metadata = String::from_utf8(read(".ds.metadata")?).map_err(|_| CompanionProblem::MetadataNotText)?;
    let token_size: usize = metadata
        .lines()
        .next()
        .and_then(|l| l.rsplit('|').next())
        .and_then(|s| s.trim().parse().ok())
        .filter(|s| *s == 2 || *s == 4)
        .ok_or(CompanionProblem::NoTokenSize)?;
    let tokens = read(".ds")?;
    if tokens.len() as u64 != entry.tokens * token_size as u64 {
        return Err(CompanionProblem::TokenBytes { bytes: tokens.len(), tokens: entry.tokens, token_size });
    }
    let index = read(".ds.index")?;
    let documents = reader.num_documents();
    if index.len() != documents * 8 {
        return Err(CompanionProblem::IndexBytes { bytes: index.len(), documents });
    }
    let mut end = 0u64;
    for d in 0..documents {
        let doc = reader.document(d)?;
        let start = end as usize;
        end += doc.len() as u64;
        let recorded = u64::from_le_bytes(index[d * 8..d * 8 + 8].try_into().expect("8 bytes"));
        if recorded != end {
            return Err(CompanionProblem::DocumentEnd { doc: d, recorded, end });
        }
        for (i, id) in doc.iter().enumerate() {
            let at = (start + i) * token_size;
            let got = if token_size == 2 {
                u16::from_le_bytes([tokens[at], tokens[at + 1]]) as u32
            } else {
                u32::from_le_bytes(tokens[at..at + 4].try_into().expect("4 bytes"))
            };
            if got != id {
                return Err(CompanionProblem::Token { i, doc: d, got, id });
            }
        }
    }
    Ok(())
}
