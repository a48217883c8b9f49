//! The machine's ceilings, measured where the kernels run, so that a timing can be set against
//! the floor this machine allows rather than an assumed one: the peak rate of fused
//! multiply-adds in `f32` (every core busy, the widest vectors the CPU has), the peak rate of
//! bf16 dot products where the CPU has them (`vdpbf16ps`, what the opt-in bf16 kernels run), and
//! the rate at which the cores together read memory that is not in any cache.

use std::time::Instant;

/// The measured ceilings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roofline {
    /// Peak `f32` arithmetic, GFLOP/s (a fused multiply-add counts 2).
    pub peak_gflops: f64,
    /// Peak bf16 dot-product arithmetic, GFLOP/s (`vdpbf16ps`: 32 bf16 products summed into
    /// 16 `f32` lanes an instruction, each product-and-add counting 2), where the CPU has
    /// AVX512-BF16; `None` elsewhere.
    pub peak_bf16_gflops: Option<f64>,
    /// Reading a buffer far larger than the caches, GB/s.
    pub read_gbs: f64,
    /// Threads used for both.
    pub threads: usize,
    /// The vector width the peak was measured with: "avx512", "avx2" or "scalar".
    pub isa: &'static str,
}

impl Roofline {
    /// Measures both ceilings with `threads` threads (about a second in all); the best of three
    /// runs of each.
    pub fn measure(threads: usize) -> Roofline {
        let threads = threads.max(1);
        let (isa, flops) = best_of(3, || fma_run(threads));
        let bf16 = bf16_available().then(|| best_of(3, || ("avx512bf16", bf16_run(threads))).1);
        // Filled with a pattern (not zeros) so that its pages are really there before timing.
        let data: Vec<u64> = (0..(READ_BYTES / 8) as u64)
            .map(|i| i.wrapping_mul(0x9e37))
            .collect();
        let (_, gbs) = best_of(3, || ("", read_run(&data, threads)));
        Roofline {
            peak_gflops: flops,
            peak_bf16_gflops: bf16,
            read_gbs: gbs,
            threads,
            isa,
        }
    }
}

fn best_of(n: usize, mut f: impl FnMut() -> (&'static str, f64)) -> (&'static str, f64) {
    (0..n)
        .map(|_| f())
        .fold(("scalar", 0.0), |a, b| if b.1 > a.1 { b } else { a })
}

/// Fused multiply-adds per thread in one measurement.
const FMA_ITERS: u64 = 40_000_000;

/// GFLOP/s of `threads` threads each running independent chains of fused multiply-adds.
fn fma_run(threads: usize) -> (&'static str, f64) {
    let start = Instant::now();
    let results: Vec<(&'static str, u64, f32)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || fma_chains(t as f32)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(("scalar", 0, 0.0)))
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let flops: u64 = results.iter().map(|r| r.1).sum();
    // The sums are used, so the loops cannot be optimised away.
    let isa = results.first().map_or("scalar", |r| r.0);
    std::hint::black_box(results.iter().map(|r| r.2).sum::<f32>());
    (isa, flops as f64 / seconds / 1e9)
}

/// Whether this CPU runs `vdpbf16ps`.
fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// GFLOP/s of `threads` threads each running independent chains of bf16 dot products (only
/// called where [`bf16_available`]).
fn bf16_run(threads: usize) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let start = Instant::now();
        let sums: Vec<f32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    // SAFETY: the caller checked AVX-512F and AVX512-BF16 (`bf16_available`).
                    s.spawn(move || unsafe { x86::dpbf16_avx512(t as f32, FMA_ITERS) })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0.0))
                .collect()
        });
        let seconds = start.elapsed().as_secs_f64();
        std::hint::black_box(sums.iter().sum::<f32>());
        let flops = threads as u64 * FMA_ITERS * x86::CHAINS as u64 * 32 * 2;
        flops as f64 / seconds / 1e9
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = threads;
        0.0
    }
}

/// One thread's chains: returns the ISA used, the flops done, and a value depending on them.
fn fma_chains(seed: f32) -> (&'static str, u64, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU reports AVX-512F.
            let v = unsafe { x86::fma_avx512(seed, FMA_ITERS) };
            return ("avx512", FMA_ITERS * x86::CHAINS as u64 * 16 * 2, v);
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU reports AVX2 and FMA.
            let v = unsafe { x86::fma_avx2(seed, FMA_ITERS) };
            return ("avx2", FMA_ITERS * x86::CHAINS as u64 * 8 * 2, v);
        }
    }
    let iters = FMA_ITERS / 8;
    let mut acc = [seed; 8];
    for _ in 0..iters {
        for a in &mut acc {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    ("scalar", iters * 8 * 2, acc.iter().sum())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Independent accumulator chains: enough to hide the FMA latency on two FMA ports.
    pub const CHAINS: usize = 12;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_avx512(seed: f32, iters: u64) -> f32 {
        let mul = _mm512_set1_ps(0.999_999);
        let add = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(seed); CHAINS];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, mul, add);
            }
        }
        let mut total = _mm512_setzero_ps();
        for a in acc {
            total = _mm512_add_ps(total, a);
        }
        _mm512_reduce_add_ps(total)
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn dpbf16_avx512(seed: f32, iters: u64) -> f32 {
        let ones = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5), _mm512_set1_ps(0.5));
        let mut acc = [_mm512_set1_ps(seed); CHAINS];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm512_dpbf16_ps(*a, ones, ones);
            }
        }
        let mut total = _mm512_setzero_ps();
        for a in acc {
            total = _mm512_add_ps(total, a);
        }
        _mm512_reduce_add_ps(total)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_avx2(seed: f32, iters: u64) -> f32 {
        let mul = _mm256_set1_ps(0.999_999);
        let add = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(seed); CHAINS];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, mul, add);
            }
        }
        let mut lanes = [0f32; 8];
        let mut total = _mm256_setzero_ps();
        for a in acc {
            total = _mm256_add_ps(total, a);
        }
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
        lanes.iter().sum()
    }
}

/// Bytes read per measurement: far beyond any cache.
const READ_BYTES: usize = 1 << 30;

/// GB/s of `threads` threads each summing its share of `data` (1 GiB) once.
fn read_run(data: &[u64], threads: usize) -> f64 {
    let words = data.len();
    let share = words.div_ceil(threads).max(1);
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = data
            .chunks(share)
            .map(|part| {
                s.spawn(move || {
                    // Eight independent sums: the loop is bound by loads, not by an add chain.
                    let mut acc = [0u64; 8];
                    for c in part.chunks_exact(8) {
                        for (a, v) in acc.iter_mut().zip(c) {
                            *a = a.wrapping_add(*v);
                        }
                    }
                    acc.iter().fold(0u64, |x, y| x.wrapping_add(*y))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .fold(0u64, u64::wrapping_add)
    });
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(total);
    (words * 8) as f64 / seconds / 1e9
}
