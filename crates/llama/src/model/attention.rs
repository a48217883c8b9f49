//! Grouped-query self-attention with rotary embeddings and an additive mask.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::Projection;
use super::context::ForwardContext;
use super::hook::{Hook, Inner, NoHook};
use crate::config::RopeLayout;

/// Keys (after rotary) and values of some columns, kept so that later columns can be computed
/// without recomputing earlier ones.
#[derive(Debug, Clone)]
pub struct KeyValue {
    /// `[batch, kv_heads, seq, head_dim]`
    pub k: Tensor<4>,
    /// `[batch, kv_heads, seq, head_dim]`
    pub v: Tensor<4>,
}

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Projection,
    pub k_proj: Projection,
    pub v_proj: Projection,
    pub o_proj: Projection,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    #[module(skip)]
    pub rope_layout: RopeLayout,
}

impl Attention {
    /// Self-attention over all columns of `x`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, ctx: &ForwardContext) -> Tensor<3> {
        self.forward_cached(x, ctx, None).0
    }

    /// Attention for new columns `x`, whose keys are preceded by the cached `prefix` ones.
    /// `ctx` must already be restricted to the new query columns
    /// ([`ForwardContext::queries_from`]). Returns the output and the keys/values of all columns.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq_new, hidden]`
    /// - `prefix`: `[batch, kv_heads, seq_old, head_dim]`
    /// - output: `[batch, seq_new, hidden]`, and keys/values `[batch, kv_heads, seq_old + seq_new, head_dim]`
    pub fn forward_cached(
        &self,
        x: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
    ) -> (Tensor<3>, KeyValue) {
        self.forward_hooked(x, ctx, prefix, &mut NoHook)
    }

    /// [`Attention::forward_cached`] with `hook` called on the queries, keys and values as the
    /// projections write them (before rotary), on the heads' outputs before `o_proj`, and on
    /// the attention probabilities.
    pub fn forward_hooked(
        &self,
        x: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
        hook: &mut dyn Hook,
    ) -> (Tensor<3>, KeyValue) {
        let [b, s, _] = x.dims();
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let heads = |t: Tensor<3>, n: usize| t.reshape([b, s, n, hd]).swap_dims(1, 2);

        let q = heads(hook.inner(Inner::Query, self.q_proj.forward(x.clone())), nh);
        let k = heads(hook.inner(Inner::Key, self.k_proj.forward(x.clone())), nkv);
        let v = heads(hook.inner(Inner::Value, self.v_proj.forward(x)), nkv);
        let q = ctx.rope.apply(q, self.rope_layout);
        let k = ctx.rope.apply(k, self.rope_layout);

        let (k, v) = match prefix {
            Some(p) => (
                Tensor::cat(vec![p.k.clone(), k], 2),
                Tensor::cat(vec![p.v.clone(), v], 2),
            ),
            None => (k, v),
        };
        let kv = KeyValue {
            k: k.clone(),
            v: v.clone(),
        };

        // Each key/value head serves `nh / nkv` query heads.
        let group = |t: Tensor<4>| {
            let [b, _, s_k, _] = t.dims();
            if nh == nkv {
                t
            } else {
                t.unsqueeze_dim::<5>(2)
                    .expand([b, nkv, nh / nkv, s_k, hd])
                    .reshape([b, nh, s_k, hd])
            }
        };
        let (k, v) = (group(k), group(v));

        let scale = (hd as f64).powf(-0.5);
        let scores = q.matmul(k.swap_dims(2, 3)) * scale + ctx.mask.clone();
        let probs = softmax(scores, 3);
        hook.attention_probs(&probs);
        let out = probs.matmul(v).swap_dims(1, 2).reshape([b, s, nh * hd]);
        let out = hook.inner(Inner::HeadOutputs, out);
        (self.o_proj.forward(out), kv)
    }
}
