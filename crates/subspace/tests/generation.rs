//! Greedy generation against transformers' `generate`, plain and with the tutorial's residual
//! patch applied by a forward hook; and the cached decoding against recomputing every step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::smollm;
use subspace::patch::PatchSpec;
use subspace::{Intervention, Site};

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
