//! Timer interrupts on every core ("ticks"), for work that must run in interrupt context:
//! the self-test that allocates from an interrupt handler while the core it interrupted
//! may be inside the allocator.
//!
//! Each board's `Board::ticks_start` and `Board::ticks_stop` run on every core that
//! should tick, and its interrupt handler calls [`fire`] once per tick. The firmware says
//! what a tick does with [`set_callback`]. Interrupts that are not the timer's are counted
//! ([`stray`]) rather than fatal: a test reports them.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::arch::cpu::Cpu;
use kmem::Arch;

/// The firmware's tick function.
static CALLBACK: spin::Once<fn(usize)> = spin::Once::new();
static STRAY: AtomicU64 = AtomicU64::new(0);

/// Makes every tick call `f(cpu)` on the core it arrives on, with interrupts off. The
/// first callback installed stays.
pub fn set_callback(f: fn(cpu: usize)) {
    CALLBACK.call_once(|| f);
}

/// One tick on this core: runs the callback, if any.
pub fn fire() {
    if let Some(callback) = CALLBACK.get() {
        callback(Cpu::cpu_id());
    }
}

/// Records an interrupt that was not a tick.
pub fn note_stray() {
    STRAY.fetch_add(1, Relaxed);
}

/// Interrupts taken so far that were not ticks.
pub fn stray() -> u64 {
    STRAY.load(Relaxed)
}

/// Ticks from each core's generic virtual timer through a GICv2 (QEMU virt, Pi 4).
#[cfg(target_arch = "aarch64")]
pub mod gic {
    use crate::arch::aarch64::exception;
    use crate::bsp::device_driver::generic_timer::{self, VIRTUAL_TIMER_PPI};
    use crate::bsp::device_driver::gicv2::Gicv2;

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
            return super::note_stray();
        };
        let Some((iar, id)) = gic.acknowledge() else {
            return super::note_stray();
        };
        if id == VIRTUAL_TIMER_PPI {
            // Re-arming lowers the line, so the interrupt is over once ended.
            generic_timer::rearm();
            gic.end(iar);
            super::fire();
        } else {
            gic.end(iar);
            super::note_stray();
        }
    }
}
