//! torch's orthogonal parametrisation (`nn.utils.parametrizations.orthogonal`, square case,
//! `use_trivialization=True`): `W = base · exp(A)`, `A = L.tril(−1) − L.tril(−1)ᵀ`, with `L`
//! starting at zero, so `W` starts at the initial rotation and Adam updates `L`, exactly as in
//! the tutorial.
//!
//! Only the first `N` rows of `W` matter to a patch that unrotates with the true inverse, so
//! instead of the `d × d` matrix exponential (300–400 ms a step at d = 576) this computes
//! `base_N · exp(A)` by its action on those `N` rows: `exp(A) = exp(A/m)^m` with
//! `m ≥ ‖A‖₂` (bounded by `‖L.tril(−1)‖_F`), each factor a 12-term Taylor series
//! (truncation error below 1e-9 for `‖A/m‖₂ ≤ 1`). That is `12·m` products of an `N × d` by
//! a `d × d` matrix, differentiable with ordinary tensor ops.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::readout::to_host;

const TAYLOR_TERMS: usize = 12;

/// Above this bound of `‖A‖₂` the accumulated rotation is folded into the base rows and `L` is
/// reset to zero ("dynamic trivialisation", Lezcano-Casado 2019, which torch's `base` buffer
/// exists for): the next steps then need one or two Taylor segments instead of a number that
/// grows with the distance travelled. Before the first fold the run is exactly torch's.
pub const REBASE_ABOVE: f64 = 2.0;

/// A bound this large right after a step means the learning rate is absurd (Adam moves each
/// entry of `L` by about `lr` a step, so `‖A‖` grows by at most ~`lr · d`): training stops
/// instead of evaluating thousands of Taylor segments.
pub const MAX_STEP_BOUND: f64 = 64.0;

/// `‖L.tril(−1)‖_F`, an upper bound of `‖A‖₂`, read on the host.
pub fn norm_bound(l: &Tensor<2>) -> Result<f64> {
    let s = l.clone().without_autodiff().tril(-1).powi_scalar(2).sum();
    Ok(f64::from(to_host(s)?[0]).sqrt())
}

/// `rows · exp(L.tril(−1) − L.tril(−1)ᵀ)`.
///
/// # Shapes
/// - `rows`: `[n, d]`, `l`: `[d, d]` → `[n, d]`
pub fn exp_rows(rows: Tensor<2>, l: Tensor<2>, bound: f64) -> Tensor<2> {
    let lower = l.tril(-1);
    let a = lower.clone() - lower.transpose();
    let segments = bound.ceil().max(1.0) as usize;
    let mut v = rows;
    for _ in 0..segments {
        let mut term = v.clone();
        let mut acc = v;
        for k in 1..=TAYLOR_TERMS {
            term = term.matmul(a.clone()) * (1.0 / (k * segments) as f64);
            acc = acc + term.clone();
        }
        v = acc;
    }
    v
}
