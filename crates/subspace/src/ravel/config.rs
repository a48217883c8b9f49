//! The settings of one RAVEL run: the method, the site, training and the pairs' sizes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::labelled::{SourcePrompts, SplitKind, Unit};
use super::method::Method;
use crate::error::{Result, bad_setting};
use crate::train::{CheckpointConfig, Decay, StopFlag};

/// Settings of one RAVEL run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub method: Method,
    pub layer: usize,
    pub dims: usize,
    pub steps: usize,
    pub seed: u64,
    /// Peak learning rate. `None`: [`RunConfig::default_lr`] ([`RunConfig::peak_lr`] says which
    /// applies; a run records it here in what it saves).
    pub lr: Option<f64>,
    /// Train for this many passes over the train examples instead of `steps` (the steps are
    /// then `ceil(epochs × examples / batch)`).
    #[serde(default)]
    pub epochs: Option<f64>,
    /// Fraction of the steps over which the learning rate warms up linearly.
    #[serde(default)]
    pub warmup: f64,
    /// How the learning rate falls after the warm-up.
    #[serde(default)]
    pub decay: Decay,
    /// Multi-task DAS only: the weight of each isolate example relative to a cause example's 1
    /// in the loss (HyperDAS weighs them 0.5 against 3.5).
    #[serde(default = "one")]
    pub isolate_weight: f64,
    pub batch: usize,
    /// RAVEL's held-out set the val and test pairs came from, with labels from the model's
    /// own answers ([`super::Labels::Model`]); `None`: the first probe's pairs (held-out cities on
    /// held-out templates, labels from the dataset's values), as the runs saved before.
    /// Recorded from the run's [`super::Labels`] (which alone decide how pairs are drawn), so
    /// that a saved run says what it was drawn from; the same for `unit` and `train_cities`.
    #[serde(default)]
    pub split_kind: Option<SplitKind>,
    /// Which tokens of the city the labelled pairs edit (the last, or the whole name).
    #[serde(default)]
    pub unit: Unit,
    /// Labelled train pairs use only this many known train cities (a learning curve; see
    /// [`super::labelled::Draw::train_cities`]); `None`: all of them.
    #[serde(default)]
    pub train_cities: Option<usize>,
    /// Which prompt a labelled pair's source city is read from (recorded from the labels).
    #[serde(default)]
    pub sources: SourcePrompts,
    /// Cause pairs per split (isolate pairs: half as many per kept attribute).
    pub n_train: usize,
    pub n_eval: usize,
    /// Checkpoint the training here and resume from it (see [`crate::DasConfig::with_checkpoint`]).
    #[serde(skip)]
    pub checkpoint: Option<CheckpointConfig>,
    /// Raised (by a Ctrl-C handler) to stop training after the current step.
    #[serde(skip)]
    pub stop: Option<StopFlag>,
    /// Save the trained intervention here, with these settings and the scores (see
    /// [`super::load_run`]): a notebook can then show an at-scale run without training it again.
    #[serde(skip)]
    pub save: Option<PathBuf>,
}

impl RunConfig {
    /// The recipe chosen on val (docs/history/RESULTS-sessions.md, "Choosing the recipe on val" and "The recipe's
    /// layer and size"): 240 steps of 32 on 1024 cause pairs (plus as many isolate pairs for
    /// MDAS), isolate weight 1, peak lr [`RunConfig::default_lr`], [`RunConfig::default_dims`]
    /// dimensions; MDAS warms up linearly over the first 10 % of the steps and decays linearly
    /// to 0 after, the others keep a constant rate (their best on val). About 5 min for DAS and
    /// 13 for MDAS on 2 cores, scoring included.
    pub fn new(method: Method, layer: usize) -> Self {
        let (warmup, decay) = match method {
            Method::Mdas => (0.1, Decay::Linear),
            _ => (0.0, Decay::Constant),
        };
        RunConfig {
            method,
            layer,
            dims: Self::default_dims(method),
            steps: 240,
            seed: 0,
            lr: None,
            epochs: None,
            warmup,
            decay,
            isolate_weight: 1.0,
            batch: 32,
            split_kind: None,
            unit: Unit::LastToken,
            train_cities: None,
            sources: SourcePrompts::AnyTemplate,
            n_train: 1024,
            n_eval: 200,
            checkpoint: None,
            stop: None,
            save: None,
        }
    }
}

impl RunConfig {
    /// The subspace size when none is given: 192 of 576 for DAS and MDAS, the best val
    /// Disentangle of 16, 64 and 192 at layer 15 (val Disentangle rises with the size for
    /// both, and 576 is residual patching); 16 for the others (neurons, low-rank and boundless
    /// were not tried larger).
    pub fn default_dims(method: Method) -> usize {
        match method {
            Method::Das | Method::Mdas => 192,
            _ => 16,
        }
    }

    /// The peak learning rate when none is given: chosen on val from 1e-3 and 3e-3 for the full
    /// rotations (DAS 1e-3, MDAS 3e-3); 1e-2 for low-rank and boundless, whose plain Adam
    /// steps followed by a QR retraction move each entry by about `lr`, far less than a step
    /// of torch's exponential parametrisation (not tuned on val).
    pub fn default_lr(&self) -> f64 {
        match self.method {
            Method::Lowrank | Method::Boundless => 1e-2,
            Method::Mdas => 3e-3,
            _ => 1e-3,
        }
    }

    /// The peak learning rate a run uses: `lr` if given, else [`RunConfig::default_lr`].
    pub fn peak_lr(&self) -> f64 {
        self.lr.unwrap_or_else(|| self.default_lr())
    }

    /// Pairs per pass when scoring: no gradient is kept, so several training batches fit one
    /// pass, and larger products run faster per row (the scores do not depend on it).
    pub fn scoring_batch(&self) -> usize {
        self.batch.max(128)
    }

    /// These settings with `lr` set to [`RunConfig::peak_lr`]: what a run records, so that a
    /// saved run says the rate it used, not "the default" of the version that trained it.
    pub fn resolved(&self) -> RunConfig {
        RunConfig {
            lr: Some(self.peak_lr()),
            ..self.clone()
        }
    }

    /// Checks every number before anything runs (a notebook call gets the same errors as the
    /// CLI's options).
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return bad_setting("batch", 0, "at least 1");
        }
        if self.n_train == 0 {
            return bad_setting("train pairs", 0, "at least 1");
        }
        if self.n_eval == 0 {
            return bad_setting("eval pairs", 0, "at least 1");
        }
        if self.method.trained() && self.steps == 0 {
            return bad_setting("steps", 0, "at least 1 for a trained method");
        }
        if let Some(lr) = self.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return bad_setting("lr", lr, "a finite number above 0");
        }
        if let Some(e) = self.epochs
            && !(e.is_finite() && e > 0.0)
        {
            return bad_setting("epochs", e, "a finite number above 0, e.g. 3");
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad_setting(
                "warm-up",
                self.warmup,
                "a fraction of the steps, at least 0 and below 1",
            );
        }
        if !(self.isolate_weight.is_finite() && self.isolate_weight > 0.0) {
            return bad_setting(
                "isolate weight",
                self.isolate_weight,
                "a finite number above 0",
            );
        }
        if let Some(ck) = &self.checkpoint
            && ck.every == 0
        {
            return bad_setting("checkpoint interval", 0, "at least 1 step");
        }
        // Checked before training, so that a mistyped folder does not cost the trained run.
        if let Some(path) = &self.save {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if !dir.is_dir() || path.is_dir() {
                return bad_setting("save path", path.display(), "a file in an existing folder");
            }
        }
        Ok(())
    }
}

fn one() -> f64 {
    1.0
}
