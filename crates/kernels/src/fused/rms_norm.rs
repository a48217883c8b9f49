//! RMSNorm (`x / sqrt(mean(x²) + eps) · gamma`, as burn and transformers compute it) in one pass
//! over the rows, and its input gradient in another. The weight `gamma` is a constant here: the
//! model is frozen, and [`super::rms_norm()`] keeps burn's operations for a weight being trained.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{avx512, with_values};
use crate::parallel_fill::filled_in_parallel;

/// Values per parallel task (whole rows): below this a pass costs less than waking a thread.
const CHUNK: usize = 16 * 1024;

pub(super) fn forward(
    x: FloatTensor<Flex>,
    gamma: FloatTensor<Flex>,
    eps: f64,
) -> FloatTensor<Flex> {
    let (shape, device) = (x.shape(), x.device());
    let n = shape.num_elements();
    let out = with_values(gamma, |g| {
        with_values(x, |x| {
            let d = g.len().max(1);
            let per_task = rows_per_task(d) * d;
            filled_in_parallel(n, per_task, |t, out| {
                for (r, y) in out.chunks_exact_mut(d).enumerate() {
                    let at = t * per_task + r * d;
                    kernels::forward(&x[at..at + d], g, eps as f32, y)
                }
            })
        })
    });
    Flex::float_from_data(TensorData::new(out, shape), &device)
}

/// Whole rows of `d` values per parallel task.
fn rows_per_task(d: usize) -> usize {
    (CHUNK / d.max(1)).max(1)
}

/// `f(offset, row)` for every row of `out` (rows of `d` values; `offset` its first value's
/// index, to read the same row of the inputs), split over the threads in runs of whole rows.
fn by_rows(out: &mut [f32], d: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let d = d.max(1);
    let run = |first: usize, out: &mut [f32]| {
        for (r, row) in out.chunks_exact_mut(d).enumerate() {
            f(first + r * d, row)
        }
    };
    let per_task = rows_per_task(d) * d;
    if out.len() <= per_task {
        run(0, out);
    } else {
        out.par_chunks_mut(per_task)
            .enumerate()
            .for_each(|(t, out)| run(t * per_task, out));
    }
}

/// The backward of [`forward`]: its state is the input and the weight.
#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 1> for RmsNormBackward {
    type State = (FloatTensor<Flex>, FloatTensor<Flex>, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma, eps) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |dy| {
            let (shape, device) = (dy.shape(), dy.device());
            let mut dx = vec![0f32; shape.num_elements()];
            with_values(gamma, |g| {
                with_values(x, |x| {
                    with_values(dy, |dy| {
                        by_rows(&mut dx, g.len(), |at, dx| {
                            let row = at..at + dx.len();
                            kernels::backward(&x[row.clone()], &dy[row], g, eps as f32, dx)
                        })
                    })
                })
            });
            Flex::float_from_data(TensorData::new(dx, shape), &device)
        });
    }
}

/// [`forward`] on autodiff tensors: the gradient reaches `x` only.
pub(super) fn tracked<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    gamma: FloatTensor<Autodiff<Flex, C>>,
    eps: f64,
) -> FloatTensor<Autodiff<Flex, C>> {
    let (x, node) = x.into_parts();
    let (gamma, _) = gamma.into_parts();
    let out = forward(x.clone(), gamma.clone(), eps);
    match RmsNormBackward
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x, gamma, eps), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// One row's loops, vectorised with AVX-512 where the CPU has it (sums in 16 lanes).
mod kernels {
    use super::super::lanes::dot;

    #[inline(always)]
    fn forward_row(x: &[f32], gamma: &[f32], eps: f32, y: &mut [f32]) {
        let rms = (dot(x, x) / x.len() as f32 + eps).sqrt();
        for ((y, &x), &g) in y.iter_mut().zip(x).zip(gamma) {
            *y = x / rms * g;
        }
    }

    /// `dx = γ·dy / rms − x · Σ(γ·dy·x) / (d · rms³)`, `rms = sqrt(mean(x²) + eps)`.
    #[inline(always)]
    fn backward_row(x: &[f32], dy: &[f32], gamma: &[f32], eps: f32, dx: &mut [f32]) {
        let d = x.len() as f32;
        let rms = (dot(x, x) / d + eps).sqrt();
        for ((o, &dy), &g) in dx.iter_mut().zip(dy).zip(gamma) {
            *o = g * dy;
        }
        let c = dot(dx, x) / (d * rms * rms * rms);
        for (o, &x) in dx.iter_mut().zip(x) {
            *o = *o / rms - x * c;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn forward_row_avx512(x: &[f32], gamma: &[f32], eps: f32, y: &mut [f32]) {
        forward_row(x, gamma, eps, y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn backward_row_avx512(x: &[f32], dy: &[f32], gamma: &[f32], eps: f32, dx: &mut [f32]) {
        backward_row(x, dy, gamma, eps, dx)
    }

    pub(super) fn forward(x: &[f32], gamma: &[f32], eps: f32, y: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::avx512() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { forward_row_avx512(x, gamma, eps, y) };
        }
        forward_row(x, gamma, eps, y)
    }

    pub(super) fn backward(x: &[f32], dy: &[f32], gamma: &[f32], eps: f32, dx: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::avx512() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { backward_row_avx512(x, dy, gamma, eps, dx) };
        }
        backward_row(x, dy, gamma, eps, dx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::module::Param;
    use burn::nn::RmsNormConfig;
    use burn::tensor::{Device, Distribution, Tensor};

    use crate::fused::rms_norm;

    use crate::fused::test_values::{host, max_diff};

    /// The fused norm and its input gradient against burn's `RmsNorm` (the composed
    /// operations), on few rows and on more than a parallel chunk's worth, with rows of very
    /// different scales.
    #[test]
    fn rms_norm_and_its_gradient_match_burns() {
        let device = Device::flex();
        let d = 576;
        let mut norm = RmsNormConfig::new(d).with_epsilon(1e-5).init(&device);
        norm.gamma =
            Param::from_tensor(Tensor::random([d], Distribution::Normal(1.0, 0.5), &device));
        for rows in [3, 100] {
            let scale: Tensor<3> =
                Tensor::random([1, rows, 1], Distribution::Uniform(0.01, 30.0), &device);
            let x: Tensor<3> =
                Tensor::random([1, rows, d], Distribution::Normal(0.0, 1.0), &device) * scale;
            let dy: Tensor<3> =
                Tensor::random([1, rows, d], Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let x = x.clone().autodiff().require_grad();
                let y = if fused {
                    rms_norm(&norm, x.clone())
                } else {
                    norm.forward(x.clone())
                };
                let grads = (y.clone() * dy.clone().autodiff()).sum().backward();
                (
                    host(y.without_autodiff()),
                    host(x.grad(&grads).unwrap().without_autodiff()),
                )
            };
            let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
            assert!(
                max_diff(&y, &y_ref) < 1e-4,
                "rows {rows}: forward {}",
                max_diff(&y, &y_ref)
            );
            let dx_scale = dx_ref.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                max_diff(&dx, &dx_ref) < 1e-4 * dx_scale,
                "rows {rows}: gradient {}",
                max_diff(&dx, &dx_ref)
            );
        }
    }
}
