//! The SwiGLU feed-forward network.

use burn::module::Module;

use super::Projection;
use super::hook::{Hook, Inner, NoHook};
use burn::tensor::Tensor;
use kernels::fused::silu_mul;

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Projection,
    pub up_proj: Projection,
    pub down_proj: Projection,
}

impl Mlp {
    /// `down(silu(gate(x)) * up(x))`
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_hooked(x, &mut NoHook)
    }

    /// [`Mlp::forward`] with `hook` called on the hidden activation `silu(gate(x)) · up(x)`
    /// (`down_proj`'s input, `[batch, seq, intermediate]`).
    pub fn forward_hooked(&self, x: Tensor<3>, hook: &mut dyn Hook) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        let hidden = hook.inner(Inner::MlpHidden, silu_mul(gate, self.up_proj.forward(x)));
        self.down_proj.forward(hidden)
    }
}
