//! The model's hyper-parameters, read straight from a Hugging Face `config.json` (serde) or
//! filled from GGUF metadata by [`crate::load::gguf`]. A family (Llama, Mistral, Qwen, Gemma) is
//! data here: the fields say what it changes, and the model reads the fields, never the name.

mod family;
mod rope;

pub use family::SUPPORTED_FAMILIES;
pub(crate) use family::gemma_layer_types;
pub use rope::{RopeLayout, RopeScaling, SUPPORTED_SCALING, inv_freq};

use serde::{Deserialize, Serialize};

use crate::error::{LlamaError, Result};

/// The MLP's gate activation (`hidden_act`; Gemma's `hidden_activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Activation {
    /// `silu(gate) · up` (SwiGLU): Llama, Mistral, Qwen.
    #[default]
    #[serde(rename = "silu")]
    Silu,
    /// `gelu_tanh(gate) · up` (GeGLU with GELU's tanh approximation): Gemma.
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_tanh")]
    GeluTanh,
}

/// Which keys a layer's attention reads (`layer_types` of `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    /// Every earlier token.
    FullAttention,
    /// The last [`LlamaConfig::sliding_window`] tokens, itself included.
    SlidingAttention,
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

/// The decoder's hyper-parameters, for every family. Field names are those of `config.json`, so
/// a Hugging Face config deserialises directly; [`LlamaConfig::from_json`] adds what a family
/// implies.
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
    /// An RMSNorm over each head of the queries and of the keys before rotary (Qwen 3, Gemma
    /// 3; set from the family by [`LlamaConfig::from_json`]).
    #[serde(default)]
    pub qk_norm: bool,
    /// The MLP's gate activation.
    #[serde(default)]
    pub hidden_act: Activation,
    /// The checkpoint stores each RMSNorm's scale as `w` for `x · (1 + w)` (Gemma's Hugging
    /// Face files); the loader adds the 1 once. llama.cpp's converter has already added it to
    /// a GGUF file's scales.
    #[serde(default)]
    pub rms_norm_unit_offset: bool,
    /// Embeddings multiplied by `√hidden_size` before block 0 (Gemma).
    #[serde(default)]
    pub scale_embeddings: bool,
    /// An RMSNorm on the attention output and on the MLP output before each joins the stream
    /// (Gemma 2 and 3: four norms per block).
    #[serde(default)]
    pub sandwich_norms: bool,
    /// Attention scores scaled by `query_pre_attn_scalar^-1/2` instead of `head_dim^-1/2`
    /// (Gemma).
    #[serde(default)]
    pub query_pre_attn_scalar: Option<f64>,
    /// How many tokens a sliding-window layer attends to, itself included (Mistral, Gemma).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Each layer's attention; `None`: every layer is sliding when there is a window
    /// (Mistral), else full.
    #[serde(default)]
    pub layer_types: Option<Vec<LayerType>>,
    /// The rotary base of the sliding-window layers, where it differs from `rope_theta` (Gemma
    /// 3: 10,000 locally, 1,000,000 globally); they get no `rope_scaling`.
    #[serde(default, alias = "rope_local_base_freq")]
    pub rope_local_theta: Option<f64>,
    /// Attention scores squashed to `cap · tanh(score / cap)` before the mask (Gemma 2).
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    /// Logits squashed to `cap · tanh(logit / cap)` (Gemma 2).
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
}

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

    /// Whether layer `layer` attends through a sliding window.
    pub fn is_sliding(&self, layer: usize) -> bool {
        self.sliding_window.is_some()
            && self
                .layer_types
                .as_ref()
                .is_none_or(|t| t.get(layer) == Some(&LayerType::SlidingAttention))
    }

    /// Whether any layer attends through a sliding window.
    pub fn has_sliding_layers(&self) -> bool {
        (0..self.num_hidden_layers).any(|l| self.is_sliding(l))
    }

    /// The factor attention scores are multiplied by before the softmax.
    pub fn attention_scale(&self) -> f64 {
        self.query_pre_attn_scalar
            .unwrap_or(self.head_dim() as f64)
            .powf(-0.5)
    }

    /// What the embeddings are multiplied by before block 0: `√hidden_size` rounded to `f32`
    /// as transformers does for Gemma, else 1.
    pub fn embedding_scale(&self) -> f32 {
        if self.scale_embeddings {
            (self.hidden_size as f64).sqrt() as f32
        } else {
            1.0
        }
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
            && !s.is_valid()
        {
            return bad(format!(
                "rope_scaling {s:?}: factor must be above 0 (llama3: also 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings above 0)"
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
            && !SUPPORTED_SCALING.contains(&s.rope_type.as_str())
        {
            return bad(format!(
                "rope_scaling type `{}` is not supported (supported: {})",
                s.rope_type,
                SUPPORTED_SCALING.join(", ")
            ));
        }
        if let Some(theta) = self.rope_local_theta
            && !(theta.is_finite() && theta > 0.0)
        {
            return bad(format!(
                "the sliding layers' rope_theta = {theta} must be a finite number above 0"
            ));
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window must be at least 1 token".into());
        }
        if let Some(types) = &self.layer_types
            && types.len() != self.num_hidden_layers
        {
            return bad(format!(
                "layer_types lists {} layers but the model has {}",
                types.len(),
                self.num_hidden_layers
            ));
        }
        if self.sliding_window.is_none()
            && self
                .layer_types
                .as_ref()
                .is_some_and(|t| t.contains(&LayerType::SlidingAttention))
        {
            return bad(
                "layer_types names sliding-window layers but sliding_window is not set".into(),
            );
        }
        for (name, value) in [
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                return bad(format!("{name} = {v} must be a finite number above 0"));
            }
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

    /// The rotary inverse frequencies of the full-attention layers (Llama 3's scaling or
    /// GGUF's frequency factors applied), as transformers computes them.
    pub fn inv_freq(&self) -> Vec<f64> {
        inv_freq(
            self.rope_theta,
            self.head_dim(),
            self.rope_scaling.as_ref(),
            self.rope_freq_factors.as_deref(),
        )
    }

    /// The rotary inverse frequencies of the sliding-window layers: their own base without
    /// scaling where the family gives one (Gemma 3), else the full layers' frequencies.
    pub fn inv_freq_sliding(&self) -> Vec<f64> {
        match self.rope_local_theta {
            Some(theta) => inv_freq(theta, self.head_dim(), None, None),
            None => self.inv_freq(),
        }
    }
}
