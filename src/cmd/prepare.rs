use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use pipeline::config::PrepareConfig;
use pipeline::dedup::{self, DedupJob};
use pipeline::filter::{FilterChain, FilterConfig};
use pipeline::read::{self, ReadOptions};
use pipeline::stage::{RunIdentity, claim_output_folder, run_filter_stage};

use crate::progress::TextProgress;

/// Prepare every domain of a config: read, filter, score, deduplicate.
#[derive(Args)]
#[command(after_help = "Example:
  midtrain prepare fixtures/prepare.toml

Each domain is written to OUTPUT/NAME/filtered/ (kept/part-*.parquet, removed/part-*.parquet,
stats.json); with a [dedup] section, one dedup run covers the kept documents of its domains
(duplicates across domains count) and writes OUTPUT/NAME/dedup/ per domain, with the shared work
folder and stats in OUTPUT/_dedup/. A rerun resumes where it stopped (finished input files and
stages are skipped); --force redoes. See README.md for the config format.")]
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
    if config.dedup.is_some() {
        run_dedup(&config, &args, quiet)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One dedup run over the filtered documents of the `[dedup]` domains.
fn run_dedup(config: &PrepareConfig, args: &PrepareArgs, quiet: bool) -> Result<()> {
    let section = config.dedup.as_ref().expect("checked by the caller");
    let dedup_config = section.resolve().map_err(anyhow::Error::msg)?;
    let mut inputs = Vec::new();
    let mut parts = Vec::new();
    for name in section.domain_names(&config.domains) {
        let filtered = config.output.join(name).join("filtered");
        if !filtered.join("stats.json").is_file() {
            eprintln!("dedup skipped: domain {name:?} has not been filtered yet (run prepare without --domain)");
            return Ok(());
        }
        let mut kept = read::expand_inputs(&[filtered.join("kept/*.parquet").to_string_lossy()])?;
        kept.sort();
        for (i, path) in kept.into_iter().enumerate() {
            inputs.push(path);
            parts.push((config.output.join(name).join("dedup"), pipeline::stage::part_name(i)));
        }
    }
    let out = config.output.join("_dedup");
    let identity = RunIdentity {
        stage: "dedup".into(),
        inputs: inputs.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
        settings: serde_json::json!({ "dedup": section }),
    };
    if args.force {
        for (dir, _) in &parts {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    claim_output_folder(&out, &identity, args.force)?;
    let job = DedupJob {
        inputs,
        read: ReadOptions { carry: pipeline::document::KNOWN_COLUMNS.to_vec(), ..ReadOptions::default() },
        config: dedup_config,
        work: out.join("work"),
        out: out.clone(),
        tasks: 1,
        parts,
    };
    let progress = TextProgress::new("dedup", quiet);
    let (stage, clusters) = dedup::run_all(&job, &|p| progress.update(p)).context("dedup")?;
    progress.finish();
    if args.json {
        println!("{}", serde_json::json!({ "dedup": clusters, "stage": stage }));
    } else {
        println!("== dedup over {} → {}", section.domain_names(&config.domains).join(", "), out.display());
        println!(
            "removed {} exact + {} near duplicates of {} documents in {} clusters",
            clusters.removed_exact, clusters.removed_near, clusters.documents, clusters.clusters
        );
    }
    Ok(())
}
