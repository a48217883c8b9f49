//! The vectors inside a block that a caller may read or replace while the block runs: each
//! head's queries, keys and values (as the projections write them, before rotary), the heads'
//! outputs before the output projection, the MLP's hidden activation, and (read-only) the
//! attention probabilities. What transformers users reach with forward hooks on `q_proj`,
//! `k_proj`, `v_proj`, `o_proj` (its input) and `down_proj` (its input).

use burn::tensor::Tensor;

/// A vector inside a block, as a [`Hook`] sees it: `[batch, seq, width]` with the heads side by
/// side (head `h` is features `h·head_dim .. (h+1)·head_dim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inner {
    /// `q_proj`'s output, `n_heads · head_dim` wide.
    Query,
    /// `k_proj`'s output, `n_kv_heads · head_dim` wide.
    Key,
    /// `v_proj`'s output, `n_kv_heads · head_dim` wide.
    Value,
    /// The heads' outputs (attention-weighted values) concatenated: `o_proj`'s input,
    /// `n_heads · head_dim` wide.
    HeadOutputs,
    /// `silu(gate(x)) · up(x)`: `down_proj`'s input, `intermediate_size` wide.
    MlpHidden,
}

/// Called by a block at each [`Inner`] vector (and the attention probabilities) as it runs.
/// Its methods default to doing nothing, so a plain forward pass uses [`NoHook`].
pub trait Hook {
    /// Returns the vector the block goes on with (`t` itself, or an edited copy).
    ///
    /// # Shapes
    /// - `t`: `[batch, seq, width]` → the same
    fn inner(&mut self, at: Inner, t: Tensor<3>) -> Tensor<3> {
        let _ = at;
        t
    }

    /// Sees the attention probabilities (after softmax), `[batch, n_heads, seq_q, seq_k]`, if
    /// [`Hook::wants_attention_probs`].
    fn attention_probs(&mut self, probs: &Tensor<4>) {
        let _ = probs;
    }

    /// Whether [`Hook::attention_probs`] reads them: if not, attention may run fused, without
    /// making them a tensor.
    fn wants_attention_probs(&self) -> bool {
        false
    }
}

/// The hook of an unobserved forward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl Hook for NoHook {}
