//! Exception handling. IRQs go to the one handler the board installed with
//! [`set_irq_handler`] (its interrupt controller knows which device raised them). A data
//! abort at EL1 is offered to the fault detectors ([`crate::fault::handle`]) and, when one
//! handled it, the interrupted code resumes. Every other exception is unexpected (the
//! firmware takes no traps), so the vectors (vectors.s) report it and end the machine with
//! a failing status — through a panic, so that the firmware's panic path prints it — on
//! the core's exception stack. A fault in a core's stack guard page is reported as what it
//! is: that core's stack overflow.
//!
//! One exception is expected after all: the semihosting `hlt` faults when QEMU runs
//! without `-semihosting`, and then exiting falls back to PSCI SYSTEM_OFF.

use super::{AArch64, psci, semihosting};
use crate::arch::percpu::{self, DEPTH_OFFSET, EXCEPTION_TOP_OFFSET};
use crate::fault::{self, Access, Fault, FaultKind};
use kmem::Arch;

core::arch::global_asm!(
    include_str!("vectors.s"),
    depth = const DEPTH_OFFSET,
    exception_top = const EXCEPTION_TOP_OFFSET,
    handler = sym unexpected_exception,
    exit_block = sym semihosting::EXIT_FAILURE,
    conduit = sym psci::CONDUIT,
    irq = sym irq,
    sync = sym synchronous,
);

/// What the synchronous entry in vectors.s saves, on the core's exception stack, in its
/// order. What the handler leaves in `elr` and `spsr` is where and how the core resumes.
#[repr(C)]
struct ExceptionFrame {
    x: [u64; 31],
    sp: u64,
    elr: u64,
    spsr: u64,
    esr: u64,
    far: u64,
    fpcr: u64,
    fpsr: u64,
    q: [u128; 32],
}

const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == 816);

/// The board's IRQ handler.
static IRQ_HANDLER: spin::Once<fn()> = spin::Once::new();

/// Makes `handler` run for every IRQ, on the core that takes it, with IRQs masked. It
/// must acknowledge the interrupt at its controller. The first handler installed stays.
pub fn set_irq_handler(handler: fn()) {
    IRQ_HANDLER.call_once(|| handler);
}

/// Called by the IRQ entry in vectors.s, with every caller-saved register saved.
extern "C" fn irq() {
    super::mte::check_async("an IRQ");
    match IRQ_HANDLER.get() {
        Some(handler) => handler(),
        None => panic!("IRQ on cpu {} with no handler installed", AArch64::cpu_id()),
    }
}

const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
const ORIGINS: [&str; 4] = [
    "EL1 with SP_EL0",
    "EL1 with SP_EL1",
    "EL0 (AArch64)",
    "EL0 (AArch32)",
];

/// ESR_EL1.EC of a data abort taken without a change of exception level.
const EC_DATA_ABORT_SAME_EL: u64 = 0x25;

/// Called by the synchronous entry in vectors.s with the interrupted core's registers;
/// returns only when a fault detector handled the fault, and the core then resumes as
/// `frame` says.
extern "C" fn synchronous(frame: &mut ExceptionFrame) {
    if data_abort(frame).is_some_and(|fault| fault::handle(&fault)) {
        return;
    }
    unexpected_exception(4, frame.esr, frame.far, frame.elr, frame.sp);
}

/// The fault a data abort at EL1 describes, if `frame` holds one of a kind a detector may
/// handle (a translation, permission or synchronous tag-check fault).
fn data_abort(frame: &ExceptionFrame) -> Option<Fault> {
    let esr = frame.esr;
    if (esr >> 26) & 0x3f != EC_DATA_ABORT_SAME_EL {
        return None;
    }
    // ISS.DFSC: 0b0001LL translation and 0b0011LL permission fault at level LL.
    let kind = match esr & 0x3f {
        0x04..=0x07 => FaultKind::NotMapped,
        0x0c..=0x0f => FaultKind::Permission,
        0x11 => FaultKind::TagCheck,
        _ => return None,
    };
    // ISS.WnR; cache maintenance sets it too, and the firmware does none on bad addresses.
    let access = if esr & (1 << 6) != 0 {
        Access::Write
    } else {
        Access::Read
    };
    Some(Fault {
        addr: frame.far as usize,
        access,
        pc: frame.elr as usize,
        kind,
    })
}

/// Called by the vector code, on the core's exception stack, with the vector index, the
/// syndrome registers and the stack pointer at the exception.
extern "C" fn unexpected_exception(vector: u64, esr: u64, far: u64, elr: u64, sp: u64) -> ! {
    if elr == semihosting::hlt_address() {
        psci::system_off();
    }
    let ec = (esr >> 26) & 0x3f;
    let overflow = (ec == EC_DATA_ABORT_SAME_EL)
        .then(|| percpu::guard_owner(far))
        .flatten()
        .or_else(|| percpu::guard_owner(sp));
    if let Some(cpu) = overflow {
        panic!(
            "stack overflow on cpu {cpu}: an access at {far:#x} hit the guard page below \
             its stack (sp {sp:#x}, ELR_EL1 {elr:#x})"
        );
    }
    let v = vector as usize & 0xf;
    panic!(
        "unexpected {} exception from {} on cpu {}: ESR_EL1 {esr:#010x} (EC {ec:#04x}), \
         FAR_EL1 {far:#x}, ELR_EL1 {elr:#x}",
        KINDS[v % 4],
        ORIGINS[v / 4],
        AArch64::cpu_id(),
    );
}
