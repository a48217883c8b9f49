//! Assembles a [`Llama`] from named weights. The names are Hugging Face's; each file format's
//! loader maps its own names onto them, so the model itself knows no file format.

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::LlamaConfig;
use crate::error::{LlamaError, Result};
use crate::model::{Attention, Block, Llama, Mlp, PackedLinear, Projection, TokenEmbedding};
use kernels::{PackedMatrix, PackedWeight};

/// Row-major `f32` weights by Hugging Face name.
pub(crate) trait WeightSource {
    /// Removes and returns the weight `name` with its row-major shape, or `None` if absent.
    fn take(&mut self, name: &str) -> Result<Option<(Vec<f32>, Vec<usize>)>>;

    /// The weight `name` packed as the file stores it, if the kernels read that storage (GGUF
    /// blocks of [`kernels::QuantMatrix::supports`], bf16) and its rows are whole blocks;
    /// `None` otherwise (then [`take`](Self::take) it). Leaves the weight in place.
    fn packed(&mut self, _name: &str) -> Result<Option<PackedMatrix>> {
        Ok(None)
    }
}

/// How the loader stores weights that the file keeps quantised or in bf16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightStorage {
    /// As the file keeps them: GGUF blocks at one byte per weight, bf16 at two (read in place
    /// from the mapped file), multiplied by [`kernels`]'s kernels. A third (blocks) or half
    /// (bf16) of the memory of `f32`, and a faster forward on a CPU; the weights are the same
    /// numbers.
    Packed,
    /// Widened to dense `f32` tensors, multiplied by the backend's matmul.
    F32,
}

impl WeightStorage {
    /// Packed on the flex CPU backend (the only one with the kernels), unless
    /// `SUBSPACE_WEIGHTS=f32` asks for dense weights (benchmarks, comparisons).
    pub fn for_device(device: &Device) -> Self {
        let dense_asked = std::env::var("SUBSPACE_WEIGHTS").is_ok_and(|v| v == "f32");
        if *device == Device::flex() && !dense_asked {
            WeightStorage::Packed
        } else {
            WeightStorage::F32
        }
    }
}

/// A parameter that training never updates: the model's weights are frozen, only interventions
/// learn.
fn frozen<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(t).set_require_grad(false)
}

struct Builder<'a, S> {
    source: &'a mut S,
    device: &'a Device,
    storage: WeightStorage,
    /// The file stores norm scales as `w` for `x · (1 + w)`: add the 1 once, here.
    norm_unit_offset: bool,
}

impl<S: WeightSource> Builder<'_, S> {
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let (data, found) = self
            .source
            .take(name)?
            .ok_or_else(|| LlamaError::MissingWeight { name: name.into() })?;
        if found != shape {
            return Err(LlamaError::ShapeMismatch {
                name: name.into(),
                expected: shape.to_vec(),
                found,
            });
        }
        Ok(Tensor::from_data(TensorData::new(data, shape), self.device))
    }

    /// A bias-free linear layer, kept packed when the file's storage allows and the storage
    /// asks.
    fn projection(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<Projection> {
        self.projection_biased(name, d_in, d_out, false)
    }

    /// [`Self::projection`] with the bias `….bias` beside the weight `….weight` if `bias`.
    fn projection_biased(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Projection> {
        let bias = if bias {
            let bias_name = name.strip_suffix(".weight").unwrap_or(name).to_string() + ".bias";
            Some(frozen(self.tensor(&bias_name, [d_out])?))
        } else {
            None
        };
        match self.packed(name, d_in, d_out)? {
            Some(weight) => Ok(Projection::Packed(PackedLinear { weight, bias })),
            None => self.linear(name, d_in, d_out).map(|mut l| {
                l.bias = bias;
                Projection::Dense(l)
            }),
        }
    }

    /// The weight `name` (`[d_out, d_in]`) packed, if the storage asks for it and the file's
    /// storage allows; the weight stays in the source either way.
    fn packed(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<Option<PackedWeight>> {
        if self.storage != WeightStorage::Packed {
            return Ok(None);
        }
        let Some(w) = self.source.packed(name)? else {
            return Ok(None);
        };
        if [w.rows(), w.cols()] != [d_out, d_in] {
            return Err(LlamaError::ShapeMismatch {
                name: name.into(),
                expected: vec![d_out, d_in],
                found: vec![w.rows(), w.cols()],
            });
        }
        Ok(Some(Arc::new(w)))
    }

    /// A bias-free linear layer from a `[out, in]` weight. burn's `Linear` multiplies by an
    /// `[in, out]` matrix; it is transposed once here, on the host, because the CPU matmul is
    /// several times slower on a strided (transposed) view than on a contiguous matrix.
    fn linear(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<Linear> {
        let (data, found) = self
            .source
            .take(name)?
            .ok_or_else(|| LlamaError::MissingWeight { name: name.into() })?;
        if found != [d_out, d_in] {
            return Err(LlamaError::ShapeMismatch {
                name: name.into(),
                expected: vec![d_out, d_in],
                found,
            });
        }
        let transposed = transpose(&data, d_out, d_in);
        drop(data);
        let w = Tensor::from_data(TensorData::new(transposed, [d_in, d_out]), self.device);
        Ok(Linear {
            weight: frozen(w),
            bias: None,
        })
    }

    fn norm(&mut self, name: &str, d: usize, eps: f64) -> Result<RmsNorm> {
        let gamma = self.tensor(name, [d])?;
        // In f32, as transformers' Gemma norms compute `1.0 + weight.float()`.
        let gamma = if self.norm_unit_offset {
            gamma + 1.0
        } else {
            gamma
        };
        Ok(RmsNorm {
            gamma: frozen(gamma),
            epsilon: eps,
        })
    }
}

/// Row-major `[rows, cols]` → `[cols, rows]`, in cache-friendly tiles.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0f32; m.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = m[r * cols + c];
                }
            }
        }
    }
    out
}

/// Builds the model, taking each weight out of `source` as it goes so that at most one host
/// copy of one tensor is alive beside the model.
pub(crate) fn build(
    config: &LlamaConfig,
    source: &mut impl WeightSource,
    device: &Device,
    storage: WeightStorage,
) -> Result<Llama> {
    config.validate()?;
    // The forwards of the model about to be built allocate and free large buffers at every block.
    kernels::allocator::keep_freed_memory();
    let d = config.hidden_size;
    let hd = config.head_dim();
    let (nh, nkv) = (config.num_attention_heads, config.n_kv_heads());
    let ff = config.intermediate_size;
    let eps = config.rms_norm_eps;
    let mut b = Builder {
        source,
        device,
        storage,
        norm_unit_offset: config.rms_norm_unit_offset,
    };

    // Packed, the embedding matrix serves both the lookup (rows widened on the fly) and a tied
    // head (the largest product of a next-token distribution): one copy.
    let embed_tokens = match b.packed("model.embed_tokens.weight", d, config.vocab_size)? {
        Some(weight) => TokenEmbedding::Packed(PackedLinear { weight, bias: None }),
        None => TokenEmbedding::Dense(Embedding {
            weight: frozen(b.tensor("model.embed_tokens.weight", [config.vocab_size, d])?),
        }),
    };
    let mut blocks = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let attn = |which: &str| format!("{p}.self_attn.{which}_proj.weight");
        let (qkv_bias, o_bias) = (config.qkv_bias(), config.o_bias());
        // Qwen 3's and Gemma 3's per-head norms of the queries and keys (`….self_attn.q_norm.weight`).
        let qk_norm = |b: &mut Builder<'_, _>, which: &str| -> Result<Option<RmsNorm>> {
            if !config.qk_norm {
                return Ok(None);
            }
            b.norm(&format!("{p}.self_attn.{which}_norm.weight"), hd, eps)
                .map(Some)
        };
        // Gemma's four norms: `post_attention_layernorm` is the attention output's there, and
        // the MLP's input norm is `pre_feedforward_layernorm`.
        let (mlp_norm, out_norms) = if config.sandwich_norms {
            let attn_out = b.norm(&format!("{p}.post_attention_layernorm.weight"), d, eps)?;
            let mlp_in = b.norm(&format!("{p}.pre_feedforward_layernorm.weight"), d, eps)?;
            let mlp_out = b.norm(&format!("{p}.post_feedforward_layernorm.weight"), d, eps)?;
            (mlp_in, Some((attn_out, mlp_out)))
        } else {
            let mlp_in = b.norm(&format!("{p}.post_attention_layernorm.weight"), d, eps)?;
            (mlp_in, None)
        };
        let (attn_out_norm, mlp_out_norm) = out_norms.unzip();
        blocks.push(Block {
            attn_norm: b.norm(&format!("{p}.input_layernorm.weight"), d, eps)?,
            self_attn: Attention {
                q_proj: b.projection_biased(&attn("q"), d, nh * hd, qkv_bias)?,
                k_proj: b.projection_biased(&attn("k"), d, nkv * hd, qkv_bias)?,
                v_proj: b.projection_biased(&attn("v"), d, nkv * hd, qkv_bias)?,
                o_proj: b.projection_biased(&attn("o"), nh * hd, d, o_bias)?,
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                rope_layout: config.rope_layout,
                q_norm: qk_norm(&mut b, "q")?,
                k_norm: qk_norm(&mut b, "k")?,
                sliding: config.is_sliding(i),
                scale: config.attention_scale(),
                softcap: config.attn_logit_softcapping,
            },
            attn_out_norm,
            mlp_norm,
            mlp: Mlp {
                gate_proj: b.projection(&format!("{p}.mlp.gate_proj.weight"), d, ff)?,
                up_proj: b.projection(&format!("{p}.mlp.up_proj.weight"), d, ff)?,
                down_proj: b.projection(&format!("{p}.mlp.down_proj.weight"), ff, d)?,
                activation: config.hidden_act,
            },
            mlp_out_norm,
        });
    }
    let norm = b.norm("model.norm.weight", d, eps)?;
    let lm_head = if config.tie_word_embeddings {
        None
    } else {
        Some(b.projection("lm_head.weight", d, config.vocab_size)?)
    };
    Ok(Llama {
        embed_tokens,
        blocks,
        norm,
        lm_head,
        config: config.clone(),
    }
    .no_grad())
}
