//! Ticks (`bsp::ticks`) from each core's generic virtual timer through a GICv2 or a
//! GICv3, for the Arm boards that have one (QEMU virt, Pi 4).

use crate::arch::aarch64::exception;
use crate::bsp::device_driver::generic_timer::{self, VIRTUAL_TIMER_PPI};
use crate::bsp::device_driver::gicv2::Gicv2;
use crate::bsp::device_driver::gicv3::Gicv3;
use crate::bsp::ticks;

/// The board's interrupt controller.
pub enum Gic {
    V2(Gicv2),
    V3(Gicv3),
}

impl Gic {
    fn enable_ppi(&self, ppi: u32) -> Result<(), &'static str> {
        match self {
            Gic::V2(g) => {
                g.enable_ppi(ppi);
                Ok(())
            }
            Gic::V3(g) => g.enable_ppi(ppi),
        }
    }

    fn disable_ppi(&self, ppi: u32) {
        match self {
            Gic::V2(g) => g.disable_ppi(ppi),
            Gic::V3(g) => g.disable_ppi(ppi),
        }
    }

    fn acknowledge(&self) -> Option<(u32, u32)> {
        match self {
            Gic::V2(g) => g.acknowledge(),
            Gic::V3(g) => g.acknowledge(),
        }
    }

    fn end(&self, iar: u32) {
        match self {
            Gic::V2(g) => g.end(iar),
            Gic::V3(g) => g.end(iar),
        }
    }
}

/// The GIC the board named at the first start, for the interrupt handler.
static GIC: spin::Once<Gic> = spin::Once::new();

/// Starts this core's ticks through `gic` (the board's, if it has one), one every
/// `period_us` microseconds.
pub fn start(gic: Option<Gic>, period_us: u64) -> Result<(), &'static str> {
    let gic = gic.ok_or("the boot information names no GIC")?;
    let gic = GIC.call_once(|| gic);
    exception::set_irq_handler(irq);
    gic.enable_ppi(VIRTUAL_TIMER_PPI)?;
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
