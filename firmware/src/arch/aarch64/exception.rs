//! Exception handling. IRQs go to the one handler the board installed with
//! [`set_irq_handler`] (its interrupt controller knows which device raised them). Every
//! other exception is unexpected (the firmware takes no traps), so the vectors
//! (vectors.s) report it and end the machine with a failing status — through a panic, so
//! that the firmware's panic path prints it — on the core's exception stack. A fault in a
//! core's stack guard page is reported as what it is: that core's stack overflow.
//!
//! One exception is expected after all: the semihosting `hlt` faults when QEMU runs
//! without `-semihosting`, and then exiting falls back to PSCI SYSTEM_OFF.

use aarch64_cpu::registers::{ESR_EL1, Readable};

use super::{AArch64, psci, semihosting};
use crate::arch::percpu::{self, DEPTH_OFFSET, EXCEPTION_TOP_OFFSET};
use kmem::Arch;

core::arch::global_asm!(
    include_str!("vectors.s"),
    depth = const DEPTH_OFFSET,
    exception_top = const EXCEPTION_TOP_OFFSET,
    handler = sym unexpected_exception,
    exit_block = sym semihosting::EXIT_FAILURE,
    conduit = sym psci::CONDUIT,
    irq = sym irq,
);

/// The board's IRQ handler.
static IRQ_HANDLER: spin::Once<fn()> = spin::Once::new();

/// Makes `handler` run for every IRQ, on the core that takes it, with IRQs masked. It
/// must acknowledge the interrupt at its controller. The first handler installed stays.
pub fn set_irq_handler(handler: fn()) {
    IRQ_HANDLER.call_once(|| handler);
}

/// Called by the IRQ entry in vectors.s, with every caller-saved register saved.
extern "C" fn irq() {
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

/// Called by the vector code, on the core's exception stack, with the vector index, the
/// syndrome registers and the stack pointer at the exception.
extern "C" fn unexpected_exception(vector: u64, esr: u64, far: u64, elr: u64, sp: u64) -> ! {
    if elr == semihosting::hlt_address() {
        psci::system_off();
    }
    let ec = ESR_EL1.read(ESR_EL1::EC);
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
