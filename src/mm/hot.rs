//! The table of regions added at run time ("hot" regions), as the frame table reads it.
//!
//! The boot map's descriptors are one array found by one subtraction (the kfree fast
//! path). A region added later carries its own descriptor array, carved from its first
//! frames, and takes one of [`MAX_HOT`] fixed slots. Slot `k` owns the descriptor indices
//! `HOT_BASE + k·2^25 ..`, so an index names its slot with a shift and no search, and the
//! buddy and slab lists, which link by index, need nothing new. By address, a lookup first
//! tries the boot banks and only then scans the slots in use — the cost of a hot region
//! falls on its own frames, never on the boot bank's.
//!
//! Concurrency: each slot is a seqlock. A writer (add or remove, one at a time under the
//! page allocator's hotplug lock, with interrupts off) makes the sequence odd, writes the
//! fields and makes it even again; a reader by address that sees an odd sequence or a
//! sequence that changed under it skips the slot. Skipping is right for every reader
//! entitled to a descriptor: a region is written only while being added (nobody owns its
//! pages yet) or removed (nobody owns any of its pages, else removal is refused).
//!
//! The RCU-like rule for descriptor memory: a hot region's descriptors are read only by
//! (a) the owner of an allocated block in it, which keeps the region from being removed,
//! (b) code holding its zone's lock, which removal takes, and (c) a CPU's page lists,
//! which removal first drains and finds empty of the region's blocks. Lookups by any
//! address that safe code may make (`PageAllocator::zone_of`) read only this table,
//! which lives as long as the allocator. So once `remove_region` returns, nothing reads
//! the region's descriptors, and its memory — descriptors included — is the caller's
//! again. (An `unsafe` free of a stale address breaks its own contract; it may read the
//! removed memory, as it may read a freed block's.)

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering, fence};

use super::frame::{PAGE_SHIFT, PageFrame};

/// Most regions that can be added at run time and be online at once.
pub const MAX_HOT: usize = 32;

/// The first descriptor index of hot regions; boot descriptors stay below it.
pub const HOT_BASE: u32 = 1 << 31;

/// log2 of the index span of one slot.
const SLOT_SHIFT: u32 = 25;

/// Most frames one hot region may hold (128 GiB).
pub const MAX_HOT_FRAMES: u64 = 1 << SLOT_SHIFT;

#[derive(Default)]
struct Slot {
    /// Odd while a writer changes the slot.
    seq: AtomicU32,
    /// 0 when the slot holds no region.
    end_pfn: AtomicU64,
    start_pfn: AtomicU64,
    frames: AtomicPtr<PageFrame>,
}

/// A region as a slot holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotSpan {
    /// The slot.
    pub slot: usize,
    /// First frame number.
    pub start_pfn: u64,
    /// Frame number past the end.
    pub end_pfn: u64,
    /// Index of the region's first descriptor.
    pub first: u32,
    frames: *mut PageFrame,
}

impl HotSpan {
    /// Frames in the region.
    pub fn len(&self) -> u64 {
        self.end_pfn - self.start_pfn
    }
}

/// The slots (see the module doc).
pub struct HotTable {
    slots: [Slot; MAX_HOT],
    /// Slots below this one have been used: scans stop here.
    used: AtomicU32,
}

/// The first descriptor index of slot `k`.
#[inline]
pub const fn slot_first(k: usize) -> u32 {
    HOT_BASE + ((k as u32) << SLOT_SHIFT)
}

impl HotTable {
    pub fn new() -> HotTable {
        HotTable {
            slots: Default::default(),
            used: AtomicU32::new(0),
        }
    }

    /// Slot `k` as a seqlock reader sees it: `None` when empty or changing.
    fn read(&self, k: usize) -> Option<HotSpan> {
        let s = &self.slots[k];
        let seq = s.seq.load(Ordering::Acquire);
        if seq & 1 != 0 {
            return None;
        }
        let (start_pfn, end_pfn) = (
            s.start_pfn.load(Ordering::Relaxed),
            s.end_pfn.load(Ordering::Relaxed),
        );
        let frames = s.frames.load(Ordering::Relaxed);
        // Orders the field loads before the second sequence load (the seqlock read side).
        fence(Ordering::Acquire);
        if end_pfn == 0 || s.seq.load(Ordering::Relaxed) != seq {
            return None;
        }
        Some(HotSpan {
            slot: k,
            start_pfn,
            end_pfn,
            first: slot_first(k),
            frames,
        })
    }

    /// Every region online now.
    pub fn spans(&self) -> impl Iterator<Item = HotSpan> + '_ {
        (0..self.used.load(Ordering::Acquire) as usize).filter_map(|k| self.read(k))
    }

    /// The region holding frame `pfn`.
    #[inline(never)]
    pub fn span_of_pfn(&self, pfn: u64) -> Option<HotSpan> {
        self.spans().find(|s| pfn >= s.start_pfn && pfn < s.end_pfn)
    }

    /// Index and descriptor of frame `pfn`.
    #[inline(never)]
    pub fn frame_of_pfn(&self, pfn: u64) -> Option<(u32, &PageFrame)> {
        let s = self.span_of_pfn(pfn)?;
        let off = pfn - s.start_pfn;
        // SAFETY: off < the region's length, and the region's array holds that many
        // descriptors, initialised before the slot was published (module doc for how
        // long they stay).
        Some((s.first + off as u32, unsafe {
            &*s.frames.add(off as usize)
        }))
    }

    /// The region whose descriptors include index `idx` (≥ [`HOT_BASE`]), read by a
    /// caller entitled to it (module doc): the slot's fields as they stand.
    #[inline]
    fn by_index(&self, idx: u32) -> (&Slot, u64) {
        let k = ((idx - HOT_BASE) >> SLOT_SHIFT) as usize;
        let slot = self
            .slots
            .get(k)
            .unwrap_or_else(|| panic!("frame index {idx:#x} out of range"));
        (slot, u64::from(idx & ((1 << SLOT_SHIFT) - 1)))
    }

    /// Descriptor `idx` (≥ [`HOT_BASE`]) of an online region.
    #[inline(never)]
    pub fn frame(&self, idx: u32) -> &PageFrame {
        let (s, off) = self.by_index(idx);
        let (start, end) = (
            s.start_pfn.load(Ordering::Relaxed),
            s.end_pfn.load(Ordering::Acquire),
        );
        assert!(
            off < end.saturating_sub(start),
            "frame index {idx:#x} out of range"
        );
        // SAFETY: off < the region's length; its descriptors are initialised (see above).
        unsafe { &*s.frames.load(Ordering::Relaxed).add(off as usize) }
    }

    /// Frame number of descriptor `idx` (≥ [`HOT_BASE`]).
    #[inline(never)]
    pub fn pfn_of(&self, idx: u32) -> u64 {
        let (s, off) = self.by_index(idx);
        s.start_pfn.load(Ordering::Relaxed) + off
    }

    /// The region of descriptor index `idx` (≥ [`HOT_BASE`]), as
    /// `(start_pfn, end_pfn, first)`.
    pub fn span_of_index(&self, idx: u32) -> (u64, u64, u32) {
        let k = ((idx - HOT_BASE) >> SLOT_SHIFT) as usize;
        let (s, _) = self.by_index(idx);
        (
            s.start_pfn.load(Ordering::Relaxed),
            s.end_pfn.load(Ordering::Relaxed),
            slot_first(k),
        )
    }

    /// Index of descriptor `f`, if it is one of a hot region's.
    pub fn index_of_frame(&self, f: &PageFrame) -> Option<u32> {
        let p = f as *const PageFrame as usize;
        self.spans().find_map(|s| {
            let off = p.wrapping_sub(s.frames as usize) / size_of::<PageFrame>();
            (p >= s.frames as usize && (off as u64) < s.len()).then(|| s.first + off as u32)
        })
    }

    /// A slot holding no region, for the hotplug lock's holder.
    pub fn free_slot(&self) -> Option<usize> {
        (0..MAX_HOT).find(|&k| {
            let s = &self.slots[k];
            s.end_pfn.load(Ordering::Relaxed) == 0
        })
    }

    /// Publishes a region in slot `k`: its descriptors at `frames` are initialised.
    /// Only the hotplug lock's holder calls this, with interrupts off.
    pub fn publish(&self, k: usize, start: u64, end: u64, frames: *mut PageFrame) {
        let s = &self.slots[k];
        self.write(s, |s| {
            s.start_pfn.store(start >> PAGE_SHIFT, Ordering::Relaxed);
            s.frames.store(frames, Ordering::Relaxed);
            s.end_pfn.store(end >> PAGE_SHIFT, Ordering::Relaxed);
        });
        self.used.fetch_max(k as u32 + 1, Ordering::AcqRel);
    }

    /// Empties slot `k`; as [`HotTable::publish`].
    pub fn retire(&self, k: usize) {
        self.write(&self.slots[k], |s| s.end_pfn.store(0, Ordering::Relaxed));
    }

    fn write(&self, s: &Slot, f: impl FnOnce(&Slot)) {
        let seq = s.seq.load(Ordering::Relaxed);
        s.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // The odd sequence is seen before any field changes (seqlock write side).
        fence(Ordering::Release);
        f(s);
        s.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}
