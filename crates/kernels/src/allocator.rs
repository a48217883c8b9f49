//! The C allocator told to keep the forward's freed buffers for the next forward.
//!
//! A forward over a few thousand tokens allocates, at every block, buffers of megabytes (the
//! products' outputs, the SwiGLU activations, the bf16 tiles) and frees them a moment later.
//! glibc's malloc serves each of the pool's threads from its own arena, made of 64 MiB heaps,
//! and unmaps a heap as soon as it falls free: the next block maps a new one, and every 4 KiB
//! page of it costs a page fault and the kernel's zeroing. In the RAVEL recipe's pass before
//! training that was about 900 000 page faults, a tenth of both threads' time
//! (docs/history/BENCHMARKS-sessions.md, session 20).
//!
//! `M_TOP_PAD` keeps that much free memory at the top of every heap, and grows heaps by it, so
//! a heap outlives the buffers that made it. The cost is that much memory held per arena (one
//! per thread that allocates: a few hundred MiB at most), which the process reuses instead of
//! returning to the system.

/// Free memory kept at the top of each of malloc's heaps: as large as a heap itself, so that a
/// heap emptied by one block is not unmapped before the next block fills it again.
pub const TOP_PAD_BYTES: usize = 64 << 20;

/// Blocks from this size on are mapped on their own rather than carved from a heap. glibc's
/// default (128 KiB, raised dynamically) hands every large tensor of a forward back to the
/// system when it is freed, so the next one is page-faulted in afresh; kept in the heaps they
/// are reused. Measured with the CLI: the RAVEL recipe's pass 8.0 → 7.6 s, a 2048-row AMX
/// product 1096 → 1644 GFLOP/s (docs/history/BENCHMARKS-sessions.md, session 17).
pub const MMAP_THRESHOLD_BYTES: usize = 256 << 20;

/// Free memory at the top of the main heap from which malloc gives some back to the system.
pub const TRIM_THRESHOLD_BYTES: usize = 1 << 30;

/// The one allocator policy of every program that runs the kernels (the CLI, notebooks,
/// tests): keep freed buffers for the next forward instead of returning them to the system.
/// Sets malloc's top pad ([`TOP_PAD_BYTES`]), mmap threshold ([`MMAP_THRESHOLD_BYTES`]) and trim
/// threshold ([`TRIM_THRESHOLD_BYTES`]), once per process; called when a model is built and
/// by the CLI before it starts. A setting that `GLIBC_TUNABLES` names
/// (`glibc.malloc.top_pad`, `.mmap_threshold`, `.trim_threshold`) is left as the user set it,
/// and where the C library is not glibc nothing is changed. The cost is memory held for reuse:
/// the peak stays what the largest step needs.
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let tunables = std::env::var("GLIBC_TUNABLES").ok();
            let settings = [
                ("glibc.malloc.top_pad", libc::M_TOP_PAD, TOP_PAD_BYTES),
                (
                    "glibc.malloc.mmap_threshold",
                    libc::M_MMAP_THRESHOLD,
                    MMAP_THRESHOLD_BYTES,
                ),
                (
                    "glibc.malloc.trim_threshold",
                    libc::M_TRIM_THRESHOLD,
                    TRIM_THRESHOLD_BYTES,
                ),
            ];
            for (tunable, param, bytes) in settings {
                if !user_set(tunables.as_deref(), tunable) {
                    // SAFETY: `mallopt` only sets one of the allocator's parameters (it takes
                    // the allocator's lock); each of these takes any size that fits its `int`,
                    // as every value above does (at most 1 GiB).
                    unsafe { libc::mallopt(param, bytes as libc::c_int) };
                }
            }
        }
    });
}

/// Whether the user's `GLIBC_TUNABLES` (`name=value` pairs joined by `:`) sets `tunable`.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn user_set(tunables: Option<&str>, tunable: &str) -> bool {
    tunables.is_some_and(|t| {
        t.split(':')
            .any(|pair| pair.split('=').next() == Some(tunable))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_made_by_the_user_is_left_alone() {
        let top_pad = "glibc.malloc.top_pad";
        assert!(user_set(Some("glibc.malloc.top_pad=0"), top_pad));
        assert!(user_set(
            Some("glibc.malloc.arena_max=1:glibc.malloc.top_pad=1048576"),
            top_pad
        ));
        assert!(!user_set(Some("glibc.malloc.arena_max=1"), top_pad));
        assert!(!user_set(Some("glibc.malloc.top_pad_x=1"), top_pad));
        assert!(!user_set(None, top_pad));
        let mmap = "glibc.malloc.mmap_threshold";
        assert!(user_set(Some("glibc.malloc.mmap_threshold=131072"), mmap));
        assert!(!user_set(Some("glibc.malloc.top_pad=0"), mmap));
    }
}
