//! Elementwise steps fused into one pass over memory, with their own backward (flex backend).
//!
//! burn runs a SwiGLU activation as three operations and an RMSNorm as six, each a pass over
//! the activations on one thread, allocating its result; autodiff adds about twice as many for
//! the gradient. A training step above the site runs them at every block, forward and
//! backward. Here each is one pass forward and one backward, vectorised and split over burn's
//! threads. Other backends (LibTorch, ndarray), and an RMSNorm whose weight is being trained,
//! keep burn's composed operations.

mod exp;
mod rms_norm;
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

impl FusedOps for Flex {
    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        silu_mul::forward(gate, up)
    }

    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        rms_norm::forward(x, gamma, eps)
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        silu_mul::tracked::<C>(gate, up)
    }

    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        rms_norm::tracked::<C>(x, gamma, eps)
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
