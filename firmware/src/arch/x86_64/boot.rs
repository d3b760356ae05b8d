//! Boot entry: `_start32` and `_ap_start32` (boot.s) up to the first Rust functions, and
//! the real-mode trampoline (trampoline.s) that application processors start in.
//!
//! The boot core calls `kernel_init(start_info: usize) -> !`, which the firmware binary
//! defines (`src/main.rs`); a core started by INIT-SIPI-SIPI calls
//! `kernel_secondary(id: usize) -> !`. Both run in long mode on the boot page tables with
//! their own stack, GS at their per-CPU area, interrupts off and the IDT loaded.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};

use super::{apic, exception};
use crate::arch::cpu::MAX_CPUS;
use crate::arch::percpu::{AREA_SIZE, CPU_AREAS, STACK_TOP_OFFSET};

unsafe extern "C" {
    fn kernel_init(start_info: usize) -> !;
    fn kernel_secondary(id: usize) -> !;
    static __ap_trampoline_start: u8;
    static __ap_trampoline_end: u8;
}

/// Where the trampoline runs: below 1 MiB (real mode), page-aligned (a SIPI names a
/// page). The board keeps the first MiB out of the memory map.
pub const TRAMPOLINE: usize = 0x8000;

/// The local APIC id of each logical core the boot core has started, `u32::MAX` where
/// none: an application processor takes the index of its own id (boot.s), so that cores
/// started together each find theirs.
static AP_HWIDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];

/// Whether the trampoline is in place at [`TRAMPOLINE`].
static TRAMPOLINE_COPIED: AtomicBool = AtomicBool::new(false);

core::arch::global_asm!(
    include_str!("boot.s"),
    include_str!("trampoline.s"),
    rust_entry = sym rust_entry,
    ap_hwids = sym AP_HWIDS,
    cpu_areas = sym CPU_AREAS,
    stack_top = const STACK_TOP_OFFSET,
    area_size = const AREA_SIZE,
    max_cpus = const MAX_CPUS,
    base = const TRAMPOLINE,
    options(att_syntax),
);

/// Every core's first Rust function, called by boot.s with its logical id and (on the
/// boot core) the PVH loader's `%ebx`.
extern "C" fn rust_entry(id: usize, start_info: usize) -> ! {
    if id == 0 {
        apic::disable_legacy_pic();
        exception::build_idt();
    }
    exception::load_idt();
    exception::load_task_state(id);
    // SAFETY: the firmware binary defines both; each is entered once per core.
    unsafe {
        if id == 0 {
            kernel_init(start_info)
        } else {
            kernel_secondary(id)
        }
    }
}

/// Puts the trampoline at [`TRAMPOLINE`] (once) and posts `apic_id` as logical core
/// `logical`'s. Returns the SIPI vector that starts a core there.
///
/// # Safety
/// [`TRAMPOLINE`]'s page is RAM that nothing else uses; boot core only.
pub unsafe fn prepare_ap(logical: usize, apic_id: u32) -> u8 {
    if !TRAMPOLINE_COPIED.swap(true, SeqCst) {
        let start = &raw const __ap_trampoline_start;
        let len = &raw const __ap_trampoline_end as usize - start as usize;
        // SAFETY: the caller guarantees the page is ours; the trampoline is a few dozen
        // bytes, and no core runs it before the first SIPI, which follows this copy.
        unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len) };
    }
    AP_HWIDS[logical].store(apic_id, SeqCst);
    (TRAMPOLINE >> 12) as u8
}

/// The local APIC id the boot core sent logical core `logical` its SIPIs under: `None`
/// for the boot core and for a core it sent none.
pub fn posted_apic_id(logical: usize) -> Option<u32> {
    let id = AP_HWIDS.get(logical)?.load(SeqCst);
    (logical != 0 && id != u32::MAX).then_some(id)
}
