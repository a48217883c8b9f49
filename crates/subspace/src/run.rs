//! Forward passes that read and edit the residual stream: the model's block loop, with edits
//! applied at their sites. Reading every layer ([`trace`]) and running only a range of layers
//! from a cached state ([`run_blocks`]) are the same loop.

use std::ops::Range;

use burn::tensor::Tensor;
use llama::{ForwardContext, KeyValue, Llama, TokenBatch};

use crate::intervention::Intervention;
use crate::site::{Component, Site};

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

/// A full forward pass that keeps every component of every layer (with edits applied, if any).
pub fn trace(model: &Llama, batch: &TokenBatch, edits: &[Edit]) -> Trace {
    trace_layers(model, batch, edits, model.n_layers())
}

/// Like [`trace`] but stops after block `layer` (its logits are those of that depth, not the
/// model's: use it only to read hidden states).
pub fn trace_until(model: &Llama, batch: &TokenBatch, layer: usize) -> Trace {
    trace_layers(model, batch, &[], (layer + 1).min(model.n_layers()))
}

fn trace_layers(model: &Llama, batch: &TokenBatch, edits: &[Edit], n: usize) -> Trace {
    let ctx = model.context(batch);
    let mut h = model.embed(batch.ids.clone());
    let mut layers = Vec::with_capacity(n);
    for (l, block) in model.blocks[..n].iter().enumerate() {
        let input = apply_edits(h, Site::new(l, Component::BlockInput), edits, 0);
        let attn = block.attention_branch(input.clone(), &ctx);
        let attn = apply_edits(attn, Site::new(l, Component::AttentionOutput), edits, 0);
        let mid = input.clone() + attn.clone();
        let mlp = apply_edits(
            block.mlp_branch(mid.clone()),
            Site::new(l, Component::MlpOutput),
            edits,
            0,
        );
        let out = apply_edits(
            mid + mlp.clone(),
            Site::new(l, Component::BlockOutput),
            edits,
            0,
        );
        layers.push([input, attn, mlp, out.clone()]);
        h = out;
    }
    let logits = (n == model.n_layers()).then(|| model.logits(h));
    Trace { layers, logits }
}

/// Runs blocks `layers` on `h` (the input of the first of them), applying `edits`.
///
/// With `window = Some((from, prefix))`, `h` holds only columns `from..` and `prefix[i]` the
/// keys/values of columns `..from` for the `i`-th block of the range: columns before an edit
/// cannot change (attention is causal), so they are computed once and reused. `ctx` must then
/// be [`ForwardContext::queries_from`]`(from)`.
///
/// # Shapes
/// - `h`: `[batch, seq − from, hidden]` → same
pub fn run_blocks(
    model: &Llama,
    ctx: &ForwardContext,
    mut h: Tensor<3>,
    layers: Range<usize>,
    edits: &[Edit],
    window: Option<(usize, &[KeyValue])>,
) -> Tensor<3> {
    let from = window.map_or(0, |(f, _)| f);
    for (i, l) in layers.enumerate() {
        let block = &model.blocks[l];
        let prefix = window.map(|(_, kv)| &kv[i]);
        let input = apply_edits(h, Site::new(l, Component::BlockInput), edits, from);
        let (attn, _) = block.attention_branch_cached(input.clone(), ctx, prefix);
        let attn = apply_edits(attn, Site::new(l, Component::AttentionOutput), edits, from);
        let mid = input + attn;
        let mlp = apply_edits(
            block.mlp_branch(mid.clone()),
            Site::new(l, Component::MlpOutput),
            edits,
            from,
        );
        h = apply_edits(mid + mlp, Site::new(l, Component::BlockOutput), edits, from);
    }
    h
}

/// Keys and values of every block in `layers` for the unedited columns `..from`, plus the
/// input of the first block there. Computed once before training.
pub fn prefix_cache(
    model: &Llama,
    ctx: &ForwardContext,
    h: Tensor<3>,
    layers: Range<usize>,
    from: usize,
) -> Vec<KeyValue> {
    let mut h = h.narrow(1, 0, from);
    let ctx = ctx.columns_before(from);
    let mut out = Vec::with_capacity(layers.len());
    for l in layers {
        let (next, kv) = model.blocks[l].forward_cached(h, &ctx, None);
        out.push(kv);
        h = next;
    }
    out
}

/// Applies the edits that target `site` to `h`, whose first column is batch column `from`.
pub fn apply_edits(mut h: Tensor<3>, site: Site, edits: &[Edit], from: usize) -> Tensor<3> {
    for edit in edits.iter().filter(|e| e.site == site) {
        let [_, _, d] = h.dims();
        let rows: Vec<usize> = (0..edit.columns.len()).collect();
        let base = Tensor::cat(
            rows.iter()
                .map(|&r| {
                    h.clone()
                        .narrow(0, r, 1)
                        .narrow(1, edit.columns[r] - from, 1)
                        .reshape([1, d])
                })
                .collect(),
            0,
        );
        let new = edit.intervention.apply(base, edit.source.clone());
        for &r in &rows {
            let c = edit.columns[r] - from;
            let v = new.clone().narrow(0, r, 1).reshape([1, 1, d]);
            h = h.slice_assign([r..r + 1, c..c + 1, 0..d], v);
        }
    }
    h
}
