//! A vectorisable `exp` for `f32`.

/// `e^x` for `f32` (Cephes' `expf`: relative error about 1e-7): `x = n·ln 2 + r`,
/// `|r| ≤ ln 2 / 2`, a degree-6 polynomial for `e^r`, `2^n` built in the exponent bits.
/// Saturates near 1.2e-38 below −87.3 and near 2.6e38 above 88.37 (no branches, so that a
/// loop of it vectorises; libm's `expf` is a call per element).
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.37);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    // `2^n` from `n`'s bits, without a float-to-int cast: Rust's `as` saturates and maps NaN
    // to 0, which LLVM cannot vectorise (it was a scalar `vcvttss2si` and branches per
    // element inside every vectorised loop of this `exp`). Adding `1.5 · 2^23` puts the
    // integer `n` (here in −126..=127) in the low bits of the sum's mantissa, exactly.
    let n_bits = (n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000);
    y * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::exp;

    #[test]
    fn exp_matches_libm_to_a_few_ulps() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (f64::from(exp(x)), f64::from(x).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        // Saturated: a sigmoid of ±200 is 0 or 1 to f32 either way.
        assert!(exp(-200.0) < 1.3e-38);
        assert!(exp(200.0) > 1e38);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    /// `2^n` built from the bits of `n + 1.5·2^23` is the textbook `(n as i32 + 127) << 23`
    /// at every `n` the clamp allows, so `exp` is unchanged to the bit by leaving out the cast.
    #[test]
    fn the_power_of_two_matches_the_integer_construction() {
        for n in -126..=127i32 {
            let nf = n as f32;
            let bits = (nf + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000);
            let built = f32::from_bits(bits.wrapping_add(127) << 23);
            assert_eq!(built, f32::from_bits(((n + 127) as u32) << 23), "n = {n}");
            assert_eq!(f64::from(built), 2f64.powi(n), "n = {n}");
        }
    }
}
