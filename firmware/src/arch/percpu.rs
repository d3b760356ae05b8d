//! The per-CPU areas and the boot stacks, one of each per logical core, for every ISA.
//!
//! Each ISA's entry code (its `boot.s`) starts core `i` on the top of its stack in
//! [`STACKS`] and points its per-CPU register — `TPIDR_EL1` on aarch64, the GS base on
//! x86_64 — at `CPU_AREAS[i]` before any Rust runs; its `Arch::cpu_id` reads the id back
//! through that register. That register is all that differs between ISAs: the layout,
//! sizes and storage here are shared, and the entry code takes them as `global_asm!`
//! operands.

use core::cell::UnsafeCell;
use core::mem::{offset_of, size_of};
use core::sync::atomic::AtomicU32;

use super::cpu::MAX_CPUS;

/// Bytes of stack per core. No guard page: both MMUs map 2 MiB blocks.
pub(super) const STACK_SIZE: usize = 64 << 10;

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

/// The stacks, one per logical core; core `i` starts at the top of `stacks[i]`.
#[repr(C, align(16))]
pub(super) struct Stacks(UnsafeCell<[[u8; STACK_SIZE]; MAX_CPUS]>);

// SAFETY: Rust never touches the stacks as data: each core's stack pointer owns its slice.
unsafe impl Sync for Stacks {}

pub(super) static STACKS: Stacks = Stacks(UnsafeCell::new([[0; STACK_SIZE]; MAX_CPUS]));
