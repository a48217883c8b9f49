//! The DAS objective: cross-entropy of the patched run's next token against each example's
//! target, with everything below the site computed once ([`SiteCache`]).

use std::sync::OnceLock;

use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::cache::{Prepared, SiteCache};
use super::exp_map;
use super::params::frame_intervention;
use crate::engine::{Edit, Lane, Window, lanes_through_last};
use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::lm::LanguageModel;
use crate::pair::Example;
use crate::readout::to_host;
use crate::site::Site;

/// The DAS objective over a fixed set of examples, with the layers below the site cached
/// (`SiteCache`). Step `i` reads minibatch `i mod n` of epoch `i / n` (`n` minibatches an
/// epoch): the examples in their given order in epoch 0, a fresh seeded order in each later one.
pub struct DasObjective<'a> {
    lm: &'a LanguageModel,
    site: Site,
    cache: SiteCache,
    size: usize,
    seed: u64,
    /// The examples trained on (indices into those given; all unless set).
    active: Vec<usize>,
    /// The one minibatch, when all active examples fit in one (its order changes nothing).
    whole: OnceLock<Prepared>,
    /// What one more window group of a minibatch is worth, in columns.
    group_cost: usize,
}

impl<'a> DasObjective<'a> {
    /// Prepares `examples` in minibatches of `batch_size` (all at once for `None`).
    pub fn new(
        lm: &'a LanguageModel,
        site: Site,
        examples: &[Example],
        batch_size: Option<usize>,
    ) -> Result<Self> {
        lm.site_width(site)?;
        if examples.is_empty() {
            return Err(SubspaceError::Data(
                "no training examples: give at least one (base, source, target)".into(),
            ));
        }
        lm.check_pairs(examples.iter().map(|e| &e.pair))?;
        let vocab = lm.model.config.vocab_size;
        if let Some(e) = examples
            .iter()
            .find(|e| !(e.weight.is_finite() && e.weight > 0.0))
        {
            return crate::error::bad_setting(
                "example weight",
                e.weight,
                "a finite number above 0",
            );
        }
        if let Some(e) = examples.iter().find(|e| e.target as usize >= vocab) {
            return Err(SubspaceError::Data(format!(
                "target token id {} is outside the vocabulary ({vocab} tokens)",
                e.target
            )));
        }
        let size = match batch_size {
            Some(0) => return crate::error::bad_setting("batch size", 0, "at least 1"),
            Some(n) => n,
            None => examples.len(),
        };
        let cache = SiteCache::build(lm, site, examples)?;
        Ok(DasObjective {
            lm,
            site,
            cache,
            size,
            seed: 0,
            active: (0..examples.len()).collect(),
            whole: OnceLock::new(),
            group_cost: crate::engine::batching::window_group_cost(),
        })
    }

    /// Trains on these examples only (indices into those given, in this order; e.g. the cause
    /// pairs of a set whose isolate pairs are only scored). Out-of-range indices are dropped.
    pub fn with_active(mut self, active: Vec<usize>) -> Self {
        self.set_active(active);
        self
    }

    /// [`DasObjective::with_active`] in place: several runs can train in turn on different
    /// examples of one cache (e.g. DAS on the cause pairs, then MDAS on all of them).
    pub fn set_active(&mut self, active: Vec<usize>) {
        self.active = active
            .into_iter()
            .filter(|&i| i < self.cache.len())
            .collect();
        self.whole = OnceLock::new();
    }

    /// Runs each minibatch in groups of examples with similar windows (columns from the first
    /// patched token to the prompt's end), one more group being worth `cost` columns of one
    /// example: 0 gives each distinct window its own group, `usize::MAX` one group for the whole
    /// batch. What it changes is speed, not the loss (up to rounding). The default is measured
    /// (docs/history/BENCHMARKS-sessions.md) and `SUBSPACE_WINDOW_GROUP_COST` sets it.
    pub fn with_window_group_cost(mut self, cost: usize) -> Self {
        self.group_cost = cost;
        self.whole = OnceLock::new();
        self
    }

    /// The examples trained on.
    pub fn active(&self) -> &[usize] {
        &self.active
    }

    pub fn site(&self) -> Site {
        self.site
    }

    /// The objective [`super::train`] builds for `config`: its site, batch size and order seed.
    /// A stop while the examples are prepared says that a checkpoint, if any, is untouched.
    pub fn for_config(
        lm: &'a LanguageModel,
        examples: &[Example],
        config: &super::DasConfig,
    ) -> Result<Self> {
        match DasObjective::new(lm, config.site, examples, config.batch_size) {
            Err(SubspaceError::Interrupted { step, .. }) if config.checkpoint.is_some() => {
                Err(SubspaceError::Interrupted {
                    step,
                    resume: "stopped while preparing the examples, before any step; the checkpoint is as it was: train again to resume".into(),
                })
            }
            other => Ok(other?.with_order_seed(config.seed)),
        }
    }

    /// Draws the order of each epoch after the first with `seed`.
    pub fn with_order_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Minibatches per epoch (at least 1).
    pub fn n_batches(&self) -> usize {
        self.active.len().div_ceil(self.size).max(1)
    }

    /// The examples of step `i`'s minibatch (indices into the examples given).
    pub fn batch_examples(&self, i: usize) -> Vec<usize> {
        let (n, per_epoch) = (self.active.len(), self.n_batches());
        let (epoch, k) = (i / per_epoch, i % per_epoch);
        let mut order = self.active.clone();
        if epoch > 0 {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ ((epoch as u64) << 24));
            order.shuffle(&mut rng);
        }
        let start = (k * self.size).min(n);
        order[start..(start + self.size).min(n)].to_vec()
    }

    /// Step `i`'s minibatch, assembled from the cache.
    pub(super) fn batch(&self, i: usize) -> Result<Prepared> {
        if self.n_batches() > 1 {
            return self
                .cache
                .batch(self.lm, &self.batch_examples(i), self.group_cost);
        }
        if let Some(b) = self.whole.get() {
            return Ok(b.clone());
        }
        let b = self
            .cache
            .batch(self.lm, &self.batch_examples(i), self.group_cost)?;
        Ok(self.whole.get_or_init(|| b).clone())
    }

    /// Whether the patched run's most likely next token is each example's target, for the
    /// examples `which`, `batch` at a time (e.g. the training examples scored after training,
    /// from the same cache).
    pub fn hits(
        &self,
        intervention: &Intervention,
        which: &[usize],
        batch: usize,
    ) -> Result<Vec<bool>> {
        let best = self.predictions(intervention, which, batch)?;
        Ok(best
            .iter()
            .zip(which)
            .map(|(&b, &i)| b == self.cache.target(i))
            .collect())
    }

    /// The patched run's greedy next token for each of the given examples (what [`Self::hits`]
    /// compares with the targets; a miss's token says what the run said instead).
    pub fn predictions(
        &self,
        intervention: &Intervention,
        which: &[usize],
        batch: usize,
    ) -> Result<Vec<u32>> {
        if batch == 0 {
            return crate::error::bad_setting("batch", 0, "at least 1");
        }
        let mut out = Vec::with_capacity(which.len());
        for chunk in which.chunks(batch) {
            let best = kernels::pool::on_pool(|| {
                let prepared = self.cache.batch(self.lm, chunk, self.group_cost)?;
                let logits = self.patched_logits(intervention, &prepared)?;
                to_host(logits.argmax(1).float())
            })?;
            // Token ids below 2^24 are exact in f32 (vocabularies are far smaller).
            out.extend(best.iter().map(|&b| b as u32));
        }
        Ok(out)
    }

    /// Mean cross-entropy of step `i`'s minibatch under `intervention` (no gradient).
    pub fn loss(&self, intervention: &Intervention, i: usize) -> Result<f32> {
        let loss = self.loss_tensor(intervention, &self.batch(i)?)?;
        Ok(to_host(loss)?[0])
    }

    /// Next-token logits `[batch, vocab]` of step `i`'s minibatch under `intervention`.
    pub fn logits(&self, intervention: &Intervention, i: usize) -> Result<Tensor<2>> {
        self.patched_logits(intervention, &self.batch(i)?)
    }

    /// Next-token logits `[examples, vocab]` of the given examples under `intervention` (e.g.
    /// to score the training examples after training, from the same cache).
    pub fn logits_of(&self, intervention: &Intervention, which: &[usize]) -> Result<Tensor<2>> {
        self.patched_logits(
            intervention,
            &self.cache.batch(self.lm, which, self.group_cost)?,
        )
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
        let frame = exp_map::exp_rows(base.clone(), leaf.clone(), bound)?;
        let loss = self.loss_tensor(&frame_intervention(frame), &self.batch(i)?)?;
        value_and_grad(loss, &leaf)
    }

    /// Loss of batch `i` when the patched subspace is spanned by the rows of `frame` (`[k, d]`,
    /// orthonormal), and its gradient with respect to `frame`.
    pub fn loss_and_grad(&self, frame: &Tensor<2>, i: usize) -> Result<(f32, Tensor<2>)> {
        let leaf = frame.clone().autodiff().require_grad();
        let loss = self.loss_tensor(&frame_intervention(leaf.clone()), &self.batch(i)?)?;
        value_and_grad(loss, &leaf)
    }

    /// Next-token logits `[batch, vocab]` of a prepared batch, in the batch's order.
    fn patched_logits(&self, intervention: &Intervention, b: &Prepared) -> Result<Tensor<2>> {
        let stacked = self.stacked_logits(intervention, b)?;
        Ok(match b.batch_order() {
            None => stacked,
            Some(order) => {
                let order: Vec<i64> = order.into_iter().map(|r| r as i64).collect();
                let n = order.len();
                let order = Tensor::from_data(TensorData::new(order, [n]), &self.lm.device());
                stacked.select(0, order)
            }
        })
    }

    /// Next-token logits `[batch, vocab]` of a prepared batch, its groups' rows laid end to
    /// end: the groups run the blocks from the site up together ([`crate::engine::lanes_through`];
    /// for a block's output, from the next block, the edit on its input:
    /// `cache::entry_site`), and the LM head takes all their last columns at once.
    fn stacked_logits(&self, intervention: &Intervention, b: &Prepared) -> Result<Tensor<2>> {
        let model = &self.lm.model;
        let edits: Vec<Edit> = b
            .groups
            .iter()
            .map(|g| Edit {
                site: self.cache.entry(),
                cells: g.cells.clone(),
                source: g.source.clone(),
                intervention,
            })
            .collect();
        let lanes: Vec<Lane> = b
            .groups
            .iter()
            .zip(&edits)
            .map(|(g, edit)| Lane {
                ctx: &g.ctx,
                h: g.h.clone(),
                window: g.prefix.as_deref().map(|prefix| Window {
                    from: g.from,
                    prefix,
                }),
                edits: std::slice::from_ref(edit),
            })
            .collect();
        // Each group's window ends at its prompts' last column (they are left-padded): only
        // the stream there is read.
        let last = lanes_through_last(
            model,
            self.cache.entry().layer..model.n_layers(),
            lanes,
            Some(self.lm.stop_flag()),
        )?;
        let logits = model.logits(Tensor::cat(last, 0));
        let [n, _, vocab] = logits.dims();
        Ok(logits.reshape([n, vocab]))
    }

    /// Weighted mean cross-entropy of a prepared batch (`Σ wᵢ CEᵢ / Σ wᵢ`; the plain mean when
    /// every weight is 1), `[1]`.
    pub(super) fn loss_tensor(
        &self,
        intervention: &Intervention,
        b: &Prepared,
    ) -> Result<Tensor<1>> {
        let logits = self.stacked_logits(intervention, b)?;
        let [n, _] = logits.dims();
        let logp = kernels::fused::log_softmax(logits);
        let picked = logp.gather(1, b.targets.clone().reshape([n, 1]));
        Ok(match &b.weights {
            None => picked.mean().neg().reshape([1]),
            Some(w) => (picked.reshape([n]) * w.clone()).sum().neg().reshape([1]),
        })
    }
}

/// The loss's value and its gradient with respect to `leaf` (zeros if the loss does not depend
/// on it).
fn value_and_grad(loss: Tensor<1>, leaf: &Tensor<2>) -> Result<(f32, Tensor<2>)> {
    let value = to_host(loss.clone().without_autodiff())?[0];
    let grads = kernels::pool::on_pool(|| loss.backward());
    let grad = leaf
        .grad(&grads)
        .map(|g| g.without_autodiff())
        .unwrap_or_else(|| leaf.clone().without_autodiff().zeros_like());
    Ok((value, grad))
}
