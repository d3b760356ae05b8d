//! Allocation flags shared by the page allocator and kmalloc, after Linux's `gfp_t`.

use crate::mm::zone::ZoneKind;

/// Allocation flags. The zone bits give the highest zone the caller accepts; the allocator
/// falls back downwards from there (Normal → DMA32 → DMA), never upwards.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Gfp(u32);

impl Gfp {
    /// Any zone, no zeroing, may not be called from interrupt context.
    pub const KERNEL: Gfp = Gfp(0);
    /// Fill the memory with zeroes before returning it (`__GFP_ZERO`).
    pub const ZERO: Gfp = Gfp(1 << 0);
    /// Serve from the DMA zone only.
    pub const DMA: Gfp = Gfp(1 << 1);
    /// Serve from DMA32 or, failing that, DMA.
    pub const DMA32: Gfp = Gfp(1 << 2);
    /// Called from interrupt context: never waits on anything but the short zone and
    /// cache locks, which are always taken with interrupts disabled.
    pub const ATOMIC: Gfp = Gfp(1 << 3);

    /// Whether every flag in `other` is set.
    #[inline]
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags in `self` but not in `other`.
    #[inline]
    pub const fn without(self, other: Gfp) -> Gfp {
        Gfp(self.0 & !other.0)
    }

    /// Raw bits, for logging.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The highest zone these flags accept.
    #[inline]
    pub const fn zone(self) -> ZoneKind {
        if self.contains(Gfp::DMA) {
            ZoneKind::Dma
        } else if self.contains(Gfp::DMA32) {
            ZoneKind::Dma32
        } else {
            ZoneKind::Normal
        }
    }
}

impl core::ops::BitOr for Gfp {
    type Output = Gfp;
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Gfp {
    fn bitor_assign(&mut self, rhs: Gfp) {
        self.0 |= rhs.0;
    }
}
