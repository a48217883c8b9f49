//! Model families beside Llama, each a tiny random checkpoint written by transformers from a
//! fixed seed (scripts/make_fixtures.py): its logits at every position against transformers'.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

/// Qwen 2: biases on the queries, keys and values, none on the output projection, an untied
/// head; `f32` weights (dense).
#[test]
fn tiny_qwen2_matches_transformers_at_every_position() {
    let loaded = common::matches_transformers("tiny-qwen2", 2e-4);
    let cfg = &loaded.model.config;
    assert_eq!(cfg.model_type, "qwen2");
    assert!(cfg.qkv_bias() && !cfg.o_bias() && !cfg.tie_word_embeddings);
}

/// The same Qwen 2 in bf16: its weights kept packed (bf16, read in place), the biases added
/// after the packed products.
#[test]
fn tiny_qwen2_in_bf16_matches_transformers_with_packed_weights() {
    let loaded = common::matches_transformers("tiny-qwen2-bf16", 2e-4);
    let attn = &loaded.model.blocks[0].self_attn;
    assert!(attn.q_proj.is_packed(), "{}", attn.q_proj.storage());
}

/// Qwen 3: an RMSNorm over each head of the queries and keys before rotary, no biases; `f32`,
/// then bf16 with packed weights.
#[test]
fn tiny_qwen3_matches_transformers_at_every_position() {
    let loaded = common::matches_transformers("tiny-qwen3", 2e-4);
    let cfg = &loaded.model.config;
    assert_eq!(cfg.model_type, "qwen3");
    assert!(cfg.qk_norm && !cfg.qkv_bias());
    let attn = &loaded.model.blocks[0].self_attn;
    assert!(attn.q_norm.is_some() && attn.k_norm.is_some());
    common::matches_transformers("tiny-qwen3-bf16", 2e-4);
}

/// A family this model does not run is one error that names the supported ones.
#[test]
fn an_unsupported_family_names_the_supported_ones() {
    let text = std::fs::read_to_string(common::fixtures().join("tiny-qwen2/config.json")).unwrap();
    let gemma = text.replace("\"qwen2\"", "\"gemma3\"");
    let e = llama::LlamaConfig::from_json(&gemma)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gemma3") && e.contains("llama, qwen2, qwen3"),
        "{e}"
    );
    let sliding = text.replace(
        "\"use_sliding_window\": false",
        "\"use_sliding_window\": true",
    );
    let e = llama::LlamaConfig::from_json(&sliding)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sliding-window"), "{e}");
}
