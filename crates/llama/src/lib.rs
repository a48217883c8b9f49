//! A Llama in burn that loads real weights (GGUF, safetensors, the Hugging Face Hub) and
//! reproduces transformers' logits, with every hidden state reachable: blocks are public so
//! that callers can read or edit the residual stream between them.
//!
//! The model is plain burn: its packed-weight products and fused operations come from the
//! `kernels` crate below it, and this crate has no SIMD and no `unsafe` of its own beyond the
//! memory map of a safetensors file (allowed where it is made, with why it is sound).
#![deny(unsafe_code)]
//!
//! ```no_run
//! use llama::{load, Backend, ModelSource};
//! let device = Backend::Flex.device()?;
//! let loaded = load::load(&ModelSource::default_model()?, &device)?;
//! let ids = loaded.tokenizer.encode("The city of Paris is in the country of")?;
//! # Ok::<(), llama::LlamaError>(())
//! ```

pub mod backend;
pub mod config;
pub mod error;
pub mod load;
pub mod model;
pub mod tokenizer;

pub use backend::Backend;
pub use config::{LlamaConfig, RopeLayout, RopeScaling};
pub use error::{LlamaError, Result};
pub use load::{Loaded, ModelSource};
pub use model::{Block, ForwardContext, Hook, Inner, KeyValue, Llama, NoHook, Ragged, TokenBatch};
pub use tokenizer::Tokenizer;
