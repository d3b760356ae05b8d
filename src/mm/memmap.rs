//! Physical memory as firmware reports it (DTB, ATAGs, e820, mailbox), and its normal form.
//!
//! Firmware lists are raw: unsorted, overlapping, unaligned, with reserved ranges inside
//! usable ones. [`MemoryMap`] collects them without allocating (it runs before any
//! allocator exists) and [`MemoryMap::normalize`] turns them into [`NormalizedMap`]:
//! sorted, merged, reserved wins over usable where they overlap, and usable ranges trimmed
//! inward to page boundaries. Every bad entry is an error value, never a panic.

use core::fmt;

/// Frame size the page allocator manages.
///
/// # Examples
/// Usable ranges are trimmed inward to frame boundaries:
/// ```
/// use kmem::mm::memmap::{MemoryMap, PAGE_SIZE, RegionKind};
/// let mut map = MemoryMap::new();
/// map.add(RegionKind::Usable, 0x1234, 4 * PAGE_SIZE)?;
/// let r = map.normalize()?.usable()[0];
/// assert_eq!((r.start, r.size()), (0x2000, 3 * PAGE_SIZE));
/// # Ok::<(), kmem::mm::memmap::MapError>(())
/// ```
pub const PAGE_SIZE: u64 = 4096;

/// How many entries a map holds; firmware maps are far smaller.
///
/// # Examples
/// ```
/// use kmem::mm::memmap::{MAX_REGIONS, MapError, MemoryMap, RegionKind};
/// let mut map = MemoryMap::new();
/// for i in 0..MAX_REGIONS as u64 {
///     map.add(RegionKind::Reserved, i * 0x2000, 0x1000)?;
/// }
/// assert_eq!(map.add(RegionKind::Reserved, 1 << 40, 0x1000), Err(MapError::TooManyRegions));
/// # Ok::<(), MapError>(())
/// ```
pub const MAX_REGIONS: usize = 128;

/// A half-open physical range `[start, end)`.
///
/// # Examples
/// ```
/// use kmem::PhysRange;
/// let bank = PhysRange::from_base_size(0x4000_0000, 1 << 30)?;
/// assert_eq!(bank.end, 0x8000_0000);
/// assert_eq!(bank.to_string(), "[0x0040000000-0x0080000000)");
/// # Ok::<(), kmem::mm::memmap::MapError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PhysRange {
    /// First byte of the range.
    pub start: u64,
    /// First byte past the range.
    pub end: u64,
}

impl PhysRange {
    /// The range `[start, start + size)`; errors for zero size or an end past 2^64.
    ///
    /// # Examples
    /// ```
    /// use kmem::PhysRange;
    /// use kmem::mm::memmap::MapError;
    /// assert_eq!(PhysRange::from_base_size(0x1000, 0x2000)?.end, 0x3000);
    /// assert_eq!(PhysRange::from_base_size(0x1000, 0), Err(MapError::Empty { start: 0x1000 }));
    /// assert!(PhysRange::from_base_size(u64::MAX, 2).is_err());
    /// # Ok::<(), MapError>(())
    /// ```
    pub fn from_base_size(start: u64, size: u64) -> Result<PhysRange, MapError> {
        if size == 0 {
            return Err(MapError::Empty { start });
        }
        let end = start
            .checked_add(size)
            .ok_or(MapError::Overflow { start, size })?;
        Ok(PhysRange { start, end })
    }

    /// The range `[start, end)`; errors when `end` is not above `start`.
    ///
    /// # Examples
    /// ```
    /// use kmem::PhysRange;
    /// use kmem::mm::memmap::MapError;
    /// // The kernel image, from the linker's `__kernel_start` and `__kernel_end`.
    /// assert_eq!(PhysRange::from_bounds(0x8_0000, 0x20_0000)?.size(), 0x18_0000);
    /// let err = PhysRange::from_bounds(0x2000, 0x1000);
    /// assert_eq!(err, Err(MapError::Inverted { start: 0x2000, end: 0x1000 }));
    /// # Ok::<(), MapError>(())
    /// ```
    pub fn from_bounds(start: u64, end: u64) -> Result<PhysRange, MapError> {
        match end.cmp(&start) {
            core::cmp::Ordering::Less => Err(MapError::Inverted { start, end }),
            core::cmp::Ordering::Equal => Err(MapError::Empty { start }),
            core::cmp::Ordering::Greater => Ok(PhysRange { start, end }),
        }
    }

    /// Bytes in the range.
    ///
    /// # Examples
    /// ```
    /// use kmem::PhysRange;
    /// let r = PhysRange { start: 0x1000, end: 0x3000 };
    /// assert_eq!(r.size(), 0x2000);
    /// ```
    pub const fn size(&self) -> u64 {
        self.end - self.start
    }

    /// Whether `addr` lies in the range (`start` does, `end` does not).
    ///
    /// # Examples
    /// ```
    /// use kmem::PhysRange;
    /// let r = PhysRange { start: 0x1000, end: 0x3000 };
    /// assert!(r.contains(0x1000) && r.contains(0x2fff));
    /// assert!(!r.contains(0x3000));
    /// ```
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    fn overlaps_or_touches(&self, other: &PhysRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#012x}-{:#012x})", self.start, self.end)
    }
}

/// Whether a range may be handed out.
///
/// # Examples
/// ```
/// use kmem::{MemoryMap, RegionKind};
/// let mut map = MemoryMap::new();
/// map.add(RegionKind::Usable, 0x4000_0000, 0x1000_0000)?; // DTB /memory
/// map.add(RegionKind::Reserved, 0x4000_0000, 0x20_0000)?; // the kernel image
/// assert_eq!(map.normalize()?.usable()[0].start, 0x4020_0000);
/// # Ok::<(), kmem::mm::memmap::MapError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RegionKind {
    /// RAM the allocator may hand out.
    Usable,
    /// Memory nothing may hand out (firmware, the kernel image, the DTB, MMIO); wins over
    /// `Usable` where the two overlap.
    Reserved,
}

/// Why a memory map was refused.
///
/// # Examples
/// ```
/// use kmem::MemoryMap;
/// use kmem::mm::memmap::MapError;
/// let err = MemoryMap::new().normalize().err();
/// assert_eq!(err, Some(MapError::NoUsableMemory));
/// assert_eq!(err.unwrap().to_string(), "memory map: no usable memory");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// A range of size zero.
    Empty {
        /// Where the range starts.
        start: u64,
    },
    /// A range whose end lies below its start.
    Inverted {
        /// The range's start.
        start: u64,
        /// The range's end, below `start`.
        end: u64,
    },
    /// `start + size` does not fit in 64 bits.
    Overflow {
        /// The range's start.
        start: u64,
        /// The size that carries the end past 2^64.
        size: u64,
    },
    /// More than [`MAX_REGIONS`] entries, before or after normalisation.
    TooManyRegions,
    /// Nothing usable is left once reserved ranges and page trimming are applied.
    NoUsableMemory,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Empty { start } => write!(f, "memory map: empty range at {start:#x}"),
            MapError::Inverted { start, end } => {
                write!(
                    f,
                    "memory map: inverted range, end {end:#x} below start {start:#x}"
                )
            }
            MapError::Overflow { start, size } => write!(
                f,
                "memory map: range at {start:#x} of size {size:#x} overflows the address space"
            ),
            MapError::TooManyRegions => {
                write!(f, "memory map: more than {MAX_REGIONS} ranges")
            }
            MapError::NoUsableMemory => write!(f, "memory map: no usable memory"),
        }
    }
}

/// A fixed-capacity, sorted list of disjoint ranges.
#[derive(Clone, Copy)]
pub(crate) struct RangeList {
    ranges: [PhysRange; MAX_REGIONS],
    len: usize,
}

impl RangeList {
    /// An empty list.
    pub(crate) const fn new() -> RangeList {
        RangeList {
            ranges: [PhysRange { start: 0, end: 0 }; MAX_REGIONS],
            len: 0,
        }
    }

    /// The ranges, sorted by start.
    pub(crate) fn as_slice(&self) -> &[PhysRange] {
        &self.ranges[..self.len]
    }

    /// Whether the list holds no range.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total bytes covered.
    pub(crate) fn total(&self) -> u64 {
        self.as_slice().iter().map(PhysRange::size).sum()
    }

    fn push(&mut self, r: PhysRange) -> Result<(), MapError> {
        let slot = self
            .ranges
            .get_mut(self.len)
            .ok_or(MapError::TooManyRegions)?;
        *slot = r;
        self.len += 1;
        Ok(())
    }

    /// Sorts by start and merges overlapping or touching ranges.
    fn sort_and_merge(&mut self) {
        let v = &mut self.ranges[..self.len];
        v.sort_unstable_by_key(|r| r.start);
        let mut out = 0;
        for i in 0..v.len() {
            let r = v[i];
            if out > 0 && v[out - 1].overlaps_or_touches(&r) {
                v[out - 1].end = v[out - 1].end.max(r.end);
            } else {
                v[out] = r;
                out += 1;
            }
        }
        self.len = out;
    }
}

impl Default for RangeList {
    fn default() -> Self {
        RangeList::new()
    }
}

/// Raw memory map under construction, as the firmware reports it.
///
/// # Examples
/// A PC's e820 table, unsorted, as the BIOS gives it:
/// ```
/// use kmem::{MemoryMap, RegionKind::*};
/// let mut e820 = MemoryMap::new();
/// e820.add(Usable, 0x10_0000, 0x7FF0_0000)?;
/// e820.add(Usable, 0, 0x9_FC00)?;
/// e820.add(Reserved, 0xF_0000, 0x1_0000)?; // BIOS ROM
/// e820.add(Reserved, 0x9_FC00, 0x400)?; // EBDA
/// let map = e820.normalize()?;
/// assert_eq!(map.usable().len(), 2);
/// assert_eq!(map.usable()[0].end, 0x9_F000); // trimmed to a page
/// # Ok::<(), kmem::mm::memmap::MapError>(())
/// ```
#[derive(Clone, Copy, Default)]
pub struct MemoryMap {
    usable: RangeList,
    reserved: RangeList,
}

impl MemoryMap {
    /// An empty map. Allocates nothing, so it can be built before any allocator exists.
    ///
    /// # Examples
    /// ```
    /// use kmem::{MemoryMap, RegionKind};
    /// let mut map = MemoryMap::new(); // on the boot stack
    /// assert!(map.normalize().is_err(), "nothing usable yet");
    /// map.add(RegionKind::Usable, 0x8000_0000, 0x4000_0000)?;
    /// assert!(map.normalize().is_ok());
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub const fn new() -> MemoryMap {
        MemoryMap {
            usable: RangeList::new(),
            reserved: RangeList::new(),
        }
    }

    /// Adds `[start, start + size)` as `kind`.
    ///
    /// # Examples
    /// ```
    /// use kmem::MemoryMap;
    /// use kmem::mm::memmap::{MapError, RegionKind};
    /// let mut map = MemoryMap::new();
    /// map.add(RegionKind::Usable, 0, 0x800_0000)?; // a 128 MiB bank at 0
    /// let bad = map.add(RegionKind::Usable, 0x1000, 0);
    /// assert_eq!(bad, Err(MapError::Empty { start: 0x1000 })); // refused, map unchanged
    /// assert_eq!(map.normalize()?.usable_bytes(), 0x800_0000);
    /// # Ok::<(), MapError>(())
    /// ```
    pub fn add(&mut self, kind: RegionKind, start: u64, size: u64) -> Result<(), MapError> {
        self.add_range(kind, PhysRange::from_base_size(start, size)?)
    }

    /// Adds an already validated range as `kind`.
    ///
    /// # Examples
    /// ```
    /// use kmem::{MemoryMap, PhysRange, RegionKind};
    /// let mut map = MemoryMap::new();
    /// let ram = PhysRange::from_bounds(0x4000_0000, 0x8000_0000)?;
    /// let dtb = PhysRange::from_base_size(0x4400_0000, 0x1_0000)?;
    /// map.add_range(RegionKind::Usable, ram)?;
    /// map.add_range(RegionKind::Reserved, dtb)?;
    /// assert_eq!(map.normalize()?.usable_bytes(), ram.size() - dtb.size());
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub fn add_range(&mut self, kind: RegionKind, r: PhysRange) -> Result<(), MapError> {
        match kind {
            RegionKind::Usable => self.usable.push(r),
            RegionKind::Reserved => self.reserved.push(r),
        }
    }

    /// Sorted, merged usable ranges with every reserved range cut out, trimmed inward to
    /// page boundaries.
    ///
    /// # Examples
    /// ```
    /// use kmem::{MemoryMap, RegionKind};
    /// let mut map = MemoryMap::new();
    /// map.add(RegionKind::Usable, 0x4000_0000, 0x4000_0000)?;
    /// map.add(RegionKind::Reserved, 0x4008_0000, 0x2_0000)?;
    /// let map = map.normalize()?;
    /// let pieces: Vec<_> = map.usable().iter().map(|r| (r.start, r.end)).collect();
    /// assert_eq!(pieces, [(0x4000_0000, 0x4008_0000), (0x400A_0000, 0x8000_0000)]);
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub fn normalize(&self) -> Result<NormalizedMap, MapError> {
        let mut usable = self.usable;
        usable.sort_and_merge();
        let mut reserved = self.reserved;
        reserved.sort_and_merge();

        let mut out = RangeList::new();
        let res = reserved.as_slice();
        let mut first_res = 0;
        for u in usable.as_slice() {
            let mut cur = u.start;
            // Reserved ranges are sorted and disjoint: skip those wholly below this range.
            while first_res < res.len() && res[first_res].end <= u.start {
                first_res += 1;
            }
            for r in &res[first_res..] {
                if r.start >= u.end {
                    break;
                }
                if r.start > cur {
                    push_trimmed(&mut out, cur, r.start)?;
                }
                cur = cur.max(r.end);
            }
            if cur < u.end {
                push_trimmed(&mut out, cur, u.end)?;
            }
        }
        if out.is_empty() {
            return Err(MapError::NoUsableMemory);
        }
        Ok(NormalizedMap {
            usable: out,
            reserved,
        })
    }
}

fn push_trimmed(out: &mut RangeList, start: u64, end: u64) -> Result<(), MapError> {
    // `end` ≤ 2^64 - 1, so rounding `start` up cannot overflow past it meaningfully:
    // checked_add guards the one case where start is within a page of the top.
    let Some(s) = start
        .checked_add(PAGE_SIZE - 1)
        .map(|s| s & !(PAGE_SIZE - 1))
    else {
        return Ok(());
    };
    let e = end & !(PAGE_SIZE - 1);
    if s < e {
        out.push(PhysRange { start: s, end: e })?;
    }
    Ok(())
}

/// The normal form: sorted, disjoint, page-aligned usable ranges that exclude every
/// reserved range, plus the merged reserved ranges for reporting.
///
/// # Examples
/// ```
/// use kmem::{MemoryMap, RegionKind};
/// let mut map = MemoryMap::new();
/// map.add(RegionKind::Usable, 0, 0x100_0000)?;
/// map.add(RegionKind::Reserved, 0, 0x10_0000)?;
/// let map = map.normalize()?;
/// print!("{map}"); // one line per range, as the boot log shows it
/// assert!(map.to_string().contains("reserved"));
/// # Ok::<(), kmem::mm::memmap::MapError>(())
/// ```
#[derive(Clone, Copy)]
pub struct NormalizedMap {
    usable: RangeList,
    reserved: RangeList,
}

impl NormalizedMap {
    /// The usable ranges: sorted, disjoint, page-aligned.
    ///
    /// # Examples
    /// ```
    /// use kmem::{MemoryMap, RegionKind};
    /// let mut map = MemoryMap::new();
    /// map.add(RegionKind::Usable, 0x8000_0000, 0x1000_0000)?; // the second bank first
    /// map.add(RegionKind::Usable, 0x4000_0000, 0x1000_0000)?;
    /// let map = map.normalize()?;
    /// assert!(map.usable().windows(2).all(|w| w[0].end < w[1].start));
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub fn usable(&self) -> &[PhysRange] {
        self.usable.as_slice()
    }

    /// The reserved ranges, sorted and merged, as the firmware gave them (not trimmed).
    ///
    /// # Examples
    /// ```
    /// use kmem::{MemoryMap, RegionKind};
    /// let mut map = MemoryMap::new();
    /// map.add(RegionKind::Usable, 0, 0x100_0000)?;
    /// map.add(RegionKind::Reserved, 0x1000, 0x1000)?;
    /// map.add(RegionKind::Reserved, 0x1800, 0x2000)?; // overlaps the first
    /// let map = map.normalize()?;
    /// assert_eq!(map.reserved().len(), 1);
    /// assert_eq!((map.reserved()[0].start, map.reserved()[0].end), (0x1000, 0x3800));
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub fn reserved(&self) -> &[PhysRange] {
        self.reserved.as_slice()
    }

    /// Bytes of usable memory.
    ///
    /// # Examples
    /// ```
    /// use kmem::{MemoryMap, RegionKind};
    /// let mut map = MemoryMap::new();
    /// map.add(RegionKind::Usable, 0x4000_0000, 1 << 30)?;
    /// map.add(RegionKind::Usable, 0x1_0000_0000, 1 << 30)?;
    /// assert_eq!(map.normalize()?.usable_bytes(), 2 << 30);
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub fn usable_bytes(&self) -> u64 {
        self.usable.total()
    }
}

impl fmt::Display for NormalizedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in self.usable() {
            writeln!(f, "  usable   {r} {:>8} KiB", r.size() / 1024)?;
        }
        for r in self.reserved() {
            writeln!(f, "  reserved {r} {:>8} KiB", r.size() / 1024)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegionKind::*;

    fn ranges(map: &NormalizedMap) -> Vec<(u64, u64)> {
        map.usable().iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn unsorted_and_overlapping_usable_ranges_merge() {
        let mut m = MemoryMap::new();
        m.add(Usable, 0x10_0000, 0x10_0000).unwrap();
        m.add(Usable, 0x0, 0x8_0000).unwrap();
        m.add(Usable, 0x18_0000, 0x10_0000).unwrap();
        m.add(Usable, 0x8_0000, 0x1000).unwrap(); // touches the first
        let n = m.normalize().unwrap();
        assert_eq!(ranges(&n), vec![(0, 0x8_1000), (0x10_0000, 0x28_0000)]);
    }

    #[test]
    fn reserved_inside_usable_splits_it() {
        let mut m = MemoryMap::new();
        m.add(Usable, 0x4000_0000, 0x4000_0000).unwrap();
        m.add(Reserved, 0x4008_0000, 0x2_0000).unwrap();
        let n = m.normalize().unwrap();
        assert_eq!(
            ranges(&n),
            vec![(0x4000_0000, 0x4008_0000), (0x400A_0000, 0x8000_0000)]
        );
        assert_eq!(n.reserved().len(), 1);
    }

    #[test]
    fn reserved_wins_over_usable_at_the_edges_and_across_banks() {
        let mut m = MemoryMap::new();
        m.add(Usable, 0x1000, 0x9000).unwrap(); // [0x1000, 0xA000)
        m.add(Usable, 0x2_0000, 0x1_0000).unwrap(); // [0x20000, 0x30000)
        m.add(Reserved, 0x0, 0x2000).unwrap(); // eats the start
        m.add(Reserved, 0x9000, 0x1_8000).unwrap(); // spans the hole between banks
        let n = m.normalize().unwrap();
        assert_eq!(ranges(&n), vec![(0x2000, 0x9000), (0x2_1000, 0x3_0000)]);
    }

    #[test]
    fn unaligned_ranges_are_trimmed_inward() {
        let mut m = MemoryMap::new();
        m.add(Usable, 0x1234, 0x5000).unwrap(); // [0x1234, 0x6234) → [0x2000, 0x6000)
        m.add(Usable, 0x10_0001, 0xFFE).unwrap(); // less than a page after trimming
        let n = m.normalize().unwrap();
        assert_eq!(ranges(&n), vec![(0x2000, 0x6000)]);
    }

    #[test]
    fn unaligned_reserved_range_rounds_outward() {
        let mut m = MemoryMap::new();
        m.add(Usable, 0, 0x10_000).unwrap();
        m.add(Reserved, 0x3001, 0x10).unwrap();
        let n = m.normalize().unwrap();
        assert_eq!(ranges(&n), vec![(0, 0x3000), (0x4000, 0x10_000)]);
    }

    #[test]
    fn bank_with_a_hole_stays_two_ranges() {
        let mut m = MemoryMap::new();
        m.add(Usable, 0x4000_0000, 0x1000_0000).unwrap();
        m.add(Usable, 0x1_0000_0000, 0x1000_0000).unwrap();
        let n = m.normalize().unwrap();
        assert_eq!(
            ranges(&n),
            vec![(0x4000_0000, 0x5000_0000), (0x1_0000_0000, 0x1_1000_0000)]
        );
        assert_eq!(n.usable_bytes(), 0x2000_0000);
    }

    #[test]
    fn bad_entries_are_errors() {
        let mut m = MemoryMap::new();
        assert_eq!(
            m.add(Usable, 0x1000, 0),
            Err(MapError::Empty { start: 0x1000 })
        );
        assert_eq!(
            m.add(Usable, u64::MAX - 10, 0x100),
            Err(MapError::Overflow {
                start: u64::MAX - 10,
                size: 0x100
            })
        );
        assert_eq!(
            PhysRange::from_bounds(0x2000, 0x1000),
            Err(MapError::Inverted {
                start: 0x2000,
                end: 0x1000
            })
        );
        // The map is still usable after the refused entries.
        m.add(Usable, 0, 0x4000).unwrap();
        assert_eq!(ranges(&m.normalize().unwrap()), vec![(0, 0x4000)]);
    }

    #[test]
    fn range_at_the_top_of_the_address_space() {
        let mut m = MemoryMap::new();
        m.add(Usable, u64::MAX - 0x2FFF, 0x2000).unwrap();
        let n = m.normalize().unwrap();
        assert_eq!(ranges(&n), vec![(u64::MAX - 0x2FFF, u64::MAX - 0xFFF)]);
    }

    #[test]
    fn nothing_usable_is_an_error() {
        let mut m = MemoryMap::new();
        assert_eq!(m.normalize().err(), Some(MapError::NoUsableMemory));
        m.add(Usable, 0, 0x10_000).unwrap();
        m.add(Reserved, 0, 0x20_000).unwrap();
        assert_eq!(m.normalize().err(), Some(MapError::NoUsableMemory));
    }

    #[test]
    fn too_many_regions_is_an_error() {
        let mut m = MemoryMap::new();
        for i in 0..MAX_REGIONS as u64 {
            m.add(Usable, i * 0x2000, 0x1000).unwrap();
        }
        assert_eq!(
            m.add(Usable, 0x1000_0000, 0x1000),
            Err(MapError::TooManyRegions)
        );
        assert_eq!(m.normalize().unwrap().usable().len(), MAX_REGIONS);
    }
}
