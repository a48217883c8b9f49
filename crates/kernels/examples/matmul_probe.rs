//! Throughput of the matmul shapes of a 9-token forward, both orientations (a development aid).
#![allow(clippy::unwrap_used)]
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};

fn bench(name: &str, flops: f64, f: impl Fn() -> Tensor<2>) {
    let _ = f().into_data();
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        let _ = f().into_data();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!("{name}: {:.3} ms, {:.1} GFLOP/s", s * 1e3, flops / s / 1e9);
}

fn main() {
    let device = Device::flex();
    // SHAPE=m,k,n runs one shape only (e.g. 192,576,576: a step of the rotation's series).
    let one: Option<(usize, usize, usize)> = std::env::var("SHAPE").ok().map(|s| {
        let v: Vec<usize> = s.split(',').map(|x| x.parse().unwrap()).collect();
        (v[0], v[1], v[2])
    });
    let all = vec![
        (9, 576, 1536),
        (9, 1536, 576),
        (9, 576, 576),
        (6, 576, 1536),
        (1, 576, 49152),
    ];
    for (m, k, n) in one.map(|s| vec![s]).unwrap_or(all) {
        let x: Tensor<2> = Tensor::random([m, k], Distribution::Normal(0.0, 1.0), &device);
        let w: Tensor<2> = Tensor::random([k, n], Distribution::Normal(0.0, 1.0), &device);
        let w_hf: Tensor<2> = Tensor::random([n, k], Distribution::Normal(0.0, 1.0), &device);
        let flops = 2.0 * (m * k * n) as f64;
        bench(&format!("x[{m},{k}] @ W[{k},{n}]"), flops, || {
            x.clone().matmul(w.clone())
        });
        bench(&format!("(W_hf[{n},{k}] @ xT)T"), flops, || {
            w_hf.clone().matmul(x.clone().transpose()).transpose()
        });
        bench("x @ W_hf^T (view)", flops, || {
            x.clone().matmul(w_hf.clone().transpose())
        });
    }
}
