//! The products' bodies written once in portable Rust, generic over the packed storage (only the
//! widening of a block differs), and compiled three times from this one source: for AVX-512,
//! for AVX2 + FMA, and without either ([`Kernels`]). The AVX-512 forward product is written
//! with intrinsics instead ([`super::avx512`]): the compiler spilled this body's accumulators.

use super::select::Kernels;
use crate::packed::{BLOCK, PackedRow, PackedRows};

/// `a · b + c`, fused where the CPU has FMA (the portable build would call a slow libm `fmaf`).
#[inline(always)]
fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// `out[i · T + t] = Σ_c x[t][c] · w[first_row + i][c]` for `T` token rows of `x` (`[T, k]`).
#[inline(always)]
fn xwt_rows<const T: usize, const FUSED: bool, W: PackedRows>(
    x: &[f32],
    w: &W,
    first_row: usize,
    out: &mut [f32],
) {
    let k = w.cols();
    let nb = k / BLOCK;
    for (i, o) in out.chunks_exact_mut(T).enumerate() {
        let row = w.row(first_row + i);
        let mut acc = [[0f32; 16]; T];
        for b in 0..nb {
            let wb = row.block(b);
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let xb: &[f32; BLOCK] = x[t * k + b * BLOCK..t * k + (b + 1) * BLOCK]
                    .try_into()
                    .unwrap_or(&[0.0; BLOCK]);
                for j in 0..16 {
                    acc_t[j] = madd::<FUSED>(wb[j], xb[j], acc_t[j]);
                    acc_t[j] = madd::<FUSED>(wb[j + 16], xb[j + 16], acc_t[j]);
                }
            }
        }
        for (o_t, acc_t) in o.iter_mut().zip(&acc) {
            *o_t = acc_t.iter().sum();
        }
    }
}

/// Accumulates `acc[t][c] += Σ_{r ∈ rows} g[t][r] · w[r][c]` for `T` token rows (`g` is
/// `[T, n]`, `acc` is `[T, k]`), four weight rows at a time so that each accumulator load
/// serves four multiply-adds.
#[inline(always)]
fn gw_rows<const T: usize, const FUSED: bool, W: PackedRows>(
    g: &[f32],
    n: usize,
    w: &W,
    rows: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    let k = w.cols();
    let nb = k / BLOCK;
    let mut r = rows.start;
    while r + 4 <= rows.end {
        let row = [w.row(r), w.row(r + 1), w.row(r + 2), w.row(r + 3)];
        let mut coef = [[0f32; 4]; T];
        for (t, c) in coef.iter_mut().enumerate() {
            *c = [
                g[t * n + r],
                g[t * n + r + 1],
                g[t * n + r + 2],
                g[t * n + r + 3],
            ];
        }
        for b in 0..nb {
            // Not `row.map(..)`: a closure is compiled without the caller's target features.
            let wb = [
                row[0].block(b),
                row[1].block(b),
                row[2].block(b),
                row[3].block(b),
            ];
            for (t, c) in coef.iter().enumerate() {
                let a: &mut [f32; BLOCK] =
                    match (&mut acc[t * k + b * BLOCK..t * k + (b + 1) * BLOCK]).try_into() {
                        Ok(a) => a,
                        Err(_) => continue,
                    };
                for j in 0..BLOCK {
                    let mut v = a[j];
                    v = madd::<FUSED>(c[0], wb[0][j], v);
                    v = madd::<FUSED>(c[1], wb[1][j], v);
                    v = madd::<FUSED>(c[2], wb[2][j], v);
                    v = madd::<FUSED>(c[3], wb[3][j], v);
                    a[j] = v;
                }
            }
        }
        r += 4;
    }
    for r in r..rows.end {
        let row = w.row(r);
        for b in 0..nb {
            let wb = row.block(b);
            for t in 0..T {
                let c = g[t * n + r];
                let a = &mut acc[t * k + b * BLOCK..t * k + (b + 1) * BLOCK];
                for (aj, &wj) in a.iter_mut().zip(&wb) {
                    *aj = madd::<FUSED>(c, wj, *aj);
                }
            }
        }
    }
}

/// `$body::<T, FUSED>(args)` for a run-time token count `T ≤ 16`.
macro_rules! by_tokens {
    ($body:ident, $fused:literal, $t:expr, ($($arg:expr),*)) => {
        match $t {
            1 => $body::<1, $fused, _>($($arg),*),
            2 => $body::<2, $fused, _>($($arg),*),
            3 => $body::<3, $fused, _>($($arg),*),
            4 => $body::<4, $fused, _>($($arg),*),
            5 => $body::<5, $fused, _>($($arg),*),
            6 => $body::<6, $fused, _>($($arg),*),
            7 => $body::<7, $fused, _>($($arg),*),
            8 => $body::<8, $fused, _>($($arg),*),
            9 => $body::<9, $fused, _>($($arg),*),
            10 => $body::<10, $fused, _>($($arg),*),
            11 => $body::<11, $fused, _>($($arg),*),
            12 => $body::<12, $fused, _>($($arg),*),
            13 => $body::<13, $fused, _>($($arg),*),
            14 => $body::<14, $fused, _>($($arg),*),
            15 => $body::<15, $fused, _>($($arg),*),
            _ => $body::<16, $fused, _>($($arg),*),
        }
    };
}

/// One entry point per SIMD level for a kernel body, and a function that calls the widest one
/// the CPU has.
macro_rules! simd_entries {
    ($vis:vis $entry:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        $vis fn $entry<W: PackedRows>(level: Kernels, t: usize, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512<W: PackedRows>(t: usize, $($arg: $ty),*) {
                by_tokens!($body, true, t, ($($arg),*))
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2<W: PackedRows>(t: usize, $($arg: $ty),*) {
                by_tokens!($body, true, t, ($($arg),*))
            }
            match level {
                // SAFETY: `Kernels::available()` checked that the CPU has these features.
                #[cfg(target_arch = "x86_64")]
                Kernels::Avx512 | Kernels::Avx512Bf16 | Kernels::Amx => unsafe { avx512(t, $($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Kernels::Avx2 => unsafe { avx2(t, $($arg),*) },
                _ => by_tokens!($body, false, t, ($($arg),*)),
            }
        }
    };
}

simd_entries!(pub(super) xwt_task, xwt_rows, (x: &[f32], w: &W, first_row: usize, out: &mut [f32]));
simd_entries!(pub(super) gw_task, gw_rows, (g: &[f32], n: usize, w: &W, rows: std::ops::Range<usize>, acc: &mut [f32]));
