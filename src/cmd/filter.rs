use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use pipeline::filter::{FilterChain, FilterConfig};
use pipeline::read::{self, Predicate, ReadOptions};
use pipeline::run_filter_stage;
use pipeline::run_folder::{Folder, RunIdentity, TaskSlice};

use crate::progress::TextProgress;

/// Run heuristic filters over parquet/jsonl files, with no config file.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain filter fixtures/dumps/web.parquet --filters gopher_quality,fineweb_quality --out out/filtered
  midtrain filter 'dumps/*.jsonl.zst' --filters c4_quality --c4-terminal-punct false --out out/c4
  midtrain filter data.parquet --text-column content --where 'lang in [\"Python\"]' --filters gopher_repetition --out out/code

Writes OUT/kept/part-*.parquet (kept documents), OUT/removed/part-*.parquet (id, source, row,
step, reason) and OUT/stats.json. Filters: gopher_quality, gopher_repetition, c4_quality,
fineweb_quality (datatrove defaults); language, quality, url_blocklist and length need a
prepare config.")]
pub struct FilterArgs {
    /// Input files or glob patterns (.parquet, .jsonl, .jsonl.gz, .jsonl.zst).
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Comma-separated filters, run in this order.
    #[arg(long, value_delimiter = ',', required = true)]
    filters: Vec<String>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    input: super::InputArgs,
    /// Keep only rows matching this predicate, e.g. "language_score > 0.9 and int_score >= 3".
    #[arg(long = "where", value_name = "EXPR")]
    where_: Option<String>,
    /// C4: drop lines without terminal punctuation (FineWeb turns this off).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    c4_terminal_punct: bool,
    #[command(flatten)]
    run: super::RunArgs,
}

pub fn run(args: FilterArgs, quiet: bool) -> Result<ExitCode> {
    let inputs = read::expand_inputs(&args.inputs)?;
    let mut configs = Vec::new();
    for name in &args.filters {
        let mut config = FilterConfig::by_name(name.trim())?;
        if let FilterConfig::C4Quality(c) = &mut config {
            c.terminal_punct = args.c4_terminal_punct;
        }
        configs.push(config);
    }
    if args.run.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let chain = FilterChain::new(configs.iter().map(FilterConfig::build).collect::<Result<_, _>>()?);
    let options = ReadOptions {
        predicate: args.where_.as_deref().map(Predicate::parse).transpose()?,
        batch_size: args.run.batch_size,
        ..args.input.read_options()
    };
    let settings = serde_json::json!({
        "filters": configs,
        "input": args.input.settings(),
        "where": args.where_,
        "batch_size": args.run.batch_size,
    });
    let _lock = util::fsutil::FolderLock::for_run(&args.out, None, 1)?;
    Folder::stage(&args.out).claim(&RunIdentity::new("filter", &inputs, settings), args.run.force)?;
    let progress = TextProgress::new("filter", quiet);
    let stats = run_filter_stage(&inputs, &options, &chain, &args.out, TaskSlice::ALL, &|p| {
        crate::failpoint::after_batch();
        progress.update(p)
    })
    .with_context(|| format!("filtering into {}", args.out.display()))?
    .expect("one task owns every part");
    progress.finish();
    crate::print::print_stage_stats(&stats, args.run.json)?;
    Ok(ExitCode::SUCCESS)
}
