//! The kmalloc family's allocation side: `kmalloc`, `kzalloc`, `kcalloc`,
//! `kmalloc_aligned` and the `GlobalAlloc` entry `kmalloc_or_null` — a size class's cache
//! through its CPU fast path, or the general path (sampling, zero-size, large blocks
//! straight from the page allocator).
//!
//! No lock here: the fast path enters the CPU's slot of a cache lock-free; the slow paths
//! take the cache's locks (see `slab`) or the page allocator's.

use core::alloc::Layout;
use core::ptr::NonNull;

use super::classes::{class_for, class_of};
use super::{KMALLOC_MAX, Kmem, LARGE_OWNER, NR_CLASSES, ZERO_SIZE_PTR};
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::mm::PageError;
use crate::mm::buddy::MAX_ORDER;
use crate::mm::memmap::PAGE_SIZE;
use crate::slab::{SlabCache, SlabError};

impl<A: Arch> Kmem<A> {
    #[inline]
    pub(super) fn kmalloc_cache(&self, gfp: Gfp, class: usize) -> Option<&SlabCache<A>> {
        let caches = self.caches_at(self.serving[gfp.zone().index()]);
        if class < NR_CLASSES
            && let Some(caches) = caches
        {
            return Some(&caches[class]);
        }
        None
    }

    /// The kmalloc cache serving `size` bytes at `align` with `gfp`, if a slab serves it.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let c = kmem.kmalloc_cache_for(100, 8, Gfp::KERNEL).unwrap();
    /// assert_eq!(c.name().as_str(), "kmalloc-112");
    /// let c = kmem.kmalloc_cache_for(100, 128, Gfp::KERNEL).unwrap();
    /// assert_eq!(c.name().as_str(), "kmalloc-128"); // the first class aligned to 128
    /// assert!(kmem.kmalloc_cache_for(2 << 20, 8, Gfp::KERNEL).is_none()); // pages
    /// ```
    pub fn kmalloc_cache_for(&self, size: usize, align: usize, gfp: Gfp) -> Option<&SlabCache<A>> {
        self.kmalloc_cache(gfp, class_for(size, align)?)
    }

    /// Allocates `size` bytes aligned to 8.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(100, Gfp::KERNEL)?;
    /// assert_eq!(p.as_ptr() as usize % 8, 0);
    /// // SAFETY: p is a live block of at least 100 bytes.
    /// unsafe { p.as_ptr().write_bytes(0x5a, 100) };
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    #[inline]
    #[track_caller]
    pub fn kmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        self.kmalloc_aligned(size, 8, gfp)
    }

    /// Allocates `size` zeroed bytes.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let p = kmem.kzalloc(256, kmem::Gfp::KERNEL)?;
    /// // SAFETY: p is a live block of at least 256 bytes.
    /// let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 256) };
    /// assert!(bytes.iter().all(|&b| b == 0));
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    #[track_caller]
    pub fn kzalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        self.kmalloc(size, gfp | Gfp::ZERO)
    }

    /// Allocates `n × size` zeroed bytes; an overflowing product is an error.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabError};
    /// let table = kmem.kcalloc(64, size_of::<u64>(), Gfp::KERNEL)?; // 64 zeroed entries
    /// let huge = kmem.kcalloc(usize::MAX / 2, 4, Gfp::KERNEL);
    /// assert_eq!(huge, Err(SlabError::Overflow));
    /// unsafe { kmem.kfree(table.as_ptr()) }?; // SAFETY: table is not used again.
    /// # Ok::<(), SlabError>(())
    /// ```
    #[track_caller]
    pub fn kcalloc(&self, n: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        let bytes = n.checked_mul(size).ok_or(SlabError::Overflow)?;
        self.kzalloc(bytes, gfp)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two). Alignments up to 4 KiB
    /// come from the caches; larger ones, and sizes past 1 MiB, from the page allocator.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let ring = kmem.kmalloc_aligned(1000, 256, Gfp::KERNEL)?; // a NIC descriptor ring
    /// assert_eq!(ring.as_ptr() as usize % 256, 0);
    /// unsafe { kmem.kfree(ring.as_ptr()) }?; // SAFETY: ring is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn kmalloc_aligned(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        let size = Self::granule_rounded(size);
        if let Some(cache) = self.fast_cache(size, align, gfp) {
            return match cache.alloc_fast(self, gfp) {
                Some(obj) => Ok(cache.hand_out(obj)),
                None => self.alloc_sampled_or(cache, size, align, gfp),
            };
        }
        self.kmalloc_general(size, align, gfp)
    }

    /// [`Kmem::kmalloc_aligned`] for `GlobalAlloc`: null on failure. Its slow path
    /// returns a pointer too, so the fast path needs no stack frame and no result in
    /// memory: it ends in a return or a tail call. A `Layout`'s alignment is a power of
    /// two, which spares the fast path that check.
    #[inline(always)]
    pub(crate) fn kmalloc_or_null(&self, l: Layout, gfp: Gfp) -> *mut u8 {
        let (size, align) = (Self::granule_rounded(l.size()), l.align());
        if let Some(cache) = self.fast_cache_pow2(size, align, gfp)
            && let Some(obj) = cache.alloc_fast(self, gfp)
        {
            return cache.hand_out(obj).as_ptr();
        }
        self.kmalloc_or_null_slow(size, align, gfp)
    }

    /// The cache of the allocation fast paths: 1 byte to 1 MiB at alignment 1, 2, 4 or 8.
    #[inline(always)]
    fn fast_cache(&self, size: usize, align: usize, gfp: Gfp) -> Option<&SlabCache<A>> {
        if align.is_power_of_two() {
            return self.fast_cache_pow2(size, align, gfp);
        }
        None
    }

    /// [`Kmem::fast_cache`] for an alignment known to be a power of two.
    #[inline(always)]
    fn fast_cache_pow2(&self, size: usize, align: usize, gfp: Gfp) -> Option<&SlabCache<A>> {
        if size.wrapping_sub(1) < KMALLOC_MAX && align <= 8 {
            return self.kmalloc_cache(gfp, class_of(size));
        }
        None
    }

    #[inline(never)]
    pub(super) fn kmalloc_or_null_slow(&self, size: usize, align: usize, gfp: Gfp) -> *mut u8 {
        self.kmalloc_aligned(size, align, gfp)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    /// Every request the fast path of [`Kmem::kmalloc_aligned`] does not take.
    #[inline(never)]
    fn kmalloc_general(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        if !align.is_power_of_two() {
            return Err(SlabError::BadAlign { align });
        }
        if size == 0 {
            // SAFETY: ZERO_SIZE_PTR is not null.
            return Ok(unsafe { NonNull::new_unchecked(ZERO_SIZE_PTR) });
        }
        match class_for(size, align) {
            Some(c) => match self.kmalloc_cache(gfp, c) {
                Some(cache) => self.alloc_sampled_or(cache, size, align, gfp),
                None => Err(SlabError::Page(PageError::OutOfMemory {
                    order: 0,
                    zone: gfp.zone(),
                })),
            },
            None => self.alloc_large(size, align, gfp),
        }
    }

    #[cold]
    fn alloc_large(&self, size: usize, align: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        let too_large = SlabError::TooLarge { size };
        let frames = size.max(align).div_ceil(PAGE_SIZE as usize);
        let order = frames
            .checked_next_power_of_two()
            .ok_or(too_large)?
            .trailing_zeros();
        if order > MAX_ORDER {
            return Err(too_large);
        }
        let pa = self.alloc_pages(order, gfp)?;
        self.pages
            .frame(pa)
            .expect("a fresh block is managed")
            .set_owner(LARGE_OWNER);
        // SAFETY: a managed frame never maps to address 0.
        let block = unsafe { NonNull::new_unchecked(A::phys_to_virt(pa) as *mut u8) };
        Ok(Self::hand_out_large(block, (PAGE_SIZE as usize) << order))
    }
}
