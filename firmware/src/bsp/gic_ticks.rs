//! Ticks (`bsp::ticks`) from each core's generic virtual timer through a GICv2, for the
//! Arm boards that have one (QEMU virt, Pi 4).

use crate::arch::aarch64::exception;
use crate::bsp::device_driver::generic_timer::{self, VIRTUAL_TIMER_PPI};
use crate::bsp::device_driver::gicv2::Gicv2;
use crate::bsp::ticks;

/// The GIC the board named at the first start, for the interrupt handler.
static GIC: spin::Once<Gicv2> = spin::Once::new();

/// Starts this core's ticks through `gic` (the board's, if it has one), one every
/// `period_us` microseconds.
pub fn start(gic: Option<Gicv2>, period_us: u64) -> Result<(), &'static str> {
    let gic = gic.ok_or("the boot information names no GICv2")?;
    let gic = GIC.call_once(|| gic);
    exception::set_irq_handler(irq);
    gic.enable_ppi(VIRTUAL_TIMER_PPI);
    generic_timer::arm(period_us);
    Ok(())
}

/// Stops this core's ticks.
pub fn stop() {
    generic_timer::disarm();
    if let Some(gic) = GIC.get() {
        gic.disable_ppi(VIRTUAL_TIMER_PPI);
    }
}

fn irq() {
    let Some(gic) = GIC.get() else {
        return ticks::note_stray();
    };
    let Some((iar, id)) = gic.acknowledge() else {
        return ticks::note_stray();
    };
    if id == VIRTUAL_TIMER_PPI {
        // Re-arming lowers the line, so the interrupt is over once ended.
        generic_timer::rearm();
        gic.end(iar);
        ticks::fire();
    } else {
        gic.end(iar);
        ticks::note_stray();
    }
}
