//! The one forward loop that reads and edits the residual stream: the model's blocks, with edits
//! applied at their sites. Predicting, tracing, patching, sweeping, training and generating all
//! go through [`Blocks`]; they differ only in which layers they run, from which column, and what
//! they keep ([`Keep`]). [`super::lanes`] runs several batches through the same blocks at once.

use std::collections::HashMap;
use std::ops::Range;

use burn::tensor::Tensor;
use llama::{ForwardContext, Hook, Inner, KeyValue, Llama, LlamaConfig};

use super::stop::{self, StopFlag};
use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::site::{Component, Site};

/// One token of one batch row: where an edit writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cell {
    pub row: usize,
    /// Column in the padded batch.
    pub column: usize,
}

/// One intervention in one forward pass: at `site`, the vector of each cell `cells[i]` becomes
/// `intervention.apply(vector, source[i])`. A row may have several cells (a span of tokens).
#[derive(Debug, Clone)]
pub struct Edit<'a> {
    pub site: Site,
    pub cells: Vec<Cell>,
    /// `[cells, width]`: the source vector of each cell (`width`: the site's, e.g. one head's).
    pub source: Tensor<2>,
    pub intervention: &'a Intervention,
}

impl Edit<'_> {
    /// Cells `columns[r]` of rows `0..columns.len()`: one token per row.
    pub fn one_per_row(columns: &[usize]) -> Vec<Cell> {
        columns
            .iter()
            .enumerate()
            .map(|(row, &column)| Cell { row, column })
            .collect()
    }
}

/// The components of every layer of one forward pass, and the final logits.
#[derive(Debug, Clone)]
pub struct Trace {
    /// `layers[l]`: each kept component's whole vector (all heads), `[batch, seq, width]`.
    pub layers: Vec<HashMap<Component, Tensor<3>>>,
    /// `[batch, seq, vocab]`; `None` for a trace that stopped below the last layer.
    pub logits: Option<Tensor<3>>,
    /// Width of one head (to cut a head's features out of a component).
    pub head_dim: usize,
}

impl Trace {
    /// The hidden states at a site, `[batch, seq, width]` (one head's features for a head
    /// site).
    pub fn at(&self, site: Site) -> Result<Tensor<3>> {
        let whole = self
            .layers
            .get(site.layer)
            .and_then(|kept| kept.get(&site.component))
            .ok_or_else(|| {
                SubspaceError::Data(format!(
                    "{site} was not kept by this trace (it kept layers 0 to {} of {})",
                    self.layers.len().saturating_sub(1),
                    self.kept_names()
                ))
            })?
            .clone();
        Ok(match site.head {
            Some(h) => whole.narrow(2, h * self.head_dim, self.head_dim),
            None => whole,
        })
    }

    /// One vector: row `row`, column `column` of a site, `[width]`.
    pub fn vector(&self, site: Site, row: usize, column: usize) -> Result<Tensor<1>> {
        let h = self.at(site)?;
        let [_, _, d] = h.dims();
        Ok(h.narrow(0, row, 1).narrow(1, column, 1).reshape([d]))
    }

    fn kept_names(&self) -> String {
        let mut names: Vec<String> = self
            .layers
            .first()
            .map(|k| k.keys().map(|c| c.to_string()).collect())
            .unwrap_or_default();
        names.sort();
        names.join(", ")
    }
}

/// What a run of blocks keeps besides the final stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep<'a> {
    /// These components of every block run (a [`Trace`]); empty for none.
    pub components: &'a [Component],
    /// The keys/values of every block run (to continue from them: training, generation).
    pub cache: bool,
    /// The attention probabilities of every block run.
    pub patterns: bool,
}

/// Zero tensors added to the vector of (layer, component) sites, each `[batch, seq, width]` (the
/// whole component): autodiff leaves whose gradients are the gradients with respect to those
/// activations, all from one backward pass (attribution patching).
pub type Taps = HashMap<(usize, Component), Tensor<3>>;

/// What [`Blocks::run`] returns.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The stream leaving the last block run.
    pub h: Tensor<3>,
    /// Per block run, the components asked for in [`Keep::components`].
    pub components: Vec<HashMap<Component, Tensor<3>>>,
    /// Per block run, when [`Keep::cache`]: keys/values of all columns (cached + new).
    pub cache: Vec<KeyValue>,
    /// Per block run, when [`Keep::patterns`]: `[batch, n_heads, seq_q, seq_k]`.
    pub patterns: Vec<Tensor<4>>,
}

impl Ran {
    /// A run that kept nothing but its stream `h`.
    pub(crate) fn stream(h: Tensor<3>) -> Ran {
        Ran {
            h,
            components: Vec::new(),
            cache: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// Columns computed before the ones being run: their first column and, per block of the run,
/// their keys/values. Columns before an edit cannot change (attention is causal), so training
/// computes them once; generation extends them by one column a token.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// Batch column of `h`'s first column.
    pub from: usize,
    /// Keys/values of columns `..from`, one per block of the range: a row for each of the
    /// batch's, or one that every row reads (a beginning they share; see
    /// [`llama::model::Attention::forward_cached`]).
    pub prefix: &'a [KeyValue],
}

/// Which blocks a run goes through and what it does there: the edits applied at their sites,
/// the columns already computed (a [`Window`]), what it keeps, and the flag that stops it.
///
/// ```ignore
/// let ran = Blocks::new(site.layer..model.n_layers())
///     .with_edits(&edits)
///     .after(window)
///     .stopped_by(Some(&stop))
///     .run(model, &ctx, h)?;
/// ```
#[derive(Debug, Clone)]
pub struct Blocks<'a> {
    pub layers: Range<usize>,
    pub edits: &'a [Edit<'a>],
    /// Columns computed before this run (`None`: `h` starts at column 0).
    pub window: Option<Window<'a>>,
    pub keep: Keep<'a>,
    /// Added at their sites after the edits ([`Taps`]).
    pub taps: Option<&'a Taps>,
    /// Read before each block: a raised flag ends the run with
    /// [`crate::SubspaceError::Interrupted`] (a block takes well under a second).
    pub stop: Option<&'a StopFlag>,
}

impl<'a> Blocks<'a> {
    /// Blocks `layers`, unedited, from column 0, keeping only the final stream.
    pub fn new(layers: Range<usize>) -> Self {
        Blocks {
            layers,
            edits: &[],
            window: None,
            keep: Keep::default(),
            taps: None,
            stop: None,
        }
    }

    /// Adds each tap to its site's vector (after the edits there, before it is kept).
    pub fn tapped(mut self, taps: &'a Taps) -> Self {
        self.taps = Some(taps);
        self
    }

    pub fn with_edits(mut self, edits: &'a [Edit<'a>]) -> Self {
        self.edits = edits;
        self
    }

    /// `h` holds only columns `window.from..`; the earlier ones are in `window.prefix`.
    pub fn after(mut self, window: Option<Window<'a>>) -> Self {
        self.window = window;
        self
    }

    pub fn keeping(mut self, keep: Keep<'a>) -> Self {
        self.keep = keep;
        self
    }

    pub fn stopped_by(mut self, stop: Option<&'a StopFlag>) -> Self {
        self.stop = stop;
        self
    }

    /// Runs the blocks on `h` (the input of the first of them), applying the edits at their
    /// sites.
    ///
    /// With a window, `ctx` must be [`ForwardContext::queries_from`]`(window.from)`.
    ///
    /// # Shapes
    /// - `h`: `[batch, seq − from, hidden]` → [`Ran::h`] the same
    pub fn run(&self, model: &Llama, ctx: &ForwardContext, h: Tensor<3>) -> Result<Ran> {
        kernels::pool::on_pool(|| self.run_here(model, ctx, h))
    }

    /// [`Blocks::run`] on this thread.
    fn run_here(&self, model: &Llama, ctx: &ForwardContext, mut h: Tensor<3>) -> Result<Ran> {
        let from = self.window.map_or(0, |w| w.from);
        let mut ran = Ran {
            h: h.clone(),
            components: Vec::new(),
            cache: Vec::new(),
            patterns: Vec::new(),
        };
        for (i, l) in self.layers.clone().enumerate() {
            stop::check(self.stop)?;
            let block = &model.blocks[l];
            let prefix = self.window.map(|w| &w.prefix[i]);
            let mut inside = Inside {
                layer: l,
                edits: self.edits,
                from,
                config: &model.config,
                keep: self.keep,
                taps: self.taps,
                kept: HashMap::new(),
                pattern: None,
            };
            // The block's residual sum, written once: h + attn(norm h), then + mlp(norm .).
            let input = inside.at(Component::BlockInput, h);
            // Keys and values only where they are kept: joining the new ones to a prefix's and
            // rotating them apart from the fused attention cost a fifth of a pass.
            let (attn, kv) = if self.keep.cache {
                let (attn, kv) =
                    block.attention_branch_hooked(input.clone(), ctx, prefix, &mut inside);
                (attn, Some(kv))
            } else {
                let attn = block.attention_output_hooked(input.clone(), ctx, prefix, &mut inside);
                (attn, None)
            };
            let attn = inside.at(Component::AttentionOutput, attn);
            let mid = input + attn;
            let mlp = block.mlp_branch_hooked(mid.clone(), &mut inside);
            let mlp = inside.at(Component::MlpOutput, mlp);
            h = inside.at(Component::BlockOutput, mid + mlp);
            if !self.keep.components.is_empty() {
                ran.components.push(inside.kept);
            }
            if let Some(p) = inside.pattern {
                ran.patterns.push(p);
            }
            if let Some(kv) = kv {
                ran.cache.push(kv);
            }
        }
        ran.h = h;
        Ok(ran)
    }
}

/// One block's edits and keeps, for the vectors on the residual stream (called by the block
/// loop) and inside attention and the MLP (called by the model, as its [`Hook`]).
pub(super) struct Inside<'a> {
    layer: usize,
    edits: &'a [Edit<'a>],
    from: usize,
    config: &'a LlamaConfig,
    keep: Keep<'a>,
    taps: Option<&'a Taps>,
    kept: HashMap<Component, Tensor<3>>,
    pattern: Option<Tensor<4>>,
}

impl Inside<'_> {
    /// The vector of `component` after this layer's edits there, kept if asked for.
    fn at(&mut self, component: Component, t: Tensor<3>) -> Tensor<3> {
        let t = apply_edits(t, self.layer, component, self.edits, self.from, self.config);
        let t = match self
            .taps
            .and_then(|taps| taps.get(&(self.layer, component)))
        {
            Some(tap) => t + tap.clone(),
            None => t,
        };
        if self.keep.components.contains(&component) {
            self.kept.insert(component, t.clone());
        }
        t
    }
}

impl Hook for Inside<'_> {
    fn inner(&mut self, at: Inner, t: Tensor<3>) -> Tensor<3> {
        self.at(Component::of_inner(at), t)
    }

    fn attention_probs(&mut self, probs: &Tensor<4>) {
        if self.keep.patterns {
            self.pattern = Some(probs.clone());
        }
    }

    fn wants_attention_probs(&self) -> bool {
        self.keep.patterns
    }
}

/// Applies the edits at (`layer`, `component`) to `h`, the component's whole vector, whose
/// first column is batch column `from`. Cells before `from` (already in a cache) or past `h`'s
/// last column are skipped; an edit on one head changes only that head's features.
pub fn apply_edits(
    mut h: Tensor<3>,
    layer: usize,
    component: Component,
    edits: &[Edit],
    from: usize,
    config: &LlamaConfig,
) -> Tensor<3> {
    let [_, s, width] = h.dims();
    for edit in edits
        .iter()
        .filter(|e| e.site.layer == layer && e.site.component == component)
    {
        let features = edit.site.features(config).unwrap_or(0..width);
        let w = features.len();
        let live: Vec<usize> = (0..edit.cells.len())
            .filter(|&i| edit.cells[i].column >= from && edit.cells[i].column - from < s)
            .collect();
        if live.is_empty() {
            continue;
        }
        let pick = |i: usize| {
            let Cell { row, column } = edit.cells[i];
            h.clone()
                .narrow(0, row, 1)
                .narrow(1, column - from, 1)
                .narrow(2, features.start, w)
                .reshape([1, w])
        };
        let base = Tensor::cat(live.iter().map(|&i| pick(i)).collect(), 0);
        let source = if live.len() == edit.cells.len() {
            edit.source.clone()
        } else {
            Tensor::cat(
                live.iter()
                    .map(|&i| edit.source.clone().narrow(0, i, 1))
                    .collect(),
                0,
            )
        };
        let new = edit.intervention.apply(base, source);
        for (k, &i) in live.iter().enumerate() {
            let Cell { row, column } = edit.cells[i];
            let c = column - from;
            let v = new.clone().narrow(0, k, 1).reshape([1, 1, w]);
            h = h.slice_assign([row..row + 1, c..c + 1, features.clone()], v);
        }
    }
    h
}
