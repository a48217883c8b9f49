//! Batches of prompts (or windows) of different lengths with little padding.
//!
//! A left- or right-padded batch runs every row over its longest row's columns. Grouping rows
//! of equal or near lengths removes that padding at the price of more, smaller batches; the
//! groups here minimise the columns run plus a fixed cost per group, the cost standing for what
//! a batch costs beyond its tokens (its own attention and small operations in every block).

use std::sync::OnceLock;

use super::limits::rows_per_forward;

/// Splits rows of `lengths[r]` columns each into groups (lists of rows, each in the given
/// order) that each run the longest length among them, minimising the columns run plus `cost`
/// per group: contiguous runs of the distinct lengths, sorted, chosen by dynamic programming
/// (quadratic in the distinct lengths, of which there are a handful).
pub(crate) fn length_groups(lengths: &[usize], cost: usize) -> Vec<Vec<usize>> {
    let mut distinct: Vec<usize> = lengths.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let count = |l: usize| lengths.iter().filter(|&&w| w == l).count();
    let counts: Vec<usize> = distinct.iter().map(|&l| count(l)).collect();
    // best[j]: least cost of the lengths before j, and where its last group starts.
    let mut best: Vec<(usize, usize)> = vec![(0, 0); distinct.len() + 1];
    for j in 1..=distinct.len() {
        best[j] = (0..j)
            .map(|i| {
                let rows: usize = counts[i..j].iter().sum();
                (
                    best[i]
                        .0
                        .saturating_add(rows * distinct[j - 1])
                        .saturating_add(cost),
                    i,
                )
            })
            .min()
            .unwrap_or((0, 0));
    }
    // Upper bounds (longest length) of each group, from the last back.
    let mut bounds = Vec::new();
    let mut j = distinct.len();
    while j > 0 {
        bounds.push(distinct[j - 1]);
        j = best[j].1;
    }
    bounds.reverse();
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); bounds.len()];
    for (r, w) in lengths.iter().enumerate() {
        let g = bounds.partition_point(|&b| b < *w);
        groups[g].push(r);
    }
    groups
}

/// What one more forward pass of a batch costs beyond its tokens, in tokens:
/// [`passes_by_length`]'s `cost` for [`length_groups`]. `SUBSPACE_PASS_COST=N` sets it, to
/// measure it (a large `N`: the fewest passes, padded as before groups).
pub(crate) fn pass_cost() -> usize {
    static COST: OnceLock<usize> = OnceLock::new();
    *COST.get_or_init(|| cost_from_env("SUBSPACE_PASS_COST", 16))
}

/// What running one more group of a training or scoring minibatch costs, in columns of one
/// example: its own attention and edits in every block, each way (a dozen small operations
/// whatever its size; its norms, projections and MLP run with the other groups' tokens). 0 and
/// 8 measured alike on the recipe's batches (docs/history/BENCHMARKS-sessions.md). `SUBSPACE_WINDOW_GROUP_COST=N`
/// sets it, to measure it (a large `N`: one window for the whole batch, as before groups).
pub(crate) fn window_group_cost() -> usize {
    static COST: OnceLock<usize> = OnceLock::new();
    *COST.get_or_init(|| cost_from_env("SUBSPACE_WINDOW_GROUP_COST", 8))
}

/// The whole number in environment variable `name`, else `default`.
fn cost_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Items `order` (prompt indices, any order) cut into padded passes: groups of near lengths
/// ([`length_groups`] at [`pass_cost`]), each cut into passes of at most
/// [`crate::engine::TOKENS_PER_FORWARD`] tokens at its longest length ([`rows_per_forward`]).
/// Within a pass, items keep their order in `order`, sorted by length.
pub(crate) fn passes_by_length(order: Vec<usize>, len: impl Fn(usize) -> usize) -> Vec<Vec<usize>> {
    passes_at_cost(order, len, pass_cost())
}

/// [`passes_by_length`] at `cost` tokens a pass.
fn passes_at_cost(
    mut order: Vec<usize>,
    len: impl Fn(usize) -> usize,
    cost: usize,
) -> Vec<Vec<usize>> {
    order.sort_by_key(|&i| len(i));
    let lengths: Vec<usize> = order.iter().map(|&i| len(i)).collect();
    let mut passes = Vec::new();
    for group in length_groups(&lengths, cost) {
        let longest = group.iter().map(|&r| lengths[r]).max().unwrap_or(1);
        let rows = rows_per_forward(longest);
        for pass in group.chunks(rows) {
            passes.push(pass.iter().map(|&r| order[r]).collect());
        }
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::{length_groups, passes_at_cost};
    use crate::engine::TOKENS_PER_FORWARD;

    /// Lengths 3, 3, 8, 2, 3, 8 at 8 columns a group: one group runs 6 × 8 + 8 = 56 columns,
    /// {2, 3} and {8} run 4 × 3 + 8 + 2 × 8 + 8 = 44, {2}, {3}, {8} 51, {2}, {3, 8} 58.
    #[test]
    fn groups_minimise_the_columns_run_plus_their_cost() {
        let lengths = [3, 3, 8, 2, 3, 8];
        assert_eq!(length_groups(&lengths, 8), [vec![0, 1, 3, 4], vec![2, 5]]);
        assert_eq!(
            length_groups(&lengths, 0),
            [vec![3], vec![0, 1, 4], vec![2, 5]]
        );
        assert_eq!(length_groups(&lengths, 30), [vec![0, 1, 2, 3, 4, 5]]);
        assert_eq!(
            length_groups(&lengths, usize::MAX),
            [vec![0, 1, 2, 3, 4, 5]]
        );
        assert_eq!(length_groups(&[5, 5], 0), [vec![0, 1]]);
    }

    /// At 16 tokens a pass: 100 items of 5 tokens and 100 of 9 fit one pass of 2048 tokens (200
    /// × 9 = 1 800 columns, padded), which the cut by length alone took; by length they run 100
    /// × 5 + 100 × 9 = 1 400 columns in 2 passes, cheaper at a cost of up to 400 columns a pass.
    /// 300 more of 9 then take 227 rows a pass. Every item lands in exactly one pass.
    #[test]
    fn passes_hold_items_of_one_length_when_padding_costs_more_than_a_pass() {
        let len = |i: usize| if i < 200 && i.is_multiple_of(2) { 5 } else { 9 };
        let shapes = |n: usize| -> Vec<(usize, usize)> {
            passes_at_cost((0..n).collect(), len, 16)
                .iter()
                .map(|p| (p.len(), p.iter().map(|&i| len(i)).max().unwrap_or(0)))
                .collect()
        };
        assert_eq!(shapes(200), [(100, 5), (100, 9)]);
        assert_eq!(shapes(500), [(100, 5), (227, 9), (173, 9)]);
        let passes = passes_at_cost((0..500).collect(), len, 16);
        assert!(
            passes
                .iter()
                .all(|p| p.len() * p.iter().map(|&i| len(i)).max().unwrap_or(0)
                    <= TOKENS_PER_FORWARD)
        );
        let mut all: Vec<usize> = passes.concat();
        all.sort_unstable();
        assert_eq!(all, (0..500).collect::<Vec<_>>());
    }
}
