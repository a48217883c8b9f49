//! Which (city, template) prompts the model answers right: only those are used, as in RAVEL.

use serde::{Deserialize, Serialize};

use super::data::{Attribute, City, RavelData, Split, Template};
use crate::error::Result;
use crate::lm::{LanguageModel, Prompt};

/// A prompt the model answers right, with where its city ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnownPrompt {
    pub city: usize,
    pub template: usize,
    /// Position of the city's last token.
    pub position: usize,
    /// The answer's first token (the value's first token, with its leading space).
    pub answer: u32,
}

/// The outcome of probing: known prompts, and counts for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    pub known: Vec<KnownPrompt>,
    pub tried: usize,
    /// Cities (indices into the probed list) right on at least one template of every attribute.
    pub cities_known_on_all: Vec<usize>,
}

/// Tokenizes a filled template and finds the city's last token: the prompt's tokens must start
/// with the tokens of `prefix + city` (else the city's end is ambiguous and the prompt is skipped).
pub fn locate(
    lm: &LanguageModel,
    template: &Template,
    city: &str,
) -> Result<Option<(Prompt, usize)>> {
    let (before, _) = template.parts();
    let prompt = lm.prompt(&template.fill(city))?;
    let head = lm.prompt(&format!("{before}{city}"))?;
    if head.ids.len() > prompt.ids.len() || prompt.ids[..head.ids.len()] != head.ids[..] {
        return Ok(None);
    }
    Ok(Some((prompt, head.ids.len() - 1)))
}

/// [`locate`], and the city's whole span: its tokens from the first one after the template's
/// text before it (`before`, trailing space trimmed: the space joins the city's first token) to
/// its last. Where the template's text does not tokenize apart from the city, the span is the
/// city's last token alone (so that a run with spans draws the same pairs as one without).
pub fn locate_span(
    lm: &LanguageModel,
    template: &Template,
    city: &str,
) -> Result<Option<(Prompt, std::ops::Range<usize>)>> {
    let Some((prompt, last)) = locate(lm, template, city)? else {
        return Ok(None);
    };
    let (before, _) = template.parts();
    let before = before.trim_end();
    let start = if before.is_empty() {
        0
    } else {
        let head = lm.prompt(before)?;
        if head.len() <= last && prompt.ids[..head.len()] == head.ids[..] {
            head.len()
        } else {
            last
        }
    };
    Ok(Some((prompt, start..last + 1)))
}

/// The first token of `" " + value`.
pub fn answer_token(lm: &LanguageModel, value: &str) -> Result<u32> {
    let ids = lm.tokenizer.encode_plain(&format!(" {value}"))?;
    ids.first()
        .copied()
        .ok_or_else(|| crate::error::SubspaceError::Data(format!("value {value:?} has no tokens")))
}

/// Probes `cities` × `templates` in batches of `batch`.
pub fn probe(
    lm: &LanguageModel,
    data: &RavelData,
    cities: &[usize],
    templates: &[usize],
    batch: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<ProbeReport> {
    if batch == 0 {
        return crate::error::bad_setting("batch", 0, "at least 1");
    }
    let mut jobs: Vec<(usize, usize, Prompt, usize, u32)> = Vec::new();
    for &c in cities {
        lm.stop_flag().check(crate::engine::stop::nothing_saved)?;
        let city: &City = &data.cities[c];
        for &t in templates {
            let template = &data.templates[t];
            if template.split != city.split {
                continue;
            }
            if let Some((prompt, position)) = locate(lm, template, &city.name)? {
                let answer = answer_token(lm, city.value(template.attribute))?;
                jobs.push((c, t, prompt, position, answer));
            }
        }
    }
    let tried = jobs.len();
    let mut known = Vec::new();
    for (i, chunk) in jobs.chunks(batch).enumerate() {
        let prompts: Vec<&Prompt> = chunk.iter().map(|j| &j.2).collect();
        let preds = lm.predict_batch(&prompts)?;
        for (job, pred) in chunk.iter().zip(preds) {
            if pred.argmax().id == job.4 {
                known.push(KnownPrompt {
                    city: job.0,
                    template: job.1,
                    position: job.3,
                    answer: job.4,
                });
            }
        }
        progress((i + 1) * batch.min(tried), tried);
    }
    let mut cities_known_on_all = Vec::new();
    for &c in cities {
        let ok = Attribute::ALL.iter().all(|&a| {
            known
                .iter()
                .any(|k| k.city == c && data.templates[k.template].attribute == a)
        });
        if ok {
            cities_known_on_all.push(c);
        }
    }
    Ok(ProbeReport {
        known,
        tried,
        cities_known_on_all,
    })
}

/// Indices of the templates of `split` (all attributes), at most `per_attribute` each, in file order.
pub fn templates_of(data: &RavelData, split: Split, per_attribute: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for a in Attribute::ALL {
        out.extend(
            data.templates
                .iter()
                .enumerate()
                .filter(|(_, t)| t.split == split && t.attribute == a)
                .map(|(i, _)| i)
                .take(per_attribute),
        );
    }
    out
}

/// Templates of `split` for `attribute`, few-shot ones first (a small model answers those far
/// more often: the example in the prompt shows the format of the answer).
pub fn ranked_templates(data: &RavelData, split: Split, attribute: Attribute) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..data.templates.len())
        .filter(|&i| data.templates[i].split == split && data.templates[i].attribute == attribute)
        .collect();
    idx.sort_by_key(|&i| {
        let (before, _) = data.templates[i].parts();
        (!before.contains(". "), data.templates[i].text.len())
    });
    idx
}

/// The two-stage probe used for the reported runs: first every city of each split (at most
/// `max_cities` per split, evenly spaced) on one few-shot country template, then the cities that
/// passed on `per_attribute` templates of each attribute of their split.
pub fn probe_dataset(
    lm: &LanguageModel,
    data: &RavelData,
    max_cities: usize,
    per_attribute: usize,
    batch: usize,
    mut progress: impl FnMut(&str),
) -> Result<ProbeReport> {
    if max_cities == 0 {
        return crate::error::bad_setting("cities per split", 0, "at least 1");
    }
    if per_attribute == 0 {
        return crate::error::bad_setting("templates per attribute", 0, "at least 1");
    }
    let mut known = Vec::new();
    let mut tried = 0;
    let mut all_known = Vec::new();
    for split in Split::ALL {
        let cities: Vec<usize> = (0..data.cities.len())
            .filter(|&i| data.cities[i].split == split)
            .collect();
        let step = cities.len().div_ceil(max_cities).max(1);
        let cities: Vec<usize> = cities.into_iter().step_by(step).collect();
        let first = ranked_templates(data, split, Attribute::Country)
            .into_iter()
            .take(1)
            .collect::<Vec<_>>();
        progress(&format!(
            "{split:?}: probing {} cities on the first country template",
            cities.len()
        ));
        let stage1 = probe(lm, data, &cities, &first, batch, |_, _| {})?;
        let passed: Vec<usize> = cities
            .iter()
            .copied()
            .filter(|c| stage1.known.iter().any(|k| k.city == *c))
            .collect();
        progress(&format!(
            "{split:?}: {} of {} cities pass the first country template",
            passed.len(),
            cities.len()
        ));
        let templates: Vec<usize> = Attribute::ALL
            .iter()
            .flat_map(|&a| {
                ranked_templates(data, split, a)
                    .into_iter()
                    .take(per_attribute)
            })
            .collect();
        let stage2 = probe(lm, data, &passed, &templates, batch, |_, _| {})?;
        progress(&format!(
            "{split:?}: {} of {} prompts known, {} cities known on all three attributes",
            stage2.known.len(),
            stage2.tried,
            stage2.cities_known_on_all.len()
        ));
        tried += stage1.tried + stage2.tried;
        known.extend(stage2.known);
        all_known.extend(stage2.cities_known_on_all);
    }
    Ok(ProbeReport {
        known,
        tried,
        cities_known_on_all: all_known,
    })
}
