//! One forward pass timed as a user runs it for a next-token distribution: the prompt through
//! every block and the LM head at the last token only (transformers' `logits_to_keep=1`), in a
//! fresh process. `bench/forward_peer.py` runs it alternately with PyTorch and prints ratios.
//!
//!     cargo run --release -p llama --example forward_bench -- [MODEL] [REPEATS] [PROMPT]
//!
//! MODEL: `default`, a name (`gemma3-270m`), a GGUF file or a Hugging Face directory. Prints one
//! JSON line: load and forward seconds (median of REPEATS after one warm-up) and the peak
//! resident memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use burn::tensor::Device;
use llama::{ModelSource, TokenBatch};

fn main() {
    let mut args = std::env::args().skip(1);
    let spec = args.next().unwrap_or_else(|| "default".into());
    let repeats: usize = args.next().map_or(20, |r| r.parse().expect("REPEATS is a number"));
    let prompt = args
        .next()
        .unwrap_or_else(|| "The city of Paris is in the country of".into());
    let device = Device::flex();
    let t = Instant::now();
    let loaded = llama::load::load(&ModelSource::parse(&spec).unwrap(), &device).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let ids = loaded.tokenizer.encode(&prompt).unwrap();
    let model = &loaded.model;
    let forward = || {
        let batch = TokenBatch::new(std::slice::from_ref(&ids), 0, &device);
        let ctx = model.context(&batch);
        let mut h = model.embed(batch.ids.clone());
        for block in &model.blocks {
            h = block.forward(h, &ctx);
        }
        model.logits_at(h, ids.len() - 1).into_data()
    };
    forward();
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            forward();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let peak_kib: u64 = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    println!(
        "{{\"model\": {:?}, \"tokens\": {}, \"weights\": {:?}, \"load_s\": {load_s:.4}, \"forward_s\": {:.5}, \"peak_rss_mib\": {:.0}}}",
        loaded.source.name(),
        ids.len(),
        model.weight_storage(),
        times[times.len() / 2],
        peak_kib as f64 / 1024.0
    );
}
