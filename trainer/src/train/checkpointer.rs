//! A run's checkpoints: `checkpoints/step-N/` is an HF model folder (`config.json` +
//! `model.safetensors`) with the trainer state beside it (`optimizer.safetensors`,
//! `trainer_state.json`). A checkpoint is written into a temporary folder and renamed into
//! place, so a folder named `step-N` is always complete. The base checkpoint's tokenizer files,
//! generation config and chat template are copied into each, so that it loads in
//! `AutoTokenizer` / `AutoModelForCausalLM` (and `midtrain score --text`) as it is.
//!
//! The weights are written in the dtype the base checkpoint had (or `[model] save_dtype`), as
//! shards with an index above `[model] max_shard_size`. Where that dtype is not f32 the f32
//! weights the run trains are kept beside them (`master_weights.safetensors`), so that a resume
//! continues from exactly the weights it stopped at.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;

use super::state::TrainerState;
use crate::model::{Llama, WeightDtype, save_safetensors};
use crate::optim::AdamW;

pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const MASTER_WEIGHTS_FILE: &str = "master_weights.safetensors";

/// How a checkpoint's weights are written.
#[derive(Clone, Copy, Debug)]
pub struct WeightsFormat {
    pub dtype: WeightDtype,
    pub max_shard_bytes: u64,
}

/// Files of an HF folder that belong to the model without being its weights or config.
const COMPANION_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// The companion files the folder `base` has, to copy into every checkpoint of a run from it.
pub fn companion_files(base: &Path) -> Vec<PathBuf> {
    COMPANION_FILES.iter().map(|name| base.join(name)).filter(|p| p.is_file()).collect()
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Write model + trainer state for `state.step` under `run/checkpoints/`, with copies of
/// `companions` (see [`companion_files`]). Returns the folder.
pub fn save(
    run: &Path,
    model: &Llama,
    optimizer: &AdamW,
    state: &TrainerState,
    companions: &[PathBuf],
    format: WeightsFormat,
) -> Result<PathBuf> {
    let root = run.join(CHECKPOINTS_DIR);
    let dir = root.join(step_dir_name(state.step));
    let tmp = root.join(format!(".{}.partial", step_dir_name(state.step)));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    model.config.save_with_dtype(&tmp, format.dtype.name())?;
    model.save_weights_as(&tmp, format.dtype, format.max_shard_bytes)?;
    if format.dtype != WeightDtype::Float32 {
        save_safetensors(
            &tmp.join(MASTER_WEIGHTS_FILE),
            model.params().iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())),
        )?;
    }
    for file in companions {
        let name = file.file_name().context("a companion file has a name")?;
        std::fs::copy(file, tmp.join(name))
            .with_context(|| format!("{}: cannot copy into the checkpoint", file.display()))?;
    }
    save_safetensors(&tmp.join(OPTIMIZER_FILE), optimizer.state_tensors()?)?;
    let text = serde_json::to_string_pretty(state)?;
    util::fsutil::write_atomic(&tmp.join(STATE_FILE), text.as_bytes())?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot replace", dir.display()))?;
    }
    util::fsutil::durable_rename(&tmp, &dir).with_context(|| format!("{}: cannot finish", dir.display()))?;
    Ok(dir)
}

/// The finished checkpoints of a run, by step; interrupted ones are cleared.
pub fn list(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = run.join(CHECKPOINTS_DIR);
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).with_context(|| format!("{}: cannot list", root.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()) {
            out.push((step, entry.path()));
        } else if name.ends_with(".partial") {
            // A checkpoint interrupted while being written: never complete, safe to drop.
            std::fs::remove_dir_all(entry.path()).ok();
        }
    }
    out.sort();
    Ok(out)
}

/// The model and trainer state of the checkpoint `dir`.
pub fn load(dir: &Path, device: &Device) -> Result<(Llama, TrainerState)> {
    let mut model = Llama::load(dir, device)?;
    let master = dir.join(MASTER_WEIGHTS_FILE);
    if master.is_file() {
        let tensors = candle_core::safetensors::load(&master, device)
            .with_context(|| format!("{}: cannot read the f32 weights", master.display()))?;
        let base_dtype = model.base_dtype;
        model = Llama::from_tensors(model.config.clone(), tensors, device)
            .with_context(|| format!("{}", master.display()))?;
        model.base_dtype = base_dtype;
    }
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let state = serde_json::from_str(&text).with_context(|| format!("{}: invalid trainer state", path.display()))?;
    Ok((model, state))
}

/// Restore `optimizer`'s moments from the checkpoint `dir`.
pub fn load_optimizer(dir: &Path, optimizer: &mut AdamW, steps: u64) -> Result<()> {
    let path = dir.join(OPTIMIZER_FILE);
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("{}: cannot read the optimizer state", path.display()))?;
    optimizer.load_state(tensors, steps).with_context(|| format!("{}", path.display()))
}
