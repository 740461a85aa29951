use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use pipeline::config::{DomainConfig, PrepareConfig};
use pipeline::dataset::{self, DatasetOptions, Formats};
use pipeline::dedup::{self, DedupJob};
use pipeline::filter::{FilterChain, FilterConfig};
use pipeline::read::{self, ReadOptions};
use pipeline::stage::{RunIdentity, TaskSlice, claim_output_folder, part_name, run_filter_stage};
use pipeline::{EosSpec, TextTokenizer};

use crate::progress::TextProgress;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    /// Every stage in order.
    All,
    Filter,
    DedupSignatures,
    DedupPairs,
    DedupClusters,
    DedupApply,
    Tokenize,
}

/// Prepare every domain of a config: read, filter, score, deduplicate, tokenize into shards.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain prepare fixtures/prepare.toml
  midtrain prepare big.toml --emit-slurm 64 > prepare.sbatch.sh     # then: bash prepare.sbatch.sh
  midtrain prepare big.toml --stage filter --task 3 --tasks 64     # what one array task runs

Per domain: OUTPUT/NAME/filtered/ (kept/removed parquet parts, stats.json); with [dedup],
OUTPUT/NAME/dedup/ and the shared OUTPUT/_dedup/; with [tokenizer], the dataset itself in
OUTPUT/NAME/: shards NAME_PPPPP_KKKK.bin/.idx, sidecars .docs.parquet, removed.parquet (every
removed document with its step and reason), stats.json and manifest.json (written last).
A rerun resumes (finished input files and stages are skipped; a finished dataset is left alone);
--force redoes. With --task i --tasks n, task i handles input files i, i+n, ...; the stage's
summary is written by whichever task finishes last. See README.md for the config format.")]
pub struct PrepareArgs {
    /// The prepare config (TOML).
    config: PathBuf,
    /// Only this domain (repeatable; dedup and tokenization of deduplicated domains wait for
    /// all of their domains).
    #[arg(long = "domain", value_name = "NAME")]
    domains: Vec<String>,
    #[arg(long, value_enum, default_value = "all")]
    stage: Stage,
    #[command(flatten)]
    split: super::TaskArgs,
    /// Print a Slurm script that runs every stage as job arrays of N tasks, with dependencies.
    #[arg(long, value_name = "N")]
    emit_slurm: Option<usize>,
    /// Redo finished work.
    #[arg(long)]
    force: bool,
    /// Print results as JSON lines.
    #[arg(long)]
    json: bool,
}

struct Run<'a> {
    config: &'a PrepareConfig,
    args: &'a PrepareArgs,
    quiet: bool,
    /// Loaded before the first stage runs, so that a mistake in `[tokenizer]` is found before
    /// hours of filtering rather than after.
    tokenizer: Option<TextTokenizer>,
    /// Per selected domain (config order): its input files and, when this run filters, its
    /// filter chain, built up front for the same reason.
    domains: Vec<(Vec<PathBuf>, Option<FilterChain>)>,
}

impl Run<'_> {
    fn selected(&self) -> impl Iterator<Item = &DomainConfig> {
        selected(self.config, &self.args.domains)
    }

    fn slices(&self) -> Vec<TaskSlice> {
        let tasks = self.args.split.tasks;
        match self.args.split.task {
            Some(task) => vec![TaskSlice { task, tasks }],
            None => (0..tasks).map(|task| TaskSlice { task, tasks }).collect(),
        }
    }

    fn dedup_domains(&self) -> Vec<&str> {
        self.config.dedup.as_ref().map(|d| d.domain_names(&self.config.domains)).unwrap_or_default()
    }
}

pub fn run(args: PrepareArgs, quiet: bool) -> Result<ExitCode> {
    let config = PrepareConfig::load(&args.config)?;
    if let Some(unknown) = args.domains.iter().find(|d| !config.domains.iter().any(|c| &c.name == *d)) {
        bail!("{}: no domain named {unknown:?}", args.config.display());
    }
    args.split.check()?;
    if let Some(n) = args.emit_slurm {
        out!("{}", slurm_script(&args.config, &config, n)?);
        return Ok(ExitCode::SUCCESS);
    }
    let all = args.stage == Stage::All;
    let tokenizer = config.tokenizer.as_ref().map(load_tokenizer).transpose()?;
    let mut domains = Vec::new();
    for domain in selected(&config, &args.domains) {
        let context = || format!("domain {:?}", domain.name);
        let inputs = read::expand_inputs(&domain.inputs).with_context(context)?;
        let chain = if all || args.stage == Stage::Filter {
            let filters =
                domain.filters.iter().map(FilterConfig::build).collect::<Result<_, _>>().with_context(context)?;
            Some(FilterChain::new(filters))
        } else {
            None
        };
        domains.push((inputs, chain));
    }
    let _lock = super::lock_output(&config.output, Some(args.split))?;
    let run = Run { config: &config, args: &args, quiet, tokenizer, domains };
    if all || args.stage == Stage::Filter {
        filter_domains(&run)?;
    }
    if config.dedup.is_some()
        && (all
            || matches!(
                args.stage,
                Stage::DedupSignatures | Stage::DedupPairs | Stage::DedupClusters | Stage::DedupApply
            ))
    {
        run_dedup(&run)?;
    }
    if config.tokenizer.is_some() && (all || args.stage == Stage::Tokenize) {
        tokenize_domains(&run)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The domains `--domain` names (all without it), in config order.
fn selected<'a>(config: &'a PrepareConfig, names: &'a [String]) -> impl Iterator<Item = &'a DomainConfig> {
    config.domains.iter().filter(move |d| names.is_empty() || names.contains(&d.name))
}

fn load_tokenizer(section: &pipeline::config::PrepareTokenizerConfig) -> Result<TextTokenizer> {
    Ok(TextTokenizer::from_file(
        &section.path,
        section.eos.as_deref().map(EosSpec::parse).as_ref(),
        section.bos.as_deref().map(EosSpec::parse).as_ref(),
    )?
    .with_special_tokens_in_text(section.special_tokens_in_text))
}

fn filter_domains(run: &Run<'_>) -> Result<()> {
    let (config, args) = (run.config, run.args);
    for (domain, (inputs, chain)) in run.selected().zip(&run.domains) {
        let chain = chain.as_ref().expect("built for a run that filters");
        let out = config.output.join(&domain.name).join("filtered");
        let identity = RunIdentity {
            stage: "filter".into(),
            inputs: inputs.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
            settings: serde_json::json!({ "domain": domain, "batch_size": config.batch_size, "on_error": config.on_error }),
        };
        claim_output_folder(&out, &identity, args.force)?;
        let options = domain.read_options(config.batch_size, config.on_error);
        let progress = TextProgress::new(&domain.name, run.quiet);
        let mut stats = None;
        for slice in run.slices() {
            stats = run_filter_stage(inputs, &options, chain, &out, slice, &|p| progress.update(p))
                .with_context(|| format!("domain {:?}", domain.name))?;
        }
        progress.finish();
        match stats {
            Some(stats) if args.json => {
                outln!("{}", serde_json::json!({ "domain": domain.name, "stage": "filter", "stats": stats }));
            }
            Some(stats) => {
                outln!("== {} → {}", domain.name, out.display());
                crate::print::print_stage_stats(&stats, false)?;
            }
            None => eprintln!("{}: this task's files are filtered; stats follow when every task is done", domain.name),
        }
    }
    Ok(())
}

/// The dedup job over the filtered documents of the `[dedup]` domains; `None` while a domain is
/// not filtered yet.
fn dedup_job(run: &Run<'_>) -> Result<Option<DedupJob>> {
    let config = run.config;
    let section = config.dedup.as_ref().expect("checked by the caller");
    let mut inputs = Vec::new();
    let mut parts = Vec::new();
    for name in run.dedup_domains() {
        let filtered = config.output.join(name).join("filtered");
        if !filtered.join("stats.json").is_file() {
            eprintln!("dedup waits: domain {name:?} is not filtered yet (every task of the filter stage must finish)");
            return Ok(None);
        }
        let kept = read::expand_inputs(&[filtered.join("kept/*.parquet").to_string_lossy()])?;
        for (i, path) in kept.into_iter().enumerate() {
            inputs.push(path);
            parts.push((config.output.join(name).join("dedup"), part_name(i)));
        }
    }
    let out = config.output.join("_dedup");
    let identity = RunIdentity {
        stage: "dedup".into(),
        inputs: inputs.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
        settings: serde_json::json!({ "dedup": section, "tasks": run.args.split.tasks }),
    };
    let restart = run.args.force && matches!(run.args.stage, Stage::All | Stage::DedupSignatures);
    if restart {
        for (dir, _) in &parts {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    claim_output_folder(&out, &identity, restart)?;
    Ok(Some(DedupJob {
        inputs,
        read: ReadOptions {
            carry: pipeline::document::KNOWN_COLUMNS.to_vec(),
            keep_provenance: true,
            ..ReadOptions::default()
        },
        config: section.resolve().map_err(anyhow::Error::msg)?,
        work: out.join("work"),
        out,
        tasks: run.args.split.tasks,
        parts,
    }))
}

fn run_dedup(run: &Run<'_>) -> Result<()> {
    let Some(job) = dedup_job(run)? else { return Ok(()) };
    let progress = TextProgress::new("dedup", run.quiet);
    let report = |p| progress.update(p);
    let stage = run.args.stage;
    if matches!(stage, Stage::All | Stage::DedupSignatures) {
        for slice in run.slices() {
            dedup::signatures(&job, slice.task, &report)?;
        }
    }
    if matches!(stage, Stage::All | Stage::DedupPairs) {
        dedup::pairs(&job)?;
    }
    if matches!(stage, Stage::All | Stage::DedupClusters) {
        dedup::clusters(&job)?;
    }
    if matches!(stage, Stage::All | Stage::DedupApply) {
        for slice in run.slices() {
            dedup::apply(&job, slice.task, &report)?;
        }
        progress.finish();
        match dedup::finish(&job) {
            Ok((stage_stats, clusters)) => {
                if run.args.json {
                    outln!(
                        "{}",
                        serde_json::json!({ "domains": run.dedup_domains(), "stage": "dedup", "dedup": clusters, "stats": stage_stats })
                    );
                } else {
                    outln!("== dedup over {} → {}", run.dedup_domains().join(", "), job.out.display());
                    outln!(
                        "removed {} exact + {} near duplicates of {} documents in {} clusters",
                        clusters.removed_exact,
                        clusters.removed_near,
                        clusters.documents,
                        clusters.clusters
                    );
                }
            }
            Err(_) => eprintln!("dedup: this task is applied; stats follow when every task is"),
        }
    }
    Ok(())
}

/// Tokenize each selected domain's kept documents into `OUTPUT/NAME` (shards, sidecars,
/// removed.parquet, stats.json, manifest.json last).
fn tokenize_domains(run: &Run<'_>) -> Result<()> {
    let (config, args) = (run.config, run.args);
    let section = config.tokenizer.as_ref().expect("checked by the caller");
    let tokenizer = run.tokenizer.as_ref().expect("loaded with the config");
    if !run.quiet {
        eprintln!("{}", tokenizer.describe());
    }
    let dedup_domains = run.dedup_domains();
    for domain in run.selected() {
        let out = config.output.join(&domain.name);
        let in_dedup = dedup_domains.contains(&domain.name.as_str());
        let (stage, ready) = if in_dedup {
            ("dedup", config.output.join("_dedup/stats.json").is_file())
        } else {
            ("filtered", out.join("filtered/stats.json").is_file())
        };
        if !ready {
            eprintln!("{}: not tokenized yet: its {stage} stage is not finished", domain.name);
            continue;
        }
        let inputs = read::expand_inputs(&[out.join(stage).join("kept/*.parquet").to_string_lossy()])?;
        let options = DatasetOptions {
            domain: domain.name.clone(),
            read: ReadOptions {
                carry: pipeline::document::KNOWN_COLUMNS.to_vec(),
                keep_provenance: true,
                ..ReadOptions::default()
            },
            shard_bytes: section.shard_size_mb << 20,
            formats: Formats::parse(&section.formats).map_err(anyhow::Error::msg)?,
            config: serde_json::json!({ "prepare": config, "domain": domain.name }),
        };
        let identity =
            serde_json::json!({ "config": options.config, "inputs": inputs, "tokenizer": tokenizer.identity() });
        if let Some(m) =
            dataset::claim_dataset_folder(&out, &domain.name, &identity, args.force, &["filtered", "dedup"])?
        {
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({ "domain": domain.name, "stage": "tokenize", "already_prepared": true,
                        "documents": m.documents, "tokens": m.tokens })
                );
            } else {
                outln!("== {}: already prepared ({} documents, {} tokens)", domain.name, m.documents, m.tokens);
            }
            continue;
        }
        let progress = TextProgress::new(&format!("{} tokenize", domain.name), run.quiet);
        let mut parts = None;
        for slice in run.slices() {
            parts = dataset::tokenize_inputs(&inputs, tokenizer, &options, &out, slice, &|p| progress.update(p))
                .with_context(|| format!("domain {:?}", domain.name))?;
        }
        progress.finish();
        let Some(parts) = parts else {
            eprintln!("{}: this task's files are tokenized; the manifest follows when every task is done", domain.name);
            continue;
        };
        finish_dataset(run, domain, &out, in_dedup, &parts, tokenizer, &options)?;
    }
    Ok(())
}

/// removed.parquet, stats.json, then manifest.json.
fn finish_dataset(
    run: &Run<'_>,
    domain: &DomainConfig,
    out: &Path,
    in_dedup: bool,
    parts: &[dataset::PartDone],
    tokenizer: &TextTokenizer,
    options: &DatasetOptions,
) -> Result<()> {
    let glob =
        |sub: &str| read::expand_inputs(&[out.join(sub).join("*.parquet").to_string_lossy()]).unwrap_or_default();
    let mut removed_parts = glob("filtered/removed");
    if in_dedup {
        removed_parts.extend(glob("dedup/removed"));
    }
    removed_parts.extend(glob("removed"));
    let removed = dataset::merge_parquet(&removed_parts, &out.join("removed.parquet"))?;
    let filter_stats: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("filtered/stats.json"))?)?;
    let mut dedup_stats = pipeline::stats::StageStats::default();
    if in_dedup {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(out.join("dedup/stats"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        files.sort();
        for f in files {
            dedup_stats.merge(&serde_json::from_slice(&std::fs::read(&f)?)?);
        }
    }
    let stats = serde_json::json!({
        "filter": filter_stats,
        "dedup": in_dedup.then_some(dedup_stats),
        "tokenize": dataset::tokenize_stats(parts, tokenizer),
        "removed": removed,
    });
    mixtures::fsutil::write_atomic(&out.join("stats.json"), serde_json::to_string_pretty(&stats)?.as_bytes())?;
    let manifest = dataset::write_manifest(parts, tokenizer, options, out)?;
    if run.args.json {
        outln!(
            "{}",
            serde_json::json!({ "domain": domain.name, "stage": "tokenize", "dataset": stats["tokenize"], "removed": removed })
        );
    } else {
        outln!(
            "== {} → {}: {} documents, {} tokens in {} shards; {} removed (removed.parquet)",
            domain.name,
            out.display(),
            manifest.documents,
            manifest.tokens,
            manifest.shards.len(),
            removed
        );
    }
    Ok(())
}

/// A Slurm script: each stage a job array of `tasks` (or one job), chained with afterok.
fn slurm_script(config_path: &Path, config: &PrepareConfig, tasks: usize) -> Result<String> {
    if tasks == 0 {
        bail!("--emit-slurm needs at least 1 task");
    }
    let config_path = std::fs::canonicalize(config_path)?;
    let exe = std::env::current_exe()?;
    let cmd = format!("{} prepare {} --tasks {tasks}", exe.display(), config_path.display());
    let mut stages: Vec<(&str, &str, bool)> = vec![("filter", "filter", true)];
    if config.dedup.is_some() {
        stages.extend([
            ("dedup-sig", "dedup-signatures", true),
            ("dedup-pairs", "dedup-pairs", false),
            ("dedup-clusters", "dedup-clusters", false),
            ("dedup-apply", "dedup-apply", true),
        ]);
    }
    if config.tokenizer.is_some() {
        stages.push(("tokenize", "tokenize", true));
    }
    let mut s = format!(
        "#!/usr/bin/env bash\n\
         # midtrain prepare as Slurm job arrays, generated by `midtrain prepare --emit-slurm {tasks}`.\n\
         # Every stage resumes where it stopped: resubmitting this script after a failure redoes\n\
         # only unfinished files. OUTPUT ({}) must be on a filesystem all nodes share.\n\
         # Edit SBATCH_OPTS to your cluster.\n\
         set -euo pipefail\n\
         SBATCH_OPTS=\"--cpus-per-task=8 --mem=32G --time=24:00:00\"\n\
         mkdir -p logs\n\
         dep=\"\"\n",
        config.output.display()
    );
    for (name, stage, array) in stages {
        let (array_opt, task_opt) = if array {
            (format!(" --array=0-{}", tasks - 1), " --task \\$SLURM_ARRAY_TASK_ID")
        } else {
            (String::new(), "")
        };
        s.push_str(&format!(
            "id=$(sbatch --parsable $SBATCH_OPTS --job-name=midtrain-{name}{array_opt} ${{dep:+--dependency=afterok:$dep}} \\\n    \
             --output=logs/{name}-%A_%a.log --wrap=\"{cmd} --stage {stage}{task_opt} -q\")\n\
             echo \"{name}: job $id\"\n\
             dep=$id\n"
        ));
    }
    Ok(s)
}
