//! The Arm generic timer's physical counter (`CNTPCT_EL0`, ticking at `CNTFRQ_EL0`) as an
//! `embedded-hal` busy-wait [`Delay`], and [`Deadline`]s for polling with a time limit.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, Readable};
use embedded_hal::delay::DelayNs;

/// Counter ticks per second. The boot firmware sets CNTFRQ; a zero there would make every
/// wait end at once, so it counts as one tick per second (long waits rather than none).
fn frequency() -> u64 {
    CNTFRQ_EL0.get().max(1)
}

fn now() -> u64 {
    // Without the barrier the counter may be read early, before the code it measures.
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// A point in time on the counter.
#[derive(Clone, Copy)]
pub struct Deadline(u64);

impl Deadline {
    /// `us` microseconds from now.
    pub fn after_us(us: u64) -> Deadline {
        Deadline(now() + (frequency() * us).div_ceil(1_000_000))
    }

    pub fn passed(self) -> bool {
        now() >= self.0
    }
}

/// Busy-waiting delays on the generic timer. Works with the MMU off and on any core.
pub struct Delay;

impl DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        let ticks = (frequency() * u64::from(ns)).div_ceil(1_000_000_000);
        let start = now();
        while now() - start < ticks {
            core::hint::spin_loop();
        }
    }
}
