//! The bytes-on-disk formats subspace reads, kept apart from the model so that the code which
//! meets untrusted files is small, burn-free and cheap to fuzz (see `fuzz/`):
//!
//! - [`gguf`]: the GGUF container (header, metadata, tensor directory), dequantisation of its
//!   tensor types, and the tokenizer a GGUF's metadata describes;
//! - [`intervention_file`]: the container of a saved intervention (safetensors + JSON).
//!
//! Every length read from a file is checked against the bytes really there before anything is
//! allocated; every failure is a [`FormatError`] that says what is wrong, never a panic.
//!
//! `unsafe` is denied here but for the memory map of a GGUF file (and its release of pages),
//! each allowed where it is made, with why it is sound.
#![deny(unsafe_code)]

mod error;
pub mod gguf;
pub mod intervention_file;

pub use error::{FormatError, Result};
