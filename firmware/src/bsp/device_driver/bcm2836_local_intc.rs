//! The BCM2836/BCM2837 "ARM local" interrupt block (Pi 2 and 3, at 0x4000_0000): it
//! routes each core's generic-timer interrupts to that core's IRQ or FIQ line and says
//! which source is pending. There is nothing to acknowledge: the timer lowers its line
//! when it is re-armed or disarmed.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use super::common::Mmio;

register_structs! {
    LocalRegisters {
        (0x00 => _reserved0),
        /// Per core: which of its timers raise its IRQ (bits 0..3) or FIQ (bits 4..7).
        (0x40 => timer_control: [ReadWrite<u32>; 4]),
        (0x50 => _reserved1),
        /// Per core: the sources of its pending IRQ.
        (0x60 => irq_source: [ReadOnly<u32>; 4]),
        (0x70 => @END),
    }
}

/// The virtual timer's bit (`nCNTVIRQ`) in both per-core registers.
const CNTV: u32 = 1 << 3;

/// The local interrupt block at its base address.
pub struct LocalIntc(Mmio<LocalRegisters>);

impl LocalIntc {
    /// # Safety
    /// `base` is the block's address, as [`Mmio::new`] requires.
    pub const unsafe fn new(base: usize) -> LocalIntc {
        // SAFETY: the caller's contract.
        LocalIntc(unsafe { Mmio::new(base) })
    }

    /// Routes core `core`'s virtual timer to its IRQ line (or stops routing it).
    pub fn route_virtual_timer(&self, core: usize, on: bool) {
        self.0.timer_control[core].set(if on { CNTV } else { 0 });
    }

    /// Whether core `core`'s pending IRQ comes from its virtual timer.
    pub fn virtual_timer_pending(&self, core: usize) -> bool {
        self.0.irq_source[core].get() & CNTV != 0
    }
}
