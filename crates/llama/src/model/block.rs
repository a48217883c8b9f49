//! One decoder block. Its two residual branches are public so that an intervention can edit the
//! attention output or the MLP output before they are added to the stream.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::Tensor;

use super::attention::{Attention, KeyValue};
use super::context::ForwardContext;
use super::hook::Hook;
use super::mlp::Mlp;
use super::ragged::Ragged;
use kernels::fused::rms_norm;

#[derive(Module, Debug)]
pub struct Block {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    /// `h + attn(norm(h))`, then `+ mlp(norm(.))`.
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, hidden]` (the block input, i.e. the residual stream)
    /// - output: `[batch, seq, hidden]` (the block output)
    pub fn forward(&self, h: Tensor<3>, ctx: &ForwardContext) -> Tensor<3> {
        let h = h.clone() + self.attention_branch(h, ctx);
        h.clone() + self.mlp_branch(h)
    }

    /// Like [`Block::forward`] for new columns after cached ones; returns all keys/values.
    ///
    /// # Shapes
    /// - `h`: `[batch, seq_new, hidden]`
    /// - output: `[batch, seq_new, hidden]`
    pub fn forward_cached(
        &self,
        h: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
    ) -> (Tensor<3>, KeyValue) {
        let (attn, kv) = self.attention_branch_cached(h.clone(), ctx, prefix);
        let h = h + attn;
        (h.clone() + self.mlp_branch(h), kv)
    }

    /// The attention output that the block adds to the stream.
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn attention_branch(&self, h: Tensor<3>, ctx: &ForwardContext) -> Tensor<3> {
        self.self_attn
            .forward(rms_norm(&self.input_layernorm, h), ctx)
    }

    /// [`Block::attention_branch`] after cached columns.
    pub fn attention_branch_cached(
        &self,
        h: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
    ) -> (Tensor<3>, KeyValue) {
        self.self_attn
            .forward_cached(rms_norm(&self.input_layernorm, h), ctx, prefix)
    }

    /// [`Block::attention_branch_cached`] with `hook` called inside attention
    /// ([`Attention::forward_hooked`]).
    pub fn attention_branch_hooked(
        &self,
        h: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
        hook: &mut dyn Hook,
    ) -> (Tensor<3>, KeyValue) {
        self.self_attn
            .forward_hooked(rms_norm(&self.input_layernorm, h), ctx, prefix, hook)
    }

    /// [`Block::attention_branch_hooked`]'s output alone, the keys and values not kept
    /// ([`Attention::output_hooked`]).
    pub fn attention_output_hooked(
        &self,
        h: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
        hook: &mut dyn Hook,
    ) -> Tensor<3> {
        self.self_attn
            .output_hooked(rms_norm(&self.input_layernorm, h), ctx, prefix, hook)
    }

    /// [`Block::attention_branch_cached`] of several batches laid end to end by `ragged`
    /// ([`Attention::forward_ragged`]).
    ///
    /// # Shapes
    /// - `h`: `[1, tokens, hidden]` → `[1, tokens, hidden]`
    pub fn attention_branch_ragged(
        &self,
        h: Tensor<3>,
        ragged: &Ragged,
        ctxs: &[&ForwardContext],
        prefixes: &[Option<&KeyValue>],
    ) -> Tensor<3> {
        self.self_attn
            .forward_ragged(rms_norm(&self.input_layernorm, h), ragged, ctxs, prefixes)
    }

    /// [`Block::attention_branch_ragged`], keeping each batch's keys/values
    /// ([`Attention::forward_ragged_cached`]).
    ///
    /// # Shapes
    /// - `h`: `[1, tokens, hidden]` → `[1, tokens, hidden]`
    pub fn attention_branch_ragged_cached(
        &self,
        h: Tensor<3>,
        ragged: &Ragged,
        ctxs: &[&ForwardContext],
        prefixes: &[Option<&KeyValue>],
    ) -> (Tensor<3>, Vec<KeyValue>) {
        self.self_attn.forward_ragged_cached(
            rms_norm(&self.input_layernorm, h),
            ragged,
            ctxs,
            prefixes,
        )
    }

    /// The block over several batches laid end to end ([`Ragged::pack`]), its output at each
    /// batch's last column only ([`Attention::forward_ragged_last`]; the MLP on those rows).
    ///
    /// # Shapes
    /// - `h`: `[1, tokens, hidden]` → `[1, rows, hidden]` (each batch's rows, batch after batch)
    pub fn forward_ragged_last(
        &self,
        h: Tensor<3>,
        ragged: &Ragged,
        ctxs: &[&ForwardContext],
        prefixes: &[Option<&KeyValue>],
    ) -> Tensor<3> {
        let h_last = ragged.pack_last(&ragged.unpack(h.clone()));
        let attn = self.self_attn.forward_ragged_last(
            rms_norm(&self.input_layernorm, h),
            ragged,
            ctxs,
            prefixes,
        );
        let mid = h_last + attn;
        mid.clone() + self.mlp_branch(mid)
    }

    /// [`Block::mlp_branch`] with `hook` called on the MLP's hidden activation.
    pub fn mlp_branch_hooked(&self, h: Tensor<3>, hook: &mut dyn Hook) -> Tensor<3> {
        self.mlp
            .forward_hooked(rms_norm(&self.post_attention_layernorm, h), hook)
    }

    /// The MLP output that the block adds to the stream (`h` is the stream after attention).
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn mlp_branch(&self, h: Tensor<3>) -> Tensor<3> {
        self.mlp
            .forward(rms_norm(&self.post_attention_layernorm, h))
    }
}
