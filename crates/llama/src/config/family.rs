//! Reading a Hugging Face `config.json`: what each family changes that its file does not say
//! (Qwen 2's biases, Gemma's norms and embedding scale), and the keys that moved between
//! transformers versions (`rope_parameters`, `rope_local_base_freq`).

use serde::Deserialize;
use serde_json::Value;

use super::{Activation, LayerType, LlamaConfig, RopeScaling};
use crate::error::{LlamaError, Result};

/// The families whose `config.json` this model reads (`model_type`).
pub const SUPPORTED_FAMILIES: [&str; 6] = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3_text",
];

/// The keys read before the config itself: what decides how the rest is read.
#[derive(Deserialize)]
struct Arch {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default)]
    hidden_activation: Option<Activation>,
    #[serde(default, alias = "_sliding_window_pattern")]
    sliding_window_pattern: Option<usize>,
    /// `null` in Gemma 2's configs.
    #[serde(default)]
    use_bidirectional_attention: Option<bool>,
}

impl LlamaConfig {
    /// Parses a `config.json`, refusing architectures this model cannot run.
    pub fn from_json(text: &str) -> Result<Self> {
        let arch: Arch = serde_json::from_str(text)
            .map_err(|e| LlamaError::Config(format!("config.json is not valid JSON: {e}")))?;
        let family = arch.model_type.as_deref().unwrap_or("llama");
        if family == "gemma3" {
            return Err(LlamaError::Config(
                "model_type is `gemma3`, Gemma 3 with its vision tower; load a text-only checkpoint (`gemma3_text`, e.g. gemma-3-270m or gemma-3-1b)".into(),
            ));
        }
        if !SUPPORTED_FAMILIES.contains(&family) {
            return Err(LlamaError::Config(format!(
                "model_type is `{family}`; supported: {}",
                SUPPORTED_FAMILIES.join(", ")
            )));
        }
        if arch.use_bidirectional_attention == Some(true) {
            return Err(LlamaError::Config(
                "use_bidirectional_attention is true (an embedding model that reads every token both ways); only causal language models load".into(),
            ));
        }
        let mut config: LlamaConfig = serde_json::from_str(text)
            .map_err(|e| LlamaError::Config(format!("config.json: {e}")))?;
        if let Some(params) = config.rope_parameters.take() {
            config.read_rope_parameters(params)?;
        }
        match family {
            "qwen2" | "qwen3" => {
                if arch.use_sliding_window {
                    return Err(LlamaError::Config(
                        "use_sliding_window is true: Qwen's sliding window (above max_window_layers) is not supported; a checkpoint that attends to every earlier token loads".into(),
                    ));
                }
                // Their configs carry a `sliding_window` that nothing uses.
                config.sliding_window = None;
                config.layer_types = None;
                // Qwen 2 has biases on its queries, keys and values and none on its output
                // projection; Qwen 3 drops them (its `attention_bias` says so) and normalises
                // each head of its queries and keys instead. Neither config says so.
                config.qkv_only_bias = family == "qwen2";
                config.qk_norm = family == "qwen3";
            }
            "gemma2" | "gemma3_text" => {
                config.rms_norm_unit_offset = true;
                config.scale_embeddings = true;
                config.sandwich_norms = true;
                config.qk_norm = family == "gemma3_text";
                if let Some(act) = arch.hidden_activation {
                    config.hidden_act = act;
                }
                if config.layer_types.is_none() && config.sliding_window.is_some() {
                    // Older configs: Gemma 2 alternates from a sliding layer 0; Gemma 3 makes
                    // every `sliding_window_pattern`-th layer (6th by default) full.
                    let every = if family == "gemma2" {
                        2
                    } else {
                        arch.sliding_window_pattern.unwrap_or(6).max(1)
                    };
                    config.layer_types = Some(gemma_layer_types(config.num_hidden_layers, every));
                }
                if family == "gemma3_text" && config.rope_local_theta.is_none() {
                    config.rope_local_theta = Some(10_000.0);
                }
            }
            _ => {}
        }
        config.model_type = family.to_string();
        config.validate()?;
        Ok(config)
    }

    /// transformers >= 5 writes `rope_theta` and the scaling together under `rope_parameters`,
    /// per layer type where they differ (`full_attention`, `sliding_attention`: Gemma 3).
    fn read_rope_parameters(&mut self, params: Value) -> Result<()> {
        let (full, sliding) = match params.get("full_attention") {
            Some(full) => (full.clone(), params.get("sliding_attention").cloned()),
            None => (params, None),
        };
        if let Some(theta) = full.get("rope_theta").and_then(Value::as_f64) {
            self.rope_theta = theta;
        }
        if self.rope_scaling.is_none() && scaled(&full) {
            self.rope_scaling =
                Some(serde_json::from_value::<RopeScaling>(full).map_err(|e| {
                    LlamaError::Config(format!("config.json rope_parameters: {e}"))
                })?);
        }
        if let Some(sliding) = sliding {
            if scaled(&sliding) {
                return Err(LlamaError::Config(
                    "rope_parameters.sliding_attention scales its frequencies; only unscaled sliding-window layers are supported".into(),
                ));
            }
            self.rope_local_theta = sliding.get("rope_theta").and_then(Value::as_f64);
        }
        Ok(())
    }
}

/// Whether rotary parameters name a scaling other than none.
fn scaled(params: &Value) -> bool {
    params
        .get("rope_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "default")
}

/// Gemma's layer types: every `every`-th layer full, the others sliding.
pub(crate) fn gemma_layer_types(layers: usize, every: usize) -> Vec<LayerType> {
    (0..layers)
        .map(|i| {
            if (i + 1).is_multiple_of(every) {
                LayerType::FullAttention
            } else {
                LayerType::SlidingAttention
            }
        })
        .collect()
}
