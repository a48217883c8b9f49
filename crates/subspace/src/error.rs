//! One error type for the interventions crate. Messages say what is wrong and what to do.

/// Everything that can go wrong when reading, patching or training.
#[derive(Debug, thiserror::Error)]
pub enum SubspaceError {
    #[error(transparent)]
    Model(#[from] llama::LlamaError),

    #[error("layer {layer} does not exist: this model has layers 0 to {}", n_layers - 1)]
    LayerOutOfRange { layer: usize, n_layers: usize },

    #[error("position {position} is beyond the {what} prompt, which has {len} tokens (positions 0 to {}); tokens: {tokens:?}", len.saturating_sub(1))]
    PositionOutOfRange {
        what: &'static str,
        position: usize,
        len: usize,
        tokens: Vec<String>,
    },

    #[error("{0}")]
    Input(String),

    #[error(
        "training stopped at step {step}: the loss became {loss} (not finite); the intervention keeps the weights of step {last_good}. Try a smaller learning rate"
    )]
    NonFiniteLoss {
        step: usize,
        loss: f32,
        last_good: usize,
    },

    #[error(
        "training diverged at step {step}: {what}; the intervention keeps the weights of the step before. Lower the learning rate"
    )]
    Diverged { step: usize, what: String },

    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not a saved intervention: {reason}")]
    BadFile {
        path: std::path::PathBuf,
        reason: String,
    },

    #[error(
        "the intervention in {path} was made for {saved}, but the loaded model is {current}; load the model it was trained on"
    )]
    WrongModel {
        path: std::path::PathBuf,
        saved: String,
        current: String,
    },

    #[error("tensor backend: {0}")]
    Backend(String),
}

impl From<formats::FormatError> for SubspaceError {
    fn from(e: formats::FormatError) -> Self {
        SubspaceError::Model(e.into())
    }
}

pub type Result<T, E = SubspaceError> = std::result::Result<T, E>;

pub(crate) fn input<T>(msg: impl Into<String>) -> Result<T> {
    Err(SubspaceError::Input(msg.into()))
}
