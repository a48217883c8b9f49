//! RAVEL's metrics for an intervention at a site, on (base, source) pairs built from known prompts.
//!
//! - **Cause**: on prompts about the country, the patched run answers the *source* city's country.
//! - **Isolate**: on prompts about the continent or the language, it still gives the *base* city's.
//! - **Disentangle** = (Cause + Isolate) / 2.
//!
//! Isolate is also reported per kept attribute (continent, language), because one number can
//! hide a method that keeps the language and loses the continent.
//!
//! Pairs whose two cities share the attribute's value do not count for that attribute (the
//! patch could not show any difference there).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::data::{Attribute, RavelData, Split};
use super::probe::{KnownPrompt, ProbeReport, locate};
use crate::error::{Result, SubspaceError};
use crate::intervention::Intervention;
use crate::lm::LanguageModel;
use crate::pair::{Example, Pair};
use crate::site::Site;
use crate::train::DasObjective;

/// What a pair is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A country prompt: the patch should bring the source's country.
    Cause,
    /// A continent or language prompt: the patch should keep the base's answer.
    Isolate(Attribute),
}

impl Role {
    /// The attribute the base prompt asks about.
    pub fn attribute(self) -> Attribute {
        match self {
            Role::Cause => Attribute::Country,
            Role::Isolate(a) => a,
        }
    }
}

/// A (base, source) example with its role.
#[derive(Debug, Clone)]
pub struct RavelExample {
    pub example: Example,
    pub role: Role,
    /// The cities of the two prompts (indices into [`RavelData::cities`]).
    pub base_city: usize,
    pub source_city: usize,
    /// How a model-labelled pair was drawn (`None` for the first probe's pairs), for breaking a
    /// score down by the pairs' properties ([`super::pair_breakdown`]).
    pub origin: Option<PairOrigin>,
}

#[cfg(test)]
impl RavelExample {
    /// A pair of two placeholder prompts (tokens 1, 2; target 7), for the tests of what is
    /// counted over pairs.
    #[allow(clippy::unwrap_used)]
    pub(crate) fn for_tests(role: Role, source_city: usize, origin: Option<PairOrigin>) -> Self {
        let prompt = || crate::lm::Prompt {
            text: "x y".into(),
            ids: vec![1, 2],
            tokens: vec!["x".into(), " y".into()],
            tokenizer_tag: 0,
        };
        RavelExample {
            example: Pair::new(prompt(), prompt(), 0, 0).unwrap().with_target(7),
            role,
            base_city: 0,
            source_city,
            origin,
        }
    }
}

/// How a model-labelled pair was drawn: its templates, the two names' token counts, and the two
/// answers its target was cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairOrigin {
    /// Indices into [`RavelData::templates`].
    pub base_template: usize,
    pub source_template: usize,
    /// Tokens of the city's name in the base and in the source prompt.
    pub base_name_tokens: usize,
    pub source_name_tokens: usize,
    /// Where the source prompt's city begins (0: the prompt opens with it).
    pub source_name_start: usize,
    /// Whether the base answer states the base city's true value of the attribute asked.
    pub base_states_value: bool,
    /// Whether the counterfactual answer (the source city on the base template) states the
    /// source city's true value.
    pub counterfactual_states_value: bool,
    /// The two answers' tokens at the target position (they differ there): what an unmoved
    /// run and what a fully moved run would say.
    pub base_token: u32,
    pub counterfactual_token: u32,
}

/// Builds `n` pairs of `role` from `split`: the base is a known prompt of the role's attribute,
/// the source a known country prompt of another city whose value for that attribute differs.
pub fn pairs(
    lm: &LanguageModel,
    data: &RavelData,
    probe: &ProbeReport,
    split: Split,
    role: Role,
    n: usize,
    seed: u64,
) -> Result<Vec<RavelExample>> {
    let attribute = role.attribute();
    let of = |a: Attribute| -> Vec<&KnownPrompt> {
        probe
            .known
            .iter()
            .filter(|k| {
                data.templates[k.template].attribute == a && data.cities[k.city].split == split
            })
            .collect()
    };
    let bases = of(attribute);
    let sources = of(Attribute::Country);
    if bases.is_empty() || sources.is_empty() {
        return Err(SubspaceError::Data(format!(
            "no known {attribute:?} or Country prompts in the {split:?} split: probe more cities or templates"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (role_tag(role) << 32));
    let mut out = Vec::with_capacity(n);
    let mut tries = 0;
    while out.len() < n && tries < n * 50 {
        tries += 1;
        // Tokenizing thousands of candidates takes seconds: a stop is read between them.
        lm.stop_flag().check(crate::engine::stop::nothing_saved)?;
        let b = bases[rng.random_range(0..bases.len())];
        let s = sources[rng.random_range(0..sources.len())];
        let (bc, sc) = (&data.cities[b.city], &data.cities[s.city]);
        if b.city == s.city || bc.value(attribute) == sc.value(attribute) {
            continue;
        }
        let base_t = &data.templates[b.template];
        let source_t = &data.templates[s.template];
        let (Some((base, _)), Some((source, _))) = (
            locate(lm, base_t, &bc.name)?,
            locate(lm, source_t, &sc.name)?,
        ) else {
            continue;
        };
        let target = match role {
            Role::Cause => super::probe::answer_token(lm, &sc.country)?,
            Role::Isolate(_) => b.answer,
        };
        out.push(RavelExample {
            example: Pair::new(base, source, b.position, s.position)?.with_target(target),
            role,
            origin: None,
            base_city: b.city,
            source_city: s.city,
        });
    }
    Ok(out)
}

/// Seeds each role's draw apart.
pub(super) fn role_tag(role: Role) -> u64 {
    match role {
        Role::Cause => 1,
        Role::Isolate(Attribute::Continent) => 2,
        Role::Isolate(Attribute::Language) => 3,
        Role::Isolate(Attribute::Country) => 4,
    }
}

/// A balanced set for one split: `n` cause pairs and `n / 2` isolate pairs per kept attribute.
pub fn split_examples(
    lm: &LanguageModel,
    data: &RavelData,
    probe: &ProbeReport,
    split: Split,
    n: usize,
    seed: u64,
) -> Result<Vec<RavelExample>> {
    balanced(n, seed, |role, k| {
        pairs(lm, data, probe, split, role, k, seed)
    })
}

/// `n` cause pairs and `n / 2` isolate pairs per kept attribute, drawn by `draw(role, count)`,
/// shuffled with `seed`: the make-up of every RAVEL split, whichever labels it has.
pub(crate) fn balanced(
    n: usize,
    seed: u64,
    mut draw: impl FnMut(Role, usize) -> Result<Vec<RavelExample>>,
) -> Result<Vec<RavelExample>> {
    let mut all = draw(Role::Cause, n)?;
    for a in [Attribute::Continent, Attribute::Language] {
        all.extend(draw(Role::Isolate(a), n / 2)?);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    all.shuffle(&mut rng);
    Ok(all)
}

/// Cause, Isolate and Disentangle of an intervention on a set of pairs.
///
/// `isolate` pools every isolate pair; `isolate_continent` and `isolate_language` split it by
/// the attribute the base prompt asks about (`None` where the set has no such pair, and in runs
/// saved before they were reported).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub cause: f64,
    pub isolate: f64,
    pub disentangle: f64,
    pub n_cause: usize,
    pub n_isolate: usize,
    #[serde(default)]
    pub isolate_continent: Option<f64>,
    #[serde(default)]
    pub isolate_language: Option<f64>,
    #[serde(default)]
    pub n_continent: usize,
    #[serde(default)]
    pub n_language: usize,
}

/// Hits out of pairs, for one group of pairs.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    hits: usize,
    n: usize,
}

impl Tally {
    fn add(&mut self, hit: bool) {
        self.n += 1;
        self.hits += usize::from(hit);
    }

    fn ratio(self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.hits as f64 / self.n as f64
        }
    }

    fn share(self) -> Option<f64> {
        (self.n > 0).then(|| self.ratio())
    }
}

/// Whether each example's patched run answers its target (its most likely next token), in
/// the order of `examples`, `batch` pairs per forward pass.
pub fn outcomes(
    lm: &LanguageModel,
    site: Site,
    intervention: &Intervention,
    examples: &[RavelExample],
    batch: usize,
) -> Result<Vec<bool>> {
    Ok(outcomes_each(lm, site, &[intervention], examples, batch)?.remove(0))
}

/// The patched run's greedy next token on each example, for several interventions (a miss's
/// token says whether the run kept the base's answer or said a third thing); computed as
/// [`outcomes_each`] computes its hits.
pub fn predictions_each(
    lm: &LanguageModel,
    site: Site,
    interventions: &[&Intervention],
    examples: &[RavelExample],
    batch: usize,
) -> Result<Vec<Vec<u32>>> {
    if batch == 0 {
        return crate::error::bad_setting("batch", 0, "at least 1");
    }
    if examples.is_empty() {
        return Ok(vec![Vec::new(); interventions.len()]);
    }
    let width = lm.site_width(site)?;
    for iv in interventions {
        iv.check(width)?;
    }
    let plain: Vec<Example> = examples.iter().map(|e| e.example.clone()).collect();
    let cached = DasObjective::new(lm, site, &plain, Some(batch))?;
    let all: Vec<usize> = (0..plain.len()).collect();
    interventions
        .iter()
        .map(|iv| cached.predictions(iv, &all, batch))
        .collect()
}

/// [`outcomes`] of several interventions on the same examples (e.g. a trained one and its
/// control): the layers below the site, the prefix keys/values above it and the source vectors
/// are computed once for all of them ([`DasObjective`]'s cache), each intervention then runs
/// only the blocks from the site up over each pair's tokens from the patched one.
pub fn outcomes_each(
    lm: &LanguageModel,
    site: Site,
    interventions: &[&Intervention],
    examples: &[RavelExample],
    batch: usize,
) -> Result<Vec<Vec<bool>>> {
    let predictions = predictions_each(lm, site, interventions, examples, batch)?;
    Ok(predictions
        .into_iter()
        .map(|said| {
            said.iter()
                .zip(examples)
                .map(|(&t, e)| t == e.example.target)
                .collect()
        })
        .collect())
}

/// Evaluates `intervention` at `site` on `examples`, `batch` pairs per forward pass.
pub fn evaluate(
    lm: &LanguageModel,
    site: Site,
    intervention: &Intervention,
    examples: &[RavelExample],
    batch: usize,
) -> Result<Scores> {
    Ok(evaluate_each(lm, site, &[intervention], examples, batch)?.remove(0))
}

/// [`evaluate`] of several interventions on the same examples, sharing one pass below the site
/// ([`outcomes_each`]).
pub fn evaluate_each(
    lm: &LanguageModel,
    site: Site,
    interventions: &[&Intervention],
    examples: &[RavelExample],
    batch: usize,
) -> Result<Vec<Scores>> {
    Ok(outcomes_each(lm, site, interventions, examples, batch)?
        .iter()
        .map(|hits| scores(examples, hits))
        .collect())
}

/// The scores of `examples` given whether each one hit (as [`outcomes`] reports them).
pub fn scores(examples: &[RavelExample], hits: &[bool]) -> Scores {
    let (mut cause, mut isolate) = (Tally::default(), Tally::default());
    let (mut continent, mut language) = (Tally::default(), Tally::default());
    for (e, &hit) in examples.iter().zip(hits) {
        match e.role {
            Role::Cause => cause.add(hit),
            Role::Isolate(attribute) => {
                isolate.add(hit);
                match attribute {
                    Attribute::Continent => continent.add(hit),
                    Attribute::Language => language.add(hit),
                    // Not built by `split_examples`; it still counts toward Isolate.
                    Attribute::Country => {}
                }
            }
        }
    }
    Scores {
        cause: cause.ratio(),
        isolate: isolate.ratio(),
        disentangle: (cause.ratio() + isolate.ratio()) / 2.0,
        n_cause: cause.n,
        n_isolate: isolate.n,
        isolate_continent: continent.share(),
        isolate_language: language.share(),
        n_continent: continent.n,
        n_language: language.n,
    }
}
