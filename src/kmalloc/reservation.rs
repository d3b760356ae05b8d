//! Reservations: objects allocated ahead of time so that a later allocation cannot fail
//! (Linux's mempools and SLUB's prefilled sheaves) — for page-table and interrupt-path
//! allocations, where there is no way to handle running out.

use core::ptr::NonNull;

use super::{CacheRef, Kmem, class_for};
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::slab::{SlabCache, SlabError};

/// Up to `N` objects of one cache, allocated ahead: [`Reservation::take`] hands them out
/// without a lock, without touching the allocator and without any chance of failure, so
/// it may run with interrupts off or in an interrupt handler. Objects taken are the
/// caller's, freed as any object of their cache; objects not taken go back when the
/// reservation is dropped.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Gfp, SlabFlags};
/// let tables = kmem.cache_create("page-tables", 4096, 4096, SlabFlags::NONE, None, None)?;
/// // Before taking a lock that forbids failure: reserve what the walk may need.
/// let mut r = tables.reserve::<4>(Gfp::KERNEL)?;
/// let table = r.take().expect("four were reserved");
/// assert_eq!(r.len(), 3);
/// drop(r); // the three not taken go back
/// unsafe { tables.free(table) }?; // SAFETY: table is not used again.
/// # tables.destroy().map_err(|(_, e)| e)?;
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub struct Reservation<'k, A: Arch, const N: usize> {
    kmem: &'k Kmem<A>,
    cache: &'k SlabCache<A>,
    objs: [*mut u8; N],
    len: usize,
}

// SAFETY: the objects are the reservation's own (allocated for it, handed out only by
// `take`), and `Kmem` and its caches are `Sync`.
unsafe impl<A: Arch, const N: usize> Send for Reservation<'_, A, N> {}

impl<'k, A: Arch, const N: usize> Reservation<'k, A, N> {
    /// Reserves `N` objects of `cache`, all or nothing.
    fn new(kmem: &'k Kmem<A>, cache: &'k SlabCache<A>, gfp: Gfp) -> Result<Self, SlabError> {
        let mut objs = [core::ptr::null_mut(); N];
        cache.alloc_bulk(kmem, gfp, &mut objs)?;
        Ok(Reservation {
            kmem,
            cache,
            objs,
            len: N,
        })
    }

    /// One reserved object, or `None` when all `N` are taken. Never allocates.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let mut r = kmem.kmalloc_reserve::<2>(32, Gfp::KERNEL)?;
    /// let a = r.take().unwrap();
    /// let b = r.take().unwrap();
    /// assert!(r.take().is_none());
    /// // SAFETY: a and b are kmalloc blocks, not used again.
    /// unsafe { kmem.kfree_bulk(&[a.as_ptr(), b.as_ptr()]) }?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    #[inline]
    pub fn take(&mut self) -> Option<NonNull<u8>> {
        self.len = self.len.checked_sub(1)?;
        NonNull::new(self.objs[self.len])
    }

    /// Objects still reserved.
    ///
    /// # Examples
    /// See [`CacheRef::reserve`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether every object has been taken.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let mut r = kmem.kmalloc_reserve::<1>(8, kmem::Gfp::KERNEL)?;
    /// let p = r.take().unwrap();
    /// assert!(r.is_empty());
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tops the reservation back up to `N` objects, all or nothing (where failure is
    /// allowed again, e.g. after the critical section).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let mut r = kmem.kmalloc_reserve::<8>(128, Gfp::KERNEL)?;
    /// let p = r.take().unwrap();
    /// r.refill(Gfp::KERNEL)?;
    /// assert_eq!(r.len(), 8);
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn refill(&mut self, gfp: Gfp) -> Result<(), SlabError> {
        self.cache
            .alloc_bulk(self.kmem, gfp, &mut self.objs[self.len..])?;
        self.len = N;
        Ok(())
    }
}

impl<A: Arch, const N: usize> Drop for Reservation<'_, A, N> {
    fn drop(&mut self) {
        // The objects below len were allocated for this reservation from `cache` and
        // never handed out, and each appears once: all live, nothing to refuse.
        let freed =
            self.kmem
                .free_bulk_checked(&self.objs[..self.len], Some(self.cache), "reservation");
        debug_assert!(freed.is_ok(), "a reservation's objects are live");
    }
}

impl<'k, A: Arch> CacheRef<'k, A> {
    /// Reserves `N` objects of this cache, all or nothing (see [`Reservation`]).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabFlags};
    /// let c = kmem.cache_create("irq-events", 48, 8, SlabFlags::NONE, None, None)?;
    /// let r = c.reserve::<16>(Gfp::KERNEL)?;
    /// assert_eq!(r.len(), 16);
    /// drop(r);
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn reserve<const N: usize>(&self, gfp: Gfp) -> Result<Reservation<'k, A, N>, SlabError> {
        Reservation::new(self.kmem, self.cache, gfp)
    }
}

impl<A: Arch> Kmem<A> {
    /// Reserves `N` blocks of `size` bytes (aligned to 8) from one kmalloc class, all or
    /// nothing (see [`Reservation`]); blocks taken are freed with [`Kmem::kfree`].
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let mut r = kmem.kmalloc_reserve::<4>(200, kmem::Gfp::KERNEL)?;
    /// let p = r.take().unwrap(); // cannot fail: reserved above
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn kmalloc_reserve<const N: usize>(
        &self,
        size: usize,
        gfp: Gfp,
    ) -> Result<Reservation<'_, A, N>, SlabError> {
        let cache = class_for(size.max(1), 8)
            .and_then(|class| self.kmalloc_cache(gfp, class))
            .ok_or(SlabError::TooLarge { size })?;
        Reservation::new(self, cache, gfp)
    }
}
