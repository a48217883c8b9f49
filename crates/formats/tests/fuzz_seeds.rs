//! The fuzz seeds (cut from real files by fuzz/make_seeds.py) are what they claim to be: the
//! valid ones parse and build, the truncated one is refused with a reason. A fuzzer started
//! from seeds that all fail at the first check would only ever test that check.
//! The seeds cut from the default model (fuzz/seeds-model) are made by `scripts/test.sh` before
//! the tests run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use formats::gguf::{GgufFile, tokenizer};
use formats::intervention_file;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn read(target: &str, name: &str) -> Vec<u8> {
    for dir in ["seeds", "seeds-model"] {
        if let Ok(bytes) = std::fs::read(fuzz_dir().join(dir).join(target).join(name)) {
            return bytes;
        }
    }
    panic!("fuzz seed {target}/{name} is missing: run `.venv/bin/python fuzz/make_seeds.py`");
}

#[test]
fn gguf_reader_seeds() {
    let file = GgufFile::from_bytes(read("gguf_reader", "smollm2_slice.gguf")).unwrap();
    assert_eq!(
        file.get("llama.embedding_length").and_then(|v| v.as_u64()),
        Some(576)
    );
    let names: Vec<&str> = file.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "blk.0.attn_norm.weight",
            "blk.0.attn_k.weight",
            "token_embd.weight"
        ]
    );
    for t in &file.tensors {
        let v = file.dequantize(t).unwrap();
        assert_eq!(v.len(), t.n_elements());
        assert!(v.iter().all(|x| x.is_finite()));
    }
    let file = GgufFile::from_bytes(read("gguf_reader", "dequant.gguf")).unwrap();
    assert!(file.tensors.len() >= 8, "one tensor per supported type");

    // The real model's first 64 KiB end inside its metadata: a truncated file.
    let err = GgufFile::from_bytes(read("gguf_reader", "smollm2_head64k.gguf"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid GGUF file"), "{err}");
}

#[test]
fn gguf_tokenizer_seeds_build_working_tokenizers() {
    for name in [
        "smollm2_first600.gguf",
        "smollm2_first600_llama3.gguf",
        "tiny.gguf",
    ] {
        let file = GgufFile::from_bytes(read("gguf_tokenizer", name)).unwrap();
        let (tok, _) = tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let enc = tok.encode("the city of paris", false).unwrap();
        assert!(!enc.get_ids().is_empty(), "{name}");
        assert_eq!(
            tok.decode(enc.get_ids(), false).unwrap(),
            "the city of paris",
            "{name}"
        );
    }
}

#[test]
fn intervention_file_seeds_parse() {
    for name in ["rotated.safetensors", "checkpoint_exp.safetensors"] {
        let file = intervention_file::parse(&read("intervention_file", name)).unwrap();
        assert!(!file.tensors.is_empty(), "{name}");
        serde_json::from_str::<serde_json::Value>(&file.metadata_json).unwrap();
    }
}
