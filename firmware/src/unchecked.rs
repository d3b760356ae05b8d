//! The allocator's `unsafe` free, resize and size calls for the self-tests, the demo
//! workload, the in-firmware benchmark and the monitor, each wrapped once as a `*_any`
//! method so that call sites read as what they do.
//!
//! The self-tests pass bad pointers on purpose (interior, stack, double frees), and the
//! monitor frees whatever address its user types: the allocator's checks refuse every
//! one that is not a live block, and they only read memory the allocator manages or the
//! caller's own stack. A live block freed from here is freed by its owner (a test, the
//! workload) or, in the monitor, by a person debugging the machine on purpose — the one
//! use of these calls that Rust's rules cannot vouch for, and the reason the library
//! makes them `unsafe`.

use core::ptr::NonNull;

use kmem::{Arch, CacheRef, Gfp, Kmem, PageAllocator, PageError, PhysAddr, SlabError};

/// `Kmem`'s unsafe calls, for any pointer (see the module doc).
pub trait KmemAny {
    /// [`Kmem::kfree`].
    fn kfree_any(&self, ptr: *mut u8) -> Result<(), SlabError>;
    /// [`Kmem::ksize`].
    fn ksize_any(&self, ptr: *mut u8) -> Result<usize, SlabError>;
    /// [`Kmem::krealloc`].
    fn krealloc_any(&self, ptr: *mut u8, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError>;
    /// [`Kmem::kfree_bulk`].
    fn kfree_bulk_any(&self, objs: &[*mut u8]) -> Result<(), SlabError>;
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

    #[track_caller]
    fn krealloc_any(&self, ptr: *mut u8, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.krealloc(ptr, size, gfp) }
    }

    fn kfree_bulk_any(&self, objs: &[*mut u8]) -> Result<(), SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.kfree_bulk(objs) }
    }
}

/// `PageAllocator::free_pages` for any address (see the module doc).
pub trait PagesAny {
    /// [`PageAllocator::free_pages`].
    fn free_pages_any(&self, pa: PhysAddr, order: u32) -> Result<(), PageError>;
}

impl<A: Arch> PagesAny for PageAllocator<A> {
    fn free_pages_any(&self, pa: PhysAddr, order: u32) -> Result<(), PageError> {
        // SAFETY: see the module doc.
        unsafe { self.free_pages(pa, order) }
    }
}

/// `CacheRef::free` for any pointer (see the module doc).
pub trait CacheAny {
    /// [`CacheRef::free`].
    fn free_any(&self, obj: NonNull<u8>) -> Result<(), SlabError>;
}

impl<A: Arch> CacheAny for CacheRef<'_, A> {
    #[track_caller]
    fn free_any(&self, obj: NonNull<u8>) -> Result<(), SlabError> {
        // SAFETY: see the module doc.
        unsafe { self.free(obj) }
    }
}
