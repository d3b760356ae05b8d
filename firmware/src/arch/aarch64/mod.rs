//! aarch64: [`Cpu`], the [`Arch`] and [`Isa`] implementation, and the CPU code a
//! bare-metal aarch64 firmware needs under it — boot entry and the EL2 → EL1 drop
//! ([`boot`]), cache maintenance ([`cache`]), the MMU ([`mmu`]), exception vectors
//! ([`exception`]), PSCI ([`psci`]) and spin tables ([`spin_table`]) for starting cores,
//! semihosting ([`semihosting`]), and memory tagging where the CPU has MTE ([`mte`],
//! [`mte_fault`]). Nothing here knows which board it runs on.

mod boot;
pub mod cache;
pub mod exception;
mod mmu;
pub mod mte;
pub mod mte_fault;
pub mod psci;
pub mod semihosting;
pub mod spin_table;

use aarch64_cpu::asm::{sev, wfe};
use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTVCT_EL0, DAIF, MPIDR_EL1, ReadWriteable, Readable, TPIDR_EL1, Writeable,
};

use super::percpu::CpuArea;
use super::{Isa, Mapping};
use kmem::Arch;
use kmem::mm::memmap::PhysRange;

pub use AArch64 as Cpu;
pub use boot::secondary_entry;
pub use mmu::{high_device_gibs, map_high_device};

/// aarch64 at EL1 with the identity map that [`mmu`] builds.
pub struct AArch64;

impl Arch for AArch64 {
    /// The whole of DAIF as it was.
    type IrqState = u64;
    /// Each core is the only one with its id, and runs per-CPU code with interrupts off.
    const OWNED_IDS: usize = <Self as Isa>::MAX_CPUS;

    #[inline]
    fn cpu_id() -> usize {
        // SAFETY: boot.s points TPIDR_EL1 at this core's element of CPU_AREAS before any
        // Rust runs, and nothing else writes it; the array is a static, so the reference
        // lives forever.
        unsafe { &*(TPIDR_EL1.get() as *const CpuArea) }.id
    }

    #[inline]
    fn irq_save() -> u64 {
        let saved = DAIF.get();
        DAIF.modify(DAIF::I::Masked + DAIF::F::Masked);
        saved
    }

    #[inline]
    fn irq_restore(state: u64) {
        DAIF.set(state);
    }

    #[inline]
    fn prefetch(addr: usize) {
        // SAFETY: a prefetch hint reads nothing architecturally and never faults, whatever
        // the address (an unmapped one makes it a no-op).
        unsafe {
            core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) addr, options(nostack, readonly, preserves_flags))
        };
    }

    #[inline]
    fn cycles() -> u64 {
        CNTVCT_EL0.get()
    }

    #[inline]
    fn phys_to_virt(pa: u64) -> usize {
        pa as usize
    }

    /// The identity, but for a pointer's tag (top byte), which is no part of the address.
    #[inline]
    fn virt_to_phys(va: usize) -> u64 {
        mte::untag(va) as u64
    }

    const MEMORY_TAGGING: bool = true;
    const TAG_GRANULE: usize = mte::GRANULE;

    #[inline]
    fn memory_tagging_on() -> bool {
        mte::tagging_on()
    }

    fn tag_fresh(addr: usize, len: usize) -> usize {
        mte::tag_fresh(addr, len)
    }

    fn tag_freed(addr: usize, len: usize) {
        mte::tag_freed(addr, len);
    }

    #[inline]
    fn untag(addr: usize) -> usize {
        mte::untag(addr)
    }
}

impl Isa for AArch64 {
    const MAX_CPUS: usize = 256;
    const MAP_LIMIT: u64 = mmu::MAP_LIMIT;

    fn cycles_per_second() -> u64 {
        CNTFRQ_EL0.get()
    }

    /// MPIDR's affinity fields (Aff3..Aff0), the form device trees use for CPU ids.
    fn boot_hwid() -> u64 {
        MPIDR_EL1.get() & 0xff_00ff_ffff
    }

    unsafe fn mmu_build(ram: &[&[PhysRange]]) {
        // SAFETY: the caller's contract is build's.
        unsafe { mmu::build(ram) }
    }

    fn mapping(ram: &[&[PhysRange]], range: PhysRange) -> Option<Mapping> {
        mmu::mapping(ram, range)
    }

    fn set_pool_page(page: u64, accessible: bool) {
        mmu::set_pool_page(page, accessible)
    }

    unsafe fn mmu_enable() {
        // SAFETY: the caller's contract is enable's.
        unsafe { mmu::enable() };
        mte::init_core();
    }

    fn configure_memory_tagging(bootargs: &str) {
        mte::configure(bootargs);
    }

    fn print_memory_tagging() {
        crate::println!("{}", mte::State);
    }

    /// `wfe`: the event register makes a `sev` sent since the last `wfe` end it at once,
    /// so no wake-up is lost.
    fn wait_for_event() {
        wfe();
    }

    fn wake_waiters() {
        sev();
    }

    fn enable_interrupts() {
        DAIF.modify(DAIF::I::Unmasked);
    }

    fn halt() -> ! {
        loop {
            wfe();
        }
    }

    /// Semihosting's exit, else PSCI SYSTEM_OFF (status 0 whatever `code` is).
    fn exit(code: u32) -> ! {
        // Returns only when QEMU runs without -semihosting (see semihosting::exit).
        semihosting::exit(code);
        psci::system_off();
    }
}
