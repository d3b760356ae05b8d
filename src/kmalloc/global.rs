//! `GlobalAlloc` over kmalloc: `alloc::{Box, Vec, String, BTreeMap}` on kmem — in a
//! kernel through [`GlobalKmem`], set up at boot, and in ordinary programs through
//! `hosted::Heap` — and `allocator_api2`'s `Allocator` for `&Kmem`.
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
        self.kmalloc_or_null(l, Gfp::RUST_ALLOC)
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        or_null(self.kmalloc_aligned(l.size(), l.align(), Gfp::ZERO | Gfp::RUST_ALLOC))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _: Layout) {
        // dealloc has no way to report a refused free; kfree_logged logs it.
        self.kfree_logged(ptr);
    }

    unsafe fn realloc(&self, ptr: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // Only the old layout's bytes are the caller's: copy those, not the whole class.
        self.krealloc_or_null(ptr, l, new_size)
    }
}

/// A `#[global_allocator]` for a kernel: empty until boot code hands it the [`Kmem`] it
/// built, then every `alloc` collection runs on kmalloc. Before that (and if boot never
/// gets that far) allocations fail with null, which `alloc` reports as out of memory.
///
/// kmem itself never allocates through the global allocator, so a kernel that does not
/// want one need not define it.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), kmem::SlabError> {
/// use kmem::GlobalKmem;
/// use kmem::hosted::HostArch;
///
/// // In a kernel: #[global_allocator]
/// static HEAP: GlobalKmem<HostArch> = GlobalKmem::new();
///
/// # let region = kmem::hosted::Region::new(16 << 20).unwrap();
/// # let map = region.normalized().unwrap();
/// // SAFETY: the region is RAM nothing else uses, for as long as the allocator lives.
/// let pages = unsafe { kmem::PageAllocator::new(&map, kmem::ZoneLimits::FLAT, 1, None) }
///     .expect("a usable map");
/// let installed = HEAP.init(kmem::Kmem::new(pages)?);
/// assert!(installed.is_ok() && HEAP.get().is_some());
/// # std::mem::forget(region);
/// # Ok(()) }
/// ```
pub struct GlobalKmem<A: Arch> {
    kmem: spin::Once<Kmem<A>>,
}

impl<A: Arch> GlobalKmem<A> {
    /// An empty global allocator, for a `static`.
    ///
    /// # Examples
    /// See [`GlobalKmem`].
    pub const fn new() -> Self {
        GlobalKmem {
            kmem: spin::Once::new(),
        }
    }

    /// Installs `kmem` and returns it, or gives it back if one is installed already.
    ///
    /// # Examples
    /// See [`GlobalKmem`].
    #[allow(
        clippy::result_large_err,
        reason = "as `OnceCell::set`, the value comes back to its owner; this runs once"
    )]
    pub fn init(&self, kmem: Kmem<A>) -> Result<&Kmem<A>, Kmem<A>> {
        let mut kmem = Some(kmem);
        let installed = self.kmem.call_once(|| kmem.take().expect("taken once"));
        match kmem {
            None => Ok(installed),
            Some(k) => Err(k),
        }
    }

    /// The installed allocator, if boot has installed one.
    ///
    /// # Examples
    /// See [`GlobalKmem`].
    #[inline(always)]
    pub fn get(&self) -> Option<&Kmem<A>> {
        self.kmem.get()
    }
}

impl<A: Arch> Default for GlobalKmem<A> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: forwards to Kmem's GlobalAlloc, which upholds the contract; a block can only
// have come from the installed Kmem (none is handed out before it, and it is never
// replaced), so frees reach the allocator that made the block. Without one, every
// request fails with null and there is nothing to free.
unsafe impl<A: Arch> GlobalAlloc for GlobalKmem<A> {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        match self.get() {
            // SAFETY: the caller's contract passes straight through.
            Some(k) => unsafe { k.alloc(l) },
            None => null_mut(),
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        match self.get() {
            // SAFETY: as for alloc.
            Some(k) => unsafe { k.alloc_zeroed(l) },
            None => null_mut(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, l: Layout) {
        if let Some(k) = self.get() {
            // SAFETY: as for alloc.
            unsafe { k.dealloc(ptr, l) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        match self.get() {
            // SAFETY: as for alloc.
            Some(k) => unsafe { k.realloc(ptr, l, new_size) },
            None => null_mut(),
        }
    }
}

/// `allocator_api2::alloc::Allocator` for `&Kmem`: collections of the `allocator-api2`
/// crate (`Vec::new_in`, `Box::new_in`) on one particular allocator instance, on stable
/// Rust.
// SAFETY: blocks stay valid until deallocated (kmem never moves or reuses a live block),
// are at least `layout.size()` long and aligned to `layout.align()`; deallocate/grow/
// shrink receive blocks this allocator returned.
unsafe impl<A: Arch> allocator_api2::alloc::Allocator for &Kmem<A> {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let p = self
            .kmalloc_aligned(l.size(), l.align(), Gfp::RUST_ALLOC)
            .map_err(|_| allocator_api2::alloc::AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, l.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, _: Layout) {
        // deallocate has no way to report a refused free; kfree_logged logs it.
        self.kfree_logged(ptr.as_ptr());
    }
}

#[cfg(test)]
mod tests {
    use allocator_api2::vec::Vec;

    use super::Kmem;
    use crate::hosted::{HostArch, Region};
    use crate::mm::PageAllocator;
    use crate::mm::zone::ZoneLimits;

    /// A one-CPU allocator over `ram`, which must outlive it.
    fn one_cpu_kmem(ram: &Region) -> Kmem<HostArch> {
        // SAFETY: the caller keeps the region alive as long as the allocator.
        let pages = unsafe {
            PageAllocator::<HostArch>::new(&ram.normalized().unwrap(), ZoneLimits::FLAT, 1, None)
        }
        .unwrap();
        Kmem::new(pages).unwrap()
    }

    #[test]
    fn allocator_api2_collections_on_one_instance() {
        let ram = Region::new(16 << 20).unwrap();
        let k = one_cpu_kmem(&ram);
        let mut v = Vec::new_in(&k);
        v.extend(0..10_000u32);
        assert_eq!(v.iter().sum::<u32>(), 49_995_000);
        // SAFETY: the vector's buffer is a live block (the vector holds it).
        let size = unsafe { k.ksize(v.as_ptr() as *mut u8) };
        assert!(size.is_ok(), "the buffer is a kmem block");
    }

    /// `realloc` to a size the layout's class holds keeps the block; past it, a block
    /// shrunk in place earlier still grows in place up to its real class, and beyond that
    /// it moves and the old block is freed.
    #[test]
    fn global_realloc_stays_in_the_blocks_class() {
        use core::alloc::{GlobalAlloc, Layout};
        let ram = Region::new(16 << 20).unwrap();
        let k = one_cpu_kmem(&ram);
        let at = |n| Layout::from_size_align(n, 8).unwrap();
        // SAFETY: every pointer is live with the layout passed beside it.
        unsafe {
            let p = k.alloc(at(200));
            let class = k.ksize(p).unwrap();
            assert!(class >= 200);
            assert_eq!(k.realloc(p, at(200), class), p, "within the class");
            assert_eq!(k.realloc(p, at(class), 10), p, "shrunk in place");
            assert_eq!(
                k.realloc(p, at(10), class),
                p,
                "grown back: the block's class"
            );
            let q = k.realloc(p, at(class), class + 1);
            assert_ne!(q, p, "past the class it moves");
            // The test breaks ksize's contract on purpose: the check under test reads
            // only memory of this test's own heap.
            assert!(k.ksize(p).is_err(), "and the old block is free");
            k.dealloc(q, at(class + 1));
        }
    }

    /// `realloc` keeps the old layout's bytes (all it must keep), moving or not.
    #[test]
    fn global_realloc_keeps_the_old_layouts_bytes() {
        use core::alloc::{GlobalAlloc, Layout};
        let ram = Region::new(16 << 20).unwrap();
        let k = one_cpu_kmem(&ram);
        let l = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: a valid layout; every block is used within its size and freed with it.
        unsafe {
            for new in [120, 5000, 70_000, 50] {
                let p = k.alloc(l);
                p.write_bytes(0xA5, 100);
                let q = k.realloc(p, l, new);
                assert!(!q.is_null());
                let kept = core::slice::from_raw_parts(q, new.min(100));
                assert!(kept.iter().all(|&b| b == 0xA5), "resized to {new}");
                k.dealloc(q, Layout::from_size_align(new, 8).unwrap());
            }
        }
    }
}
