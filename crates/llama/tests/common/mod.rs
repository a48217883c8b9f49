//! Helpers shared by the integration tests: fixture paths, the default model, tensor reading.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use llama::{Loaded, ModelSource};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The default model. Tests that need it fail (not skip) when it is missing: CI fetches it.
pub fn smollm(device: &Device) -> Loaded {
    let source = ModelSource::default_model()
        .expect("the default model is missing: run scripts/fetch-model.sh");
    llama::load::load(&source, device).expect("loading the default model")
}

/// The default model with its weights stored as asked.
pub fn smollm_with(device: &Device, storage: llama::load::WeightStorage) -> Loaded {
    let Ok(ModelSource::Gguf(path)) = ModelSource::default_model() else {
        panic!("the default model is missing: run scripts/fetch-model.sh")
    };
    let (model, tokenizer) = llama::load::load_gguf_with(&path, device, storage).unwrap();
    Loaded {
        model,
        tokenizer,
        source: ModelSource::Gguf(path),
    }
}

/// The fixtures' reader, shared with the kernels' tests (one copy of it in the workspace).
#[path = "../../../kernels/tests/common/mod.rs"]
mod fixtures;
#[allow(unused_imports)] // not every test reads fixtures
pub use fixtures::read_f32;

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn top_k(x: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[b].total_cmp(&x[a]));
    idx.truncate(k);
    idx
}

pub fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Every prompt of a tiny checkpoint's fixture (written by transformers): the same token ids as
/// transformers' tokenizer, and logits at every position within `tolerance` of transformers'.
pub fn matches_transformers(fixture: &str, tolerance: f32) -> Loaded {
    let dir = fixtures().join(fixture);
    let device = Device::flex();
    let loaded = llama::load::load(&ModelSource::HfDir(dir.clone()), &device).unwrap();
    let meta: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let want = read_f32(&dir.join("expected_logits.safetensors"));
    for (i, case) in meta.iter().enumerate() {
        let text = case["prompt"].as_str().unwrap();
        let ids = loaded.tokenizer.encode(text).unwrap();
        let want_ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(ids, want_ids);
        let logits = loaded
            .model
            .forward(&llama::TokenBatch::new(&[ids], 0, &device));
        let got = to_vec(logits);
        let diff = max_abs_diff(&got, &want[&format!("logits.{i}")].1);
        assert!(diff <= tolerance, "{fixture} {text:?}: max |diff| {diff}");
    }
    loaded
}
