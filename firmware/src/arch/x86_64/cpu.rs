//! The per-CPU area and the boot stacks.
//!
//! Each core's GS base points at its [`CpuArea`] from its first 64-bit instruction (boot.s
//! writes `IA32_GS_BASE`), so [`id`] is one `gs`-relative load, valid everywhere Rust runs
//! — including exception handlers and panics.

use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU32;

/// Most cores the firmware brings up; cores past this are not started.
pub const MAX_CPUS: usize = 8;

/// Bytes of stack per core. No guard page: the MMU maps 2 MiB pages.
pub const STACK_SIZE: usize = 64 << 10;

/// What one core keeps about itself.
#[repr(C, align(64))]
pub struct CpuArea {
    /// Logical id, dense from 0; the boot core is 0. [`id`] relies on it being first.
    id: usize,
    /// Nesting depth of exceptions on this core, counted by vectors.s.
    pub(super) exception_depth: AtomicU32,
}

/// Byte offset of `exception_depth` in a [`CpuArea`], for the vector code.
pub(super) const DEPTH_OFFSET: usize = core::mem::offset_of!(CpuArea, exception_depth);

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

/// The stacks, one per logical core; core `i` starts at the top of `stacks[i]`.
#[repr(C, align(16))]
pub(super) struct Stacks(UnsafeCell<[[u8; STACK_SIZE]; MAX_CPUS]>);

// SAFETY: Rust never touches the stacks as data: each core's `rsp` owns its slice.
unsafe impl Sync for Stacks {}

pub(super) static STACKS: Stacks = Stacks(UnsafeCell::new([[0; STACK_SIZE]; MAX_CPUS]));

/// Logical id of the running core.
#[inline]
pub fn id() -> usize {
    let id: usize;
    // SAFETY: boot.s points GS at this core's CpuArea before any Rust runs and nothing
    // changes it; `id` is the area's first field.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) id, options(nostack, readonly, preserves_flags))
    };
    id
}
