//! The learning rate over a run: an optional linear warm-up, then constant or decaying.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, bad_setting};

/// How the learning rate falls after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// The full rate to the end (the tutorial's Adam).
    #[default]
    Constant,
    /// Linearly to zero at the last step (transformers' `get_linear_schedule_with_warmup`, which
    /// RAVEL's and pyvene's training scripts use).
    Linear,
    /// Half a cosine to zero at the last step.
    Cosine,
}

impl Decay {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(Decay::Constant),
            "linear" => Ok(Decay::Linear),
            "cosine" => Ok(Decay::Cosine),
            other => bad_setting("decay", other, "one of constant, linear, cosine"),
        }
    }
}

impl fmt::Display for Decay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decay::Constant => "constant",
            Decay::Linear => "linear",
            Decay::Cosine => "cosine",
        })
    }
}

/// The factor the learning rate is multiplied by at each step.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Steps over which the rate rises linearly from `1 / (warmup + 1)` of its value to all of
    /// it (0: no warm-up).
    pub warmup: usize,
    pub decay: Decay,
}

impl LrSchedule {
    /// A warm-up over `fraction` of `steps` (rounded), then `decay`.
    pub fn warmup_fraction(fraction: f64, steps: usize, decay: Decay) -> Result<Self> {
        if !(0.0..1.0).contains(&fraction) {
            return bad_setting("warm-up fraction", fraction, "at least 0 and below 1");
        }
        Ok(LrSchedule {
            warmup: (fraction * steps as f64).round() as usize,
            decay,
        })
    }

    pub fn is_constant(&self) -> bool {
        self.warmup == 0 && self.decay == Decay::Constant
    }

    pub(super) fn validate(&self, steps: usize) -> Result<()> {
        if self.warmup > 0 && self.warmup >= steps {
            return bad_setting(
                "warm-up",
                format!("{} steps", self.warmup),
                format!("fewer than the run's {steps} steps"),
            );
        }
        Ok(())
    }

    /// The factor at 0-based `step` of `steps`. The warm-up reaches 1 at step `warmup`; the
    /// decay then goes from 1 there to 0 after the last step (so the last step still moves).
    pub fn factor(&self, step: usize, steps: usize) -> f64 {
        if step < self.warmup {
            return (step + 1) as f64 / (self.warmup + 1) as f64;
        }
        let span = steps.saturating_sub(self.warmup).max(1) as f64;
        let t = (step - self.warmup) as f64 / span;
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => 1.0 - t,
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn factors_by_hand() {
        let s = LrSchedule {
            warmup: 4,
            decay: Decay::Cosine,
        };
        let f: Vec<f64> = (0..10).map(|i| s.factor(i, 10)).collect();
        for (got, want) in f[..4].iter().zip([0.2, 0.4, 0.6, 0.8]) {
            assert!((got - want).abs() < 1e-12, "{f:?}");
        }
        assert!((f[4] - 1.0).abs() < 1e-12);
        // Steps 4..10 span 6: step 7 is half way, cos(π/2) = 0.
        assert!((f[7] - 0.5).abs() < 1e-12, "{f:?}");
        let constant = LrSchedule::default();
        assert!((0..5).all(|i| constant.factor(i, 5) == 1.0));
        assert!(constant.is_constant());
        let from_fraction = LrSchedule::warmup_fraction(0.1, 240, Decay::Linear).unwrap();
        assert_eq!(from_fraction.warmup, 24);
        assert!(LrSchedule::warmup_fraction(1.0, 240, Decay::Linear).is_err());
    }
}
