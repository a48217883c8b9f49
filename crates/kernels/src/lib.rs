//! subspace's CPU runtime: everything below the model that knows about the machine.
//!
//! - [`packed`]: weights kept as the file stores them (GGUF blocks, bf16);
//! - [`matmul`]: the products that read them, one file per instruction set (portable bodies
//!   compiled for AVX2 and without SIMD, AVX-512 tiles, an AVX-512 GEMM, AMX), chosen at run
//!   time ([`Kernels`]), and [`linear()`], the same products as a burn operation with autodiff;
//! - [`fused`]: attention, rotary embeddings, SwiGLU, RMSNorm and log-softmax as single flex
//!   operations with their own backward;
//! - [`pool`] (which threads run the work) and [`allocator`] (what malloc keeps): the policies
//!   every program that runs the model shares, the CLI and notebooks alike;
//! - [`roofline`]: this machine's measured peak arithmetic and memory read rate, the floors
//!   that benchmarks set their figures against.
//!
//! The model crate above is free of SIMD and `unsafe`; every `unsafe` block here says why it
//! is sound (`clippy::undocumented_unsafe_blocks` is denied).
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod allocator;
pub mod error;
pub mod fused;
pub mod linear;
pub mod matmul;
pub mod packed;
mod parallel_fill;
pub mod pool;
pub mod roofline;

pub use error::{KernelError, Result};
pub use linear::{QuantOps, linear};
pub use matmul::{Kernels, matmul_w, matmul_w_with, matmul_wt, matmul_wt_with};
pub use packed::{
    BLOCK, Bf16Matrix, PackedMatrix, PackedRow, PackedRows, PackedWeight, QuantMatrix, TileCache,
};
pub use roofline::Roofline;
