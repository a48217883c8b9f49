//! `allocator::keep_freed_memory` against the page faults it is there to avoid: a thread that
//! allocates, fills and frees buffers the size of a forward's activations, round after round
//! (as the pool's threads do, block after block), takes new pages from the system only in its
//! first rounds. Its own process, since the setting is the whole process's.
#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: `getrusage` writes the zeroed struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage.ru_minflt
    }
}

/// Faults taken by rounds 10 to 30 of: three 12 MiB buffers allocated, written, freed.
fn faults_of_later_rounds() -> i64 {
    std::thread::spawn(|| {
        let mut before = 0;
        for round in 0..30u8 {
            if round == 10 {
                before = minor_faults();
            }
            let buffers: Vec<Vec<u8>> = (0..3u8)
                .map(|i| {
                    let mut b = Vec::with_capacity(12 << 20);
                    b.resize(12 << 20, i.wrapping_add(round));
                    b
                })
                .collect();
            std::hint::black_box(&buffers);
        }
        minor_faults() - before
    })
    .join()
    .unwrap()
}

#[test]
fn a_thread_reuses_its_freed_buffers_instead_of_faulting_in_new_pages() {
    kernels::allocator::keep_freed_memory();
    let faults = faults_of_later_rounds();
    // 20 rounds of 36 MiB in new pages are ~184 000 faults (glibc's default, measured); reused
    // memory takes none.
    assert!(
        faults < 2_000,
        "{faults} page faults in rounds that could reuse freed memory"
    );
}
