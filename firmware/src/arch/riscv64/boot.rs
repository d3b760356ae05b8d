//! Boot entry: `_start` and `_secondary_start` (boot.s) up to the first Rust function, and
//! starting harts through SBI HSM.
//!
//! OpenSBI enters `_start` in S-mode on one hart — whichever won its boot lottery, not
//! necessarily hart 0 — with its hart id in `a0` and the DTB's address in `a1`; the boot
//! hart calls `kernel_init(dtb: usize) -> !`, which the firmware binary defines
//! (`src/main.rs`). A hart started with [`start_hart`] enters `_secondary_start` with its
//! hart id in `a0` and its logical id in `a1`, and calls `kernel_secondary(id: usize) ->
//! !`. Both run with the MMU off (`satp` is 0), their own stack, `tp` at their per-CPU
//! area, the trap vector installed and the FPU on.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::arch::cpu::MAX_CPUS;
use crate::arch::percpu::{AREA_SIZE, CPU_AREAS, CpuArea, STACK_TOP_OFFSET};

unsafe extern "C" {
    fn kernel_init(dtb: usize) -> !;
    fn kernel_secondary(id: usize) -> !;
    fn _secondary_start();
}

/// No hart yet, in [`HARTS`].
const NONE: usize = usize::MAX;

/// The hart id of each logical CPU that has entered the firmware, [`NONE`] for the
/// others: boot.s stores it before any Rust runs on that hart.
static HARTS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(NONE) }; MAX_CPUS];

core::arch::global_asm!(
    include_str!("boot.s"),
    boot_main = sym kernel_init,
    secondary_main = sym kernel_secondary,
    cpu_areas = sym CPU_AREAS,
    stack_top = const STACK_TOP_OFFSET,
    harts = sym HARTS,
    area_size = const AREA_SIZE,
    max_cpus = const MAX_CPUS,
);

/// The hart id of logical CPU `cpu`, once it has entered the firmware.
pub fn hart_id(cpu: usize) -> Option<usize> {
    HARTS
        .get(cpu)
        .map(|h| h.load(Relaxed))
        .filter(|&h| h != NONE)
}

/// This hart's per-CPU area.
#[inline]
pub(super) fn cpu_area() -> &'static CpuArea {
    let area: usize;
    // SAFETY: reading `tp`, which boot.s points at this hart's element of CPU_AREAS before
    // any Rust runs; nothing else writes it (the firmware has no thread-local storage).
    unsafe {
        core::arch::asm!("mv {}, tp", out(reg) area, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: that element is a static, so the reference lives forever.
    unsafe { &*(area as *const CpuArea) }
}

/// Starts hart `hart` at `_secondary_start` as logical CPU `logical`, through SBI HSM
/// `hart_start`. The error is SBI's (-3 INVALID_PARAM for a hart that does not exist, -6
/// ALREADY_AVAILABLE for one already running, …).
pub fn start_hart(hart: u64, logical: usize) -> Result<(), i64> {
    let entry = _secondary_start as *const () as usize;
    let ret = sbi_rt::hart_start(hart as usize, entry, logical);
    match ret.error {
        0 => Ok(()),
        e => Err(e as i64),
    }
}
