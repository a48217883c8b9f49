//! Weights kept as the file stores them, and the matrix products that read them directly.
//!
//! A forward of a few tokens uses each weight once per token, so on a CPU it is bound by how
//! many bytes of weights it streams, not by arithmetic. Keeping GGUF weights in their blocks at
//! one byte each, and bf16 checkpoints at two, instead of widening them to four, cuts those bytes
//! by 4× or 2× without changing a weight: the kernels widen each block in registers with the
//! dequantiser's own formula.

#[cfg(target_arch = "x86_64")]
mod amx;
mod bf16;
#[cfg(target_arch = "x86_64")]
mod gemm;
pub(crate) mod kernel;
mod matrix;
mod ops;
mod packed;
mod roofline;

pub use bf16::Bf16Matrix;
pub use kernel::{Kernels, matmul_w, matmul_w_with, matmul_wt, matmul_wt_with};
pub use matrix::QuantMatrix;
pub use ops::{QuantOps, linear};
pub use packed::{BLOCK, PackedMatrix, PackedRow, PackedRows, PackedWeight, TileCache};
pub use roofline::Roofline;
