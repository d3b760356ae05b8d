//! Boot entry: `_start` and `_secondary_start` (boot.s) up to the first Rust function.
//!
//! The boot core calls `kernel_init(dtb: usize) -> !`, which the firmware binary defines
//! (`src/main.rs`); a core started through PSCI calls `kernel_secondary(id: usize) -> !`.
//! Both run at EL1 with the MMU off, their own stack (the one their `CpuArea` names), `TPIDR_EL1` at their per-CPU area
//! and the exception vectors installed.

use crate::arch::cpu::MAX_CPUS;
use crate::arch::percpu::{AREA_SIZE, CPU_AREAS, STACK_TOP_OFFSET};

unsafe extern "C" {
    fn kernel_init(dtb: usize) -> !;
    fn kernel_secondary(id: usize) -> !;
    fn _secondary_start();
}

core::arch::global_asm!(
    include_str!("boot.s"),
    boot_main = sym kernel_init,
    secondary_main = sym kernel_secondary,
    cpu_areas = sym CPU_AREAS,
    stack_top = const STACK_TOP_OFFSET,
    area_size = const AREA_SIZE,
    max_cpus = const MAX_CPUS,
);

/// Physical address a started core should begin at (for PSCI CPU_ON, spin tables), with
/// its logical id as the context argument.
pub fn secondary_entry() -> u64 {
    _secondary_start as *const () as u64
}
