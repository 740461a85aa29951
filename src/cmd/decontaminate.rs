use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use pipeline::filter::FilterConfig;
use pipeline::filter::decontaminate::{DecontaminateConfig, Mode};
use pipeline::read::{self, ReadOptions};
use pipeline::run_folder::TaskSlice;

use super::filter::FilterStage;

/// Remove (or mark) documents that hold an item of an evaluation set.
///
/// Items and documents are compared as words after FineWeb's normalisation with numbers kept.
/// An item of at least --ngram words matches through any of its n-grams, a shorter one through
/// its whole text; n-grams shared by more than --max-items-per-ngram items (template text), or
/// common in a sample of the corpus (boilerplate), do not match alone.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain decontaminate out/prepared/math/filtered/kept/*.parquet --against evals/gsm8k.jsonl \\
      --columns question --answer-column answer --out out/decon
  midtrain decontaminate 'web/*.parquet' --against evals/mmlu.parquet --columns question,choices \\
      --mode mark --out out/decon-marked
  midtrain decontaminate IN... --against E.jsonl --out D --tasks 4 --task 0   # on each of 4 machines

Writes OUT/kept/part-*.parquet, OUT/removed/part-*.parquet (reason `contaminated_BENCHMARK: item
ID: \"matched words\"`) and OUT/stats.json (removals per benchmark). The benchmark is NAME in
--against NAME=FILE, else the file's name up to its first dot. In a prepare config: a
[decontaminate] section with the same settings and `domains = [...]` (default all) runs after
each domain's filters, before dedup.")]
pub struct DecontaminateArgs {
    /// Input files or glob patterns (.parquet, .jsonl, .jsonl.gz, .jsonl.zst).
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Evaluation sets (parquet or jsonl), one item per row; NAME=FILE names the benchmark
    /// (default: the file name up to its first dot).
    #[arg(long, required = true, num_args = 1..)]
    against: Vec<PathBuf>,
    /// Eval columns joined into an item's text (dotted names reach into jsonl objects).
    #[arg(long, value_delimiter = ',', default_value = "text")]
    columns: Vec<String>,
    /// The eval sets' id column.
    #[arg(long, default_value = "id")]
    item_id_column: String,
    /// The eval sets' answer column (for --require-answer).
    #[arg(long)]
    answer_column: Option<String>,
    /// Count a match only when the item's answer is in the document too.
    #[arg(long)]
    require_answer: bool,
    /// Words per n-gram.
    #[arg(long, default_value_t = 13)]
    ngram: usize,
    /// Items with fewer words are not matched.
    #[arg(long, default_value_t = 5)]
    min_item_words: usize,
    /// An n-gram in more items than this does not match alone.
    #[arg(long, default_value_t = 10)]
    max_items_per_ngram: usize,
    /// Documents whose common phrases do not match alone (default: the inputs); their text
    /// column is --text-column.
    #[arg(long, num_args = 1..)]
    boilerplate: Option<Vec<PathBuf>>,
    /// How many documents of the boilerplate sample are read (0: no sample).
    #[arg(long, default_value_t = 20_000)]
    boilerplate_documents: usize,
    /// An n-gram in more than this share of the sample's documents is boilerplate.
    #[arg(long, default_value_t = 0.001)]
    max_boilerplate_share: f64,
    /// remove, or mark (keep, with a `contamination` label).
    #[arg(long, value_enum, default_value_t = Mode::Remove)]
    mode: Mode,
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    input: super::InputArgs,
    #[command(flatten)]
    split: super::TaskArgs,
    #[command(flatten)]
    run: super::RunArgs,
}

pub fn run(args: DecontaminateArgs, quiet: bool) -> Result<ExitCode> {
    args.split.check()?;
    if args.split.tasks > 1 && args.split.task.is_none() {
        bail!("--tasks > 1 needs --task");
    }
    if args.run.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let inputs = read::expand_inputs(&args.inputs)?;
    let config = FilterConfig::Decontaminate(DecontaminateConfig {
        id_column: args.item_id_column,
        answer_column: args.answer_column,
        require_answer: args.require_answer,
        ngram: args.ngram,
        min_item_words: args.min_item_words,
        max_items_per_ngram: args.max_items_per_ngram,
        mode: args.mode,
        // Every task reads the same sample: the beginning of all the inputs, not of its share.
        boilerplate: Some(args.boilerplate.unwrap_or_else(|| inputs.clone())),
        boilerplate_text_column: args.input.read_options()?.text_column,
        boilerplate_documents: args.boilerplate_documents,
        max_boilerplate_share: args.max_boilerplate_share,
        ..DecontaminateConfig::new(args.against, args.columns)
    });
    let options = ReadOptions { batch_size: args.run.batch_size, ..args.input.read_options()? };
    let settings = serde_json::json!({
        "filters": [&config],
        "input": args.input.settings()?,
        "batch_size": args.run.batch_size,
        "tasks": args.split.tasks,
    });
    let slice = TaskSlice { task: args.split.task.unwrap_or(0), tasks: args.split.tasks };
    let stage =
        FilterStage { name: "decontaminate", inputs, configs: vec![config], options, settings, out: args.out, slice };
    stage.run(&args.run, quiet)
}
