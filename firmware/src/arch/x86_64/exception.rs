//! Exception handling: every exception is unexpected (the firmware runs with interrupts
//! off and uses no traps), so the IDT's stubs (vectors.s) report it — vector, error code,
//! RIP, CR2 and the core — and end the machine with a failing status, through a panic so
//! that the firmware's panic path prints it. Two interrupts are expected: [`WAKE_VECTOR`],
//! the IPI that wakes an idle core, and [`TIMER_VECTOR`], the local timer, which runs the
//! handler installed with [`set_timer_handler`]. Any other vector has no gate and so
//! faults (#GP).

use core::cell::UnsafeCell;

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, Segment};
use x86_64::instructions::tables::lidt;
use x86_64::registers::control::Cr2;
use x86_64::structures::DescriptorTablePointer;

use super::{X86_64, apic};
use crate::arch::percpu::DEPTH_OFFSET;
use kmem::Arch;

core::arch::global_asm!(
    include_str!("vectors.s"),
    depth = const DEPTH_OFFSET,
    handler = sym unexpected_exception,
    eoi = sym apic::EOI_REGISTER,
    timer = sym timer_interrupt,
    options(att_syntax),
);

unsafe extern "C" {
    static __exception_stubs: u8;
    static __wake_stub: u8;
    static __timer_stub: u8;
}

/// Vector of the wake-up IPI (`Isa::wake_waiters`).
pub const WAKE_VECTOR: u8 = 0xf0;
/// Vector of the local timer (below the wake-up IPI's priority class).
pub const TIMER_VECTOR: u8 = 0xe0;
/// Vectors with an exception stub: the architectural exceptions.
const EXCEPTIONS: usize = 32;
/// Entries in the IDT: every vector, so that a stray one faults on a non-present gate.
const VECTORS: usize = 256;
/// Bytes between stubs (vectors.s aligns each to 16).
const STUB_SIZE: usize = 16;

const NAMES: [&str; EXCEPTIONS] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

/// The IDT: one 16-byte interrupt gate per vector.
#[repr(C, align(16))]
struct Idt(UnsafeCell<[[u64; 2]; VECTORS]>);

// SAFETY: written once by `build_idt` on the boot core before any other core runs; after
// that only the CPUs read it.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([[0; 2]; VECTORS]));

/// A present 64-bit interrupt gate (type 0xE, DPL 0, no IST) to `handler` in segment `cs`.
fn gate(handler: u64, cs: u16) -> [u64; 2] {
    let low =
        (handler & 0xffff) | u64::from(cs) << 16 | 0x8e << 40 | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// Fills the IDT with the stubs. Boot core, before any other core starts.
pub(super) fn build_idt() {
    let stubs = &raw const __exception_stubs as u64;
    let cs = CS::get_reg().0;
    // SAFETY: only the boot core runs, and no core has loaded the IDT yet.
    let idt = unsafe { &mut *IDT.0.get() };
    for (v, g) in idt.iter_mut().take(EXCEPTIONS).enumerate() {
        *g = gate(stubs + (v * STUB_SIZE) as u64, cs);
    }
    idt[usize::from(WAKE_VECTOR)] = gate(&raw const __wake_stub as u64, cs);
    idt[usize::from(TIMER_VECTOR)] = gate(&raw const __timer_stub as u64, cs);
}

/// What a local-timer interrupt runs.
static TIMER_HANDLER: spin::Once<fn()> = spin::Once::new();

/// Makes every local-timer interrupt run `handler` on the core that takes it, with
/// interrupts off. The first handler installed stays.
pub fn set_timer_handler(handler: fn()) {
    TIMER_HANDLER.call_once(|| handler);
}

/// Starts this core's local timer: an interrupt every `period_us` microseconds.
pub fn timer_start(period_us: u64) {
    apic::timer_start(TIMER_VECTOR, period_us);
}

/// Stops this core's local timer.
pub fn timer_stop() {
    apic::timer_stop();
}

/// Called by the timer stub with every caller-saved register saved.
extern "C" fn timer_interrupt() {
    // Ending it first is safe: the gate keeps interrupts off until `iretq`.
    apic::end_of_interrupt();
    if let Some(handler) = TIMER_HANDLER.get() {
        handler();
    }
}

/// Loads the IDT on this core.
pub(super) fn load_idt() {
    let ptr = DescriptorTablePointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(IDT.0.get()),
    };
    // SAFETY: the table is a static, filled by build_idt before any core loads it.
    unsafe { lidt(&ptr) };
}

/// Called by the stubs with the vector, the error code, and the interrupted RIP and RSP.
extern "C" fn unexpected_exception(vector: u64, error: u64, rip: u64, rsp: u64) -> ! {
    panic!(
        "unexpected exception {vector} ({}) on cpu {}: error code {error:#x}, RIP {rip:#x}, \
         RSP {rsp:#x}, CR2 {:#x}",
        NAMES.get(vector as usize).unwrap_or(&"interrupt"),
        X86_64::cpu_id(),
        Cr2::read_raw(),
    );
}
