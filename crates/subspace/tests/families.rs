//! Patching on the model families beside Llama: the tiny random Qwen 2, Qwen 3, Mistral, Gemma 2
//! and Gemma 3 of the model crate's fixtures, patched here and with PyTorch hooks on transformers
//! (scripts/make_fixtures.py, scripts/make_family_fixtures.py):
//! the block-0 output at token 2, and head 1 of layer 0's attention output at token 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use subspace::{Component, Intervention, LanguageModel, Site};

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|&e| (e / sum) as f32).collect()
}

#[test]
fn qwen2_patches_match_transformers_hooks() {
    patches_match_transformers_hooks("tiny-qwen2");
}

#[test]
fn qwen3_patches_match_transformers_hooks() {
    patches_match_transformers_hooks("tiny-qwen3");
}

#[test]
fn mistral_patches_match_transformers_hooks() {
    patches_match_transformers_hooks("tiny-mistral");
}

#[test]
fn gemma2_patches_match_transformers_hooks() {
    patches_match_transformers_hooks("tiny-gemma2");
}

#[test]
fn gemma3_patches_match_transformers_hooks() {
    patches_match_transformers_hooks("tiny-gemma3");
}

fn patches_match_transformers_hooks(fixture: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../llama/tests/fixtures")
        .join(fixture);
    let lm = LanguageModel::load(dir.to_str().unwrap()).unwrap();
    let want = dir.join("expected_logits.safetensors");
    let pair = lm
        .pair(
            "the quick brown fox jumps over",
            "the lazy dog jumps over the",
        )
        .unwrap()
        .at_positions(2, 2)
        .unwrap();
    for (name, site) in [
        ("patch.residual", Site::block_output(0)),
        ("patch.head_output", Site::head(0, Component::HeadOutput, 1)),
    ] {
        let got = lm
            .patch(&pair, &Intervention::Replace.at(site))
            .unwrap()
            .after
            .probs;
        let reference = softmax(&common::read_f32(&want, name));
        // Log-probabilities: the tiny model's distribution over 384 tokens is nearly flat.
        let diff = common::max_abs_diff(&common::log(&got), &common::log(&reference));
        assert!(
            diff < 1e-3,
            "{name}: max |diff| of log-probabilities {diff}"
        );
        // The patch moved the answer distribution (the comparison is not of two clean runs).
        let clean = lm.predict(&pair.base).unwrap().probs;
        let moved = common::max_abs_diff(&common::log(&clean), &common::log(&reference));
        assert!(
            moved > 1e-2,
            "{name}: the patch moved the log-probabilities by {moved} only"
        );
    }
}
