//! One forward pass timed as a user runs it for a next-token distribution (`lm.predict`: the
//! prompt through every block, the LM head at the last token only, as transformers'
//! `logits_to_keep=1`, and its softmax), in a fresh process. `bench/forward_peer.py` runs it
//! alternately with PyTorch and prints ratios.
//!
//!     cargo run --release -p subspace --example forward_bench -- [MODEL] [REPEATS] [PROMPT]
//!
//! MODEL: `default`, a name (`gemma3-270m`), a GGUF file or a Hugging Face directory. Prints one
//! JSON line: load and forward seconds (median of REPEATS after one warm-up) and the peak
//! resident memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use subspace::LanguageModel;

fn main() {
    let mut args = std::env::args().skip(1);
    let spec = args.next().unwrap_or_else(|| "default".into());
    let repeats: usize = args
        .next()
        .map_or(20, |r| r.parse().expect("REPEATS is a number"));
    let prompt = args
        .next()
        .unwrap_or_else(|| "The city of Paris is in the country of".into());
    let t = Instant::now();
    let lm = LanguageModel::load(&spec).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let prompt = lm.prompt(&prompt).unwrap();
    let forward = || lm.predict(&prompt).unwrap();
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
        lm.name,
        prompt.len(),
        lm.model.weight_storage(),
        times[times.len() / 2],
        peak_kib as f64 / 1024.0
    );
}
