//! How a cache lays out its slabs: order, objects per slab, colouring — Linux SLAB's
//! `calculate_slab_order` and `cache_estimate`, without management in the slab.
//!
//! A slab is 2^order pages of objects; its bookkeeping is in its page descriptors
//! (`header`):
//!
//! ```text
//! | colour | obj 0 | obj 1 | ... | obj num-1 | left over |
//! ```
//!
//! The order is the smallest whose left-over space is at most 1/8 of the slab (the SLAB
//! rule), unless one of the next three orders fits within 1/64: then the first of those.
//! An object that leaves, say, 11 % of a 32 KiB slab unused (kmalloc-29120, one per slab)
//! then fills 256 KiB with nine; a tail is lost in every slab, a large slab's free part
//! only in the last, partly used one. The left-over space is then spent on colouring: successive slabs start their objects
//! `colour_off` bytes further in, so that equal offsets in different slabs land in
//! different cache sets.

use crate::mm::buddy::MAX_ORDER;
use crate::mm::memmap::PAGE_SIZE;

/// Colouring step: a cache line.
pub const CACHE_LINE: usize = 64;

/// Most objects per slab: chain links and the in-use count are `u16`, clear of the end
/// mark at the top.
pub const MAX_OBJS: usize = 0x7FF0;

/// Object 0 sits less than this far into its slab (the descriptors keep the offset in
/// 19 bits), colour and left red zone together.
pub const MAX_OFFSET: usize = 1 << 19;

/// A cache's slab geometry.
/// `repr(C)`: the free fast path reads `stride` and `num`, so they come first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SlabLayout {
    /// Distance between objects (object size rounded up to the alignment).
    pub stride: usize,
    /// Objects per slab.
    pub num: usize,
    /// Alignment of every object.
    pub align: usize,
    /// Slab size is 2^order pages.
    pub order: u32,
    /// Bytes per slab that hold no object (before colouring uses them).
    pub left_over: usize,
    /// Colouring step in bytes, and how many distinct colours fit in the left-over.
    pub colour_off: usize,
    pub colours: usize,
}

impl SlabLayout {
    /// The layout for objects of `size` bytes aligned to `align` (a power of two), or
    /// `None` when not even one object fits in a maximal slab.
    pub fn new(size: usize, align: usize) -> Option<SlabLayout> {
        let align = align.max(8);
        let stride = size.max(1).checked_next_multiple_of(align)?;
        let mut best = None;
        for order in 0..=MAX_ORDER {
            let slab = (PAGE_SIZE as usize) << order;
            let num = (slab / stride).min(MAX_OBJS);
            if num == 0 {
                continue;
            }
            let left_over = slab - num * stride;
            best = Some((order, num, left_over));
            // Waste at most 1/8 of the slab, the SLAB rule.
            if left_over * 8 <= slab || num == MAX_OBJS {
                break;
            }
        }
        let (mut order, mut num, mut left_over) = best?;
        let page = PAGE_SIZE as usize;
        if left_over * 64 > page << order {
            for o in order + 1..=(order + 3).min(MAX_ORDER) {
                let n = ((page << o) / stride).min(MAX_OBJS);
                if ((page << o) - n * stride) * 64 <= page << o {
                    (order, num, left_over) = (o, n, (page << o) - n * stride);
                    break;
                }
            }
        }
        let colour_off = CACHE_LINE.max(align);
        // Room for the left red zone (at most a page) below MAX_OFFSET.
        let colours =
            (left_over / colour_off).min((MAX_OFFSET - PAGE_SIZE as usize) / colour_off - 1);
        Some(SlabLayout {
            stride,
            align,
            order,
            num,
            left_over,
            colour_off,
            colours,
        })
    }

    /// Bytes in one slab.
    pub fn slab_bytes(&self) -> usize {
        (PAGE_SIZE as usize) << self.order
    }

    /// Tail waste as parts per thousand of the slab.
    pub fn waste_permille(&self) -> usize {
        self.left_over * 1000 / self.slab_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_objects_fill_one_page() {
        let l = SlabLayout::new(32, 8).unwrap();
        assert_eq!(l.order, 0);
        assert_eq!(l.num, 128);
        assert_eq!(l.left_over, 0);
        let l = SlabLayout::new(24, 8).unwrap();
        assert_eq!(l.num * l.stride + l.left_over, 4096);
    }

    #[test]
    fn large_objects_waste_little() {
        for size in [512, 1000, 3000, 4096, 10_000, 100_000, 1 << 20] {
            let l = SlabLayout::new(size, 8).unwrap();
            assert!(l.left_over * 8 <= l.slab_bytes(), "{size}: {l:?}");
        }
    }

    #[test]
    fn alignment_is_honoured_and_colours_fit() {
        let l = SlabLayout::new(100, 64).unwrap();
        assert_eq!(l.stride, 128);
        assert!(l.colours * l.colour_off <= l.left_over);
        let big = SlabLayout::new((4 << 20) / 9 + 8, 8).unwrap();
        assert!(
            big.colours * big.colour_off + (PAGE_SIZE as usize) < MAX_OFFSET,
            "{big:?}"
        );
    }

    #[test]
    fn a_near_exact_fit_a_few_orders_up_wins() {
        // 29 120 B: 11 % of a 32 KiB slab left over; nine fill 256 KiB.
        let l = SlabLayout::new(29_120, 8).unwrap();
        assert_eq!((l.order, l.num), (6, 9));
        // 320 B: 6.25 % of a page; 51 fill four pages but 64 bytes.
        let l = SlabLayout::new(320, 8).unwrap();
        assert_eq!((l.order, l.num, l.left_over), (2, 51, 64));
        // 1000 B: 2.3 % of a page, and no better fit up to eight pages: one page.
        assert_eq!(SlabLayout::new(1000, 8).unwrap().order, 0);
    }

    #[test]
    fn too_big_for_any_slab() {
        assert_eq!(SlabLayout::new(8 << 20, 8), None);
        assert_eq!(SlabLayout::new(usize::MAX - 3, 8), None);
    }
}
