//! The board's ticks (see `bsp::ticks`): each core's virtual timer, delivered through the
//! ARM local interrupt block on the Pi 3 and through the GIC-400 on the Pi 4 (where the
//! firmware's default `enable_gic=1` routes the timers there). Both sit at fixed
//! addresses in the identity map's device memory.

#[cfg(feature = "rpi4")]
use crate::bsp::device_driver::gicv2::Gicv2;
#[cfg(feature = "rpi4")]
pub use crate::bsp::gic_ticks::stop;

/// Starts this core's ticks through the GIC-400, one every `period_us` microseconds.
#[cfg(feature = "rpi4")]
pub fn start(period_us: u64) -> Result<(), &'static str> {
    // SAFETY: the BCM2711's GIC-400 distributor and CPU interface with the peripherals in
    // low mode (the firmware's default; QEMU's `raspi4b` has them there), below 4 GiB, so
    // device memory.
    let gic = unsafe { Gicv2::new(0xff84_1000, 0xff84_2000) };
    crate::bsp::gic_ticks::start(Some(crate::bsp::gic_ticks::Gic::V2(gic)), period_us)
}

#[cfg(feature = "rpi3")]
pub use local::{start, stop};

#[cfg(feature = "rpi3")]
mod local {
    use crate::arch::aarch64::exception;
    use crate::arch::cpu::{Cpu, Isa};
    use crate::bsp::device_driver::bcm2836_local_intc::LocalIntc;
    use crate::bsp::device_driver::generic_timer;
    use crate::bsp::ticks;

    fn intc() -> LocalIntc {
        // SAFETY: the BCM2837's local interrupt block, below 4 GiB, so device memory.
        unsafe { LocalIntc::new(0x4000_0000) }
    }

    /// This core's number at the local block: its MPIDR Aff0 (0..=3 on the BCM2837).
    fn core() -> usize {
        (Cpu::boot_hwid() & 0x3) as usize
    }

    /// Starts this core's ticks, one every `period_us` microseconds.
    pub fn start(period_us: u64) -> Result<(), &'static str> {
        exception::set_irq_handler(irq);
        intc().route_virtual_timer(core(), true);
        generic_timer::arm(period_us);
        Ok(())
    }

    /// Stops this core's ticks.
    pub fn stop() {
        generic_timer::disarm();
        intc().route_virtual_timer(core(), false);
    }

    fn irq() {
        if intc().virtual_timer_pending(core()) {
            // Re-arming lowers the line: nothing else ends the interrupt.
            generic_timer::rearm();
            ticks::fire();
        } else {
            ticks::note_stray();
        }
    }
}
