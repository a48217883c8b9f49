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
//! instead (module `avx512` below): the compiler spilled the portable body's accumulators.
//! Rows are shared between threads with rayon, for products large enough to pay for it. From
//! 32 token rows (forward) and 96 (input gradient), with AVX-512, the products go to
//! [`super::gemm`] instead, where arithmetic rather than the weights' bytes bounds them.
//!
//! Results do not depend on timing: each output is summed by one task in a fixed order, and the
//! per-thread partial sums of [`matmul_w`] are added in task order, so with the same number of
//! threads a run is reproducible bit for bit (the checkpoint-resume tests rely on it).

use rayon::prelude::*;

use super::packed::{BLOCK, PackedRow, PackedRows};

/// Which compiled body of the kernels runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// [`Kernels::Avx512`], except that a bf16 matrix's forward product uses AVX512-BF16's
    /// `vdpbf16ps` (32 bf16 products per instruction, summed in `f32`) on the activations
    /// rounded to bf16 (a relative error of up to 2⁻⁹ each). 1.4–1.6× faster for 1–9 tokens,
    /// 1.1× for 72 (`--example bf16_probe`), but no longer exact, so only used when asked
    /// (`SUBSPACE_KERNELS=avx512bf16`): by default products match transformers in `f32`.
    Avx512Bf16,
    /// [`Kernels::Avx512`], except that products of at least [`Kernels::AMX_MIN_ROWS`] token
    /// rows run on Intel's AMX tiles (`tdpbf16ps`) in bf16: the activations and the weights
    /// rounded to bf16 (a relative error of up to 2⁻⁹ each), their products summed in `f32`.
    /// Many times faster on a batch, but not exact, so only used when asked
    /// (`SUBSPACE_KERNELS=amx`), as PyTorch's bf16 products on such a CPU are (module `amx`).
    Amx,
    /// AVX-512F with FMA (the forward product written with intrinsics).
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// No SIMD assumption (the compiler vectorises for the target's baseline).
    Portable,
}

impl Kernels {
    /// The widest exact body this CPU runs, or the one
    /// `SUBSPACE_KERNELS=avx512bf16|avx512|avx2|portable` names if the CPU has it (to trade
    /// exactness for speed, to compare them or to rule one out).
    pub fn best() -> Kernels {
        use std::sync::OnceLock;
        static BEST: OnceLock<Kernels> = OnceLock::new();
        *BEST.get_or_init(|| {
            let available = Kernels::available();
            let asked = std::env::var("SUBSPACE_KERNELS")
                .ok()
                .and_then(|name| available.iter().copied().find(|k| k.name() == name));
            asked.unwrap_or_else(|| {
                let exact = available.iter().find(|&&k| k.is_exact());
                exact.copied().unwrap_or(Kernels::Portable)
            })
        })
    }

    /// The bodies this CPU can run, widest first (always ends with `Portable`). Detected once.
    pub fn available() -> &'static [Kernels] {
        use std::sync::OnceLock;
        static AVAILABLE: OnceLock<Vec<Kernels>> = OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut out = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                let fma = is_x86_feature_detected!("fma");
                let avx2 = fma && is_x86_feature_detected!("avx2");
                if avx2 && is_x86_feature_detected!("avx512f") {
                    if super::amx::available() {
                        out.push(Kernels::Amx);
                    }
                    if is_x86_feature_detected!("avx512bf16") {
                        out.push(Kernels::Avx512Bf16);
                    }
                    out.push(Kernels::Avx512);
                }
                if avx2 {
                    out.push(Kernels::Avx2);
                }
            }
            out.push(Kernels::Portable);
            out
        })
    }

    /// Refuses a body this CPU cannot run (its target features would be undefined behaviour).
    fn assert_runs_here(self) {
        assert!(
            Kernels::available().contains(&self),
            "this CPU cannot run {self:?}"
        );
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernels::Amx => "amx",
            Kernels::Avx512Bf16 => "avx512bf16",
            Kernels::Avx512 => "avx512",
            Kernels::Avx2 => "avx2",
            Kernels::Portable => "portable",
        }
    }

    fn is_avx512(self) -> bool {
        matches!(self, Kernels::Avx512 | Kernels::Avx512Bf16 | Kernels::Amx)
    }

    /// Whether every product matches the `f32` product up to the order of its sums (all but
    /// the bf16 bodies, which round the activations).
    pub fn is_exact(self) -> bool {
        !matches!(self, Kernels::Avx512Bf16 | Kernels::Amx)
    }

    /// Fewest token rows for which [`Kernels::Amx`] multiplies on the tiles (fewer go to the
    /// exact AVX-512 bodies).
    #[cfg(target_arch = "x86_64")]
    pub const AMX_MIN_ROWS: usize = super::amx::MIN_ROWS;
    #[cfg(not(target_arch = "x86_64"))]
    pub const AMX_MIN_ROWS: usize = usize::MAX;

    /// Most token rows handled together: with AVX-512 their 16-wide accumulators fill 16 of the
    /// 32 registers; AVX2 has 16 registers of half the width, so it takes half as many.
    fn max_tokens(self) -> usize {
        if self.is_avx512() { 16 } else { 8 }
    }

    /// `m` token rows cut into the fewest chunks of at most [`Self::max_tokens`], of near-equal
    /// sizes (9 rows are 9, not 8 + 1: each chunk streams the whole matrix once).
    fn token_chunks(self, m: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        let chunks = m.div_ceil(self.max_tokens()).max(1);
        (0..chunks).map(move |c| c * m / chunks..(c + 1) * m / chunks)
    }
}

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
    ($entry:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        fn $entry<W: PackedRows>(level: Kernels, t: usize, $($arg: $ty),*) {
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

simd_entries!(xwt_task, xwt_rows, (x: &[f32], w: &W, first_row: usize, out: &mut [f32]));
simd_entries!(gw_task, gw_rows, (g: &[f32], n: usize, w: &W, rows: std::ops::Range<usize>, acc: &mut [f32]));

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
    level.assert_runs_here();
    let (n, k) = (w.rows(), w.cols());
    assert_eq!(x.len(), m * k, "x must be [m, {k}]");
    #[cfg(target_arch = "x86_64")]
    if level == Kernels::Amx && m >= Kernels::AMX_MIN_ROWS {
        // SAFETY: `assert_runs_here` checked that the CPU has AMX and this process its state.
        return unsafe { super::amx::matmul_wt(x, m, w) };
    }
    #[cfg(target_arch = "x86_64")]
    if level.is_avx512()
        && m >= super::gemm::min_rows().0
        && !(level == Kernels::Avx512Bf16 && w.bf16_row(0).is_some())
    {
        // SAFETY: `assert_runs_here` checked that the CPU has AVX-512F.
        return unsafe { super::gemm::matmul_wt(x, m, w) };
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
        xwt_task(
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
    level.assert_runs_here();
    let (n, k) = (w.rows(), w.cols());
    assert_eq!(g.len(), m * n, "g must be [m, {n}]");
    #[cfg(target_arch = "x86_64")]
    if level == Kernels::Amx && m >= Kernels::AMX_MIN_ROWS {
        // SAFETY: `assert_runs_here` checked that the CPU has AMX and this process its state.
        return unsafe { super::amx::matmul_w(g, m, w) };
    }
    #[cfg(target_arch = "x86_64")]
    if level.is_avx512() && m >= super::gemm::min_rows().1 {
        // SAFETY: `assert_runs_here` checked that the CPU has AVX-512F.
        return unsafe { super::gemm::matmul_w(g, m, w) };
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
                gw_task(level, t, g_chunk, n, w, rows, &mut acc);
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

/// The forward product with AVX-512 intrinsics, written as a small GEMM: a tile of 4 weight
/// rows is dequantised once into an `f32` buffer that stays in L1, then multiplied with up to 6
/// token rows at a time, keeping the 4 × 6 accumulators in registers (24 of 32). The portable
/// body leaves the accumulators to the compiler, which spills them.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::PackedRows;
    use crate::quant::matrix::QuantRow;

    const ROWS: usize = 4;
    const TOKENS: usize = 6;

    /// `out[i · m + t] = Σ_c x[t][c] · w[first_row + i][c]`.
    #[target_feature(enable = "avx512f")]
    pub(super) fn xwt<W: PackedRows>(
        x: &[f32],
        m: usize,
        w: &W,
        first_row: usize,
        out: &mut [f32],
    ) {
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
                            let xv = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                                p.cast(),
                            ));
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

    /// A block-quantised row in `f32` (the dequantiser's `d · q + m`, not fused), run `c` of 16
    /// weights written at `out[c · stride ..]` (`stride ≥ 16`; 16: the row itself, more: the
    /// packed GEMM's tile layout, written directly instead of through a row buffer).
    #[target_feature(enable = "avx512f")]
    pub(crate) fn dequantize_blocks_runs(row: QuantRow<'_>, out: &mut [f32], stride: usize) {
        let QuantRow {
            scale,
            min,
            q,
            halves,
        } = row;
        let group = if halves { 16 } else { 32 };
        let runs = q.len() / 16;
        assert!(q.len() == scale.len() * group && min.len() == scale.len() && stride >= 16);
        assert!(runs == 0 || out.len() >= (runs - 1) * stride + 16);
        let (qp, op) = (q.as_ptr(), out.as_mut_ptr());
        for c in 0..runs {
            let at = c * 16;
            let g = at / group;
            let (d, m) = (_mm512_set1_ps(scale[g]), _mm512_set1_ps(min[g]));
            // SAFETY: `at + 16 <= q.len()` and `c · stride + 16 <= out.len()` (asserted above).
            unsafe {
                let q8 = _mm_loadu_si128(qp.add(at).cast());
                let qf = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8));
                _mm512_storeu_ps(op.add(c * stride), _mm512_add_ps(_mm512_mul_ps(d, qf), m));
            }
        }
    }

    /// A bf16 row (little-endian bytes) widened to `f32`, each value's 16 bits the top half of
    /// an `f32`; run `c` of 16 values written at `out[c · stride ..]` (as
    /// [`dequantize_blocks_runs`]).
    #[target_feature(enable = "avx512f")]
    pub(crate) fn widen_bf16_runs(bytes: &[u8], out: &mut [f32], stride: usize) {
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
}
