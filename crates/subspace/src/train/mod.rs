//! Distributed Alignment Search: training an intervention's subspace so that patching it moves
//! exactly the concept asked for.
//!
//! ## Objective
//! Each [`Example`] is a (base, source) pair with a target token: the cross-entropy of the
//! patched run's next token against the target is minimised, averaged over the batch. An example
//! whose target is the *source's* answer asks the subspace to carry the concept (DAS); one whose
//! target is the *base's* own answer on another attribute asks it to leave that attribute alone.
//! Mixing both in one batch is RAVEL's multi-task objective (MDAS).
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
//! The base prompts are run once up to the site; the columns before the patched token are
//! cached as keys/values for every later block (they cannot change: attention is causal); each
//! step runs only the remaining columns of the blocks from the site up, and the LM head only at
//! the last column. No gradient reaches the model's weights.

mod adam;
mod checkpoint;
pub mod exp_map;

pub use adam::{AdamConfig, AdamState};
pub use checkpoint::CheckpointConfig;

use std::time::{Duration, Instant};

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use llama::{ForwardContext, KeyValue};

use crate::error::{Result, SubspaceError, input};
use crate::intervention::orthogonal::{complete_rotation, orthonormalize_rows};
use crate::intervention::{BoundlessSpace, Intervention, LowRankSpace, RotatedSpace, Unrotate};
use crate::lm::{LanguageModel, Prompt};
use crate::readout::to_host;
use crate::run::{Edit, prefix_cache, run_blocks};
use crate::site::Site;

/// One training (or evaluation) example.
#[derive(Debug, Clone)]
pub struct Example {
    pub base: Prompt,
    pub source: Prompt,
    /// Token position of the intervened entity in the base prompt.
    pub base_position: usize,
    /// Token position of the same entity in the source prompt.
    pub source_position: usize,
    /// The token the patched run should predict next.
    pub target: u32,
}

/// Settings of a DAS run.
#[derive(Debug, Clone)]
pub struct DasConfig {
    pub site: Site,
    pub steps: usize,
    pub adam: AdamConfig,
    /// Examples per step (`None`: all of them every step).
    pub batch_size: Option<usize>,
    /// Seed of the example order (minibatches).
    pub seed: u64,
    /// Boundless DAS only: temperature annealed linearly from the first to the second value.
    pub temperature: (f32, f32),
    /// Write a checkpoint every K steps and resume from it if it exists (see [`checkpoint`]).
    pub checkpoint: Option<CheckpointConfig>,
}

impl DasConfig {
    /// The tutorial's settings: Adam with lr 1e-3, all examples every step.
    pub fn new(site: Site, steps: usize) -> Self {
        DasConfig {
            site,
            steps,
            adam: AdamConfig::default(),
            batch_size: None,
            seed: 0,
            temperature: (50.0, 0.1),
            checkpoint: None,
        }
    }

    /// Checkpoints to `path` every `every` steps; a run started while `path` holds a checkpoint
    /// of the same run resumes from it.
    pub fn with_checkpoint(mut self, path: impl Into<std::path::PathBuf>, every: usize) -> Self {
        self.checkpoint = Some(CheckpointConfig {
            path: path.into(),
            every: every.max(1),
        });
        self
    }

    pub fn with_lr(mut self, lr: f64) -> Self {
        self.adam.lr = lr;
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
}

/// What the progress callback hears after each step.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// 1-based step number.
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
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

/// A minibatch prepared for repeated steps: everything below the site is computed once.
struct Prepared {
    ctx: ForwardContext,
    /// Stream entering the site's block, columns `from..`.
    h: Tensor<3>,
    /// First recomputed column and the cached keys/values of the columns before it.
    from: usize,
    prefix: Option<Vec<KeyValue>>,
    columns: Vec<usize>,
    source: Tensor<2>,
    last: usize,
    targets: Tensor<1, Int>,
}

/// The trainable tensors of an intervention.
#[derive(Debug, Clone)]
enum Params {
    /// A full rotation, parametrised as torch does: first rows `base` (`[n, d]`) times
    /// `exp(L.tril(−1) − L.tril(−1)ᵀ)`, `L` (`[d, d]`) trained.
    Exp { base: Tensor<2>, l: Tensor<2> },
    /// Orthonormal rows spanning the patched subspace, `[k, d]`, kept orthonormal by a QR
    /// retraction after each step (low-rank DAS).
    Frame(Tensor<2>),
    /// A full rotation `[d, d]` and a boundary `[1]`.
    Boundless(Tensor<2>, Tensor<1>),
}

impl Params {
    /// The tensors, on the host (for checkpoints).
    fn host_tensors(&self) -> Result<Vec<formats::intervention_file::HostTensor>> {
        use crate::store::host_tensor;
        match self {
            Params::Exp { base, l } => {
                Ok(vec![host_tensor(base.clone())?, host_tensor(l.clone())?])
            }
            Params::Frame(f) => Ok(vec![host_tensor(f.clone())?]),
            Params::Boundless(r, b) => Ok(vec![host_tensor(r.clone())?, host_tensor(b.clone())?]),
        }
    }
}

/// The DAS objective over a fixed set of examples, with the layers below the site cached.
pub struct DasObjective<'a> {
    lm: &'a LanguageModel,
    site: Site,
    batches: Vec<Prepared>,
}

impl<'a> DasObjective<'a> {
    /// Prepares `examples` in minibatches of `batch_size` (all at once for `None`).
    pub fn new(
        lm: &'a LanguageModel,
        site: Site,
        examples: &[Example],
        batch_size: Option<usize>,
    ) -> Result<Self> {
        site.check(lm.n_layers())?;
        if examples.is_empty() {
            return input("no training examples");
        }
        let vocab = lm.model.config.vocab_size;
        for ex in examples {
            ex.base.check_position(ex.base_position, "base")?;
            ex.source.check_position(ex.source_position, "source")?;
            if ex.target as usize >= vocab {
                return input(format!(
                    "target token id {} is outside the vocabulary ({vocab})",
                    ex.target
                ));
            }
        }
        let size = batch_size.unwrap_or(examples.len()).max(1);
        let batches = examples
            .chunks(size)
            .map(|chunk| prepare(lm, site, chunk))
            .collect::<Result<_>>()?;
        Ok(DasObjective { lm, site, batches })
    }

    pub fn n_batches(&self) -> usize {
        self.batches.len()
    }

    /// Mean cross-entropy of batch `i` under `intervention` (no gradient).
    pub fn loss(&self, intervention: &Intervention, i: usize) -> Result<f32> {
        let loss = self.loss_tensor(intervention, &self.batches[i]);
        Ok(to_host(loss)?[0])
    }

    /// Next-token logits `[batch, vocab]` of batch `i` under `intervention`.
    pub fn logits(&self, intervention: &Intervention, i: usize) -> Tensor<2> {
        self.patched_logits(intervention, &self.batches[i])
    }

    /// Loss of batch `i` with the patched rows `base · exp(L.tril(−1) − L.tril(−1)ᵀ)`, and its
    /// gradient with respect to `l` (torch's parametrisation of the rotation).
    pub fn loss_and_grad_exp(
        &self,
        base: &Tensor<2>,
        l: &Tensor<2>,
        i: usize,
    ) -> Result<(f32, Tensor<2>)> {
        let bound = exp_map::norm_bound(l)?;
        let leaf = l.clone().autodiff().require_grad();
        let frame = exp_map::exp_rows(base.clone(), leaf.clone(), bound);
        let loss = self.loss_tensor(&frame_intervention(frame), &self.batches[i]);
        let value = to_host(loss.clone().without_autodiff())?[0];
        let grads = loss.backward();
        let grad = leaf
            .grad(&grads)
            .map(|g| g.without_autodiff())
            .unwrap_or_else(|| l.zeros_like());
        Ok((value, grad))
    }

    /// Loss of batch `i` when the patched subspace is spanned by the rows of `frame` (`[k, d]`,
    /// orthonormal), and its gradient with respect to `frame`.
    pub fn loss_and_grad(&self, frame: &Tensor<2>, i: usize) -> Result<(f32, Tensor<2>)> {
        let leaf = frame.clone().autodiff().require_grad();
        let loss = self.loss_tensor(&frame_intervention(leaf.clone()), &self.batches[i]);
        let value = to_host(loss.clone().without_autodiff())?[0];
        let grads = loss.backward();
        let grad = leaf
            .grad(&grads)
            .map(|g| g.without_autodiff())
            .unwrap_or_else(|| frame.zeros_like());
        Ok((value, grad))
    }

    fn patched_logits(&self, intervention: &Intervention, b: &Prepared) -> Tensor<2> {
        let model = &self.lm.model;
        let edit = Edit {
            site: self.site,
            columns: b.columns.clone(),
            source: b.source.clone(),
            intervention,
        };
        let h = run_blocks(
            model,
            &b.ctx,
            b.h.clone(),
            self.site.layer..model.n_layers(),
            std::slice::from_ref(&edit),
            b.prefix.as_deref().map(|p| (b.from, p)),
        );
        model.logits_at(h, b.last)
    }

    fn loss_tensor(&self, intervention: &Intervention, b: &Prepared) -> Tensor<1> {
        let logits = self.patched_logits(intervention, b);
        let [n, _] = logits.dims();
        let logp = log_softmax(logits, 1);
        let picked = logp.gather(1, b.targets.clone().reshape([n, 1]));
        picked.mean().neg().reshape([1])
    }
}

fn prepare(lm: &LanguageModel, site: Site, examples: &[Example]) -> Result<Prepared> {
    let model = &lm.model;
    let device = lm.device();
    let bases: Vec<&Prompt> = examples.iter().map(|e| &e.base).collect();
    let base_batch = lm.batch(&bases);
    let source = lm.source_vectors(site, examples);

    // Base stream entering the site's block.
    let ctx = model.context(&base_batch);
    let mut h = model.embed(base_batch.ids.clone());
    for block in &model.blocks[..site.layer] {
        h = block.forward(h, &ctx);
    }
    let columns: Vec<usize> = examples
        .iter()
        .enumerate()
        .map(|(r, e)| base_batch.column(r, e.base_position))
        .collect();
    let from = columns.iter().copied().min().unwrap_or(0);
    let s = base_batch.seq_len;
    let (h, ctx, prefix) = if from == 0 {
        (h, ctx, None)
    } else {
        let prefix = prefix_cache(model, &ctx, h.clone(), site.layer..model.n_layers(), from);
        (
            h.narrow(1, from, s - from),
            ctx.queries_from(from),
            Some(prefix),
        )
    };
    let targets: Vec<i64> = examples.iter().map(|e| i64::from(e.target)).collect();
    Ok(Prepared {
        ctx,
        h,
        from,
        prefix,
        columns,
        source,
        last: s - 1 - from,
        targets: Tensor::from_data(TensorData::new(targets, [examples.len()]), &device),
    })
}

/// Trains `intervention` in place with DAS. `progress` is called after every step.
///
/// Stops with [`SubspaceError::NonFiniteLoss`] if the loss stops being finite, leaving the
/// intervention at its last good value.
pub fn train(
    lm: &LanguageModel,
    intervention: &mut Intervention,
    examples: &[Example],
    config: &DasConfig,
    mut progress: impl FnMut(&StepReport),
) -> Result<TrainReport> {
    intervention.check(lm.hidden_size())?;
    let objective = DasObjective::new(lm, config.site, examples, config.batch_size)?;
    let device = lm.device();
    let mut params = params_of(intervention)?;
    let (mut state_a, mut state_b) = match &params {
        Params::Exp { l, .. } => (AdamState::new(l), None),
        Params::Frame(f) => (AdamState::new(f), None),
        Params::Boundless(r, b) => (AdamState::new(r), Some(AdamState::new(b))),
    };
    let mut losses = Vec::with_capacity(config.steps);
    let mut first_step = 0;
    let run = match &config.checkpoint {
        Some(ck) => {
            let run = checkpoint::run_fingerprint(examples, config, &params)?;
            if let Some(saved) = checkpoint::load(&ck.path, &run, &params, &device)? {
                if saved.step > config.steps {
                    return input(format!(
                        "the checkpoint {} is at step {}, beyond this run's {} steps; delete it or ask for more steps",
                        ck.path.display(),
                        saved.step,
                        config.steps
                    ));
                }
                first_step = saved.step;
                losses = saved.losses;
                params = saved.params;
                state_a = saved.adam;
                state_b = saved.adam_boundary;
            }
            Some(run)
        }
        None => None,
    };
    let resumed_after = (first_step > 0).then_some(first_step);
    let mut last_good: Option<Params> = None;
    let start = Instant::now();
    for step in first_step..config.steps {
        let batch = &objective.batches[step % objective.batches.len()];
        let temperature = anneal(config.temperature, step, config.steps);
        // Leaves on the autodiff device; the model and cached states stay plain (constants).
        let (live, leaves) = match &params {
            Params::Exp { base, l } => {
                let mut bound = exp_map::norm_bound(l)?;
                if !bound.is_finite() || bound > exp_map::MAX_STEP_BOUND {
                    // One Adam step moved the rotation absurdly far: the learning rate is far
                    // too large. Stop with the last good rotation.
                    if let Some(good) = &last_good {
                        set_params(intervention, good, temperature)?;
                    }
                    return Err(SubspaceError::Diverged {
                        step: step + 1,
                        what: format!("the rotation's generator reached ‖A‖ ≈ {bound:.3e}"),
                    });
                }
                if bound > exp_map::REBASE_ABOVE {
                    let folded = exp_map::exp_rows(base.clone(), l.clone(), bound);
                    params = Params::Exp {
                        base: retract(folded, &device)?,
                        l: l.zeros_like(),
                    };
                    bound = 0.0;
                }
                let Params::Exp { base, l } = &params else {
                    unreachable!()
                };
                let leaf = l.clone().autodiff().require_grad();
                let frame = exp_map::exp_rows(base.clone(), leaf.clone(), bound);
                (frame_intervention(frame), (Some(leaf), None))
            }
            Params::Frame(f) => {
                let f = f.clone().autodiff().require_grad();
                (frame_intervention(f.clone()), (Some(f), None))
            }
            Params::Boundless(r, b) => {
                let r = r.clone().autodiff().require_grad();
                let b = b.clone().autodiff().require_grad();
                let live = Intervention::Boundless(BoundlessSpace {
                    rotation: r.clone(),
                    boundary: b.clone(),
                    temperature,
                });
                (live, (Some(r), Some(b)))
            }
        };
        let loss = objective.loss_tensor(&live, batch);
        let value = to_host(loss.clone().without_autodiff())?[0];
        if !value.is_finite() {
            // The current parameters gave a non-finite loss: keep the ones before them (the
            // initial ones if this is the first step, which `intervention` still holds).
            if let Some(good) = &last_good {
                set_params(intervention, good, temperature)?;
            }
            return Err(SubspaceError::NonFiniteLoss {
                step: step + 1,
                loss: value,
                last_good: step,
            });
        }
        losses.push(value);
        let grads = loss.backward();
        last_good = Some(params.clone());
        params = match (params, leaves) {
            (Params::Exp { base, l }, (Some(leaf), _)) => {
                let g = leaf
                    .grad(&grads)
                    .map(|g| g.without_autodiff())
                    .unwrap_or_else(|| l.zeros_like());
                let l = state_a.step(&config.adam, l, g);
                Params::Exp { base, l }
            }
            (Params::Frame(f), (Some(leaf), _)) => {
                let g = leaf
                    .grad(&grads)
                    .map(|g| g.without_autodiff())
                    .unwrap_or_else(|| f.zeros_like());
                let updated = state_a.step(&config.adam, f, g);
                Params::Frame(retract(updated, &device)?)
            }
            (Params::Boundless(r, b), (Some(lr), Some(lb))) => {
                let gr = lr
                    .grad(&grads)
                    .map(|g| g.without_autodiff())
                    .unwrap_or_else(|| r.zeros_like());
                let gb = lb
                    .grad(&grads)
                    .map(|g| g.without_autodiff())
                    .unwrap_or_else(|| b.zeros_like());
                let r = retract(state_a.step(&config.adam, r, gr), &device)?;
                let b = match state_b.as_mut() {
                    Some(s) => s.step(&config.adam, b, gb).clamp(0.0, 1.0),
                    None => b,
                };
                Params::Boundless(r, b)
            }
            (p, _) => p,
        };
        if let (Some(ck), Some(run)) = (&config.checkpoint, &run) {
            let done = step + 1;
            if done % ck.every == 0 || done == config.steps {
                checkpoint::save(
                    &ck.path,
                    run,
                    &checkpoint::Checkpoint {
                        step: done,
                        losses: losses.clone(),
                        params: params.clone(),
                        adam: state_a.clone(),
                        adam_boundary: state_b.clone(),
                    },
                )?;
            }
        }
        progress(&StepReport {
            step: step + 1,
            steps: config.steps,
            loss: value,
            elapsed: start.elapsed(),
        });
    }
    set_params(
        intervention,
        &params,
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

fn anneal((start, end): (f32, f32), step: usize, steps: usize) -> f32 {
    if steps <= 1 {
        return end;
    }
    let t = step.min(steps - 1) as f32 / (steps - 1) as f32;
    start + (end - start) * t
}

/// The patch of an orthonormal frame `[k, d]` (rows span the patched subspace).
fn frame_intervention(frame: Tensor<2>) -> Intervention {
    Intervention::LowRank(LowRankSpace {
        basis: frame.transpose(),
    })
}

fn params_of(intervention: &Intervention) -> Result<Params> {
    match intervention {
        Intervention::Rotated(r) => {
            if r.unrotate == Unrotate::TutorialLiteral {
                return input(
                    "the tutorial's literal unrotation is for illustration only and cannot be trained; use Unrotate::Inverse",
                );
            }
            if r.n_dims == 0 {
                return input("patching 0 dimensions leaves nothing to train; choose at least 1");
            }
            let d = r.rotation.dims()[0];
            Ok(Params::Exp {
                base: r.rotation.clone().narrow(0, 0, r.n_dims),
                l: Tensor::zeros([d, d], &r.rotation.device()),
            })
        }
        Intervention::LowRank(l) => Ok(Params::Frame(l.basis.clone().transpose())),
        Intervention::Boundless(b) => Ok(Params::Boundless(b.rotation.clone(), b.boundary.clone())),
        other => input(format!(
            "a `{}` intervention has no parameters to train; use a rotated, low-rank or boundless one",
            other.kind()
        )),
    }
}

fn set_params(intervention: &mut Intervention, params: &Params, temperature: f32) -> Result<()> {
    match (intervention, params) {
        (Intervention::Rotated(r), Params::Exp { base, l }) => {
            let f = &exp_map::exp_rows(base.clone(), l.clone(), exp_map::norm_bound(l)?);
            let [k, d] = f.dims();
            let frame: Vec<f64> = to_host(f.clone())?.into_iter().map(f64::from).collect();
            let old: Vec<f64> = to_host(r.rotation.clone())?
                .into_iter()
                .map(f64::from)
                .collect();
            let full = complete_rotation(&frame, &old, k, d);
            *r = RotatedSpace {
                rotation: crate::intervention::host_matrix(&full, [d, d], &f.device()),
                n_dims: r.n_dims,
                unrotate: r.unrotate,
            };
        }
        (Intervention::LowRank(l), Params::Frame(f)) => {
            l.basis = f.clone().transpose();
        }
        (Intervention::Boundless(b), Params::Boundless(r, bound)) => {
            b.rotation = r.clone();
            b.boundary = bound.clone();
            b.temperature = temperature;
        }
        _ => {}
    }
    Ok(())
}

/// Re-orthonormalises the rows of a frame (QR retraction), on the host in `f64`.
fn retract(frame: Tensor<2>, device: &Device) -> Result<Tensor<2>> {
    let [k, d] = frame.dims();
    let mut m: Vec<f64> = to_host(frame)?.into_iter().map(f64::from).collect();
    if !orthonormalize_rows(&mut m, k, d) {
        return Err(SubspaceError::Input(
            "the trained subspace collapsed (its directions became dependent); lower the learning rate".into(),
        ));
    }
    Ok(crate::intervention::host_matrix(&m, [k, d], device))
}
