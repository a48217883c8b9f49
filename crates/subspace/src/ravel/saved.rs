//! Runs saved by `subspace ravel --save`: the trained intervention with the settings and
//! scores of its run, loaded back (for the model it was trained on only) and scored again.

use std::path::Path;

use super::config::RunConfig;
use super::data::{RavelData, Split};
use super::eval::{RavelExample, Scores};
use super::labels::Labels;
use super::result::RunResult;
use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::lm::LanguageModel;
use crate::site::Site;

/// A run saved by `subspace ravel --save` (or [`RunConfig::save`]): the trained intervention
/// and its site, the settings it was trained with and what it scored then.
#[derive(Debug, Clone)]
pub struct SavedRun {
    pub site: Site,
    pub intervention: Intervention,
    pub config: RunConfig,
    pub recorded: RunResult,
}

impl SavedRun {
    /// Scores the loaded intervention again on one split's pairs, drawn as its run drew them
    /// (so they give `recorded`'s numbers: the model and the pairs are the same).
    pub fn rescore(
        &self,
        lm: &LanguageModel,
        data: &RavelData,
        labels: &Labels,
        split: Split,
    ) -> Result<Scores> {
        labels.scores(
            lm,
            data,
            (self.site, &self.intervention),
            &self.config,
            split,
        )
    }

    /// The labels this run's pairs were drawn from (its recorded split kind, unit and train
    /// cities), loaded from `answers` or `probe` (`None`: the default files).
    pub fn labels(
        &self,
        lm: &LanguageModel,
        answers: Option<&Path>,
        probe: Option<&Path>,
    ) -> Result<Labels> {
        Labels::of_run(&self.config, lm, answers, probe)
    }

    /// The pairs of one split as its run drew them (for a breakdown of [`SavedRun::rescore`]).
    pub fn pairs(
        &self,
        lm: &LanguageModel,
        data: &RavelData,
        labels: &Labels,
        split: Split,
    ) -> Result<Vec<RavelExample>> {
        labels.pairs(lm, data, &self.config, split)
    }
}

/// Loads a saved RAVEL run for `lm` (refused, as by [`crate::store::load`], if it was trained
/// on another model).
pub fn load_run(path: &Path, lm: &LanguageModel) -> Result<SavedRun> {
    let saved = crate::store::load(path, lm)?;
    let ravel = &saved.meta.notes["ravel"];
    let parse = |what: &str| -> Result<_> {
        Err(SubspaceError::Data(format!(
            "{} holds an intervention but no RAVEL {what}; it was not saved by `subspace ravel --save`",
            path.display()
        )))
    };
    let Ok(config) = serde_json::from_value::<RunConfig>(ravel["config"].clone()) else {
        return parse("settings");
    };
    let Ok(recorded) = serde_json::from_value::<RunResult>(ravel["result"].clone()) else {
        return parse("scores");
    };
    Ok(SavedRun {
        site: saved.site,
        intervention: saved.intervention,
        config,
        recorded,
    })
}
