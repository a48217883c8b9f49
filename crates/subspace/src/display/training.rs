//! How training shows itself: one line per step, and the loss curve.

use std::fmt;

use super::plot::{Svg, lines};
use crate::error::Result;
use crate::train::{StepReport, TrainReport};

impl fmt::Display for StepReport {
    /// `step  3/10 loss 8.2864 (0.3 s)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.steps.to_string().len();
        write!(
            f,
            "step {:>width$}/{} loss {:.4} ({:.1} s)",
            self.step,
            self.steps,
            self.loss,
            self.elapsed.as_secs_f64()
        )
    }
}

impl TrainReport {
    /// The loss at every step (resumed steps included).
    pub fn loss_plot(&self) -> Result<Svg> {
        let steps: Vec<f64> = (1..=self.losses.len()).map(|s| s as f64).collect();
        let loss: Vec<f64> = self.losses.iter().map(|&l| f64::from(l)).collect();
        lines(
            "training loss",
            "step",
            "cross-entropy",
            &steps,
            &[("loss".to_string(), loss)],
        )
    }
}
