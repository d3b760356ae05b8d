//! Allocation flags shared by the page allocator and kmalloc, after Linux's `gfp_t`.

use crate::mm::zone::ZoneKind;

/// Allocation flags. The zone bits give the highest zone the caller accepts; the allocator
/// falls back downwards from there (Normal → DMA32 → DMA), never upwards.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::Gfp;
/// let p = kmem.kmalloc(64, Gfp::KERNEL | Gfp::ZERO)?;
/// // SAFETY: p is a live 64-byte block.
/// assert_eq!(unsafe { p.as_ptr().add(63).read() }, 0);
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Gfp(u32);

impl Gfp {
    /// Any zone, no zeroing, may not be called from interrupt context.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// use kmem::mm::zone::ZoneKind;
    /// assert_eq!(Gfp::default(), Gfp::KERNEL);
    /// assert_eq!(Gfp::KERNEL.zone(), ZoneKind::Normal);
    /// ```
    pub const KERNEL: Gfp = Gfp(0);
    /// Fill the memory with zeroes before returning it (`__GFP_ZERO`).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::hosted::HostArch;
    /// use kmem::{Arch, Gfp};
    /// let pa = kmem.alloc_pages(0, Gfp::ZERO)?;
    /// let page = HostArch::phys_to_virt(pa) as *const u64;
    /// // SAFETY: the page is ours, 4 KiB at phys_to_virt.
    /// assert!((0..512).all(|i| unsafe { page.add(i).read() } == 0));
    /// unsafe { kmem.pages().free_pages(pa, 0) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub const ZERO: Gfp = Gfp(1 << 0);
    /// Serve from the DMA zone only.
    ///
    /// # Examples
    /// A board whose DMA masters see only the low half of RAM:
    /// ```
    /// use kmem::{Gfp, PageAllocator, ZoneLimits};
    /// use kmem::hosted::{HostArch, Region};
    /// let ram = Region::new(16 << 20).unwrap();
    /// let low = ram.start() + ram.size() / 2;
    /// let limits = ZoneLimits { dma_end: low, dma32_end: low };
    /// // SAFETY: the region is RAM nothing else uses while the allocator lives.
    /// let pages = unsafe { PageAllocator::<HostArch>::new(&ram.normalized()?, limits, 1, None) }
    ///     .expect("room for the metadata");
    /// let pa = pages.alloc_pages(0, Gfp::DMA).expect("a free DMA page");
    /// assert!(pa < low);
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub const DMA: Gfp = Gfp(1 << 1);
    /// Serve from DMA32 or, failing that, DMA.
    ///
    /// # Examples
    /// Never from a higher zone: where all memory is Normal, the request fails.
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap(); // hosted: all memory is Normal
    /// use kmem::{Gfp, PageError};
    /// let r = kmem.alloc_pages(0, Gfp::DMA32);
    /// assert!(matches!(r, Err(PageError::OutOfMemory { order: 0, .. })));
    /// ```
    pub const DMA32: Gfp = Gfp(1 << 2);
    /// Called from interrupt context: never waits on anything but the short zone and
    /// cache locks, which are always taken with interrupts disabled.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// // In an interrupt handler: a receive descriptor for the NIC.
    /// let desc = kmem.kmalloc(32, Gfp::ATOMIC)?;
    /// // SAFETY: desc came from kmalloc and is not used again.
    /// unsafe { kmem.kfree(desc.as_ptr()) }?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub const ATOMIC: Gfp = Gfp(1 << 3);
    /// The caller cannot handle a failure: fault injection (`kmem.failslab`,
    /// [`Kmem::set_failslab`](crate::Kmem::set_failslab)) never fails this allocation,
    /// nor counts it, as Linux's `should_failslab` skips `__GFP_NOFAIL`. Unlike Linux's
    /// flag it does not make the allocator retry for ever: when memory really runs out,
    /// the allocation still fails. kmem's own allocations (a cache's structure in
    /// `cache_create`) carry it.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabError};
    /// kmem.set_failslab(1, None); // every allocation fails…
    /// assert!(matches!(kmem.kmalloc(64, Gfp::KERNEL), Err(SlabError::Injected { .. })));
    /// let p = kmem.kmalloc(64, Gfp::KERNEL | Gfp::NOFAIL)?; // …but this one
    /// kmem.set_failslab(0, None);
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), SlabError>(())
    /// ```
    pub const NOFAIL: Gfp = Gfp(1 << 4);
    /// Memory of the preferred node only (Linux's `__GFP_THISNODE`): the running CPU's
    /// node for [`PageAllocator::alloc_pages`](crate::PageAllocator::alloc_pages), the
    /// named one for [`PageAllocator::alloc_pages_node`](crate::PageAllocator::alloc_pages_node).
    /// Without it, a node that is out of memory falls back to the others, nearest first.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, PageError};
    /// let pages = kmem.pages();
    /// let mut held = Vec::new();
    /// let err = loop {
    ///     match pages.alloc_pages_node(1, 0, Gfp::KERNEL | Gfp::THIS_NODE) {
    ///         Ok(pa) => held.push(pa),
    ///         Err(e) => break e,
    ///     }
    /// };
    /// assert!(matches!(err, PageError::OutOfMemory { .. }), "node 1 is full, node 0 is not");
    /// assert!(held.iter().all(|&pa| pages.node_of(pa) == Some(1)));
    /// for pa in held {
    ///     unsafe { pages.free_pages(pa, 0) }?; // SAFETY: not used again.
    /// }
    /// # Ok::<(), PageError>(())
    /// ```
    pub const THIS_NODE: Gfp = Gfp(1 << 6);
    /// A request through a Rust allocator interface (`GlobalAlloc`, `Allocator`), whose
    /// collections abort on a null: fault injection spares it unless its filter names
    /// the cache that serves it (see `Kmem::set_failslab`).
    pub(crate) const RUST_ALLOC: Gfp = Gfp(1 << 5);

    /// Whether every flag in `other` is set.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// let gfp = Gfp::ATOMIC | Gfp::ZERO;
    /// assert!(gfp.contains(Gfp::ZERO));
    /// assert!(!gfp.contains(Gfp::ZERO | Gfp::DMA));
    /// ```
    #[inline]
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags in `self` but not in `other`.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// assert_eq!((Gfp::DMA | Gfp::ZERO).without(Gfp::ZERO), Gfp::DMA);
    /// ```
    #[inline]
    pub const fn without(self, other: Gfp) -> Gfp {
        Gfp(self.0 & !other.0)
    }

    /// Raw bits, for logging.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// assert_eq!(Gfp::KERNEL.bits(), 0);
    /// assert_eq!(format!("{:#x}", (Gfp::ZERO | Gfp::ATOMIC).bits()), "0x9");
    /// ```
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The highest zone these flags accept.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// use kmem::mm::zone::ZoneKind;
    /// assert_eq!((Gfp::DMA32 | Gfp::ZERO).zone(), ZoneKind::Dma32);
    /// assert_eq!(Gfp::DMA.zone(), ZoneKind::Dma);
    /// ```
    #[inline]
    pub const fn zone(self) -> ZoneKind {
        if self.contains(Gfp::DMA) {
            ZoneKind::Dma
        } else if self.contains(Gfp::DMA32) {
            ZoneKind::Dma32
        } else {
            ZoneKind::Normal
        }
    }
}

impl core::ops::BitOr for Gfp {
    type Output = Gfp;
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Gfp {
    fn bitor_assign(&mut self, rhs: Gfp) {
        self.0 |= rhs.0;
    }
}
