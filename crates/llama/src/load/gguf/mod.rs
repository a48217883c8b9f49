//! GGUF files of the architectures llama.cpp writes for the families this model runs (`llama`,
//! which Mistral's files use too, `qwen2`, `qwen3`, `gemma2`, `gemma3`): their `<arch>.*` metadata as a [`LlamaConfig`] and their tensor names mapped onto
//! the model's. Reading the container itself is the `formats` crate's job.

pub use formats::gguf::{GgmlType, GgufFile, GgufValue, TensorInfo, dequantize, tokenizer};

use std::collections::HashMap;

use crate::config::{Activation, LlamaConfig, RopeLayout, RopeScaling, gemma_layer_types};
use crate::error::{LlamaError, Result};
use crate::load::build::WeightSource;
use kernels::{BLOCK, Bf16Matrix, PackedMatrix, QuantMatrix};

/// The GGUF architectures this loader reads.
pub const SUPPORTED_ARCHITECTURES: [&str; 5] = ["llama", "qwen2", "qwen3", "gemma2", "gemma3"];

/// The configuration a GGUF file describes in its `<arch>.*` metadata.
pub fn config(file: &GgufFile) -> Result<LlamaConfig> {
    let err = |reason: String| LlamaError::Gguf {
        path: file.path().to_path_buf(),
        reason,
    };
    let arch = file
        .get("general.architecture")
        .and_then(GgufValue::as_str)
        .unwrap_or("llama");
    if !SUPPORTED_ARCHITECTURES.contains(&arch) {
        return Err(err(format!(
            "architecture `{arch}` is not supported in GGUF (supported: {}); a Hugging Face directory of it may load (families: {})",
            SUPPORTED_ARCHITECTURES.join(", "),
            crate::config::SUPPORTED_FAMILIES.join(", ")
        )));
    }
    let int = |key: &str| -> Result<usize> {
        file.get(&format!("{arch}.{key}"))
            .and_then(GgufValue::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                err(format!(
                    "metadata `{arch}.{key}` is missing or not an integer"
                ))
            })
    };
    let float = |key: &str| {
        file.get(&format!("{arch}.{key}"))
            .and_then(GgufValue::as_f64)
    };

    let n_heads = int("attention.head_count")?;
    let hidden = int("embedding_length")?;
    let vocab_size = match int("vocab_size") {
        Ok(v) => v,
        Err(_) => file
            .tensor("token_embd.weight")
            .map(|t| t.shape()[0])
            .ok_or_else(|| err("no vocab_size and no token_embd.weight".into()))?,
    };
    let rope_scaling = match file
        .get(&format!("{arch}.rope.scaling.type"))
        .and_then(GgufValue::as_str)
    {
        Some("linear") => Some(RopeScaling {
            rope_type: "linear".into(),
            factor: float("rope.scaling.factor").unwrap_or(1.0),
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        }),
        Some("llama3") => Some(RopeScaling {
            rope_type: "llama3".into(),
            factor: float("rope.scaling.factor").unwrap_or(8.0),
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: int("rope.scaling.original_context_length")
                .unwrap_or(8192),
        }),
        Some("none") | None => None,
        Some(other) => {
            return Err(err(format!(
                "rope scaling `{other}` is not supported (supported: llama3, linear)"
            )));
        }
    };
    let rope_freq_factors = match file.tensor("rope_freqs.weight") {
        Some(info) => Some(file.dequantize(info)?),
        None => None,
    };
    let mut config = LlamaConfig {
        vocab_size,
        hidden_size: hidden,
        intermediate_size: int("feed_forward_length")?,
        num_hidden_layers: int("block_count")?,
        num_attention_heads: n_heads,
        num_key_value_heads: Some(int("attention.head_count_kv").unwrap_or(n_heads)),
        // Absent: hidden / heads, which `validate` checks divides evenly.
        head_dim: int("rope.dimension_count")
            .or_else(|_| int("attention.key_length"))
            .ok(),
        rms_norm_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        rope_theta: float("rope.freq_base").unwrap_or(10_000.0),
        rope_scaling,
        max_position_embeddings: int("context_length").unwrap_or(2048),
        tie_word_embeddings: file.tensor("output.weight").is_none(),
        // llama.cpp rotates adjacent pairs for llama; its converter permutes Q and K to match.
        rope_layout: RopeLayout::Interleaved,
        rope_freq_factors,
        rope_parameters: None,
        model_type: "llama".into(),
        attention_bias: false,
        qkv_only_bias: false,
        qk_norm: false,
        hidden_act: Activation::Silu,
        rms_norm_unit_offset: false,
        scale_embeddings: false,
        sandwich_norms: false,
        query_pre_attn_scalar: None,
        sliding_window: None,
        layer_types: None,
        rope_local_theta: None,
        attn_logit_softcapping: None,
        final_logit_softcapping: None,
    };
    if arch == "qwen2" || arch == "qwen3" {
        config.model_type = arch.into();
        // ggml rotates Qwen's halves (NEOX), and the converter leaves Q and K as they are.
        config.rope_layout = RopeLayout::HalfSplit;
        config.qkv_only_bias = arch == "qwen2";
        config.qk_norm = arch == "qwen3";
    }
    if arch == "gemma2" || arch == "gemma3" {
        let gemma3 = arch == "gemma3";
        config.model_type = if gemma3 { "gemma3_text" } else { "gemma2" }.into();
        // ggml rotates Gemma's halves (NEOX), and the converter leaves Q and K as they are.
        config.rope_layout = RopeLayout::HalfSplit;
        config.hidden_act = Activation::GeluTanh;
        // `rms_norm_unit_offset` stays false: llama.cpp's converter has added Gemma's 1 to
        // every norm scale already.
        config.scale_embeddings = true;
        config.sandwich_norms = true;
        config.qk_norm = gemma3;
        // What llama.cpp uses (its 27B models aside, which scale by hidden / heads): a GGUF has
        // no query_pre_attn_scalar.
        config.query_pre_attn_scalar = Some(config.head_dim() as f64);
        config.sliding_window = int("attention.sliding_window").ok();
        // Not in the file: llama.cpp's constants (Gemma 2: every second layer full, from a
        // sliding layer 0; Gemma 3: every sixth, the sliding ones at base 10,000), as
        // transformers' configs default them.
        let every = if gemma3 { 6 } else { 2 };
        config.layer_types = config
            .sliding_window
            .map(|_| gemma_layer_types(config.num_hidden_layers, every));
        if gemma3 {
            config.rope_local_theta = Some(10_000.0);
        } else {
            config.attn_logit_softcapping = float("attn_logit_softcapping");
            config.final_logit_softcapping = float("final_logit_softcapping");
        }
    }
    config.validate()?;
    Ok(config)
}

/// The GGUF name of a Hugging Face weight name. `sandwich`: the file is Gemma's, whose
/// `post_attention_layernorm` is the attention output's norm, not the MLP's input norm.
fn gguf_name(hf: &str, sandwich: bool) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let part = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.o_proj.bias" => "attn_output.bias",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "post_attention_layernorm.weight" if sandwich => "post_attention_norm.weight",
        "post_attention_layernorm.weight" | "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
        "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}"))
}

/// Serves a GGUF file's tensors under Hugging Face names, dequantised on demand.
pub(crate) struct GgufWeights<'a> {
    file: &'a GgufFile,
    index: HashMap<&'a str, &'a TensorInfo>,
    sandwich: bool,
}

impl<'a> GgufWeights<'a> {
    /// The weights of `file`, whose model `config` describes.
    pub(crate) fn new(file: &'a GgufFile, config: &LlamaConfig) -> Self {
        let index = file.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        GgufWeights {
            file,
            index,
            sandwich: config.sandwich_norms,
        }
    }

    /// The tensor stored for a Hugging Face weight name.
    fn info(&self, name: &str) -> Option<&'a TensorInfo> {
        gguf_name(name, self.sandwich).and_then(|g| self.index.get(g.as_str()).copied())
    }
}

impl WeightSource for GgufWeights<'_> {
    fn take(&mut self, name: &str) -> Result<Option<(Vec<f32>, Vec<usize>)>> {
        let Some(info) = self.info(name) else {
            return Ok(None);
        };
        let values = self.file.dequantize(info)?;
        self.file.release(info);
        Ok(Some((values, info.shape())))
    }

    fn packed(&mut self, name: &str) -> Result<Option<PackedMatrix>> {
        let Some(info) = self.info(name) else {
            return Ok(None);
        };
        let shape = info.shape();
        if shape.len() != 2 {
            return Ok(None);
        }
        let (rows, cols) = (shape[0], shape[1]);
        let bytes = self.file.tensor_bytes(info);
        let packed = if info.ggml_type == GgmlType::BF16 {
            Bf16Matrix::from_bytes(bytes.to_vec(), rows, cols).map(PackedMatrix::Bf16)
        } else {
            // Rows that are not whole blocks (never in real models) stay dense.
            let (block, _) = info.ggml_type.block_layout();
            if !QuantMatrix::supports(info.ggml_type) || !cols.is_multiple_of(block.max(BLOCK)) {
                return Ok(None);
            }
            Some(PackedMatrix::Blocks(QuantMatrix::from_gguf(
                info.ggml_type,
                bytes,
                rows,
                cols,
            )?))
        };
        // Copied out (unpacked into the kernels' layout): the file's pages can go.
        self.file.release(info);
        Ok(packed)
    }
}
