use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use shards::DatasetManifest;
use shards::shard::strip_shard_extension;

/// Check a dataset against its manifest: checksums, counts, sidecars and datatrove files.
///
/// Recomputes the checksums and counts of the shards, checks the manifest against itself
/// (totals, dtype, every id inside the vocabulary, EOS at every document's end, no shard
/// twice), and each sidecar and datatrove file against its shard.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain verify fixtures/shards/web              # every shard of a dataset
  midtrain verify fixtures/shards/web/web_00000    # one shard, against its folder's manifest.json
Exits with status 1 when anything differs.")]
pub struct VerifyArgs {
    /// A dataset folder, or a shard prefix inside one.
    path: PathBuf,
    /// Print one JSON object per checked file.
    #[arg(long)]
    json: bool,
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let (dir, only) = if args.path.is_dir() {
        (args.path.clone(), None)
    } else {
        let prefix = strip_shard_extension(&args.path);
        let (bin, idx) = shards::shard::shard_paths(&prefix);
        if !bin.exists() && !idx.exists() {
            bail!(
                "{}: neither a dataset folder nor a shard (no {} or {})",
                args.path.display(),
                bin.display(),
                idx.display()
            );
        }
        let dir = prefix.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let name = prefix.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (dir, Some(name))
    };
    let manifest = DatasetManifest::load(if dir.as_os_str().is_empty() { ".".as_ref() } else { &dir })?;
    if let Some(name) = &only
        && !manifest.shards.iter().any(|s| &s.prefix == name)
    {
        bail!("{}: the manifest in {} lists no shard named {name}", args.path.display(), dir.display());
    }
    let mut findings = manifest.verify_shards(&dir, only.as_deref());
    findings.extend(pipeline::verify_companions(&manifest, &dir, only.as_deref()));
    let checked = only.as_ref().map_or(manifest.shards.len(), |_| 1);
    let failed = findings.iter().filter(|f| f.problem.is_some()).count();
    for f in &findings {
        if args.json {
            outln!("{}", serde_json::json!({ "path": f.path, "ok": f.problem.is_none(), "problem": f.problem }));
        } else if let Some(problem) = &f.problem {
            outln!("MISMATCH  {}: {problem}", f.path.display());
        } else {
            outln!("ok        {}", f.path.display());
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} checks failed in {}", findings.len(), dir.display());
        return Ok(ExitCode::from(1));
    }
    if !args.json {
        eprintln!("{checked} shards verified in {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
