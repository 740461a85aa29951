//! `midtrain train`, `midtrain report`, `midtrain compare`: training runs and their reports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use trainer::train::{Event, TrainConfig, TrainDevice, TrainOptions, train};

/// Train a Llama model through the stages of a config (annealing, context extension).
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain train trainer/configs/fixtures-anneal.toml --out out/run
  midtrain train anneal.toml --out runs/decay-a --branch-from runs/stable/checkpoints/step-00004000
Rerunning the same command resumes from the newest checkpoint in --out.")]
pub struct TrainArgs {
    /// The train config (TOML): model, data, optimizer, batch, [[stage]]s.
    config: PathBuf,
    /// The run folder: metrics.jsonl, checkpoints/step-N/ (HF layout + trainer state).
    #[arg(long)]
    out: PathBuf,
    /// Start from this checkpoint's weights, optimizer state and data position (a decay
    /// branched from a stable-phase checkpoint).
    #[arg(long)]
    branch_from: Option<PathBuf>,
    /// Also write the HTML report (RUN/report.html) at the end.
    #[arg(long)]
    report: bool,
    /// Where to train: cpu (f32), or cuda (a build with `--features cuda`).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Device {
    Cpu,
    Cuda,
}

pub fn run(args: TrainArgs, quiet: bool) -> Result<ExitCode> {
    trainer::keep_freed_memory();
    let config = TrainConfig::load(&args.config)?;
    let bar = crate::progress::counter("steps", true, quiet);
    // Stage, evaluation and checkpoint lines also reach logs where the bar is not drawn.
    let say = |line: String| match (quiet, bar.is_hidden()) {
        (true, _) => {}
        (false, true) => eprintln!("{line}"),
        (false, false) => bar.println(line),
    };
    let skipped = std::cell::Cell::new(0u64);
    let mut on_event = |event: Event| match event {
        Event::Stage { index, name, steps, tokens } => {
            bar.set_length(steps);
            bar.set_position(0);
            bar.set_prefix(format!("stage {} {name}", index + 1));
            say(format!("stage {} {name:?}: {steps} steps, {tokens} tokens", index + 1));
        }
        Event::Step(r) => {
            crate::failpoint::after_batch();
            bar.inc(1);
            let gns = r.gns.map_or(String::new(), |g| format!(" · GNS {g:.0}"));
            bar.set_message(format!("loss {:.4} · lr {:.2e} · {:.0} tok/s{gns}", r.loss, r.lr, r.tokens_per_s));
            if r.spike {
                say(format!("step {}: loss spike ({:.4})", r.step, r.loss));
            }
            if r.skipped {
                skipped.set(skipped.get() + 1);
                say(format!(
                    "step {}: loss {} / gradient norm {} not finite: the update was skipped",
                    r.step, r.loss, r.grad_norm
                ));
            }
        }
        Event::Eval(e) => {
            let losses: Vec<String> = e.eval.iter().map(|(domain, loss)| format!("{domain} {loss:.4}")).collect();
            say(format!("step {} held-out loss ({}): {}", e.step, e.when.as_str(), losses.join(", ")))
        }
        Event::Checkpoint(dir) => say(format!("checkpoint {}", dir.display())),
    };
    let device = match args.device {
        Device::Cpu => TrainDevice::Cpu,
        Device::Cuda => {
            // Explicit, since the CPU kernels are what make memory linear in the sequence length.
            eprintln!(
                "midtrain: the fused ops (attention, RMSNorm, RoPE, SwiGLU, linear, loss) have CPU kernels \
                 only; on CUDA the model runs candle's composed ops (attention memory grows with seq²)"
            );
            TrainDevice::Cuda
        }
    };
    let options = TrainOptions { branch_from: args.branch_from.clone(), stop_after: None, device };
    train(&config, &args.out, &options, &mut on_event)?;
    bar.finish_and_clear();
    if args.report {
        let path = args.out.join("report.html");
        write_report(&path, trainer::run_report(&args.out)?)?;
        outln!("report: {}", path.display());
    }
    match skipped.get() {
        0 => outln!("run finished: {}", args.out.display()),
        n => {
            outln!("run finished: {} ({n} steps skipped for non-finite values; see metrics.jsonl)", args.out.display())
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_report(path: &std::path::Path, html: String) -> Result<()> {
    util::fsutil::write_atomic(path, html.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))
}

/// Write a run's HTML report: loss, LR, gradient norm and noise scale, per-domain held-out loss.
#[derive(Args)]
#[command(after_help = "Example:
  midtrain report out/run --out out/run/report.html")]
pub struct ReportArgs {
    /// A run folder (`midtrain train --out`).
    run: PathBuf,
    /// Where to write the page (default RUN/report.html).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn report(args: ReportArgs) -> Result<ExitCode> {
    let path = args.out.unwrap_or_else(|| args.run.join("report.html"));
    write_report(&path, trainer::run_report(&args.run)?)?;
    outln!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Overlay several runs (loss, held-out loss, LR against tokens) in one HTML page.
#[derive(Args)]
#[command(after_help = "Example:
  midtrain compare out/experiments/schedules/wsd out/experiments/schedules/cosine --out compare.html")]
pub struct CompareArgs {
    /// Run folders.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
}

pub fn compare(args: CompareArgs) -> Result<ExitCode> {
    write_report(&args.out, trainer::compare_report(&args.runs)?)?;
    outln!("{}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
