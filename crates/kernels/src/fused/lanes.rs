//! Loops over a vector's values written so that they vectorise (16 lanes, the width of an
//! AVX-512 register of `f32`), for the fused operations' kernels to inline.

/// `Σ a·b` in 16 partial sums (the order differs from a sequential sum only in rounding).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a·x`
#[inline(always)]
pub(super) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `n` vectors of length `len` (`column(c)`) laid out as the columns of a `[len, width]`
/// row-major matrix (`width ≥ n`, a multiple of 16; the columns past `n` zero): the layout in
/// which [`dots_with_columns`] takes 16 dot products at a time without horizontal sums.
pub(super) fn as_columns<'a>(
    column: impl Fn(usize) -> &'a [f32],
    n: usize,
    len: usize,
    width: usize,
) -> Vec<f32> {
    let mut t = vec![0f32; len * width];
    for c in 0..n {
        for (e, &v) in column(c).iter().enumerate() {
            t[e * width + c] = v;
        }
    }
    t
}

/// `out[c] = Σ_e x[e] · t[e, c]` for the columns `c < n` of `t` ([`as_columns`]'s `[x.len(),
/// width]` layout), 16 columns a vector register and up to 64 a pass over `x`; `out` must hold
/// `n` rounded up to 16 (the columns past `n` in the last 16 are written too).
#[inline(always)]
pub(super) fn dots_with_columns(x: &[f32], t: &[f32], width: usize, n: usize, out: &mut [f32]) {
    let blocks = n.div_ceil(16);
    let mut first = 0;
    while first < blocks {
        first += match blocks - first {
            1 => dots_block::<1>(x, t, width, first, out),
            2 => dots_block::<2>(x, t, width, first, out),
            3 => dots_block::<3>(x, t, width, first, out),
            _ => dots_block::<4>(x, t, width, first, out),
        };
    }
}

/// Columns `16·first .. 16·(first + N)` of [`dots_with_columns`], in `N` register-wide sums.
#[inline(always)]
fn dots_block<const N: usize>(
    x: &[f32],
    t: &[f32],
    width: usize,
    first: usize,
    out: &mut [f32],
) -> usize {
    let mut acc = [[0f32; 16]; N];
    for (e, &xe) in x.iter().enumerate() {
        let row = &t[e * width + first * 16..][..N * 16];
        for (b, acc) in acc.iter_mut().enumerate() {
            for l in 0..16 {
                acc[l] += xe * row[b * 16 + l];
            }
        }
    }
    for (b, acc) in acc.iter().enumerate() {
        out[(first + b) * 16..][..16].copy_from_slice(acc);
    }
    N
}

/// The largest of `x` (`x.len()` a multiple of 16), in 16 lanes.
#[inline(always)]
pub(super) fn max_of(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 16];
    for chunk in x.chunks_exact(16) {
        for l in 0..16 {
            m[l] = m[l].max(chunk[l]);
        }
    }
    m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

/// `Σ x` in 16 partial sums (`x.len()` a multiple of 16).
#[inline(always)]
pub(super) fn sum_of(x: &[f32]) -> f32 {
    let mut s = [0f32; 16];
    for chunk in x.chunks_exact(16) {
        for l in 0..16 {
            s[l] += chunk[l];
        }
    }
    s.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every count of columns from 1 to 130 (one to nine blocks of 16, in passes of up to 64),
    /// against dot products summed in `f64`.
    #[test]
    fn dots_with_columns_are_the_dot_products_of_each_column() {
        let len = 24;
        let value = |i: usize| ((i * 7919) % 1000) as f32 / 500.0 - 1.0;
        let x: Vec<f32> = (0..len).map(|e| value(e + 3)).collect();
        for n in 1..=130 {
            let columns: Vec<Vec<f32>> = (0..n)
                .map(|c| (0..len).map(|e| value(c * len + e + 100)).collect())
                .collect();
            let width = n.next_multiple_of(16);
            let t = as_columns(|c| &columns[c], n, len, width);
            let mut out = vec![f32::NAN; width];
            dots_with_columns(&x, &t, width, n, &mut out);
            for (c, column) in columns.iter().enumerate() {
                let want: f64 = x
                    .iter()
                    .zip(column)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                assert!(
                    (f64::from(out[c]) - want).abs() < 1e-5,
                    "n {n}, column {c}: {} against {want}",
                    out[c]
                );
            }
        }
    }
}
