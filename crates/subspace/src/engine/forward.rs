//! Whole forward passes made of [`Blocks`]: the next-token logits, a trace of every
//! component, the keys and values of a prompt's beginning.

use std::ops::Range;

use burn::tensor::Tensor;
use llama::{ForwardContext, KeyValue, Llama, TokenBatch};

use super::blocks::{Blocks, Edit, Keep, Trace};
use super::stop::StopFlag;
use crate::error::Result;
use crate::site::Component;

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

/// Like [`trace`] but keeps only `components` (a names filter, as TransformerLens'
/// `names_filter`): a cache no larger than what is asked for.
pub fn trace_keeping(
    model: &Llama,
    batch: &TokenBatch,
    components: &[Component],
    stop: Option<&StopFlag>,
) -> Result<Trace> {
    trace_layers(model, batch, &[], model.n_layers(), components, stop)
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
