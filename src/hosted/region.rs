//! [`Region`]: a block of memory from the OS that stands in for physical RAM (the
//! process's addresses serve as physical ones), and the memory maps built over it.

use std::alloc::{GlobalAlloc, Layout, System};

use crate::mm::memmap::{MapError, MemoryMap, NormalizedMap, RegionKind};

/// Memory taken from the OS to stand in for physical RAM. Aligned to 4 MiB (the largest
/// buddy block) so that block alignment inside it is real alignment.
///
/// # Examples
/// ```
/// use kmem::hosted::{HostArch, Region};
/// use kmem::{Gfp, Kmem, PageAllocator, ZoneLimits};
/// let ram = Region::new(32 << 20).expect("32 MiB from the OS");
/// let map = ram.normalized()?;
/// // SAFETY: the region outlives the allocator and nothing else uses it.
/// let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 2, None) }
///     .expect("room for the metadata");
/// let kmem = Kmem::new(pages).expect("the kmalloc caches fit");
/// assert!(kmem.kmalloc(100, Gfp::KERNEL).is_ok());
/// # Ok::<(), kmem::mm::memmap::MapError>(())
/// ```
pub struct Region {
    base: *mut u8,
    layout: Layout,
}

// SAFETY: the region is plain memory owned by this value; what lives in it is the
// allocator's business, and the allocator is Sync.
unsafe impl Send for Region {}
// SAFETY: as for Send.
unsafe impl Sync for Region {}

/// Alignment of a [`Region`].
///
/// # Examples
/// ```
/// use kmem::hosted::{REGION_ALIGN, Region};
/// let ram = Region::new(1 << 20).unwrap();
/// assert_eq!(ram.start() % REGION_ALIGN as u64, 0);
/// ```
pub const REGION_ALIGN: usize = 4 << 20;

impl Region {
    /// Takes `bytes` (rounded up to 4 KiB) from the OS — through the system allocator,
    /// never the global one, which may be kmem itself — or `None` when it refuses.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::Region;
    /// let ram = Region::new(10_000).expect("the OS has 12 KiB");
    /// assert_eq!(ram.size(), 12 << 10);
    /// assert!(Region::new(1 << 62).is_none(), "no OS has 4 EiB to give");
    /// ```
    pub fn new(bytes: usize) -> Option<Region> {
        let layout =
            Layout::from_size_align(bytes.max(4096).next_multiple_of(4096), REGION_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { System.alloc(layout) };
        (!base.is_null()).then_some(Region { base, layout })
    }

    /// Start of the region, as a "physical" address.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::Region;
    /// let ram = Region::new(1 << 20).unwrap();
    /// let map = ram.normalized()?;
    /// assert_eq!(map.usable()[0].start, ram.start());
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub fn start(&self) -> u64 {
        self.base as u64
    }

    /// Length of the region in bytes: what was asked for, rounded up to 4 KiB.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::Region;
    /// let ram = Region::new(1 << 20).unwrap();
    /// assert_eq!(ram.normalized()?.usable_bytes(), ram.size());
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub fn size(&self) -> u64 {
        self.layout.size() as u64
    }

    /// A map with the whole region usable.
    ///
    /// # Examples
    /// Firmware that keeps the first 64 KiB for itself:
    /// ```
    /// use kmem::hosted::Region;
    /// use kmem::mm::memmap::RegionKind;
    /// let ram = Region::new(1 << 20).unwrap();
    /// let mut map = ram.memory_map();
    /// map.add(RegionKind::Reserved, ram.start(), 64 << 10)?;
    /// let map = map.normalize()?;
    /// assert_eq!(map.usable()[0].start, ram.start() + (64 << 10));
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub fn memory_map(&self) -> MemoryMap {
        let mut m = MemoryMap::new();
        m.add(RegionKind::Usable, self.start(), self.size())
            .expect("a region is never empty and never wraps");
        m
    }

    /// The region's map in normal form.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::Region;
    /// let ram = Region::new(8 << 20).unwrap();
    /// let map = ram.normalized()?;
    /// assert_eq!(map.usable().len(), 1);
    /// assert!(map.reserved().is_empty());
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub fn normalized(&self) -> Result<NormalizedMap, MapError> {
        self.memory_map().normalize()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base came from `System.alloc` with this layout and is freed once.
        unsafe { System.dealloc(self.base, self.layout) }
    }
}
