//! The buddy allocator of one zone: free lists of 2^order-frame blocks, split and merge.
//!
//! Invariants (checked by `FreeArea::check` in tests):
//! - a block of order `o` starts at a frame number that is a multiple of 2^o, so it is
//!   aligned to its size in physical memory, and lies inside one bank, one zone and one
//!   node;
//! - every block on list `o` has its head in state `Free` with order `o`; its other frames
//!   are `Tail`;
//! - no two free buddies of the same order exist: freeing merges them at once.
//!
//! All functions here run under the zone's lock; the lock is the caller's.

use super::frame::{FrameState, FrameTable, NIL};
use super::hot::HOT_BASE;
use super::memmap::PAGE_SIZE;

/// Largest block order: 2^10 frames = 4 MiB. Order 9 is the 2 MiB block the x86 backend
/// maps.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::Gfp;
/// use kmem::mm::{MAX_ORDER, PageError};
/// let pages = kmem.pages();
/// let pa = pages.alloc_pages(MAX_ORDER, Gfp::KERNEL)?;
/// assert_eq!(pa % (4 << 20), 0, "a block is aligned to its size");
/// let err = pages.alloc_pages(MAX_ORDER + 1, Gfp::KERNEL);
/// assert_eq!(err, Err(PageError::OrderTooLarge { order: MAX_ORDER + 1 }));
/// unsafe { pages.free_pages(pa, MAX_ORDER) }?; // SAFETY: pa is not used again.
/// # Ok::<(), PageError>(())
/// ```
pub const MAX_ORDER: u32 = 10;

/// The smallest order whose blocks hold `bytes` (at least one page).
pub const fn order_for_bytes(bytes: usize) -> u32 {
    bytes
        .div_ceil(PAGE_SIZE as usize)
        .next_power_of_two()
        .trailing_zeros()
}

/// Number of free lists.
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// Free lists of one zone. Boot memory's blocks go to the front of a list and blocks of
/// regions added at run time to the back, so that allocations take boot memory first and
/// leave added regions free, to be removed, for as long as boot memory lasts (a block
/// allocated for good in a region would pin it: kmem moves nothing).
pub struct FreeArea {
    heads: [u32; NR_ORDERS],
    tails: [u32; NR_ORDERS],
    blocks: [u32; NR_ORDERS],
    free_pages: u64,
}

impl FreeArea {
    pub const fn new() -> FreeArea {
        FreeArea {
            heads: [NIL; NR_ORDERS],
            tails: [NIL; NR_ORDERS],
            blocks: [0; NR_ORDERS],
            free_pages: 0,
        }
    }

    /// Frames on the free lists.
    pub fn free_pages(&self) -> u64 {
        self.free_pages
    }

    /// Number of free blocks of each order.
    pub fn blocks(&self) -> [u32; NR_ORDERS] {
        self.blocks
    }

    /// Puts a free block on its list: at the front for boot memory, at the back for a
    /// region added at run time (type doc).
    fn push(&mut self, t: &FrameTable, idx: u32, order: u32) {
        let o = order as usize;
        let f = t.frame(idx);
        f.set(FrameState::Free, order);
        if idx >= HOT_BASE {
            f.set_next(NIL);
            f.set_prev(self.tails[o]);
            match self.tails[o] {
                NIL => self.heads[o] = idx,
                tail => t.frame(tail).set_next(idx),
            }
            self.tails[o] = idx;
        } else {
            f.set_prev(NIL);
            f.set_next(self.heads[o]);
            match self.heads[o] {
                NIL => self.tails[o] = idx,
                head => t.frame(head).set_prev(idx),
            }
            self.heads[o] = idx;
        }
        self.blocks[o] += 1;
        self.free_pages += 1 << order;
    }

    pub(crate) fn unlink(&mut self, t: &FrameTable, idx: u32, order: u32) {
        let o = order as usize;
        let f = t.frame(idx);
        let (prev, next) = (f.prev(), f.next());
        if prev == NIL {
            self.heads[o] = next;
        } else {
            t.frame(prev).set_next(next);
        }
        if next == NIL {
            self.tails[o] = prev;
        } else {
            t.frame(next).set_prev(prev);
        }
        self.blocks[o] -= 1;
        self.free_pages -= 1 << order;
    }

    /// Takes a block of `order`, splitting a larger one if needed. The head is returned
    /// in state `state` (Allocated, or PcpCached for the per-CPU lists).
    pub fn alloc(&mut self, t: &FrameTable, order: u32, state: FrameState) -> Option<u32> {
        // Boot memory first, splitting a larger boot block rather than taking a region's
        // (a list whose head is a region's holds no boot block: type doc).
        let mut o = (order..=MAX_ORDER)
            .find(|&o| self.heads[o as usize] < HOT_BASE)
            .or_else(|| (order..=MAX_ORDER).find(|&o| self.heads[o as usize] != NIL))?;
        let idx = self.heads[o as usize];
        self.unlink(t, idx, o);
        // Split: keep the lower half, free the upper half, until the order fits. A block
        // lies in one bank, where indices run in step with frame numbers.
        while o > order {
            o -= 1;
            self.push(t, idx + (1 << o), o);
        }
        t.frame(idx).set(state, order);
        Some(idx)
    }

    /// Returns the block headed by `idx` to the free lists, merging it with free buddies.
    /// The caller has checked that `idx` heads a block of `order` it may free.
    pub fn free(&mut self, t: &FrameTable, mut idx: u32, mut order: u32) {
        let place = t.frame(idx).place();
        // Buddies merge only inside the run of descriptors that holds the block: a
        // region added at run time may lie next to another, whose descriptors are
        // elsewhere (and which may be removed on its own).
        let (start, end, first) = t.span_of(idx);
        let mut pfn = start + u64::from(idx - first);
        while order < MAX_ORDER {
            let buddy_pfn = pfn ^ (1 << order);
            if buddy_pfn < start || buddy_pfn >= end {
                break;
            }
            let b = first + (buddy_pfn - start) as u32;
            let bf = t.frame(b);
            if bf.state() != FrameState::Free || bf.order() != order || bf.place() != place {
                break;
            }
            self.unlink(t, b, order);
            if buddy_pfn < pfn {
                t.frame(idx).set(FrameState::Tail, 0);
                idx = b;
                pfn = buddy_pfn;
            } else {
                bf.set(FrameState::Tail, 0);
            }
            order += 1;
        }
        self.push(t, idx, order);
    }

    /// Adds frames `[first, first + count)` of one bank and one zone, all currently
    /// `Reserved`, as maximal aligned blocks.
    pub fn add_range(&mut self, t: &FrameTable, first: u32, count: u32) {
        let mut idx = first;
        let end = first + count;
        let mut pfn = t.pfn_of(first);
        while idx < end {
            let align = if pfn == 0 {
                MAX_ORDER
            } else {
                pfn.trailing_zeros()
            };
            let mut order = align.min(MAX_ORDER);
            while idx + (1 << order) > end {
                order -= 1;
            }
            for tail in idx + 1..idx + (1 << order) {
                t.frame(tail).set(FrameState::Tail, 0);
            }
            self.push(t, idx, order);
            idx += 1 << order;
            pfn += 1 << order;
        }
    }

    /// Walks every list and checks the invariants in the module doc against `t`.
    #[cfg(test)]
    pub fn check(&self, t: &FrameTable) {
        let mut pages = 0;
        for o in 0..NR_ORDERS {
            let (mut i, mut prev, mut n) = (self.heads[o], NIL, 0);
            while i != NIL {
                let f = t.frame(i);
                assert_eq!(f.state(), FrameState::Free, "frame {i} on list {o}");
                assert_eq!(f.order() as usize, o);
                assert_eq!(f.prev(), prev);
                assert_eq!(t.pfn_of(i) % (1 << o), 0, "block {i} misaligned");
                for tail in i + 1..i + (1 << o) {
                    assert_eq!(t.frame(tail).state(), FrameState::Tail);
                }
                prev = i;
                i = f.next();
                n += 1;
            }
            assert_eq!(prev, self.tails[o], "tail of list {o}");
            assert_eq!(n, self.blocks[o]);
            pages += u64::from(n) << o;
        }
        assert_eq!(pages, self.free_pages);
    }
}

impl Default for FreeArea {
    fn default() -> Self {
        FreeArea::new()
    }
}
