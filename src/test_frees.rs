//! The free, resize and size calls for the host tests, which pass bad pointers on
//! purpose: each `*_any` wraps one `unsafe` call of the public API, so the tests read as
//! the fault they provoke. Sound in the tests because every pointer they pass names
//! memory of the test's own heap (a `Region` nothing else uses), where the checks under
//! test read and refuse; a live object is freed only by the test that owns it.

use core::ptr::NonNull;

use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::kmalloc::{CacheRef, Kmem};
use crate::mm::{PageAllocator, PageError, PhysAddr};
use crate::slab::SlabError;

/// `Kmem`'s unsafe calls, for any pointer.
pub(crate) trait KmemAny {
    fn kfree_any(&self, ptr: *mut u8) -> Result<(), SlabError>;
    fn ksize_any(&self, ptr: *mut u8) -> Result<usize, SlabError>;
    fn krealloc_any(&self, ptr: *mut u8, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError>;
    fn kfree_bulk_any(&self, objs: &[*mut u8]) -> Result<(), SlabError>;
    fn krealloc_aligned_any(
        &self,
        ptr: *mut u8,
        size: usize,
        align: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError>;
}

impl<A: Arch> KmemAny for Kmem<A> {
    #[track_caller]
    fn kfree_any(&self, ptr: *mut u8) -> Result<(), SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.kfree(ptr) }
    }

    fn ksize_any(&self, ptr: *mut u8) -> Result<usize, SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.ksize(ptr) }
    }

    fn kfree_bulk_any(&self, objs: &[*mut u8]) -> Result<(), SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.kfree_bulk(objs) }
    }

    #[track_caller]
    fn krealloc_any(&self, ptr: *mut u8, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.krealloc(ptr, size, gfp) }
    }

    #[track_caller]
    fn krealloc_aligned_any(
        &self,
        ptr: *mut u8,
        size: usize,
        align: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.krealloc_aligned(ptr, size, align, gfp) }
    }
}

/// `PageAllocator::free_pages` for any address.
pub(crate) trait PagesAny {
    fn free_pages_any(&self, pa: PhysAddr, order: u32) -> Result<(), PageError>;
}

impl<A: Arch> PagesAny for PageAllocator<A> {
    fn free_pages_any(&self, pa: PhysAddr, order: u32) -> Result<(), PageError> {
        // SAFETY: see the module doc.
        unsafe { self.free_pages(pa, order) }
    }
}

/// `CacheRef::free` and `free_bulk` for any pointer.
pub(crate) trait CacheAny {
    fn free_any(&self, obj: NonNull<u8>) -> Result<(), SlabError>;
    fn free_bulk_any(&self, objs: &[*mut u8]) -> Result<(), SlabError>;
}

impl<A: Arch> CacheAny for CacheRef<'_, A> {
    #[track_caller]
    fn free_any(&self, obj: NonNull<u8>) -> Result<(), SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.free(obj) }
    }

    fn free_bulk_any(&self, objs: &[*mut u8]) -> Result<(), SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.free_bulk(objs) }
    }
}
