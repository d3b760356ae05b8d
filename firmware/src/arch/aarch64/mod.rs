//! aarch64: the [`Arch`] implementation, and the CPU code a bare-metal aarch64 firmware
//! needs under it — boot entry and the EL2 → EL1 drop ([`boot`]), the per-CPU area
//! ([`cpu`]), cache maintenance ([`cache`]), the MMU ([`mmu`]), exception vectors
//! ([`exception`]), PSCI ([`psci`]) and spin tables ([`spin_table`]) for starting cores,
//! and semihosting ([`semihosting`]). Nothing here knows which board it runs on.

mod boot;
pub mod cache;
pub mod cpu;
pub mod exception;
pub mod mmu;
pub mod psci;
pub mod semihosting;
pub mod spin_table;

use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTVCT_EL0, DAIF, MPIDR_EL1, ReadWriteable, Readable, Writeable,
};

use kmem::Arch;

pub use AArch64 as Cpu;
pub use aarch64_cpu::asm::{sev as wake_waiters, wfe as wait_for_event};
pub use boot::secondary_entry;
pub use cpu::MAX_CPUS;

/// Lets this core take IRQs. The firmware runs with them masked; the allocator masks
/// them itself around its per-CPU and locked paths.
pub fn enable_interrupts() {
    DAIF.modify(DAIF::I::Unmasked);
}

/// Frequency of the counter [`Arch::cycles`] reads.
pub fn cycles_per_second() -> u64 {
    CNTFRQ_EL0.get()
}

/// The running core's MPIDR affinity fields (Aff3..Aff0), the form device trees use for
/// CPU ids.
pub fn boot_hwid() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// [`Arch`] for aarch64 at EL1 with the identity map that [`mmu`] builds.
pub struct AArch64;

impl Arch for AArch64 {
    /// The whole of DAIF as it was.
    type IrqState = u64;
    /// Each core is the only one with its id, and runs per-CPU code with interrupts off.
    const OWNED_IDS: usize = cpu::MAX_CPUS;

    #[inline]
    fn cpu_id() -> usize {
        cpu::current().id()
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

    #[inline]
    fn virt_to_phys(va: usize) -> u64 {
        va as u64
    }
}

impl AArch64 {
    /// Stops this CPU for good.
    pub fn halt() -> ! {
        loop {
            aarch64_cpu::asm::wfe();
        }
    }

    /// Ends the machine with `code`: 0 is success.
    pub fn exit(code: u32) -> ! {
        // Returns only when QEMU runs without -semihosting (see semihosting::exit).
        semihosting::exit(code);
        psci::system_off();
    }
}
