//! Interventions on a burn Llama: read the residual stream at any site, patch it from another
//! prompt (whole vector, neurons, or a rotated subspace), train the subspace with Distributed
//! Alignment Search, save it, and show the results.
//!
//! The folders follow the data flow: [`site`] says where, [`intervention`] says what, [`edits`]
//! turns pairs of prompts into edits, [`run`] does the forward pass with edits, [`train`] learns subspaces, [`store`] saves them,
//! [`readout`] and [`display`] turn outputs into numbers, tables and plots.

mod batching;
pub mod display;
pub mod edits;
pub mod error;
mod file_lock;
mod fingerprint;
pub mod generate;
pub mod intervention;
pub mod lm;
pub mod pair;
pub mod patch;
mod pool;
mod prefix;
pub mod ravel;
pub mod readout;
pub mod run;
pub mod site;
pub mod stop;
pub mod store;
pub mod sweep;
pub mod train;
pub mod tutorial;

/// Re-exported for notebooks (metadata of a saved intervention, reading result files): each
/// `:dep` line costs the Rust kernel seconds of re-analysing the dependency graph.
pub use serde_json;

pub use display::Patched;
pub use error::{Result, SubspaceError};
pub use generate::{GenerateConfig, Generated, Held, Sampling};
pub use intervention::{Intervention, PlacedIntervention, Unrotate};
pub use lm::{LanguageModel, Prompt};
pub use pair::{Aligned, Example, Pair, PairPrompts, SpanAlignment};
pub use patch::{PatchSpec, PromptTrace};
pub use readout::{Prediction, TokenProb, TopK};
pub use site::{Component, Site};
pub use stop::StopFlag;
pub use train::{DasConfig, StepReport, TrainReport};
