//! `silu(gate) · up` in one pass, and its gradients in another.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::exp::exp;
use super::{avx512, with_values};
use crate::parallel_fill::filled_in_parallel;

/// Elements per parallel task: below this a pass costs less than waking a thread.
const CHUNK: usize = 16 * 1024;

pub(super) fn forward(gate: FloatTensor<Flex>, up: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let (shape, device) = (gate.shape(), gate.device());
    let n = shape.num_elements();
    let out = with_values(gate, |g| {
        with_values(up, |u| {
            filled_in_parallel(n, CHUNK, |c, out| {
                let at = c * CHUNK..c * CHUNK + out.len();
                kernels::silu_mul_chunk(&g[at.clone()], &u[at], out)
            })
        })
    });
    Flex::float_from_data(TensorData::new(out, shape), &device)
}

/// The backward of [`super::FusedOps::silu_mul`]; its state is the two inputs.
#[derive(Debug)]
struct SiluMul;

impl Backward<Flex, 2> for SiluMul {
    type State = (FloatTensor<Flex>, FloatTensor<Flex>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (gate, up) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let (shape, device) = (dy.shape(), dy.device());
        let n = shape.num_elements();
        let [gate_parent, up_parent] = ops.parents;
        let (mut d_gate, mut d_up) = (vec![0f32; n], vec![0f32; n]);
        with_values(gate, |g| {
            with_values(up, |u| {
                with_values(dy, |dy| {
                    kernels::silu_mul_backward(g, u, dy, &mut d_gate, &mut d_up)
                })
            })
        });
        if let Some(node) = gate_parent {
            let t = Flex::float_from_data(TensorData::new(d_gate, shape.clone()), &device);
            grads.register::<Flex>(node.id, t);
        }
        if let Some(node) = up_parent {
            grads.register::<Flex>(
                node.id,
                Flex::float_from_data(TensorData::new(d_up, shape), &device),
            );
        }
    }
}

/// [`forward`] on autodiff tensors, recorded with both inputs as the backward's state.
pub(super) fn tracked<C: CheckpointStrategy>(
    gate: FloatTensor<Autodiff<Flex, C>>,
    up: FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let (gate, gate_node) = gate.into_parts();
    let (up, up_node) = up.into_parts();
    let out = forward(gate.clone(), up.clone());
    match SiluMul
        .prepare::<C>([gate_node, up_node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((gate, up), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// The loops, vectorised with AVX-512 where the CPU has it.
mod kernels {
    use super::*;

    #[inline(always)]
    fn sigmoid(g: f32) -> f32 {
        1.0 / (1.0 + exp(-g))
    }

    #[inline(always)]
    fn forward_chunk(g: &[f32], u: &[f32], out: &mut [f32]) {
        for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
            *o = g * sigmoid(g) * u;
        }
    }

    #[inline(always)]
    fn backward_chunk(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
        for i in 0..dg.len() {
            let (g, u, dy) = (g[i], u[i], dy[i]);
            let s = sigmoid(g);
            // d silu(g) / dg = σ(g) · (1 + g · (1 − σ(g)))
            dg[i] = dy * u * s * (1.0 + g * (1.0 - s));
            du[i] = dy * g * s;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn forward_chunk_avx512(g: &[f32], u: &[f32], out: &mut [f32]) {
        forward_chunk(g, u, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn backward_chunk_avx512(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
        backward_chunk(g, u, dy, dg, du)
    }

    /// `out = silu(g) · u` on one thread (a chunk of a parallel pass).
    pub(super) fn silu_mul_chunk(g: &[f32], u: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F (checked).
            return unsafe { forward_chunk_avx512(g, u, out) };
        }
        forward_chunk(g, u, out)
    }

    /// The gradients of `silu(g) · u` for the output gradient `dy`.
    pub(super) fn silu_mul_backward(
        g: &[f32],
        u: &[f32],
        dy: &[f32],
        dg: &mut [f32],
        du: &mut [f32],
    ) {
        let fast = avx512();
        // Chunk `c` of each slice.
        let run = |c: usize, dg: &mut [f32], du: &mut [f32]| {
            let range = c * CHUNK..c * CHUNK + dg.len();
            let (g, u, dy) = (&g[range.clone()], &u[range.clone()], &dy[range]);
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: the CPU has AVX-512F (checked above).
                return unsafe { backward_chunk_avx512(g, u, dy, dg, du) };
            }
            let _ = fast;
            backward_chunk(g, u, dy, dg, du)
        };
        if dg.len() <= CHUNK {
            run(0, dg, du);
        } else {
            dg.par_chunks_mut(CHUNK)
                .zip(du.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(c, (dg, du))| run(c, dg, du));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::fused::silu_mul;
    use burn::tensor::Distribution;
    use burn::tensor::activation::silu;
    use burn::tensor::{Device, Tensor};

    use crate::fused::test_values::{host, max_diff};

    /// The fused op and its gradients against burn's composed `silu(gate) · up`, on shapes
    /// below and above the parallel chunk, with values large enough to saturate the sigmoid.
    #[test]
    fn silu_mul_and_its_gradients_match_the_composed_ops() {
        let device = Device::flex();
        for n in [7, 3 * 1536, 40_000] {
            let gate: Tensor<2> = Tensor::random([1, n], Distribution::Normal(0.0, 6.0), &device);
            let up: Tensor<2> = Tensor::random([1, n], Distribution::Normal(0.0, 1.0), &device);
            let dy: Tensor<2> = Tensor::random([1, n], Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let g = gate.clone().autodiff().require_grad();
                let u = up.clone().autodiff().require_grad();
                let y = if fused {
                    silu_mul(g.clone(), u.clone())
                } else {
                    silu(g.clone()) * u.clone()
                };
                let grads = (y.clone() * dy.clone().autodiff()).sum().backward();
                let grad = |t: &Tensor<2>| host(t.grad(&grads).unwrap().without_autodiff());
                (host(y.without_autodiff()), grad(&g), grad(&u))
            };
            let (fused, composed) = (run(true), run(false));
            assert!(max_diff(&fused.0, &composed.0) < 1e-5, "n {n}: forward");
            assert!(
                max_diff(&fused.1, &composed.1) < 1e-5,
                "n {n}: gate gradient"
            );
            assert!(max_diff(&fused.2, &composed.2) < 1e-5, "n {n}: up gradient");
        }
    }
}
