//! Output buffers filled by parallel tasks without first zeroing them on one thread.
//!
//! `vec![0.0; n]` of a few megabytes is a `memset` on the calling thread (the CLI keeps large
//! blocks on the heap, where `calloc` cannot hand out fresh zero pages), while the pool's other
//! thread waits; the kernels then overwrite every value anyway. Here each task zeroes only its
//! own chunk, in cache, just before filling it.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// `len` values, chunk `i` (of `chunk` values; the last may be shorter) written by
/// `fill(i, chunk)` on rayon's threads, each chunk zero before `fill` sees it.
pub(crate) fn filled_in_parallel<T: Copy + Default + Send + Sync>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    let fill_one = |i: usize, c: &mut [MaybeUninit<T>]| {
        for x in c.iter_mut() {
            x.write(T::default());
        }
        // SAFETY: every element of `c` was initialised just above, and `MaybeUninit<T>` has
        // `T`'s layout.
        let c = unsafe { &mut *(std::ptr::from_mut::<[MaybeUninit<T>]>(c) as *mut [T]) };
        fill(i, c);
    };
    let spare = &mut v.spare_capacity_mut()[..len];
    if len <= chunk {
        fill_one(0, spare);
    } else {
        spare
            .par_chunks_mut(chunk.max(1))
            .enumerate()
            .for_each(|(i, c)| fill_one(i, c));
    }
    // SAFETY: the chunks cover `0..len`, and each task initialised its chunk (a panic in
    // `fill` unwinds past this line, leaving `v` empty).
    unsafe { v.set_len(len) };
    v
}

#[cfg(test)]
mod tests {
    use super::filled_in_parallel;

    /// Every chunk is handed to `fill` zeroed and with its own index, the last one short.
    #[test]
    fn each_chunk_is_zeroed_then_filled_with_its_index() {
        for (len, chunk) in [(0, 4), (3, 4), (4, 4), (10, 4), (100_000, 16_384)] {
            let v: Vec<u32> = filled_in_parallel(len, chunk, |i, c| {
                assert!(c.iter().all(|&x| x == 0), "chunk {i} not zeroed");
                for (j, x) in c.iter_mut().enumerate() {
                    if j % 2 == 0 {
                        *x = (i * chunk + j) as u32;
                    }
                }
            });
            assert_eq!(v.len(), len);
            for (k, &x) in v.iter().enumerate() {
                let want = if (k % chunk) % 2 == 0 { k as u32 } else { 0 };
                assert_eq!(x, want, "len {len}, chunk {chunk}, value {k}");
            }
        }
    }
}
