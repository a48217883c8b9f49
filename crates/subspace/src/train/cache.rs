//! Everything below the site, once per distinct base prompt: the stream entering the site's
//! block and, for every block from the site up, the keys and values of the prompt's tokens. For
//! a block's output the site's own block is below too ([`entry_site`]): nothing an edit after
//! it does can change it.
//! A training step or a scoring pass then assembles any minibatch from it and runs only the
//! blocks from the site up, over each example's columns from its first edited token: the
//! columns before it cannot change (attention is causal), so they enter as cached keys/values.
//! A minibatch runs in groups of examples with similar windows ([`length_groups`]), each group
//! left-padded on its own, all groups through each block together ([`crate::engine::lanes_through`]).
//!
//! Building it is one forward pass per distinct prompt, the prompts sorted by length so that a
//! batched pass carries little padding, and prompts that begin alike (few-shot demonstrations)
//! running their shared beginning once (`engine::prefix`); the source vectors are read once per
//! distinct source prompt cut after its position ([`LanguageModel::source_vectors`]).
//! Minibatches can then be drawn in any order (a fresh order each epoch) at the cost of copying
//! cached tensors.

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData};
use llama::{ForwardContext, KeyValue, TokenBatch};

use crate::engine::batching::length_groups;
use crate::engine::prefix::{
    Planned, PlannedPass, Prefix, Shared, Tails, WholePass, passes_together,
};
use crate::engine::{Blocks, Cell, Keep, Ran};
use crate::error::{Result, SubspaceError};
use crate::lm::{LanguageModel, Prompt};
use crate::pair::{Example, Pair};
use crate::site::{Component, Site};

/// One distinct base prompt's states from the site up.
#[derive(Debug, Clone)]
struct BaseState {
    ids: Vec<u32>,
    /// `[len, hidden]`: the stream entering the entry block ([`entry_site`]).
    h: Tensor<2>,
    /// Per block from the entry block up: keys (after rotary) and values, `[kv_heads, kept, head_dim]`,
    /// of the prompt's first `kept` tokens (those before the latest first-edited token of the
    /// examples on this prompt: all a batch can need).
    kv: Vec<(Tensor<3>, Tensor<3>)>,
}

/// One example, pointing into the cache.
#[derive(Debug, Clone)]
struct CachedExample {
    base: usize,
    /// Edited base positions, in the order of `source`'s rows.
    positions: Vec<usize>,
    /// `[positions, site width]`.
    source: Tensor<2>,
    target: u32,
    weight: f32,
}

/// A minibatch ready for the blocks from the site up: its examples in groups that each run
/// their own window of columns (see [`length_groups`]).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) groups: Vec<Group>,
    len: usize,
    /// The examples' targets, in the groups' order (their rows laid end to end).
    pub(crate) targets: Tensor<1, Int>,
    /// Each example's weight divided by the batch's total, in the groups' order (`None`: all
    /// weights are 1, the plain mean).
    pub(crate) weights: Option<Tensor<1>>,
}

impl Prepared {
    /// Examples in the batch.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// For each example of the batch, in its order, its row in the groups' rows laid end to end
    /// (`None` when that is the batch's own order: one group).
    pub(crate) fn batch_order(&self) -> Option<Vec<usize>> {
        if self.groups.len() == 1 {
            return None;
        }
        let mut order = vec![0; self.len];
        for (stacked, &row) in self.groups.iter().flat_map(|g| &g.rows).enumerate() {
            order[row] = stacked;
        }
        Some(order)
    }
}

/// Examples of a minibatch that share one window of recomputed columns: left-padded together,
/// from the first edited column of any of them.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The group's examples' rows in the minibatch, in its order.
    pub(crate) rows: Vec<usize>,
    pub(crate) ctx: ForwardContext,
    /// Stream entering the entry block ([`entry_site`]), columns `from..`.
    pub(crate) h: Tensor<3>,
    /// First recomputed column and the cached keys/values of the columns before it.
    pub(crate) from: usize,
    pub(crate) prefix: Option<Vec<KeyValue>>,
    /// The edited tokens (one per example, or a span's) and their source vectors.
    pub(crate) cells: Vec<Cell>,
    pub(crate) source: Tensor<2>,
}

/// The states below a site of a set of examples (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct SiteCache {
    /// Where a batch enters the model ([`entry_site`]).
    entry: Site,
    bases: Vec<BaseState>,
    examples: Vec<CachedExample>,
    pad_id: u32,
}

impl SiteCache {
    /// Runs the examples' distinct base prompts to `site` (and their keys/values above it) and
    /// reads their source vectors. The examples must have been checked against the model.
    pub(crate) fn build(lm: &LanguageModel, site: Site, examples: &[Example]) -> Result<Self> {
        kernels::pool::on_pool(|| Self::build_here(lm, site, examples))
    }

    /// [`SiteCache::build`] on this thread.
    fn build_here(lm: &LanguageModel, site: Site, examples: &[Example]) -> Result<Self> {
        let pairs: Vec<&Pair> = examples.iter().map(|e| &e.pair).collect();
        let sources = lm.source_vectors(site, &pairs)?;
        let entry = entry_site(site, lm.model.n_layers());
        // Distinct base prompts, and how many tokens of each a batch may take from the cache.
        let mut index: HashMap<&[u32], usize> = HashMap::new();
        let mut distinct: Vec<(&Prompt, usize)> = Vec::new();
        let mut row = 0;
        let mut cached = Vec::with_capacity(examples.len());
        for e in examples {
            let p = &e.pair;
            let first = p.positions.iter().map(|a| a.base).min().unwrap_or(0);
            let base = *index.entry(p.base.ids.as_slice()).or_insert_with(|| {
                distinct.push((&p.base, 0));
                distinct.len() - 1
            });
            distinct[base].1 = distinct[base].1.max(first);
            let n = p.positions.len();
            cached.push(CachedExample {
                base,
                positions: p.positions.iter().map(|a| a.base).collect(),
                source: sources.clone().narrow(0, row, n),
                target: e.target,
                weight: e.weight,
            });
            row += n;
        }
        // Prompts that begin alike (few-shot demonstrations) run their beginning once, and its
        // keys/values above the site (which batches take) once too; the others run whole, in
        // passes by length. The blocks below the entry block run over every pass, several at
        // once ([`passes_together`]); then, pass by pass, the keys/values above it that batches take.
        let ids: Vec<&[u32]> = distinct.iter().map(|(p, _)| p.ids.as_slice()).collect();
        let kept = |i: usize| distinct[i].1;
        let model = &lm.model;
        let stop = Some(lm.stop_flag());
        let planned = Planned::new(model, &ids, 0..entry.layer, stop)?;
        let beginnings: Vec<&Prefix> = planned.shared.iter().map(|s| &s.prefix).collect();
        let above = Prefix::continued_all(model, &beginnings, entry.layer..model.n_layers(), stop)?;
        let passes = planned.passes(model, &ids, lm.tokenizer.pad_id())?;
        let states = passes_together(model, 0..entry.layer, passes, stop, |pass, h| match pass {
            PlannedPass::Tails {
                index,
                shared,
                pass,
            } => {
                let tails = pass.ran(Ran::stream(h));
                let kept_of = |r: usize| kept(shared.members[r]);
                let beginning = (shared, &above[index]);
                let states = shared_base_states(lm, entry.layer, beginning, &tails, &ids, kept_of)?;
                Ok(states
                    .into_iter()
                    .map(|(r, state)| (shared.members[r], state))
                    .collect::<Vec<_>>())
            }
            PlannedPass::Whole(whole) => {
                let WholePass {
                    members,
                    batch,
                    ctx,
                    ..
                } = *whole;
                let prompts: Vec<&Prompt> = members.iter().map(|&i| distinct[i].0).collect();
                let states = base_states(lm, entry.layer, &prompts, &batch, &ctx, h, |r| {
                    kept(members[r])
                })?;
                Ok(members.into_iter().zip(states).collect())
            }
        })?;
        let mut bases: Vec<Option<BaseState>> = vec![None; distinct.len()];
        for (i, state) in states.into_iter().flatten() {
            bases[i] = Some(state);
        }
        // Every prompt lands in exactly one pass.
        if bases.iter().any(Option::is_none) {
            return Err(SubspaceError::Data(
                "a prompt missed its pass below the site".into(),
            ));
        }
        Ok(SiteCache {
            entry,
            bases: bases.into_iter().flatten().collect(),
            examples: cached,
            pad_id: lm.tokenizer.pad_id(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.examples.len()
    }

    /// Where a batch enters the model: the blocks from `entry().layer` up run, the edit at
    /// this site ([`entry_site`]).
    pub(crate) fn entry(&self) -> Site {
        self.entry
    }

    /// The minibatch of examples `which` (indices into the examples the cache was built from),
    /// in groups of similar windows, a group being worth `group_cost` columns ([`length_groups`]).
    pub(crate) fn batch(
        &self,
        lm: &LanguageModel,
        which: &[usize],
        group_cost: usize,
    ) -> Result<Prepared> {
        let device = lm.device();
        let windows: Vec<usize> = which.iter().map(|&i| self.window(i)).collect();
        let groups = length_groups(&windows, group_cost)
            .into_iter()
            .map(|rows| {
                let members: Vec<usize> = rows.iter().map(|&r| which[r]).collect();
                self.group(lm, &members, rows)
            })
            .collect::<Result<Vec<_>>>()?;
        let stacked: Vec<&CachedExample> = groups
            .iter()
            .flat_map(|g| &g.rows)
            .map(|&r| &self.examples[which[r]])
            .collect();
        let n = stacked.len();
        let targets: Vec<i64> = stacked.iter().map(|e| i64::from(e.target)).collect();
        let weights = if stacked.iter().all(|e| e.weight == 1.0) {
            None
        } else {
            let total: f32 = stacked.iter().map(|e| e.weight).sum();
            let w: Vec<f32> = stacked.iter().map(|e| e.weight / total).collect();
            Some(Tensor::from_data(TensorData::new(w, [n]), &device))
        };
        Ok(Prepared {
            groups,
            len: n,
            targets: Tensor::from_data(TensorData::new(targets, [n]), &device),
            weights,
        })
    }

    /// Example `i`'s target token.
    pub(crate) fn target(&self, i: usize) -> u32 {
        self.examples[i].target
    }

    /// Columns example `i` recomputes: from its first edited token to its prompt's end.
    fn window(&self, i: usize) -> usize {
        let e = &self.examples[i];
        let first = e.positions.iter().copied().min().unwrap_or(0);
        self.bases[e.base].ids.len() - first
    }

    /// One group of a minibatch: examples `which`, at `rows` of the batch.
    fn group(&self, lm: &LanguageModel, which: &[usize], rows: Vec<usize>) -> Result<Group> {
        let device = lm.device();
        let model = &lm.model;
        let ids: Vec<Vec<u32>> = which
            .iter()
            .map(|&i| self.bases[self.examples[i].base].ids.clone())
            .collect();
        let tokens = TokenBatch::new(&ids, self.pad_id, &device);
        let s = tokens.seq_len;
        let mut cells = Vec::new();
        let mut sources = Vec::with_capacity(which.len());
        for (r, &i) in which.iter().enumerate() {
            let e = &self.examples[i];
            cells.extend(e.positions.iter().map(|&p| Cell {
                row: r,
                column: tokens.column(r, p),
            }));
            sources.push(e.source.clone());
        }
        let from = cells.iter().map(|c| c.column).min().unwrap_or(0);
        let ctx = model.context(&tokens);
        let d = model.hidden_size();
        // Row r's stream from column `from`: padding (zeros; masked out as keys, unread as
        // queries) then its tokens.
        let h = Tensor::cat(
            which
                .iter()
                .enumerate()
                .map(|(r, &i)| {
                    let state = &self.bases[self.examples[i].base];
                    let pad = tokens.padding[r];
                    let skip = from.saturating_sub(pad);
                    let len = state.ids.len();
                    let mut parts = Vec::new();
                    if pad > from {
                        parts.push(Tensor::zeros([pad - from, d], &device));
                    }
                    parts.push(state.h.clone().narrow(0, skip, len - skip));
                    Tensor::cat(parts, 0).reshape([1, s - from, d])
                })
                .collect(),
            0,
        );
        let prefix = (from > 0).then(|| {
            let (kv_heads, hd) = (model.config.n_kv_heads(), model.config.head_dim());
            let layers = model.n_layers() - self.entry.layer;
            // Row r's keys (or values) of columns `..from`: padding (zeros, masked out), then
            // its first `from - pad` tokens, which the cache holds.
            let side = |l: usize, values: bool| {
                Tensor::cat(
                    which
                        .iter()
                        .enumerate()
                        .map(|(r, &i)| {
                            let pad = tokens.padding[r].min(from);
                            let mut parts = Vec::new();
                            if pad > 0 {
                                parts.push(Tensor::zeros([kv_heads, pad, hd], &device));
                            }
                            if from > pad {
                                let (k, v) = &self.bases[self.examples[i].base].kv[l];
                                let t = if values { v } else { k };
                                parts.push(t.clone().narrow(1, 0, from - pad));
                            }
                            Tensor::cat(parts, 1).reshape([1, kv_heads, from, hd])
                        })
                        .collect(),
                    0,
                )
            };
            (0..layers)
                .map(|l| KeyValue {
                    k: side(l, false),
                    v: side(l, true),
                })
                .collect()
        });
        Ok(Group {
            rows,
            ctx: if from == 0 {
                ctx
            } else {
                ctx.queries_from(from)
            },
            h,
            from,
            prefix,
            cells,
            source: Tensor::cat(sources, 0),
        })
    }
}

/// One batched pass of `prompts` (left-padded as `batch`, its context `ctx`), after the blocks
/// below `entry` ran (`h`, the stream entering it): each one's stream entering block `entry`
/// and its keys/values from that block up, of its first `kept(row)` tokens.
fn base_states(
    lm: &LanguageModel,
    entry: usize,
    prompts: &[&Prompt],
    batch: &TokenBatch,
    ctx: &ForwardContext,
    h: Tensor<3>,
    kept: impl Fn(usize) -> usize,
) -> Result<Vec<BaseState>> {
    let model = &lm.model;
    let stop = Some(lm.stop_flag());
    // Keys/values above the site only for the columns a batch can take from the cache.
    let longest_kept = (0..prompts.len())
        .map(|r| batch.padding[r] + kept(r))
        .max()
        .unwrap_or(0);
    let cache = if longest_kept == 0 {
        Vec::new()
    } else {
        let keep = Keep {
            cache: true,
            ..Keep::default()
        };
        Blocks::new(entry..model.n_layers())
            .keeping(keep)
            .stopped_by(stop)
            .run(
                model,
                &ctx.columns_before(longest_kept),
                h.clone().narrow(1, 0, longest_kept),
            )?
            .cache
    };
    let [_, _, d] = h.dims();
    Ok(prompts
        .iter()
        .enumerate()
        .map(|(r, p)| {
            let pad = batch.padding[r];
            let row = |t: &Tensor<4>| {
                let [_, kv, _, hd] = t.dims();
                t.clone()
                    .narrow(0, r, 1)
                    .narrow(2, pad, kept(r))
                    .reshape([kv, kept(r), hd])
            };
            let kv = if kept(r) == 0 {
                Vec::new()
            } else {
                cache.iter().map(|c| (row(&c.k), row(&c.v))).collect()
            };
            BaseState {
                ids: p.ids.clone(),
                h: h.clone()
                    .narrow(0, r, 1)
                    .narrow(1, pad, p.len())
                    .reshape([p.len(), d]),
                kv,
            }
        })
        .collect())
}

/// [`base_states`] of one pass of prompts that begin with `beginning` (run below the entry
/// block; `above` is it continued from there up), after the blocks below the entry block ran
/// their own tokens (`tails`): the beginning's columns come from the beginning, above the site
/// too; each prompt's own kept tokens' keys/values above it run here. Returns each row's member
/// index (into `beginning.members`) and state.
fn shared_base_states(
    lm: &LanguageModel,
    entry: usize,
    (beginning, above): (&Shared, &Prefix),
    tails: &Tails,
    ids: &[&[u32]],
    kept: impl Fn(usize) -> usize,
) -> Result<Vec<(usize, BaseState)>> {
    let model = &lm.model;
    let stop = Some(lm.stop_flag());
    let below = &beginning.prefix;
    let p = below.len();
    let [_, _, d] = below.h.dims();
    let (kv_heads, hd) = (model.config.n_kv_heads(), model.config.head_dim());
    let mut states = Vec::with_capacity(tails.lengths.len());
    let rows = tails.lengths.len();
    let kept_of = |r: usize| kept(tails.members[r]);
    // Keys/values above the site of the prompts' own kept tokens, if any keeps one.
    let own_kept = (0..rows)
        .map(|r| kept_of(r).saturating_sub(p))
        .max()
        .unwrap_or(0);
    let cache = if own_kept == 0 {
        Vec::new()
    } else {
        above.tail_cache(model, tails, entry..model.n_layers(), own_kept, stop)?
    };
    for r in 0..rows {
        let (len, kept) = (tails.lengths[r], kept_of(r));
        let h = Tensor::cat(
            vec![
                below.h.clone().reshape([p, d]),
                tails
                    .ran
                    .h
                    .clone()
                    .narrow(0, r, 1)
                    .narrow(1, 0, len)
                    .reshape([len, d]),
            ],
            0,
        );
        let kv = if kept == 0 {
            Vec::new()
        } else if kept <= p {
            above
                .kv
                .iter()
                .map(|c| {
                    let cut =
                        |t: &Tensor<4>| t.clone().narrow(2, 0, kept).reshape([kv_heads, kept, hd]);
                    (cut(&c.k), cut(&c.v))
                })
                .collect()
        } else {
            cache
                .iter()
                .map(|c| {
                    let cut = |t: &Tensor<4>| {
                        t.clone()
                            .narrow(0, r, 1)
                            .narrow(2, 0, kept)
                            .reshape([kv_heads, kept, hd])
                    };
                    (cut(&c.k), cut(&c.v))
                })
                .collect()
        };
        let member = tails.members[r];
        states.push((
            member,
            BaseState {
                ids: ids[beginning.members[member]].to_vec(),
                h,
                kv,
            },
        ));
    }
    Ok(states)
}

/// Where the blocks a batch runs begin, and the site its edit is made at there: `site` itself,
/// or for a block's output below the last block the next block's input, the same vector. The
/// site's own block then runs once, in the pass, instead of in every step and scoring pass: its
/// output at the recomputed columns cannot depend on an edit made after it.
pub(crate) fn entry_site(site: Site, n_layers: usize) -> Site {
    if site.component == Component::BlockOutput && site.layer + 1 < n_layers {
        Site::new(site.layer + 1, Component::BlockInput)
    } else {
        site
    }
}

#[cfg(test)]
mod tests {
    use super::entry_site;
    use crate::site::{Component, Site};

    /// A block's output below the last block is the next block's input; the last block's output
    /// and every other component stay where they are (their own block must run).
    #[test]
    fn a_block_output_is_entered_at_the_next_block_input() {
        assert_eq!(
            entry_site(Site::block_output(15), 30),
            Site::new(16, Component::BlockInput)
        );
        assert_eq!(
            entry_site(Site::block_output(29), 30),
            Site::block_output(29)
        );
        for component in [
            Component::BlockInput,
            Component::AttentionOutput,
            Component::MlpOutput,
            Component::MlpHidden,
        ] {
            assert_eq!(
                entry_site(Site::new(3, component), 30),
                Site::new(3, component)
            );
        }
    }
}
