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
            findings.push(VerifyFinding { problem: sidecar_problem(&path, &reader).err(), path });
        }
        let ds = with_suffix(&prefix, ".ds");
        let parts = [".ds", ".ds.index", ".ds.metadata"].map(|s| with_suffix(&prefix, s));
        if parts.iter().any(|p| p.exists()) {
            findings.push(VerifyFinding { problem: datatrove_problem(&prefix, entry, &reader).err(), path: ds });
        }
    }
    findings
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn sidecar_problem(path: &Path, reader: &ShardReader) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let batches = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("unreadable parquet: {e}"))?;
    let mut row = 0usize;
    for batch in batches {
        let batch = batch.map_err(|e| format!("unreadable parquet: {e}"))?;
        let tokens = batch
            .column_by_name("tokens")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or("no uint64 `tokens` column")?;
        for i in 0..tokens.len() {
            if row >= reader.num_documents() {
                return Err(format!("more rows than the shard's {} documents", reader.num_documents()));
            }
            let expected = reader.document_len(row) as u64;
            if tokens.is_null(i) || tokens.value(i) != expected {
                return Err(format!("row {row} says {} tokens, the shard's document has {expected}", tokens.value(i)));
            }
            row += 1;
        }
    }
    if row != reader.num_documents() {
        return Err(format!("{row} rows for the shard's {} documents (truncated?)", reader.num_documents()));
    }
    Ok(())
}

fn datatrove_problem(prefix: &Path, entry: &ShardEntry, reader: &ShardReader) -> Result<(), String> {
    let read = |suffix: &str| std::fs::read(with_suffix(prefix, suffix)).map_err(|e| format!("{suffix}: {e}"));
    let metadata = String::from_utf8(read(".ds.metadata")?).map_err(|_| ".ds.metadata is not text".to_string())?;
    let token_size: usize = metadata
        .lines()
        .next()
        .and_then(|l| l.rsplit('|').next())
        .and_then(|s| s.trim().parse().ok())
        .filter(|s| *s == 2 || *s == 4)
        .ok_or(".ds.metadata: no token size (2 or 4) on its first line")?;
    let tokens = read(".ds")?;
    if tokens.len() as u64 != entry.tokens * token_size as u64 {
        return Err(format!("{} bytes for {} tokens of {token_size} bytes", tokens.len(), entry.tokens));
    }
    let index = read(".ds.index")?;
    if index.len() != reader.num_documents() * 8 {
        return Err(format!(".ds.index holds {} bytes for {} documents", index.len(), reader.num_documents()));
    }
    let mut end = 0u64;
    for d in 0..reader.num_documents() {
        let doc = reader.document(d).map_err(|e| e.to_string())?;
        let start = end as usize;
        end += doc.len() as u64;
        let recorded = u64::from_le_bytes(index[d * 8..d * 8 + 8].try_into().expect("8 bytes"));
        if recorded != end {
            return Err(format!(".ds.index: document {d} ends at {recorded}, the shard says {end}"));
        }
        for (i, id) in doc.iter().enumerate() {
            let at = (start + i) * token_size;
            let got = if token_size == 2 {
                u16::from_le_bytes([tokens[at], tokens[at + 1]]) as u32
            } else {
                u32::from_le_bytes(tokens[at..at + 4].try_into().expect("4 bytes"))
            };
            if got != id {
                return Err(format!("token {i} of document {d} is {got}, the shard holds {id}"));
            }
        }
    }
    Ok(())
}
