//! Prompts that begin alike run their common beginning once.
//!
//! RAVEL's few-shot templates put the same demonstrations before every city ("Paris is in
//! France. Tokyo is in Japan. {city} is in"), so most of a set of prompts' tokens are a handful
//! of shared beginnings. Attention is causal: a shared beginning's keys, values and stream do
//! not depend on what follows it, so they are computed once ([`Prefix::run_all`]) and each prompt
//! then runs only its own tokens after them ([`Prefix::tails`]), its rows right-padded (a
//! padding token after a row's last one is never attended to by that row's tokens).

use std::ops::Range;

use burn::tensor::Tensor;
use llama::{ForwardContext, KeyValue, Llama, TokenBatch};
use rayon::prelude::*;

use super::batching::passes_by_length;
use super::blocks::{Blocks, Keep, Ran, Window};
use super::lanes::{Lane, lanes_through, lanes_through_cached};
use super::limits::TOKENS_PER_FORWARD;
use super::stop::StopFlag;
use crate::error::{Result, SubspaceError};

/// Shortest beginning worth sharing, in tokens.
const MIN_SHARED: usize = 4;
/// What one more shared beginning costs beyond its tokens, in tokens: its own passes.
const GROUP_COST: usize = 16;

/// Prompts (indices into those given) that share their first `len` tokens; `len` is 0 for
/// prompts that share nothing worth it (run whole, as usual).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrefixGroup {
    pub(crate) len: usize,
    pub(crate) members: Vec<usize>,
}

/// Groups `prompts` by shared beginnings, minimising the tokens run: each group's beginning
/// once, plus every member's own tokens after it, plus [`GROUP_COST`] a group. Every member
/// keeps at least one token of its own (the one read or run after the beginning).
///
/// Sorted, prompts that share a beginning are neighbours; a run of neighbours shares the
/// least of their neighbouring common lengths. Each run is either one group or split where
/// that least common length is, whichever runs fewer tokens (recursively).
pub(crate) fn prefix_groups(prompts: &[&[u32]]) -> Vec<PrefixGroup> {
    let mut sorted: Vec<usize> = (0..prompts.len()).collect();
    sorted.sort_by(|&a, &b| prompts[a].cmp(prompts[b]));
    let common: Vec<usize> = sorted
        .windows(2)
        .map(|w| {
            let (a, b) = (prompts[w[0]], prompts[w[1]]);
            a.iter().zip(b).take_while(|(x, y)| x == y).count()
        })
        .collect();
    let mut groups = Vec::new();
    best_groups(prompts, &sorted, &common, &mut groups);
    // The prompts that share nothing worth it, together: they run whole.
    let mut alone: Vec<usize> = Vec::new();
    let mut shared = Vec::new();
    for g in groups {
        if g.len == 0 {
            alone.extend(g.members);
        } else {
            shared.push(g);
        }
    }
    if !alone.is_empty() {
        alone.sort_unstable();
        shared.push(PrefixGroup {
            len: 0,
            members: alone,
        });
    }
    shared
}

/// The best grouping of the sorted run `run` (with `common[i]`: the common length of `run[i]`
/// and `run[i + 1]`), appended to `out`; returns its cost in tokens.
fn best_groups(
    prompts: &[&[u32]],
    run: &[usize],
    common: &[usize],
    out: &mut Vec<PrefixGroup>,
) -> usize {
    let total: usize = run.iter().map(|&i| prompts[i].len()).sum();
    if run.len() < 2 {
        out.push(PrefixGroup {
            len: 0,
            members: run.to_vec(),
        });
        return total;
    }
    let shortest = run.iter().map(|&i| prompts[i].len()).min().unwrap_or(0);
    let least = common.iter().copied().min().unwrap_or(0);
    let len = least.min(shortest.saturating_sub(1));
    // The whole run as one group (its members run whole when too little is shared).
    let whole = if len >= MIN_SHARED {
        (len + (total - len * run.len()) + GROUP_COST, len)
    } else {
        (total, 0)
    };
    // Split where the least common length is: both sides may share more.
    let at = common.iter().position(|&c| c == least).unwrap_or(0);
    let mut split = Vec::new();
    let left = best_groups(prompts, &run[..=at], &common[..at], &mut split);
    let right = best_groups(prompts, &run[at + 1..], &common[at + 1..], &mut split);
    if left + right < whole.0 {
        out.extend(split);
        left + right
    } else {
        out.push(PrefixGroup {
            len: whole.1,
            members: run.to_vec(),
        });
        whole.0
    }
}

/// A shared beginning, run once: its keys/values in every block run and the stream after the
/// last of them.
#[derive(Debug, Clone)]
pub(crate) struct Prefix {
    pub(crate) ids: Vec<u32>,
    /// Per block run, `[1, kv_heads, len, head_dim]`.
    pub(crate) kv: Vec<KeyValue>,
    /// `[1, len, hidden]`: the stream leaving the last block run.
    pub(crate) h: Tensor<3>,
}

impl Prefix {
    /// Beginnings through blocks `layers`, from `h` (the stream entering the first of them),
    /// their keys/values and stream kept: several at once, as lanes of runs of about
    /// [`TOKENS_PER_FORWARD`] tokens ([`lanes_through_cached`]). A beginning is a dozen tokens:
    /// alone, each block's products would be a dozen rows reading all of its weights.
    fn through_all(
        model: &Llama,
        beginnings: Vec<(&[u32], Tensor<3>)>,
        layers: Range<usize>,
        stop: Option<&StopFlag>,
    ) -> Result<Vec<Self>> {
        let mut out = Vec::with_capacity(beginnings.len());
        for together in runs_of_tokens(beginnings, |(ids, _)| ids.len()) {
            let ctxs: Vec<ForwardContext> = together
                .iter()
                .map(|(ids, _)| {
                    model.context(&TokenBatch::new(&[ids.to_vec()], 0, &model.device()))
                })
                .collect();
            let lanes = together
                .iter()
                .zip(&ctxs)
                .map(|((_, h), ctx)| Lane {
                    ctx,
                    h: h.clone(),
                    window: None,
                    edits: &[],
                })
                .collect();
            let ran = lanes_through_cached(model, layers.clone(), lanes, stop)?;
            for ((ids, _), ran) in together.into_iter().zip(ran) {
                out.push(Prefix {
                    ids: ids.to_vec(),
                    kv: ran.cache,
                    h: ran.h,
                });
            }
        }
        Ok(out)
    }

    /// Each of `beginnings` from the embeddings through blocks `layers` (which start at 0).
    pub(crate) fn run_all(
        model: &Llama,
        beginnings: &[&[u32]],
        layers: Range<usize>,
        stop: Option<&StopFlag>,
    ) -> Result<Vec<Self>> {
        let embedded = beginnings
            .iter()
            .map(|&ids| {
                let batch = TokenBatch::new(&[ids.to_vec()], 0, &model.device());
                (ids, model.embed(batch.ids))
            })
            .collect();
        Self::through_all(model, embedded, layers, stop)
    }

    /// Each of `prefixes` continued through blocks `layers` from its stream: their keys/values
    /// (e.g. the blocks above a site, once the blocks below it have run).
    pub(crate) fn continued_all(
        model: &Llama,
        prefixes: &[&Prefix],
        layers: Range<usize>,
        stop: Option<&StopFlag>,
    ) -> Result<Vec<Self>> {
        let streams = prefixes
            .iter()
            .map(|p| (p.ids.as_slice(), p.h.clone()))
            .collect();
        Self::through_all(model, streams, layers, stop)
    }

    /// The keys/values, in blocks `layers` (this beginning's), of the first `own` own tokens of
    /// each row of `tails` (whose stream entering those blocks is `tails.ran.h`), the
    /// beginning's columns first: e.g. the blocks above a site over the tokens a batch takes
    /// from the cache.
    pub(crate) fn tail_cache(
        &self,
        model: &Llama,
        tails: &Tails,
        layers: Range<usize>,
        own: usize,
        stop: Option<&StopFlag>,
    ) -> Result<Vec<KeyValue>> {
        let p = self.len();
        let ctx = tails.ctx.columns_before(p + own).queries_from(p);
        let keep = Keep {
            cache: true,
            ..Keep::default()
        };
        Ok(Blocks::new(layers)
            .after(Some(Window {
                from: p,
                prefix: &self.kv,
            }))
            .keeping(keep)
            .stopped_by(stop)
            .run(model, &ctx, tails.ran.h.clone().narrow(1, 0, own))?
            .cache)
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Runs the prompts' own tokens after this beginning (each prompt must start with it and
    /// have at least one token more) through the same blocks as [`Prefix::run_all`]'s, in the passes
    /// of [`Prefix::tail_passes`]; `keep` says what else to keep. Returns one [`Tails`] per pass
    /// with the prompts' indices in `prompts`.
    pub(crate) fn tails(
        &self,
        model: &Llama,
        prompts: &[&[u32]],
        layers: Range<usize>,
        keep: Keep,
        stop: Option<&StopFlag>,
    ) -> Result<Vec<Tails>> {
        let mut out = Vec::new();
        for pass in self.tail_passes(model, prompts)? {
            let ran = Blocks::new(layers.clone())
                .after(Some(pass.window(&self.kv)))
                .keeping(keep)
                .stopped_by(stop)
                .run(model, &pass.queries, pass.h.clone())?;
            out.push(pass.ran(ran));
        }
        Ok(out)
    }

    /// The passes that run the prompts' own tokens after this beginning (each prompt must start
    /// with it and have at least one token more), prepared but not run: about
    /// [`crate::engine::TOKENS_PER_FORWARD`] tokens each, prompts of near lengths together
    /// ([`passes_by_length`]), their rows right-padded.
    pub(crate) fn tail_passes(&self, model: &Llama, prompts: &[&[u32]]) -> Result<Vec<TailPass>> {
        let p = self.len();
        if let Some(t) = prompts
            .iter()
            .find(|t| t.len() <= p || !t.starts_with(&self.ids))
        {
            return Err(SubspaceError::Data(format!(
                "a prompt of {} tokens does not continue the shared beginning of {p} tokens",
                t.len()
            )));
        }
        let mut out = Vec::new();
        for members in passes_by_length((0..prompts.len()).collect(), |i| prompts[i].len() - p) {
            let s = members
                .iter()
                .map(|&i| prompts[i].len())
                .max()
                .unwrap_or(p + 1);
            let ids: Vec<Vec<u32>> = members
                .iter()
                .map(|&i| {
                    let mut row = prompts[i].to_vec();
                    row.resize(s, 0);
                    row
                })
                .collect();
            let batch = TokenBatch::new(&ids, 0, &model.device());
            let ctx = model.context(&batch);
            let own = batch.ids.narrow(1, p, s - p);
            out.push(TailPass {
                lengths: members.iter().map(|&i| prompts[i].len() - p).collect(),
                members,
                queries: ctx.queries_from(p),
                ctx,
                h: model.embed(own),
                from: p,
            });
        }
        Ok(out)
    }
}

/// One pass of prompts' own tokens after a shared beginning, before it runs
/// ([`Prefix::tail_passes`]): alone ([`Prefix::tails`]) or beside others as lanes of one run
/// ([`crate::engine::lanes_through`]).
pub(crate) struct TailPass {
    /// The pass's prompts, as indices into those given to [`Prefix::tail_passes`].
    pub(crate) members: Vec<usize>,
    /// Each row's own tokens (the rest is padding).
    pub(crate) lengths: Vec<usize>,
    /// The pass's context over all its columns, the beginning's included.
    ctx: ForwardContext,
    /// The same context with the own columns as queries: what the blocks run with.
    pub(crate) queries: ForwardContext,
    /// `[rows, longest own, hidden]`: the own tokens' embeddings.
    pub(crate) h: Tensor<3>,
    /// The beginning's length: the first own column.
    from: usize,
}

impl TailPass {
    /// The beginning's columns before this pass's, given its keys/values ([`Prefix::kv`], one
    /// row that every row of the pass reads).
    pub(crate) fn window<'a>(&self, prefix: &'a [KeyValue]) -> Window<'a> {
        Window {
            from: self.from,
            prefix,
        }
    }

    /// The pass, once `ran` is what its blocks returned.
    pub(crate) fn ran(self, ran: Ran) -> Tails {
        Tails {
            members: self.members,
            lengths: self.lengths,
            ran,
            ctx: self.ctx,
        }
    }
}

/// One pass of prompts' own tokens after a shared beginning.
pub(crate) struct Tails {
    /// The pass's prompts, as indices into those given to [`Prefix::tails`].
    pub(crate) members: Vec<usize>,
    /// Each row's own tokens (the rest is padding).
    pub(crate) lengths: Vec<usize>,
    /// Its stream `[rows, longest own, hidden]`, and what it kept (keys/values cover the
    /// beginning's columns too).
    pub(crate) ran: Ran,
    /// The pass's context over all its columns, the beginning's included.
    ctx: ForwardContext,
}

/// Prompts planned into passes through some blocks ([`Planned::new`]): each beginning that
/// several of them share run once, and the rest as passes ([`Planned::passes`]) to run together
/// ([`passes_together`]): the own tokens after each shared beginning, and whole the prompts that
/// share none, grouped by length.
pub(crate) struct Planned {
    /// The shared beginnings, run.
    pub(crate) shared: Vec<Shared>,
    /// Groups of prompts (indices into those planned) that share no beginning worth it.
    alone: Vec<Vec<usize>>,
}

/// A beginning run once through the planned blocks, and the prompts (indices into those
/// planned) that start with it.
pub(crate) struct Shared {
    pub(crate) prefix: Prefix,
    pub(crate) members: Vec<usize>,
}

/// One pass of a plan, prepared but not run.
pub(crate) enum PlannedPass<'a> {
    /// Own tokens after the beginning `shared` (number `index` of [`Planned::shared`]); the
    /// pass's members index `shared.members`.
    Tails {
        index: usize,
        shared: &'a Shared,
        pass: Box<TailPass>,
    },
    /// Whole prompts.
    Whole(Box<WholePass>),
}

/// Whole prompts (`members`, indices into those planned), left-padded as `batch`; `h` their
/// embeddings.
pub(crate) struct WholePass {
    pub(crate) members: Vec<usize>,
    pub(crate) batch: TokenBatch,
    pub(crate) ctx: ForwardContext,
    pub(crate) h: Tensor<3>,
}

impl Planned {
    /// Groups `prompts` by shared beginnings ([`prefix_groups`]) and runs each shared one
    /// through `blocks`.
    pub(crate) fn new(
        model: &Llama,
        prompts: &[&[u32]],
        blocks: Range<usize>,
        stop: Option<&StopFlag>,
    ) -> Result<Planned> {
        let (mut groups, mut alone) = (Vec::new(), Vec::new());
        for group in prefix_groups(prompts) {
            if group.len == 0 {
                alone.push(group.members);
            } else {
                groups.push(group);
            }
        }
        let beginnings: Vec<&[u32]> = groups
            .iter()
            .map(|g| &prompts[g.members[0]][..g.len])
            .collect();
        let prefixes = Prefix::run_all(model, &beginnings, blocks, stop)?;
        let shared = prefixes
            .into_iter()
            .zip(groups)
            .map(|(prefix, group)| Shared {
                prefix,
                members: group.members,
            })
            .collect();
        Ok(Planned { shared, alone })
    }

    /// The passes that run the rest (`prompts` as given to [`Planned::new`]; `pad_id` pads
    /// the whole prompts' rows on the left).
    pub(crate) fn passes(
        &self,
        model: &Llama,
        prompts: &[&[u32]],
        pad_id: u32,
    ) -> Result<Vec<PlannedPass<'_>>> {
        let mut passes = Vec::new();
        for (index, shared) in self.shared.iter().enumerate() {
            let members: Vec<&[u32]> = shared.members.iter().map(|&i| prompts[i]).collect();
            for pass in shared.prefix.tail_passes(model, &members)? {
                passes.push(PlannedPass::Tails {
                    index,
                    shared,
                    pass: Box::new(pass),
                });
            }
        }
        for members in self.whole_passes(prompts) {
            let rows: Vec<Vec<u32>> = members.iter().map(|&i| prompts[i].to_vec()).collect();
            let batch = TokenBatch::new(&rows, pad_id, &model.device());
            let ctx = model.context(&batch);
            let h = model.embed(batch.ids.clone());
            passes.push(PlannedPass::Whole(Box::new(WholePass {
                members,
                batch,
                ctx,
                h,
            })));
        }
        Ok(passes)
    }

    /// The prompts that share no beginning, in passes of near lengths ([`passes_by_length`]).
    pub(crate) fn whole_passes(&self, prompts: &[&[u32]]) -> Vec<Vec<usize>> {
        self.alone
            .iter()
            .flat_map(|group| passes_by_length(group.clone(), |i| prompts[i].len()))
            .collect()
    }
}

impl PlannedPass<'_> {
    /// Its context, its queries the columns run.
    fn ctx(&self) -> &ForwardContext {
        match self {
            PlannedPass::Tails { pass, .. } => &pass.queries,
            PlannedPass::Whole(whole) => &whole.ctx,
        }
    }

    /// `[rows, columns run, hidden]`: the stream entering the first block.
    fn h(&self) -> &Tensor<3> {
        match self {
            PlannedPass::Tails { pass, .. } => &pass.h,
            PlannedPass::Whole(whole) => &whole.h,
        }
    }

    /// For the own tokens after a beginning: the beginning's columns before them, its
    /// keys/values one row that every row reads.
    fn window(&self) -> Option<Window<'_>> {
        match self {
            PlannedPass::Tails { shared, pass, .. } => Some(pass.window(&shared.prefix.kv)),
            PlannedPass::Whole(_) => None,
        }
    }
}

/// Runs `passes` through blocks `layers` several at a time, as lanes of one run
/// ([`lanes_through`]) of about [`TOKENS_PER_FORWARD`] tokens: passes of different beginnings and
/// lengths then share each block's projections and MLP, products of thousands of rows instead
/// of a few dozen. Returns what `done` makes of each pass and its stream leaving the last
/// block, in the passes' order.
///
/// The runs themselves go to the pool's threads as tasks ([`rayon`]'s parallel iterator), each
/// run's operations still split over whichever threads are free: the parts of a run that one
/// thread does alone (copies, residual additions, `done`'s own work) then overlap another
/// run's instead of leaving the other threads waiting.
pub(crate) fn passes_together<'a, R: Send>(
    model: &Llama,
    layers: Range<usize>,
    passes: Vec<PlannedPass<'a>>,
    stop: Option<&StopFlag>,
    done: impl Fn(PlannedPass<'a>, Tensor<3>) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let tokens = |pass: &PlannedPass| {
        let [rows, columns, _] = pass.h().dims();
        rows * columns
    };
    let run = |together: Vec<PlannedPass<'a>>| -> Result<Vec<R>> {
        let lanes = together
            .iter()
            .map(|pass| Lane {
                ctx: pass.ctx(),
                h: pass.h().clone(),
                window: pass.window(),
                edits: &[],
            })
            .collect();
        let streams = lanes_through(model, layers.clone(), lanes, stop)?;
        together
            .into_iter()
            .zip(streams)
            .map(|(pass, h)| done(pass, h))
            .collect()
    };
    let runs = runs_of_tokens(passes, tokens);
    let made: Vec<Vec<R>> =
        kernels::pool::on_pool(|| runs.into_par_iter().map(run).collect::<Result<_>>())?;
    Ok(made.into_iter().flatten().collect())
}

/// `items` in order, cut into runs of about [`TOKENS_PER_FORWARD`] tokens (`tokens` of each):
/// a run ends with the item that brings it to that many.
fn runs_of_tokens<T>(items: Vec<T>, tokens: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut in_last = TOKENS_PER_FORWARD;
    for item in items {
        if in_last >= TOKENS_PER_FORWARD {
            runs.push(Vec::new());
            in_last = 0;
        }
        in_last += tokens(&item);
        if let Some(run) = runs.last_mut() {
            run.push(item);
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::{PrefixGroup, prefix_groups, runs_of_tokens};

    /// Runs of 2048 tokens: each ends with the item that reaches 2048, in order, none lost.
    #[test]
    fn items_are_cut_into_runs_of_about_a_forward_of_tokens() {
        let items = vec![1000, 1000, 100, 2048, 5, 3000, 1];
        assert_eq!(
            runs_of_tokens(items, |&t| t),
            [vec![1000, 1000, 100], vec![2048], vec![5, 3000], vec![1]]
        );
        assert!(runs_of_tokens(Vec::<usize>::new(), |&t| t).is_empty());
    }

    /// Three prompts on one 10-token beginning and two that share only 2 tokens with it: the
    /// three share their 10 (10 + 3 × 2 + 16 = 32 tokens against 36 run whole), the others run
    /// whole.
    #[test]
    fn prompts_are_grouped_by_the_beginnings_worth_sharing() {
        let demo: Vec<u32> = (1..=10).collect();
        let with = |tail: [u32; 2]| -> Vec<u32> { demo.iter().copied().chain(tail).collect() };
        let a = with([50, 51]);
        let b = with([52, 53]);
        let c = with([54, 55]);
        let d = vec![1, 2, 99, 98, 97];
        let e = vec![70, 71];
        let prompts: Vec<&[u32]> = vec![&d, &a, &e, &b, &c];
        assert_eq!(
            prefix_groups(&prompts),
            [
                PrefixGroup {
                    len: 10,
                    members: vec![1, 3, 4]
                },
                PrefixGroup {
                    len: 0,
                    members: vec![0, 2]
                },
            ]
        );
        // Two prompts alone do not pay for a group: 10 + 2 × 2 + 16 = 30 > 24.
        let two: Vec<&[u32]> = vec![&a, &b];
        assert_eq!(
            prefix_groups(&two),
            [PrefixGroup {
                len: 0,
                members: vec![0, 1]
            }]
        );
        // A prompt that is all beginning keeps one token of its own.
        let short: Vec<u32> = demo.clone();
        let many: Vec<Vec<u32>> = (0..6).map(|i| with([60 + i, 61])).collect();
        let mut prompts: Vec<&[u32]> = many.iter().map(Vec::as_slice).collect();
        prompts.push(&short);
        let groups = prefix_groups(&prompts);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].len, 9);
        assert_eq!(groups[0].members.len(), 7);
    }
}
