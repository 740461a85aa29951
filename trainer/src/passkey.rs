//! Passkey retrieval (Mohtashami & Jaggi 2023): seeded filler text with "The pass key is NNNNN.
//! Remember it." at a chosen depth, then the question; exact match of the 5 digits.
//!
//! Scored in one forward pass: greedy decoding produces the answer exactly when every answer
//! token is the argmax given the correct prefix, so the teacher-forced argmax is the same test
//! without a generation loop.

use anyhow::{Result, ensure};
use candle_core::D;
use serde::{Deserialize, Serialize};

use crate::model::{Batch, Llama};
use util::rng::splitmix64;

const FILLER: &str = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const QUESTION: &str = " What is the pass key? The pass key is";

/// The evaluation grid, in `[eval.passkey]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyConfig {
    /// A tokenizer.json (the model's).
    pub tokenizer: std::path::PathBuf,
    /// Prompt lengths in tokens.
    pub lengths: Vec<usize>,
    /// Where the key sits, as a fraction of the filler before it (0 = start, 1 = end).
    #[serde(default = "default_depths")]
    pub depths: Vec<f64>,
    /// Keys per cell.
    #[serde(default = "default_trials")]
    pub trials: usize,
}

fn default_depths() -> Vec<f64> {
    vec![0.0, 0.25, 0.5, 0.75, 1.0]
}
fn default_trials() -> usize {
    5
}

/// Accuracy per (length, depth).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PasskeyGrid {
    pub lengths: Vec<usize>,
    pub depths: Vec<f64>,
    /// `accuracy[length][depth]` in [0, 1].
    pub accuracy: Vec<Vec<f64>>,
}

/// Text to token ids (the model's tokenizer).
pub type Encode = Box<dyn Fn(&str) -> Result<Vec<u32>> + Send + Sync>;

/// Token ids of the prompt pieces, so prompts of any length are cut from whole filler units.
pub struct PasskeyPrompts {
    filler: Vec<u32>,
    question: Vec<u32>,
    encode: Encode,
}

/// One prompt: `ids` = prompt + answer; the answer is the last `answer_len` tokens.
pub struct Prompt {
    pub ids: Vec<u32>,
    pub answer_len: usize,
}

impl PasskeyPrompts {
    pub fn new(encode: impl Fn(&str) -> Result<Vec<u32>> + Send + Sync + 'static) -> Result<Self> {
        let filler = encode(FILLER)?;
        let question = encode(QUESTION)?;
        ensure!(!filler.is_empty() && !question.is_empty(), "the tokenizer encodes the passkey text to nothing");
        Ok(Self { filler, question, encode: Box::new(encode) })
    }

    /// A prompt of about `length` tokens with `key` at `depth`.
    pub fn prompt(&self, length: usize, depth: f64, key: u32) -> Result<Prompt> {
        let key_line = (self.encode)(&format!(" The pass key is {key}. Remember it. {key} is the pass key."))?;
        let answer = (self.encode)(&format!(" {key}"))?;
        let fixed = key_line.len() + self.question.len() + answer.len();
        ensure!(
            length > fixed,
            "passkey length {length} leaves no room for filler (the key and question take {fixed})"
        );
        let filler_tokens = length - fixed;
        let before = ((filler_tokens as f64) * depth.clamp(0.0, 1.0)).round() as usize;
        let filler = |n: usize| self.filler.iter().copied().cycle().take(n).collect::<Vec<u32>>();
        let mut ids = filler(before);
        ids.extend(&key_line);
        ids.extend(filler(filler_tokens - before));
        ids.extend(&self.question);
        let answer_len = answer.len();
        ids.extend(answer);
        Ok(Prompt { ids, answer_len })
    }
}

/// A seeded key in 10000..=99999 for (cell, trial).
pub fn key(seed: u64, cell: usize, trial: usize) -> u32 {
    let mut state = seed ^ ((cell as u64) << 32 | trial as u64);
    10_000 + (splitmix64(&mut state) % 90_000) as u32
}

/// The prompt as a batch of one row whose loss mask covers the answer tokens only.
pub fn prompt_batch(prompt: &Prompt) -> Batch {
    let t = prompt.ids.len() - 1;
    let mut loss_mask = vec![0.0; t];
    for m in &mut loss_mask[t - prompt.answer_len..] {
        *m = 1.0;
    }
    Batch {
        batch: 1,
        seq: t,
        ids: prompt.ids[..t].to_vec(),
        targets: prompt.ids[1..].to_vec(),
        positions: (0..t as u32).collect(),
        segments: vec![0; t],
        loss_mask,
    }
}

/// True when greedy decoding after the question yields exactly the key's digits.
pub fn retrieves(model: &mut Llama, prompt: &Prompt) -> Result<bool> {
    let batch = prompt_batch(prompt);
    model.set_sequence_length(batch.seq as u64)?;
    let predicted = model.forward(&batch)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let t = batch.seq;
    Ok(predicted[t - prompt.answer_len..] == batch.targets[t - prompt.answer_len..])
}

/// Accuracy over the grid; the model's RoPE is set per length and restored after.
pub fn evaluate(model: &mut Llama, prompts: &PasskeyPrompts, config: &PasskeyConfig, seed: u64) -> Result<PasskeyGrid> {
    let mut accuracy = Vec::new();
    for (i, &length) in config.lengths.iter().enumerate() {
        let mut row = Vec::new();
        for (j, &depth) in config.depths.iter().enumerate() {
            let mut hits = 0;
            for trial in 0..config.trials {
                let prompt = prompts.prompt(length, depth, key(seed, i * config.depths.len() + j, trial))?;
                hits += retrieves(model, &prompt)? as usize;
            }
            row.push(hits as f64 / config.trials.max(1) as f64);
        }
        accuracy.push(row);
    }
    Ok(PasskeyGrid { lengths: config.lengths.clone(), depths: config.depths.clone(), accuracy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf_config::LlamaConfig;
    use crate::optim::{AdamW, AdamWConfig};
    use candle_core::{Device, Tensor};

    /// A character-level tokenizer: byte values, so digits are single tokens.
    fn bytes(text: &str) -> Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }

    /// A word-level toy tokenizer (vocab 64): digits 1–10, '.' 11, '?' 12, words hashed into
    /// 16..64. Short prompts, so a tiny model learns the copy in a few hundred steps.
    fn words(text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut word = 0u32;
        let mut in_word = false;
        for c in text.chars() {
            if c.is_ascii_alphabetic() {
                word = word.wrapping_mul(31).wrapping_add(c as u32);
                in_word = true;
                continue;
            }
            if in_word {
                ids.push(16 + word % 48);
                (word, in_word) = (0, false);
            }
            match c {
                '0'..='9' => ids.push(1 + c as u32 - '0' as u32),
                '.' => ids.push(11),
                '?' => ids.push(12),
                _ => {}
            }
        }
        if in_word {
            ids.push(16 + word % 48);
        }
        Ok(ids)
    }

    #[test]
    fn prompts_place_the_key_at_the_depth() {
        let p = PasskeyPrompts::new(bytes).unwrap();
        let prompt = p.prompt(300, 0.5, 12_345).unwrap();
        assert_eq!(prompt.ids.len(), 300);
        assert_eq!(prompt.answer_len, 6); // " 12345"
        let text: String = prompt.ids.iter().map(|&b| b as u8 as char).collect();
        assert!(text.ends_with("The pass key is 12345"));
        let at = text.find("The pass key is 12345.").unwrap();
        let filler = 300 - 6 - QUESTION.len() - " The pass key is 12345. Remember it. 12345 is the pass key.".len();
        assert_eq!(at, (filler as f64 / 2.0).round() as usize + 1);
        assert!(p.prompt(20, 0.5, 12_345).is_err());
        let keys: Vec<u32> = (0..50).map(|t| key(1, 0, t)).collect();
        assert!(keys.iter().all(|k| (10_000..=99_999).contains(k)));
        assert_eq!(keys, (0..50).map(|t| key(1, 0, t)).collect::<Vec<_>>());
    }

    #[test]
    fn a_model_trained_to_retrieve_scores_and_an_untrained_one_does_not() {
        // Train on passkey prompts (loss on the answer only), then evaluate on unseen keys.
        let config = LlamaConfig {
            vocab_size: 64,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 3, // two layers copy five digits unreliably (ambiguous repeats)
            num_attention_heads: 4,
            num_key_value_heads: 4,
            head_dim: 16,
            max_position_embeddings: 128,
            ..LlamaConfig::tiny(64)
        };
        let mut model = Llama::init(&config, 11, &Device::Cpu).unwrap();
        let prompts = PasskeyPrompts::new(words).unwrap();
        let grid =
            PasskeyConfig { tokenizer: "unused".into(), lengths: vec![48], depths: vec![0.0, 0.5, 1.0], trials: 8 };
        let before = evaluate(&mut model, &prompts, &grid, 99).unwrap();
        assert!(before.accuracy.iter().flatten().all(|&a| a == 0.0));
        let params: Vec<_> = model.params().iter().map(|(n, v)| (n.clone(), v.clone(), false)).collect();
        let mut opt = AdamW::new(AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() }, params.clone());
        let mut last = f64::NAN;
        let schedule = crate::LrSchedule {
            peak_lr: 2e-3,
            min_lr: 2e-4,
            init_lr: 0.0,
            warmup_steps: 50,
            total_steps: STEPS as u64,
            decay: crate::Decay::Cosine,
        };
        for step in 0..STEPS {
            let mut batch = Batch::default();
            for r in 0..16 {
                let depth = ((step * 16 + r) % 11) as f64 / 10.0;
                let b = prompt_batch(&prompts.prompt(48, depth, key(5, step, r)).unwrap());
                batch.ids.extend(b.ids);
                batch.targets.extend(b.targets);
                batch.positions.extend(b.positions);
                batch.segments.extend(b.segments);
                batch.loss_mask.extend(b.loss_mask);
                batch.batch += 1;
                batch.seq = b.seq;
            }
            let loss = (model.loss_sum(&batch).unwrap() / batch.loss_tokens()).unwrap();
            last = loss.to_scalar::<f32>().unwrap() as f64;
            let grads = loss.backward().unwrap();
            let g: Vec<Tensor> = params.iter().map(|(_, v, _)| grads.get(v.as_tensor()).unwrap().clone()).collect();
            opt.step(&g, schedule.lr(step as u64 + 1)).unwrap();
        }
        let after = evaluate(&mut model, &prompts, &grid, 99).unwrap();
        let mean = after.accuracy.iter().flatten().sum::<f64>() / 3.0;
        // Guessing five digits succeeds once in 10⁵; this small model learns to copy the key.
        assert!(mean >= 0.75, "a trained model retrieves: {:?} (last loss {last})", after.accuracy);
    }

    const STEPS: usize = 600;
}
