use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use mixtures::plan::{Plan, plan};
use mixtures::recipe::Recipe;

/// Mixtures: plan per-domain tokens against a pre-training overlap floor, and build the blend.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain mix plan mixtures/recipes/fixtures-anneal.toml
  midtrain mix build mixtures/recipes/fixtures-anneal.toml --out out/mixture")]
pub struct MixArgs {
    #[command(subcommand)]
    command: MixCommand,
}

#[derive(Subcommand)]
enum MixCommand {
    Plan(PlanArgs),
    Build(BuildArgs),
}

/// Print the plan: shares (target and after the overlap floor), tokens and epochs per domain.
#[derive(Args)]
#[command(after_help = "Example:
  midtrain mix plan mixtures/recipes/fixtures-anneal.toml --json")]
struct PlanArgs {
    /// The recipe (TOML).
    recipe: PathBuf,
    #[arg(long)]
    json: bool,
}

/// Build the mixture: mixture.json, the blended document order (order.bin), and the Megatron
/// `--data-path` and OLMo data-config exports. Every shard is checked against its dataset's
/// checksums first. An existing mixture is never replaced without --force (a run training on
/// it would read another order).
#[derive(Args)]
#[command(after_help = "Example:
  midtrain mix build mixtures/recipes/fixtures-anneal.toml --out out/mixture")]
struct BuildArgs {
    recipe: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Replace a mixture already in --out.
    #[arg(long)]
    force: bool,
    /// The samples a Megatron run will draw from `megatron_data_path.txt` (--train-samples):
    /// refused when the blend would repeat a domain past its max_epochs.
    #[arg(long, value_name = "N")]
    megatron_samples: Option<u64>,
    /// Tokens per Megatron sample (--seq-length), for --megatron-samples.
    #[arg(long, value_name = "L", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    seq_length: u64,
    #[arg(long)]
    json: bool,
}

fn print_plan(plan: &Plan) -> std::io::Result<()> {
    outln!("mixture {} · budget {} tokens · seed {}", plan.name, plan.budget_tokens, plan.seed);
    outln!(
        "overlap with pre-training: target {:.3} → planned {:.3} (floor {:.2}{})",
        plan.target_overlap,
        plan.overlap,
        plan.min_overlap,
        if plan.alpha < 1.0 {
            format!("; moved toward pre-training, α = {:.3} of the target kept", plan.alpha)
        } else {
            String::new()
        }
    );
    outln!(
        "{:<14} {:>8} {:>8} {:>8} {:>14} {:>14} {:>8} {:>6}",
        "domain",
        "target",
        "share",
        "pretrain",
        "tokens",
        "available",
        "epochs",
        "max"
    );
    for d in &plan.domains {
        outln!(
            "{:<14} {:>7.1}% {:>7.1}% {:>7.1}% {:>14} {:>14} {:>8.2} {:>6.1}",
            d.name,
            100.0 * d.target_share,
            100.0 * d.share,
            100.0 * d.pretraining_share,
            d.tokens,
            d.available_tokens,
            d.epochs,
            d.max_epochs
        );
    }
    for d in &plan.domains {
        if let Some(subset) = &d.subset {
            outln!("{}: {}", d.name, subset.describe());
        }
        if d.most_copies > 1 {
            outln!(
                "{}: rehydrated, a pass holds {} tokens of {} distinct; a document is drawn at most {:.2} times",
                d.name,
                d.available_tokens,
                d.unique_tokens,
                d.epochs * d.most_copies as f64
            );
        }
    }
    if !plan.unmixed_pretraining.is_empty() {
        outln!("pre-training domains not in the mix: {}", plan.unmixed_pretraining.join(", "));
    }
    Ok(())
}

pub fn run(args: MixArgs) -> Result<ExitCode> {
    match args.command {
        MixCommand::Plan(a) => {
            let plan = plan(&Recipe::load(&a.recipe)?)?;
            if a.json {
                outln!("{}", serde_json::to_string(&plan)?);
            } else {
                print_plan(&plan)?;
            }
        }
        MixCommand::Build(a) => {
            let plan = plan(&Recipe::load(&a.recipe)?)?;
            let capacity = mixtures::plan::blend_capacity(&plan);
            if let (Some(samples), Some((tokens, domain))) = (a.megatron_samples, capacity) {
                // A GPT sample of L tokens reads L + 1 (the last one is the next sample's first).
                let wanted = samples.saturating_mul(a.seq_length).saturating_add(1);
                if wanted > tokens {
                    bail!(
                        "--megatron-samples {samples} × --seq-length {} needs {wanted} tokens, but the blend holds {tokens} \
                         before {domain:?} exceeds its max_epochs ({} samples): Megatron would repeat it more often \
                         than the recipe allows. Ask for fewer samples, or raise {domain:?}'s max_epochs",
                        a.seq_length,
                        tokens.saturating_sub(1) / a.seq_length
                    );
                }
            }
            let _lock = util::fsutil::FolderLock::for_run(&a.out, None, 1)?;
            if a.out.join("mixture.json").is_file() && !a.force {
                bail!(
                    "{}: holds a mixture already; a run that trains on it would read another order. \
                     Choose another --out, or pass --force to replace it",
                    a.out.display()
                );
            }
            let mixture = mixtures::build::build(&plan, &a.out)?;
            if a.json {
                outln!("{}", serde_json::to_string(&mixture)?);
            } else {
                print_plan(&plan)?;
                outln!("built {}: {} documents, {} tokens", a.out.display(), mixture.documents, mixture.tokens);
                for d in &mixture.domains {
                    let realised = d.tokens as f64 / mixture.tokens.max(1) as f64;
                    outln!("  {:<14} realised {:>6.2}% (planned {:>6.2}%)", d.name, 100.0 * realised, 100.0 * d.share);
                }
                for e in mixture.exports.iter().filter(|e| e.subset) {
                    outln!(
                        "{}: a document subset, which a Megatron/OLMo blend of whole shards cannot express; the exports \
                         name its own shard {} ({} documents, {} tokens)",
                        e.domain,
                        e.prefix.display(),
                        e.documents,
                        e.tokens
                    );
                }
                if let Some((tokens, domain)) = capacity {
                    outln!(
                        "megatron_data_path.txt holds {tokens} tokens within every max_epochs ({} samples of {}; \
                         {domain} binds): check a run with --megatron-samples",
                        tokens.saturating_sub(1) / a.seq_length,
                        a.seq_length
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
