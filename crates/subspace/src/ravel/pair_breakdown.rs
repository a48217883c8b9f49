//! Cause broken down by the pairs' properties (model-labelled pairs only): what holds a score
//! down before anything is changed (issue #44's first step). For each property the cause pairs
//! are grouped, and each group gives its Cause and what its misses said: the base's own answer
//! (the patch did not move the run) or a third answer (it moved, elsewhere).

use serde::Serialize;

use super::data::{Attribute, RavelData};
use super::eval::{PairOrigin, RavelExample, Role};

/// One group of cause pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub label: String,
    pub pairs: usize,
    pub hits: usize,
    /// Misses that gave the base's answer (the run did not move).
    pub kept_base: usize,
    /// Misses that gave neither answer.
    pub third: usize,
}

impl Group {
    /// The group's Cause (`NaN` for an empty group).
    pub fn cause(&self) -> f64 {
        self.hits as f64 / self.pairs as f64
    }
}

/// The cause pairs grouped by one property.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub property: &'static str,
    pub groups: Vec<Group>,
}

/// What groups the pairs by one property: a pair's label in it.
type Key<'a> = dyn Fn(&PairOrigin) -> String + 'a;

/// The cause pairs of `examples` (those with an origin) grouped by each property, given what
/// the patched run said on every example (`said[i]` for `examples[i]`).
pub fn cause_breakdown(
    data: &RavelData,
    examples: &[RavelExample],
    said: &[u32],
) -> Vec<Breakdown> {
    let cause: Vec<(&RavelExample, PairOrigin, u32)> = examples
        .iter()
        .zip(said)
        .filter(|(e, _)| e.role == Role::Cause)
        .filter_map(|(e, &s)| Some((e, e.origin?, s)))
        .collect();
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let properties: [(&'static str, &Key); 7] = [
        ("all cause pairs", &|_| "all".to_string()),
        (
            "the counterfactual answer states the source city's true value",
            &|o| yes_no(o.counterfactual_states_value),
        ),
        ("both answers state their city's true value", &|o| {
            yes_no(o.base_states_value && o.counterfactual_states_value)
        }),
        ("the source template's attribute and format", &|o| {
            let t = &data.templates[o.source_template];
            let format = if t.parts().0.ends_with('"') {
                "JSON"
            } else {
                "prose"
            };
            format!("{}, {format}", attribute_name(t.attribute))
        }),
        ("the source prompt opens with the city (position 0)", &|o| {
            yes_no(o.source_name_start == 0)
        }),
        (
            "the two names' token counts",
            &|o| match o.base_name_tokens.cmp(&o.source_name_tokens) {
                std::cmp::Ordering::Equal => "equal".into(),
                std::cmp::Ordering::Greater => "base name longer".into(),
                std::cmp::Ordering::Less => "source name longer".into(),
            },
        ),
        ("the base template", &|o| {
            let text = &data.templates[o.base_template].text;
            let tail: String = text
                .chars()
                .rev()
                .take(48)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        }),
    ];
    properties
        .iter()
        .map(|(property, key)| {
            let mut groups: Vec<Group> = Vec::new();
            for (e, o, s) in &cause {
                let label = key(o);
                let g = match groups.iter_mut().position(|g| g.label == label) {
                    Some(i) => &mut groups[i],
                    None => {
                        groups.push(Group {
                            label,
                            pairs: 0,
                            hits: 0,
                            kept_base: 0,
                            third: 0,
                        });
                        let last = groups.len() - 1;
                        &mut groups[last]
                    }
                };
                g.pairs += 1;
                if *s == e.example.target {
                    g.hits += 1;
                } else if *s == o.base_token {
                    g.kept_base += 1;
                } else {
                    g.third += 1;
                }
            }
            groups.sort_by(|a, b| b.pairs.cmp(&a.pairs).then(a.label.cmp(&b.label)));
            Breakdown { property, groups }
        })
        .collect()
}

fn attribute_name(a: Attribute) -> String {
    a.key().to_lowercase()
}

/// The breakdown as a text table, one block per property.
pub fn table(breakdowns: &[Breakdown]) -> String {
    let mut out = String::new();
    for b in breakdowns {
        out.push_str(&format!("{}:\n", b.property));
        for g in &b.groups {
            out.push_str(&format!(
                "  {:<52} {:>4} pairs  Cause {:.2}  misses: base's answer {:>3}, a third {:>3}\n",
                g.label,
                g.pairs,
                g.cause(),
                g.kept_base,
                g.third
            ));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ravel::data::{Split, Template};
    use crate::ravel::eval::PairOrigin;

    /// A cause pair whose target is 7 and whose base answer is 5, drawn with `source_template`
    /// and names of `base`/`source` tokens.
    fn pair(source_template: usize, (base, source): (usize, usize), states: bool) -> RavelExample {
        RavelExample::for_tests(
            Role::Cause,
            1,
            Some(PairOrigin {
                base_template: 0,
                source_template,
                base_name_tokens: base,
                source_name_tokens: source,
                source_name_start: if source_template == 2 { 0 } else { 3 },
                base_states_value: true,
                counterfactual_states_value: states,
                base_token: 5,
                counterfactual_token: 7,
            }),
        )
    }

    fn template(text: &str, attribute: Attribute) -> Template {
        Template {
            text: text.into(),
            attribute,
            split: Split::Train,
        }
    }

    /// Five cause pairs (and one without an origin, not counted): each group's pairs, hits,
    /// misses that kept the base's answer (5) and third answers, counted by hand.
    #[test]
    fn groups_count_hits_and_what_misses_said() {
        let data = RavelData {
            cities: Vec::new(),
            templates: vec![
                template("Sydney is in Australia. %s is in", Attribute::Country),
                template("{\"city\": \"%s\", \"lang\": \"", Attribute::Language),
                template("%s is a city in the continent of", Attribute::Continent),
            ],
        };
        let mut examples = vec![
            pair(0, (1, 1), true),  // country, prose; equal; hit
            pair(1, (2, 1), true),  // language, JSON; base longer; kept the base's answer
            pair(1, (1, 2), false), // language, JSON; source longer; a third answer
            pair(2, (1, 1), false), // continent, prose, position 0; equal; a third answer
            pair(0, (1, 1), true),  // country, prose; equal; hit
        ];
        let mut no_origin = pair(0, (1, 1), true);
        no_origin.origin = None;
        examples.push(no_origin);
        let said = [7, 5, 9, 9, 7, 7];
        let b = cause_breakdown(&data, &examples, &said);
        let get = |property: &str, label: &str| {
            let g = b
                .iter()
                .find(|x| x.property.starts_with(property))
                .and_then(|x| x.groups.iter().find(|g| g.label == label))
                .unwrap();
            (g.pairs, g.hits, g.kept_base, g.third)
        };
        assert_eq!(get("all", "all"), (5, 2, 1, 2));
        assert_eq!(get("the counterfactual", "yes"), (3, 2, 1, 0));
        assert_eq!(get("the counterfactual", "no"), (2, 0, 0, 2));
        assert_eq!(get("the source template", "country, prose"), (2, 2, 0, 0));
        assert_eq!(get("the source template", "language, JSON"), (2, 0, 1, 1));
        assert_eq!(get("the source template", "continent, prose"), (1, 0, 0, 1));
        assert_eq!(get("the source prompt opens", "yes"), (1, 0, 0, 1));
        assert_eq!(get("the two names", "equal"), (3, 2, 0, 1));
        assert_eq!(get("the two names", "base name longer"), (1, 0, 1, 0));
        assert_eq!(get("the two names", "source name longer"), (1, 0, 0, 1));
        assert!((b[0].groups[0].cause() - 0.4).abs() < 1e-12);
    }
}
