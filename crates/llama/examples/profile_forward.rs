//! Times the parts of one forward pass (a development aid):
//! `cargo run --release -p llama --example profile_forward -- [MODEL]` (default: the default
//! model; a name such as `gemma3-270m`, a GGUF file or a Hugging Face directory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use burn::tensor::Device;
use llama::{ModelSource, TokenBatch};

fn main() {
    let device = Device::flex();
    let spec = std::env::args().nth(1).unwrap_or_else(|| "default".into());
    let loaded = llama::load::load(&ModelSource::parse(&spec).unwrap(), &device).unwrap();
    let ids = loaded
        .tokenizer
        .encode("The city of Paris is in the country of")
        .unwrap();
    let batch = TokenBatch::new(std::slice::from_ref(&ids), 0, &device);
    let model = &loaded.model;
    let sync = |t: &burn::tensor::Tensor<3>| {
        let _ = t.clone().narrow(2, 0, 1).into_data();
    };
    for round in 0..30 {
        let t0 = Instant::now();
        let ctx = model.context(&batch);
        let mut h = model.embed(batch.ids.clone());
        sync(&h);
        let t1 = Instant::now();
        let (mut attn_t, mut mlp_t) = (0.0, 0.0);
        for block in &model.blocks {
            let t = Instant::now();
            let a = block.attention_branch(h.clone(), &ctx);
            sync(&a);
            attn_t += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mid = h + a;
            let m = block.mlp_branch(mid.clone());
            h = mid + m;
            sync(&h);
            mlp_t += t.elapsed().as_secs_f64();
        }
        let t2 = Instant::now();
        let logits = model.logits_at(h, ids.len() - 1);
        let _ = logits.into_data();
        let t3 = Instant::now();
        println!(
            "round {round}: ctx+embed {:.1} ms, attention {:.1} ms, mlp {:.1} ms, head {:.1} ms, total {:.1} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            attn_t * 1e3,
            mlp_t * 1e3,
            (t3 - t2).as_secs_f64() * 1e3,
            (t3 - t0).as_secs_f64() * 1e3
        );
    }
}
