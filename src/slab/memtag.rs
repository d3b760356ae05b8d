//! Memory tagging of slab objects (Arm MTE, through the [`Arch`] tagging hooks): an
//! object gets a new tag over its granules when it is handed out, and another when it is
//! taken back, so a pointer past its object or kept after the free no longer matches the
//! memory it reaches. Also what a tag-check fault report needs: the object around an
//! address ([`ObjectSite`]).
//!
//! The allocator's own accesses (state words, red zones, poison, owner records) use
//! untagged addresses, which the port leaves unchecked (MTE's TCMA), so tags never
//! change how the allocator itself works. An object is tagged only when its slots are
//! whole granules starting on a granule: otherwise two objects would share one, and the
//! later tag would make the earlier object's own accesses fault. Such objects (a user
//! cache of 24-byte objects, a debug slot whose left red zone is 8 bytes) stay untagged,
//! and so unchecked; kmalloc rounds its requests to granules while tagging is on (as
//! Linux does under KASAN's hardware tags), so its classes below 64 bytes are not used
//! then. On every port without tagging this file compiles to nothing.

use core::ptr::NonNull;

use super::debug::Track;
use super::{Backing, CacheName, SlabCache};
use crate::arch::Arch;
use crate::mm::frame::PageFrame;

/// The object whose slot holds an address, as a tag-check fault report names it.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// let p = kmem.kmalloc(64, kmem::Gfp::KERNEL)?;
/// let site = kmem.object_at(p.as_ptr() as usize + 10).unwrap();
/// assert_eq!(site.object, p.as_ptr() as usize);
/// assert_eq!(site.cache.as_str(), "kmalloc-64");
/// assert!(site.live && site.size == 64);
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy)]
pub struct ObjectSite {
    /// The cache (`kmalloc-large` for a block from the page allocator).
    pub cache: CacheName,
    /// The object's start, untagged.
    pub object: usize,
    /// Bytes its user may use (as `ksize` says).
    pub size: usize,
    /// Bytes from one object's start to the next's (the block's size for a large block).
    pub stride: usize,
    /// Whether it is handed out (not free).
    pub live: bool,
    /// Who allocated and freed it last, when the cache tracks owners (debug flag U).
    pub owner: Option<Track>,
}

impl<A: Arch> SlabCache<A> {
    /// Bytes of the object at `obj` that carry its tag: the usable bytes rounded up to
    /// whole granules, when the object starts on a granule and every slot is whole
    /// granules holding that many; else 0 (the object stays untagged).
    fn tagged_len(&self, obj: usize) -> usize {
        let g = A::TAG_GRANULE;
        let stride = self.geo().layout.stride;
        let len = self.usable_size().next_multiple_of(g);
        if obj.is_multiple_of(g) && stride.is_multiple_of(g) && len <= stride {
            len
        } else {
            0
        }
    }

    /// `obj`, on its way to a user, with a new tag over its granules while tagging is on.
    #[inline(always)]
    pub(crate) fn hand_out(&self, obj: NonNull<u8>) -> NonNull<u8> {
        if !A::MEMORY_TAGGING || !A::memory_tagging_on() {
            return obj;
        }
        let addr = obj.as_ptr() as usize;
        match self.tagged_len(addr) {
            0 => obj,
            // A tag only sets top bits, so the address stays non-zero.
            len => NonNull::new(obj.as_ptr().with_addr(A::tag_fresh(addr, len))).unwrap_or(obj),
        }
    }

    /// Retags the object at `obj` (untagged), just taken back from a user, so that the
    /// pointers to it that user may keep no longer match.
    #[inline(always)]
    pub(crate) fn retag_freed(&self, obj: usize) {
        if A::MEMORY_TAGGING && A::memory_tagging_on() {
            let len = self.tagged_len(obj);
            if len != 0 {
                A::tag_freed(obj, len);
            }
        }
    }

    /// The object whose slot holds `addr` (untagged), in the slab of page descriptor
    /// `frame`, which names this cache; `None` when `addr` is before the slab's first
    /// object or past its last slot.
    pub(crate) fn site_at(
        &self,
        k: &impl Backing<A>,
        frame: &PageFrame,
        addr: usize,
    ) -> Option<ObjectSite> {
        let t = k.pages().table();
        let slab = self.slab_of(t, t.index_of_frame(frame), frame, addr);
        let stride = self.geo().layout.stride;
        let idx = addr.checked_sub(slab.s_mem)? / stride;
        if idx >= slab.num() {
            return None;
        }
        let object = slab.object(idx);
        Some(ObjectSite {
            cache: self.name(),
            object,
            size: self.usable_size(),
            stride,
            live: self.live_object(k, frame, object).is_ok(),
            owner: self.owner_record(object),
        })
    }
}
