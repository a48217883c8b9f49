//! A bias-free linear layer whose weight is either a dense `f32` tensor or kept in its GGUF
//! quantisation blocks (see [`crate::quant`]).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::quant::{QuantWeight, linear};

#[derive(Module, Debug)]
pub enum Projection {
    /// burn's `Linear`, weight `[in, out]`.
    Dense(Linear),
    /// Weight `[out, in]` in blocks, multiplied by the quantised kernels (flex backend only).
    Quantized(QuantLinear),
}

/// A frozen weight held in quantisation blocks; a constant for burn (no parameter).
#[derive(Module, Debug)]
pub struct QuantLinear {
    #[module(skip)]
    pub weight: QuantWeight,
}

impl Projection {
    /// `x · W`
    ///
    /// # Shapes
    /// - `x`: `[..., in]` → `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Projection::Dense(l) => l.forward(x),
            Projection::Quantized(q) => linear(x, &q.weight),
        }
    }

    /// Whether the weight is kept quantised.
    pub fn is_quantized(&self) -> bool {
        matches!(self, Projection::Quantized(_))
    }
}
