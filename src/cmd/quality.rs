use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use pipeline::read::{self, ReadOptions};
use pipeline::{QualitySettings, QualityTrainOptions, train_quality_classifier};

/// Quality classifiers (fastText) for the `quality` filter.
#[derive(Args)]
#[command(after_help = "Example:
  midtrain quality train --positive books.parquet --negative web.parquet --out quality.bin")]
pub struct QualityArgs {
    #[command(subcommand)]
    command: QualityCommand,
}

#[derive(Subcommand)]
enum QualityCommand {
    Train(TrainArgs),
}

/// Train a fastText classifier: high-quality reference text vs random web text (DCLM recipe).
#[derive(Args)]
#[command(after_help = "Example:
  midtrain quality train --positive fixtures/dumps/books.parquet --positive fixtures/dumps/math.parquet \\
      --negative fixtures/dumps/web.parquet --out out/quality.bin

Prints held-out precision and recall of the hq label. Use the model in a prepare config:
  [[domain.filters]]
  type = \"quality\"
  model = \"out/quality.bin\"
  threshold = 0.5   # optional: drop below")]
struct TrainArgs {
    /// High-quality inputs (labelled hq); files or globs.
    #[arg(long, required = true)]
    positive: Vec<String>,
    /// Low-quality / random web inputs (labelled lq); files or globs.
    #[arg(long, required = true)]
    negative: Vec<String>,
    /// Where to write the model (.bin).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "text")]
    text_column: String,
    #[command(flatten)]
    settings: QualitySettings,
    #[arg(long)]
    json: bool,
}

pub fn run(args: QualityArgs, _quiet: bool) -> Result<ExitCode> {
    let QualityCommand::Train(t) = args.command;
    let options = QualityTrainOptions {
        positive: read::expand_inputs(&t.positive)?,
        negative: read::expand_inputs(&t.negative)?,
        read: ReadOptions { text_column: t.text_column, ..ReadOptions::default() },
        settings: t.settings,
    };
    let report = train_quality_classifier(&options, &t.out)?;
    if t.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        outln!("model      {}", report.model.display());
        outln!("train      hq {} · lq {}", report.train.hq, report.train.lq);
        outln!("held out   hq {} · lq {}", report.heldout.hq, report.heldout.lq);
        outln!(
            "hq         precision {:.3} · recall {:.3} · F1 {:.3} · accuracy {:.3}",
            report.precision,
            report.recall,
            report.f1,
            report.accuracy
        );
    }
    Ok(ExitCode::SUCCESS)
}
