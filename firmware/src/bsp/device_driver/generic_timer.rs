//! The Arm generic timer: its counter as an `embedded-hal` busy-wait [`Delay`] (through
//! `common::Deadline`, which every wait with a time limit uses), and each core's virtual
//! timer as a periodic interrupt source ([`arm`], [`rearm`], [`disarm`]). The virtual timer is the one EL1 always owns: EL2 may trap the physical
//! one, and boot.s sets `CNTVOFF_EL2` to 0 when it drops from EL2.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTV_CTL_EL0, CNTV_TVAL_EL0, Readable, Writeable};
use embedded_hal::delay::DelayNs;

use super::common::Deadline;

/// Counter ticks per second. The boot firmware sets CNTFRQ; a zero there would make every
/// wait end at once, so it counts as one tick per second (long waits rather than none).
fn frequency() -> u64 {
    CNTFRQ_EL0.get().max(1)
}

/// Busy-waiting delays on the generic timer. Works with the MMU off and on any core.
pub struct Delay;

impl DelayNs for Delay {
    /// Waits `ns` nanoseconds; a counter that does not run ends the wait after
    /// `Deadline`'s poll limit instead.
    fn delay_ns(&mut self, ns: u32) {
        let _ = Deadline::after_ns(u64::from(ns)).wait(|| false);
    }
}

/// The virtual timer's interrupt: PPI 11, interrupt id 27 at a GIC.
pub const VIRTUAL_TIMER_PPI: u32 = 27;

/// Counter ticks between two timer interrupts (the same on every core).
static PERIOD: AtomicU64 = AtomicU64::new(0);

/// Makes this core's virtual timer interrupt `period_us` microseconds from now, and again
/// each time [`rearm`] runs.
pub fn arm(period_us: u64) {
    PERIOD.store(
        (frequency() * period_us).div_ceil(1_000_000).max(1),
        Relaxed,
    );
    rearm();
}

/// Sets the next interrupt one period from now. Writing the timer value also lowers the
/// interrupt line, so the handler calls this before it ends the interrupt.
pub fn rearm() {
    CNTV_TVAL_EL0.set(PERIOD.load(Relaxed));
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}

/// Stops this core's virtual timer and lowers its interrupt.
pub fn disarm() {
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
}
