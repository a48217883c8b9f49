//! The model's hyper-parameters, read straight from a Hugging Face `config.json` (serde) or
//! filled from GGUF metadata by [`crate::load::gguf`].

use serde::{Deserialize, Serialize};

use crate::error::{LlamaError, Result};

/// How the two halves of each rotary pair are laid out inside a head.
///
/// Hugging Face checkpoints rotate `(x[i], x[i + d/2])` ("half split", `rotate_half`). GGUF files
/// for llama store Q and K permuted so that ggml can rotate adjacent pairs `(x[2i], x[2i + 1])`
/// ("interleaved"). Both give the same attention scores with their own weights, so the loader
/// keeps the file's weights untouched and tells the model which layout they use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RopeLayout {
    #[default]
    HalfSplit,
    Interleaved,
}

/// Llama-3 style frequency scaling (`rope_scaling` with `rope_type: "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_original_max")]
    pub original_max_position_embeddings: usize,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_original_max() -> usize {
    8192
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-5
}
fn default_max_pos() -> usize {
    2048
}

/// Llama hyper-parameters. Field names are those of `config.json`, so a Hugging Face config
/// deserialises directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// transformers >= 5 writes `rope_theta` and the scaling together under this key; older
    /// configs (Llama-3.2 on the hub) use `rope_theta` and `rope_scaling`. Both are accepted.
    #[serde(default, skip_serializing)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Not part of `config.json`: set by the loader from the weight format.
    #[serde(default)]
    pub rope_layout: RopeLayout,
    /// Per-frequency divisors (GGUF `rope_freqs.weight`, Llama 3.1+), an alternative to
    /// `rope_scaling` that some GGUF converters write instead of metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_freq_factors: Option<Vec<f32>>,
    /// The family as `config.json` names it (`llama`, `qwen2`); what it changes is in the
    /// fields below, which the model reads: the model never asks which family it is.
    #[serde(default = "llama_family")]
    pub model_type: String,
    /// Biases on all four attention projections (Llama's `attention_bias`).
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the queries, keys and values only (Qwen 2; not a key of its `config.json`, set
    /// from the family by [`LlamaConfig::from_json`]).
    #[serde(default)]
    pub qkv_only_bias: bool,
    /// An RMSNorm over each head of the queries and of the keys before rotary (Qwen 3; set
    /// from the family by [`LlamaConfig::from_json`]).
    #[serde(default)]
    pub qk_norm: bool,
}

/// The families whose `config.json` this model reads, and what each changes.
pub const SUPPORTED_FAMILIES: [&str; 3] = ["llama", "qwen2", "qwen3"];

fn llama_family() -> String {
    "llama".into()
}

impl LlamaConfig {
    pub fn n_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Whether the query, key and value projections have biases.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.qkv_only_bias
    }

    /// Whether the output projection has a bias.
    pub fn o_bias(&self) -> bool {
        self.attention_bias
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Parses a `config.json`, refusing architectures this model cannot run.
    pub fn from_json(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Arch {
            #[serde(default)]
            model_type: Option<String>,
            #[serde(default)]
            use_sliding_window: bool,
        }
        let arch: Arch = serde_json::from_str(text)
            .map_err(|e| LlamaError::Config(format!("config.json is not valid JSON: {e}")))?;
        if let Some(t) = arch.model_type.as_deref()
            && !SUPPORTED_FAMILIES.contains(&t)
        {
            return Err(LlamaError::Config(format!(
                "model_type is `{t}`; supported: {}",
                SUPPORTED_FAMILIES.join(", ")
            )));
        }
        if arch.use_sliding_window {
            return Err(LlamaError::Config(
                "use_sliding_window is true: sliding-window attention is not supported yet; a checkpoint that attends to every earlier token loads".into(),
            ));
        }
        let mut config: LlamaConfig = serde_json::from_str(text)
            .map_err(|e| LlamaError::Config(format!("config.json: {e}")))?;
        // Qwen 2 has biases on its queries, keys and values, and none on its output
        // projection; its config.json says nothing of them.
        config.qkv_only_bias = config.model_type == "qwen2";
        // Qwen 3 drops those biases (its `attention_bias` says so) and normalises each head of
        // its queries and keys instead.
        config.qk_norm = config.model_type == "qwen3";
        if let Some(params) = config.rope_parameters.take() {
            if let Some(theta) = params.get("rope_theta").and_then(serde_json::Value::as_f64) {
                config.rope_theta = theta;
            }
            let rope_type = params.get("rope_type").and_then(serde_json::Value::as_str);
            if config.rope_scaling.is_none() && rope_type.is_some_and(|t| t != "default") {
                config.rope_scaling = Some(serde_json::from_value(params).map_err(|e| {
                    LlamaError::Config(format!("config.json rope_parameters: {e}"))
                })?);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the relations between sizes that the model relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LlamaError::Config(m));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return bad("vocab_size, hidden_size and num_hidden_layers must be positive".into());
        }
        if self.num_attention_heads == 0 || self.n_kv_heads() == 0 {
            return bad("the number of attention heads must be positive".into());
        }
        if self.intermediate_size == 0 {
            return bad("intermediate_size (the MLP width) must be positive".into());
        }
        // Far above any released Llama (405B: 126 layers, hidden 16384, MLP 53248, vocab 128256,
        // context 131072); beyond them a config is corrupt, and would only fail later, slowly,
        // in an allocation.
        for (name, value, max) in [
            ("num_hidden_layers", self.num_hidden_layers, 1 << 12),
            ("hidden_size", self.hidden_size, 1 << 17),
            ("intermediate_size", self.intermediate_size, 1 << 19),
            ("vocab_size", self.vocab_size, 1 << 22),
            ("num_attention_heads", self.num_attention_heads, 1 << 12),
            ("head_dim", self.head_dim(), 1 << 12),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 24,
            ),
        ] {
            if value > max {
                return bad(format!(
                    "{name} = {value} is beyond any Llama model (at most {max}); the config is corrupt"
                ));
            }
        }
        if self.max_position_embeddings == 0 {
            return bad("max_position_embeddings (the context length) must be positive".into());
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by {} attention heads (and no head_dim is given)",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!(
                "rms_norm_eps = {} must be a finite number above 0",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!(
                "rope_theta = {} must be a finite number above 0",
                self.rope_theta
            ));
        }
        if let Some(s) = &self.rope_scaling
            && s.rope_type == "llama3"
            && !(s.factor.is_finite()
                && s.factor > 0.0
                && s.low_freq_factor.is_finite()
                && s.high_freq_factor.is_finite()
                && s.low_freq_factor > 0.0
                && s.high_freq_factor > s.low_freq_factor
                && s.original_max_position_embeddings > 0)
        {
            return bad(format!(
                "rope_scaling {s:?}: factor must be above 0, 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings above 0"
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.n_kv_heads()) {
            return bad(format!(
                "{} attention heads cannot be shared among {} key/value heads",
                self.num_attention_heads,
                self.n_kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) || self.head_dim() == 0 {
            return bad(format!(
                "head dimension {} must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        if let Some(s) = &self.rope_scaling
            && !matches!(s.rope_type.as_str(), "llama3" | "default")
        {
            return bad(format!(
                "rope_scaling type `{}` is not supported (supported: llama3)",
                s.rope_type
            ));
        }
        if let Some(f) = &self.rope_freq_factors
            && f.len() != self.head_dim() / 2
        {
            return bad(format!(
                "rope_freqs has {} entries, expected head_dim / 2 = {}",
                f.len(),
                self.head_dim() / 2
            ));
        }
        Ok(())
    }

    /// The rotary inverse frequencies `theta^(-2i/d)`, with Llama-3 scaling or GGUF frequency
    /// factors applied, as transformers computes them (in `f64`, then rounded).
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim();
        let mut inv: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        if let Some(s) = self
            .rope_scaling
            .as_ref()
            .filter(|s| s.rope_type == "llama3")
        {
            let old = s.original_max_position_embeddings as f64;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            for f in inv.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        if let Some(factors) = &self.rope_freq_factors {
            for (f, &k) in inv.iter_mut().zip(factors) {
                *f /= f64::from(k);
            }
        }
        inv
    }
}
