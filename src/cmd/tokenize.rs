use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use pipeline::dataset::{self, DatasetOptions, Formats, OutputFormat};
use pipeline::read::{self, ReadOptions};
use pipeline::run_folder::TaskSlice;
use pipeline::{EosSpec, SpecialTokensInText, TextTokenizer};

use crate::progress::TextProgress;

/// Tokenize parquet/jsonl text into a dataset (Megatron shards, sidecars, manifest), no filtering.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain tokenize fixtures/dumps/math.parquet --tokenizer fixtures/tokenizer.json --out out/math
  midtrain tokenize 'code/*.parquet' --text-column content --tokenizer tokenizer.json --eos '</s>' --out out/code
  midtrain tokenize data.jsonl.zst --tokenizer tokenizer.json --formats megatron,datatrove --out out/d

Writes OUT/NAME_PPPPP_KKKK.bin/.idx (one or more shards per input file), a sidecar
NAME_PPPPP_KKKK.docs.parquet per shard (id, source, row, domain, tokens, bytes), stats.json and,
last, manifest.json. NAME is --domain or OUT's folder name. A rerun resumes; a finished dataset is
left as it is; --force redoes.")]
pub struct TokenizeArgs {
    /// Input files or glob patterns (.parquet, .jsonl, .jsonl.gz, .jsonl.zst).
    #[arg(required = true)]
    inputs: Vec<String>,
    /// A Hugging Face tokenizer.json.
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// End-of-document token (string or id); default: the first of <|endoftext|>, <|end_of_text|>,
    /// </s>, <eos>, <|im_end|>, [SEP] in the vocabulary.
    #[arg(long)]
    eos: Option<String>,
    /// Beginning-of-document token (string or id) to put before each document.
    #[arg(long)]
    bos: Option<String>,
    /// Dataset (domain) name, used in shard names and the manifest.
    #[arg(long)]
    domain: Option<String>,
    #[command(flatten)]
    input: super::InputArgs,
    /// Target size of a shard's .bin, in MiB.
    #[arg(long, default_value_t = pipeline::config::default_shard_size_mb())]
    shard_size_mb: u64,
    /// Comma-separated: megatron (always), datatrove (.ds + .ds.index too).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "megatron")]
    formats: Vec<OutputFormat>,
    /// What a special token's literal string inside a document becomes: split (encoded as
    /// text), keep (the special id) or error.
    #[arg(long, value_enum, default_value_t = SpecialTokensInText::Split)]
    special_tokens_in_text: SpecialTokensInText,
    #[command(flatten)]
    run: super::RunArgs,
}

pub fn run(args: TokenizeArgs, quiet: bool) -> Result<ExitCode> {
    let inputs = read::expand_inputs(&args.inputs)?;
    let tokenizer = TextTokenizer::from_file(
        &args.tokenizer,
        args.eos.as_deref().map(EosSpec::parse).as_ref(),
        args.bos.as_deref().map(EosSpec::parse).as_ref(),
    )?
    .with_special_tokens_in_text(args.special_tokens_in_text);
    let formats = Formats::from_list(&args.formats)?;
    let domain = match &args.domain {
        Some(d) => d.clone(),
        None => args.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    if domain.is_empty() || domain.contains(['/', '\\']) {
        bail!("cannot name the dataset after {}: pass --domain NAME", args.out.display());
    }
    if args.run.batch_size == 0 || args.shard_size_mb == 0 {
        bail!("--batch-size and --shard-size-mb must be at least 1");
    }
    let config = serde_json::json!({
        "command": "tokenize",
        "inputs": inputs,
        "tokenizer": args.tokenizer,
        "input": args.input.settings()?,
        "shard_size_mb": args.shard_size_mb,
        "formats": args.formats,
        "special_tokens_in_text": args.special_tokens_in_text,
    });
    let options = DatasetOptions {
        domain: domain.clone(),
        read: ReadOptions {
            batch_size: args.run.batch_size,
            carry: pipeline::KNOWN_COLUMNS.to_vec(),
            keep_provenance: true,
            ..args.input.read_options()?
        },
        shard_bytes: args.shard_size_mb << 20,
        formats,
        chat: args.input.chat(),
        config: config.clone(),
    };
    let identity = serde_json::json!({ "config": config, "tokenizer": tokenizer.identity(), "domain": domain });
    let _lock = util::fsutil::FolderLock::for_run(&args.out, None, 1)?;
    if let Some(m) = dataset::claim_dataset_folder(&args.out, &domain, &identity, args.run.force, &[])? {
        if args.run.json {
            outln!("{}", serde_json::json!({ "already_prepared": true, "documents": m.documents, "tokens": m.tokens }));
        } else {
            eprintln!("{}: already finished ({} documents); --force redoes it", args.out.display(), m.documents);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !quiet {
        eprintln!("{}", tokenizer.describe());
    }
    let progress = TextProgress::new("tokenize", quiet);
    dataset::tokenize_inputs(&inputs, &tokenizer, &options, &args.out, TaskSlice::ALL, &|p| {
        crate::failpoint::after_batch();
        progress.update(p)
    })
    .with_context(|| format!("tokenizing into {}", args.out.display()))?;
    let parts = match dataset::finished_parts(inputs.len(), &args.out) {
        pipeline::run_folder::Parts::Complete(parts) => parts,
        pipeline::run_folder::Parts::Missing(m) => anyhow::bail!("unreadable part markers: {}", m.join(", ")),
    };
    progress.finish();
    let removed_parts: Vec<PathBuf> = (0..inputs.len())
        .map(|i| args.out.join("removed").join(format!("{}.parquet", pipeline::run_folder::part_name(i))))
        .collect();
    let removed = dataset::merge_parquet(&removed_parts, &args.out.join("removed.parquet"))?;
    let mut stats = dataset::tokenize_stats(&parts, &tokenizer, &options);
    stats["removed"] = removed.into();
    util::fsutil::write_atomic(&args.out.join("stats.json"), serde_json::to_string_pretty(&stats)?.as_bytes())?;
    let manifest = dataset::write_manifest(&parts, &tokenizer, &options, &args.out)?;
    if args.run.json {
        outln!("{stats}");
    } else {
        outln!(
            "{}: {} documents, {} tokens in {} shards ({}), {} rows removed",
            args.out.display(),
            manifest.documents,
            manifest.tokens,
            manifest.shards.len(),
            manifest.dtype.name(),
            removed
        );
    }
    Ok(ExitCode::SUCCESS)
}
