//! What attribution differentiates: a number read off the next-token logits.

use std::fmt;
use std::sync::Arc;

use burn::tensor::Tensor;

/// A function of the next-token logits (`[1, vocab]` at the last position) to a number `[1]`.
pub type MetricFn = Arc<dyn Fn(Tensor<2>) -> Tensor<1> + Send + Sync>;

/// The number whose patching effect attribution estimates, read at the last position.
#[derive(Clone)]
pub enum Metric {
    /// `log p(target)`.
    LogProb(u32),
    /// `log p(target) − log p(versus)` (the logits' difference: the normaliser cancels).
    LogProbDiff { target: u32, versus: u32 },
    /// A user's function of the logits `[1, vocab]`, returning `[1]`; differentiable in burn's
    /// operations.
    Custom { name: String, f: MetricFn },
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::LogProb(t) => write!(f, "LogProb({t})"),
            Metric::LogProbDiff { target, versus } => {
                write!(f, "LogProbDiff {{ target: {target}, versus: {versus} }}")
            }
            Metric::Custom { name, .. } => write!(f, "Custom({name})"),
        }
    }
}

impl Metric {
    /// The metric of `logits`.
    ///
    /// # Shapes
    /// - `logits`: `[1, vocab]` → `[1]`
    pub fn of(&self, logits: Tensor<2>) -> Tensor<1> {
        let pick = |t: &Tensor<2>, id: u32| t.clone().narrow(1, id as usize, 1).reshape([1]);
        match self {
            Metric::LogProb(target) => pick(&kernels::fused::log_softmax(logits), *target),
            Metric::LogProbDiff { target, versus } => {
                pick(&logits, *target) - pick(&logits, *versus)
            }
            Metric::Custom { f, .. } => f(logits),
        }
    }
}
