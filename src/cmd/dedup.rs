use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use pipeline::dedup::{self, DedupJob, DedupSettings};
use pipeline::read::{self, ReadOptions};
use pipeline::run_folder::{Folder, RunIdentity};

use crate::progress::TextProgress;

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Stage {
    /// Every stage of every task of this run, here.
    All,
    /// Stage 1 for --task (hash documents into sorted band files).
    Signatures,
    /// Stage 2 (candidate pairs from all tasks' band files).
    Pairs,
    /// Stage 3 (verification, clustering, keepers).
    Clusters,
    /// Stage 4 for --task (write kept and removed parquet), and stats when all tasks are done.
    Apply,
}

/// Remove exact and near duplicates (MinHash LSH) from parquet/jsonl documents.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain dedup out/prepared/web/filtered/kept/*.parquet --out out/dedup
  midtrain dedup data/*.parquet --preset fineweb --out out/dedup-fineweb
  midtrain dedup data/*.parquet --exact-only --out out/exact
  midtrain dedup data/*.parquet --ngram 5 --bands 14 --rows 8 --out out/custom
  midtrain dedup math/*.parquet --numbers keep --explain 20 --out out/math   # review out/math/explain.html

Across machines (a shared folder; inputs split by file, file i goes to task i mod n):
  midtrain dedup IN... --out D --tasks 4 --task 0 --stage signatures   # on each of 4 machines
  midtrain dedup IN... --out D --tasks 4 --stage pairs                 # once
  midtrain dedup IN... --out D --tasks 4 --stage clusters              # once
  midtrain dedup IN... --out D --tasks 4 --task 0 --stage apply        # on each machine
Writes OUT/kept/part-*.parquet, OUT/removed/part-*.parquet (id, source, row, step dedup,
reason exact|near, cluster_id, kept_id, similarity to the kept document) and OUT/stats.json (with the cluster-size histogram).")]
pub struct DedupArgs {
    /// Input files or glob patterns (.parquet, .jsonl, .jsonl.gz, .jsonl.zst).
    #[arg(required = true)]
    inputs: Vec<String>,
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    settings: DedupSettings,
    #[command(flatten)]
    input: super::InputArgs,
    #[arg(long, value_enum, default_value = "all")]
    stage: Stage,
    #[command(flatten)]
    split: super::TaskArgs,
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
    /// After clustering, write OUT/explain.html: the N largest clusters, each removal (least
    /// similar first) beside the document it was removed for, for a person to review.
    #[arg(long, value_name = "N")]
    explain: Option<usize>,
}

pub fn run(args: DedupArgs, quiet: bool) -> Result<ExitCode> {
    args.split.check()?;
    let needs_task = matches!(args.stage, Stage::Signatures | Stage::Apply);
    if needs_task && args.split.task.is_none() && args.split.tasks > 1 {
        bail!("--stage signatures/apply with --tasks > 1 needs --task");
    }
    if args.explain.is_some() && !matches!(args.stage, Stage::All | Stage::Clusters) {
        bail!("--explain writes its page after clustering: use it with --stage all or clusters");
    }
    let inputs = read::expand_inputs(&args.inputs)?;
    let config = args.settings.resolve()?;
    let settings = serde_json::json!({ "config": config, "tasks": args.split.tasks, "input": args.input.settings()? });
    let identity = RunIdentity::new("dedup", &inputs, settings);
    // Only the first stage may claim (or force) the folder; later stages must find it.
    let first_stage = matches!(args.stage, Stage::All | Stage::Signatures);
    if args.force && !first_stage {
        bail!("--force restarts a run: use it with --stage all or signatures");
    }
    let _lock = util::fsutil::FolderLock::for_run(&args.out, args.split.task, args.split.tasks)?;
    Folder::stage(&args.out).claim(&identity, args.force && first_stage)?;
    let job = DedupJob {
        inputs,
        read: ReadOptions {
            carry: pipeline::KNOWN_COLUMNS.to_vec(),
            keep_provenance: true,
            ..args.input.read_options()?
        },
        config,
        work: args.out.join("work"),
        out: args.out.clone(),
        tasks: args.split.tasks,
        parts: Vec::new(),
        near_normalization: Vec::new(),
    };
    let progress = TextProgress::new(&format!("dedup {}", stage_name(args.stage)), quiet);
    let report = |p| {
        crate::failpoint::after_batch();
        progress.update(p)
    };
    let task = args.split.task.unwrap_or(0);
    match args.stage {
        Stage::All => {
            let (stage, clusters) = dedup::run_all(&job, &report)?;
            progress.finish();
            print(&stage, &clusters, args.json)?;
        }
        Stage::Signatures => dedup::signatures(&job, task, &report)?,
        Stage::Pairs => dedup::pairs(&job)?,
        Stage::Clusters => {
            let stats = dedup::clusters(&job, &report)?;
            progress.finish();
            if args.json {
                outln!("{}", serde_json::to_string(&stats)?);
            } else {
                outln!(
                    "{} clusters: {} exact + {} near duplicates to remove ({} candidate pairs, {} verified)",
                    stats.clusters,
                    stats.removed_exact,
                    stats.removed_near,
                    stats.candidate_pairs,
                    stats.verified_pairs
                );
            }
        }
        Stage::Apply => {
            dedup::apply(&job, task, &report)?;
            progress.finish();
            match dedup::finish(&job)? {
                pipeline::run_folder::Parts::Complete((stage, clusters)) => print(&stage, &clusters, args.json)?,
                pipeline::run_folder::Parts::Missing(_) => {
                    eprintln!("task {task} applied; stats.json follows when every task is applied")
                }
            }
        }
    }
    if let Some(n) = args.explain
        && matches!(args.stage, Stage::All | Stage::Clusters)
    {
        let path = args.out.join("explain.html");
        util::fsutil::write_atomic(&path, dedup::explain(&job, n)?.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::All => "all",
        Stage::Signatures => "signatures",
        Stage::Pairs => "pairs",
        Stage::Clusters => "clusters",
        Stage::Apply => "apply",
    }
}

fn print(stage: &pipeline::StageStats, clusters: &dedup::DedupStats, json: bool) -> std::io::Result<()> {
    if json {
        outln!("{}", serde_json::json!({ "stage": stage, "dedup": clusters }));
        return Ok(());
    }
    crate::print::print_stage_stats(stage, false)?;
    outln!(
        "removed {} exact + {} near duplicates in {} clusters ({} candidate pairs, {} verified)",
        clusters.removed_exact,
        clusters.removed_near,
        clusters.clusters,
        clusters.candidate_pairs,
        clusters.verified_pairs
    );
    let sizes: Vec<String> = clusters.cluster_sizes.iter().map(|(size, n)| format!("{size}:{n}")).collect();
    outln!("cluster sizes (size:count) {}", sizes.join(" "));
    Ok(())
}
