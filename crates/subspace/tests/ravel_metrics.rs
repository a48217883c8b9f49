//! RAVEL's metrics against values known by construction: an intervention that changes nothing
//! keeps every base answer (the probe kept only prompts the model answers right) and brings no
//! source country (pairs are built so the two cities' countries differ): Cause 0, Isolate 1.
//! Replacing the city's last-token vector at the first layer moves some answers either way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use subspace::ravel::{self, Attribute, Method, RavelData, Role, RunConfig, Split};
use subspace::{Intervention, Site};

fn probe() -> ravel::ProbeReport {
    common::ravel_probe()
}

#[test]
fn an_intervention_that_changes_nothing_scores_cause_0_and_isolate_1() {
    let lm = common::smollm();
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let probe = probe();
    let examples = ravel::split_examples(lm, &data, &probe, Split::Test, 24, 5).unwrap();
    let n_cause = examples.iter().filter(|e| e.role == Role::Cause).count();
    assert!(n_cause > 0 && n_cause < examples.len());
    let identity = Intervention::random_rotation(lm.hidden_size(), 0, 0, &lm.device()).unwrap();
    let s = ravel::eval::evaluate(lm, Site::block_output(9), &identity, &examples, 16).unwrap();
    assert_eq!((s.cause, s.isolate, s.disentangle), (0.0, 1.0, 0.5));
    assert_eq!(s.n_cause, n_cause);
    assert_eq!(s.n_isolate, examples.len() - n_cause);
    // Per attribute: every kept answer is kept, and the two counts split the isolate pairs.
    let count = |a| {
        examples
            .iter()
            .filter(|e| e.role == Role::Isolate(a))
            .count()
    };
    assert_eq!(
        (s.isolate_continent, s.isolate_language),
        (Some(1.0), Some(1.0))
    );
    assert_eq!(
        (s.n_continent, s.n_language),
        (count(Attribute::Continent), count(Attribute::Language))
    );

    let residual = ravel::eval::evaluate(
        lm,
        Site::block_output(0),
        &Intervention::Replace,
        &examples,
        16,
    )
    .unwrap();
    // A rotation patching all 576 dimensions is residual patching: the same scores, pair by
    // pair (an untrained DAS at d dims cannot differ from the residual baseline).
    let all =
        Intervention::random_rotation(lm.hidden_size(), lm.hidden_size(), 3, &lm.device()).unwrap();
    let full = ravel::eval::evaluate(lm, Site::block_output(0), &all, &examples, 16).unwrap();
    assert_eq!(full, residual);
    // Some source countries come through and some base answers are lost (the city's other
    // tokens and the few-shot context still speak for the base city, so not all).
    assert!(
        residual.cause > 0.1 && residual.isolate < 1.0,
        "{residual:?}"
    );
}

/// Isolate per attribute is Isolate on that attribute's pairs alone, and the pooled Isolate is
/// their average weighted by pair counts.
#[test]
fn isolate_per_attribute_equals_scoring_that_attributes_pairs_alone() {
    let lm = common::smollm();
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let probe = probe();
    let examples = ravel::split_examples(lm, &data, &probe, Split::Test, 32, 7).unwrap();
    let site = Site::block_output(0);
    let all = ravel::eval::evaluate(lm, site, &Intervention::Replace, &examples, 16).unwrap();
    let alone = |a| {
        let only: Vec<_> = examples
            .iter()
            .filter(|e| e.role == Role::Isolate(a))
            .cloned()
            .collect();
        ravel::eval::evaluate(lm, site, &Intervention::Replace, &only, 16).unwrap()
    };
    let (continent, language) = (alone(Attribute::Continent), alone(Attribute::Language));
    assert_eq!(all.isolate_continent, Some(continent.isolate));
    assert_eq!(all.isolate_language, Some(language.isolate));
    assert_eq!(
        (all.n_continent, all.n_language),
        (continent.n_isolate, language.n_isolate)
    );
    // Alone, a set of isolate pairs has no cause pairs: Cause is undefined, not 0.
    assert!(continent.cause.is_nan() && continent.isolate_language.is_none());
    let pooled = (continent.isolate * continent.n_isolate as f64
        + language.isolate * language.n_isolate as f64)
        / (continent.n_isolate + language.n_isolate) as f64;
    assert!((all.isolate - pooled).abs() < 1e-12, "{all:?}");
}

#[test]
fn a_run_reports_train_val_and_test_scores() {
    let lm = common::smollm();
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let probe = probe();
    let labels = ravel::Labels::FirstProbe(probe.clone());
    let mut config = RunConfig::new(Method::Residual, 9);
    config.n_train = 16;
    config.n_eval = 16;
    let r = ravel::run(lm, &data, &labels, &config).unwrap();
    let train = r.train.expect("train scores");
    let train_set = ravel::split_examples(lm, &data, &probe, Split::Train, 16, 0).unwrap();
    let want_cause = train_set.iter().filter(|e| e.role == Role::Cause).count();
    assert_eq!(train.n_cause, want_cause);
    assert_eq!(train.n_isolate, train_set.len() - want_cause);
    for s in [train.cause, train.isolate, r.val.cause, r.test.cause] {
        assert!((0.0..=1.0).contains(&s), "{s}");
    }
}

/// `--save`: the file holds the trained rotation (not its random start), the settings, and the
/// scores, and the loaded rotation scores the same on the same pairs. A file that is not a RAVEL
/// run is refused with a reason.
#[test]
fn a_saved_run_loads_with_its_settings_and_scores_the_same() {
    let lm = common::smollm();
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let probe = probe();
    let labels = ravel::Labels::FirstProbe(probe.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("das.safetensors");
    let mut config = RunConfig::new(Method::Das, 9);
    config.steps = 3;
    config.n_train = 8;
    config.n_eval = 8;
    config.lr = Some(1e-2);
    config.save = Some(path.clone());
    let r = ravel::run(lm, &data, &labels, &config).unwrap();

    let run = ravel::load_run(&path, lm).unwrap();
    assert_eq!(run.site, Site::block_output(9));
    assert_eq!(
        (run.config.steps, run.config.n_eval, run.config.lr),
        (3, 8, Some(1e-2))
    );
    assert_eq!(run.recorded.losses, r.losses);
    let start =
        Intervention::random_rotation(lm.hidden_size(), run.config.dims, 0, &lm.device()).unwrap();
    let (Intervention::Rotated(saved), Intervention::Rotated(start)) = (&run.intervention, &start)
    else {
        panic!("a rotation: {:?}", run.intervention.kind());
    };
    let host = |t: &burn::tensor::Tensor<2>| subspace::readout::to_host(t.clone()).unwrap();
    let moved = common::max_abs_diff(&host(&saved.rotation), &host(&start.rotation));
    assert!(
        moved > 1e-4,
        "the saved rotation is the trained one (moved {moved})"
    );

    let val = run.rescore(lm, &data, &labels, Split::Val).unwrap();
    let test = run.rescore(lm, &data, &labels, Split::Test).unwrap();
    assert_eq!((val.cause, val.isolate), (r.val.cause, r.val.isolate));
    assert_eq!(
        (test.cause, test.isolate, test.n_cause),
        (r.test.cause, r.test.isolate, r.test.n_cause)
    );

    let plain = dir.path().join("plain.safetensors");
    subspace::store::save(
        &plain,
        lm,
        run.site,
        &run.intervention,
        serde_json::json!({}),
    )
    .unwrap();
    let e = ravel::load_run(&plain, lm).unwrap_err().to_string();
    assert!(e.contains("not saved by `subspace ravel --save`"), "{e}");
}

/// On pairs labelled by the model's own answers (RAVEL's labels), an intervention that changes
/// nothing gives every base answer back and no counterfactual one: the base label is the
/// model's greedy token after the answers' shared prefix, the counterfactual label a different
/// token there by construction. Cause 0 and Isolate 1, in both held-out sets.
#[test]
fn with_the_models_own_labels_an_unchanged_run_scores_cause_0_and_isolate_1() {
    use subspace::ravel::answers::{AnswerPlan, Answers, ask};
    use subspace::ravel::labelled::{Draw, SplitKind, Unit, labelled_examples};
    let lm = common::smollm();
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let of = |split: Split, n: usize| -> Vec<usize> {
        (0..data.cities.len())
            .filter(|&c| data.cities[c].split == split)
            .step_by(9)
            .take(n)
            .collect()
    };
    let first = |split: Split, a: Attribute| ravel::probe::ranked_templates(&data, split, a)[0];
    let train_templates: Vec<usize> = [
        Attribute::Country,
        Attribute::Continent,
        Attribute::Language,
    ]
    .iter()
    .map(|&a| first(Split::Train, a))
    .collect();
    let val_templates: Vec<usize> = [
        Attribute::Country,
        Attribute::Continent,
        Attribute::Language,
    ]
    .iter()
    .map(|&a| first(Split::Val, a))
    .collect();
    let mut heard = ask(
        lm,
        &data,
        &of(Split::Train, 40),
        &train_templates,
        64,
        &mut |_| {},
    )
    .unwrap();
    heard.extend(
        ask(
            lm,
            &data,
            &of(Split::Train, 40),
            &val_templates,
            64,
            &mut |_| {},
        )
        .unwrap(),
    );
    heard.extend(
        ask(
            lm,
            &data,
            &of(Split::Val, 40),
            &train_templates,
            64,
            &mut |_| {},
        )
        .unwrap(),
    );
    let answers = Answers {
        model: lm.name.clone(),
        plan: AnswerPlan::default(),
        prompts: heard.len(),
        answers: heard,
        seconds: 0.0,
    };
    let identity = Intervention::random_rotation(lm.hidden_size(), 0, 0, &lm.device()).unwrap();
    for kind in [SplitKind::Context, SplitKind::Entity] {
        let draw = Draw::new(kind, 1);
        let examples = labelled_examples(lm, &data, &answers, &draw, Split::Val, 16).unwrap();
        let s = ravel::eval::evaluate(lm, Site::block_output(9), &identity, &examples, 16).unwrap();
        assert!(s.n_cause > 0 && s.n_isolate > 0, "{kind:?}: {s:?}");
        assert_eq!((s.cause, s.isolate), (0.0, 1.0), "{kind:?}");
        // The city's whole name: the same pairs and targets, more tokens edited, and the edited
        // tokens spell the end of each city's name.
        let spans = Draw {
            unit: Unit::Span,
            ..draw
        };
        let spans = labelled_examples(lm, &data, &answers, &spans, Split::Val, 16).unwrap();
        assert_eq!(spans.len(), examples.len());
        let mut longer = 0;
        for (span, last) in spans.iter().zip(&examples) {
            let (sp, lp) = (&span.example.pair, &last.example.pair);
            assert_eq!((&sp.base, &sp.source), (&lp.base, &lp.source));
            assert_eq!(span.example.target, last.example.target);
            assert_eq!(sp.positions.last(), lp.positions.last());
            longer += usize::from(sp.positions.len() > 1);
            let spelled = |prompt: &subspace::Prompt, at: Vec<usize>| -> String {
                at.iter().map(|&i| prompt.tokens[i].as_str()).collect()
            };
            let base_text = spelled(&sp.base, sp.positions.iter().map(|a| a.base).collect());
            let source_text = spelled(&sp.source, sp.positions.iter().map(|a| a.source).collect());
            assert!(
                data.cities[span.base_city].name.ends_with(base_text.trim()),
                "{base_text:?}"
            );
            assert!(
                data.cities[span.source_city]
                    .name
                    .ends_with(source_text.trim()),
                "{source_text:?}"
            );
        }
        assert!(longer > 0, "no pair of two several-token names in {kind:?}");
        // The source city read from the base's own template: the same pairs and targets, the
        // source prompt the base template filled with the source city.
        let own = Draw {
            sources: ravel::SourcePrompts::BaseTemplate,
            ..draw
        };
        let own = labelled_examples(lm, &data, &answers, &own, Split::Val, 16).unwrap();
        assert_eq!(own.len(), examples.len());
        for (o, e) in own.iter().zip(&examples) {
            assert_eq!(
                (o.base_city, o.source_city, o.example.target, o.role),
                (e.base_city, e.source_city, e.example.target, e.role)
            );
            assert_eq!(o.example.pair.base, e.example.pair.base);
            let origin = o.origin.unwrap();
            assert_eq!(origin.source_template, origin.base_template);
            let filled =
                data.templates[origin.base_template].fill(&data.cities[o.source_city].name);
            assert_eq!(o.example.pair.source.text, filled);
        }
        // A learning curve's train pairs: only the allowed train cities, in bases and sources.
        let limited = Draw {
            train_cities: Some(6),
            ..draw
        };
        let allowed =
            ravel::labelled::allowed_train_cities(&data, &answers.known_cities(&data), Some(6));
        assert_eq!(allowed.len(), 6);
        let train = labelled_examples(lm, &data, &answers, &limited, Split::Train, 16).unwrap();
        assert!(!train.is_empty());
        for e in &train {
            assert!(
                allowed.binary_search(&e.base_city).is_ok(),
                "{}",
                e.base_city
            );
            assert!(
                allowed.binary_search(&e.source_city).is_ok(),
                "{}",
                e.source_city
            );
        }
        let s = ravel::eval::evaluate(lm, Site::block_output(9), &identity, &spans, 16).unwrap();
        assert_eq!((s.cause, s.isolate), (0.0, 1.0), "{kind:?} spans");
        // Each pair's two cities are of the kind's held-out set.
        for e in &examples {
            let (_, city_split) = kind.grid(Split::Val);
            assert_eq!(data.cities[e.base_city].split, city_split);
            assert_eq!(data.cities[e.source_city].split, city_split);
            assert_ne!(e.base_city, e.source_city);
        }
    }
}

/// The train cities of a learning curve: the first N of one fixed order, so that a smaller set
/// is inside a larger one, and none but known train cities.
#[test]
fn learning_curve_city_sets_are_nested_known_train_cities() {
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let known: Vec<usize> = (0..data.cities.len()).step_by(3).collect();
    let of = |n| ravel::labelled::allowed_train_cities(&data, &known, n);
    let (small, large, all) = (of(Some(20)), of(Some(50)), of(None));
    assert_eq!((small.len(), large.len()), (20, 50));
    assert!(small.iter().all(|c| large.binary_search(c).is_ok()));
    assert!(large.iter().all(|c| all.binary_search(c).is_ok()));
    assert!(
        all.iter()
            .all(|&c| { data.cities[c].split == Split::Train && known.binary_search(&c).is_ok() })
    );
    assert_eq!(
        all.len(),
        known
            .iter()
            .filter(|&&c| data.cities[c].split == Split::Train)
            .count()
    );
}

/// A run's control is residual patching on its own test pairs: the same scores as a residual
/// run drawing the same pairs (same seed and size), and none for residual itself.
#[test]
fn a_runs_control_is_residual_patching_on_its_own_test_pairs() {
    let lm = common::smollm();
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let labels = ravel::Labels::FirstProbe(probe());
    let small = |method| {
        let mut c = RunConfig::new(method, 9);
        c.n_train = 8;
        c.n_eval = 24;
        c.seed = 3;
        c
    };
    let neurons = ravel::run(lm, &data, &labels, &small(Method::Neurons)).unwrap();
    let residual = ravel::run(lm, &data, &labels, &small(Method::Residual)).unwrap();
    assert_eq!(neurons.residual_test, Some(residual.test));
    assert_eq!(residual.residual_test, None);
    // Neurons (16 of 576) are not the whole vector: the control differs from the method.
    assert_ne!(neurons.test, residual.test);
}

/// Known cities per country of each split add up to the known cities per country, and a
/// split's counts hold only that split's cities (the committed answers file).
#[test]
fn known_cities_per_country_split_by_split_add_up() {
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let path = RavelData::default_dir().join("../results/ravel_answers_smollm2.json");
    let answers: subspace::ravel::Answers =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let all = answers.known_by_country(&data);
    let mut summed = std::collections::BTreeMap::new();
    for split in Split::ALL {
        let per = answers.known_by_country_in(&data, split);
        let cities: usize = per.values().sum();
        let direct = answers
            .known_cities(&data)
            .iter()
            .filter(|&&c| data.cities[c].split == split)
            .count();
        assert_eq!(cities, direct, "{split:?}");
        for (country, n) in per {
            *summed.entry(country).or_insert(0) += n;
        }
    }
    assert_eq!(summed, all);
}

/// DAS and MDAS run together on one set of pairs (one pass below the site, one scoring pass per
/// split) train and score exactly as each run alone does.
#[test]
fn runs_sharing_their_pairs_score_as_each_alone() {
    let lm = common::smollm();
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let labels = ravel::Labels::FirstProbe(probe());
    let small = |method| {
        let mut c = RunConfig::new(method, 9);
        c.n_train = 8;
        c.n_eval = 16;
        c.steps = 3;
        c.dims = 16;
        c.seed = 3;
        c
    };
    let configs = [small(Method::Das), small(Method::Mdas)];
    let together = ravel::run_each_with_progress(lm, &data, &labels, &configs, |_| {}).unwrap();
    assert_eq!(together.len(), 2);
    for (c, t) in configs.iter().zip(&together) {
        let alone = ravel::run(lm, &data, &labels, c).unwrap();
        assert_eq!(t.method, alone.method);
        assert_eq!(t.losses, alone.losses, "{}", c.method.name());
        assert_eq!(t.test, alone.test, "{}", c.method.name());
        assert_eq!(t.val, alone.val);
        assert_eq!(t.train, alone.train);
        assert_eq!(t.residual_test, alone.residual_test);
    }
    // The two trained different examples (MDAS also the isolate pairs): their losses differ.
    assert_ne!(together[0].losses, together[1].losses);
}
