//! Interventions on a burn Llama: read the residual stream at any site, patch it from another
//! prompt (whole vector, neurons, or a rotated subspace), train the subspace with Distributed
//! Alignment Search, save it, and show the results.
//!
//! The folders follow the data flow: [`site`] says where, [`intervention`] says what, [`pair`]
//! and [`edits`] turn pairs of prompts into edits; the verbs ([`patch`], [`sweep`],
//! [`generate`], [`train`]) run them on a [`LanguageModel`]; [`store`] saves what training
//! learns, [`ravel`] evaluates it, [`readout`] and [`display`] turn outputs into numbers, tables
//! and plots. Where to look first: [`attribution`] estimates every site's patching effect from
//! one backward pass, [`lens`] reads each layer's stream through the final norm and head. How a forward pass with edits is run (the blocks loop, shared beginnings,
//! batching, the stop flag) is the [`engine`]'s business.
#![forbid(unsafe_code)]

pub mod attribution;
pub mod display;
pub mod edits;
pub mod engine;
pub mod error;
mod file_lock;
mod fingerprint;
pub mod generate;
pub mod intervention;
pub mod lens;
pub mod lm;
pub mod pair;
pub mod patch;
pub mod ravel;
pub mod readout;
pub mod site;
pub mod store;
pub mod sweep;
pub mod train;
pub mod tutorial;

/// Re-exported for notebooks (metadata of a saved intervention, reading result files): each
/// `:dep` line costs the Rust kernel seconds of re-analysing the dependency graph.
pub use serde_json;

pub use attribution::{Attribution, AttributionPair, Metric};
pub use display::Patched;
pub use engine::StopFlag;
pub use error::{Result, SubspaceError};
pub use generate::{GenerateConfig, Generated, Held, Sampling};
pub use intervention::{Intervention, PlacedIntervention, Unrotate};
pub use lm::{LanguageModel, Prompt};
pub use pair::{Aligned, Example, Pair, PairPrompts, SpanAlignment};
pub use patch::{PatchSpec, PromptTrace};
pub use readout::{Prediction, TokenProb, TopK};
pub use site::{Component, Site};
pub use train::{DasConfig, StepReport, TrainReport};
