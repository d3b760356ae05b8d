//! Exception handling: every exception is unexpected (the firmware runs with interrupts
//! off and uses no traps), so the IDT's stubs (vectors.s) report it — vector, error code,
//! RIP, CR2 and the core — and end the machine with a failing status, through a panic so
//! that the firmware's panic path prints it. They run on the core's exception stack (the
//! first entry of the interrupt stack table in its TSS): the stack the core was on may be
//! what failed, and a page fault in a core's stack guard page is reported as that core's
//! stack overflow. A page fault is first offered to the fault detectors
//! ([`crate::fault::handle`]: kmem's guard pool), and when one handled it the faulting
//! instruction runs again. Two interrupts are expected: [`WAKE_VECTOR`],
//! the IPI that wakes an idle core, and [`TIMER_VECTOR`], the local timer, which runs the
//! handler installed with [`set_timer_handler`]. Any other vector has no gate and so
//! faults (#GP).

use core::cell::UnsafeCell;

use x86_64::instructions::segmentation::{CS, Segment};
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::registers::control::Cr2;
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::SegmentSelector;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

use super::{X86_64, apic};
use crate::arch::cpu::MAX_CPUS;
use crate::arch::percpu::{self, DEPTH_OFFSET};
use crate::fault::{self, Access, Fault, FaultKind};
use kmem::Arch;

core::arch::global_asm!(
    include_str!("vectors.s"),
    depth = const DEPTH_OFFSET,
    handler = sym unexpected_exception,
    page_fault = sym page_fault,
    eoi = sym apic::EOI_REGISTER,
    timer = sym timer_interrupt,
    options(att_syntax),
);

unsafe extern "C" {
    static __exception_stubs: u8;
    static __wake_stub: u8;
    static __timer_stub: u8;
    /// boot.s's GDT from its first TSS descriptor on: 16 bytes per core.
    static mut __boot_gdt_tss: [[u64; 2]; MAX_CPUS];
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
/// The page fault's vector.
const PAGE_FAULT: u64 = 14;
/// The interrupt-stack-table entry (1-based, as gates name it) that holds the core's
/// exception stack.
const EXCEPTION_IST: u64 = 1;
/// GDT selector of core 0's TSS; core n's is 16 n further.
const FIRST_TSS: u16 = 0x20;

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

/// Each core's task-state segment: only its interrupt stack table is used.
struct Tss(UnsafeCell<[TaskStateSegment; MAX_CPUS]>);

// SAFETY: each core writes its own TSS, once, in `load_task_state` before loading it;
// `build_idt` only takes their addresses. After that only the CPUs read them.
unsafe impl Sync for Tss {}

static TSS: Tss = Tss(UnsafeCell::new(
    [const { TaskStateSegment::new() }; MAX_CPUS],
));

/// A present 64-bit interrupt gate (type 0xE, DPL 0) to `handler` in segment `cs`, on the
/// stack of interrupt-stack-table entry `ist` (0: the stack in use).
fn gate(handler: u64, cs: u16, ist: u64) -> [u64; 2] {
    let low = (handler & 0xffff)
        | u64::from(cs) << 16
        | ist << 32
        | 0x8e << 40
        | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// A present, available 64-bit TSS descriptor (type 0x9) for the TSS at `base`.
fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = (size_of::<TaskStateSegment>() - 1) as u64;
    let low = (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | 0x89 << 40
        | ((limit >> 16) & 0xf) << 48
        | ((base >> 24) & 0xff) << 56;
    [low, base >> 32]
}

/// Fills the IDT with the stubs, every exception on the exception stack, and each core's
/// GDT descriptor of its TSS. Boot core, before any other core starts.
pub(super) fn build_idt() {
    let stubs = &raw const __exception_stubs as u64;
    let cs = CS::get_reg().0;
    let gdt = &raw mut __boot_gdt_tss;
    // SAFETY: only the boot core runs, and no core has loaded the IDT or a TSS yet.
    let (idt, tss, gdt) = unsafe { (&mut *IDT.0.get(), &*TSS.0.get(), &mut *gdt) };
    for (v, g) in idt.iter_mut().take(EXCEPTIONS).enumerate() {
        *g = gate(stubs + (v * STUB_SIZE) as u64, cs, EXCEPTION_IST);
    }
    idt[usize::from(WAKE_VECTOR)] = gate(&raw const __wake_stub as u64, cs, 0);
    idt[usize::from(TIMER_VECTOR)] = gate(&raw const __timer_stub as u64, cs, 0);
    for (t, d) in tss.iter().zip(gdt.iter_mut()) {
        *d = tss_descriptor(core::ptr::from_ref(t) as u64);
    }
}

/// Points core `id`'s TSS at its exception stack (its slot is placed only once the boot
/// information is read, after `build_idt`) and loads it, so that exceptions on it switch
/// to that stack.
pub(super) fn load_task_state(id: usize) {
    let tss = TSS.0.get().cast::<TaskStateSegment>();
    // SAFETY: element `id` of the static; only core `id` touches it after build_idt, and
    // only here, before loading it.
    unsafe {
        (*tss.add(id)).interrupt_stack_table[EXCEPTION_IST as usize - 1] =
            VirtAddr::new(percpu::exception_stack_top(id));
    }
    let selector = SegmentSelector::new((FIRST_TSS + 16 * id as u16) >> 3, PrivilegeLevel::Ring0);
    // SAFETY: build_idt filled this core's descriptor before any core started, and its TSS
    // is filled above; each core loads only its own (loading marks it busy).
    unsafe { load_tss(selector) };
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

/// Called by the page-fault entry with the error code and the faulting RIP: whether a
/// fault detector handled the fault, so that the access may be retried.
extern "C" fn page_fault(error: u64, rip: u64) -> bool {
    // Error code bit 0: a protection violation (else not present); bit 1: a write.
    let f = Fault {
        addr: Cr2::read_raw() as usize,
        access: if error & 2 != 0 {
            Access::Write
        } else {
            Access::Read
        },
        pc: rip as usize,
        kind: if error & 1 != 0 {
            FaultKind::Permission
        } else {
            FaultKind::NotMapped
        },
    };
    fault::handle(&f)
}

/// Called by the stubs, on the core's exception stack, with the vector, the error code,
/// and the interrupted RIP and RSP.
extern "C" fn unexpected_exception(vector: u64, error: u64, rip: u64, rsp: u64) -> ! {
    let cr2 = Cr2::read_raw();
    let overflow = (vector == PAGE_FAULT)
        .then(|| percpu::guard_owner(cr2))
        .flatten()
        .or_else(|| percpu::guard_owner(rsp));
    if let Some(cpu) = overflow {
        panic!(
            "stack overflow on cpu {cpu}: an access at {cr2:#x} hit the guard page below \
             its stack (RSP {rsp:#x}, RIP {rip:#x})"
        );
    }
    panic!(
        "unexpected exception {vector} ({}) on cpu {}: error code {error:#x}, RIP {rip:#x}, \
         RSP {rsp:#x}, CR2 {cr2:#x}",
        NAMES.get(vector as usize).unwrap_or(&"interrupt"),
        X86_64::cpu_id(),
    );
}
