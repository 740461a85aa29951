use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use pipeline::filter::{FilterChain, FilterConfig};
use pipeline::read::{self, Predicate, ReadOptions};
use pipeline::run_folder::Parts;
use pipeline::run_folder::{Folder, RunIdentity, TaskSlice};
use pipeline::{finish_filter_stage, run_filter_stage};

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
    let options = ReadOptions {
        predicate: args.where_.as_deref().map(Predicate::parse).transpose()?,
        batch_size: args.run.batch_size,
        ..args.input.read_options()?
    };
    let settings = serde_json::json!({
        "filters": configs,
        "input": args.input.settings()?,
        "where": args.where_,
        "batch_size": args.run.batch_size,
    });
    let stage =
        FilterStage { name: "filter", inputs, configs, options, settings, out: args.out, slice: TaskSlice::ALL };
    stage.run(&args.run, quiet)
}

/// One filter stage run from the command line: `filter`, and `decontaminate` (one filter).
pub struct FilterStage {
    pub name: &'static str,
    pub inputs: Vec<PathBuf>,
    pub configs: Vec<FilterConfig>,
    pub options: ReadOptions,
    /// What the run's identity holds besides its inputs.
    pub settings: serde_json::Value,
    pub out: PathBuf,
    pub slice: TaskSlice,
}

impl FilterStage {
    /// Claim OUT, filter this task's parts, and print the stats once every part is done.
    pub fn run(self, run: &super::RunArgs, quiet: bool) -> Result<ExitCode> {
        let chain = FilterChain::new(self.configs.iter().map(FilterConfig::build).collect::<Result<_, _>>()?);
        let split = (self.slice.tasks > 1).then_some(self.slice.task);
        let _lock = util::fsutil::FolderLock::for_run(&self.out, split, self.slice.tasks)?;
        let mut settings = self.settings;
        pipeline::filter::add_file_checksums(&mut settings, &self.configs)?;
        Folder::stage(&self.out).claim(&RunIdentity::new(self.name, &self.inputs, settings), run.force)?;
        if !quiet {
            chain.notes().iter().for_each(|line| eprintln!("{line}"));
        }
        let progress = TextProgress::new(self.name, quiet);
        run_filter_stage(&self.inputs, &self.options, &chain, &self.out, self.slice, &|p| {
            crate::failpoint::after_batch();
            progress.update(p)
        })
        .with_context(|| format!("{} into {}", self.name, self.out.display()))?;
        progress.finish();
        // This task's parts are written before it looks at the others', so of tasks that end
        // together the last to look sees every part: some task always writes the summary.
        match finish_filter_stage(self.inputs.len(), &chain, &self.out)? {
            Parts::Complete(stats) => crate::print::print_stage_stats(&stats, run.json)?,
            Parts::Missing(_) => eprintln!(
                "task {} of {} done; stats.json follows when every task is done",
                self.slice.task, self.slice.tasks
            ),
        }
        Ok(ExitCode::SUCCESS)
    }
}
