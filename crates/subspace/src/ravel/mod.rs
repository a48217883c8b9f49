//! RAVEL-style evaluation: does an intervention change the country of a city (Cause) without
//! changing its continent or language (Isolate)?
//!
//! The data ([`data`]) and what the model answers to it ([`probe`], [`answers`]) give the
//! [`Labels`] pairs are drawn from ([`labelled`], [`eval`]); a run ([`runner`]) of a [`Method`]
//! with a [`RunConfig`] trains and scores it ([`eval`]'s metrics) into a [`RunResult`], which
//! [`saved`] runs keep with their intervention; [`breakdown`] splits a score by country,
//! [`pair_breakdown`] by the pairs' properties.

pub mod answers;
pub mod breakdown;
pub mod config;
pub mod data;
pub mod eval;
pub mod labelled;
pub mod labels;
pub mod method;
pub mod pair_breakdown;
pub mod probe;
pub mod result;
pub mod runner;
pub mod saved;

pub use answers::{AnswerPlan, Answers};
pub use config::RunConfig;
pub use data::{Attribute, City, RavelData, Split, Template};
pub use eval::{
    RavelExample, Role, Scores, evaluate, evaluate_each, outcomes, outcomes_each, pairs,
    split_examples,
};
pub use labelled::{SourcePrompts, SplitKind, Unit};
pub use labels::{Labelling, Labels};
pub use method::Method;
pub use probe::{KnownPrompt, ProbeReport};
pub use result::RunResult;
pub use runner::{RunEvent, initial_intervention, run, run_each_with_progress, run_with_progress};
pub use saved::{SavedRun, load_run};
