//! Hub ids, offline: a checkpoint in the Hugging Face cache layout loads by its id with
//! `HF_HUB_OFFLINE=1`, and a missing one gives an error that says what to do (hf-hub itself
//! ignores the variable). One test function: it sets process-wide environment variables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::tensor::Device;
use llama::{ModelSource, TokenBatch};

#[test]
fn hub_ids_load_from_the_cache_offline_and_missing_ones_say_why() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--test-org--tiny-llama");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    let fixture = common::fixtures().join("tiny-llama");
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), snapshot.join(f)).unwrap();
    }
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("HF_HOME", home.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }

    let source = ModelSource::parse("test-org/tiny-llama").unwrap();
    assert_eq!(source, ModelSource::Hub("test-org/tiny-llama".into()));
    let device = Device::flex();
    let hub = llama::load::load(&source, &device).unwrap();
    let dir = llama::load::load(&ModelSource::HfDir(fixture), &device).unwrap();
    let ids = dir.tokenizer.encode("the quick brown fox").unwrap();
    assert_eq!(hub.tokenizer.encode("the quick brown fox").unwrap(), ids);
    let run = |l: &llama::Loaded| {
        common::to_vec(
            l.model
                .forward(&TokenBatch::new(std::slice::from_ref(&ids), 0, &device)),
        )
    };
    assert_eq!(run(&hub), run(&dir));

    let err = llama::load::load(&ModelSource::Hub("meta-llama/Llama-3.2-1B".into()), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("meta-llama/Llama-3.2-1B")
            && err.contains("HF_HUB_OFFLINE")
            && err.contains("config.json"),
        "{err}"
    );
}
