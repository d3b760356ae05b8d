//! The firmware's ISA code, one folder per ISA, selected by the build target.
//!
//! Each ISA module exports `Cpu`, which implements [`kmem::Arch`] (what the allocator
//! needs) and [`Isa`] (what the firmware needs beyond that); the per-CPU areas and boot
//! stacks they share are in [`percpu`]. The rest of the firmware names no ISA: it reaches
//! the CPU as [`cpu::Cpu`] through those two traits. Boards, which belong to one ISA, also
//! use their ISA's own modules (PSCI, the local APIC, SBI HSM, …).

pub mod guard_pool;
mod interface;
mod percpu;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "riscv64")]
pub mod riscv64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use interface::{Isa, Mapping};
pub use percpu::{
    SLOT_SIZE, STACK_SIZE, boot_stack_used, paint_boot_stack, place_secondary_slots,
    secondary_slots_size,
};

/// The ISA this firmware is built for, as the rest of the firmware sees it.
pub mod cpu {
    #[cfg(target_arch = "aarch64")]
    pub use super::aarch64::Cpu;
    #[cfg(target_arch = "riscv64")]
    pub use super::riscv64::Cpu;
    #[cfg(target_arch = "x86_64")]
    pub use super::x86_64::Cpu;

    pub use super::{Isa, Mapping};

    /// [`Isa::MAX_CPUS`] of this ISA, by a short name: the per-CPU statics all over the
    /// firmware are arrays of this length.
    pub const MAX_CPUS: usize = <Cpu as Isa>::MAX_CPUS;
}
