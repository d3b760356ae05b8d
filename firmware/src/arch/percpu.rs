//! The per-CPU areas and the stacks, one of each per logical core, for every ISA.
//!
//! Each ISA's entry code (its `boot.s`) points its per-CPU register — `TPIDR_EL1` on
//! aarch64, the GS base on x86_64, `tp` on riscv64 — at `CPU_AREAS[i]` before any Rust
//! runs, and starts core `i` on the stack top that area names; its `Arch::cpu_id` reads
//! the id back through that register. That register is all that differs between ISAs:
//! the layout, sizes and storage here are shared, and the entry code takes them as
//! `global_asm!` operands.
//!
//! Each core has a slot: a guard page, its stack above it, its exception stack above
//! that. The boot core's slot is a static ([`BOOT_SLOT`]), as it runs before anything
//! about the machine is known; the other cores' slots are carved from RAM at boot, sized
//! for the CPUs the boot information lists ([`place_secondary_slots`]: one run per NUMA
//! node, from the node's own memory, when `smp::place_slots` finds room), so that the
//! image does not grow with [`MAX_CPUS`]. Every ISA's MMU leaves the guard pages unmapped
//! ([`guard_pages`]): a core that runs its stack out faults there instead of writing over
//! what lies below. The fault cannot be reported on the stack that overflowed, so the
//! ISA's exception entry switches to the core's exception stack, and the report names
//! the overflow ([`guard_owner`]).

use core::cell::UnsafeCell;
use core::mem::{offset_of, size_of};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::cpu::MAX_CPUS;
use kmem::mm::memmap::PhysRange;
use kmem::mm::numa::MAX_NODES;

/// Bytes of stack per core. The boot core reads the boot information on its stack with
/// the MMU off, before any guard page works, and that takes about 55 KiB (memory maps
/// and the boot information are kilobytes each, copied from frame to frame):
/// [`boot_stack_used`] measures it, and a self-test keeps it under three quarters of this.
pub const STACK_SIZE: usize = 128 << 10;
/// The unmapped page below each stack.
pub(super) const GUARD_SIZE: usize = 4 << 10;
/// Bytes of each core's exception stack: enough to format and print a report.
const EXCEPTION_STACK_SIZE: usize = 16 << 10;
/// Bytes of one core's slot: a guard page, the stack, the exception stack.
pub const SLOT_SIZE: usize = GUARD_SIZE + STACK_SIZE + EXCEPTION_STACK_SIZE;

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
    /// The top of this core's stack, which its entry code starts on (at
    /// [`STACK_TOP_OFFSET`]); null while it has no slot: the entry code then parks it.
    stack_top: AtomicPtr<u8>,
    /// The top of its exception stack, which the ISA's exception entry switches to (at
    /// [`EXCEPTION_TOP_OFFSET`]).
    exception_top: AtomicPtr<u8>,
}

/// Byte offset of the exception nesting depth in a [`CpuArea`], for the vector code.
pub(super) const DEPTH_OFFSET: usize = offset_of!(CpuArea, exception_depth);

/// Byte offsets of the stack tops in a [`CpuArea`], for the entry and vector code.
pub(super) const STACK_TOP_OFFSET: usize = offset_of!(CpuArea, stack_top);
#[cfg_attr(target_arch = "x86_64", expect(dead_code))]
pub(super) const EXCEPTION_TOP_OFFSET: usize = offset_of!(CpuArea, exception_top);

/// Byte offset of the trap scratch words in a [`CpuArea`], for riscv64's trap entry.
#[cfg_attr(not(target_arch = "riscv64"), expect(dead_code))]
pub(super) const SCRATCH_OFFSET: usize = offset_of!(CpuArea, trap_scratch);

/// Bytes between two cores' areas, for the entry code's indexing.
pub(super) const AREA_SIZE: usize = size_of::<CpuArea>();

/// One core's slot: the guard page at the bottom, the stack, the exception stack on top.
#[repr(C, align(4096))]
pub(super) struct Slot(UnsafeCell<[u8; SLOT_SIZE]>);

// SAFETY: Rust never touches a slot as data (but `paint_boot_stack` and
// `boot_stack_used`, on the boot core's own, below its running frame): each core's stack
// pointer owns its stacks.
unsafe impl Sync for Slot {}

/// The boot core's slot, in the image: it runs on it before the boot information is read.
pub(super) static BOOT_SLOT: Slot = Slot(UnsafeCell::new([0; SLOT_SIZE]));

/// One area per possible core, indexed by logical id; the boot core's names its slot in
/// [`BOOT_SLOT`] from the start.
pub(super) static CPU_AREAS: [CpuArea; MAX_CPUS] = {
    let mut areas = [const {
        CpuArea {
            id: 0,
            exception_depth: AtomicU32::new(0),
            trap_scratch: [const { AtomicU64::new(0) }; 2],
            stack_top: AtomicPtr::new(null_mut()),
            exception_top: AtomicPtr::new(null_mut()),
        }
    }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        areas[i].id = i;
        i += 1;
    }
    let slot = BOOT_SLOT.0.get().cast::<u8>();
    areas[0].stack_top = AtomicPtr::new(slot.wrapping_add(GUARD_SIZE + STACK_SIZE));
    areas[0].exception_top = AtomicPtr::new(slot.wrapping_add(SLOT_SIZE));
    areas
};

/// Bytes of RAM the slots of `cpus` cores take beyond the boot core's.
pub fn secondary_slots_size(cpus: usize) -> u64 {
    (cpus.clamp(1, MAX_CPUS) as u64 - 1) * SLOT_SIZE as u64
}

/// Gives the secondary cores `cpus` (logical ids, none 0) their slots, one after another
/// from `base`, which must start [`SLOT_SIZE`] bytes of RAM for each.
///
/// # Safety
/// Boot core, before the identity map is built (it leaves out the guard pages placed
/// here) and before any other core starts. Those bytes are RAM that nothing else uses,
/// ever: the stacks live as long as the machine.
pub unsafe fn place_secondary_slots(base: u64, cpus: impl IntoIterator<Item = usize>) {
    let areas = cpus
        .into_iter()
        .filter_map(|c| CPU_AREAS[1..].get(c.wrapping_sub(1)));
    for (n, area) in areas.enumerate() {
        let slot = (base + (n * SLOT_SIZE) as u64) as *mut u8;
        // Plain stores (the MMU may be off); each core reads its own only once started.
        area.stack_top
            .store(slot.wrapping_add(GUARD_SIZE + STACK_SIZE), Relaxed);
        area.exception_top
            .store(slot.wrapping_add(SLOT_SIZE), Relaxed);
    }
}

/// The top of core `cpu`'s exception stack (the x86_64 TSS takes it; the vector code of
/// aarch64 and riscv64 reads it from the area).
#[cfg_attr(not(target_arch = "x86_64"), expect(dead_code))]
pub(super) fn exception_stack_top(cpu: usize) -> u64 {
    CPU_AREAS[cpu].exception_top.load(Relaxed) as u64
}

/// Core `cpu`'s guard page, the bottom page of its slot; `None` when it has no slot.
fn guard_page(cpu: usize) -> Option<PhysRange> {
    let top = CPU_AREAS.get(cpu)?.stack_top.load(Relaxed) as u64;
    let start = top.checked_sub((STACK_SIZE + GUARD_SIZE) as u64)?;
    Some(PhysRange {
        start,
        end: start + GUARD_SIZE as u64,
    })
}

/// Every core's guard page, for the MMU to leave unmapped (slots are identity-mapped,
/// so these are physical addresses too). Slots are given to cores `0..n` together,
/// wherever each one's lies.
pub(super) fn guard_pages() -> impl Iterator<Item = PhysRange> {
    (0..MAX_CPUS).map_while(guard_page)
}

/// How many distinct `block`-aligned blocks the guard pages may lie across at most: the
/// boot core's slot and the others', in one run of slots per NUMA node, each of which may
/// start anywhere in a block. An MMU builder has this many tables of 4 KiB pages for them.
pub(super) const fn guard_blocks_max(block: usize) -> usize {
    1 + (SLOT_SIZE * (MAX_CPUS - 1)).div_ceil(block) + MAX_NODES
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
    guard_owner(page).is_some()
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
    let bottom = BOOT_SLOT.0.get() as usize;
    let len = here.saturating_sub(PAINT_MARGIN).saturating_sub(bottom);
    // SAFETY: `[bottom, bottom + len)` is core 0's slot below the running frame (with the
    // margin for this frame and `write_bytes`): no live data, nothing else uses it.
    unsafe { core::ptr::write_bytes(bottom as *mut u8, PAINT, len.min(GUARD_SIZE + STACK_SIZE)) };
}

/// How many bytes of the boot core's stack were used since [`paint_boot_stack`], from the
/// top down to the deepest byte no longer painted; `None` when the guard page below was
/// written too: the stack overflowed.
///
/// # Safety
/// [`paint_boot_stack`] has run, and the guard page is not unmapped yet.
pub unsafe fn boot_stack_used() -> Option<usize> {
    let bottom = BOOT_SLOT.0.get() as *const u8;
    // SAFETY: the guard page and the stack are the bottom of core 0's slot, a static, all
    // mapped (the caller's contract); reading bytes the stack holds is fine, as they are
    // plain integers.
    let slot = unsafe { core::slice::from_raw_parts(bottom, GUARD_SIZE + STACK_SIZE) };
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
    (0..MAX_CPUS)
        .map_while(guard_page)
        .position(|g| g.contains(addr))
}
