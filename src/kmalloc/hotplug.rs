//! Regions added and removed through a whole [`Kmem`]: removal first has the slab caches
//! give back their empty slabs and the objects parked in their arrays, so that a region
//! whose only users were empty slabs comes back.

use crate::arch::Arch;
use crate::mm::HotplugError;
use crate::mm::memmap::PhysRange;

use super::Kmem;

impl<A: Arch> Kmem<A> {
    /// [`PageAllocator::add_region`](crate::PageAllocator::add_region): `range` joins
    /// the allocator and is allocatable (by kmalloc too) when this returns.
    ///
    /// # Safety
    /// As for `PageAllocator::add_region`: `range` is RAM, reachable at
    /// [`Arch::phys_to_virt`], that the caller owns and that nothing else uses until
    /// [`Kmem::remove_region`] gives it back (or for the allocator's lifetime).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::hosted::Region;
    /// use kmem::PhysRange;
    /// let ram = Region::new(8 << 20).unwrap();
    /// let range = PhysRange { start: ram.start(), end: ram.start() + ram.size() };
    /// // SAFETY: the region is ours and is taken back below before it is dropped.
    /// unsafe { kmem.add_region(range) }?;
    /// print!("{}", kmem.meminfo()); // "added at run time: 1 regions, 8192 KiB, …"
    /// kmem.remove_region(range)?;
    /// # Ok::<(), kmem::mm::HotplugError>(())
    /// ```
    pub unsafe fn add_region(&self, range: PhysRange) -> Result<(), HotplugError> {
        // SAFETY: the caller's contract is add_region's.
        unsafe { self.pages().add_region(range) }
    }

    /// Takes back a region [`Kmem::add_region`] added (all or nothing): when some of its
    /// pages are in use, every cache first gives back its parked objects and empty slabs
    /// ([`Kmem::shrink_all`]) and the removal is tried once more; if pages are still in
    /// use, the error counts them and the region stays as it was.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::hosted::Region;
    /// use kmem::mm::HotplugError;
    /// use kmem::{Gfp, PhysRange};
    /// let ram = Region::new(4 << 20).unwrap();
    /// let range = PhysRange { start: ram.start(), end: ram.start() + ram.size() };
    /// // SAFETY: the region is ours and is taken back below before it is dropped.
    /// unsafe { kmem.add_region(range) }?;
    /// let mut objs = Vec::new();
    /// while let Ok(p) = kmem.kmalloc(2048, Gfp::KERNEL) {
    ///     objs.push(p); // fills the boot memory and then the region
    /// }
    /// assert!(matches!(kmem.remove_region(range), Err(HotplugError::PagesInUse { .. })));
    /// for p in objs {
    ///     unsafe { kmem.kfree(p.as_ptr()) }.unwrap(); // SAFETY: not used again.
    /// }
    /// kmem.remove_region(range)?; // the empty slabs went back first
    /// # Ok::<(), HotplugError>(())
    /// ```
    pub fn remove_region(&self, range: PhysRange) -> Result<(), HotplugError> {
        match self.pages().remove_region(range) {
            Err(HotplugError::PagesInUse { .. }) => {
                self.shrink_all();
                self.pages().remove_region(range)
            }
            r => r,
        }
    }
}
