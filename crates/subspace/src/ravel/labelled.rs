//! RAVEL's pairs, as `generate_ravel_instance.py` builds them, from the model's own answers
//! ([`super::answers`]):
//!
//! - **Split kinds.** Train pairs are train cities on train templates. RAVEL holds out two
//!   things and builds a test set for each ([`SplitKind`]): *context* (train cities asked with
//!   held-out templates) and *entity* (held-out cities asked with train templates); each has its
//!   own val.
//! - **Labels from the model.** A pair's base prompt is a (template, city) prompt; its label is
//!   the model's answer to it, and its *counterfactual* label the model's answer to the same
//!   template with the source city. Pairs whose two answers agree are dropped (nothing to
//!   move). Cause asks the patched run for the counterfactual answer, Isolate for the base's.
//! - **Multi-token answers** are scored on their first differing token: the tokens the two
//!   answers share (" the United" of " the United States" / " the United Kingdom") are
//!   appended to the base prompt, and the target is the next one.
//! - **Sources** are prompts of every attribute's templates of the split (the patched vector is
//!   the source city's, whatever it was asked), source cities drawn with RAVEL's weights
//!   `1 / (10 + n)`, `n` the number of candidate sources giving the same counterfactual answer,
//!   so that a few frequent countries do not make most of the pairs.
//!
//! Departures: RAVEL's "other" sources (Wikipedia sentences) are not in the city data; RAVEL
//! uses weight `1 / (20 + n)` in the context split and `1 / (10 + n)` elsewhere, here `10`
//! everywhere; its metrics compare whole generated answers, here the first differing token.

use std::collections::BTreeMap;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::answers::{Answer, Answers, answer_text};
use super::data::{RavelData, Split};
use super::eval::{PairOrigin, RavelExample, Role, balanced, role_tag};
use super::probe::locate_span;
use crate::error::{Result, SubspaceError};
use crate::lm::LanguageModel;
use crate::pair::{Aligned, Pair, SpanAlignment};

/// Which tokens of the city a pair edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", value(rename_all = "snake_case"))]
pub enum Unit {
    /// The city's last token in the base and in the source (RAVEL's and HyperDAS' unit).
    #[default]
    LastToken,
    /// Every token of the city's name, base and source names paired from their last tokens
    /// ([`SpanAlignment::Last`]): as many tokens as the shorter name has.
    Span,
}

/// Which prompt a pair's source city is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", value(rename_all = "snake_case"))]
pub enum SourcePrompts {
    /// A template of any attribute of the split's template set, drawn at random (RAVEL's
    /// sources: the patched vector is the source city's, whatever it was asked).
    #[default]
    AnyTemplate,
    /// The base's own template filled with the source city: the same format and context, the
    /// city tokenised as it would be in the base. What a perfect featurizer at the site could
    /// move (issue #44's "site's own ceiling"); the pairs, targets and cities are those
    /// `AnyTemplate` draws with the same seed, only the source prompt differs.
    BaseTemplate,
}

/// RAVEL's two held-out test sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SplitKind {
    /// Train cities on held-out templates (RAVEL's `context_test`).
    Context,
    /// Held-out cities on train templates (RAVEL's `entity_test`).
    Entity,
}

impl SplitKind {
    pub fn name(self) -> &'static str {
        match self {
            SplitKind::Context => "context",
            SplitKind::Entity => "entity",
        }
    }

    /// The (template split, city split) that `split` of this kind asks.
    pub fn grid(self, split: Split) -> (Split, Split) {
        match (self, split) {
            (_, Split::Train) => (Split::Train, Split::Train),
            (SplitKind::Context, held_out) => (held_out, Split::Train),
            (SplitKind::Entity, held_out) => (Split::Train, held_out),
        }
    }
}

/// Counterfactual weight offset of RAVEL's source sampling (`1 / (10 + n)`).
const WEIGHT_OFFSET: f64 = 10.0;

/// How a set of labelled pairs is drawn: the held-out set, the tokens edited, how many train
/// cities the train pairs may use, and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub kind: SplitKind,
    pub unit: Unit,
    /// Train pairs use only the first this many known train cities of a fixed order (the same
    /// for every run, so smaller sets are inside larger ones: a learning curve); `None`: all.
    /// Val and test pairs are not limited.
    pub train_cities: Option<usize>,
    /// Which prompt the source city is read from.
    pub sources: SourcePrompts,
    pub seed: u64,
}

impl Draw {
    /// Every known city, the last token, `seed`.
    pub fn new(kind: SplitKind, seed: u64) -> Self {
        Draw {
            kind,
            unit: Unit::LastToken,
            train_cities: None,
            sources: SourcePrompts::AnyTemplate,
            seed,
        }
    }
}

/// The known train cities a train pair may use under `limit` (see [`Draw::train_cities`]), in
/// their fixed order.
pub fn allowed_train_cities(data: &RavelData, known: &[usize], limit: Option<usize>) -> Vec<usize> {
    let mut train: Vec<usize> = known
        .iter()
        .copied()
        .filter(|&c| data.cities[c].split == Split::Train)
        .collect();
    // A fixed order, independent of the run's seed.
    train.shuffle(&mut ChaCha8Rng::seed_from_u64(0x0072_6176_656c));
    train.truncate(limit.unwrap_or(usize::MAX));
    train.sort_unstable();
    train
}

/// Builds `n` pairs of `role` for `split` as `draw` says (see the module doc). The unit changes
/// which tokens are edited, not which pairs are drawn.
pub fn labelled_pairs(
    lm: &LanguageModel,
    data: &RavelData,
    answers: &Answers,
    draw: &Draw,
    split: Split,
    role: Role,
    n: usize,
) -> Result<Vec<RavelExample>> {
    let (kind, seed, unit) = (draw.kind, draw.seed, draw.unit);
    let attribute = role.attribute();
    let (template_split, city_split) = kind.grid(split);
    let index = answers.index();
    let in_grid = |a: &Answer| {
        data.templates[a.template].split == template_split
            && data.cities[a.city].split == city_split
    };
    // Bases: the known cities' answers to this attribute's templates of the grid (train pairs:
    // of the allowed train cities).
    let mut known = answers.known_cities(data);
    if split == Split::Train && draw.train_cities.is_some() {
        known = allowed_train_cities(data, &known, draw.train_cities);
    }
    let bases: Vec<&Answer> = answers
        .answers
        .iter()
        .filter(|a| {
            in_grid(a)
                && data.templates[a.template].attribute == attribute
                && known.binary_search(&a.city).is_ok()
        })
        .collect();
    // Source prompts: every attribute's templates of the grid's template split.
    let source_templates: Vec<usize> = (0..data.templates.len())
        .filter(|&t| data.templates[t].split == template_split)
        .collect();
    if bases.is_empty() || source_templates.is_empty() {
        return Err(SubspaceError::Data(format!(
            "no {attribute:?} answers of known {} cities on {} templates: run `subspace ravel-probe` (its answers file) first",
            city_split.name(),
            template_split.name()
        )));
    }
    // Per base template: the candidate source cities (known, with an answer to that template)
    // and their weights.
    let mut candidates: BTreeMap<usize, (Vec<usize>, Vec<f64>)> = BTreeMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (kind_role_tag(kind, split, role) << 32));
    let mut out = Vec::with_capacity(n);
    let mut tries = 0;
    while out.len() < n && tries < n * 50 {
        tries += 1;
        lm.stop_flag().check(crate::engine::stop::nothing_saved)?;
        let base = bases[rng.random_range(0..bases.len())];
        let (cities, weights) = candidates.entry(base.template).or_insert_with(|| {
            let cities: Vec<usize> = known
                .iter()
                .copied()
                .filter(|&c| {
                    data.cities[c].split == city_split && index.contains_key(&(c, base.template))
                })
                .collect();
            let labels: Vec<String> = cities
                .iter()
                .map(|&c| answer_text(&answers.answers[index[&(c, base.template)]].text))
                .collect();
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for l in &labels {
                *counts.entry(l).or_insert(0) += 1;
            }
            let weights = labels
                .iter()
                .map(|l| 1.0 / (WEIGHT_OFFSET + counts[l.as_str()] as f64))
                .collect();
            (cities, weights)
        });
        let Some(source_city) = weighted_pick(&mut rng, cities, weights) else {
            continue;
        };
        if source_city == base.city {
            continue;
        }
        let inv = &answers.answers[index[&(source_city, base.template)]];
        if answer_text(&base.text) == answer_text(&inv.text) {
            continue;
        }
        // The first token where the two answers part.
        let Some(i) = base.ids.iter().zip(&inv.ids).position(|(a, b)| a != b) else {
            continue;
        };
        let &drawn = source_templates.choose(&mut rng).unwrap_or(&base.template);
        let base_t = &data.templates[base.template];
        let source_name = &data.cities[source_city].name;
        let (Some((base_prompt, base_span)), Some(drawn_source)) = (
            locate_span(lm, base_t, &data.cities[base.city].name)?,
            locate_span(lm, &data.templates[drawn], source_name)?,
        ) else {
            continue;
        };
        // The drawn template is located in either mode, so that both skip the same candidates
        // and draw the same (base, source city, target) pairs.
        let (source_template, (source_prompt, source_span)) = match draw.sources {
            SourcePrompts::AnyTemplate => (drawn, drawn_source),
            SourcePrompts::BaseTemplate => match locate_span(lm, base_t, source_name)? {
                Some(own) => (base.template, own),
                None => continue,
            },
        };
        debug_assert_eq!(base_span.end - 1, base.position);
        let (base_name_tokens, source_name_tokens) = (base_span.len(), source_span.len());
        let source_name_start = source_span.start;
        let base_prompt = lm.extend_prompt(&base_prompt, &base.ids[..i])?;
        let target = match role {
            Role::Cause => inv.ids[i],
            Role::Isolate(_) => base.ids[i],
        };
        // The city's last tokens, or every token of the shorter of the two names, aligned from
        // the end.
        let positions = match unit {
            Unit::LastToken => vec![Aligned {
                base: base_span.end - 1,
                source: source_span.end - 1,
            }],
            Unit::Span => SpanAlignment::Last.align(base_span, source_span)?,
        };
        let origin = PairOrigin {
            base_template: base.template,
            source_template,
            base_name_tokens,
            source_name_tokens,
            source_name_start,
            base_states_value: base.states_value,
            counterfactual_states_value: inv.states_value,
            base_token: base.ids[i],
            counterfactual_token: inv.ids[i],
        };
        out.push(RavelExample {
            example: Pair::aligned(base_prompt, source_prompt, positions)?.with_target(target),
            role,
            base_city: base.city,
            source_city,
            origin: Some(origin),
        });
    }
    Ok(out)
}

/// An index drawn with probability proportional to `weights`.
fn weighted_pick(rng: &mut ChaCha8Rng, items: &[usize], weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if items.is_empty() || total <= 0.0 {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items.iter().zip(weights) {
        if x < *w {
            return Some(*item);
        }
        x -= w;
    }
    items.last().copied()
}

/// Seeds each (kind, role) draw apart; train pairs are the same for both kinds.
fn kind_role_tag(kind: SplitKind, split: Split, role: Role) -> u64 {
    role_tag(role)
        + match (kind, split) {
            (_, Split::Train) | (SplitKind::Context, _) => 0,
            (SplitKind::Entity, _) => 8,
        }
}

/// A balanced set for one split: `n` cause pairs and `n / 2` isolate pairs per kept attribute,
/// shuffled.
pub fn labelled_examples(
    lm: &LanguageModel,
    data: &RavelData,
    answers: &Answers,
    draw: &Draw,
    split: Split,
    n: usize,
) -> Result<Vec<RavelExample>> {
    balanced(n, draw.seed, |role, k| {
        labelled_pairs(lm, data, answers, draw, split, role, k)
    })
}
