//! Is a bf16 matmul bound by the weights it streams or by arithmetic? (A development aid for the
//! choice not to use `vdpbf16ps`.) Times the library's bf16 kernel (each row widened to `f32`,
//! then `f32` FMAs: exact products) on Llama-3.2-1B's MLP shape for 1, 9 and 72 token rows,
//! against its AVX512-BF16 body (`vdpbf16ps`: 32 bf16 pairs per instruction, the activations
//! rounded to bf16 first) on the same matrices.
//!
//!     RAYON_NUM_THREADS=2 cargo run --release -p kernels --example bf16_probe
#![allow(clippy::unwrap_used)]
use std::time::Instant;

use kernels::{Bf16Matrix, Kernels, matmul_wt_with};

const ROWS: usize = 8192;
const COLS: usize = 2048;
/// Distinct matrices (32 MiB each), so that the weights come from memory, not the cache.
const MATRICES: usize = 8;

fn bf16_bits(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

fn random_bits(n: usize, seed: u64) -> Vec<u16> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            bf16_bits(((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04)
        })
        .collect()
}

fn time(reps: usize, mut f: impl FnMut(usize)) -> f64 {
    f(0);
    let t = Instant::now();
    for i in 0..reps {
        f(i % MATRICES);
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    let matrices: Vec<Bf16Matrix> = (0..MATRICES)
        .map(|i| {
            let bits = random_bits(ROWS * COLS, i as u64 + 1);
            let bytes = bits.iter().flat_map(|v| v.to_le_bytes()).collect();
            Bf16Matrix::from_bytes(bytes, ROWS, COLS).unwrap()
        })
        .collect();
    let has_bf16 = Kernels::available().contains(&Kernels::Avx512Bf16);
    println!(
        "[{ROWS} x {COLS}] bf16 weights (32 MiB, {MATRICES} distinct), {} threads; avx512bf16: {has_bf16}",
        rayon::current_num_threads()
    );
    println!("tokens | widen + f32 FMA: ms  GB/s  GFLOP/s | vdpbf16ps: ms  GB/s  GFLOP/s | ratio");
    for m in [1usize, 9, 72] {
        let x: Vec<f32> = (0..m * COLS)
            .map(|i| ((i % 97) as f32 - 48.0) * 1e-2)
            .collect();
        let reps = if m > 9 { 16 } else { 64 };
        let exact = time(reps, |i| {
            std::hint::black_box(matmul_wt_with(Kernels::best(), &x, m, &matrices[i]));
        });
        let bytes = (ROWS * COLS * 2) as f64;
        let flops = 2.0 * (m * ROWS * COLS) as f64;
        let mut line = format!(
            "{m:6} | {:8.2} {:5.1} {:8.1}",
            exact * 1e3,
            bytes / exact / 1e9,
            flops / exact / 1e9
        );
        if has_bf16 {
            let dp = time(reps, |i| {
                std::hint::black_box(matmul_wt_with(Kernels::Avx512Bf16, &x, m, &matrices[i]));
            });
            line += &format!(
                " | {:8.2} {:5.1} {:8.1} | {:.2}x",
                dp * 1e3,
                bytes / dp / 1e9,
                flops / dp / 1e9,
                dp / exact
            );
        }
        println!("{line}");
    }
}
