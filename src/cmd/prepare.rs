use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use pipeline::config::PrepareConfig;
use pipeline::filter::{FilterChain, FilterConfig};
use pipeline::read;
use pipeline::stage::{RunIdentity, claim_output_folder, run_filter_stage};

use crate::progress::TextProgress;

/// Prepare every domain of a config: read, filter and score (kept/removed parquet + stats).
#[derive(Args)]
#[command(after_help = "Example:
  midtrain prepare fixtures/prepare.toml

Each domain is written to OUTPUT/NAME/filtered/: kept/part-*.parquet, removed/part-*.parquet and
stats.json. A rerun resumes where it stopped (finished input files are skipped); --force redoes.
See pipeline/src/config.rs or README.md for the config format.")]
pub struct PrepareArgs {
    /// The prepare config (TOML).
    config: PathBuf,
    /// Only this domain (repeatable).
    #[arg(long = "domain", value_name = "NAME")]
    domains: Vec<String>,
    /// Redo finished work.
    #[arg(long)]
    force: bool,
    /// Print each domain's stats as a JSON line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PrepareArgs, quiet: bool) -> Result<ExitCode> {
    let config = PrepareConfig::load(&args.config)?;
    if let Some(unknown) = args.domains.iter().find(|d| !config.domains.iter().any(|c| &c.name == *d)) {
        anyhow::bail!("{}: no domain named {unknown:?}", args.config.display());
    }
    for domain in &config.domains {
        if !args.domains.is_empty() && !args.domains.contains(&domain.name) {
            continue;
        }
        let inputs = read::expand_inputs(&domain.inputs).with_context(|| format!("domain {:?}", domain.name))?;
        let chain = FilterChain::new(
            domain
                .filters
                .iter()
                .map(FilterConfig::build)
                .collect::<Result<_, _>>()
                .with_context(|| format!("domain {:?}", domain.name))?,
        );
        let out = config.output.join(&domain.name).join("filtered");
        let identity = RunIdentity {
            stage: "filter".into(),
            inputs: inputs.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
            settings: serde_json::json!({
                "domain": domain,
                "batch_size": config.batch_size,
                "on_error": config.on_error,
            }),
        };
        claim_output_folder(&out, &identity, args.force)?;
        let options = domain.read_options(config.batch_size, config.on_error);
        let progress = TextProgress::new(&domain.name, quiet);
        let stats = run_filter_stage(&inputs, &options, &chain, &out, &|p| progress.update(p))
            .with_context(|| format!("domain {:?}", domain.name))?;
        progress.finish();
        if !args.json {
            println!("== {} → {}", domain.name, out.display());
        }
        crate::report::print_stage_stats(&stats, args.json);
    }
    Ok(ExitCode::SUCCESS)
}
