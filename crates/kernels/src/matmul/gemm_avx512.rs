//! The packed products for many token rows (a training batch, a pass over thousands of prompt
//! tokens), written as a register-blocked GEMM with AVX-512.
//!
//! For a few tokens the products stream the weights (each is used once per token, so bytes
//! bound them) and [`super::avx512`]'s dot-product tiles are the right shape. With tens of rows
//! or more the arithmetic bounds them, and a dot-product tile pays for a horizontal sum per
//! output and for loading both operands at every step. Here each product is computed transposed
//! (`yᵀ = W · xᵀ` for the forward, `yᵀ = Wᵀ · gᵀ` for the input gradient) by one outer-product
//! micro-kernel: a tile of 12 weight rows (or columns) × 32 tokens accumulates in 24 registers;
//! each step loads the 32 tokens' values once (two vectors of the token-major copy of the
//! activations, made once per call by 16 × 16 transposes in registers) and broadcasts 12
//! weights, 24 fused multiply-adds for 14 loads and no horizontal sums; the last panel, where at
//! most 16 or 8 tokens are left, runs in one vector of 16 or 8 lanes. The weights are widened to
//! `f32` with the dequantiser's own formula: the forward widens a chunk of tiles once per call
//! (a tile's 12 rows interleaved in runs of 16, written straight from the quantised blocks);
//! the input gradient widens the whole matrix once per call into strips of 12 columns.
//!
//! Measured on 2 cores of an AMD EPYC (Zen 4, AVX-512; `--example quant_probe`, docs/history/BENCHMARKS-sessions.md):
//! 64 × 576 × 1536 forward 186–189 GFLOP/s against the tiles' 140–144, 99 rows 189, 2048 rows
//! 206; the LM head's forward for 32 rows 161 against 81.
//!
//! Each output is summed by one micro-kernel call in a fixed order, so results do not depend on
//! the number of threads.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::shared::{Shared, transpose16};
use crate::packed::PackedRows;

/// Weight rows (or columns) per micro-kernel tile.
const MR: usize = 12;
/// Tokens per micro-kernel tile (two 16-lane vectors).
const NR: usize = 32;

/// Fewest token rows for which these products beat the dot-product tiles, forward and input
/// gradient (measured with `--example quant_probe` on 576 × 1536 and on the 576 × 49152 LM
/// head: below them the weights' bytes, not the arithmetic, bound a product, and a panel of 32
/// tokens is partly empty; the input gradient also widens the whole matrix first).
/// `SUBSPACE_GEMM_MIN_ROWS=N` sets both and `=F,G` each, to measure either path on the same
/// shapes.
pub(super) fn min_rows() -> (usize, usize) {
    use std::sync::OnceLock;
    static MIN_ROWS: OnceLock<(usize, usize)> = OnceLock::new();
    *MIN_ROWS.get_or_init(|| {
        let asked = std::env::var("SUBSPACE_GEMM_MIN_ROWS").unwrap_or_default();
        let parts: Vec<Option<usize>> = asked.split(',').map(|p| p.trim().parse().ok()).collect();
        match parts.as_slice() {
            [Some(rows)] => (*rows, *rows),
            [Some(forward), Some(gradient)] => (*forward, *gradient),
            _ => (32, 96),
        }
    })
}

/// Buffers kept between calls, so that a product's scratch space (megabytes for a long pass)
/// is neither zeroed nor faulted in from the kernel again each time. A buffer is taken out of
/// the pool for the whole call, so a call that rayon starts on this thread while another waits
/// finds the pool without it and allocates its own.
mod scratch {
    use std::cell::RefCell;

    thread_local! {
        static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `len` values whose contents are unspecified (left from an earlier use):
    /// the smallest pooled one that holds `len` values, else the largest (grown).
    pub(super) fn take(len: usize) -> Vec<f32> {
        let mut v = POOL
            .with(|p| {
                let mut p = p.try_borrow_mut().ok()?;
                let fits = (0..p.len())
                    .filter(|&i| p[i].capacity() >= len)
                    .min_by_key(|&i| p[i].capacity());
                let pick = fits.or_else(|| (0..p.len()).max_by_key(|&i| p[i].capacity()))?;
                Some(p.swap_remove(pick))
            })
            .unwrap_or_default();
        v.resize(len, 0.0);
        v
    }

    /// Returns a buffer to this thread's pool (at most four are kept).
    pub(super) fn give(v: Vec<f32>) {
        POOL.with(|p| {
            if let Ok(mut p) = p.try_borrow_mut()
                && p.len() < 4
            {
                p.push(v);
            }
        });
    }
}

/// A buffer from [`scratch`], given back when dropped (a task's widened tiles: hundreds of
/// kilobytes, not to be allocated and zeroed again by every task of every call).
struct Scratch(Vec<f32>);

impl Drop for Scratch {
    fn drop(&mut self) {
        scratch::give(std::mem::take(&mut self.0));
    }
}

/// `x` (`[m, k]`, row-major) as `⌈m / 32⌉` panels of `[depth, 32]`: panel `p`, step `c`, lane
/// `j` holds `x[32 p + j][c]`, zero past the last row and past step `k` (`depth ≥ k` is `k`
/// rounded up to the micro-kernel's 16 steps): the layout the micro-kernel loads from. (A buffer
/// from [`scratch`]: give it back.)
///
/// # Safety
/// The CPU must have AVX-512F.
unsafe fn token_panels(x: &[f32], m: usize, k: usize, depth: usize) -> Vec<f32> {
    assert!(x.len() >= m * k && depth >= k);
    let panels = m.div_ceil(NR);
    let mut out = scratch::take(panels * depth * NR);
    out.par_chunks_mut(depth * NR)
        .enumerate()
        // SAFETY: AVX-512F as the caller guarantees; `panel` holds `depth × 32` values and
        // panel `p`'s rows of `x` are within it (asserted above).
        .for_each(|(p, panel)| unsafe { fill_panel(x, m, k, p, panel) });
    out
}

/// Panel `p` of [`token_panels`]: blocks of 16 tokens × 16 steps loaded as 16 rows and
/// transposed in registers ([`transpose16`]), so that each step's 16 tokens are one store.
///
/// # Safety
/// The CPU must have AVX-512F; `x` must hold `[m, k]` and `panel` `depth × 32` values with
/// `depth ≥ k`.
#[target_feature(enable = "avx512f")]
unsafe fn fill_panel(x: &[f32], m: usize, k: usize, p: usize, panel: &mut [f32]) {
    let tokens = NR.min(m - p * NR);
    for c0 in (0..k).step_by(16) {
        let steps = (k - c0).min(16);
        let mask: __mmask16 = if steps == 16 {
            0xFFFF
        } else {
            (1 << steps) - 1
        };
        for half in 0..NR / 16 {
            let mut rows = [_mm512_setzero_ps(); 16];
            for (j, row) in rows.iter_mut().enumerate() {
                let t = half * 16 + j;
                if t < tokens {
                    // SAFETY: token `t < tokens` is a row of `x`; its steps `c0 .. c0 + steps`
                    // are within it and the masked lanes are not read.
                    *row = unsafe {
                        _mm512_maskz_loadu_ps(mask, x.as_ptr().add((p * NR + t) * k + c0))
                    };
                }
            }
            let steps_of = transpose16(rows);
            for (c, v) in steps_of.iter().enumerate().take(steps) {
                // SAFETY: `(c0 + c) · 32 + 16 · half + 16 ≤ k · 32 ≤ panel.len()`.
                unsafe { _mm512_storeu_ps(panel.as_mut_ptr().add((c0 + c) * NR + half * 16), *v) };
            }
        }
    }
    panel[k * NR..].fill(0.0);
}

/// How a tile's weights are laid out for [`micro`]: weight `i` of step `s` is at
/// `(s / 16) · chunk + i · A_ROW + (s % 16) · step` (`A_ROW` is a compile-time constant so
/// that the 12 broadcasts of a step use fixed offsets, not 12 address registers).
#[derive(Clone, Copy)]
struct Layout {
    chunk: usize,
    step: usize,
}

/// `y[(t0 + j) · ldy + i] = Σ_s a(i, s) · b[s · 32 + j]` for `i < R` and the first `tokens ≤
/// 16 · V` lanes `j`, summed in the order of `s < depth` (a multiple of 16), `a(i, s)` where
/// [`Layout`] places it: a tile of the transposed product, written back in the caller's
/// `[tokens, outputs]` layout (through a small buffer that stays in L1, so the transposition
/// costs no pass over memory). `V` is the panel's 16-lane vectors computed: 2 for a full panel,
/// 1 where at most 16 tokens are left (the last panel of a product of, say, 99 rows, which
/// would otherwise spend a whole panel's work on 3 tokens).
///
/// # Safety
/// The CPU must have AVX-512F; `a` and `b` must hold every element named above, and `y` every
/// `y[(t0 + j) · ldy + i]`, which no other thread writes meanwhile.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn micro<const R: usize, const A_ROW: usize, const V: usize>(
    a: *const f32,
    layout: Layout,
    b: *const f32,
    depth: usize,
    (y, ldy, tokens): (*mut f32, usize, usize),
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..depth / 16 {
        let mut sp = ap;
        for _ in 0..16 {
            // SAFETY: the caller guarantees the extents.
            unsafe {
                let mut bv = [_mm512_setzero_ps(); V];
                for (v, bv) in bv.iter_mut().enumerate() {
                    *bv = _mm512_loadu_ps(bp.add(16 * v));
                }
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*sp.add(i * A_ROW));
                    for (acc_iv, &bv) in acc_i.iter_mut().zip(&bv) {
                        *acc_iv = _mm512_fmadd_ps(av, bv, *acc_iv);
                    }
                }
                sp = sp.add(layout.step);
                bp = bp.add(NR);
            }
        }
        // SAFETY: as above.
        ap = unsafe { ap.add(layout.chunk) };
    }
    // Back in the caller's layout: each vector of 16 tokens, its `R` rows padded to 16, is
    // transposed in registers, and each token's `R` outputs written by one masked store.
    let mask: __mmask16 = ((1u32 << R) - 1) as __mmask16;
    for v in 0..V {
        let mut rows = [_mm512_setzero_ps(); 16];
        for (row, acc_i) in rows.iter_mut().zip(&acc) {
            *row = acc_i[v];
        }
        let by_token = transpose16(rows);
        for (jj, outputs) in by_token
            .iter()
            .enumerate()
            .take(tokens.saturating_sub(16 * v))
        {
            // SAFETY: the caller guarantees that `y` holds outputs `0 .. R` of token `16 v +
            // jj < tokens` and that they are ours; the masked lanes are not written.
            unsafe { _mm512_mask_storeu_ps(y.add((16 * v + jj) * ldy), mask, *outputs) };
        }
    }
}

/// [`micro`] for at most 8 tokens, in 8-lane vectors: the same sums in the same order (a
/// core whose 512-bit multiply-adds are two 256-bit ones, as AMD's Zen 4, does it in half the
/// time of a 16-lane vector; elsewhere it costs the same).
///
/// # Safety
/// As [`micro`], with `tokens ≤ 8`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn micro8<const R: usize, const A_ROW: usize>(
    a: *const f32,
    layout: Layout,
    b: *const f32,
    depth: usize,
    (y, ldy, tokens): (*mut f32, usize, usize),
) {
    let mut acc = [_mm256_setzero_ps(); R];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..depth / 16 {
        let mut sp = ap;
        for _ in 0..16 {
            // SAFETY: the caller guarantees the extents.
            unsafe {
                let bv = _mm256_loadu_ps(bp);
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    *acc_i = _mm256_fmadd_ps(_mm256_set1_ps(*sp.add(i * A_ROW)), bv, *acc_i);
                }
                sp = sp.add(layout.step);
                bp = bp.add(NR);
            }
        }
        // SAFETY: as above.
        ap = unsafe { ap.add(layout.chunk) };
    }
    let mut tile = [[0f32; 8]; R];
    for (t, &acc_i) in tile.iter_mut().zip(&acc) {
        // SAFETY: `t` holds 8 values.
        unsafe { _mm256_storeu_ps(t.as_mut_ptr(), acc_i) };
    }
    for j in 0..tokens.min(8) {
        for (i, t) in tile.iter().enumerate() {
            // SAFETY: the caller guarantees that `y` holds this element and that it is ours.
            unsafe { *y.add(j * ldy + i) = t[j] };
        }
    }
}

/// [`micro`] for a run-time tile height `rows ≤ 12`, with one vector of tokens where at most
/// 16 are left and [`micro8`] where at most 8 are.
///
/// # Safety
/// As [`micro`].
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn micro_rows<const A_ROW: usize>(
    rows: usize,
    a: *const f32,
    layout: Layout,
    b: *const f32,
    depth: usize,
    out: (*mut f32, usize, usize),
) {
    macro_rules! by_height {
        ($kernel:ident $(, $v:literal)?) => {
            match rows {
                1 => $kernel::<1, A_ROW $(, $v)?>(a, layout, b, depth, out),
                2 => $kernel::<2, A_ROW $(, $v)?>(a, layout, b, depth, out),
                3 => $kernel::<3, A_ROW $(, $v)?>(a, layout, b, depth, out),
                4 => $kernel::<4, A_ROW $(, $v)?>(a, layout, b, depth, out),
                5 => $kernel::<5, A_ROW $(, $v)?>(a, layout, b, depth, out),
                6 => $kernel::<6, A_ROW $(, $v)?>(a, layout, b, depth, out),
                7 => $kernel::<7, A_ROW $(, $v)?>(a, layout, b, depth, out),
                8 => $kernel::<8, A_ROW $(, $v)?>(a, layout, b, depth, out),
                9 => $kernel::<9, A_ROW $(, $v)?>(a, layout, b, depth, out),
                10 => $kernel::<10, A_ROW $(, $v)?>(a, layout, b, depth, out),
                11 => $kernel::<11, A_ROW $(, $v)?>(a, layout, b, depth, out),
                _ => $kernel::<12, A_ROW $(, $v)?>(a, layout, b, depth, out),
            }
        };
    }
    // SAFETY: forwarded.
    unsafe {
        match out.2 {
            ..=8 => by_height!(micro8),
            9..=16 => by_height!(micro, 1),
            _ => by_height!(micro, 2),
        }
    }
}

/// Token panels multiplied before the next tile of weights: as many as fit in 256 KiB (half
/// of a core's L2 or less), so that the panels a tile is multiplied with stay in cache instead
/// of being streamed again from memory for every tile.
fn panels_per_block(depth: usize) -> usize {
    ((256 << 10) / (depth * NR * 4)).max(1)
}

/// Tiles of 12 weight rows per parallel task: enough tasks for every thread to stay busy, few
/// enough that each pays for waking it.
fn tiles_per_task(tiles: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    tiles.div_ceil(4 * threads).max(1)
}

/// Tiles whose weights a task widens before it multiplies them with every panel: as many as
/// fit in 512 KiB (with a block of panels, [`panels_per_block`], within a core's L2), so that a
/// tile is widened once per call, not once per block of panels (a pass over 2 048 tokens has
/// 22 blocks).
fn tiles_per_chunk(depth: usize) -> usize {
    ((512 << 10) / (MR * depth * 4)).max(1)
}

/// `y` (`[m, outputs]`) from every tile of 12 outputs times every panel of 32 tokens of
/// `panels` (each `[depth, 32]`, from [`token_panels`]): the tiles are shared between the
/// threads (each task writes only its tiles' outputs); each task takes its tiles in chunks
/// ([`tiles_per_chunk`]) and each chunk's tiles with blocks of panels that fit in L2.
/// `tile_weights(state, slot, first, count)` gives the weights of outputs `first .. first +
/// count` where `layout` (and `A_ROW`) place them, valid until it is next called with the same
/// `slot < chunk`; `state` is made once per task by `task_state(chunk)`.
///
/// # Safety
/// The CPU must have AVX-512F; each pointer `tile_weights` returns must hold the `count × depth`
/// weights `layout` names.
#[target_feature(enable = "avx512f")]
unsafe fn tiled_product<const A_ROW: usize, S>(
    m: usize,
    outputs: usize,
    (panels, depth): (&[f32], usize),
    layout: Layout,
    task_state: impl Fn(usize) -> S + Sync,
    tile_weights: impl Fn(&mut S, usize, usize, usize) -> *const f32 + Sync,
) -> Vec<f32> {
    assert!(panels.len() == m.div_ceil(NR) * depth * NR && depth.is_multiple_of(16));
    let mut y = vec![0f32; m * outputs];
    let out = Shared(y.as_mut_ptr());
    let tiles = outputs.div_ceil(MR);
    let per_task = tiles_per_task(tiles);
    let block = panels_per_block(depth);
    // With one block of panels each tile is used right after it is widened, while it is still
    // in L1; widening a chunk of tiles first would only move them out to L2 and back.
    let chunk = if m.div_ceil(NR) <= block {
        1
    } else {
        tiles_per_chunk(depth).min(per_task)
    };
    (0..tiles.div_ceil(per_task))
        .into_par_iter()
        .for_each(|task| {
            let mut state = task_state(chunk);
            let tiles = task * per_task..((task + 1) * per_task).min(tiles);
            for chunk_first in tiles.clone().step_by(chunk) {
                let chunk_tiles = chunk_first..(chunk_first + chunk).min(tiles.end);
                let weights: Vec<*const f32> = chunk_tiles
                    .clone()
                    .enumerate()
                    .map(|(slot, tile)| {
                        let first = tile * MR;
                        tile_weights(&mut state, slot, first, (outputs - first).min(MR))
                    })
                    .collect();
                for first_panel in (0..m.div_ceil(NR)).step_by(block) {
                    let block_panels = first_panel..(first_panel + block).min(m.div_ceil(NR));
                    for (tile, &a) in chunk_tiles.clone().zip(&weights) {
                        let first = tile * MR;
                        let count = (outputs - first).min(MR);
                        for p in block_panels.clone() {
                            let t0 = p * NR;
                            // SAFETY: AVX-512F and `a`'s extent as the caller guarantees (its
                            // slot is not asked again in this chunk); panel `p` holds `depth ×
                            // 32` values; `y` is `[m, outputs]` and this task alone writes its
                            // outputs `first .. first + count`, here for tokens `t0 .. m`.
                            unsafe {
                                micro_rows::<A_ROW>(
                                    count,
                                    a,
                                    layout,
                                    panels.as_ptr().add(p * depth * NR),
                                    depth,
                                    (out.at(t0 * outputs + first), outputs, (m - t0).min(NR)),
                                )
                            };
                        }
                    }
                }
            }
        });
    y
}

/// `y = x · Wᵀ`: `x` is `[m, cols]`, the result `[m, rows]`.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn matmul_wt<W: PackedRows>(x: &[f32], m: usize, w: &W) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    assert!(x.len() == m * k && m > 0);
    assert!(k.is_multiple_of(16), "packed rows hold whole blocks of 32");
    // SAFETY: AVX-512F as this function's caller guarantees.
    let xp = unsafe { token_panels(x, m, k, k) };
    // Per task: each slot's tile, its rows interleaved in runs of 16 (`[k / 16][12][16]`), so
    // that a step's 12 weights lie in one 768-byte run that the micro-kernel walks through in
    // order.
    let task_state = |slots: usize| Scratch(scratch::take(slots * MR * k));
    let tile_weights = |wbuf: &mut Scratch, slot: usize, first: usize, count: usize| {
        let wbuf = &mut wbuf.0[slot * MR * k..(slot + 1) * MR * k];
        for i in 0..count {
            // SAFETY: this function runs only where the CPU has AVX-512F; row `i`'s runs start
            // at `16 i` and are `12 × 16` apart.
            unsafe { w.dequantize_row_runs_avx512(first + i, &mut wbuf[i * 16..], MR * 16) };
        }
        wbuf.as_ptr()
    };
    let layout = Layout {
        chunk: MR * 16,
        step: 1,
    };
    // SAFETY: AVX-512F as above; `wbuf` holds `k / 16` runs of `12 × 16`.
    let y = unsafe { tiled_product::<16, _>(m, n, (&xp, k), layout, task_state, tile_weights) };
    scratch::give(xp);
    y
}

/// Row `r`'s values (`row`), run `t` of 12 written at `strips[(t · depth + r) · 12 ..]`: one
/// masked load and store a run (a `memcpy` call of 48 bytes cost more than the copy).
///
/// # Safety
/// The CPU must have AVX-512F; `strips` must hold `⌈row.len() / 12⌉ · depth · 12` values, of
/// which no other thread writes row `r`'s runs meanwhile.
#[target_feature(enable = "avx512f")]
unsafe fn scatter_runs(row: &[f32], strips: Shared, r: usize, depth: usize) {
    for t in 0..row.len().div_ceil(MR) {
        let len = (row.len() - t * MR).min(MR);
        let mask: __mmask16 = (1 << len) - 1;
        // SAFETY: the masked lanes are neither read nor written; the rest are within `row`
        // and run `t` of row `r` of `strips`, as the caller guarantees.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, row.as_ptr().add(t * MR));
            _mm512_mask_storeu_ps(strips.at((t * depth + r) * MR), mask, v);
        }
    }
}

/// `y = g · W`: `g` is `[m, rows]`, the result `[m, cols]`.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn matmul_w<W: PackedRows>(g: &[f32], m: usize, w: &W) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    assert!(g.len() == m * n && m > 0);
    // The sums run over the matrix's rows, rounded up to 16 with zeros in both operands.
    let depth = n.next_multiple_of(16);
    // SAFETY: as above.
    let gp = unsafe { token_panels(g, m, n, depth) };
    let tiles = k.div_ceil(MR);
    // The matrix in `f32`, cut into tiles of 12 columns, each `[n][12]` (one run of 12 per
    // row): what the micro-kernel walks through in order. Made once per call; the rows are
    // shared between the threads, each writing its rows' runs.
    let mut strips = scratch::take(tiles * depth * MR);
    for tile in strips.chunks_exact_mut(depth * MR) {
        tile[n * MR..].fill(0.0);
    }
    let strips_out = Shared(strips.as_mut_ptr());
    let rows_per_task = n.div_ceil(4 * rayon::current_num_threads().max(1)).max(1);
    (0..n.div_ceil(rows_per_task))
        .into_par_iter()
        .for_each(|task| {
            let mut row = vec![0f32; k];
            for r in task * rows_per_task..((task + 1) * rows_per_task).min(n) {
                // SAFETY: this function runs only where the CPU has AVX-512F; `strips` holds
                // `tiles × depth × 12` values, and the runs of row `r` are written by this task
                // alone (it owns row `r`).
                unsafe {
                    w.dequantize_row_avx512(r, &mut row);
                    scatter_runs(&row, strips_out, r, depth);
                }
            }
        });
    let layout = Layout {
        chunk: 16 * MR,
        step: MR,
    };
    // Column `first + i` of row `s < depth` is `strips[(tile · depth + s) · 12 + i]` for
    // `tile = first / 12`.
    let strips_of = |_: &mut (), _, first: usize, _| strips[first / MR * depth * MR..].as_ptr();
    // SAFETY: AVX-512F as above; `strips_of` points each tile at its own strip of `strips`.
    let y = unsafe { tiled_product::<1, _>(m, k, (&gp, depth), layout, |_| (), strips_of) };
    scratch::give(gp);
    scratch::give(strips);
    y
}
