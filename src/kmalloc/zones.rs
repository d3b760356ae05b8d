//! The kmalloc caches of each zone: their names, the budget their arrays share
//! ([`ARRAY_SHARE`] of the zone), the memory those arrays are carved from
//! ([`ArrayCarver`]), and the hardening a cache gets from the options.
//!
//! Built once in `Kmem::with_options`, before anyone else can reach the allocator: no
//! lock is taken. The caches are never freed, so `caches_at` hands out references that
//! live as long as the `Kmem`.

use super::classes::class_align;
use super::{CLASS_SIZES, Kmem, NR_CLASSES, Options};
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::mm::PageAllocator;
use crate::mm::buddy::order_for_bytes;
use crate::mm::memmap::PAGE_SIZE;
use crate::mm::zone::{NR_ZONES, ZoneKind};
use crate::slab::{ArrayScale, CacheName, CacheSpec, Hardening, SlabCache, SlabError, SlabFlags};

/// Name prefixes of the kmalloc caches, by zone.
const ZONE_PREFIX: [&str; NR_ZONES] = ["dma-kmalloc-", "dma32-kmalloc-", "kmalloc-"];

/// A zone's kmalloc arrays take at most 1/`ARRAY_SHARE` of it (0.39 %): full arrays from
/// about 64 MiB with four CPUs, smaller ones below, down to [`ArrayScale::MIN`], which a
/// zone of a few MiB exceeds its share for.
pub(super) const ARRAY_SHARE: usize = 256;

/// Page blocks cut into the kmalloc caches' array memory, one cache's arrays after the
/// other (64-aligned, as their sizes are multiples of 64), so that the 78 classes' arrays
/// take about half the pages whole blocks per cache would; never given back, as the
/// caches live as long as the allocator.
pub(super) struct ArrayCarver {
    pub(super) at: usize,
    pub(super) end: usize,
    /// Pages taken, with the blocks holding the caches themselves.
    pub(super) pages: usize,
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
pub(super) type KmallocCaches<A> = [SlabCache<A>; NR_CLASSES];

impl<A: Arch> Kmem<A> {
    /// The security and debug settings a cache named `name` gets.
    pub(super) fn hardening(&self, name: &CacheName) -> Hardening {
        hardening(&self.options, name)
    }

    /// Creates zone `z`'s kmalloc caches and their arrays in memory from `carver`, the
    /// arrays at the largest scale whose bytes fit in 1/[`ARRAY_SHARE`] of the zone; returns
    /// the caches and that scale. On an error the partly built caches and their pages are
    /// not given back: the caller drops the whole page allocator.
    pub(super) fn zone_caches(
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
    pub(super) fn zone(&self, z: ZoneKind) -> Option<&KmallocCaches<A>> {
        self.caches_at(self.kmalloc[z.index()])
    }

    /// The caches an entry of `kmalloc` or `serving` points at.
    #[inline(always)]
    pub(super) fn caches_at(&self, p: *const KmallocCaches<A>) -> Option<&KmallocCaches<A>> {
        // SAFETY: both arrays hold null or caches written in `zone_caches`, which live as
        // long as `self` (they are never freed).
        unsafe { p.as_ref() }
    }
}

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
