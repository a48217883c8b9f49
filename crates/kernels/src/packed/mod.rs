//! Weights kept as the file stores them (GGUF blocks at about one byte a weight, bf16 at two),
//! read one block of 32 at a time and widened to `f32` in registers by the products
//! ([`crate::matmul`]).
//!
//! A forward of a few tokens uses each weight once per token, so on a CPU it is bound by how
//! many bytes of weights it streams, not by arithmetic. Keeping GGUF weights in their blocks and
//! bf16 checkpoints in bf16, instead of widening them to four bytes, cuts those bytes by 4× or
//! 2× without changing a weight: each block is widened with the dequantiser's own formula.
//!
//! Bottom to top: `rows.rs` (the traits the products read), `blocks.rs` and `bf16.rs` (the two
//! storages, each with its AVX-512 widening), `matrix.rs` (the enum over them).

mod bf16;
mod blocks;
mod matrix;
mod rows;

pub use bf16::Bf16Matrix;
pub use blocks::{QuantMatrix, QuantRow};
pub use matrix::{PackedMatrix, PackedWeight};
pub use rows::{BLOCK, PackedRow, PackedRows, TileCache};
