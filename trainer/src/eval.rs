//! Evaluation without gradients: held-out loss, per-token scores of a text, and loss by
//! position bucket.

use anyhow::{Result, ensure};
use serde::Serialize;

use crate::model::{Batch, Llama};

/// Mean loss over the loss-masked targets of `batches` (`None` when there are none).
pub fn mean_loss(model: &Llama, batches: &[Batch]) -> Result<Option<f64>> {
    let (mut sum, mut count) = (0.0, 0.0);
    for b in batches {
        sum += model.loss_sum(b)?.to_scalar::<f32>()? as f64;
        count += b.loss_tokens();
    }
    Ok((count > 0.0).then(|| sum / count))
}

/// Mean loss per bucket of `bucket` positions (position within the document), over `batches`;
/// `None` for a bucket no target falls in.
pub fn loss_by_position(model: &Llama, batches: &[Batch], bucket: usize) -> Result<Vec<Option<f64>>> {
    let (mut sums, mut counts) = (Vec::<f64>::new(), Vec::<f64>::new());
    for b in batches {
        let lp = model.target_log_probs(b)?.to_vec1::<f32>()?;
        for (i, &v) in lp.iter().enumerate() {
            if b.loss_mask[i] == 0.0 {
                continue;
            }
            let k = b.positions[i] as usize / bucket;
            if sums.len() <= k {
                sums.resize(k + 1, 0.0);
                counts.resize(k + 1, 0.0);
            }
            sums[k] -= v as f64;
            counts[k] += 1.0;
        }
    }
    Ok(sums.iter().zip(&counts).map(|(s, c)| (*c > 0.0).then(|| s / c)).collect())
}

/// Per-token scores of a sequence: `log_probs[i]` is log p(ids[i + 1] | ids[..=i]).
#[derive(Debug, Serialize)]
pub struct Scores {
    pub ids: Vec<u32>,
    pub log_probs: Vec<f32>,
    pub mean_loss: f64,
    /// Every position's logits over the vocabulary (on request: parity checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<Vec<f32>>>,
}

/// Score `ids` as one sequence (RoPE set for its length, as transformers does for dynamic NTK and
/// LongRoPE).
pub fn score(model: &mut Llama, ids: &[u32], with_logits: bool) -> Result<Scores> {
    ensure!(ids.len() >= 2, "scoring needs at least two tokens (one to predict)");
    let vocab = model.config.vocab_size as u32;
    if let Some(bad) = ids.iter().find(|&&id| id >= vocab) {
        anyhow::bail!("token id {bad} is outside the model's vocabulary of {vocab}");
    }
    let t = ids.len() - 1;
    let batch = Batch {
        batch: 1,
        seq: t,
        ids: ids[..t].to_vec(),
        targets: ids[1..].to_vec(),
        positions: (0..t as u32).collect(),
        segments: vec![0; t],
        loss_mask: vec![1.0; t],
    };
    model.set_sequence_length(t as u64)?;
    let log_probs = model.target_log_probs(&batch)?.to_vec1::<f32>()?;
    let mean_loss = -log_probs.iter().map(|&v| v as f64).sum::<f64>() / t as f64;
    let logits = if with_logits { Some(model.forward(&batch)?.to_vec2::<f32>()?) } else { None };
    Ok(Scores { ids: ids.to_vec(), log_probs, mean_loss, logits })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf_config::LlamaConfig;
    use candle_core::Device;

    #[test]
    fn scores_agree_with_the_training_loss() {
        let mut model = Llama::init(&LlamaConfig::tiny(40), 1, &Device::Cpu).unwrap();
        let ids: Vec<u32> = (0..12).map(|i| (i * 5 + 1) % 40).collect();
        let s = score(&mut model, &ids, true).unwrap();
        assert_eq!(s.logits.as_ref().unwrap().len(), 11);
        assert_eq!(s.logits.as_ref().unwrap()[0].len(), 40);
        assert_eq!(s.log_probs.len(), 11);
        assert!(s.log_probs.iter().all(|&v| v < 0.0));
        // Near-uniform at init: loss close to ln(40).
        assert!((s.mean_loss - 40f64.ln()).abs() < 0.1, "{}", s.mean_loss);
        let batch = Batch {
            batch: 1,
            seq: 11,
            ids: ids[..11].to_vec(),
            targets: ids[1..].to_vec(),
            positions: (0..11).collect(),
            segments: vec![0; 11],
            loss_mask: vec![1.0; 11],
        };
        let loss = mean_loss(&model, std::slice::from_ref(&batch)).unwrap().unwrap();
        assert!((loss - s.mean_loss).abs() < 1e-5);
        let by_pos = loss_by_position(&model, &[batch], 4).unwrap();
        assert_eq!(by_pos.len(), 3);
        assert!(by_pos.iter().all(Option::is_some), "every bucket of 11 positions by 4 has targets");
        assert!(score(&mut model, &[1], false).is_err());
        assert!(score(&mut model, &[1, 40], false).unwrap_err().to_string().contains("40"));
    }
}
