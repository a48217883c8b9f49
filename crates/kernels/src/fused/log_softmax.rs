//! `log_softmax` over the last dimension in one pass forward and one backward.
//!
//! A training step's loss takes the log-probabilities of its rows' targets over the whole
//! vocabulary (49 152 columns for SmolLM2). burn composes `log_softmax` from six operations
//! (maximum, difference, `exp`, sum, `log`, difference), each a pass over the logits on one
//! thread with libm's `exp` a call per value, and autodiff about as many again backward. Here
//! the rows are split over the threads, and each row takes two passes forward (its maximum, then
//! the sum of the shifted exponentials, vectorised) and one backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::exp::exp;
use super::{avx512, with_values};

/// `log_softmax` of rows of `d` values.
pub(super) fn forward(x: FloatTensor<Flex>, d: usize) -> FloatTensor<Flex> {
    let (shape, device) = (x.shape(), x.device());
    let mut out = vec![0f32; shape.num_elements()];
    with_values(x, |x| {
        by_rows(&mut out, x, None, d, |x, _, out| {
            #[cfg(target_arch = "x86_64")]
            if avx512() {
                // SAFETY: the CPU has AVX-512F (checked above).
                return unsafe { kernels::forward_avx512(x, out) };
            }
            kernels::forward(x, out)
        })
    });
    Flex::float_from_data(TensorData::new(out, shape), &device)
}

/// `f(row of a, row of b, row of out)` for every row of `d` values, the rows split over the
/// threads.
fn by_rows(
    out: &mut [f32],
    a: &[f32],
    b: Option<&[f32]>,
    d: usize,
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) {
    let d = d.max(1);
    out.par_chunks_mut(d).enumerate().for_each(|(r, out)| {
        let row = r * d..(r + 1) * d;
        f(&a[row.clone()], b.map_or(&[][..], |b| &b[row]), out)
    });
}

mod kernels {
    use super::exp;

    /// `y = x − max − ln Σ e^(x − max)`.
    #[inline(always)]
    pub(super) fn forward(x: &[f32], y: &mut [f32]) {
        // Sixteen partial maxima and sums, so that the loops vectorise.
        let mut most = [f32::NEG_INFINITY; 16];
        let chunks = x.chunks_exact(16);
        let tail_max = chunks
            .remainder()
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for c in chunks.clone() {
            for l in 0..16 {
                most[l] = most[l].max(c[l]);
            }
        }
        let max = most.iter().fold(tail_max, |m, &v| m.max(v));
        let mut acc = [0f32; 16];
        let tail: f32 = chunks.remainder().iter().map(|&v| exp(v - max)).sum();
        for c in chunks {
            for l in 0..16 {
                acc[l] += exp(c[l] - max);
            }
        }
        let lse = max + (acc.iter().sum::<f32>() + tail).ln();
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x - lse;
        }
    }

    /// `dx = dy − e^y · Σ dy`, from the output `y`.
    #[inline(always)]
    pub(super) fn backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        // In `f64`, eight partial sums: a row is tens of thousands of values, and the sum's
        // rounding reaches every value's gradient through the largest probability.
        let mut acc = [0f64; 8];
        let chunks = dy.chunks_exact(8);
        let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
        for c in chunks {
            for l in 0..8 {
                acc[l] += f64::from(c[l]);
            }
        }
        let total = (acc.iter().sum::<f64>() + tail) as f32;
        for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
            *dx = dy - exp(y) * total;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) fn forward_avx512(x: &[f32], y: &mut [f32]) {
        forward(x, y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) fn backward_avx512(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        backward(y, dy, dx)
    }
}

/// The backward of [`forward`]: its state is the output and the row length.
#[derive(Debug)]
struct LogSoftmaxBackward;

impl Backward<Flex, 1> for LogSoftmaxBackward {
    type State = (FloatTensor<Flex>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (y, d) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |dy| {
            let (shape, device) = (dy.shape(), dy.device());
            let mut dx = vec![0f32; shape.num_elements()];
            with_values(y, |y| {
                with_values(dy, |dy| {
                    by_rows(&mut dx, y, Some(dy), d, |y, dy, dx| {
                        #[cfg(target_arch = "x86_64")]
                        if avx512() {
                            // SAFETY: the CPU has AVX-512F (checked above).
                            return unsafe { kernels::backward_avx512(y, dy, dx) };
                        }
                        kernels::backward(y, dy, dx)
                    })
                })
            });
            Flex::float_from_data(TensorData::new(dx, shape), &device)
        });
    }
}

/// [`forward`] on autodiff tensors.
pub(super) fn tracked<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    d: usize,
) -> FloatTensor<Autodiff<Flex, C>> {
    let (x, node) = x.into_parts();
    let out = forward(x, d);
    match LogSoftmaxBackward
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((out.clone(), d), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use crate::fused::log_softmax;
    use crate::fused::test_values::{host, max_diff};

    /// The fused `log_softmax` and its input gradient against the same computed in `f64` on the
    /// host, at a vocabulary's width and at one that is not a multiple of the 16 lanes, with
    /// logits spread like a model's (up to ±40) and a row whose largest value stands far out.
    #[test]
    fn log_softmax_and_its_gradient_match_f64() {
        let device = Device::flex();
        for (rows, d) in [(3, 49_152), (5, 1_007)] {
            let x: Tensor<3> =
                Tensor::random([1, rows, d], Distribution::Uniform(-40.0, 40.0), &device);
            let x = x.slice_assign([0..1, 0..1, 3..4], Tensor::full([1, 1, 1], 95.0, &device));
            let dy: Tensor<3> =
                Tensor::random([1, rows, d], Distribution::Normal(0.0, 1.0), &device);
            let leaf = x.clone().autodiff().require_grad();
            let y = log_softmax(leaf.clone());
            let grads = (y.clone() * dy.clone().autodiff()).sum().backward();
            let (y, dx) = (
                host(y.without_autodiff()),
                host(leaf.grad(&grads).unwrap().without_autodiff()),
            );
            let (xs, dys) = (host(x), host(dy));
            let (mut y_ref, mut dx_ref) = (Vec::new(), Vec::new());
            for r in 0..rows {
                let (x, dy) = (&xs[r * d..(r + 1) * d], &dys[r * d..(r + 1) * d]);
                let max = x
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
                let lse = max
                    + x.iter()
                        .map(|&v| (f64::from(v) - max).exp())
                        .sum::<f64>()
                        .ln();
                let total: f64 = dy.iter().map(|&v| f64::from(v)).sum();
                for (&x, &dy) in x.iter().zip(dy) {
                    let logp = f64::from(x) - lse;
                    y_ref.push(logp as f32);
                    dx_ref.push((f64::from(dy) - logp.exp() * total) as f32);
                }
            }
            // Log-probabilities reach −135 here, where an `f32`'s step is 1.5e-5.
            let y_scale = y_ref.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                max_diff(&y, &y_ref) < 1e-6 * y_scale,
                "{rows} x {d}: forward {}",
                max_diff(&y, &y_ref)
            );
            let dx_scale = dx_ref.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                max_diff(&dx, &dx_ref) < 1e-5 * dx_scale,
                "{rows} x {d}: gradient {}",
                max_diff(&dx, &dx_ref)
            );
        }
    }
}
