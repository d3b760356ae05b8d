//! `krealloc` and its `GlobalAlloc` entry `krealloc_or_null`: a block stays where it is
//! when its class still holds the new size, and otherwise moves, copying what the caller
//! keeps. The old block is checked as `kfree` checks it before any byte is read.

use core::alloc::Layout;
use core::ptr::NonNull;

use super::classes::class_of;
use super::free::slab_owner;
use super::{KMALLOC_MAX, Kmem, ZERO_SIZE_PTR};
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::slab::SlabError;

impl<A: Arch> Kmem<A> {
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
                cache.free_fast_live(self, frame, addr, live);
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
}
