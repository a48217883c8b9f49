//! Orthonormal matrices on the host, in `f64`: torch-style random initialisation and the
//! retraction that keeps trained rotations orthogonal.
//!
//! Matrices are row-major `Vec<f64>` of shape `[rows, cols]`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Standard normal samples from a seeded, portable generator (ChaCha8 + Box–Muller), so that a
/// seed gives the same matrix on every platform and every run.
pub fn gaussian(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1]: avoid ln(0).
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push(r * t.cos());
        out.push(r * t.sin());
    }
    out.truncate(n);
    out
}

/// Orthonormalises the rows of `m` (`[rows, cols]`, `rows <= cols`) in place by Gram–Schmidt
/// with re-orthogonalisation ("twice is enough"), keeping each row's direction: the result is
/// the `Q` of a QR decomposition whose `R` has a positive diagonal. Returns `false` if the rows
/// are (numerically) dependent.
pub fn orthonormalize_rows(m: &mut [f64], rows: usize, cols: usize) -> bool {
    for i in 0..rows {
        let (done, rest) = m.split_at_mut(i * cols);
        let row = &mut rest[..cols];
        for _pass in 0..2 {
            for j in 0..i {
                let q = &done[j * cols..(j + 1) * cols];
                let dot: f64 = q.iter().zip(row.iter()).map(|(a, b)| a * b).sum();
                for (r, qv) in row.iter_mut().zip(q) {
                    *r -= dot * qv;
                }
            }
        }
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm.is_nan() || norm <= 1e-12 {
            return false;
        }
        row.iter_mut().for_each(|v| *v /= norm);
    }
    true
}

/// A random orthogonal `[n, n]` matrix distributed like torch's `nn.init.orthogonal_`: the `Q`
/// of a Gaussian matrix's QR decomposition with the signs fixed by `R`'s diagonal. (Same law,
/// not the same numbers: torch's generator differs. Pass a matrix to reproduce a torch run.)
pub fn random_orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut seed = seed;
    loop {
        // torch orthogonalises the *columns* of the Gaussian; transposing first and
        // orthonormalising rows gives Q^T, whose transpose is the same law. Keep it simple:
        let mut m = gaussian(n * n, seed);
        if orthonormalize_rows(&mut m, n, n) {
            return transpose(&m, n, n);
        }
        // Probability zero for a Gaussian; retry with the next seed rather than fail.
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    }
}

pub fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// `max |M Mᵀ - I|` over the rows of `m`: how far the rows are from orthonormal.
pub fn orthogonality_error(m: &[f32], rows: usize, cols: usize) -> f64 {
    let mut worst = 0f64;
    for i in 0..rows {
        for j in 0..=i {
            let dot: f64 = (0..cols)
                .map(|k| f64::from(m[i * cols + k]) * f64::from(m[j * cols + k]))
                .sum();
            let want = if i == j { 1.0 } else { 0.0 };
            worst = worst.max((dot - want).abs());
        }
    }
    worst
}

/// The orthogonal `[n, n]` matrix nearest in spirit to `previous` whose first `k` rows are
/// `first` (`[k, n]`, orthonormal): `previous` times `k` Householder reflections, the `i`-th
/// mapping row `i` onto `first[i]` while fixing the rows already mapped (both are orthogonal to
/// them). Exactly orthogonal up to rounding, `O(k n²)`. Used to keep a full rotation after
/// training only its first rows.
pub fn complete_rotation(first: &[f64], previous: &[f64], k: usize, n: usize) -> Vec<f64> {
    let mut m = previous[..n * n].to_vec();
    for i in 0..k {
        let mut target = first[i * n..(i + 1) * n].to_vec();
        let norm = target.iter().map(|v| v * v).sum::<f64>().sqrt();
        target.iter_mut().for_each(|v| *v /= norm);
        let w: Vec<f64> = m[i * n..(i + 1) * n]
            .iter()
            .zip(&target)
            .map(|(r, t)| r - t)
            .collect();
        let ww: f64 = w.iter().map(|v| v * v).sum();
        if ww < 1e-30 {
            continue;
        }
        for row in m.chunks_exact_mut(n) {
            let dot: f64 = row.iter().zip(&w).map(|(a, b)| a * b).sum();
            let scale = 2.0 * dot / ww;
            row.iter_mut().zip(&w).for_each(|(r, wv)| *r -= scale * wv);
        }
    }
    m
}
