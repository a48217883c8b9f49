//! The one forward loop that reads and edits the residual stream: the model's blocks, with edits
//! applied at their sites. Predicting, tracing, patching, sweeping, training and generating all
//! run [`Blocks`]; they differ only in which layers they run, from which column, and what they
//! keep ([`Keep`]).

use std::ops::Range;

use burn::tensor::Tensor;
use llama::{ForwardContext, KeyValue, Llama, TokenBatch};

use crate::error::Result;
use crate::intervention::Intervention;
use crate::site::{Component, Site};
use crate::stop::{self, StopFlag};

/// One intervention in one forward pass: at `site`, in each batch row `r`, the vector at column
/// `columns[r]` becomes `intervention.apply(vector, source[r])`.
#[derive(Debug, Clone)]
pub struct Edit<'a> {
    pub site: Site,
    /// Column (in the padded batch) of the edited token, one per row.
    pub columns: Vec<usize>,
    /// `[rows, hidden]`: the source vector for each row.
    pub source: Tensor<2>,
    pub intervention: &'a Intervention,
}

/// Every component of every layer of one forward pass, and the final logits.
#[derive(Debug, Clone)]
pub struct Trace {
    /// `layers[l][c]`, `c` in [`COMPONENTS`] order; each `[batch, seq, hidden]`.
    pub layers: Vec<[Tensor<3>; 4]>,
    /// `[batch, seq, vocab]`; `None` for a trace that stopped below the last layer.
    pub logits: Option<Tensor<3>>,
}

/// The order of components inside [`Trace::layers`].
pub const COMPONENTS: [Component; 4] = [
    Component::BlockInput,
    Component::AttentionOutput,
    Component::MlpOutput,
    Component::BlockOutput,
];

fn component_index(c: Component) -> usize {
    match c {
        Component::BlockInput => 0,
        Component::AttentionOutput => 1,
        Component::MlpOutput => 2,
        Component::BlockOutput => 3,
    }
}

impl Trace {
    /// The hidden states at a site, `[batch, seq, hidden]`.
    pub fn at(&self, site: Site) -> Tensor<3> {
        self.layers[site.layer][component_index(site.component)].clone()
    }

    /// One vector: row `row`, column `column` of a site, `[hidden]`.
    pub fn vector(&self, site: Site, row: usize, column: usize) -> Tensor<1> {
        let h = self.at(site);
        let [_, _, d] = h.dims();
        h.narrow(0, row, 1).narrow(1, column, 1).reshape([d])
    }
}

/// What a run of blocks keeps besides the final stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    /// Every component of every block run (a [`Trace`]).
    pub components: bool,
    /// The keys/values of every block run (to continue from them: training, generation).
    pub cache: bool,
}

/// What [`Blocks::run`] returns.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The stream leaving the last block run.
    pub h: Tensor<3>,
    /// Per block run, when [`Keep::components`]: `[block_input, attention, mlp, block_output]`.
    pub components: Vec<[Tensor<3>; 4]>,
    /// Per block run, when [`Keep::cache`]: keys/values of all columns (cached + new).
    pub cache: Vec<KeyValue>,
}

/// Columns computed before the ones being run: their first column and, per block of the run,
/// their keys/values. Columns before an edit cannot change (attention is causal), so training
/// computes them once; generation extends them by one column a token.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// Batch column of `h`'s first column.
    pub from: usize,
    /// Keys/values of columns `..from`, one per block of the range.
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
    pub keep: Keep,
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

    pub fn keeping(mut self, keep: Keep) -> Self {
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
    pub fn run(&self, model: &Llama, ctx: &ForwardContext, mut h: Tensor<3>) -> Result<Ran> {
        let from = self.window.map_or(0, |w| w.from);
        let mut components = Vec::new();
        let mut cache = Vec::new();
        for (i, l) in self.layers.clone().enumerate() {
            stop::check(self.stop)?;
            let block = &model.blocks[l];
            let prefix = self.window.map(|w| &w.prefix[i]);
            let edit = |t, c| apply_edits(t, Site::new(l, c), self.edits, from);
            // The block's residual sum, written once: h + attn(norm h), then + mlp(norm .).
            let input = edit(h, Component::BlockInput);
            let (attn, kv) = block.attention_branch_cached(input.clone(), ctx, prefix);
            let attn = edit(attn, Component::AttentionOutput);
            let mid = input.clone() + attn.clone();
            let mlp = edit(block.mlp_branch(mid.clone()), Component::MlpOutput);
            h = edit(mid + mlp.clone(), Component::BlockOutput);
            if self.keep.components {
                components.push([input, attn, mlp, h.clone()]);
            }
            if self.keep.cache {
                cache.push(kv);
            }
        }
        Ok(Ran {
            h,
            components,
            cache,
        })
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
    trace_layers(model, batch, edits, model.n_layers(), stop)
}

/// Like [`trace`] but stops after block `layer` (it has no logits: use it only to read hidden
/// states).
pub fn trace_until(
    model: &Llama,
    batch: &TokenBatch,
    layer: usize,
    stop: Option<&StopFlag>,
) -> Result<Trace> {
    trace_layers(model, batch, &[], (layer + 1).min(model.n_layers()), stop)
}

fn trace_layers(
    model: &Llama,
    batch: &TokenBatch,
    edits: &[Edit],
    n: usize,
    stop: Option<&StopFlag>,
) -> Result<Trace> {
    let ctx = model.context(batch);
    let h = model.embed(batch.ids.clone());
    let keep = Keep {
        components: true,
        cache: false,
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
        components: false,
        cache: true,
    };
    let ctx = ctx.columns_before(from);
    Ok(Blocks::new(layers)
        .keeping(keep)
        .stopped_by(stop)
        .run(model, &ctx, h.narrow(1, 0, from))?
        .cache)
}

/// Applies the edits that target `site` to `h`, whose first column is batch column `from`.
/// Edits whose column lies before `from` (already in a cache) are skipped.
pub fn apply_edits(mut h: Tensor<3>, site: Site, edits: &[Edit], from: usize) -> Tensor<3> {
    let [_, s, d] = h.dims();
    for edit in edits.iter().filter(|e| e.site == site) {
        let rows: Vec<usize> = (0..edit.columns.len())
            .filter(|&r| edit.columns[r] >= from && edit.columns[r] - from < s)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let pick = |t: &Tensor<3>, r: usize| {
            t.clone()
                .narrow(0, r, 1)
                .narrow(1, edit.columns[r] - from, 1)
                .reshape([1, d])
        };
        let base = Tensor::cat(rows.iter().map(|&r| pick(&h, r)).collect(), 0);
        let source = if rows.len() == edit.columns.len() {
            edit.source.clone()
        } else {
            Tensor::cat(
                rows.iter()
                    .map(|&r| edit.source.clone().narrow(0, r, 1))
                    .collect(),
                0,
            )
        };
        let new = edit.intervention.apply(base, source);
        for (i, &r) in rows.iter().enumerate() {
            let c = edit.columns[r] - from;
            let v = new.clone().narrow(0, i, 1).reshape([1, 1, d]);
            h = h.slice_assign([r..r + 1, c..c + 1, 0..d], v);
        }
    }
    h
}
