//! One error type for the interventions crate. Messages say what is wrong and what to do.
//!
//! Variants carry what they print (names, numbers), not the types of the modules that raise
//! them, so that this file sits below every other one.

/// Everything that can go wrong when reading, patching or training.
#[derive(Debug, thiserror::Error)]
pub enum SubspaceError {
    #[error(transparent)]
    Model(#[from] llama::LlamaError),

    #[error("layer {layer} does not exist: this model has layers 0 to {}", n_layers - 1)]
    LayerOutOfRange { layer: usize, n_layers: usize },

    #[error(
        "{component} has no heads: only query, key, value and head_output sites name a head (leave the head out for the whole vector)"
    )]
    NoHeads {
        /// The component's name (`block_output`, …).
        component: String,
    },

    #[error(
        "head {head} of {component} does not exist: this model has {n_heads} of them (0 to {}){}",
        n_heads.saturating_sub(1),
        shared.map(|g| format!("; keys and values have grouped-query heads, each shared by {g} query heads: query head h reads key/value head h / {g}")).unwrap_or_default()
    )]
    HeadOutOfRange {
        /// The component's name (`key`, …).
        component: String,
        head: usize,
        n_heads: usize,
        shared: Option<usize>,
    },

    #[error("position {position} is beyond the {what} prompt, which has {len} tokens (positions 0 to {}); tokens: {tokens:?}", len.saturating_sub(1))]
    PositionOutOfRange {
        what: &'static str,
        position: usize,
        len: usize,
        tokens: Vec<String>,
    },

    #[error("the prompt is empty: give some text for the model to continue")]
    EmptyPrompt,

    #[error(
        "the {which} prompt has no token {word:?} (a word that is several tokens cannot be one position: give the position of one of its tokens with `at_positions`); its tokens are {tokens:?}"
    )]
    WordNotInPrompt {
        which: &'static str,
        word: String,
        tokens: Vec<String>,
    },

    #[error(
        "the {which} prompt has no run of tokens spelling {words:?} (spans are whole tokens: give words as the prompt writes them, or token ranges with `at_spans`); its tokens are {tokens:?}"
    )]
    SpanNotInPrompt {
        which: &'static str,
        words: String,
        tokens: Vec<String>,
    },

    #[error(
        "a base span of {base_len} tokens and a source span of {source_len} tokens cannot be aligned by the rule {rule}{}",
        if *base_len == 0 || *source_len == 0 { ": a span needs at least one token" } else { ": use SpanAlignment::Last or First to pair as many tokens as the shorter span has" }
    )]
    SpansNotAligned {
        base_len: usize,
        source_len: usize,
        /// The rule's name (`Exact`, `Last`, `First`).
        rule: String,
    },

    #[error(
        "the prompt has {len} tokens but the model reads at most {max} (its context length); shorten the prompt (its attention alone would take about {attention_mib} MiB)"
    )]
    PromptTooLong {
        len: usize,
        max: usize,
        attention_mib: u64,
    },

    #[error(
        "{what} would need about {need_mib} MiB, but this machine has {available_mib} MiB available; use shorter prompts or smaller batches"
    )]
    TooBigForMemory {
        what: String,
        need_mib: u64,
        available_mib: u64,
    },

    #[error("{name} = {value} is not allowed: {expected}")]
    BadSetting {
        name: &'static str,
        value: String,
        expected: String,
    },

    #[error("{0}")]
    BadIntervention(String),

    #[error(
        "a `{kind}` intervention has no parameters to train; use a rotated, low-rank or boundless one"
    )]
    NotTrainable { kind: &'static str },

    #[error(
        "{what} was made with another model or tokenizer ({theirs}) than this one ({ours}); make it again with this model"
    )]
    OtherModel {
        what: &'static str,
        theirs: String,
        ours: String,
    },

    #[error("{0}")]
    Data(String),

    #[error("{path} is not a usable checkpoint: {reason}; delete it to start the run afresh")]
    BadCheckpoint {
        path: std::path::PathBuf,
        reason: String,
    },

    #[error(
        "{path} is being written by another process (its lock {lock} is held); wait for it or choose another path"
    )]
    Busy {
        path: std::path::PathBuf,
        lock: std::path::PathBuf,
    },

    /// Stopped by a raised [`crate::StopFlag`] (Ctrl-C): `step` is the last finished training
    /// step, if training was under way; `resume` says what was kept and how to go on.
    #[error("stopped on request{}; {resume}", step.map_or(String::new(), |s| format!(" after step {s}")))]
    Interrupted { step: Option<usize>, resume: String },

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

    #[error(
        "the trained subspace collapsed (its directions became dependent); lower the learning rate"
    )]
    SubspaceCollapsed,

    #[error("tensor backend: {0}")]
    Backend(String),
}

impl From<formats::FormatError> for SubspaceError {
    fn from(e: formats::FormatError) -> Self {
        SubspaceError::Model(e.into())
    }
}

pub type Result<T, E = SubspaceError> = std::result::Result<T, E>;

/// A setting outside its range: `bad_setting("lr", lr, "a finite number above 0")`.
pub(crate) fn bad_setting<T>(
    name: &'static str,
    value: impl std::fmt::Display,
    expected: impl Into<String>,
) -> Result<T> {
    Err(SubspaceError::BadSetting {
        name,
        value: value.to_string(),
        expected: expected.into(),
    })
}

pub(crate) fn bad_intervention<T>(msg: impl Into<String>) -> Result<T> {
    Err(SubspaceError::BadIntervention(msg.into()))
}
