//! Where a run's pairs and their labels come from, loaded once from the files
//! `subspace ravel-probe` writes and checked against the model: the CLI and the RAVEL notebook
//! load them the same way, and a run records them in what it saves.

use std::path::{Path, PathBuf};

use super::answers::Answers;
use super::config::RunConfig;
use super::data::{RavelData, Split};
use super::eval::{RavelExample, Scores, evaluate, split_examples};
use super::labelled::{Draw, SourcePrompts, SplitKind, Unit, labelled_examples};
use super::probe::ProbeReport;
use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::lm::LanguageModel;
use crate::site::Site;

/// How pairs are drawn from the model's answers: RAVEL's held-out set, which tokens of the city
/// are edited, and how many known train cities train pairs may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labelling {
    pub kind: SplitKind,
    pub unit: Unit,
    /// `None`: every known train city (see [`super::labelled::Draw::train_cities`]).
    pub train_cities: Option<usize>,
    /// Which prompt the source city is read from.
    pub sources: SourcePrompts,
}

impl Labelling {
    /// RAVEL's `kind` split, the city's last token, every known train city.
    pub fn new(kind: SplitKind) -> Self {
        Labelling {
            kind,
            unit: Unit::LastToken,
            train_cities: None,
            sources: SourcePrompts::AnyTemplate,
        }
    }
}

/// Where a run's pairs and their labels come from.
#[derive(Debug, Clone)]
pub enum Labels {
    /// The first probe's known prompts; targets are the first token of the dataset's value
    /// (the runs saved in `data/results/` before RAVEL's labels): held-out cities on held-out
    /// templates, the city's last token.
    FirstProbe(ProbeReport),
    /// The model's own answers ([`super::answers`]), RAVEL's labels, drawn as `labelling` says.
    Model {
        answers: Answers,
        labelling: Labelling,
    },
}

impl Labels {
    /// `data/results/`, where `subspace ravel-probe` writes its files.
    pub fn results_dir() -> PathBuf {
        let dir = RavelData::default_dir();
        dir.parent().unwrap_or(&dir).join("results")
    }

    /// The first probe's file for the default model.
    pub fn default_probe_file() -> PathBuf {
        Self::results_dir().join("ravel_probe_smollm2.json")
    }

    /// The model's answers for the default model.
    pub fn default_answers_file() -> PathBuf {
        Self::results_dir().join("ravel_answers_smollm2.json")
    }

    /// The first probe's known prompts in `path` (`None`: [`Labels::default_probe_file`]),
    /// refused if another model made them.
    pub fn first_probe(path: Option<&Path>, lm: &LanguageModel) -> Result<Labels> {
        Ok(Labels::FirstProbe(ProbeReport::load(path, lm)?))
    }

    /// The model's answers in `path` (`None`: [`Labels::default_answers_file`]), drawn as
    /// `labelling` says; refused if another model gave them.
    pub fn model(path: Option<&Path>, lm: &LanguageModel, labelling: Labelling) -> Result<Labels> {
        Ok(Labels::Model {
            answers: Answers::load(path, lm)?,
            labelling,
        })
    }

    /// The model's answers in `answers` drawn as `labelling` says, or without one the first
    /// probe's known prompts in `probe` (`None`: the default files).
    pub fn load(
        labelling: Option<Labelling>,
        lm: &LanguageModel,
        answers: Option<&Path>,
        probe: Option<&Path>,
    ) -> Result<Labels> {
        match labelling {
            Some(labelling) => Self::model(answers, lm, labelling),
            None => Self::first_probe(probe, lm),
        }
    }

    /// The labels a run with `config` was drawn from (a saved run's own record).
    pub fn of_run(
        config: &RunConfig,
        lm: &LanguageModel,
        answers: Option<&Path>,
        probe: Option<&Path>,
    ) -> Result<Labels> {
        let labelling = config.split_kind.map(|kind| Labelling {
            kind,
            unit: config.unit,
            train_cities: config.train_cities,
            sources: config.sources,
        });
        Self::load(labelling, lm, answers, probe)
    }

    /// The held-out set, unit and train cities these labels draw, as a [`RunConfig`] records
    /// them (`None`, last token, all cities for the first probe).
    pub fn record(&self, config: &mut RunConfig) {
        let (kind, unit, train_cities, sources) = match self {
            Labels::FirstProbe(_) => (None, Unit::LastToken, None, SourcePrompts::AnyTemplate),
            Labels::Model { labelling, .. } => (
                Some(labelling.kind),
                labelling.unit,
                labelling.train_cities,
                labelling.sources,
            ),
        };
        config.split_kind = kind;
        config.unit = unit;
        config.train_cities = train_cities;
        config.sources = sources;
    }

    /// Train cities the model knows, per country (for the breakdown by source country).
    pub fn known_train_cities_by_country(
        &self,
        data: &RavelData,
    ) -> std::collections::BTreeMap<String, usize> {
        match self {
            Labels::FirstProbe(probe) => {
                super::breakdown::known_cities_per_country(data, probe, Split::Train)
            }
            Labels::Model { answers, .. } => answers.known_by_country_in(data, Split::Train),
        }
    }

    /// One split's pairs as a run with `config` draws them: train (`n_train` cause pairs,
    /// `seed`), val (`n_eval`, `seed + 1`) or test (`n_eval`, `seed + 2`).
    pub fn pairs(
        &self,
        lm: &LanguageModel,
        data: &RavelData,
        config: &RunConfig,
        split: Split,
    ) -> Result<Vec<RavelExample>> {
        let (n, seed) = match split {
            Split::Train => (config.n_train, config.seed),
            Split::Val => (config.n_eval, config.seed + 1),
            Split::Test => (config.n_eval, config.seed + 2),
        };
        match self {
            Labels::FirstProbe(probe) => split_examples(lm, data, probe, split, n, seed),
            Labels::Model { answers, labelling } => {
                let draw = Draw {
                    kind: labelling.kind,
                    unit: labelling.unit,
                    train_cities: labelling.train_cities,
                    sources: labelling.sources,
                    seed,
                };
                labelled_examples(lm, data, answers, &draw, split, n)
            }
        }
    }

    /// The scores of `intervention` at `site` on one split's pairs as a run with `config`
    /// draws them.
    pub fn scores(
        &self,
        lm: &LanguageModel,
        data: &RavelData,
        (site, intervention): (Site, &Intervention),
        config: &RunConfig,
        split: Split,
    ) -> Result<Scores> {
        let examples = self.pairs(lm, data, config, split)?;
        evaluate(lm, site, intervention, &examples, config.scoring_batch())
    }
}

/// What `subspace ravel-probe` wrote at `path`, or a message that says to run it.
fn read_results_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        SubspaceError::Data(format!(
            "cannot read {}: {e}; run `subspace ravel-probe` first",
            path.display()
        ))
    })
}

/// Refuses labels another model made: its answers say nothing of this one's.
fn check_model(path: &Path, theirs: &str, lm: &LanguageModel) -> Result<()> {
    if theirs != lm.name {
        return Err(SubspaceError::OtherModel {
            what: "the RAVEL labels file",
            theirs: format!("{theirs}, in {}", path.display()),
            ours: lm.name.clone(),
        });
    }
    Ok(())
}

impl ProbeReport {
    /// The first probe's report in `path` (default file when `None`), checked against `lm`.
    pub fn load(path: Option<&Path>, lm: &LanguageModel) -> Result<ProbeReport> {
        let path = path.map_or_else(Labels::default_probe_file, Path::to_path_buf);
        let bad = |what: &str| {
            SubspaceError::Data(format!(
                "{} is not a `subspace ravel-probe --first-token` file ({what})",
                path.display()
            ))
        };
        let v: serde_json::Value =
            serde_json::from_str(&read_results_file(&path)?).map_err(|e| bad(&e.to_string()))?;
        if let Some(model) = v["model"].as_str() {
            check_model(&path, model, lm)?;
        }
        serde_json::from_value(v["report"].clone()).map_err(|e| bad(&e.to_string()))
    }
}

impl Answers {
    /// The model's answers in `path` (default file when `None`), checked against `lm`.
    pub fn load(path: Option<&Path>, lm: &LanguageModel) -> Result<Answers> {
        let path = path.map_or_else(Labels::default_answers_file, Path::to_path_buf);
        let answers: Answers = serde_json::from_str(&read_results_file(&path)?).map_err(|e| {
            SubspaceError::Data(format!(
                "{} is not a `subspace ravel-probe` file: {e}",
                path.display()
            ))
        })?;
        check_model(&path, &answers.model, lm)?;
        Ok(answers)
    }
}
