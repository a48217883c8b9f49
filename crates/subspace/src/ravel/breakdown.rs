//! Cause per source country: which held-out countries an intervention can bring, set against
//! how many train cities of that country the model knows (what training could learn from).
//!
//! A subspace trained on ~300 train cities might carry "country" in general, or only the
//! countries it saw; this table tells the two apart.

use std::collections::BTreeMap;
use std::ops::RangeBounds;

use serde::{Deserialize, Serialize};

use super::data::{Attribute, RavelData, Split};
use super::eval::{RavelExample, Role};
use super::probe::ProbeReport;

/// Cause on the cause pairs whose source city is in one country.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountryCause {
    pub country: String,
    /// Cause pairs with a source city of this country.
    pub pairs: usize,
    /// Of those, how many the patched run answered with this country.
    pub hits: usize,
    /// Train cities of this country the model answers a country prompt right for.
    pub train_cities: usize,
}

impl CountryCause {
    pub fn cause(&self) -> f64 {
        self.hits as f64 / self.pairs as f64
    }
}

/// Cities per country with at least one known country prompt in `split`.
pub fn known_cities_per_country(
    data: &RavelData,
    probe: &ProbeReport,
    split: Split,
) -> BTreeMap<String, usize> {
    let mut cities: Vec<usize> = probe
        .known
        .iter()
        .filter(|k| {
            data.templates[k.template].attribute == Attribute::Country
                && data.cities[k.city].split == split
        })
        .map(|k| k.city)
        .collect();
    cities.sort_unstable();
    cities.dedup();
    let mut per = BTreeMap::new();
    for c in cities {
        *per.entry(data.cities[c].country.clone()).or_insert(0) += 1;
    }
    per
}

/// Cause per source country over the cause pairs of `examples` (`hits` as
/// [`super::eval::outcomes`] reports them), most pairs first, beside the train cities the first
/// probe knows in each country.
pub fn cause_by_source_country(
    data: &RavelData,
    probe: &ProbeReport,
    examples: &[RavelExample],
    hits: &[bool],
) -> Vec<CountryCause> {
    let train = known_cities_per_country(data, probe, Split::Train);
    cause_by_source_country_beside(data, &train, examples, hits)
}

/// [`cause_by_source_country`] beside given counts of known train cities per country (e.g.
/// [`super::Answers::known_by_country_in`] for runs labelled by the model's answers).
pub fn cause_by_source_country_beside(
    data: &RavelData,
    train: &BTreeMap<String, usize>,
    examples: &[RavelExample],
    hits: &[bool],
) -> Vec<CountryCause> {
    let mut by: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (e, &hit) in examples.iter().zip(hits) {
        if e.role == Role::Cause {
            let entry = by
                .entry(data.cities[e.source_city].country.as_str())
                .or_default();
            entry.0 += 1;
            entry.1 += usize::from(hit);
        }
    }
    let mut rows: Vec<CountryCause> = by
        .into_iter()
        .map(|(country, (pairs, hits))| CountryCause {
            country: country.to_string(),
            pairs,
            hits,
            train_cities: train.get(country).copied().unwrap_or(0),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.pairs
            .cmp(&a.pairs)
            .then_with(|| a.country.cmp(&b.country))
    });
    rows
}

/// Cause pooled over the countries whose known train cities fall in `train_cities`:
/// `(pairs, cause)` (cause NaN where no pair does).
pub fn pooled(rows: &[CountryCause], train_cities: impl RangeBounds<usize>) -> (usize, f64) {
    let (pairs, hits) = rows
        .iter()
        .filter(|r| train_cities.contains(&r.train_cities))
        .fold((0, 0), |(p, h), r| (p + r.pairs, h + r.hits));
    let cause = if pairs == 0 {
        f64::NAN
    } else {
        hits as f64 / pairs as f64
    };
    (pairs, cause)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ravel::data::{City, Template};
    use crate::ravel::probe::KnownPrompt;

    fn city(name: &str, split: Split, country: &str) -> City {
        City {
            name: name.into(),
            split,
            country: country.into(),
            continent: "-".into(),
            language: "-".into(),
        }
    }

    fn example(role: Role, source_city: usize) -> RavelExample {
        RavelExample::for_tests(role, source_city, None)
    }

    /// Three train cities (two French known, one Peruvian whose prompt the model got wrong)
    /// and test sources in France, Peru and Chile: counts done by hand.
    #[test]
    fn cause_per_source_country_counts_pairs_hits_and_known_train_cities() {
        let data = RavelData {
            cities: vec![
                city("Lyon", Split::Train, "France"),
                city("Nice", Split::Train, "France"),
                city("Cusco", Split::Train, "Peru"),
                city("Paris", Split::Test, "France"),
                city("Lima", Split::Test, "Peru"),
                city("Arica", Split::Test, "Chile"),
            ],
            templates: vec![
                Template {
                    text: "%s is in".into(),
                    attribute: Attribute::Country,
                    split: Split::Train,
                },
                Template {
                    text: "%s is on".into(),
                    attribute: Attribute::Continent,
                    split: Split::Train,
                },
            ],
        };
        let known = |city, template| KnownPrompt {
            city,
            template,
            position: 0,
            answer: 0,
        };
        let probe = ProbeReport {
            // Lyon twice (two prompts: one city), Nice, and Cusco only on its continent.
            known: vec![known(0, 0), known(0, 0), known(1, 0), known(2, 1)],
            tried: 4,
            cities_known_on_all: vec![],
        };
        let examples = vec![
            example(Role::Cause, 3),
            example(Role::Cause, 3),
            example(Role::Cause, 3),
            example(Role::Cause, 4),
            example(Role::Cause, 5),
            // Isolate pairs do not count toward Cause.
            example(Role::Isolate(Attribute::Continent), 3),
        ];
        let hits = [true, true, false, false, true, true];
        let rows = cause_by_source_country(&data, &probe, &examples, &hits);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.country.as_str(), r.pairs, r.hits, r.train_cities))
            .collect();
        assert_eq!(
            got,
            [("France", 3, 2, 2), ("Chile", 1, 1, 0), ("Peru", 1, 0, 0)]
        );
        let ((seen, seen_cause), (unseen, unseen_cause)) = (pooled(&rows, 1..), pooled(&rows, ..1));
        assert_eq!((seen, unseen), (3, 2));
        assert!((seen_cause - 2.0 / 3.0).abs() < 1e-12 && (unseen_cause - 0.5).abs() < 1e-12);
        assert!(pooled(&rows, 5..).1.is_nan());
    }
}
