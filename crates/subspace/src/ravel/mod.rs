//! RAVEL-style evaluation: does an intervention change the country of a city (Cause) without
//! changing its continent or language (Isolate)?

pub mod answers;
pub mod breakdown;
pub mod data;
pub mod eval;
pub mod labelled;
pub mod methods;
pub mod probe;

pub use answers::{AnswerPlan, Answers};
pub use data::{Attribute, City, RavelData, Split, Template};
pub use eval::{
    RavelExample, Role, Scores, evaluate, evaluate_each, outcomes, outcomes_each, pairs,
    split_examples,
};
pub use labelled::{SplitKind, Unit};
pub use methods::{Labels, Method, RunConfig, RunEvent, RunResult, SavedRun, load_run};
pub use probe::{KnownPrompt, ProbeReport};
