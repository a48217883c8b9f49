//! The DAS objective: cross-entropy of the patched run's next token against each example's
//! target, with everything below the site computed once per minibatch.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use llama::{ForwardContext, KeyValue};

use super::exp_map;
use super::params::frame_intervention;
use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::lm::{LanguageModel, Prompt};
use crate::pair::{Example, Pair};
use crate::readout::to_host;
use crate::run::{Blocks, Cell, Edit, Window, prefix_cache};
use crate::site::Site;

/// A minibatch prepared for repeated steps: everything below the site is computed once.
pub(super) struct Prepared {
    ctx: ForwardContext,
    /// Stream entering the site's block, columns `from..`.
    h: Tensor<3>,
    /// First recomputed column and the cached keys/values of the columns before it.
    from: usize,
    prefix: Option<Vec<KeyValue>>,
    /// The edited tokens (one per example, or a span's) and their source vectors.
    cells: Vec<Cell>,
    source: Tensor<2>,
    last: usize,
    targets: Tensor<1, Int>,
    /// Each example's weight divided by the batch's total (`None`: all weights are 1, the plain
    /// mean).
    weights: Option<Tensor<1>>,
}

impl Prepared {
    /// Examples in the batch.
    pub(super) fn len(&self) -> usize {
        self.targets.dims()[0]
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
        // The source vectors of every example at once: each distinct source prompt runs once.
        // Rows follow the examples' edited tokens (one each, or a span's).
        let pairs: Vec<&Pair> = examples.iter().map(|e| &e.pair).collect();
        let sources = lm.source_vectors(site, &pairs)?;
        let mut first_row = 0;
        let batches = examples
            .chunks(size)
            .map(|chunk| {
                let rows: usize = chunk.iter().map(|e| e.pair.positions.len()).sum();
                let source = sources.clone().narrow(0, first_row, rows);
                first_row += rows;
                prepare(lm, site, chunk, source)
            })
            .collect::<Result<_>>()?;
        Ok(DasObjective { lm, site, batches })
    }

    pub fn n_batches(&self) -> usize {
        self.batches.len()
    }

    pub(super) fn batch(&self, i: usize) -> &Prepared {
        &self.batches[i % self.batches.len()]
    }

    /// Mean cross-entropy of batch `i` under `intervention` (no gradient).
    pub fn loss(&self, intervention: &Intervention, i: usize) -> Result<f32> {
        let loss = self.loss_tensor(intervention, self.batch(i))?;
        Ok(to_host(loss)?[0])
    }

    /// Next-token logits `[batch, vocab]` of batch `i` under `intervention`.
    pub fn logits(&self, intervention: &Intervention, i: usize) -> Result<Tensor<2>> {
        self.patched_logits(intervention, self.batch(i))
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
        let loss = self.loss_tensor(&frame_intervention(frame), self.batch(i))?;
        value_and_grad(loss, &leaf)
    }

    /// Loss of batch `i` when the patched subspace is spanned by the rows of `frame` (`[k, d]`,
    /// orthonormal), and its gradient with respect to `frame`.
    pub fn loss_and_grad(&self, frame: &Tensor<2>, i: usize) -> Result<(f32, Tensor<2>)> {
        let leaf = frame.clone().autodiff().require_grad();
        let loss = self.loss_tensor(&frame_intervention(leaf.clone()), self.batch(i))?;
        value_and_grad(loss, &leaf)
    }

    fn patched_logits(&self, intervention: &Intervention, b: &Prepared) -> Result<Tensor<2>> {
        let model = &self.lm.model;
        let edit = Edit {
            site: self.site,
            cells: b.cells.clone(),
            source: b.source.clone(),
            intervention,
        };
        let window = b.prefix.as_deref().map(|prefix| Window {
            from: b.from,
            prefix,
        });
        let ran = Blocks::new(self.site.layer..model.n_layers())
            .with_edits(std::slice::from_ref(&edit))
            .after(window)
            .stopped_by(Some(self.lm.stop_flag()))
            .run(model, &b.ctx, b.h.clone())?;
        Ok(model.logits_at(ran.h, b.last))
    }

    /// Weighted mean cross-entropy of a prepared batch (`Σ wᵢ CEᵢ / Σ wᵢ`; the plain mean when
    /// every weight is 1), `[1]`.
    pub(super) fn loss_tensor(
        &self,
        intervention: &Intervention,
        b: &Prepared,
    ) -> Result<Tensor<1>> {
        let logits = self.patched_logits(intervention, b)?;
        let [n, _] = logits.dims();
        let logp = log_softmax(logits, 1);
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
    let grads = loss.backward();
    let grad = leaf
        .grad(&grads)
        .map(|g| g.without_autodiff())
        .unwrap_or_else(|| leaf.clone().without_autodiff().zeros_like());
    Ok((value, grad))
}

/// A minibatch of `examples`, whose source vectors at the site are `source` (`[edited tokens,
/// site width]`).
fn prepare(
    lm: &LanguageModel,
    site: Site,
    examples: &[Example],
    source: Tensor<2>,
) -> Result<Prepared> {
    let model = &lm.model;
    let device = lm.device();
    let pairs: Vec<&Pair> = examples.iter().map(|e| &e.pair).collect();
    let bases: Vec<&Prompt> = pairs.iter().map(|p| &p.base).collect();
    let base_batch = lm.batch(&bases);
    let stop = Some(lm.stop_flag());

    // Base stream entering the site's block.
    let ctx = model.context(&base_batch);
    let h = model.embed(base_batch.ids.clone());
    let h = Blocks::new(0..site.layer)
        .stopped_by(stop)
        .run(model, &ctx, h)?
        .h;
    let cells = LanguageModel::pair_cells(&pairs, |r, position| base_batch.column(r, position));
    let from = cells.iter().map(|c| c.column).min().unwrap_or(0);
    let s = base_batch.seq_len;
    let (h, ctx, prefix) = if from == 0 {
        (h, ctx, None)
    } else {
        let layers = site.layer..model.n_layers();
        let prefix = prefix_cache(model, &ctx, h.clone(), layers, from, stop)?;
        (
            h.narrow(1, from, s - from),
            ctx.queries_from(from),
            Some(prefix),
        )
    };
    let targets: Vec<i64> = examples.iter().map(|e| i64::from(e.target)).collect();
    let weights = if examples.iter().all(|e| e.weight == 1.0) {
        None
    } else {
        let total: f32 = examples.iter().map(|e| e.weight).sum();
        let w: Vec<f32> = examples.iter().map(|e| e.weight / total).collect();
        Some(Tensor::from_data(
            TensorData::new(w, [examples.len()]),
            &device,
        ))
    };
    Ok(Prepared {
        ctx,
        h,
        from,
        prefix,
        cells,
        source,
        last: s - 1 - from,
        targets: Tensor::from_data(TensorData::new(targets, [examples.len()]), &device),
        weights,
    })
}
