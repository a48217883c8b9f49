//! The tutorial's scale: a random checkpoint of Llama-3.2-1B's shape (bf16 safetensors, written
//! by scripts/make-llama1b-shaped.py with transformers, ~2.2 GB, never committed) loads with its
//! weights kept bf16, and its logits and a residual patch at layer 8 match transformers. Its GGUF
//! copies (Q8_0 and the Q4_K_M mix of Q4_K and Q6_K, written by scripts/hf-to-gguf.py in
//! llama.cpp's layout: interleaved rotary rows, rope factors as a tensor) load with their weights
//! kept in blocks and match transformers run on the weights gguf-py's dequantiser reads back.
//!
//! Ignored by a plain `cargo test` (it needs the checkpoint); scripts/test.sh writes it and runs
//! `cargo test --release -p subspace --test llama1b_shaped -- --ignored`.
//!
//! Tolerance: the references are transformers run in `f32` on the same bf16 weights (widening
//! bf16 to `f32` is exact), so both sides multiply the same numbers in `f32` and differ only in
//! the order of the sums (and the `exp`/`sin` implementations). Sums of 2048–8192 products carry
//! relative errors of ~1e-6 each; through 16 layers that stays well under 1e-3 on logits of
//! size ~4, which is the bound used. (Against transformers in bf16 arithmetic the differences
//! are ~100× larger, since every activation is rounded to 8 bits of mantissa; that comparison is
//! reported by the script, not asserted.) The same holds for the GGUF copies: the reference
//! multiplies the f32 values gguf-py dequantises, which are exactly the values the blocks hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use subspace::patch::PatchSpec;
use subspace::readout::to_host;
use subspace::{Intervention, LanguageModel, Site};

const PARIS: &str = "The city of Paris is in the country of";
const RIO: &str = "The city of Rio is in the country of";
const TOLERANCE: f32 = 1e-3;

fn checkpoint() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/models/llama-3.2-1b-shaped");
    assert!(
        dir.join("made-by.json").is_file(),
        "{} is missing: run .venv/bin/python scripts/make-llama1b-shaped.py",
        dir.display()
    );
    dir
}

fn load() -> LanguageModel {
    LanguageModel::load(checkpoint().to_str().unwrap()).unwrap()
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
    logits.iter().map(|&l| l - lse).collect()
}

fn top_ids(values: &[f32], k: usize) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..values.len()).collect();
    ids.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    ids.truncate(k);
    ids
}

fn prompt_ids(meta: &serde_json::Value, prompt: &str) -> Vec<u32> {
    serde_json::from_value(meta["prompts"][prompt].clone()).unwrap()
}

#[test]
#[ignore = "needs scripts/make-llama1b-shaped.py's checkpoint (2.2 GB)"]
fn logits_match_transformers_with_bf16_weights_kept_bf16() {
    let dir = checkpoint();
    let lm = load();
    let cfg = &lm.model.config;
    assert_eq!(
        (
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.n_kv_heads()
        ),
        (16, 2048, 32, 8)
    );
    assert!(cfg.rope_scaling.is_some(), "Llama-3 rope scaling");
    assert_eq!(lm.model.weight_storage(), "bf16");
    assert!(
        matches!(
            lm.model.embed_tokens,
            llama::model::TokenEmbedding::Packed(_)
        ) && lm.model.lm_head.is_none(),
        "one bf16 copy of the tied embeddings"
    );

    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("made-by.json")).unwrap()).unwrap();
    let paris = lm.prompt(PARIS).unwrap();
    assert_eq!(paris.ids, prompt_ids(&meta, PARIS), "token ids");

    let want = common::read_f32(&dir.join("reference.safetensors"), "paris_last_logits");
    let batch = lm.batch(&[&paris]);
    let got =
        to_host(subspace::engine::last_logits(&lm.model, &batch, &[], None).unwrap()).unwrap();
    let diff = common::max_abs_diff(&got, &want);
    eprintln!("max |logit diff| vs transformers (f32 compute): {diff:.2e}");
    assert!(diff < TOLERANCE, "max |logit diff| {diff}");
    assert_eq!(top_ids(&got, 10), top_ids(&want, 10), "top-10 in order");

    let bf16 = common::read_f32(&dir.join("reference.safetensors"), "paris_last_logits_bf16");
    eprintln!(
        "for comparison, vs transformers in bf16 arithmetic: {:.2e}",
        common::max_abs_diff(&got, &bf16)
    );
}

#[test]
#[ignore = "needs scripts/make-llama1b-shaped.py's checkpoint (2.2 GB)"]
fn a_residual_patch_at_layer_8_matches_a_pytorch_hook() {
    let dir = checkpoint();
    let lm = load();
    let refs = dir.join("reference.safetensors");
    let paris = lm.prompt(PARIS).unwrap();
    let rio = lm.prompt(RIO).unwrap();
    let site = Site::block_output(8);
    let source = lm.trace(&rio).unwrap().vector(site, 3).unwrap();
    let want_source = common::read_f32(&refs, "rio_layer8_position3");
    let diff = common::max_abs_diff(&to_host(source.clone()).unwrap(), &want_source);
    assert!(diff < TOLERANCE, "layer-8 vector: max |diff| {diff}");

    let spec = PatchSpec {
        site,
        position: 3,
        source,
        intervention: Intervention::Replace,
    };
    let patched = lm.patch_vectors(&paris, &[spec]).unwrap();
    let want = log_softmax(&common::read_f32(&refs, "patched_last_logits"));
    let got = common::log(&patched.probs);
    let diff = common::max_abs_diff(&got, &want);
    eprintln!("patched log-probs: max |diff| vs a PyTorch hook {diff:.2e}");
    assert!(diff < TOLERANCE, "patched log-probs: max |diff| {diff}");
    assert_eq!(top_ids(&got, 10), top_ids(&want, 10));
    // The patch did something: the clean distribution is elsewhere.
    let clean = log_softmax(&common::read_f32(&refs, "paris_last_logits"));
    assert!(common::max_abs_diff(&clean, &want) > 100.0 * TOLERANCE);
}

/// Loads `model-{ftype}.gguf` and compares it with transformers on gguf-py's reading of it.
fn gguf_copy_matches_transformers(ftype: &str, gate: &str, attn_v_layer0: &str) {
    let dir = checkpoint();
    let path = dir.join(format!("model-{ftype}.gguf"));
    let refs = dir.join(format!("reference-{ftype}.safetensors"));
    assert!(
        refs.is_file(),
        "{} is missing: run .venv/bin/python scripts/make-llama1b-shaped.py",
        refs.display()
    );
    let lm = LanguageModel::load(path.to_str().unwrap()).unwrap();
    let cfg = &lm.model.config;
    assert_eq!(
        (cfg.num_hidden_layers, cfg.hidden_size, cfg.n_kv_heads()),
        (16, 2048, 8)
    );
    assert_eq!(
        cfg.rope_freq_factors.as_ref().map(Vec::len),
        Some(32),
        "Llama-3 rope scaling arrives as llama.cpp's rope_freqs tensor"
    );
    assert_eq!(lm.model.weight_storage(), gate);
    assert_eq!(lm.model.blocks[0].self_attn.v_proj.storage(), attn_v_layer0);
    assert!(
        lm.model.lm_head.is_none(),
        "tied head read from the packed embedding"
    );

    let paris = lm.prompt(PARIS).unwrap();
    let batch = lm.batch(&[&paris]);
    let got =
        to_host(subspace::engine::last_logits(&lm.model, &batch, &[], None).unwrap()).unwrap();
    let want = common::read_f32(&refs, "paris_last_logits");
    let diff = common::max_abs_diff(&got, &want);
    eprintln!("{ftype}: max |logit diff| vs transformers on gguf-py's weights: {diff:.2e}");
    assert!(diff < TOLERANCE, "{ftype}: max |logit diff| {diff}");
    assert_eq!(
        top_ids(&got, 10),
        top_ids(&want, 10),
        "{ftype}: top-10 in order"
    );

    let site = Site::block_output(8);
    let last = paris.ids.len() - 1;
    let hidden = lm.trace(&paris).unwrap().vector(site, last).unwrap();
    let want = common::read_f32(&refs, "paris_layer8_last");
    let diff = common::max_abs_diff(&to_host(hidden).unwrap(), &want);
    assert!(
        diff < TOLERANCE,
        "{ftype}: layer-8 residual max |diff| {diff}"
    );
}

#[test]
#[ignore = "needs scripts/make-llama1b-shaped.py's GGUF copies"]
fn q8_0_gguf_copy_matches_transformers_on_its_dequantised_weights() {
    gguf_copy_matches_transformers("q8_0", "Q8_0 blocks", "Q8_0 blocks");
}

#[test]
#[ignore = "needs scripts/make-llama1b-shaped.py's GGUF copies"]
fn q4_k_m_gguf_copy_matches_transformers_on_its_dequantised_weights() {
    // llama.cpp's Q4_K_M: Q4_K, with Q6_K for attn_v in the first layers (and ffn_down, output).
    gguf_copy_matches_transformers("q4_k_m", "Q4_K blocks", "Q6_K blocks");
}
