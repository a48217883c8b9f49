//! Quantised-weight products against burn's `f32` matmul on the shapes of a forward and of a
//! DAS step, with weights cold in cache as in a real forward (a development aid).
#![allow(clippy::unwrap_used)]
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use formats::gguf::GgmlType;
use kernels::{PackedRows, QuantMatrix, matmul_w, matmul_wt};

fn random_q4_1(rows: usize, cols: usize, seed: u64) -> QuantMatrix {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    let mut bytes = Vec::new();
    for _ in 0..rows * cols / 32 {
        bytes.extend_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        bytes.extend_from_slice(&half::f16::from_f32(-0.05).to_le_bytes());
        for _ in 0..16 {
            bytes.push(next() as u8);
        }
    }
    QuantMatrix::from_gguf(GgmlType::Q4_1, &bytes, rows, cols).unwrap()
}

fn main() {
    // As the library calls them (subspace's `pool::on_pool`): from a thread of rayon's pool, which
    // then takes part in each product. OUTSIDE_POOL=1: from the main thread, which hands each
    // product to the pool and sleeps until it is done.
    if std::env::var("OUTSIDE_POOL").is_ok_and(|v| v == "1") {
        probe();
    } else {
        rayon::scope(|_| probe());
    }
}

fn probe() {
    let device = Device::flex();
    // One copy per layer, so that each call finds its weights out of cache (COPIES=1: warm).
    let copies: usize = std::env::var("COPIES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(30);
    // SHAPE=m,k,n runs one shape only.
    let one: Option<(usize, usize, usize)> = std::env::var("SHAPE").ok().map(|s| {
        let v: Vec<usize> = s.split(',').map(|x| x.parse().unwrap()).collect();
        (v[0], v[1], v[2])
    });
    let all = [
        (9, 576, 1536),
        (9, 1536, 576),
        (6, 576, 576),
        (32, 576, 1536),
        (64, 576, 1536),
        (64, 1536, 576),
        (160, 576, 576),
        (512, 576, 1536),
        (1, 576, 49152),
    ];
    let shapes: Vec<(usize, usize, usize)> = one.map(|s| vec![s]).unwrap_or(all.to_vec());
    for (m, k, n) in shapes {
        let ws: Vec<QuantMatrix> = (0..copies).map(|i| random_q4_1(n, k, i as u64)).collect();
        let dense: Vec<Tensor<2>> = ws
            .iter()
            .map(|w| {
                Tensor::<2>::from_data(TensorData::new(w.dequantize(), [n, k]), &device)
                    .transpose()
                    .into_data()
            })
            .map(|d| Tensor::from_data(d, &device))
            .collect();
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let g: Vec<f32> = (0..m * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), &device);
        let flops = 2.0 * (m * k * n) as f64 * copies as f64;
        // The fastest of 7 runs after a warm-up: the least disturbed by the rest of the machine.
        let time = |f: &dyn Fn()| {
            f();
            (0..7)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let q = time(&|| {
            for w in &ws {
                std::hint::black_box(matmul_wt(&x, m, w));
            }
        });
        let qb = time(&|| {
            for w in &ws {
                std::hint::black_box(matmul_w(&g, m, w));
            }
        });
        let d = time(&|| {
            for w in &dense {
                std::hint::black_box(xt.clone().matmul(w.clone()).into_data());
            }
        });
        println!(
            "[{m}x{k}]·[{k}x{n}] x{copies}: quant fwd {:.2} ms ({:.1} GFLOP/s), quant bwd {:.2} ms ({:.1}), f32 burn {:.2} ms ({:.1})",
            q * 1e3,
            flops / q / 1e9,
            qb * 1e3,
            flops / qb / 1e9,
            d * 1e3,
            flops / d / 1e9
        );
        // Agreement with the f32 product.
        let yq = matmul_wt(&x, m, &ws[0]);
        let yd: Vec<f32> = xt
            .clone()
            .matmul(dense[0].clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let err = yq
            .iter()
            .zip(&yd)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("  max |quant - f32| = {err:.2e}");
        // The widening alone (one thread, weights in cache): what the forward pays per tile.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let widen = time(&|| {
                let mut out = vec![0f32; k];
                for _ in 0..copies {
                    for r in 0..n {
                        // SAFETY: the CPU has AVX-512F (checked above).
                        unsafe { ws[0].dequantize_row_runs_avx512(r, &mut out, 16) };
                        std::hint::black_box(&out);
                    }
                }
            });
            println!(
                "  widening {n} rows x{copies} on one thread: {:.2} ms ({:.2} Gweights/s)",
                widen * 1e3,
                (n * k * copies) as f64 / widen / 1e9
            );
        }
    }
}
