//! kmalloc's side of memory tagging (see `slab::memtag` for the objects): requests are
//! rounded to whole granules while tagging is on, so every object kmalloc hands out has
//! granules of its own; blocks from the page allocator are tagged as a whole; and
//! [`Kmem::object_at`] finds the block around an address for a tag-check fault report.

use core::ptr::NonNull;

use super::free::slab_owner;
use super::{Kmem, LARGE_OWNER};
use crate::arch::Arch;
use crate::mm::memmap::PAGE_SIZE;
use crate::slab::{CacheName, ObjectSite};

impl<A: Arch> Kmem<A> {
    /// `size`, rounded up to whole tag granules while tagging is on (which keeps
    /// kmalloc off the classes whose objects would share a granule).
    #[inline(always)]
    pub(super) fn granule_rounded(size: usize) -> usize {
        if A::MEMORY_TAGGING && A::memory_tagging_on() {
            return size
                .checked_next_multiple_of(A::TAG_GRANULE)
                .unwrap_or(size);
        }
        size
    }

    /// `block` (`bytes` long, from the page allocator), tagged as a whole while tagging
    /// is on.
    pub(super) fn hand_out_large(block: NonNull<u8>, bytes: usize) -> NonNull<u8> {
        if !A::MEMORY_TAGGING || !A::memory_tagging_on() {
            return block;
        }
        let tagged = A::tag_fresh(block.as_ptr() as usize, bytes);
        // A tag only sets top bits, so the address stays non-zero.
        NonNull::new(block.as_ptr().with_addr(tagged)).unwrap_or(block)
    }

    /// Retags a large block at `addr` (`bytes` long) that its user gives back.
    pub(super) fn retag_large(addr: usize, bytes: usize) {
        if A::MEMORY_TAGGING && A::memory_tagging_on() {
            A::tag_freed(addr, bytes);
        }
    }

    /// The slab object, or the head of a live large block, whose memory holds `addr`
    /// (tagged or not); `None` for any other address. Takes the locks the liveness check
    /// of `kfree` takes, so a fault handler calls it only for faults outside the
    /// allocator (tag-check faults are: its own accesses are untagged).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(100, Gfp::KERNEL)?;
    /// let addr = p.as_ptr() as usize;
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// let site = kmem.object_at(addr + 3).unwrap();
    /// assert_eq!((site.object, site.size, site.live), (addr, 112, false));
    /// assert!(kmem.object_at(0x10).is_none());
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn object_at(&self, addr: usize) -> Option<ObjectSite> {
        let addr = A::untag(addr);
        let frame = self.pages.frame(A::virt_to_phys(addr))?;
        if let Some(cache) = slab_owner::<A>(frame) {
            return cache.site_at(self, frame, addr);
        }
        if frame.owner() != LARGE_OWNER {
            return None;
        }
        let bytes = (PAGE_SIZE as usize) << frame.order();
        Some(ObjectSite {
            cache: CacheName::new("kmalloc-large").expect("valid name"),
            object: addr & !(PAGE_SIZE as usize - 1),
            size: bytes,
            stride: bytes,
            live: true,
            owner: None,
        })
    }
}
