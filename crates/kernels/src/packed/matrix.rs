//! The enum over the packed storages: what a model's linear layer holds.

use std::sync::Arc;

use super::bf16::Bf16Matrix;
use super::blocks::QuantMatrix;
use super::rows::PackedRows;

/// A weight as the file keeps it: what a model's packed linear layer multiplies by
/// ([`crate::linear()`]).
#[derive(Debug)]
pub enum PackedMatrix {
    /// GGUF quantisation blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
    Blocks(QuantMatrix),
    /// bf16, two bytes per weight (a Hugging Face checkpoint's dtype), possibly read in place
    /// from the memory-mapped file.
    Bf16(Bf16Matrix),
}

/// A shared, immutable packed weight (cloning it is a reference count).
pub type PackedWeight = Arc<PackedMatrix>;

impl PackedMatrix {
    pub fn rows(&self) -> usize {
        match self {
            PackedMatrix::Blocks(m) => m.rows(),
            PackedMatrix::Bf16(m) => m.rows(),
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            PackedMatrix::Blocks(m) => m.cols(),
            PackedMatrix::Bf16(m) => m.cols(),
        }
    }

    /// Row `r` in `f32` (an embedding lookup).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        match self {
            PackedMatrix::Blocks(m) => m.dequantize_row(r, out),
            PackedMatrix::Bf16(m) => m.dequantize_row(r, out),
        }
    }

    /// Bytes held for the weights (scales included; a mapped bf16 matrix's are the file's
    /// pages).
    pub fn bytes(&self) -> usize {
        match self {
            PackedMatrix::Blocks(m) => m.bytes(),
            PackedMatrix::Bf16(m) => m.bytes(),
        }
    }

    /// What the weights are stored as, for reports (`"Q4_1 blocks"`, `"bf16"`).
    pub fn kind(&self) -> String {
        match self {
            PackedMatrix::Blocks(m) => format!("{} blocks", m.ggml_type().name()),
            PackedMatrix::Bf16(_) => "bf16".into(),
        }
    }
}
