//! What one RAVEL run measured: test, val and train scores, the control on the same test pairs,
//! the losses and the time each phase took.

use serde::{Deserialize, Serialize};

use super::eval::Scores;

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub method: String,
    pub layer: usize,
    pub dims: Option<usize>,
    /// Scores on test (its fields are the result's top-level keys in JSON, as the results
    /// files have always written them).
    #[serde(flatten)]
    pub test: Scores,
    pub train_seconds: f64,
    /// Of `train_seconds`, the pass below the site before the first step (the same pass for
    /// every run of one call; 0 in results written before it was reported, and for residual).
    #[serde(default)]
    pub pass_seconds: f64,
    /// Of `train_seconds`, this run's own training steps (0 for residual, and in results
    /// written before it was reported).
    #[serde(default)]
    pub steps_seconds: f64,
    pub losses: Vec<f32>,
    /// Scores on val (for choosing settings; test is only reported).
    pub val: Scores,
    /// Residual patching (the whole vector) scored on this run's own test pairs: the control
    /// a method is set against, pair for pair (`None` for residual itself, and in results
    /// written before it was reported).
    #[serde(default)]
    pub residual_test: Option<Scores>,
    /// Scores on the train pairs the method was fit to (for a baseline: train-split pairs of
    /// the same size), so that underfitting (train low) and overfitting (train far above val)
    /// show. `None` in results written before it was reported.
    #[serde(default)]
    pub train: Option<Scores>,
}
