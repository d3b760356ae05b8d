//! `GlobalAlloc` over kmalloc: `alloc::{Box, Vec, String, BTreeMap}` on kmem, in the
//! firmware and (through `hosted::Kmem`) in ordinary programs.
//!
//! Every alignment up to 4 KiB is served from the kmalloc caches, larger ones and sizes
//! past 1 MiB from the page allocator. Failure is a null pointer — never a panic, never
//! an unwind.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{NonNull, null_mut};

use super::Kmem;
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::slab::SlabError;

fn or_null(r: Result<NonNull<u8>, SlabError>) -> *mut u8 {
    r.map_or(null_mut(), NonNull::as_ptr)
}

// SAFETY: blocks come from kmalloc_aligned with the layout's size and alignment (or
// krealloc_aligned, which keeps the alignment), go back through kfree, and are never
// handed out twice; failure is null.
unsafe impl<A: Arch> GlobalAlloc for Kmem<A> {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        or_null(self.kmalloc_aligned(l.size(), l.align(), Gfp::KERNEL))
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        or_null(self.kmalloc_aligned(l.size(), l.align(), Gfp::ZERO))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _: Layout) {
        // A refused free is logged by kfree; dealloc has no way to report it.
        let _ = self.kfree(ptr);
    }

    unsafe fn realloc(&self, ptr: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        or_null(self.krealloc_aligned(ptr, new_size, l.align(), Gfp::KERNEL))
    }
}
