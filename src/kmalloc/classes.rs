//! The kmalloc size classes and the O(1) map from a request to its class.
//!
//! Classes: 8 to 64 in steps of 8; 64 to 128 in steps of 16; 128 to 256 in steps of 16
//! (eight per power of two: small requests are the most common, and a 16-byte step there
//! halves the rounding loss of requests between 129 and 256 bytes — on the benchmark's
//! random fill of 1–200-byte requests, heap efficiency 83.2 % → 85.9 %); then four per
//! power of two — 2^k, 1.25·2^k, 1.5·2^k, 1.75·2^k — up to 1 KiB; then five per power of
//! two — 2^k, 8/7, 4/3, 8/5 and 16/9 of it, rounded down to 8 bytes — up to 1 MiB. Those
//! divide a slab of 2^(k+3) or 2^(k+4) bytes into 7, 6, 5 or 9 objects with nothing left
//! over, where 1.25, 1.5 and 1.75 leave up to 12.5 % of every slab unused (kmalloc-28672:
//! one object per 32 KiB). On the benchmark's random fill of 1–30 000-byte requests this
//! took heap efficiency from 79.0 % to 82.7 %, together with the order rule of
//! `slab::layout` and the smaller arrays of large objects (`slab::array_limits`).
//!
//! A request of n ≥ 64 bytes lands in a class at most a fifth above a class below n, so
//! the rounding waste (class − n) / class stays under 20 % (worst: 65 → 80, 18.75 %;
//! 257 → 320, 19.7 %), against up to 50 % for Linux's powers of two plus 96 and 192.
//! Below 64 bytes the waste is under 8 bytes.
//!
//! Each class's objects are aligned to the largest power of two dividing its size
//! (capped at 4096), so a request for alignment `a` goes to the first class ≥ n that is a
//! multiple of `a`.

/// Largest kmalloc class; bigger requests go to the page allocator.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Gfp, kmalloc::KMALLOC_MAX};
/// assert!(kmem.kmalloc_cache_for(KMALLOC_MAX, 8, Gfp::KERNEL).is_some());
/// assert!(kmem.kmalloc_cache_for(KMALLOC_MAX + 1, 8, Gfp::KERNEL).is_none());
/// let big = kmem.kmalloc(KMALLOC_MAX + 1, Gfp::KERNEL)?; // a 2 MiB page block
/// unsafe { kmem.kfree(big.as_ptr()) }?; // SAFETY: big is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub const KMALLOC_MAX: usize = 1 << 20;

/// Number of classes.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::kmalloc::NR_CLASSES;
/// let mut caches = 0;
/// kmem.for_each_cache(|c| caches += usize::from(c.name().as_str().starts_with("kmalloc-")));
/// assert_eq!(caches, NR_CLASSES); // one cache per class in the one (Normal) zone
/// ```
pub const NR_CLASSES: usize = 7 + 4 + 8 + 4 * 2 + 5 * 10 + 1;

/// Class sizes, ascending.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::Gfp;
/// use kmem::kmalloc::CLASS_SIZES;
/// let class = *CLASS_SIZES.iter().find(|&&s| s >= 100).unwrap();
/// let p = kmem.kmalloc(100, Gfp::KERNEL)?;
/// assert_eq!(unsafe { kmem.ksize(p.as_ptr()) }?, class as usize); // SAFETY: p is live.
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub const CLASS_SIZES: [u32; NR_CLASSES] = class_sizes();

const fn class_sizes() -> [u32; NR_CLASSES] {
    let mut out = [0u32; NR_CLASSES];
    let mut i = 0;
    while i < 7 {
        out[i] = 8 * (i as u32 + 1);
        i += 1;
    }
    let mut k = 6;
    while k < 20 {
        let p = 1u32 << k;
        // Eight steps between 128 and 256, five from 1024, four elsewhere.
        let steps = if k == 7 {
            8
        } else if k >= 10 {
            5
        } else {
            4
        };
        let mut j = 0;
        while j < steps {
            out[i] = if k >= 10 {
                [p, p * 8 / 7, p * 4 / 3, p * 8 / 5, p * 16 / 9][j as usize] / 8 * 8
            } else {
                p + j * p / steps
            };
            i += 1;
            j += 1;
        }
        k += 1;
    }
    out[i] = 1 << 20;
    out
}

/// Alignment of objects in class `c`.
pub const fn class_align(c: usize) -> usize {
    let s = CLASS_SIZES[c];
    let a = 1usize << s.trailing_zeros();
    if a > 4096 { 4096 } else { a }
}

/// Requests up to this size are resolved by one table load. Every class up to 4 KiB is a
/// multiple of 8, so an 8-byte step resolves them all; 4 KiB keeps page-sized requests —
/// common in kernels — on the one-load path for 513 bytes of table (callgrind, hot pair
/// at 3000 B: 156 → 143 instructions).
const SMALL_MAX: usize = 4096;

/// Log2 of [`SMALL_MAX`]: [`LARGE_TABLE`] starts at the power of two above it.
const SMALL_LOG: usize = SMALL_MAX.trailing_zeros() as usize;

/// Sixteenths of the powers of two from [`SMALL_MAX`] to [`KMALLOC_MAX`].
const LARGE_LEN: usize = 16 * (KMALLOC_MAX.trailing_zeros() as usize - SMALL_LOG);

/// `SMALL_TABLE[(n + 7) / 8]` is the class of a request of n ≤ [`SMALL_MAX`] bytes.
///
/// The tables are `const`, not `static`: the allocation paths are generic, so they are
/// compiled in the crate that names the `Arch`, where a `static` of this crate is reached
/// through the GOT in position-independent (hosted) builds — one more dependent load per
/// allocation — while a const's copy in that crate is addressed directly.
const SMALL_TABLE: [u8; SMALL_MAX / 8 + 1] = small_table();

const fn small_table() -> [u8; SMALL_MAX / 8 + 1] {
    let mut t = [0u8; SMALL_MAX / 8 + 1];
    let mut i = 0;
    let mut c = 0;
    while i < t.len() {
        let n = if i == 0 { 1 } else { i * 8 };
        while (CLASS_SIZES[c] as usize) < n {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

/// Sixteenths of the powers of two above [`SMALL_MAX`]: `LARGE_TABLE[16 (k − 12) + j]` is
/// the class of the smallest request in the j-th sixteenth of (2^k, 2^(k+1)]. Classes
/// there are more than a sixteenth of 2^k apart, so a sixteenth holds at most one class
/// boundary: the class of any request in it is the entry or the next class.
const LARGE_TABLE: [u8; LARGE_LEN] = large_table();

const fn large_table() -> [u8; LARGE_LEN] {
    let mut t = [0u8; LARGE_LEN];
    let mut i = 0;
    let mut c = 0;
    while i < t.len() {
        let k = SMALL_LOG + i / 16;
        let n = (1 << k) + (i % 16) * (1 << (k - 4)) + 1;
        while (CLASS_SIZES[c] as usize) < n {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

/// The class of a request of 1 ≤ `size` ≤ [`KMALLOC_MAX`] bytes at alignment ≤ 8: one
/// table load up to [`SMALL_MAX`]; above, a leading-zero count, a table load and a
/// compare.
#[inline(always)]
pub(crate) fn class_of(size: usize) -> usize {
    debug_assert!((1..=KMALLOC_MAX).contains(&size));
    let c = if size <= SMALL_MAX {
        SMALL_TABLE[size.div_ceil(8)] as usize
    } else {
        let k = usize::BITS - 1 - (size - 1).leading_zeros(); // 2^k < size ≤ 2^(k+1)
        let sixteenth = ((size - 1) >> (k - 4)) & 15;
        let c = LARGE_TABLE[16 * (k as usize - SMALL_LOG) + sixteenth] as usize;
        c + usize::from((CLASS_SIZES[c] as usize) < size)
    };
    // SAFETY: both tables hold indices into CLASS_SIZES (the const fns that build them
    // index it with each entry, so a wrong one would not compile). The step to the next
    // class is taken only when CLASS_SIZES[c] < size, so never from the last class,
    // whose size is KMALLOC_MAX: any larger size indexes beyond LARGE_TABLE and panics
    // before this line. Said here, the callers' indexing by the class needs no bounds
    // check.
    unsafe { core::hint::assert_unchecked(c < NR_CLASSES) };
    c
}

/// The class that serves `size` bytes at alignment `align` (a power of two), or `None`
/// when the request must go to the page allocator.
#[inline]
pub fn class_for(size: usize, align: usize) -> Option<usize> {
    if size > KMALLOC_MAX {
        return None;
    }
    let c = class_of(size.max(1));
    if align <= 8 {
        return Some(c);
    }
    (c..NR_CLASSES).find(|&c| class_align(c) >= align)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_spans_8_to_1mib() {
        assert_eq!(CLASS_SIZES[0], 8);
        assert_eq!(CLASS_SIZES[NR_CLASSES - 1] as usize, KMALLOC_MAX);
        assert!(CLASS_SIZES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        for size in 1..=KMALLOC_MAX {
            let c = class_for(size, 1).unwrap();
            assert!(CLASS_SIZES[c] as usize >= size, "{size}");
            assert!(c == 0 || (CLASS_SIZES[c - 1] as usize) < size, "{size}");
        }
        assert_eq!(class_for(KMALLOC_MAX + 1, 1), None);
        assert_eq!(class_for(0, 1), Some(0));
    }

    #[test]
    fn waste_is_at_most_25_percent_from_64_bytes() {
        let mut worst = 0.0f64;
        for size in 64..=KMALLOC_MAX {
            let c = CLASS_SIZES[class_for(size, 1).unwrap()] as f64;
            worst = worst.max((c - size as f64) / c);
        }
        assert!(worst <= 0.20, "worst waste {worst}");
    }

    #[test]
    fn aligned_requests_get_aligned_classes() {
        for align in [16, 32, 64, 128, 256, 512, 1024, 2048, 4096] {
            for size in [1, 8, 63, 100, 1000, 5000, 70_000] {
                let c = class_for(size, align).unwrap();
                assert!(CLASS_SIZES[c] as usize >= size);
                assert!(class_align(c) >= align);
                assert_eq!(CLASS_SIZES[c] as usize % align, 0);
            }
        }
    }
}
