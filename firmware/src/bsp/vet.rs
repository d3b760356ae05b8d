//! Vetting the addresses the boot information gives, before anything is written there.
//!
//! A device tree (or ATAG list, or firmware table) names where devices are — the console
//! UART, the GIC, the Pi's mailbox and GPIO block — and where a parked core waits for its
//! entry address (`cpu-release-addr`). Believed blindly, a hostile or broken one makes
//! kmem write MMIO registers into memory it manages, over its own code, or to addresses
//! nothing maps. Every board passes each such address through here first, against the
//! memory map it has built and the identity map `Isa::mmu_build` will make of it:
//!
//! - a device's registers ([`Layout::device`]) must be 4-byte aligned, overlap neither
//!   kmem's image, the boot information, RAM kmem manages nor a reservation, and lie all
//!   in what the identity map maps as device memory;
//! - a word kmem writes to wake a core ([`Layout::ram_word`]) must be 8-byte aligned,
//!   outside the image and the boot information, and in what it maps as normal memory
//!   (RAM; it is reserved afterwards, so never handed out).
//!
//! What a board does with a [`Refused`] address is its call, and it says which: a console
//! falls back to the board's own UART, a device the board knows the place of falls back
//! to that place, a core whose release word is refused is not started, and a device the
//! board cannot do without (the GIC on `virt`) is a boot error. The refusals are kept in
//! `BootInfo::notes` for the boot report.

use core::fmt;

use crate::arch::Mapping;
use crate::arch::cpu::{Cpu, Isa};
use kmem::mm::memmap::{MapError, MemoryMap, NormalizedMap, PhysRange};

/// Alignment of a device's registers: every driver here reads and writes 32-bit words.
const DEVICE_ALIGN: u64 = 4;
/// Alignment and size of a spin-table release word.
const WORD: u64 = 8;

/// What a board knows about physical memory when it vets an address.
pub struct Layout<'a> {
    /// The memory map as built so far: usable RAM, and every reservation in it (the
    /// image, the boot information and what the boot information reserves).
    pub map: &'a NormalizedMap,
    /// Where kmem's image and the boot information sit.
    pub image: PhysRange,
    pub boot_data: PhysRange,
}

/// Why an address was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refusal {
    /// Not aligned to this many bytes.
    Misaligned(u64),
    /// The range runs past the top of the address space.
    Overflow,
    /// Overlaps kmem's image (code, data, stacks).
    Image(PhysRange),
    /// Overlaps the boot information itself (the device tree).
    BootData(PhysRange),
    /// Overlaps RAM kmem hands out.
    Ram(PhysRange),
    /// Overlaps a reserved range.
    Reserved(PhysRange),
    /// Not all in what the identity map has as device memory.
    NotDevice,
    /// Not in what the identity map has as RAM.
    NotRam,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Misaligned(a) => write!(f, "not {a}-byte aligned"),
            Refusal::Overflow => f.write_str("it runs past the top of the address space"),
            Refusal::Image(r) => write!(f, "inside kmem's own image {r}"),
            Refusal::BootData(r) => write!(f, "inside the boot information {r}"),
            Refusal::Ram(r) => write!(f, "inside RAM kmem manages {r}"),
            Refusal::Reserved(r) => write!(f, "inside reserved memory {r}"),
            Refusal::NotDevice => {
                f.write_str("outside the device memory kmem maps (below 4 GiB and away from RAM)")
            }
            Refusal::NotRam => f.write_str("outside the RAM kmem maps"),
        }
    }
}

/// An address refused, with what it was for and where it came from, as the boot report
/// and boot errors print it.
#[derive(Clone, Copy, Debug)]
pub struct Refused {
    /// What the address is ("console UART", "GIC distributor", "cpu-release-addr of cpu 2").
    pub what: &'static str,
    /// Where it came from: the device-tree node, or what else named it.
    pub source: &'static str,
    pub addr: u64,
    pub why: Refusal,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {:#x} ({}): {}",
            self.what, self.addr, self.source, self.why
        )
    }
}

impl Layout<'_> {
    /// The lists the boot gives `Isa::mmu_build` for this map: its usable RAM, the image
    /// and the boot information.
    fn mapped_as(&self, range: PhysRange) -> Option<Mapping> {
        let extra = [self.image, self.boot_data];
        Cpu::mapping(&[self.map.usable(), &extra], range)
    }

    /// The first of `ranges` that `range` overlaps.
    fn overlap(ranges: &[PhysRange], range: PhysRange) -> Option<PhysRange> {
        ranges
            .iter()
            .copied()
            .find(|r| r.start < range.end && range.start < r.end)
    }

    /// What overlapping the image or the boot information refuses `range` for.
    fn own(&self, range: PhysRange) -> Result<(), Refusal> {
        if let Some(r) = Self::overlap(&[self.image], range) {
            return Err(Refusal::Image(r));
        }
        match Self::overlap(&[self.boot_data], range) {
            Some(r) => Err(Refusal::BootData(r)),
            None => Ok(()),
        }
    }

    /// Vets the device registers at `[base, base + size)`: `size` covers both what the
    /// boot information says the device spans and what its driver touches. Returns the
    /// range.
    pub fn device(&self, base: u64, size: u64) -> Result<PhysRange, Refusal> {
        let range = PhysRange::from_base_size(base, size.max(1)).map_err(|_| Refusal::Overflow)?;
        if !base.is_multiple_of(DEVICE_ALIGN) {
            return Err(Refusal::Misaligned(DEVICE_ALIGN));
        }
        self.own(range)?;
        if let Some(r) = Self::overlap(self.map.usable(), range) {
            return Err(Refusal::Ram(r));
        }
        if let Some(r) = Self::overlap(self.map.reserved(), range) {
            return Err(Refusal::Reserved(r));
        }
        match self.mapped_as(range) {
            Some(Mapping::Device) => Ok(range),
            _ => Err(Refusal::NotDevice),
        }
    }

    /// Vets the 64-bit RAM word at `addr` that kmem writes to release a parked core.
    /// Returns its range, for the map to reserve.
    pub fn ram_word(&self, addr: u64) -> Result<PhysRange, Refusal> {
        let range = PhysRange::from_base_size(addr, WORD).map_err(|_| Refusal::Overflow)?;
        if !addr.is_multiple_of(WORD) {
            return Err(Refusal::Misaligned(WORD));
        }
        self.own(range)?;
        match self.mapped_as(range) {
            Some(Mapping::Normal) => Ok(range),
            _ => Err(Refusal::NotRam),
        }
    }
}

/// Runs `f` on the layout of `map`, normalised here, with `image` and `boot_data`. In a
/// frame of its own: a normalised map is kilobytes, and boards vet on the boot stack with
/// the MMU off, where no guard page would catch an overflow.
#[inline(never)]
pub fn with_layout<T>(
    map: &MemoryMap,
    image: PhysRange,
    boot_data: PhysRange,
    f: impl FnOnce(&Layout<'_>) -> T,
) -> Result<T, MapError> {
    let map = map.normalize()?;
    Ok(f(&Layout {
        map: &map,
        image,
        boot_data,
    }))
}
