//! An Arm GICv3 (QEMU virt's `gic-version=3`, `arm,gic-v3`): just enough of it to deliver
//! the per-core private interrupts (PPIs) — the timers — as group-1 IRQs and to
//! acknowledge them. The distributor is set to affinity routing; each core's PPIs live in
//! its own redistributor, found among the redistributor frames of every region by its
//! MPIDR affinity (`GICR_TYPER`), so logical ids need not follow the frames' order; the
//! CPU interface is the `ICC_*` system registers. A GIC may split its redistributors into
//! several regions: QEMU virt puts the first 123 cores' in one below 4 GiB and the rest
//! in a second one at 256 GiB.
//!
//! The `arm-gic` crate was weighed: its driver is one `&mut` value for the whole GIC,
//! which every core would then take a lock around for its own redistributor, and it
//! indexes redistributors by a CPU number rather than by affinity. Twelve registers are
//! all the ticks need, so they are written here, as `gicv2` does for the GICv2.

use aarch64_cpu::registers::{MPIDR_EL1, Readable};
use tock_registers::interfaces::Writeable;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use super::common::{Deadline, Mmio};

register_structs! {
    /// The distributor: only its control register is used (PPIs are the redistributors').
    DistributorRegisters {
        (0x000 => ctlr: ReadWrite<u32>),
        (0x004 => @END),
    }
}

register_structs! {
    /// A redistributor's control frame (`RD_base`).
    RedistributorRegisters {
        (0x000 => _reserved0),
        (0x008 => typer: ReadOnly<u64>),
        (0x010 => _reserved1),
        (0x014 => waker: ReadWrite<u32>),
        (0x018 => @END),
    }
}

register_structs! {
    /// A redistributor's SGI and PPI frame (`SGI_base`, 64 KiB above `RD_base`).
    SgiRegisters {
        (0x000 => _reserved0),
        (0x080 => igroupr0: ReadWrite<u32>),
        (0x084 => _reserved1),
        (0x100 => isenabler0: ReadWrite<u32>),
        (0x104 => _reserved2),
        (0x180 => icenabler0: ReadWrite<u32>),
        (0x184 => _reserved3),
        (0x400 => ipriorityr: [ReadWrite<u32>; 8]),
        (0x420 => @END),
    }
}

/// GICD_CTLR: group 1 enabled (non-secure group 1 from the non-secure side), affinity
/// routing, and "register write pending".
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_RWP: u32 = 1 << 31;
/// GICR_TYPER: this is the last frame; the frame has virtual-LPI pages (GICv4: four 64 KiB
/// pages instead of two).
const TYPER_LAST: u64 = 1 << 4;
const TYPER_VLPIS: u64 = 1 << 1;
/// GICR_WAKER: the core asks the redistributor to sleep; it says it sleeps.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// Bytes of a GICv3 redistributor frame (RD_base and SGI_base): the least a region
/// holds; and of the SGI page.
pub const FRAME: usize = 0x2_0000;
const PAGE: usize = 0x1_0000;
/// How long the distributor and a redistributor may take to settle.
const SETTLE_US: u64 = 10_000;
/// Interrupt ids 1020..1023 are special: nothing to handle.
const SPECIAL: u32 = 1020;
/// As in `gicv2`: the middle priority, and a mask that lets everything through.
const PRIORITY: u8 = 0x80;
const PMR_ALL: u64 = 0xff;

/// Most redistributor regions a [`Gicv3`] searches (QEMU virt has at most two).
pub const MAX_REDISTRIBUTOR_REGIONS: usize = 4;

/// A redistributor region: `(base, size)` in bytes; size 0 for none.
pub type RedistributorRegion = (usize, usize);

/// A GICv3 at its distributor and redistributor-region addresses (device memory).
pub struct Gicv3 {
    gicd: Mmio<DistributorRegisters>,
    regions: [RedistributorRegion; MAX_REDISTRIBUTOR_REGIONS],
}

impl Gicv3 {
    /// # Safety
    /// `distributor` is a GICv3's distributor and each `(base, size)` of `regions` with a
    /// non-zero size one of its redistributor regions, all mapped as device memory, and
    /// nothing else drives that GIC in a conflicting way.
    pub const unsafe fn new(
        distributor: usize,
        regions: [RedistributorRegion; MAX_REDISTRIBUTOR_REGIONS],
    ) -> Gicv3 {
        Gicv3 {
            // SAFETY: the caller's contract.
            gicd: unsafe { Mmio::new(distributor) },
            regions,
        }
    }

    /// The running core's redistributor frames: the one whose `GICR_TYPER` affinity is
    /// this core's MPIDR, in any region (each searched up to the frame marked last).
    fn own_redistributor(&self) -> Option<(Mmio<RedistributorRegisters>, Mmio<SgiRegisters>)> {
        let mpidr = MPIDR_EL1.get();
        let affinity = (mpidr & 0xff_ffff) | (mpidr >> 32 & 0xff) << 24;
        self.regions
            .iter()
            .find_map(|&(base, size)| Self::find_in_region(base, size, affinity))
    }

    /// The frames in region `[base, base + size)` whose `GICR_TYPER` affinity is
    /// `affinity`, searched up to the frame marked last.
    fn find_in_region(
        base: usize,
        size: usize,
        affinity: u64,
    ) -> Option<(Mmio<RedistributorRegisters>, Mmio<SgiRegisters>)> {
        let mut at = base;
        while at + FRAME <= base + size {
            // SAFETY: `at` is a frame inside a redistributor region (the caller of `new`
            // vouched for it): RD_base, and SGI_base 64 KiB above it.
            let (rd, sgi) = unsafe {
                (
                    Mmio::<RedistributorRegisters>::new(at),
                    Mmio::new(at + PAGE),
                )
            };
            let typer = rd.typer.get();
            if typer >> 32 == affinity {
                return Some((rd, sgi));
            }
            if typer & TYPER_LAST != 0 {
                return None;
            }
            at += if typer & TYPER_VLPIS != 0 {
                2 * FRAME
            } else {
                FRAME
            };
        }
        None
    }

    /// Delivers private interrupt `ppi` (16..32) to the running core as a group-1 IRQ:
    /// enables the distributor with affinity routing (idempotent), wakes this core's
    /// redistributor, enables the interrupt there, and turns on the system-register CPU
    /// interface.
    pub fn enable_ppi(&self, ppi: u32) -> Result<(), &'static str> {
        debug_assert!((16..32).contains(&ppi));
        let d = &self.gicd;
        d.ctlr.set(d.ctlr.get() | CTLR_ARE | CTLR_ENABLE_GRP1);
        Deadline::after_us(SETTLE_US)
            .wait(|| d.ctlr.get() & CTLR_RWP == 0)
            .map_err(|_| "the GICv3 distributor did not settle")?;
        let (rd, sgi) = self
            .own_redistributor()
            .ok_or("no GICv3 redistributor has this core's affinity")?;
        rd.waker.set(rd.waker.get() & !WAKER_PROCESSOR_SLEEP);
        Deadline::after_us(SETTLE_US)
            .wait(|| rd.waker.get() & WAKER_CHILDREN_ASLEEP == 0)
            .map_err(|_| "this core's GICv3 redistributor did not wake")?;
        let reg = &sgi.ipriorityr[ppi as usize / 4];
        let shift = (ppi % 4) * 8;
        reg.set(reg.get() & !(0xff << shift) | u32::from(PRIORITY) << shift);
        sgi.igroupr0.set(sgi.igroupr0.get() | 1 << ppi);
        sgi.isenabler0.set(1 << ppi);
        cpu_interface_on();
        Ok(())
    }

    /// Stops delivering private interrupt `ppi` to the running core.
    pub fn disable_ppi(&self, ppi: u32) {
        if let Some((_, sgi)) = self.own_redistributor() {
            sgi.icenabler0.set(1 << ppi);
        }
    }

    /// Acknowledges the highest-priority pending group-1 interrupt: its acknowledge
    /// value (for [`Gicv3::end`]) and its interrupt id, or None when nothing is pending.
    pub fn acknowledge(&self) -> Option<(u32, u32)> {
        let iar: u64;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt; the CPU interface is on
        // (enable_ppi), and this runs in the IRQ handler, which ends what it acknowledges.
        unsafe { core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nostack)) };
        let id = (iar & 0xff_ffff) as u32;
        (id < SPECIAL).then_some((id, id))
    }

    /// Ends the interrupt that [`Gicv3::acknowledge`] returned `iar` for.
    pub fn end(&self, iar: u32) {
        // SAFETY: writing ICC_EOIR1_EL1 ends the interrupt acknowledged with this value.
        unsafe {
            core::arch::asm!("msr icc_eoir1_el1, {}", in(reg) u64::from(iar), options(nostack))
        };
    }
}

/// Turns on the running core's system-register CPU interface for group 1, with every
/// priority let through.
fn cpu_interface_on() {
    // SAFETY: ICC_SRE_EL1.SRE selects the system-register interface (a GICv3 is there:
    // the caller found its redistributor); the mask and the group enable only let this
    // core's IRQs through, which DAIF still masks until the firmware unmasks them.
    unsafe {
        core::arch::asm!(
            "mrs {t}, icc_sre_el1",
            "orr {t}, {t}, #1",
            "msr icc_sre_el1, {t}",
            "isb",
            "msr icc_pmr_el1, {pmr}",
            "msr icc_igrpen1_el1, {one}",
            "isb",
            t = out(reg) _,
            pmr = in(reg) PMR_ALL,
            one = in(reg) 1u64,
            options(nostack),
        )
    };
}
