//! Adam, as torch writes it (`torch.optim.Adam`, no weight decay, no amsgrad), on one tensor.
//! Kept here rather than using burn's optimiser so that its state (moments, step) is plain data
//! that a checkpoint can save and a resumed run can restore bit for bit.

use burn::tensor::Tensor;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    /// torch's defaults.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// First and second moments of one parameter, and the step count.
#[derive(Debug, Clone)]
pub struct AdamState<const D: usize> {
    pub m: Tensor<D>,
    pub v: Tensor<D>,
    pub step: usize,
}

impl<const D: usize> AdamState<D> {
    pub fn new(like: &Tensor<D>) -> Self {
        AdamState {
            m: like.zeros_like(),
            v: like.zeros_like(),
            step: 0,
        }
    }

    /// One update: returns the new parameter value.
    pub fn step(&mut self, c: &AdamConfig, param: Tensor<D>, grad: Tensor<D>) -> Tensor<D> {
        self.step += 1;
        let t = self.step as i32;
        self.m = self.m.clone() * c.beta1 + grad.clone() * (1.0 - c.beta1);
        self.v = self.v.clone() * c.beta2 + grad.powi_scalar(2) * (1.0 - c.beta2);
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        let step_size = c.lr / bias1;
        let denom = (self.v.clone() / bias2).sqrt() + c.eps;
        param - self.m.clone() / denom * step_size
    }
}
