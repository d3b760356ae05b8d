//! The spin-table protocol for starting cores (Linux's arm64 `booting.rst`; the Raspberry
//! Pi's firmware stub and QEMU `raspi*` implement it): a parked core waits in `wfe` until
//! the 64-bit word at its release address is non-zero, then jumps there with the MMU off,
//! at EL2 or EL1, with `x0 = 0`.
//!
//! `x0` carries no logical id, so such a core enters at `__spin_table_entry`, which looks
//! its id up by MPIDR Aff0 in a table [`release`] fills, then joins the PSCI path at
//! `_secondary_start`. Only single-cluster machines (Aff1..3 zero) are supported.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use aarch64_cpu::asm::{barrier, sev};

use super::cache;
use crate::arch::cpu::MAX_CPUS;

/// Logical id for each Aff0; `u64::MAX` (not a valid id: `_secondary_start` parks the
/// core) until [`release`] sets it.
static LOGICAL_IDS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

core::arch::global_asm!(
    ".section .text",
    "__spin_table_entry:",
    "    mrs     x1, MPIDR_EL1",
    "    and     x1, x1, #0xff",
    "    cmp     x1, #{max_cpus}",
    "    b.hs    1f",
    "    adrp    x2, {ids}",
    "    add     x2, x2, :lo12:{ids}",
    "    ldr     x0, [x2, x1, lsl #3]",
    "    b       _secondary_start",
    "1:  wfe",
    "    b       1b",
    ids = sym LOGICAL_IDS,
    max_cpus = const MAX_CPUS,
);

unsafe extern "C" {
    fn __spin_table_entry();
}

/// Why a core could not be released.
#[derive(Debug)]
pub struct UnsupportedMpidr(pub u64);

/// Releases the core with affinity `hwid`, parked on the spin table at `release_addr`, to
/// start as logical core `logical`.
///
/// # Safety
/// `release_addr` is that core's release word (in RAM, identity-mapped, kept out of the
/// memory map), and the core is parked on it; `logical` is not in use by another core.
pub unsafe fn release(
    release_addr: u64,
    hwid: u64,
    logical: usize,
) -> Result<(), UnsupportedMpidr> {
    let aff0 = usize::try_from(hwid)
        .ok()
        .filter(|&a| a < MAX_CPUS)
        .ok_or(UnsupportedMpidr(hwid))?;
    // The core reads both words with its MMU and caches off: push them to memory.
    LOGICAL_IDS[aff0].store(logical as u64, Relaxed);
    cache::clean_invalidate((&raw const LOGICAL_IDS[aff0]) as usize, 8);
    let word = release_addr as *mut u64;
    // SAFETY: the caller guarantees the word is the core's release address, ours to write.
    unsafe { word.write_volatile(__spin_table_entry as *const () as u64) };
    cache::clean_invalidate(release_addr as usize, 8);
    barrier::dsb(barrier::SY);
    sev();
    Ok(())
}
