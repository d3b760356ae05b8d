//! The local APIC (xAPIC, at the address in `IA32_APIC_BASE`, mapped uncached by
//! [`super::mmu`]): starting application processors with INIT-SIPI-SIPI, and the wake-up
//! IPI that idle cores sleep in `hlt` for.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use x86_64::registers::model_specific::Msr;

use super::exception::WAKE_VECTOR;
use super::{boot, tsc};

const IA32_APIC_BASE: u32 = 0x1b;
/// Spurious-interrupt vector register: bit 8 enables the APIC.
const SVR: usize = 0xf0;
const ICR_LOW: usize = 0x300;
const ICR_HIGH: usize = 0x310;
/// ICR: delivery status (send pending).
const PENDING: u32 = 1 << 12;
/// ICR: INIT, level assert.
const INIT: u32 = 0x4500;
/// ICR: start-up, with the vector in the low byte.
const STARTUP: u32 = 0x4600;
/// ICR: fixed interrupt to every core but this one, with the vector in the low byte.
const FIXED_ALL_BUT_SELF: u32 = 0xc_4000;
const EOI: usize = 0xb0;

/// Address of the EOI register, for the wake-up stub in vectors.s (set before any core
/// can be woken).
pub(super) static EOI_REGISTER: AtomicU64 = AtomicU64::new(0);

/// Why a core could not be started: the IPI stayed pending (the APIC did not send it).
pub const ERR_IPI_PENDING: i64 = -1;

fn base() -> usize {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; reading it has no effect.
    (unsafe { Msr::new(IA32_APIC_BASE).read() } & 0xffff_f000) as usize
}

fn write(reg: usize, value: u32) {
    // SAFETY: `base` is this core's LAPIC, mapped uncached; `reg` is one of its registers.
    unsafe { ((base() + reg) as *mut u32).write_volatile(value) }
}

fn read(reg: usize) -> u32 {
    // SAFETY: as for write.
    unsafe { ((base() + reg) as *const u32).read_volatile() }
}

/// Software-enables this core's APIC, which it must be to take the wake-up IPI.
pub(super) fn enable() {
    write(SVR, read(SVR) | 0x100);
}

/// Wakes every other core from `hlt`.
pub(super) fn wake_others() {
    // A lost wake-up only delays a core that the boot core waits for with a timeout;
    // `send` waits for delivery, so none is lost in practice.
    let _ = send(0, FIXED_ALL_BUT_SELF | u32::from(WAKE_VECTOR));
}

/// Sends an IPI to `apic_id` and waits (up to 10 ms) until the APIC has sent it.
fn send(apic_id: u32, command: u32) -> Result<(), i64> {
    write(ICR_HIGH, apic_id << 24);
    write(ICR_LOW, command);
    for _ in 0..100 {
        if read(ICR_LOW) & PENDING == 0 {
            return Ok(());
        }
        tsc::delay_us(100);
    }
    Err(ERR_IPI_PENDING)
}

/// Starts the core with local APIC id `apic_id` as logical core `logical`: it runs the
/// trampoline, enters long mode and calls `kernel_secondary(logical)`. The error is
/// [`ERR_IPI_PENDING`].
///
/// # Safety
/// The page tables map the LAPIC uncached; the trampoline page is reserved; the previous
/// core started has taken its logical id (it is online, or was given up on).
pub unsafe fn start_ap(apic_id: u32, logical: usize) -> Result<(), i64> {
    // SAFETY: the caller's guarantees are prepare_ap's.
    let vector = unsafe { boot::prepare_ap(logical) };
    EOI_REGISTER.store((base() + EOI) as u64, Relaxed);
    enable();
    // The MP specification's sequence: INIT, 10 ms, then SIPI twice 200 µs apart (a core
    // already running ignores the second).
    send(apic_id, INIT)?;
    tsc::delay_us(10_000);
    for _ in 0..2 {
        send(apic_id, STARTUP | u32::from(vector))?;
        tsc::delay_us(200);
    }
    Ok(())
}
