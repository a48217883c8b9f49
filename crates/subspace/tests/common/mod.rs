//! Shared helpers for the interventions tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use subspace::LanguageModel;

pub const PARIS: &str = "The city of Paris is in the country of";
pub const RIO: &str = "The city of Rio is in the country of";
pub const CONTINENT: &str = "The city of Paris is in the continent of";
pub const LANGUAGE: &str = "The city of Paris is a city whose main language is";

/// The default model, loaded once per test binary. Missing model = failure: CI fetches it.
pub fn smollm() -> &'static LanguageModel {
    static LM: OnceLock<LanguageModel> = OnceLock::new();
    LM.get_or_init(|| LanguageModel::load_default().expect("run scripts/fetch-model.sh"))
}

/// The tiny random Llama of the llama crate's fixtures (d = 64, 2 layers).
pub fn tiny() -> LanguageModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../llama/tests/fixtures/tiny-llama");
    LanguageModel::load(dir.to_str().unwrap()).unwrap()
}

/// One training example on the tiny model: patch token 2 of a base from a source, target id 5.
pub fn tiny_example(lm: &LanguageModel) -> subspace::Example {
    lm.pair(
        "the quick brown fox jumps over",
        "the lazy dog jumps over the",
    )
    .unwrap()
    .at_positions(2, 2)
    .unwrap()
    .with_target(5)
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn read_f32(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Natural log of probabilities back to logits up to a constant: compare distributions.
pub fn log(p: &[f32]) -> Vec<f32> {
    p.iter().map(|v| v.max(1e-30).ln()).collect()
}

/// The first probe's known prompts (`data/results/ravel_probe_smollm2.json`).
pub fn ravel_probe() -> subspace::ravel::ProbeReport {
    let path =
        subspace::ravel::RavelData::default_dir().join("../results/ravel_probe_smollm2.json");
    let text = std::fs::read_to_string(path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["report"].clone()).unwrap()
}
