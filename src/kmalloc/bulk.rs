//! Bulk allocation and free for kmalloc sizes and caches (SLUB's `kmem_cache_alloc_bulk`
//! and `kmem_cache_free_bulk`): all or nothing on allocation; on free, every object that
//! is a live block of ours is freed and every other pointer is refused and reported, so
//! one bad pointer in a batch loses nothing else.

use super::{CacheRef, Kmem, ZERO_SIZE_PTR, class_for};
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::slab::{SlabCache, SlabError};

impl<A: Arch> Kmem<A> {
    /// Fills `out` with blocks of `size` bytes (aligned to 8) from one kmalloc class, all
    /// or nothing: on failure `out` holds nothing to free. Sizes past the largest class
    /// are refused with [`SlabError::TooLarge`].
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let mut blocks = [core::ptr::null_mut(); 32];
    /// kmem.kmalloc_bulk(64, Gfp::KERNEL, &mut blocks)?;
    /// assert!(blocks.iter().all(|p| !p.is_null()));
    /// // SAFETY: every block came from kmalloc_bulk above and is not used again.
    /// unsafe { kmem.kfree_bulk(&blocks) }?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn kmalloc_bulk(
        &self,
        size: usize,
        gfp: Gfp,
        out: &mut [*mut u8],
    ) -> Result<(), SlabError> {
        let cache = class_for(size.max(1), 8)
            .and_then(|class| self.kmalloc_cache(gfp, class))
            .ok_or(SlabError::TooLarge { size })?;
        cache.alloc_bulk(self, gfp, out)
    }

    /// Frees every block of `objs`, as [`Kmem::kfree`] would one by one but entering
    /// this CPU's magazines once per run of blocks of one cache. Null and
    /// [`ZERO_SIZE_PTR`] are skipped. A pointer that is not a live block of ours is
    /// refused and logged, and the others are still freed; the first refusal is
    /// returned.
    ///
    /// # Safety
    /// Every pointer is null, [`ZERO_SIZE_PTR`], or a block this `Kmem`'s kmalloc family
    /// returned and that has not been freed since, and appears once; nothing uses the
    /// blocks after this call.
    ///
    /// # Examples
    /// See [`Kmem::kmalloc_bulk`].
    pub unsafe fn kfree_bulk(&self, objs: &[*mut u8]) -> Result<(), SlabError> {
        self.free_bulk_checked(objs, None, "kfree_bulk")
    }

    /// Frees `objs`, each of which must belong to `expected` when given: runs of one
    /// cache's live objects on its fast path, anything else the checked way.
    pub(super) fn free_bulk_checked(
        &self,
        objs: &[*mut u8],
        expected: Option<&SlabCache<A>>,
        who: &str,
    ) -> Result<(), SlabError> {
        let frame_of = |addr: usize| self.pages.frame(A::virt_to_phys(addr));
        let mut first = Ok(());
        let mut i = 0;
        while i < objs.len() {
            let addr = A::untag(objs[i] as usize);
            if expected.is_none() && (addr == 0 || objs[i] == ZERO_SIZE_PTR) {
                i += 1;
                continue;
            }
            let cache = frame_of(addr).and_then(super::free::slab_owner::<A>);
            if let Some(cache) = cache
                && expected.is_none_or(|e| core::ptr::eq(e, cache))
            {
                let n = cache.free_run(self, &objs[i..], frame_of);
                if n > 0 {
                    i += n;
                    continue;
                }
            }
            if let Err(e) = self.free_checked(addr, expected) {
                log::error!("{who}: {e}");
                if first.is_ok() {
                    first = Err(e);
                }
            }
            i += 1;
        }
        first
    }
}

impl<A: Arch> CacheRef<'_, A> {
    /// Fills `out` with objects of this cache (constructed, if it has a constructor), all
    /// or nothing: on failure `out` holds nothing to free.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabFlags};
    /// let c = kmem.cache_create("packets", 256, 8, SlabFlags::NONE, None, None)?;
    /// let mut objs = [core::ptr::null_mut(); 100];
    /// c.alloc_bulk(Gfp::KERNEL, &mut objs)?;
    /// // SAFETY: every object came from this cache above and is not used again.
    /// unsafe { c.free_bulk(&objs) }?;
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn alloc_bulk(&self, gfp: Gfp, out: &mut [*mut u8]) -> Result<(), SlabError> {
        self.cache.alloc_bulk(self.kmem, gfp, out)
    }

    /// Frees every object of `objs` to this cache, entering this CPU's magazines once for
    /// the batch. A pointer that is not a live object of this cache is refused and
    /// logged, and the others are still freed; the first refusal is returned.
    ///
    /// # Safety
    /// Every pointer is an object this cache's allocation returned and that has not been
    /// freed since, and appears once; nothing uses the objects after this call.
    ///
    /// # Examples
    /// See [`CacheRef::alloc_bulk`].
    pub unsafe fn free_bulk(&self, objs: &[*mut u8]) -> Result<(), SlabError> {
        self.kmem
            .free_bulk_checked(objs, Some(self.cache), "cache free_bulk")
    }
}
