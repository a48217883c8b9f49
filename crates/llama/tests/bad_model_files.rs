//! Model files that are wrong in the ways people's files are wrong: each is an error that names
//! the file and says what to do, never a panic or a silently wrong model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use burn::tensor::Device;
use llama::load::gguf::GgufFile;
use llama::{LlamaError, ModelSource};

/// A copy of the tiny test model in a temporary directory, to break.
fn tiny_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::fixtures().join("tiny-llama")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> LlamaError {
    let source = ModelSource::parse(dir.to_str().unwrap()).unwrap();
    match llama::load::load(&source, &Device::flex()) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn the_intact_copy_loads() {
    let dir = tiny_copy();
    let source = ModelSource::parse(dir.path().to_str().unwrap()).unwrap();
    llama::load::load(&source, &Device::flex()).unwrap();
}

#[test]
fn missing_or_malformed_config_json() {
    let dir = tiny_copy();
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let e = load_err(dir.path()).to_string();
    assert!(e.contains("config.json"), "{e}");

    std::fs::write(dir.path().join("config.json"), "{ \"hidden_size\": 64, ").unwrap();
    let e = load_err(dir.path()).to_string();
    assert!(e.contains("config.json"), "{e}");

    // Well-formed JSON that lacks a required field.
    std::fs::write(dir.path().join("config.json"), r#"{"hidden_size": 64}"#).unwrap();
    let e = load_err(dir.path()).to_string();
    assert!(
        e.contains("config.json") && e.contains("missing field"),
        "{e}"
    );
}

#[test]
fn weights_that_contradict_the_config_are_refused() {
    let dir = tiny_copy();
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"),
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, LlamaError::ShapeMismatch { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("mlp") && e.contains("96"), "{e}");
}

#[test]
fn a_missing_shard_or_weight_file_is_named() {
    let dir = tiny_copy();
    let d = dir.path();
    // A sharded checkpoint whose second shard never arrived.
    std::fs::rename(
        d.join("model.safetensors"),
        d.join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    std::fs::write(
        d.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "model.norm.weight": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let e = load_err(d).to_string();
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("missing"),
        "{e}"
    );

    // No weights at all.
    std::fs::remove_file(d.join("model.safetensors.index.json")).unwrap();
    std::fs::remove_file(d.join("model-00001-of-00002.safetensors")).unwrap();
    let e = load_err(d).to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}

/// A GGUF v3 file written by hand (independently of any GGUF writer): no metadata, one tensor.
fn gguf_with_tensor(type_id: u32, dims: &[u64], data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&0u64.to_le_bytes()); // metadata entries
    let name = b"w";
    b.extend_from_slice(&(name.len() as u64).to_le_bytes());
    b.extend_from_slice(name);
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&type_id.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // offset in the data section
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend_from_slice(data);
    b
}

#[test]
fn tensor_types_unknown_or_not_dequantisable() {
    // A sanity check of the hand-written file: an F32 tensor reads back.
    let values = [1.5f32, -2.0, 0.25, 8.0];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let file = GgufFile::from_bytes(gguf_with_tensor(0, &[4], &bytes)).unwrap();
    assert_eq!(file.dequantize(&file.tensors[0]).unwrap(), values);

    // Type id 200 does not exist in ggml.
    let e = GgufFile::from_bytes(gguf_with_tensor(200, &[4], &bytes))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown GGML type id 200"), "{e}");

    // Q2_K (id 10) exists but this reader does not dequantise it: the error names the type,
    // the tensor and what to do. One Q2_K block: 256 values in 84 bytes.
    let file = GgufFile::from_bytes(gguf_with_tensor(10, &[256], &[0u8; 84])).unwrap();
    let e = file.dequantize(&file.tensors[0]).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("`w`") && e.contains("Q2_K") && e.contains("re-export"),
        "{e}"
    );

    // A tensor that claims more bytes than the file has.
    let e = GgufFile::from_bytes(gguf_with_tensor(0, &[1 << 20], &bytes))
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated or corrupt"), "{e}");
}

#[test]
fn a_truncated_default_model_is_refused_without_reading_past_its_end() {
    let source = ModelSource::default_model().unwrap();
    let ModelSource::Gguf(path) = source else {
        panic!("the default model is a GGUF file")
    };
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(&path).unwrap();
    // The download stopped at 60 %: inside the tensor data.
    std::fs::write(&cut, &bytes[..bytes.len() * 3 / 5]).unwrap();
    let source = ModelSource::parse(cut.to_str().unwrap()).unwrap();
    let e = llama::load::load(&source, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
}
