//! The tokenizer built from GGUF metadata against transformers' tokenizer for the same file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::tensor::Device;
use serde_json::Value;

#[test]
fn token_ids_match_transformers() {
    let loaded = common::smollm(&Device::flex());
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("smollm2_tokens.json")).unwrap(),
    )
    .unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(loaded.tokenizer.encode(text).unwrap(), want, "{text:?}");
    }
}

#[test]
fn decoding_and_single_tokens() {
    let tok = common::smollm(&Device::flex()).tokenizer;
    let ids = tok
        .encode("The city of Paris is in the country of")
        .unwrap();
    assert_eq!(tok.pieces(&ids)[3], " Paris");
    let brazil = tok.single_token(" Brazil").unwrap();
    assert_eq!(tok.decode_one(brazil), " Brazil");
    let err = tok.single_token(" Ouagadougou").unwrap_err().to_string();
    assert!(err.contains("tokens") && err.contains("one token"), "{err}");
}
