//! A RAVEL run, phase by phase: the pairs, the pass below the site, training, scoring (train,
//! val, test and the control on the test pairs); several runs on the same pairs share every
//! phase but their own training.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use super::config::RunConfig;
use super::data::{RavelData, Split};
use super::eval::{RavelExample, Role, evaluate_each, scores};
use super::labels::Labels;
use super::method::Method;
use super::result::RunResult;
use crate::error::{Result, SubspaceError, bad_setting};
use crate::intervention::Intervention;
use crate::lm::LanguageModel;
use crate::pair::Example;
use crate::site::Site;
use crate::train::{self, DasConfig, DasObjective, LrSchedule, StepReport};

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
pub fn run(
    lm: &LanguageModel,
    data: &RavelData,
    labels: &Labels,
    config: &RunConfig,
) -> Result<RunResult> {
    run_with_progress(lm, data, labels, config, |_| {})
}

/// [`run`], telling `progress` when each phase starts and when each training step ends.
pub fn run_with_progress(
    lm: &LanguageModel,
    data: &RavelData,
    labels: &Labels,
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
/// numbers of pairs, batch and isolate weight; otherwise each runs on its own. The split kind,
/// unit and train cities come from `labels` (each config records them).
pub fn run_each_with_progress(
    lm: &LanguageModel,
    data: &RavelData,
    labels: &Labels,
    configs: &[RunConfig],
    mut progress: impl FnMut(RunEvent),
) -> Result<Vec<RunResult>> {
    run_each(lm, data, labels, configs, &mut progress)
}

fn run_each(
    lm: &LanguageModel,
    data: &RavelData,
    labels: &Labels,
    configs: &[RunConfig],
    progress: &mut dyn FnMut(RunEvent),
) -> Result<Vec<RunResult>> {
    let same_pairs = |a: &RunConfig, b: &RunConfig| {
        (a.layer, a.seed, a.n_train, a.n_eval, a.batch)
            == (b.layer, b.seed, b.n_train, b.n_eval, b.batch)
            && a.isolate_weight.to_bits() == b.isolate_weight.to_bits()
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
    // What each run records: the rate it used, and the labels its pairs are drawn from.
    let configs: Vec<RunConfig> = configs
        .iter()
        .map(|c| {
            let mut c = c.resolved();
            labels.record(&mut c);
            c
        })
        .collect();
    let config = &configs[0];
    let site = Site::block_output(config.layer);
    let start = Instant::now();
    let any_isolate = configs.iter().any(|c| c.method == Method::Mdas);
    progress(RunEvent::Phase(&format!(
        "building train pairs ({} cause{})",
        config.n_train,
        if any_isolate { " + isolate" } else { "" }
    )));
    let train_set = labels.pairs(lm, data, config, Split::Train)?;
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
                &objective.hits(iv, &every, config.scoring_batch())?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    drop(objective);
    let ivs: Vec<&Intervention> = interventions.iter().collect();
    progress(RunEvent::Phase("scoring val pairs"));
    let val_pairs = labels.pairs(lm, data, config, Split::Val)?;
    let val = evaluate_each(lm, site, &ivs, &val_pairs, config.scoring_batch())?;
    let control = configs.iter().any(|c| c.method != Method::Residual);
    progress(RunEvent::Phase(if control {
        "scoring test pairs, and residual patching on them (the control)"
    } else {
        "scoring test pairs"
    }));
    let test_pairs = labels.pairs(lm, data, config, Split::Test)?;
    let mut test_ivs = ivs.clone();
    if control {
        test_ivs.push(&Intervention::Replace);
    }
    let mut test = evaluate_each(lm, site, &test_ivs, &test_pairs, config.scoring_batch())?;
    let control_scores = if control { test.pop() } else { None };
    let mut out = Vec::with_capacity(configs.len());
    for (i, (c, (losses, steps_seconds))) in configs.iter().zip(results).enumerate() {
        let result = RunResult {
            method: c.method.name().into(),
            layer: c.layer,
            dims: (c.method != Method::Residual).then_some(c.dims),
            test: test[i],
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
