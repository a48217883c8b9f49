//! Several batches of different shapes as one run of tokens. A training step's minibatch runs
//! in groups whose windows differ (a few rows recompute 8 columns, most 2 or 3); each group is
//! its own left-padded batch for attention, but the norms, projections and the MLP act on each
//! token alone, so they take all the groups' tokens laid end to end: one product per weight
//! instead of one per group (each call reads and widens the whole weight, and a product of
//! 140 rows runs faster per row than three of 12–64).

use burn::tensor::Tensor;

/// The shapes of several `[batch, seq, width]` tensors whose token rows are laid end to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ragged {
    shapes: Vec<[usize; 2]>,
}

impl Ragged {
    /// The layout of `parts` (their first two dimensions).
    pub fn of(parts: &[Tensor<3>]) -> Self {
        Ragged {
            shapes: parts
                .iter()
                .map(|t| {
                    let [b, s, _] = t.dims();
                    [b, s]
                })
                .collect(),
        }
    }

    /// Batches laid out.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// All the batches' tokens.
    pub fn tokens(&self) -> usize {
        self.shapes.iter().map(|[b, s]| b * s).sum()
    }

    /// The parts' token rows, end to end (any width; the parts have this layout, or one column
    /// each as [`Ragged::pack_last`] makes them).
    ///
    /// # Shapes
    /// - `parts[i]`: `[batch_i, seq_i, width]` → `[1, tokens, width]`
    pub fn pack(&self, parts: Vec<Tensor<3>>) -> Tensor<3> {
        end_to_end(parts.into_iter().map(|t| {
            let [b, s, w] = t.dims();
            t.reshape([b * s, w])
        }))
    }

    /// [`Ragged::pack`] undone.
    ///
    /// # Shapes
    /// - `t`: `[1, tokens, width]` → `[batch_i, seq_i, width]`
    pub fn unpack(&self, t: Tensor<3>) -> Vec<Tensor<3>> {
        self.cut(t, |[b, s]| [b, s])
    }

    /// Each part's rows at its last column, end to end (see [`Ragged::pack`]).
    ///
    /// # Shapes
    /// - `parts[i]`: `[batch_i, seq_i, width]` → `[1, rows, width]`
    pub fn pack_last(&self, parts: &[Tensor<3>]) -> Tensor<3> {
        self.pack(
            parts
                .iter()
                .map(|t| {
                    let s = t.dims()[1];
                    t.clone().narrow(1, s - 1, 1)
                })
                .collect(),
        )
    }

    /// [`Ragged::pack_last`] undone: each part's rows, one column each.
    ///
    /// # Shapes
    /// - `t`: `[1, rows, width]` → `[batch_i, 1, width]`
    pub fn unpack_last(&self, t: Tensor<3>) -> Vec<Tensor<3>> {
        self.cut(t, |[b, _]| [b, 1])
    }

    /// `t`'s rows cut into consecutive parts of `shape(part's [batch, seq])` (`[batch, seq']`),
    /// each `[batch, seq', width]`.
    fn cut(&self, t: Tensor<3>, shape: impl Fn([usize; 2]) -> [usize; 2]) -> Vec<Tensor<3>> {
        let [_, n, w] = t.dims();
        let rows = t.reshape([n, w]);
        let mut start = 0;
        self.shapes
            .iter()
            .map(|&bs| {
                let [b, s] = shape(bs);
                let part = rows.clone().narrow(0, start, b * s).reshape([b, s, w]);
                start += b * s;
                part
            })
            .collect()
    }
}

/// Row blocks `[rows_i, width]` laid end to end as `[1, Σ rows_i, width]`.
fn end_to_end(blocks: impl Iterator<Item = Tensor<2>>) -> Tensor<3> {
    let packed = Tensor::cat(blocks.collect(), 0);
    let [n, w] = packed.dims();
    packed.reshape([1, n, w])
}
