//! Attention of new columns over cached ones and themselves, `softmax(q·kᵀ·scale + mask)·v`, in
//! one operation forward and one backward.
//!
//! With burn's operations a block's attention after its projections is some thirty of them per
//! batch (scores against the cached prefix and the new keys, their join, the mask, a softmax of
//! five, the two products with the values), each allocating its result on one thread, and
//! autodiff doubles them. In a training step of the RAVEL recipe that was two fifths of the
//! forward. Here the work is split over burn's threads by (row, key head): every query head
//! of a key head reads that head's keys directly (grouped-query attention without copies), and
//! writes only its own gradients.
//!
//! The probabilities are kept from the forward for the backward (`[batch, heads, seq_q,
//! seq_k]`: small, the queries being the few new columns).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;

use super::exp::exp;
use super::lanes::{as_columns, axpy, dot, dots_with_columns, max_of, sum_of};
use super::rotary::rotate_all;
use super::{with_gathered, with_values};

/// The sizes of one call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    /// Query columns: the last `queries` of the new columns (all of them, or fewer where only
    /// the last columns' outputs are wanted).
    queries: usize,
    /// New columns (keys and values after the prefix).
    seq: usize,
    /// Cached columns before them.
    prefix: usize,
    /// One prefix read by every row (`[1, kv, prefix, hd]`: a beginning the rows share)
    /// rather than one a row.
    shared_prefix: bool,
    head_dim: usize,
    scale: f32,
}

impl Dims {
    fn keys(&self) -> usize {
        self.prefix + self.seq
    }

    fn per_kv(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// The inputs, on the host: queries `[b, heads, queries, hd]`; new keys and values `[b, kv, s,
/// hd]`; cached keys and values `[b, kv, prefix, hd]` or, shared by every row, `[1, kv, prefix,
/// hd]` (empty without a prefix); the additive
/// mask `[b, 1, queries, prefix + s]`.
struct Inputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    k_prefix: &'a [f32],
    v_prefix: &'a [f32],
    mask: &'a [f32],
}

impl Inputs<'_> {
    /// Key `c` (cached before `prefix`, new after) of row `b`, key head `j`.
    fn key(&self, d: &Dims, b: usize, j: usize, c: usize) -> &[f32] {
        Self::column(d, self.k_prefix, self.k, b, j, c)
    }

    fn value(&self, d: &Dims, b: usize, j: usize, c: usize) -> &[f32] {
        Self::column(d, self.v_prefix, self.v, b, j, c)
    }

    fn column<'s>(
        d: &Dims,
        cached: &'s [f32],
        new: &'s [f32],
        b: usize,
        j: usize,
        c: usize,
    ) -> &'s [f32] {
        let hd = d.head_dim;
        let at = if c < d.prefix {
            let b = if d.shared_prefix { 0 } else { b };
            ((b * d.kv_heads + j) * d.prefix + c) * hd
        } else {
            ((b * d.kv_heads + j) * d.seq + (c - d.prefix)) * hd
        };
        let src = if c < d.prefix { cached } else { new };
        &src[at..at + hd]
    }

    /// Query `i` of row `b`, head `h`.
    fn query(&self, d: &Dims, b: usize, h: usize, i: usize) -> &[f32] {
        let at = ((b * d.heads + h) * d.queries + i) * d.head_dim;
        &self.q[at..at + d.head_dim]
    }

    /// The mask's row for query `i` of row `b` (`prefix + s` values).
    fn mask_row(&self, d: &Dims, b: usize, i: usize) -> &[f32] {
        let at = (b * d.queries + i) * d.keys();
        &self.mask[at..at + d.keys()]
    }
}

/// A mask value at or below this hides its key. The model's masks use −1e9
/// (`model::context`), whose `exp` relative to any visible score is exactly 0 in `f32`.
const HIDDEN_AT_OR_BELOW: f32 = -1e8;

/// The keys a query row attends to: up to its last visible one (the causal mask hides every
/// key after it, which are skipped, their probabilities exactly 0). A row that sees no key
/// (a padding column's) attends to all of them, uniformly, as the composed softmax does.
#[inline(always)]
fn seen_keys(mask: &[f32]) -> usize {
    mask.iter()
        .rposition(|&m| m > HIDDEN_AT_OR_BELOW)
        .map_or(mask.len(), |c| c + 1)
}

/// Row `b`, key head `j`: the outputs `[per_kv, queries, hd]` and probabilities `[per_kv,
/// queries, keys]` of its query heads (`keep`; otherwise `probs` is one row, `[keys]`, that
/// each query overwrites: a forward without backward needs none of them afterwards).
///
/// The head's keys are laid out as columns once ([`as_columns`]), so that every query's
/// scores are 16 keys a vector register ([`dots_with_columns`]); the softmax runs in 16 lanes
/// over the keys the query sees ([`seen_keys`]).
#[inline(always)]
fn forward_unit(
    d: &Dims,
    x: &Inputs,
    (b, j): (usize, usize),
    out: &mut [f32],
    probs: &mut [f32],
    keep: bool,
) {
    let (hd, keys) = (d.head_dim, d.keys());
    let width = keys.next_multiple_of(16);
    let kt = as_columns(|c| x.key(d, b, j, c), keys, hd, width);
    let mut s = vec![0f32; width];
    for g in 0..d.per_kv() {
        let h = j * d.per_kv() + g;
        for i in 0..d.queries {
            let q = x.query(d, b, h, i);
            let mask = x.mask_row(d, b, i);
            let seen = seen_keys(mask);
            let lanes = seen.next_multiple_of(16);
            let s = &mut s[..lanes];
            dots_with_columns(q, &kt, width, seen, s);
            for (s, &m) in s.iter_mut().zip(mask) {
                *s = *s * d.scale + m;
            }
            s[seen..].fill(f32::NEG_INFINITY);
            let max = max_of(s);
            for s in s.iter_mut() {
                *s = exp(*s - max);
            }
            s[seen..].fill(0.0);
            let sum = sum_of(s);
            let row = if keep { g * d.queries + i } else { 0 };
            let p = &mut probs[row * keys..(row + 1) * keys];
            for (p, &s) in p.iter_mut().zip(&s[..seen]) {
                *p = s / sum;
            }
            p[seen..].fill(0.0);
            let o = &mut out[(g * d.queries + i) * hd..(g * d.queries + i + 1) * hd];
            o.fill(0.0);
            for (c, &p) in p[..seen].iter().enumerate() {
                axpy(p, x.value(d, b, j, c), o);
            }
        }
    }
}

/// Row `b`, key head `j`: the gradients of its query heads' queries (`[per_kv, queries, hd]`)
/// and of its new keys and values (`[s, hd]` each), from the outputs' gradient `d_out` (`[b,
/// heads, queries, hd]`). Keys a query does not see have probability 0 and no gradient from it.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_unit(
    d: &Dims,
    x: &Inputs,
    probs: &[f32],
    d_out: &[f32],
    (b, j): (usize, usize),
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (hd, keys) = (d.head_dim, d.keys());
    let width = keys.next_multiple_of(16);
    let vt = as_columns(|c| x.value(d, b, j, c), keys, hd, width);
    let mut ds = vec![0f32; width];
    dk.fill(0.0);
    dv.fill(0.0);
    for g in 0..d.per_kv() {
        let h = j * d.per_kv() + g;
        for i in 0..d.queries {
            let row = (b * d.heads + h) * d.queries + i;
            let seen = seen_keys(x.mask_row(d, b, i));
            let p = &probs[row * keys..row * keys + seen];
            let go = &d_out[row * hd..(row + 1) * hd];
            // dP = dO·v; dS = P ⊙ (dP − Σ P ⊙ dP)
            let ds = &mut ds[..seen.next_multiple_of(16)];
            dots_with_columns(go, &vt, width, seen, ds);
            let weighted = dot(p, &ds[..seen]);
            let q = x.query(d, b, h, i);
            let dq = &mut dq[(g * d.queries + i) * hd..(g * d.queries + i + 1) * hd];
            dq.fill(0.0);
            for (c, (&p, &s)) in p.iter().zip(ds.iter()).enumerate() {
                let s = p * (s - weighted) * d.scale;
                axpy(s, x.key(d, b, j, c), dq);
                if c >= d.prefix {
                    let t = c - d.prefix;
                    axpy(s, q, &mut dk[t * hd..(t + 1) * hd]);
                    axpy(p, go, &mut dv[t * hd..(t + 1) * hd]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn forward_unit_avx512(
    d: &Dims,
    x: &Inputs,
    unit: (usize, usize),
    out: &mut [f32],
    probs: &mut [f32],
    keep: bool,
) {
    forward_unit(d, x, unit, out, probs, keep)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn backward_unit_avx512(
    d: &Dims,
    x: &Inputs,
    probs: &[f32],
    d_out: &[f32],
    unit: (usize, usize),
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    backward_unit(d, x, probs, d_out, unit, dq, dk, dv)
}

/// The outputs `[b, heads, queries, hd]` and, where `keep` (for the backward), the
/// probabilities `[b, heads, queries, keys]` (else nothing).
fn forward_values(d: &Dims, x: &Inputs, keep: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let (hd, keys, g) = (d.head_dim, d.keys(), d.per_kv());
    let mut out = vec![0f32; d.batch * d.heads * d.queries * hd];
    // Each unit's probabilities, or one row of them that it reuses.
    let per_unit = if keep { g * d.queries * keys } else { keys };
    let mut probs = vec![0f32; d.batch * d.kv_heads * per_unit];
    let fast = super::avx512();
    // Unit (b, j) owns heads `j·g .. (j+1)·g` of row b: consecutive in both outputs.
    out.par_chunks_mut(g * d.queries * hd)
        .zip(probs.par_chunks_mut(per_unit.max(1)))
        .enumerate()
        .for_each(|(unit, (out, probs))| {
            let unit = (unit / d.kv_heads, unit % d.kv_heads);
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: the CPU has AVX-512F.
                return unsafe { forward_unit_avx512(d, x, unit, out, probs, keep) };
            }
            let _ = fast;
            forward_unit(d, x, unit, out, probs, keep)
        });
    (out, keep.then_some(probs))
}

/// The inputs as a call receives them (flex tensors), read in place.
struct Primitives {
    q: FloatTensor<Flex>,
    k: FloatTensor<Flex>,
    v: FloatTensor<Flex>,
    k_prefix: FloatTensor<Flex>,
    v_prefix: FloatTensor<Flex>,
    mask: FloatTensor<Flex>,
    rotary: Option<Rotary>,
}

/// Rotary embeddings applied inside the operation to the queries and the new keys (which then
/// arrive unrotated): the tables `[b, 1, s, hd / 2]` at each row's positions of the new
/// columns, and the pair layout (`interleaved`: pairs `(2i, 2i+1)`; else `(i, i + hd/2)`).
#[derive(Debug, Clone)]
pub(super) struct Rotary {
    pub cos: FloatTensor<Flex>,
    pub sin: FloatTensor<Flex>,
    pub interleaved: bool,
}

impl Rotary {
    /// The cosine and sine tables on the host.
    fn tables(&self) -> (Vec<f32>, Vec<f32>) {
        (
            with_values(self.cos.clone(), <[f32]>::to_vec),
            with_values(self.sin.clone(), <[f32]>::to_vec),
        )
    }
}

impl Primitives {
    /// The sizes, from the shapes (`scale` given).
    fn dims(&self, scale: f64) -> Dims {
        let q = self.q.shape();
        let k = self.k.shape();
        let m = self.mask.shape();
        Dims {
            batch: q[0],
            heads: q[1],
            kv_heads: k[1],
            queries: q[2],
            seq: k[2],
            prefix: m[3] - k[2],
            shared_prefix: self.k_prefix.shape()[0] == 1,
            head_dim: q[3],
            scale: scale as f32,
        }
    }

    /// `f` on the host values (the prefix empty where there is none; the queries and new keys
    /// rotated here where [`Rotary`] is given).
    fn with<R>(&self, d: &Dims, f: impl FnOnce(&Inputs) -> R) -> R {
        // The queries and new keys are small (the new columns only): copied, and rotated.
        let mut q = with_gathered(self.q.clone(), <[f32]>::to_vec);
        let mut k = with_gathered(self.k.clone(), <[f32]>::to_vec);
        if let Some(r) = &self.rotary {
            let tables = r.tables();
            let (cos, sin) = (&tables.0, &tables.1);
            q = rotate_all(
                &q,
                [d.batch, d.heads, d.queries, d.head_dim],
                (cos, sin, d.seq),
                r.interleaved,
                false,
            );
            k = rotate_all(
                &k,
                [d.batch, d.kv_heads, d.seq, d.head_dim],
                (cos, sin, d.seq),
                r.interleaved,
                false,
            );
        }
        let (kp, vp, mask) = (
            self.k_prefix.clone(),
            self.v_prefix.clone(),
            self.mask.clone(),
        );
        let prefix = d.prefix > 0;
        with_gathered(self.v.clone(), |v| {
            with_values(mask, |mask| {
                let run = |k_prefix: &[f32], v_prefix: &[f32]| {
                    f(&Inputs {
                        q: &q,
                        k: &k,
                        v,
                        k_prefix,
                        v_prefix,
                        mask,
                    })
                };
                if prefix {
                    with_values(kp, |kp| with_values(vp, |vp| run(kp, vp)))
                } else {
                    run(&[], &[])
                }
            })
        })
    }

    /// The queries' and new keys' gradients taken back through the rotation (the gradients
    /// computed against the rotated vectors), where the rotation was applied here.
    fn unrotate(&self, d: &Dims, dq: Vec<f32>, dk: Vec<f32>) -> (Vec<f32>, Vec<f32>) {
        match &self.rotary {
            None => (dq, dk),
            Some(r) => {
                let tables = r.tables();
                let (cos, sin) = (&tables.0, &tables.1);
                (
                    rotate_all(
                        &dq,
                        [d.batch, d.heads, d.queries, d.head_dim],
                        (cos, sin, d.seq),
                        r.interleaved,
                        true,
                    ),
                    rotate_all(
                        &dk,
                        [d.batch, d.kv_heads, d.seq, d.head_dim],
                        (cos, sin, d.seq),
                        r.interleaved,
                        true,
                    ),
                )
            }
        }
    }
}

/// The shape of the queries (and outputs) or, `keys`, of the new keys and values.
fn shape_of(d: &Dims, heads: usize, keys: bool) -> Shape {
    let columns = if keys { d.seq } else { d.queries };
    Shape::new([d.batch, heads, columns, d.head_dim])
}

/// The rotary tables and their code, as the operation receives them (see [`rotary_of`]).
pub(super) type Tables<B> = (FloatTensor<B>, FloatTensor<B>, u8);

/// The rotary setting from the operation's arguments: `code` 0 none, 1 pairs `(i, i + hd/2)`,
/// 2 interleaved pairs.
fn rotary_of(cos: FloatTensor<Flex>, sin: FloatTensor<Flex>, code: u8) -> Option<Rotary> {
    (code != 0).then_some(Rotary {
        cos,
        sin,
        interleaved: code == 2,
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    q: FloatTensor<Flex>,
    k: FloatTensor<Flex>,
    v: FloatTensor<Flex>,
    k_prefix: FloatTensor<Flex>,
    v_prefix: FloatTensor<Flex>,
    mask: FloatTensor<Flex>,
    (cos, sin, rotary): Tables<Flex>,
    scale: f64,
) -> FloatTensor<Flex> {
    let p = Primitives {
        q,
        k,
        v,
        k_prefix,
        v_prefix,
        mask,
        rotary: rotary_of(cos, sin, rotary),
    };
    let d = p.dims(scale);
    let device = p.q.device();
    let (out, _) = p.with(&d, |x| forward_values(&d, x, false));
    Flex::float_from_data(TensorData::new(out, shape_of(&d, d.heads, false)), &device)
}

/// The backward of [`forward`]: its state is the inputs and the probabilities.
#[derive(Debug)]
struct AttentionBackward;

/// What the backward keeps.
#[derive(Debug, Clone)]
pub(super) struct Saved {
    q: FloatTensor<Flex>,
    k: FloatTensor<Flex>,
    v: FloatTensor<Flex>,
    k_prefix: FloatTensor<Flex>,
    v_prefix: FloatTensor<Flex>,
    mask: FloatTensor<Flex>,
    rotary: Option<Rotary>,
    probs: std::sync::Arc<Vec<f32>>,
    scale: f64,
}

impl Backward<Flex, 3> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let d_out = grads.consume::<Flex>(&ops.node);
        let p = Primitives {
            q: s.q,
            k: s.k,
            v: s.v,
            k_prefix: s.k_prefix,
            v_prefix: s.v_prefix,
            mask: s.mask,
            rotary: s.rotary,
        };
        let d = p.dims(s.scale);
        let device = p.q.device();
        let hd = d.head_dim;
        let g = d.per_kv();
        let mut dq = vec![0f32; d.batch * d.heads * d.queries * hd];
        let mut dk = vec![0f32; d.batch * d.kv_heads * d.seq * hd];
        let mut dv = vec![0f32; d.batch * d.kv_heads * d.seq * hd];
        let fast = super::avx512();
        with_gathered(d_out, |d_out| {
            p.with(&d, |x| {
                dq.par_chunks_mut(g * d.queries * hd)
                    .zip(dk.par_chunks_mut(d.seq * hd))
                    .zip(dv.par_chunks_mut(d.seq * hd))
                    .enumerate()
                    .for_each(|(unit, ((dq, dk), dv))| {
                        let bj = (unit / d.kv_heads, unit % d.kv_heads);
                        #[cfg(target_arch = "x86_64")]
                        if fast {
                            // SAFETY: the CPU has AVX-512F.
                            return unsafe {
                                backward_unit_avx512(&d, x, &s.probs, d_out, bj, dq, dk, dv)
                            };
                        }
                        let _ = fast;
                        backward_unit(&d, x, &s.probs, d_out, bj, dq, dk, dv)
                    })
            })
        });
        let (dq, dk) = p.unrotate(&d, dq, dk);
        let [q_parent, k_parent, v_parent] = ops.parents;
        let grad = |values: Vec<f32>, heads: usize, keys: bool| {
            Flex::float_from_data(TensorData::new(values, shape_of(&d, heads, keys)), &device)
        };
        if let Some(node) = q_parent {
            grads.register::<Flex>(node.id, grad(dq, d.heads, false));
        }
        if let Some(node) = k_parent {
            grads.register::<Flex>(node.id, grad(dk, d.kv_heads, true));
        }
        if let Some(node) = v_parent {
            grads.register::<Flex>(node.id, grad(dv, d.kv_heads, true));
        }
    }
}

/// [`forward`] on autodiff tensors: gradients reach the queries and the new keys and values
/// (the prefix and the mask are constants).
#[allow(clippy::too_many_arguments)]
pub(super) fn tracked<C: CheckpointStrategy>(
    q: FloatTensor<Autodiff<Flex, C>>,
    k: FloatTensor<Autodiff<Flex, C>>,
    v: FloatTensor<Autodiff<Flex, C>>,
    k_prefix: FloatTensor<Autodiff<Flex, C>>,
    v_prefix: FloatTensor<Autodiff<Flex, C>>,
    mask: FloatTensor<Autodiff<Flex, C>>,
    (cos, sin, rotary): Tables<Autodiff<Flex, C>>,
    scale: f64,
) -> FloatTensor<Autodiff<Flex, C>> {
    let (q, q_node) = q.into_parts();
    let (k, k_node) = k.into_parts();
    let (v, v_node) = v.into_parts();
    let p = Primitives {
        q,
        k,
        v,
        k_prefix: k_prefix.into_parts().0,
        v_prefix: v_prefix.into_parts().0,
        mask: mask.into_parts().0,
        rotary: rotary_of(cos.into_parts().0, sin.into_parts().0, rotary),
    };
    let d = p.dims(scale);
    let device = p.q.device();
    // The probabilities are kept only where a gradient will ask for them.
    let run = |p: &Primitives, keep: bool| {
        let (out, probs) = p.with(&d, |x| forward_values(&d, x, keep));
        let out = TensorData::new(out, shape_of(&d, d.heads, false));
        (
            Flex::float_from_data(out, &device),
            probs.unwrap_or_default(),
        )
    };
    match AttentionBackward
        .prepare::<C>([q_node, k_node, v_node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, probs) = run(&p, true);
            prep.finish(
                Saved {
                    q: p.q,
                    k: p.k,
                    v: p.v,
                    k_prefix: p.k_prefix,
                    v_prefix: p.v_prefix,
                    mask: p.mask,
                    rotary: p.rotary,
                    probs: std::sync::Arc::new(probs),
                    scale,
                },
                out,
            )
        }
        OpsKind::UnTracked(prep) => prep.finish(run(&p, false).0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::tensor::activation::softmax;
    use burn::tensor::{Device, Distribution, Tensor, TensorData};

    use crate::fused::attention;

    use crate::fused::test_values::{host, max_diff};

    /// Keys and values repeated for every query head, prefix and new columns joined: attention
    /// as transformers writes it, from burn's operations.
    fn composed(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        prefix: Option<(Tensor<4>, Tensor<4>)>,
        mask: Tensor<4>,
        scale: f64,
    ) -> Tensor<4> {
        let [b, heads, _, hd] = q.dims();
        let (k, v) = match prefix {
            Some((kp, vp)) => (Tensor::cat(vec![kp, k], 2), Tensor::cat(vec![vp, v], 2)),
            None => (k, v),
        };
        let [_, kv, keys, _] = k.dims();
        let repeat = |t: Tensor<4>| {
            t.unsqueeze_dim::<5>(2)
                .expand([b, kv, heads / kv, keys, hd])
                .reshape([b, heads, keys, hd])
        };
        let probs = softmax(q.matmul(repeat(k).swap_dims(2, 3)) * scale + mask, 3);
        probs.matmul(repeat(v))
    }

    /// Left-padded causal mask: row r's first `pads[r]` columns (of `p + s`) masked, and every
    /// new column after the query's.
    fn mask(pads: &[usize], p: usize, s: usize, device: &Device) -> Tensor<4> {
        let keys = p + s;
        let mut m = vec![0f32; pads.len() * s * keys];
        for (r, &pad) in pads.iter().enumerate() {
            for i in 0..s {
                for c in 0..keys {
                    if c < pad || c > p + i {
                        m[(r * s + i) * keys + c] = -1e9;
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(m, [pads.len(), 1, s, keys]), device)
    }

    /// Copies of `q`, `k` and `v` that take gradients.
    fn tracked(ts: [&Tensor<4>; 3]) -> [Tensor<4>; 3] {
        ts.map(|t| t.clone().autodiff().require_grad())
    }

    /// The output and the gradients of `Σ out ⊙ d_out` with respect to `q`, `k` and `v`.
    fn output_and_grads(
        out: Tensor<4>,
        d_out: &Tensor<4>,
        [q, k, v]: [&Tensor<4>; 3],
    ) -> [Vec<f32>; 4] {
        let grads = (out.clone() * d_out.clone().autodiff()).sum().backward();
        let g = |t: &Tensor<4>| host(t.grad(&grads).unwrap().without_autodiff());
        [host(out.without_autodiff()), g(q), g(k), g(v)]
    }

    /// Every one of output, dq, dk and dv within 1e-5.
    fn assert_agree(got: &[Vec<f32>; 4], want: &[Vec<f32>; 4], case: &str) {
        for (what, (g, w)) in ["output", "dq", "dk", "dv"]
            .iter()
            .zip(got.iter().zip(want))
        {
            let diff = max_diff(g, w);
            assert!(diff < 1e-5, "{case}, {what}: max |diff| {diff}");
        }
    }

    /// Rotary tables of random angles, `[b, 1, s, hd / 2]`: cos and sin.
    fn random_tables(b: usize, s: usize, hd: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let angles: Tensor<4> =
            Tensor::random([b, 1, s, hd / 2], Distribution::Uniform(-3.0, 3.0), device);
        (angles.clone().cos(), angles.sin())
    }

    /// The fused attention and its gradients (queries, new keys, new values) against the
    /// composed operations: with and without a cached prefix (one long enough for the keys to
    /// take several blocks of 64), with padding, one row padded past its whole prefix and into
    /// the new columns (a query that sees no key), and three query heads per key head; the
    /// inputs contiguous, then laid out as the model passes them (`[b, s, heads, hd]` viewed as
    /// `[b, heads, s, hd]`, the output's gradient arriving the same way).
    #[test]
    fn attention_and_its_gradients_match_the_composed_ops() {
        let device = Device::flex();
        let (b, heads, kv, hd) = (3, 6, 2, 16);
        for (strided, (p, s)) in [false, true]
            .into_iter()
            .flat_map(|t| [(0, 5), (7, 3), (70, 9)].map(|ps| (t, ps)))
        {
            let normal = |[a, n, c, d]: [usize; 4]| {
                let dist = Distribution::Normal(0.0, 1.0);
                if strided {
                    Tensor::<4>::random([a, c, n, d], dist, &device).swap_dims(1, 2)
                } else {
                    Tensor::<4>::random([a, n, c, d], dist, &device)
                }
            };
            let q = normal([b, heads, s, hd]);
            let k = normal([b, kv, s, hd]);
            let v = normal([b, kv, s, hd]);
            let prefix = (p > 0).then(|| (normal([b, kv, p, hd]), normal([b, kv, p, hd])));
            let pads = [0, 2, p + 1];
            let m = mask(&pads, p, s, &device);
            // Through `swap_dims` the output's gradient reaches the operation as a view.
            let d_out = normal([b, heads, s, hd]);
            let run = |fused: bool| {
                let [q, k, v] = tracked([&q, &k, &v]);
                let out = if fused {
                    attention(
                        &q,
                        &k,
                        &v,
                        prefix.as_ref().map(|(a, b)| (a, b)),
                        &m,
                        None,
                        0.25,
                    )
                    .unwrap()
                } else {
                    composed(
                        q.clone(),
                        k.clone(),
                        v.clone(),
                        prefix.clone(),
                        m.clone(),
                        0.25,
                    )
                };
                if strided {
                    let d_out = d_out.clone().swap_dims(1, 2);
                    let [got_out, dq, dk, dv] =
                        output_and_grads(out.swap_dims(1, 2), &d_out, [&q, &k, &v]);
                    [got_out, dq, dk, dv]
                } else {
                    output_and_grads(out, &d_out, [&q, &k, &v])
                }
            };
            assert_agree(
                &run(true),
                &run(false),
                &format!("prefix {p}, strided {strided}"),
            );
            // The forward alone, nothing tracked (as inference runs it: no probabilities kept).
            let prefix = prefix.as_ref().map(|(a, b)| (a, b));
            let alone = attention(&q, &k, &v, prefix, &m, None, 0.25).unwrap();
            let prefix = prefix.map(|(a, b)| (a.clone(), b.clone()));
            let want = composed(q.clone(), k.clone(), v.clone(), prefix, m.clone(), 0.25);
            let diff = max_diff(&host(alone), &host(want));
            assert!(
                diff < 1e-5,
                "prefix {p}, strided {strided}, untracked: max |diff| {diff}"
            );
        }
    }

    /// A prefix shared by every row (`[1, kv, p, hd]`, a beginning the rows have in common) is
    /// read as that prefix repeated for each row: output and gradients against the composed
    /// operations on the repeated prefix.
    #[test]
    fn a_prefix_shared_by_every_row_is_read_as_if_repeated() {
        let device = Device::flex();
        let (b, heads, kv, hd, p, s) = (3, 6, 2, 16, 20, 4);
        let normal =
            |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (
            normal([b, heads, s, hd]),
            normal([b, kv, s, hd]),
            normal([b, kv, s, hd]),
        );
        let (kp, vp) = (normal([1, kv, p, hd]), normal([1, kv, p, hd]));
        let m = mask(&[0, 0, 3], p, s, &device);
        let d_out = normal([b, heads, s, hd]);
        let run = |fused: bool| {
            let [q, k, v] = tracked([&q, &k, &v]);
            let out = if fused {
                attention(&q, &k, &v, Some((&kp, &vp)), &m, None, 0.25).unwrap()
            } else {
                let repeated = |t: &Tensor<4>| t.clone().repeat_dim(0, b);
                let prefix = Some((repeated(&kp), repeated(&vp)));
                composed(q.clone(), k.clone(), v.clone(), prefix, m.clone(), 0.25)
            };
            output_and_grads(out, &d_out, [&q, &k, &v])
        };
        assert_agree(&run(true), &run(false), "shared prefix");
    }

    /// With the rotation inside: the fused operation on unrotated queries and keys against
    /// burn's rotation (`RopeTables::apply_composed`) then the composed operations, both pair
    /// layouts, gradients with respect to the unrotated inputs.
    #[test]
    fn rotary_inside_matches_rotary_before() {
        use crate::fused::{RotaryTables, rotary_composed};
        let device = Device::flex();
        let (b, heads, kv, hd, p, s) = (2, 6, 2, 16, 4, 3);
        let normal =
            |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (cos, sin) = random_tables(b, s, hd, &device);
        for interleaved in [false, true] {
            let r = RotaryTables {
                cos: &cos,
                sin: &sin,
                interleaved,
            };
            let (q, k, v) = (
                normal([b, heads, s, hd]),
                normal([b, kv, s, hd]),
                normal([b, kv, s, hd]),
            );
            let prefix = (normal([b, kv, p, hd]), normal([b, kv, p, hd]));
            let m = mask(&[0, 1], p, s, &device);
            let d_out = normal([b, heads, s, hd]);
            let run = |inside: bool| {
                let [q, k, v] = tracked([&q, &k, &v]);
                let kv = Some((&prefix.0, &prefix.1));
                let out = if inside {
                    attention(&q, &k, &v, kv, &m, Some(r), 0.25).unwrap()
                } else {
                    let (qr, kr) = (rotary_composed(q.clone(), r), rotary_composed(k.clone(), r));
                    composed(qr, kr, v.clone(), Some(prefix.clone()), m.clone(), 0.25)
                };
                output_and_grads(out, &d_out, [&q, &k, &v])
            };
            assert_agree(
                &run(true),
                &run(false),
                &format!("interleaved {interleaved}"),
            );
        }
    }

    /// Queries at the last columns only (the last block of a step, where only the last
    /// column's output is read): the fused operation with the rotation inside, on the last
    /// `s_q` queries and the mask's last rows, against the composed full attention (rotary
    /// applied before) cut to its last `s_q` rows; gradients with respect to the full queries,
    /// keys and values.
    #[test]
    fn queries_at_the_last_columns_match_the_full_attentions_last_rows() {
        use crate::fused::{RotaryTables, rotary_composed};
        let device = Device::flex();
        let (b, heads, kv, hd, p, s) = (3, 6, 2, 16, 4, 5);
        let normal =
            |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (cos, sin) = random_tables(b, s, hd, &device);
        let r = RotaryTables {
            cos: &cos,
            sin: &sin,
            interleaved: false,
        };
        for s_q in [1, 2] {
            let (q, k, v) = (
                normal([b, heads, s, hd]),
                normal([b, kv, s, hd]),
                normal([b, kv, s, hd]),
            );
            let prefix = (normal([b, kv, p, hd]), normal([b, kv, p, hd]));
            let m = mask(&[0, 2, p + 1], p, s, &device);
            let d_out = normal([b, heads, s_q, hd]);
            let run = |last_only: bool| {
                let [q, k, v] = tracked([&q, &k, &v]);
                let out = if last_only {
                    let (q_last, m_last) = (
                        q.clone().narrow(2, s - s_q, s_q),
                        m.clone().narrow(2, s - s_q, s_q),
                    );
                    let kv = Some((&prefix.0, &prefix.1));
                    attention(&q_last, &k, &v, kv, &m_last, Some(r), 0.25).unwrap()
                } else {
                    let (qr, kr) = (rotary_composed(q.clone(), r), rotary_composed(k.clone(), r));
                    composed(qr, kr, v.clone(), Some(prefix.clone()), m.clone(), 0.25).narrow(
                        2,
                        s - s_q,
                        s_q,
                    )
                };
                output_and_grads(out, &d_out, [&q, &k, &v])
            };
            assert_agree(&run(true), &run(false), &format!("last {s_q} queries"));
        }
    }
}
