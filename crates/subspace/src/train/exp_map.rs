//! torch's orthogonal parametrisation (`nn.utils.parametrizations.orthogonal`, square case,
//! `use_trivialization=True`): `W = base · exp(A)`, `A = L.tril(−1) − L.tril(−1)ᵀ`, with `L`
//! starting at zero, so `W` starts at the initial rotation and Adam updates `L`, exactly as in
//! the tutorial.
//!
//! Only the first `N` rows of `W` matter to a patch that unrotates with the true inverse, so
//! instead of the `d × d` matrix exponential (300–400 ms a step at d = 576) this computes
//! `base_N · exp(A)` by its action on those `N` rows: `exp(A) = exp(A/m)^m`, each factor a
//! Taylor series of at most `K` terms. `m` and `K` are chosen from `b = ‖L.tril(−1)‖_F` (an
//! upper bound of `‖A‖₂`) as the fewest products whose truncation error stays within
//! [`TRUNCATION_TOLERANCE`] (the bound `m · (b/m)^(K+1)/(K+1)! · e^(b/m)`): 6 products for
//! `b = 0.1`, 12 for `b = 1`, 17 for `b = 2`. Each is a product of an `N × d` by a `d × d`
//! matrix, differentiable with ordinary tensor ops.
//!
//! The series then stops as soon as the terms computed show that the rest is within the
//! tolerance (an a-posteriori bound, [`tail_bound`]): `b` bounds the largest singular value
//! of `A`, but the rows' terms shrink with the singular values they meet, which for the
//! generators Adam builds are far smaller (a random-sign generator with `b = 2` has
//! `‖A‖₂ ≈ 0.23`): there 8 products suffice where the a-priori plan takes 17.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::readout::to_host;

/// The largest truncation error allowed in `exp(A)` (in the 2-norm; the rows stay orthonormal
/// to this much, far below `f32`'s resolution). A fixed 12-term series per unit of the bound,
/// used before, guaranteed `e/13! ≈ 4.4e-10` per segment.
pub const TRUNCATION_TOLERANCE: f64 = 4.4e-10;

/// Above this bound of `‖A‖₂` the accumulated rotation is folded into the base rows and `L` is
/// reset to zero ("dynamic trivialisation", Lezcano-Casado 2019, which torch's `base` buffer
/// exists for): the next steps then need one or two Taylor segments instead of a number that
/// grows with the distance travelled. Before the first fold the run is exactly torch's.
pub const REBASE_ABOVE: f64 = 2.0;

/// A bound this large right after a step means the learning rate is absurd (Adam moves each
/// entry of `L` by about `lr` a step, so `‖A‖` grows by at most ~`lr · d`): training stops
/// instead of evaluating thousands of Taylor segments.
pub const MAX_STEP_BOUND: f64 = 64.0;

/// `‖L.tril(−1)‖_F`, an upper bound of `‖A‖₂`, read on the host.
pub fn norm_bound(l: &Tensor<2>) -> Result<f64> {
    let s = l.clone().without_autodiff().tril(-1).powi_scalar(2).sum();
    Ok(f64::from(to_host(s)?[0]).sqrt())
}

/// The cheapest `(segments, terms)` whose truncation error for `‖A‖₂ ≤ bound` is within
/// [`TRUNCATION_TOLERANCE`]: `segments · terms` products.
pub fn series_plan(bound: f64) -> (usize, usize) {
    let bound = bound.max(0.0);
    let mut best = (usize::MAX, (1, 1));
    for segments in 1..=(bound.ceil() as usize + 2) {
        let b = bound / segments as f64;
        // The remainder after `terms` terms: b^(terms+1) / (terms+1)! · e^b.
        let (mut remainder, mut terms) = (b * b.exp(), 0usize);
        while segments as f64 * remainder > TRUNCATION_TOLERANCE && terms < 64 {
            terms += 1;
            remainder *= b / (terms + 1) as f64;
        }
        let terms = terms.max(1);
        if segments * terms < best.0 {
            best = (segments * terms, (segments, terms));
        }
    }
    best.1
}

/// A bound of the rest of a segment's series after its term `t_k = v·(A/m)^k/k!`:
/// `Σ_{i≥1} ‖t_k‖·(b/m)^i·k!/(k+i)! ≤ ‖t_k‖·r/(1 − r)` with `r = (b/m)/(k+1)`, where `b/m`
/// bounds `‖A/m‖₂` and `‖t_k‖_F ≥ ‖t_k‖₂`; infinite while `r ≥ 1`.
pub fn tail_bound(term_norm: f64, scaled_bound: f64, k: usize) -> f64 {
    let r = scaled_bound / (k + 1) as f64;
    if r >= 1.0 {
        f64::INFINITY
    } else {
        term_norm * r / (1.0 - r)
    }
}

/// `rows · exp(L.tril(−1) − L.tril(−1)ᵀ)`, for `bound ≥ ‖L.tril(−1) − L.tril(−1)ᵀ‖₂` (see
/// [`norm_bound`]).
///
/// # Shapes
/// - `rows`: `[n, d]`, `l`: `[d, d]` → `[n, d]`
pub fn exp_rows(rows: Tensor<2>, l: Tensor<2>, bound: f64) -> Result<Tensor<2>> {
    Ok(exp_rows_counted(rows, l, bound)?.0)
}

/// [`exp_rows`], and how many `N × d` by `d × d` products it took.
pub fn exp_rows_counted(rows: Tensor<2>, l: Tensor<2>, bound: f64) -> Result<(Tensor<2>, usize)> {
    let lower = l.tril(-1);
    let a = lower.clone() - lower.transpose();
    let (segments, terms) = series_plan(bound);
    let scaled_bound = bound.max(0.0) / segments as f64;
    // Each segment may leave this much (its error is carried through the later segments'
    // near-orthogonal factors unchanged).
    let allowed = TRUNCATION_TOLERANCE / segments as f64;
    let mut products = 0;
    let mut v = rows;
    for _ in 0..segments {
        let mut term = v.clone();
        let mut acc = v;
        for k in 1..=terms {
            term = term.matmul(a.clone()) * (1.0 / (k * segments) as f64);
            acc = acc + term.clone();
            products += 1;
            // The a-priori plan guarantees the tolerance at `terms`; stop earlier when this
            // term shows the rest is smaller still.
            if k < terms && tail_bound(frobenius(&term)?, scaled_bound, k) <= allowed {
                break;
            }
        }
        v = acc;
    }
    Ok((v, products))
}

/// `‖t‖_F`, read on the host (outside the autodiff graph).
fn frobenius(t: &Tensor<2>) -> Result<f64> {
    let s = t.clone().without_autodiff().powi_scalar(2).sum();
    Ok(f64::from(to_host(s)?[0]).sqrt())
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    /// `exp(a)` of a small `f64` matrix by scaling and squaring (a 30-term series of `a / 2^s`
    /// with `‖a‖₁ / 2^s < 1/2`, then squared `s` times): an independent reference.
    fn expm(a: &[f64], d: usize) -> Vec<f64> {
        let mul = |x: &[f64], y: &[f64]| {
            let mut z = vec![0.0; d * d];
            for i in 0..d {
                for k in 0..d {
                    for j in 0..d {
                        z[i * d + j] += x[i * d + k] * y[k * d + j];
                    }
                }
            }
            z
        };
        let norm: f64 = (0..d)
            .map(|j| (0..d).map(|i| a[i * d + j].abs()).sum::<f64>())
            .fold(0.0, f64::max);
        let s = (norm * 2.0).log2().ceil().max(0.0) as i32;
        let scaled: Vec<f64> = a.iter().map(|v| v / 2f64.powi(s)).collect();
        let mut term: Vec<f64> = (0..d * d)
            .map(|i| f64::from(u8::from(i % (d + 1) == 0)))
            .collect();
        let mut sum = term.clone();
        for k in 1..30 {
            term = mul(&term, &scaled)
                .into_iter()
                .map(|v| v / k as f64)
                .collect();
            sum.iter_mut().zip(&term).for_each(|(x, t)| *x += t);
        }
        for _ in 0..s {
            sum = mul(&sum, &sum);
        }
        sum
    }

    #[test]
    fn exp_rows_matches_the_matrix_exponential_at_every_size_of_generator() {
        let (d, n) = (24, 5);
        let device = Device::flex();
        // Deterministic pseudo-random entries in [-0.5, 0.5).
        let noise =
            |i: usize, salt: usize| ((i * 7919 + salt * 104_729) % 1000) as f64 / 1000.0 - 0.5;
        let rows: Vec<f64> = (0..n * d).map(|i| noise(i, 1)).collect();
        // Each size twice: a random generator (‖A‖₂ well below the bound) and one rotation in
        // a single plane (‖A‖₂ equal to it: the series' worst case).
        for (target, plane) in [0.05, 0.4, 1.0, 1.7, 2.0, 3.5]
            .into_iter()
            .flat_map(|t| [(t, false), (t, true)])
        {
            let raw: Vec<f64> = (0..d * d)
                .map(|i| match plane {
                    false => noise(i, 2),
                    true => f64::from(u8::from(i == 7 * d + 3)),
                })
                .collect();
            let lower_norm = (0..d * d)
                .filter(|i| i % d < i / d)
                .map(|i| raw[i] * raw[i])
                .sum::<f64>()
                .sqrt();
            let l: Vec<f64> = raw.iter().map(|v| v * target / lower_norm).collect();
            let a: Vec<f64> = (0..d * d)
                .map(|i| {
                    let (r, c) = (i / d, i % d);
                    if c < r {
                        l[i]
                    } else if c > r {
                        -l[c * d + r]
                    } else {
                        0.0
                    }
                })
                .collect();
            let e = expm(&a, d);
            let want: Vec<f64> = (0..n * d)
                .map(|i| (0..d).map(|k| rows[i / d * d + k] * e[k * d + i % d]).sum())
                .collect();
            let tensor = |v: &[f64], shape: [usize; 2]| {
                let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                Tensor::<2>::from_data(TensorData::new(v, shape), &device)
            };
            let l_t = tensor(&l, [d, d]);
            let bound = norm_bound(&l_t).expect("bound");
            assert!((bound - target).abs() < 1e-5, "bound {bound} for {target}");
            let got = exp_rows(tensor(&rows, [n, d]), l_t, bound)
                .expect("series")
                .into_data()
                .try_to_vec::<f32>()
                .expect("host");
            let err = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (f64::from(*g) - w).abs())
                .fold(0.0, f64::max);
            assert!(
                err < 1e-6,
                "‖A‖ bound {target} (one plane: {plane}): max error {err:.2e}"
            );
        }
    }

    /// A generator like the ones Adam builds (entries of one size, random signs) has a largest
    /// singular value far below its Frobenius bound, so the rows' terms shrink much faster
    /// than the a-priori plan assumes: the series stops after fewer products, and the rows
    /// still match the matrix exponential.
    #[test]
    fn a_random_sign_generator_stops_early_and_stays_exact() {
        let (d, n) = (128, 8);
        let device = Device::flex();
        // A fixed pseudo-random sign pattern (a 64-bit LCG's top bit).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut sign = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if state >> 63 == 1 { 1.0 } else { -1.0 }
        };
        let raw: Vec<f64> = (0..d * d).map(|_| sign()).collect();
        let lower: Vec<f64> = (0..d * d)
            .map(|i| if i % d < i / d { raw[i] } else { 0.0 })
            .collect();
        let target = 2.0;
        let scale = target / lower.iter().map(|v| v * v).sum::<f64>().sqrt();
        let l: Vec<f64> = lower.iter().map(|v| v * scale).collect();
        let a: Vec<f64> = (0..d * d).map(|i| l[i] - l[(i % d) * d + i / d]).collect();
        // Rows: the first n unit vectors, so the reference is the first n rows of exp(A).
        let rows: Vec<f64> = (0..n * d)
            .map(|i| f64::from(u8::from(i % d == i / d)))
            .collect();
        let e = expm(&a, d);
        let tensor = |v: &[f64], shape: [usize; 2]| {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Tensor::<2>::from_data(TensorData::new(v, shape), &device)
        };
        let l_t = tensor(&l, [d, d]);
        let bound = norm_bound(&l_t).expect("bound");
        let (got, products) = exp_rows_counted(tensor(&rows, [n, d]), l_t, bound).expect("series");
        let got = got.into_data().try_to_vec::<f32>().expect("host");
        let err = got
            .iter()
            .zip(&e[..n * d])
            .map(|(g, w)| (f64::from(*g) - w).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-6, "max error {err:.2e}");
        let (m, k) = series_plan(bound);
        assert_eq!(m * k, 17, "the a-priori plan for a bound of 2");
        assert!(products <= 11, "{products} products (the plan: {})", m * k);
    }

    #[test]
    fn the_plan_takes_fewest_products_within_the_tolerance() {
        assert_eq!(series_plan(1.0), (1, 12));
        for bound in [0.0, 0.05, 0.3, 0.9, 1.4, 2.0, 3.7, 10.0] {
            let (m, k) = series_plan(bound);
            let b = bound / m as f64;
            let factorial: f64 = (1..=k + 1).map(|i| i as f64).product();
            let err = m as f64 * b.powi(k as i32 + 1) / factorial * b.exp();
            assert!(
                err <= TRUNCATION_TOLERANCE,
                "{bound}: {m} x {k} leaves {err:.2e}"
            );
            // Never more products than the fixed 12 terms per unit of the bound.
            assert!(
                m * k <= 12 * bound.ceil().max(1.0) as usize,
                "{bound}: {m} x {k}"
            );
        }
    }
}
