use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use pipeline::TextTokenizer;
use serde_json::json;
use shards::TokenSource;
use shards::lengths::LengthHistogram;

/// Show what a dataset folder or a single shard holds.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain inspect fixtures/shards/web            # a dataset folder (with manifest.json)
  midtrain inspect fixtures/shards/web/web_00000  # one shard prefix (.bin/.idx)
  midtrain inspect fixtures/shards/web --json
  midtrain inspect fixtures/shards/web --dump 3 --tokenizer fixtures/tokenizer.json")]
pub struct InspectArgs {
    /// A dataset folder (holding manifest.json) or a shard prefix (PREFIX.bin + PREFIX.idx).
    path: PathBuf,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print the token ids of the first N documents as JSON lines {"doc": i, "tokens": [...]}.
    #[arg(long, value_name = "N")]
    dump: Option<usize>,
    /// With --dump, also decode each document with this tokenizer.json ("text" field).
    #[arg(long, value_name = "FILE", requires = "dump")]
    tokenizer: Option<PathBuf>,
}

pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let source = TokenSource::open(&args.path)?;
    if let Some(n) = args.dump {
        dump(&source, n, args.tokenizer.as_deref())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut lengths = LengthHistogram::default();
    for doc in source.documents_iter() {
        lengths.add(doc.len() as u64);
    }
    let dtype = source.dtype().map(|d| d.name());
    let mut summary = json!({
        "path": source.path,
        "kind": if source.is_dataset() { "dataset" } else { "shard" },
        "documents": source.documents(),
        "tokens": source.tokens(),
        "dtype": dtype,
        "shards": source.shards.len(),
        "document_length": lengths.summary(),
    });
    if let Some(m) = &source.manifest {
        summary["domain"] = json!(m.domain);
        summary["tokenizer"] = json!(m.tokenizer);
        summary["midtrain_version"] = json!(m.midtrain_version);
    }
    if args.json {
        outln!("{summary}");
        return Ok(ExitCode::SUCCESS);
    }
    outln!("path        {}", source.path.display());
    outln!("kind        {}", summary["kind"].as_str().unwrap_or_default());
    if let Some(m) = &source.manifest {
        outln!("domain      {}", m.domain);
        outln!(
            "tokenizer   vocab {} · eos {} · {}",
            m.tokenizer.vocab_size,
            m.tokenizer.eos_id,
            m.tokenizer.content_hash
        );
    }
    outln!("shards      {}", source.shards.len());
    outln!("documents   {}", source.documents());
    outln!("tokens      {}", source.tokens());
    outln!("dtype       {}", dtype.unwrap_or("-"));
    if let Some(s) = lengths.summary() {
        outln!(
            "doc length  mean {:.1} · min {} · p10 {} · p50 {} · p90 {} · p99 {} · max {}",
            s.mean,
            s.min,
            s.p10,
            s.p50,
            s.p90,
            s.p99,
            s.max
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn dump(source: &TokenSource, n: usize, tokenizer: Option<&std::path::Path>) -> Result<()> {
    let tokenizer = tokenizer.map(TextTokenizer::for_decoding).transpose()?;
    if let (Some(t), Some(m)) = (&tokenizer, &source.manifest)
        && t.identity().content_hash != m.tokenizer.content_hash
    {
        tracing::warn!(
            "{} is not the tokenizer this dataset was made with (hash {} vs {}): decoded text may be wrong",
            t.path().display(),
            t.identity().content_hash,
            m.tokenizer.content_hash
        );
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for (i, doc) in source.documents_iter().take(n).enumerate() {
        let tokens = doc.to_vec();
        let mut line = json!({ "doc": i, "tokens": tokens });
        if let Some(t) = &tokenizer {
            line["text"] = json!(t.decode(&tokens).with_context(|| format!("decoding document {i}"))?);
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
