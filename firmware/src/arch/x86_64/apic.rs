//! The local APIC: starting application processors with INIT-SIPI-SIPI (INIT to all of
//! them first, one 10 ms wait for all), its id, the wake-up IPI that idle cores sleep
//! in `hlt` for, and the periodic local timer; and the legacy 8259 PICs switched off, so
//! that the local APIC is the only source of interrupts.
//!
//! In x2APIC mode wherever the CPU offers it (CPUID.1:ECX.x2APIC), its registers being
//! MSRs from 0x800 and the interrupt command one 64-bit MSR with a 32-bit destination,
//! which is what reaches APIC ids past 255; else in xAPIC mode, its registers at the
//! address in `IA32_APIC_BASE`, mapped uncached by [`super::mmu`].

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use pic8259::ChainedPics;
use x86_64::registers::model_specific::Msr;

use super::exception::WAKE_VECTOR;
use super::{boot, tsc};
use crate::arch::cpu::MAX_CPUS;

const IA32_APIC_BASE: u32 = 0x1b;
/// IA32_APIC_BASE: the APIC is enabled; it is in x2APIC mode.
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
const APIC_X2APIC: u64 = 1 << 10;
/// The x2APIC's registers: MSR `X2APIC_MSRS + (xAPIC offset >> 4)`.
const X2APIC_MSRS: u32 = 0x800;
/// Local APIC id register: the id in bits 31:24 (xAPIC), or all 32 bits (x2APIC).
const ID: usize = 0x20;
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
const LVT_TIMER: usize = 0x320;
const TIMER_INITIAL: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIVIDE: usize = 0x3e0;
/// LVT: the interrupt is masked.
const LVT_MASKED: u32 = 1 << 16;
/// LVT timer: periodic mode (reloads the initial count).
const LVT_PERIODIC: u32 = 1 << 17;
/// Divide configuration: the bus clock divided by 16.
const DIVIDE_BY_16: u32 = 0b0011;

/// Local timer counts per millisecond (the same on every core), measured against the TSC
/// the first time a timer starts; 0 until then.
static TIMER_PER_MS: AtomicU32 = AtomicU32::new(0);

/// Address of the xAPIC's EOI register, for the wake-up stub in vectors.s, or 0 in
/// x2APIC mode (set before any core can be woken).
pub(super) static EOI_REGISTER: AtomicU64 = AtomicU64::new(0);

/// Why a core could not be started: the IPI stayed pending (the APIC did not send it).
pub const ERR_IPI_PENDING: i64 = -1;
/// Why a core could not be started: its APIC id is past 255 and the CPU offers no x2APIC.
pub const ERR_ID_NEEDS_X2APIC: i64 = -2;

/// Whether the CPU offers x2APIC mode (CPUID.1:ECX bit 21); every core then uses it.
pub fn x2apic() -> bool {
    // Leaf 1 exists on every x86_64 CPU.
    core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0
}

fn base() -> usize {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; reading it has no effect.
    (unsafe { Msr::new(IA32_APIC_BASE).read() } & 0xffff_f000) as usize
}

fn write(reg: usize, value: u32) {
    if x2apic() {
        // SAFETY: this core's APIC is in x2APIC mode (`enable`, before any other access),
        // and `reg` is one of its registers, as an MSR.
        unsafe { Msr::new(X2APIC_MSRS + (reg >> 4) as u32).write(u64::from(value)) }
    } else {
        // SAFETY: `base` is this core's LAPIC, mapped uncached; `reg` is one of its
        // registers.
        unsafe { ((base() + reg) as *mut u32).write_volatile(value) }
    }
}

fn read(reg: usize) -> u32 {
    if x2apic() {
        // SAFETY: as for write; reading a register has no effect.
        unsafe { Msr::new(X2APIC_MSRS + (reg >> 4) as u32).read() as u32 }
    } else {
        // SAFETY: as for write.
        unsafe { ((base() + reg) as *const u32).read_volatile() }
    }
}

/// Vectors the legacy PICs are moved to: past the exceptions, and without gates, so a
/// stray one faults loudly instead of passing for an exception (left where they start,
/// the timer's IRQ 0 arrives as vector 8, a "double fault").
const LEGACY_PIC_VECTORS: (u8, u8) = (0x20, 0x28);

/// Remaps the legacy PICs and masks every line. Boot core, before interrupts are on.
pub(super) fn disable_legacy_pic() {
    // SAFETY: every PC has the PIC pair at the standard ports; nothing else drives them,
    // and interrupts are off while they are reprogrammed.
    unsafe {
        let mut pics = ChainedPics::new(LEGACY_PIC_VECTORS.0, LEGACY_PIC_VECTORS.1);
        pics.initialize();
        pics.disable();
    }
}

/// Puts this core's APIC in x2APIC mode where the CPU offers it, and software-enables it,
/// which it must be to take the wake-up IPI. Every core runs it before it touches its
/// APIC otherwise.
pub(super) fn enable() {
    if x2apic() {
        let mut msr = Msr::new(IA32_APIC_BASE);
        // SAFETY: x2APIC mode is offered (CPUID); switching from xAPIC mode (enabled) to
        // x2APIC mode is a legal transition, and setting it again changes nothing.
        unsafe {
            let v = msr.read();
            if v & APIC_X2APIC == 0 {
                msr.write(v | APIC_GLOBAL_ENABLE | APIC_X2APIC);
            }
        }
    }
    write(SVR, read(SVR) | 0x100);
}

/// This core's local APIC id as its APIC reports it: the one IPIs to it are addressed
/// to.
pub fn id() -> u32 {
    enable();
    let id = read(ID);
    if x2apic() { id } else { id >> 24 }
}

/// Wakes every other core from `hlt`.
pub(super) fn wake_others() {
    // A lost wake-up only delays a core that the boot core waits for with a timeout;
    // `send` waits for delivery, so none is lost in practice.
    let _ = send(0, FIXED_ALL_BUT_SELF | u32::from(WAKE_VECTOR));
}

/// Sends an IPI to `apic_id` and waits (up to 10 ms) until the APIC has sent it (an
/// x2APIC has no such wait: its interrupt command register is one MSR write).
fn send(apic_id: u32, command: u32) -> Result<(), i64> {
    if x2apic() {
        // SAFETY: this core's APIC is in x2APIC mode; 0x830 is its interrupt command
        // register, the destination in its high half.
        unsafe {
            Msr::new(X2APIC_MSRS + (ICR_LOW >> 4) as u32)
                .write(u64::from(apic_id) << 32 | u64::from(command))
        };
        return Ok(());
    }
    if apic_id > 0xff {
        return Err(ERR_ID_NEEDS_X2APIC);
    }
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

/// Starts the core with local APIC id `apic_ids[logical]` as logical core `logical`: it
/// runs the trampoline, finds its logical id by its APIC id, enters long mode and calls
/// `kernel_secondary(logical)`. Returns once the IPIs are sent, not waiting for the core:
/// several may come up at once. The error is [`ERR_IPI_PENDING`] or
/// [`ERR_ID_NEEDS_X2APIC`].
///
/// `apic_ids` lists every core of the machine, the boot core first; the first call sends
/// INIT to all the others and waits once for them all (`init_all`), so that only
/// the SIPIs are left to each call.
///
/// # Safety
/// The page tables map the LAPIC uncached; the trampoline page is reserved; boot core;
/// the same `apic_ids` on every call, and none of its cores but the boot core running
/// before the first (INIT would reset it).
pub unsafe fn start_ap(apic_ids: &[u64], logical: usize) -> Result<(), i64> {
    enable();
    // The wake-up stub ends the IPI at the xAPIC's EOI register, or (0 here) through the
    // x2APIC's MSR.
    let eoi = if x2apic() { 0 } else { (base() + EOI) as u64 };
    EOI_REGISTER.store(eoi, Relaxed);
    if !INIT_SENT.swap(true, Relaxed) {
        init_all(apic_ids);
    }
    match INIT_RESULT[logical].load(Relaxed) {
        0 => {}
        e => return Err(e),
    }
    let apic_id = apic_ids[logical] as u32;
    // SAFETY: the caller's guarantees are prepare_ap's.
    let vector = unsafe { boot::prepare_ap(logical, apic_id) };
    // The MP specification's SIPI twice 200 µs apart (a core already running ignores the
    // second).
    for _ in 0..2 {
        send(apic_id, STARTUP | u32::from(vector))?;
        tsc::delay_us(200);
    }
    Ok(())
}

/// Whether [`init_all`] has run.
static INIT_SENT: AtomicBool = AtomicBool::new(false);
/// What sending INIT to each logical core gave: 0, or the error [`send`] returned.
static INIT_RESULT: [AtomicI64; MAX_CPUS] = [const { AtomicI64::new(0) }; MAX_CPUS];

/// The first half of the MP specification's INIT-SIPI-SIPI for every core of `apic_ids`
/// but the boot core (the first, and any listed under its id again: INIT would reset
/// it), all together: INIT to each in turn, then the 10 ms a core needs before its SIPI,
/// waited once for all rather than once per core (0.65 s at 64 cores). Each core then
/// waits for its SIPI, as it does after reset, whether or not it is started.
fn init_all(apic_ids: &[u64]) {
    let boot = apic_ids[0];
    for (logical, &id) in apic_ids.iter().enumerate().skip(1) {
        if id != boot {
            let sent = send(id as u32, INIT);
            INIT_RESULT[logical].store(sent.err().unwrap_or(0), Relaxed);
        }
    }
    tsc::delay_us(10_000);
}

/// Counts this core's local timer makes in a millisecond, measured against the TSC.
fn timer_per_ms() -> u32 {
    let known = TIMER_PER_MS.load(Relaxed);
    if known != 0 {
        return known;
    }
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, LVT_MASKED);
    write(TIMER_INITIAL, u32::MAX);
    tsc::delay_us(1000);
    let per_ms = (u32::MAX - read(TIMER_CURRENT)).max(1);
    write(TIMER_INITIAL, 0);
    TIMER_PER_MS.store(per_ms, Relaxed);
    per_ms
}

/// Makes this core's local timer raise `vector` every `period_us` microseconds.
pub(super) fn timer_start(vector: u8, period_us: u64) {
    enable();
    let per_ms = u64::from(timer_per_ms());
    let count = (per_ms * period_us / 1000).clamp(1, u64::from(u32::MAX));
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, LVT_PERIODIC | u32::from(vector));
    write(TIMER_INITIAL, count as u32);
}

/// Stops this core's local timer.
pub(super) fn timer_stop() {
    write(LVT_TIMER, LVT_MASKED);
    write(TIMER_INITIAL, 0);
}

/// Ends the interrupt this core is handling.
pub(super) fn end_of_interrupt() {
    write(EOI, 0);
}
