//! Long work runs on a thread of a rayon pool, the one the packed products then split their
//! work across.
//!
//! A product called from outside a pool (a program's main thread, a notebook kernel's) hands
//! its work to the pool and sleeps until it is done, while the pool's threads go back to sleep
//! between products: two threads woken and put to sleep for each of the hundreds of products
//! of a forward, and on 2 cores a third thread (the caller) contending with them. Called from
//! a pool thread, that thread takes part in the product and the other one joins. Measured on
//! 40 steps of the RAVEL recipe's DAS training (docs/history/BENCHMARKS-sessions.md): 250 000 voluntary and 370 000
//! involuntary context switches became 70 000 and 2 000, system time 7 s → 4.3 s.
//!
//! Each calling thread has a pool of its own, not rayon's global one: a pool thread waiting
//! for its share of a product takes any queued work, so two callers sharing a pool could each
//! find itself running the other's forward (seconds) before returning to its own, and a raised
//! stop flag would wait for it.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::{ThreadPool, ThreadPoolBuilder, Yield};

thread_local! {
    /// This thread's pool: as many threads as rayon's global pool would have
    /// (`RAYON_NUM_THREADS`, else one a logical core).
    static POOL: Option<ThreadPool> = ThreadPoolBuilder::new()
        .thread_name(|i| format!("subspace-{i}"))
        .build()
        .ok();
}

/// Runs `f` on a thread of this thread's pool while this one waits (on this thread if it is a
/// pool thread already, or if no pool could be started).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    POOL.with(|pool| match pool {
        Some(pool) => pool.install(f),
        None => f(),
    })
}

/// [`on_pool`], with the pool's other threads kept awake while `f` runs: each takes the pool's
/// queued work as it comes ([`rayon::yield_now`]) and spins between, instead of going to sleep
/// after every parallel part and being woken for the next, a system call on `f`'s thread each
/// time and a wait for the waking one. For work made of many short parallel parts, as a
/// training step's hundreds of products of a few rows are; the other cores are busy all the
/// while `f` runs, as OpenMP's threads are between parallel regions.
///
/// The helpers are queued before `f` starts, so the other threads take them before any of
/// `f`'s work (rayon's threads steal the oldest job first): none can land under a job of `f`'s
/// that waits, where it would spin forever. One left to `f`'s own thread (taken after `f`, or
/// should it be taken while `f` waits) returns at once; they all stop when `f` returns or
/// unwinds.
pub fn on_pool_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    on_pool(|| {
        let Some(own) = rayon::current_thread_index() else {
            return f();
        };
        let done = AtomicBool::new(false);
        // Raised when `f` returns or unwinds: the scope waits for the helpers.
        struct Raise<'a>(&'a AtomicBool);
        impl Drop for Raise<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        rayon::in_place_scope(|scope| {
            for _ in 1..rayon::current_num_threads() {
                scope.spawn(|_| {
                    if rayon::current_thread_index() == Some(own) {
                        return;
                    }
                    while !done.load(Ordering::Acquire) {
                        if rayon::yield_now() != Some(Yield::Executed) {
                            std::hint::spin_loop();
                        }
                    }
                });
            }
            let _raise = Raise(&done);
            f()
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    #[test]
    fn work_runs_on_a_pool_thread_of_the_callers_own() {
        assert_eq!(
            rayon::current_thread_index(),
            None,
            "tests run outside a pool"
        );
        let (index, name) = super::on_pool(|| {
            let name = std::thread::current().name().map(String::from);
            (rayon::current_thread_index(), name)
        });
        assert!(index.is_some());
        assert!(name.is_some_and(|n| n.starts_with("subspace-")));
        // Nested calls run where they are.
        let nested = super::on_pool(|| {
            let outer = std::thread::current().id();
            super::on_pool(|| std::thread::current().id() == outer)
        });
        assert!(nested);
    }

    /// Nested parallel work of 4 threads, several times over: it finishes (no helper spins
    /// under a job that waits), gives what it gives without helpers, and runs on more than one
    /// thread.
    #[test]
    fn work_with_awake_helpers_finishes_and_is_shared() {
        use rayon::prelude::*;
        use std::collections::HashSet;
        use std::sync::Mutex;

        fn sum(range: std::ops::Range<u64>, seen: &Mutex<HashSet<usize>>) -> u64 {
            if range.end - range.start <= 64 {
                if let Some(i) = rayon::current_thread_index() {
                    seen.lock().unwrap().insert(i);
                }
                // Long enough that idle threads find work to take.
                std::thread::sleep(std::time::Duration::from_micros(20));
                return range.map(|x| x * x % 7).sum();
            }
            let mid = (range.start + range.end) / 2;
            let (a, b) = rayon::join(|| sum(range.start..mid, seen), || sum(mid..range.end, seen));
            a + b
        }
        let expected: u64 = (0..100_000u64).map(|x| x * x % 7).sum();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for _ in 0..20 {
            let seen = Mutex::new(HashSet::new());
            let (total, chunks) = pool.install(|| {
                super::on_pool_awake(|| {
                    let chunks: u64 = (0..1000u64).into_par_iter().map(|x| x % 3).sum();
                    (sum(0..100_000, &seen), chunks)
                })
            });
            assert_eq!(total, expected);
            assert_eq!(chunks, (0..1000u64).map(|x| x % 3).sum::<u64>());
            assert!(seen.lock().unwrap().len() > 1, "only one thread worked");
        }
    }

    /// A panic inside the work reaches the caller, and the helpers stop: the call returns (within
    /// a minute; it would hang if they spun on).
    #[test]
    fn a_panic_in_work_with_awake_helpers_reaches_the_caller() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| super::on_pool_awake(|| -> u32 { panic!("in the work") }))
            }));
            tx.send(caught.is_err()).unwrap();
        });
        let returned = rx.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(returned, Ok(true), "the call did not return the panic");
    }
}
