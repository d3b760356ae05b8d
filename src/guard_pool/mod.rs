//! Sampled guard pages, after Linux's KFENCE (`mm/kfence/core.c`): about one kmalloc in
//! `kmem.kfence=N` is served from a small fixed pool of 4 KiB pages instead of a slab,
//! alone on its page and flush against an unmapped guard page, so that the first byte
//! read or written past either end, and any touch of it once freed, faults at once and is
//! reported with the object and both of its owners (see `fault`).
//!
//! The pool's layout is KFENCE's: `objects` object pages, each followed by a guard page,
//! after two leading pages that stay unmapped (an extended guard, which also keeps the
//! page count even): object `i` is page `2 i + 2`, its guards pages `2 i + 1` and
//! `2 i + 3`. Objects sit against the right guard and the left one in turn (KFENCE picks
//! at random), so that overruns and underruns are both caught — against the right one
//! as close as the alignment allows: the bytes between a size that is not a multiple of
//! it and the guard are not watched (KFENCE fills them with canaries, checked at free;
//! kmem does not). A freed object's page is
//! unmapped; the next allocation of that slot maps it again. Slots are reused in a round
//! robin, so a freed object stays unmapped (and its use after free caught) as long as
//! possible.
//!
//! The port supplies the pool and a [`PageProtect`] that maps and unmaps its pages, and
//! calls [`Kmem::guard_pool_fault`](crate::Kmem::guard_pool_fault) from its page-fault
//! handler. How allocations are picked for sampling is `Kmem`'s business (see
//! `kmalloc::sampling`).

pub(crate) mod fault;
#[cfg(test)]
mod tests;

use core::fmt;
use core::panic::Location;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::Gfp;
use crate::arch::Arch;
use crate::mm::PageAllocator;
use crate::mm::buddy::order_for_bytes;
use crate::slab::{CacheName, SlabError};
use crate::sync::IrqMutex;

pub use fault::{Access, FaultOutcome, GuardFault, GuardFaultKind};

/// Bytes of one pool page: an object's page, or a guard page.
///
/// # Examples
/// ```
/// use kmem::guard_pool::{GuardPoolMemory, POOL_PAGE};
/// // Two leading pages, then an object page and a guard page per object.
/// assert_eq!(GuardPoolMemory::bytes(1), 4 * POOL_PAGE);
/// ```
pub const POOL_PAGE: usize = 4096;

/// How a port makes the pages of a guard pool fault and stop faulting.
///
/// # Safety
/// `set_accessible(page, false)` makes every later access from the calling CPU to the
/// 4 KiB page at `page` fault into the port's page-fault handler, which hands it to
/// [`Kmem::guard_pool_fault`](crate::Kmem::guard_pool_fault) and resumes the access
/// when that says it was handled; `set_accessible(page, true)` makes the page plain
/// read-write memory again. Other CPUs may see the change late (a stale translation
/// misses a report, never more): the pool is never used for anything else. Both are
/// called only for pages of the pool this was given with, with interrupts off.
///
/// # Examples
/// A port whose pool pages are always mapped (nothing faults, so nothing is caught, but
/// sampled objects still work):
/// ```
/// use kmem::guard_pool::PageProtect;
/// struct AlwaysMapped;
/// // SAFETY: nothing ever faults, and every page stays plain memory.
/// unsafe impl PageProtect for AlwaysMapped {
///     fn set_accessible(&self, _page: usize, _accessible: bool) {}
/// }
/// AlwaysMapped.set_accessible(0x1000, false);
/// ```
pub unsafe trait PageProtect: Sync {
    /// Unmaps (`false`) or maps (`true`) the pool page at `page`.
    fn set_accessible(&self, page: usize, accessible: bool);
}

/// The memory of a guard pool and how to protect its pages, for
/// [`Kmem::with_guard_pool`](crate::Kmem::with_guard_pool).
///
/// # Examples
/// ```
/// use kmem::guard_pool::{GuardPoolMemory, POOL_PAGE};
/// // 63 objects: 128 pages, half a MiB.
/// assert_eq!(GuardPoolMemory::bytes(63), 128 * POOL_PAGE);
/// ```
#[derive(Clone, Copy)]
pub struct GuardPoolMemory {
    base: usize,
    objects: usize,
    protect: &'static dyn PageProtect,
}

impl GuardPoolMemory {
    /// Bytes a pool of `objects` objects takes.
    ///
    /// # Examples
    /// See [`GuardPoolMemory`].
    pub const fn bytes(objects: usize) -> usize {
        (objects + 1) * 2 * POOL_PAGE
    }

    /// The pool of `objects` objects at `base`, whose pages `protect` maps and unmaps.
    ///
    /// # Safety
    /// `base` is aligned to 4 KiB; the [`GuardPoolMemory::bytes`]`(objects)` bytes from it
    /// are read-write memory that nothing else uses (in particular, not memory of the
    /// page allocator the pool goes with) for as long as the `Kmem` it is given to lives,
    /// mapped with 4 KiB pages that `protect` controls as [`PageProtect`] says.
    ///
    /// # Examples
    /// See `kmem::hosted::GuardedPages`, which makes one with `mmap` and `mprotect`.
    pub unsafe fn new(
        base: *mut u8,
        objects: usize,
        protect: &'static dyn PageProtect,
    ) -> GuardPoolMemory {
        GuardPoolMemory {
            base: base as usize,
            objects,
            protect,
        }
    }
}

/// What a slot of the pool holds now.
///
/// # Examples
/// ```
/// # let ram = kmem::hosted::Region::new(16 << 20).unwrap();
/// # let map = ram.normalized().unwrap();
/// # // SAFETY: the map's usable RAM is the allocator's alone, for as long as it lives.
/// # let pages = unsafe { kmem::PageAllocator::<kmem::hosted::HostArch>::new(&map, kmem::ZoneLimits::FLAT, 1, None) }.unwrap();
/// # let pool = kmem::hosted::GuardedPages::new(3).unwrap();
/// # let kmem = kmem::Kmem::new(pages)?.with_guard_pool(pool.memory())?;
/// use kmem::guard_pool::SlotState;
/// assert_eq!(kmem.guard_pool_object(0).unwrap().state, SlotState::Unused);
/// kmem.sample_next();
/// let p = kmem.kmalloc(32, kmem::Gfp::KERNEL)?;
/// assert_eq!(kmem.guard_pool_object(0).unwrap().state, SlotState::Allocated);
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// assert_eq!(kmem.guard_pool_object(0).unwrap().state, SlotState::Freed);
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SlotState {
    /// Never allocated.
    Unused,
    /// Handed out.
    Allocated,
    /// Freed: its page is unmapped until the slot is allocated again.
    Freed,
}

/// Who allocated or freed a sampled object: the CPU and the caller.
///
/// # Examples
/// ```
/// # let ram = kmem::hosted::Region::new(16 << 20).unwrap();
/// # let map = ram.normalized().unwrap();
/// # // SAFETY: the map's usable RAM is the allocator's alone, for as long as it lives.
/// # let pages = unsafe { kmem::PageAllocator::<kmem::hosted::HostArch>::new(&map, kmem::ZoneLimits::FLAT, 1, None) }.unwrap();
/// # let pool = kmem::hosted::GuardedPages::new(3).unwrap();
/// # let kmem = kmem::Kmem::new(pages)?.with_guard_pool(pool.memory())?;
/// kmem.sample_next();
/// let p = kmem.kmalloc(32, kmem::Gfp::KERNEL)?; // this line is the owner
/// let owner = kmem.guard_pool_object(0).unwrap().allocated.unwrap();
/// assert_eq!(owner.at.line(), line!() - 2);
/// assert!(owner.to_string().starts_with("cpu "));
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PoolOwner {
    /// The CPU it ran on.
    pub cpu: u32,
    /// The caller of the kmalloc or kfree.
    pub at: &'static Location<'static>,
}

impl fmt::Display for PoolOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu {} at {}", self.cpu, self.at)
    }
}

/// One slot of the pool, as the reports show it: KFENCE's `kfence_metadata`.
///
/// # Examples
/// ```
/// # let ram = kmem::hosted::Region::new(16 << 20).unwrap();
/// # let map = ram.normalized().unwrap();
/// # // SAFETY: the map's usable RAM is the allocator's alone, for as long as it lives.
/// # let pages = unsafe { kmem::PageAllocator::<kmem::hosted::HostArch>::new(&map, kmem::ZoneLimits::FLAT, 1, None) }.unwrap();
/// # let pool = kmem::hosted::GuardedPages::new(3).unwrap();
/// # let kmem = kmem::Kmem::new(pages)?.with_guard_pool(pool.memory())?;
/// kmem.sample_next();
/// let p = kmem.kmalloc(64, kmem::Gfp::KERNEL)?;
/// let o = kmem.guard_pool_object(0).unwrap();
/// assert_eq!((o.addr, o.size), (p.as_ptr() as usize, 64));
/// assert!(o.to_string().starts_with("kfence-#0 ["));
/// assert!(o.to_string().contains(", size=64, cache=kmalloc-64] allocated by cpu "));
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SampledObject {
    /// Its number in the pool, as in `kfence-#3`.
    pub index: usize,
    /// What the slot holds now.
    pub state: SlotState,
    /// The object's first byte.
    pub addr: usize,
    /// Bytes asked for (what `ksize` gives).
    pub size: usize,
    /// The cache the allocation would otherwise have come from.
    pub cache: CacheName,
    /// Who allocated it last.
    pub allocated: Option<PoolOwner>,
    /// Who freed it last, if it is freed.
    pub freed: Option<PoolOwner>,
}

impl fmt::Display for SampledObject {
    /// `kfence-#3 [0x1000-0x103f, size=64, cache=kmalloc-64] allocated by cpu 1 at ...`,
    /// then `, freed by cpu 0 at ...` once it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kfence-#{} [{:#x}-{:#x}, size={}, cache={}]",
            self.index,
            self.addr,
            self.addr + self.size.max(1) - 1,
            self.size,
            self.cache.as_str()
        )?;
        if let Some(a) = self.allocated {
            write!(f, " allocated by {a}")?;
        }
        if let (SlotState::Freed, Some(fr)) = (self.state, self.freed) {
            write!(f, ", freed by {fr}")?;
        }
        Ok(())
    }
}

/// What the pool reports of itself: `kfence: 1 in N, pool K objects, A allocated, F faults`.
///
/// # Examples
/// ```
/// # let ram = kmem::hosted::Region::new(16 << 20).unwrap();
/// # let map = ram.normalized().unwrap();
/// # // SAFETY: the map's usable RAM is the allocator's alone, for as long as it lives.
/// # let pages = unsafe { kmem::PageAllocator::<kmem::hosted::HostArch>::new(&map, kmem::ZoneLimits::FLAT, 1, None) }.unwrap();
/// # let pool = kmem::hosted::GuardedPages::new(3).unwrap();
/// # let kmem = kmem::Kmem::new(pages)?.with_guard_pool(pool.memory())?;
/// let info = kmem.guard_pool_info().unwrap();
/// assert_eq!(info.to_string(), "kfence: 1 in 4096, pool 3 objects, 0 allocated, 0 faults");
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardPoolInfo {
    /// One kmalloc in this many is sampled (0: only when forced).
    pub interval: u32,
    /// Slots in the pool.
    pub objects: usize,
    /// Slots handed out now.
    pub allocated: usize,
    /// Sampled allocations so far.
    pub sampled: usize,
    /// Faults reported so far (out of bounds, use after free, wild accesses).
    pub faults: usize,
    /// Frees refused (double or invalid frees of pool addresses).
    pub bad_frees: usize,
}

impl fmt::Display for GuardPoolInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kfence: 1 in {}, pool {} objects, {} allocated, {} faults",
            self.interval, self.objects, self.allocated, self.faults
        )
    }
}

/// The slots' records, in pages of the page allocator, with the allocation cursor.
struct Slots {
    records: *mut SampledObject,
    /// Where the round robin looks for a free slot next.
    next: usize,
    /// Allocations placed so far: even ones go against the right guard, odd ones the left.
    placed: usize,
    allocated: usize,
}

/// A guard pool in use: its memory and the slots' records.
pub(crate) struct GuardPool<A: Arch> {
    memory: GuardPoolMemory,
    slots: IrqMutex<A, Slots>,
    sampled: AtomicUsize,
    faults: AtomicUsize,
    bad_frees: AtomicUsize,
    /// The page the last invalid access mapped (0: none), unmapped again by the next
    /// allocation or free: no object's free would close it.
    wild_opened: AtomicUsize,
}

// SAFETY: the records are reached only under the slots' lock; the memory is the pool's.
unsafe impl<A: Arch> Send for GuardPool<A> {}
// SAFETY: as for Send.
unsafe impl<A: Arch> Sync for GuardPool<A> {}

impl<A: Arch> GuardPool<A> {
    /// Takes the slots' records from `pages` and unmaps every guard page.
    pub(crate) fn new(
        memory: GuardPoolMemory,
        pages: &PageAllocator<A>,
    ) -> Result<GuardPool<A>, SlabError> {
        let bytes = memory.objects * size_of::<SampledObject>();
        let records_pa = pages.alloc_pages(order_for_bytes(bytes.max(1)), Gfp::KERNEL)?;
        let records = A::phys_to_virt(records_pa) as *mut SampledObject;
        let empty = CacheName::new("kmalloc").expect("a valid name");
        for index in 0..memory.objects {
            // SAFETY: the block holds `objects` records and is ours.
            unsafe {
                records.add(index).write(SampledObject {
                    index,
                    state: SlotState::Unused,
                    addr: 0,
                    size: 0,
                    cache: empty,
                    allocated: None,
                    freed: None,
                })
            };
        }
        let pool = GuardPool {
            memory,
            slots: IrqMutex::new(Slots {
                records,
                next: 0,
                placed: 0,
                allocated: 0,
            }),
            sampled: AtomicUsize::new(0),
            faults: AtomicUsize::new(0),
            bad_frees: AtomicUsize::new(0),
            wild_opened: AtomicUsize::new(0),
        };
        for page in (0..pool.pages()).filter(|p| p % 2 == 1 || *p == 0) {
            pool.set_accessible(pool.page_addr(page), false);
        }
        Ok(pool)
    }

    fn pages(&self) -> usize {
        GuardPoolMemory::bytes(self.memory.objects) / POOL_PAGE
    }

    fn page_addr(&self, page: usize) -> usize {
        self.memory.base + page * POOL_PAGE
    }

    /// The pool's object page of slot `index`.
    fn object_page(&self, index: usize) -> usize {
        self.page_addr(2 * index + 2)
    }

    fn set_accessible(&self, page: usize, accessible: bool) {
        let irq = A::irq_save();
        self.memory.protect.set_accessible(page, accessible);
        A::irq_restore(irq);
    }

    /// Whether `addr` lies in the pool (a page of it, object or guard).
    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.memory.base) < GuardPoolMemory::bytes(self.memory.objects)
    }

    /// The slot whose object page holds `addr`, if `addr` is on an object page.
    fn slot_of(&self, addr: usize) -> Option<usize> {
        let page = addr.wrapping_sub(self.memory.base) / POOL_PAGE;
        (self.contains(addr) && page >= 2 && page.is_multiple_of(2)).then(|| page / 2 - 1)
    }

    /// A copy of slot `index`'s record.
    fn record(slots: &Slots, index: usize) -> SampledObject {
        // SAFETY: index < objects (callers check), and the lock is held.
        unsafe { *slots.records.add(index) }
    }

    fn record_mut(slots: &mut Slots, index: usize) -> &mut SampledObject {
        // SAFETY: as for `record`, and the guard is held mutably.
        unsafe { &mut *slots.records.add(index) }
    }

    /// Takes a free slot for `size` bytes at `align` (at most a page), for `cache`; `None`
    /// when every slot is in use.
    #[track_caller]
    pub(crate) fn alloc(&self, size: usize, align: usize, cache: CacheName) -> Option<usize> {
        if size == 0 || size > POOL_PAGE || align > POOL_PAGE {
            return None;
        }
        let at = Location::caller();
        let mut s = self.slots.lock();
        let n = self.memory.objects;
        let index = (0..n)
            .map(|i| (s.next + i) % n)
            .find(|&i| Self::record(&s, i).state != SlotState::Allocated)?;
        s.next = (index + 1) % n;
        let page = self.object_page(index);
        let right = s.placed.is_multiple_of(2);
        s.placed += 1;
        s.allocated += 1;
        let addr = if right {
            (page + POOL_PAGE - size) & !(align - 1)
        } else {
            page
        };
        let r = Self::record_mut(&mut s, index);
        let reused = r.state == SlotState::Freed;
        *r = SampledObject {
            index,
            state: SlotState::Allocated,
            addr,
            size,
            cache,
            allocated: Some(PoolOwner {
                cpu: A::cpu_id() as u32,
                at,
            }),
            freed: None,
        };
        drop(s);
        self.close_wild_page();
        if reused {
            self.set_accessible(page, true);
        }
        self.sampled.fetch_add(1, Relaxed);
        Some(addr)
    }

    /// The record of the live sampled object at `addr`, or why `addr` is not one.
    pub(crate) fn live(&self, addr: usize) -> Result<SampledObject, SlabError> {
        let s = self.slots.lock();
        self.live_record(&s, addr)
    }

    /// The record of the live object starting at `addr`, or the error a free of it gets.
    fn live_record(&self, s: &Slots, addr: usize) -> Result<SampledObject, SlabError> {
        let Some(index) = self.slot_of(addr) else {
            return Err(SlabError::NotAllocated { addr });
        };
        let r = Self::record(s, index);
        match r.state {
            SlotState::Allocated if r.addr == addr => Ok(r),
            SlotState::Allocated if (r.addr..r.addr + r.size).contains(&addr) => {
                Err(SlabError::Interior {
                    addr,
                    cache: r.cache,
                    object: r.addr,
                    offset: addr - r.addr,
                })
            }
            SlotState::Freed if r.addr == addr => Err(SlabError::DoubleFree {
                addr,
                cache: r.cache,
            }),
            _ => Err(SlabError::NotAllocated { addr }),
        }
    }

    /// Frees the sampled object at `addr` and unmaps its page; a pointer that is not a
    /// live sampled object's start is refused (and reported, as KFENCE's invalid free),
    /// changing nothing.
    #[track_caller]
    pub(crate) fn free(&self, addr: usize) -> Result<(), SlabError> {
        let at = Location::caller();
        let mut s = self.slots.lock();
        let r = match self.live_record(&s, addr) {
            Ok(r) => r,
            Err(e) => {
                let object = self.slot_of(addr).map(|i| Self::record(&s, i));
                drop(s);
                self.bad_frees.fetch_add(1, Relaxed);
                log::error!("{}", fault::InvalidFree { addr, object });
                return Err(e);
            }
        };
        let rec = Self::record_mut(&mut s, r.index);
        rec.state = SlotState::Freed;
        rec.freed = Some(PoolOwner {
            cpu: A::cpu_id() as u32,
            at,
        });
        s.allocated -= 1;
        drop(s);
        self.close_wild_page();
        let page = self.object_page(r.index);
        // A guard an overrun opened (the fault maps it, as KFENCE does) closes again.
        for p in [page - POOL_PAGE, page, page + POOL_PAGE] {
            self.set_accessible(p, false);
        }
        Ok(())
    }

    /// Unmaps again the page an invalid access had mapped, if any.
    fn close_wild_page(&self) {
        let page = self.wild_opened.swap(0, Relaxed);
        if page != 0 {
            self.set_accessible(page, false);
        }
    }

    /// The record of slot `index` (`None` past the pool).
    pub(crate) fn object(&self, index: usize) -> Option<SampledObject> {
        (index < self.memory.objects).then(|| Self::record(&self.slots.lock(), index))
    }

    /// The pool's counts, with the sampling interval `interval`.
    pub(crate) fn info(&self, interval: u32) -> GuardPoolInfo {
        GuardPoolInfo {
            interval,
            objects: self.memory.objects,
            allocated: self.slots.lock().allocated,
            sampled: self.sampled.load(Relaxed),
            faults: self.faults.load(Relaxed),
            bad_frees: self.bad_frees.load(Relaxed),
        }
    }
}
