//! riscv64: [`Cpu`], the [`Arch`] and [`Isa`] implementation, and the CPU code a
//! bare-metal riscv64 firmware in S-mode under an SBI firmware (OpenSBI) needs under it —
//! boot entry and starting harts through SBI HSM ([`boot`]), the Sv39 identity map
//! ([`mmu`]), traps, the timer and the wake-up IPI ([`trap`]), and ending the machine
//! ([`exit`]). Nothing here knows which board it runs on: the board hands over what the
//! device tree says (the timebase, the exit device, Svpbmt).

mod boot;
pub mod exit;
pub mod mmu;
pub mod trap;

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use riscv::register::{sie, sip, sstatus};

use super::{Isa, Mapping};
use kmem::Arch;
use kmem::mm::memmap::PhysRange;

pub use RiscV64 as Cpu;
pub use boot::{hart_id, start_hart};

/// riscv64 in S-mode with the identity map that [`mmu`] builds.
pub struct RiscV64;

/// Frequency of the `time` CSR: QEMU `virt`'s 10 MHz until the board reads
/// `/cpus/timebase-frequency` ([`set_timebase`]).
static TIMEBASE_HZ: AtomicU64 = AtomicU64::new(10_000_000);

/// Makes `hz` the frequency of the `time` CSR, from the device tree. 0 is ignored.
pub fn set_timebase(hz: u64) {
    if hz != 0 {
        TIMEBASE_HZ.store(hz, Relaxed);
    }
}

impl Arch for RiscV64 {
    /// Whether interrupts were enabled (`sstatus.SIE`).
    type IrqState = bool;
    /// Each hart is the only one with its id, and runs per-CPU code with interrupts off.
    const OWNED_IDS: usize = <Self as Isa>::MAX_CPUS;

    #[inline]
    fn cpu_id() -> usize {
        boot::cpu_area().id
    }

    #[inline]
    fn irq_save() -> bool {
        let enabled = sstatus::read().sie();
        // SAFETY: masking interrupts on this hart breaks no invariant.
        unsafe { sstatus::clear_sie() };
        enabled
    }

    #[inline]
    fn irq_restore(enabled: bool) {
        // Only re-enable: a caller that had them off must find them off.
        if enabled {
            // SAFETY: the caller had them on; the trap entry handles what arrives.
            unsafe { sstatus::set_sie() };
        }
    }

    #[inline]
    fn cycles() -> u64 {
        riscv::register::time::read64()
    }

    #[inline]
    fn phys_to_virt(pa: u64) -> usize {
        pa as usize
    }

    #[inline]
    fn virt_to_phys(va: usize) -> u64 {
        va as u64
    }
}

impl Isa for RiscV64 {
    const MAX_CPUS: usize = 8;
    const MAP_LIMIT: u64 = mmu::MAP_LIMIT;

    fn cycles_per_second() -> u64 {
        TIMEBASE_HZ.load(Relaxed)
    }

    /// The hart id OpenSBI passed in `a0`, the form `/cpus/cpu@N/reg` lists.
    fn boot_hwid() -> u64 {
        hart_id(0).unwrap_or(0) as u64
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
        unsafe { mmu::enable() }
    }

    /// `wfi` until the wake-up IPI. The software interrupt is enabled in `sie` (boot.s),
    /// so a pending one ends `wfi` even with `sstatus.SIE` off, and one sent before the
    /// `wfi` stays pending until cleared here, after it: no wake-up is lost.
    fn wait_for_event() {
        riscv::asm::wfi();
        // SAFETY: clearing this hart's own software-interrupt request, which only wakes it.
        unsafe { sip::clear_ssoft() };
    }

    /// An SBI IPI to every other hart online.
    fn wake_waiters() {
        trap::wake_others();
    }

    fn enable_interrupts() {
        // SAFETY: the trap entry saves what it clobbers and handles the timer and the
        // wake-up IPI; nothing else is enabled in `sie`.
        unsafe { sstatus::set_sie() };
    }

    fn halt() -> ! {
        // SAFETY: masking this hart's interrupts for good.
        unsafe {
            sstatus::clear_sie();
            sie::clear_ssoft();
            sie::clear_stimer();
        }
        loop {
            riscv::asm::wfi();
        }
    }

    /// Through the exit device the board registered, else SBI system reset.
    fn exit(code: u32) -> ! {
        exit::exit(code)
    }
}
