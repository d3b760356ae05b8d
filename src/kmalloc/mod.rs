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

mod bulk;
mod classes;
mod global;
mod hotplug;
mod info;
mod kbox;
mod memtag;
mod options;
mod reservation;
mod sampling;
mod user_cache;

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::guard_pool::GuardPool;
use crate::mm::buddy::{MAX_ORDER, order_for_bytes};
use crate::mm::frame::PageFrame;
use crate::mm::memmap::PAGE_SIZE;
use crate::mm::numa::NodeId;
use crate::mm::zone::{NR_ZONES, ZoneKind};
use crate::mm::{PageAllocator, PageError, PhysAddr};
use crate::slab::debug::DebugFlags;
use crate::slab::header::Slab;
use crate::slab::{
    ArrayScale, Backing, CacheName, CacheSpec, Hardening, SlabCache, SlabError, SlabFlags,
};
use crate::sync::IrqMutex;
pub use classes::{CLASS_SIZES, KMALLOC_MAX, NR_CLASSES};
use classes::{class_align, class_for, class_of};
use core::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};
pub use global::GlobalKmem;
pub use info::{MemInfo, SlabInfoTable};
pub use kbox::KBox;
pub use options::{DEFAULT_KFENCE_INTERVAL, OptionError, Options};
pub use reservation::Reservation;
pub use user_cache::{Cache, CacheBox, CacheRef};

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

/// Name prefixes of the kmalloc caches, by zone.
const ZONE_PREFIX: [&str; NR_ZONES] = ["dma-kmalloc-", "dma32-kmalloc-", "kmalloc-"];

/// A zone's kmalloc arrays take at most 1/`ARRAY_SHARE` of it (0.39 %): full arrays from
/// about 64 MiB with four CPUs, smaller ones below, down to [`ArrayScale::MIN`], which a
/// zone of a few MiB exceeds its share for.
const ARRAY_SHARE: usize = 256;

/// Page blocks cut into the kmalloc caches' array memory, one cache's arrays after the
/// other (64-aligned, as their sizes are multiples of 64), so that the 78 classes' arrays
/// take about half the pages whole blocks per cache would; never given back, as the
/// caches live as long as the allocator.
struct ArrayCarver {
    at: usize,
    end: usize,
    /// Pages taken, with the blocks holding the caches themselves.
    pages: usize,
}

impl ArrayCarver {
    fn take<A: Arch>(
        &mut self,
        pages: &PageAllocator<A>,
        bytes: usize,
    ) -> Result<*mut u8, SlabError> {
        if self.end - self.at < bytes {
            let order = order_for_bytes(bytes);
            let pa = pages.alloc_pages(order, Gfp::KERNEL)?;
            self.at = A::phys_to_virt(pa);
            self.end = self.at + ((PAGE_SIZE as usize) << order);
            self.pages += 1 << order;
        }
        let p = self.at;
        self.at += bytes;
        Ok(p as *mut u8)
    }
}

/// One zone's kmalloc caches, one per class.
type KmallocCaches<A> = [SlabCache<A>; NR_CLASSES];

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

    /// Makes every `every`-th slab allocation (of `cache` only, if named) fail with
    /// [`SlabError::Injected`]; 0 stops.
    ///
    /// Fault injection is for the error paths of callers that can take a failure, so it
    /// spares two kinds of allocation, which it neither fails nor counts:
    /// - those with [`Gfp::NOFAIL`], among them kmem's own (a cache's structure in
    ///   `cache_create`), so that injection never breaks the allocator itself;
    /// - those through the Rust allocator interfaces — `GlobalAlloc` (a kernel's
    ///   [`GlobalKmem`], `hosted::Heap`) and `Allocator` — whose collections abort on a
    ///   null, which would end a kernel's boot: unless `cache` names the cache serving
    ///   them, a choice to make that cache's users fail whoever they are.
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

    /// The security and debug settings a cache named `name` gets.
    fn hardening(&self, name: &CacheName) -> Hardening {
        hardening(&self.options, name)
    }

    /// Walks every cache (or the one named) and reports each inconsistency to the log;
    /// returns how many were found, or `None` if no cache has that name.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let p = kmem.kmalloc(40, kmem::Gfp::KERNEL)?;
    /// assert_eq!(kmem.validate(None), Some(0));
    /// assert_eq!(kmem.validate(Some("no-such-cache")), None);
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn validate(&self, name: Option<&str>) -> Option<usize> {
        let mut problems = 0;
        let mut seen = false;
        self.for_each_cache(|c| {
            if name.is_none_or(|n| c.name().as_str() == n) {
                seen = true;
                problems += c.validate(self);
            }
        });
        seen.then_some(problems)
    }

    /// Gives every cache (or the one named) debug `flags` in place of its own, as
    /// `kmem.debug=` would have at boot — for the caches that hold no objects once
    /// drained (see `SlabCache::set_debug`); each cache still holding objects is logged
    /// and left as it was. Returns (caches changed, caches left), or `None` if no cache
    /// has that name.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, slab::DebugFlags};
    /// let busy = kmem.kmalloc(96, Gfp::KERNEL)?;
    /// let zp = DebugFlags::parse("ZP").unwrap();
    /// assert_eq!(kmem.set_debug(Some("kmalloc-96"), zp), Some((0, 1)), "an object is live");
    /// unsafe { kmem.kfree(busy.as_ptr()) }?; // SAFETY: busy is not used again.
    /// assert_eq!(kmem.set_debug(Some("kmalloc-96"), zp), Some((1, 0)));
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn set_debug(&self, name: Option<&str>, flags: DebugFlags) -> Option<(usize, usize)> {
        let (mut changed, mut left) = (0, 0);
        let mut seen = false;
        self.for_each_cache(|c| {
            if name.is_none_or(|n| c.name().as_str() == n) {
                seen = true;
                match c.set_debug(self, flags) {
                    Ok(()) => changed += 1,
                    Err(SlabError::Busy { live, .. }) => {
                        log::warn!(
                            "{}: {live} objects still allocated: debug flags stay {}",
                            c.name(),
                            c.debug_flags()
                        );
                        left += 1;
                    }
                    Err(e) => {
                        log::warn!("{e}: debug flags stay {}", c.debug_flags());
                        left += 1;
                    }
                }
            }
        });
        seen.then_some((changed, left))
    }

    /// Creates zone `z`'s kmalloc caches and their arrays in memory from `carver`, the
    /// arrays at the largest scale whose bytes fit in 1/[`ARRAY_SHARE`] of the zone; returns
    /// the caches and that scale. On an error the partly built caches and their pages are
    /// not given back: the caller drops the whole page allocator.
    fn zone_caches(
        pages: &PageAllocator<A>,
        z: ZoneKind,
        options: &Options,
        carver: &mut ArrayCarver,
    ) -> Result<(*const KmallocCaches<A>, ArrayScale), SlabError> {
        const { assert!(align_of::<SlabCache<A>>() <= 64) };
        let spec = |c: usize| CacheSpec {
            name: CacheName::numbered(ZONE_PREFIX[z.index()], CLASS_SIZES[c] as usize),
            size: CLASS_SIZES[c] as usize,
            align: class_align(c),
            flags: [SlabFlags::DMA, SlabFlags::DMA32, SlabFlags::NONE][z.index()],
            ctor: None,
            dtor: None,
        };
        let (nr_cpus, nr_nodes) = (pages.nr_cpus(), pages.nr_nodes());
        let zone_bytes = pages.info().zones[z.index()].managed_pages as usize * PAGE_SIZE as usize;
        // At most 32x the zone: its arrays then take at most 1/8 of the memory they
        // come from (mostly untouched until CPUs use them).
        let zone_bytes = options.sized_for.map_or(zone_bytes, |b| {
            b.clamp(zone_bytes, zone_bytes.saturating_mul(32))
        });
        let scale = ArrayScale::fitting(zone_bytes / ARRAY_SHARE, |scale| {
            (0..NR_CLASSES)
                .map(|c| {
                    let spec = spec(c);
                    let hard = hardening(options, &spec.name);
                    SlabCache::<A>::array_bytes(&spec, &hard, nr_cpus, nr_nodes, scale).unwrap_or(0)
                })
                .sum()
        });
        let caches = carver
            .take(pages, size_of::<KmallocCaches<A>>().next_multiple_of(64))?
            .cast::<SlabCache<A>>();
        for c in 0..NR_CLASSES {
            let spec = spec(c);
            let hard = hardening(options, &spec.name);
            let mem = carver.take(
                pages,
                SlabCache::<A>::array_bytes(&spec, &hard, nr_cpus, nr_nodes, scale)?,
            )?;
            // SAFETY: `mem` is fresh carved memory of array_bytes bytes at `scale`,
            // 64-aligned, that lives as long as the allocator, as the cache does.
            let cache = unsafe { SlabCache::new(pages, &spec, &hard, Some(mem), scale)? };
            // SAFETY: the carved memory holds NR_CLASSES caches, is 64-aligned and ours.
            unsafe { caches.add(c).write(cache) };
        }
        Ok((caches.cast_const().cast(), scale))
    }

    /// Zone `z`'s kmalloc caches, if the zone has memory.
    fn zone(&self, z: ZoneKind) -> Option<&KmallocCaches<A>> {
        self.caches_at(self.kmalloc[z.index()])
    }

    /// The caches an entry of `kmalloc` or `serving` points at.
    #[inline(always)]
    fn caches_at(&self, p: *const KmallocCaches<A>) -> Option<&KmallocCaches<A>> {
        // SAFETY: both arrays hold null or caches written in `zone_caches`, which live as
        // long as `self` (they are never freed).
        unsafe { p.as_ref() }
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

    #[inline]
    fn kmalloc_cache(&self, gfp: Gfp, class: usize) -> Option<&SlabCache<A>> {
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
    fn kmalloc_or_null_slow(&self, size: usize, align: usize, gfp: Gfp) -> *mut u8 {
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

    /// Frees what the kmalloc family returned. Null and [`ZERO_SIZE_PTR`] are accepted
    /// and ignored.
    ///
    /// A pointer that is not a live block start — interior, foreign, never allocated,
    /// already freed, an object of a user cache — is refused with the reason, logged with
    /// the pointer and the cache, and nothing changes: the checks find bugs, but they are
    /// a debugging aid, not what makes this call sound (another CPU may have been handed
    /// the same block again, and a stale pointer then frees *its* object).
    ///
    /// # Safety
    /// `ptr` is null, [`ZERO_SIZE_PTR`], or a block this `Kmem`'s [`Kmem::kmalloc`]
    /// family returned and that has not been freed since; nothing uses the block after
    /// this call.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(100, Gfp::KERNEL)?;
    /// // SAFETY: p came from kmalloc above and is not used after this.
    /// unsafe { kmem.kfree(p.as_ptr()) }?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    #[inline(always)]
    #[track_caller]
    pub unsafe fn kfree(&self, ptr: *mut u8) -> Result<(), SlabError> {
        if ptr.is_null() || ptr == ZERO_SIZE_PTR {
            return Ok(());
        }
        let addr = A::untag(ptr as usize);
        if self.free_fast(addr) {
            return Ok(());
        }
        self.kfree_slow(addr)
    }

    /// The free fast path: frees `addr` and returns true when it is a live slab object.
    /// Anything else — a large block, or a pointer that is not a live object start —
    /// changes nothing and returns false, for the slow way, which says what is wrong.
    #[inline(always)]
    fn free_fast(&self, addr: usize) -> bool {
        if let Some(frame) = self.pages.frame(A::virt_to_phys(addr))
            && let Some(cache) = slab_owner(frame)
        {
            return cache.free_fast(self, frame, addr);
        }
        false
    }

    /// [`Kmem::kfree`] for `GlobalAlloc` and `Allocator`, which cannot report a refused
    /// free: the slow path logs it. As [`Kmem::kmalloc_or_null`], the fast path ends in
    /// a return or a tail call: it looks in the first bank of the frame table only
    /// (inline arithmetic, no call) and leaves frames of other banks to the slow path.
    #[inline(always)]
    pub(crate) fn kfree_logged(&self, ptr: *mut u8) {
        let addr = A::untag(ptr as usize);
        if let Some((_, frame)) = self
            .pages
            .table()
            .frame_in_first_bank(A::virt_to_phys(addr))
            && let Some(cache) = slab_owner(frame)
            && cache.free_fast(self, frame, addr)
        {
            return;
        }
        self.kfree_logged_slow(ptr);
    }

    #[inline(never)]
    fn kfree_logged_slow(&self, ptr: *mut u8) {
        // The error is logged by kfree's slow path.
        // SAFETY: kfree_logged's callers pass what their own contract promises: a block
        // of ours, null, or ZERO_SIZE_PTR.
        let _ = unsafe { self.kfree(ptr) };
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn kfree_slow(&self, addr: usize) -> Result<(), SlabError> {
        self.free_checked(addr, None)
            .inspect_err(|e| log::error!("kfree: {e}"))
    }

    /// What owns the live block at `addr`, or why `addr` is not one.
    fn owner_of(&self, addr: usize) -> Result<Owner<'_, A>, SlabError> {
        let pa = A::virt_to_phys(addr);
        let frame = self.pages.frame(pa).ok_or(SlabError::NotOwned { addr })?;
        match frame.owner() {
            0 => Err(SlabError::NotAllocated { addr }),
            LARGE_OWNER if pa.is_multiple_of(PAGE_SIZE) => Ok(Owner::Large {
                pa,
                order: frame.order(),
            }),
            LARGE_OWNER => Err(SlabError::NotAllocated { addr }),
            _ => Ok(Owner::Slab {
                cache: slab_owner(frame).expect("an owner above LARGE_OWNER is a cache"),
                frame,
            }),
        }
    }

    /// Frees `addr`, which must belong to `expected` when given.
    #[track_caller]
    fn free_checked(&self, addr: usize, expected: Option<&SlabCache<A>>) -> Result<(), SlabError> {
        let addr = A::untag(addr);
        if let Some(pool) = self.pool_holding(addr) {
            return self.free_sampled(pool, addr, expected);
        }
        match self.owner_of(addr)? {
            Owner::Large { pa, order } => match expected {
                Some(c) => Err(SlabError::WrongCache {
                    addr,
                    expected: c.name(),
                    found: CacheName::new("kmalloc-large").expect("valid name"),
                }),
                None => self.free_large(pa, order),
            },
            Owner::Slab { cache, frame } => match expected {
                Some(c) if !core::ptr::eq(c, cache) => Err(SlabError::WrongCache {
                    addr,
                    expected: c.name(),
                    found: cache.name(),
                }),
                _ => cache.free(self, frame, addr),
            },
        }
    }

    /// Usable size of the live block at `ptr` (0 for [`ZERO_SIZE_PTR`]): the caller may
    /// use that many bytes, at least what it asked for. Anything that is not a live block
    /// start is an error.
    ///
    /// # Safety
    /// `ptr` is [`ZERO_SIZE_PTR`] or a live block of this `Kmem`'s kmalloc family: the
    /// check reads the block's first word, which for any other object would race with
    /// its owner's writes.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(100, Gfp::KERNEL)?;
    /// // SAFETY: p is live until the kfree below.
    /// assert!(unsafe { kmem.ksize(p.as_ptr()) }? >= 100);
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub unsafe fn ksize(&self, ptr: *mut u8) -> Result<usize, SlabError> {
        if ptr == ZERO_SIZE_PTR {
            return Ok(0);
        }
        Ok(self.live_block(ptr as usize)?.size())
    }

    /// The live block at `addr`, checked as `kfree` checks it; or why `addr` is not one.
    fn live_block(&self, addr: usize) -> Result<LiveBlock<'_, A>, SlabError> {
        let addr = A::untag(addr);
        if let Some(pool) = self.pool_holding(addr) {
            return Ok(LiveBlock::Sampled {
                pool,
                size: pool.live(addr)?.size,
            });
        }
        Ok(match self.owner_of(addr)? {
            Owner::Large { pa, order } => LiveBlock::Large { pa, order },
            Owner::Slab { cache, frame } => {
                let (slab, idx) = cache.live_object(self, frame, addr)?;
                LiveBlock::Object { cache, slab, idx }
            }
        })
    }

    /// Frees `block`, found live at `addr` by [`Kmem::live_block`], without checking again.
    #[track_caller]
    fn free_live(&self, block: LiveBlock<'_, A>, addr: usize) -> Result<(), SlabError> {
        match block {
            LiveBlock::Large { pa, order } => self.free_large(pa, order),
            LiveBlock::Object { cache, slab, idx } => {
                cache.free_live(self, slab, idx, addr);
                Ok(())
            }
            LiveBlock::Sampled { pool, .. } => pool.free(addr),
        }
    }

    /// Gives a large block back to the page allocator.
    fn free_large(&self, pa: u64, order: u32) -> Result<(), SlabError> {
        let frame = self
            .pages
            .frame(pa)
            .expect("a large block's head is managed");
        frame.set_owner(0);
        Self::retag_large(A::phys_to_virt(pa), (PAGE_SIZE as usize) << order);
        // SAFETY: owner_of or live_block found the head of a live large block here, which
        // alloc_large took from these pages; the caller is freeing it.
        unsafe { self.pages.free_pages(pa, order) }.map_err(SlabError::Page)
    }

    /// Resizes the block at `ptr` to `size` bytes, keeping min(old, new) bytes; stays in
    /// place when the block's class already holds `size`. Null allocates; size 0 frees.
    /// `ptr` is checked against the page descriptors (as `kfree` checks it) before any
    /// byte is read, so a bad pointer is reported, not copied from. On an error the old
    /// block is left as it was.
    ///
    /// # Safety
    /// As for [`Kmem::kfree`]: `ptr` is null, [`ZERO_SIZE_PTR`] or a live block of this
    /// `Kmem`'s kmalloc family; on success it is freed or returned, and only the returned
    /// pointer may be used.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(8, Gfp::KERNEL)?;
    /// // SAFETY: p is live; it is not used after krealloc, only q is.
    /// let q = unsafe { kmem.krealloc(p.as_ptr(), 4000, Gfp::KERNEL) }?;
    /// unsafe { kmem.kfree(q.as_ptr()) }?; // SAFETY: q is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    #[track_caller]
    pub unsafe fn krealloc(
        &self,
        ptr: *mut u8,
        size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        // SAFETY: the caller's contract.
        unsafe { self.krealloc_aligned(ptr, size, 8, gfp) }
    }

    /// [`Kmem::krealloc`] with an alignment (a power of two) for the new block.
    ///
    /// # Safety
    /// As for [`Kmem::krealloc`].
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(8, Gfp::KERNEL)?;
    /// // SAFETY: p is live and not used after this.
    /// let q = unsafe { kmem.krealloc_aligned(p.as_ptr(), 512, 512, Gfp::KERNEL) }?;
    /// assert_eq!(q.as_ptr() as usize % 512, 0);
    /// unsafe { kmem.kfree(q.as_ptr()) }?; // SAFETY: q is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    #[track_caller]
    pub unsafe fn krealloc_aligned(
        &self,
        ptr: *mut u8,
        size: usize,
        align: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        self.krealloc_keeping(ptr, size, align, gfp, usize::MAX)
    }

    /// [`Kmem::krealloc_aligned`] that, when the block moves, copies at most `keep` bytes:
    /// a caller that knows how much of the old block it uses (`GlobalAlloc::realloc`'s old
    /// layout) saves copying the rest of the class.
    #[track_caller]
    pub(crate) fn krealloc_keeping(
        &self,
        ptr: *mut u8,
        size: usize,
        align: usize,
        gfp: Gfp,
        keep: usize,
    ) -> Result<NonNull<u8>, SlabError> {
        if ptr.is_null() || ptr == ZERO_SIZE_PTR {
            return self.kmalloc_aligned(size, align, gfp);
        }
        let block = self
            .live_block(ptr as usize)
            .inspect_err(|e| log::error!("krealloc: {e}"))?;
        let old = block.size();
        let addr = A::untag(ptr as usize);
        if size == 0 {
            self.free_live(block, addr)?;
            return self.kmalloc_aligned(0, align, gfp);
        }
        if size <= old && (ptr as usize).is_multiple_of(align) {
            // SAFETY: ptr is a live kmalloc block (live_block found it), so not null.
            return Ok(unsafe { NonNull::new_unchecked(ptr) });
        }
        let new = self.kmalloc_aligned(size, align, gfp.without(Gfp::ZERO))?;
        let kept = old.min(size).min(keep);
        // SAFETY: both blocks are live, distinct, and at least min(old, size) ≥ kept long.
        unsafe { core::ptr::copy_nonoverlapping(ptr, new.as_ptr(), kept) };
        if gfp.contains(Gfp::ZERO) && size > kept {
            // SAFETY: the tail [kept, size) of the new block is ours.
            unsafe { core::ptr::write_bytes(new.as_ptr().add(kept), 0, size - kept) };
        }
        // Still live: the caller gave it to us, and it was not freed above.
        self.free_live(block, addr)?;
        Ok(new)
    }

    /// [`Kmem::krealloc_keeping`] for `GlobalAlloc`: null on failure. Rust's contract
    /// says `ptr` is live with layout `l`, so the block is at least as large as `l`'s
    /// class (it came from that class, or stayed in a larger one when shrunk in place): a
    /// new size that class holds keeps the block where it is without reading the block or
    /// its descriptor.
    #[inline(always)]
    pub(crate) fn krealloc_or_null(&self, ptr: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let old = l.size();
        if l.align() <= 8
            && old.wrapping_sub(1) < KMALLOC_MAX
            && new_size.wrapping_sub(1) < KMALLOC_MAX
        {
            let class = class_of(new_size);
            if class <= class_of(old) {
                if new_size > old && self.pool_holding(ptr as usize).is_some() {
                    // A sampled object has only the bytes asked for before its guard.
                    return self.krealloc_checked(ptr, l, new_size);
                }
                return ptr;
            }
            return self.krealloc_moving(ptr, l, new_size, class);
        }
        self.krealloc_checked(ptr, l, new_size)
    }

    /// [`Kmem::krealloc_or_null`] past the layout's class, to kmalloc class `class`
    /// (which holds `new_size` at `l`'s alignment: both sizes are fast-path sizes). A
    /// handed-out object of a fast cache moves with the fast paths' checks and
    /// allocation; everything else (a large block, a debug cache, a bad pointer) takes
    /// [`Kmem::krealloc_checked`], out of line so that this path needs a small frame.
    #[inline(never)]
    fn krealloc_moving(&self, ptr: *mut u8, l: Layout, new_size: usize, class: usize) -> *mut u8 {
        let addr = A::untag(ptr as usize);
        if let Some(frame) = self.pages.frame(A::virt_to_phys(addr))
            && let Some(cache) = slab_owner(frame)
            && let Some(live) = cache.live_fast(frame, addr)
        {
            if new_size <= cache.usable_size() {
                // Shrunk in place earlier: its own class still holds the new size.
                return ptr;
            }
            let new = match self
                .kmalloc_cache(Gfp::RUST_ALLOC, class)
                .and_then(|c| Some(c.hand_out(c.alloc_fast(self, Gfp::RUST_ALLOC)?)))
            {
                Some(p) => p.as_ptr(),
                None => self.kmalloc_or_null_slow(new_size, l.align(), Gfp::RUST_ALLOC),
            };
            if !new.is_null() {
                // SAFETY: both blocks are live and distinct; the old one holds l.size()
                // bytes (the caller's layout, smaller than new_size: its class is).
                unsafe { core::ptr::copy_nonoverlapping(ptr, new, l.size()) };
                cache.free_fast_live(self, addr, live);
            }
            return new;
        }
        self.krealloc_checked(ptr, l, new_size)
    }

    /// [`Kmem::krealloc_or_null`] by [`Kmem::krealloc_keeping`]: every block and size the
    /// fast paths do not take, with its checks and its logged errors.
    #[cold]
    #[inline(never)]
    fn krealloc_checked(&self, ptr: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        self.krealloc_keeping(ptr, new_size, l.align(), Gfp::RUST_ALLOC, l.size())
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    fn find_cache(&self, head: &*mut SlabCache<A>, name: &str) -> Option<&SlabCache<A>> {
        let mut found = None;
        self.for_each_cache_in(*head, |c| {
            if c.name().as_str() == name {
                found = Some(c as *const SlabCache<A>);
            }
        });
        // SAFETY: the pointer came from a live cache just visited.
        found.map(|c| unsafe { &*c })
    }

    /// Visits user caches (newest first), then kmalloc caches zone by zone from DMA up,
    /// largest class first.
    fn for_each_cache_in(&self, head: *mut SlabCache<A>, mut f: impl FnMut(&SlabCache<A>)) {
        let mut c = head;
        while !c.is_null() {
            // SAFETY: registry members are live until removed under the registry lock,
            // which the caller holds or has just read `head` under.
            let cache = unsafe { &*c };
            f(cache);
            c = cache.next.load(Relaxed);
        }
        for z in ZoneKind::ALL {
            self.zone(z).into_iter().flatten().rev().for_each(&mut f);
        }
    }

    /// Calls `f` with every cache: user-created ones, then kmalloc's.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let mut debugged = Vec::new();
    /// kmem.for_each_cache(|c| {
    ///     if !c.debug_flags().is_empty() {
    ///         debugged.push(c.name());
    ///     }
    /// });
    /// assert!(debugged.is_empty(), "no kmem.debug= given");
    /// ```
    pub fn for_each_cache(&self, f: impl FnMut(&SlabCache<A>)) {
        let head = self.registry.lock();
        self.for_each_cache_in(*head, f);
    }

    /// Drains every cache's arrays and gives empty slabs back; returns pages released.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let p = kmem.kmalloc(4000, kmem::Gfp::KERNEL)?;
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// assert!(kmem.shrink_all() > 0, "the kmalloc-4096 slab went back");
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn shrink_all(&self) -> usize {
        let mut pages = 0;
        self.for_each_cache(|c| pages += c.shrink(self));
        pages
    }

    /// One reap pass over every cache: the arrays — each CPU's and the shared one — that
    /// no allocation took objects from since the last pass are drained, the others'
    /// marks cleared, and empty slabs released. Returns (objects drained, pages
    /// released).
    ///
    /// # Examples
    /// As a periodic timer would call it:
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let p = kmem.kmalloc(200, kmem::Gfp::KERNEL)?;
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// kmem.reap(); // the array was just used: kept
    /// let (objects, _pages) = kmem.reap(); // idle since: drained
    /// assert!(objects > 0);
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn reap(&self) -> (usize, usize) {
        let mut total = (0, 0);
        self.for_each_cache(|c| {
            let (o, p) = c.reap(self);
            total = (total.0 + o, total.1 + p);
        });
        total
    }

    /// Removes `cache` from the registry and frees it; it must be empty.
    fn unregister(&self, cache: &SlabCache<A>) {
        let mut head = self.registry.lock();
        let target = cache as *const SlabCache<A> as *mut SlabCache<A>;
        let after = cache.next.load(Relaxed);
        if *head == target {
            *head = after;
        } else {
            let mut c = *head;
            loop {
                assert!(!c.is_null(), "a CacheRef's cache is registered");
                // SAFETY: registry members are live while the registry lock is held.
                let member = unsafe { &*c };
                let next = member.next.load(Relaxed);
                if next == target {
                    member.next.store(after, Relaxed);
                    break;
                }
                c = next;
            }
        }
        drop(head);
        cache.release_arrays(self);
        // SAFETY: cache_create kmalloc'd the cache struct; it is off the registry, and the
        // caller's handle, the only other way to it, is being consumed.
        unsafe { self.kfree(target.cast()) }.expect("the cache struct is a live kmalloc block");
    }
}

/// Every lock of the allocator held across calls, for the hosted platform's `fork`
/// handlers (`hosted::Heap` registers them): a child process, whose only thread is a copy
/// of the forking one, must find no lock held and no CPU slot occupied by a thread it
/// does not have.
#[cfg(any(test, feature = "hosted"))]
impl<A: Arch<IrqState = ()>> Kmem<A> {
    /// Takes every lock in the documented order (`slab` module doc): the fault-injection
    /// state (a leaf), the registry, then cache by cache — user caches, then kmalloc's —
    /// every CPU's slot and the node, then the page allocator's per-CPU lists and zones.
    /// A thread inside one of them finishes first: every path takes them in that order,
    /// so each holder can proceed (reclaim only tries, and skips what this holds).
    pub(crate) fn fork_hold(&self) -> ForkHeld<A> {
        self.fail_cache.hold();
        // SAFETY: the registry is held from here on, so its head stays as read.
        let head = unsafe { *self.registry.hold() };
        self.for_each_cache_in(head, |c| c.fork_hold());
        self.pages.fork_hold();
        ForkHeld(head)
    }

    /// Gives back everything [`Kmem::fork_hold`] took; in a child, after `fork`, this is
    /// the whole of what it needs to run.
    ///
    /// # Safety
    /// `held` is what `fork_hold` of this thread (or of the thread this process was
    /// forked from) returned, and its locks are held since.
    pub(crate) unsafe fn fork_release(&self, held: ForkHeld<A>) {
        // SAFETY: the caller's contract: fork_hold took every lock released here, and
        // the registry it walked (held all along) is the same.
        unsafe {
            self.pages.fork_release();
            self.for_each_cache_in(held.0, |c| c.fork_release());
            self.registry.release();
            self.fail_cache.release();
        }
    }
}

/// What [`Kmem::fork_hold`] holds: the registry's head as it walked it.
#[cfg(any(test, feature = "hosted"))]
pub(crate) struct ForkHeld<A: Arch>(*mut SlabCache<A>);

/// The settings a cache named `name` gets from `o`.
fn hardening(o: &Options, name: &CacheName) -> Hardening {
    Hardening {
        debug: o.debug_for(name),
        init_on_alloc: o.init_on_alloc,
        init_on_free: o.init_on_free,
        random_freelist: o.random_freelist,
        seed: o.seed,
    }
}

/// The owner of a live block, from its page descriptor.
enum Owner<'k, A: Arch> {
    /// A block straight from the page allocator.
    Large { pa: u64, order: u32 },
    /// An object of `cache`, in the slab that `frame` belongs to.
    Slab {
        cache: &'k SlabCache<A>,
        frame: &'k PageFrame,
    },
}

/// The slab cache a page descriptor names as owner, if it names one.
#[inline(always)]
fn slab_owner<A: Arch>(frame: &PageFrame) -> Option<&SlabCache<A>> {
    let owner = frame.owner();
    if owner > LARGE_OWNER {
        // SAFETY: a descriptor's owner, when not 0 or LARGE_OWNER, is the live cache
        // whose slab holds this frame (set by grow, cleared on release); caches outlive
        // the descriptors' references to them.
        return Some(unsafe { &*(owner as *const SlabCache<A>) });
    }
    None
}

/// A block found live, with what freeing it needs.
enum LiveBlock<'k, A: Arch> {
    Large {
        pa: u64,
        order: u32,
    },
    Object {
        cache: &'k SlabCache<A>,
        slab: Slab<'k>,
        idx: usize,
    },
    /// An object of the guard pool, `size` bytes.
    Sampled {
        pool: &'k GuardPool<A>,
        size: usize,
    },
}

impl<A: Arch> LiveBlock<'_, A> {
    /// Bytes the block's owner may use.
    fn size(&self) -> usize {
        match self {
            LiveBlock::Large { order, .. } => (PAGE_SIZE as usize) << order,
            LiveBlock::Object { cache, .. } => cache.usable_size(),
            LiveBlock::Sampled { size, .. } => *size,
        }
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

#[cfg(test)]
mod tests;
