//! `midtrain score`, `midtrain soup`, `midtrain rope`: look at and combine checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::Args;
use trainer::hf_config::LlamaConfig;
use trainer::model::Llama;

/// Per-token log-probabilities of the next token, and the mean loss, of a text under a checkpoint.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain score out/run/checkpoints/step-00000040 --text \"The cat sat\" --tokenizer fixtures/tokenizer.json
  midtrain score CKPT --tokens \"5 17 9 3\" --json")]
pub struct ScoreArgs {
    /// An HF checkpoint folder (config.json + model.safetensors or its shards).
    checkpoint: PathBuf,
    /// Text, encoded as transformers' tokenizer(text) does: with the tokenizer's post-processor
    /// (the BOS of models trained with one), special-token strings read as the special tokens.
    #[arg(long, conflicts_with = "tokens")]
    text: Option<String>,
    /// A tokenizer.json (default: the checkpoint's).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// With --text: encode without the post-processor's special tokens
    /// (add_special_tokens=False).
    #[arg(long, requires = "text")]
    no_special_tokens: bool,
    /// Token ids separated by spaces.
    #[arg(long)]
    tokens: Option<String>,
    #[arg(long)]
    json: bool,
    /// With --json: also every position's logits over the vocabulary.
    #[arg(long, requires = "json")]
    logits: bool,
}

pub fn score(args: ScoreArgs) -> Result<ExitCode> {
    let ids: Vec<u32> = match (&args.text, &args.tokens) {
        (Some(text), None) => {
            let path = args.tokenizer.clone().unwrap_or_else(|| args.checkpoint.join("tokenizer.json"));
            let tokenizer = pipeline::tokenize::TextTokenizer::for_decoding(&path)
                .with_context(|| "give --tokenizer FILE where the checkpoint has no tokenizer.json".to_string())?;
            let encoding = tokenizer
                .reference()
                .encode(text.as_str(), !args.no_special_tokens)
                .map_err(|e| anyhow::anyhow!("{}: cannot encode --text: {e}", path.display()))?;
            encoding.get_ids().to_vec()
        }
        (None, Some(tokens)) => tokens
            .split_whitespace()
            .map(|t| t.parse::<u32>().with_context(|| format!("--tokens: {t:?} is not a token id")))
            .collect::<Result<_>>()?,
        _ => bail!("give --text or --tokens"),
    };
    let mut model = Llama::load(&args.checkpoint, &Device::Cpu)?;
    let scores = trainer::score(&mut model, &ids, args.logits)?;
    if args.json {
        outln!("{}", serde_json::to_string(&scores)?);
    } else {
        outln!("{:>6} {:>8} {:>10}", "pos", "token", "log p");
        for (i, lp) in scores.log_probs.iter().enumerate() {
            outln!("{:>6} {:>8} {:>10.4}", i + 1, scores.ids[i + 1], lp);
        }
        outln!("mean loss {:.4} over {} tokens", scores.mean_loss, scores.log_probs.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Average the weights of several checkpoints of one model (OLMo 2's "souping").
#[derive(Args)]
#[command(after_help = "Example:
  midtrain soup out/run/checkpoints/step-00000020 out/run/checkpoints/step-00000040 --out out/run/soup

The output must be a new (or empty) folder, never one of the inputs.")]
pub struct SoupArgs {
    /// HF checkpoint folders with the same config.json.
    #[arg(required = true)]
    checkpoints: Vec<PathBuf>,
    /// The averaged checkpoint (HF folder).
    #[arg(long)]
    out: PathBuf,
}

pub fn soup(args: SoupArgs) -> Result<ExitCode> {
    trainer::soup(&args.checkpoints, &args.out)?;
    outln!("averaged {} checkpoints into {}", args.checkpoints.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The inv_freq and attention factor a config.json's RoPE yields.
#[derive(Args)]
#[command(after_help = "Example:
  midtrain rope out/run/checkpoints/step-00000040/config.json --seq-len 4096 --json")]
pub struct RopeArgs {
    /// A transformers config.json (rope_parameters, or rope_theta + rope_scaling).
    config: PathBuf,
    /// Sequence length (dynamic NTK and LongRoPE depend on it).
    #[arg(long)]
    seq_len: Option<u64>,
    #[arg(long)]
    json: bool,
}

pub fn rope(args: RopeArgs) -> Result<ExitCode> {
    let config = LlamaConfig::load(&args.config)?;
    let rope = config.rope();
    let freqs = rope.frequencies(args.seq_len)?;
    if args.json {
        let out = serde_json::json!({
            "rope_theta": rope.theta,
            "rope_scaling": rope.scaling,
            "rotary_dim": rope.rotary_dim(),
            "seq_len": args.seq_len,
            "inv_freq": freqs.inv_freq,
            "attention_factor": freqs.attention_factor,
        });
        outln!("{out}");
    } else {
        outln!("rope_theta {} · {:?} · rotary dim {}", rope.theta, rope.scaling, rope.rotary_dim());
        outln!("attention factor {}", freqs.attention_factor);
        for (i, f) in freqs.inv_freq.iter().enumerate() {
            outln!("{i:>4} inv_freq {f:.9e}  wavelength {:.1}", 2.0 * std::f64::consts::PI / f);
        }
    }
    Ok(ExitCode::SUCCESS)
}
