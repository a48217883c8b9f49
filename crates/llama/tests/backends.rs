//! LibTorch (CPU) against the default flex backend: same weights, same top-10 (`--features tch`).
#![cfg(feature = "tch")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use llama::{Backend, TokenBatch};

#[test]
fn libtorch_cpu_agrees_with_flex() {
    let prompts = [
        "The city of Paris is in the country of",
        "The city of Rio is in the country of",
        "The city of Paris is a city whose main language is",
    ];
    let flex = common::smollm(&Backend::Flex.device().unwrap());
    let tch = common::smollm(&Backend::LibTorchCpu.device().unwrap());
    for p in prompts {
        let ids = flex.tokenizer.encode(p).unwrap();
        let last = |loaded: &llama::Loaded| {
            let device = loaded.model.device();
            let batch = TokenBatch::new(&[ids.clone()], 0, &device);
            let logits = loaded.model.forward(&batch);
            let [_, s, v] = logits.dims();
            common::to_vec(logits.narrow(1, s - 1, 1).reshape([v]))
        };
        let (a, b) = (last(&flex), last(&tch));
        assert_eq!(common::top_k(&a, 10), common::top_k(&b, 10), "{p:?}");
        let diff = common::max_abs_diff(&a, &b);
        assert!(diff < 2e-3, "{p:?}: max |diff| {diff}");
    }
}
