//! `midtrain prepare`: parse, run [`pipeline::prepare`], print its outcomes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use pipeline::config::PrepareConfig;
use pipeline::prepare::{
    DatasetDone, Observer, Outcome, Part, Prepare, SlurmOptions, Stage, StepOutcome, Waiting, slurm_script,
};
use pipeline::run_folder::Progress;

use crate::progress::TextProgress;

/// Prepare every domain of a config: read, filter, score, deduplicate, tokenize into shards.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain prepare fixtures/prepare.toml
  midtrain prepare big.toml --emit-slurm 64 > prepare.sbatch.sh     # then: bash prepare.sbatch.sh
  midtrain prepare big.toml --stage filter --task 3 --tasks 64     # what one array task runs
  midtrain prepare big.toml --stage filter --tasks 64 --finalize   # the job after the array

Per domain: OUTPUT/NAME/filtered/ (kept/removed parquet parts, stats.json); with [dedup],
OUTPUT/NAME/dedup/ and the shared OUTPUT/_dedup/; with [tokenizer], the dataset itself in
OUTPUT/NAME/: shards NAME_PPPPP_KKKK.bin/.idx, sidecars .docs.parquet, removed.parquet (every
removed document with its step and reason), stats.json and manifest.json (written last).
A rerun resumes (finished input files and stages are skipped; a finished dataset is left alone);
--force redoes. With --stage S --task i --tasks n, task i handles input files i, i+n, ...; then
`--stage S --tasks n --finalize` writes the stage's summary, or fails naming the parts missing.
Exits 3 when a stage waits for an earlier one. See README.md for the config format.")]
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
    /// Write only the stage's summary (stats.json, the dataset's manifest.json) from the done
    /// tasks' parts; fails naming the parts still missing. With --stage filter, dedup-apply or
    /// tokenize: what the job after each array runs.
    #[arg(long, conflicts_with = "task")]
    finalize: bool,
    /// Print a Slurm script that runs every stage as job arrays of N tasks, with dependencies
    /// (each array followed by its --finalize job; resources from the --slurm-* options).
    #[arg(long, value_name = "N")]
    emit_slurm: Option<usize>,
    /// CPUs per Slurm task (the script's --cpus-per-task).
    #[arg(long, value_name = "N", default_value_t = SlurmOptions::default().cpus)]
    slurm_cpus: usize,
    /// Memory per Slurm task (--mem).
    #[arg(long, value_name = "SIZE", default_value_t = SlurmOptions::default().mem)]
    slurm_mem: String,
    /// Time limit per Slurm job (--time).
    #[arg(long, value_name = "TIME", default_value_t = SlurmOptions::default().time)]
    slurm_time: String,
    /// The Slurm partition every job runs in (--partition); default: the cluster's.
    #[arg(long, value_name = "NAME")]
    slurm_partition: Option<String>,
    /// Any other sbatch option, for every job (repeatable): --slurm-arg=--account=lab.
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    slurm_arg: Vec<String>,
    /// The cluster's MaxArraySize: larger task counts are cut into several arrays.
    #[arg(long, value_name = "N", default_value_t = SlurmOptions::default().max_array_size)]
    slurm_max_array_size: usize,
    /// At most K tasks of an array run at once (the array's %K).
    #[arg(long, value_name = "K")]
    slurm_throttle: Option<usize>,
    /// Redo finished work.
    #[arg(long)]
    force: bool,
    /// Print results as JSON lines.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PrepareArgs, quiet: bool) -> Result<ExitCode> {
    let config = PrepareConfig::load(&args.config)?;
    let in_config = || format!("{}", args.config.display());
    if let Some(n) = args.emit_slurm {
        let exe = std::env::current_exe().context("cannot find the midtrain binary for the script")?;
        let config_path = std::fs::canonicalize(&args.config).with_context(in_config)?;
        let slurm = SlurmOptions {
            cpus: args.slurm_cpus,
            mem: args.slurm_mem,
            time: args.slurm_time,
            partition: args.slurm_partition,
            extra: args.slurm_arg,
            max_array_size: args.slurm_max_array_size,
            throttle: args.slurm_throttle,
        };
        out!("{}", slurm_script(&exe, &config_path, &config, n, &slurm)?);
        return Ok(ExitCode::SUCCESS);
    }
    let part = match (args.split.task, args.finalize) {
        (Some(task), _) => Part::Task(task),
        (None, true) => Part::Finalize,
        (None, false) => Part::All,
    };
    let prepare =
        Prepare::new(&config, &args.domains, args.stage, part, args.split.tasks, args.force).with_context(in_config)?;
    // The jobs of different stages and domains run side by side on a cluster (a domain
    // tokenizes while others deduplicate): each piece is exclusive only against its own copy.
    // Only a run of every stage holds the folder alone (and clears what a killed run left).
    let tasks = args.split.tasks;
    let piece = format!("{:?}-{}", args.stage, args.domains.join("+")).to_lowercase();
    let shared = |role: String| util::fsutil::FolderLock::shared_as(&config.output, &role);
    let _lock = match part {
        Part::Task(task) => shared(format!("{piece}-{task}-of-{tasks}"))?,
        Part::Finalize => shared(format!("{piece}-finalize"))?,
        Part::All if args.stage != Stage::All => shared(format!("{piece}-all-of-{tasks}"))?,
        Part::All => util::fsutil::FolderLock::for_run(&config.output, None, tasks)?,
    };
    let printer = Printer { quiet, json: args.json, bars: Mutex::new(HashMap::new()), waited: AtomicBool::new(false) };
    prepare.run(&printer)?;
    if printer.waited.load(Ordering::Relaxed) {
        eprintln!("not finished: a stage waits for an earlier one (see above); run that first, then this again");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress bars on stderr, results on stdout (a table or JSON lines), waiting on stderr.
struct Printer {
    quiet: bool,
    json: bool,
    bars: Mutex<HashMap<String, TextProgress>>,
    /// A step waited for an earlier stage: the run ends non-zero.
    waited: AtomicBool,
}

impl Observer for Printer {
    fn progress(&self, work: &str, progress: Progress) {
        crate::failpoint::after_batch();
        let mut bars = self.bars.lock().expect("no panic while held");
        bars.entry(work.to_string()).or_insert_with(|| TextProgress::new(work, self.quiet)).update(progress);
    }

    fn finished(&self, work: &str) {
        if let Some(bar) = self.bars.lock().expect("no panic while held").remove(work) {
            bar.finish();
        }
    }

    fn note(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    fn outcome(&self, outcome: &StepOutcome) -> std::io::Result<()> {
        fn waits_for_a_stage<T>(outcome: &Outcome<T>) -> bool {
            matches!(outcome, Outcome::Waiting(Waiting::Stage { .. }))
        }
        let waits = match outcome {
            StepOutcome::Filtered { outcome, .. } => waits_for_a_stage(outcome),
            StepOutcome::Deduplicated { outcome, .. } => waits_for_a_stage(outcome),
            StepOutcome::Dataset { outcome, .. } => waits_for_a_stage(outcome),
        };
        if waits {
            self.waited.store(true, Ordering::Relaxed);
        }
        match outcome {
            StepOutcome::Filtered { domain, out, outcome } => match outcome {
                Outcome::Done(stats) if self.json => {
                    outln!("{}", serde_json::json!({ "domain": domain, "stage": "filter", "stats": stats }));
                }
                Outcome::Done(stats) => {
                    outln!("== {domain} → {}", out.display());
                    crate::print::print_stage_stats(stats, false)?;
                }
                Outcome::Waiting(on) => eprintln!("{domain}: this task's files are filtered; {}", follows(on, "stats")),
            },
            StepOutcome::Deduplicated { domains, out, outcome } => match outcome {
                Outcome::Done((stats, clusters)) if self.json => outln!(
                    "{}",
                    serde_json::json!({ "domains": domains, "stage": "dedup", "dedup": clusters, "stats": stats })
                ),
                Outcome::Done((_, clusters)) => {
                    outln!("== dedup over {} → {}", domains.join(", "), out.display());
                    outln!(
                        "removed {} exact + {} near duplicates of {} documents in {} clusters",
                        clusters.removed_exact,
                        clusters.removed_near,
                        clusters.documents,
                        clusters.clusters
                    );
                }
                Outcome::Waiting(on) => eprintln!("dedup: {}", follows(on, "stats")),
            },
            StepOutcome::Dataset { domain, out, outcome } => match outcome {
                Outcome::Done(DatasetDone::AlreadyPrepared { documents, tokens }) if self.json => outln!(
                    "{}",
                    serde_json::json!({ "domain": domain, "stage": "tokenize", "already_prepared": true,
                        "documents": documents, "tokens": tokens })
                ),
                Outcome::Done(DatasetDone::AlreadyPrepared { documents, tokens }) => {
                    outln!("== {domain}: already prepared ({documents} documents, {tokens} tokens)");
                }
                Outcome::Done(DatasetDone::Written { removed, tokenize, .. }) if self.json => outln!(
                    "{}",
                    serde_json::json!({ "domain": domain, "stage": "tokenize", "dataset": tokenize, "removed": removed })
                ),
                Outcome::Done(DatasetDone::Written { documents, tokens, shards, removed, .. }) => outln!(
                    "== {domain} → {}: {documents} documents, {tokens} tokens in {shards} shards; {removed} removed (removed.parquet)",
                    out.display()
                ),
                Outcome::Waiting(on) => eprintln!("{domain}: not tokenized yet: {}", follows(on, "the manifest")),
            },
        }
        Ok(())
    }
}

/// Why a step is not finished, and what comes when it is.
fn follows(on: &Waiting, what: &str) -> String {
    match on {
        Waiting::OtherTasks => format!("{what}: written by the finalize step once every task is done"),
        Waiting::Stage { stage, domain } => {
            format!("waits for the {stage} stage of domain {domain:?} (every task of it must finish)")
        }
    }
}
