//! `midtrain eval`: a checkpoint on lm-eval-style tasks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::Args;
use serde::Serialize;
use trainer::model::Llama;
use trainer::tasks::{EvalOptions, ItemResult, Task, TaskScores, evaluate_task};

/// Score a checkpoint on tasks: multiple choice (acc, acc_norm), loglikelihood, perplexity.
#[derive(Args)]
#[command(after_help = "Task files (NAME = the file's stem):
  NAME.jsonl / NAME.parquet  one item per row; its fields decide the kind:
      {\"context\": \"2 + 2 =\", \"choices\": [\"3\", \"4\"], \"gold\": 1}     multiple choice
      {\"context\": \"Once upon a\", \"continuation\": \"time\"}           loglikelihood
      {\"text\": \"A held-out document.\"}                                perplexity
  NAME.toml  data = \"FILE\", and optionally format, context / continuation / text templates
      with {field} placeholders, choices (a list field or templates), gold (index, text or
      letter), target_delimiter (\" \"), fewshot, fewshot_separator (\"\\n\\n\"), fewshot_data,
      description, seed.

Examples:
  midtrain eval .models/smollm2-135m --tasks fixtures/tasks/math_mc.toml fixtures/tasks/heldout_web.jsonl --json
  midtrain eval out/run/checkpoints/step-00000040 --tasks tasks/*.toml --limit 200 --samples out/samples.jsonl")]
pub struct EvalArgs {
    /// An HF checkpoint folder (config.json, weights, tokenizer.json).
    checkpoint: PathBuf,
    /// Task files (.jsonl, .parquet, or .toml).
    #[arg(long, required = true, num_args = 1..)]
    tasks: Vec<PathBuf>,
    /// A tokenizer.json (default: the checkpoint's).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Score the first N items of each task.
    #[arg(long)]
    limit: Option<usize>,
    /// Longest sequence scored at once (default: the model's max_position_embeddings).
    #[arg(long)]
    max_length: Option<usize>,
    /// Tokens per forward pass; requests are packed into rows of this many.
    #[arg(long, default_value_t = EvalOptions::default().row_tokens)]
    row_tokens: usize,
    /// Encode without the tokenizer post-processor's leading special tokens (BOS).
    #[arg(long)]
    no_special_tokens: bool,
    /// Print {"tasks": {NAME: {...}}} as JSON.
    #[arg(long)]
    json: bool,
    /// Write every item's log-probabilities and choices here (jsonl).
    #[arg(long)]
    samples: Option<PathBuf>,
}

#[derive(Serialize)]
struct Sample<'a> {
    task: &'a str,
    #[serde(flatten)]
    item: &'a ItemResult,
}

pub fn run(args: EvalArgs, quiet: bool) -> Result<ExitCode> {
    let mut tasks = Vec::new();
    for path in &args.tasks {
        let task = Task::load(path, args.limit)?;
        if tasks.iter().any(|t: &Task| t.name == task.name) {
            bail!("two task files are named {:?}: task names are file stems and must differ", task.name);
        }
        tasks.push(task);
    }
    let tokenizer_path = args.tokenizer.clone().unwrap_or_else(|| args.checkpoint.join("tokenizer.json"));
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (give --tokenizer FILE where the checkpoint has no tokenizer.json)",
            tokenizer_path.display()
        )
    })?;
    let mut model = Llama::load(&args.checkpoint, &Device::Cpu)?;
    let options = EvalOptions {
        max_length: args.max_length,
        row_tokens: args.row_tokens,
        special_tokens: !args.no_special_tokens,
    };
    let mut results: BTreeMap<String, TaskScores> = BTreeMap::new();
    let mut samples = String::new();
    for task in &tasks {
        let bar = crate::progress::counter("requests", false, quiet);
        bar.set_prefix(task.name.clone());
        let (scores, items) = evaluate_task(&mut model, &tokenizer, task, &options, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .with_context(|| format!("task {}", task.name))?;
        bar.finish_and_clear();
        if args.samples.is_some() {
            for item in &items {
                samples.push_str(&serde_json::to_string(&Sample { task: &task.name, item })?);
                samples.push('\n');
            }
        }
        results.insert(task.name.clone(), scores);
    }
    if let Some(path) = &args.samples {
        util::fsutil::write_atomic(path, samples.as_bytes()).with_context(|| format!("{}", path.display()))?;
    }
    if args.json {
        outln!("{}", serde_json::json!({ "tasks": results }));
    } else {
        print_table(&results)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(results: &BTreeMap<String, TaskScores>) -> Result<()> {
    let width = results.keys().map(String::len).max().unwrap_or(4).max(4);
    outln!("{:<width$} {:>6} {:>16} {:>16} {:>8} {:>10} {:>6}", "task", "n", "acc", "acc_norm", "loss", "ppl", "bpb");
    let pm = |v: Option<f64>, e: Option<f64>| match (v, e) {
        (Some(v), Some(e)) => format!("{v:.4} ± {e:.4}"),
        (Some(v), None) => format!("{v:.4}"),
        _ => "-".into(),
    };
    let num = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    for (name, s) in results {
        outln!(
            "{name:<width$} {:>6} {:>16} {:>16} {:>8} {:>10} {:>6}",
            s.n,
            pm(s.acc, s.stderr),
            pm(s.acc_norm, s.acc_norm_stderr),
            num(s.loss, 4),
            num(s.perplexity, 2),
            num(s.bits_per_byte, 3)
        );
        if s.truncated > 0 {
            outln!("  {name}: {} request(s) lost the start of their context to --max-length", s.truncated);
        }
    }
    Ok(())
}
