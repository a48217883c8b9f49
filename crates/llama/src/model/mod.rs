//! The decoder (Llama's, with what other families change as config fields). Blocks are public: callers that need to read or edit the residual stream
//! between blocks run the loop themselves ([`Llama::embed`], `blocks[i].forward`,
//! [`Llama::logits`]); [`Llama::forward`] is that loop with nothing in between.

mod attention;
mod block;
mod context;
mod embedding;
mod hook;
mod mlp;
mod projection;
mod ragged;
mod rope;

pub use attention::{Attention, KeyValue};
pub use block::Block;
pub use context::{ForwardContext, TokenBatch};
pub use embedding::TokenEmbedding;
pub use hook::{Hook, Inner, NoHook};
pub use mlp::Mlp;
pub use projection::{PackedLinear, Projection};
pub use ragged::Ragged;
pub use rope::RopeTables;

use burn::module::Module;
use burn::nn::{LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::config::LlamaConfig;
use kernels::fused::rms_norm;

#[derive(Module, Debug)]
pub struct Llama {
    pub embed_tokens: TokenEmbedding,
    pub blocks: Vec<Block>,
    pub norm: RmsNorm,
    /// `None` when the head is tied to the embeddings and multiplies by them (dense or packed,
    /// one copy either way).
    pub lm_head: Option<Projection>,
    #[module(skip)]
    pub config: LlamaConfig,
}

impl Llama {
    /// A randomly initialised model of the given shape (tests, shape checks). Real weights come
    /// from [`crate::load`].
    pub fn init(config: &LlamaConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let hd = config.head_dim();
        let (nh, nkv) = (config.num_attention_heads, config.n_kv_heads());
        let lin = |i, o| Projection::Dense(LinearConfig::new(i, o).with_bias(false).init(device));
        let norm = || {
            RmsNormConfig::new(d)
                .with_epsilon(config.rms_norm_eps)
                .init(device)
        };
        let head_norm = || {
            config.qk_norm.then(|| {
                RmsNormConfig::new(hd)
                    .with_epsilon(config.rms_norm_eps)
                    .init(device)
            })
        };
        let out_norm = || config.sandwich_norms.then(norm);
        let blocks = (0..config.num_hidden_layers)
            .map(|layer| Block {
                attn_norm: norm(),
                self_attn: Attention {
                    q_proj: lin(d, nh * hd),
                    k_proj: lin(d, nkv * hd),
                    v_proj: lin(d, nkv * hd),
                    o_proj: lin(nh * hd, d),
                    n_heads: nh,
                    n_kv_heads: nkv,
                    head_dim: hd,
                    rope_layout: config.rope_layout,
                    q_norm: head_norm(),
                    k_norm: head_norm(),
                    sliding: config.is_sliding(layer),
                    scale: config.attention_scale(),
                    softcap: config.attn_logit_softcapping,
                },
                attn_out_norm: out_norm(),
                mlp_norm: norm(),
                mlp: Mlp {
                    gate_proj: lin(d, config.intermediate_size),
                    up_proj: lin(d, config.intermediate_size),
                    down_proj: lin(config.intermediate_size, d),
                    activation: config.hidden_act,
                },
                mlp_out_norm: out_norm(),
            })
            .collect();
        Llama {
            embed_tokens: TokenEmbedding::Dense(
                burn::nn::EmbeddingConfig::new(config.vocab_size, d).init(device),
            ),
            blocks,
            norm: norm(),
            lm_head: (!config.tie_word_embeddings).then(|| lin(d, config.vocab_size)),
            config: config.clone(),
        }
    }

    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    pub fn device(&self) -> Device {
        self.norm.gamma.device()
    }

    /// The rotary tables and mask for a batch.
    pub fn context(&self, batch: &TokenBatch) -> ForwardContext {
        ForwardContext::new(&self.config, batch, &self.device())
    }

    /// Token embeddings (times `√hidden` in Gemma): the input of block 0.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` → `[batch, seq, hidden]`
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let e = self.embed_tokens.forward(ids, &self.device());
        if self.config.scale_embeddings {
            e * self.config.embedding_scale()
        } else {
            e
        }
    }

    /// What the weights are stored as (`"f32"`, `"Q4_1 blocks"`, `"bf16"`), read off the first
    /// block's MLP (the bulk of the weights).
    pub fn weight_storage(&self) -> String {
        self.blocks
            .first()
            .map_or_else(|| "f32".into(), |b| b.mlp.gate_proj.storage())
    }

    /// Final norm and LM head (and Gemma 2's soft cap).
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, hidden]` (output of the last block) → `[batch, seq, vocab]`
    pub fn logits(&self, h: Tensor<3>) -> Tensor<3> {
        let logits = self.head(rms_norm(&self.norm, h));
        match self.config.final_logit_softcapping {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }

    /// The LM head: its own matrix, or the embeddings' (tied).
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, hidden]` → `[batch, seq, vocab]`
    fn head(&self, h: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(h),
            None => match &self.embed_tokens {
                // Tied head: multiply by the embedding matrix transposed. The transpose is a
                // view; the CPU matmul reads it with strides, so no copy of the vocabulary.
                TokenEmbedding::Dense(e) => {
                    let [b, s, d] = h.dims();
                    let w = e.weight.val().transpose();
                    let vocab = w.dims()[1];
                    h.reshape([b * s, d]).matmul(w).reshape([b, s, vocab])
                }
                TokenEmbedding::Packed(p) => p.forward(h),
            },
        }
    }

    /// Logits at one column per row (the next-token distribution), without paying the LM head
    /// for the other columns.
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, hidden]` → `[batch, vocab]`
    pub fn logits_at(&self, h: Tensor<3>, column: usize) -> Tensor<2> {
        let [b, _, _] = h.dims();
        let logits = self.logits(h.narrow(1, column, 1));
        let vocab = logits.dims()[2];
        logits.reshape([b, vocab])
    }

    /// Every block in order, nothing in between.
    ///
    /// # Shapes
    /// - output: `[batch, seq, vocab]`
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<3> {
        let ctx = self.context(batch);
        let mut h = self.embed(batch.ids.clone());
        for block in &self.blocks {
            h = block.forward(h, &ctx);
        }
        self.logits(h)
    }
}
