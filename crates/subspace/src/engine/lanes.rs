//! Several batches of different shapes through the same blocks at once (a minibatch's window
//! groups, a pass's beginnings): the norms, projections and MLP of each block run once over all
//! the batches' tokens laid end to end; attention and the edits within each batch.

use std::ops::Range;

use burn::tensor::Tensor;
use llama::{ForwardContext, KeyValue, Llama, Ragged};

use super::blocks::{Blocks, Edit, Keep, Ran, Window, apply_edits};
use super::stop::{self, StopFlag};
use crate::error::Result;
use crate::site::Component;

/// One of several batches run through the same blocks together ([`lanes_through`]): its own
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
pub fn lanes_through(
    model: &Llama,
    layers: Range<usize>,
    lanes: Vec<Lane>,
    stop: Option<&StopFlag>,
) -> Result<Vec<Tensor<3>>> {
    lanes_through_to(model, layers, lanes, stop, false)
}

/// [`lanes_through`]'s streams at each lane's last column only (`[batch, 1, hidden]` each): what
/// the next-token logits read. Where no edit is at the last block, that block computes only
/// what the last column needs: the keys and values of every column, the rest at the last
/// ([`llama::model::Block::forward_ragged_last`]).
pub fn lanes_through_last(
    model: &Llama,
    layers: Range<usize>,
    lanes: Vec<Lane>,
    stop: Option<&StopFlag>,
) -> Result<Vec<Tensor<3>>> {
    lanes_through_to(model, layers, lanes, stop, true)
}

/// [`lanes_through`], keeping each lane's keys/values of every block run ([`Ran::cache`], as
/// [`Blocks::run`] keeping them returns): several beginnings run at once, to be continued.
pub(crate) fn lanes_through_cached(
    model: &Llama,
    layers: Range<usize>,
    lanes: Vec<Lane>,
    stop: Option<&StopFlag>,
) -> Result<Vec<Ran>> {
    kernels::pool::on_pool(|| lanes_through_here(model, layers, lanes, stop, false, true))
}

fn lanes_through_to(
    model: &Llama,
    layers: Range<usize>,
    lanes: Vec<Lane>,
    stop: Option<&StopFlag>,
    last_only: bool,
) -> Result<Vec<Tensor<3>>> {
    let ran = kernels::pool::on_pool(|| {
        lanes_through_here(model, layers, lanes, stop, last_only, false)
    })?;
    Ok(ran.into_iter().map(|r| r.h).collect())
}

/// [`lanes_through_to`] on this thread; `cache`: keep each lane's keys/values.
fn lanes_through_here(
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
