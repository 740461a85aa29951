//! The Llama decoder (RMSNorm, SwiGLU, grouped-query attention, half-split RoPE). On the CPU it
//! runs midtrain's fused ops, which carry their own backward (`fused`); elsewhere, and as their
//! reference, it runs candle's differentiable basic ops: candle-nn's fused `rms_norm`,
//! `softmax_last_dim` and `rope` record no backward op and would cut gradients silently
//! (docs/training-notes.md).
//!
//! Parameters carry transformers' names, so `model.safetensors` moves both ways.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, D, DType, Device, Layout, Shape, Tensor, TensorId, Var};

use crate::fused;
use crate::hf_config::LlamaConfig;
use util::rng::splitmix64;

/// One packed batch: `ids`, `positions` and `segments` are `[batch, seq]`. Tokens attend to
/// earlier tokens of the same segment (document masking gives each document its own segment;
/// without it the whole row is one segment).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub batch: usize,
    pub seq: usize,
    pub ids: Vec<u32>,
    pub targets: Vec<u32>,
    pub positions: Vec<u32>,
    pub segments: Vec<u32>,
    /// 1.0 where the target counts in the loss.
    pub loss_mask: Vec<f32>,
}

impl Batch {
    pub fn loss_tokens(&self) -> f64 {
        self.loss_mask.iter().map(|&m| m as f64).sum()
    }
}

struct Layer {
    q: Var,
    k: Var,
    v: Var,
    o: Var,
    gate: Var,
    up: Var,
    down: Var,
    input_norm: Var,
    post_norm: Var,
}

impl Layer {
    // The tensor names under `model.layers.N.`, transformers' names.
    const Q: &str = "self_attn.q_proj.weight";
    const K: &str = "self_attn.k_proj.weight";
    const V: &str = "self_attn.v_proj.weight";
    const O: &str = "self_attn.o_proj.weight";
    const GATE: &str = "mlp.gate_proj.weight";
    const UP: &str = "mlp.up_proj.weight";
    const DOWN: &str = "mlp.down_proj.weight";
    const INPUT_NORM: &str = "input_layernorm.weight";
    const POST_NORM: &str = "post_attention_layernorm.weight";

    /// Layer `index`'s tensors, each taken by its name (never by position, so two tensors of one
    /// shape cannot swap).
    fn bind(index: usize, var: &dyn Fn(&str) -> Var) -> Self {
        let at = |name: &str| var(&format!("model.layers.{index}.{name}"));
        Self {
            q: at(Self::Q),
            k: at(Self::K),
            v: at(Self::V),
            o: at(Self::O),
            gate: at(Self::GATE),
            up: at(Self::UP),
            down: at(Self::DOWN),
            input_norm: at(Self::INPUT_NORM),
            post_norm: at(Self::POST_NORM),
        }
    }
}

impl LayerWeights {
    fn tensors(&self) -> [&Tensor; 9] {
        [&self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down, &self.input_norm, &self.post_norm]
    }
}

impl Layer {
    fn weights(&self) -> LayerWeights {
        self.weights_as(|v| v.as_tensor().clone())
    }

    fn weights_as(&self, f: impl Fn(&Var) -> Tensor) -> LayerWeights {
        LayerWeights {
            q: f(&self.q),
            k: f(&self.k),
            v: f(&self.v),
            o: f(&self.o),
            gate: f(&self.gate),
            up: f(&self.up),
            down: f(&self.down),
            input_norm: f(&self.input_norm),
            post_norm: f(&self.post_norm),
        }
    }
}

pub struct Llama {
    pub config: LlamaConfig,
    device: Device,
    embed: Var,
    layers: Vec<Layer>,
    norm: Var,
    lm_head: Option<Var>,
    /// Every trainable variable with its transformers name, in a fixed order.
    params: Vec<(String, Var)>,
    inv_freq: Vec<f32>,
    attention_factor: f32,
    kernels: Kernels,
    recompute: Recompute,
    /// Parameter gradients that recomputed layers found during backward (see `backward`).
    recomputed_grads: Arc<Mutex<HashMap<TensorId, Tensor>>>,
    /// The dtype of the weights it was made from (checkpoints keep it unless told otherwise).
    pub base_dtype: WeightDtype,
}

/// SplitMix64 → standard normals (Box–Muller): seeded, so initial weights are reproducible.
fn normal_init(seed: u64, n: usize, std: f32) -> Vec<f32> {
    let mut state = seed;
    let mut next = || (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let (u1, u2) = (next().max(f64::MIN_POSITIVE), next());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((r * t.cos()) as f32 * std);
        out.push((r * t.sin()) as f32 * std);
    }
    out.truncate(n);
    out
}

impl Llama {
    /// The parameter names and shapes of a configuration, in a fixed order.
    pub fn parameter_shapes(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
        let (d, v, f, hd) = (config.hidden_size, config.vocab_size, config.intermediate_size, config.head_dim);
        let (q, kv) = (config.num_attention_heads * hd, config.num_key_value_heads * hd);
        let mut shapes = vec![("model.embed_tokens.weight".to_string(), vec![v, d])];
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            shapes.extend([
                (format!("{p}.{}", Layer::Q), vec![q, d]),
                (format!("{p}.{}", Layer::K), vec![kv, d]),
                (format!("{p}.{}", Layer::V), vec![kv, d]),
                (format!("{p}.{}", Layer::O), vec![d, q]),
                (format!("{p}.{}", Layer::GATE), vec![f, d]),
                (format!("{p}.{}", Layer::UP), vec![f, d]),
                (format!("{p}.{}", Layer::DOWN), vec![d, f]),
                (format!("{p}.{}", Layer::INPUT_NORM), vec![d]),
                (format!("{p}.{}", Layer::POST_NORM), vec![d]),
            ]);
        }
        shapes.push(("model.norm.weight".to_string(), vec![d]));
        if !config.tie_word_embeddings {
            shapes.push(("lm_head.weight".to_string(), vec![v, d]));
        }
        shapes
    }

    /// A fresh model: normal(0, 0.02) weights from `seed`, norm gains 1.
    pub fn init(config: &LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        for (i, (name, shape)) in Self::parameter_shapes(config).into_iter().enumerate() {
            let n: usize = shape.iter().product();
            let data = if name.ends_with("norm.weight") {
                vec![1.0f32; n]
            } else {
                normal_init(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407), n, 0.02)
            };
            tensors.insert(name, Tensor::from_vec(data, shape, device)?);
        }
        Self::from_tensors(config.clone(), tensors, device)
    }

    /// Load an HF checkpoint folder: `model.safetensors`, or the shards that
    /// `model.safetensors.index.json` names (any float dtype; trained in f32).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = LlamaConfig::load(&dir.join("config.json"))?;
        let tensors = load_weights(dir, device)?;
        Self::from_tensors(config, tensors, device).with_context(|| format!("{}", dir.display()))
    }

    pub fn from_tensors(config: LlamaConfig, mut tensors: HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        if config.partial_rotary_factor != 1.0 {
            bail!("Llama rotates the whole head: partial_rotary_factor must be 1");
        }
        // A tied matrix may be stored under either name (transformers loads both).
        if config.tie_word_embeddings {
            let head = tensors.remove("lm_head.weight");
            if !tensors.contains_key("model.embed_tokens.weight")
                && let Some(head) = head
            {
                tensors.insert("model.embed_tokens.weight".to_string(), head);
            }
        }
        let base_dtype = WeightDtype::of(tensors.get("model.embed_tokens.weight").map_or(DType::F32, |t| t.dtype()));
        let mut params = Vec::new();
        for (name, shape) in Self::parameter_shapes(&config) {
            let t = tensors.remove(&name).with_context(|| format!("tensor {name:?} is missing"))?;
            ensure!(
                t.dims() == shape.as_slice(),
                "tensor {name:?} has shape {:?}, the config needs {shape:?}",
                t.dims()
            );
            params.push((name, Var::from_tensor(&t.to_dtype(DType::F32)?)?));
        }
        let by_name: HashMap<&str, &Var> = params.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let var = |name: &str| -> Var { (*by_name.get(name).expect("parameter_shapes lists every tensor")).clone() };
        let embed = var("model.embed_tokens.weight");
        let layers = (0..config.num_hidden_layers).map(|i| Layer::bind(i, &var)).collect();
        let norm = var("model.norm.weight");
        let lm_head = (!config.tie_word_embeddings).then(|| var("lm_head.weight"));
        let freqs = config.rope().frequencies(None)?;
        Ok(Self {
            device: device.clone(),
            embed,
            layers,
            norm,
            lm_head,
            params,
            inv_freq: freqs.inv_freq.iter().map(|&f| f as f32).collect(),
            attention_factor: freqs.attention_factor as f32,
            // The fused ops have CPU kernels only.
            kernels: if device.is_cpu() { Kernels::Fused } else { Kernels::Composed },
            recompute: Recompute::None,
            recomputed_grads: Arc::default(),
            base_dtype,
            config,
        })
    }

    /// Change the rotary embedding (context extension): new config, same weights.
    pub fn set_rope(&mut self, config: LlamaConfig, seq_len: u64) -> Result<()> {
        let freqs = config.rope().frequencies(Some(seq_len))?;
        self.inv_freq = freqs.inv_freq.iter().map(|&f| f as f32).collect();
        self.attention_factor = freqs.attention_factor as f32;
        self.config = config;
        Ok(())
    }

    /// Use the frequencies for sequences of `seq_len` (dynamic NTK, LongRoPE).
    pub fn set_sequence_length(&mut self, seq_len: u64) -> Result<()> {
        self.set_rope(self.config.clone(), seq_len)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Weight decay applies to matrices only: not to embeddings (nor a tied head) or norm gains.
    pub fn decays(name: &str) -> bool {
        !(name.ends_with("norm.weight") || name == "model.embed_tokens.weight")
    }

    /// Save the weights in f32 as `model.safetensors` (transformers' names; a tied head is not
    /// written) atomically.
    pub fn save_weights(&self, dir: &Path) -> Result<()> {
        self.save_weights_as(dir, WeightDtype::Float32, u64::MAX)
    }

    /// Save the weights in `dtype`: `model.safetensors`, or above `max_shard_bytes` the shards
    /// `model-0000K-of-0000N.safetensors` with `model.safetensors.index.json`, as transformers'
    /// `save_pretrained(max_shard_size=…)` writes them (tensors in name order, a new shard when
    /// the next tensor would pass the limit).
    pub fn save_weights_as(&self, dir: &Path, dtype: WeightDtype, max_shard_bytes: u64) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(self.params.len());
        for (name, var) in &self.params {
            tensors.push((name.clone(), var.as_tensor().to_dtype(dtype.dtype())?));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let bytes = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        let total: u64 = tensors.iter().map(|(_, t)| bytes(t)).sum();
        if total <= max_shard_bytes {
            return save_safetensors(&dir.join("model.safetensors"), tensors);
        }
        let mut shards: Vec<Vec<(String, Tensor)>> = vec![Vec::new()];
        let mut size = 0;
        for (name, t) in tensors {
            let last = shards.last_mut().expect("one shard at least");
            if !last.is_empty() && size + bytes(&t) > max_shard_bytes {
                shards.push(Vec::new());
                size = 0;
            }
            size += bytes(&t);
            shards.last_mut().expect("one shard at least").push((name, t));
        }
        let n = shards.len();
        let mut weight_map = serde_json::Map::new();
        for (k, shard) in shards.into_iter().enumerate() {
            let file = format!("model-{:05}-of-{n:05}.safetensors", k + 1);
            for (name, _) in &shard {
                weight_map.insert(name.clone(), serde_json::Value::from(file.clone()));
            }
            save_safetensors(&dir.join(&file), shard)?;
        }
        let index = serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        let path = dir.join("model.safetensors.index.json");
        util::fsutil::write_atomic(&path, serde_json::to_string_pretty(&index)?.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))
    }

    /// Keep each layer's activations for backward, or only its input and run it again there.
    pub fn set_recompute(&mut self, recompute: Recompute) {
        self.recompute = recompute;
    }

    /// `loss.backward()` plus the parameter gradients that recomputed layers found on the way
    /// (a custom op's backward returns the gradients of its inputs only).
    pub fn backward(&self, loss: &Tensor) -> Result<GradStore> {
        let mut grads = loss.backward()?;
        let found = std::mem::take(&mut *self.recomputed_grads.lock().expect("not poisoned"));
        for (_, var) in &self.params {
            if let Some(g) = found.get(&var.as_tensor().id()) {
                let sum = match grads.get(var.as_tensor()) {
                    Some(existing) => (existing + g)?,
                    None => g.clone(),
                };
                grads.insert(var.as_tensor(), sum);
            }
        }
        Ok(grads)
    }

    /// Which kernels the model runs.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Run the composed reference ops instead of the fused ones (tests, and devices without
    /// fused kernels).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    /// What every layer needs from the batch, built once per forward.
    fn batch_context(&self, batch: &Batch) -> Result<BatchContext> {
        if self.kernels == Kernels::Fused {
            let table = fused::RotaryTable::new(&batch.positions, &self.inv_freq, self.attention_factor);
            let starts = fused::segment_starts(&batch.segments, batch.seq);
            return Ok(BatchContext::Fused { table: Arc::new(table), starts: Arc::new(starts) });
        }
        let (cos, sin) = self.rotary(batch)?;
        Ok(BatchContext::Composed { cos, sin, mask: self.attention_mask(batch)? })
    }

    /// cos and sin `[batch, 1, seq, head_dim]` for the batch's positions, times the attention factor.
    fn rotary(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut angles = Vec::with_capacity(batch.positions.len() * half * 2);
        for &p in &batch.positions {
            let start = angles.len();
            angles.extend(self.inv_freq.iter().map(|&f| p as f32 * f));
            angles.extend_from_within(start..start + half);
        }
        let a = self.attention_factor;
        let cos: Vec<f32> = angles.iter().map(|x| x.cos() * a).collect();
        let sin: Vec<f32> = angles.iter().map(|x| x.sin() * a).collect();
        let shape = (batch.batch, 1, batch.seq, 2 * half);
        Ok((Tensor::from_vec(cos, shape, &self.device)?, Tensor::from_vec(sin, shape, &self.device)?))
    }

    /// Additive mask `[batch, 1, seq, seq]`: 0 where query i may see key j (j ≤ i, same segment).
    fn attention_mask(&self, batch: &Batch) -> Result<Tensor> {
        let (b, t) = (batch.batch, batch.seq);
        let mut mask = vec![f32::NEG_INFINITY; b * t * t];
        for r in 0..b {
            let seg = &batch.segments[r * t..(r + 1) * t];
            for i in 0..t {
                let row = &mut mask[(r * t + i) * t..(r * t + i + 1) * t];
                for j in (0..=i).rev() {
                    if seg[j] != seg[i] {
                        break;
                    }
                    row[j] = 0.0;
                }
            }
        }
        Ok(Tensor::from_vec(mask, (b, 1, t, t), &self.device)?)
    }

    /// The final normed hidden states `[batch·seq, d]`.
    fn hidden(&self, batch: &Batch) -> Result<Tensor> {
        let (b, t) = (batch.batch, batch.seq);
        let ids = Tensor::from_slice(&batch.ids, b * t, &self.device)?;
        let mut x = self.embed.as_tensor().index_select(&ids, 0)?;
        let context = self.batch_context(batch)?;
        let decoder = self.decoder();
        for layer in &self.layers {
            x = match self.recompute {
                Recompute::None => decoder.layer_forward(&layer.weights(), &x, &context, b, t)?,
                Recompute::Layers => {
                    // Forward without a graph; the op runs the layer again in backward.
                    let output = decoder.layer_forward(
                        &layer.weights_as(|v| v.as_tensor().detach()),
                        &x.detach(),
                        &context,
                        b,
                        t,
                    )?;
                    let op = RecomputedLayer {
                        decoder: decoder.clone(),
                        weights: layer.weights(),
                        context: context.clone(),
                        shape: (b, t),
                        output: Mutex::new(Some(output)),
                        parameter_grads: self.recomputed_grads.clone(),
                    };
                    x.apply_op1(op)?
                }
            };
        }
        decoder.rms_norm(&x, self.norm.as_tensor())
    }

    fn decoder(&self) -> Decoder {
        Decoder { config: self.config.clone(), kernels: self.kernels }
    }

    fn head(&self) -> &Var {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Logits `[batch·seq, vocab]`.
    pub fn forward(&self, batch: &Batch) -> Result<Tensor> {
        self.decoder().linear(&self.hidden(batch)?, self.head().as_tensor())
    }

    /// Log-probability of each target `[batch·seq]` (differentiable).
    pub fn target_log_probs(&self, batch: &Batch) -> Result<Tensor> {
        let hidden = self.hidden(batch)?;
        if self.kernels == Kernels::Fused {
            let op = fused::TargetLogProbs::new(Arc::new(batch.targets.clone()));
            return Ok(op.apply(&hidden, self.head().as_tensor())?);
        }
        let logits = self.decoder().linear(&hidden, self.head().as_tensor())?;
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let shifted = logits.broadcast_sub(&max)?;
        let log_z = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let targets = Tensor::from_slice(&batch.targets, (batch.batch * batch.seq, 1), &self.device)?;
        Ok(shifted.gather(&targets, 1)?.broadcast_sub(&log_z)?.squeeze(1)?)
    }

    /// Sum of the masked negative log-likelihood (a scalar to divide by the batch's loss tokens).
    pub fn loss_sum(&self, batch: &Batch) -> Result<Tensor> {
        let mask = Tensor::from_slice(&batch.loss_mask, batch.loss_mask.len(), &self.device)?;
        Ok((self.target_log_probs(batch)? * mask)?.sum_all()?.neg()?)
    }
}

/// What a decoder layer's forward needs besides its weights: owned, so that a recomputing op
/// can run the layer again in backward.
#[derive(Clone)]
struct Decoder {
    config: LlamaConfig,
    kernels: Kernels,
}

impl Decoder {
    fn rms_norm(&self, x: &Tensor, gain: &Tensor) -> Result<Tensor> {
        let eps = self.config.rms_norm_eps;
        if self.kernels == Kernels::Fused {
            return Ok(fused::RmsNorm { eps }.apply(x, gain)?);
        }
        let scale = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
        Ok(x.broadcast_mul(&scale)?.broadcast_mul(gain)?)
    }

    /// `[rows, in] × Wᵀ` with W `[out, in]`.
    fn linear(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        if self.kernels == Kernels::Fused {
            return Ok(fused::Linear::apply(x, w)?);
        }
        Ok(x.matmul(&w.t()?)?)
    }

    fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
    }

    /// Self-attention of `x [b·t, d]` → `[b·t, d]` (before the residual).
    fn attention(&self, w: &LayerWeights, x: &Tensor, context: &BatchContext, b: usize, t: usize) -> Result<Tensor> {
        let c = &self.config;
        let (h, kvh, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let (q, k, v) = (self.linear(x, &w.q)?, self.linear(x, &w.k)?, self.linear(x, &w.v)?);
        let out = match context {
            BatchContext::Fused { table, starts } => {
                let rotate =
                    |y: Tensor, n: usize| fused::Rotary { table: table.clone() }.apply(&y.reshape((b, t, n, hd))?);
                let (q, k) = (rotate(q, h)?, rotate(k, kvh)?);
                let attention =
                    fused::FlashAttention::new((b, t, h, kvh, hd), starts.clone(), 1.0 / (hd as f32).sqrt());
                attention.apply(&q, &k, &v.reshape((b, t, kvh, hd))?)?.reshape((b * t, h * hd))?
            }
            BatchContext::Composed { cos, sin, mask } => {
                let heads = |y: Tensor, n: usize| -> Result<Tensor> { Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?) };
                let q = Self::rotate(&heads(q, h)?, cos, sin)?;
                let k = Self::rotate(&heads(k, kvh)?, cos, sin)?;
                let v = heads(v, kvh)?;
                // Grouped-query attention: each key/value head serves h / kvh query heads.
                let repeat = |y: Tensor| -> Result<Tensor> {
                    if h == kvh {
                        return Ok(y.contiguous()?);
                    }
                    Ok(y.unsqueeze(2)?.broadcast_as((b, kvh, h / kvh, t, hd))?.reshape((b, h, t, hd))?)
                };
                let (k, v) = (repeat(k)?, repeat(v)?);
                let scores = (q.contiguous()?.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(mask)?;
                let max = scores.max_keepdim(D::Minus1)?.detach();
                let e = scores.broadcast_sub(&max)?.exp()?;
                let probs = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
                probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, h * hd))?
            }
        };
        self.linear(&out, &w.o)
    }

    /// One decoder layer on `x [b·t, d]`, residuals included.
    fn layer_forward(
        &self,
        w: &LayerWeights,
        x: &Tensor,
        context: &BatchContext,
        b: usize,
        t: usize,
    ) -> Result<Tensor> {
        let x = (x + self.attention(w, &self.rms_norm(x, &w.input_norm)?, context, b, t)?)?;
        let y = self.rms_norm(&x, &w.post_norm)?;
        let (gate, up) = (self.linear(&y, &w.gate)?, self.linear(&y, &w.up)?);
        let gated = match self.kernels {
            Kernels::Fused => fused::SwiGlu::apply(&gate, &up)?,
            Kernels::Composed => (gate.silu()? * up)?,
        };
        Ok((x + self.linear(&gated, &w.down)?)?)
    }
}

/// The dtype of a checkpoint's weights (`[model] save_dtype`; transformers' `torch_dtype` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    Float32,
    Bfloat16,
    Float16,
}

impl WeightDtype {
    pub fn dtype(self) -> DType {
        match self {
            Self::Float32 => DType::F32,
            Self::Bfloat16 => DType::BF16,
            Self::Float16 => DType::F16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Bfloat16 => "bfloat16",
            Self::Float16 => "float16",
        }
    }

    fn of(dtype: DType) -> Self {
        match dtype {
            DType::BF16 => Self::Bfloat16,
            DType::F16 => Self::Float16,
            _ => Self::Float32,
        }
    }
}

/// `[train] recompute`: activation checkpointing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recompute {
    /// Keep every activation backward needs (fastest).
    #[default]
    None,
    /// Keep only each decoder layer's input and recompute the layer in backward: activation
    /// memory of one layer instead of all of them, for about one more forward pass of compute.
    Layers,
}

/// A decoder layer whose forward ran without a graph: backward runs it again with one, takes the
/// input's gradient and hands the parameters' gradients to `Llama::backward`.
struct RecomputedLayer {
    decoder: Decoder,
    weights: LayerWeights,
    context: BatchContext,
    shape: (usize, usize),
    output: Mutex<Option<Tensor>>,
    parameter_grads: Arc<Mutex<HashMap<TensorId, Tensor>>>,
}

impl CustomOp1 for RecomputedLayer {
    fn name(&self) -> &'static str {
        "recomputed-layer"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let output = self.output.lock().expect("not poisoned").take();
        let Some(output) = output else { candle_core::bail!("recomputed layer: forward ran twice") };
        let (storage, layout) = output.storage_and_layout();
        let (candle_core::Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("recomputed layer: CPU f32 only")
        };
        Ok((CpuStorage::F32(data[start..end].to_vec()), output.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, d_out: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let input = Var::from_tensor(&x.detach())?;
        let (b, t) = self.shape;
        let output = self
            .decoder
            .layer_forward(&self.weights, input.as_tensor(), &self.context, b, t)
            .map_err(|e| candle_core::Error::Msg(format!("recomputed layer: {e:#}")))?;
        let grads = (output * d_out.detach())?.sum_all()?.backward()?;
        let mut found = self.parameter_grads.lock().expect("not poisoned");
        for w in self.weights.tensors() {
            if let Some(g) = grads.get(w) {
                let sum = match found.remove(&w.id()) {
                    Some(existing) => (existing + g)?,
                    None => g.clone(),
                };
                found.insert(w.id(), sum);
            }
        }
        Ok(grads.get(input.as_tensor()).cloned())
    }
}

/// Fused CPU ops with their own backward, or the composed candle ops they are tested against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    Fused,
    Composed,
}

#[derive(Clone)]
enum BatchContext {
    Fused { table: Arc<fused::RotaryTable>, starts: Arc<Vec<u32>> },
    Composed { cos: Tensor, sin: Tensor, mask: Tensor },
}

#[derive(Clone)]
/// One layer's weights as tensors: the variables themselves, or detached copies of them for a
/// forward that records nothing (activation recomputation).
struct LayerWeights {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    input_norm: Tensor,
    post_norm: Tensor,
}

/// Write tensors as safetensors with `{"format": "pt"}` (what transformers checks), atomically.
/// Every tensor of a checkpoint folder: `model.safetensors`, or each shard listed in
/// `model.safetensors.index.json` (`weight_map`: tensor name → file), read once per file.
pub fn load_weights(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.is_file() || !index.is_file() {
        if !single.is_file() {
            bail!(
                "{}: neither model.safetensors nor model.safetensors.index.json: not a safetensors checkpoint \
                 (PyTorch .bin checkpoints: save them again with save_pretrained(safe_serialization=True))",
                dir.display()
            );
        }
        return candle_core::safetensors::load(&single, device)
            .with_context(|| format!("{}: cannot read the weights", single.display()));
    }
    let text = std::fs::read_to_string(&index).with_context(|| format!("{}: cannot read", index.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", index.display()))?;
    let map = value
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .with_context(|| format!("{}: no weight_map object", index.display()))?;
    let mut files: Vec<&str> = Vec::new();
    for (name, file) in map {
        let file =
            file.as_str().with_context(|| format!("{}: weight_map[{name:?}] is not a file name", index.display()))?;
        ensure!(
            !file.contains('/') && !file.contains('\\'),
            "{}: weight_map[{name:?}] = {file:?} is not a file of this folder",
            index.display()
        );
        files.push(file);
    }
    files.sort_unstable();
    files.dedup();
    let mut tensors = HashMap::new();
    for file in files {
        let path = dir.join(file);
        let shard = candle_core::safetensors::load(&path, device)
            .with_context(|| format!("{}: cannot read this shard of {}", path.display(), index.display()))?;
        for (name, tensor) in shard {
            ensure!(
                map.get(&name).and_then(serde_json::Value::as_str) == Some(file),
                "{}: holds {name:?}, which {} places elsewhere",
                path.display(),
                index.display()
            );
            tensors.insert(name, tensor);
        }
    }
    for name in map.keys() {
        ensure!(tensors.contains_key(name), "{}: lists {name:?}, which no shard holds", index.display());
    }
    Ok(tensors)
}

pub fn save_safetensors(path: &Path, tensors: impl IntoIterator<Item = (String, Tensor)>) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
        .with_context(|| format!("{}: cannot serialise", path.display()))?;
    util::fsutil::write_atomic(path, &bytes).with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tensor_is_bound_by_its_name() {
        // Each tensor filled with its own index: a field bound to another tensor of the same
        // shape (q and o here, gate and up) shows as another value.
        let config = LlamaConfig { num_key_value_heads: 4, ..LlamaConfig::tiny(32) };
        let shapes = Llama::parameter_shapes(&config);
        let tensors: HashMap<String, Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, (name, shape))| (name.clone(), Tensor::full(i as f32, shape.as_slice(), &Device::Cpu).unwrap()))
            .collect();
        let model = Llama::from_tensors(config.clone(), tensors, &Device::Cpu).unwrap();
        let value = |v: &Var| v.as_tensor().flatten_all().unwrap().get(0).unwrap().to_scalar::<f32>().unwrap();
        let index = |name: &str| shapes.iter().position(|(n, _)| n == name).unwrap() as f32;
        let layer = &model.layers[1];
        let p = "model.layers.1";
        for (var, name) in [
            (&layer.q, Layer::Q),
            (&layer.k, Layer::K),
            (&layer.v, Layer::V),
            (&layer.o, Layer::O),
            (&layer.gate, Layer::GATE),
            (&layer.up, Layer::UP),
            (&layer.down, Layer::DOWN),
            (&layer.input_norm, Layer::INPUT_NORM),
            (&layer.post_norm, Layer::POST_NORM),
        ] {
            assert_eq!(value(var), index(&format!("{p}.{name}")), "{name}");
        }
        assert_eq!(value(&model.embed), index("model.embed_tokens.weight"));
        assert_eq!(value(&model.norm), index("model.norm.weight"));
        assert_eq!(value(model.lm_head.as_ref().unwrap()), index("lm_head.weight"));
    }

    pub(crate) fn toy_batch(vocab: u32, b: usize, t: usize, segments: impl Fn(usize) -> u32) -> Batch {
        let ids: Vec<u32> = (0..b * t).map(|i| (i as u32 * 7 + 3) % vocab).collect();
        let targets: Vec<u32> = (0..b * t).map(|i| (i as u32 * 7 + 10) % vocab).collect();
        let segments: Vec<u32> = (0..b * t).map(|i| segments(i % t)).collect();
        let mut positions = vec![0u32; b * t];
        for r in 0..b {
            for i in 1..t {
                let k = r * t + i;
                positions[k] = if segments[k] == segments[k - 1] { positions[k - 1] + 1 } else { 0 };
            }
        }
        Batch { batch: b, seq: t, ids, targets, positions, segments, loss_mask: vec![1.0; b * t] }
    }

    fn tiny() -> Llama {
        let config = LlamaConfig { num_hidden_layers: 2, ..LlamaConfig::tiny(50) };
        Llama::init(&config, 7, &Device::Cpu).unwrap()
    }

    #[test]
    fn every_parameter_receives_a_gradient() {
        let model = tiny();
        let batch = toy_batch(50, 2, 9, |i| (i >= 4) as u32);
        let grads = model.loss_sum(&batch).unwrap().backward().unwrap();
        assert_eq!(model.params().len(), 1 + 2 * 9 + 1 + 1);
        for (name, var) in model.params() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} has no gradient"));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0, "{name} has a zero gradient");
        }
    }

    /// The fused kernels against the composed reference on the whole model: logits, loss and
    /// every parameter's gradient, with documents that end inside an attention tile.
    #[test]
    fn fused_and_composed_kernels_agree_on_logits_and_every_gradient() {
        let mut model = tiny();
        assert_eq!(model.kernels(), Kernels::Fused);
        let batch = toy_batch(50, 2, 75, |i| (i >= 30) as u32 + (i >= 70) as u32);
        let run = |model: &Llama| {
            let logits = model.forward(&batch).unwrap();
            let loss = model.loss_sum(&batch).unwrap();
            let grads = loss.backward().unwrap();
            let grads: Vec<Tensor> =
                model.params().iter().map(|(_, v)| grads.get(v.as_tensor()).unwrap().clone()).collect();
            (logits, loss.to_scalar::<f32>().unwrap(), grads)
        };
        let (fused_logits, fused_loss, fused_grads) = run(&model);
        model.set_kernels(Kernels::Composed);
        let (logits, loss, grads) = run(&model);
        let max = |t: &Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let relative = |a: &Tensor, b: &Tensor| max(&(a - b).unwrap()) / max(b).max(1e-12);
        assert!(relative(&fused_logits, &logits) <= 1e-4, "logits: {}", relative(&fused_logits, &logits));
        assert!((fused_loss - loss).abs() <= 1e-4 * loss.abs(), "loss {fused_loss} vs {loss}");
        for ((name, _), (a, b)) in model.params().iter().zip(fused_grads.iter().zip(&grads)) {
            assert!(relative(a, b) <= 1e-4, "{name}: gradient differs by {}", relative(a, b));
        }
    }

    #[test]
    fn recomputing_layers_gives_the_same_loss_and_every_gradient() {
        let batch = toy_batch(50, 2, 40, |i| (i >= 25) as u32);
        for kernels in [Kernels::Fused, Kernels::Composed] {
            let mut model = tiny();
            model.set_kernels(kernels);
            let run = |model: &Llama| {
                let loss = model.loss_sum(&batch).unwrap();
                let grads = model.backward(&loss).unwrap();
                let grads: Vec<Vec<f32>> = model
                    .params()
                    .iter()
                    .map(|(name, v)| {
                        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient"));
                        g.flatten_all().unwrap().to_vec1().unwrap()
                    })
                    .collect();
                (loss.to_scalar::<f32>().unwrap(), grads)
            };
            let (loss, grads) = run(&model);
            model.set_recompute(Recompute::Layers);
            let (recomputed_loss, recomputed) = run(&model);
            assert_eq!(loss, recomputed_loss, "{kernels:?}");
            for ((name, _), (a, b)) in model.params().iter().zip(grads.iter().zip(&recomputed)) {
                let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
                let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(diff <= 1e-6 * scale.max(1e-12), "{kernels:?} {name}: differs by {diff} (of {scale})");
            }
            assert!(model.recomputed_grads.lock().unwrap().is_empty(), "backward takes what the layers found");
        }
    }

    #[test]
    fn document_masking_blocks_attention_across_documents() {
        let model = tiny();
        // Two documents in one row: changing the first must not move the second's log-probs.
        let batch = toy_batch(50, 1, 8, |i| (i >= 3) as u32);
        let mut changed = batch.clone();
        changed.ids[0] = (changed.ids[0] + 5) % 50;
        changed.ids[2] = (changed.ids[2] + 9) % 50;
        let a = model.target_log_probs(&batch).unwrap().to_vec1::<f32>().unwrap();
        let b = model.target_log_probs(&changed).unwrap().to_vec1::<f32>().unwrap();
        assert_ne!(a[..3], b[..3], "the first document's predictions do change");
        assert_eq!(a[3..], b[3..], "the second document never sees the first");
        // Without document masking (one segment) the second document does see the first.
        let one = toy_batch(50, 1, 8, |_| 0);
        let mut one_changed = one.clone();
        one_changed.ids[0] = changed.ids[0];
        let a = model.target_log_probs(&one).unwrap().to_vec1::<f32>().unwrap();
        let b = model.target_log_probs(&one_changed).unwrap().to_vec1::<f32>().unwrap();
        assert_ne!(a[3..], b[3..]);
    }

    #[test]
    fn attention_is_causal() {
        let model = tiny();
        let batch = toy_batch(50, 1, 8, |_| 0);
        let mut later = batch.clone();
        later.ids[6] = (later.ids[6] + 1) % 50;
        let a = model.target_log_probs(&batch).unwrap().to_vec1::<f32>().unwrap();
        let b = model.target_log_probs(&later).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a[..6], b[..6]);
        assert_ne!(a[6], b[6]);
    }

    #[test]
    fn weights_round_trip_through_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny();
        model.config.save(dir.path()).unwrap();
        model.save_weights(dir.path()).unwrap();
        let back = Llama::load(dir.path(), &Device::Cpu).unwrap();
        let batch = toy_batch(50, 1, 6, |_| 0);
        let a = model.target_log_probs(&batch).unwrap().to_vec1::<f32>().unwrap();
        let b = back.target_log_probs(&batch).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        // transformers checks the metadata.
        let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap().get("format").map(String::as_str), Some("pt"));
        // A tied model writes no head, and a missing tensor is named.
        let config = LlamaConfig { tie_word_embeddings: true, ..LlamaConfig::tiny(50) };
        let tied = Llama::init(&config, 1, &Device::Cpu).unwrap();
        assert!(!tied.params().iter().any(|(n, _)| n == "lm_head.weight"));
        let mut tensors: HashMap<String, Tensor> =
            tied.params().iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
        tensors.remove("model.norm.weight");
        let err = Llama::from_tensors(config, tensors, &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("model.norm.weight"));
    }

    /// Log-probabilities of a fixed batch: what two loads of the same weights must agree on.
    fn log_probs(model: &Llama) -> Vec<f32> {
        model.target_log_probs(&toy_batch(50, 1, 6, |_| 0)).unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn sharded_bf16_and_head_only_tied_checkpoints_load_as_transformers_writes_them() {
        let model = tiny();
        let tensors: Vec<(String, Tensor)> =
            model.params().iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();

        // Sharded: two files and the index transformers writes with `max_shard_size`.
        let dir = tempfile::tempdir().unwrap();
        model.config.save(dir.path()).unwrap();
        let (first, second) = tensors.split_at(tensors.len() / 2);
        let mut weight_map = serde_json::Map::new();
        for (file, part) in [("model-00001-of-00002.safetensors", first), ("model-00002-of-00002.safetensors", second)]
        {
            save_safetensors(&dir.path().join(file), part.iter().cloned()).unwrap();
            part.iter().for_each(|(n, _)| _ = weight_map.insert(n.clone(), file.into()));
        }
        let index = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
        std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
        assert_eq!(log_probs(&Llama::load(dir.path(), &Device::Cpu).unwrap()), log_probs(&model));
        // A shard missing, or an index naming a tensor no shard holds, is named.
        let mut broken = index.clone();
        broken["weight_map"]["model.extra.weight"] = "model-00002-of-00002.safetensors".into();
        std::fs::write(dir.path().join("model.safetensors.index.json"), broken.to_string()).unwrap();
        let err = format!("{:#}", Llama::load(dir.path(), &Device::Cpu).err().unwrap());
        assert!(err.contains("model.extra.weight") && err.contains("no shard holds"), "{err}");
        std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
        std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
        let err = format!("{:#}", Llama::load(dir.path(), &Device::Cpu).err().unwrap());
        assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
        std::fs::remove_file(dir.path().join("model.safetensors.index.json")).unwrap();
        let err = format!("{:#}", Llama::load(dir.path(), &Device::Cpu).err().unwrap());
        assert!(err.contains("neither model.safetensors nor model.safetensors.index.json"), "{err}");

        // bf16 weights: trained in f32, with the bf16 values.
        let dir = tempfile::tempdir().unwrap();
        model.config.save(dir.path()).unwrap();
        let half = tensors.iter().map(|(n, t)| (n.clone(), t.to_dtype(DType::BF16).unwrap()));
        save_safetensors(&dir.path().join("model.safetensors"), half).unwrap();
        let loaded = Llama::load(dir.path(), &Device::Cpu).unwrap();
        let rounded: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap()))
            .collect();
        let expected = Llama::from_tensors(model.config.clone(), rounded, &Device::Cpu).unwrap();
        assert_eq!(loaded.params()[0].1.dtype(), DType::F32);
        assert_eq!(log_probs(&loaded), log_probs(&expected));
        assert_ne!(log_probs(&loaded), log_probs(&model), "the values are bf16's");

        // Tied, stored only as lm_head.weight (../shared/models/tinystories-656k's layout).
        let config = LlamaConfig { tie_word_embeddings: true, ..model.config.clone() };
        let tied = Llama::init(&config, 5, &Device::Cpu).unwrap();
        let dir = tempfile::tempdir().unwrap();
        config.save(dir.path()).unwrap();
        let renamed = tied.params().iter().map(|(n, v)| {
            let name = if n == "model.embed_tokens.weight" { "lm_head.weight".to_string() } else { n.clone() };
            (name, v.as_tensor().clone())
        });
        save_safetensors(&dir.path().join("model.safetensors"), renamed).unwrap();
        assert_eq!(log_probs(&Llama::load(dir.path(), &Device::Cpu).unwrap()), log_probs(&tied));

        // Not a Llama: the error names what the config is.
        let dir = tempfile::tempdir().unwrap();
        let mut json = model.config.to_json();
        json["model_type"] = "mistral".into();
        json["architectures"] = serde_json::json!(["MistralForCausalLM"]);
        std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
        let err = format!("{:#}", Llama::load(dir.path(), &Device::Cpu).err().unwrap());
        assert!(err.contains("\"mistral\"") && err.contains("MistralForCausalLM"), "{err}");
    }

    #[test]
    fn initialisation_is_seeded() {
        let a = Llama::init(&LlamaConfig::tiny(50), 3, &Device::Cpu).unwrap();
        let b = Llama::init(&LlamaConfig::tiny(50), 3, &Device::Cpu).unwrap();
        let c = Llama::init(&LlamaConfig::tiny(50), 4, &Device::Cpu).unwrap();
        let w = |m: &Llama| m.params()[1].1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(w(&a), w(&b));
        assert_ne!(w(&a), w(&c));
        let values = w(&a);
        let std = (values.iter().map(|x| x * x).sum::<f32>() / values.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.002, "std {std}");
    }
}
