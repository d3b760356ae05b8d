//! Timer interrupts on every core ("ticks"), for work that must run in interrupt context:
//! the self-test that allocates from an interrupt handler while the core it interrupted
//! may be inside the allocator.
//!
//! Each board's `Board::ticks_start` and `Board::ticks_stop` run on every core that
//! should tick, and its interrupt handler calls [`fire`] once per tick. The firmware says
//! what a tick does with [`set_callback`]. Interrupts that are not the timer's are counted
//! ([`stray`]) rather than fatal: a test reports them. How a board makes its timer tick is
//! its own (or its ISA's: `gic_ticks` for the Arm boards with a GICv2).

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
