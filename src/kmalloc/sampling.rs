//! Which kmallocs the guard pool (`crate::guard_pool`, Linux's KFENCE) serves, and the
//! `Kmem` calls that reach the pool.
//!
//! Linux opens a static key from a timer and the next allocation on any CPU takes the
//! sample. kmem samples by count, without a timer, and keeps the allocation fast path as
//! it is: allocations are counted where a CPU refills its magazine (a magazine's worth
//! at a time, off the fast path), and when `kmem.kfence=N` of them have gone by, a bit
//! in the word the fast path already loads for fault injection (`slow_gate`) sends the
//! next kmalloc, on any CPU, the slow way, which takes the sample and closes the gate.
//! So a CPU that only recycles the objects in its magazine is never sampled (a timer
//! would catch it); every other pattern is, at about one allocation in N. Objects of
//! caches made with `cache_create` are sampled too, unless the cache has a constructor
//! or destructor; caches with debugging (`kmem.debug=`) are not sampled.

use core::ptr::NonNull;
use core::sync::atomic::Ordering::Relaxed;

use super::Kmem;
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::guard_pool::{
    Access, FaultOutcome, GuardPool, GuardPoolInfo, GuardPoolMemory, SampledObject,
};
use crate::mm::zone::ZoneKind;
use crate::slab::{SlabCache, SlabError};

/// `slow_gate`: fault injection is armed.
const FAILSLAB: u32 = 1 << 0;
/// `slow_gate`: the next kmalloc is to be sampled.
const SAMPLE: u32 = 1 << 1;

/// The gate word for fault injection every `every` allocations.
pub(super) fn failslab_gate(every: u32) -> u32 {
    if every != 0 { FAILSLAB } else { 0 }
}

impl<A: Arch> Kmem<A> {
    /// Gives the allocator a guard pool (Linux's KFENCE): from now on about one kmalloc
    /// in [`Options::kfence`](crate::Options::kfence) is served from it, alone on a page
    /// against an unmapped guard page, and the port's page-fault handler reports
    /// accesses out of its bounds or after its free through
    /// [`Kmem::guard_pool_fault`]. With `kfence` 0 the pool is not used (and not
    /// touched). The slots' records take a few pages of the allocator.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::{GuardedPages, HostArch, Region};
    /// use kmem::{Gfp, Kmem, PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// // SAFETY: the map's usable RAM is the allocator's alone, for as long as it lives.
    /// let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 1, None) }
    ///     .expect("room for the metadata");
    /// let pool = GuardedPages::new(15).expect("the OS maps 128 KiB");
    /// let kmem = Kmem::new(pages)?.with_guard_pool(pool.memory())?;
    /// kmem.sample_next();
    /// let p = kmem.kmalloc(64, Gfp::KERNEL)?;
    /// assert!(pool.contains(p.as_ptr() as usize));
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// assert_eq!(kmem.guard_pool_info().unwrap().sampled, 1);
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn with_guard_pool(mut self, memory: GuardPoolMemory) -> Result<Kmem<A>, SlabError> {
        if self.options.kfence != 0 {
            self.guard_pool = Some(GuardPool::new(memory, &self.pages)?);
        }
        Ok(self)
    }

    /// The guard pool's state and counts (`None`: no pool, or `kmem.kfence=0`).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// assert!(kmem.guard_pool_info().is_none(), "a Heap has no guard pool");
    /// ```
    pub fn guard_pool_info(&self) -> Option<GuardPoolInfo> {
        Some(self.guard_pool.as_ref()?.info(self.options.kfence))
    }

    /// The record of the guard pool's object `index` (`kfence-#index`).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// assert!(kmem.guard_pool_object(0).is_none(), "a Heap has no guard pool");
    /// ```
    pub fn guard_pool_object(&self, index: usize) -> Option<SampledObject> {
        self.guard_pool.as_ref()?.object(index)
    }

    /// Makes the next kmalloc, on any CPU, come from the guard pool (if it has a free
    /// slot and the request fits a page): for tests, and for a kernel that wants one
    /// particular allocation watched. Does nothing without a pool.
    ///
    /// # Examples
    /// See [`Kmem::with_guard_pool`].
    pub fn sample_next(&self) {
        if self.guard_pool.is_some() {
            self.slow_gate.fetch_or(SAMPLE, Relaxed);
        }
    }

    /// The port's page-fault handler's call for a fault at `addr`, by the instruction at
    /// `pc`: `None` when `addr` is not in the guard pool (not kmem's fault); else what it
    /// was — a bug, reported to the log in KFENCE's words and counted, or a stale
    /// translation — and in either case the page is accessible again, so the handler
    /// resumes the access.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::guard_pool::Access;
    /// assert!(kmem.guard_pool_fault(0x1000, Access::Read, 0).is_none());
    /// ```
    pub fn guard_pool_fault(&self, addr: usize, access: Access, pc: usize) -> Option<FaultOutcome> {
        self.guard_pool.as_ref()?.fault(addr, access, pc)
    }

    /// The guard pool, if `addr` lies in it.
    #[inline]
    pub(super) fn pool_holding(&self, addr: usize) -> Option<&GuardPool<A>> {
        self.guard_pool.as_ref().filter(|p| p.contains(addr))
    }

    /// Frees the sampled object at `addr`, which must come from `expected` when given.
    #[track_caller]
    pub(super) fn free_sampled(
        &self,
        pool: &GuardPool<A>,
        addr: usize,
        expected: Option<&SlabCache<A>>,
    ) -> Result<(), SlabError> {
        if let Some(c) = expected
            && let Ok(o) = pool.live(addr)
            && o.cache != c.name()
        {
            return Err(SlabError::WrongCache {
                addr,
                expected: c.name(),
                found: o.cache,
            });
        }
        pool.free(addr)
    }

    /// Counts `objects` allocations toward the next sample, and opens the gate for it
    /// when they reach the interval.
    pub(super) fn count_toward_sample(&self, objects: usize) {
        let interval = i64::from(self.options.kfence);
        if self.guard_pool.is_none() || interval == 0 {
            return;
        }
        let n = objects as i64;
        if self.sample_countdown.fetch_sub(n, Relaxed) <= n {
            self.sample_countdown.store(interval, Relaxed);
            self.slow_gate.fetch_or(SAMPLE, Relaxed);
        }
    }

    /// Sets the gate's fault-injection bit for injection every `every` allocations.
    pub(super) fn set_failslab_gate(&self, every: u32) {
        if every != 0 {
            self.slow_gate.fetch_or(FAILSLAB, Relaxed);
        } else {
            self.slow_gate.fetch_and(!FAILSLAB, Relaxed);
        }
    }

    /// The allocation fast path's way out: a sample, when one is due and this request can
    /// take it, else `cache`'s allocation.
    #[inline(never)]
    #[track_caller]
    pub(super) fn alloc_sampled_or(
        &self,
        cache: &SlabCache<A>,
        size: usize,
        align: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        if self.slow_gate.load(Relaxed) & SAMPLE != 0
            && let Some(p) = self.take_sample(cache, size, align, gfp)
        {
            return Ok(p);
        }
        cache.alloc(self, gfp).map(|obj| cache.hand_out(obj))
    }

    /// Serves one allocation from the guard pool, closing the gate, if the pool has a
    /// slot and the request fits: normal-zone memory (the pool's zone is unknown), at
    /// most a page, of a cache without a constructor or destructor (which run when a
    /// slab is made and released, and a pool page is neither) and without debugging
    /// (`kmem.debug=`: its own red zones, poison and owner records watch those objects,
    /// and their reports are what its users look for).
    #[cold]
    #[track_caller]
    fn take_sample(
        &self,
        cache: &SlabCache<A>,
        size: usize,
        align: usize,
        gfp: Gfp,
    ) -> Option<NonNull<u8>> {
        let pool = self.guard_pool.as_ref()?;
        if gfp.zone() != ZoneKind::Normal
            || cache.has_ctor()
            || !cache.debug_flags().is_empty()
            || self.slow_gate.fetch_and(!SAMPLE, Relaxed) & SAMPLE == 0
        {
            return None;
        }
        let addr = pool.alloc(size, align, cache.name())?;
        // init_on_free: a freed object's bytes stay on its unmapped page until the slot
        // is taken again; zeroing them now keeps them from the next owner all the same.
        if gfp.contains(Gfp::ZERO) || self.options.init_on_alloc || self.options.init_on_free {
            // SAFETY: the object is ours, `size` bytes on a mapped page.
            unsafe { (addr as *mut u8).write_bytes(0, size) };
        }
        NonNull::new(addr as *mut u8)
    }
}
