//! A bf16 weight matrix kept at two bytes per weight, read in place from a memory-mapped
//! safetensors file where it can be: the model then costs the file's size in memory (pages the
//! kernel can drop and re-read), not twice it in `f32`.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::Arc;

use super::rows::{BLOCK, PackedRow, PackedRows, TileCache};

/// Where the bytes live.
#[derive(Debug)]
enum Bytes {
    Owned(Vec<u8>),
    /// `map[range]`, the tensor's bytes inside a mapped file.
    Mapped {
        map: Arc<memmap2::Mmap>,
        range: Range<usize>,
    },
}

/// A row-major `[rows, cols]` matrix of little-endian bf16 values.
#[derive(Debug)]
pub struct Bf16Matrix {
    rows: usize,
    cols: usize,
    bytes: Bytes,
    tiles: TileCache,
}

impl Bf16Matrix {
    /// `bytes` are `rows × cols` little-endian bf16 values; `None` if the sizes disagree or the
    /// rows are not whole blocks of 32 (such a matrix stays dense).
    pub fn from_bytes(bytes: Vec<u8>, rows: usize, cols: usize) -> Option<Self> {
        Self::fits(bytes.len(), rows, cols).then_some(Bf16Matrix {
            rows,
            cols,
            bytes: Bytes::Owned(bytes),
            tiles: TileCache::default(),
        })
    }

    /// The matrix stored at `map[range]`, read in place (no copy).
    pub fn mapped(
        map: Arc<memmap2::Mmap>,
        range: Range<usize>,
        rows: usize,
        cols: usize,
    ) -> Option<Self> {
        (range.end <= map.len() && Self::fits(range.len(), rows, cols)).then_some(Bf16Matrix {
            rows,
            cols,
            bytes: Bytes::Mapped { map, range },
            tiles: TileCache::default(),
        })
    }

    fn fits(len: usize, rows: usize, cols: usize) -> bool {
        cols.is_multiple_of(BLOCK)
            && rows.checked_mul(cols).and_then(|n| n.checked_mul(2)) == Some(len)
    }

    fn as_bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Owned(v) => v,
            Bytes::Mapped { map, range } => &map[range.clone()],
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn bytes(&self) -> usize {
        self.rows * self.cols * 2
    }

    /// Whether the values are read in place from a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped { .. })
    }
}

/// One row's bytes (`2 · cols`).
#[derive(Debug, Clone, Copy)]
pub struct Bf16Row<'a>(pub(crate) &'a [u8]);

impl PackedRow for Bf16Row<'_> {
    #[inline(always)]
    fn block(self, b: usize) -> [f32; BLOCK] {
        let bytes: &[u8; 2 * BLOCK] = self.0[2 * BLOCK * b..2 * BLOCK * (b + 1)]
            .try_into()
            .unwrap_or(&[0; 2 * BLOCK]);
        let mut w = [0f32; BLOCK];
        for (j, wj) in w.iter_mut().enumerate() {
            // bf16 is the top half of an f32: widening is exact.
            let bits = u16::from_le_bytes([bytes[2 * j], bytes[2 * j + 1]]);
            *wj = f32::from_bits(u32::from(bits) << 16);
        }
        w
    }
}

impl PackedRows for Bf16Matrix {
    type Row<'a> = Bf16Row<'a>;

    fn rows(&self) -> usize {
        self.rows
    }

    fn cols(&self) -> usize {
        self.cols
    }

    #[inline(always)]
    fn row(&self, r: usize) -> Bf16Row<'_> {
        let w = 2 * self.cols;
        Bf16Row(&self.as_bytes()[r * w..(r + 1) * w])
    }

    fn bf16_row(&self, r: usize) -> Option<&[u8]> {
        Some(self.row(r).0)
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn dequantize_row_runs_avx512(&self, r: usize, out: &mut [f32], stride: usize) {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { widen_bf16_runs(self.row(r).0, out, stride) }
    }

    fn tile_cache(&self) -> &TileCache {
        &self.tiles
    }
}

#[cfg(target_arch = "x86_64")]
/// A bf16 row (little-endian bytes) widened to `f32`, each value's 16 bits the top half of
/// an `f32`; run `c` of 16 values written at `out[c · stride ..]` (as a
/// block-quantised row's widening does).
#[target_feature(enable = "avx512f")]
fn widen_bf16_runs(bytes: &[u8], out: &mut [f32], stride: usize) {
    let runs = bytes.len() / 32;
    assert!(bytes.len().is_multiple_of(32) && stride >= 16);
    assert!(runs == 0 || out.len() >= (runs - 1) * stride + 16);
    let (bp, op) = (bytes.as_ptr(), out.as_mut_ptr());
    for c in 0..runs {
        // SAFETY: `32 (c + 1) <= bytes.len()` and `c · stride + 16 <= out.len()` (asserted
        // above).
        unsafe {
            let h = _mm256_loadu_si256(bp.add(32 * c).cast());
            let wide = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h));
            _mm512_storeu_ps(op.add(c * stride), _mm512_castsi512_ps(wide));
        }
    }
}
