//! The firmware's ISA code, one folder per ISA, selected by the build target.
//!
//! Each ISA module implements [`kmem::Arch`] for its `Cpu` (what the allocator needs) and
//! provides at its root what the firmware needs beyond that: `MAX_CPUS`,
//! `cycles_per_second()`, `boot_hwid()` (the boot core's id as firmware tables list
//! CPUs), `mmu::{build, enable}`, `wait_for_event()`/`wake_waiters()` for idle cores,
//! `enable_interrupts()`, and `Cpu::halt`/`Cpu::exit`. The rest of the firmware reaches
//! it as `arch::cpu` and names no ISA.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

#[cfg(target_arch = "x86_64")]
pub use self::x86_64 as cpu;
#[cfg(target_arch = "aarch64")]
pub use aarch64 as cpu;
