//! The forward product with AVX-512 intrinsics, written as a small GEMM: a tile of 4 weight
//! rows is dequantised once into an `f32` buffer that stays in L1, then multiplied with up to 6
//! token rows at a time, keeping the 4 × 6 accumulators in registers (24 of 32). The portable
//! body leaves the accumulators to the compiler, which spills them.

use std::arch::x86_64::*;

use crate::packed::PackedRows;

const ROWS: usize = 4;
const TOKENS: usize = 6;

/// `out[i · m + t] = Σ_c x[t][c] · w[first_row + i][c]`.
#[target_feature(enable = "avx512f")]
pub(super) fn xwt<W: PackedRows>(x: &[f32], m: usize, w: &W, first_row: usize, out: &mut [f32]) {
    let k = w.cols();
    let rows = out.len() / m;
    assert!(x.len() >= m * k && first_row + rows <= w.rows() && k.is_multiple_of(16));
    let mut wbuf = vec![0f32; ROWS * k];
    let chunks = m.div_ceil(TOKENS);
    for r0 in (0..rows).step_by(ROWS) {
        let nr = (rows - r0).min(ROWS);
        for (i, buf) in wbuf.chunks_exact_mut(k).enumerate().take(nr) {
            // SAFETY: this function runs only where the CPU has AVX-512F.
            unsafe { w.dequantize_row_avx512(first_row + r0 + i, buf) };
        }
        for c in 0..chunks {
            let tokens = c * m / chunks..(c + 1) * m / chunks;
            let x_chunk = &x[tokens.start * k..tokens.end * k];
            let out_tile = &mut out[r0 * m..(r0 + nr) * m];
            let at = (tokens.start, m, nr);
            match tokens.len() {
                1 => tile::<1>(&wbuf, x_chunk, k, out_tile, at),
                2 => tile::<2>(&wbuf, x_chunk, k, out_tile, at),
                3 => tile::<3>(&wbuf, x_chunk, k, out_tile, at),
                4 => tile::<4>(&wbuf, x_chunk, k, out_tile, at),
                5 => tile::<5>(&wbuf, x_chunk, k, out_tile, at),
                _ => tile::<6>(&wbuf, x_chunk, k, out_tile, at),
            }
        }
    }
}

/// `out[i · m + t] = Σ_c x[t][c] · w[first_row + i][c]` for a bf16 matrix and bf16
/// activations (`x` as bf16 bits), with `vdpbf16ps`: pairs of bf16 products summed into
/// `f32` lanes, 32 weights per instruction, read straight from the matrix (no widened copy).
/// Tiles of 4 rows × up to 6 tokens: 24 accumulators, 4 weight and 1 token register.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) fn xwt_bf16_dot<W: PackedRows>(
    x: &[u16],
    m: usize,
    w: &W,
    first_row: usize,
    out: &mut [f32],
) {
    let k = w.cols();
    let rows = out.len() / m;
    assert!(x.len() >= m * k && first_row + rows <= w.rows() && k.is_multiple_of(32));
    for r0 in (0..rows).step_by(ROWS) {
        let nr = (rows - r0).min(ROWS);
        // A short last tile repeats its first row; those sums are not written.
        let row: [&[u8]; ROWS] = std::array::from_fn(|i| {
            let r = first_row + r0 + if i < nr { i } else { 0 };
            w.bf16_row(r).unwrap_or(&[])
        });
        assert!(row.iter().all(|r| r.len() == 2 * k), "a bf16 matrix");
        for t0 in (0..m).step_by(TOKENS) {
            let nt = (m - t0).min(TOKENS);
            let mut acc = [[_mm512_setzero_ps(); ROWS]; TOKENS];
            for s in (0..k).step_by(32) {
                // SAFETY: `s + 32 <= k`: each row holds `2 k` bytes and `x` `m × k` values.
                unsafe {
                    let wv: [__m512bh; ROWS] = std::array::from_fn(|i| {
                        let v = _mm512_loadu_si512(row[i].as_ptr().add(2 * s).cast());
                        std::mem::transmute::<__m512i, __m512bh>(v)
                    });
                    for (t, acc_t) in acc.iter_mut().enumerate().take(nt) {
                        let p = x.as_ptr().add((t0 + t) * k + s);
                        let xv =
                            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast()));
                        for (a, &wi) in acc_t.iter_mut().zip(&wv) {
                            *a = _mm512_dpbf16_ps(*a, wi, xv);
                        }
                    }
                }
            }
            for (t, acc_t) in acc.iter().enumerate().take(nt) {
                for (i, &a) in acc_t.iter().enumerate().take(nr) {
                    out[(r0 + i) * m + t0 + t] = _mm512_reduce_add_ps(a);
                }
            }
        }
    }
}

/// Dot products of the first `nr` buffered rows with `T` token rows, written to
/// `out[i · m + first_token + t]`.
#[inline]
#[target_feature(enable = "avx512f")]
fn tile<const T: usize>(
    wbuf: &[f32],
    x: &[f32],
    k: usize,
    out: &mut [f32],
    (first_token, m, nr): (usize, usize, usize),
) {
    debug_assert!(wbuf.len() >= ROWS * k && x.len() >= T * k);
    let wp = wbuf.as_ptr();
    let xp = x.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); ROWS]; T];
    for s in (0..k).step_by(16) {
        // SAFETY: `s + 16 <= k`, the buffer holds `ROWS × k` values and `x` `T × k`.
        unsafe {
            let wv = [
                _mm512_loadu_ps(wp.add(s)),
                _mm512_loadu_ps(wp.add(k + s)),
                _mm512_loadu_ps(wp.add(2 * k + s)),
                _mm512_loadu_ps(wp.add(3 * k + s)),
            ];
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let xv = _mm512_loadu_ps(xp.add(t * k + s));
                for (a, &wi) in acc_t.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(wi, xv, *a);
                }
            }
        }
    }
    for (t, acc_t) in acc.iter().enumerate() {
        for (i, &a) in acc_t.iter().enumerate().take(nr) {
            out[i * m + first_token + t] = _mm512_reduce_add_ps(a);
        }
    }
}
