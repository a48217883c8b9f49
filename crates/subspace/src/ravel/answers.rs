//! What the model itself answers, as RAVEL builds its labels: the greedy continuation of every
//! (city, template) prompt a run will ask, and whether it states the city's value.
//!
//! RAVEL (`generate_ravel_instance.py`) labels every example with the model's own output on the
//! base prompt (`label`) and on the base prompt filled with the source city (`inv_label`), and
//! keeps the examples whose two labels differ. The probe here collects those outputs. A city is
//! *known* for an attribute when one of its continuations states the value
//! ([`states_value`]: decoded text, leading space / quotes / "the" and case ignored).
//!
//! Two stages, so that 2 cores can afford it: every city is screened on up to
//! [`AnswerPlan::screen`] country templates of the train split (the templates every split kind
//! asks held-out cities with), each asked only of the cities no earlier one got right; then the
//! cities that state their country on one of them, on
//! [`AnswerPlan::per_split`] templates per attribute and template split: train templates for
//! every such city, val and test templates for train cities only (the *context* split asks
//! train cities with held-out templates; the *entity* split asks held-out cities with train
//! templates).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::{Attribute, RavelData, Split};
use super::probe::{locate, ranked_templates};
use crate::error::{Result, bad_setting};
use crate::lm::{LanguageModel, Prompt};

/// Tokens of each continuation: enough for " the United Kingdom." and most multi-word values.
pub const ANSWER_TOKENS: usize = 4;

/// Which prompts the probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerPlan {
    /// Country templates (train split) a city is screened with, until one gets it right.
    pub screen: usize,
    /// Templates per attribute per template split asked of the screened-in cities.
    pub per_split: usize,
    /// Prompts per batched generation.
    pub batch: usize,
}

impl Default for AnswerPlan {
    fn default() -> Self {
        AnswerPlan {
            screen: 4,
            per_split: 1,
            batch: 128,
        }
    }
}

/// The model's continuation of one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub city: usize,
    pub template: usize,
    /// Position of the city's last token in the prompt.
    pub position: usize,
    /// The greedy continuation, [`ANSWER_TOKENS`] tokens.
    pub ids: Vec<u32>,
    /// Its decoded text.
    pub text: String,
    /// Whether it states the city's value for the template's attribute.
    pub states_value: bool,
}

/// Everything the probe heard, and counts for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answers {
    pub model: String,
    pub plan: AnswerPlan,
    pub answers: Vec<Answer>,
    /// Prompts generated.
    pub prompts: usize,
    pub seconds: f64,
}

impl Answers {
    /// Cities that state their country on at least one prompt.
    pub fn known_cities(&self, data: &RavelData) -> Vec<usize> {
        self.known_for(data, Attribute::Country)
    }

    /// Cities that state their value for `attribute` on at least one prompt.
    pub fn known_for(&self, data: &RavelData, attribute: Attribute) -> Vec<usize> {
        let mut cities: Vec<usize> = self
            .answers
            .iter()
            .filter(|a| a.states_value && data.templates[a.template].attribute == attribute)
            .map(|a| a.city)
            .collect();
        cities.sort_unstable();
        cities.dedup();
        cities
    }

    /// Known cities (country) per country.
    pub fn known_by_country(&self, data: &RavelData) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self.known_cities(data) {
            *out.entry(data.cities[c].country.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Known cities (country) of one split, per country.
    pub fn known_by_country_in(
        &self,
        data: &RavelData,
        split: super::data::Split,
    ) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self.known_cities(data) {
            if data.cities[c].split == split {
                *out.entry(data.cities[c].country.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// (city, template) -> index into `answers`.
    pub fn index(&self) -> BTreeMap<(usize, usize), usize> {
        self.answers
            .iter()
            .enumerate()
            .map(|(i, a)| ((a.city, a.template), i))
            .collect()
    }
}

/// Lower case, without leading spaces, quotes or "the ", spaces collapsed.
pub fn normalize(text: &str) -> String {
    let lower = text.to_lowercase();
    let mut t = lower.trim_start_matches(|c: char| c.is_whitespace() || "\"'“‘`".contains(c));
    if let Some(rest) = t.strip_prefix("the ") {
        t = rest;
    }
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Other names the model gives for a country value, counted as stating it. Measured on the
/// first screening (docs/history/RESULTS-sessions.md, "RAVEL's labels"): for US cities the model said "the USA" 67
/// times; for UK cities "England" 17, "the UK" 11, "Scotland" 6, "Northern Ireland" 2 times
/// (the United Kingdom's constituent countries answer "which country"). Nothing else is an
/// alias: "Korea" names two countries.
const ALIASES: [(&str, &[&str]); 3] = [
    (
        "United States",
        &[
            "USA",
            "US",
            "U.S.",
            "U.S.A.",
            "America",
            "United States of America",
        ],
    ),
    (
        "United Kingdom",
        &[
            "UK",
            "U.K.",
            "Britain",
            "Great Britain",
            "England",
            "Scotland",
            "Wales",
            "Northern Ireland",
        ],
    ),
    ("Czech Republic", &["Czechia"]),
];

/// Whether a continuation states `value`: its normalized text starts with the normalized value
/// (or, for a list such as "Arabic, Kurdish", with its first item; or with one of the value's
/// `ALIASES`), followed by the end or a character that is not a letter or digit ("India" is
/// not stated by "Indiana").
pub fn states_value(value: &str, text: &str) -> bool {
    let t = normalize(text);
    let first = value.split(',').next().unwrap_or(value);
    let aliases = ALIASES
        .iter()
        .filter(|(v, _)| *v == value)
        .flat_map(|(_, names)| names.iter().copied());
    [value, first].into_iter().chain(aliases).any(|v| {
        let v = normalize(v);
        !v.is_empty()
            && t.starts_with(&v)
            && t[v.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric())
    })
}

/// The answer a continuation gives, as RAVEL's labels compare them: its normalized text up to
/// the first period, comma, quote or line break.
pub fn answer_text(text: &str) -> String {
    let t = normalize(text);
    let end = t.find(['.', ',', '"', '\n', ';', ')']).unwrap_or(t.len());
    t[..end].trim().to_string()
}

/// Asks the model every prompt of `plan` (see the module doc). `progress` hears a line per stage
/// and per batch.
pub fn probe_answers(
    lm: &LanguageModel,
    data: &RavelData,
    plan: AnswerPlan,
    mut progress: impl FnMut(&str),
) -> Result<Answers> {
    if plan.screen == 0 {
        return bad_setting("screening templates", 0, "at least 1");
    }
    if plan.batch == 0 {
        return bad_setting("batch", 0, "at least 1");
    }
    let start = std::time::Instant::now();
    let all: Vec<usize> = (0..data.cities.len()).collect();
    let screen: Vec<usize> = ranked_templates(data, Split::Train, Attribute::Country)
        .into_iter()
        .take(plan.screen)
        .collect();
    // Each screening template is asked only of the cities no earlier one got right.
    let mut answers = Vec::new();
    let mut known: Vec<usize> = Vec::new();
    for (i, &template) in screen.iter().enumerate() {
        let unknown: Vec<usize> = all
            .iter()
            .copied()
            .filter(|c| known.binary_search(c).is_err())
            .collect();
        progress(&format!(
            "screening {} cities on country template {} of {}",
            unknown.len(),
            i + 1,
            screen.len()
        ));
        let heard = ask(lm, data, &unknown, &[template], plan.batch, &mut progress)?;
        known.extend(heard.iter().filter(|a| a.states_value).map(|a| a.city));
        known.sort_unstable();
        known.dedup();
        answers.extend(heard);
    }
    progress(&format!(
        "{} of {} cities state their country",
        known.len(),
        all.len()
    ));
    let templates_of = |split: Split| -> Vec<usize> {
        Attribute::ALL
            .iter()
            .flat_map(|&a| {
                ranked_templates(data, split, a)
                    .into_iter()
                    .filter(|t| !screen.contains(t))
                    .take(plan.per_split)
            })
            .collect()
    };
    let train_templates = templates_of(Split::Train);
    let held_out_templates: Vec<usize> = [Split::Val, Split::Test]
        .into_iter()
        .flat_map(templates_of)
        .collect();
    let train_cities: Vec<usize> = known
        .iter()
        .copied()
        .filter(|&c| data.cities[c].split == Split::Train)
        .collect();
    progress(&format!(
        "asking {} known cities {} train template(s), and {} train cities {} held-out template(s)",
        known.len(),
        train_templates.len(),
        train_cities.len(),
        held_out_templates.len()
    ));
    answers.extend(ask(
        lm,
        data,
        &known,
        &train_templates,
        plan.batch,
        &mut progress,
    )?);
    answers.extend(ask(
        lm,
        data,
        &train_cities,
        &held_out_templates,
        plan.batch,
        &mut progress,
    )?);
    Ok(Answers {
        model: lm.name.clone(),
        plan,
        prompts: answers.len(),
        answers,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The continuation of every (city, template) prompt whose city can be located, in batches of
/// `batch` prompts (`progress` hears a line every 8 batches).
pub fn ask(
    lm: &LanguageModel,
    data: &RavelData,
    cities: &[usize],
    templates: &[usize],
    batch: usize,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<Answer>> {
    let mut jobs: Vec<(usize, usize, Prompt, usize)> = Vec::new();
    for &c in cities {
        lm.stop_flag().check(crate::engine::stop::nothing_saved)?;
        for &t in templates {
            if let Some((prompt, position)) = locate(lm, &data.templates[t], &data.cities[c].name)?
            {
                jobs.push((c, t, prompt, position));
            }
        }
    }
    // Prompts of similar length together: less padding in each batch.
    jobs.sort_by_key(|j| j.2.len());
    let mut out = Vec::with_capacity(jobs.len());
    for (i, chunk) in jobs.chunks(batch).enumerate() {
        let prompts: Vec<&Prompt> = chunk.iter().map(|j| &j.2).collect();
        let continuations = lm.generate_batch(&prompts, ANSWER_TOKENS)?;
        for ((c, t, _, position), ids) in chunk.iter().zip(continuations) {
            let text = lm.decode(&ids);
            let template = &data.templates[*t];
            out.push(Answer {
                city: *c,
                template: *t,
                position: *position,
                states_value: states_value(data.cities[*c].value(template.attribute), &text),
                ids,
                text,
            });
        }
        let done = ((i + 1) * batch).min(jobs.len());
        if (i + 1) % 8 == 0 || done == jobs.len() {
            progress(&format!("  {done} of {} prompts", jobs.len()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continuation_states_a_value_whatever_its_spaces_quotes_article_and_case() {
        assert!(states_value("United States", " the United States."));
        assert!(states_value("United States", "United States\"}, {"));
        assert!(states_value("France", " France. The city"));
        assert!(states_value("Arabic, Kurdish", " Arabic and"));
        assert!(states_value("North America", " north america"));
        assert!(!states_value("India", " Indiana"));
        assert!(states_value("United States", " the USA."));
        assert!(states_value("United Kingdom", " England, and"));
        assert!(!states_value("United States", " the UK"));
        assert!(!states_value("United Kingdom", " the USA"));
        assert!(!states_value("China", " Ohio, China"));
        assert_eq!(answer_text(" the United Kingdom, and"), "united kingdom");
        assert_eq!(answer_text("Spanish\"}, {\"city"), "spanish");
        assert_eq!(answer_text(" France.\n"), "france");
    }
}
