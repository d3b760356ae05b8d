//! The per-CPU area and the boot stacks.
//!
//! Each core's `TPIDR_EL1` points at its [`CpuArea`] from the first instruction after the
//! EL drop (boot.s sets it), so [`current`] is one system-register read and one load, and
//! is valid everywhere Rust runs — including exception handlers and panics.

use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU32;

use aarch64_cpu::registers::{Readable, TPIDR_EL1};

/// Most cores the firmware brings up; cores past this stay parked.
pub const MAX_CPUS: usize = 8;

/// Bytes of stack per core. No guard page: the MMU maps 2 MiB blocks.
pub const STACK_SIZE: usize = 64 << 10;

/// What one core keeps about itself.
#[repr(C, align(64))]
pub struct CpuArea {
    /// Logical id, dense from 0; the boot core is 0. Boot.s relies on it being first.
    id: usize,
    /// Nesting depth of exceptions on this core, counted by the vector code (the second
    /// offset boot.s and vectors.s use).
    pub(super) exception_depth: AtomicU32,
}

impl CpuArea {
    /// Logical id of this core.
    pub fn id(&self) -> usize {
        self.id
    }
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

// SAFETY: Rust never touches the stacks as data: each core's `sp` owns its slice.
unsafe impl Sync for Stacks {}

pub(super) static STACKS: Stacks = Stacks(UnsafeCell::new([[0; STACK_SIZE]; MAX_CPUS]));

/// The running core's area.
#[inline]
pub fn current() -> &'static CpuArea {
    // SAFETY: boot.s points TPIDR_EL1 at this core's element of CPU_AREAS before any Rust
    // runs, and nothing else writes it; the array is a static, so the reference lives
    // forever.
    unsafe { &*(TPIDR_EL1.get() as *const CpuArea) }
}
