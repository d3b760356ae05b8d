//! [`Kmem`]: the page allocator with the general kmalloc caches and user-created slab
//! caches on top — `kmalloc`, `kfree`, `krealloc`, `ksize`, `kcalloc`, `kzalloc`, and
//! `cache_create`/`alloc`/`free`/`shrink`/`destroy`.
//!
//! `kfree` finds an object's owner in O(1) from its page descriptor: the `owner` field
//! holds the slab cache (or `LARGE_OWNER` for a block served straight from the page
//! allocator), `private` the slab. The seed scans every cache instead.
//!
//! The caches live in memory from the page allocator, not in the `Kmem` value, so page
//! descriptors never point into `Kmem` itself and it may be moved freely; it is small
//! enough to build on a boot stack.
//!
//! This file owns [`Kmem`] and its construction. The kmalloc family is in `alloc`,
//! `free` and `realloc`; each zone's kmalloc caches in `zones`; user-created caches in
//! `user_cache`; walks over every cache (and the registry's lock) in `registry`; page
//! blocks with reclaim and fault injection — what the caches grow from — in `backing`.

mod alloc;
mod backing;
mod bulk;
mod classes;
mod free;
mod global;
mod hotplug;
mod info;
mod kbox;
mod memtag;
mod options;
mod realloc;
mod registry;
mod reservation;
mod sampling;
mod user_cache;
mod zones;

use crate::arch::Arch;
use crate::guard_pool::GuardPool;
use crate::mm::PageAllocator;
use crate::mm::zone::{NR_ZONES, ZoneKind};
use crate::slab::{ArrayScale, CacheName, SlabCache, SlabError};
use crate::sync::IrqMutex;
use classes::class_for;
pub use classes::{CLASS_SIZES, KMALLOC_MAX, NR_CLASSES};
use core::sync::atomic::{AtomicI64, AtomicU32};
pub use global::GlobalKmem;
pub use info::{MemInfo, SlabInfoTable};
pub use kbox::KBox;
pub use options::{DEFAULT_KFENCE_INTERVAL, OptionError, Options};
#[cfg(any(test, feature = "hosted"))]
pub(crate) use registry::ForkHeld;
pub use reservation::Reservation;
pub use user_cache::{Cache, CacheBox, CacheRef};
use zones::{ArrayCarver, KmallocCaches};

/// What `kmalloc(0)` returns: distinct from null, never dereferenceable, accepted by
/// `kfree` (Linux's `ZERO_SIZE_PTR`).
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Gfp, kmalloc::ZERO_SIZE_PTR};
/// let p = kmem.kmalloc(0, Gfp::KERNEL)?;
/// assert_eq!(p.as_ptr(), ZERO_SIZE_PTR);
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: ZERO_SIZE_PTR is always accepted.
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub const ZERO_SIZE_PTR: *mut u8 = 16 as *mut u8;

/// Page-descriptor owner of a kmalloc block served by the page allocator.
const LARGE_OWNER: usize = 1;

/// The allocator: pages, kmalloc caches per zone, and the registry of user caches.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Gfp, KBox};
/// let p = kmem.kmalloc(256, Gfp::KERNEL)?; // raw, freed by hand
/// let b = KBox::new(kmem, [0u8; 256], Gfp::KERNEL)?; // owned, freed on drop
/// assert_ne!(p.as_ptr(), b.as_ptr() as *mut u8);
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub struct Kmem<A: Arch> {
    pages: PageAllocator<A>,
    /// Each non-empty zone's caches, in a page block of their own (null: empty zone).
    kmalloc: [*const KmallocCaches<A>; NR_ZONES],
    /// For each zone a request may name, the caches that serve it: the highest non-empty
    /// zone's at or below it (null: no memory that low). One load on the fast paths.
    serving: [*const KmallocCaches<A>; NR_ZONES],
    /// The array scale of the caches in `serving`, which caches created later for the
    /// same zone take too.
    array_scale: [ArrayScale; NR_ZONES],
    /// Head of the list of user-created caches, linked through `SlabCache::next`.
    registry: IrqMutex<A, *mut SlabCache<A>>,
    /// Pages holding the kmalloc caches and their arrays, all zones.
    kmalloc_pages: usize,
    options: Options,
    /// Fault injection: every `fail_every`-th allocation (of `fail_cache`) fails.
    fail_every: AtomicU32,
    fail_count: AtomicU32,
    fail_cache: IrqMutex<A, Option<CacheName>>,
    /// Nonzero sends every allocation off the fast path: fault injection is armed, or
    /// the next allocation is to be sampled (`sampling`). One load on the fast paths.
    slow_gate: AtomicU32,
    /// Sampled guard pages (`kmem.kfence=`), when the port gave a pool.
    guard_pool: Option<GuardPool<A>>,
    /// Allocations left until the next sample (`sampling`).
    sample_countdown: AtomicI64,
}

// SAFETY: the registry pointer is only followed under its lock; the kmalloc cache
// pointers are written once in `new`; caches are Sync.
unsafe impl<A: Arch> Send for Kmem<A> {}
// SAFETY: as for Send.
unsafe impl<A: Arch> Sync for Kmem<A> {}
impl<A: Arch> Kmem<A> {
    /// Builds the kmalloc caches (8 B to 1 MiB) for every non-empty zone over `pages`.
    ///
    /// # Examples
    /// At boot, once the memory map is known:
    /// ```
    /// use kmem::hosted::{HostArch, Region};
    /// use kmem::{Gfp, Kmem, PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// // SAFETY: the map's usable RAM is the allocator's alone, for as long as it lives.
    /// let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 4, None) }
    ///     .expect("room for the metadata");
    /// let kmem = Kmem::new(pages)?;
    /// let p = kmem.kmalloc(64, Gfp::KERNEL)?;
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn new(pages: PageAllocator<A>) -> Result<Kmem<A>, SlabError> {
        Self::with_options(pages, Options::default())
    }

    /// [`Kmem::new`] with debugging, hardening and fault-injection options.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::{HostArch, Region};
    /// use kmem::{Kmem, Options, PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// let options = Options::default().parse("kmem.debug=ZP init_on_free=1", |e| panic!("{e}"));
    /// // SAFETY: the map's usable RAM is the allocator's alone, for as long as it lives.
    /// let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 1, None) }
    ///     .expect("room for the metadata");
    /// let kmem = Kmem::with_options(pages, options)?;
    /// let c = kmem.kmalloc_cache_for(64, 8, kmem::Gfp::KERNEL).unwrap();
    /// assert_eq!(c.debug_flags().to_string(), "ZP");
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn with_options(pages: PageAllocator<A>, options: Options) -> Result<Kmem<A>, SlabError> {
        let info = pages.info();
        let present = |z: ZoneKind| info.zones[z.index()].managed_pages > 0;
        let mut kmalloc = [core::ptr::null(); NR_ZONES];
        let mut scale = [ArrayScale::FULL; NR_ZONES];
        let mut carver = ArrayCarver {
            at: 0,
            end: 0,
            pages: 0,
        };
        for z in ZoneKind::ALL.into_iter().filter(|&z| present(z)) {
            (kmalloc[z.index()], scale[z.index()]) =
                Self::zone_caches(&pages, z, &options, &mut carver)?;
        }
        let server = |z: usize| ZoneKind::from_index(z).fallbacks().find(|&z| present(z));
        Ok(Kmem {
            pages,
            kmalloc,
            serving: core::array::from_fn(|z| {
                server(z).map_or(core::ptr::null(), |z| kmalloc[z.index()])
            }),
            array_scale: core::array::from_fn(|z| {
                server(z).map_or(ArrayScale::FULL, |z| scale[z.index()])
            }),
            registry: IrqMutex::new(core::ptr::null_mut()),
            kmalloc_pages: carver.pages,
            fail_every: AtomicU32::new(options.failslab_every),
            fail_count: AtomicU32::new(0),
            fail_cache: IrqMutex::new(options.failslab_cache),
            slow_gate: AtomicU32::new(sampling::failslab_gate(options.failslab_every)),
            guard_pool: None,
            sample_countdown: AtomicI64::new(i64::from(options.kfence)),
            options,
        })
    }

    /// The options the allocator was built with.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let o = kmem.options();
    /// assert!(o.debug.is_empty() && !o.init_on_alloc, "a Heap takes the defaults");
    /// ```
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The page allocator underneath.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, mm::MAX_ORDER};
    /// let pages = kmem.pages();
    /// let pa = pages.alloc_pages(MAX_ORDER, Gfp::KERNEL)?; // a 4 MiB frame buffer
    /// unsafe { pages.free_pages(pa, MAX_ORDER) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub fn pages(&self) -> &PageAllocator<A> {
        &self.pages
    }
}

#[cfg(test)]
mod tests;
