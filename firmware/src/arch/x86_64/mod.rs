//! x86_64: [`Cpu`], the [`Arch`] and [`Isa`] implementation, and the CPU code a bare-metal
//! x86_64 firmware needs under it — the PVH entry, long mode and the AP trampoline
//! ([`boot`]), the page tables ([`mmu`]), the IDT ([`exception`]), the TSC ([`tsc`]) and
//! the local APIC that starts other cores ([`apic`]). Nothing here knows which machine it
//! runs on beyond what every PC has (the PIT for calibration, the local APIC at its MSR
//! address, QEMU's `isa-debug-exit` port for exiting).

pub mod apic;
mod boot;
pub mod exception;
mod mmu;
pub mod tsc;

use core::arch::asm;

use x86_64::instructions::{hlt, interrupts, port::Port};

use super::percpu::CpuArea;
use super::{Isa, Mapping};
use kmem::Arch;
use kmem::mm::memmap::PhysRange;

pub use X86_64 as Cpu;
pub use boot::{TRAMPOLINE, posted_apic_id};

/// I/O port of QEMU's `isa-debug-exit` device: writing `v` ends QEMU with status
/// `(v << 1) | 1`.
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// What success writes: QEMU exits with 33, which `make selftest` maps to 0 (status 0
/// itself is out of reach, every status the device gives is odd).
const DEBUG_EXIT_SUCCESS: u32 = 0x10;

/// x86_64 in long mode with the identity map that [`mmu`] builds.
pub struct X86_64;

impl Arch for X86_64 {
    /// Whether interrupts were enabled (RFLAGS.IF).
    type IrqState = bool;
    /// Each core is the only one with its id, and runs per-CPU code with interrupts off.
    const OWNED_IDS: usize = <Self as Isa>::MAX_CPUS;

    #[inline]
    fn cpu_id() -> usize {
        let id: usize;
        // SAFETY: boot.s points GS at this core's CpuArea before any Rust runs and nothing
        // changes it.
        unsafe {
            asm!("mov {}, gs:[{off}]", out(reg) id, off = const core::mem::offset_of!(CpuArea, id),
                options(nostack, readonly, preserves_flags))
        };
        id
    }

    #[inline]
    fn irq_save() -> bool {
        let enabled = interrupts::are_enabled();
        interrupts::disable();
        enabled
    }

    #[inline]
    fn irq_restore(enabled: bool) {
        // Only re-enable: a caller that had them off must find them off.
        if enabled {
            interrupts::enable();
        }
    }

    #[inline]
    fn prefetch(addr: usize) {
        // SAFETY: a prefetch hint reads nothing architecturally and never faults, whatever
        // the address.
        unsafe {
            asm!("prefetcht0 [{0}]", in(reg) addr, options(nostack, readonly, preserves_flags))
        };
    }

    #[inline]
    fn cycles() -> u64 {
        tsc::read()
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

impl Isa for X86_64 {
    const MAX_CPUS: usize = 256;
    const MAP_LIMIT: u64 = mmu::MAP_LIMIT;

    /// The TSC's, measured against the PIT on first use.
    fn cycles_per_second() -> u64 {
        tsc::cycles_per_second()
    }

    /// The local APIC id the MADT lists: the x2APIC id (CPUID leaf 0xB) where the CPU
    /// has that leaf, else the initial APIC id (leaf 1), as boot.s finds an AP's.
    fn boot_hwid() -> u64 {
        use core::arch::x86_64::{__cpuid, __cpuid_count};
        // Leaves 0 and 1 exist on every x86_64 CPU; 0xB where leaf 0 says so.
        if __cpuid(0).eax >= 0xb {
            let topology = __cpuid_count(0xb, 0);
            if topology.ebx != 0 {
                return u64::from(topology.edx);
            }
        }
        u64::from(__cpuid(1).ebx >> 24)
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

    /// Sleeps in `hlt` until the wake-up IPI (or any interrupt). Interrupts are off before
    /// and after.
    fn wait_for_event() {
        apic::enable();
        // SAFETY: `sti` takes effect after the next instruction, so a wake-up IPI that came
        // while interrupts were off (pending since) ends the `hlt` at once: none is lost.
        // The only gate is the wake-up stub, which returns here.
        unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }

    /// A fixed IPI to every core but this one.
    fn wake_waiters() {
        apic::wake_others();
    }

    fn enable_interrupts() {
        interrupts::enable();
    }

    fn halt() -> ! {
        interrupts::disable();
        loop {
            hlt();
        }
    }

    /// Through QEMU's `isa-debug-exit`, else halts.
    fn exit(code: u32) -> ! {
        let value = if code == 0 {
            DEBUG_EXIT_SUCCESS
        } else {
            code.min(0xf)
        };
        // SAFETY: port 0xf4 is QEMU's isa-debug-exit when present (QEMU exits here);
        // without it the write goes nowhere and the core halts below.
        unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(value) };
        Self::halt()
    }
}
