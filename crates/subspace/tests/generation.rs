//! Greedy generation against transformers' `generate`, plain and with the tutorial's residual
//! patch applied by a forward hook; and the cached decoding against recomputing every step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::smollm;
use subspace::patch::PatchSpec;
use subspace::{GenerateConfig, Held, Intervention, Site};

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(common::fixtures().join("generation.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn greedy_generation_matches_transformers() {
    let lm = smollm();
    let fix = fixture();
    let prompt = lm.prompt(fix["base"].as_str().unwrap()).unwrap();
    let n = fix["tokens"].as_u64().unwrap() as usize;
    let got = lm.generate(&prompt, n).unwrap();
    assert_eq!(got.ids, ids(&fix["greedy_ids"]), "{:?}", got.text);
    assert_eq!(got.text, fix["greedy_text"].as_str().unwrap());
}

#[test]
fn patched_generation_matches_a_hook_patched_transformers_generate() {
    let lm = smollm();
    let fix = fixture();
    let (layer, position) = (
        fix["layer"].as_u64().unwrap() as usize,
        fix["position"].as_u64().unwrap() as usize,
    );
    let pair = lm
        .pair(
            fix["base"].as_str().unwrap(),
            fix["source"].as_str().unwrap(),
        )
        .unwrap()
        .at_positions(position, position)
        .unwrap();
    let placed = Intervention::Replace.at(Site::block_output(layer));
    let n = fix["tokens"].as_u64().unwrap() as usize;
    let got = lm.generate_patched(&pair, &[placed], n).unwrap();
    assert_eq!(got.ids, ids(&fix["patched_ids"]), "{:?}", got.text);
    assert!(got.text.starts_with(" Brazil"), "{:?}", got.text);
}

/// Each generated token must be the argmax of a full, uncached forward pass over the prompt
/// and the tokens so far, with the edit at the prompt's token: the cache changes nothing.
#[test]
fn cached_decoding_equals_recomputing_the_whole_sequence_each_step() {
    let lm = common::tiny();
    let site = Site::block_output(0);
    let pair = lm
        .pair("the quick brown fox jumps over", "a lazy dog sat on")
        .unwrap()
        .at_positions(2, 1)
        .unwrap();
    let iv = Intervention::random_rotation(lm.hidden_size(), 16, 4, &lm.device()).unwrap();
    let n = 8;
    let got = lm
        .generate_patched(&pair, &[iv.clone().at(site)], n)
        .unwrap();
    let source = lm.trace(&pair.source).unwrap().vector(site, 1).unwrap();
    let mut ids = pair.base.ids.clone();
    for step in 0..n {
        let text = lm.tokenizer.inner().decode(&ids, false).unwrap();
        let mut prompt = lm.prompt(&text).unwrap();
        // Decoding and re-encoding may merge tokens differently: use the ids themselves.
        prompt.tokens = lm.tokenizer.pieces(&ids);
        prompt.ids = ids.clone();
        let spec = PatchSpec {
            site,
            position: 2,
            source: source.clone(),
            intervention: iv.clone(),
        };
        let want = lm.patch_vectors(&prompt, &[spec]).unwrap().argmax();
        assert_eq!(got.ids[step], want.id, "step {step}");
        ids.push(want.id);
    }
}

#[test]
fn bad_generation_requests_are_clear_errors() {
    let lm = common::tiny();
    let prompt = lm.prompt("the quick brown fox").unwrap();
    let e = lm.generate(&prompt, 0).unwrap_err();
    assert!(
        matches!(e, subspace::SubspaceError::BadSetting { .. }),
        "{e}"
    );
    let e = lm.generate(&prompt, 1 << 40).unwrap_err();
    let e2 = lm.generate(&prompt, usize::MAX).unwrap_err();
    assert!(
        matches!(e2, subspace::SubspaceError::PromptTooLong { .. }),
        "{e2}"
    );
    assert!(
        matches!(e, subspace::SubspaceError::PromptTooLong { .. }),
        "{e}"
    );
}

/// Prompts of different lengths generated together (left-padded, one batch) continue exactly
/// as each does alone, and the first matches transformers' greedy tokens.
#[test]
fn a_batch_of_prompts_generates_what_each_prompt_generates_alone() {
    let lm = smollm();
    let fix = fixture();
    let n = fix["tokens"].as_u64().unwrap() as usize;
    let texts = [
        fix["base"].as_str().unwrap(),
        "The city of Rio de Janeiro is in the country of",
        "People in Tokyo speak",
        "[{\"city\": \"Los Angeles\", \"country\": \"United States\"}, {\"city\": \"Akron\", \"country\": \"",
    ];
    let prompts: Vec<_> = texts.iter().map(|t| lm.prompt(t).unwrap()).collect();
    let refs: Vec<_> = prompts.iter().collect();
    let batched = lm.generate_batch(&refs, n).unwrap();
    assert_eq!(batched[0], ids(&fix["greedy_ids"]));
    for (p, got) in prompts.iter().zip(&batched) {
        assert_eq!(got, &lm.generate(p, n).unwrap().ids, "{:?}", p.text);
    }
    assert!(lm.generate_batch(&refs, 0).is_err());
}

fn inner_fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(common::fixtures().join("inner_sites.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn edits_held_on_every_token_match_a_hook_left_on_during_transformers_generate() {
    let lm = smollm();
    let fix = inner_fixture();
    let held = &fix["held"];
    let (layer, position) = (
        held["layer"].as_u64().unwrap() as usize,
        held["position"].as_u64().unwrap() as usize,
    );
    let n = held["tokens"].as_u64().unwrap() as usize;
    let site = Site::block_output(layer);
    let base = lm.prompt(fix["base"].as_str().unwrap()).unwrap();
    let source = lm.prompt(fix["source"].as_str().unwrap()).unwrap();
    let rio = lm.trace(&source).unwrap().vector(site, position).unwrap();
    let paris = lm.trace(&base).unwrap().vector(site, position).unwrap();
    let steer = Held {
        site,
        intervention: Intervention::Add,
        source: rio.clone() - paris,
    };
    let got = lm
        .generate_with(&base, &GenerateConfig::greedy(n).holding(steer))
        .unwrap();
    assert_eq!(got.ids, ids(&held["add"]["ids"]), "{:?}", got.text);
    let replace = Held {
        site,
        intervention: Intervention::Replace,
        source: rio,
    };
    let got = lm
        .generate_with(&base, &GenerateConfig::greedy(n).holding(replace))
        .unwrap();
    assert_eq!(got.ids, ids(&held["replace"]["ids"]), "{:?}", got.text);
    // Without the held edit the text is the plain one: the held edit is what changed it.
    assert_ne!(lm.generate(&base, n).unwrap().ids, got.ids);
}

#[test]
fn sampling_is_reproducible_from_its_seed_and_reduces_to_greedy() {
    let lm = smollm();
    let prompt = lm.prompt("Once upon a time").unwrap();
    let n = 10;
    let greedy = lm.generate(&prompt, n).unwrap();
    let sampled = |t: f32, p: f32, seed: u64| {
        lm.generate_with(&prompt, &GenerateConfig::greedy(n).sampled(t, p, seed))
            .unwrap()
            .ids
    };
    assert_eq!(sampled(1.0, 1.0, 7), sampled(1.0, 1.0, 7));
    let seeds: Vec<Vec<u32>> = (0..4).map(|s| sampled(1.2, 1.0, s)).collect();
    assert!(
        seeds.windows(2).any(|w| w[0] != w[1]),
        "four seeds gave the same text"
    );
    // A vanishing temperature, or a nucleus of one token, is the most likely token.
    assert_eq!(sampled(1e-4, 1.0, 3), greedy.ids);
    assert_eq!(sampled(1.0, 1e-6, 3), greedy.ids);
}

#[test]
fn bad_generation_settings_are_clear_errors() {
    let lm = smollm();
    let prompt = lm.prompt("Once upon a time").unwrap();
    for (t, p) in [
        (0.0, 0.9),
        (-1.0, 0.9),
        (f32::NAN, 0.9),
        (1.0, 0.0),
        (1.0, 1.5),
    ] {
        let e = lm
            .generate_with(&prompt, &GenerateConfig::greedy(3).sampled(t, p, 0))
            .unwrap_err();
        assert!(
            matches!(e, subspace::SubspaceError::BadSetting { .. }),
            "{t} {p}: {e}"
        );
    }
    // A held vector of the wrong width.
    let held = Held {
        site: Site::new(9, subspace::Component::MlpHidden),
        intervention: Intervention::Add,
        source: burn::tensor::Tensor::zeros([lm.hidden_size()], &lm.device()),
    };
    let e = lm
        .generate_with(&prompt, &GenerateConfig::greedy(3).holding(held))
        .unwrap_err();
    assert!(
        matches!(e, subspace::SubspaceError::BadIntervention(_)),
        "{e}"
    );
}
