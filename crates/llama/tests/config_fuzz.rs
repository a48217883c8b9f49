//! The mapping from a checkpoint's description (config.json, GGUF metadata) to a model config,
//! fuzzed like the file readers: thousands of mutated configs, each either a clear error or a
//! config whose sizes the model can be built from. Never a panic, never an absurd size accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::catch_unwind;

use llama::LlamaConfig;
use llama::load::gguf::GgufFile;

/// SmolLM2-135M's config.json (the fields transformers writes).
const VALID: &str = r#"{"model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
  "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
  "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
  "max_position_embeddings": 8192, "tie_word_embeddings": true}"#;

const FIELDS: [&str; 10] = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "rms_norm_eps",
    "rope_theta",
    "max_position_embeddings",
];

/// Values that break size arithmetic: zero, one, odd, huge, negative, fractional, wrong type.
fn interesting(i: u64) -> serde_json::Value {
    use serde_json::json;
    let all = [
        json!(0),
        json!(1),
        json!(2),
        json!(3),
        json!(7),
        json!(64),
        json!(100),
        json!(1u64 << 31),
        json!(1u64 << 40),
        json!(u64::MAX),
        json!(-1),
        json!(0.5),
        json!(1e308),
        json!(-0.0),
        json!("576"),
        json!(null),
        json!([]),
    ];
    all[(i as usize) % all.len()].clone()
}

/// A small deterministic generator (SplitMix64), so a failure is reproducible by its index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What an accepted config must satisfy for the model to be built from it without panicking
/// or allocating without bound.
fn assert_buildable(c: &LlamaConfig, case: &str) {
    let heads = c.num_attention_heads;
    let kv = c.n_kv_heads();
    assert!(
        heads > 0 && kv > 0 && heads.is_multiple_of(kv),
        "{case}: heads {heads}/{kv}"
    );
    let hd = c.head_dim();
    assert!(hd > 0 && hd.is_multiple_of(2), "{case}: head_dim {hd}");
    assert!(c.hidden_size > 0 && c.hidden_size <= 1 << 17, "{case}");
    assert!(
        c.num_hidden_layers > 0 && c.num_hidden_layers <= 1 << 12,
        "{case}"
    );
    assert!(c.vocab_size > 0 && c.intermediate_size > 0, "{case}");
    assert!(c.max_position_embeddings > 0, "{case}");
    assert!(c.rms_norm_eps.is_finite() && c.rms_norm_eps > 0.0, "{case}");
    assert!(c.rope_theta.is_finite() && c.rope_theta > 0.0, "{case}");
    if c.head_dim.is_none() {
        assert_eq!(c.hidden_size % heads, 0, "{case}");
    }
    assert!(c.inv_freq().iter().all(|f| f.is_finite()), "{case}");
}

/// One mapped case: a panic fails the test, an accepted config must be buildable, a refusal
/// must say something.
fn tally(
    mapped: std::thread::Result<llama::Result<LlamaConfig>>,
    label: &str,
    accepted: &mut usize,
    refused: &mut usize,
) {
    match mapped {
        Err(_) => panic!("{label}: panicked"),
        Ok(Ok(c)) => {
            assert_buildable(&c, label);
            *accepted += 1;
        }
        Ok(Err(e)) => {
            assert!(!e.to_string().is_empty(), "{label}");
            *refused += 1;
        }
    }
}

#[test]
fn mutated_config_json_is_an_error_or_a_buildable_config() {
    let valid: serde_json::Value = serde_json::from_str(VALID).unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..20_000u64 {
        let mut v = valid.clone();
        let mut r = mix(case);
        // One to three fields replaced or removed.
        for _ in 0..=(r % 3) {
            r = mix(r);
            let field = FIELDS[(r % FIELDS.len() as u64) as usize];
            r = mix(r);
            if r.is_multiple_of(11) {
                v.as_object_mut().unwrap().remove(field);
            } else {
                v[field] = interesting(r >> 8);
            }
        }
        let text = v.to_string();
        let label = format!("case {case}: {text}");
        let mapped = catch_unwind(|| LlamaConfig::from_json(&text));
        tally(mapped, &label, &mut accepted, &mut refused);
    }
    // Both outcomes are exercised (a generator that only ever breaks configs tests little).
    assert!(
        accepted > 500 && refused > 5000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn absurd_sizes_are_named_in_the_error() {
    let with = |field: &str, value: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_str(VALID).unwrap();
        v[field] = value;
        LlamaConfig::from_json(&v.to_string())
            .unwrap_err()
            .to_string()
    };
    let e = with("num_attention_heads", 0.into());
    assert!(e.contains("heads must be positive"), "{e}");
    let e = with("num_attention_heads", 7.into());
    assert!(e.contains("576") && e.contains("7 attention heads"), "{e}");
    let e = with("num_hidden_layers", (1u64 << 40).into());
    assert!(
        e.contains("num_hidden_layers") && e.contains("1099511627776"),
        "{e}"
    );
    let e = with("rms_norm_eps", 0.into());
    assert!(e.contains("rms_norm_eps"), "{e}");
    let e = with("max_position_embeddings", 0.into());
    assert!(e.contains("max_position_embeddings"), "{e}");
}

/// A GGUF v3 file written by hand with `llama.*` metadata (u64 values) and no tensors.
fn gguf_with_metadata(entries: &[(&str, u64)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&(entries.len() as u64 + 1).to_le_bytes());
    let key = |b: &mut Vec<u8>, k: &str| {
        b.extend_from_slice(&(k.len() as u64).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
    };
    key(&mut b, "general.architecture");
    b.extend_from_slice(&8u32.to_le_bytes()); // string
    b.extend_from_slice(&5u64.to_le_bytes());
    b.extend_from_slice(b"llama");
    for (k, v) in entries {
        key(&mut b, k);
        b.extend_from_slice(&10u32.to_le_bytes()); // u64
        b.extend_from_slice(&v.to_le_bytes());
    }
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b
}

#[test]
fn mutated_gguf_metadata_is_an_error_or_a_buildable_config() {
    let valid: [(&str, u64); 8] = [
        ("llama.vocab_size", 49152),
        ("llama.embedding_length", 576),
        ("llama.feed_forward_length", 1536),
        ("llama.block_count", 30),
        ("llama.attention.head_count", 9),
        ("llama.attention.head_count_kv", 3),
        ("llama.rope.dimension_count", 64),
        ("llama.context_length", 8192),
    ];
    let values = [0u64, 1, 2, 3, 5, 64, 100, 1 << 31, 1 << 40, u64::MAX];
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..5_000u64 {
        let mut entries: Vec<(&str, u64)> = valid.to_vec();
        let mut r = mix(case ^ 0xABCD);
        for _ in 0..=(r % 3) {
            r = mix(r);
            let i = (r % entries.len() as u64) as usize;
            r = mix(r);
            if r.is_multiple_of(7) {
                entries.remove(i);
            } else {
                entries[i].1 = values[(r >> 8) as usize % values.len()];
            }
        }
        let label = format!("case {case}: {entries:?}");
        let bytes = gguf_with_metadata(&entries);
        let result = catch_unwind(|| {
            let file = GgufFile::from_bytes(bytes).unwrap();
            llama::load::gguf::config(&file)
        });
        tally(result, &label, &mut accepted, &mut refused);
    }
    assert!(
        accepted > 100 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
}
