//! Grouped-query self-attention with rotary embeddings and an additive mask.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::Projection;
use super::context::ForwardContext;
use super::hook::{Hook, Inner, NoHook};
use super::ragged::Ragged;
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
    /// RMSNorms over each head of the queries and of the keys, before rotary (Qwen 3's and
    /// Gemma 3's QK-norm); `None` where the family has none.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    /// Whether this layer attends through the sliding window
    /// ([`ForwardContext::for_layer`]).
    #[module(skip)]
    pub sliding: bool,
    /// What scores are multiplied by before the softmax
    /// ([`crate::LlamaConfig::attention_scale`]).
    #[module(skip)]
    pub scale: f64,
    /// Scores squashed to `cap · tanh(score / cap)` before the mask (Gemma 2); the fused
    /// attention does not apply then.
    #[module(skip)]
    pub softcap: Option<f64>,
}

impl Attention {
    /// The queries and keys as attention reads them: each head normalised where the family
    /// has QK-norm, unchanged otherwise. Sites read the projections' outputs before it.
    ///
    /// # Shapes
    /// - `q`: `[batch, seq, n_heads · head_dim]`, `k`: `[batch, seq, kv_heads · head_dim]` →
    ///   the same
    fn qk_normed(&self, q: Tensor<3>, k: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        (
            self.per_head_normed(&self.q_norm, q),
            self.per_head_normed(&self.k_norm, k),
        )
    }

    /// `t` with each head normalised by `norm`, or unchanged without one.
    ///
    /// # Shapes
    /// - `t`: `[batch, seq, heads · head_dim]` → the same
    fn per_head_normed(&self, norm: &Option<RmsNorm>, t: Tensor<3>) -> Tensor<3> {
        let Some(norm) = norm else {
            return t;
        };
        let [b, s, width] = t.dims();
        let heads = t.reshape([b, s, width / self.head_dim, self.head_dim]);
        kernels::fused::rms_norm(norm, heads).reshape([b, s, width])
    }

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
    /// - `prefix`: `[batch, kv_heads, seq_old, head_dim]`, or `[1, kv_heads, seq_old, head_dim]`
    ///   shared by every row (a beginning the rows have in common: not copied for each)
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
        let ctx = ctx.for_layer(self.sliding);
        let q = hook.inner(Inner::Query, self.q_proj.forward(x.clone()));
        let k = hook.inner(Inner::Key, self.k_proj.forward(x.clone()));
        let v = hook.inner(Inner::Value, self.v_proj.forward(x));
        let (q, k) = self.qk_normed(q, k);
        let (out, kv) = self.attend(q, k, v, ctx, prefix, hook);
        let out = hook.inner(Inner::HeadOutputs, out);
        (self.o_proj.forward(out), kv)
    }

    /// [`Attention::forward_hooked`]'s output alone, for a caller that does not keep the keys
    /// and values: on flex the queries and keys are rotated inside the fused attention
    /// (`Attention::attend_output`), and the new keys are never joined to the prefix's.
    ///
    /// # Shapes
    /// - as [`Attention::forward_cached`]'s output
    pub fn output_hooked(
        &self,
        x: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
        hook: &mut dyn Hook,
    ) -> Tensor<3> {
        let ctx = ctx.for_layer(self.sliding);
        let q = hook.inner(Inner::Query, self.q_proj.forward(x.clone()));
        let k = hook.inner(Inner::Key, self.k_proj.forward(x.clone()));
        let v = hook.inner(Inner::Value, self.v_proj.forward(x));
        let (q, k) = self.qk_normed(q, k);
        let out = if hook.wants_attention_probs() {
            self.attend_new(q, k, v, ctx, prefix, hook).0
        } else {
            self.attend_output(q, k, v, ctx, prefix)
        };
        let out = hook.inner(Inner::HeadOutputs, out);
        self.o_proj.forward(out)
    }

    /// Attention of projected queries, keys and values (before rotary) over their columns,
    /// after the cached `prefix`: the heads' outputs (`o_proj`'s input) and the keys/values of
    /// all columns.
    ///
    /// # Shapes
    /// - `q`: `[batch, seq_new, n_heads · head_dim]`; `k`, `v`: `[batch, seq_new, kv_heads · head_dim]`
    /// - output: `[batch, seq_new, n_heads · head_dim]`
    fn attend(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
        hook: &mut dyn Hook,
    ) -> (Tensor<3>, KeyValue) {
        let b = q.dims()[0];
        let (out, new) = self.attend_new(q, k, v, ctx, prefix, hook);
        let kv = match prefix {
            Some(p) => KeyValue {
                k: Tensor::cat(vec![for_rows(&p.k, b), new.k], 2),
                v: Tensor::cat(vec![for_rows(&p.v, b), new.v], 2),
            },
            None => new,
        };
        (out, kv)
    }

    /// [`Attention::attend`] returning only the new columns' keys and values (a caller that
    /// drops the keys saves joining them to the prefix's).
    ///
    /// On flex, unless the hook reads the probabilities, it is one operation forward and one
    /// backward ([`kernels::fused::attention`]). Otherwise burn's operations compute it, avoiding
    /// two copies, both exact rewrites of `softmax(q·kᵀ·scale + mask)·v`:
    /// - each key/value head serves `nh / nkv` query heads (grouped-query attention); rather
    ///   than repeating the keys and values for every query head (copies of the whole prefix),
    ///   the query heads of one key head are stacked as extra query rows:
    ///   `[b, nkv, (nh / nkv) · s, hd]` against that head's keys;
    /// - the cached prefix and the new columns are never joined: their scores are computed
    ///   apart and joined (`(nh / nkv) · s` rows of `P + s` scores, fewer values than the `P`
    ///   keys of `hd = 64` they stand for), and the output sums both parts' values.
    ///
    /// # Shapes
    /// - as [`Attention::attend`]; keys/values `[batch, kv_heads, seq_new, head_dim]`
    fn attend_new(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
        hook: &mut dyn Hook,
    ) -> (Tensor<3>, KeyValue) {
        let [b, s, _] = q.dims();
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let per_kv = nh / nkv;
        let heads = |t: Tensor<3>, n: usize| t.reshape([b, s, n, hd]).swap_dims(1, 2);
        let q = ctx.rope.apply(heads(q, nh), self.rope_layout);
        let k = ctx.rope.apply(heads(k, nkv), self.rope_layout);
        let v = heads(v, nkv);
        let scale = self.scale;
        let fused = if hook.wants_attention_probs() || self.softcap.is_some() {
            None
        } else {
            kernels::fused::attention(
                &q,
                &k,
                &v,
                prefix.map(|p| (&p.k, &p.v)),
                &ctx.mask,
                None,
                scale,
            )
        };
        if let Some(out) = fused {
            let out = out.swap_dims(1, 2).reshape([b, s, nh * hd]);
            return (out, KeyValue { k, v });
        }
        // Query heads `j · per_kv .. (j + 1) · per_kv` share key head `j` (transformers'
        // `repeat_kv`), so they are consecutive rows of `[b, nkv, per_kv · s, hd]`.
        let q = q.reshape([b, nkv, per_kv * s, hd]);

        let new_scores = q.clone().matmul(k.clone().swap_dims(2, 3));
        let scores = match prefix {
            Some(p) => Tensor::cat(
                vec![q.matmul(for_rows(&p.k, b).swap_dims(2, 3)), new_scores],
                3,
            ),
            None => new_scores,
        };
        let s_k = scores.dims()[3];
        let scores = scores.reshape([b, nkv, per_kv, s, s_k]) * scale;
        let scores = match self.softcap {
            Some(cap) => (scores / cap).tanh() * cap,
            None => scores,
        };
        // `[b, 1, s, s_k]` masks every query head alike.
        let mask = ctx.mask.clone().unsqueeze_dim::<5>(2);
        let probs = softmax(scores + mask, 4);
        hook.attention_probs(&probs.clone().reshape([b, nh, s, s_k]));
        let probs = probs.reshape([b, nkv, per_kv * s, s_k]);
        let out = match prefix {
            Some(p) => {
                let old = s_k - s;
                probs.clone().narrow(3, 0, old).matmul(for_rows(&p.v, b))
                    + probs.narrow(3, old, s).matmul(v.clone())
            }
            None => probs.matmul(v.clone()),
        };
        let out = out
            .reshape([b, nh, s, hd])
            .swap_dims(1, 2)
            .reshape([b, s, nh * hd]);
        (out, KeyValue { k, v })
    }

    /// [`Attention::attend_new`]'s output alone (the keys dropped): on flex one operation that
    /// also rotates the queries and keys ([`kernels::fused::attention`] with its rotary tables),
    /// saving burn's rotary operations (a dozen per batch and layer, and their backward).
    ///
    /// # Shapes
    /// - as [`Attention::attend`]
    fn attend_output(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
    ) -> Tensor<3> {
        match self.fused_rotated(&q, &k, &v, ctx, prefix, &ctx.mask) {
            Some(out) => out,
            None => self.attend_new(q, k, v, ctx, prefix, &mut NoHook).0,
        }
    }

    /// [`kernels::fused::attention`] with the rotation inside, on the projections' layout:
    /// queries `[b, s_q, n_heads · head_dim]` (the last `s_q` of the new columns, `mask` their
    /// rows), keys and values `[b, s, kv_heads · head_dim]`; the output `[b, s_q, n_heads ·
    /// head_dim]`, or `None` where the fused operation does not apply.
    fn fused_rotated(
        &self,
        q: &Tensor<3>,
        k: &Tensor<3>,
        v: &Tensor<3>,
        ctx: &ForwardContext,
        prefix: Option<&KeyValue>,
        mask: &Tensor<4>,
    ) -> Option<Tensor<3>> {
        if self.softcap.is_some() {
            return None;
        }
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let heads = |t: &Tensor<3>, n: usize| {
            let [b, s, _] = t.dims();
            t.clone().reshape([b, s, n, hd]).swap_dims(1, 2)
        };
        let rotary = kernels::fused::RotaryTables {
            cos: &ctx.rope.cos,
            sin: &ctx.rope.sin,
            interleaved: self.rope_layout == RopeLayout::Interleaved,
        };
        let out = kernels::fused::attention(
            &heads(q, nh),
            &heads(k, nkv),
            &heads(v, nkv),
            prefix.map(|p| (&p.k, &p.v)),
            mask,
            Some(rotary),
            self.scale,
        )?;
        let [b, _, s_q, _] = out.dims();
        Some(out.swap_dims(1, 2).reshape([b, s_q, nh * hd]))
    }

    /// [`Attention::forward_cached`] of several batches at once, laid end to end by `ragged`:
    /// the projections run once over all their tokens, attention within each batch (its own
    /// context and cached prefix).
    ///
    /// # Shapes
    /// - `x`: `[1, tokens, hidden]` ([`Ragged::pack`])
    /// - output: `[1, tokens, hidden]` (the keys/values are not kept: no caller reads them)
    pub fn forward_ragged(
        &self,
        x: Tensor<3>,
        ragged: &Ragged,
        ctxs: &[&ForwardContext],
        prefixes: &[Option<&KeyValue>],
    ) -> Tensor<3> {
        let (q, k, v) = self.projections_ragged(x, ragged);
        let outs: Vec<Tensor<3>> = q
            .into_iter()
            .zip(k)
            .zip(v)
            .enumerate()
            .map(|(i, ((q, k), v))| {
                self.attend_output(q, k, v, ctxs[i].for_layer(self.sliding), prefixes[i])
            })
            .collect();
        self.o_proj.forward(ragged.pack(outs))
    }

    /// The queries, keys and values of several batches laid end to end by `ragged`: each
    /// projection once over all their tokens, then cut back into the batches.
    fn projections_ragged(
        &self,
        x: Tensor<3>,
        ragged: &Ragged,
    ) -> (Vec<Tensor<3>>, Vec<Tensor<3>>, Vec<Tensor<3>>) {
        let (q, k) = self.qk_normed(
            self.q_proj.forward(x.clone()),
            self.k_proj.forward(x.clone()),
        );
        (
            ragged.unpack(q),
            ragged.unpack(k),
            ragged.unpack(self.v_proj.forward(x)),
        )
    }

    /// [`Attention::forward_ragged`], keeping each batch's keys/values of all its columns
    /// (cached + new), as [`Attention::forward_cached`] returns them.
    ///
    /// # Shapes
    /// - as [`Attention::forward_ragged`]; keys/values per batch `[batch, kv_heads, seq_old +
    ///   seq_new, head_dim]`
    pub fn forward_ragged_cached(
        &self,
        x: Tensor<3>,
        ragged: &Ragged,
        ctxs: &[&ForwardContext],
        prefixes: &[Option<&KeyValue>],
    ) -> (Tensor<3>, Vec<KeyValue>) {
        let (q, k, v) = self.projections_ragged(x, ragged);
        let (outs, kvs): (Vec<Tensor<3>>, Vec<KeyValue>) = q
            .into_iter()
            .zip(k)
            .zip(v)
            .enumerate()
            .map(|(i, ((q, k), v))| {
                let ctx = ctxs[i].for_layer(self.sliding);
                self.attend(q, k, v, ctx, prefixes[i], &mut NoHook)
            })
            .unzip();
        (self.o_proj.forward(ragged.pack(outs)), kvs)
    }

    /// [`Attention::forward_ragged`]'s output at each batch's last column only: the keys and
    /// values of every column, the queries, the attention and `o_proj` at the last one (the
    /// last block of a run whose caller reads only the next-token logits). On another backend
    /// than flex the whole output is computed and cut.
    ///
    /// # Shapes
    /// - `x`: `[1, tokens, hidden]` ([`Ragged::pack`])
    /// - output: `[1, rows, hidden]`: each batch's rows at its last column, batch after batch
    pub fn forward_ragged_last(
        &self,
        x: Tensor<3>,
        ragged: &Ragged,
        ctxs: &[&ForwardContext],
        prefixes: &[Option<&KeyValue>],
    ) -> Tensor<3> {
        let xs = ragged.unpack(x.clone());
        let last = ragged.pack_last(&xs);
        let (q_last, k_all) =
            self.qk_normed(self.q_proj.forward(last), self.k_proj.forward(x.clone()));
        let q = ragged.unpack_last(q_last);
        let k = ragged.unpack(k_all);
        let v = ragged.unpack(self.v_proj.forward(x));
        let mut outs = Vec::with_capacity(ragged.len());
        for (i, ((q, k), v)) in q.into_iter().zip(k).zip(v).enumerate() {
            let (ctx, prefix) = (ctxs[i].for_layer(self.sliding), prefixes[i]);
            let s = k.dims()[1];
            let mask = ctx.mask.clone().narrow(2, s - 1, 1);
            outs.push(match self.fused_rotated(&q, &k, &v, ctx, prefix, &mask) {
                Some(out) => out,
                None => {
                    let q = self.q_proj.forward(xs[i].clone());
                    let q = self.per_head_normed(&self.q_norm, q);
                    self.attend_output(q, k, v, ctx, prefix).narrow(1, s - 1, 1)
                }
            });
        }
        self.o_proj.forward(ragged.pack(outs))
    }
}

/// A prefix's keys or values for `rows` rows: as they are, or (shared by every row, `[1, …]`)
/// expanded to them.
fn for_rows(t: &Tensor<4>, rows: usize) -> Tensor<4> {
    let [b, kv, p, hd] = t.dims();
    if b == rows {
        t.clone()
    } else {
        t.clone().expand([rows, kv, p, hd])
    }
}
