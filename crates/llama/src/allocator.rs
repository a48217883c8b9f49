//! The C allocator told to keep the forward's freed buffers for the next forward.
//!
//! A forward over a few thousand tokens allocates, at every block, buffers of megabytes (the
//! products' outputs, the SwiGLU activations, the bf16 tiles) and frees them a moment later.
//! glibc's malloc serves each of the pool's threads from its own arena, made of 64 MiB heaps,
//! and unmaps a heap as soon as it falls free: the next block maps a new one, and every 4 KiB
//! page of it costs a page fault and the kernel's zeroing. In the RAVEL recipe's pass before
//! training that was about 900 000 page faults, a tenth of both threads' time (BENCHMARKS.md,
//! session 20).
//!
//! `M_TOP_PAD` keeps that much free memory at the top of every heap, and grows heaps by it, so
//! a heap outlives the buffers that made it. The cost is that much memory held per arena (one
//! per thread that allocates: a few hundred MiB at most), which the process reuses instead of
//! returning to the system.

/// Free memory kept at the top of each of malloc's heaps: as large as a heap itself, so that a
/// heap emptied by one block is not unmapped before the next block fills it again.
pub const TOP_PAD_BYTES: usize = 64 << 20;

/// Asks malloc to keep [`TOP_PAD_BYTES`] free at the top of its heaps, once per process; called
/// when a model is built. Where `GLIBC_TUNABLES` sets `glibc.malloc.top_pad`, or the C library
/// is not glibc, malloc is left as it is.
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if !user_set_top_pad(std::env::var("GLIBC_TUNABLES").ok().as_deref()) {
            // SAFETY: `mallopt` only sets one of the allocator's parameters; `M_TOP_PAD` takes
            // any size that fits its `int`, which `TOP_PAD_BYTES` does.
            unsafe { libc::mallopt(libc::M_TOP_PAD, TOP_PAD_BYTES as libc::c_int) };
        }
    });
}

/// Whether the user's `GLIBC_TUNABLES` (`name=value` pairs joined by `:`) sets the top pad.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn user_set_top_pad(tunables: Option<&str>) -> bool {
    tunables.is_some_and(|t| {
        t.split(':')
            .any(|pair| pair.split('=').next() == Some("glibc.malloc.top_pad"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_top_pad_set_by_the_user_is_left_alone() {
        assert!(user_set_top_pad(Some("glibc.malloc.top_pad=0")));
        assert!(user_set_top_pad(Some(
            "glibc.malloc.arena_max=1:glibc.malloc.top_pad=1048576"
        )));
        assert!(!user_set_top_pad(Some("glibc.malloc.arena_max=1")));
        assert!(!user_set_top_pad(Some("glibc.malloc.top_pad_x=1")));
        assert!(!user_set_top_pad(None));
    }
}
