//! GGUF files: the bounds-checked reader, dequantisation of the tensor types people's files use,
//! and the tokenizer described by `tokenizer.ggml.*` metadata. What a llama GGUF *means* (its
//! configuration, its weight names) is the model crate's business, not this one's.

mod dequant;
mod reader;
pub mod tokenizer;
mod types;

pub use dequant::{dequantize, scale_min_k4};
pub use reader::{GgufFile, GgufValue, TensorInfo};
pub use types::GgmlType;
