//! A guard pool for the hosted platform: pages from `mmap`, protected with `mprotect`.

use crate::guard_pool::{GuardPoolMemory, POOL_PAGE, PageProtect};

/// The pages of a hosted guard pool: an anonymous mapping of its own, whose pages
/// [`PageProtect`] turns inaccessible (`PROT_NONE`) and back. It lives as long as the
/// process (a `Kmem` given its memory may be in a static).
///
/// # Examples
/// ```
/// use kmem::guard_pool::PageProtect;
/// use kmem::hosted::GuardedPages;
/// let pool = GuardedPages::new(3).expect("the OS maps 32 KiB");
/// let base = pool.memory_base();
/// assert!(pool.contains(base) && !pool.contains(base + 8 * 4096));
/// pool.set_accessible(base, false); // a touch of `base` would now fault
/// pool.set_accessible(base, true);
/// // SAFETY: the page is mapped read-write again.
/// unsafe { (base as *mut u8).write(1) };
/// ```
pub struct GuardedPages {
    base: usize,
    objects: usize,
}

impl GuardedPages {
    /// Maps a pool of `objects` objects, or `None` when the OS refuses.
    ///
    /// # Examples
    /// See [`GuardedPages`].
    pub fn new(objects: usize) -> Option<&'static GuardedPages> {
        let bytes = GuardPoolMemory::bytes(objects);
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(Box::leak(Box::new(GuardedPages {
            base: p as usize,
            objects,
        })))
    }

    /// The pool's first byte.
    ///
    /// # Examples
    /// See [`GuardedPages`].
    pub fn memory_base(&self) -> usize {
        self.base
    }

    /// Whether `addr` lies in the pool.
    ///
    /// # Examples
    /// See [`GuardedPages`].
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.base) < GuardPoolMemory::bytes(self.objects)
    }

    /// The pool, for [`crate::Kmem::with_guard_pool`].
    ///
    /// # Examples
    /// See [`crate::Kmem::with_guard_pool`].
    pub fn memory(&'static self) -> GuardPoolMemory {
        // SAFETY: the mapping is page-aligned, this pool's alone and never unmapped, and
        // `set_accessible` protects exactly the pages it is given.
        unsafe { GuardPoolMemory::new(self.base as *mut u8, self.objects, self) }
    }
}

// SAFETY: mprotect applies to the whole process at once; `set_accessible` is given pages
// of this pool only (GuardPoolMemory's contract), which nothing but the pool uses.
unsafe impl PageProtect for GuardedPages {
    fn set_accessible(&self, page: usize, accessible: bool) {
        assert!(self.contains(page), "{page:#x} is not a page of this pool");
        let prot = if accessible {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_NONE
        };
        // SAFETY: a page of this pool's own mapping (checked above).
        let r = unsafe { libc::mprotect(page as *mut libc::c_void, POOL_PAGE, prot) };
        assert_eq!(r, 0, "mprotect of a pool page");
    }
}
