//! An Arm GICv2 (GIC-400, QEMU's `arm,cortex-a15-gic`): just enough of it to deliver the
//! per-core private interrupts (PPIs) — the timers — as IRQs and to acknowledge them.
//!
//! Works with or without the security extensions: from the non-secure side (or on a GIC
//! without them) bit 0 of both control registers enables the interrupts the CPU may see,
//! and those are the ones firmware such as the Pi's armstub leaves in group 1.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use super::common::Mmio;

register_structs! {
    /// The distributor. Enable, disable and priority registers 0..=7 of interrupts 0..31
    /// are banked: each core reaches its own PPIs at the same addresses.
    DistributorRegisters {
        (0x000 => ctlr: ReadWrite<u32>),
        (0x004 => _reserved0),
        (0x100 => isenabler0: ReadWrite<u32>),
        (0x104 => _reserved1),
        (0x180 => icenabler0: ReadWrite<u32>),
        (0x184 => _reserved2),
        (0x400 => ipriorityr: [ReadWrite<u32>; 8]),
        (0x420 => @END),
    }
}

register_structs! {
    /// The CPU interface, banked per core.
    CpuInterfaceRegisters {
        (0x00 => ctlr: ReadWrite<u32>),
        (0x04 => pmr: ReadWrite<u32>),
        (0x08 => _reserved0),
        (0x0c => iar: ReadOnly<u32>),
        (0x10 => eoir: WriteOnly<u32>),
        (0x14 => @END),
    }
}

/// Interrupt id the acknowledge register returns when nothing is pending.
const SPURIOUS: u32 = 1023;
/// Priority given to the PPIs this driver enables: the middle of the range, so that the
/// priority mask below lets it through on any number of implemented priority bits.
const PRIORITY: u8 = 0x80;
/// Priority mask: everything more urgent than the lowest priority is signalled.
const PMR_ALL: u32 = 0xff;

/// A GICv2 at its distributor and CPU-interface addresses (device memory).
pub struct Gicv2 {
    gicd: Mmio<DistributorRegisters>,
    gicc: Mmio<CpuInterfaceRegisters>,
}

impl Gicv2 {
    /// # Safety
    /// `distributor` and `cpu_interface` are a GICv2's register blocks, as [`Mmio::new`]
    /// requires, and nothing else drives that GIC in a conflicting way.
    pub const unsafe fn new(distributor: usize, cpu_interface: usize) -> Gicv2 {
        // SAFETY: the caller's contract, for each block.
        let (gicd, gicc) = unsafe { (Mmio::new(distributor), Mmio::new(cpu_interface)) };
        Gicv2 { gicd, gicc }
    }

    /// Delivers private interrupt `ppi` (16..32) to the running core as an IRQ: enables
    /// the distributor (idempotent), this core's CPU interface, and the interrupt.
    pub fn enable_ppi(&self, ppi: u32) {
        debug_assert!((16..32).contains(&ppi));
        let (d, c) = (&self.gicd, &self.gicc);
        let reg = &d.ipriorityr[ppi as usize / 4];
        let shift = (ppi % 4) * 8;
        reg.set(reg.get() & !(0xff << shift) | u32::from(PRIORITY) << shift);
        d.isenabler0.set(1 << ppi);
        d.ctlr.set(d.ctlr.get() | 1);
        c.pmr.set(PMR_ALL);
        c.ctlr.set(c.ctlr.get() | 1);
    }

    /// Stops delivering private interrupt `ppi` to the running core.
    pub fn disable_ppi(&self, ppi: u32) {
        self.gicd.icenabler0.set(1 << ppi);
    }

    /// Acknowledges the highest-priority pending interrupt: its acknowledge value (to
    /// give back to [`Gicv2::end`]) and its interrupt id, or None when nothing is pending.
    pub fn acknowledge(&self) -> Option<(u32, u32)> {
        let iar = self.gicc.iar.get();
        let id = iar & 0x3ff;
        (id != SPURIOUS).then_some((iar, id))
    }

    /// Ends the interrupt that [`Gicv2::acknowledge`] returned `iar` for.
    pub fn end(&self, iar: u32) {
        self.gicc.eoir.set(iar);
    }
}
