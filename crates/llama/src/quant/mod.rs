//! Weights kept in their GGUF blocks, and the matrix products that read them directly.
//!
//! A forward of a few tokens uses each weight once per token, so on a CPU it is bound by how
//! many bytes of weights it streams, not by arithmetic. Keeping Q4_0/Q4_1/Q8_0 weights at one
//! byte each (instead of dequantising them to four) cuts those bytes by 4× without changing a
//! weight: the kernels dequantise each block in registers with the dequantiser's own formula.

mod kernel;
mod matrix;
mod ops;

pub use kernel::{Kernels, matmul_w, matmul_w_with, matmul_wt, matmul_wt_with};
pub use matrix::{BLOCK, QuantMatrix};
pub use ops::{QuantOps, QuantWeight, linear};
