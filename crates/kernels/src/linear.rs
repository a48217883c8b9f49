//! The packed products as a burn backend extension, so that they take part in burn's
//! autodiff: the forward is `x · Wᵀ`, its input gradient `g · W`. The weights are constants
//! (no gradient reaches them), which is all DAS needs: it trains interventions, not the model.
//!
//! Implemented for the `flex` CPU backend and for autodiff over it. Other backends (LibTorch,
//! ndarray) keep dense `f32` weights; the loader only packs weights for a flex device.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData};

use crate::matmul::{matmul_w, matmul_wt};
use crate::packed::{PackedMatrix, PackedWeight};

#[backend_extension(Flex, Autodiff)]
pub trait QuantOps: Backend {
    /// `x · Wᵀ` over the last dimension: `[..., cols]` → `[..., rows]`.
    fn quant_matmul_wt(x: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self>;
    /// `g · W` over the last dimension: `[..., rows]` → `[..., cols]`.
    fn quant_matmul_w(g: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self>;
}

/// Runs a host kernel on a flex tensor's values, flattening its leading dimensions.
fn on_host(
    x: FloatTensor<Flex>,
    d_in: usize,
    d_out: usize,
    kernel: impl FnOnce(&[f32], usize) -> Vec<f32>,
) -> FloatTensor<Flex> {
    let device = x.device();
    let mut shape = x.shape();
    let dims = shape.num_dims();
    assert_eq!(shape[dims - 1], d_in, "the last dimension must be {d_in}");
    let m = shape.num_elements() / d_in;
    let x = x.to_contiguous();
    let values = match x.as_slice::<f32>() {
        Some(v) => kernel(v, m),
        // Not f32 (the model runs in f32; a caller cast it): compute in f32 and say nothing.
        None => {
            let data = x.into_data().convert::<f32>();
            kernel(data.as_slice::<f32>().unwrap_or(&[]), m)
        }
    };
    shape[dims - 1] = d_out;
    Flex::float_from_data(TensorData::new(values, shape), &device)
}

impl QuantOps for Flex {
    fn quant_matmul_wt(x: FloatTensor<Self>, w: PackedWeight) -> FloatTensor<Self> {
        on_host(x, w.cols(), w.rows(), |x, m| match &*w {
            PackedMatrix::Blocks(q) => matmul_wt(x, m, q),
            PackedMatrix::Bf16(h) => matmul_wt(x, m, h),
        })
    }

    fn quant_matmul_w(g: FloatTensor<Self>, w: PackedWeight) -> FloatTensor<Self> {
        on_host(g, w.rows(), w.cols(), |g, m| match &*w {
            PackedMatrix::Blocks(q) => matmul_w(g, m, q),
            PackedMatrix::Bf16(h) => matmul_w(g, m, h),
        })
    }
}

/// Which of the two products a node computed; the backward of each is the other.
#[derive(Debug, Clone, Copy)]
enum Product {
    /// `x · Wᵀ`, whose input gradient is `dy · W`.
    XWt,
    /// `g · W`, whose input gradient is `dy · Wᵀ`.
    GW,
}

impl Product {
    fn run<B: QuantOps>(self, x: FloatTensor<B>, w: PackedWeight) -> FloatTensor<B> {
        match self {
            Product::XWt => B::quant_matmul_wt(x, w),
            Product::GW => B::quant_matmul_w(x, w),
        }
    }

    fn transposed(self) -> Self {
        match self {
            Product::XWt => Product::GW,
            Product::GW => Product::XWt,
        }
    }

    /// The product on autodiff tensors: computed by the inner backend, recorded with the
    /// weight as the backward's state.
    fn tracked<B: Backend + QuantOps, C: CheckpointStrategy>(
        self,
        x: FloatTensor<Autodiff<B, C>>,
        w: PackedWeight,
    ) -> FloatTensor<Autodiff<B, C>> {
        let (x, node) = x.into_parts();
        let y = self.run::<B>(x, w.clone());
        match self.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(w, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

impl<B: Backend + QuantOps> Backward<B, 1> for Product {
    type State = PackedWeight;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let w = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dy| {
            self.transposed().run::<B>(dy, w)
        });
    }
}

impl<B: Backend + QuantOps, C: CheckpointStrategy> QuantOps for Autodiff<B, C> {
    fn quant_matmul_wt(x: FloatTensor<Self>, w: PackedWeight) -> FloatTensor<Self> {
        Product::XWt.tracked::<B, C>(x, w)
    }

    fn quant_matmul_w(g: FloatTensor<Self>, w: PackedWeight) -> FloatTensor<Self> {
        Product::GW.tracked::<B, C>(g, w)
    }
}

/// `x · Wᵀ` on a high-level tensor.
///
/// # Shapes
/// - `x`: `[..., cols]` → `[..., rows]`
pub fn linear<const D: usize>(x: Tensor<D>, w: &PackedWeight) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as QuantOps>::quant_matmul_wt(
        x.into_dispatch(),
        w.clone(),
    ))
}
