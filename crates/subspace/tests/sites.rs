//! Sites inside a block (one head's query, key, value or output; the MLP's hidden activation),
//! the attention pattern, and token spans, against PyTorch hooks on transformers
//! (`scripts/make_fixtures.py inner`), plus the identities that tie them to the residual sites.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{PARIS, RIO, smollm};
use subspace::readout::to_host;
use subspace::sweep::{head_sweep, residual_sweep};
use subspace::{
    Component, Intervention, LanguageModel, Pair, Prediction, Site, SpanAlignment, SubspaceError,
};

fn fixture() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("inner_sites.json")).unwrap(),
    )
    .unwrap()
}

/// Log-probabilities from the fixture's logits `name`.
fn want_logp(name: &str) -> Vec<f32> {
    let logits = common::read_f32(
        &common::fixtures().join("inner_sites_logits.safetensors"),
        name,
    );
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = m + logits.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
    logits.iter().map(|v| v - lse).collect()
}

fn logp(p: &Prediction) -> Vec<f32> {
    common::log(&p.probs)
}

fn paris_rio(lm: &LanguageModel) -> Pair {
    lm.pair(PARIS, RIO).unwrap().at("Paris", "Rio").unwrap()
}

fn component(name: &str) -> Component {
    serde_json::from_value(serde_json::Value::String(name.into())).unwrap()
}

#[test]
fn each_inner_site_patch_matches_a_pytorch_hook_on_transformers() {
    let lm = smollm();
    let fix = fixture();
    let pair = paris_rio(lm);
    let clean = logp(&lm.predict(&pair.base).unwrap());
    for case in fix["cases"].as_array().unwrap() {
        let layer = case["layer"].as_u64().unwrap() as usize;
        let comp = component(case["site"].as_str().unwrap());
        let site = match case["head"].as_u64() {
            Some(h) => Site::head(layer, comp, h as usize),
            None => Site::new(layer, comp),
        };
        let got = logp(
            &lm.patch(&pair, &Intervention::Replace.at(site))
                .unwrap()
                .after,
        );
        let want = want_logp(&format!("patched.{}", case["site"].as_str().unwrap()));
        let diff = common::max_abs_diff(&got, &want);
        assert!(diff <= 2e-3, "{site}: max |diff| {diff}");
        // The patch moves the answer far more than the tolerance: the test can fail.
        let moved = common::max_abs_diff(&got, &clean);
        assert!(moved > 0.05, "{site} barely moved the logits ({moved})");
    }
}

#[test]
fn patching_every_head_output_of_a_layer_equals_patching_the_attention_output() {
    let lm = smollm();
    let pair = paris_rio(lm);
    let n_heads = lm.model.config.num_attention_heads;
    let attention = lm
        .patch(
            &pair,
            &Intervention::Replace.at(Site::new(9, Component::AttentionOutput)),
        )
        .unwrap()
        .after;
    let each_head: Vec<_> = (0..n_heads)
        .map(|h| Intervention::Replace.at(Site::head(9, Component::HeadOutput, h)))
        .collect();
    let heads = lm.patch_all(&pair, &each_head).unwrap().after;
    let all_at_once = lm
        .patch(
            &pair,
            &Intervention::Replace.at(Site::new(9, Component::HeadOutput)),
        )
        .unwrap()
        .after;
    assert!(common::max_abs_diff(&logp(&heads), &logp(&attention)) < 1e-3);
    assert!(common::max_abs_diff(&logp(&all_at_once), &logp(&attention)) < 1e-3);
    // One head alone is not the whole attention output.
    let one = lm.patch(&pair, &each_head[4]).unwrap().after;
    assert!(common::max_abs_diff(&logp(&one), &logp(&attention)) > 0.05);
}

#[test]
fn vectors_of_a_head_are_its_slice_of_the_whole_component() {
    let lm = smollm();
    let trace = lm.trace(&lm.prompt(RIO).unwrap()).unwrap();
    let hd = lm.model.config.head_dim();
    for (comp, head) in [
        (Component::Query, 7),
        (Component::Key, 2),
        (Component::Value, 1),
    ] {
        let whole = to_host(trace.vector(Site::new(5, comp), 3).unwrap()).unwrap();
        let one = to_host(trace.vector(Site::head(5, comp, head), 3).unwrap()).unwrap();
        assert_eq!(one, whole[head * hd..(head + 1) * hd]);
    }
    let hidden = trace.vector(Site::new(5, Component::MlpHidden), 3).unwrap();
    assert_eq!(hidden.dims(), [lm.model.config.intermediate_size]);
}

#[test]
fn the_attention_pattern_matches_transformers_output_attentions() {
    let lm = smollm();
    let fix = fixture();
    let layer = fix["pattern"]["layer"].as_u64().unwrap() as usize;
    let got = lm
        .attention_pattern(&lm.prompt(PARIS).unwrap(), layer)
        .unwrap();
    let [h, q, k] = got.dims();
    assert_eq!((h, q), (lm.model.config.num_attention_heads, k));
    let got = to_host(got).unwrap();
    let want = common::read_f32(
        &common::fixtures().join("inner_sites_logits.safetensors"),
        "pattern",
    );
    let diff = common::max_abs_diff(&got, &want);
    assert!(diff < 2e-3, "max |diff| {diff}");
    // Rows are distributions over the tokens up to the query.
    for row in got.chunks(k).take(q) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
}

#[test]
fn a_span_patch_matches_pytorch_and_aligns_the_last_tokens() {
    let lm = smollm();
    let fix = fixture();
    let span = &fix["span"];
    let pair = lm
        .pair(
            span["base"].as_str().unwrap(),
            span["source"].as_str().unwrap(),
        )
        .unwrap()
        .at_span("New York", "Rio de Janeiro")
        .unwrap();
    let positions = |key: &str| -> Vec<usize> {
        span[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let base: Vec<usize> = pair.positions.iter().map(|a| a.base).collect();
    let source: Vec<usize> = pair.positions.iter().map(|a| a.source).collect();
    assert_eq!(base, positions("base_positions"));
    assert_eq!(source, positions("source_positions"));
    let got = lm
        .patch(&pair, &Intervention::Replace.at(Site::block_output(9)))
        .unwrap()
        .after;
    let diff = common::max_abs_diff(&logp(&got), &want_logp("patched.span"));
    assert!(diff <= 2e-3, "max |diff| {diff}");
}

#[test]
fn a_span_of_one_token_is_the_single_position_patch() {
    let lm = smollm();
    let single = paris_rio(lm);
    let span = lm
        .pair(PARIS, RIO)
        .unwrap()
        .at_span("Paris", "Rio")
        .unwrap();
    assert_eq!(span, single);
    let by_range = lm
        .pair(PARIS, RIO)
        .unwrap()
        .at_spans(3..4, 3..4, SpanAlignment::Exact)
        .unwrap();
    assert_eq!(by_range, single);
}

#[test]
fn span_alignment_rules_pair_the_stated_tokens() {
    let first = SpanAlignment::First.align(3..5, 3..6).unwrap();
    assert_eq!(
        first.iter().map(|a| (a.base, a.source)).collect::<Vec<_>>(),
        [(3, 3), (4, 4)]
    );
    let last = SpanAlignment::Last.align(3..5, 3..6).unwrap();
    assert_eq!(
        last.iter().map(|a| (a.base, a.source)).collect::<Vec<_>>(),
        [(3, 4), (4, 5)]
    );
    assert!(matches!(
        SpanAlignment::Exact.align(3..5, 3..6),
        Err(SubspaceError::SpansNotAligned { .. })
    ));
    assert!(matches!(
        SpanAlignment::Last.align(3..3, 3..6),
        Err(SubspaceError::SpansNotAligned { .. })
    ));
}

#[test]
fn the_head_sweep_agrees_with_single_head_patches() {
    let lm = smollm();
    let pair = paris_rio(lm);
    let brazil = lm.token(" Brazil").unwrap();
    let sweep = head_sweep(lm, &pair, brazil, Component::HeadOutput).unwrap();
    assert_eq!(sweep.len(), lm.n_layers());
    assert_eq!(sweep[0].len(), lm.model.config.num_attention_heads);
    for (layer, head) in [(0, 0), (9, 4), (20, 8)] {
        let single = lm
            .patch(
                &pair,
                &Intervention::Replace.at(Site::head(layer, Component::HeadOutput, head)),
            )
            .unwrap()
            .after
            .prob(brazil);
        let got = sweep[layer][head];
        assert!(
            (got - single).abs() < 1e-4,
            "({layer}, {head}): {got} vs {single}"
        );
    }
}

#[test]
fn the_residual_sweep_aligns_prompts_of_different_lengths_by_their_last_tokens() {
    let lm = smollm();
    let base = lm
        .prompt("The city of New York is in the country of")
        .unwrap();
    let source = lm.trace(&lm.prompt(RIO).unwrap()).unwrap();
    assert_eq!(base.len(), source.prompt.len() + 1);
    let brazil = lm.token(" Brazil").unwrap();
    let sweep = residual_sweep(lm, &base, &source, brazil, Component::BlockOutput).unwrap();
    for row in &sweep {
        // Base token 0 has no source token to read: NaN, every other one a probability.
        assert!(row[0].is_nan());
        assert!(row[1..].iter().all(|p| (0.0..=1.0).contains(p)));
    }
    // Base " York" (4) reads source " Rio" (3).
    let pair = lm
        .pair("The city of New York is in the country of", RIO)
        .unwrap()
        .at_positions(4, 3)
        .unwrap();
    let single = lm
        .patch(&pair, &Intervention::Replace.at(Site::block_output(9)))
        .unwrap()
        .after
        .prob(brazil);
    assert!((sweep[9][4] - single).abs() < 1e-4);
}

#[test]
fn mistakes_at_the_new_sites_are_clear_errors() {
    let lm = smollm();
    let pair = paris_rio(lm);
    let n_kv = lm.model.config.n_kv_heads();
    let key_head = Site::head(9, Component::Key, n_kv);
    let e = lm
        .patch(&pair, &Intervention::Replace.at(key_head))
        .unwrap_err();
    assert!(matches!(e, SubspaceError::HeadOutOfRange { .. }), "{e}");
    assert!(e.to_string().contains("shared by 3 query heads"), "{e}");
    let e = lm
        .patch(
            &pair,
            &Intervention::Replace.at(Site::head(9, Component::BlockOutput, 0)),
        )
        .unwrap_err();
    assert!(matches!(e, SubspaceError::NoHeads { .. }), "{e}");
    // A neuron beyond the MLP's 1536.
    let width = lm.model.config.intermediate_size;
    let e = lm
        .patch(
            &pair,
            &Intervention::Neurons(vec![0, width]).at(Site::new(9, Component::MlpHidden)),
        )
        .unwrap_err();
    assert!(matches!(e, SubspaceError::BadIntervention(_)), "{e}");
    // A rotation sized for the residual stream does not fit one head.
    let rotation = Intervention::random_rotation(lm.hidden_size(), 4, 0, &lm.device()).unwrap();
    let e = lm
        .patch(&pair, &rotation.at(Site::head(9, Component::HeadOutput, 0)))
        .unwrap_err();
    assert!(matches!(e, SubspaceError::BadIntervention(_)), "{e}");
    let e = lm
        .pair(PARIS, RIO)
        .unwrap()
        .at_span("New York", "Rio")
        .unwrap_err();
    assert!(matches!(e, SubspaceError::SpanNotInPrompt { .. }), "{e}");
    let e = lm
        .pair("The city of New York is in the country of", RIO)
        .unwrap()
        .at_span_aligned("New York", "Rio", SpanAlignment::Exact)
        .unwrap_err();
    assert!(matches!(e, SubspaceError::SpansNotAligned { .. }), "{e}");
    let e = head_sweep(lm, &pair, 0, Component::MlpOutput).unwrap_err();
    assert!(matches!(e, SubspaceError::NoHeads { .. }), "{e}");
}

#[test]
fn das_trains_and_saves_on_one_head() {
    let lm = smollm();
    let site = Site::head(9, Component::HeadOutput, 4);
    let width = lm.site_width(site).unwrap();
    assert_eq!(width, lm.model.config.head_dim());
    let example = paris_rio(lm).with_target(lm.token(" Brazil").unwrap());
    let mut rotation = Intervention::random_rotation(width, 8, 0, &lm.device()).unwrap();
    let config = subspace::DasConfig::new(site, 15);
    let report = subspace::train::train(
        lm,
        &mut rotation,
        std::slice::from_ref(&example),
        &config,
        |_| {},
    )
    .unwrap();
    let (first, last) = (report.losses[0], *report.losses.last().unwrap());
    assert!(last < first, "loss {first} -> {last}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("head.safetensors");
    subspace::store::save(&path, lm, site, &rotation, serde_json::json!({})).unwrap();
    let saved = subspace::store::load(&path, lm).unwrap();
    assert_eq!(saved.site, site);
    let a = lm.patch(&example.pair, &rotation.at(site)).unwrap().after;
    let b = lm
        .patch(&example.pair, &saved.intervention.at(site))
        .unwrap()
        .after;
    assert!(common::max_abs_diff(&a.probs, &b.probs) < 1e-6);
}

#[test]
fn training_sees_a_span_pair_as_patching_does() {
    let lm = smollm();
    let rio = "The city of Rio de Janeiro is in the country of";
    let buenos = "The city of Buenos Aires is in the country of";
    let span = lm
        .pair(rio, buenos)
        .unwrap()
        .at_span("Rio de Janeiro", "Buenos Aires")
        .unwrap();
    assert_eq!(span.positions.len(), 2);
    let site = Site::block_output(9);
    // A rotation patching every dimension is residual patching.
    let d = lm.hidden_size();
    let all = Intervention::random_rotation(d, d, 3, &lm.device()).unwrap();
    let residual = lm
        .patch(&span, &Intervention::Replace.at(site))
        .unwrap()
        .after;
    let argentina = lm.token(" Argentina").unwrap();
    let example = span.clone().with_target(argentina);
    let objective =
        subspace::train::DasObjective::new(lm, site, std::slice::from_ref(&example), None).unwrap();
    let logits = to_host(objective.logits(&all, 0).unwrap()).unwrap();
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = m + logits.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
    let trained_path: Vec<f32> = logits.iter().map(|v| v - lse).collect();
    let diff = common::max_abs_diff(&trained_path, &logp(&residual));
    assert!(diff < 1e-3, "max |diff| {diff}");
    // And the patch of both tokens is not the patch of the last one alone.
    let last = lm
        .pair(rio, buenos)
        .unwrap()
        .at_positions(span.base_position(), span.source_position())
        .unwrap();
    let one = lm
        .patch(&last, &Intervention::Replace.at(site))
        .unwrap()
        .after;
    assert!(common::max_abs_diff(&logp(&one), &logp(&residual)) > 0.01);
}
