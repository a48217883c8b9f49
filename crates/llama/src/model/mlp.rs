//! The gated feed-forward network: SwiGLU (Llama, Mistral, Qwen) or GeGLU with GELU's tanh
//! approximation (Gemma).

use burn::module::Module;

use super::Projection;
use super::hook::{Hook, Inner, NoHook};
use crate::config::Activation;
use burn::tensor::Tensor;
use kernels::fused::silu_mul;

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Projection,
    pub up_proj: Projection,
    pub down_proj: Projection,
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// `down(act(gate(x)) * up(x))`
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_hooked(x, &mut NoHook)
    }

    /// [`Mlp::forward`] with `hook` called on the hidden activation `act(gate(x)) · up(x)`
    /// (`down_proj`'s input, `[batch, seq, intermediate]`).
    pub fn forward_hooked(&self, x: Tensor<3>, hook: &mut dyn Hook) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        let up = self.up_proj.forward(x);
        let hidden = match self.activation {
            Activation::Silu => silu_mul(gate, up),
            Activation::GeluTanh => gelu_tanh(gate) * up,
        };
        self.down_proj.forward(hook.inner(Inner::MlpHidden, hidden))
    }
}

/// GELU's tanh approximation, `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, as PyTorch's
/// `gelu(approximate="tanh")` (transformers' `gelu_pytorch_tanh`) computes it.
///
/// # Shapes
/// - `x`: any → the same
fn gelu_tanh(x: Tensor<3>) -> Tensor<3> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044_715) * SQRT_2_OVER_PI;
    x.clone() * 0.5 * (inner.tanh() + 1.0)
}
