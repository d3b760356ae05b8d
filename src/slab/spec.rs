//! What a cache is made of: its creation flags ([`SlabFlags`]), its constructor and
//! destructor ([`ObjectFn`]), and the spec and hardening settings `SlabCache::new` builds
//! it from.

use super::{CacheName, DebugFlags};
use crate::gfp::Gfp;

/// A constructor or destructor: called with the object's address.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Gfp, SlabFlags};
/// use kmem::slab::ObjectFn;
/// const MAGIC: u64 = 0x5EED_CAFE;
/// fn init(obj: *mut u8) {
///     // SAFETY: kmem passes a fresh object of the cache below: 64 bytes, 8-aligned.
///     unsafe { obj.cast::<u64>().write(MAGIC) }
/// }
/// let ctor: ObjectFn = init;
/// let c = kmem.cache_create("sessions", 64, 8, SlabFlags::NONE, Some(ctor), None)?;
/// let s = c.alloc(Gfp::KERNEL)?;
/// assert_eq!(unsafe { s.cast::<u64>().read() }, MAGIC); // SAFETY: s is live.
/// unsafe { c.free(s) }?; // SAFETY: s is freed in its constructed state, not used again.
/// # c.destroy().map_err(|(_, e)| e)?;
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub type ObjectFn = fn(*mut u8);

/// Cache creation flags.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::SlabFlags;
/// let flags = SlabFlags::HWCACHE_ALIGN | SlabFlags::POISON;
/// let c = kmem.cache_create("skbuff", 200, 8, flags, None, None)?;
/// assert_eq!(c.cache().debug_flags().to_string(), "P");
/// # c.destroy().map_err(|(_, e)| e)?;
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SlabFlags(u32);

impl SlabFlags {
    /// No flag: slabs from the Normal zone (or below), objects aligned as asked, no
    /// debugging of the cache's own.
    ///
    /// # Examples
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// assert_eq!(SlabFlags::default(), SlabFlags::NONE);
    /// assert_eq!(SlabFlags::NONE.gfp(), Gfp::KERNEL);
    /// ```
    pub const NONE: SlabFlags = SlabFlags(0);
    /// Align objects to the cache line.
    ///
    /// # Examples
    /// Per-CPU counters that must not share a line:
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabFlags};
    /// let c = kmem.cache_create("stats", 40, 8, SlabFlags::HWCACHE_ALIGN, None, None)?;
    /// assert_eq!(c.cache().stride(), 64);
    /// let p = c.alloc(Gfp::KERNEL)?;
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// unsafe { c.free(p) }?; // SAFETY: p is not used again.
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub const HWCACHE_ALIGN: SlabFlags = SlabFlags(1 << 0);
    /// Take slabs from the DMA zone.
    ///
    /// # Examples
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// // Floppy or ISA sound buffers on x86: below 16 MiB.
    /// assert_eq!(SlabFlags::DMA.gfp(), Gfp::DMA);
    /// ```
    pub const DMA: SlabFlags = SlabFlags(1 << 1);
    /// Take slabs from DMA32 (or DMA).
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabFlags;
    /// use kmem::mm::zone::ZoneKind;
    /// // Descriptors for a device with 32-bit DMA addresses.
    /// assert_eq!(SlabFlags::DMA32.gfp().zone(), ZoneKind::Dma32);
    /// ```
    pub const DMA32: SlabFlags = SlabFlags(1 << 2);
    /// Sanity checks for this cache alone, as Linux's `SLAB_CONSISTENCY_CHECKS`
    /// ([`DebugFlags::SANITY`]).
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabFlags;
    /// use kmem::slab::DebugFlags;
    /// assert_eq!(SlabFlags::SANITY.debug(), DebugFlags::SANITY);
    /// ```
    pub const SANITY: SlabFlags = SlabFlags(1 << 3);
    /// Red zones for this cache alone, as `SLAB_RED_ZONE` ([`DebugFlags::RED_ZONE`]).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::SlabFlags;
    /// let c = kmem.cache_create("guarded", 100, 8, SlabFlags::RED_ZONE, None, None)?;
    /// assert!(c.cache().stride() > c.cache().usable_size(), "room for the red zones");
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub const RED_ZONE: SlabFlags = SlabFlags(1 << 4);
    /// Poisoning for this cache alone, as `SLAB_POISON` ([`DebugFlags::POISON`]).
    ///
    /// # Examples
    /// See [`SlabFlags`].
    pub const POISON: SlabFlags = SlabFlags(1 << 5);
    /// Owner tracking for this cache alone, as `SLAB_STORE_USER`
    /// ([`DebugFlags::STORE_USER`]).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{SlabError, SlabFlags};
    /// let c = kmem.cache_create("tracked", 32, 8, SlabFlags::STORE_USER, None, None)?;
    /// let leak = c.alloc(kmem::Gfp::KERNEL)?;
    /// // The refusal logs the leaked object with the line that allocated it.
    /// let (c, e) = c.destroy().unwrap_err();
    /// assert!(matches!(e, SlabError::Busy { live: 1, .. }));
    /// # unsafe { c.free(leak) }?; // SAFETY: leak is live and not used again.
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), SlabError>(())
    /// ```
    pub const STORE_USER: SlabFlags = SlabFlags(1 << 6);

    /// Whether every flag of `o` is set.
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabFlags;
    /// let f = SlabFlags::HWCACHE_ALIGN | SlabFlags::DMA32;
    /// assert!(f.contains(SlabFlags::DMA32));
    /// assert!(!f.contains(SlabFlags::DMA));
    /// ```
    pub const fn contains(self, o: SlabFlags) -> bool {
        self.0 & o.0 == o.0
    }

    /// The allocation flags the cache's slabs are taken with (their zone).
    ///
    /// # Examples
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// assert_eq!((SlabFlags::DMA32 | SlabFlags::POISON).gfp(), Gfp::DMA32);
    /// ```
    pub const fn gfp(self) -> Gfp {
        if self.contains(SlabFlags::DMA) {
            Gfp::DMA
        } else if self.contains(SlabFlags::DMA32) {
            Gfp::DMA32
        } else {
            Gfp::KERNEL
        }
    }

    /// The debug options these flags ask for.
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabFlags;
    /// use kmem::slab::DebugFlags;
    /// let f = SlabFlags::HWCACHE_ALIGN | SlabFlags::RED_ZONE | SlabFlags::POISON;
    /// assert_eq!(Some(f.debug()), DebugFlags::parse("ZP"));
    /// ```
    pub fn debug(self) -> DebugFlags {
        [
            (SlabFlags::SANITY, DebugFlags::SANITY),
            (SlabFlags::RED_ZONE, DebugFlags::RED_ZONE),
            (SlabFlags::POISON, DebugFlags::POISON),
            (SlabFlags::STORE_USER, DebugFlags::STORE_USER),
        ]
        .into_iter()
        .filter(|(s, _)| self.contains(*s))
        .fold(DebugFlags::NONE, |d, (_, f)| d.union(f))
    }
}

impl core::ops::BitOr for SlabFlags {
    type Output = SlabFlags;
    fn bitor(self, o: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | o.0)
    }
}

/// What a cache is made of.
#[derive(Clone, Copy)]
pub(crate) struct CacheSpec {
    pub name: CacheName,
    pub size: usize,
    pub align: usize,
    pub flags: SlabFlags,
    pub ctor: Option<ObjectFn>,
    pub dtor: Option<ObjectFn>,
}

/// How a cache checks and hardens itself (from `kmalloc::Options`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hardening {
    pub debug: DebugFlags,
    pub init_on_alloc: bool,
    pub init_on_free: bool,
    pub random_freelist: bool,
    /// Entropy for the free-list key.
    pub seed: u64,
}
