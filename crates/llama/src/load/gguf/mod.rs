//! Llama GGUF files: their `llama.*` metadata as a [`LlamaConfig`] and their tensor names mapped
//! onto the model's. Reading the container itself is the `formats` crate's job.

pub use formats::gguf::{GgmlType, GgufFile, GgufValue, TensorInfo, dequantize, tokenizer};

use std::collections::HashMap;

use crate::config::{LlamaConfig, RopeLayout, RopeScaling};
use crate::error::{LlamaError, Result};
use crate::load::build::WeightSource;
use kernels::{BLOCK, Bf16Matrix, PackedMatrix, QuantMatrix};

/// The configuration a llama GGUF describes in its `llama.*` metadata.
pub fn config(file: &GgufFile) -> Result<LlamaConfig> {
    let err = |reason: String| LlamaError::Gguf {
        path: file.path().to_path_buf(),
        reason,
    };
    let arch = file
        .get("general.architecture")
        .and_then(GgufValue::as_str)
        .unwrap_or("llama");
    if arch != "llama" {
        return Err(err(format!(
            "architecture `{arch}` is not supported; only llama GGUF files are"
        )));
    }
    let int = |key: &str| -> Result<usize> {
        file.get(&format!("llama.{key}"))
            .and_then(GgufValue::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                err(format!(
                    "metadata `llama.{key}` is missing or not an integer"
                ))
            })
    };
    let float = |key: &str| {
        file.get(&format!("llama.{key}"))
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
        .get("llama.rope.scaling.type")
        .and_then(GgufValue::as_str)
    {
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
                "rope scaling `{other}` is not supported (supported: llama3)"
            )));
        }
    };
    let rope_freq_factors = match file.tensor("rope_freqs.weight") {
        Some(info) => Some(file.dequantize(info)?),
        None => None,
    };
    let config = LlamaConfig {
        vocab_size,
        hidden_size: hidden,
        intermediate_size: int("feed_forward_length")?,
        num_hidden_layers: int("block_count")?,
        num_attention_heads: n_heads,
        num_key_value_heads: Some(int("attention.head_count_kv").unwrap_or(n_heads)),
        // Absent: hidden / heads, which `validate` checks divides evenly.
        head_dim: int("rope.dimension_count").ok(),
        rms_norm_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        rope_theta: float("rope.freq_base").unwrap_or(10_000.0),
        rope_scaling,
        max_position_embeddings: int("context_length").unwrap_or(2048),
        tie_word_embeddings: file.tensor("output.weight").is_none(),
        // llama.cpp rotates adjacent pairs; GGUF converters permute Q and K to match.
        rope_layout: RopeLayout::Interleaved,
        rope_freq_factors,
        rope_parameters: None,
        model_type: "llama".into(),
        attention_bias: false,
        qkv_only_bias: false,
        qk_norm: false,
    };
    config.validate()?;
    Ok(config)
}

/// The GGUF name of a Hugging Face weight name.
fn gguf_name(hf: &str) -> Option<String> {
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
        "post_attention_layernorm.weight" => "ffn_norm.weight",
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
}

impl<'a> GgufWeights<'a> {
    pub(crate) fn new(file: &'a GgufFile) -> Self {
        let index = file.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        GgufWeights { file, index }
    }

    /// The tensor stored for a Hugging Face weight name.
    fn info(&self, name: &str) -> Option<&'a TensorInfo> {
        gguf_name(name).and_then(|g| self.index.get(g.as_str()).copied())
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
