//! The methods compared on RAVEL, each trained on train pairs and scored on test pairs the same way.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::answers::Answers;
use super::data::{RavelData, Split};
use super::eval::{RavelExample, Role, Scores, evaluate, evaluate_each, scores, split_examples};
use super::labelled::{Draw, SplitKind, Unit, labelled_examples};
use super::probe::ProbeReport;
use crate::error::{Result, SubspaceError, bad_setting};
use crate::intervention::Intervention;
use crate::lm::LanguageModel;
use crate::pair::Example;
use crate::site::Site;
use crate::train::{
    self, CheckpointConfig, DasConfig, DasObjective, Decay, LrSchedule, StepReport, StopFlag,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Replace the whole vector.
    Residual,
    /// Replace `dims` random coordinates.
    Neurons,
    /// DAS: a full rotation, first `dims` rotated coordinates, trained on cause pairs.
    Das,
    /// Low-rank DAS: a `d × dims` orthonormal basis, trained on cause pairs.
    Lowrank,
    /// Boundless DAS: a full rotation with a learned soft boundary, trained on cause pairs.
    Boundless,
    /// Multi-task DAS: a full rotation trained on cause *and* isolate pairs.
    Mdas,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "residual" => Method::Residual,
            "neurons" => Method::Neurons,
            "das" => Method::Das,
            "lowrank" => Method::Lowrank,
            "boundless" => Method::Boundless,
            "mdas" => Method::Mdas,
            other => {
                return bad_setting(
                    "method",
                    other,
                    "one of residual, neurons, das, lowrank, boundless, mdas",
                );
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Residual => "residual",
            Method::Neurons => "neurons",
            Method::Das => "das",
            Method::Lowrank => "lowrank",
            Method::Boundless => "boundless",
            Method::Mdas => "mdas",
        }
    }

    pub fn trained(self) -> bool {
        matches!(
            self,
            Method::Das | Method::Lowrank | Method::Boundless | Method::Mdas
        )
    }
}

/// Where a run's pairs and their labels come from.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    /// The first probe's known prompts; targets are the first token of the dataset's value
    /// (the runs saved in `data/results/` before RAVEL's labels).
    FirstToken(&'a ProbeReport),
    /// The model's own answers ([`super::answers`]), RAVEL's labels; the run's
    /// [`RunConfig::split_kind`] says which held-out set.
    Model(&'a Answers),
}

impl<'a> From<&'a ProbeReport> for Labels<'a> {
    fn from(p: &'a ProbeReport) -> Self {
        Labels::FirstToken(p)
    }
}

impl<'a> From<&'a Answers> for Labels<'a> {
    fn from(a: &'a Answers) -> Self {
        Labels::Model(a)
    }
}

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
    /// RAVEL's held-out set the val and test pairs come from, with labels from the model's
    /// own answers ([`Labels::Model`]); `None`: the first probe's pairs (held-out cities on
    /// held-out templates, labels from the dataset's values), as the runs saved before.
    #[serde(default)]
    pub split_kind: Option<SplitKind>,
    /// Which tokens of the city the labelled pairs edit (the last, or the whole name).
    #[serde(default)]
    pub unit: Unit,
    /// Labelled train pairs use only this many known train cities (a learning curve; see
    /// [`super::labelled::Draw::train_cities`]); `None`: all of them.
    #[serde(default)]
    pub train_cities: Option<usize>,
    /// Cause pairs per split (isolate pairs: half as many per kept attribute).
    pub n_train: usize,
    pub n_eval: usize,
    /// Checkpoint the training here and resume from it (see [`DasConfig::with_checkpoint`]).
    #[serde(skip)]
    pub checkpoint: Option<CheckpointConfig>,
    /// Raised (by a Ctrl-C handler) to stop training after the current step.
    #[serde(skip)]
    pub stop: Option<StopFlag>,
    /// Save the trained intervention here, with these settings and the scores (see
    /// [`load_run`]): a notebook can then show an at-scale run without training it again.
    #[serde(skip)]
    pub save: Option<PathBuf>,
}

impl RunConfig {
    /// The recipe chosen on val (RESULTS.md, "Choosing the recipe on val" and "The recipe's
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

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub method: String,
    pub layer: usize,
    pub dims: Option<usize>,
    pub cause: f64,
    pub isolate: f64,
    pub disentangle: f64,
    pub n_cause: usize,
    pub n_isolate: usize,
    /// Test Isolate on continent prompts only (`None` in results written before it was reported).
    #[serde(default)]
    pub isolate_continent: Option<f64>,
    /// Test Isolate on language prompts only.
    #[serde(default)]
    pub isolate_language: Option<f64>,
    #[serde(default)]
    pub n_continent: usize,
    #[serde(default)]
    pub n_language: usize,
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

impl RunResult {
    /// The test scores (kept as top-level fields for the results files written before).
    pub fn test(&self) -> Scores {
        Scores {
            cause: self.cause,
            isolate: self.isolate,
            disentangle: self.disentangle,
            n_cause: self.n_cause,
            n_isolate: self.n_isolate,
            isolate_continent: self.isolate_continent,
            isolate_language: self.isolate_language,
            n_continent: self.n_continent,
            n_language: self.n_language,
        }
    }
}

/// The method's intervention before training: for the baselines, the only one (all of the
/// vector; `dims` random neurons drawn with `seed`); for the trained methods, their start.
/// Checks `config` and the layer first.
pub fn initial_intervention(lm: &LanguageModel, config: &RunConfig) -> Result<Intervention> {
    config.validate()?;
    let d = lm.hidden_size();
    let device = lm.device();
    lm.site_width(Site::block_output(config.layer))?;
    if config.method != Method::Residual && (config.dims == 0 || config.dims > d) {
        return bad_setting(
            "dims",
            config.dims,
            format!("between 1 and the hidden size, {d}"),
        );
    }
    Ok(match config.method {
        Method::Residual => Intervention::Replace,
        Method::Neurons => {
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
            let mut idx = sample(&mut rng, d, config.dims).into_vec();
            idx.sort_unstable();
            Intervention::Neurons(idx)
        }
        Method::Das | Method::Mdas => {
            Intervention::random_rotation(d, config.dims, config.seed, &device)?
        }
        Method::Lowrank => Intervention::random_low_rank(d, config.dims, config.seed, &device)?,
        Method::Boundless => {
            Intervention::random_boundless(d, config.dims as f32 / d as f32, config.seed, &device)?
        }
    })
}

/// What a run is doing, for a progress display.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// A phase begins (building pairs, scoring a split), with how much it covers.
    Phase(&'a str),
    /// A training step has finished.
    Step(&'a StepReport),
}

/// Trains (if the method learns) on train pairs, scores on train, val and test pairs.
pub fn run<'a>(
    lm: &LanguageModel,
    data: &RavelData,
    labels: impl Into<Labels<'a>>,
    config: &RunConfig,
) -> Result<RunResult> {
    run_with_progress(lm, data, labels, config, |_| {})
}

/// [`run`], telling `progress` when each phase starts and when each training step ends.
pub fn run_with_progress<'a>(
    lm: &LanguageModel,
    data: &RavelData,
    labels: impl Into<Labels<'a>>,
    config: &RunConfig,
    progress: impl FnMut(RunEvent),
) -> Result<RunResult> {
    let mut results =
        run_each_with_progress(lm, data, labels, std::slice::from_ref(config), progress)?;
    results
        .pop()
        .ok_or_else(|| SubspaceError::Data("a run gave no result".into()))
}

/// Several runs on the same pairs (e.g. DAS and MDAS, or two sizes): what [`run_with_progress`]
/// of each returns, with the pairs built once, the layers below the site run once over the
/// train pairs (each run then trains on its own examples of them: cause pairs for DAS, all for
/// MDAS), and val and test scored for every run, and the control, from one pass each. The
/// configs must draw the same pairs: the same layer, split kind, unit, train cities, seed,
/// numbers of pairs, batch and isolate weight; otherwise each runs on its own.
pub fn run_each_with_progress<'a>(
    lm: &LanguageModel,
    data: &RavelData,
    labels: impl Into<Labels<'a>>,
    configs: &[RunConfig],
    mut progress: impl FnMut(RunEvent),
) -> Result<Vec<RunResult>> {
    run_each(lm, data, labels.into(), configs, &mut progress)
}

fn run_each(
    lm: &LanguageModel,
    data: &RavelData,
    labels: Labels,
    configs: &[RunConfig],
    progress: &mut dyn FnMut(RunEvent),
) -> Result<Vec<RunResult>> {
    let same_pairs = |a: &RunConfig, b: &RunConfig| {
        (
            a.layer,
            a.split_kind,
            a.unit,
            a.train_cities,
            a.seed,
            a.n_train,
            a.n_eval,
            a.batch,
        ) == (
            b.layer,
            b.split_kind,
            b.unit,
            b.train_cities,
            b.seed,
            b.n_train,
            b.n_eval,
            b.batch,
        ) && a.isolate_weight.to_bits() == b.isolate_weight.to_bits()
    };
    let Some(first) = configs.first() else {
        return Ok(Vec::new());
    };
    if configs.len() > 1 && !configs.iter().all(|c| same_pairs(first, c)) {
        let mut each = Vec::with_capacity(configs.len());
        for c in configs {
            each.extend(run_each(
                lm,
                data,
                labels,
                std::slice::from_ref(c),
                progress,
            )?);
        }
        return Ok(each);
    }
    let mut interventions = configs
        .iter()
        .map(|c| initial_intervention(lm, c))
        .collect::<Result<Vec<_>>>()?;
    let configs: Vec<RunConfig> = configs.iter().map(RunConfig::resolved).collect();
    let config = &configs[0];
    let site = Site::block_output(config.layer);
    let start = Instant::now();
    let any_isolate = configs.iter().any(|c| c.method == Method::Mdas);
    progress(RunEvent::Phase(&format!(
        "building train pairs ({} cause{})",
        config.n_train,
        if any_isolate { " + isolate" } else { "" }
    )));
    let train_set = split_pairs(lm, data, labels, config, Split::Train)?;
    // Every train pair runs below the site once: the trained ones for training, all of them
    // for scoring the train split afterwards from the same cache.
    let isolate_weight = config.isolate_weight as f32;
    let all: Vec<Example> = train_set
        .iter()
        .map(|e| match e.role {
            Role::Cause => e.example.clone(),
            Role::Isolate(_) => e.example.clone().weighted(isolate_weight),
        })
        .collect();
    let das_configs = configs
        .iter()
        .map(|c| das_config(c, site, &train_set))
        .collect::<Result<Vec<_>>>()?;
    // "on N examples (S steps of B, lr, decay)": what one run trains.
    let training = |c: &RunConfig, (das, trained): &(DasConfig, Vec<usize>)| {
        format!(
            "on {} examples ({} steps of {}, lr {:e}, {} decay after {} warm-up steps)",
            trained.len(),
            das.steps,
            c.batch,
            c.peak_lr(),
            c.decay,
            das.schedule.warmup
        )
    };
    let single = configs.len() == 1;
    let mut objective = None;
    let mut pass_seconds = 0.0;
    if configs.iter().any(|c| c.method.trained()) {
        let phase = if single {
            format!(
                "training {}; first the layers below the site run once over every train pair",
                training(config, &das_configs[0])
            )
        } else {
            format!(
                "the layers below the site, once over every train pair, for {} runs",
                configs.len()
            )
        };
        progress(RunEvent::Phase(&phase));
        let pass = Instant::now();
        objective = Some(DasObjective::for_config(lm, &all, &das_configs[0].0)?);
        pass_seconds = pass.elapsed().as_secs_f64();
    }
    // The pairs and the pass below the site count toward every run's time.
    let shared_seconds = start.elapsed().as_secs_f64();
    let mut results = Vec::with_capacity(configs.len());
    for (i, (c, run)) in configs.iter().zip(&das_configs).enumerate() {
        let (das, trained) = run;
        let mut losses = Vec::new();
        let mut steps_seconds = 0.0;
        if let (true, Some(o)) = (c.method.trained(), objective.as_mut()) {
            let t = Instant::now();
            if !single {
                progress(RunEvent::Phase(&format!(
                    "training {} {}",
                    c.method.name(),
                    training(c, run)
                )));
            }
            o.set_active(trained.clone());
            let report = train::train_with(lm, &mut interventions[i], &all, o, das, |s| {
                progress(RunEvent::Step(s))
            })?;
            losses = report.losses;
            steps_seconds = t.elapsed().as_secs_f64();
        }
        results.push((losses, steps_seconds));
    }
    progress(RunEvent::Phase(&format!(
        "scoring the {} train pairs",
        train_set.len()
    )));
    let objective = match objective {
        Some(o) => o,
        None => DasObjective::new(lm, site, &all, Some(config.batch))?,
    };
    let every: Vec<usize> = (0..train_set.len()).collect();
    let train_scores = interventions
        .iter()
        .map(|iv| {
            Ok(scores(
                &train_set,
                &objective.hits(iv, &every, scoring_batch(config))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    drop(objective);
    let ivs: Vec<&Intervention> = interventions.iter().collect();
    progress(RunEvent::Phase("scoring val pairs"));
    let val_pairs = split_pairs(lm, data, labels, config, Split::Val)?;
    let val = evaluate_each(lm, site, &ivs, &val_pairs, scoring_batch(config))?;
    let control = configs.iter().any(|c| c.method != Method::Residual);
    progress(RunEvent::Phase(if control {
        "scoring test pairs, and residual patching on them (the control)"
    } else {
        "scoring test pairs"
    }));
    let test_pairs = split_pairs(lm, data, labels, config, Split::Test)?;
    let mut test_ivs = ivs.clone();
    if control {
        test_ivs.push(&Intervention::Replace);
    }
    let mut test = evaluate_each(lm, site, &test_ivs, &test_pairs, scoring_batch(config))?;
    let control_scores = if control { test.pop() } else { None };
    let mut out = Vec::with_capacity(configs.len());
    for (i, (c, (losses, steps_seconds))) in configs.iter().zip(results).enumerate() {
        let t = test[i];
        let result = RunResult {
            method: c.method.name().into(),
            layer: c.layer,
            dims: (c.method != Method::Residual).then_some(c.dims),
            cause: t.cause,
            isolate: t.isolate,
            disentangle: t.disentangle,
            n_cause: t.n_cause,
            n_isolate: t.n_isolate,
            isolate_continent: t.isolate_continent,
            isolate_language: t.isolate_language,
            n_continent: t.n_continent,
            n_language: t.n_language,
            train_seconds: shared_seconds + steps_seconds,
            steps_seconds,
            pass_seconds: if c.method.trained() {
                pass_seconds
            } else {
                0.0
            },
            losses,
            val: val[i],
            residual_test: if c.method == Method::Residual {
                None
            } else {
                control_scores
            },
            train: Some(train_scores[i]),
        };
        if let Some(path) = &c.save {
            let notes = serde_json::json!({ "ravel": { "config": c, "result": &result } });
            crate::store::save(path, lm, site, &interventions[i], notes)?;
        }
        out.push(result);
    }
    Ok(out)
}

/// A run's training settings and the train examples it trains on (indices into `train_set`):
/// the cause pairs, and for MDAS the isolate pairs too.
fn das_config(
    config: &RunConfig,
    site: Site,
    train_set: &[RavelExample],
) -> Result<(DasConfig, Vec<usize>)> {
    let trained: Vec<usize> = (0..train_set.len())
        .filter(|&i| config.method == Method::Mdas || train_set[i].role == Role::Cause)
        .collect();
    let steps = match config.epochs {
        Some(epochs) => ((epochs * trained.len() as f64) / config.batch as f64).ceil() as usize,
        None => config.steps,
    }
    .max(1);
    let schedule = LrSchedule::warmup_fraction(config.warmup, steps, config.decay)?;
    let mut das = DasConfig::new(site, steps)
        .with_lr(config.peak_lr())
        .with_schedule(schedule)
        .with_batch_size(config.batch)
        .with_seed(config.seed);
    if let Some(ck) = &config.checkpoint {
        das = das.with_checkpoint(&ck.path, ck.every);
    }
    if let Some(stop) = &config.stop {
        das = das.with_stop(stop.clone());
    }
    Ok((das, trained))
}

/// Pairs per pass when scoring: no gradient is kept, so several training batches fit one pass,
/// and larger products run faster per row (the scores do not depend on it).
fn scoring_batch(config: &RunConfig) -> usize {
    config.batch.max(128)
}

/// The scores on one split's pairs as a run with `config` draws them (see [`split_pairs`]).
pub fn split_scores<'a>(
    lm: &LanguageModel,
    data: &RavelData,
    labels: impl Into<Labels<'a>>,
    site: Site,
    intervention: &Intervention,
    config: &RunConfig,
    split: Split,
) -> Result<Scores> {
    let examples = split_pairs(lm, data, labels, config, split)?;
    evaluate(lm, site, intervention, &examples, scoring_batch(config))
}

/// One split's pairs as a run with `config` draws them: train (`n_train` cause pairs, `seed`),
/// val (`n_eval`, `seed + 1`) or test (`n_eval`, `seed + 2`); from the first probe's known
/// prompts, or from the model's answers in `config.split_kind`'s held-out set.
pub fn split_pairs<'a>(
    lm: &LanguageModel,
    data: &RavelData,
    labels: impl Into<Labels<'a>>,
    config: &RunConfig,
    split: Split,
) -> Result<Vec<RavelExample>> {
    let (n, seed) = match split {
        Split::Train => (config.n_train, config.seed),
        Split::Val => (config.n_eval, config.seed + 1),
        Split::Test => (config.n_eval, config.seed + 2),
    };
    match (labels.into(), config.split_kind) {
        (Labels::FirstToken(_), None) if config.train_cities.is_some() => bad_setting(
            "train cities",
            "a limit",
            "all of them with the first probe's pairs: the limit needs a split kind (context or entity) and the model's answers",
        ),
        (Labels::FirstToken(_), None) if config.unit != Unit::LastToken => bad_setting(
            "unit",
            "span",
            "the city's last token with the first probe's pairs: spans need a split kind (context or entity) and the model's answers",
        ),
        (Labels::FirstToken(probe), None) => split_examples(lm, data, probe, split, n, seed),
        (Labels::Model(answers), Some(kind)) => {
            let draw = Draw {
                kind,
                unit: config.unit,
                train_cities: config.train_cities,
                seed,
            };
            labelled_examples(lm, data, answers, &draw, split, n)
        }
        (Labels::Model(_), None) => bad_setting(
            "split kind",
            "none",
            "context or entity: the model's answers label RAVEL's two held-out sets",
        ),
        (Labels::FirstToken(_), Some(kind)) => Err(SubspaceError::Data(format!(
            "the {} split is labelled by the model's answers: give the file of `subspace ravel-probe`, not the first probe's known prompts",
            kind.name()
        ))),
    }
}

/// A run saved by `subspace ravel --save` (or [`RunConfig::save`]): the trained intervention
/// and its site, the settings it was trained with and what it scored then.
#[derive(Debug, Clone)]
pub struct SavedRun {
    pub site: Site,
    pub intervention: Intervention,
    pub config: RunConfig,
    pub recorded: RunResult,
}

impl SavedRun {
    /// Scores the loaded intervention again on one split's pairs, drawn as its run drew them
    /// (so they give `recorded`'s numbers: the model and the pairs are the same).
    pub fn rescore<'a>(
        &self,
        lm: &LanguageModel,
        data: &RavelData,
        labels: impl Into<Labels<'a>>,
        split: Split,
    ) -> Result<Scores> {
        split_scores(
            lm,
            data,
            labels,
            self.site,
            &self.intervention,
            &self.config,
            split,
        )
    }

    /// The pairs of one split as its run drew them (for a breakdown of [`SavedRun::rescore`]).
    pub fn pairs<'a>(
        &self,
        lm: &LanguageModel,
        data: &RavelData,
        labels: impl Into<Labels<'a>>,
        split: Split,
    ) -> Result<Vec<RavelExample>> {
        split_pairs(lm, data, labels, &self.config, split)
    }
}

/// Loads a saved RAVEL run for `lm` (refused, as by [`crate::store::load`], if it was trained
/// on another model).
pub fn load_run(path: &Path, lm: &LanguageModel) -> Result<SavedRun> {
    let saved = crate::store::load(path, lm)?;
    let ravel = &saved.meta.notes["ravel"];
    let parse = |what: &str| -> Result<_> {
        Err(SubspaceError::Data(format!(
            "{} holds an intervention but no RAVEL {what}; it was not saved by `subspace ravel --save`",
            path.display()
        )))
    };
    let Ok(config) = serde_json::from_value::<RunConfig>(ravel["config"].clone()) else {
        return parse("settings");
    };
    let Ok(recorded) = serde_json::from_value::<RunResult>(ravel["result"].clone()) else {
        return parse("scores");
    };
    Ok(SavedRun {
        site: saved.site,
        intervention: saved.intervention,
        config,
        recorded,
    })
}
