//! One error type for the formats crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path} does not exist")]
    NotFound { path: PathBuf },

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

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A saved-intervention file that is not what it claims to be.
    #[error("{0}")]
    InterventionFile(String),
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

impl FormatError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            FormatError::NotFound { path }
        } else {
            FormatError::Io { path, source }
        }
    }
}
