//! Traps: the timer and the wake-up IPI, and every other trap reported as fatal.
//!
//! Two interrupts are expected. The supervisor timer interrupt, armed through SBI TIME
//! ([`timer_start`]), runs the handler installed with [`set_timer_handler`] and re-arms
//! itself. The supervisor software interrupt is the wake-up IPI ([`wake_others`], SBI
//! IPI), which only ends `wfi`: taken as a trap (while a core runs with interrupts on), it
//! is cleared and that is all. Any other interrupt, and every exception (the firmware
//! takes no traps on purpose), is reported — `scause` and what it means, `stval`, `sepc`,
//! the CPU and its hart — and ends the machine with a failing status, through a panic so
//! that the firmware's panic path prints it, on the hart's exception stack (trap.s). A
//! page fault in a hart's stack guard page is reported as what it is: that hart's stack
//! overflow. A load or store page fault is first offered to the fault detectors
//! ([`crate::fault::handle`]: kmem's guard pool), and when one handled it the faulting
//! instruction runs again.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use riscv::register::{sie, sip};

use super::{RiscV64, boot, exit};
use crate::arch::cpu::{Isa, MAX_CPUS};
use crate::arch::percpu::{self, DEPTH_OFFSET, EXCEPTION_TOP_OFFSET, SCRATCH_OFFSET};
use crate::fault::{self, Access, Fault, FaultKind};
use kmem::Arch;

core::arch::global_asm!(
    include_str!("trap.s"),
    depth = const DEPTH_OFFSET,
    exception_top = const EXCEPTION_TOP_OFFSET,
    handler = sym unexpected_trap,
    page_fault = sym page_fault,
    scratch = const SCRATCH_OFFSET,
    scratch_sp = const SCRATCH_OFFSET + 8,
    interrupt = sym interrupt,
    exit_device = sym exit::DEVICE,
    exit_failure = const exit::FAILURE,
);

/// `scause` codes of the two interrupts expected (its top bit set).
const SUPERVISOR_SOFTWARE: usize = 1;
const SUPERVISOR_TIMER: usize = 5;
/// `scause` codes of the page faults, whose `stval` is the address.
const PAGE_FAULTS: [usize; 3] = [12, 13, 15];

/// The exceptions by `scause` code (the privileged specification, table 22).
const EXCEPTIONS: [&str; 20] = [
    "instruction address misaligned",
    "instruction access fault",
    "illegal instruction",
    "breakpoint",
    "load address misaligned",
    "load access fault",
    "store/AMO address misaligned",
    "store/AMO access fault",
    "environment call from U-mode",
    "environment call from S-mode",
    "reserved",
    "reserved",
    "instruction page fault",
    "load page fault",
    "reserved",
    "store/AMO page fault",
    "reserved",
    "reserved",
    "software check",
    "hardware error",
];

/// What a timer interrupt runs.
static TIMER_HANDLER: spin::Once<fn()> = spin::Once::new();
/// The timer period in `time` ticks; the same on every hart.
static PERIOD: AtomicU64 = AtomicU64::new(0);

/// Makes every timer interrupt run `handler` on the hart that takes it, with interrupts
/// off. The first handler installed stays.
pub fn set_timer_handler(handler: fn()) {
    TIMER_HANDLER.call_once(|| handler);
}

/// Starts this hart's timer: an interrupt every `period_us` microseconds.
pub fn timer_start(period_us: u64) {
    let ticks = (RiscV64::cycles_per_second() * period_us / 1_000_000).max(1);
    PERIOD.store(ticks, Relaxed);
    sbi_rt::set_timer(RiscV64::cycles() + ticks);
    // SAFETY: the entry in trap.s handles the timer interrupt.
    unsafe { sie::set_stimer() };
}

/// Stops this hart's timer.
pub fn timer_stop() {
    // SAFETY: masking an interrupt source breaks nothing.
    unsafe { sie::clear_stimer() };
    sbi_rt::set_timer(u64::MAX);
}

/// An SBI IPI to every other hart that has entered the firmware, which ends its `wfi`.
pub fn wake_others() {
    let me = RiscV64::cpu_id();
    let others = (0..MAX_CPUS).filter(|&c| c != me).filter_map(boot::hart_id);
    let Some(base) = others.clone().min() else {
        return;
    };
    // One call for the harts within 64 of the lowest (all of them, on QEMU), one each
    // for any beyond.
    let mut mask = 0usize;
    for hart in others {
        if hart - base < usize::BITS as usize {
            mask |= 1 << (hart - base);
        } else {
            sbi_rt::send_ipi(sbi_rt::HartMask::from_mask_base(1, hart));
        }
    }
    sbi_rt::send_ipi(sbi_rt::HartMask::from_mask_base(mask, base));
}

/// Called by the interrupt entry in trap.s, with every caller-saved register saved.
extern "C" fn interrupt(scause: usize) {
    match scause & !(1 << (usize::BITS - 1)) {
        SUPERVISOR_TIMER => {
            // Re-arming lowers the line.
            sbi_rt::set_timer(RiscV64::cycles() + PERIOD.load(Relaxed));
            if let Some(handler) = TIMER_HANDLER.get() {
                handler();
            }
        }
        // SAFETY: clearing this hart's own wake-up request, which has done its job.
        SUPERVISOR_SOFTWARE => unsafe { sip::clear_ssoft() },
        code => panic!(
            "unexpected interrupt {code} on cpu {} (hart {})",
            RiscV64::cpu_id(),
            boot::hart_id(RiscV64::cpu_id()).unwrap_or(usize::MAX)
        ),
    }
}

/// `scause` of a store/AMO page fault (a load page fault is 13).
const STORE_PAGE_FAULT: usize = 15;

/// Called by the page-fault entry in trap.s, on the hart's exception stack with every
/// caller-saved register saved: whether a fault detector handled the fault, so that the
/// access may be retried.
extern "C" fn page_fault(scause: usize, stval: usize, sepc: usize) -> bool {
    let f = Fault {
        addr: stval,
        access: if scause == STORE_PAGE_FAULT {
            Access::Write
        } else {
            Access::Read
        },
        pc: sepc,
        // Sv39 gives no cause beyond "page fault": the pool's pages are unmapped (V clear).
        kind: FaultKind::NotMapped,
    };
    fault::handle(&f)
}

/// Called by the exception entry in trap.s, on the hart's exception stack, with the trap
/// registers and the stack pointer at the trap.
extern "C" fn unexpected_trap(scause: usize, stval: usize, sepc: usize, sp: usize) -> ! {
    let (stval, sp) = (stval as u64, sp as u64);
    let overflow = PAGE_FAULTS
        .contains(&scause)
        .then(|| percpu::guard_owner(stval))
        .flatten()
        .or_else(|| percpu::guard_owner(sp));
    if let Some(cpu) = overflow {
        panic!(
            "stack overflow on cpu {cpu}: an access at {stval:#x} hit the guard page below \
             its stack (sp {sp:#x}, sepc {sepc:#x})"
        );
    }
    let cpu = RiscV64::cpu_id();
    panic!(
        "unexpected exception on cpu {cpu} (hart {}): scause {scause:#x} ({}), stval \
         {stval:#x}, sepc {sepc:#x}, sp {sp:#x}",
        boot::hart_id(cpu).unwrap_or(usize::MAX),
        EXCEPTIONS.get(scause).unwrap_or(&"reserved"),
    );
}
