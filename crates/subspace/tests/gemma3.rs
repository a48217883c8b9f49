//! Every site on the real Gemma-3-270M (`scripts/fetch-model.sh gemma3-270m`), patched here and
//! with PyTorch hooks on transformers reading the same GGUF (scripts/make_family_fixtures.py):
//! " Paris" ← " Tokyo" at one site at a time (the query at the last token, which reads it), on a
//! sliding-window layer (3) and a global one (5),
//! compared as the patched run's next-token log-probabilities; and the attention pattern.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use subspace::{Component, Intervention, LanguageModel, Site};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../llama/tests/fixtures/gemma3-270m")
}

/// The fixture's description (prompts, runs, patches), written with its tensors.
fn meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap())
        .unwrap()
}

/// The model, loaded once per test binary, by name: missing, the error says which fetch
/// command to run.
fn gemma() -> &'static LanguageModel {
    static LM: std::sync::OnceLock<LanguageModel> = std::sync::OnceLock::new();
    LM.get_or_init(|| LanguageModel::load("gemma3-270m").unwrap())
}

fn component(name: &str) -> Component {
    let all: HashMap<String, Component> =
        Component::ALL.iter().map(|&c| (c.to_string(), c)).collect();
    all[name]
}

#[test]
fn every_site_of_gemma3_patches_as_pytorch_hooks_on_transformers() {
    let lm = gemma();
    let dir = fixture_dir();
    let meta = meta();
    let tensors = dir.join("expected.safetensors");
    let subset: Vec<usize> = common::read_f32(&tensors, "subset_ids")
        .iter()
        .map(|&i| i as usize)
        .collect();
    let runs: HashMap<&str, &serde_json::Value> = meta["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r))
        .collect();
    // Log-probabilities over the fixture's subset of the vocabulary.
    let want_logp = |name: &str| -> Vec<f32> {
        let lse = runs[name]["lse"].as_f64().unwrap() as f32;
        common::read_f32(&tensors, &format!("{name}.subset"))
            .iter()
            .map(|l| l - lse)
            .collect()
    };
    let clean = want_logp(meta["clean"].as_str().unwrap());
    let mut covered = Vec::new();
    for name in meta["patches"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let run = runs[name];
        let (layer, position) = (
            run["layer"].as_u64().unwrap() as usize,
            run["position"].as_u64().unwrap() as usize,
        );
        let c = component(run["site"].as_str().unwrap());
        let site = match run["head"].as_u64() {
            Some(h) => Site::head(layer, c, h as usize),
            None => Site::new(layer, c),
        };
        let pair = lm
            .pair(
                meta["base"].as_str().unwrap(),
                meta["source"].as_str().unwrap(),
            )
            .unwrap()
            .at_positions(position, position)
            .unwrap();
        let probs = lm
            .patch(&pair, &Intervention::Replace.at(site))
            .unwrap()
            .after
            .probs;
        let got: Vec<f32> = subset.iter().map(|&i| probs[i].max(1e-30).ln()).collect();
        let want = want_logp(name);
        let diff = common::max_abs_diff(&got, &want);
        let moved = common::max_abs_diff(&clean, &want);
        eprintln!("{name}: max |diff| {diff:.2e}, the patch moved them by {moved:.2e}");
        assert!(
            diff < 5e-3,
            "{name}: max |diff| of log-probabilities {diff}"
        );
        // The comparison tells the patched run from the clean one.
        assert!(
            moved > 4.0 * diff,
            "{name}: the patch moved the log-probabilities by {moved} only"
        );
        covered.push(c);
    }
    for c in Component::ALL {
        assert!(covered.contains(&c), "{c} is not compared");
    }
}

#[test]
fn gemma3_attention_pattern_matches_transformers() {
    let lm = gemma();
    let meta = meta();
    let got = lm
        .attention_pattern(&lm.prompt(meta["base"].as_str().unwrap()).unwrap(), 3)
        .unwrap();
    let got = got.into_data().try_to_vec::<f32>().unwrap();
    let want = common::read_f32(&fixture_dir().join("expected.safetensors"), "pattern.3");
    let diff = common::max_abs_diff(&got, &want);
    assert!(diff < 2e-3, "max |diff| {diff}");
}

/// The tutorial on Gemma-3-270M (`Setting::gemma3_270m`): the residual patch of the city at
/// every layer as transformers gives it, and DAS on the country prompt moving Paris to Brazil.
#[test]
fn the_tutorial_runs_on_gemma3() {
    let lm = gemma();
    let setting = subspace::tutorial::Setting::for_model("gemma3-270m");
    let meta = meta();
    let want: Vec<f32> =
        serde_json::from_value(meta["tutorial_residual_brazil_by_layer"].clone()).unwrap();
    let pair = lm
        .pair(&setting.base, &setting.source)
        .unwrap()
        .at(&setting.base_city, &setting.source_city)
        .unwrap();
    assert_eq!((pair.base_position(), pair.source_position()), (1, 1));
    for (layer, &p) in want.iter().enumerate() {
        let got = lm
            .patch(&pair, &Intervention::Replace.at(Site::block_output(layer)))
            .unwrap()
            .after
            .prob_of(&setting.target)
            .unwrap();
        assert!(
            (got - p).abs() < 2e-3,
            "layer {layer}: p(Brazil) {got} vs {p}"
        );
    }
    let outcome = subspace::tutorial::outcome(lm, &setting, 10).unwrap();
    eprintln!("{outcome}");
    let brazil = outcome
        .rows
        .iter()
        .find(|r| r.prompt == "country" && r.answer == " Brazil")
        .unwrap();
    assert!((brazil.residual - want[setting.layer]).abs() < 2e-3);
    assert!(outcome.das_loss.1 < outcome.das_loss.0, "{outcome}");
    assert!(brazil.das > 10.0 * brazil.clean, "{outcome}");
}
