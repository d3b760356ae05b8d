//! The per-CPU areas and the boot stacks, one of each per logical core, for every ISA.
//!
//! Each ISA's entry code (its `boot.s`) starts core `i` on the top of its stack in
//! [`STACKS`] and points its per-CPU register — `TPIDR_EL1` on aarch64, the GS base on
//! x86_64 — at `CPU_AREAS[i]` before any Rust runs; its `Arch::cpu_id` reads the id back
//! through that register. That register is all that differs between ISAs: the layout,
//! sizes and storage here are shared, and the entry code takes them as `global_asm!`
//! operands.
//!
//! Each stack has a guard page below it, which every ISA's MMU leaves unmapped
//! ([`guard_pages`]): a core that runs its stack out faults there instead of writing over
//! what lies below. The fault cannot be reported on the stack that overflowed, so each
//! core also has an exception stack ([`EXCEPTION_STACKS`]) that the ISA's exception entry
//! switches to, and the report names the overflow ([`guard_owner`]).

use core::cell::UnsafeCell;
use core::mem::{offset_of, size_of};
use core::sync::atomic::AtomicU32;

use super::cpu::MAX_CPUS;
use kmem::mm::memmap::PhysRange;

/// Bytes of stack per core.
const STACK_SIZE: usize = 64 << 10;
/// The unmapped page below each stack.
pub(super) const GUARD_SIZE: usize = 4 << 10;
/// Bytes between two cores' stack tops: a guard page, then the stack.
pub(super) const SLOT_SIZE: usize = GUARD_SIZE + STACK_SIZE;
/// Bytes of each core's exception stack: enough to format and print a report.
pub(super) const EXCEPTION_STACK_SIZE: usize = 16 << 10;

/// What one core keeps about itself, on a cache line of its own.
#[repr(C, align(64))]
pub(super) struct CpuArea {
    /// Logical id, dense from 0; the boot core is 0.
    pub(super) id: usize,
    /// Nesting depth of exceptions on this core, counted by the ISA's vector code (at
    /// [`DEPTH_OFFSET`]) so that a fault while reporting a fault ends the machine.
    exception_depth: AtomicU32,
}

/// Byte offset of the exception nesting depth in a [`CpuArea`], for the vector code.
pub(super) const DEPTH_OFFSET: usize = offset_of!(CpuArea, exception_depth);

/// Byte offset of the logical id in a [`CpuArea`], for the vector code (aarch64's, which
/// finds the core's exception stack by it).
#[cfg_attr(target_arch = "x86_64", expect(dead_code))]
pub(super) const ID_OFFSET: usize = offset_of!(CpuArea, id);

/// Bytes between two cores' areas, for the entry code's indexing.
pub(super) const AREA_SIZE: usize = size_of::<CpuArea>();

/// One area per possible core, indexed by logical id.
pub(super) static CPU_AREAS: [CpuArea; MAX_CPUS] = {
    let mut areas = [const {
        CpuArea {
            id: 0,
            exception_depth: AtomicU32::new(0),
        }
    }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        areas[i].id = i;
        i += 1;
    }
    areas
};

/// The stacks, one slot of [`SLOT_SIZE`] per logical core: the guard page at the bottom
/// of the slot, the stack above it. Core `i` starts at the top of slot `i`, so a stack
/// that overflows runs into its own guard page, never into another core's stack.
#[repr(C, align(4096))]
pub(super) struct Stacks(UnsafeCell<[[u8; SLOT_SIZE]; MAX_CPUS]>);

// SAFETY: Rust never touches the stacks as data: each core's stack pointer owns its slice.
unsafe impl Sync for Stacks {}

pub(super) static STACKS: Stacks = Stacks(UnsafeCell::new([[0; SLOT_SIZE]; MAX_CPUS]));

/// The exception stacks, one per logical core: the ISA's exception entry moves a core
/// here before it reports (the stack it was on may be the one that overflowed). Only
/// exceptions that end the machine use them, so they never nest.
#[repr(C, align(16))]
pub(super) struct ExceptionStacks(UnsafeCell<[[u8; EXCEPTION_STACK_SIZE]; MAX_CPUS]>);

// SAFETY: as for `Stacks`: only the stack pointer of the core that owns one uses it.
unsafe impl Sync for ExceptionStacks {}

pub(super) static EXCEPTION_STACKS: ExceptionStacks =
    ExceptionStacks(UnsafeCell::new([[0; EXCEPTION_STACK_SIZE]; MAX_CPUS]));

/// The top of core `cpu`'s exception stack (the x86_64 TSS takes it; aarch64's vector
/// code computes it).
#[cfg_attr(target_arch = "aarch64", expect(dead_code))]
pub(super) fn exception_stack_top(cpu: usize) -> u64 {
    EXCEPTION_STACKS.0.get() as u64 + ((cpu + 1) * EXCEPTION_STACK_SIZE) as u64
}

/// Core `cpu`'s guard page: the bottom page of its slot in [`STACKS`].
fn guard_page(cpu: usize) -> PhysRange {
    let start = STACKS.0.get() as u64 + (cpu * SLOT_SIZE) as u64;
    PhysRange {
        start,
        end: start + GUARD_SIZE as u64,
    }
}

/// Every core's guard page, for the MMU to leave unmapped (the image is identity-mapped,
/// so these are physical addresses too).
pub(super) fn guard_pages() -> impl Iterator<Item = PhysRange> {
    (0..MAX_CPUS).map(guard_page)
}

/// The core whose guard page holds `addr`, if one does: a fault there is that core's
/// stack overflow.
pub(super) fn guard_owner(addr: u64) -> Option<usize> {
    (0..MAX_CPUS).find(|&cpu| guard_page(cpu).contains(addr))
}
