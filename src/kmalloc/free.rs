//! The kmalloc family's free side: `kfree`, its `GlobalAlloc` entry `kfree_logged`, and
//! `ksize`. A block's owner comes in O(1) from its page descriptor — a slab cache, or
//! `LARGE_OWNER` for a block straight from the page allocator — and a pointer that is not
//! a live block start is refused and logged before anything changes.
//!
//! No lock of its own: a slab object's free takes its cache's locks (see `slab`), a
//! large block's the page allocator's.

use super::{Kmem, LARGE_OWNER, ZERO_SIZE_PTR};
use crate::arch::Arch;
use crate::guard_pool::GuardPool;
use crate::mm::frame::PageFrame;
use crate::mm::memmap::PAGE_SIZE;
use crate::slab::header::Slab;
use crate::slab::{CacheName, SlabCache, SlabError};

impl<A: Arch> Kmem<A> {
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
    /// (inline arithmetic, no call) and leaves frames of other banks to
    /// `kfree_logged_slow`.
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
        // The error is logged by kfree's slow path; kfree's own lookup finds frames of
        // the other banks (`FrameTable::frame_of`).
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
    pub(super) fn free_checked(
        &self,
        addr: usize,
        expected: Option<&SlabCache<A>>,
    ) -> Result<(), SlabError> {
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
    pub(super) fn live_block(&self, addr: usize) -> Result<LiveBlock<'_, A>, SlabError> {
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
    pub(super) fn free_live(&self, block: LiveBlock<'_, A>, addr: usize) -> Result<(), SlabError> {
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
pub(super) fn slab_owner<A: Arch>(frame: &PageFrame) -> Option<&SlabCache<A>> {
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
pub(super) enum LiveBlock<'k, A: Arch> {
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
    pub(super) fn size(&self) -> usize {
        match self {
            LiveBlock::Large { order, .. } => (PAGE_SIZE as usize) << order,
            LiveBlock::Object { cache, .. } => cache.usable_size(),
            LiveBlock::Sampled { size, .. } => *size,
        }
    }
}
