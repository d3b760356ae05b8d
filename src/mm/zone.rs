//! Memory zones: which physical addresses a device with a narrow DMA mask can reach.
//!
//! The board supplies the limits ([`ZoneLimits`]): x86 has DMA below 16 MiB and DMA32 below
//! 4 GiB; the Pi 4 has DMA below 1 GiB and no DMA32; QEMU `virt` has DMA32 below 4 GiB and
//! no DMA. A zone may be empty. An allocation names the highest zone it accepts and falls
//! back downwards only ([`ZoneKind::fallbacks`]).

use core::fmt;

/// Number of zones.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::mm::zone::{NR_ZONES, ZoneKind};
/// assert_eq!(ZoneKind::ALL.len(), NR_ZONES);
/// assert_eq!(kmem.pages().info().zones.len(), NR_ZONES);
/// ```
pub const NR_ZONES: usize = 3;

/// A zone, ordered from the most constrained to the least.
///
/// # Examples
/// ```
/// use kmem::ZoneLimits;
/// use kmem::mm::zone::ZoneKind;
/// assert!(ZoneKind::Dma < ZoneKind::Dma32 && ZoneKind::Dma32 < ZoneKind::Normal);
/// assert_eq!(ZoneLimits::X86.zone_of(0x8_0000), ZoneKind::Dma);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum ZoneKind {
    /// Below [`ZoneLimits::dma_end`]: for devices with the narrowest DMA mask.
    Dma = 0,
    /// From `dma_end` to [`ZoneLimits::dma32_end`]: for 32-bit DMA masters.
    Dma32 = 1,
    /// Everything above: for the CPU and devices that reach all memory.
    Normal = 2,
}

impl ZoneKind {
    /// Every zone, in index order (DMA first).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::mm::zone::ZoneKind;
    /// let info = kmem.pages().info();
    /// let with_memory: Vec<_> = ZoneKind::ALL
    ///     .into_iter()
    ///     .filter(|z| info.zones[z.index()].managed_pages > 0)
    ///     .collect();
    /// assert_eq!(with_memory, [ZoneKind::Normal]); // hosted: one flat zone
    /// ```
    pub const ALL: [ZoneKind; NR_ZONES] = [ZoneKind::Dma, ZoneKind::Dma32, ZoneKind::Normal];

    /// Position in [`ZoneKind::ALL`] and in per-zone arrays such as
    /// [`PageInfo::zones`](crate::mm::PageInfo::zones): 0 to [`NR_ZONES`] − 1.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::mm::zone::ZoneKind;
    /// let normal = kmem.pages().info().zones[ZoneKind::Normal.index()];
    /// assert_eq!(normal.kind, ZoneKind::Normal);
    /// ```
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The zone at index `i`, the inverse of [`ZoneKind::index`]; any `i` past the last
    /// zone gives Normal.
    pub(crate) const fn from_index(i: usize) -> ZoneKind {
        match i {
            0 => ZoneKind::Dma,
            1 => ZoneKind::Dma32,
            _ => ZoneKind::Normal,
        }
    }

    /// The name Linux gives the zone (`DMA`, `DMA32`, `Normal`), as `Display` shows it.
    ///
    /// # Examples
    /// ```
    /// use kmem::mm::zone::ZoneKind;
    /// assert_eq!(ZoneKind::Dma32.name(), "DMA32");
    /// assert_eq!(ZoneKind::Normal.to_string(), "Normal");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            ZoneKind::Dma => "DMA",
            ZoneKind::Dma32 => "DMA32",
            ZoneKind::Normal => "Normal",
        }
    }

    /// The zones an allocation constrained to `self` may use, in the order to try them:
    /// the named zone first, then each lower one.
    ///
    /// # Examples
    /// ```
    /// use kmem::mm::zone::ZoneKind;
    /// let order: Vec<_> = ZoneKind::Dma32.fallbacks().collect();
    /// assert_eq!(order, [ZoneKind::Dma32, ZoneKind::Dma]);
    /// ```
    pub fn fallbacks(self) -> impl Iterator<Item = ZoneKind> {
        (0..=self.index()).rev().map(ZoneKind::from_index)
    }
}

impl fmt::Display for ZoneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Zone boundaries: DMA is `[0, dma_end)`, DMA32 `[dma_end, dma32_end)`, Normal the rest.
///
/// # Examples
/// A board whose DMA masters see 1 GiB and whose PCIe devices see 4 GiB:
/// ```
/// use kmem::ZoneLimits;
/// use kmem::mm::zone::ZoneKind;
/// let board = ZoneLimits { dma_end: 1 << 30, dma32_end: 4 << 30 };
/// assert_eq!(board.zone_of(0x8000_0000), ZoneKind::Dma32);
/// assert_eq!(board.span(ZoneKind::Dma32), (1 << 30, 4 << 30));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ZoneLimits {
    /// First physical address above the DMA zone; 0 for no DMA zone.
    pub dma_end: u64,
    /// First physical address above the DMA32 zone; at or below `dma_end` for no DMA32
    /// zone.
    pub dma32_end: u64,
}

impl ZoneLimits {
    /// x86: ISA DMA below 16 MiB, 32-bit DMA below 4 GiB.
    ///
    /// # Examples
    /// ```
    /// use kmem::ZoneLimits;
    /// use kmem::mm::zone::ZoneKind;
    /// assert_eq!(ZoneLimits::X86.zone_of(0xF_0000), ZoneKind::Dma); // ISA bounce buffers
    /// assert_eq!(ZoneLimits::X86.zone_of(0x1_0000_0000), ZoneKind::Normal);
    /// ```
    pub const X86: ZoneLimits = ZoneLimits {
        dma_end: 16 << 20,
        dma32_end: 4 << 30,
    };
    /// QEMU `virt` and other 64-bit-DMA aarch64 boards: DMA32 below 4 GiB, no DMA zone.
    ///
    /// # Examples
    /// ```
    /// use kmem::ZoneLimits;
    /// use kmem::mm::zone::ZoneKind;
    /// let virt = ZoneLimits::DMA32_ONLY;
    /// assert_eq!(virt.zone_of(0x4000_0000), ZoneKind::Dma32); // where `virt` puts RAM
    /// assert_eq!(virt.span(ZoneKind::Dma), (0, 0));
    /// ```
    pub const DMA32_ONLY: ZoneLimits = ZoneLimits {
        dma_end: 0,
        dma32_end: 4 << 30,
    };
    /// Raspberry Pi 4 (and Pi 3, whose RAM all lies below it): 30-bit DMA masters see
    /// only the low 1 GiB.
    ///
    /// # Examples
    /// ```
    /// use kmem::ZoneLimits;
    /// use kmem::mm::zone::ZoneKind;
    /// assert_eq!(ZoneLimits::RPI.zone_of(0x3FFF_F000), ZoneKind::Dma);
    /// assert_eq!(ZoneLimits::RPI.zone_of(0x4000_0000), ZoneKind::Normal);
    /// ```
    pub const RPI: ZoneLimits = ZoneLimits {
        dma_end: 1 << 30,
        dma32_end: 1 << 30,
    };
    /// Everything in Normal: boards with no DMA restrictions, and the hosted default.
    ///
    /// # Examples
    /// ```
    /// use kmem::ZoneLimits;
    /// use kmem::mm::zone::ZoneKind;
    /// assert_eq!(ZoneLimits::FLAT.zone_of(0), ZoneKind::Normal);
    /// assert_eq!(ZoneLimits::FLAT.span(ZoneKind::Normal), (0, u64::MAX));
    /// ```
    pub const FLAT: ZoneLimits = ZoneLimits {
        dma_end: 0,
        dma32_end: 0,
    };

    /// The zone that physical address `pa` belongs to.
    ///
    /// # Examples
    /// ```
    /// use kmem::ZoneLimits;
    /// use kmem::mm::zone::ZoneKind;
    /// let x86 = ZoneLimits::X86;
    /// assert_eq!(x86.zone_of((16 << 20) - 1), ZoneKind::Dma);
    /// assert_eq!(x86.zone_of(16 << 20), ZoneKind::Dma32);
    /// ```
    pub const fn zone_of(&self, pa: u64) -> ZoneKind {
        if pa < self.dma_end {
            ZoneKind::Dma
        } else if pa < self.dma32_end {
            ZoneKind::Dma32
        } else {
            ZoneKind::Normal
        }
    }

    /// The address range `[start, end)` of `zone` (`end` is `u64::MAX` for Normal).
    ///
    /// # Examples
    /// ```
    /// use kmem::ZoneLimits;
    /// use kmem::mm::zone::ZoneKind;
    /// assert_eq!(ZoneLimits::X86.span(ZoneKind::Dma32), (16 << 20, 4 << 30));
    /// assert_eq!(ZoneLimits::RPI.span(ZoneKind::Dma32), (1 << 30, 1 << 30)); // empty
    /// ```
    pub const fn span(&self, zone: ZoneKind) -> (u64, u64) {
        let dma32_start = if self.dma_end < self.dma32_end {
            self.dma_end
        } else {
            self.dma32_end
        };
        match zone {
            ZoneKind::Dma => (0, self.dma_end),
            ZoneKind::Dma32 => (dma32_start, self.dma32_end),
            ZoneKind::Normal => {
                let s = if self.dma32_end > self.dma_end {
                    self.dma32_end
                } else {
                    self.dma_end
                };
                (s, u64::MAX)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_goes_down_never_up() {
        let v: Vec<_> = ZoneKind::Normal.fallbacks().collect();
        assert_eq!(v, [ZoneKind::Normal, ZoneKind::Dma32, ZoneKind::Dma]);
        let v: Vec<_> = ZoneKind::Dma32.fallbacks().collect();
        assert_eq!(v, [ZoneKind::Dma32, ZoneKind::Dma]);
        let v: Vec<_> = ZoneKind::Dma.fallbacks().collect();
        assert_eq!(v, [ZoneKind::Dma]);
    }

    #[test]
    fn board_limits_place_addresses() {
        let x = ZoneLimits::X86;
        assert_eq!(x.zone_of(0x100_0000 - 1), ZoneKind::Dma);
        assert_eq!(x.zone_of(0x100_0000), ZoneKind::Dma32);
        assert_eq!(x.zone_of(0x1_0000_0000), ZoneKind::Normal);
        let v = ZoneLimits::DMA32_ONLY;
        assert_eq!(v.zone_of(0x4000_0000), ZoneKind::Dma32);
        assert_eq!(v.span(ZoneKind::Dma), (0, 0));
        let p = ZoneLimits::RPI;
        assert_eq!(p.zone_of(0x3FFF_FFFF), ZoneKind::Dma);
        assert_eq!(p.zone_of(0x4000_0000), ZoneKind::Normal);
        assert_eq!(p.span(ZoneKind::Dma32), (1 << 30, 1 << 30));
    }
}
