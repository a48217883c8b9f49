//! The one forward loop that reads and edits the residual stream: the model's blocks, with edits
//! applied at their sites. Predicting, tracing, patching, sweeping, training and generating all
//! run [`Blocks`]; they differ only in which layers they run, from which column, and what they
//! keep ([`Keep`]).

use std::collections::HashMap;
use std::ops::Range;

use burn::tensor::Tensor;
use llama::{ForwardContext, Hook, Inner, KeyValue, Llama, LlamaConfig, Ragged, TokenBatch};

use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::site::{Component, Site};
use crate::stop::{self, StopFlag};

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
            stop: None,
        }
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
        crate::pool::on_pool(|| self.run_here(model, ctx, h))
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

/// One of several batches run through the same blocks together ([`run_lanes`]): its own
/// context, stream, cached columns and edits.
#[derive(Debug, Clone)]
pub struct Lane<'a> {
    /// With a window, [`ForwardContext::queries_from`]`(window.from)`.
    pub ctx: &'a ForwardContext,
    /// `[batch, seq − from, hidden]`: the stream entering the first block.
    pub h: Tensor<3>,
    pub window: Option<Window<'a>>,
    pub edits: &'a [Edit<'a>],
}

/// Blocks `layers` over several batches of different shapes at once (a minibatch's window
/// groups), returning each one's stream leaving the last block: what [`Blocks::run`] of each
/// alone returns. The norms, projections and MLP of each block run once over all the batches'
/// tokens laid end to end ([`Ragged`]); attention and the edits within each batch. Edits inside
/// attention or the MLP (queries, keys, values, head outputs, MLP neurons) need their batch's
/// own tensors there: lanes with such edits run alone.
pub fn run_lanes(
    model: &Llama,
    layers: Range<usize>,
    lanes: Vec<Lane>,
    stop: Option<&StopFlag>,
) -> Result<Vec<Tensor<3>>> {
    run_lanes_to(model, layers, lanes, stop, false)
}

/// [`run_lanes`]'s streams at each lane's last column only (`[batch, 1, hidden]` each): what
/// the next-token logits read. Where no edit is at the last block, that block computes only
/// what the last column needs: the keys and values of every column, the rest at the last
/// ([`llama::model::Block::forward_ragged_last`]).
pub fn run_lanes_last(
    model: &Llama,
    layers: Range<usize>,
    lanes: Vec<Lane>,
    stop: Option<&StopFlag>,
) -> Result<Vec<Tensor<3>>> {
    run_lanes_to(model, layers, lanes, stop, true)
}

/// [`run_lanes`], keeping each lane's keys/values of every block run ([`Ran::cache`], as
/// [`Blocks::run`] keeping them returns): several beginnings run at once, to be continued.
pub(crate) fn run_lanes_cached(
    model: &Llama,
    layers: Range<usize>,
    lanes: Vec<Lane>,
    stop: Option<&StopFlag>,
) -> Result<Vec<Ran>> {
    crate::pool::on_pool(|| run_lanes_here(model, layers, lanes, stop, false, true))
}

fn run_lanes_to(
    model: &Llama,
    layers: Range<usize>,
    lanes: Vec<Lane>,
    stop: Option<&StopFlag>,
    last_only: bool,
) -> Result<Vec<Tensor<3>>> {
    let ran =
        crate::pool::on_pool(|| run_lanes_here(model, layers, lanes, stop, last_only, false))?;
    Ok(ran.into_iter().map(|r| r.h).collect())
}

/// [`run_lanes_to`] on this thread; `cache`: keep each lane's keys/values.
fn run_lanes_here(
    model: &Llama,
    layers: Range<usize>,
    lanes: Vec<Lane>,
    stop: Option<&StopFlag>,
    last_only: bool,
    cache: bool,
) -> Result<Vec<Ran>> {
    let last_column = |h: Tensor<3>| {
        let s = h.dims()[1];
        h.narrow(1, s - 1, 1)
    };
    let on_stream = |e: &Edit| {
        matches!(
            e.site.component,
            Component::BlockInput
                | Component::AttentionOutput
                | Component::MlpOutput
                | Component::BlockOutput
        )
    };
    if (lanes.len() == 1 && !last_only) || lanes.iter().any(|l| !l.edits.iter().all(on_stream)) {
        return lanes
            .into_iter()
            .map(|l| {
                let keep = Keep {
                    cache,
                    ..Keep::default()
                };
                let mut ran = Blocks::new(layers.clone())
                    .with_edits(l.edits)
                    .after(l.window)
                    .keeping(keep)
                    .stopped_by(stop)
                    .run(model, l.ctx, l.h)?;
                if last_only {
                    ran.h = last_column(ran.h);
                }
                Ok(ran)
            })
            .collect();
    }
    let ragged = Ragged::of(&lanes.iter().map(|l| l.h.clone()).collect::<Vec<_>>());
    let ctxs: Vec<&ForwardContext> = lanes.iter().map(|l| l.ctx).collect();
    let froms: Vec<usize> = lanes
        .iter()
        .map(|l| l.window.map_or(0, |w| w.from))
        .collect();
    let config = &model.config;
    // The edits at (layer, component) applied to each lane's part of a packed tensor (left
    // packed where none applies).
    let edited = |t: Tensor<3>, layer: usize, component: Component| {
        let touched = lanes.iter().any(|l| {
            l.edits
                .iter()
                .any(|e| e.site.layer == layer && e.site.component == component)
        });
        if !touched {
            return t;
        }
        let parts = ragged
            .unpack(t)
            .into_iter()
            .enumerate()
            .map(|(i, part)| apply_edits(part, layer, component, lanes[i].edits, froms[i], config))
            .collect();
        ragged.pack(parts)
    };
    // The last block computes only what the last columns need, unless an edit is there.
    let prune_last = last_only
        && !layers.is_empty()
        && !lanes
            .iter()
            .any(|lane| lane.edits.iter().any(|e| e.site.layer == layers.end - 1));
    let mut h = ragged.pack(lanes.iter().map(|l| l.h.clone()).collect());
    let mut caches: Vec<Vec<KeyValue>> = vec![Vec::new(); lanes.len()];
    for (i, l) in layers.clone().enumerate() {
        stop::check(stop)?;
        let block = &model.blocks[l];
        let prefixes: Vec<Option<&KeyValue>> = lanes
            .iter()
            .map(|lane| lane.window.map(|w| &w.prefix[i]))
            .collect();
        if prune_last && l == layers.end - 1 {
            let out = block.forward_ragged_last(h, &ragged, &ctxs, &prefixes);
            return Ok(ragged
                .unpack_last(out)
                .into_iter()
                .map(Ran::stream)
                .collect());
        }
        let input = edited(h, l, Component::BlockInput);
        let attn = if cache {
            let (attn, kvs) =
                block.attention_branch_ragged_cached(input.clone(), &ragged, &ctxs, &prefixes);
            caches.iter_mut().zip(kvs).for_each(|(c, kv)| c.push(kv));
            attn
        } else {
            block.attention_branch_ragged(input.clone(), &ragged, &ctxs, &prefixes)
        };
        let mid = input + edited(attn, l, Component::AttentionOutput);
        let mlp = edited(block.mlp_branch(mid.clone()), l, Component::MlpOutput);
        h = edited(mid + mlp, l, Component::BlockOutput);
    }
    let parts = ragged.unpack(h);
    Ok(parts
        .into_iter()
        .zip(caches)
        .map(|(h, cache)| Ran {
            h: if last_only { last_column(h) } else { h },
            components: Vec::new(),
            cache,
            patterns: Vec::new(),
        })
        .collect())
}

/// One block's edits and keeps, for the vectors on the residual stream (called by the block
/// loop) and inside attention and the MLP (called by the model, as its [`Hook`]).
struct Inside<'a> {
    layer: usize,
    edits: &'a [Edit<'a>],
    from: usize,
    config: &'a LlamaConfig,
    keep: Keep<'a>,
    kept: HashMap<Component, Tensor<3>>,
    pattern: Option<Tensor<4>>,
}

impl Inside<'_> {
    /// The vector of `component` after this layer's edits there, kept if asked for.
    fn at(&mut self, component: Component, t: Tensor<3>) -> Tensor<3> {
        let t = apply_edits(t, self.layer, component, self.edits, self.from, self.config);
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

/// A full forward pass from the tokens: embeddings, every block (with `edits`), and the
/// next-token logits at the last column.
///
/// # Shapes
/// - output: `[batch, vocab]`
pub fn last_logits(
    model: &Llama,
    batch: &TokenBatch,
    edits: &[Edit],
    stop: Option<&StopFlag>,
) -> Result<Tensor<2>> {
    let ctx = model.context(batch);
    let h = model.embed(batch.ids.clone());
    let ran = Blocks::new(0..model.n_layers())
        .with_edits(edits)
        .stopped_by(stop)
        .run(model, &ctx, h)?;
    Ok(model.logits_at(ran.h, batch.seq_len - 1))
}

/// A forward pass that keeps every component of every layer (with edits applied, if any).
pub fn trace(
    model: &Llama,
    batch: &TokenBatch,
    edits: &[Edit],
    stop: Option<&StopFlag>,
) -> Result<Trace> {
    trace_layers(model, batch, edits, model.n_layers(), &Component::ALL, stop)
}

/// Like [`trace`] but stops after block `layer` and keeps only `components` (it has no
/// logits: use it only to read hidden states).
pub fn trace_until(
    model: &Llama,
    batch: &TokenBatch,
    layer: usize,
    components: &[Component],
    stop: Option<&StopFlag>,
) -> Result<Trace> {
    let n = (layer + 1).min(model.n_layers());
    trace_layers(model, batch, &[], n, components, stop)
}

fn trace_layers(
    model: &Llama,
    batch: &TokenBatch,
    edits: &[Edit],
    n: usize,
    components: &[Component],
    stop: Option<&StopFlag>,
) -> Result<Trace> {
    let ctx = model.context(batch);
    let h = model.embed(batch.ids.clone());
    let keep = Keep {
        components,
        ..Keep::default()
    };
    let ran = Blocks::new(0..n)
        .with_edits(edits)
        .keeping(keep)
        .stopped_by(stop)
        .run(model, &ctx, h)?;
    let logits = (n == model.n_layers()).then(|| model.logits(ran.h));
    Ok(Trace {
        layers: ran.components,
        logits,
        head_dim: model.config.head_dim(),
    })
}

/// Keys and values of every block in `layers` for the unedited columns `..from`, given the
/// stream `h` entering the first of them. Computed once before training.
pub fn prefix_cache(
    model: &Llama,
    ctx: &ForwardContext,
    h: Tensor<3>,
    layers: Range<usize>,
    from: usize,
    stop: Option<&StopFlag>,
) -> Result<Vec<KeyValue>> {
    let keep = Keep {
        cache: true,
        ..Keep::default()
    };
    let ctx = ctx.columns_before(from);
    Ok(Blocks::new(layers)
        .keeping(keep)
        .stopped_by(stop)
        .run(model, &ctx, h.narrow(1, 0, from))?
        .cache)
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
