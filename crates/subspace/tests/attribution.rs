//! Attribution patching against PyTorch autograd on transformers (scripts/make_attribution_fixtures.py):
//! the metric log p(" Brazil") − log p(" France") after "The city of Paris is in the country
//! of", its gradient at every site kind, and the estimates (a_source − a_base) · gradient for the
//! source "... Rio ...". Also the head the tutorial notebook finds by patching, among the top
//! estimates; the names-filtered trace; the logit lens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{PARIS, RIO, smollm};
use subspace::{Attribution, Component, Metric, Site};

fn fixture() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("attribution.json")).unwrap(),
    )
    .unwrap()
}

fn want(name: &str) -> Vec<f32> {
    common::read_f32(&common::fixtures().join("attribution.safetensors"), name)
}

fn attribution() -> Attribution {
    let lm = smollm();
    let metric = Metric::LogProbDiff {
        target: lm.token(" Brazil").unwrap(),
        versus: lm.token(" France").unwrap(),
    };
    lm.attribute(
        &lm.prompt(PARIS).unwrap(),
        &lm.prompt(RIO).unwrap(),
        &metric,
        &Component::ALL,
    )
    .unwrap()
}

#[test]
fn gradients_at_every_site_kind_match_pytorch_autograd() {
    let fix = fixture();
    let a = attribution();
    assert!((a.metric_base - fix["metric_base"].as_f64().unwrap() as f32).abs() < 2e-3);
    assert!((a.metric_source - fix["metric_source"].as_f64().unwrap() as f32).abs() < 2e-3);
    let mut compared = 0;
    for c in Component::ALL {
        for layer in fix["layers"].as_array().unwrap() {
            let layer = layer.as_u64().unwrap() as usize;
            for p in fix["positions"].as_array().unwrap() {
                let p = p.as_u64().unwrap() as usize;
                let mut got = a.gradient(Site::new(layer, c), p).unwrap();
                if matches!(c, Component::Query | Component::Key) {
                    got = half_split_order(&got, 64);
                }
                let reference = want(&format!("grad.{c}.{layer}.{p}"));
                let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
                let diff = common::max_abs_diff(&got, &reference);
                assert!(
                    diff <= 1e-3 * scale + 1e-6,
                    "{c} layer {layer} position {p}: max |diff| {diff} against max |grad| {scale}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 9 * 4 * 2);
}

/// Queries and keys of a llama GGUF file in transformers' feature order: the file stores each
/// head's rotary pairs interleaved (`2i, 2i + 1`), transformers un-permutes them to halves
/// (`i, i + d/2`). Estimates sum over a head and do not see the order.
fn half_split_order(v: &[f32], head_dim: usize) -> Vec<f32> {
    v.chunks(head_dim)
        .flat_map(|head| {
            let evens = head.iter().step_by(2);
            let odds = head.iter().skip(1).step_by(2);
            evens.chain(odds).copied().collect::<Vec<f32>>()
        })
        .collect()
}

#[test]
fn estimates_match_pytorch_at_block_outputs_heads_and_mlp_neurons() {
    let a = attribution();
    let close = |got: f32, want: f32| (got - want).abs() <= 0.02_f32.max(0.02 * want.abs());
    for c in [
        Component::BlockOutput,
        Component::MlpHidden,
        Component::BlockInput,
        Component::AttentionOutput,
        Component::MlpOutput,
    ] {
        let grid = a.grid(c).unwrap();
        let reference = want(&format!("estimate.{c}"));
        let seq = grid[0].len();
        for (l, row) in grid.iter().enumerate() {
            for (p, &got) in row.iter().enumerate() {
                let w = reference[l * seq + p];
                assert!(close(got, w), "{c} layer {l} position {p}: {got} vs {w}");
            }
        }
    }
    for p in [3, 8] {
        let grid = a.head_grid(Component::HeadOutput, p).unwrap();
        let reference = want(&format!("estimate.head_output.at.{p}"));
        let heads = grid[0].len();
        for (l, row) in grid.iter().enumerate() {
            for (h, &got) in row.iter().enumerate() {
                let w = reference[l * heads + h];
                assert!(
                    close(got, w),
                    "head_output layer {l} head {h} at {p}: {got} vs {w}"
                );
            }
        }
    }
}

/// The tutorial notebook patches every head's output at the last token one at a time: layer 23
/// head 4 moves p(" Brazil") most. The estimates from one backward pass put it in their top 5.
#[test]
fn the_head_that_patching_finds_is_among_the_top_estimates() {
    let a = attribution();
    let grid = a.head_grid(Component::HeadOutput, 8).unwrap();
    let mut ranked: Vec<(usize, usize, f32)> = grid
        .iter()
        .enumerate()
        .flat_map(|(l, row)| row.iter().enumerate().map(move |(h, &v)| (l, h, v)))
        .collect();
    ranked.sort_by(|x, y| y.2.total_cmp(&x.2));
    let top: Vec<(usize, usize)> = ranked.iter().take(5).map(|&(l, h, _)| (l, h)).collect();
    assert!(top.contains(&(23, 4)), "top 5 heads by estimate: {top:?}");
}

#[test]
fn a_names_filtered_trace_keeps_only_what_is_asked() {
    let lm = smollm();
    let prompt = lm.prompt(PARIS).unwrap();
    let filtered = lm.trace_with(&prompt, &[Component::BlockOutput]).unwrap();
    let full = lm.trace(&prompt).unwrap();
    let site = Site::block_output(9);
    let a = subspace::readout::to_host(filtered.vector(site, 3).unwrap()).unwrap();
    let b = subspace::readout::to_host(full.vector(site, 3).unwrap()).unwrap();
    assert_eq!(a, b);
    let e = filtered
        .vector(Site::new(9, Component::MlpHidden), 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not kept"), "{e}");
}

/// The logit lens at the last layer is the model's own next-token distribution; early layers
/// do not yet say " France" at the last token.
#[test]
fn the_logit_lens_ends_at_the_models_prediction() {
    let lm = smollm();
    let prompt = lm.prompt(PARIS).unwrap();
    let lens = lm.logit_lens(&prompt, &[" France"]).unwrap();
    let predicted = lm.predict(&prompt).unwrap().prob_of(" France").unwrap();
    let last = *lens.answer_probs[0].last().unwrap().last().unwrap();
    assert!((last - predicted).abs() < 1e-4, "{last} vs {predicted}");
    assert_eq!(lens.last_token_tops().last().unwrap().0, " France");
    assert!(lens.answer_probs[0][0][8] < 0.01);
}

/// Many pairs in one batch (left-padded, prompts of different lengths, each its own metric):
/// every estimate is the mean of the pairs' own, position by position from the last token.
#[test]
fn a_batch_of_pairs_gives_the_mean_of_their_attributions() {
    let lm = smollm();
    let p = |t: &str| lm.prompt(t).unwrap();
    let (paris, rio) = (p(PARIS), p(RIO));
    let (tokyo, berlin) = (
        p("Tokyo is in the country of"),
        p("Berlin is in the country of"),
    );
    assert!(tokyo.len() < paris.len() && tokyo.len() == berlin.len());
    let metric = |a: &str, b: &str| Metric::LogProbDiff {
        target: lm.token(a).unwrap(),
        versus: lm.token(b).unwrap(),
    };
    let (m1, m2) = (metric(" Brazil", " France"), metric(" Germany", " Japan"));
    let comps = [Component::BlockOutput, Component::HeadOutput];
    let one = lm.attribute(&paris, &rio, &m1, &comps).unwrap();
    let two = lm.attribute(&tokyo, &berlin, &m2, &comps).unwrap();
    let both = lm
        .attribute_mean(
            &[
                subspace::AttributionPair {
                    base: &paris,
                    source: &rio,
                    metric: &m1,
                },
                subspace::AttributionPair {
                    base: &tokyo,
                    source: &berlin,
                    metric: &m2,
                },
            ],
            &comps,
        )
        .unwrap();
    assert_eq!(both.tokens, one.tokens);
    let shift = paris.len() - tokyo.len();
    let expect = |site: Site, pos: usize| -> f32 {
        let a = one.estimate(site, pos).unwrap();
        match pos.checked_sub(shift) {
            Some(q) => (a + two.estimate(site, q).unwrap()) / 2.0,
            None => a,
        }
    };
    for layer in [0, 9, 23, 29] {
        for pos in 0..paris.len() {
            for site in [
                Site::block_output(layer),
                Site::head(layer, Component::HeadOutput, 4),
            ] {
                let (got, want) = (both.estimate(site, pos).unwrap(), expect(site, pos));
                assert!(
                    (got - want).abs() <= 1e-3 + 1e-3 * want.abs(),
                    "{site} position {pos}: {got} vs {want}"
                );
            }
        }
    }
    let mean = (one.metric_base + two.metric_base) / 2.0;
    assert!((both.metric_base - mean).abs() < 1e-4);
}
