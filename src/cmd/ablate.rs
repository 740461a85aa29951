//! `midtrain ablate`: candidate mixes annealed from one base, evaluated and ranked.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use trainer::ablate::{AblateEvent, AblatePlan, ablate};
use trainer::train::Event;

/// Anneal a base model on each arm's mix (same seed and budget), evaluate each on the same
/// tasks, and rank them against the first arm with paired bootstrap intervals.
#[derive(Args)]
#[command(after_help = "Example:
  midtrain ablate mixtures/ablations/fixtures.toml --out out/ablate

The plan: train = TRAIN.toml, optionally base = CHECKPOINT, recipe = RECIPE.toml, tasks = [...],
tokenizer, limit, bootstrap (1000); then [[arm]] tables: name, and optionally recipe,
weights = { DOMAIN = W }, datasets = { DOMAIN = [DATASET...] }, a train = { ... } table merged
into the train config, and branch_from = { arm = NAME, step = N } to start from an earlier arm's
checkpoint (a WSD decay from the stable phase). The first arm is the baseline. Writes OUT/arms/NAME/ (mixture, run,
eval.json), OUT/report.json and OUT/report.html; a rerun skips the arms that finished.")]
pub struct AblateArgs {
    plan: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: AblateArgs, quiet: bool) -> Result<ExitCode> {
    let plan = AblatePlan::load(&args.plan)?;
    let _lock = util::fsutil::FolderLock::for_run(&args.out, None, 1)?;
    let mut on_event = |event: AblateEvent| match event {
        AblateEvent::Arm { name, step } if !quiet => eprintln!("arm {name}: {step}"),
        AblateEvent::Train(Event::Stage { name, steps, tokens, .. }) if !quiet => {
            eprintln!("  stage {name:?}: {steps} steps, {tokens} tokens")
        }
        _ => {}
    };
    let report = ablate(&plan, &args.out, &mut on_event)?;
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut arms: Vec<_> = report.arms.iter().collect();
    arms.sort_by_key(|a| a.rank);
    for arm in arms {
        outln!("{}. {}{}", arm.rank, arm.name, if arm.skipped { " (finished before)" } else { "" });
        for (task, t) in &arm.tasks {
            let scores = std::iter::once((&t.metric, &t.score, &t.vs_baseline))
                .chain(t.more.iter().map(|m| (&m.metric, &m.score, &m.vs_baseline)));
            for (k, (metric, score, vs_baseline)) in scores.enumerate() {
                let delta = vs_baseline
                    .map_or("baseline".to_string(), |d| format!("Δ {:+.4} [{:+.4}, {:+.4}]", d.value, d.low, d.high));
                let label = if k == 0 { task.as_str() } else { "" };
                outln!("   {label:<20} {metric:<13} {:.4} [{:.4}, {:.4}]  {delta}", score.value, score.low, score.high);
            }
        }
    }
    outln!("report: {}", args.out.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}
