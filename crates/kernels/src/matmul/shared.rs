//! What the two AVX-512 GEMMs ([`super::gemm_avx512`], [`super::amx`]) share: an output buffer
//! that several threads write, each its own elements, and a 16 × 16 transpose in registers.

use std::arch::x86_64::*;

/// The result's storage, written by several threads at once, each to its own outputs.
#[derive(Clone, Copy)]
pub(super) struct Shared(pub(super) *mut f32);
// SAFETY: every task writes a disjoint set of elements (its own tiles' outputs), and the
// buffer outlives the parallel loop.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// The element at `offset` (a method, so that closures capture the whole `Shared`).
    ///
    /// # Safety
    /// `offset` must be within the buffer.
    pub(super) unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller guarantees the extent.
        unsafe { self.0.add(offset) }
    }
}

/// The transpose of a 16 × 16 block held as 16 row vectors: `out[c][i] = rows[i][c]`.
/// Interleaving row pairs by 32 and then 64 bits leaves, in 128-bit lane `L` of vector `4a +
/// q`, rows `4a .. 4a + 4` of column `4L + q`; a 4 × 4 transpose of 128-bit lanes then gathers
/// each column's four pieces.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for a in 0..8 {
        t[2 * a] = _mm512_unpacklo_ps(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm512_unpackhi_ps(r[2 * a], r[2 * a + 1]);
    }
    let mut u = [_mm512_setzero_ps(); 16];
    let (lo, hi) = (
        |x: __m512, y: __m512| {
            _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)))
        },
        |x: __m512, y: __m512| {
            _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)))
        },
    );
    for a in 0..4 {
        u[4 * a] = lo(t[4 * a], t[4 * a + 2]);
        u[4 * a + 1] = hi(t[4 * a], t[4 * a + 2]);
        u[4 * a + 2] = lo(t[4 * a + 1], t[4 * a + 3]);
        u[4 * a + 3] = hi(t[4 * a + 1], t[4 * a + 3]);
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for q in 0..4 {
        let (a, b, c, d) = (u[q], u[4 + q], u[8 + q], u[12 + q]);
        let e0 = _mm512_shuffle_f32x4::<0x44>(a, b);
        let e1 = _mm512_shuffle_f32x4::<0xEE>(a, b);
        let e2 = _mm512_shuffle_f32x4::<0x44>(c, d);
        let e3 = _mm512_shuffle_f32x4::<0xEE>(c, d);
        out[q] = _mm512_shuffle_f32x4::<0x88>(e0, e2);
        out[4 + q] = _mm512_shuffle_f32x4::<0xDD>(e0, e2);
        out[8 + q] = _mm512_shuffle_f32x4::<0x88>(e1, e3);
        out[12 + q] = _mm512_shuffle_f32x4::<0xDD>(e1, e3);
    }
    out
}
