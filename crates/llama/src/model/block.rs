//! One decoder block. Its two residual branches are public so that an intervention can edit the
//! attention output or the MLP output before they are added to the stream. A branch's output is
//! what joins the stream: after its own norm where the family has one (Gemma's "sandwich").

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
    /// The norm before attention (transformers' `input_layernorm`).
    pub attn_norm: RmsNorm,
    pub self_attn: Attention,
    /// The norm of the attention output before it joins the stream (Gemma's
    /// `post_attention_layernorm`); `None` in most families.
    pub attn_out_norm: Option<RmsNorm>,
    /// The norm before the MLP (Llama's `post_attention_layernorm`, Gemma's
    /// `pre_feedforward_layernorm`).
    pub mlp_norm: RmsNorm,
    pub mlp: Mlp,
    /// The norm of the MLP output before it joins the stream (Gemma's
    /// `post_feedforward_layernorm`); `None` in most families.
    pub mlp_out_norm: Option<RmsNorm>,
}

/// `t` through `norm`, or unchanged without one.
fn maybe_normed(norm: &Option<RmsNorm>, t: Tensor<3>) -> Tensor<3> {
    match norm {
        Some(n) => rms_norm(n, t),
        None => t,
    }
}

impl Block {
    /// `h + attn(norm(h))`, then `+ mlp(norm(.))` (each branch output normed where the family
    /// does so).
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
        self.attn_out(self.self_attn.forward(rms_norm(&self.attn_norm, h), ctx))
    }

    /// The attention output as it joins the stream.
    fn attn_out(&self, t: Tensor<3>) -> Tensor<3> {
        maybe_normed(&self.attn_out_norm, t)
    }

    /// [`Block::attention_branch`] after cached columns.
    pub fn attention_branch_cached(
        &self,
        h: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
    ) -> (Tensor<3>, KeyValue) {
        let (out, kv) = self
            .self_attn
            .forward_cached(rms_norm(&self.attn_norm, h), ctx, prefix);
        (self.attn_out(out), kv)
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
        let (out, kv) =
            self.self_attn
                .forward_hooked(rms_norm(&self.attn_norm, h), ctx, prefix, hook);
        (self.attn_out(out), kv)
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
        self.attn_out(
            self.self_attn
                .output_hooked(rms_norm(&self.attn_norm, h), ctx, prefix, hook),
        )
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
        self.attn_out(self.self_attn.forward_ragged(
            rms_norm(&self.attn_norm, h),
            ragged,
            ctxs,
            prefixes,
        ))
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
        let (out, kvs) = self.self_attn.forward_ragged_cached(
            rms_norm(&self.attn_norm, h),
            ragged,
            ctxs,
            prefixes,
        );
        (self.attn_out(out), kvs)
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
            rms_norm(&self.attn_norm, h),
            ragged,
            ctxs,
            prefixes,
        );
        let mid = h_last + self.attn_out(attn);
        mid.clone() + self.mlp_branch(mid)
    }

    /// [`Block::mlp_branch`] with `hook` called on the MLP's hidden activation.
    pub fn mlp_branch_hooked(&self, h: Tensor<3>, hook: &mut dyn Hook) -> Tensor<3> {
        let out = self.mlp.forward_hooked(rms_norm(&self.mlp_norm, h), hook);
        maybe_normed(&self.mlp_out_norm, out)
    }

    /// The MLP output that the block adds to the stream (`h` is the stream after attention).
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn mlp_branch(&self, h: Tensor<3>) -> Tensor<3> {
        self.mlp_branch_hooked(h, &mut super::hook::NoHook)
    }
}
