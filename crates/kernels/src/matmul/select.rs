//! Which compiled body of the products runs: detected once from the CPU, or named by
//! `SUBSPACE_KERNELS`. Asking for a body this CPU lacks prints one warning that names the body
//! that runs instead.

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
    /// `SUBSPACE_KERNELS=amx|avx512bf16|avx512|avx2|portable` names if the CPU has it (to trade
    /// exactness for speed, to compare them or to rule one out). A name this CPU cannot run, or
    /// no body has, is reported once on stderr with the body that runs instead.
    pub fn best() -> Kernels {
        use std::sync::OnceLock;
        static BEST: OnceLock<Kernels> = OnceLock::new();
        *BEST.get_or_init(|| {
            let available = Kernels::available();
            let exact = available.iter().copied().find(|k| k.is_exact());
            let default = exact.unwrap_or(Kernels::Portable);
            let Ok(name) = std::env::var("SUBSPACE_KERNELS") else {
                return default;
            };
            match available.iter().copied().find(|k| k.name() == name) {
                Some(asked) => asked,
                None => {
                    eprintln!("{}", Kernels::not_here_warning(&name, default));
                    default
                }
            }
        })
    }

    /// What [`Kernels::best`] says when `SUBSPACE_KERNELS` names a body that does not run here.
    pub fn not_here_warning(name: &str, instead: Kernels) -> String {
        let here: Vec<&str> = Kernels::available().iter().map(|k| k.name()).collect();
        let known = ["amx", "avx512bf16", "avx512", "avx2", "portable"];
        let why = if known.contains(&name) {
            "this CPU cannot run it"
        } else {
            "no kernel body has that name"
        };
        format!(
            "warning: SUBSPACE_KERNELS={name}: {why} (this CPU runs {}); using {} instead",
            here.join(", "),
            instead.name()
        )
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
    pub(super) fn assert_runs_here(self) {
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

    pub(super) fn is_avx512(self) -> bool {
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
    pub(super) fn max_tokens(self) -> usize {
        if self.is_avx512() { 16 } else { 8 }
    }

    /// `m` token rows cut into the fewest chunks of at most [`Self::max_tokens`], of near-equal
    /// sizes (9 rows are 9, not 8 + 1: each chunk streams the whole matrix once).
    pub(super) fn token_chunks(self, m: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        let chunks = m.div_ceil(self.max_tokens()).max(1);
        (0..chunks).map(move |c| c * m / chunks..(c + 1) * m / chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::Kernels;

    /// A body the CPU lacks and a name no body has are told apart, and the warning names what
    /// this CPU runs and what runs instead.
    #[test]
    fn asking_for_a_body_this_cpu_lacks_names_what_runs_instead() {
        let here: Vec<&str> = Kernels::available().iter().map(|k| k.name()).collect();
        let missing = ["amx", "avx512bf16", "avx512", "avx2"]
            .into_iter()
            .find(|name| !here.contains(name));
        if let Some(name) = missing {
            let w = Kernels::not_here_warning(name, Kernels::Portable);
            assert!(w.contains("this CPU cannot run it"), "{w}");
            assert!(w.contains("using portable instead"), "{w}");
        }
        let w = Kernels::not_here_warning("avx1024", Kernels::Avx2);
        assert!(w.contains("no kernel body has that name"), "{w}");
        assert!(
            w.contains(&format!("this CPU runs {}", here.join(", "))),
            "{w}"
        );
        assert!(w.contains("using avx2 instead"), "{w}");
    }
}
