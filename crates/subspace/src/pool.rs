//! Long work runs on a thread of a rayon pool, the one the packed products then split their
//! work across.
//!
//! A product called from outside a pool (a program's main thread, a notebook kernel's) hands
//! its work to the pool and sleeps until it is done, while the pool's threads go back to sleep
//! between products: two threads woken and put to sleep for each of the hundreds of products
//! of a forward, and on 2 cores a third thread (the caller) contending with them. Called from
//! a pool thread, that thread takes part in the product and the other one joins. Measured on
//! 40 steps of the RAVEL recipe's DAS training (BENCHMARKS.md): 250 000 voluntary and 370 000
//! involuntary context switches became 70 000 and 2 000, system time 7 s → 4.3 s.
//!
//! Each calling thread has a pool of its own, not rayon's global one: a pool thread waiting
//! for its share of a product takes any queued work, so two callers sharing a pool could each
//! find itself running the other's forward (seconds) before returning to its own, and a raised
//! stop flag would wait for it.

use rayon::{ThreadPool, ThreadPoolBuilder};

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
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    POOL.with(|pool| match pool {
        Some(pool) => pool.install(f),
        None => f(),
    })
}

#[cfg(test)]
mod tests {
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
}
