//! SmolLM2-135M (GGUF, Q4_1) against transformers' float32 logits (scripts/make_fixtures.py).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::tensor::Device;
use llama::TokenBatch;
use llama::load::WeightStorage;
use serde_json::Value;

type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

fn fixture() -> (Value, Tensors) {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("smollm2_logits.json")).unwrap(),
    )
    .unwrap();
    let logits = common::read_f32(&common::fixtures().join("smollm2_last_logits.safetensors"));
    (meta, logits)
}

/// Both ways of storing the weights: in their GGUF blocks, multiplied by the quantised kernels
/// (the default on flex), and dequantised to dense `f32` for burn's matmul.
#[test]
fn last_position_logits_match_transformers() {
    for storage in [WeightStorage::Packed, WeightStorage::F32] {
        logits_match_transformers(storage);
    }
}

fn logits_match_transformers(storage: WeightStorage) {
    let device = Device::flex();
    let loaded = common::smollm_with(&device, storage);
    let blocks = storage == WeightStorage::Packed;
    let attn = &loaded.model.blocks[0].self_attn;
    assert_eq!(
        attn.q_proj.is_packed(),
        blocks,
        "{storage:?}: q_proj storage"
    );
    assert_eq!(
        loaded.model.blocks[29].mlp.down_proj.is_packed(),
        blocks,
        "{storage:?}"
    );
    // The tied head multiplies by the embeddings, packed or dense: one copy either way.
    assert!(loaded.model.lm_head.is_none(), "{storage:?}: head");
    assert_eq!(
        matches!(
            loaded.model.embed_tokens,
            llama::model::TokenEmbedding::Packed(_)
        ),
        blocks,
        "{storage:?}: embeddings"
    );
    let (meta, want) = fixture();
    let prompts = meta["prompts"].as_array().unwrap();
    assert!(prompts.len() >= 6);
    for (i, p) in prompts.iter().enumerate() {
        let text = p["prompt"].as_str().unwrap();
        let ids = loaded.tokenizer.encode(text).unwrap();
        let want_ids: Vec<u32> = serde_json::from_value(p["ids"].clone()).unwrap();
        assert_eq!(ids, want_ids, "token ids of {text:?}");
        let batch = TokenBatch::new(std::slice::from_ref(&ids), 0, &device);
        let logits = loaded.model.logits_at(
            {
                let ctx = loaded.model.context(&batch);
                let mut h = loaded.model.embed(batch.ids.clone());
                for b in &loaded.model.blocks {
                    h = b.forward(h, &ctx);
                }
                h
            },
            ids.len() - 1,
        );
        let got = common::to_vec(logits);
        let (_, reference) = &want[&format!("logits.{i}")];
        let diff = common::max_abs_diff(&got, reference);
        eprintln!("{storage:?} {text:?}: max |logit diff| vs transformers {diff:.2e}");
        assert!(diff <= 2e-3, "{text:?}: max |diff| {diff}");
        assert_eq!(
            common::top_k(&got, 10),
            common::top_k(reference, 10),
            "{text:?}: top-10"
        );
    }
}

#[test]
fn a_padded_batch_gives_each_prompt_its_own_logits() {
    let device = Device::flex();
    let loaded = common::smollm(&device);
    let (meta, want) = fixture();
    // Prompts of different lengths (9, 6, 11 tokens) in one left-padded batch.
    let picks = [0usize, 4, 3];
    let rows: Vec<Vec<u32>> = picks
        .iter()
        .map(|&i| {
            loaded
                .tokenizer
                .encode(meta["prompts"][i]["prompt"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    let batch = TokenBatch::new(&rows, loaded.tokenizer.pad_id(), &device);
    let logits = loaded.model.forward(&batch);
    let [b, s, v] = logits.dims();
    assert_eq!(b, 3);
    for (row, &i) in picks.iter().enumerate() {
        let got = common::to_vec(
            logits
                .clone()
                .narrow(0, row, 1)
                .narrow(1, s - 1, 1)
                .reshape([v]),
        );
        let (_, reference) = &want[&format!("logits.{i}")];
        let diff = common::max_abs_diff(&got, reference);
        assert!(diff <= 2e-3, "row {row}: max |diff| {diff}");
    }
}
