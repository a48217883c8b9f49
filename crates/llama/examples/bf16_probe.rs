//! Is a bf16 matmul bound by the weights it streams or by arithmetic? (A development aid for the
//! choice not to use `vdpbf16ps`.) Times the library's bf16 kernel (each row widened to `f32`,
//! then `f32` FMAs: exact products) on Llama-3.2-1B's MLP shape for 1, 9 and 72 token rows, and
//! a prototype of the AVX512-BF16 dot product (`vdpbf16ps`: 32 bf16 pairs per instruction, the
//! activations rounded to bf16 first) on the same matrices.
//!
//!     RAYON_NUM_THREADS=2 cargo run --release -p llama --example bf16_probe
#![allow(clippy::unwrap_used)]
use std::time::Instant;

use llama::quant::{Bf16Matrix, matmul_wt};
use rayon::prelude::*;

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
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            bf16_bits(((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04)
        })
        .collect()
}

/// `y[t][r] = Σ_c x[t][c] · w[r][c]` with `vdpbf16ps`, 4 rows × up to 6 tokens per tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
fn dpbf16_rows(x: &[u16], m: usize, w: &[u16], first_row: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let rows = out.len() / m;
    for r0 in (0..rows).step_by(4) {
        for t0 in (0..m).step_by(6) {
            let nt = (m - t0).min(6);
            let mut acc = [[_mm512_setzero_ps(); 4]; 6];
            for s in (0..COLS).step_by(32) {
                // SAFETY: rows, tokens and `s + 32 <= COLS` are in bounds of `w` and `x`.
                unsafe {
                    let wv: [__m512bh; 4] = std::array::from_fn(|i| {
                        let p = w.as_ptr().add((first_row + r0 + i) * COLS + s);
                        std::mem::transmute(_mm512_loadu_si512(p.cast()))
                    });
                    for (t, acc_t) in acc.iter_mut().enumerate().take(nt) {
                        let p = x.as_ptr().add((t0 + t) * COLS + s);
                        let xv: __m512bh = std::mem::transmute(_mm512_loadu_si512(p.cast()));
                        for (a, &wi) in acc_t.iter_mut().zip(&wv) {
                            *a = _mm512_dpbf16_ps(*a, wi, xv);
                        }
                    }
                }
            }
            for (t, acc_t) in acc.iter().enumerate().take(nt) {
                for (i, &a) in acc_t.iter().enumerate() {
                    out[(r0 + i) * m + t0 + t] = _mm512_reduce_add_ps(a);
                }
            }
        }
    }
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
    let weights: Vec<Vec<u16>> = (0..MATRICES)
        .map(|i| random_bits(ROWS * COLS, i as u64 + 1))
        .collect();
    let matrices: Vec<Bf16Matrix> = weights
        .iter()
        .map(|w| {
            let bytes = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            Bf16Matrix::from_bytes(bytes, ROWS, COLS).unwrap()
        })
        .collect();
    let has_bf16 = cfg!(target_arch = "x86_64") && is_x86_feature_detected!("avx512bf16");
    println!(
        "[{ROWS} x {COLS}] bf16 weights (32 MiB, {MATRICES} distinct), {} threads; avx512bf16: {has_bf16}",
        rayon::current_num_threads()
    );
    println!("tokens | widen + f32 FMA: ms  GB/s  GFLOP/s | vdpbf16ps: ms  GB/s  GFLOP/s | ratio");
    for m in [1usize, 9, 72] {
        let x: Vec<f32> = (0..m * COLS).map(|i| ((i % 97) as f32 - 48.0) * 1e-2).collect();
        let reps = if m > 9 { 16 } else { 64 };
        let exact = time(reps, |i| {
            std::hint::black_box(matmul_wt(&x, m, &matrices[i]));
        });
        let bytes = (ROWS * COLS * 2) as f64;
        let flops = 2.0 * (m * ROWS * COLS) as f64;
        let mut line = format!(
            "{m:6} | {:8.2} {:5.1} {:8.1}",
            exact * 1e3,
            bytes / exact / 1e9,
            flops / exact / 1e9
        );
        #[cfg(target_arch = "x86_64")]
        if has_bf16 {
            let xb: Vec<u16> = x.iter().map(|&v| bf16_bits(v)).collect();
            let per_task = 256;
            let dp = time(reps, |i| {
                let mut out = vec![0f32; ROWS * m];
                out.par_chunks_mut(per_task * m)
                    .enumerate()
                    .for_each(|(task, o)| {
                        // SAFETY: checked above that the CPU has AVX512-BF16.
                        unsafe { dpbf16_rows(&xb, m, &weights[i], task * per_task, o) }
                    });
                std::hint::black_box(out);
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
