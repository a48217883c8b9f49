//! The packed products for many token rows on AMX tiles (Intel Xeon from Sapphire Rapids on), in
//! bf16: the activations and the weights are rounded to bf16 and each 16 × 16 tile of outputs
//! sums their products in `f32` (`tdpbf16ps`: 16 × 16 × 32 multiply-adds an instruction, about
//! ten times what the cores' `f32` multiply-adds reach). Not exact, so only used when asked
//! ([`super::Kernels::Amx`], `SUBSPACE_KERNELS=amx`), as PyTorch's bf16 products on the same
//! CPU (oneDNN's AMX path) are.
//!
//! Both products are one tiled routine, [`tile_product`]: `y[t][j] = Σ_s a[t][s] · b(s, j)`,
//! `a` the activations in bf16 (`[m, depth]`, each 16 rows × 32 values one contiguous tile:
//! [`to_bf16_tiles`]), `b` the weights as AMX wants its second operand: 16 × 16 tiles of bf16
//! *pairs*, `b(2p, j)` and `b(2p + 1, j)` side by side in one 32-bit element (row `p`, column `j` of a
//! tile), laid out once per matrix and kept with it ([`crate::packed::TileCache`]: packing per call
//! cost as much as the arithmetic at 32–64 rows):
//! - the forward, `y = x · Wᵀ`: `b(s, j) = W[j][s]`, two neighbours of one weight row per pair,
//!   so 16 rows' pairs are transposed as a 16 × 16 block of 32-bit elements
//!   ([`pack_rows_transposed`]);
//! - the input gradient, `y = g · W`: `b(s, j) = W[s][j]`, a pair takes one element of each of
//!   two neighbouring rows ([`pack_row_pairs`]).
//!
//! Each output tile is summed by one call in a fixed order, so results do not depend on the
//! number of threads.

use std::arch::asm;
use std::arch::x86_64::*;

use rayon::prelude::*;

use super::shared::{Shared, transpose16};
use crate::packed::{PackedRow, PackedRows};
use crate::parallel_fill::filled_in_parallel;

/// Tokens (rows of `a`) and outputs (columns of `b`) per tile; bf16 values per tile row.
const TILE: usize = 16;
const DEPTH: usize = 32;
/// One packed tile of `b`: 16 rows of 16 pairs.
const TILE_ELEMS: usize = TILE * TILE;

/// Fewest token rows for which the products go to the tiles: with the weights' tiles kept
/// (`TileCache`), from 6 rows they beat the exact kernels, which at 1–4 rows are as fast (both
/// wait on the weights' bytes; `--example quant_probe`, Intel Xeon with AMX).
pub const MIN_ROWS: usize = 6;

/// Whether this CPU has AMX with bf16 and AVX512-BF16 (for the rounding), and Linux lets this
/// process use the tiles (their 8 KiB of state is granted per process, on request). Asked once.
pub(super) fn available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")) {
            return false;
        }
        // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
        let leaf7 = __cpuid_count(7, 0);
        let amx = leaf7.edx & (1 << 22) != 0 && leaf7.edx & (1 << 24) != 0;
        amx && request_tile_state()
    })
}

/// Asks Linux for the tiles' state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`):
/// without it the first tile instruction kills the process.
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let status: i64;
    // SAFETY: a system call that only changes which register state this process may use; it
    // reads and writes no memory of ours. `syscall` clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => status,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    status == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The tile configuration: palette 1, the eight tiles each 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn all_full() -> TileConfig {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = TILE as u8;
        }
        TileConfig(c)
    }
}

/// The tiles configured on this thread for as long as it lives, released when dropped (so that
/// a thread that has stopped using them does not carry their state through context switches).
struct Tiles;

impl Tiles {
    /// # Safety
    /// [`available`] must have returned true.
    unsafe fn configure() -> Tiles {
        let config = TileConfig::all_full();
        // SAFETY: the caller guarantees AMX and the process's permission; the configuration is
        // 64 bytes, as `ldtilecfg` reads.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly)) };
        Tiles
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: tiles were configured on this thread (`configure`).
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// `values` (`[rows, cols]`) rounded to bf16 (nearest, ties to even) as [`tile_product`]'s
/// first operand: `rows_out / 16` groups of 16 rows (zero past `rows`), each `depth / 32` tiles
/// of 16 rows × 32 values (zero past `cols`) laid end to end, so that a tile load reads 1 KiB in
/// order (`depth ≥ cols` a multiple of 32, `rows_out ≥ rows` of 16).
#[target_feature(enable = "avx512f,avx512bf16")]
fn to_bf16_tiles(
    values: &[f32],
    rows: usize,
    cols: usize,
    rows_out: usize,
    depth: usize,
) -> Vec<u16> {
    assert!(values.len() == rows * cols && depth >= cols && depth.is_multiple_of(DEPTH));
    assert!(rows_out >= rows && rows_out.is_multiple_of(TILE));
    const GROUPS_PER_TASK: usize = 4;
    // Each task zeroes its own groups (the padding stays 0) and rounds their rows into them.
    // (A closure inherits this function's target features.)
    filled_in_parallel(
        rows_out * depth,
        GROUPS_PER_TASK * TILE * depth,
        |task, groups: &mut [u16]| {
            for (g, group) in groups.chunks_exact_mut(TILE * depth).enumerate() {
                let first = (task * GROUPS_PER_TASK + g) * TILE;
                for i in 0..TILE.min(rows.saturating_sub(first)) {
                    let row = &values[(first + i) * cols..(first + i + 1) * cols];
                    for (kb, chunk) in row.chunks(DEPTH).enumerate() {
                        let at = (kb * TILE + i) * DEPTH;
                        round_row(chunk, &mut group[at..at + DEPTH]);
                    }
                }
            }
        },
    )
}

/// One row of [`to_bf16_tiles`]: `v` rounded into `out` (`out.len() ≥ v.len()`).
#[target_feature(enable = "avx512f,avx512bf16")]
fn round_row(v: &[f32], out: &mut [u16]) {
    assert!(out.len() >= v.len());
    for c0 in (0..v.len()).step_by(16) {
        let n = (v.len() - c0).min(16);
        let mask: __mmask16 = if n == 16 { 0xFFFF } else { (1 << n) - 1 };
        // SAFETY: lanes `c0 .. c0 + n` are within `v` and `out` (asserted above); the rest are
        // masked.
        unsafe {
            let x = _mm512_maskz_loadu_ps(mask, v.as_ptr().add(c0));
            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(x));
            _mm256_mask_storeu_epi16(out.as_mut_ptr().add(c0).cast(), mask, h);
        }
    }
}

/// 16 values of `even` and of `odd` rounded to bf16 and interleaved: 32-bit lane `c` holds
/// `even[c]` (low half) and `odd[c]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
fn interleave_pairs(even: __m512, odd: __m512) -> __m512i {
    // SAFETY: `__m256bh` and `__m256i` are both 256 bits of plain data.
    let (lo, hi) = unsafe {
        (
            std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(even)),
            std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(odd)),
        )
    };
    _mm512_or_si512(
        _mm512_cvtepu16_epi32(lo),
        _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(hi)),
    )
}

/// Outputs `32 pair .. 32 pair + 32` of `y = x · Wᵀ` as [`tile_product`]'s second operand
/// (`b(s, j) = W[j][s]`): for each of the two groups of 16 weight rows and each 32 columns
/// (depth), one tile whose row `p`, column `o` holds `W[o][32 kb + 2p]` and `W[o][32 kb + 2p +
/// 1]` (zero past the last row): each row's pairs, 16 rows' worth transposed as a 16 × 16 block
/// of 32-bit elements.
#[target_feature(enable = "avx512f,avx512bf16")]
fn pack_rows_transposed<W: PackedRows>(w: &W, pair: usize, tiles: &mut [u32]) {
    let (n, k) = (w.rows(), w.cols());
    let kblocks = k / DEPTH;
    assert!(tiles.len() == 2 * kblocks * TILE_ELEMS);
    let mut rows = vec![0f32; TILE * k];
    for (h, group) in tiles.chunks_exact_mut(kblocks * TILE_ELEMS).enumerate() {
        let first = (2 * pair + h) * TILE;
        for (o, row) in rows.chunks_exact_mut(k).enumerate() {
            if first + o < n {
                // SAFETY: this function runs only where the CPU has AVX-512F.
                unsafe { w.dequantize_row_avx512(first + o, row) };
            } else {
                row.fill(0.0);
            }
        }
        for (kb, tile) in group.chunks_exact_mut(TILE_ELEMS).enumerate() {
            let mut pairs = [_mm512_setzero_ps(); TILE];
            for (o, p) in pairs.iter_mut().enumerate() {
                // SAFETY: `32 kb + 32 ≤ k`: both loads are within row `o`.
                unsafe {
                    let at = rows.as_ptr().add(o * k + kb * DEPTH);
                    // Elements 0..16 come from the second operand: the 32 values in order, so
                    // 32-bit lane `p` holds values `2p` (low half) and `2p + 1`.
                    let h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(at.add(16)), _mm512_loadu_ps(at));
                    *p = std::mem::transmute::<__m512bh, __m512>(h);
                }
            }
            for (p, v) in transpose16(pairs).iter().enumerate() {
                // SAFETY: row `p` of a 256-element tile.
                unsafe { _mm512_storeu_ps(tile.as_mut_ptr().add(p * TILE).cast(), *v) };
            }
        }
    }
}

/// Outputs `32 pair .. 32 pair + 32` of `y = g · W` as [`tile_product`]'s second operand
/// (`b(s, j) = W[s][j]`): for each of the two groups of 16 columns and each 32 weight rows
/// (depth), one tile whose row `p`, column `c` holds `W[32 kb + 2p][c]` and `W[32 kb + 2p +
/// 1][c]` (zero past the last row). The 32 columns are one block of every row, widened alone.
#[target_feature(enable = "avx512f,avx512bf16")]
fn pack_row_pairs<W: PackedRows>(w: &W, pair: usize, tiles: &mut [u32]) {
    let n = w.rows();
    let kblocks = n.div_ceil(DEPTH);
    assert!(tiles.len() == 2 * kblocks * TILE_ELEMS);
    let block = |r: usize| {
        if r < n {
            w.row(r).block(pair)
        } else {
            [0.0; 32]
        }
    };
    for kb in 0..kblocks {
        for p in 0..TILE {
            let (even, odd) = (block(kb * DEPTH + 2 * p), block(kb * DEPTH + 2 * p + 1));
            for h in 0..2 {
                // SAFETY: 16 values from `16 h` are within each block; the store is row `p` of
                // tile `kb` of group `h`, within `tiles`.
                unsafe {
                    let v = interleave_pairs(
                        _mm512_loadu_ps(even.as_ptr().add(16 * h)),
                        _mm512_loadu_ps(odd.as_ptr().add(16 * h)),
                    );
                    let at = (h * kblocks + kb) * TILE_ELEMS + p * TILE;
                    _mm512_storeu_si512(tiles.as_mut_ptr().add(at).cast(), v);
                }
            }
        }
    }
}

/// Bytes of `b`'s tiles that one task keeps in cache while it runs its rows against them (in
/// the cores' 2 MiB L2, beside a block of rows of `a`).
const PAIR_BLOCK_BYTES: usize = 512 * 1024;
/// Rows of `a` one task runs against its pairs (in 32-row steps).
const ROW_BLOCK: usize = 256;

/// `y[t][j] = Σ_s a[t][s] · b(s, j)` for `t < m`, `j < cols` (`y` is `[m, cols]`): `a` as
/// [`to_bf16_tiles`] lays it out (`m_pad` rows, a multiple of 32; `depth` a multiple of 32),
/// `b` each pair of 16-column groups' `2 × depth / 32` tiles in turn (the first group's then the
/// second's).
///
/// The work is cut into blocks of rows by blocks of pairs, one task each, so that a block of
/// `b`'s tiles stays in cache while each 32-row step of `a` meets every pair of it, and that
/// step's tiles while it does: four 16 × 16 output tiles summed in four tile registers over the
/// whole depth, two tiles of `a` and two of `b` loaded per 32 steps for four `tdpbf16ps`, then
/// stored straight into `y` (through a scratch tile where `cols` is not a multiple of 32).
///
/// # Safety
/// [`available`] must have returned true.
unsafe fn tile_product(
    a: &[u16],
    (m, m_pad, depth): (usize, usize, usize),
    cols: usize,
    b: &[u32],
) -> Vec<f32> {
    let kblocks = depth / DEPTH;
    assert!(m_pad.is_multiple_of(2 * TILE) && m <= m_pad && depth.is_multiple_of(DEPTH));
    let per_pair = 2 * kblocks * TILE_ELEMS;
    let pairs = cols.div_ceil(2 * TILE);
    assert!(a.len() == m_pad * depth && b.len() == pairs * per_pair);
    let steps = m_pad / (2 * TILE);
    // Blocks as large as the caches allow, in a number of tasks that the threads share evenly
    // (a multiple of their number where the pairs allow, else more, smaller blocks of rows).
    let threads = rayon::current_num_threads().max(1);
    let step_block = (ROW_BLOCK / (2 * TILE)).min(steps);
    let step_blocks = steps.div_ceil(step_block);
    let most_pairs = (PAIR_BLOCK_BYTES / (4 * per_pair)).clamp(1, pairs);
    let mut pair_blocks = pairs.div_ceil(most_pairs);
    if !(step_blocks * pair_blocks).is_multiple_of(threads) {
        pair_blocks = pair_blocks.next_multiple_of(threads).min(pairs);
    }
    let pair_block = pairs.div_ceil(pair_blocks);
    let pair_blocks = pairs.div_ceil(pair_block);
    // Whole output tiles are stored straight into `y`; otherwise each tile goes through `sums`.
    let direct = cols.is_multiple_of(2 * TILE);
    let mut y: Vec<f32> = Vec::with_capacity(m_pad * cols);
    let out = Shared(y.as_mut_ptr());
    let y_stride = cols * 4;
    (0..step_blocks * pair_blocks)
        .into_par_iter()
        .for_each(|task| {
            let (sb, pb) = (task / pair_blocks, task % pair_blocks);
            // SAFETY: AMX as the caller guarantees.
            let _tiles = unsafe { Tiles::configure() };
            let mut sums = [[0f32; TILE_ELEMS]; 4];
            for step in sb * step_block..((sb + 1) * step_block).min(steps) {
                let t0 = step * 2 * TILE;
                // The two 16-row groups of this step: each `kblocks` tiles of 512 values.
                let a0 = a[t0 * depth..].as_ptr();
                for pair in pb * pair_block..((pb + 1) * pair_block).min(pairs) {
                    let b0 = b[pair * per_pair..].as_ptr();
                    // SAFETY: every pointer below stays within `a`, `b` (asserted above) or
                    // `y`'s capacity (`m_pad × cols`; a direct store writes rows `t0 ..
                    // t0 + 32 ≤ m_pad`, columns `32 pair .. 32 pair + 32 ≤ cols`); each tile
                    // load reads 16 rows of 64 bytes; the tiles were configured on this thread.
                    unsafe {
                        let a1 = a0.add(TILE * depth);
                        let b1 = b0.add(kblocks * TILE_ELEMS);
                        asm!(
                            "tilezero tmm0",
                            "tilezero tmm1",
                            "tilezero tmm2",
                            "tilezero tmm3",
                            options(nostack, nomem)
                        );
                        for kb in 0..kblocks {
                            asm!(
                                "tileloadd tmm4, [{a0} + {s}*1]",
                                "tileloadd tmm6, [{b0} + {s}*1]",
                                "tileloadd tmm5, [{a1} + {s}*1]",
                                "tileloadd tmm7, [{b1} + {s}*1]",
                                "tdpbf16ps tmm0, tmm4, tmm6",
                                "tdpbf16ps tmm1, tmm4, tmm7",
                                "tdpbf16ps tmm2, tmm5, tmm6",
                                "tdpbf16ps tmm3, tmm5, tmm7",
                                a0 = in(reg) a0.add(kb * TILE * DEPTH),
                                a1 = in(reg) a1.add(kb * TILE * DEPTH),
                                b0 = in(reg) b0.add(kb * TILE_ELEMS),
                                b1 = in(reg) b1.add(kb * TILE_ELEMS),
                                s = in(reg) 64usize,
                                options(nostack, readonly),
                            );
                        }
                        // The four tiles' destinations: their places in `y`, or `sums`.
                        let (to, stride) = if direct {
                            let y0 = out.at(t0 * cols + pair * 2 * TILE);
                            let below = y0.add(TILE * cols);
                            ([y0, y0.add(TILE), below, below.add(TILE)], y_stride)
                        } else {
                            (sums.each_mut().map(|s| s.as_mut_ptr()), 4 * TILE)
                        };
                        asm!(
                            "tilestored [{s0} + {st}*1], tmm0",
                            "tilestored [{s1} + {st}*1], tmm1",
                            "tilestored [{s2} + {st}*1], tmm2",
                            "tilestored [{s3} + {st}*1], tmm3",
                            s0 = in(reg) to[0],
                            s1 = in(reg) to[1],
                            s2 = in(reg) to[2],
                            s3 = in(reg) to[3],
                            st = in(reg) stride,
                            options(nostack),
                        );
                    }
                    if direct {
                        continue;
                    }
                    // Tile `q`: rows from `t0 + 16 (q / 2)`, the outputs of group `q % 2`.
                    for (q, sum) in sums.iter().enumerate() {
                        let first_col = (2 * pair + q % 2) * TILE;
                        if first_col >= cols {
                            continue;
                        }
                        let width = (cols - first_col).min(TILE);
                        for (r, row) in sum.chunks_exact(TILE).enumerate() {
                            let t = t0 + (q / 2) * TILE + r;
                            // SAFETY: `t < m_pad`, `first_col + width ≤ cols`: within `y`'s
                            // capacity; this task alone writes these rows' columns.
                            unsafe {
                                std::ptr::copy_nonoverlapping(
                                    row.as_ptr(),
                                    out.at(t * cols + first_col),
                                    width,
                                )
                            };
                        }
                    }
                }
            }
        });
    // SAFETY: the tasks wrote every element of rows `0 .. m_pad` (every step, every pair, every
    // column of each; rows past `m` hold sums of the zero rows of `a`).
    unsafe { y.set_len(m_pad * cols) };
    y.truncate(m * cols);
    y
}

/// Every pair's tiles, `pack(pair, tiles)` for each, in one buffer: what a
/// [`crate::packed::TileCache`] keeps, made once per matrix.
fn pack_all(pairs: usize, per_pair: usize, pack: impl Fn(usize, &mut [u32]) + Sync) -> Vec<u32> {
    let mut all = vec![0u32; pairs * per_pair];
    all.par_chunks_mut(per_pair)
        .enumerate()
        .for_each(|(pair, tiles)| pack(pair, tiles));
    all
}

/// `y = x · Wᵀ` on the tiles: `x` is `[m, cols]`, the result `[m, rows]`.
///
/// # Safety
/// [`available`] must have returned true.
pub(super) unsafe fn matmul_wt<W: PackedRows>(x: &[f32], m: usize, w: &W) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    assert!(x.len() == m * k && m > 0 && k.is_multiple_of(DEPTH));
    let m_pad = m.next_multiple_of(2 * TILE);
    let per_pair = 2 * (k / DEPTH) * TILE_ELEMS;
    // SAFETY: AVX-512F and AVX512-BF16, which `available` checked.
    let a = unsafe { to_bf16_tiles(x, m, k, m_pad, k) };
    // SAFETY: as above.
    let pack = |pair: usize, tiles: &mut [u32]| unsafe { pack_rows_transposed(w, pair, tiles) };
    let b = w
        .tile_cache()
        .forward
        .get_or_init(|| pack_all(n.div_ceil(2 * TILE), per_pair, pack));
    // SAFETY: as the caller guarantees.
    unsafe { tile_product(&a, (m, m_pad, k), n, b) }
}

/// `y = g · W` on the tiles: `g` is `[m, rows]`, the result `[m, cols]`.
///
/// # Safety
/// [`available`] must have returned true.
pub(super) unsafe fn matmul_w<W: PackedRows>(g: &[f32], m: usize, w: &W) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    assert!(g.len() == m * n && m > 0 && k.is_multiple_of(DEPTH));
    let (m_pad, depth) = (m.next_multiple_of(2 * TILE), n.next_multiple_of(DEPTH));
    let per_pair = 2 * (depth / DEPTH) * TILE_ELEMS;
    // SAFETY: AVX-512F and AVX512-BF16, which `available` checked.
    let a = unsafe { to_bf16_tiles(g, m, n, m_pad, depth) };
    // SAFETY: as above.
    let pack = |pair: usize, tiles: &mut [u32]| unsafe { pack_row_pairs(w, pair, tiles) };
    let b = w
        .tile_cache()
        .gradient
        .get_or_init(|| pack_all(k / (2 * TILE), per_pair, pack));
    // SAFETY: as the caller guarantees.
    unsafe { tile_product(&a, (m, m_pad, depth), k, b) }
}
