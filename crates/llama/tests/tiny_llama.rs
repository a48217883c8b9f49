//! A tiny random Llama saved by transformers (safetensors, tokenizer.json, Llama-3 rope scaling,
//! tied embeddings): every position's logits against transformers'.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use llama::{ModelSource, RopeLayout};

#[test]
fn tiny_llama_matches_transformers_at_every_position() {
    let loaded = common::matches_transformers("tiny-llama", 1e-4);
    let cfg = &loaded.model.config;
    assert!(cfg.tie_word_embeddings && loaded.model.lm_head.is_none());
    assert_eq!(cfg.rope_scaling.as_ref().unwrap().rope_type, "llama3");
    assert_eq!(cfg.rope_layout, RopeLayout::HalfSplit);
}

#[test]
fn llama3_scaling_changes_the_low_frequencies_only() {
    let dir = common::fixtures().join("tiny-llama");
    let cfg = llama::load::read_config(&ModelSource::HfDir(dir)).unwrap();
    let scaled = cfg.inv_freq();
    let mut plain = cfg.clone();
    plain.rope_scaling = None;
    let plain = plain.inv_freq();
    // Hand-computed: theta=1e4, d=16, original context 64, factor 8, low 1, high 4.
    // Wavelength 2*pi/f: below 16 kept, above 64 divided by 8, between smoothly mixed.
    for (s, p) in scaled.iter().zip(&plain) {
        let wavelen = 2.0 * std::f64::consts::PI / p;
        if wavelen < 16.0 {
            assert_eq!(s, p);
        } else if wavelen > 64.0 {
            assert!((s - p / 8.0).abs() < 1e-12);
        } else {
            let smooth = (64.0 / wavelen - 1.0) / 3.0;
            assert!((s - ((1.0 - smooth) * p / 8.0 + smooth * p)).abs() < 1e-12);
        }
    }
    assert!(scaled.iter().zip(&plain).any(|(s, p)| s != p));
}
