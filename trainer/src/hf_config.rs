//! The model configuration in transformers' `config.json` form (`LlamaForCausalLM`).
//!
//! RoPE is read from either form transformers has used: `rope_parameters` (v5, with
//! `rope_theta` inside) or the older top-level `rope_theta` + `rope_scaling`. Both are written,
//! so a checkpoint reloads in old and new transformers with the same rotation.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::rope::{Rope, RopeError, RopeScaling};

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: u64,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub rope_theta: f64,
    pub partial_rotary_factor: f64,
    pub rope_scaling: RopeScaling,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Invalid {
        path: PathBuf,
        #[source]
        problem: ConfigProblem,
    },
}

/// What in a well-formed `config.json` this trainer cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("the config is not a JSON object")]
    NotAnObject,
    #[error(
        "model_type {model_type:?} (architectures {architectures:?}) is not supported: midtrain trains Llama models (model_type \"llama\", LlamaForCausalLM)"
    )]
    ModelType { model_type: String, architectures: Vec<String> },
    #[error("{0} = true is not supported")]
    Bias(&'static str),
    #[error("hidden_act {0:?} is not supported (only \"silu\")")]
    Activation(String),
    #[error("field {0:?} is missing or not a positive integer")]
    Field(String),
    #[error("num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")]
    Heads { heads: usize, kv_heads: usize },
    #[error("{0:?} is not a token id")]
    TokenId(String),
    #[error("rope parameters: {0}")]
    RopeParameters(#[source] serde_json::Error),
    #[error(transparent)]
    Rope(#[from] RopeError),
}

impl LlamaConfig {
    /// A small model for tests and the demo.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 64,
            intermediate_size: 176,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 512,
            tie_word_embeddings: false,
            bos_token_id: None,
            eos_token_id: Some(0),
            rope_theta: 10_000.0,
            partial_rotary_factor: 1.0,
            rope_scaling: RopeScaling::Default,
        }
    }

    pub fn rope(&self) -> Rope {
        Rope {
            theta: self.rope_theta,
            head_dim: self.head_dim,
            partial_rotary_factor: self.partial_rotary_factor,
            max_position_embeddings: self.max_position_embeddings,
            scaling: self.rope_scaling.clone(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let path_buf = || path.to_path_buf();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path_buf(), source })?;
        let value: Value =
            serde_json::from_str(&text).map_err(|source| ConfigError::Json { path: path_buf(), source })?;
        Self::from_json(&value).map_err(|problem| ConfigError::Invalid { path: path_buf(), problem })
    }

    /// Parse a transformers `config.json`. Errors name the field.
    pub fn from_json(v: &Value) -> Result<Self, ConfigProblem> {
        let obj = v.as_object().ok_or(ConfigProblem::NotAnObject)?;
        if let Some(model_type) = obj.get("model_type").and_then(Value::as_str)
            && model_type != "llama"
        {
            let architectures = obj
                .get("architectures")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            return Err(ConfigProblem::ModelType { model_type: model_type.to_string(), architectures });
        }
        for flag in ["attention_bias", "mlp_bias"] {
            if obj.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(ConfigProblem::Bias(flag));
            }
        }
        if let Some(act) = obj.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(ConfigProblem::Activation(act.to_string()));
        }
        let usize_field = |name: &str| -> Result<usize, ConfigProblem> {
            obj.get(name)
                .and_then(Value::as_u64)
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| ConfigProblem::Field(name.to_string()))
        };
        let hidden_size = usize_field("hidden_size")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        let num_key_value_heads = if obj.contains_key("num_key_value_heads") {
            usize_field("num_key_value_heads")?
        } else {
            num_attention_heads
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(ConfigProblem::Heads { heads: num_attention_heads, kv_heads: num_key_value_heads });
        }
        let head_dim = match obj.get("head_dim") {
            Some(Value::Null) | None => hidden_size / num_attention_heads,
            Some(_) => usize_field("head_dim")?,
        };
        let token = |name: &str| -> Result<Option<u32>, ConfigProblem> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => {
                    n.as_u64().map(|n| Some(n as u32)).ok_or_else(|| ConfigProblem::TokenId(name.to_string()))
                }
                Some(Value::Array(a)) => Ok(a.first().and_then(Value::as_u64).map(|n| n as u32)),
                Some(_) => Err(ConfigProblem::TokenId(name.to_string())),
            }
        };
        let float = |o: &Map<String, Value>, name: &str| o.get(name).and_then(Value::as_f64);
        // rope_scaling (legacy) wins over rope_parameters, as in transformers 5.
        let rope_dict = match (obj.get("rope_scaling"), obj.get("rope_parameters")) {
            (Some(Value::Object(o)), _) => Some(o.clone()),
            (_, Some(Value::Object(o))) => Some(o.clone()),
            _ => None,
        };
        let rope_theta = rope_dict
            .as_ref()
            .and_then(|o| float(o, "rope_theta"))
            .or_else(|| float(obj, "rope_theta"))
            .unwrap_or(10_000.0);
        let partial_rotary_factor = rope_dict
            .as_ref()
            .and_then(|o| float(o, "partial_rotary_factor"))
            .or_else(|| float(obj, "partial_rotary_factor"))
            .unwrap_or(1.0);
        let rope_scaling = match rope_dict {
            None => RopeScaling::Default,
            Some(mut o) => {
                if !o.contains_key("rope_type")
                    && let Some(t) = o.get("type").cloned()
                {
                    o.insert("rope_type".into(), t);
                }
                o.entry("rope_type").or_insert_with(|| json!("default"));
                o.remove("type");
                o.remove("rope_theta");
                o.remove("partial_rotary_factor");
                // Phi-3 style: the original length at the top level.
                if let Some(l0) = obj.get("original_max_position_embeddings")
                    && matches!(o.get("rope_type").and_then(Value::as_str), Some("yarn" | "longrope" | "llama3"))
                {
                    o.insert("original_max_position_embeddings".into(), l0.clone());
                }
                serde_json::from_value(Value::Object(o)).map_err(ConfigProblem::RopeParameters)?
            }
        };
        let config = Self {
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_hidden_layers: usize_field("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: float(obj, "rms_norm_eps").unwrap_or(1e-6),
            max_position_embeddings: obj.get("max_position_embeddings").and_then(Value::as_u64).unwrap_or(2048),
            tie_word_embeddings: obj.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            bos_token_id: token("bos_token_id")?,
            eos_token_id: token("eos_token_id")?,
            rope_theta,
            partial_rotary_factor,
            rope_scaling,
        };
        config.rope().frequencies(None)?;
        Ok(config)
    }

    /// transformers' `config.json`. A static NTK scaling is written as the default rotation with
    /// the base it amounts to (transformers has no static NTK type), so the checkpoint loads there.
    pub fn to_json(&self) -> Value {
        let (theta, scaling) = match &self.rope_scaling {
            RopeScaling::Ntk { factor } => {
                let d = self.rope().rotary_dim() as f64;
                (self.rope_theta * factor.powf(d / (d - 2.0)), RopeScaling::Default)
            }
            other => (self.rope_theta, other.clone()),
        };
        let mut parameters = serde_json::to_value(&scaling).expect("rope scaling serialises");
        let p = parameters.as_object_mut().expect("an object");
        p.insert("rope_theta".into(), json!(theta));
        if self.partial_rotary_factor != 1.0 {
            p.insert("partial_rotary_factor".into(), json!(self.partial_rotary_factor));
        }
        let legacy = if scaling == RopeScaling::Default { Value::Null } else { parameters.clone() };
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "initializer_range": 0.02,
            "pretraining_tp": 1,
            "use_cache": true,
            "torch_dtype": "float32",
            "rope_theta": theta,
            "rope_scaling": legacy,
            "rope_parameters": parameters,
        })
    }

    /// Write `config.json` into `dir` (atomically).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        self.save_with_dtype(dir, "float32")
    }

    /// Write `config.json` naming the dtype its weights are stored in.
    pub fn save_with_dtype(&self, dir: &Path, dtype: &str) -> std::io::Result<()> {
        let mut json = self.to_json();
        json["torch_dtype"] = serde_json::json!(dtype);
        let text = serde_json::to_string_pretty(&json).expect("config serialises");
        util::fsutil::write_atomic(&dir.join("config.json"), text.as_bytes())
    }

    pub fn num_parameters(&self) -> usize {
        let (d, v, f) = (self.hidden_size, self.vocab_size, self.intermediate_size);
        let (q, kv) = (self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim);
        let layer = d * q + 2 * d * kv + q * d + 3 * d * f + 2 * d;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + self.num_hidden_layers * layer + d + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yarn() -> RopeScaling {
        RopeScaling::Yarn {
            factor: 4.0,
            original_max_position_embeddings: Some(128),
            beta_fast: Some(16.0),
            beta_slow: None,
            mscale: None,
            mscale_all_dim: None,
            truncate: Some(false),
            attention_factor: None,
        }
    }

    fn every_scaling() -> Vec<RopeScaling> {
        vec![
            RopeScaling::Default,
            RopeScaling::Linear { factor: 4.0 },
            RopeScaling::Dynamic { factor: 2.0 },
            yarn(),
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 128,
            },
            RopeScaling::Longrope {
                short_factor: vec![1.0; 8],
                long_factor: vec![2.0; 8],
                factor: Some(4.0),
                attention_factor: None,
                original_max_position_embeddings: Some(128),
            },
        ]
    }

    #[test]
    fn every_rope_form_round_trips_through_config_json() {
        for scaling in every_scaling() {
            let config = LlamaConfig { rope_scaling: scaling, rope_theta: 500_000.0, ..LlamaConfig::tiny(100) };
            let json = config.to_json();
            assert_eq!(LlamaConfig::from_json(&json).unwrap(), config);
            // transformers 5 form only: drop the legacy keys.
            let mut v5 = json.clone();
            v5.as_object_mut().unwrap().remove("rope_scaling");
            v5.as_object_mut().unwrap().remove("rope_theta");
            assert_eq!(LlamaConfig::from_json(&v5).unwrap(), config);
            // transformers 4 form only (old `type` key), for scaled ropes.
            if config.rope_scaling != RopeScaling::Default {
                let mut v4 = json.clone();
                let o = v4.as_object_mut().unwrap();
                o.remove("rope_parameters");
                let legacy = o.get_mut("rope_scaling").unwrap().as_object_mut().unwrap();
                let t = legacy.remove("rope_type").unwrap();
                legacy.insert("type".into(), t);
                legacy.remove("rope_theta");
                assert_eq!(LlamaConfig::from_json(&v4).unwrap(), config);
            }
        }
    }

    #[test]
    fn static_ntk_is_written_as_the_base_it_amounts_to() {
        let config = LlamaConfig { rope_scaling: RopeScaling::Ntk { factor: 4.0 }, ..LlamaConfig::tiny(100) };
        let back = LlamaConfig::from_json(&config.to_json()).unwrap();
        assert_eq!(back.rope_scaling, RopeScaling::Default);
        let (a, b) = (config.rope().frequencies(None).unwrap(), back.rope().frequencies(None).unwrap());
        for (x, y) in a.inv_freq.iter().zip(&b.inv_freq) {
            assert!(((x - y) / x).abs() < 1e-12);
        }
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = LlamaConfig::tiny(100).to_json();
        v.as_object_mut().unwrap().remove("hidden_size");
        assert!(LlamaConfig::from_json(&v).unwrap_err().to_string().contains("\"hidden_size\""));
        let mut v = LlamaConfig::tiny(100).to_json();
        v["num_key_value_heads"] = json!(3);
        assert!(LlamaConfig::from_json(&v).unwrap_err().to_string().contains("not a multiple"));
        let mut v = LlamaConfig::tiny(100).to_json();
        v["model_type"] = json!("gpt2");
        assert!(LlamaConfig::from_json(&v).unwrap_err().to_string().contains("gpt2"));
        let mut v = LlamaConfig::tiny(100).to_json();
        v["rope_parameters"] = json!({"rope_type": "yarn"});
        assert!(LlamaConfig::from_json(&v).unwrap_err().to_string().contains("factor"));
    }

    #[test]
    fn parameter_count_matches_the_shapes() {
        let c = LlamaConfig::tiny(100);
        // embed 6400, per layer q 4096 + k,v 2·2048 + o 4096 + mlp 3·11264 + norms 128, final norm, head.
        assert_eq!(c.num_parameters(), 6400 + 2 * (4096 + 4096 + 4096 + 33_792 + 128) + 64 + 6400);
    }
}
