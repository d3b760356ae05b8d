//! `Kmem` as what its caches grow from (`slab::Backing`): page blocks through
//! `alloc_pages`, which, when the page allocator finds none, takes back what every cache
//! holds free and tries again; and fault injection (`set_failslab`), which makes chosen
//! slab allocations fail.
//!
//! Locks: reclaim may run with a cache's node lock and CPU slot held, or the registry
//! (a slab growing, `cache_create`), so it only tries the registry and every slab lock
//! (`SlabCache::reclaim`). The fault-injection state (`fail_cache`) is a leaf lock.

use super::Kmem;
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::mm::numa::NodeId;
use crate::mm::{PageAllocator, PageError, PhysAddr};
use crate::slab::{Backing, CacheName};
use core::sync::atomic::Ordering::Relaxed;

impl<A: Arch> Kmem<A> {
    /// Makes every `every`-th slab allocation (of `cache` only, if named) fail with
    /// [`SlabError::Injected`](crate::SlabError::Injected); 0 stops.
    ///
    /// Fault injection is for the error paths of callers that can take a failure, so it
    /// spares two kinds of allocation, which it neither fails nor counts:
    /// - those with [`Gfp::NOFAIL`], among them kmem's own (a cache's structure in
    ///   `cache_create`), so that injection never breaks the allocator itself;
    /// - those through the Rust allocator interfaces — `GlobalAlloc` (a kernel's
    ///   [`GlobalKmem`](super::GlobalKmem), `hosted::Heap`) and `Allocator` — whose
    ///   collections abort on a null, which would end a kernel's boot: unless `cache` names
    ///   the cache serving them, a choice to make that cache's users fail whoever they are.
    ///
    /// # Examples
    /// Testing a driver's error path:
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::slab::CacheName;
    /// use kmem::{Gfp, SlabError};
    /// kmem.set_failslab(1, Some(CacheName::new("kmalloc-512")?));
    /// assert!(matches!(kmem.kmalloc(512, Gfp::KERNEL), Err(SlabError::Injected { .. })));
    /// let other = kmem.kmalloc(64, Gfp::KERNEL)?; // another cache: unaffected
    /// kmem.set_failslab(0, None);
    /// unsafe { kmem.kfree(other.as_ptr()) }?; // SAFETY: other is not used again.
    /// # Ok::<(), SlabError>(())
    /// ```
    /// Every allocation of the kmalloc family fails, but the kernel's collections still
    /// work:
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabError};
    /// kmem.set_failslab(1, None);
    /// assert!(matches!(kmem.kmalloc(100, Gfp::KERNEL), Err(SlabError::Injected { .. })));
    /// let mut v = allocator_api2::vec::Vec::new_in(kmem); // through `Allocator`
    /// v.extend([1u32, 2, 3]);
    /// assert_eq!(v.len(), 3);
    /// # kmem.set_failslab(0, None);
    /// # Ok::<(), SlabError>(())
    /// ```
    pub fn set_failslab(&self, every: u32, cache: Option<CacheName>) {
        *self.fail_cache.lock() = cache;
        self.fail_count.store(0, Relaxed);
        self.fail_every.store(every, Relaxed);
        self.set_failslab_gate(every);
    }

    /// [`PageAllocator::alloc_pages`], but when that finds no block, the caches first
    /// give back what they hold free: the objects in their magazines (every CPU's) and
    /// depots, and the empty slabs they keep (up to a share of their zone,
    /// see `slab::free_limit`); then the allocation is tried once more. Only locks that
    /// are free are taken for that, so a cache or array in use is skipped. Slab growth,
    /// large kmalloc blocks and the arrays of caches `cache_create` makes come through
    /// here.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let pa = kmem.alloc_pages(1, Gfp::KERNEL)?; // two pages for a kernel stack
    /// assert_eq!(pa % 8192, 0);
    /// unsafe { kmem.pages().free_pages(pa, 1) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    #[inline]
    pub fn alloc_pages(&self, order: u32, gfp: Gfp) -> Result<PhysAddr, PageError> {
        self.pages.alloc_pages(order, gfp).or_else(|e| match e {
            PageError::OutOfMemory { .. } => {
                self.alloc_pages_reclaiming(e, || self.pages.alloc_pages(order, gfp))
            }
            e => Err(e),
        })
    }

    /// An allocation `alloc` once the page allocator is out of memory (`oom`, returned
    /// again when reclaiming frees nothing): reclaims, then tries `alloc` again.
    #[cold]
    #[inline(never)]
    fn alloc_pages_reclaiming(
        &self,
        oom: PageError,
        alloc: impl FnOnce() -> Result<PhysAddr, PageError>,
    ) -> Result<PhysAddr, PageError> {
        // The caller may hold a cache's node lock and its own CPU's slot of that cache (a
        // slab growing) or the registry lock (`cache_create`), and `shrink_all` takes
        // node locks under the registry lock: only locks and slots that are free are
        // taken here (see `SlabCache::reclaim`), so no cycle can close. Without the
        // registry, the kmalloc caches (which are not on it) still give theirs back.
        let head = self.registry.try_lock();
        let mut reclaimed = 0;
        self.for_each_cache_in(
            head.as_deref().copied().unwrap_or(core::ptr::null_mut()),
            |c| reclaimed += c.reclaim(self),
        );
        drop(head);
        if reclaimed == 0 {
            return Err(oom);
        }
        alloc()
    }
}

/// The caches of a `Kmem` grow through [`Kmem::alloc_pages`] (which takes back empty
/// slabs when pages run short) and obey its fault injection.
impl<A: Arch> Backing<A> for Kmem<A> {
    #[inline(always)]
    fn pages(&self) -> &PageAllocator<A> {
        &self.pages
    }

    #[inline]
    fn slab_pages(&self, order: u32, gfp: Gfp) -> Result<PhysAddr, PageError> {
        self.alloc_pages(order, gfp)
    }

    fn slab_pages_on(&self, node: NodeId, order: u32, gfp: Gfp) -> Result<PhysAddr, PageError> {
        let alloc = || self.pages.alloc_pages_node(node, order, gfp);
        alloc().or_else(|e| match e {
            PageError::OutOfMemory { .. } => self.alloc_pages_reclaiming(e, alloc),
            e => Err(e),
        })
    }

    #[inline(always)]
    fn failslab_armed(&self) -> bool {
        self.slow_gate.load(Relaxed) != 0
    }

    #[inline]
    fn refilled(&self, objects: usize) {
        self.count_toward_sample(objects);
    }

    /// Allocations with [`Gfp::NOFAIL`] never fail nor count; those through a Rust
    /// allocator interface only when the filter names their cache (see
    /// [`Kmem::set_failslab`]).
    #[cold]
    fn failslab_fires(&self, cache: CacheName, gfp: Gfp) -> bool {
        if gfp.contains(Gfp::NOFAIL) {
            return false;
        }
        match *self.fail_cache.lock() {
            Some(c) if c != cache => return false,
            None if gfp.contains(Gfp::RUST_ALLOC) => return false,
            _ => {}
        }
        let every = self.fail_every.load(Relaxed);
        if every == 0 {
            // The gate is open for a sample, not for fault injection.
            return false;
        }
        (self.fail_count.fetch_add(1, Relaxed) + 1).is_multiple_of(every)
    }
}
