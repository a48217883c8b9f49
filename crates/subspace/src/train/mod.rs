//! Distributed Alignment Search: training an intervention's subspace so that patching it moves
//! exactly the concept asked for.
//!
//! ## Objective
//! Each [`Example`] is a (base, source) [`crate::Pair`] with a target token: the cross-entropy of the
//! patched run's next token against the target is minimised, averaged over the batch (weighted
//! by [`Example::weight`](crate::Example), 1 unless set). An example whose target is the
//! *source's* answer asks the subspace to carry the concept (DAS); one whose target is the
//! *base's* own answer on another attribute asks it to leave that attribute alone. Mixing both in
//! one batch is RAVEL's multi-task objective (MDAS); their weights trade one against the other.
//! The learning rate follows [`DasConfig::schedule`] (constant unless set: the tutorial's Adam).
//!
//! ## Orthogonality
//! - **Rotated** (the tutorial's full `d × d` rotation): torch's own parametrisation, so a run
//!   is comparable with PyTorch's. `R = R₀ · exp(L.tril(−1) − L.tril(−1)ᵀ)` with `L` starting at
//!   zero and Adam on `L`; `exp` is evaluated only on the `N` patched rows (see [`exp_map`]),
//!   which is all a true-inverse patch depends on. When `A` grows large the accumulated
//!   rotation is folded into the base rows and `L` restarts at zero (see
//!   [`exp_map::REBASE_ABOVE`]), so a step's cost does not grow with the distance travelled.
//!   After training the full rotation is rebuilt
//!   around the new rows (its other rows are the old ones made orthogonal to them) and cleaned
//!   by Gram–Schmidt in `f64`, so it is a `d × d` rotation to ~1e-7.
//! - **Low-rank** (`d × k`) and **boundless**: Adam on the matrix itself, then a QR retraction
//!   (Gram–Schmidt in `f64`) after every step: orthonormal to ~1e-7 at every step whatever the
//!   number of steps, and cheap for any `k`. Its steps are smaller than the exponential map's
//!   for the same learning rate (each entry moves by about `lr`), so it wants a larger one.
//!
//! Why not the `d × d` matrix exponential: it costs 300–400 ms a step at d = 576.
//!
//! ## Cost
//! Each distinct base prompt is run once up to the site, and its keys/values from the site up
//! are kept (`cache::SiteCache`): the columns before the patched token cannot change (attention is
//! causal); prompts that begin alike run their shared beginning once. Each step assembles its
//! minibatch from that cache and runs only each example's remaining columns of the blocks from
//! the site up (examples grouped by how many, all groups through each block together), and the
//! LM head only at the last column. No gradient reaches the model's weights.
//!
//! ## Order
//! Minibatches of [`DasConfig::batch_size`] follow the examples' order in the first epoch and a
//! fresh order drawn from [`DasConfig::seed`] in every later one.

mod adam;
mod cache;
mod checkpoint;
mod config;
pub mod exp_map;
mod objective;
mod params;
mod schedule;

pub use crate::engine::StopFlag;
pub use adam::{AdamConfig, AdamState};
pub use config::{CheckpointConfig, DasConfig, StepReport, TrainReport};
pub use objective::DasObjective;
pub use schedule::{Decay, LrSchedule};

use burn::tensor::Device;
use std::time::Instant;

use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::lm::LanguageModel;
use crate::pair::Example;
use crate::readout::to_host;
use crate::store::FileLock;
use params::Params;

/// Trains `intervention` in place with DAS. `progress` is called after every step.
///
/// Stops with [`SubspaceError::NonFiniteLoss`] or [`SubspaceError::Diverged`] if training
/// blows up, leaving the intervention at its last good value, and with
/// [`SubspaceError::Interrupted`] when [`DasConfig::stop`] is raised (after the step it is
/// in) or the model's [`LanguageModel::stop_flag`] is (inside the step, or while the examples
/// are prepared); a checkpoint, if there is one, is written first with every finished step, so
/// that the same call resumes exactly.
pub fn train(
    lm: &LanguageModel,
    intervention: &mut Intervention,
    examples: &[Example],
    config: &DasConfig,
    progress: impl FnMut(&StepReport),
) -> Result<TrainReport> {
    config.validate()?;
    intervention.check(lm.site_width(config.site)?)?;
    Params::of(intervention)?;
    let objective = DasObjective::for_config(lm, examples, config)?;
    train_with(lm, intervention, examples, &objective, config, progress)
}

/// [`train`] on an objective already built over `examples` (with `config`'s site and batch
/// size), training on its [`DasObjective::with_active`] examples: the caller keeps the
/// objective's cache, e.g. to score the examples afterwards without running the layers below
/// the site again.
pub fn train_with(
    lm: &LanguageModel,
    intervention: &mut Intervention,
    examples: &[Example],
    objective: &DasObjective,
    config: &DasConfig,
    mut progress: impl FnMut(&StepReport),
) -> Result<TrainReport> {
    config.validate()?;
    intervention.check(lm.site_width(config.site)?)?;
    if objective.site() != config.site {
        return crate::error::bad_setting(
            "objective site",
            objective.site(),
            format!("the config's site, {}", config.site),
        );
    }
    let mut params = Params::of(intervention)?;
    let active: Vec<Example> = objective
        .active()
        .iter()
        .filter_map(|&i| examples.get(i).cloned())
        .collect();
    let examples = active.as_slice();
    let device = lm.device();
    let mut moments = params.moments();
    let mut losses = Vec::with_capacity(config.steps);
    let mut first_step = 0;
    // The checkpoint is this run's for as long as it trains: a second process given the same
    // path is refused instead of interleaving its saves with ours.
    let mut checkpointing = None;
    if let Some(ck) = &config.checkpoint {
        let lock = FileLock::acquire(&ck.path)?;
        let run = checkpoint::run_fingerprint(examples, config, &params)?;
        if let Some(saved) = checkpoint::load(&ck.path, &run, &params, &device)? {
            if saved.step > config.steps {
                return Err(SubspaceError::BadCheckpoint {
                    path: ck.path.clone(),
                    reason: format!(
                        "it is at step {}, beyond this run's {} steps (ask for more steps to continue it)",
                        saved.step, config.steps
                    ),
                });
            }
            first_step = saved.step;
            losses = saved.losses;
            params = saved.params;
            moments = saved.moments;
        }
        checkpointing = Some((ck, run, lock));
    }
    let resumed_after = (first_step > 0).then_some(first_step);
    let save = |step: usize, losses: &[f32], params: &Params, moments: &params::Moments| {
        match &checkpointing {
            Some((ck, run, _lock)) => checkpoint::save(
                &ck.path,
                run,
                &checkpoint::Checkpoint {
                    step,
                    losses: losses.to_vec(),
                    params: params.clone(),
                    moments: moments.clone(),
                },
            ),
            None => Ok(()),
        }
    };
    // The last parameters that gave a finite loss: what a blown-up run leaves behind (the
    // intervention still holds its initial value until the first step succeeds).
    let mut last_good: Option<Params> = None;
    let keep_last_good = |intervention: &mut Intervention, good: &Option<Params>, t: f32| {
        good.as_ref()
            .map_or(Ok(()), |g| g.write_into(intervention, t))
    };
    let start = Instant::now();
    for step in first_step..config.steps {
        let temperature = anneal(config.temperature, step, config.steps);
        let adam = AdamConfig {
            lr: config.adam.lr * config.schedule.factor(step, config.steps),
            ..config.adam
        };
        // The step's products run on a pool thread, the pool's other threads kept awake for
        // them (`crate::pool`); the bookkeeping, saving and progress stay on the caller's.
        let taken = kernels::pool::on_pool_awake(|| {
            take_step(
                objective,
                (&mut params, &mut moments),
                (step, temperature),
                &adam,
                &device,
            )
        });
        let (value, examples, before) = match taken {
            Ok(t) => t,
            Err(StepFailure::Preparing(e)) => {
                keep_last_good(intervention, &last_good, temperature)?;
                return Err(e);
            }
            Err(StepFailure::NonFinite(loss)) => {
                keep_last_good(intervention, &last_good, temperature)?;
                return Err(SubspaceError::NonFiniteLoss {
                    step: step + 1,
                    loss,
                    last_good: step,
                });
            }
            // Stopped inside the step (the model's flag): the parameters are those of the
            // steps finished so far, which the checkpoint (if any) records.
            Err(StepFailure::Interrupted) => {
                if checkpointing.is_some() {
                    save(step, &losses, &params, &moments)?;
                }
                params.write_into(intervention, anneal(config.temperature, step, config.steps))?;
                return Err(interrupted(step, &checkpointing));
            }
            Err(StepFailure::Other(e)) => return Err(e),
        };
        losses.push(value);
        last_good = Some(before);
        let done = step + 1;
        let stop =
            config.stop.as_ref().is_some_and(|s| s.is_raised()) || lm.stop_flag().is_raised();
        if let Some((ck, _, _)) = &checkpointing
            && (done % ck.every == 0 || done == config.steps || stop)
        {
            save(done, &losses, &params, &moments)?;
        }
        progress(&StepReport {
            step: done,
            steps: config.steps,
            loss: value,
            lr: adam.lr,
            examples,
            elapsed: start.elapsed(),
        });
        if stop && done < config.steps {
            params.write_into(intervention, anneal(config.temperature, done, config.steps))?;
            return Err(interrupted(done, &checkpointing));
        }
    }
    params.write_into(
        intervention,
        anneal(config.temperature, config.steps, config.steps),
    )?;
    let ran = config.steps - first_step;
    let seconds_per_step = if ran == 0 {
        0.0
    } else {
        start.elapsed().as_secs_f64() / ran as f64
    };
    Ok(TrainReport {
        losses,
        seconds_per_step,
        resumed_after,
    })
}

/// Why a step did not finish.
enum StepFailure {
    /// Making the live parameters or the minibatch failed.
    Preparing(SubspaceError),
    /// The loss was not finite (this value); nothing was updated.
    NonFinite(f32),
    /// The model's stop flag was raised inside the step.
    Interrupted,
    Other(SubspaceError),
}

/// One step of [`train_with`]: the loss of minibatch `step`, its gradient and the update of
/// `params` and `moments`. Returns the loss, the minibatch's size and the parameters before
/// the update (the last good ones, should a later step blow up).
fn take_step(
    objective: &DasObjective,
    (params, moments): (&mut Params, &mut params::Moments),
    (step, temperature): (usize, f32),
    adam: &AdamConfig,
    device: &Device,
) -> std::result::Result<(f32, usize, Params), StepFailure> {
    // Leaves on the autodiff device; the model and cached states stay plain (constants).
    let (live, leaves) = params
        .live(temperature, step + 1, device)
        .map_err(StepFailure::Preparing)?;
    let batch = objective.batch(step).map_err(StepFailure::Preparing)?;
    let loss = objective.loss_tensor(&live, &batch).map_err(|e| match e {
        SubspaceError::Interrupted { .. } => StepFailure::Interrupted,
        e => StepFailure::Other(e),
    })?;
    let value = to_host(loss.clone().without_autodiff()).map_err(StepFailure::Other)?[0];
    if !value.is_finite() {
        return Err(StepFailure::NonFinite(value));
    }
    let grads = loss.backward();
    let updated = params
        .clone()
        .update(leaves, &grads, adam, moments, device)
        .map_err(StepFailure::Other)?;
    Ok((value, batch.len(), std::mem::replace(params, updated)))
}

/// The error of a run stopped after `done` steps, saying where its state is.
fn interrupted<A, B>(
    done: usize,
    checkpointing: &Option<(&CheckpointConfig, A, B)>,
) -> SubspaceError {
    let resume = match checkpointing {
        Some((ck, _, _)) => format!(
            "the checkpoint {} holds it: train again with the same checkpoint to resume",
            ck.path.display()
        ),
        None => "nothing was saved (no checkpoint was asked for)".into(),
    };
    SubspaceError::Interrupted {
        step: Some(done),
        resume,
    }
}

fn anneal((start, end): (f32, f32), step: usize, steps: usize) -> f32 {
    if steps <= 1 {
        return end;
    }
    let t = step.min(steps - 1) as f32 / (steps - 1) as f32;
    start + (end - start) * t
}
