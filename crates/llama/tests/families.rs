//! Model families beside Llama, each a tiny random checkpoint written by transformers from a
//! fixed seed (scripts/make_fixtures.py, scripts/make_family_fixtures.py): its logits at every
//! position against transformers'.
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

/// Qwen 2, Qwen 3 and Gemma 2 as GGUF files (f32, llama.cpp's names and layout for each
/// architecture: no Q/K permutation, `attn_q.bias`, `attn_q_norm`, Gemma's norms with their 1
/// added, its caps and window as metadata; tiny-llama's byte-level BPE in `tokenizer.ggml.*`):
/// Qwen 2 against transformers reading the same GGUF; Qwen 3 and Gemma 2 against transformers
/// on the checkpoint the file was written from (its readers of those files assume a head width
/// of 128 and default caps), Gemma 2's scores scaled by head_dim^-1/2 as llama.cpp scales them.
#[test]
fn tiny_gguf_files_of_other_families_match_transformers() {
    for (fixture, family) in [
        ("tiny-qwen2-gguf", "qwen2"),
        ("tiny-qwen3-gguf", "qwen3"),
        ("tiny-gemma2-gguf", "gemma2"),
    ] {
        let dir = common::fixtures().join(fixture);
        let device = burn::tensor::Device::flex();
        let loaded =
            llama::load::load(&llama::ModelSource::Gguf(dir.join("model.gguf")), &device).unwrap();
        assert_eq!(loaded.model.config.model_type, family);
        let meta: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let want = common::read_f32(&dir.join("expected_logits.safetensors"));
        for (i, case) in meta.iter().enumerate() {
            let ids = loaded
                .tokenizer
                .encode(case["prompt"].as_str().unwrap())
                .unwrap();
            let want_ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(ids, want_ids, "{fixture}");
            let got = common::to_vec(loaded.model.forward(&llama::TokenBatch::new(
                &[ids],
                0,
                &device,
            )));
            let diff = common::max_abs_diff(&got, &want[&format!("logits.{i}")].1);
            assert!(diff <= 2e-4, "{fixture} prompt {i}: max |diff| {diff}");
        }
    }
}

/// Mistral: every layer attends to the last 4 tokens only (the fixture's prompts run to 60).
#[test]
fn tiny_mistral_with_a_sliding_window_matches_transformers() {
    let loaded = common::matches_transformers("tiny-mistral", 2e-4);
    let cfg = &loaded.model.config;
    assert_eq!(cfg.sliding_window, Some(4));
    assert!(cfg.is_sliding(0) && cfg.is_sliding(1));
}

/// Gemma 2: four norms per block (`x · (1 + w)`), GeGLU, embeddings times √64, a window of 4
/// on layers 0 and 2, scores scaled by 24^-1/2 and capped at 1.5, logits capped at 3.
#[test]
fn tiny_gemma2_with_soft_capping_matches_transformers() {
    let loaded = common::matches_transformers("tiny-gemma2", 2e-4);
    let cfg = &loaded.model.config;
    assert_eq!(cfg.attn_logit_softcapping, Some(1.5));
    assert_eq!(cfg.final_logit_softcapping, Some(3.0));
    assert!(cfg.sandwich_norms && cfg.rms_norm_unit_offset && cfg.scale_embeddings);
    assert!(cfg.is_sliding(0) && !cfg.is_sliding(1) && cfg.is_sliding(2));
}

/// Gemma 3: Gemma 2's block with QK-norm and no caps; the sliding layers rotate at base 10^4,
/// the full one at 10^6 with linear scaling (factor 8).
#[test]
fn tiny_gemma3_with_local_and_global_rotary_matches_transformers() {
    let loaded = common::matches_transformers("tiny-gemma3", 2e-4);
    let cfg = &loaded.model.config;
    assert_eq!(cfg.model_type, "gemma3_text");
    assert_eq!(cfg.rope_local_theta, Some(1e4));
    assert_eq!(cfg.rope_theta, 1e6);
    assert_eq!(cfg.rope_scaling.as_ref().unwrap().rope_type, "linear");
    assert!(cfg.qk_norm && cfg.attn_logit_softcapping.is_none());
}

/// A family this model does not run is one error that names the supported ones.
#[test]
fn an_unsupported_family_names_the_supported_ones() {
    let text = std::fs::read_to_string(common::fixtures().join("tiny-qwen2/config.json")).unwrap();
    let phi = text.replace("\"qwen2\"", "\"phi3\"");
    let e = llama::LlamaConfig::from_json(&phi).unwrap_err().to_string();
    assert!(
        e.contains("phi3") && e.contains("llama, mistral, qwen2, qwen3, gemma2, gemma3_text"),
        "{e}"
    );
    let multimodal = text.replace("\"qwen2\"", "\"gemma3\"");
    let e = llama::LlamaConfig::from_json(&multimodal)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gemma3_text"), "{e}");
    let sliding = text.replace(
        "\"use_sliding_window\": false",
        "\"use_sliding_window\": true",
    );
    let e = llama::LlamaConfig::from_json(&sliding)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sliding window"), "{e}");
}
