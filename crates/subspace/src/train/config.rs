//! The settings of a DAS run and what it reports back.

use std::path::PathBuf;
use std::time::Duration;

use super::adam::AdamConfig;
use super::schedule::LrSchedule;
use crate::engine::StopFlag;
use crate::error::{Result, bad_setting};
use crate::site::Site;

/// Where and how often to checkpoint a DAS run (see [`DasConfig::with_checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    pub path: PathBuf,
    /// Write after every `every` steps (and after the last).
    pub every: usize,
}

/// Settings of a DAS run.
#[derive(Debug, Clone)]
pub struct DasConfig {
    pub site: Site,
    pub steps: usize,
    pub adam: AdamConfig,
    /// The learning rate's factor over the run (default: constant, as in the tutorial).
    pub schedule: LrSchedule,
    /// Examples per step (`None`: all of them every step).
    pub batch_size: Option<usize>,
    /// Seed of the example order (minibatches).
    pub seed: u64,
    /// Boundless DAS only: temperature annealed linearly from the first to the second value.
    pub temperature: (f32, f32),
    /// Write a checkpoint every K steps and resume from it if it exists (see
    /// [`CheckpointConfig`] and [`DasConfig::with_checkpoint`]).
    pub checkpoint: Option<CheckpointConfig>,
    /// Set to stop after the current step, checkpoint written. (A raised
    /// [`crate::LanguageModel::stop_flag`] stops sooner, inside the step; the checkpoint then
    /// holds the steps finished before it.)
    pub stop: Option<StopFlag>,
}

impl DasConfig {
    /// The tutorial's settings: Adam with lr 1e-3, all examples every step.
    pub fn new(site: Site, steps: usize) -> Self {
        DasConfig {
            site,
            steps,
            adam: AdamConfig::default(),
            schedule: LrSchedule::default(),
            batch_size: None,
            seed: 0,
            temperature: (50.0, 0.1),
            checkpoint: None,
            stop: None,
        }
    }

    /// Checkpoints to `path` every `every` steps; a run started while `path` holds a checkpoint
    /// of the same run resumes from it.
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>, every: usize) -> Self {
        self.checkpoint = Some(CheckpointConfig {
            path: path.into(),
            every,
        });
        self
    }

    pub fn with_lr(mut self, lr: f64) -> Self {
        self.adam.lr = lr;
        self
    }

    pub fn with_schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_stop(mut self, stop: StopFlag) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Refuses settings that cannot train: each error names the setting and its range.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return bad_setting("steps", 0, "at least 1");
        }
        let a = &self.adam;
        if !(a.lr.is_finite() && a.lr > 0.0) {
            return bad_setting("lr", a.lr, "a finite number above 0, e.g. 1e-3");
        }
        for (name, b) in [("beta1", a.beta1), ("beta2", a.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad_setting(name, b, "at least 0 and below 1");
            }
        }
        if !(a.eps.is_finite() && a.eps > 0.0) {
            return bad_setting("eps", a.eps, "a finite number above 0, e.g. 1e-8");
        }
        self.schedule.validate(self.steps)?;
        if self.batch_size == Some(0) {
            return bad_setting("batch size", 0, "at least 1");
        }
        let (t0, t1) = self.temperature;
        for t in [t0, t1] {
            if !(t.is_finite() && t > 0.0) {
                return bad_setting("temperature", t, "a finite number above 0");
            }
        }
        if let Some(ck) = &self.checkpoint
            && ck.every == 0
        {
            return bad_setting("checkpoint interval", 0, "at least 1 step");
        }
        Ok(())
    }
}

/// What the progress callback hears after each step.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// 1-based step number.
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
    /// The learning rate this step used (the schedule applied).
    pub lr: f64,
    /// Examples in this step's minibatch.
    pub examples: usize,
    pub elapsed: Duration,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Loss at each step (before that step's update), including steps done before a resume.
    pub losses: Vec<f32>,
    /// Seconds per step of this call's steps.
    pub seconds_per_step: f64,
    /// The step a checkpoint was resumed after, if one was.
    pub resumed_after: Option<usize>,
}
