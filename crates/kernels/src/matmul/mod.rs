//! Products with a packed matrix ([`PackedRows`]: GGUF blocks or bf16) that widen each block of
//! 32 weights to `f32` in registers, right where it is used: the weights are streamed at one or
//! two bytes each instead of four, which is what limits a forward of a few tokens on a CPU (each
//! weight is used once per token). The bodies are generic over the storage; only the widening of
//! a block differs.
//!
//! Two products, both over `m` token rows:
//! - [`matmul_wt`]: `y = x · Wᵀ` (a linear layer's forward; `W` is `[out, in]`);
//! - [`matmul_w`]: `y = g · W` (its input gradient).
//!
//! Tokens are taken up to 16 at a time so that their accumulators stay in registers while one
//! dequantised block is reused for all of them. The bodies are written once, portable, and
//! compiled three times: for AVX-512, for AVX2 + FMA, and without either ([`Kernels`]); the
//! widest one the CPU has is picked at run time. The AVX-512 forward is written with intrinsics
//! instead (`avx512.rs`): the compiler spilled the portable body's accumulators.
//! Rows are shared between threads with rayon, for products large enough to pay for it. From
//! 32 token rows (forward) and 96 (input gradient), with AVX-512, the products go to
//! `gemm_avx512.rs` instead, where arithmetic rather than the weights' bytes bounds them; with
//! [`Kernels::Amx`], from 6 rows, to the AMX tiles (`amx.rs`). Which path a product takes is
//! decided in one place, `Path::of`.
//!
//! Results do not depend on timing: each output is summed by one task in a fixed order, and the
//! per-thread partial sums of [`matmul_w`] are added in task order, so with the same number of
//! threads a run is reproducible bit for bit (the checkpoint-resume tests rely on it).

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod gemm_avx512;
mod portable;
mod select;
#[cfg(target_arch = "x86_64")]
mod shared;

use rayon::prelude::*;

use crate::packed::PackedRows;
pub use select::Kernels;

/// Which of the two products a call computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Product {
    /// `x · Wᵀ`.
    Forward,
    /// `g · W`.
    InputGradient,
}

/// Where a product runs: the one place that decides it, for both products.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Intel's AMX tiles in bf16 ([`Kernels::Amx`], from [`Kernels::AMX_MIN_ROWS`] rows).
    #[cfg(target_arch = "x86_64")]
    Amx,
    /// The AVX-512 GEMM, where arithmetic bounds the product (many token rows).
    #[cfg(target_arch = "x86_64")]
    Gemm,
    /// The dot-product tiles ([`avx512`], or the [`portable`] bodies), where the weights'
    /// bytes bound it (a few token rows).
    Tiles,
}

impl Path {
    /// The path for `m` token rows with body `level` (refused where this CPU cannot run it:
    /// its target features would be undefined behaviour).
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn of(level: Kernels, product: Product, m: usize, w: &impl PackedRows) -> Path {
        level.assert_runs_here();
        #[cfg(target_arch = "x86_64")]
        {
            if level == Kernels::Amx && m >= Kernels::AMX_MIN_ROWS {
                return Path::Amx;
            }
            let (forward_rows, gradient_rows) = gemm_avx512::min_rows();
            let gemm = match product {
                // The bf16 dot-product body multiplies bf16 matrices itself at every size.
                Product::Forward => {
                    m >= forward_rows && !(level == Kernels::Avx512Bf16 && w.bf16_row(0).is_some())
                }
                Product::InputGradient => m >= gradient_rows,
            };
            if level.is_avx512() && gemm {
                return Path::Gemm;
            }
        }
        Path::Tiles
    }
}

/// Whether a product is large enough to pay for waking other threads (a DAS step makes
/// hundreds of products, most of them small). Called from a thread of the pool, as subspace
/// calls them (its `pool::on_pool`), the other threads wake in a few microseconds: from 2²¹ to
/// 2¹⁹ multiply-adds (a 576 × 576 projection of two token rows), the tutorial's DAS step went
/// 0.041–0.043 → 0.035–0.038 s (`subspace bench`, three rounds alternating); 2¹⁸ gained no more.
fn worth_splitting(m: usize, w: &impl PackedRows) -> bool {
    m * w.rows() * w.cols() >= 1 << 19
}

/// `y = x · Wᵀ`: `x` is `[m, cols]` row-major, the result `[m, rows]`.
pub fn matmul_wt(x: &[f32], m: usize, w: &impl PackedRows) -> Vec<f32> {
    matmul_wt_with(Kernels::best(), x, m, w)
}

/// [`matmul_wt`] with a chosen body (one of [`Kernels::available`]).
pub fn matmul_wt_with(level: Kernels, x: &[f32], m: usize, w: &impl PackedRows) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    assert_eq!(x.len(), m * k, "x must be [m, {k}]");
    match Path::of(level, Product::Forward, m, w) {
        // SAFETY: `Path::of` checked that the CPU has AMX and this process its state.
        #[cfg(target_arch = "x86_64")]
        Path::Amx => return unsafe { amx::matmul_wt(x, m, w) },
        // SAFETY: `Path::of` checked that the CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Path::Gemm => return unsafe { gemm_avx512::matmul_wt(x, m, w) },
        Path::Tiles => {}
    }
    // Parallel tasks own contiguous pieces of `yᵀ` (`[n, m]`), transposed into `y` at the end.
    let threads = rayon::current_num_threads().max(1);
    let per_task = n.div_ceil(4 * threads).clamp(16, 256).next_multiple_of(4);
    // The bf16 dot product takes the activations in bf16: rounded once, shared by all tasks.
    let x_bf16 = (level == Kernels::Avx512Bf16 && w.bf16_row(0).is_some()).then(|| {
        x.iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect::<Vec<u16>>()
    });
    let x = Activations {
        f32: x,
        bf16: x_bf16.as_deref(),
    };
    let mut yt = vec![0f32; n * m];
    if worth_splitting(m, w) {
        yt.par_chunks_mut(per_task * m)
            .enumerate()
            .for_each(|(task, out)| xwt_rows_all_tokens(level, &x, m, w, task * per_task, out));
    } else {
        xwt_rows_all_tokens(level, &x, m, w, 0, &mut yt);
    }
    let mut y = vec![0f32; m * n];
    for (r, y_r) in yt.chunks_exact(m).enumerate() {
        for (t, &v) in y_r.iter().enumerate() {
            y[t * n + r] = v;
        }
    }
    y
}

/// The `[m, cols]` input of a forward product, and its bf16 rounding where the kernel wants it.
struct Activations<'a> {
    f32: &'a [f32],
    bf16: Option<&'a [u16]>,
}

/// `out[i · m + t] = Σ_c x[t][c] · w[first_row + i][c]` for all `m` token rows.
fn xwt_rows_all_tokens<W: PackedRows>(
    level: Kernels,
    x: &Activations<'_>,
    m: usize,
    w: &W,
    first_row: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if let (Kernels::Avx512Bf16, Some(x)) = (level, x.bf16) {
        // SAFETY: `Kernels::available()` checked that the CPU has AVX-512F and AVX512-BF16.
        return unsafe { avx512::xwt_bf16_dot(x, m, w, first_row, out) };
    }
    let x = x.f32;
    #[cfg(target_arch = "x86_64")]
    if level.is_avx512() {
        // SAFETY: `Kernels::available()` checked that the CPU has AVX-512F.
        return unsafe { avx512::xwt(x, m, w, first_row, out) };
    }
    let k = w.cols();
    let rows = out.len() / m;
    for tokens in level.token_chunks(m) {
        let t = tokens.len();
        let mut part = vec![0f32; rows * t];
        portable::xwt_task(
            level,
            t,
            &x[tokens.start * k..tokens.end * k],
            w,
            first_row,
            &mut part,
        );
        for (o, p) in out.chunks_exact_mut(m).zip(part.chunks_exact(t)) {
            o[tokens.clone()].copy_from_slice(p);
        }
    }
}

/// `y = g · W`: `g` is `[m, rows]` row-major, the result `[m, cols]`.
pub fn matmul_w(g: &[f32], m: usize, w: &impl PackedRows) -> Vec<f32> {
    matmul_w_with(Kernels::best(), g, m, w)
}

/// [`matmul_w`] with a chosen body (one of [`Kernels::available`]).
pub fn matmul_w_with(level: Kernels, g: &[f32], m: usize, w: &impl PackedRows) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    assert_eq!(g.len(), m * n, "g must be [m, {n}]");
    match Path::of(level, Product::InputGradient, m, w) {
        // SAFETY: `Path::of` checked that the CPU has AMX and this process its state.
        #[cfg(target_arch = "x86_64")]
        Path::Amx => return unsafe { amx::matmul_w(g, m, w) },
        // SAFETY: `Path::of` checked that the CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Path::Gemm => return unsafe { gemm_avx512::matmul_w(g, m, w) },
        Path::Tiles => {}
    }
    let mut y = vec![0f32; m * k];
    // Rows are split between the threads; each sums its share into its own accumulator and
    // the shares are added at the end (the accumulators are small: `m × cols`).
    let tasks = if worth_splitting(m, w) {
        rayon::current_num_threads().clamp(1, n.div_ceil(4).max(1))
    } else {
        1
    };
    let per_task = n.div_ceil(tasks).next_multiple_of(4);
    for tokens in level.token_chunks(m) {
        let t = tokens.len();
        let g_chunk = &g[tokens.start * n..tokens.end * n];
        let y_chunk = &mut y[tokens.start * k..tokens.end * k];
        let partial: Vec<Vec<f32>> = (0..tasks)
            .into_par_iter()
            .map(|task| {
                let rows = (task * per_task).min(n)..((task + 1) * per_task).min(n);
                let mut acc = vec![0f32; t * k];
                portable::gw_task(level, t, g_chunk, n, w, rows, &mut acc);
                acc
            })
            .collect();
        for p in &partial {
            for (yi, &pi) in y_chunk.iter_mut().zip(p) {
                *yi += pi;
            }
        }
    }
    y
}
