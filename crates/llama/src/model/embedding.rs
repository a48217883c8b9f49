//! The token embedding: a dense burn `Embedding`, or rows read from a packed matrix (the same
//! one a tied head multiplies by, so a bf16 or quantised checkpoint keeps one copy of its
//! largest matrix, not a packed one plus an `f32` one).

use burn::module::Module;
use burn::nn::Embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::projection::PackedLinear;

#[derive(Module, Debug)]
pub enum TokenEmbedding {
    /// `[vocab, hidden]` in `f32`.
    Dense(Embedding),
    /// `[vocab, hidden]` packed; rows are widened to `f32` on lookup. The model is frozen, so
    /// the lookup is a constant for autodiff (no gradient reaches the embeddings).
    Packed(PackedLinear),
}

impl TokenEmbedding {
    /// # Shapes
    /// - `ids`: `[batch, seq]` → `[batch, seq, hidden]`
    pub fn forward(&self, ids: Tensor<2, Int>, device: &Device) -> Tensor<3> {
        match self {
            TokenEmbedding::Dense(e) => e.forward(ids),
            TokenEmbedding::Packed(p) => {
                let [b, s] = ids.dims();
                let ids: Vec<i64> = ids
                    .into_data()
                    .convert::<i64>()
                    .try_to_vec::<i64>()
                    .unwrap_or_default();
                let d = p.weight.cols();
                Tensor::from_data(TensorData::new(self.rows_of(&ids), [b, s, d]), device)
            }
        }
    }

    /// Rows `ids` in `f32`, concatenated (`ids.len() × hidden` values). An id outside the
    /// vocabulary gives a row of zeros (the tokenizer never makes one; the loader checks that
    /// its vocabulary fits the model's).
    pub fn rows_of(&self, ids: &[i64]) -> Vec<f32> {
        match self {
            TokenEmbedding::Dense(e) => {
                let w = e.weight.val();
                let [vocab, d] = w.dims();
                let mut out = vec![0f32; ids.len() * d];
                for (&id, o) in ids.iter().zip(out.chunks_exact_mut(d)) {
                    if let Ok(id) = usize::try_from(id)
                        && id < vocab
                    {
                        let row = w.clone().narrow(0, id, 1).into_data().convert::<f32>();
                        o.copy_from_slice(row.as_slice::<f32>().unwrap_or(&vec![0.0; d]));
                    }
                }
                out
            }
            TokenEmbedding::Packed(p) => {
                let (vocab, d) = (p.weight.rows(), p.weight.cols());
                let mut out = vec![0f32; ids.len() * d];
                for (&id, o) in ids.iter().zip(out.chunks_exact_mut(d)) {
                    if let Ok(id) = usize::try_from(id)
                        && id < vocab
                    {
                        p.weight.dequantize_row(id, o);
                    }
                }
                out
            }
        }
    }

    /// `(vocab, hidden)`
    pub fn dims(&self) -> (usize, usize) {
        match self {
            TokenEmbedding::Dense(e) => {
                let [v, d] = e.weight.dims();
                (v, d)
            }
            TokenEmbedding::Packed(p) => (p.weight.rows(), p.weight.cols()),
        }
    }
}
