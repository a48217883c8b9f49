//! What the kernels read: a `[rows, cols]` matrix, one row at a time, 32 weights at a time,
//! widened to `f32` in registers. The storages ([`super::QuantMatrix`], [`super::Bf16Matrix`])
//! implement these traits; the enum over them ([`super::PackedMatrix`]) sits above both.

/// Weights handed out per call of [`PackedRow::block`]. Every packed row is a whole number of
/// them (the loader keeps other matrices dense).
pub const BLOCK: usize = 32;

/// One row of a packed matrix.
pub trait PackedRow: Copy {
    /// Weights `32 b .. 32 b + 32` in `f32`, computed exactly as the file's dequantiser
    /// computes them (same operations, same order), so a product with a packed matrix equals
    /// one with its dequantised `f32` matrix up to the order of the sums.
    fn block(self, b: usize) -> [f32; BLOCK];
}

/// A matrix's weights in bf16, laid out as the AMX tiles read them (`Kernels::Amx`), made on
/// first use and kept with the matrix: `forward` for `x · Wᵀ`, `gradient` for `g · W`. Two bytes
/// per weight each, so a matrix that `Kernels::Amx` multiplies both ways holds four more bytes
/// per weight (about half a gigabyte for SmolLM2-135M); nothing is made on any other path.
#[derive(Default)]
pub struct TileCache {
    pub(crate) forward: std::sync::OnceLock<Vec<u32>>,
    pub(crate) gradient: std::sync::OnceLock<Vec<u32>>,
}

impl std::fmt::Debug for TileCache {
    /// Which layouts are made, not their millions of values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileCache")
            .field("forward", &self.forward.get().map(Vec::len))
            .field("gradient", &self.gradient.get().map(Vec::len))
            .finish()
    }
}

impl Clone for TileCache {
    /// An empty cache: a copy of a matrix makes its own tiles if it needs them.
    fn clone(&self) -> Self {
        TileCache::default()
    }
}

/// A row-major `[rows, cols]` matrix (Hugging Face orientation: `[out, in]`) that the kernels
/// read block by block.
pub trait PackedRows: Sync {
    type Row<'a>: PackedRow
    where
        Self: 'a;

    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    fn row(&self, r: usize) -> Self::Row<'_>;

    /// Row `r` in `f32`, written into `out` (`cols` values).
    fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let row = self.row(r);
        for (b, o) in out.chunks_exact_mut(BLOCK).enumerate() {
            o.copy_from_slice(&row.block(b));
        }
    }

    /// [`Self::dequantize_row`] with AVX-512 instructions (the same values).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dequantize_row_avx512(&self, r: usize, out: &mut [f32]) {
        // SAFETY: forwarded.
        unsafe { self.dequantize_row_runs_avx512(r, out, 16) }
    }

    /// [`Self::dequantize_row_avx512`] with run `c` of 16 values written at `out[c · stride
    /// ..]` (`stride ≥ 16`; `out` holds `(cols / 16 − 1) · stride + 16` values): the packed
    /// GEMM's tile layout. (This default widens block by block without AVX-512.)
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dequantize_row_runs_avx512(&self, r: usize, out: &mut [f32], stride: usize) {
        let row = self.row(r);
        for b in 0..self.cols() / BLOCK {
            let block = row.block(b);
            for (half, run) in block.chunks_exact(16).enumerate() {
                let at = (2 * b + half) * stride;
                out[at..at + 16].copy_from_slice(run);
            }
        }
    }

    /// Where this matrix keeps its AMX tiles (made by the first AMX product that needs them).
    fn tile_cache(&self) -> &TileCache;

    /// Row `r`'s bytes if the matrix is bf16 (for the kernels that multiply bf16 directly).
    fn bf16_row(&self, _r: usize) -> Option<&[u8]> {
        None
    }

    /// The whole matrix in `f32`, row-major.
    fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows() * self.cols()];
        for (r, row) in out.chunks_exact_mut(self.cols()).enumerate() {
            self.dequantize_row(r, row);
        }
        out
    }
}
