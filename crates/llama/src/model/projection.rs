//! A linear layer whose weight is either a dense `f32` tensor or kept packed as the file stores
//! it (GGUF blocks or bf16; see [`kernels`]), with a bias where the family has one (Qwen 2's
//! queries, keys and values).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;

use kernels::{PackedWeight, linear};

#[derive(Module, Debug)]
pub enum Projection {
    /// burn's `Linear`, weight `[in, out]`.
    Dense(Linear),
    /// Weight `[out, in]` packed, multiplied by the packed kernels (flex backend only).
    Packed(PackedLinear),
}

/// A frozen packed weight (a constant for burn), and a frozen bias if the layer has one.
#[derive(Module, Debug)]
pub struct PackedLinear {
    #[module(skip)]
    pub weight: PackedWeight,
    /// `[out]`
    pub bias: Option<Param<Tensor<1>>>,
}

impl PackedLinear {
    /// `x · Wᵀ + b`
    ///
    /// # Shapes
    /// - `x`: `[..., in]` → `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = linear(x, &self.weight);
        match &self.bias {
            Some(b) => y + b.val().unsqueeze::<D>(),
            None => y,
        }
    }
}

impl Projection {
    /// `x · W + b`
    ///
    /// # Shapes
    /// - `x`: `[..., in]` → `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Projection::Dense(l) => l.forward(x),
            Projection::Packed(p) => p.forward(x),
        }
    }

    /// Whether the weight is kept packed (blocks or bf16).
    pub fn is_packed(&self) -> bool {
        matches!(self, Projection::Packed(_))
    }

    /// What the weight is stored as: `"f32"`, `"Q4_1 blocks"`, `"bf16"`.
    pub fn storage(&self) -> String {
        match self {
            Projection::Dense(_) => "f32".into(),
            Projection::Packed(p) => p.weight.kind(),
        }
    }
}
