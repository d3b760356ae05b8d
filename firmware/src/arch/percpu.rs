//! The per-CPU areas and the boot stacks, one of each per logical core, for every ISA.
//!
//! Each ISA's entry code (its `boot.s`) starts core `i` on the top of its stack in
//! [`STACKS`] and points its per-CPU register — `TPIDR_EL1` on aarch64, the GS base on
//! x86_64, `tp` on riscv64 — at `CPU_AREAS[i]` before any Rust runs; its `Arch::cpu_id` reads the id back
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
use core::sync::atomic::{AtomicU32, AtomicU64};

use super::cpu::MAX_CPUS;
use kmem::mm::memmap::PhysRange;

/// Bytes of stack per core. The boot core reads the boot information on its stack with
/// the MMU off, before any guard page works, and that takes about 55 KiB (memory maps
/// and the boot information are kilobytes each, copied from frame to frame):
/// [`boot_stack_used`] measures it, and a self-test keeps it under three quarters of this.
pub const STACK_SIZE: usize = 128 << 10;
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
    /// Two words riscv64's trap entry keeps registers in while it has no stack to put
    /// them on (at [`SCRATCH_OFFSET`]).
    trap_scratch: [AtomicU64; 2],
}

/// Byte offset of the exception nesting depth in a [`CpuArea`], for the vector code.
pub(super) const DEPTH_OFFSET: usize = offset_of!(CpuArea, exception_depth);

/// Byte offset of the logical id in a [`CpuArea`], for the vector code (aarch64's and
/// riscv64's, which find the core's exception stack by it).
#[cfg_attr(target_arch = "x86_64", expect(dead_code))]
pub(super) const ID_OFFSET: usize = offset_of!(CpuArea, id);

/// Byte offset of the trap scratch words in a [`CpuArea`], for riscv64's trap entry.
#[cfg_attr(not(target_arch = "riscv64"), expect(dead_code))]
pub(super) const SCRATCH_OFFSET: usize = offset_of!(CpuArea, trap_scratch);

/// Bytes between two cores' areas, for the entry code's indexing.
pub(super) const AREA_SIZE: usize = size_of::<CpuArea>();

/// One area per possible core, indexed by logical id.
pub(super) static CPU_AREAS: [CpuArea; MAX_CPUS] = {
    let mut areas = [const {
        CpuArea {
            id: 0,
            exception_depth: AtomicU32::new(0),
            trap_scratch: [const { AtomicU64::new(0) }; 2],
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
/// here before it reports (the stack it was on may be the one that overflowed) or asks
/// the fault detectors about a recoverable fault. The entry's nesting count ends the
/// machine on a nested exception, so one core's uses never overlap.
#[repr(C, align(16))]
pub(super) struct ExceptionStacks(UnsafeCell<[[u8; EXCEPTION_STACK_SIZE]; MAX_CPUS]>);

// SAFETY: as for `Stacks`: only the stack pointer of the core that owns one uses it.
unsafe impl Sync for ExceptionStacks {}

pub(super) static EXCEPTION_STACKS: ExceptionStacks =
    ExceptionStacks(UnsafeCell::new([[0; EXCEPTION_STACK_SIZE]; MAX_CPUS]));

/// The top of core `cpu`'s exception stack (the x86_64 TSS takes it; the vector code of
/// aarch64 and riscv64 computes it).
#[cfg_attr(not(target_arch = "x86_64"), expect(dead_code))]
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

/// The distinct `block`-aligned blocks (the MMU's large mapping) that hold guard pages,
/// in the order found, for an MMU builder with `N` tables of 4 KiB pages to split them
/// into: it maps each such block page by page, leaving out the pages [`is_guard`] names.
pub(super) fn guard_blocks<const N: usize>(block: u64) -> [Option<u64>; N] {
    let mut blocks = [None; N];
    for guard in guard_pages() {
        let b = Some(guard.start & !(block - 1));
        if !blocks.contains(&b) {
            *blocks
                .iter_mut()
                .find(|s| s.is_none())
                .expect("the guard pages lie across more blocks than there are page tables") = b;
        }
    }
    blocks
}

/// Whether the 4 KiB page at `page` is a core's guard page.
pub(super) fn is_guard(page: u64) -> bool {
    guard_pages().any(|g| g.start <= page && page < g.end)
}

/// What [`paint_boot_stack`] fills the boot core's stack with.
const PAINT: u8 = 0xa5;
/// Bytes left unpainted below the painting frame (its own frame and what it calls).
const PAINT_MARGIN: usize = 1024;

/// Fills the boot core's guard page and its stack, up to just below the running frame,
/// with a pattern, so that [`boot_stack_used`] can tell how deep the stack went: for the
/// part of the boot that runs with the MMU off (aarch64), before any guard page works.
///
/// # Safety
/// Boot core (logical 0), on its own stack, before its guard page is unmapped.
#[inline(never)]
pub unsafe fn paint_boot_stack() {
    let marker = 0u8;
    let here = core::hint::black_box(&raw const marker) as usize;
    let bottom = STACKS.0.get() as usize;
    let len = here.saturating_sub(PAINT_MARGIN).saturating_sub(bottom);
    // SAFETY: `[bottom, bottom + len)` is core 0's slot below the running frame (with the
    // margin for this frame and `write_bytes`): no live data, nothing else uses it.
    unsafe { core::ptr::write_bytes(bottom as *mut u8, PAINT, len.min(SLOT_SIZE)) };
}

/// How many bytes of the boot core's stack were used since [`paint_boot_stack`], from the
/// top down to the deepest byte no longer painted; `None` when the guard page below was
/// written too: the stack overflowed.
///
/// # Safety
/// [`paint_boot_stack`] has run, and the guard page is not unmapped yet.
pub unsafe fn boot_stack_used() -> Option<usize> {
    let bottom = STACKS.0.get() as *const u8;
    // SAFETY: core 0's slot is SLOT_SIZE bytes of the static, all mapped (the caller's
    // contract); reading bytes the stack holds is fine, as they are plain integers.
    let slot = unsafe { core::slice::from_raw_parts(bottom, SLOT_SIZE) };
    let (guard, stack) = slot.split_at(GUARD_SIZE);
    if guard.iter().any(|&b| b != PAINT) {
        return None;
    }
    let untouched = stack.iter().take_while(|&&b| b == PAINT).count();
    Some(STACK_SIZE - untouched)
}

/// The core whose guard page holds `addr`, if one does: a fault there is that core's
/// stack overflow.
pub(super) fn guard_owner(addr: u64) -> Option<usize> {
    (0..MAX_CPUS).find(|&cpu| guard_page(cpu).contains(addr))
}
