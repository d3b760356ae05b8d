//! Memory added and taken away while the allocator runs, and the out-of-memory hook.
//!
//! [`PageAllocator::add_region`] hands the allocator a range of RAM on any CPU while
//! others allocate: the range's first frames become its page descriptors (0.59 % of it),
//! the rest joins its zones as maximal aligned blocks, allocatable as soon as the call
//! returns. [`PageAllocator::remove_region`] takes a region added so back, all or
//! nothing: it succeeds only when every frame is free (the per-CPU lists are drained
//! first), else it names how many are in use and changes nothing. `Kmem::remove_region`
//! first has the slab caches give back their empty slabs.
//!
//! How descriptors are found, and the rule that makes removal safe for concurrent
//! readers, are in `hot.rs`'s module doc: a region is published with a seqlock once its
//! descriptors are written, and its memory is the caller's again when removal returns
//! because only owners of its blocks, zone-lock holders and per-CPU lists ever read its
//! descriptors — and removal excludes all three.
//!
//! Lock order: the hotplug lock, then (as everywhere) a CPU's page lists, then the zone
//! locks, in zone index order when removal holds them all.
//!
//! # The out-of-memory hook
//! [`PageAllocator::set_oom_hook`] registers a function the allocator calls when an
//! allocation finds no block, after it has drained every CPU's lists — before it fails.
//! When the hook returns `true` (it added memory), the allocation is tried again.
//!
//! Contract, which the hook must keep:
//! - **Locks held:** none of the page allocator's. The caller of the allocation may hold
//!   slab locks (a cache's node lock and its CPU slot while a slab grows, or the cache
//!   registry), and interrupts are as the caller had them.
//! - **It may call** [`PageAllocator::add_region`], the page allocator's other functions
//!   (an allocation made from inside the hook never calls the hook again: on the CPU
//!   running it, a nested out-of-memory fails at once) and the platform (map memory).
//! - **It must not call** the slab layer or kmalloc (`Kmem`'s functions): their locks may
//!   be held by the very allocation that asked.
//! - One CPU runs the hook at a time; another CPU out of memory meanwhile waits for it to
//!   finish and then tries again, so the hook should not wait for long.
//! - The request names the order and the [`Gfp`] flags: a hook that must not sleep for
//!   `Gfp::ATOMIC` requests returns `false` for them.

use core::fmt;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::frame::{FrameState, PAGE_SHIFT, PageFrame};
use super::hot::{MAX_HOT, MAX_HOT_FRAMES, slot_first};

/// Most regions added at run time that can be online at once.
///
/// # Examples
/// ```
/// use kmem::mm::hotplug::MAX_REGIONS;
/// assert_eq!(MAX_REGIONS, 32);
/// ```
pub const MAX_REGIONS: usize = MAX_HOT;
use super::memmap::{PAGE_SIZE, PhysRange};
use super::numa::NodeId;
use super::zone::{NR_ZONES, ZoneKind};
use super::{PageAllocator, PageError};
use crate::arch::Arch;
use crate::gfp::Gfp;

/// Frames of descriptors a region of `frames` frames carves from its start.
pub(crate) const fn meta_frames(frames: u64) -> u64 {
    (frames * size_of::<PageFrame>() as u64).div_ceil(PAGE_SIZE)
}

/// Most times one allocation asks the hook for memory.
const OOM_ROUNDS: usize = 4;

/// A spin lock's guard held with interrupts off (as `IrqMutex` does it): the lock is
/// released before interrupts are restored.
struct IrqOff<'a, A: Arch, T> {
    guard: Option<spin::MutexGuard<'a, T>>,
    irq: A::IrqState,
}

impl<'a, A: Arch, T> IrqOff<'a, A, T> {
    fn lock(m: &'a spin::Mutex<T>) -> Self {
        let irq = A::irq_save();
        IrqOff {
            guard: Some(m.lock()),
            irq,
        }
    }
}

impl<A: Arch, T> core::ops::Deref for IrqOff<'_, A, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("held until drop")
    }
}

impl<A: Arch, T> core::ops::DerefMut for IrqOff<'_, A, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("held until drop")
    }
}

impl<A: Arch, T> Drop for IrqOff<'_, A, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        A::irq_restore(self.irq);
    }
}

/// Why adding or removing a region was refused. Nothing changes when one is returned.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::PhysRange;
/// use kmem::mm::HotplugError;
/// let nowhere = PhysRange { start: 0x1000, end: 0x1000 };
/// // SAFETY: refused before anything is touched (zero length).
/// let r = unsafe { kmem.pages().add_region(nowhere) };
/// assert_eq!(r, Err(HotplugError::ZeroLength { start: 0x1000 }));
/// println!("{}", r.unwrap_err()); // says which range and why
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HotplugError {
    /// The range is empty (or ends before it starts).
    ZeroLength {
        /// Where it starts.
        start: u64,
    },
    /// An end of the range is not on a 4 KiB frame boundary.
    Unaligned {
        /// The range.
        range: PhysRange,
    },
    /// The range overlaps memory the allocator manages without lying inside it.
    Overlaps {
        /// The range.
        range: PhysRange,
        /// The managed range it overlaps (a boot bank or an added region).
        with: PhysRange,
    },
    /// The whole range is already memory the allocator manages.
    AlreadyManaged {
        /// The range.
        range: PhysRange,
        /// The managed range that holds it.
        within: PhysRange,
    },
    /// Too small to hold its own descriptors and one frame more.
    TooSmall {
        /// The range.
        range: PhysRange,
    },
    /// More frames than one region may hold (128 GiB).
    TooLarge {
        /// The range.
        range: PhysRange,
    },
    /// Every one of the region slots is in use.
    NoFreeSlot {
        /// How many regions may be online at once.
        max: usize,
    },
    /// Removal of a range that is not a region added at run time (boot memory cannot be
    /// removed).
    NotARegion {
        /// The range.
        range: PhysRange,
    },
    /// Removal of a region some of whose frames are allocated.
    PagesInUse {
        /// The region.
        range: PhysRange,
        /// Frames allocated (or held by a CPU's list) when the removal looked.
        count: u64,
    },
}

impl fmt::Display for HotplugError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HotplugError::ZeroLength { start } => {
                write!(f, "region at {start:#x}: zero length")
            }
            HotplugError::Unaligned { range } => {
                write!(f, "region {range}: not aligned to 4 KiB frames")
            }
            HotplugError::Overlaps { range, with } => {
                write!(f, "region {range}: overlaps managed memory {with}")
            }
            HotplugError::AlreadyManaged { range, within } => {
                write!(f, "region {range}: already managed (inside {within})")
            }
            HotplugError::TooSmall { range } => {
                write!(
                    f,
                    "region {range}: too small for its descriptors and a frame"
                )
            }
            HotplugError::TooLarge { range } => {
                write!(f, "region {range}: larger than 128 GiB")
            }
            HotplugError::NoFreeSlot { max } => {
                write!(f, "no region slot free: {max} regions are online")
            }
            HotplugError::NotARegion { range } => {
                write!(f, "remove {range}: not a region added at run time")
            }
            HotplugError::PagesInUse { range, count } => {
                write!(f, "remove {range}: {count} pages still in use")
            }
        }
    }
}

/// What an allocation that found no memory asked for, as the out-of-memory hook sees it.
///
/// # Examples
/// ```
/// use kmem::Gfp;
/// use kmem::mm::OomRequest;
/// let r = OomRequest { order: 2, gfp: Gfp::KERNEL };
/// assert_eq!(r.bytes(), 16 << 10);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OomRequest {
    /// The block order asked for.
    pub order: u32,
    /// The allocation's flags (its zone; `ATOMIC` when it must not sleep).
    pub gfp: Gfp,
}

impl OomRequest {
    /// Bytes of the block asked for.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// use kmem::mm::{MAX_ORDER, OomRequest};
    /// assert_eq!(OomRequest { order: MAX_ORDER, gfp: Gfp::KERNEL }.bytes(), 4 << 20);
    /// ```
    pub fn bytes(&self) -> u64 {
        PAGE_SIZE << self.order
    }
}

/// An out-of-memory hook: a function and a word of context it gets back (module doc for
/// its contract). It returns whether it added memory, so that the allocation tries again.
///
/// # Examples
/// ```
/// use kmem::hosted::{HostArch, Region};
/// use kmem::mm::{OomHook, OomRequest};
/// use kmem::{Gfp, PageAllocator, PhysRange, ZoneLimits};
/// use std::sync::Mutex;
/// static SPARE: Mutex<Option<Region>> = Mutex::new(None);
/// fn more(pages: &PageAllocator<HostArch>, _: OomRequest, _ctx: usize) -> bool {
///     let Some(r) = SPARE.lock().unwrap().take() else { return false };
///     let range = PhysRange { start: r.start(), end: r.start() + r.size() };
///     // SAFETY: the region is RAM nobody else uses; leaked, it outlives the allocator.
///     let added = unsafe { pages.add_region(range) }.is_ok();
///     std::mem::forget(r);
///     added
/// }
/// let ram = Region::new(8 << 20).unwrap();
/// // SAFETY: the region is RAM nothing else uses while the allocator lives.
/// let pages = unsafe {
///     PageAllocator::<HostArch>::new(&ram.normalized()?, ZoneLimits::FLAT, 1, None)
/// }
/// .unwrap();
/// *SPARE.lock().unwrap() = Region::new(8 << 20);
/// pages.set_oom_hook(Some(OomHook { f: more, ctx: 0 }));
/// let mut got = 0;
/// while pages.alloc_pages(0, Gfp::KERNEL).is_ok() {
///     got += 1;
/// }
/// assert!(got > 3000, "both regions served: {got} pages");
/// # Ok::<(), kmem::mm::memmap::MapError>(())
/// ```
pub struct OomHook<A: Arch> {
    /// Called with the allocator, the request and `ctx`.
    pub f: fn(&PageAllocator<A>, OomRequest, usize) -> bool,
    /// Handed back to `f` (an address the hook's owner keeps alive, or anything else).
    pub ctx: usize,
}

impl<A: Arch> Clone for OomHook<A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: Arch> Copy for OomHook<A> {}

impl<A: Arch> PageAllocator<A> {
    /// Adds `range` of RAM to the allocator while it runs, on any CPU: its first frames
    /// become its page descriptors, the rest joins its zones (by the allocator's
    /// [`ZoneLimits`](crate::ZoneLimits)) and can be allocated when this returns.
    /// Refused, with nothing changed, when the range is empty, not frame-aligned,
    /// overlaps managed memory, is too small or too large, or when [`MAX_REGIONS`]
    /// regions are online already.
    ///
    /// # Safety
    /// `range` is RAM, reachable at [`Arch::phys_to_virt`], that the caller owns and
    /// that nothing else uses until [`PageAllocator::remove_region`] gives it back (or
    /// for the allocator's lifetime).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::hosted::Region;
    /// use kmem::{Gfp, PhysRange};
    /// let ram = Region::new(8 << 20).unwrap();
    /// let range = PhysRange { start: ram.start(), end: ram.start() + ram.size() };
    /// let before = kmem.pages().info().managed_pages();
    /// // SAFETY: the region is ours and is taken back below before it is dropped.
    /// unsafe { kmem.pages().add_region(range) }?;
    /// assert!(kmem.pages().info().managed_pages() > before + 2000);
    /// kmem.pages().remove_region(range)?; // nothing was allocated from it yet
    /// # Ok::<(), kmem::mm::HotplugError>(())
    /// ```
    pub unsafe fn add_region(&self, range: PhysRange) -> Result<(), HotplugError> {
        if range.end <= range.start {
            return Err(HotplugError::ZeroLength { start: range.start });
        }
        if !range.start.is_multiple_of(PAGE_SIZE) || !range.end.is_multiple_of(PAGE_SIZE) {
            return Err(HotplugError::Unaligned { range });
        }
        let frames = range.size() / PAGE_SIZE;
        if frames >= MAX_HOT_FRAMES {
            return Err(HotplugError::TooLarge { range });
        }
        let meta = meta_frames(frames);
        if meta >= frames {
            return Err(HotplugError::TooSmall { range });
        }
        let _hotplug = IrqOff::<A, _>::lock(&self.hotplug);
        self.check_unmanaged(range)?;
        let slot = self
            .table
            .hot
            .free_slot()
            .ok_or(HotplugError::NoFreeSlot { max: MAX_HOT })?;
        let base = A::phys_to_virt(range.start) as *mut PageFrame;
        // The whole region joins the node whose memory holds its start: firmware
        // describes hot-pluggable memory per node.
        let node = self.numa.topology.node_of(range.start).unwrap_or(0);
        for i in 0..frames {
            let pa = range.start + i * PAGE_SIZE;
            // SAFETY: the caller gives us the range; its first `meta` frames hold
            // `frames` descriptors (meta_frames), aligned as a frame is.
            unsafe {
                base.add(i as usize).write(PageFrame::new(
                    FrameState::Reserved,
                    self.limits.zone_of(pa),
                    node,
                ))
            };
        }
        // Readers find the region only from here, its descriptors written.
        self.table.hot.publish(slot, range.start, range.end, base);
        let (s, e) = (range.start >> PAGE_SHIFT, range.end >> PAGE_SHIFT);
        let first = slot_first(slot);
        for z in ZoneKind::ALL {
            let (zs, ze) = self.limits.span(z);
            let (is, ie) = ((s + meta).max(zs >> PAGE_SHIFT), e.min(ze >> PAGE_SHIFT));
            if is < ie {
                let zone = &self.nodes[node].zones[z.index()];
                let mut area = zone.area.lock();
                area.add_range(&self.table, first + (is - s) as u32, (ie - is) as u32);
                zone.managed.fetch_add(ie - is, Relaxed);
            }
        }
        log::debug!(
            "page allocator: added region {range} ({frames} frames, {meta} for descriptors)"
        );
        Ok(())
    }

    /// Refuses `range` when it meets managed memory (hotplug lock held).
    fn check_unmanaged(&self, range: PhysRange) -> Result<(), HotplugError> {
        let boot = self.table.bank_spans().map(|(s, e, _)| (s, e));
        let hot = self.table.hot.spans().map(|s| (s.start_pfn, s.end_pfn));
        for (s, e) in boot.chain(hot) {
            let with = PhysRange {
                start: s << PAGE_SHIFT,
                end: e << PAGE_SHIFT,
            };
            if range.start >= with.start && range.end <= with.end {
                return Err(HotplugError::AlreadyManaged {
                    range,
                    within: with,
                });
            }
            if range.start < with.end && with.start < range.end {
                return Err(HotplugError::Overlaps { range, with });
            }
        }
        Ok(())
    }

    /// Takes back a region [`PageAllocator::add_region`] added, exactly as it was given:
    /// every CPU's lists are drained, then, if every frame of the region is free, its
    /// blocks leave the zones' free lists and the region is gone — its memory, the
    /// descriptors included, is the caller's again. If some are in use, the error counts
    /// them and nothing changes.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::hosted::Region;
    /// use kmem::mm::HotplugError;
    /// use kmem::{Gfp, PhysRange};
    /// let ram = Region::new(4 << 20).unwrap();
    /// let range = PhysRange { start: ram.start(), end: ram.start() + ram.size() };
    /// let pages = kmem.pages();
    /// // SAFETY: the region is ours and is taken back below before it is dropped.
    /// unsafe { pages.add_region(range) }?;
    /// // Use up the boot memory, so that the region serves the next pages.
    /// let mut held = Vec::new();
    /// while let Ok(pa) = pages.alloc_pages(0, Gfp::KERNEL) {
    ///     held.push(pa);
    /// }
    /// let err = pages.remove_region(range).unwrap_err();
    /// assert!(matches!(err, HotplugError::PagesInUse { count, .. } if count > 900));
    /// for pa in held {
    ///     unsafe { pages.free_pages(pa, 0) }.unwrap(); // SAFETY: not used again.
    /// }
    /// pages.remove_region(range)?;
    /// # Ok::<(), HotplugError>(())
    /// ```
    pub fn remove_region(&self, range: PhysRange) -> Result<(), HotplugError> {
        let _hotplug = IrqOff::<A, _>::lock(&self.hotplug);
        let span = self
            .table
            .hot
            .spans()
            .find(|s| {
                s.start_pfn << PAGE_SHIFT == range.start && s.end_pfn << PAGE_SHIFT == range.end
            })
            .ok_or(HotplugError::NotARegion { range })?;
        self.drain_all_pcp();
        let t = &self.table;
        let zones = &self.nodes[t.frame(span.first).node()].zones;
        let mut areas: [_; NR_ZONES] = core::array::from_fn(|z| zones[z].area.lock());
        let meta = meta_frames(span.len()) as u32;
        let end = span.first + span.len() as u32;
        let blocks = || {
            let mut idx = span.first + meta;
            core::iter::from_fn(move || {
                (idx < end).then(|| {
                    let f = t.frame(idx);
                    let at = idx;
                    idx += 1 << f.order();
                    (at, f)
                })
            })
        };
        let count: u64 = blocks()
            .filter(|(_, f)| f.state() != FrameState::Free)
            .map(|(_, f)| 1u64 << f.order())
            .sum();
        if count > 0 {
            return Err(HotplugError::PagesInUse { range, count });
        }
        let mut managed = [0u64; NR_ZONES];
        for (idx, f) in blocks() {
            let (z, order) = (f.zone().index(), f.order());
            areas[z].unlink(t, idx, order);
            f.set(FrameState::Reserved, order);
            managed[z] += 1 << order;
        }
        for (zone, n) in zones.iter().zip(managed) {
            zone.managed.fetch_sub(n, Relaxed);
        }
        // Nobody reads the descriptors past this (hot.rs): the memory goes back.
        t.hot.retire(span.slot);
        drop(areas);
        log::debug!("page allocator: removed region {range}");
        Ok(())
    }

    /// Calls `f` with every region added at run time and online now.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let mut n = 0;
    /// kmem.pages().for_each_region(|_range| n += 1);
    /// assert_eq!(n, 0, "a heap that never grew has only its boot memory");
    /// ```
    pub fn for_each_region(&self, mut f: impl FnMut(PhysRange)) {
        for s in self.table.hot.spans() {
            f(PhysRange {
                start: s.start_pfn << PAGE_SHIFT,
                end: s.end_pfn << PAGE_SHIFT,
            });
        }
    }

    /// Registers the out-of-memory hook (module doc for its contract), or removes it
    /// with `None`; returns the one it replaces.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::hosted::HostArch;
    /// use kmem::mm::{OomHook, OomRequest};
    /// use kmem::PageAllocator;
    /// fn refuse(_: &PageAllocator<HostArch>, _: OomRequest, _: usize) -> bool {
    ///     false
    /// }
    /// let old = kmem.pages().set_oom_hook(Some(OomHook { f: refuse, ctx: 0 }));
    /// kmem.pages().set_oom_hook(old); // the heap's own hook, which grows it, is back
    /// ```
    pub fn set_oom_hook(&self, hook: Option<OomHook<A>>) -> Option<OomHook<A>> {
        core::mem::replace(&mut *IrqOff::<A, _>::lock(&self.oom), hook)
    }

    /// The out-of-memory path: asks the hook for memory and tries again (module doc).
    #[cold]
    #[inline(never)]
    pub(super) fn alloc_from_hook(
        &self,
        order: u32,
        gfp: Gfp,
        node: NodeId,
    ) -> Result<u32, PageError> {
        let oom = PageError::OutOfMemory {
            order,
            zone: gfp.zone(),
        };
        let me = A::cpu_id().wrapping_add(1);
        for _ in 0..OOM_ROUNDS {
            let Some(hook) = *IrqOff::<A, _>::lock(&self.oom) else {
                return Err(oom);
            };
            match self.oom_busy.compare_exchange(0, me, Acquire, Relaxed) {
                Ok(_) => {
                    let more = (hook.f)(self, OomRequest { order, gfp }, hook.ctx);
                    self.oom_busy.store(0, Release);
                    if !more {
                        return self.try_alloc(order, gfp, node).ok_or(oom);
                    }
                }
                // Called again from inside the hook, or from an interrupt of it.
                Err(cpu) if cpu == me => return Err(oom),
                Err(_) => {
                    while self.oom_busy.load(Acquire) != 0 {
                        core::hint::spin_loop();
                    }
                }
            }
            if let Some(idx) = self.try_alloc(order, gfp, node) {
                return Ok(idx);
            }
        }
        Err(oom)
    }
}

#[cfg(test)]
#[path = "hotplug_tests.rs"]
mod tests;
