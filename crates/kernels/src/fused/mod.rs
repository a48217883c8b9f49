//! Elementwise steps fused into one pass over memory, with their own backward (flex backend).
//!
//! burn runs a SwiGLU activation as three operations and an RMSNorm as six, each a pass over
//! the activations on one thread, allocating its result; autodiff adds about twice as many for
//! the gradient. A training step above the site runs them at every block, forward and
//! backward. Here each is one pass forward and one backward, vectorised and split over burn's
//! threads. Other backends (LibTorch, ndarray), and an RMSNorm whose weight is being trained,
//! keep burn's composed operations.

mod attention;
mod exp;
mod lanes;
mod log_softmax;
mod rms_norm;
mod rotary;
mod silu_mul;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::RmsNorm;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `silu(gate) · up`, elementwise (`gate` and `up` of one shape).
    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x / sqrt(mean(x²) + eps) · gamma` over the last dimension; `gamma` is a constant (no
    /// gradient reaches it).
    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
    /// `log_softmax` over rows of `d` values (the last dimension).
    fn log_softmax(x: FloatTensor<Self>, d: usize) -> FloatTensor<Self>;
    /// Rotary embeddings of `x` (`[b, heads, s, hd]`) by the tables `cos`, `sin` (`[b, 1, s,
    /// hd / 2]`), pairs `(i, i + hd/2)` (`code` 1) or interleaved (2); see [`rotary()`].
    fn rotary(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        code: u8,
    ) -> FloatTensor<Self>;
    /// `softmax(q·kᵀ·scale + mask)·v` of new columns over a cached prefix and themselves; see
    /// [`attention()`].
    #[allow(clippy::too_many_arguments)]
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        k_prefix: FloatTensor<Self>,
        v_prefix: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        rotary: u8,
        scale: f64,
    ) -> FloatTensor<Self>;
}

/// `silu(gate) · up`: the SwiGLU hidden activation.
///
/// # Shapes
/// - `gate`, `up`: the same shape → that shape
pub fn silu_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if gate.device() != Device::flex() || gate.dims() != up.dims() {
        return silu(gate) * up;
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::silu_mul(
        gate.into_dispatch(),
        up.into_dispatch(),
    ))
}

/// `x` rotated by rotary tables (`interleaved`: pairs `(2i, 2i+1)`, else `(i, i + hd/2)`), in
/// one pass forward and one backward; `None` where the fused operation does not apply
/// (another backend, or tables of another shape), for the caller to compose it.
///
/// # Shapes
/// - `x`: `[b, heads, s, hd]`; `cos`, `sin`: `[b, 1, s, hd / 2]` → `[b, heads, s, hd]`
pub fn rotary(x: &Tensor<4>, tables: RotaryTables<'_>) -> Option<Tensor<4>> {
    let [b, _, s, hd] = x.dims();
    let fits = x.device() == Device::flex()
        && hd % 2 == 0
        && tables.cos.dims() == [b, 1, s, hd / 2]
        && tables.sin.dims() == tables.cos.dims();
    if !fits {
        return None;
    }
    Some(Tensor::from_dispatch(<Dispatch as FusedOps>::rotary(
        x.clone().into_dispatch(),
        tables.cos.clone().into_dispatch(),
        tables.sin.clone().into_dispatch(),
        if tables.interleaved { 2 } else { 1 },
    )))
}

/// [`rotary()`] from burn's operations: on backends without the fused one, and as its tests'
/// reference.
///
/// # Shapes
/// - as [`rotary()`]
pub fn rotary_composed(x: Tensor<4>, tables: RotaryTables<'_>) -> Tensor<4> {
    let [b, h, s, d] = x.dims();
    let half = d / 2;
    let (cos, sin) = (tables.cos.clone(), tables.sin.clone());
    if tables.interleaved {
        let pairs = x.reshape([b, h, s, half, 2]);
        let even: Tensor<4> = pairs.clone().narrow(4, 0, 1).reshape([b, h, s, half]);
        let odd: Tensor<4> = pairs.narrow(4, 1, 1).reshape([b, h, s, half]);
        let out_even = even.clone() * cos.clone() - odd.clone() * sin.clone();
        let out_odd = odd * cos + even * sin;
        Tensor::stack::<5>(vec![out_even, out_odd], 4).reshape([b, h, s, d])
    } else {
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let out1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
        let out2 = x2 * cos + x1 * sin;
        Tensor::cat(vec![out1, out2], 3)
    }
}

/// `norm.forward(x)`, fused where it can be (its weight is a constant: the model is frozen).
///
/// # Shapes
/// - `x`: `[..., d]` → `[..., d]`
pub fn rms_norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>) -> Tensor<D> {
    let gamma = norm.gamma.val();
    if x.device() != Device::flex() || gamma.is_require_grad() {
        return norm.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::rms_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        norm.epsilon,
    ))
}

/// `log_softmax(x)` over the last dimension, fused on flex (one parallel pass each way instead
/// of burn's six operations on one thread).
///
/// # Shapes
/// - `x`: `[..., d]` → `[..., d]`
pub fn log_softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let d = x.dims()[D - 1];
    if x.device() != Device::flex() || d == 0 {
        return burn::tensor::activation::log_softmax(x, D - 1);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::log_softmax(x.into_dispatch(), d))
}

/// Rotary tables for [`attention()`] to apply to the queries and new keys itself: `[b, 1, s,
/// hd / 2]` each, at each row's positions, and the pair layout.
#[derive(Debug, Clone, Copy)]
pub struct RotaryTables<'a> {
    pub cos: &'a Tensor<4>,
    pub sin: &'a Tensor<4>,
    pub interleaved: bool,
}

/// `softmax(q·kᵀ·scale + mask)·v` of the last `s_q` of `s` new columns, whose keys are preceded
/// by the cached `prefix` (keys and values, constants), with grouped-query heads (query head
/// `h` reads key head `h / (heads / kv_heads)`); `None` where the fused operation does not apply
/// (another backend, or shapes other than these), for the caller to compose it from burn's
/// operations.
///
/// # Shapes
/// - `q`: `[b, heads, s_q, hd]`: the last `s_q ≤ s` of the new columns (all of them, or fewer
///   where only the last columns' outputs are wanted); `k`, `v`: `[b, kv_heads, s, hd]` (after
///   rotary, or before it where `rotary` is given: then the queries and keys are rotated inside,
///   the tables `[b, 1, s, hd / 2]` covering the `s` new columns)
/// - `prefix`: `[b, kv_heads, p, hd]` each, or `[1, kv_heads, p, hd]` read by every row (a
///   beginning they share); `mask`: `[b, 1, s_q, p + s]`
/// - output: `[b, heads, s_q, hd]`
pub fn attention(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    prefix: Option<(&Tensor<4>, &Tensor<4>)>,
    mask: &Tensor<4>,
    rotary: Option<RotaryTables<'_>>,
    scale: f64,
) -> Option<Tensor<4>> {
    let [b, heads, s_q, hd] = q.dims();
    let [kb, kv_heads, s, khd] = k.dims();
    let p = prefix.map_or(0, |(kp, _)| kp.dims()[2]);
    let fits = q.device() == Device::flex()
        && [kb, khd] == [b, hd]
        && s_q <= s
        && v.dims() == k.dims()
        && kv_heads > 0
        && heads.is_multiple_of(kv_heads)
        && mask.dims() == [b, 1, s_q, p + s]
        && prefix.is_none_or(|(kp, vp)| {
            [b, 1].contains(&kp.dims()[0])
                && kp.dims()[1..] == [kv_heads, p, hd]
                && vp.dims() == kp.dims()
        })
        && rotary
            .is_none_or(|r| r.cos.dims() == [b, 1, s, hd / 2] && r.sin.dims() == [b, 1, s, hd / 2]);
    if !fits {
        return None;
    }
    // Without a prefix the new keys stand in for it (unread: its length is 0).
    let (kp, vp) = prefix.unwrap_or((k, v));
    // Without rotary the mask stands in for the tables (unread).
    let (cos, sin, code) = match &rotary {
        Some(r) => (r.cos, r.sin, if r.interleaved { 2 } else { 1 }),
        None => (mask, mask, 0),
    };
    Some(Tensor::from_dispatch(<Dispatch as FusedOps>::attention(
        q.clone().into_dispatch(),
        k.clone().into_dispatch(),
        v.clone().into_dispatch(),
        kp.clone().into_dispatch(),
        vp.clone().into_dispatch(),
        mask.clone().into_dispatch(),
        cos.clone().into_dispatch(),
        sin.clone().into_dispatch(),
        code,
        scale,
    )))
}

impl FusedOps for Flex {
    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        silu_mul::forward(gate, up)
    }

    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        rms_norm::forward(x, gamma, eps)
    }

    fn log_softmax(x: FloatTensor<Self>, d: usize) -> FloatTensor<Self> {
        log_softmax::forward(x, d)
    }

    fn rotary(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        code: u8,
    ) -> FloatTensor<Self> {
        rotary::forward(x, cos, sin, code)
    }

    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        k_prefix: FloatTensor<Self>,
        v_prefix: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        rotary: u8,
        scale: f64,
    ) -> FloatTensor<Self> {
        attention::forward(q, k, v, k_prefix, v_prefix, mask, (cos, sin, rotary), scale)
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        silu_mul::tracked::<C>(gate, up)
    }

    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        rms_norm::tracked::<C>(x, gamma, eps)
    }

    fn log_softmax(x: FloatTensor<Self>, d: usize) -> FloatTensor<Self> {
        log_softmax::tracked::<C>(x, d)
    }

    fn rotary(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        code: u8,
    ) -> FloatTensor<Self> {
        rotary::tracked::<C>(x, cos, sin, code)
    }

    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        k_prefix: FloatTensor<Self>,
        v_prefix: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        rotary: u8,
        scale: f64,
    ) -> FloatTensor<Self> {
        attention::tracked::<C>(q, k, v, k_prefix, v_prefix, mask, (cos, sin, rotary), scale)
    }
}

/// Borrows a flex tensor's `f32` values (made contiguous, converted if need be).
fn with_values<R>(x: FloatTensor<Flex>, f: impl FnOnce(&[f32]) -> R) -> R {
    let x = x.to_contiguous();
    match x.as_slice::<f32>() {
        Some(v) => f(v),
        None => {
            let data = x.into_data().convert::<f32>();
            f(data.as_slice::<f32>().unwrap_or(&[]))
        }
    }
}

/// [`with_values`] for a 4-d tensor, its values in logical order: borrowed where contiguous;
/// gathered in parallel, one `[.., .., s, d]` slab a task, where only its last dimension is
/// (the attention's queries, keys, values and output gradients arrive as `[b, s, heads, hd]`
/// viewed as `[b, heads, s, hd]`, which burn would copy on one thread).
fn with_gathered<R>(x: FloatTensor<Flex>, f: impl FnOnce(&[f32]) -> R) -> R {
    use burn::tensor::DType;
    use rayon::prelude::*;
    let layout = x.layout();
    let (shape, strides) = (layout.shape(), layout.strides());
    let gatherable = x.dtype() == DType::F32
        && shape.num_dims() == 4
        && strides[3] == 1
        && strides.iter().all(|&s| s >= 0)
        && !layout.is_contiguous();
    if !gatherable {
        return with_values(x, f);
    }
    let [b, h, s, d] = [shape[0], shape[1], shape[2], shape[3]];
    let [sb, sh, ss] = [strides[0], strides[1], strides[2]].map(|v| v.unsigned_abs());
    let (src, start) = (x.storage::<f32>(), layout.start_offset());
    let mut out = vec![0f32; b * h * s * d];
    if !out.is_empty() {
        out.par_chunks_mut(s * d)
            .enumerate()
            .for_each(|(bh, slab)| {
                let base = start + (bh / h) * sb + (bh % h) * sh;
                for (i, row) in slab.chunks_exact_mut(d).enumerate() {
                    let at = base + i * ss;
                    row.copy_from_slice(&src[at..at + d]);
                }
            });
    }
    f(&out)
}

/// Whether the CPU has AVX-512F (the loops are compiled for it, and for the baseline).
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// What the fused operations' tests compare: a tensor's values, and the largest difference.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod test_values {
    use burn::tensor::Tensor;

    pub(super) fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    pub(super) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }
}
