//! Rotary position embeddings, in both pair layouts (see [`RopeLayout`]).

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::RopeLayout;

/// Cosine and sine tables for one batch, already gathered at each row's positions.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// `[batch, 1, seq, head_dim / 2]`
    pub cos: Tensor<4>,
    /// `[batch, 1, seq, head_dim / 2]`
    pub sin: Tensor<4>,
}

impl RopeTables {
    /// Tables for the given position ids (`positions[b][s]`) at the inverse frequencies
    /// `inv_freq` ([`crate::LlamaConfig::inv_freq`]), stored as `f32`.
    pub fn new(inv_freq: &[f64], positions: &[Vec<usize>], device: &Device) -> Self {
        let half = inv_freq.len();
        let batch = positions.len();
        let seq = positions.first().map_or(0, Vec::len);
        let mut cos = Vec::with_capacity(batch * seq * half);
        let mut sin = Vec::with_capacity(batch * seq * half);
        for row in positions {
            for &p in row {
                for &f in inv_freq {
                    // transformers computes the angle in f32; rounding the frequency first
                    // keeps the tables bit-compatible with it for realistic positions.
                    let angle = (f as f32) * (p as f32);
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let shape = [batch, 1, seq, half];
        RopeTables {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotates queries or keys.
    ///
    /// # Shapes
    /// - `x`: `[batch, heads, seq, head_dim]`
    /// - output: same
    pub fn apply(&self, x: Tensor<4>, layout: RopeLayout) -> Tensor<4> {
        match kernels::fused::rotary(&x, self.rotary_tables(layout)) {
            Some(out) => out,
            None => self.apply_composed(x, layout),
        }
    }

    /// [`RopeTables::apply`] from burn's operations ([`kernels::fused::rotary_composed`]): on
    /// backends without the fused one, and as a reference.
    ///
    /// # Shapes
    /// - as [`RopeTables::apply`]
    pub fn apply_composed(&self, x: Tensor<4>, layout: RopeLayout) -> Tensor<4> {
        kernels::fused::rotary_composed(x, self.rotary_tables(layout))
    }

    /// The tables as the fused operations take them.
    pub fn rotary_tables(&self, layout: RopeLayout) -> kernels::fused::RotaryTables<'_> {
        kernels::fused::RotaryTables {
            cos: &self.cos,
            sin: &self.sin,
            interleaved: layout == RopeLayout::Interleaved,
        }
    }
}
