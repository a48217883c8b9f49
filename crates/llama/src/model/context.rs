//! What every block needs besides the hidden state: rotary tables and the attention mask.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::rope::RopeTables;
use crate::config::LlamaConfig;

/// Added to masked attention scores. Finite (not `-inf`) so that a padding row, whose every key
/// is masked, gets a uniform distribution instead of NaN; `exp(-1e9)` is exactly 0 in `f32`.
const MASKED: f32 = -1e9;

/// A batch of token sequences, left-padded to one length.
///
/// Left padding keeps every prompt's last token in the last column, where the next-token logits
/// are read. Position ids restart at 0 on each row's first real token, so a padded row computes
/// the same values as the same prompt alone.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `[batch, seq]`
    pub ids: Tensor<2, Int>,
    /// Number of padding tokens at the start of each row.
    pub padding: Vec<usize>,
    /// Padded length.
    pub seq_len: usize,
}

impl TokenBatch {
    /// Left-pads `rows` with `pad_id`. Rows must not be empty.
    pub fn new(rows: &[Vec<u32>], pad_id: u32, device: &Device) -> Self {
        let seq_len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * seq_len);
        let mut padding = Vec::with_capacity(rows.len());
        for row in rows {
            let pad = seq_len - row.len();
            padding.push(pad);
            ids.extend(std::iter::repeat_n(i64::from(pad_id), pad));
            ids.extend(row.iter().map(|&t| i64::from(t)));
        }
        TokenBatch {
            ids: Tensor::from_data(TensorData::new(ids, [rows.len(), seq_len]), device),
            padding,
            seq_len,
        }
    }

    pub fn batch_size(&self) -> usize {
        self.padding.len()
    }

    /// Column of token `position` (0-based within the unpadded prompt) of row `row`.
    pub fn column(&self, row: usize, position: usize) -> usize {
        self.padding[row] + position
    }

    /// Length of row `row` without its padding.
    pub fn len_of(&self, row: usize) -> usize {
        self.seq_len - self.padding[row]
    }
}

/// Per-batch tensors shared by all blocks.
#[derive(Debug, Clone)]
pub struct ForwardContext {
    pub rope: RopeTables,
    /// Additive mask `[batch, 1, seq_q, seq_k]`: 0 where a query may attend, a large negative
    /// number where it may not (future tokens, padding).
    pub mask: Tensor<4>,
    /// What the sliding-window layers read instead (their window's mask, their own rotary
    /// base); `None` where the model has no such layers.
    pub sliding: Option<Box<ForwardContext>>,
}

impl ForwardContext {
    pub fn new(config: &LlamaConfig, batch: &TokenBatch, device: &Device) -> Self {
        let positions: Vec<Vec<usize>> = batch
            .padding
            .iter()
            .map(|&pad| (0..batch.seq_len).map(|c| c.saturating_sub(pad)).collect())
            .collect();
        let sliding = config.has_sliding_layers().then(|| {
            Box::new(ForwardContext {
                rope: RopeTables::new(&config.inv_freq_sliding(), &positions, device),
                mask: mask(batch, config.sliding_window, device),
                sliding: None,
            })
        });
        ForwardContext {
            rope: RopeTables::new(&config.inv_freq(), &positions, device),
            mask: mask(batch, None, device),
            sliding,
        }
    }

    /// What a layer reads: this context, or its sliding-window one for a sliding layer.
    pub fn for_layer(&self, sliding: bool) -> &ForwardContext {
        match (&self.sliding, sliding) {
            (Some(s), true) => s,
            _ => self,
        }
    }

    /// The same context restricted to query columns `from..` (keys stay complete): used when
    /// the columns before `from` are cached and only the later ones are recomputed.
    pub fn queries_from(&self, from: usize) -> Self {
        let [_, _, s, _] = self.rope.cos.dims();
        let n = s - from;
        ForwardContext {
            rope: RopeTables {
                cos: self.rope.cos.clone().narrow(2, from, n),
                sin: self.rope.sin.clone().narrow(2, from, n),
            },
            mask: self.mask.clone().narrow(2, from, n),
            sliding: self
                .sliding
                .as_ref()
                .map(|c| Box::new(c.queries_from(from))),
        }
    }

    /// The context of columns `..to` alone (queries and keys): computing the cached prefix.
    pub fn columns_before(&self, to: usize) -> Self {
        ForwardContext {
            rope: RopeTables {
                cos: self.rope.cos.clone().narrow(2, 0, to),
                sin: self.rope.sin.clone().narrow(2, 0, to),
            },
            mask: self.mask.clone().narrow(2, 0, to).narrow(3, 0, to),
            sliding: self
                .sliding
                .as_ref()
                .map(|c| Box::new(c.columns_before(to))),
        }
    }
}

/// The additive mask of `batch`: a query sees itself and earlier real tokens, and within a
/// `window` only the last `window` of them (transformers' `kv > q − window`).
///
/// # Shapes
/// - output: `[batch, 1, seq, seq]`
fn mask(batch: &TokenBatch, window: Option<usize>, device: &Device) -> Tensor<4> {
    let (b, s) = (batch.batch_size(), batch.seq_len);
    let window = window.unwrap_or(usize::MAX);
    let mut mask = vec![0f32; b * s * s];
    for (row, &pad) in batch.padding.iter().enumerate() {
        for q in 0..s {
            for k in 0..s {
                if k > q || k < pad || q - k >= window {
                    mask[(row * s + q) * s + k] = MASKED;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(mask, [b, 1, s, s]), device)
}
