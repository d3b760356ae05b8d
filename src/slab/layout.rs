//! How a cache lays out its slabs: order, objects per slab, management placement,
//! colouring — Linux SLAB's `calculate_slab_order` and `cache_estimate`.
//!
//! A slab is 2^order pages:
//!
//! ```text
//! on-slab:  | colour | Slab header | bufctl[num] | pad | obj 0 | obj 1 | ... | left over |
//! off-slab: | colour | obj 0 | obj 1 | ...                                  | left over |
//!             (header and bufctl in a kmalloc object elsewhere)
//! ```
//!
//! Objects of [`OFF_SLAB_MIN`] bytes or more keep their management off-slab, so that a
//! page holds a whole number of them. The order is the smallest whose left-over space is at
//! most 1/8 of the slab; the left-over space is then spent on colouring: successive slabs
//! start their objects `colour_off` bytes further in, so that equal offsets in different
//! slabs land in different cache sets.

use crate::mm::buddy::MAX_ORDER;
use crate::mm::memmap::PAGE_SIZE;

/// Objects this size or larger keep management data off-slab.
pub const OFF_SLAB_MIN: usize = PAGE_SIZE as usize / 8;

/// Colouring step: a cache line.
pub const CACHE_LINE: usize = 64;

/// Most objects per slab: bufctl entries are `u16`; encoded links stay below 0x8000,
/// clear of the marker values at the top.
pub const MAX_OBJS: usize = 0x7FF0;

/// Bytes of the per-slab header (see `header::Slab`).
pub const SLAB_HEADER: usize = 48;

/// A cache's slab geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabLayout {
    /// Distance between objects (object size rounded up to the alignment).
    pub stride: usize,
    /// Alignment of every object.
    pub align: usize,
    /// Slab size is 2^order pages.
    pub order: u32,
    /// Objects per slab.
    pub num: usize,
    /// Whether header and bufctl live outside the slab.
    pub off_slab: bool,
    /// Bytes of header and bufctl.
    pub mgmt_size: usize,
    /// Bytes per slab neither objects nor management (before colouring uses them).
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
        // Off-slab management comes from a small kmalloc cache, which must itself be
        // on-slab so that growing one cache never needs the other's lock in reverse.
        match Self::with(stride, align, stride >= OFF_SLAB_MIN)? {
            l if l.off_slab && l.mgmt_size >= OFF_SLAB_MIN => Self::with(stride, align, false),
            l => Some(l),
        }
    }

    fn with(stride: usize, align: usize, off_slab: bool) -> Option<SlabLayout> {
        let mut best = None;
        for order in 0..=MAX_ORDER {
            let slab = (PAGE_SIZE as usize) << order;
            let (num, used) = estimate(slab, stride, align, off_slab);
            if num == 0 {
                continue;
            }
            let left_over = slab - used;
            best = Some((order, num, left_over));
            // Waste at most 1/8 of the slab, the SLAB rule.
            if left_over * 8 <= slab || num == MAX_OBJS {
                break;
            }
        }
        let (order, num, left_over) = best?;
        let colour_off = CACHE_LINE.max(align);
        Some(SlabLayout {
            stride,
            align,
            order,
            num,
            off_slab,
            mgmt_size: mgmt_bytes(num),
            left_over,
            colour_off,
            colours: left_over / colour_off,
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

    /// Offset of the first object from the start of the slab's management area
    /// (on-slab) or of the slab (off-slab), before colouring.
    pub fn objects_offset(&self) -> usize {
        if self.off_slab {
            0
        } else {
            self.mgmt_size.next_multiple_of(self.align)
        }
    }
}

/// Header plus one `u16` bufctl entry per object.
pub fn mgmt_bytes(num: usize) -> usize {
    SLAB_HEADER + 2 * num
}

/// How many objects fit in `slab` bytes, and the bytes they (and on-slab management) use.
fn estimate(slab: usize, stride: usize, align: usize, off_slab: bool) -> (usize, usize) {
    if off_slab {
        let num = (slab / stride).min(MAX_OBJS);
        return (num, num * stride);
    }
    // Largest num with align_up(mgmt(num), align) + num * stride ≤ slab.
    let mut num = (slab.saturating_sub(SLAB_HEADER) / (stride + 2)).min(MAX_OBJS);
    while num > 0 && mgmt_bytes(num).next_multiple_of(align) + num * stride > slab {
        num -= 1;
    }
    (num, mgmt_bytes(num).next_multiple_of(align) + num * stride)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_objects_are_on_slab_in_one_page() {
        let l = SlabLayout::new(32, 8).unwrap();
        assert!(!l.off_slab);
        assert_eq!(l.order, 0);
        assert!(l.num > 100);
        assert!(l.objects_offset() + l.num * l.stride + l.left_over == 4096);
    }

    #[test]
    fn large_objects_go_off_slab_and_waste_little() {
        for size in [512, 1000, 3000, 4096, 10_000, 100_000, 1 << 20] {
            let l = SlabLayout::new(size, 8).unwrap();
            assert!(l.off_slab, "{size}");
            assert!(l.left_over * 8 <= l.slab_bytes(), "{size}: {l:?}");
        }
    }

    #[test]
    fn alignment_is_honoured_and_colours_fit() {
        let l = SlabLayout::new(100, 64).unwrap();
        assert_eq!(l.stride, 128);
        assert_eq!(l.objects_offset() % 64, 0);
        assert!(l.colours * l.colour_off <= l.left_over);
    }

    #[test]
    fn too_big_for_any_slab() {
        assert_eq!(SlabLayout::new(8 << 20, 8), None);
        assert_eq!(SlabLayout::new(usize::MAX - 3, 8), None);
    }
}
